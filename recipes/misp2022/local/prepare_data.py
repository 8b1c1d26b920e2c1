#!/usr/bin/env python3
"""Stage 1 of recipes/misp2022: MISP2022 transcriptions -> Kaldi-style data dirs.

For each split, every ``transcription/<split>/<Session>_Near_<SpkID>.TextGrid`` is read
(tier ``内容层``; see ``local/misp.py`` for naming, decoding and text normalisation) and
each non-empty interval becomes one utterance of recording ``<Session>_Far``:

    <out_dir>/wav.scp     <Session>_Far  <misp_root>/audio/<split>/far/<Session>_Far_<channel>.wav
    <out_dir>/video.scp   <Session>_Far  <misp_root>/video/<split>/far/<Session>_Far.mp4
    <out_dir>/segments    <utt> <Session>_Far <start_s> <end_s>
    <out_dir>/text, utt2spk (S<SpkID>), spk2utt
    <out_dir>/skipped          what was left out and why (TSV: kind, id or file, reason)
    <out_dir>/prep_report.json the counts printed at the end

Media paths are written absolute.  What cannot be used is skipped, reported with the
file name, and counted:

* a TextGrid with a bad name, unreadable, or without the tier -> that file is skipped;
* a session whose far wav (of ``--channel``) or far mp4 is missing or unreadable
  -> the whole session is skipped;
* an interval that is only marks / punctuation, or shorter than 10 ms -> dropped;
* a segment ending after the end of the wav or the mp4 (+20 ms tolerance) -> skipped.

The data dir is built in a temporary sibling directory, validated
(:func:`avsr.data.datadir.validate_datadir`), and only then renamed into place.
Exit status 1 when a split ends up with no usable segment.

Usage::

    python local/prepare_data.py --misp_root /data/misp2022 --splits train dev eval \\
        --data_dir data --suffix _all --channel 0
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import sys
from typing import Dict, List, Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import misp  # noqa: E402  (local/misp.py)

from avsr.data.datadir import (DataDir, Segment, audio_duration, segments_outside,  # noqa: E402
                               validate_datadir, video_duration, write_datadir)
from frontends.errors import MediaError  # noqa: E402


def log(msg: str) -> None:
    print(msg, flush=True)


class SplitReport:
    def __init__(self, split: str):
        self.split = split
        self.sessions_found = 0
        self.sessions_kept = 0
        self.textgrids_found = 0
        self.textgrids_used = 0
        self.segments_found = 0
        self.segments_kept = 0
        self.skipped_sessions: collections.Counter = collections.Counter()
        self.skipped_textgrids: collections.Counter = collections.Counter()
        self.skipped_segments: collections.Counter = collections.Counter()
        self.rows: List[tuple] = []  # (kind, id, reason)

    def skip(self, kind: str, ident: str, reason: str, category: str) -> None:
        {"session": self.skipped_sessions, "textgrid": self.skipped_textgrids,
         "segment": self.skipped_segments}[kind][category] += 1
        self.rows.append((kind, ident, reason.replace("\t", " ").replace("\n", " ")))

    def as_dict(self) -> Dict:
        return {
            "split": self.split,
            "sessions": {"found": self.sessions_found, "kept": self.sessions_kept,
                         "skipped": dict(sorted(self.skipped_sessions.items()))},
            "textgrids": {"found": self.textgrids_found, "used": self.textgrids_used,
                          "skipped": dict(sorted(self.skipped_textgrids.items()))},
            "segments": {"found": self.segments_found, "kept": self.segments_kept,
                         "skipped": dict(sorted(self.skipped_segments.items()))},
        }

    def skipped_tsv(self) -> str:
        return "".join(f"{k}\t{i}\t{r}\n" for k, i, r in self.rows)

    def print_summary(self) -> None:
        d = self.as_dict()
        log(f"[{self.split}] sessions: {d['sessions']['found']} found, {d['sessions']['kept']} kept"
            + _fmt_skips(d["sessions"]["skipped"]))
        log(f"[{self.split}] TextGrids: {d['textgrids']['found']} found, {d['textgrids']['used']} used"
            + _fmt_skips(d["textgrids"]["skipped"]))
        log(f"[{self.split}] segments: {d['segments']['found']} found, {d['segments']['kept']} kept"
            + _fmt_skips(d["segments"]["skipped"]))


def _fmt_skips(c: Dict[str, int]) -> str:
    if not c:
        return ""
    return "; skipped: " + ", ".join(f"{n} {k}" for k, n in c.items())


def prepare_split(misp_root: str, split: str, out_dir: str, channel: int = 0) -> SplitReport:
    root = os.path.abspath(misp_root)
    rep = SplitReport(split)
    tdir = misp.transcription_dir(root, split)
    if not os.path.isdir(tdir):
        raise SystemExit(f"ERROR: {tdir}: transcription directory not found")

    # ---- TextGrids, grouped by session
    by_session: Dict[str, Dict[str, str]] = collections.defaultdict(dict)
    for name in sorted(os.listdir(tdir)):
        if not name.lower().endswith(".textgrid"):
            continue
        rep.textgrids_found += 1
        path = os.path.join(tdir, name)
        nn = misp.parse_near_name(name)
        if nn is None:
            log(f"WARNING: {path}: file name is not <Session>_Near_<SpkID>.TextGrid; skipped")
            rep.skip("textgrid", path, "bad file name", "bad file name")
            continue
        by_session[nn.session][nn.spk] = path
    rep.sessions_found = len(by_session)

    dd = DataDir()
    for session in sorted(by_session):
        rec = misp.recording_id(session)
        wav = misp.far_wav_path(root, split, session, channel)
        mp4 = misp.far_video_path(root, split, session)
        # ---- media first: a session without usable media is skipped as a whole
        try:
            wav_dur = audio_duration(wav)
        except MediaError as e:
            cat = "missing wav" if not os.path.exists(wav) else "unreadable wav"
            log(f"ERROR: {e} -- session {session} skipped")
            rep.skip("session", session, str(e), cat)
            continue
        try:
            vid_dur = video_duration(mp4)
        except MediaError as e:
            cat = "missing mp4" if not os.path.exists(mp4) else "unreadable mp4"
            log(f"ERROR: {e} -- session {session} skipped")
            rep.skip("session", session, str(e), cat)
            continue

        segs: Dict[str, Segment] = {}
        texts: Dict[str, str] = {}
        spks: Dict[str, str] = {}
        for spk in sorted(by_session[session]):
            tg = by_session[session][spk]
            try:
                intervals = misp.read_tier(tg)
            except misp.TextGridError as e:
                log(f"ERROR: {e} -- file skipped")
                rep.skip("textgrid", tg, e.reason, e.kind)
                continue
            rep.textgrids_used += 1
            for start, end, label in intervals:
                rep.segments_found += 1
                text = misp.normalize_text(label)
                s_u, e_u = misp.time_units(start), misp.time_units(end)
                utt = misp.utterance_id(spk, session, s_u, e_u)
                if not text:
                    cat = "only non-speech marks" if misp.has_mark(label) else "no speech characters"
                    rep.skip("segment", utt, f"{cat}: {label.strip()!r}", cat)
                    continue
                if e_u <= s_u:
                    rep.skip("segment", utt, f"shorter than 10 ms ({start:.3f}-{end:.3f} s)",
                             "too short")
                    continue
                if utt in segs:
                    rep.skip("segment", utt, f"duplicate id in {tg}", "duplicate id")
                    continue
                segs[utt] = Segment(rec, s_u / 100.0, e_u / 100.0)
                texts[utt] = text
                spks[utt] = misp.speaker_id(spk)
        if not segs:
            log(f"WARNING: session {session}: no usable segment in its TextGrids; skipped")
            rep.skip("session", session, "no usable segment", "no usable segment")
            continue

        # ---- segments outside the media
        for kind, dur, path in (("wav", wav_dur, wav), ("mp4", vid_dur, mp4)):
            bad = segments_outside(segs, {rec: dur}, kind=kind)
            if bad:
                latest = max(segs[u].end for u in bad)
                log(f"WARNING: {path}: {kind} is {dur:.2f} s but {len(bad)} segment(s) end after it "
                    f"(latest {latest:.2f} s); skipped")
                for u, r in sorted(bad.items()):
                    rep.skip("segment", u, f"{r} {path}", f"beyond {kind} end")
                    del segs[u], texts[u], spks[u]
        if not segs:
            rep.skip("session", session, "all segments outside the media", "no usable segment")
            continue

        rep.sessions_kept += 1
        rep.segments_kept += len(segs)
        dd.segments.update(segs)
        dd.text.update(texts)
        dd.utt2spk.update(spks)
        dd.wav[rec] = wav
        dd.video[rec] = mp4

    if not dd.utt2spk:
        rep.print_summary()
        raise SystemExit(f"ERROR: split {split}: no usable segments under {root}")
    report = rep.as_dict()
    write_datadir(dd, out_dir, extra_files={
        "skipped": rep.skipped_tsv(),
        "prep_report.json": json.dumps(report, indent=2, ensure_ascii=False) + "\n"})
    res = validate_datadir(out_dir, check_media=False, require_video=True)
    if not res.ok:  # write_datadir already validated; this guards the renamed copy
        raise SystemExit(f"ERROR: {out_dir} failed validation:\n{res.report()}")
    return rep


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--misp_root", required=True, help="corpus root (audio/ video/ transcription/ ...)")
    ap.add_argument("--splits", nargs="+", default=["train", "dev", "eval"])
    ap.add_argument("--data_dir", default="data", help="output base directory")
    ap.add_argument("--suffix", default="_all",
                    help="data dir name suffix: <data_dir>/<split><suffix> (default _all)")
    ap.add_argument("--channel", type=int, default=0, help="far-field channel for wav.scp")
    args = ap.parse_args(argv)
    if args.channel < 0:
        ap.error("--channel must be >= 0")

    reports = []
    for split in args.splits:
        out = os.path.join(args.data_dir, f"{split}{args.suffix}")
        log(f"== {split}: {misp.transcription_dir(os.path.abspath(args.misp_root), split)} -> {out}")
        rep = prepare_split(args.misp_root, split, out, args.channel)
        reports.append(rep)
    log("== summary")
    for rep in reports:
        rep.print_summary()
    return 0


if __name__ == "__main__":
    sys.exit(main())
