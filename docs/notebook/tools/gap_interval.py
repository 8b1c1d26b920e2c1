#!/usr/bin/env python
"""Train-dev CER gap of one model with a 95 % bootstrap interval: two decode dirs (``avsr decode
--data_dir``: ``text``) of two data dirs, utterances resampled independently in each (2,000 resamples).

usage: gap_interval.py OUT.json TRAIN_DATA TRAIN_DECODE DEV_DATA DEV_DECODE
"""
import json
import sys

import numpy as np

from avsr.data.datadir import read_datadir
from avsr.eval.metrics import read_text_file, utt_errors


def errs(data, dec):
    dd, hyp = read_datadir(data), read_text_file(f"{dec}/text")
    ee = np.array([utt_errors(dd.text[u], hyp.get(u, "")) for u in sorted(dd.text)], dtype=float)
    return ee[:, 0], ee[:, 1]


def main(argv):
    out, td, tdec, dd, ddec = argv
    (te, tn), (de, dn) = errs(td, tdec), errs(dd, ddec)
    rng = np.random.default_rng(0)
    boots = []
    for _ in range(2000):
        i, j = rng.integers(0, len(te), len(te)), rng.integers(0, len(de), len(de))
        boots.append(100 * (de[j].sum() / dn[j].sum() - te[i].sum() / tn[i].sum()))
    res = {"command": "docs/notebook/tools/gap_interval.py " + " ".join(argv),
           "train": {"utts": len(te), "cer": round(100 * te.sum() / tn.sum(), 2)},
           "dev": {"utts": len(de), "cer": round(100 * de.sum() / dn.sum(), 2)},
           "gap": round(100 * (de.sum() / dn.sum() - te.sum() / tn.sum()), 2),
           "gap_ci95": [round(float(x), 2) for x in np.percentile(boots, [2.5, 97.5])]}
    json.dump(res, open(out, "w", encoding="utf-8"), indent=1)
    print(json.dumps(res))


if __name__ == "__main__":
    main(sys.argv[1:])
