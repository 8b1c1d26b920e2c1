"""The claims of Dai et al. (CVPR 2024) tested on an ``avsr eval`` sweep (``sweep.json`` as a dict).

* :func:`mean_cer`: mean CER of a model over conditions (the dev criterion of the row choices);
* :func:`paired`: paired bootstrap (:func:`avsr.eval.metrics.paired_bootstrap`) of two models at one condition;
* :func:`claims`: claims 1-3 (bias reproduced, non-inferiority of AV6, superiority over dropout only);
* :func:`study_trend`: claim 4 over the study rows S.1 < S.3 < S.5 < S.7 (Kendall's tau).

The sweep must hold the models ``A0``, ``AV0`` and ``AV6`` (and the study rows for claim 4) and the
random-loss conditions of :data:`avsr.eval.sweep.RATES`.
"""
from __future__ import annotations

from avsr.eval.metrics import paired_bootstrap
from avsr.eval.sweep import RATES

__all__ = ["MARGIN", "STUDY_ROWS", "mean_cer", "paired", "claims", "study_trend", "kendall_tau"]

MARGIN = 0.005                              # non-inferiority margin, absolute CER
STUDY_ROWS = ("S.1", "S.3", "S.5", "S.7")   # training dropout rate 0.1 < 0.3 < 0.5 < 0.7


def mean_cer(sweep, model, conds):
    """Mean of ``model``'s CER over ``conds`` (condition names) in ``sweep``."""
    return sum(sweep["cer"][model][c]["cer"] for c in conds) / len(conds)


def paired(sweep, a, b, cond, seed=0):
    """Paired bootstrap (1000 resamples) of model ``b`` against ``a`` at ``cond``, over the sweep's utterances."""
    return paired_bootstrap(sweep["utt_errors"][a][cond], sweep["utt_errors"][b][cond], sweep["utt_ref_chars"],
                            num=1000, seed=seed)


def claims(sw, best_dropout):
    """Claims 1-3 on the eval sweep ``sw`` (paired bootstrap; B better than A when p < 0.05);
    ``best_dropout``: the dropout-only row chosen on dev (claim 3's comparison)."""
    r = {f"random@{x:g}": x for x in RATES}
    c0, c1 = "random@0", "random@1"
    out = {}
    p0, p1 = paired(sw, "A0", "AV0", c0), paired(sw, "AV0", "A0", c1)
    out["1_bias_reproduced"] = {
        "AV0_vs_A0_rate0": p0, "A0_vs_AV0_rate1": p1,
        "holds": p0["cer_b"] < p0["cer_a"] and p0["p_b_not_better"] < 0.05
                 and p1["cer_a"] > p1["cer_b"] and p1["p_b_not_better"] < 0.05}
    margin = MARGIN
    ni = {"AV6_vs_AV0_rate0": {"AV6": sw["cer"]["AV6"][c0]["cer"], "AV0": sw["cer"]["AV0"][c0]["cer"]}}
    ni["AV6_vs_AV0_rate0"]["holds"] = ni["AV6_vs_AV0_rate0"]["AV6"] <= ni["AV6_vs_AV0_rate0"]["AV0"] + margin
    per = {}
    for c in list(r) + [k for k in sw["conditions"] if not k.startswith("random@")]:
        a6, a0 = sw["cer"]["AV6"][c]["cer"], sw["cer"]["A0"][c]["cer"]
        per[c] = {"AV6": a6, "A0": a0, "holds": a6 <= a0 + margin}
    ni["AV6_vs_A0_every_condition"] = per
    ni["AV6_vs_A0_every_rate_holds"] = all(v["holds"] for k, v in per.items() if k in r)   # the A0 half
    ni["holds"] = ni["AV6_vs_AV0_rate0"]["holds"] and ni["AV6_vs_A0_every_rate_holds"]
    ni["margin_abs"] = margin
    out["2_non_inferiority"] = ni
    da = sw.get("degradation_area", {})
    sup = {"degradation_area": da, "best_dropout_only_row": best_dropout}
    if best_dropout in da and "AV6" in da and da[best_dropout] > 0:
        sup["area_reduction_vs_best_dropout"] = 1 - da["AV6"] / da[best_dropout]
    sup["AV6_vs_AV0_rates_ge_0.5"] = {c: paired(sw, "AV0", "AV6", c) for c, x in r.items() if x >= 0.5}
    sup["holds"] = (sup.get("area_reduction_vs_best_dropout", -1) >= 0.20
                    and all(v["p_b_not_better"] < 0.05 for v in sup["AV6_vs_AV0_rates_ge_0.5"].values()))
    out["3_superiority"] = sup
    return out


def kendall_tau(v):
    """Kendall's tau of ``v`` against its order (+1: strictly rising, -1: strictly falling)."""
    pairs = [(i, j) for i in range(len(v)) for j in range(i + 1, len(v))]
    return sum((v[j] > v[i]) - (v[j] < v[i]) for i, j in pairs) / len(pairs)


def study_trend(sw, rows=STUDY_ROWS):
    """Claim 4 over ``rows`` (training dropout rate rising): relative CER against A0's output (mean over
    the random-loss rates) should fall, the A0 similarity (diagonal dominance at rate 0, and linear CKA)
    should rise.  Kendall's tau over the rows present (+1: rising); None with fewer than 2."""
    rows = [m for m in rows if m in sw["cer"]]
    if len(rows) < 2:
        return None
    rc = [c for c in sw["conditions"] if c.startswith("random@")]
    rel = [sum(sw["cer"][m][c]["relative_cer_vs_baseline"] for c in rc) / len(rc) for m in rows]
    dd = [sw["similarity"][m]["0"]["diagonal_dominance"] for m in rows]
    cka = [sw["similarity"][m]["0"]["linear_cka"] for m in rows]
    out = {"rows": rows, "relative_cer_mean": rel, "diagonal_dominance_rate0": dd, "linear_cka_rate0": cka,
           "kendall_tau": {"relative_cer": kendall_tau(rel), "diagonal_dominance": kendall_tau(dd),
                           "linear_cka": kendall_tau(cka)}}
    out["holds"] = out["kendall_tau"]["relative_cer"] < 0 and out["kendall_tau"]["diagonal_dominance"] > 0
    return out
