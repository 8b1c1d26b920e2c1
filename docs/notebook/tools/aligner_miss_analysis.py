#!/usr/bin/env python3
"""Where the split rule's character midpoints miss the truth by more than 80 ms, on the scores stored by
``aligner_posterior_rule.py dump``: the errors of the misses, the share within 80 ms by position in the segment
(first, inner, last character) and by whether the two directions' midpoints agree within 80 ms.

    python docs/notebook/tools/aligner_miss_analysis.py --scores eval=S.pkl [--scores ...] --out J
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))


def main():
    from aligner_posterior_rule import direction_midpoints, load
    ap = argparse.ArgumentParser()
    ap.add_argument("--scores", action="append", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    res = {"command": " ".join([sys.executable] + sys.argv), "sets": {}}
    for name, dumped in load(a.scores).items():
        err, pos, disagree = [], [], []
        for r in dumped["rows"]:
            f, b = direction_midpoints(r)
            true = np.array([(s + e) / 2 for _, s, e in r["chars"]])
            err += list(r["start"] + (f + b) / 2 - true)     # as aligner_posterior_rule.midpoints
            n = len(true)
            pos += ["first" if i == 0 else "last" if i == n - 1 else "inner" for i in range(n)]
            disagree += list(np.abs(f - b) > 0.08)
        err, pos, disagree = np.abs(np.array(err)), np.array(pos), np.array(disagree)
        ok = err <= 0.08
        res["sets"][name] = {
            "scores": dumped["command"], "characters": int(len(err)), "within_80ms": round(float(ok.mean()) * 100, 2),
            "miss_abs_error_ms_quartiles_and_median": [round(float(q) * 1000, 1) for q in np.quantile(err[~ok], [0.25, 0.5, 0.75])],
            "misses_within_95ms_share": round(float((err[~ok] <= 0.095).mean()) * 100, 1),
            "within_80ms_by_position": {p: round(float(ok[pos == p].mean()) * 100, 1) for p in ("first", "inner", "last")},
            "share_inner": round(float((pos == "inner").mean()) * 100, 1),
            "directions_disagree_share": round(float(disagree.mean()) * 100, 1),
            "within_80ms_directions_disagree": round(float(ok[disagree].mean()) * 100, 1),
            "within_80ms_directions_agree": round(float(ok[~disagree].mean()) * 100, 1)}
        print(name, res["sets"][name], flush=True)
    with open(a.out, "w") as fh:
        json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()
