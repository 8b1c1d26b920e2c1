"""The renderer (avsr.eval.render) on the committed robustness results: the core table's MDA-KD setting
stated as taken from the full table's dev ablation, the full table's ablation as chosen on dev, and the
claims (avsr.eval.claims) as written."""
import copy
import json
import os

from avsr.eval import claims as cl
from avsr.eval import render as mb
from avsr.eval.sweep import RATES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, "docs", "notebook", "results")


def _load(name):
    path = os.path.join(ROOT, "docs", "results", name)
    if not os.path.exists(path):                      # superseded variants and probes: the notebook
        path = os.path.join(NOTEBOOK, name)
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def test_core_table_states_its_kd_setting_comes_from_the_full_table():
    core = _load("robust_core.json")
    text = "\n".join(mb.sec_robust(core))
    assert not core["kd"].get("dev_mean_cer_0_.5_1") and not core["kd"].get("grid_dev_mean_cer_0_.5_1")
    assert "recipe's default, **mse**, λ_KD **100**" in text and "full table's distance and λ ablation" in text
    assert "(core table" in text and f"Search: **{core['search']}**" in text


def test_core_table_states_the_adapter_epochs_chosen_on_dev_and_each_half_of_claim_2():
    core = _load("robust_core.json")
    ad = core["adapter"]
    text = "\n".join(mb.sec_robust(core))
    grid = ad["epochs_dev_cer_random@1"]
    assert len(grid) > 1 and str(ad["epochs"]) == min(grid, key=grid.get)
    assert f"→ **{ad['epochs']}** (AV6 = {ad['row']})" in text
    line = next(x for x in text.splitlines() if x.startswith("2. Non-inferiority"))
    n = core["claims"]["2_non_inferiority"]
    assert line.count("(holds)") + line.count("(fails)") == 2
    assert ("at rate 0 (holds)" in line) == n["AV6_vs_AV0_rate0"]["holds"]
    # without the grid (one value): no adapter-epochs sentence
    one = copy.deepcopy(core)
    one["adapter"]["epochs_dev_cer_random@1"] = {}
    assert "MS-Adapter epochs" not in "\n".join(mb.sec_robust(one))


def test_all_parameter_full_table_renders_its_distance_ablation_and_its_own_notes(monkeypatch):
    monkeypatch.setattr(mb, "NOTES_DIR", NOTEBOOK)
    full = _load("robust_full_allparams.json")
    text = "\n".join(mb.sec_robust(full, notes="robust_full_allparams_notes.md"))
    kd = full["kd"]
    assert len(kd["dev_mean_cer_0_.5_1"]) == 4
    best = min(kd["dev_mean_cer_0_.5_1"], key=kd["dev_mean_cer_0_.5_1"].get)
    assert f"→ **{kd['chosen_distance']}**" in text and best == f"AV5-{kd['chosen_distance']}"
    assert "recipe's default" not in text and "all-parameter fine-tunes" in text
    with open(os.path.join(NOTEBOOK, "robust_full_allparams_notes.md"), encoding="utf-8") as f:
        assert f.read().strip() in text
    assert "robust_full_allparams_notes" not in "\n".join(mb.sec_robust(full, notes=False))
    # the same dict with the scores removed renders as the core table's fixed setting
    fixed = copy.deepcopy(full)
    fixed["kd"]["dev_mean_cer_0_.5_1"] = {}
    assert "recipe's default" in "\n".join(mb.sec_robust(fixed))


def test_distance_by_weight_grid_renders_every_cell_and_the_joint_minimum():
    r = copy.deepcopy(_load("robust_core.json"))
    grid = [{"distance": d, "weight": w, "row": f"AV5-{d}" + ("" if w == 1 else f"-w{w:g}"), "cer": c}
            for (d, w), c in {("mse", 1.0): 0.61, ("mse", 10.0): 0.58, ("mmd", 1.0): 0.6, ("mmd", 10.0): 0.62}.items()]
    r["kd"].update({"grid_dev_mean_cer_0_.5_1": grid, "chosen_distance": "mse", "chosen_weight": 10.0,
                    "chosen_row": "AV5-mse-w10"})
    text = "\n".join(mb.sec_robust(r, notes=False))
    assert "recipe's default" not in text
    for g in grid:
        assert f"{g['distance']} λ {g['weight']:g} {100 * g['cer']:.2f} %" in text
    assert "→ **mse, λ_KD 10** (AV5 = AV5-mse-w10)" in text


