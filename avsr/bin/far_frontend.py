"""Far-array front-end for a data dir: one enhanced wav per recording, ``wav.scp`` rewritten.

    python -m avsr.bin.far_frontend --data_dir data/dev_all --mode wpe --out_dir dump/far_wpe/dev [--nj 2]

For every recording of ``<data_dir>/wav.scp`` whose value is a far-array channel file
``<session>_Far_<ch>.wav``, all channel files of that session are loaded
(:func:`frontends.far.far_channel_paths`, :func:`frontends.far.load_far_array`), reduced to one
signal by the front-end ``--mode`` (:func:`frontends.far.far_frontend`; ``mean`` or ``wpe``, the
WPE settings of the official baselines are stated in :mod:`frontends.far`) and written as
``<out_dir>/<recording>.wav`` (16 kHz, 16-bit PCM, samples clipped to [-1, 1]).  The kept channel
(``wpe``) is the channel that ``wav.scp`` names (channel 0 in the recipe's default).

Documented behaviours
---------------------
* **Atomic outputs, resume**: each output is written to a temporary file in ``<out_dir>`` and
  renamed.  An existing ``<out_dir>/<recording>.wav`` with the expected length (the shortest
  channel's, read from the headers) is complete and reused, so an interrupted run resumes; nothing
  is rewritten on a re-run.  ``<out_dir>/far_frontend.json`` records the mode and settings; a
  re-run with another mode into the same ``--out_dir`` is an error (no outputs are mixed).
* **wav.scp**: before the first rewrite the data dir's ``wav.scp`` is copied to
  ``<data_dir>/wav.scp.orig`` (its channel-file entries); ``wav.scp`` is then replaced atomically
  (temporary file + rename), same keys, same order, each processed recording pointing at its
  output (absolute path).  A re-run reads its inputs from ``wav.scp.orig`` (so ``--mode mean``
  after ``--mode wpe`` starts from the channel files again); ``wav.scp.orig`` is used only while
  it fits the current ``wav.scp`` (same ids; every entry either equal or rewritten), else the
  current ``wav.scp`` is taken as the original and ``wav.scp.orig`` is replaced.
* **--mode ch0** processes nothing: ``wav.scp`` stays as it is, or, where an earlier run rewrote
  it, is restored from ``wav.scp.orig``.
* **Missing or unreadable channels**: the session keeps its original ``wav.scp`` entry (the channel
  the data dir names), a warning naming the file is printed, and the session is listed under
  ``fallback`` in the report.  The expected channel count is ``--num_channels`` (MISP2022: 6), by
  default the largest count found in the data dir (channels ``0..C-1``).
* **Entries that are not far-array channel files** (another file name) are left unchanged and
  listed under ``not_far``.  A **pipe or ark entry** (``cmd |``, ``file.ark:offset``) is an
  error naming the entry, before anything is written: front-ends need the channel files.
* **Report**: ``<out_dir>/far_frontend_report.json``: ``mode``, ``settings``, ``num_channels``,
  ``data_dir``, ``recordings``, ``written``, ``reused``, ``fallback`` (``recording``, ``file``,
  ``reason``), ``not_far``, ``notes`` (channel-length trims, clipping), ``wall_seconds``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import soundfile as sf

from avsr.bin import HelpFormatter
from avsr.data.datadir import DataDirError, read_table
from avsr.utils.io import write_text_atomic
from frontends.audio import audio_info, is_kaldi_entry
from frontends.constants import SAMPLE_RATE
from frontends.errors import MediaError
from frontends.far import (FAR_NAME, MODES, WPE_BLOCK_S, WPE_OPTIONS, WPE_STFT, far_channel_paths,
                           far_frontend, load_far_array)

WAV_SCP = "wav.scp"
ORIG_SCP = "wav.scp.orig"
SETTINGS = "far_frontend.json"
REPORT = "far_frontend_report.json"


class FarFrontendError(RuntimeError):
    """A data dir the far front-end cannot process (message names the file or entry)."""


def _is_far(value: str) -> bool:
    return FAR_NAME.match(os.path.basename(value)) is not None


def _table_text(rows: Sequence[Tuple[str, str]]) -> str:
    return "".join(f"{k} {v}\n" if v else f"{k}\n" for k, v in rows)


def settings_for(mode: str) -> dict:
    """The settings recorded in ``far_frontend.json`` (and the report) for ``mode``."""
    out: dict = {"mode": mode}
    if mode == "wpe":
        out.update(stft=dict(WPE_STFT, window="blackman"), wpe=dict(WPE_OPTIONS),
                   block_s=WPE_BLOCK_S, source="mispchallenge/misp2022_baseline run_wpe.py")
    return out


def source_table(data_dir: str) -> List[Tuple[str, str]]:
    """The original ``wav.scp`` rows: ``wav.scp.orig`` when it fits ``wav.scp``, else ``wav.scp``."""
    cur_path, orig_path = os.path.join(data_dir, WAV_SCP), os.path.join(data_dir, ORIG_SCP)
    if not os.path.isfile(cur_path):
        raise FarFrontendError(f"{cur_path}: missing")
    cur = read_table(cur_path)
    if os.path.isfile(orig_path):
        orig = read_table(orig_path)
        od = dict(orig)
        if [k for k, _ in orig] == [k for k, _ in cur] and \
                all(v == od[k] or not _is_far(v) for k, v in cur):
            return orig
    return cur


def _session_length(paths: Sequence[str]) -> int:
    """Shortest channel length from the headers (checks rate and mono like load_far_array)."""
    n = None
    for p in paths:
        info = audio_info(p)
        if info.sr != SAMPLE_RATE:
            raise MediaError(p, f"sample rate {info.sr} Hz, the far-array front-end needs {SAMPLE_RATE} Hz")
        if info.channels != 1:
            raise MediaError(p, f"{info.channels} channels in one file, expected a mono channel file")
        n = info.num_frames if n is None else min(n, info.num_frames)
    return int(n)


def _complete(path: str, n: int) -> bool:
    try:
        info = audio_info(path)
    except MediaError:
        return False
    return info.sr == SAMPLE_RATE and info.channels == 1 and info.num_frames == n


def process_recording(job: Tuple[str, str, str, str, int]) -> dict:
    """One recording: ``(recording, channel file, output path, mode, num_channels)`` -> result dict
    (``status``: ``written``, ``reused`` or ``fallback``)."""
    rec, src, out, mode, num_channels = job
    notes: List[str] = []
    try:
        paths = far_channel_paths(src, expect=num_channels)
        names = [os.path.basename(p) for p in paths]
        ref = names.index(os.path.basename(src)) if os.path.basename(src) in names else None
        if ref is None:
            raise MediaError(src, f"channel outside the expected 0..{num_channels - 1}")
        n = _session_length(paths)
        if _complete(out, n):
            return {"recording": rec, "status": "reused", "notes": notes}
        x = load_far_array(paths, notes=notes)
        y = far_frontend(x, mode, ref=ref)
    except MediaError as e:
        return {"recording": rec, "status": "fallback", "file": e.path, "reason": e.reason}
    clipped = int(np.count_nonzero(np.abs(y) > 1.0))
    if clipped:
        notes.append(f"{out}: {clipped} samples clipped to [-1, 1]")
    tmp = os.path.join(os.path.dirname(out), f".{os.path.basename(out)}.tmp.{os.getpid()}")
    try:
        sf.write(tmp, np.clip(y, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16", format="WAV")
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return {"recording": rec, "status": "written", "notes": notes}


def _check_settings(out_dir: str, settings: dict) -> None:
    path = os.path.join(out_dir, SETTINGS)
    if os.path.isfile(path):
        try:
            with open(path, encoding="utf-8") as f:
                old = json.load(f)
        except (OSError, ValueError) as e:
            raise FarFrontendError(f"{path}: unreadable ({e})") from None
        if old != settings:
            raise FarFrontendError(
                f"{path}: {out_dir} holds outputs of another front-end ({old.get('mode')!r}, not "
                f"{settings['mode']!r}); use another --out_dir or remove it")
        return
    write_text_atomic(path, json.dumps(settings, indent=1) + "\n")


def run(data_dir: str, mode: str, out_dir: Optional[str] = None, *, nj: int = 1,
        num_channels: Optional[int] = None, log=print) -> dict:
    """Apply the far front-end ``mode`` to the data dir (see the module docstring); the report."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r} (choose from {', '.join(MODES)})")
    t0 = time.time()
    data_dir = os.fspath(data_dir)
    scp = os.path.join(data_dir, WAV_SCP)
    rows = source_table(data_dir)
    for k, v in rows:
        if is_kaldi_entry(v):
            raise FarFrontendError(f"{scp}: {k}: {v!r} is a Kaldi pipe/ark entry; the far front-end "
                                   "needs the channel files (<session>_Far_<ch>.wav)")
    orig_path = os.path.join(data_dir, ORIG_SCP)
    if mode == "ch0":
        if os.path.isfile(orig_path) and read_table(scp) != rows:
            write_text_atomic(scp, _table_text(rows))
            log(f"{scp}: restored from {orig_path}")
        return {"mode": mode, "data_dir": data_dir, "recordings": len(rows)}
    if out_dir is None:
        raise ValueError("--out_dir is required for --mode mean|wpe")
    out_dir = os.path.abspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    settings = settings_for(mode)
    _check_settings(out_dir, settings)

    far = [(k, v) for k, v in rows if _is_far(v)]
    not_far = [k for k, v in rows if not _is_far(v)]
    if num_channels is None:
        counts = []
        for _, v in far:
            try:
                counts.append(max(int(FAR_NAME.match(os.path.basename(p)).group("ch"))
                                  for p in far_channel_paths(v)) + 1)
            except MediaError:
                pass
        num_channels = max(counts) if counts else 1
    jobs = [(k, v, os.path.join(out_dir, f"{k}.wav"), mode, num_channels) for k, v in far]
    if nj > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=min(nj, len(jobs))) as ex:
            results = list(ex.map(process_recording, jobs))
    else:
        results = [process_recording(j) for j in jobs]

    new = dict(rows)
    report = {"mode": mode, "settings": settings, "num_channels": num_channels,
              "data_dir": os.path.abspath(data_dir), "recordings": len(rows),
              "written": [], "reused": [], "fallback": [], "not_far": not_far, "notes": []}
    for (k, _, out, _, _), r in zip(jobs, results):
        report["notes"] += r.get("notes", [])
        if r["status"] == "fallback":
            report["fallback"].append({"recording": k, "file": r["file"], "reason": r["reason"]})
            log(f"WARNING: {r['file']}: {r['reason']} -> {k} keeps its entry {new[k]}")
        else:
            report[r["status"]].append(k)
            new[k] = out
    for msg in report["notes"]:
        log(f"WARNING: {msg}")
    new_rows = [(k, new[k]) for k, _ in rows]
    if not os.path.isfile(orig_path) or read_table(orig_path) != rows:
        write_text_atomic(orig_path, _table_text(rows))
    if read_table(scp) != new_rows:
        write_text_atomic(scp, _table_text(new_rows))
    report["wall_seconds"] = round(time.time() - t0, 3)
    write_text_atomic(os.path.join(out_dir, REPORT), json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    return report


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="avsr far_frontend", formatter_class=HelpFormatter,
                                 description="Far-array front-end (ch0, mean, WPE) for a data dir "
                                             "(see module doc).")
    ap.add_argument("--data_dir", required=True, help="data dir whose wav.scp names <session>_Far_<ch>.wav files")
    ap.add_argument("--mode", required=True, choices=MODES,
                    help="ch0: wav.scp as it is; mean: channel average; wpe: multi-channel WPE")
    ap.add_argument("--out_dir", default=None, help="where <recording>.wav and the report go (mean, wpe)")
    ap.add_argument("--nj", type=int, default=1, help="parallel worker processes (recordings)")
    ap.add_argument("--num_channels", type=int, default=None,
                    help="expected far-array channels 0..C-1 (default: the largest count in the data dir)")
    args = ap.parse_args(argv)
    if args.nj < 1:
        ap.error("--nj must be >= 1")
    if args.num_channels is not None and args.num_channels < 1:
        ap.error("--num_channels must be >= 1")
    if args.mode != "ch0" and not args.out_dir:
        ap.error("--out_dir is required with --mode mean|wpe")
    try:
        rep = run(args.data_dir, args.mode, args.out_dir, nj=args.nj, num_channels=args.num_channels,
                  log=lambda m: print(m, file=sys.stderr, flush=True))
    except (FarFrontendError, DataDirError, MediaError) as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    if args.mode == "ch0":
        print(f"{args.data_dir}: --mode ch0, wav.scp names the channel files", flush=True)
        return 0
    print(f"{args.data_dir}: {args.mode} on {rep['recordings']} recordings ({rep['num_channels']} channels): "
          f"{len(rep['written'])} written, {len(rep['reused'])} reused, {len(rep['fallback'])} fallback, "
          f"{len(rep['not_far'])} not far-array, {rep['wall_seconds']:.1f} s "
          f"-> {os.path.join(os.path.abspath(args.out_dir), REPORT)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
