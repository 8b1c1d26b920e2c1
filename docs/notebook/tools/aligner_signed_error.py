#!/usr/bin/env python3
"""Signed midpoint errors (aligned minus true) of aligners on SynthMISP data dirs: the share within 80 ms, the
mean and median signed error, and (a diagnostic only: the shift is read off the truth) the share within 80 ms
after subtracting the aligner's own median error.

    python docs/notebook/tools/aligner_signed_error.py --corpus C --data_dir D [--data_dir D2] --out J ALIGNER_DIR ...
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main():
    from aligner_by_voice import aligned_segments
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--data_dir", action="append", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("aligners", nargs="+")
    a = ap.parse_args()
    res = {"command": " ".join([sys.executable] + sys.argv), "aligners": {}}
    for al in a.aligners:
        for d in a.data_dir:
            e = np.array([(x.start + x.end) / 2 - (s + t) / 2 for st, tt in aligned_segments(al, a.corpus, d)
                          for x, (_, s, t) in zip(tt, st.chars)])
            med = float(np.median(e))
            r = {"characters": len(e), "within_80ms": round(float((abs(e) < 0.08).mean()), 4),
                 "mean_ms": round(float(e.mean()) * 1000, 1), "median_ms": round(med * 1000, 1),
                 "within_80ms_after_own_median_shift": round(float((abs(e - med) < 0.08).mean()), 4)}
            res["aligners"].setdefault(al, {})[os.path.basename(os.path.normpath(d))] = r
            print(al, d, r, flush=True)
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
