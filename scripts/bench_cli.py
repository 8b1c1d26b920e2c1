#!/usr/bin/env python3
"""Measure ``avsr decode`` on N wav+mp4 pairs (full-frame video + MISP detection JSON) of a
SynthMISP corpus split: per-step seconds (audio load, video decode, ROI, encoder, search), RTF and
peak memory.

    python scripts/bench_cli.py --model exp/.../packed/av0 --corpus corpora/synthmisp_mini --split eval \\
        --num 20 --out docs/results/bench_cli.json

``--before_after``: decode the same pairs with ``--video_memory hold`` (the earlier path: every frame
of a video decoded into memory, then cropped) and ``--video_memory stream`` (cropped while decoding),
alternating ``--rounds`` times in one run, each in its own process; reports each run's peak RSS and
steps, and whether the JSON lines' texts are identical.  ``--split`` takes a comma list
(``eval,dev,train``) to gather ``--num`` pairs from several splits; lip boxes are read from
``roi_coordinates/<split>/far/lip/`` (else ``detection/<split>/far/``).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench_common import command_line, emit, machine_info  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_pairs(corpus, vids, tsv):
    with open(tsv, "w") as f:
        for split, v in vids:
            sess = os.path.basename(v)[:-len("_Far.mp4")]
            wav = os.path.join(corpus, "audio", split, "far", f"{sess}_Far_0.wav")
            det = os.path.join(corpus, "roi_coordinates", split, "far", "lip", f"{sess}_Far.json")
            if not os.path.exists(det):
                det = os.path.join(corpus, "detection", split, "far", f"{sess}_Far.json")
            f.write(f"{sess}\t{wav}\t{v}\t{det}\n")


def _rss_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def run_decode(args, tsv, d, tag, extra):
    """One ``avsr decode`` process; returns (summary, texts, sampled RSS trace [(s, MB)])."""
    import time
    summ, out = os.path.join(d, f"summary_{tag}.json"), os.path.join(d, f"out_{tag}.jsonl")
    cmd = [sys.executable, "-m", "avsr.cli", "decode", "--model", args.model, "--pairs", tsv, "--output", out,
           "--summary", summ, "--beam_size", str(args.beam_size),
           "--batch_size", str(args.batch_size), "--no_progress"] + extra
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": ROOT})
    trace = []
    while p.poll() is None:
        r = _rss_mb(p.pid)
        if r is not None:
            trace.append((round(time.perf_counter() - t0, 2), round(r, 1)))
        time.sleep(0.05)
    _o, err = p.communicate()
    if p.returncode not in (0, 3):
        raise SystemExit(err[-3000:])
    texts = [(r["key"], r["text"]) for r in map(json.loads, open(out, encoding="utf-8"))]
    return json.load(open(summ)), texts, trace


def before_after(args, vids):
    import statistics
    runs = {"before": [], "after": []}
    texts = {}
    with tempfile.TemporaryDirectory() as d:
        tsv = os.path.join(d, "pairs.tsv")
        write_pairs(args.corpus, vids, tsv)
        for k in range(args.rounds):
            for tag, extra in (("before", ["--video_memory", "hold"]), ("after", ["--video_memory", "stream"])):
                summ, tx, trace = run_decode(args, tsv, d, f"{tag}{k}", extra)
                summ["rss_trace_max_mb"] = max((r for _t, r in trace), default=None)
                summ["rss_trace_1s_mb"] = next((r for t, r in trace if t >= 1.0), None)
                runs[tag].append(summ)
                texts.setdefault(tag, tx)
                if tx != texts[tag]:
                    raise SystemExit(f"{tag}: texts differ between rounds")
    med = {tag: {"peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in rs),
                 "wall_seconds": statistics.median(r["wall_seconds"] for r in rs),
                 "video_decode_plus_roi_seconds": statistics.median(
                     r["steps_seconds"]["video_decode"] + r["steps_seconds"]["roi"] for r in rs)}
           for tag, rs in runs.items()}
    same = texts["before"] == texts["after"]
    out = {"model": os.path.abspath(args.model), "corpus": os.path.abspath(args.corpus), "split": args.split,
           "pairs": len(vids), "pairs_kind": "full-frame 640x360 h264 + detection JSON (far channel 0 wav)",
           "before": "avsr decode --video_memory hold (whole video decoded into memory, then cropped)",
           "after": "avsr decode --video_memory stream (cropped while decoding)",
           "rounds": args.rounds, "median": med, "runs": runs,
           "texts_identical": same, "texts_compared": len(texts["after"]),
           "differing_keys": [a[0] for a, b in zip(texts["before"], texts["after"]) if a != b],
           "machine": machine_info(), "command": command_line()}
    for tag in runs:
        for r in runs[tag]:
            r.pop("search", None)
    out["search"] = f"beam{args.beam_size}"
    out["batch_size"] = args.batch_size
    emit(out, args.out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--split", default="eval")
    ap.add_argument("--num", type=int, default=20)
    ap.add_argument("--beam_size", type=int, default=10)
    ap.add_argument("--batch_size", type=int, default=16, help="avsr decode --batch_size (segments per batch) [16]")
    ap.add_argument("--out", default=None)
    ap.add_argument("--before_after", action="store_true", help="--video_memory hold vs stream, alternating")
    ap.add_argument("--rounds", type=int, default=1, help="before/after pairs of runs with --before_after [1]")
    args = ap.parse_args()
    vids = []
    for split in args.split.split(","):
        for v in sorted(glob.glob(os.path.join(args.corpus, "video", split, "far", "*_Far.mp4"))):
            vids.append((split, v))
    vids = vids[: args.num]
    if not vids:
        raise SystemExit(f"no videos under {args.corpus}/video/{args.split}/far")
    if args.before_after:
        return before_after(args, vids)
    with tempfile.TemporaryDirectory() as d:
        tsv = os.path.join(d, "pairs.tsv")
        write_pairs(args.corpus, vids, tsv)
        summ = os.path.join(d, "summary.json")
        cmd = [sys.executable, "-m", "avsr.cli", "decode", "--model", args.model, "--pairs", tsv, "--output",
               os.path.join(d, "out.jsonl"), "--summary", summ, "--beam_size", str(args.beam_size),
           "--batch_size", str(args.batch_size), "--no_progress"]
        p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT})
        if p.returncode not in (0, 3):
            raise SystemExit(p.stderr[-3000:])
        out = json.load(open(summ))
    out.update({"model": os.path.abspath(args.model), "corpus": os.path.abspath(args.corpus), "split": args.split,
                "batch_size": args.batch_size,
                "pairs_kind": "full-frame 640x360 h264 + detection JSON (far channel 0 wav)",
                "machine": machine_info(), "command": command_line()})
    emit(out, args.out)


if __name__ == "__main__":
    main()
