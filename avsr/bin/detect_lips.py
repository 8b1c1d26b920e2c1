"""Lip boxes for a data dir's far videos when the release gives none (``avsr detect_lips``).

    python -m avsr.bin.detect_lips --data_dir data/eval_all --out_dir data/lip_detect/eval \\
        [--detector haar] [--stride 5] [--max_width 640]

For every recording of ``video.scp`` that has segments, the video is streamed once, faces are
detected on every ``--stride``-th frame, linked into tracks, and each speaker of the recording
(``utt2spk``: the digits of ``S016`` give the integer id 16, as the release's lip-box files write
it) is matched to the face whose mouth moves most while that speaker talks; the details are in
:mod:`frontends.face_tracks`.  Writes ``<out_dir>/<recording>.json`` in the release's frame-keyed
form (atomically; an existing file is kept, so an interrupted run resumes) and
``<out_dir>/detect_report.json`` (per recording: tracks, the speaker -> face choice with the
scores, or the error).  A recording whose video cannot be read is reported and skipped; the others
go on.  Speakers left without a face get no boxes: their segments are decoded audio-only.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import re
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

from avsr.bin import HelpFormatter
from frontends.constants import VIDEO_FPS


def _speaker_number(spk: str) -> Optional[int]:
    m = re.search(r"(\d+)$", spk)
    return int(m.group(1)) if m else None


def _atomic_json(path: str, obj) -> None:
    from avsr.utils.io import write_text_atomic
    write_text_atomic(path, json.dumps(obj, ensure_ascii=False, separators=(",", ":")))


def detect_recording(video: str, speaker_ranges: Dict[int, List[Tuple[int, int]]], detector, *,
                     stride: int, max_width: int) -> Tuple[dict, dict]:
    """(frame-keyed lip-box mapping, report entry) for one far video."""
    from frontends.face_tracks import assign_speakers, detect_session, link_tracks, official_entries

    hits, n_frames = detect_session(video, detector, stride=stride, max_width=max_width)
    tracks = link_tracks(hits, max_gap=5 * stride)
    assignment, scores = assign_speakers(tracks, speaker_ranges)
    entries = official_entries(tracks, assignment, stride=stride)
    rep = {"video": video, "frames": n_frames, "sampled_frames": len(hits),
           "faces_detected": sum(len(h) for h in hits), "tracks": len(tracks),
           "track_hits": [len(t.hits) for t in tracks],
           "speaker_track": {str(s): k for s, k in sorted(assignment.items())},
           "speakers_without_face": sorted(str(s) for s in speaker_ranges if s not in assignment),
           "scores": {str(s): {str(k): round(v, 3) for k, v in sorted(d.items())} for s, d in scores.items()}}
    return entries, rep


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="avsr detect_lips", description=__doc__.split("\n\n")[0],
                                 formatter_class=HelpFormatter)
    ap.add_argument("--data_dir", required=True, help="data dir with video.scp, segments, utt2spk")
    ap.add_argument("--out_dir", required=True, help="where <recording>.json and detect_report.json go")
    ap.add_argument("--detector", default="haar", help="offline face detector (frontends.face_detectors)")
    ap.add_argument("--stride", type=int, default=5, help="run the detector on every N-th frame")
    ap.add_argument("--max_width", type=int, default=960, help="detect on frames scaled down to this width")
    args = ap.parse_args(argv)
    if args.stride < 1 or args.max_width < 1:
        ap.error("--stride and --max_width must be >= 1")

    from avsr.data.datadir import DataDirError, read_datadir
    from frontends.errors import MediaError
    from frontends.face_detectors import get_detector

    try:
        dd = read_datadir(args.data_dir)
    except DataDirError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    if not dd.video:
        print(f"ERROR: {os.path.join(args.data_dir, 'video.scp')}: missing or empty", file=sys.stderr)
        return 1
    ranges: Dict[str, Dict[int, List[Tuple[int, int]]]] = collections.defaultdict(lambda: collections.defaultdict(list))
    for utt, seg in dd.segments.items():
        spk = _speaker_number(dd.utt2spk.get(utt, ""))
        if spk is None:
            print(f"WARNING: {args.data_dir}: speaker of {utt} has no number; no lip boxes for it", file=sys.stderr)
            continue
        ranges[seg.recording][spk].append((int(round(seg.start * VIDEO_FPS)), int(round(seg.end * VIDEO_FPS))))
    detector = get_detector(args.detector)
    os.makedirs(args.out_dir, exist_ok=True)
    report: Dict[str, dict] = {}
    t0 = time.time()
    for rec in sorted(ranges):
        out = os.path.join(args.out_dir, f"{rec}.json")
        if os.path.exists(out):
            report[rec] = {"reused": out}
            continue
        video = dd.video.get(rec)
        if video is None:
            report[rec] = {"error": f"{os.path.join(args.data_dir, 'video.scp')}: no entry for {rec}"}
            print(f"ERROR: {report[rec]['error']}; skipped", file=sys.stderr)
            continue
        try:
            entries, rep = detect_recording(video, dict(ranges[rec]), detector, stride=args.stride,
                                            max_width=args.max_width)
        except MediaError as e:
            report[rec] = {"error": str(e)}
            print(f"ERROR: {e} -- recording {rec} skipped", file=sys.stderr)
            continue
        _atomic_json(out, entries)
        report[rec] = rep
        print(f"{rec}: {rep['faces_detected']} faces in {rep['sampled_frames']} sampled frames, {rep['tracks']} "
              f"track(s); speaker -> track {rep['speaker_track']}"
              + (f"; no face for speaker(s) {', '.join(rep['speakers_without_face'])}"
                 if rep["speakers_without_face"] else ""), flush=True)
    _atomic_json(os.path.join(args.out_dir, "detect_report.json"),
                 {"command": " ".join(sys.argv), "detector": args.detector, "stride": args.stride,
                  "max_width": args.max_width, "seconds": round(time.time() - t0, 2), "recordings": report})
    failed = sum(1 for r in report.values() if "error" in r)
    print(f"{args.data_dir}: lip boxes for {len(report) - failed} of {len(report)} recording(s) -> {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