def test_frozen_parts_of_the_finetunes_are_stated():
    core = copy.deepcopy(_load("robust_core.json"))
    core["finetune_frozen"] = []
    assert "frozen" not in "\n".join(mb.sec_robust(core)).split("Search:")[0]
    core["finetune_frozen"] = ["audio_encoder", "shared_encoder"]
    text = "\n".join(mb.sec_robust(core))
    assert "(AV3, AV5, S.x) train only what is not frozen: `audio_encoder`, `shared_encoder` frozen" in text


def test_finetune_parts_probe_renders_each_variant_against_the_reference():
    r = _load("probe_finetune_parts.json")
    text = "\n".join(mb.sec_parts(r))
    assert f"| {r['reference']} | " in text and "reference |" in text
    for k in r["cer"]:
        assert f"| {k} | " in text
    p = r["paired_vs_reference"]["AV5"]["random@0"]
    assert f"{100 * p['rel_reduction']:+.1f} % [{100 * p['rel_lo']:+.1f}, {100 * p['rel_hi']:+.1f}]" in text


def test_study_trend_says_which_series_are_strictly_monotone():
    full = copy.deepcopy(_load("robust_full_earlier_mini.json"))
    # strictly monotone = Kendall's τ of ±1 (every pair of rows in order), the τ avsr.eval.claims writes
    def trend(dd, rel):
        sw = {"conditions": ["random@0"], "cer": {}, "similarity": {}}
        for m, d, c in zip(("S.1", "S.3", "S.5", "S.7"), dd, rel):
            sw["cer"][m] = {"random@0": {"relative_cer_vs_baseline": c}}
            sw["similarity"][m] = {"0": {"diagonal_dominance": d, "linear_cka": d}}
        return cl.study_trend(sw)
    full["claims"]["4_study_trend"] = trend([0.14, 0.15, 0.16, 0.155], [0.7, 0.65, 0.6, 0.55])  # dips at S.7
    line = next(x for x in mb.sec_robust(full, notes=False) if x.startswith("4. Study trend"))
    assert "relative CER yes, diagonal dominance no" in line and "**holds**" in line
    full["claims"]["4_study_trend"] = trend([0.14, 0.15, 0.16, 0.17], [0.7, 0.65, 0.6, 0.55])
    line = next(x for x in mb.sec_robust(full, notes=False) if x.startswith("4. Study trend"))
    assert "diagonal dominance yes" in line
    full["claims"]["4_study_trend"] = trend([0.14, 0.14, 0.16, 0.17], [0.7, 0.7, 0.6, 0.55])   # ties: not strict
    line = next(x for x in mb.sec_robust(full, notes=False) if x.startswith("4. Study trend"))
    assert "relative CER no, diagonal dominance no" in line


def test_wall_time_names_the_run_that_did_the_work_and_earlier_runs():
    r = copy.deepcopy(_load("robust_core.json"))
    r["seconds_from_command"] = "python scripts/bench_robust.py --out /tmp/x.json"
    r["seconds_earlier_runs"] = [{"why": "before the grid grew", "seconds": {"total_this_run": 4008.0}}]
    text = "\n".join(mb.sec_robust(r, notes=False))
    assert "that did the work, `python scripts/bench_robust.py --out /tmp/x.json`" in text
    assert "Earlier run of the same table (options of the script in the recorded command: before the grid grew; " \
           "its rows and sweeps were reused): " \
           "total_this_run 4008 s." in text
    del r["seconds_from_command"], r["seconds_earlier_runs"]
    text = "\n".join(mb.sec_robust(r, notes=False))
    assert "Wall time (this run of the script;" in text and "Earlier run" not in text


