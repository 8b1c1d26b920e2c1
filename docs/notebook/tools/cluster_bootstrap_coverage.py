#!/usr/bin/env python
"""How often the toolkit's 95 % intervals (avsr.eval.claims.Resampler, by utterance and by recording)
cover the truth when an eval set has N recordings (sessions), written to a JSON with the command.

The "population" is one avsr eval sweep's eval set (its recordings, with their utterances' errors).
Each simulated eval set draws N of its recordings with replacement (a session is the unit the world
samples); the truth is the statistic on the whole set.  For each N and statistic, the share of
simulated sets whose interval covers the truth (nominal 0.95), and the mean half-width.  A third
kind, ``recording_t``, widens the recording bootstrap's resamples about their mean by
sqrt(N/(N-1)) * t_{N-1, 0.975} / z_{0.975} (the small-sample correction of cluster-robust inference: the
bootstrap's variance is short by (N-1)/N, and N clusters give N-1 degrees of freedom).

usage: cluster_bootstrap_coverage.py SWEEP.json OUT.json STAT [...] [--sims 1000] [--n 3 4 5 6 8 10 12 16]
            STAT: ROW@COND (a CER) or ROW@COND:OTHER@COND (a paired difference)
"""
import argparse
import json
import sys

import numpy as np

import avsr.eval.claims as claims
from avsr.eval.claims import UNITS, Resampler, _ci, utt_recordings

from scipy.stats import norm, t as t_dist

claims.MIN_RECORDINGS = 2       # the study measures below the toolkit's minimum too
WIDE = "recording_t"            # the recording intervals widened for few recordings (see the loop)


def stat(rs, spec):
    """(point, resampled values) of a CER or a paired difference, in points."""
    if ":" in spec:
        (row, cond), (other, ocond) = (x.split("@", 1) for x in spec.split(":"))
        return rs.point(row, cond) - rs.point(other, ocond), rs.boot(row, cond) - rs.boot(other, ocond)
    row, cond = spec.split("@", 1)
    return rs.point(row, cond), rs.boot(row, cond)


def cells(spec):
    return [tuple(x.split("@", 1)) for x in spec.split(":")]


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("sweep")
    ap.add_argument("out")
    ap.add_argument("stats", nargs="+")
    ap.add_argument("--sims", type=int, default=1000)
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--n", type=int, nargs="+", default=[3, 4, 5, 6, 8, 10, 12, 16])
    a = ap.parse_args(argv)
    sw = json.load(open(a.sweep, encoding="utf-8"))
    rec = np.asarray(utt_recordings(sw), dtype=str)
    labels = sorted(set(rec))
    by_rec = [np.flatnonzero(rec == r) for r in labels]
    need = {c for s in a.stats for c in cells(s)}
    full = Resampler(sw, num=2)
    truth = {s: stat(full, s)[0] for s in a.stats}
    res = {"command": "docs/notebook/tools/cluster_bootstrap_coverage.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "sweep": a.sweep, "population": {"recordings": len(labels), "utterances": len(rec)},
           "sims": a.sims, "resamples": a.resamples, "truth": {s: round(v, 3) for s, v in truth.items()},
           "coverage": {}}
    rng = np.random.default_rng(0)
    for n in a.n:
        hits = {u: {s: 0 for s in a.stats} for u in UNITS + (WIDE,)}
        width = {u: {s: [] for s in a.stats} for u in UNITS + (WIDE,)}
        for k in range(a.sims):
            pick = rng.integers(0, len(labels), n)
            idx = np.concatenate([by_rec[j] for j in pick])
            # each drawn recording is its own recording, also when drawn twice
            sub = {"utt_ref_chars": [sw["utt_ref_chars"][i] for i in idx],
                   "utt_recordings": [f"{labels[j]}#{t}" for t, j in enumerate(pick) for _ in by_rec[j]],
                   "utt_errors": {}}
            for m, c in need:
                sub["utt_errors"].setdefault(m, {})[c] = [sw["utt_errors"][m][c][i] for i in idx]
            for u in UNITS:
                rs = Resampler(sub, num=a.resamples, seed=k, unit=u, widen=False)   # plain; widened below
                for s in a.stats:
                    b = stat(rs, s)[1]
                    lo, hi = _ci(b)
                    hits[u][s] += lo <= truth[s] <= hi
                    width[u][s].append((hi - lo) / 2)
                    if u == "recording":        # widened about the mean by sqrt(n/(n-1)) t_{n-1} / z
                        f = np.sqrt(n / (n - 1)) * t_dist.ppf(0.975, n - 1) / norm.ppf(0.975)
                        lo, hi = _ci(b.mean() + f * (b - b.mean()))
                        hits[WIDE][s] += lo <= truth[s] <= hi
                        width[WIDE][s].append((hi - lo) / 2)
        res["coverage"][str(n)] = {u: {s: {"coverage": round(hits[u][s] / a.sims, 3),
                                           "mean_half_width": round(float(np.mean(width[u][s])), 2)}
                                       for s in a.stats} for u in UNITS + (WIDE,)}
        print(n, json.dumps(res["coverage"][str(n)]), flush=True)
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(res, f, indent=1, ensure_ascii=False)


if __name__ == "__main__":
    main()
