"""Claims by intervals (avsr.eval.claims), the paper's 5-rate degradation area (avsr.eval.sweep), the best
dropout-only row chosen on dev, and leaderboard.json (avsr.eval.leaderboard) written by
``python -m avsr.bin.rows table --leaderboard`` from a fake rows dir (no training, no decoding)."""
import copy
import json
import os

import numpy as np
import pytest
import yaml
from scipy.stats import kendalltau

from avsr.bin import rows as rb
from avsr.eval import claims as cl
from avsr.eval import leaderboard as lbm
from avsr.eval.sweep import PAPER_RATES, RATES, default_conditions, degradation_area

N, REF = 200, 10          # utterances, reference characters each: one error on one utterance = 0.05 points


def _ones(share, n=N, offset=0):
    """1 on a evenly spaced ``share`` of the utterances, 0 elsewhere."""
    k = int(round(share * n))
    e = np.zeros(n, dtype=int)
    if k:
        e[(offset + np.arange(k) * n // k) % n] = 1
    return e


def _sw(errors, conds=("random@0",)):
    """A sweep dict with per-utterance errors: ``errors[model]`` an array (every condition) or a dict by condition."""
    ue = {m: {c: [int(x) for x in (v[c] if isinstance(v, dict) else v)] for c in conds} for m, v in errors.items()}
    return {"conditions": list(conds), "utt_errors": ue, "utt_ref_chars": [REF] * N,
            "cer": {m: {c: {"cer": sum(x) / (REF * N)} for c, x in d.items()} for m, d in ue.items()}}


# ------------------------------------------------------------------------------------ the three verdicts
def test_not_worse_by_more_than_the_margin_holds_fails_or_is_not_resolved_by_the_upper_bound():
    base = 3 * np.ones(N, dtype=int)                             # 30 % CER
    cases = {"holds": base + _ones(0.02),                        # +0.2 points, interval [0.0, 0.4]
             "fails": base + _ones(0.20),                        # +2.0 points, interval well above +0.5
             "open": base + _ones(0.05)}                         # +0.5 points, interval straddles +0.5
    rs = cl.Resampler(_sw({"other": base, **cases}))
    pd = {k: cl.paired_diff(rs, k, "other", "random@0") for k in cases}
    assert pd["holds"]["diff"] == pytest.approx(0.2) and pd["fails"]["diff"] == pytest.approx(2.0)
    assert pd["holds"]["ci95"][1] <= 0.5 < pd["fails"]["ci95"][0]
    assert pd["open"]["ci95"][0] < 0.5 < pd["open"]["ci95"][1]
    assert cl.not_worse(pd["holds"]) is True
    assert cl.not_worse(pd["fails"]) is False
    assert cl.not_worse(pd["open"]) == cl.NOT_RESOLVED == "not resolved"
    # the margin is a parameter: with 1 point the straddling case holds
    assert cl.not_worse(pd["open"], margin=1.0) is True


def test_better_is_p_below_alpha_false_when_the_interval_excludes_the_better_side_else_not_resolved():
    base = 3 * np.ones(N, dtype=int)
    cases = {"clearly": base - _ones(0.20),                      # 2 points better
             "worse": base + _ones(0.20),
             "same": base.copy(),                                 # identical: never better, interval [0, 0]
             "slightly": base - _ones(0.05) + _ones(0.04, offset=1)}   # 0.05 points better: not significant
    rs = cl.Resampler(_sw({"other": base, **cases}))
    pd = {k: cl.paired_diff(rs, k, "other", "random@0") for k in cases}
    assert pd["clearly"]["p"] < 0.05 and cl.better(pd["clearly"]) is True
    assert cl.better(pd["worse"]) is False and pd["worse"]["ci95"][0] > 0
    assert pd["same"]["ci95"] == [0.0, 0.0] and pd["same"]["p"] == 1.0 and cl.better(pd["same"]) is False
    assert pd["slightly"]["p"] >= 0.05 and pd["slightly"]["ci95"][0] < 0
    assert cl.better(pd["slightly"]) == cl.NOT_RESOLVED


def test_a_claim_of_several_parts_is_false_if_any_fails_true_if_all_hold():
    nr = cl.NOT_RESOLVED
    assert cl.all_of([True, True]) is True
    assert cl.all_of([True, nr, False]) is False
    assert cl.all_of([True, nr]) == nr
    assert cl.all_of([]) == nr


# ------------------------------------------------------------------------------------ what a resample draws
def test_a_recording_bootstrap_draws_whole_sessions_and_widens_intervals_that_sessions_share():
    """10 recordings of 20 utterances; ``b`` differs from ``a`` by a session effect (+1 error on every
    utterance of 5 recordings, -1 on every utterance of the other 5): the per-utterance differences look
    independent, the recording bootstrap sees 10 draws.  Also: the point estimates do not depend on the
    unit, and a recording per utterance is the utterance bootstrap widened about its mean by the
    small-sample factor of that many recordings."""
    a = 3 * np.ones(N, dtype=int)
    b = a + np.where(np.arange(N) // 20 % 2 == 0, 1, -1)
    sw = _sw({"a": a, "b": b})
    sw["utt_recordings"] = [f"r{i // 20}" for i in range(N)]
    utt, rec = cl.Resampler(sw), cl.Resampler(sw, unit="recording")
    pu, pr = cl.paired_diff(utt, "b", "a", "random@0"), cl.paired_diff(rec, "b", "a", "random@0")
    assert pu["diff"] == pr["diff"] == 0.0 and utt.point("b", "random@0") == rec.point("b", "random@0") == 30.0
    half = {k: (p["ci95"][1] - p["ci95"][0]) / 2 for k, p in (("utt", pu), ("rec", pr))}
    assert half["utt"] < 2.0 and half["rec"] > 2 * half["utt"], half      # ~1.4 against ~6 points
    assert rec.units == 10 and utt.units == N
    assert rec.describe() == f"1000 paired resamples of the 10 recordings ({N} utterances), widened x1.22 for few recordings"
    assert cl.Resampler(sw, unit="recording", widen=False).describe() == \
        f"1000 paired resamples of the 10 recordings ({N} utterances)"
    assert utt.describe() == f"1000 paired resamples of the {N} utterances"
    one_each = dict(sw, utt_recordings=[f"u{i:03d}" for i in range(N)])   # sorted like the utterances
    same = cl.Resampler(one_each, unit="recording")
    u = utt.boot("b", "random@0")
    assert same.widen == cl.small_sample_factor(N) and utt.widen == 1.0
    np.testing.assert_allclose(same.boot("b", "random@0"), u.mean() + same.widen * (u - u.mean()), atol=1e-12)
    with pytest.raises(ValueError, match="bootstrap unit"):
        cl.Resampler(sw, unit="speaker")
    with pytest.raises(ValueError, match="at least 5 recordings; the sweep's 200 utterances come from 4"):
        cl.Resampler(dict(sw, utt_recordings=[f"r{i % 4}" for i in range(N)]), unit="recording")


def test_avsr_eval_cell_intervals_over_recordings_widen_with_a_session_effect_and_match_over_utterances():
    """``avsr eval --bootstrap_unit recording`` recomputes every cell's interval (the plot's bands, the
    sweep tables): with a session effect (5 recordings at 1 error per utterance, 5 at 5) it is wider than
    over utterances; one recording per utterance gives bootstrap_ci's resamples widened by the
    small-sample factor; ``sweep_md`` names the unit and its paired tests use it."""
    from avsr.bin.eval import cell_intervals
    from avsr.eval.metrics import bootstrap_ci
    from avsr.eval.render import sweep_md
    a = np.where(np.arange(N) // 20 % 2 == 0, 1, 5)
    b = a - np.where(np.arange(N) // 20 % 2 == 0, 0, 1)        # better only in the recordings at 5 errors
    sw = _sw({"a": a, "b": b}, conds=("random@0", "whole"))
    sw.update(utt_recordings=[f"r{i // 20}" for i in range(N)], data_dir="toy", utts=N, search="greedy",
              timing={"wall_seconds": 1.0, "load_seconds": 0.1})
    ci_u = bootstrap_ci(a, [REF] * N, num=1000, seed=0)
    widen = cell_intervals(sw, "recording")
    assert widen == cl.small_sample_factor(10)
    lo, hi = sw["cer"]["a"]["random@0"]["lo"], sw["cer"]["a"]["random@0"]["hi"]
    assert hi - lo > 3 * (ci_u["hi"] - ci_u["lo"]), (lo, hi, ci_u)
    assert lo < 0.3 < hi and sw["cer"]["a"]["random@0"]["cer"] == 0.3            # the point estimate stays
    one_each = dict(sw, utt_recordings=[f"u{i:03d}" for i in range(N)])
    cell_intervals(one_each, "recording")
    bu = cl.Resampler(sw).boot("a", "random@0") / 100.0      # bootstrap_ci's draws
    assert cl._ci(bu) == pytest.approx([ci_u["lo"], ci_u["hi"]], abs=1e-12)
    f = cl.small_sample_factor(N)
    assert (one_each["cer"]["a"]["random@0"]["lo"], one_each["cer"]["a"]["random@0"]["hi"]) == \
        pytest.approx(cl._ci(bu.mean() + f * (bu - bu.mean())), abs=1e-12)
    sw["bootstrap"] = {"unit": "recording", "resamples": 1000}      # a sweep made before the widening
    assert "widened" not in sweep_md(sw)
    sw["bootstrap"]["widen"] = widen
    sw["utt_errors"]["b"]["whole"] = list(sw["utt_errors"]["a"]["random@0"])
    text = sweep_md(sw)
    assert "bootstrap over recordings; the 10 recordings' resamples widened x1.22" in text.splitlines()[0]
    assert "Paired tests (bootstrap over recordings, 1000 resamples, widened x1.22 for 10 recordings" in text
    row = next(ln for ln in text.splitlines() if ln.startswith("| b: full video vs whole"))
    pd = cl.paired_diff(cl.Resampler(sw, unit="recording"), "b", "b", "random@0", "whole")
    assert f"[{pd['ci95'][0]:+.1f}, {pd['ci95'][1]:+.1f}]" in row
    del sw["bootstrap"]                                        # older sweeps: over utterances
    assert "Paired tests (bootstrap over utterances" in sweep_md(sw)


def test_small_sample_factor_is_the_t_and_variance_correction():
    """sqrt(G/(G-1)) t_{G-1, .975} / z_{.975}: the textbook quantiles at 5 and 16 recordings, towards 1
    with many, refused below 2."""
    assert cl.small_sample_factor(5) == pytest.approx(np.sqrt(5 / 4) * 2.7764 / 1.95996, rel=1e-4)
    assert cl.small_sample_factor(16) == pytest.approx(np.sqrt(16 / 15) * 2.1314 / 1.95996, rel=1e-4)
    assert 1.0 < cl.small_sample_factor(10_000) < 1.001
    with pytest.raises(ValueError, match="at least 2"):
        cl.small_sample_factor(1)
    lo, hi = cl.cell_interval(np.linspace(-2.0, 6.0, 1001))     # a widened CER's resamples below 0
    assert lo == 0.0 and hi == pytest.approx(5.8)


def test_avsr_eval_refuses_a_recording_bootstrap_on_too_few_recordings_before_decoding(tmp_path):
    from avsr.bin.eval import check_recordings, main
    d = tmp_path / "dev"
    d.mkdir()
    (d / "wav.scp").write_text("".join(f"rec{k} /x/rec{k}.wav\n" for k in range(4)))
    (d / "segments").write_text("".join(f"u{i:03d} rec{i % 4} {i}.0 {i}.5\n" for i in range(20)))
    (d / "utt2spk").write_text("".join(f"u{i:03d} u{i:03d}\n" for i in range(20)))
    with pytest.raises(SystemExit, match=f"at least 5 recordings; the utterances of {d} come from 4"):
        main(["--models", "A=/nonexistent/pack", "--data_dir", str(d), "--out_dir", str(tmp_path / "o"),
              "--bootstrap_unit", "recording"])                 # before the (missing) model is loaded
    (d / "wav.scp").write_text("".join(f"rec{k} /x/rec{k}.wav\n" for k in range(6)))
    (d / "segments").write_text("".join(f"u{i:03d} rec{i % 6} {i}.0 {i}.5\n" for i in range(20)))
    assert check_recordings(str(d)) == 6
    with pytest.raises(SystemExit, match="come from 3"):
        check_recordings(str(d), limit=3)


def test_the_leaderboard_goal_names_each_rows_eligibility_reduction_and_shortfall():
    """Rows: ``good`` (AV0's CER at 0, never above A0, flat: area far below AV3's) meets the goal;
    ``early`` (as flat but 5 points worse than AV0 at rate 0) is not eligible; ``flatish`` is eligible but
    only ~10 % below AV3's area.  The goal holds with ``good`` and fails without it; each row's reason
    (upper bounds, reduction, shortfall) is in its facts; AV3 itself and ``exclude`` are no candidates."""
    rates = [0, 0.25, 0.5, 0.75, 1]
    conds = tuple(cl.rate_condition(r) for r in rates)

    def at(*shares):                     # per-rate errors: 3 errors per utterance + a share of one more
        return {c: 3 + _ones(x) for c, x in zip(conds, shares)}
    errs = {"A0": at(1, 1, 1, 1, 1), "AV0": at(0, 0.3, 0.6, 0.9, 1),
            "AV3": at(0.2, 0.4, 0.6, 0.8, 1), "good": at(0, 0, 0, 0, 0), "early": at(0.5, 0.5, 0.5, 0.5, 0.5),
            "flatish": at(0, 0.35, 0.55, 0.7, 0.95), "AV1": at(1, 1, 1, 1, 1)}
    sw = _sw(errs, conds)
    rs = cl.Resampler(sw)
    g = cl.goal_claim(rs, "AV3", exclude=("AV1",))
    assert list(g["rows"]) == ["good", "early", "flatish"]                 # by area; AV3, AV1, A0, AV0 are no candidates
    good, early, flat = g["rows"]["good"], g["rows"]["early"], g["rows"]["flatish"]
    assert good["eligible"] is True and good["verdict"] is True and good["short_by"] == 0.0
    assert early["eligible"] is False and early["upper_vs_ref_at_0"] > 0.5 and early["verdict"] is False
    assert flat["eligible"] is True and 0 < flat["reduction_pct"] < 35 and flat["verdict"] is False
    assert flat["short_by"] == pytest.approx(35 - flat["reduction_pct"])
    assert g["holds"] is True and "good: eligible holds" in g["evidence"] and "early: eligible fails" in g["evidence"]
    del sw["utt_errors"]["good"], sw["cer"]["good"]
    assert cl.goal_claim(cl.Resampler(sw), "AV3", exclude=("AV1",))["holds"] is False


def test_the_recordings_come_from_the_sweep_or_its_data_dir_and_a_missing_one_is_named(tmp_path):
    sw = _sw({"a": 3 * np.ones(N, dtype=int)})
    sw["utt_ids"] = [f"u{i:03d}" for i in range(N)]
    with pytest.raises(KeyError, match="utt_recordings"):
        cl.Resampler(sw, unit="recording")                     # neither in the sweep nor a data dir
    d = tmp_path / "eval"
    d.mkdir()
    (d / "wav.scp").write_text("".join(f"rec{k} /x/rec{k}.wav\n" for k in range(6)))
    (d / "segments").write_text("".join(f"u{i:03d} rec{i % 6} {i}.0 {i}.5\n" for i in range(N)))
    (d / "utt2spk").write_text("".join(f"u{i:03d} u{i:03d}\n" for i in range(N)))
    sw["data_dir"] = str(d)
    assert cl.utt_recordings(sw) == [f"rec{i % 6}" for i in range(N)]
    assert cl.Resampler(sw, unit="recording").units == 6
    (d / "segments").write_text("".join(f"u{i:03d} rec{i % 6} {i}.0 {i}.5\n" for i in range(N - 1)))
    with pytest.raises(KeyError, match="segments: no segment for 1 .*u199"):
        cl.utt_recordings(sw)


# ------------------------------------------------------------------------------------ the 5-rate area
def test_degradation_area_over_the_papers_five_rates_on_known_numbers():
    cer = {0.0: 20, 0.25: 22, 0.5: 25, 0.75: 30, 1.0: 40, 0.1: 90, 0.3: 90, 0.7: 90}   # off-grid rates: outliers
    # CER - 18 = 2, 4, 7, 12, 22; trapezoid with steps of 0.25: 0.25 * (3 + 5.5 + 9.5 + 17) = 8.75
    assert degradation_area(cer, 18, rates=PAPER_RATES) == pytest.approx(8.75)
    assert degradation_area(cer, 18) > 20                   # the whole grid (existing callers) sees the outliers
    assert set(PAPER_RATES) <= set(RATES)
    with pytest.raises(KeyError, match="0.75"):
        degradation_area({0.0: 1, 0.25: 1, 0.5: 1, 1.0: 1}, 0, rates=PAPER_RATES)
    assert cl.area_points({f"random@{r:g}": v for r, v in cer.items()}, 18) == pytest.approx(8.75)


def test_area_claim_is_decided_on_the_interval_of_the_gap():
    rates = [f"random@{r:g}" for r in PAPER_RATES]
    av0 = {c: 2 * np.ones(N, dtype=int) for c in rates}                   # anchor: 20 % at rate 0
    drop = {c: 2 * np.ones(N, dtype=int) + int(4 * r) * _ones(0.5) for c, r in zip(rates, PAPER_RATES)}

    def run(scale):                                          # AV6 degrades like the dropout row, scaled
        av6 = {c: 2 * np.ones(N, dtype=int) + (int(4 * r) * _ones(0.5 * scale)) for c, r in zip(rates, PAPER_RATES)}
        rs = cl.Resampler(_sw({"AV0": av0, "AV3": drop, "AV6": av6}, rates))
        return cl.area_claim(rs, "AV6", "AV3")
    good, bad, edge = run(0.5), run(1.0), run(0.8)
    assert good["holds"] is True and good["gap_ci95"][0] >= 0
    assert bad["holds"] is False and bad["gap_ci95"][1] < 0
    assert edge["holds"] == cl.NOT_RESOLVED                  # exactly 20 % below: the interval straddles 0
    assert f"[{good['gap_ci95'][0]:+.2f}, {good['gap_ci95'][1]:+.2f}]" in good["evidence"]
    assert "AV3" in good["evidence"] and "reduction +50.0 %" in good["evidence"]


# ------------------------------------------------------------------------------------ the trend
def _study(slopes, extra=None):
    """Study rows whose errors rise with the test rate by ``slopes[row]`` per utterance (or on the
    utterances ``extra[row]`` only)."""
    rates = [f"random@{r:g}" for r in PAPER_RATES]
    errs = {"AV0": {c: 2 * np.ones(N, dtype=int) for c in rates}}
    for m, s in slopes.items():
        bump = s * np.ones(N, dtype=int) if extra is None else np.isin(np.arange(N), extra[m]).astype(int) * s
        errs[m] = {c: 2 * np.ones(N, dtype=int) + int(4 * r) * bump for c, r in zip(rates, PAPER_RATES)}
    return _sw(errs, rates)


def test_kendall_trend_with_a_bootstrap_interval_holds_fails_or_is_not_resolved():
    rows = ("S.1", "S.3", "S.5", "S.7")
    falling = cl.trend_claim(cl.Resampler(_study(dict(zip(rows, (4, 3, 2, 1))))), cl.STUDY_TRAIN_RATES)
    assert falling["holds"] is True and falling["tau"] == -1.0 and falling["ci95"] == [-1.0, -1.0]
    rising = cl.trend_claim(cl.Resampler(_study(dict(zip(rows, (1, 2, 3, 4))))), cl.STUDY_TRAIN_RATES)
    assert rising["holds"] is False and rising["ci95"][0] > 0
    # a falling point estimate carried by a handful of utterances: the interval holds 0
    sw = _study(dict(zip(rows, (1, 1, 1, 1))), extra={"S.1": [0, 1, 2, 3], "S.3": [4, 5, 6],
                                                      "S.5": [7, 8, 9], "S.7": [10, 11]})
    t = cl.trend_claim(cl.Resampler(sw), cl.STUDY_TRAIN_RATES)
    areas = [cl.area_points({c: 100 * sw["cer"][m][c]["cer"] for c in sw["conditions"]}, 20.0) for m in rows]
    assert t["tau"] == pytest.approx(kendalltau([0.1, 0.3, 0.5, 0.7], areas).statistic) and t["tau"] < 0
    assert t["ci95"][0] < 0 <= t["ci95"][1] and t["holds"] == cl.NOT_RESOLVED
    assert f"[{t['ci95'][0]:+.2f}, {t['ci95'][1]:+.2f}]" in t["evidence"]
    # fewer than 3 study rows: no trend claim
    assert cl.trend_claim(cl.Resampler(_study({"S.1": 2, "S.7": 1})), cl.STUDY_TRAIN_RATES) is None


# ------------------------------------------------------------------------------------ the claims of a sweep
def _eval_sweep(names, curves, n=N, search="beam10"):
    """An eval sweep with every default condition: ``curves[model](condition) -> errors per utterance``."""
    conds = [c.name for c in default_conditions()]
    ue = {m: {c: [int(x) for x in curves[m](c)] for c in conds} for m in names}
    cer = {m: {c: {"cer": sum(v) / (REF * n), "lo": 0.0, "hi": 1.0, "relative_cer_vs_baseline": 0.1}
               for c, v in d.items()} for m, d in ue.items()}
    return {"search": search, "conditions": conds, "utt_errors": ue, "utt_ref_chars": [REF] * n, "cer": cer,
            "utts": n, "utt_ids": [f"u{i:03d}" for i in range(n)], "degradation_area": {m: 0.0 for m in names},
            "utt_recordings": [f"r{i * 10 // n}" for i in range(n)],
            "models": {}}


REF_TEXT = "甲" * REF


def _hyps_of(sweep):
    """``hyps.json`` that scores as the sweep's errors: k errors on an utterance are substitutions up to
    its length, insertions beyond."""
    def hyp(k):
        s = min(k, REF)
        return "乙" * s + "甲" * (REF - s) + "丙" * (k - s)
    return {m: {c: {u: hyp(k) for u, k in zip(sweep["utt_ids"], errs)} for c, errs in d.items()}
            for m, d in sweep["utt_errors"].items()}


def _rate(c):
    return float(c.split("@")[1]) if c.startswith("random@") else 1.0 if c == "whole" else 0.5 \
        if c.startswith("segment") else 0.0


def _curve(at0, at1):
    """Errors per utterance rising from ``at0`` (rate 0) to ``at1`` (rate 1) errors on average."""
    def f(c):
        x = at0 + (at1 - at0) * _rate(c)
        k = int(np.floor(x))
        return k + _ones(x - k)
    return f


def test_interval_claims_of_a_sweep_name_every_claim_with_its_evidence():
    curves = {"A0": _curve(3, 3), "AV0": _curve(2, 4), "AV3": _curve(2.2, 3.6), "AV6": _curve(2, 3)}
    out = cl.interval_claims(_eval_sweep(list(curves), curves), "AV3")
    assert set(out) == {"1_video_helps", "2_bias", "3a_AV6_not_worse_than_AV0_at_0",
                        "3b_AV6_not_worse_than_A0_at_every_rate", "3c_AV6_better_than_AV0_at_rates_ge_0.5",
                        "4_AV6_area_20pct_below_best_dropout"}
    assert out["1_video_helps"]["holds"] is True and out["2_bias"]["holds"] is True
    assert out["3a_AV6_not_worse_than_AV0_at_0"]["holds"] is True     # identical at rate 0
    assert out["3b_AV6_not_worse_than_A0_at_every_rate"]["holds"] is True
    assert out["3c_AV6_better_than_AV0_at_rates_ge_0.5"]["holds"] is True
    # video helps and the bias are two claims: AV0 as good as A0 with no video leaves claim 1 standing
    no_bias = {**curves, "AV0": lambda c: _curve(2, 3)(c)}
    out2 = cl.interval_claims(_eval_sweep(list(no_bias), no_bias), "AV3")
    assert out2["1_video_helps"]["holds"] is True and out2["2_bias"]["holds"] is False
    # the non-inferiority to A0 is checked at every rate of the grid: worse than A0 at rate 1 only
    curves["AV6"] = lambda c: _curve(2, 3)(c) + (_ones(0.5) if c == "random@1" else 0)
    out = cl.interval_claims(_eval_sweep(list(curves), curves), "AV3")
    ni = out["3b_AV6_not_worse_than_A0_at_every_rate"]
    assert ni["holds"] is False
    for r in PAPER_RATES:
        assert f"AV6 − A0 at random@{r:g}:" in ni["evidence"]
    assert ni["evidence"].count("→ holds") == 4 and ni["evidence"].count("→ fails") == 1


def test_precision_check_is_the_half_width_of_the_paired_interval():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 6, N)                    # utterances that differ a lot from each other
    conds = ("random@0.5",)
    # the same errors: a paired interval has width 0 (an unpaired one would not)
    pc = cl.precision_check(_sw({"AV6": base, "AV3": base}, conds))
    assert pc["ci95"] == [0.0, 0.0] and pc["half_width"] == 0.0 and pc["holds"] is True
    # one more error on every other utterance: +0.5 errors per utterance on average, +5 points
    worse = base + (np.arange(N) % 2)
    pc = cl.precision_check(_sw({"AV6": worse, "AV3": base}, conds))
    lo, hi = pc["ci95"]
    assert pc["diff"] == pytest.approx(5.0) and lo < 5.0 < hi
    assert pc["half_width"] == pytest.approx((hi - lo) / 2) and 0 < pc["half_width"]
    assert (pc["row"], pc["other"], pc["condition"]) == ("AV6", "AV3", "random@0.5")
    assert pc["holds"] is (pc["half_width"] <= 1.0)
    assert cl.precision_check(_sw({"AV6": worse, "AV3": base}, conds), max_half_width=pc["half_width"] / 2)["holds"] is False
    assert "half-width" in pc["evidence"] and "200 utterances" in pc["evidence"]
    # a model or the condition missing: no check
    assert cl.precision_check(_sw({"AV6": worse}, conds)) is None
    assert cl.precision_check(_sw({"AV6": worse, "AV3": base}, ("random@0",))) is None


# ------------------------------------------------------------------------------------ best dropout row on dev
def test_best_dropout_row_is_the_lowest_dev_area_over_the_papers_rates():
    def dev(vals):
        return {"cer": {m: {f"random@{r:g}": {"cer": v(r)} for r in RATES} for m, v in vals.items()}}
    paper = {0.0: .20, 0.25: .22, 0.5: .25, 0.75: .30, 1.0: .34}
    d = dev({"AV1": lambda r: .30, "AV2": lambda r: paper.get(r, .90), "AV3": lambda r: .31})
    best, areas, anchor = cl.best_dropout_row(d, ["AV1", "AV2", "AV3"])
    # AV2: area 26 over the five rates (its mean CER over all eight rates would lose to AV1's)
    assert best == "AV2" and areas["AV2"] == pytest.approx(26.0) and areas["AV1"] == pytest.approx(30.0)
    assert anchor == "none"
    d["cer"]["AV0"] = {"random@0": {"cer": .18}}
    best, areas, anchor = cl.best_dropout_row(d, ["AV1", "AV2", "AV3"])
    assert best == "AV2" and areas["AV2"] == pytest.approx(8.0) and anchor == "AV0@0"
    # ties go to the earlier row
    assert cl.best_dropout_row(dev({"AV1": lambda r: .3, "AV3": lambda r: .3}), ["AV3", "AV1"])[0] == "AV3"
    # equal areas that differ in the last bit (the CERs at rates 0.25 and 0.5, of equal weight, swapped)
    # are a tie too: the earlier row, not the rounding
    v = {0.0: .494, 0.25: .876, 0.5: .53, 0.75: .141, 1.0: .365}
    w = {**v, 0.25: v[0.5], 0.5: v[0.25]}
    best, areas, _ = cl.best_dropout_row(dev({"AV1": lambda r: v.get(r, .9), "AV3": lambda r: w.get(r, .9)}),
                                         ["AV1", "AV3"])
    assert areas["AV3"] < areas["AV1"] and best == "AV1"


# ------------------------------------------------------------------------------------ leaderboard.json
SPEC = """
defaults: {budget: {epochs: 1}, lr: 0.001, warmup_steps: 1, freeze: [audio_encoder]}
rows:
  AV1: {init: av0_init, freeze: [], options: {d_prob: 1.0}}
  AV2: {init: av0_init, freeze: [], options: {d_prob: 0.5}}
  AV3:
    init: av0
    options: {d_prob: 0.5}
    grid: {options.d_prob: {values: [0.5, 0.25], name: "-p{:g}", omit: 0.5}}
    select: {sweep: dev_av3, rates: [0, 0.5, 1.0], label: "{run}"}
  AV5:
    init: av0
    methods: [{mda_kd: {teacher: "@av0", distance: mse, tap: fused, weight: 1.0}}]
  AV6:
    init: AV5
    name: "AV6-on-{init}"
    audio_aug: false
    freeze: []
    methods: [ms_adapter]
    route: {thresholds: [0, 0.5], sweep: "dev_threshold-{init}{suffix}"}
roles: {student: AV5, adapter: AV6, dropout_rows: [AV1, AV2, AV3]}
tables: {t: {rows: [AV1, AV2, AV3, AV5, AV6], search: beam10}}
"""
BASE_PARAMS, ADAPTER_PARAMS = 1000, 33


def _fake_train(cmd, log):
    """Stands in for avsr.bin.train: what a finished run leaves (config, model, train_result with its own
    seconds: 10 per epoch, 100 for the adapter run; parameters: AV0's plus the adapters)."""
    d = cmd[cmd.index("--exp_dir") + 1]
    sets = dict(x.split("=", 1) for x in cmd if x.startswith("trainer."))
    methods = [cmd[i + 1] for i, x in enumerate(cmd) if x == "--method"]
    os.makedirs(d, exist_ok=True)
    yaml.safe_dump({"trainer": {"init": cmd[cmd.index("--init") + 1],
                                **{k[len("trainer."):]: float(v) for k, v in sets.items()}},
                    "methods": methods}, open(os.path.join(d, "config.yaml"), "w"))
    open(os.path.join(d, "model.pth"), "w").close()
    adapter = "ms_adapter" in methods
    json.dump({"parameters": {"total": BASE_PARAMS + (ADAPTER_PARAMS if adapter else 0)},
               "history": [{"step": 3, "train_seconds": 90.0 if adapter else 8.0,
                            "valid_seconds": 10.0 if adapter else 2.0}]},
              open(os.path.join(d, "train_result.json"), "w"))


class _Runner(rb.RowRunner):
    """A rows dir without training or decoding: runs via :func:`_fake_train`, packs to ``/packed/<run>``,
    dev sweeps from ``DEV`` curves, the eval sweep from ``EVAL`` curves."""
    DEV = EVAL = None
    specs = {}                    # sweep name -> its NAME=DIR[@T] model specs

    def __init__(self, exp_dir, data_dir, config, rows_dir=None, **kw):
        super().__init__(exp_dir, data_dir, config, rows_dir, **kw)
        self.sh = _fake_train
        self.swept = []

    def pack(self, row, d):
        return f"/packed/{row}"

    def pack_without_adapters(self, name, d):
        return f"/packed/{name}"

    def sweep(self, name, models, split, greedy, rates=RATES, **kw):
        names = [m.split("=", 1)[0] for m in models]
        self.swept.append((name, split, tuple(names)))
        _Runner.specs[name] = list(models)
        if split == "dev":
            return {"cer": {m: {f"random@{float(r):g}": {"cer": self.DEV.get(m, lambda r: 0.5)(float(r))}
                                for r in rates} for m in names}}
        ev = _eval_sweep(names, self.EVAL)
        d = os.path.join(self.rows_dir, "sweep", name)          # what avsr eval leaves there
        os.makedirs(d, exist_ok=True)
        json.dump(_hyps_of(ev), open(os.path.join(d, "hyps.json"), "w", encoding="utf-8"), ensure_ascii=False)
        with open(os.path.join(self.data, "eval", "text"), "w", encoding="utf-8") as f:
            f.writelines(f"{u} {REF_TEXT}\n" for u in ev["utt_ids"])
        return ev


def _rows_dir(tmp_path):
    exp, data, corpus = tmp_path / "exp", tmp_path / "data", tmp_path / "corpus"
    for m, total in (("a0", 600), ("av0", BASE_PARAMS)):
        os.makedirs(exp / "packed" / m)
        open(exp / "packed" / m / "model.pth", "w").close()
        os.makedirs(exp / f"train_{m}")
        json.dump({"parameters": {"total": total}, "history": [{"train_seconds": 500.0, "valid_seconds": 50.0}]},
                  open(exp / f"train_{m}" / "train_result.json", "w"))
    yaml.safe_dump({"trainer": {"init": ["/a0.pth", "/v.pth::visual_"]}, "methods": ['audio_noise:{"prob": 0.8}']},
                   open(exp / "train_av0" / "config.yaml", "w"))
    os.makedirs(corpus)
    json.dump({"generator": "avsr.synthmisp", "preset": "mini", "seed": 7}, open(corpus / "synthmisp.json", "w"))
    os.makedirs(data / "train")
    os.makedirs(data / "eval")
    (data / "train" / "wav.scp").write_text(f"R01_S001002_C01_I0_Far {corpus}/audio/train/far/R01_S001002_C01_I0_Far_0.wav\n")
    (data / "train" / "segments").write_text("u1 r 0.00 1800.00\nu2 r 10.0 910.0\n")     # 0.75 h
    (data / "eval" / "utt2spk").write_text("a S001\nb S001\nc S002\n")
    spec = tmp_path / "rows.yaml"
    spec.write_text(SPEC)
    return exp, data, corpus, spec


def _leaderboard(tmp_path, monkeypatch, extra=(), spec_text=None, dev=None, evals=None):
    import avsr.models.model as mm
    import avsr.pack as pk
    exp, data, corpus, spec = _rows_dir(tmp_path)
    if spec_text:
        spec.write_text(spec_text)
    os.makedirs(os.path.join(exp, "stages"), exist_ok=True)     # the recipe's done markers: this table's and others
    for name, secs in (("15_rows_train_t", 3068), ("16_rows_select_t", 62), ("15_rows_train_core", 5), ("9_train_av5", 7)):
        with open(os.path.join(exp, "stages", name + ".done"), "w") as f:
            f.write(f"stage: {name}\nseconds: {secs}\n")
    # dev: AV2 has the lowest area; eval: AV1 does (the leaderboard must take dev's)
    _Runner.DEV = {"AV1": lambda r: .30, "AV2": lambda r: .20 + .1 * r, "AV3": lambda r: .31, "AV3-p0.25": lambda r: .25,
                   "T0": lambda r: .4, "T0.5": lambda r: .3}
    _Runner.EVAL = {"A0": _curve(3, 3), "AV0": _curve(2, 4), "AV1": _curve(2.1, 2.4), "AV2": _curve(2.6, 4),
                    "AV3": _curve(2.2, 3.6), "AV5": _curve(2, 3.6), "AV6": _curve(2, 3), "AV6-tuned": _curve(2, 3)}
    _Runner.DEV.update(dev or {})
    _Runner.EVAL.update(evals or {})
    monkeypatch.setattr(rb, "RowRunner", _Runner)
    monkeypatch.setattr(pk, "load_packed", lambda p: (None,))
    monkeypatch.setattr(mm, "count_parameters", lambda m: {"total": 1033, "adapter": 33})
    out = tmp_path / "lb" / "leaderboard.json"
    os.makedirs(tmp_path / "lb")
    plot = exp / "rows" / "sweep" / "eval_t" / "cer_vs_frame_loss.png"     # what avsr eval leaves there
    os.makedirs(plot.parent)
    plot.write_bytes(b"\x89PNG fake")
    rb.main(["table", "--rows", str(spec), "--table", "t", "--exp_dir", str(exp), "--data_dir", str(data),
             "--config", "c.yaml", "--out", str(tmp_path / "robust_t.json"), "--leaderboard", str(out), *extra])
    return json.load(open(out)), json.load(open(tmp_path / "robust_t.json"))


def test_table_writes_a_valid_leaderboard_from_a_fake_rows_dir(tmp_path, monkeypatch):
    lb, table = _leaderboard(tmp_path, monkeypatch)
    lbm.validate_leaderboard(lb)
    assert (tmp_path / "lb" / "leaderboard.png").read_bytes() == b"\x89PNG fake"   # the eval sweep's plot beside it
    assert lb["corpus"] == {"preset": "mini", "seed": 7, "eval_segments": 3, "eval_speakers": 2, "train_hours": 0.75}
    assert lb["search"] == "beam10"
    assert list(lb["rows"]) == ["A0", "AV0", "AV1", "AV2", "AV3", "AV5", "AV6", "AV6-tuned"]
    av6 = lb["rows"]["AV6"]
    assert list(av6["cer"]) == ["0", "0.25", "0.5", "0.75", "1", "segment0.5", "whole", "babble0", "babble-5"]
    assert av6["cer"]["0"] == pytest.approx(20.0) and av6["cer"]["1"] == pytest.approx(30.0)
    assert av6["cer"]["babble-5"] == pytest.approx(20.0)       # full video, the rate-0 errors
    lo, hi = av6["ci95"]["0.5"]
    assert lo <= av6["cer"]["0.5"] <= hi
    # area over the five rates, anchored on AV0 at rate 0 (20 %): AV6 rises linearly 20 -> 30 %: area 5
    assert av6["area"] == pytest.approx(5.0) and lb["rows"]["AV0"]["area"] == pytest.approx(10.0)
    # paired against A0 and AV0 at every condition, never against itself
    assert av6["paired"]["A0@0"]["diff"] == pytest.approx(-10.0) and av6["paired"]["A0@0"]["p"] == 0.0
    assert av6["paired"]["AV0@1"]["diff"] == pytest.approx(-10.0)
    assert len(av6["paired"]) == 18 and not any(k.startswith("AV0@") for k in lb["rows"]["AV0"]["paired"])
    # own training time only (AV6's adapters: 100 s, not AV5's 10 s on top); parameters beyond AV0
    assert av6["train_s"] == 100.0 and lb["rows"]["AV5"]["train_s"] == 10.0 and lb["rows"]["AV0"]["train_s"] == 550.0
    assert av6["params_added"] == ADAPTER_PARAMS and lb["rows"]["AV6-tuned"]["params_added"] == ADAPTER_PARAMS
    assert lb["rows"]["AV3"]["params_added"] == 0 and lb["rows"]["A0"]["params_added"] == 600 - BASE_PARAMS
    # each row's optimiser steps from its recipe model and its dev grid with the dev choice
    assert lb["rows"]["AV3"]["grid"] == [
        {"run": "AV3", "setting": {"options.d_prob": 0.5}, "dev": 31.0, "chosen": False},
        {"run": "AV3-p0.25", "setting": {"options.d_prob": 0.25}, "dev": 25.0, "chosen": True}]
    assert [g["chosen"] for g in lb["rows"]["AV5"]["grid"]] == [True] and lb["rows"]["AV5"]["grid"][0]["dev"] is None
    assert lb["rows"]["A0"]["grid"] == [] and lb["rows"]["AV0"]["grid"] == []
    assert all(lb["rows"][m]["steps"] == table["row_steps"][m]["steps"] for m in ("AV3", "AV5", "AV6"))
    assert lb["rows"]["AV6"]["steps"] == 6          # AV5's 3 steps + the adapter run's 3
    # claim 4 compares with the best dropout-only row on DEV (AV2), not on eval (AV1 has the lowest eval area)
    eval_best = min(("AV1", "AV2", "AV3"), key=lambda m: lb["rows"][m]["area"])
    assert eval_best == "AV1" and table["best_dropout_only_row_dev"] == "AV2"
    c4 = lb["claims"]["4_AV6_area_20pct_below_best_dropout"]
    assert "AV2" in c4["evidence"] and "AV1" not in c4["evidence"]
    assert lb["claims"]["1_video_helps"]["holds"] is True and lb["claims"]["2_bias"]["holds"] is True
    assert table["claims_by_interval"] == lb["claims"]
    # the eval set's precision: the adapter row against the best dropout-only row on dev, at rate 0.5
    pc = table["precision"]
    assert table["recipe_stage_seconds"] == {"15_rows_train_t": 3068, "16_rows_select_t": 62}
    # the machine as the benchmarks record it (one helper): CPU model (never empty), cores, memory, Python
    from avsr.utils.machine import machine_info
    assert set(table["machine"]) == set(machine_info()) and table["machine"]["cpu"]
    assert table["machine"]["cores"] == os.cpu_count()
    assert (pc["row"], pc["other"], pc["condition"]) == ("AV6", "AV2", "random@0.5")
    assert pc["half_width"] == pytest.approx((pc["ci95"][1] - pc["ci95"][0]) / 2)
    # the goal: AV5 and AV6 are its candidates; the spec's dropout rows AV1-AV3 are not, nor AV6 at its
    # dev-tuned threshold (an ablation of the paper's routing: two decodes of one row would let eval choose)
    assert set(lb["goal"]["rows"]) == {"AV5", "AV6"} and lb["goal"]["best_dropout"] == "AV2"
    # AV6-tuned states AV6's steps and dev grid
    assert lb["rows"]["AV6-tuned"]["steps"] == 6 and lb["rows"]["AV6-tuned"]["grid"] == lb["rows"]["AV6"]["grid"]
    assert lb["claims"][cl.GOAL_CLAIM]["holds"] in (True, False, cl.NOT_RESOLVED)
    from avsr.eval.render import leaderboard_md
    md = "\n".join(leaderboard_md(lb))
    assert "**The goal**" in md and "| AV6 | " in md.split("**The goal**")[1]
    assert table["best_dropout_dev"]["anchor"] == "none" and set(table["best_dropout_dev"]["area_paper_rates"]) == \
        {"AV1", "AV2", "AV3"}
    # where the errors are: the split adds up to the CER of every condition (this fake corpus has no
    # truth files, so no SNR / overlap bins)
    for m, r in lb["rows"].items():
        for k, e in r["errors"]["split"].items():
            assert e["sub"] + e["del"] + e["ins"] == pytest.approx(r["cer"][k]), (m, k)
    assert lb["rows"]["AV6"]["errors"]["split"]["0"] == {"sub": pytest.approx(20.0), "del": 0.0, "ins": 0.0}
    assert "bins" not in lb and "by_snr" not in lb["rows"]["AV6"]["errors"]


SPEC_COMBINED = """
defaults: {budget: {epochs: 1}, lr: 0.001, warmup_steps: 1, freeze: []}
rows:
  AV1: {init: av0_init, options: {d_prob: 1.0}}
  AV3: {init: av0, options: {d_prob: 0.5}}
  AV5:
    init: av0
    methods: [{mda_kd: {teacher: "@av0", distance: mse, tap: fused, weight: 1.0}}]
    grid: {methods.mda_kd.distance: {values: [mse, cosine], name: "-{}"}}
    select: {sweep: dev_kd, rates: [0, 0.5, 1.0], label: "{run}"}
    eval_best_per: methods.mda_kd.distance
  AV6:
    init: AV5
    name: "AV6-on-{init}"
    audio_aug: false
    methods: [ms_adapter]
    route: {thresholds: [0, 0.5], sweep: "dev_threshold-{init}{suffix}"}
  AV3+MS-Adapter:
    init: AV3
    name: "MSA-on-{init}"
    audio_aug: false
    methods: [ms_adapter]
    route: {thresholds: [0, 0.5], sweep: "dev_threshold-{init}{suffix}"}
  AV6-noadapter:
    decode: {of: AV6, adapters: zero, threshold: 0}
roles: {student: AV5, adapter: AV6, dropout_rows: [AV1, AV3], baseline_rows: [AV6-noadapter]}
tables: {t: {rows: [AV1, AV3, AV5, AV6, AV3+MS-Adapter, AV6-noadapter], search: beam10}}
"""


def test_the_goal_ranks_one_dev_chosen_decode_per_row_and_every_routed_row_decodes_as_routed(tmp_path, monkeypatch):
    """Decodes that dev did not choose as their row (AV5's best run of another distance, a routed row at its
    dev-tuned threshold) are in the table but no candidates of the goal, and a routed row other than AV6
    (MS-Adapter on another method) decodes at threshold 0 and, as ``<row>-tuned``, at its dev threshold."""
    good = _curve(2, 2.2)        # near-flat: would meet the goal if it were a candidate
    lb, _ = _leaderboard(tmp_path, monkeypatch, spec_text=SPEC_COMBINED,
                         dev={"AV5-mse": lambda r: .2, "AV5-cosine": lambda r: .3, "AV1": lambda r: .3,
                              "AV3": lambda r: .25},
                         evals={"AV5-cosine": good, "AV3+MS-Adapter": _curve(2.2, 3.0),
                                "AV3+MS-Adapter-tuned": good, "AV5": _curve(2, 3.6), "AV6-noadapter": _curve(2, 3.6)})
    ev = _Runner.specs["eval_t"]
    assert [m for m in ev if m.startswith("AV3+MS-Adapter")] == [
        "AV3+MS-Adapter=/packed/MSA-on-AV3@0", "AV3+MS-Adapter-tuned=/packed/MSA-on-AV3@0.5"]
    assert "AV5-cosine=/packed/AV5-cosine" in ev and "AV5=/packed/AV5-mse" in ev
    assert {"AV5-cosine", "AV3+MS-Adapter-tuned", "AV6-tuned"} <= set(lb["rows"])
    assert set(lb["goal"]["rows"]) == {"AV5", "AV6", "AV3+MS-Adapter"}
    # the extra decodes state their row's steps and dev grid
    assert lb["rows"]["AV5-cosine"]["grid"] == lb["rows"]["AV5"]["grid"]
    assert [g["run"] for g in lb["rows"]["AV5"]["grid"] if g["chosen"]] == ["AV5-mse"]
    assert lb["rows"]["AV3+MS-Adapter-tuned"]["steps"] == lb["rows"]["AV3+MS-Adapter"]["steps"] is not None
    # a decode-only row trains nothing, and its zeroed adapters add no parameters (its pack: 1,033 with 33
    # adapter parameters; AV0 1,000)
    assert lb["rows"]["AV6-noadapter"]["train_s"] == 0.0 and lb["rows"]["AV6-noadapter"]["params_added"] == 0
    assert lb["rows"]["AV6"]["params_added"] == ADAPTER_PARAMS


def test_the_leaderboard_states_what_its_intervals_resample(tmp_path, monkeypatch):
    lb, table = _leaderboard(tmp_path, monkeypatch, extra=["--bootstrap_unit", "recording",
                                                           "--train_args=--set model.dropout_rate=0.2"])
    lbm.validate_leaderboard(lb)
    # the recorded command runs again as it is: an argument with spaces stays one argument
    import shlex
    assert shlex.split(table["command"])[-1] == "--train_args=--set model.dropout_rate=0.2"
    assert lb["bootstrap"] == {"unit": "recording", "units": 10, "resamples": 1000, "widen": cl.small_sample_factor(10)}
    assert table["bootstrap_unit"] == "recording" and table["claims_by_interval"] == lb["claims"]
    assert "10 recordings" in lb["claims"]["4_AV6_area_20pct_below_best_dropout"]["evidence"]
    from avsr.eval.render import leaderboard_md
    assert "95 % bootstrap CI over the 10 eval recordings (sessions), each drawn with all its utterances, the " \
        "resamples widened x1.22 for that few recordings]" in "\n".join(leaderboard_md(lb))
    default, _ = _leaderboard(tmp_path / "u", monkeypatch)
    assert default["bootstrap"] == {"unit": "utterance", "units": N, "resamples": 1000}
    assert "95 % bootstrap CI over utterances]" in "\n".join(leaderboard_md(default))


def test_leaderboard_needs_the_corpus_facts_and_says_which_file_is_missing(tmp_path, monkeypatch):
    exp, data, corpus, spec = _rows_dir(tmp_path)
    os.remove(corpus / "synthmisp.json")
    monkeypatch.setattr(rb, "RowRunner", _Runner)
    with pytest.raises(SystemExit, match=r"synthmisp\.json: not found"):
        rb.main(["table", "--rows", str(spec), "--table", "t", "--exp_dir", str(exp), "--data_dir", str(data),
                 "--config", "c.yaml", "--leaderboard", str(tmp_path / "lb.json")])
    # an explicit --corpus_dir wins over the one the data dir points into
    other = tmp_path / "other"
    os.makedirs(other)
    json.dump({"preset": "tiny", "seed": 1}, open(other / "synthmisp.json", "w"))
    assert lbm.corpus_facts(str(other), str(data))["preset"] == "tiny"
    assert lbm.corpus_root_from_data(str(data)) == str(corpus)


def _valid():
    conds = list(lbm.CONDITIONS)
    row = {"cer": {c: 20.0 for c in conds}, "ci95": {c: [19.0, 21.0] for c in conds},
           "paired": {"A0@0": {"diff": -1.0, "ci95": [-2.0, 0.0], "p": 0.04}}, "area": 1.5, "train_s": 10.0,
           "params_added": 0}
    return {"corpus": {"preset": "mini", "seed": 1, "eval_segments": 10, "eval_speakers": 2, "train_hours": 1.5},
            "search": "greedy", "rows": {"A0": copy.deepcopy(row) | {"paired": {}}, "AV0": row},
            "claims": {"1_bias_reproduced": {"holds": "not resolved", "evidence": "AV0 − A0 ..."}}}


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d["corpus"].pop("seed"), "corpus: missing seed"),
    (lambda d: d["corpus"].update(seed=True), "corpus.seed"),
    (lambda d: d.update(search="beam"), "search"),
    (lambda d: d["rows"]["AV0"]["cer"].pop("babble-5"), "rows.AV0.cer: missing babble-5"),
    (lambda d: d["rows"]["AV0"]["ci95"].update({"0.25": [22.0, 21.0]}), "rows.AV0.ci95.0.25"),
    (lambda d: d["rows"]["AV0"]["paired"].update({"AV9@0": {"diff": 0.0, "ci95": [0, 0], "p": 1.0}}),
     "rows.AV0.paired.AV9@0"),
    (lambda d: d["rows"]["AV0"]["paired"]["A0@0"].update(p=1.5), "rows.AV0.paired.A0@0.p"),
    (lambda d: d["rows"]["AV0"].update(params_added=1.5), "rows.AV0.params_added"),
    (lambda d: d["rows"]["AV0"].update(extra=1), "rows.AV0: unexpected extra"),
    (lambda d: d["rows"]["AV0"].update(steps=-1), "rows.AV0.steps"),
    (lambda d: d["rows"]["AV0"].update(grid={"a": 1}), "rows.AV0.grid: expected a list"),
    (lambda d: d["rows"]["AV0"].update(grid=[{"run": "x", "setting": {}, "dev": None, "chosen": False}]),
     "rows.AV0.grid: expected exactly one chosen"),
    (lambda d: d["rows"]["AV0"].update(grid=[{"run": "x", "setting": {}, "dev": "1", "chosen": True}]),
     "rows.AV0.grid[0].dev"),
    (lambda d: d["rows"]["AV0"].update(grid=[{"run": "x", "setting": {}, "chosen": True}]),
     "rows.AV0.grid[0]: missing dev"),
    (lambda d: d["rows"]["AV0"]["cer"].update({"0": float("nan")}), "rows.AV0.cer.0"),
    (lambda d: d["claims"]["1_bias_reproduced"].update(holds="maybe"), "claims.1_bias_reproduced.holds"),
    (lambda d: d["claims"]["1_bias_reproduced"].update(holds=1), "claims.1_bias_reproduced.holds"),
    (lambda d: d["claims"]["1_bias_reproduced"].update(evidence=""), "claims.1_bias_reproduced.evidence"),
    (lambda d: d.update(extra=1), "top level: unexpected extra"),
    (lambda d: d.update(bootstrap={"unit": "speaker", "units": 8, "resamples": 1000}), "bootstrap: expected"),
    (lambda d: d.update(bootstrap={"unit": "recording", "units": 0, "resamples": 1000}), "bootstrap: expected"),
])
def test_validator_names_the_field(mutate, field):
    lbm.validate_leaderboard(_valid())
    ok = _valid()      # steps and grid are optional, and valid when well formed
    ok["rows"]["AV0"].update(steps=120, grid=[{"run": "AV0", "setting": {}, "dev": None, "chosen": True}])
    ok["bootstrap"] = {"unit": "recording", "units": 16, "resamples": 1000}
    lbm.validate_leaderboard(ok)
    d = _valid()
    mutate(d)
    with pytest.raises(lbm.LeaderboardError, match="^x.json: not a leaderboard") as e:
        lbm.validate_leaderboard(d, "x.json")
    assert field in str(e.value)


def test_leaderboard_refuses_a_sweep_without_its_conditions():
    curves = {"A0": _curve(3, 3), "AV0": _curve(2, 4)}
    sw = _eval_sweep(list(curves), curves)
    sw["conditions"].remove("babble-5dB")
    with pytest.raises(lbm.LeaderboardError, match="babble-5dB"):
        lbm.build_leaderboard(sw, {}, None, {m: {"train_s": 0, "params_added": 0} for m in curves})
    # the row stages' eval sweep (default conditions) holds every leaderboard condition
    assert set(lbm.CONDITIONS.values()) <= {c.name for c in default_conditions()}


def test_leaderboard_renders_rows_claims_and_where_the_errors_are(tmp_path, monkeypatch):
    from avsr.eval.render import leaderboard_md
    lb, _ = _leaderboard(tmp_path, monkeypatch)
    lb["bins"] = {"snr": {"0.0 to 3.0 dB": 120, "3.1 to 10.0 dB": 80}}
    for r in lb["rows"].values():
        r["errors"]["by_snr"] = {"0.0 to 3.0 dB": {"0": 25.0, "whole": 40.0}, "3.1 to 10.0 dB": {"0": 10.0, "whole": 12.5}}
    lbm.validate_leaderboard(lb)
    md = "\n".join(leaderboard_md(lb))
    rows = [ln.split(" | ")[0][2:] for ln in md.splitlines() if ln.startswith("| AV") or ln.startswith("| A0")]
    n = len(lb["rows"])
    assert rows[:n] == sorted(lb["rows"], key=lambda m: lb["rows"][m]["area"])      # sorted by area
    assert "`1_video_helps`: **holds**" in md and "`2_bias`: **holds**" in md
    assert "### Where the errors are" in md and "| AV6 | 20.0 / 0.0 / 0.0 |" in md
    assert "utterances per bin: 0.0 to 3.0 dB: 120, 3.1 to 10.0 dB: 80" in md and "| 25.0 / 40.0 | 10.0 / 12.5 |" in md