def _sweep(errors, n_utt=20, ref=10):
    """A sweep dict as ``avsr eval`` writes it: ``errors[model](cond) -> errors per utterance``."""
    conds = [f"random@{r:g}" for r in RATES] + ["whole"]
    ue = {m: {c: [f(c)] * n_utt for c in conds} for m, f in errors.items()}
    cer = {m: {c: {"cer": sum(v) / (ref * n_utt)} for c, v in d.items()} for m, d in ue.items()}
    return {"conditions": conds, "utt_errors": ue, "utt_ref_chars": [ref] * n_utt, "cer": cer,
            "degradation_area": {"AV3": 1.0, "AV6": 0.5}}


def test_claims_write_each_half_of_claim_2_and_the_renderer_reads_them():
    rate = lambda c: float(c.split("@")[1]) if "@" in c else 1.0  # noqa: E731
    base = {"A0": lambda c: 6, "AV0": lambda c: 3 + 6 * rate(c), "AV3": lambda c: 4 + 2 * rate(c)}
    # AV6: equal to AV0 at rate 0, 1 error per utterance (10 % abs.) above A0 at rate 1 only
    sw = _sweep({**base, "AV6": lambda c: 3 + 4 * rate(c)})
    n = cl.claims(sw, "AV3")["2_non_inferiority"]
    assert n["AV6_vs_AV0_rate0"]["holds"] and not n["AV6_vs_A0_every_rate_holds"] and not n["holds"]
    assert not n["AV6_vs_A0_every_condition"]["random@1"]["holds"] and n["AV6_vs_A0_every_condition"]["random@0.5"]["holds"]
    # within the margin everywhere
    ok = cl.claims(_sweep({**base, "AV6": lambda c: 3 + 3 * rate(c)}), "AV3")["2_non_inferiority"]
    assert ok["AV6_vs_A0_every_rate_holds"] and ok["holds"]
    # the renderer states the half the claims wrote, not a re-derivation of its own
    core = _load("robust_core.json")
    core["claims"]["2_non_inferiority"] = n
    line = next(x for x in "\n".join(mb.sec_robust(core)).splitlines() if x.startswith("2. Non-inferiority"))
    assert "at rate 0 (holds)" in line and line.count("(fails)") == 1 and line.endswith("→ **fails**.")
    n2 = copy.deepcopy(ok)
    n2["AV6_vs_A0_every_rate_holds"] = False
    core["claims"]["2_non_inferiority"] = n2
    line = next(x for x in "\n".join(mb.sec_robust(core)).splitlines() if x.startswith("2. Non-inferiority"))
    assert line.count("(fails)") == 1


def _leaderboard():
    conds = ["0", "0.25", "0.5", "0.75", "1", "segment0.5", "whole", "babble0", "babble-5"]
    row = lambda v: {"cer": {c: v for c in conds}, "ci95": {c: [v - 1, v + 1] for c in conds},  # noqa: E731
                     "paired": {}, "area": 2.5, "train_s": 123.4, "params_added": 0}
    av6 = row(21.0) | {"params_added": 33792, "paired": {"A0@1": {"diff": -4.0, "ci95": [-5.0, -3.0], "p": 0.0}},
                       "area": 1.25, "steps": 1200,
                       "grid": [{"run": "AV6-e2", "setting": {"budget.epochs": 2}, "dev": 30.5, "chosen": False},
                                {"run": "AV6-e4", "setting": {"budget.epochs": 4}, "dev": 29.25, "chosen": True}]}
    return {"corpus": {"preset": "mini", "seed": 1, "eval_segments": 640, "eval_speakers": 8, "train_hours": 3.21},
            "search": "beam10", "rows": {"A0": row(25.0), "AV6": av6},
            "claims": {"4_AV6_area_20pct_below_best_dropout": {"holds": "not resolved", "evidence": "gap +0.10, 95 % CI [-0.20, +0.40]"},
                       "1_bias_reproduced": {"holds": True, "evidence": "AV0 − A0 at random@0: -4.00"}}}


