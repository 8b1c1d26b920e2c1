#!/usr/bin/env python3
"""Measure ``avsr decode`` on N wav+mp4 pairs (full-frame video + MISP detection JSON) of a
SynthMISP corpus split: per-step seconds (audio load, video decode, ROI, encoder, search), RTF and
peak memory.

    python scripts/bench_cli.py --model exp/.../packed/av0 --corpus corpora/synthmisp_mini --split eval \\
        --num 20 --out docs/results/bench_cli.json
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--split", default="eval")
    ap.add_argument("--num", type=int, default=20)
    ap.add_argument("--beam_size", type=int, default=10)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    vids = sorted(glob.glob(os.path.join(args.corpus, "video", args.split, "far", "*_Far.mp4")))[: args.num]
    if not vids:
        raise SystemExit(f"no videos under {args.corpus}/video/{args.split}/far")
    with tempfile.TemporaryDirectory() as d:
        tsv = os.path.join(d, "pairs.tsv")
        with open(tsv, "w") as f:
            for v in vids:
                sess = os.path.basename(v)[:-len("_Far.mp4")]
                wav = os.path.join(args.corpus, "audio", args.split, "far", f"{sess}_Far_0.wav")
                det = os.path.join(args.corpus, "roi_coordinates", args.split, "far", "lip", f"{sess}_Far.json")
                f.write(f"{sess}\t{wav}\t{v}\t{det}\n")
        summ = os.path.join(d, "summary.json")
        cmd = [sys.executable, "-m", "avsr.cli", "decode", "--model", args.model, "--pairs", tsv, "--output",
               os.path.join(d, "out.jsonl"), "--summary", summ, "--beam_size", str(args.beam_size), "--no_progress"]
        p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT})
        if p.returncode not in (0, 3):
            raise SystemExit(p.stderr[-3000:])
        out = json.load(open(summ))
    out.update({"model": os.path.abspath(args.model), "corpus": os.path.abspath(args.corpus), "split": args.split,
                "pairs_kind": "full-frame 640x360 h264 + detection JSON (far channel 0 wav)",
                "machine": machine_info(), "command": command_line()})
    emit(out, args.out)


if __name__ == "__main__":
    main()
