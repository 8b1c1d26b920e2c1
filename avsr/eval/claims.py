"""The claims of Dai et al. (CVPR 2024) tested on an ``avsr eval`` sweep (``sweep.json`` as a dict).

Claims by intervals (what the leaderboard states, :func:`interval_claims`).  Every comparison resamples
the sweep's utterances with replacement (:data:`RESAMPLES` seeded draws, the same draws for every model
and condition, so each comparison is paired) and recomputes the corpus CERs in points (%); with
``unit="recording"`` each draw takes whole recordings (sessions) with all their utterances, a cluster
bootstrap (:class:`Resampler`).  Each claim
is ``True``, ``False`` or :data:`NOT_RESOLVED` (``"not resolved"``), with an evidence string quoting the
interval it was decided on:

* **not worse by more than m** (``row`` against ``other`` at a condition): the difference
  ``CER(row) - CER(other)`` in points has a paired 95 % interval ``[lo, hi]``.  ``True`` iff
  ``hi <= +m``; ``False`` iff ``lo > +m`` (the whole interval is beyond the margin); otherwise (the
  interval straddles ``+m``) not resolved.  The margin is :data:`MARGIN_POINTS` (0.5 points).
* **better** (``row`` better than ``other``): ``p`` = share of resamples in which ``row`` is not better
  (difference >= 0), a one-sided paired p-value.  ``True`` iff ``p < 0.05``; ``False`` iff ``lo >= 0``
  (the whole interval lies on the not-better side); otherwise (``p >= 0.05`` but the interval still
  reaches below 0) not resolved.
* The claims: 1 video helps (AV0 better than A0 at rate 0), 2 the bias (A0 better than AV0 at rate 1),
  3 AV6 not worse than AV0 at rate 0 (3a) and than A0 at every rate (3b) by more than the margin, and
  better than AV0 at every rate >= 0.5 (3c), 4 and 5 below (:func:`interval_claims`).
* **area at least 20 % below** (claim 4): the degradation area over :data:`~avsr.eval.sweep.PAPER_RATES`
  (trapezoid of ``CER(r) - CER_AV0(0)``, points x rate) of AV6 and of the best dropout-only row (chosen
  on dev, :func:`best_dropout_row`); the gap ``area(best) - area(AV6) - 0.2 |area(best)|`` (>= 0 iff
  AV6's area is at least 20 % below when the best row's area is positive) gets a 95 % interval.
  ``True`` iff its lower bound is >= 0; ``False`` iff its upper bound is < 0; otherwise not resolved.
* **trend** (claim 5): Kendall's tau (``scipy.stats.kendalltau``, tau-b) between the study rows'
  training dropout rates and a per-row statistic (their 5-rate degradation area), with a 95 %
  interval from recomputing tau on every resample (a resample where every row ties gives tau 0).
  For an expected falling trend ``True`` iff the whole interval is below 0; ``False`` iff the whole
  interval is >= 0; otherwise (the interval holds 0 and values below it) not resolved.
* A claim made of several comparisons is ``False`` when any part is ``False``, ``True`` when every part is
  ``True``, not resolved otherwise (:func:`all_of`).

The earlier point-estimate claims of the robustness tables (``docs/results/robust_*.json``) stay as
they were written:

* :func:`mean_cer`: mean CER of a model over conditions (the dev criterion of the row choices);
* :func:`paired`: paired bootstrap (:func:`avsr.eval.metrics.paired_bootstrap`) of two models at one condition;
* :func:`claims`: claims 1-3 (bias reproduced, non-inferiority of AV6, superiority over dropout only);
* :func:`study_trend`: claim 4 over the study rows S.1 < S.3 < S.5 < S.7 (Kendall's tau).

The sweep must hold the models ``A0``, ``AV0`` and ``AV6`` (and the study rows for the trend) and the
random-loss conditions of :data:`avsr.eval.sweep.RATES` (:data:`~avsr.eval.sweep.PAPER_RATES` for the
claims by intervals).
"""
from __future__ import annotations

import os
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from avsr.eval.metrics import paired_bootstrap
from avsr.eval.rows import tie_key
from avsr.eval.sweep import PAPER_RATES, RATES, degradation_area, sweep_areas