def test_leaderboard_section_is_rendered_only_when_leaderboard_json_exists(tmp_path):
    assert "## Leaderboard" not in mb.synthmisp_results_md(str(tmp_path))
    with open(tmp_path / "leaderboard.json", "w", encoding="utf-8") as f:
        json.dump(_leaderboard(), f)
    text = mb.synthmisp_results_md(str(tmp_path))
    assert "## Leaderboard" in text and "SynthMISP `mini`, seed 1; 640 eval segments from 8 speakers; 3.21 h" in text
    assert "| row | 0 | 0.25 | 0.5 | 0.75 | 1 | segment0.5 | whole | babble0 | babble-5 | area | train s | params added | steps | dev grid |" in text
    assert "| AV6 | 21.0 [20.0, 22.0] |" in text
    assert "| 1.25 | 123 | 33,792 | 1,200 | budget.epochs=2 (30.5); **budget.epochs=4 (29.2)** |" in text
    assert "| 2.50 | 123 | 0 |  |  |" in text           # A0: no steps recorded, no grid
    assert text.index("| AV6 |") < text.index("| A0 |")    # sorted by area
    assert "- `4_AV6_area_20pct_below_best_dropout`: **not resolved**. gap +0.10, 95 % CI [-0.20, +0.40]." in text
    assert "- `1_bias_reproduced`: **holds**." in text
    # a leaderboard.json off the schema is an error naming the file, not a half-rendered page
    bad = _leaderboard()
    del bad["rows"]["AV6"]["area"]
    with open(tmp_path / "leaderboard.json", "w", encoding="utf-8") as f:
        json.dump(bad, f)
    import pytest
    with pytest.raises(ValueError, match=r"leaderboard\.json: not a leaderboard.*rows\.AV6: missing area"):
        mb.synthmisp_results_md(str(tmp_path))


def _toy_sweep(av0_full, av0_none, a0, n=60, seed=0):
    """A sweep dict of ``avsr eval``'s form: per-utterance errors of A0 and AV0 (10 ref chars each)."""
    import numpy as np
    rng = np.random.default_rng(seed)
    conds = ["random@0", "random@0.5", "random@1", "whole"]

    def errs(rate):
        return [int(x) for x in rng.binomial(10, rate, size=n)]

    ue = {"A0": {c: errs(a0) for c in conds[:1]}, "AV0": {"random@0": errs(av0_full)}}
    for c in conds[1:]:
        ue["A0"][c] = ue["A0"]["random@0"]
    ue["AV0"]["random@0.5"] = errs((av0_full + av0_none) / 2)
    ue["AV0"]["random@1"] = ue["AV0"]["whole"] = errs(av0_none)
    cer = {m: {c: {"cer": sum(v[c]) / (10 * n), "lo": sum(v[c]) / (10 * n) - 0.03, "hi": sum(v[c]) / (10 * n) + 0.03,
                   "relative_cer_vs_baseline": 0.5}
               for c in conds} for m, v in ue.items()}
    return {"data_dir": "toy", "utts": n, "search": "greedy", "conditions": conds, "cer": cer,
            "utt_errors": ue, "utt_ref_chars": [10] * n, "timing": {"wall_seconds": 1.0, "load_seconds": 0.1}}


def test_sweep_md_states_paired_tests_of_video_against_audio_and_no_video_against_full():
    sw = _toy_sweep(av0_full=0.3, av0_none=0.8, a0=0.5)
    text = mb.sweep_md(sw, reference="AV0", baseline="A0")
    rows = {l.split(" | ")[0].lstrip("| "): l for l in text.splitlines() if l.startswith("| AV0")}
    assert rows["AV0 vs A0, full video"].endswith("| better |")
    assert rows["AV0: full video vs whole (no video)"].endswith("| better |")
    assert not any(l.startswith("| A0:") for l in text.splitlines())   # A0 ignores video: no such test
    bias = next(l for l in text.splitlines() if l.startswith("| A0 vs AV0 with whole (no video)"))
    assert bias.endswith("| better |")                                   # A0 (0.5) beats AV0 without video (0.8)
    # no real difference: the verdict is not resolved (independent draws at one rate), or not better
    # (identical errors: no resample on the better side), never "better"
    same = _toy_sweep(av0_full=0.5, av0_none=0.5, a0=0.5, seed=3)
    line = next(l for l in mb.sweep_md(same, baseline="A0").splitlines() if l.startswith("| AV0 vs A0"))
    assert line.endswith("| not resolved |")
    same["utt_errors"]["AV0"]["random@0"] = list(same["utt_errors"]["A0"]["random@0"])
    line = next(l for l in mb.sweep_md(same, baseline="A0").splitlines() if l.startswith("| AV0 vs A0"))
    assert line.endswith("| not better |")


