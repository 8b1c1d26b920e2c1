#!/usr/bin/env python3
"""Paired comparison of two aligners' timing on a SynthMISP data dir: the share of character midpoints within
80 ms of the truth, B minus A in points, with 95 % bootstrap intervals over segments and over sessions
(1,000 resamples) and ``p``, the share of resamples in which B is not better.

    python docs/notebook/tools/aligner_paired.py --a DIR_A --b DIR_B --corpus C --data_dir D [--data_dir D2] --out J
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def counts(aligner_dir, corpus, data_dir):
    """Per segment: (session, characters within 80 ms, characters)."""
    from aligner_by_voice import aligned_segments
    return [(st.session, sum(abs((x.start + x.end) / 2 - (a + b) / 2) < 0.08 for x, (_, a, b) in zip(tt, st.chars)),
             len(st.chars)) for st, tt in aligned_segments(aligner_dir, corpus, data_dir)]


def paired(ca, cb, unit, num=1000, seed=0):
    keys = [c[0] if unit == "session" else i for i, c in enumerate(ca)]
    groups = sorted(set(keys), key=str)
    gi = {g: i for i, g in enumerate(groups)}
    oa, ob, n = (np.zeros(len(groups)) for _ in range(3))
    for k, a, b in zip(keys, ca, cb):
        oa[gi[k]] += a[1]
        ob[gi[k]] += b[1]
        n[gi[k]] += a[2]
    idx = np.random.default_rng(seed).integers(0, len(groups), size=(num, len(groups)))
    d = (ob[idx].sum(1) - oa[idx].sum(1)) / n[idx].sum(1) * 100
    lo, hi = np.percentile(d, [2.5, 97.5])
    return {"units": len(groups), "diff_points": round(float((ob.sum() - oa.sum()) / n.sum() * 100), 2),
            "ci95": [round(float(lo), 2), round(float(hi), 2)], "p_b_not_better": round(float(np.mean(d <= 0)), 4)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--a", required=True)
    ap.add_argument("--b", required=True)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--data_dir", action="append", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    res = {"command": " ".join([sys.executable] + sys.argv), "a": args.a, "b": args.b, "sets": {}}
    for d in args.data_dir:
        ca, cb = counts(args.a, args.corpus, d), counts(args.b, args.corpus, d)
        n = sum(c[2] for c in ca)
        res["sets"][os.path.basename(d.rstrip("/"))] = {
            "characters": n, "a_within_80ms": round(sum(c[1] for c in ca) / n, 4),
            "b_within_80ms": round(sum(c[1] for c in cb) / n, 4),
            "by_segment": paired(ca, cb, "segment"), "by_session": paired(ca, cb, "session")}
    with open(args.out, "w") as f:
        json.dump(res, f, indent=1)
    print(json.dumps(res["sets"], indent=1))


if __name__ == "__main__":
    main()
