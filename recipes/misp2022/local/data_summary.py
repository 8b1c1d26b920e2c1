#!/usr/bin/env python3
"""Stage 4 of recipes/misp2022: per-split counts -> console table + ``data_summary.json``.

Reads, for each split, ``<data_dir>/<split>_all`` (stage 1, with ``prep_report.json``),
``<data_dir>/<split>`` (stage 2, the ROI-filtered dir with ``utt2num_roi_frames``,
``utt2roi_detected``) and ``<roi_dir>/<split>/roi_report.json``, plus the token lists
under ``<data_dir>/token_list``.  Missing pieces are reported as ``null``.

JSON layout::

    {"splits": {"train": {"sessions": .., "speakers": .., "utterances_all": ..,
                          "hours_all": .., "utterances": .., "hours": .., "roi_frames": ..,
                          "roi_hours": .., "mean_detected_fraction": ..,
                          "prep": {...prep_report...}, "roi_skipped_by_reason": {...}}, ...},
     "token_lists": {"char": 1234, "bpe_unigram500": 500}}
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Dict, Optional, Sequence

from avsr.data.datadir import DataDirError, read_datadir
from frontends.constants import VIDEO_FPS


def _load_json(path: str) -> Optional[Dict]:
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None


def split_summary(data_dir: str, roi_dir: str, split: str) -> Dict:
    out: Dict = {}
    all_dir = os.path.join(data_dir, f"{split}_all")
    out["prep"] = _load_json(os.path.join(all_dir, "prep_report.json"))
    try:
        dd_all = read_datadir(all_dir)
        out["utterances_all"] = len(dd_all.utt2spk)
        out["hours_all"] = round(dd_all.total_duration() / 3600.0, 4)
    except DataDirError:
        out["utterances_all"] = out["hours_all"] = None
    try:
        dd = read_datadir(os.path.join(data_dir, split))
    except DataDirError:
        dd = None
    if dd is not None:
        n_frames = [int(v) for v in dd.extra.get("utt2num_roi_frames", {}).values()]
        det = [float(v) for v in dd.extra.get("utt2roi_detected", {}).values()]
        out.update({
            "sessions": len(dd.wav),
            "speakers": len(set(dd.utt2spk.values())),
            "utterances": len(dd.utt2spk),
            "hours": round(dd.total_duration() / 3600.0, 4),
            "roi_utterances": len(dd.roi),
            "roi_frames": int(sum(n_frames)),
            "roi_hours": round(sum(n_frames) / float(VIDEO_FPS) / 3600.0, 4),
            "mean_detected_fraction": round(sum(det) / len(det), 4) if det else None,
            "characters": int(sum(len(t) for t in dd.text.values())),
        })
    else:
        out.update({k: None for k in ("sessions", "speakers", "utterances", "hours",
                                      "roi_utterances", "roi_frames", "roi_hours",
                                      "mean_detected_fraction", "characters")})
    rr = _load_json(os.path.join(roi_dir, split, "roi_report.json"))
    out["roi_skipped_by_reason"] = rr.get("skipped_by_reason") if rr else None
    out["roi_sessions_failed"] = rr.get("sessions_failed") if rr else None
    return out


def token_lists(data_dir: str) -> Dict[str, int]:
    base = os.path.join(data_dir, "token_list")
    out = {}
    if os.path.isdir(base):
        for name in sorted(os.listdir(base)):
            p = os.path.join(base, name, "tokens.txt")
            if os.path.isfile(p):
                with open(p, encoding="utf-8") as f:
                    out[name] = sum(1 for line in f if line.strip())
    return out


def _fmt(v, spec: str = "") -> str:
    return "-" if v is None else format(v, spec)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data_dir", default="data")
    ap.add_argument("--roi_dir", default="dump/roi")
    ap.add_argument("--splits", nargs="+", default=["train", "dev", "eval"])
    ap.add_argument("--output", required=True, help="JSON file to write")
    args = ap.parse_args(argv)

    summary = {"splits": {s: split_summary(args.data_dir, args.roi_dir, s) for s in args.splits},
               "token_lists": token_lists(args.data_dir)}
    hdr = f"{'split':<8}{'sessions':>9}{'spk':>5}{'utts(all)':>10}{'h(all)':>8}" \
          f"{'utts':>7}{'hours':>8}{'ROI frames':>11}{'det%':>6}  skipped"
    print(hdr)
    print("-" * len(hdr))
    for s, d in summary["splits"].items():
        skips = {}
        prep = d.get("prep") or {}
        for part, label in (("segments", "prep"), ("sessions", "prep session"), ("textgrids", "prep TextGrid")):
            block = prep.get(part)
            if isinstance(block, dict):      # a TextGrid-prepared split (a segment-file split has counts only)
                for k, n in (block.get("skipped") or {}).items():
                    skips[f"{label}:{k}"] = n
        for k, n in (d.get("roi_skipped_by_reason") or {}).items():
            skips[f"roi:{k}"] = n
        det = d.get("mean_detected_fraction")
        print(f"{s:<8}{_fmt(d.get('sessions')):>9}{_fmt(d.get('speakers')):>5}"
              f"{_fmt(d.get('utterances_all')):>10}{_fmt(d.get('hours_all'), '.3f'):>8}"
              f"{_fmt(d.get('utterances')):>7}{_fmt(d.get('hours'), '.3f'):>8}"
              f"{_fmt(d.get('roi_frames')):>11}{_fmt(None if det is None else det * 100, '.1f'):>6}  "
              + (", ".join(f"{n} {k}" for k, n in skips.items()) or "none"))
    for s, d in summary["splits"].items():
        prep = d.get("prep") or {}
        if prep.get("segment_file"):
            print(f"{s}: from the segment file {prep['segment_file']} ({prep.get('segments')} segments; "
                  f"reference text {prep.get('text', '?')})")
    for name, n in summary["token_lists"].items():
        print(f"token list {name}: {n} tokens")
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    tmp = f"{args.output}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, args.output)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
