"""Choose the shallow-fusion LM weight on dev (``avsr select_lm_weight``): the recipe's selection step.

    python -m avsr.bin.select_lm_weight --decode_dirs 0=exp/lm/dev/av0_lm0 0.2=exp/lm/dev/av0_lm0.2 ... \\
        --out exp/lm/lm_weight_dev.json [--model av0] [--set dev]

Each ``WEIGHT=DIR`` is an ``avsr decode`` output dir (its ``result.json``) of the same model and set at
that ``--lm_weight``.  The chosen weight has the lowest CER (:func:`avsr.lm.choose_lm_weight`; a tie
goes to the smaller weight).  The JSON holds the CER with its 95 % bootstrap interval per weight, the
chosen weight and, when 0 is in the grid, the paired comparison of the chosen weight against 0
(:func:`paired_change`).  Only dev decodes belong here: the weight is never chosen on eval.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Dict, Sequence

from avsr.bin import HelpFormatter


def paired_change(errors_a: Sequence[float], errors_b: Sequence[float], ref_lens: Sequence[float],
                  num: int = 1000, seed: int = 0) -> Dict:
    """System B against system A on the same utterances: ``cer_a``, ``cer_b``, ``diff_points``
    (``100 * (CER_B - CER_A)``, negative = B better) with its paired 95 % bootstrap interval
    ``diff_ci95``, and :func:`avsr.eval.metrics.paired_bootstrap`'s relative reduction, its interval
    and ``p_b_not_better`` (same resamples, same seed)."""
    import numpy as np
    from avsr.eval.metrics import _resample_idx, paired_bootstrap
    a, b, n = (np.asarray(x, dtype=np.float64) for x in (errors_a, errors_b, ref_lens))
    out = paired_bootstrap(a, b, n, num=num, seed=seed)
    idx = _resample_idx(len(a), num, seed)
    den = np.maximum(n[idx].sum(1), 1e-12)
    d = 100 * (b[idx].sum(1) - a[idx].sum(1)) / den
    lo, hi = np.percentile(d, [2.5, 97.5])
    out["diff_points"] = 100 * (out["cer_b"] - out["cer_a"])
    out["diff_ci95"] = [float(lo), float(hi)]
    return out


def read_result(d: str) -> Dict:
    p = os.path.join(d, "result.json")
    if not os.path.isfile(p):
        raise FileNotFoundError(f"{p}: not found (decode not finished?)")
    with open(p, encoding="utf-8") as f:
        r = json.load(f)
    if r.get("cer") is None or "per_utt" not in r:
        raise ValueError(f"{p}: no CER (a set without references cannot choose the LM weight)")
    return r


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="avsr select_lm_weight", description=__doc__.split("\n\n")[0],
                                 formatter_class=HelpFormatter, epilog=__doc__)
    ap.add_argument("--decode_dirs", nargs="+", required=True, metavar="WEIGHT=DIR",
                    help="avsr decode output dirs of the same model and dev set, one per LM weight")
    ap.add_argument("--out", required=True, help="JSON to write")
    ap.add_argument("--model", default=None, help="name of the model decoded (recorded)")
    ap.add_argument("--set", default="dev", help="name of the set decoded (recorded)")
    args = ap.parse_args(argv)
    from avsr.lm import choose_lm_weight

    dirs: Dict[float, str] = {}
    for spec in args.decode_dirs:
        w, sep, d = spec.partition("=")
        try:
            wf = float(w)
        except ValueError:
            wf = None
        if not sep or wf is None or wf < 0:
            raise ValueError(f"--decode_dirs expects WEIGHT=DIR with WEIGHT >= 0, got {spec!r}")
        dirs[wf] = d
    res = {w: read_result(d) for w, d in dirs.items()}
    utts = sorted(next(iter(res.values()))["per_utt"])
    for w, r in res.items():
        if sorted(r["per_utt"]) != utts:
            raise ValueError(f"{os.path.join(dirs[w], 'result.json')}: other utterances than the other weights' "
                             "decodes (decode the same set)")
    cer = {w: float(r["cer"]) for w, r in res.items()}
    chosen = choose_lm_weight(cer)
    out = {"model": args.model, "set": args.set, "rule": "lowest CER; a tie goes to the smaller weight",
           "weights": sorted(cer), "chosen": chosen,
           "cer": {f"{w:g}": cer[w] for w in sorted(cer)},
           "ci95": {f"{w:g}": [res[w].get("lo"), res[w].get("hi")] for w in sorted(cer)},
           "num_utts": len(utts), "decode_dirs": {f"{w:g}": os.path.abspath(dirs[w]) for w in sorted(cer)}}
    if 0.0 in res:
        ref = [res[0.0]["per_utt"][u][1] for u in utts]
        out["chosen_vs_0"] = paired_change([res[0.0]["per_utt"][u][0] for u in utts],
                                           [res[chosen]["per_utt"][u][0] for u in utts], ref)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1)
    os.replace(tmp, args.out)
    table = ", ".join(f"{w:g}: {100 * cer[w]:.2f} %" for w in sorted(cer))
    print(f"{args.set} CER by LM weight ({args.model or 'model'}): {table}; chosen {chosen:g} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