def test_sweep_plot_draws_an_interval_band_per_model(tmp_path, monkeypatch):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.axes
    bands = []
    orig = matplotlib.axes.Axes.fill_between
    monkeypatch.setattr(matplotlib.axes.Axes, "fill_between",
                        lambda self, x, lo, hi, **kw: bands.append((list(lo), list(hi))) or orig(self, x, lo, hi, **kw))
    sw = _toy_sweep(av0_full=0.3, av0_none=0.8, a0=0.5)
    mb.plot_sweep(sw, [0, 0.5, 1], "A0", str(tmp_path / "p.png"))
    assert len(bands) == 2 and (tmp_path / "p.png").stat().st_size > 0
    lo, hi = bands[1]
    assert all(h - l > 5 for l, h in zip(lo, hi))     # the band spans each point's interval (in %)


def test_sweep_md_names_the_data_dir_from_its_recipe_or_data_part_not_the_machines_checkout():
    sw = _toy_sweep(av0_full=0.3, av0_none=0.8, a0=0.5)
    sw["data_dir"] = "/home/me/src/avsr/recipes/synthmisp/data/synthmisp_demo/eval"
    assert "on `recipes/synthmisp/data/synthmisp_demo/eval` (60 utterances)" in mb.sweep_md(sw).splitlines()[0]
    sw["data_dir"] = "/scratch/run1/data/eval"
    assert "on `data/eval`" in mb.sweep_md(sw)



def _makefile_run(name):
    """The ``./run.sh ...`` command of a Makefile target or variable ``name`` (continuation lines joined), as
    {option: value}."""
    import re
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    lines = open(os.path.join(root, "Makefile"), encoding="utf-8").read().replace("\\\n", " ").splitlines()
    start = next(i for i, ln in enumerate(lines) if re.match(rf"{re.escape(name)}\s*(:|=|:=)", ln))
    line = next(ln for ln in lines[start:] if "./run.sh" in ln)
    return _opts(re.sub(r"\s+\)\s*$", "", line.split("./run.sh", 1)[1]))   # the subshell's closing ")"


def _opts(cmd):
    import shlex
    toks, out = shlex.split(cmd.replace("\\\n", " ")), {}
    for opt, val in zip(toks[::2], toks[1::2]):      # every option here takes one value
        assert opt.startswith("--"), (opt, cmd)
        out[opt] = val
    return out


def test_rendered_recipe_commands_are_the_makefiles():
    # RESULTS.md shows the commands `make bench-train` / `make bench-robust` run: they must not drift apart
    # (paths differ in form: the Makefile's are from the project root, the shown ones from the recipe)
    paths = {"--corpus_dir", "--rows_dir", "--rows_out", "--nj"}
    mk, shown = _makefile_run("bench-train"), _opts(mb.MINI_RUN.split("./run.sh", 1)[1])
    assert set(mk) - {"--nj"} == set(shown) - {"--nj"}, (mk, shown)
    assert {k: v for k, v in mk.items() if k not in paths} == {k: v for k, v in shown.items() if k not in paths}
    mk = _makefile_run("ROWS_RUN")
    shown = _opts(mb.ROWS_RUN.format(table="core").split("./run.sh", 1)[1])
    assert set(mk) - {"--nj"} == set(shown) - {"--nj", "--rows_table", "--rows_out"}, (mk, shown)
    assert {k: v for k, v in mk.items() if k not in paths} == \
        {k: v for k, v in shown.items() if k not in paths | {"--rows_table"}}


def _write(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f)