__all__ = ["MARGIN", "MARGIN_POINTS", "STUDY_ROWS", "STUDY_TRAIN_RATES", "NOT_RESOLVED", "RESAMPLES", "ALPHA",
           "AREA_REDUCTION", "mean_cer", "paired", "claims", "study_trend", "kendall_tau",
           "rate_condition", "resample_index", "UNITS", "MIN_RECORDINGS", "utt_recordings", "Resampler",
           "small_sample_factor", "cell_interval", "claims_with_goal",
           "paired_diff", "not_worse", "better", "all_of",
           "area_points", "best_dropout_row", "area_claim", "trend_claim", "interval_claims",
           "PRECISION_HALF_WIDTH", "precision_check"]

MARGIN = 0.005                              # non-inferiority margin, absolute CER
PRECISION_HALF_WIDTH = 1.0                  # points: the paired interval a bed must give to separate methods
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
    da = sweep_areas(sw["cer"], "AV0") or sw.get("degradation_area", {})     # the paper's rates
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


# ------------------------------------------------------------------------------------ claims by intervals
NOT_RESOLVED = "not resolved"
RESAMPLES = 1000                 # bootstrap resamples of the utterances
UNITS = ("utterance", "recording")   # what a resample draws (Resampler's unit)
MIN_RECORDINGS = 5               # fewer recordings give no usable spread to a bootstrap over recordings
ALPHA = 0.05                     # "better": one-sided paired p < ALPHA; intervals are 95 %
MARGIN_POINTS = 100 * MARGIN     # non-inferiority margin in CER points (0.5)
AREA_REDUCTION = 0.20            # claim 4: AV6's area at least 20 % below the best dropout-only row's
STUDY_TRAIN_RATES = {"S.1": 0.1, "S.3": 0.3, "S.5": 0.5, "S.7": 0.7}   # training dropout rate of each study row


def rate_condition(r) -> str:
    """The sweep's condition name of random frame loss at rate ``r`` (``random@0.25``)."""
    return f"random@{float(r):g}"


def resample_index(n: int, num: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """``[num, n]`` utterance indices drawn with replacement (seeded; the same draws as
    :func:`avsr.eval.metrics.bootstrap_ci` makes for the same ``n``, ``num`` and ``seed``)."""
    return np.random.default_rng(seed).integers(0, n, size=(num, n))


def utt_recordings(sw: Mapping) -> list:
    """The recording of each of a sweep's utterances (in ``utt_ids`` order): the sweep's
    ``utt_recordings`` (written by ``avsr eval`` from the data dir's ``segments``), else those of its
    ``data_dir`` (without ``segments`` each utterance is its own recording).  Raises ``KeyError``
    naming what is missing."""
    if sw.get("utt_recordings") is not None:
        rec = list(sw["utt_recordings"])
    else:
        from avsr.data.datadir import read_datadir
        ids, dd_path = sw.get("utt_ids"), str(sw.get("data_dir") or "")
        if not ids or not os.path.isfile(os.path.join(dd_path, "wav.scp")):
            raise KeyError("a bootstrap over recordings needs the sweep's utt_recordings (avsr eval writes them) "
                           f"or its utt_ids and its data_dir ({dd_path or 'none'}: no wav.scp)")
        dd = read_datadir(dd_path)
        lost = [u for u in ids if dd.segments and u not in dd.segments]
        if lost:
            raise KeyError(f"{dd_path}/segments: no segment for {len(lost)} of the sweep's utterances (first: {lost[0]})")
        rec = [dd.recording_of(u) for u in ids]
    if len(rec) != len(sw["utt_ref_chars"]):
        raise ValueError(f"the sweep has {len(rec)} utterance recordings for {len(sw['utt_ref_chars'])} utterances")
    return rec


class Resampler:
    """Corpus CERs in points of a sweep's cells (``utt_errors[model][condition]``, ``utt_ref_chars``),
    on the sweep's utterances (:meth:`point`) and on ``num`` seeded resamples of them, the same resamples
    for every cell (:meth:`boot`, an array of ``num`` CERs).

    ``unit``: what a resample draws with replacement.  ``"utterance"`` (default) draws utterances;
    ``"recording"`` draws whole recordings (a session's far-field array: every utterance of a drawn
    recording comes with it, :func:`utt_recordings`), a cluster bootstrap that keeps what the utterances
    of one session share (talkers, room, noise) inside each draw; its intervals are the honest ones when
    the eval set has few sessions (at least :data:`MIN_RECORDINGS`).  With few recordings a plain cluster
    bootstrap is too narrow (its variance is short by (G-1)/G, and G recordings give G-1 degrees of
    freedom), so over recordings every cell's resamples are widened about their mean by
    :func:`small_sample_factor` (1.58 at 5 recordings, 1.12 at 16; :attr:`widen`).  Measured on the demo
    preset's eval set (``docs/notebook/bootstrap_coverage.md``), this brings the coverage of the 95 %
    intervals from 0.78-0.84 to 0.91-0.95 at 5 recordings and from 0.92-0.94 to 0.95-0.96 at 16.  Every
    statistic made from the resamples (intervals, paired p, areas) uses the widened ones (``widen=False``:
    the plain cluster bootstrap).  The widening uses the two-sided 95 % quantile, so the one-sided p of
    "better" comes out a little conservative (x1.58 at 5 recordings where the one-sided t would give
    x1.45).  A single CER's interval can reach below 0 once widened; the intervals of cells are clipped
    at 0 where they are reported (:func:`cell_interval`), differences are not.  The corpus CER
    of a resample is the same ratio of summed errors to summed reference characters either way."""

    def __init__(self, sw: Mapping, num: int = RESAMPLES, seed: int = 0, unit: str = "utterance", widen: bool = True):
        if "utt_errors" not in sw or "utt_ref_chars" not in sw:
            raise KeyError("the sweep has no per-utterance errors (utt_errors, utt_ref_chars): "
                           "claims by intervals need avsr eval's sweep.json")
        if unit not in UNITS:
            raise ValueError(f"bootstrap unit must be one of {UNITS}, got {unit!r}")
        self.sw, self.num, self.seed, self.unit = sw, int(num), int(seed), unit
        n = np.asarray(sw["utt_ref_chars"], dtype=np.float64)
        if n.ndim != 1 or len(n) == 0:
            raise ValueError("the sweep's utt_ref_chars must be a non-empty list")
        self.n_utts = len(n)
        self.cluster = None                       # utterance -> cluster index (recordings), or None
        if unit == "recording":
            labels, self.cluster = np.unique(np.asarray(utt_recordings(sw), dtype=str), return_inverse=True)
            self.n_clusters = len(labels)
            if self.n_clusters < MIN_RECORDINGS:
                raise ValueError(f"a bootstrap over recordings needs at least {MIN_RECORDINGS} recordings; the sweep's "
                                 f"{self.n_utts} utterances come from {self.n_clusters} (use unit 'utterance')")
        self.n = self._sum(n)                     # reference characters per resampling unit
        self.widen = small_sample_factor(self.n_clusters) if self.cluster is not None and widen else 1.0
        self.idx = resample_index(len(self.n), self.num, self.seed)
        self.den = np.maximum(self.n[self.idx].sum(1), 1e-12)
        self._boot: Dict = {}

    @property
    def units(self) -> int:
        """How many units a resample draws (utterances, or recordings)."""
        return len(self.n)

    def describe(self) -> str:
        """``"1000 paired resamples of the 199 utterances"`` or ``"... of the 16 recordings (199 utterances),
        widened x1.12 for few recordings"``."""
        what = (f"the {self.units} utterances" if self.cluster is None
                else f"the {self.units} recordings ({self.n_utts} utterances)")
        wide = f", widened x{self.widen:.2f} for few recordings" if self.widen != 1.0 else ""
        return f"{self.num} paired resamples of {what}{wide}"

    def _sum(self, x: np.ndarray) -> np.ndarray:
        return x if self.cluster is None else np.bincount(self.cluster, weights=x, minlength=self.n_clusters)

    def has(self, model: str, cond: str) -> bool:
        return cond in (self.sw["utt_errors"].get(model) or {})

    def errors(self, model: str, cond: str) -> np.ndarray:
        try:
            e = np.asarray(self.sw["utt_errors"][model][cond], dtype=np.float64)
        except KeyError:
            raise KeyError(f"the sweep has no per-utterance errors of {model} at {cond}") from None
        if len(e) != self.n_utts or e.ndim != 1:
            raise ValueError(f"the sweep's errors of {model} at {cond} are for {len(e)} utterances, "
                             f"utt_ref_chars for {self.n_utts}")
        return self._sum(e)

    def point(self, model: str, cond: str) -> float:
        return float(100.0 * self.errors(model, cond).sum() / max(self.n.sum(), 1e-12))

    def boot(self, model: str, cond: str) -> np.ndarray:
        k = (model, cond)
        if k not in self._boot:
            b = 100.0 * self.errors(model, cond)[self.idx].sum(1) / self.den
            if self.widen != 1.0:
                b = b.mean() + self.widen * (b - b.mean())
            self._boot[k] = b
        return self._boot[k]


def small_sample_factor(clusters: int, level: float = 1 - ALPHA) -> float:
    """How much a bootstrap over ``clusters`` recordings widens its resamples about their mean:
    sqrt(G/(G-1)) * t_{G-1} / z at the interval's level (the variance correction and the t reference of
    cluster-robust inference with G clusters)."""
    from scipy.stats import norm, t
    g = int(clusters)
    if g < 2:
        raise ValueError(f"a bootstrap over recordings needs at least 2 of them, got {g}")
    q = 0.5 + level / 2
    return float(np.sqrt(g / (g - 1)) * t.ppf(q, g - 1) / norm.ppf(q))


def cell_interval(x: np.ndarray):
    """95 % interval of one cell's resampled CERs (points or fractions), clipped at 0 (a CER is never
    negative, but the widened resamples over few recordings can be)."""
    lo, hi = _ci(x)
    return [max(lo, 0.0), max(hi, 0.0)]


def _ci(x: np.ndarray):
    lo, hi = np.percentile(x, [100 * ALPHA / 2, 100 * (1 - ALPHA / 2)])
    return [float(lo), float(hi)]


def paired_diff(rs: Resampler, row: str, other: str, cond: str, other_cond: Optional[str] = None) -> Dict:
    """``CER(row) - CER(other)`` at ``cond`` in points: ``{"diff", "ci95": [lo, hi], "p", "cer_row",
    "cer_other"}``; ``p`` = share of resamples in which ``row`` is not better (difference >= 0).
    ``other_cond``: ``other``'s condition when it differs (one model with and without video)."""
    oc = cond if other_cond is None else other_cond
    d = rs.boot(row, cond) - rs.boot(other, oc)
    a, b = rs.point(row, cond), rs.point(other, oc)
    return {"diff": a - b, "ci95": _ci(d), "p": float(np.mean(d >= 0)), "cer_row": a, "cer_other": b}


def not_worse(pd: Mapping, margin: float = MARGIN_POINTS):
    """"Not worse by more than ``margin`` points" from :func:`paired_diff`: True iff the interval's upper
    bound is <= +margin, False iff its lower bound is > +margin, else :data:`NOT_RESOLVED`."""
    lo, hi = pd["ci95"]
    if hi <= margin:
        return True
    if lo > margin:
        return False
    return NOT_RESOLVED


def better(pd: Mapping, alpha: float = ALPHA):
    """"``row`` better than ``other``" from :func:`paired_diff`: True iff ``p < alpha``, False iff the
    interval's lower bound is >= 0 (no resample range on the better side), else :data:`NOT_RESOLVED`."""
    if pd["p"] < alpha:
        return True
    if pd["ci95"][0] >= 0:
        return False
    return NOT_RESOLVED


def all_of(values: Sequence):
    """Three-valued AND: False if any is False, True if all are True, else :data:`NOT_RESOLVED`."""
    values = list(values)
    if any(v is False for v in values):
        return False
    if values and all(v is True for v in values):
        return True
    return NOT_RESOLVED


def _pd_text(pd: Mapping, row: str, other: str, cond: str) -> str:
    lo, hi = pd["ci95"]
    return (f"{row} − {other} at {cond}: {pd['diff']:+.2f} points ({pd['cer_row']:.2f} vs {pd['cer_other']:.2f} %), "
            f"95 % CI [{lo:+.2f}, {hi:+.2f}], p {pd['p']:.3f}")


def area_points(cer_points: Mapping[str, float], ref0: float, rates: Sequence[float] = PAPER_RATES) -> float:
    """Degradation area over ``rates`` (the paper's grid by default) from ``{condition name: CER}``
    (``random@<r>`` keys) and the anchor ``ref0`` (AV0's CER at rate 0), in the units of the CERs x rate."""
    return degradation_area({float(r): cer_points[rate_condition(r)] for r in rates}, ref0)


def _trapz(ys: Sequence[np.ndarray], rates: Sequence[float]) -> np.ndarray:
    rs = [float(r) for r in rates]
    return sum((rs[i + 1] - rs[i]) * (ys[i] + ys[i + 1]) / 2.0 for i in range(len(rs) - 1))


def _areas(rs: Resampler, model: str, ref: str, rates: Sequence[float]):
    """(point area, resampled areas) of ``model`` in points x rate, anchored on ``ref`` at rate 0."""
    rates = sorted(float(r) for r in rates)
    p0, b0 = rs.point(ref, rate_condition(0)), rs.boot(ref, rate_condition(0))
    point = area_points({rate_condition(r): rs.point(model, rate_condition(r)) for r in rates}, p0, rates)
    boot = _trapz([rs.boot(model, rate_condition(r)) - b0 for r in rates], rates)
    return point, boot


def best_dropout_row(dev: Mapping, rows: Sequence[str], ref: str = "AV0", rates: Sequence[float] = PAPER_RATES):
    """The dropout-only row (of ``rows``, in the order given) with the lowest degradation area over
    ``rates`` on the DEV sweep ``dev`` (point CERs, ``dev["cer"][row][condition]["cer"]``); ties go to the
    earlier row.  Returns ``(row, {row: area in points x rate}, anchor)``; the areas are anchored on
    ``ref``'s dev CER at rate 0 when the dev sweep holds ``ref`` (``anchor`` = ``"AV0@0"``), else on 0
    (``anchor`` = ``"none"``): the anchor is the same for every row and the rate span is 1, so it shifts
    every area alike and never changes the choice.  ``(None, {}, "none")`` without rows in the sweep."""
    rows = [m for m in rows if m in dev.get("cer", {})]
    if not rows:
        return None, {}, "none"
    c0 = rate_condition(0)
    has_ref = ref in dev["cer"] and c0 in dev["cer"][ref]
    ref0 = 100.0 * dev["cer"][ref][c0]["cer"] if has_ref else 0.0
    areas = {m: area_points({rate_condition(r): 100.0 * dev["cer"][m][rate_condition(r)]["cer"] for r in rates},
                            ref0, rates) for m in rows}
    best = min(rows, key=lambda m: (tie_key(areas[m]), rows.index(m)))
    return best, areas, (f"{ref}@0" if has_ref else "none")


def area_claim(rs: Resampler, row: str, against: str, ref: str = "AV0", rates: Sequence[float] = PAPER_RATES,
               reduction: float = AREA_REDUCTION) -> Dict:
    """Claim 4: ``row``'s degradation area at least ``reduction`` below ``against``'s (module docstring)."""
    a, ab = _areas(rs, row, ref, rates)
    d, db = _areas(rs, against, ref, rates)
    gap, gb = d - a - reduction * abs(d), db - ab - reduction * np.abs(db)
    lo, hi = _ci(gb)
    holds = True if lo >= 0 else False if hi < 0 else NOT_RESOLVED
    red = f"{100 * (d - a) / d:+.1f} %" if d > 0 else "undefined (its area is not positive)"
    grid = "/".join(f"{float(r):g}" for r in sorted(rates))
    ev = (f"area (CER points x rate over rates {grid}, anchor {ref} at rate 0 {rs.point(ref, rate_condition(0)):.2f} %): "
          f"{row} {a:.2f}, {against} {d:.2f} (the best dropout-only row on dev); reduction {red}, goal >= "
          f"{100 * reduction:.0f} %; {against} − {row} − {100 * reduction:.0f} % of |{against}|: {gap:+.2f}, "
          f"95 % CI [{lo:+.2f}, {hi:+.2f}] ({rs.describe()})")
    return {"holds": holds, "evidence": ev, "area": a, "area_against": d, "gap_ci95": [lo, hi]}


GOAL_REDUCTION = 0.35            # the leaderboard's goal: the best eligible area at least 35 % below the best dropout-only row's


def goal_claim(rs: Resampler, best_dropout: str, exclude: Sequence[str] = (), ref: str = "AV0", audio: str = "A0",
               rates: Sequence[float] = PAPER_RATES, margin: float = MARGIN_POINTS,
               reduction: float = GOAL_REDUCTION) -> Dict:
    """The leaderboard's goal: among the rows not worse than ``ref`` at rate 0 and not worse than ``audio``
    at any rate of ``rates`` by more than ``margin`` points (upper bounds of the paired 95 % intervals:
    :func:`not_worse`), the best degradation area is at least ``reduction`` below ``best_dropout``'s.

    Candidates: every model of the sweep with the rates, except ``ref``, ``audio``, ``best_dropout`` and
    ``exclude`` (the other dropout-only rows, V).  Per candidate (``rows``): ``eligible`` (three-valued, from
    its checks), the upper bounds against ``ref`` at rate 0 and the worst against ``audio`` (with its rate),
    its area and reduction against ``best_dropout`` with the margin interval of :func:`area_claim`
    (``area_holds``), ``short_by`` (points of reduction missing to the goal, 0 when reached) and
    ``verdict`` (eligible and area).  The goal holds when some candidate's verdict holds, fails when every
    candidate's fails (or there is none), else is not resolved."""
    c0 = rate_condition(0)
    skip = {ref, audio, best_dropout, *exclude}
    cands = [m for m in rs.sw["utt_errors"] if m not in skip and all(rs.has(m, rate_condition(r)) for r in rates)]
    per: Dict[str, Dict] = {}
    for m in cands:
        to_ref = paired_diff(rs, m, ref, c0)
        to_audio = {float(r): paired_diff(rs, m, audio, rate_condition(r)) for r in rates}
        worst_r = max(to_audio, key=lambda r: to_audio[r]["ci95"][1])
        elig = all_of([not_worse(to_ref, margin)] + [not_worse(pd, margin) for pd in to_audio.values()])
        a = area_claim(rs, m, best_dropout, ref, rates, reduction)
        red = 100.0 * (a["area_against"] - a["area"]) / a["area_against"] if a["area_against"] > 0 else float("nan")
        per[m] = {"eligible": elig, "upper_vs_ref_at_0": to_ref["ci95"][1],
                  "upper_vs_audio_worst": to_audio[worst_r]["ci95"][1], "worst_audio_rate": worst_r,
                  "area": a["area"], "reduction_pct": red, "area_holds": a["holds"], "margin_ci95": a["gap_ci95"],
                  "short_by": max(0.0, 100.0 * reduction - red) if np.isfinite(red) else float("nan"),
                  "verdict": all_of([elig, a["holds"]])}
    verdicts = [v["verdict"] for v in per.values()]
    holds = True if any(v is True for v in verdicts) else (False if all(v is False for v in verdicts) else NOT_RESOLVED)
    d = _areas(rs, best_dropout, ref, rates)[0]
    order = sorted(per, key=lambda m: per[m]["area"])
    ev = (f"among rows not worse than {ref} at rate 0 and than {audio} at any rate by more than {margin:g} points "
          f"(upper bounds of paired 95 % CIs), the best area at least {100 * reduction:.0f} % below {best_dropout}'s "
          f"{d:.2f} (the best dropout-only row on dev); "
          + ("; ".join(f"{m}: eligible {_word(per[m]['eligible'])} (upper bounds {per[m]['upper_vs_ref_at_0']:+.2f} vs "
                       f"{ref} at 0, {per[m]['upper_vs_audio_worst']:+.2f} vs {audio} at {per[m]['worst_audio_rate']:g}), "
                       f"area {per[m]['area']:.2f}, {per[m]['reduction_pct']:+.1f} % (margin CI [{per[m]['margin_ci95'][0]:+.2f}, "
                       f"{per[m]['margin_ci95'][1]:+.2f}]) → {_word(per[m]['verdict'])}" for m in order)
             or "no candidate row in the sweep")
          + f" ({rs.describe()})")
    return {"holds": holds, "evidence": ev, "best_dropout": best_dropout, "area_best_dropout": d,
            "reduction": reduction, "rows": {m: per[m] for m in order}}


GOAL_CLAIM = "goal_35pct_area_below_best_dropout"   # the goal's name among the claims


def sweep_goal(sw: Mapping, best_dropout: Optional[str], dropout_rows: Sequence[str] = (), num: int = RESAMPLES,
               seed: int = 0, unit: str = "utterance", rs: Optional[Resampler] = None) -> Optional[Dict]:
    """:func:`goal_claim` of an eval sweep (``dropout_rows`` and V are no candidates), or None without
    ``best_dropout``, A0 or AV0 in it."""
    if not best_dropout or not {best_dropout, "AV0", "A0"} <= set(sw["utt_errors"]):
        return None
    rs = rs or Resampler(sw, num=num, seed=seed, unit=unit)
    return goal_claim(rs, best_dropout, exclude=tuple(dropout_rows) + ("V",))


def claims_with_goal(sw: Mapping, best_dropout: Optional[str], dropout_rows: Sequence[str] = (), adapter: str = "AV6",
                     num: int = RESAMPLES, seed: int = 0, unit: str = "utterance",
                     rs: Optional[Resampler] = None) -> Tuple[Dict[str, Dict], Optional[Dict]]:
    """:func:`interval_claims` with the leaderboard's goal (:data:`GOAL_CLAIM`, from :func:`sweep_goal`)
    added when the sweep has one: ``(claims, goal or None)``.  The rows table and ``leaderboard.json``
    state their claims through this one function."""
    out = interval_claims(sw, best_dropout, adapter=adapter, num=num, seed=seed, unit=unit)
    g = sweep_goal(sw, best_dropout, dropout_rows, num=num, seed=seed, unit=unit, rs=rs)
    if g:
        out[GOAL_CLAIM] = {"holds": g["holds"], "evidence": g["evidence"]}
    return out, g


def _tau(x: Sequence[float], y: Sequence[float]) -> float:
    from scipy.stats import kendalltau
    t = kendalltau(x, y).statistic
    return 0.0 if t is None or not np.isfinite(t) else float(t)


def trend_claim(rs: Resampler, train_rates: Mapping[str, float], ref: str = "AV0",
                rates: Sequence[float] = PAPER_RATES, expect: int = -1) -> Optional[Dict]:
    """Claim 5: Kendall's tau between the training dropout rate of the rows ``train_rates`` (those in
    the sweep, at least 3) and their degradation area, with a bootstrap interval over utterances;
    ``expect`` -1: the area should fall as the training rate rises (the curves flatten towards
    audio-only).  None with fewer than 3 rows in the sweep."""
    rows = sorted((m for m in train_rates if all(rs.has(m, rate_condition(r)) for r in rates)),
                  key=lambda m: train_rates[m])
    if len(rows) < 3:
        return None
    x = [float(train_rates[m]) for m in rows]
    pts, boots = zip(*(_areas(rs, m, ref, rates) for m in rows))
    tau = _tau(x, pts)
    B = np.stack(boots, 1)                      # [num, rows]
    taus = np.array([_tau(x, b) for b in B])
    lo, hi = _ci(taus)
    if expect < 0:
        holds = True if hi < 0 else False if lo >= 0 else NOT_RESOLVED
    else:
        holds = True if lo > 0 else False if hi <= 0 else NOT_RESOLVED
    ev = ("Kendall τ between training dropout rate and degradation area over "
          + ", ".join(f"{m} ({train_rates[m]:g}): {a:.2f}" for m, a in zip(rows, pts))
          + f": τ {tau:+.2f}, 95 % CI [{lo:+.2f}, {hi:+.2f}] ({rs.describe()}); "
          f"expected {'< 0' if expect < 0 else '> 0'}")
    return {"holds": holds, "evidence": ev, "rows": rows, "tau": tau, "ci95": [lo, hi]}


def interval_claims(sw: Mapping, best_dropout: Optional[str], adapter: str = "AV6",
                    margin: float = MARGIN_POINTS, rates: Sequence[float] = PAPER_RATES,
                    train_rates: Mapping[str, float] = STUDY_TRAIN_RATES, num: int = RESAMPLES,
                    seed: int = 0, unit: str = "utterance") -> Dict[str, Dict]:
    """The paper's claims on the eval sweep ``sw`` by intervals (module docstring):
    ``{name: {"holds": True | False | "not resolved", "evidence": str}}``.

    * ``1_video_helps``: AV0 better than A0 at rate 0;
    * ``2_bias``: A0 better than AV0 at rate 1 (AV0 with no video worse than audio alone);
    * ``3a_AV6_not_worse_than_AV0_at_0``: ``adapter`` not worse than AV0 by more than ``margin`` at rate 0;
    * ``3b_AV6_not_worse_than_A0_at_every_rate``: the same against A0 at every rate of ``rates``;
    * ``3c_AV6_better_than_AV0_at_rates_ge_0.5``: better than AV0 at every rate of ``rates`` >= 0.5;
    * ``4_AV6_area_20pct_below_best_dropout``: :func:`area_claim` against ``best_dropout`` (the
      dropout-only row chosen on dev, :func:`best_dropout_row`);
    * ``5_study_trend``: :func:`trend_claim` over the study rows.

    A claim whose models are not in the sweep (or, for claim 4, without ``best_dropout``; for claim 5,
    with fewer than 3 study rows) is left out.  ``unit``: what the bootstrap draws (:class:`Resampler`)."""
    rs = Resampler(sw, num=num, seed=seed, unit=unit)
    have = set(sw["utt_errors"])
    out: Dict[str, Dict] = {}
    c0, c1 = rate_condition(0), rate_condition(1)

    def part(kind, row, other, cond):
        pd = paired_diff(rs, row, other, cond)
        v = better(pd) if kind == "better" else not_worse(pd, margin)
        return v, _pd_text(pd, row, other, cond) + f" → {_word(v)}"

    def claim(parts, what):
        vals, texts = zip(*parts)
        return {"holds": all_of(vals), "evidence": what + ": " + "; ".join(texts)}

    if {"A0", "AV0"} <= have:
        out["1_video_helps"] = claim([part("better", "AV0", "A0", c0)],
                                     "AV0 better than A0 with full video (better: one-sided paired p < 0.05)")
        out["2_bias"] = claim([part("better", "A0", "AV0", c1)],
                              "A0 better than AV0 with no video (better: one-sided paired p < 0.05)")
    if {adapter, "AV0"} <= have:
        out[f"3a_{adapter}_not_worse_than_AV0_at_0"] = claim(
            [part("not_worse", adapter, "AV0", c0)],
            f"{adapter} not worse than AV0 at rate 0 by more than {margin:g} points (upper bound <= +{margin:g})")
    if {adapter, "A0"} <= have:
        out[f"3b_{adapter}_not_worse_than_A0_at_every_rate"] = claim(
            [part("not_worse", adapter, "A0", rate_condition(r)) for r in rates],
            f"{adapter} not worse than A0 by more than {margin:g} points at every rate "
            f"{'/'.join(f'{float(r):g}' for r in rates)} (upper bound <= +{margin:g})")
    if {adapter, "AV0"} <= have:
        out[f"3c_{adapter}_better_than_AV0_at_rates_ge_0.5"] = claim(
            [part("better", adapter, "AV0", rate_condition(r)) for r in rates if float(r) >= 0.5],
            f"{adapter} better than AV0 at every rate >= 0.5 (one-sided paired p < 0.05)")
    if best_dropout and {adapter, best_dropout, "AV0"} <= have:
        a = area_claim(rs, adapter, best_dropout, "AV0", rates)
        out[f"4_{adapter}_area_20pct_below_best_dropout"] = {"holds": a["holds"], "evidence": a["evidence"]}
    if "AV0" in have:
        t = trend_claim(rs, train_rates, "AV0", rates)
        if t:
            out["5_study_trend"] = {"holds": t["holds"], "evidence": t["evidence"]}
    return out


def precision_check(sw: Mapping, row: str = "AV6", other: str = "AV3", rate: float = 0.5,
                    max_half_width: float = PRECISION_HALF_WIDTH, num: int = RESAMPLES, seed: int = 0,
                    unit: str = "utterance") -> Optional[Dict]:
    """Can the sweep's eval set separate two methods?  The paired 95 % interval of ``CER(row) - CER(other)``
    at random loss ``rate`` (points) and its half-width, against ``max_half_width``:
    ``{"row", "other", "condition", "diff", "ci95", "half_width", "max_half_width", "holds", "evidence"}``
    (``holds``: half-width <= the maximum; it is a size, not a claim about either row).  None when
    either model or the condition is not in the sweep."""
    cond = rate_condition(rate)
    if not {row, other} <= set(sw.get("utt_errors") or {}) or cond not in sw["utt_errors"][row]:
        return None
    rs = Resampler(sw, num=num, seed=seed, unit=unit)
    pd = paired_diff(rs, row, other, cond)
    lo, hi = pd["ci95"]
    half = (hi - lo) / 2
    ok = half <= max_half_width
    return {"row": row, "other": other, "condition": cond, "diff": pd["diff"], "ci95": [lo, hi],
            "half_width": half, "max_half_width": max_half_width, "holds": ok,
            "evidence": f"{_pd_text(pd, row, other, cond)}; half-width {half:.2f} points "
                        f"({'<=' if ok else '>'} {max_half_width:g}; {rs.describe()})"}


def _word(v) -> str:
    return "holds" if v is True else "fails" if v is False else NOT_RESOLVED