def test_mini_run_of_the_current_recipe_gets_its_own_section_and_earlier_runs_keep_their_note(tmp_path):
    """A current run's section, and no earlier-runs section beside it (those JSONs live in docs/notebook);
    a calibration made before the official preparation keeps its table under the old-rules note."""
    vb = {"rel_reduction": 0.3, "rel_lo": 0.25, "rel_hi": 0.35, "p_b_not_better": 0.0}
    rows = [{"model": "A0", "set": "eval", "search": "beam10", "cer": 0.30, "lo": 0.28, "hi": 0.32},
            {"model": "AV0", "set": "eval", "search": "beam10", "cer": 0.21, "lo": 0.19, "hi": 0.23, "vs_baseline": vb}]
    _write(str(tmp_path / "mini" / "report.json"), {"rows": rows})
    _write(str(tmp_path / "mini" / "sweep.json"),
           {"search": "beam10", "cer": {"AV0": {"whole": {"cer": 0.33, "lo": 0.31, "hi": 0.35}}}})
    cal = {"models": {"a0": {"epochs": 30, "train_seconds_total": 5931.0}}, "report": rows, "command": "collect",
           "data_summary": {"splits": {"train": {"hours": 4.2, "prep": {"text_norm": "official"}}}}}
    _write(str(tmp_path / "calibration_mini.json"), cal)
    md = mb.synthmisp_results_md(str(tmp_path))
    run = md.split("## `make bench-train` (the `mini` preset: 4.2 h", 1)
    assert len(run) == 2, md
    section = run[1]
    assert "| AV0 | eval | beam10 | 21.00 [19.00, 23.00] | +30.0 % [+25.0, +35.0], 0.000 | `make bench-train` |" in section
    assert "| AV0, no video (whole) | eval | beam10 | 33.00 [31.00, 35.00] |" in section
    assert "A0 30 epochs in 5,931 s" in section
    assert "earlier data rules" not in md and "## The `mini` preset" not in md and "## A0, V, AV0 (recipe" not in md
    # a calibration made before the official preparation: no run section, the old table under the old note
    del cal["data_summary"]["splits"]["train"]["prep"]["text_norm"]
    _write(str(tmp_path / "calibration_mini.json"), cal)
    md = mb.synthmisp_results_md(str(tmp_path))
    assert "make bench-train` (the `mini` preset" not in md and "earlier runs" not in md
    old = md.split("## The `mini` preset", 1)[1]
    assert "earlier data rules" in old and "## A0, V, AV0 (recipe stages 6-8" in old


def test_robust_table_states_the_claims_by_interval_and_the_precision_of_its_eval_set():
    core = copy.deepcopy(_load("robust_core.json"))
    core["claims_by_interval"] = {"2a_AV6_not_worse_than_AV0_at_0": {"holds": "not resolved", "evidence": "E2a"},
                                  "1_bias_reproduced": {"holds": True, "evidence": "E1"},
                                  "4_AV6_area_20pct_below_best_dropout": {"holds": False, "evidence": "E4"}}
    core["precision"] = {"row": "AV6", "other": "AV3", "condition": "random@0.5", "diff": 0.2, "ci95": [-0.35, 0.76],
                         "half_width": 0.555, "max_half_width": 1.0, "holds": True, "evidence": "x"}
    text = "\n".join(mb.sec_robust(core, notes=False))
    assert "- `2a_AV6_not_worse_than_AV0_at_0`: **not resolved**. E2a." in text
    assert "- `1_bias_reproduced`: **holds**. E1." in text and "- `4_AV6_area_20pct_below_best_dropout`: **fails**. E4." in text
    assert "AV6 − AV3 at random@0.5: +0.20 points, 95 % CI [-0.35, +0.76], half-width 0.56 points (target ≤ 1) → **holds**" in text
    # the point estimates stay, labelled as such, after the decisions
    assert text.index("**Claims by interval**") < text.index("**Point estimates of the same claims**")
    del core["claims_by_interval"], core["precision"]
    text = "\n".join(mb.sec_robust(core, notes=False))
    assert "Claims by interval" not in text and "**Claims** (paired bootstrap" in text and "separate methods" not in text
    # the recipe's stage times, when the table has them
    core["recipe_stage_seconds"] = {"15_rows_train_core": 3068, "16_rows_select_core": 62, "17_rows_sweep_core": 1330}
    assert ("Recipe stages of this table (wall time, from the stage markers): 15_rows_train_core 3,068 s, "
            "16_rows_select_core 62 s, 17_rows_sweep_core 1,330 s; 74 min in all.") in "\n".join(mb.sec_robust(core))
