"""Row specs (avsr.eval.rows) and their driver (avsr.bin.rows): parsing with clear errors, grids expanded
into the run names the rows dirs already hold, dev choices (ties to the earlier run), and the run
bookkeeping: a finished run trained from another init, budget, lr, frozen parts or method settings is
moved aside, not reused.  avsr.bin.train is replaced by a fake that writes what a finished run has."""
import json
import os

import pytest
import yaml

from avsr.bin import rows as rb
from avsr.eval.rows import RowSpecError, choose_on_dev, expand, load_spec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPEC = os.path.join(ROOT, "conf", "rows", "dai2024.yaml")


def _fake_sh(calls):
    def fake_sh(cmd, log):  # stands in for avsr.bin.train: writes what a finished row has
        d = cmd[cmd.index("--exp_dir") + 1]
        init = cmd[cmd.index("--init") + 1]
        inits = []                            # every --init spec (AV0's own init has two)
        for x in cmd[cmd.index("--init") + 1:]:
            if x.startswith("--"):
                break
            inits.append(x)
        sets, cur = {}, False                 # every --set group (a method may add its own before the trainer's)
        for x in cmd:
            cur = x == "--set" or (cur and not x.startswith("--"))
            if cur and x != "--set":
                sets.update([x.split("=", 1)])
        freeze = []
        if "--freeze_param" in cmd:
            for x in cmd[cmd.index("--freeze_param") + 1:]:
                if x.startswith("--"):
                    break
                freeze.append(x)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "config.yaml"), "w") as f:
            yaml.safe_dump({"trainer": {"init": init if len(inits) == 1 else inits, **{k[len("trainer."):]: float(v) for k, v in sets.items()
                                                         if k.startswith("trainer.")},
                                        **({"freeze_param": freeze} if freeze else {})},
                            "model": {k[len("model."):]: yaml.safe_load(v) for k, v in sets.items() if k.startswith("model.")},
                            "methods": [cmd[i + 1] for i, x in enumerate(cmd) if x == "--method"]}, f)
        open(os.path.join(d, "model.pth"), "w").write("{}")
        steps = 7 * int(float(sets["trainer.max_epochs"]))      # 7 optimiser steps an epoch
        if "trainer.max_steps" in sets:
            steps = min(steps, int(sets["trainer.max_steps"]))
        json.dump({"history": [{"step": steps, "train_seconds": 1.0}]},
                  open(os.path.join(d, "train_result.json"), "w"))
        calls.append(init)
    return fake_sh


def _runner(tmp_path, calls):
    r = rb.RowRunner(str(tmp_path / "exp"), str(tmp_path / "data"), "c.yaml")
    r.sh = _fake_sh(calls)
    return r


# ------------------------------------------------------------------------------------ bookkeeping
def test_steps_budget_sets_max_steps_and_a_run_with_another_budget_is_moved_aside(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("rows: {A: {init: av0, budget: {steps: 300}, grid: {budget.steps: {values: [300, 600], "
                 "name: '-s{}'}}, select: {sweep: dev_a, rates: [0]}}}\ntables: {t: {rows: [A]}}")
    runs = expand(load_spec(str(p), "t").rows["A"])
    assert [(r.name, r.steps) for r in runs] == [("A-s300", 300), ("A-s600", 600)]
    assert runs[0].epochs >= 100                      # the steps end the training, not the epochs
    calls = []
    b = _runner(tmp_path, calls)
    b.train("A", ["/x/av0.pth"], [], epochs=runs[0].epochs, steps=300)
    cfg = yaml.safe_load(open(os.path.join(b.rows_dir, "A", "config.yaml")))["trainer"]
    assert cfg["max_steps"] == 300
    b.train("A", ["/x/av0.pth"], [], epochs=runs[0].epochs, steps=300)     # reused
    b.train("A", ["/x/av0.pth"], [], epochs=runs[0].epochs, steps=600)     # another budget: retrained
    b.train("A", ["/x/av0.pth"], [], epochs=runs[0].epochs)                # no step budget: retrained
    assert calls == ["/x/av0.pth"] * 3
    assert len([n for n in os.listdir(b.rows_dir) if n.startswith("A.stale-")]) == 2


def test_recipe_train_args_reach_every_row_before_its_own_settings(tmp_path):
    """The recipe's --train_args (the mini's dropout 0.2) train the rows too; the row's own --set wins."""
    cmds = []
    r = rb.RowRunner(str(tmp_path / "exp"), "d", "c.yaml",
                     train_args=rb.shlex.split("--set model.dropout_rate=0.2 trainer.max_epochs=1"))
    fake = _fake_sh([])
    r.sh = lambda cmd, log: (cmds.append(cmd), fake(cmd, log))
    r.train("A", ["/x/av0.pth"], ["--set", "model.adapter_rank=4"], epochs=3)
    cmd = cmds[0]
    i = cmd.index("model.dropout_rate=0.2")
    assert cmd[i - 1] == "--set" and i < cmd.index("model.adapter_rank=4") < cmd.index("trainer.max_epochs=3")
    assert cmd.index("trainer.max_epochs=1") < cmd.index("trainer.max_epochs=3")     # later --set wins
    assert rb.build_parser().parse_args(["train", "--rows", "s", "--exp_dir", "e", "--data_dir", "d", "--config",
                                         "c", "--train_args=--set model.dropout_rate=0.2"]).train_args \
        == "--set model.dropout_rate=0.2"


def test_row_trained_with_other_recipe_model_settings_is_moved_aside(tmp_path):
    calls = []

    def runner(dropout):
        r = rb.RowRunner(str(tmp_path / "exp"), "d", "c.yaml", train_args=["--set", f"model.dropout_rate={dropout}"])
        r.sh = _fake_sh(calls)
        return r
    runner(0.2).train("A", ["/x/av0.pth"], [], epochs=2)
    runner(0.2).train("A", ["/x/av0.pth"], [], epochs=2)          # same settings: reused
    assert len(calls) == 1
    r = runner(0.1)
    r.train("A", ["/x/av0.pth"], [], epochs=2)                      # another dropout: trained again
    assert len(calls) == 2
    assert len([n for n in os.listdir(r.rows_dir) if n.startswith("A.stale-")]) == 1
    assert yaml.safe_load(open(os.path.join(r.rows_dir, "A", "config.yaml")))["model"]["dropout_rate"] == 0.1


def test_finished_row_is_skipped_with_same_init(tmp_path):
    calls = []
    b = _runner(tmp_path, calls)
    b.train("AV6", ["/x/AV5-mse/model.pth"], [])
    b.train("AV6", ["/x/AV5-mse/model.pth"], [])
    assert calls == ["/x/AV5-mse/model.pth"]


def test_row_from_other_init_is_moved_aside_with_its_pack_and_sweeps(tmp_path):
    calls = []
    b = _runner(tmp_path, calls)
    d = b.train("AV6", ["/x/AV5-mse/model.pth"], [])
    packed = os.path.join(b.rows_dir, "packed", "AV6")
    os.makedirs(packed)
    for name, path in (("eval_core", packed), ("dev_kd", "/elsewhere")):
        os.makedirs(os.path.join(b.rows_dir, "sweep", name))
        json.dump({"models": {"M": {"path": os.path.abspath(path), "adapter_threshold": None}}},
                  open(os.path.join(b.rows_dir, "sweep", name, "sweep.json"), "w"))
    d2 = b.train("AV6", ["/x/AV5-gauss_kl/model.pth"], [])
    assert d2 == d and calls == ["/x/AV5-mse/model.pth", "/x/AV5-gauss_kl/model.pth"]
    assert not os.path.exists(packed)                        # the old pack is not reused
    assert not os.path.exists(os.path.join(b.rows_dir, "sweep", "eval_core"))  # nor sweeps that decoded it
    assert os.path.exists(os.path.join(b.rows_dir, "sweep", "dev_kd"))         # other sweeps stay
    stale = [n for n in os.listdir(b.rows_dir) if n.startswith("AV6.stale-")]
    assert any(n.endswith(".packed") for n in stale) and any(".sweep-eval_core" in n for n in stale)
    cfg = yaml.safe_load(open(os.path.join(d2, "config.yaml")))
    assert cfg["trainer"]["init"] == "/x/AV5-gauss_kl/model.pth"


def test_av0_settings_single_and_several_init_specs(tmp_path):
    b = _runner(tmp_path, [])
    d = os.path.join(b.exp, "train_av0")
    os.makedirs(d)
    noise = 'audio_noise:{"prob": 0.8, "snr": [-20, 5]}'
    sp = 'speed_perturb:{"factors": [0.9,1.0,1.1]}'
    for init, want in (("/x/a0/model.pth", ["/x/a0/model.pth"]),   # one spec: stored as a plain string
                       (["/x/a0/model.pth", "/x/v/model.pth::visual_"], ["/x/a0/model.pth", "/x/v/model.pth::visual_"])):
        with open(os.path.join(d, "config.yaml"), "w") as f:
            yaml.safe_dump({"trainer": {"init": init}, "methods": [sp, noise, 'mda_kd:{"teacher": "t"}']}, f)
        # AV0's augmentation, speed perturbation included (the mini recipe trains every model with it)
        assert b.av0_settings() == (want, ["--method", sp, "--method", noise])


def test_row_with_other_epochs_or_lr_is_moved_aside(tmp_path):
    calls = []
    b = _runner(tmp_path, calls)
    b.train("AV3", ["/x/av0.pth"], [], epochs=1)
    b.train("AV3", ["/x/av0.pth"], [], epochs=4)     # a 4-epoch budget must not reuse the 1-epoch row
    b.train("AV3", ["/x/av0.pth"], [], epochs=4)     # ...and then reuses the 4-epoch one
    b.train("AV3", ["/x/av0.pth"], [], epochs=4, lr=2e-4)
    assert calls == ["/x/av0.pth"] * 3
    assert len([n for n in os.listdir(b.rows_dir) if n.startswith("AV3.stale-")]) == 2
    cfg = yaml.safe_load(open(os.path.join(b.rows_dir, "AV3", "config.yaml")))["trainer"]
    assert cfg["max_epochs"] == 4 and cfg["lr"] == 2e-4
    assert rb.budget_steps(os.path.join(b.rows_dir, "AV3")) == 28


def test_row_with_other_method_settings_is_moved_aside(tmp_path):
    calls = []
    b = _runner(tmp_path, calls)
    kd1 = ["--d_prob", "0.5", "--method", 'mda_kd:{"distance": "mse", "weight": 1.0}']
    kd10 = ["--d_prob", "0.5", "--method", 'mda_kd:{"distance": "mse", "weight": 10.0}']
    b.train("AV5-mse", ["/x/av0.pth"], kd1)
    b.train("AV5-mse", ["/x/av0.pth"], kd1)     # same settings: reused
    b.train("AV5-mse", ["/x/av0.pth"], kd10)    # the same name for another λ_KD: not reused
    assert calls == ["/x/av0.pth"] * 2
    assert len([n for n in os.listdir(b.rows_dir) if n.startswith("AV5-mse.stale-")]) == 1
    assert yaml.safe_load(open(os.path.join(b.rows_dir, "AV5-mse", "config.yaml")))["methods"] == [kd10[-1]]
    assert rb._methods(["--d_prob", "0.5", "--method", "a", "--method", "b:{}"]) == ["a", "b:{}"]


def test_rows_dir_option(tmp_path):
    b = rb.RowRunner(str(tmp_path / "exp"), "d", "c", rows_dir=str(tmp_path / "elsewhere"))
    assert b.rows_dir == str(tmp_path / "elsewhere") and os.path.isdir(b.rows_dir)
    assert rb.RowRunner(str(tmp_path / "exp"), "d", "c").rows_dir == str(tmp_path / "exp" / "rows")


def test_row_with_other_frozen_parts_is_moved_aside(tmp_path):
    calls = []
    b = _runner(tmp_path, calls)
    b.train("AV3", ["/x/av0/model.pth"], ["--d_prob", "0.5"])
    b.train("AV3", ["/x/av0/model.pth"], ["--d_prob", "0.5"], freeze=["audio_encoder", "shared_encoder"])
    assert len(calls) == 2                                   # the unfrozen row is not a frozen one
    cfg = yaml.safe_load(open(os.path.join(b.rows_dir, "AV3", "config.yaml")))
    assert cfg["trainer"]["freeze_param"] == ["audio_encoder", "shared_encoder"]
    assert any(n.startswith("AV3.stale-") for n in os.listdir(b.rows_dir))
    b.train("AV3", ["/x/av0/model.pth"], ["--d_prob", "0.5"], freeze=["audio_encoder", "shared_encoder"])
    assert len(calls) == 2                                   # same freeze: reused


# ------------------------------------------------------------------------------------ dev choice
def test_kd_choice_is_one_joint_dev_minimum_over_distance_and_weight():
    row = load_spec(SPEC, "full").rows["AV5"]
    row.grid["methods.mda_kd.distance"]["values"] = ["mse", "cosine", "mmd"]
    row.grid["methods.mda_kd.weight"]["values"] = [1.0, 10.0]
    runs = expand(row)
    grid = {(r.values["methods.mda_kd.distance"], r.values["methods.mda_kd.weight"]): r.name for r in runs}
    assert list(grid.values()) == ["AV5-mse", "AV5-mse-w10", "AV5-cosine", "AV5-cosine-w10", "AV5-mmd", "AV5-mmd-w10"]
    # frozen-audio-side dev scores: at λ 1 cosine leads mse, so choosing the distance at λ 1 and then λ for
    # cosine alone gives cosine λ 10 (0.5983); the joint minimum is mse λ 10 (0.5938)
    score = {"AV5-mse": 0.6001, "AV5-cosine": 0.5998, "AV5-mmd": 0.6012,
             "AV5-mse-w10": 0.5938, "AV5-cosine-w10": 0.5983, "AV5-mmd-w10": 0.6100}
    assert choose_on_dev(grid, score) == ("mse", 10.0)
    # a tie goes to the earlier distance, then the earlier weight
    tie = dict.fromkeys(score, 0.6)
    assert choose_on_dev(grid, tie) == ("mse", 1.0)
    tie["AV5-cosine"] = tie["AV5-mmd-w10"] = 0.5
    assert choose_on_dev(grid, tie) == ("cosine", 1.0)
    # a tie in error counts is a tie however the mean was summed (1635 errors over 3 x 761 characters both
    # ways; as floats the later one is 1 ulp lower): the earlier key wins, not the rounding
    tie = dict.fromkeys(score, 0.8)
    tie["AV5-mse"] = (516 / 761 + 560 / 761 + 559 / 761) / 3
    tie["AV5-mse-w10"] = (513 / 761 + 565 / 761 + 557 / 761) / 3
    assert tie["AV5-mse-w10"] < tie["AV5-mse"]
    assert choose_on_dev(grid, tie) == ("mse", 1.0)
    # nothing scored (one row given, as in the core table): the first key
    assert choose_on_dev({("mse", 10.0): "AV5-mse-w10"}, {}) == ("mse", 10.0)
    # a row left unscored is an error, not a win
    with pytest.raises(ValueError, match="AV5-mmd-w10"):
        choose_on_dev(grid, {r: v for r, v in score.items() if r != "AV5-mmd-w10"})


# ------------------------------------------------------------------------------------ the spec
def test_dai_spec_gives_the_run_names_and_train_arguments_of_the_rows_dirs():
    core, full = load_spec(SPEC, "core"), load_spec(SPEC, "full")
    assert list(core.rows) == ["AV3", "AV5", "AV6"] and core.search == "beam10" and full.search == "greedy"
    assert [r.name for r in expand(core.rows["AV5"])] == ["AV5-mse-w100"]
    assert [r.name for r in expand(full.rows["AV5"])][:4] == ["AV5-mse", "AV5-mse-w10", "AV5-mse-w100", "AV5-cosine"]
    assert len(expand(full.rows["AV5"])) == 12
    av6 = expand(full.rows["AV6"], init_run="AV5-mse-w100")
    assert [r.name for r in av6] == ["AV6-on-AV5-mse-w100"] + [f"AV6-on-AV5-mse-w100-e{e}" for e in (4, 8, 16, 32)]
    assert [r.epochs for r in av6] == [2, 4, 8, 16, 32] and av6[-1].fmt("E{budget.epochs}") == "E32"
    assert av6[-1].fmt("dev_threshold-{init}{suffix}") == "dev_threshold-AV5-mse-w100-e32"
    # the core table tries 2 and 8 adapter epochs: the same runs as the full table's at those values
    assert [r.name for r in expand(core.rows["AV6"], init_run="AV5-mse-w100")] == [av6[0].name, av6[2].name]
    aug = ["--method", 'audio_noise:{"prob": 0.8, "snr": [-20, 5]}']
    res = lambda m: f"/e/train_{m}/model.pth"  # noqa: E731
    # the arguments bench_robust gave: options, AV0's augmentation, then the methods (config.yaml's order)
    assert expand(core.rows["AV5"])[0].train_args(res, aug) == [
        "--d_prob", "0.5", "--drop_rate", "0", "1", "--drop_pattern", "random", *aug,
        "--method", 'mda_kd:{"teacher": "/e/train_av0/model.pth", "distance": "mse", "tap": "visual_bundle", '
                    '"weight": 100.0}']
    assert av6[0].train_args(res, aug) == ["--method", "ms_adapter", "--set", "model.adapter_rank=8"]
    # the robust fine-tunes train every parameter (the paper's); the frozen form is the AV3-frozen row
    assert av6[0].freeze == [] and expand(core.rows["AV3"])[0].freeze == []
    assert expand(core.rows["AV5"])[0].freeze == []
    s1 = expand(full.rows["S.1"])[0]
    assert s1.train_args(res, aug) == ["--d_prob", "1.0", "--drop_rate", "0.1", "--drop_pattern", "random", *aug]
    assert s1.freeze == []
    assert full.rows["AV1"].init == "av0_init" and full.rows["AV1"].freeze == []
    assert not core.decodes and not full.decodes


def test_dai_spec_ablation_rows_are_the_earlier_forms():
    """Each earlier departure from the paper's figure is one row of table 'ablation' that differs from its
    paper-form row in that one setting."""
    from avsr.eval.rows import Decode
    ab = load_spec(SPEC, "ablation")
    assert list(ab.rows) == ["AV0-bundle", "AV0-lastmerge", "AV3", "AV3-frozen", "AV5", "AV5-fusedtap", "AV6",
                             "AV6-alllinear"]
    res = lambda m: f"/e/train_{m}/model.pth"  # noqa: E731
    run = {n: expand(r, init_run="AV5-mse-w100" if r.init == "AV5" else None)[0] for n, r in ab.rows.items()}
    # merge: the same AV0 training but for model.merge
    assert run["AV0-lastmerge"].set == {"model.merge": "last"} and run["AV0-bundle"].set == {}
    assert {k: v for k, v in vars(run["AV0-lastmerge"]).items() if k not in ("set", "name", "row")} == \
        {k: v for k, v in vars(run["AV0-bundle"]).items() if k not in ("set", "name", "row")}
    assert run["AV0-bundle"].init == "av0_init" and run["AV0-bundle"].options == {}
    # robust fine-tune: every parameter vs AV0's audio side frozen
    assert run["AV3"].freeze == [] and run["AV3-frozen"].freeze == ["audio_encoder", "shared_encoder", "ctc", "decoder"]
    assert run["AV3"].train_args(res) == run["AV3-frozen"].train_args(res)
    # KD tap: the visual bundle vs fused, nothing else
    a5, f5 = run["AV5"].train_args(res), run["AV5-fusedtap"].train_args(res)
    assert a5[-1].replace('"tap": "visual_bundle"', '"tap": "fused"') == f5[-1] and a5[:-1] == f5[:-1]
    # adapters: Q/K/V (the model default) vs every Linear
    assert run["AV6"].set == {"model.adapter_rank": 8}
    assert run["AV6-alllinear"].set == {"model.adapter_rank": 8, "model.adapter_scope": "all"}
    assert run["AV6-alllinear"].name == "AV6-alllinear-on-AV5-mse-w100" and run["AV6-alllinear"].freeze == []
    # the adapters' own gain: AV6's chosen run decoded with zeroed adapters on the same routed path
    assert ab.decodes == {"AV6-noadapter": Decode("AV6-noadapter", of="AV6", adapters="zero", threshold=0.0)}
    assert ab.decodes["AV6-noadapter"].eval_spec("/p/x") == "AV6-noadapter=/p/x@0"
    with pytest.raises(RowSpecError, match="decode-only"):
        expand(ab.decodes["AV6-noadapter"])


@pytest.mark.parametrize("text, match", [
    ("rows: {A: {init: av0}, D: {decode: {of: B}}}\ntables: {t: {rows: [A, D]}}", r"rows\.D\.decode\.of: 'B'"),
    ("rows: {A: {init: av0}, D: {decode: {of: A}}}\ntables: {t: {rows: [D, A]}}", r"rows\.D\.decode\.of: 'A'"),
    ("rows: {A: {init: av0}, D: {decode: {of: A}, init: av0}}\ntables: {t: {rows: [A, D]}}",
     r"rows\.D: a decode-only row has only 'decode'"),
    ("rows: {A: {init: av0}, D: {decode: {of: A, adapters: drop}}}\ntables: {t: {rows: [A, D]}}",
     r"rows\.D\.decode\.adapters"),
    ("rows: {A: {init: av0}, D: {decode: {of: A, threshold: 2}}}\ntables: {t: {rows: [A, D]}}",
     r"rows\.D\.decode\.threshold"),
])
def test_decode_row_errors_name_the_file_and_the_field(tmp_path, text, match):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(RowSpecError, match=match) as e:
        load_spec(str(p), "t")
    assert str(e.value).startswith(str(p))


def test_decode_row_threshold_none_never_routes(tmp_path):
    p = tmp_path / "d.yaml"
    p.write_text("rows: {A: {init: av0}, D: {decode: {of: A, threshold: none}}}\ntables: {t: {rows: [A, D]}}")
    d = load_spec(str(p), "t").decodes["D"]
    assert d.threshold is None and d.eval_spec("/p") == "D=/p@none"


@pytest.mark.parametrize("text, match", [
    ("rows: {A: {init: av0, colour: red}}\ntables: {t: {rows: [A]}}", r"rows\.A: unknown fields \['colour'\]"),
    ("rows: {A: {init: AV9}}\ntables: {t: {rows: [A]}}", r"rows\.A\.init: 'AV9'"),
    ("rows: {A: {init: av0}}\ntables: {t: {rows: [B]}}", r"tables\.t\.rows: row 'B'"),
    ("rows: {A: {init: av0}}\ntables: {x: {rows: [A]}}", r"tables: no table 't'"),
    ("rows: {A: {init: av0, grid: {budget.epochs: {values: [1, 2]}}}}\ntables: {t: {rows: [A]}}",
     r"rows\.A\.select: a grid of several runs"),
    ("rows: {A: {init: av0, grid: {methods.kd.w: {values: [1]}}}}\ntables: {t: {rows: [A]}}",
     r"rows\.A\.grid\.methods\.kd\.w: axis .* names method 'kd'"),
    ("rows: {A: {init: av0, budget: {hours: 5}}}\ntables: {t: {rows: [A]}}", r"rows\.A\.budget"),
    ("rows: {A: {init: av0, budget: {steps: 0}}}\ntables: {t: {rows: [A]}}", r"rows\.A\.budget"),
    ("rows: {A: {init: av0, options: {rate: 1}}}\ntables: {t: {rows: [A]}}", r"rows\.A\.options: unknown options"),
    ("rows: {A: {init: av0}}\ntables: {t: {rows: [A], search: fast}}", r"tables\.t\.search"),
    ("rows: {A: {init: av0, budget: {steps: 5, init_share: 0.5}}}\ntables: {t: {rows: [A]}}",
     r"rows\.A\.budget: init_share .* recipe model"),
    ("rows: {A: {init: av0}, B: {init: A, budget: {epochs: 2, init_share: 0.5}}}\ntables: {t: {rows: [A, B]}}",
     r"rows\.B\.budget: init_share .* needs steps"),
    ("rows: {A: {init: av0}, B: {init: A, budget: {steps: 9, init_share: 1.5}}}\ntables: {t: {rows: [A, B]}}",
     r"rows\.B\.budget"),
    ("rows: {A: {init: av0}}\ntables: {t: {rows: [A], override: {B: {lr: 1.0}}}}", r"tables\.t\.override\.B: 'B'"),
    ("rows: {A: {init: av0}}\ntables: {t: {rows: [A], override: {A: {colour: red}}}}",
     r"tables\.t\.override\.A: must be a mapping of row fields"),
    ("rows: {A: {init: av0_init, schedule: av9}}\ntables: {t: {rows: [A]}}", r"rows\.A\.schedule: must be one of"),
    ("rows: {A: {init: av0, schedule: av0}}\ntables: {t: {rows: [A]}}", r"rows\.A\.init: schedule: av0 .* av0_init"),
    ("rows: {A: {init: av0_init, schedule: av0, lr: 0.1}}\ntables: {t: {rows: [A]}}",
     r"rows\.A: schedule: av0 takes AV0's epochs, lr and warm-up .*; the row also sets \['lr'\]"),
    ("rows: {A: {init: av0_init, schedule: av0, budget: {epochs: 3, steps: 9}}}\ntables: {t: {rows: [A]}}",
     r"rows\.A: schedule: av0 .* \['budget'\]"),
    ("rows: {A: {init: av0_init, schedule: av0}}\ntables: {t: {rows: [A], override: {A: {budget: {epochs: 3}}}}}",
     r"rows\.A: schedule: av0 .* \['budget'\]"),
    ("rows: {A: {init: av0_init, schedule: av0, grid: {budget.epochs: {values: [1, 2]}}, select: {sweep: s}}}\n"
     "tables: {t: {rows: [A]}}", r"rows\.A\.grid: schedule: av0 takes AV0's epochs"),
])
def test_spec_errors_name_the_file_and_the_field(tmp_path, text, match):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(RowSpecError, match=match) as e:
        load_spec(str(p), "t")
    assert str(e.value).startswith(str(p))


def test_grid_has_at_most_four_axes_and_distinct_run_names(tmp_path):
    axes = ", ".join(f"options.{k}: {{values: [1]}}" for k in ("d_prob", "drop_rate", "drop_pattern"))
    p = tmp_path / "g.yaml"
    p.write_text("rows: {A: {init: av0, methods: [{m: {a: 1}}], grid: {" + axes
                 + ", budget.epochs: {values: [1]}, methods.m.a: {values: [1]}}}}\ntables: {t: {rows: [A]}}")
    with pytest.raises(RowSpecError, match="5 axes; at most 4"):
        load_spec(str(p), "t")
    p.write_text("rows: {A: {init: av0, grid: {budget.epochs: {values: [1, 2], name: '-x'}}, "
                 "select: {sweep: s}}}\ntables: {t: {rows: [A]}}")
    with pytest.raises(RowSpecError, match="same name"):
        expand(load_spec(str(p), "t").rows["A"])


# ------------------------------------------------------------------------------------ the pipeline
class _FakeRunner(rb.RowRunner):
    """Trains with the fake, packs to /packed/<run>, answers sweeps from ``dev[label or run]``."""

    def __init__(self, tmp_path, dev):
        super().__init__(str(tmp_path / "exp"), str(tmp_path / "data"), "c.yaml")
        self.calls, self.swept, self.dev = [], [], dev
        self.sh = _fake_sh(self.calls)
        os.makedirs(os.path.join(self.exp, "train_av0"))
        yaml.safe_dump({"trainer": {"init": ["/a0.pth", "/v.pth::visual_"]},
                        "methods": ['audio_noise:{"prob": 0.8}']}, open(os.path.join(self.exp, "train_av0", "config.yaml"), "w"))
        for m in ("a0", "av0"):
            os.makedirs(os.path.join(self.exp, "packed", m))
            open(os.path.join(self.exp, "packed", m, "model.pth"), "w").close()

    def pack(self, row, d):
        return f"/packed/{row}"

    def sweep(self, name, models, split, greedy, rates=rb.RATES, **kw):
        self.swept.append((name, split, greedy, tuple(rates), tuple(models)))
        conds = [f"random@{float(r):g}" for r in rates]
        def cer(m):
            name, rest = m.split("=", 1)
            v = self.dev.get(name, self.dev.get(rest.rsplit("@", 1)[0].rsplit("/", 1)[-1], 0.5))
            return {c: {"cer": v} for c in conds}
        return {"cer": {m.split("=")[0]: cer(m) for m in models}}


def _spec(tmp_path):
    p = tmp_path / "rows.yaml"
    p.write_text("""
defaults: {budget: {epochs: 1}, lr: 0.001, warmup_steps: 1, freeze: [audio_encoder]}
rows:
  AV3: {init: av0, options: {d_prob: 0.5}}
  AV5:
    init: av0
    methods: [{mda_kd: {teacher: "@av0", distance: mse, tap: fused, weight: 1.0}}]
    grid: {methods.mda_kd.weight: {values: [1.0, 10.0, 0.1], name: "-w{:g}", omit: 1.0}}
    select: {sweep: dev_kd, rates: [0, 0.5, 1.0]}
    probe: {axis: methods.mda_kd.tap, values: [fused, fusion], name: "-{}", sweep: dev_kd_tap}
  AV6:
    init: AV5
    name: "AV6-on-{init}"
    audio_aug: false
    freeze: []
    methods: [ms_adapter]
    set: {model.adapter_rank: 4}
    grid: {budget.epochs: {values: [1, 4, 8], name: "-e{}", omit: 1}}
    select: {sweep: "dev_adapter_epochs-{init}", rates: [1.0], threshold: 0, label: "E{budget.epochs}"}
    route: {thresholds: [0, 0.5], sweep: "dev_threshold-{init}{suffix}"}
roles: {student: AV5, adapter: AV6, dropout_rows: [AV3]}
tables: {t: {rows: [AV3, AV5, AV6], search: greedy}}
""")
    return load_spec(str(p), "t")


def test_pipeline_trains_chooses_probes_and_adapter_epochs_on_dev(tmp_path):
    dev = {"AV5-w10": 0.50, "AV5": 0.55, "AV5-w0.1": 0.60, "AV5-w10-fusion": 0.50,
           "E1": 0.70, "E4": 0.66, "E8": 0.66, "T0": 0.4, "T0.5": 0.3}
    r = _FakeRunner(tmp_path, dev)
    exp = rb.Experiment(_spec(tmp_path), r)
    exp.select()
    # the λ grid: the joint minimum; its run is AV6's init
    assert exp.chosen["AV5"].name == "AV5-w10" and exp.scores["AV5"] == {"AV5": 0.55, "AV5-w10": 0.50, "AV5-w0.1": 0.60}
    assert r.swept[0] == ("dev_kd", "dev", True, (0, 0.5, 1.0),
                          ("AV5=/packed/AV5", "AV5-w10=/packed/AV5-w10", "AV5-w0.1=/packed/AV5-w0.1"))
    # adapter epochs: one run each, trained for its own epochs from the chosen AV5; dev with no video at
    # threshold 0; the tie between 4 and 8 goes to 4
    av6 = [x for x in r.swept if x[0] == "dev_adapter_epochs-AV5-w10"]
    assert av6 == [("dev_adapter_epochs-AV5-w10", "dev", True, (1.0,),
                    ("E1=/packed/AV6-on-AV5-w10@0", "E4=/packed/AV6-on-AV5-w10-e4@0", "E8=/packed/AV6-on-AV5-w10-e8@0"))]
    assert exp.chosen["AV6"].name == "AV6-on-AV5-w10-e4"
    for run in exp.runs["AV6"]:
        cfg = yaml.safe_load(open(os.path.join(r.rows_dir, run.name, "config.yaml")))
        assert cfg["trainer"]["max_epochs"] == run.epochs and cfg["methods"] == ["ms_adapter"]
        assert cfg["trainer"]["init"] == os.path.join(r.rows_dir, "AV5-w10", "model.pth")
    # AV3 / AV5 train with AV0's augmentation and the frozen parts; AV6 neither
    cfg = yaml.safe_load(open(os.path.join(r.rows_dir, "AV5-w10", "config.yaml")))
    assert cfg["methods"][0] == 'audio_noise:{"prob": 0.8}' and cfg["trainer"]["freeze_param"] == ["audio_encoder"]
    # the probe: only the other tap is trained, on the chosen setting; the current tap wins a tie
    assert exp.probes["AV5"]["runs"] == ["AV5-w10-fusion"]
    assert exp.probes["AV5"]["score"] == {"fused": 0.50, "fusion": 0.50} and exp.probes["AV5"]["lowest"] == "fused"
    assert exp.route["AV6"]["threshold"] == 0.5
    assert any(x[0] == "dev_threshold-AV5-w10-e4" for x in r.swept)
    assert exp.best_dropout == "AV3"
    n = len(r.calls)
    assert exp.eval_models() == ["A0=" + os.path.join(r.exp, "packed", "a0"), "AV0=" + os.path.join(r.exp, "packed", "av0"),
                                 "AV3=/packed/AV3", "AV5=/packed/AV5-w10", "AV6=/packed/AV6-on-AV5-w10-e4@0",
                                 "AV6-tuned=/packed/AV6-on-AV5-w10-e4@0.5"]
    # a re-run: every finished run is reused
    rb.Experiment(_spec(tmp_path), r).select()
    assert len(r.calls) == n


def test_cli_reports_spec_errors(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("rows: {A: {init: nowhere}}\ntables: {core: {rows: [A]}}")
    with pytest.raises(SystemExit, match=r"bad.yaml: rows\.A\.init"):
        rb.main(["train", "--rows", str(p), "--exp_dir", str(tmp_path), "--data_dir", "d", "--config", "c"])


def test_table_writes_the_robust_table_format_with_claims(tmp_path, monkeypatch):
    import avsr.models.model as mm
    import avsr.pack as pk
    from avsr.eval import render
    dev = {"AV5-w10": 0.50, "AV5": 0.55, "AV5-w0.1": 0.60, "E1": 0.70, "E4": 0.66, "E8": 0.66, "T0": 0.4, "T0.5": 0.3}
    r = _FakeRunner(tmp_path, dev)
    fake_sweep = r.sweep
    n_utt, conds = 20, [f"random@{x:g}" for x in rb.RATES] + ["whole"]

    def sweep(name, models, split, greedy, **kw):
        if split == "dev":
            return fake_sweep(name, models, split, greedy, **kw)
        errs = {"A0": 6, "AV0": 3, "AV3": 4, "AV5": 4, "AV6": 3, "AV6-tuned": 3}
        names = [m.split("=")[0] for m in models]
        ue = {m: {c: [errs[m]] * n_utt for c in conds} for m in names}
        cer = {m: {c: {"cer": errs[m] / 10, "lo": 0, "hi": 1, "relative_cer_vs_baseline": 0.1} for c in conds}
               for m in names}
        return {"search": "ctc_greedy", "conditions": conds, "utt_errors": ue, "utt_ref_chars": [10] * n_utt,
                "cer": cer, "utts": n_utt, "degradation_area": {"AV3": 1.0, "AV6": 0.5}, "models": {}}
    r.sweep = sweep
    monkeypatch.setattr(pk, "load_packed", lambda p: (None,))
    monkeypatch.setattr(mm, "count_parameters", lambda m: {"total": 100, "adapter": 4})
    spec = _spec(tmp_path)
    spec.rows["AV5"].probe = {}
    out = rb.Experiment(spec, r).table(command="c")
    assert out["kd"]["chosen_row"] == "AV5-w10" and out["kd"]["chosen_weight"] == 10.0
    assert [g["row"] for g in out["kd"]["grid_dev_mean_cer_0_.5_1"]] == ["AV5", "AV5-w10", "AV5-w0.1"]
    assert out["adapter"]["epochs"] == 4 and out["adapter"]["row"] == "AV6-on-AV5-w10-e4"
    assert out["adapter"]["epochs_dev_cer_random@1"] == {"1": 0.70, "4": 0.66, "8": 0.66}
    assert out["adapter"]["tuned_threshold"] == 0.5 and out["best_dropout_only_row_dev"] == "AV3"
    assert out["budget_steps"]["AV6-on-AV5-w10-e4"] == 28 and out["claims"]["1_bias_reproduced"]
    # each row's steps, counted from its recipe model: AV6 = AV5's 7 + its own 28
    assert out["row_steps"]["AV6"]["steps"] == 35 and out["row_steps"]["AV6"]["init_run"] == "AV5-w10"
    assert out["row_steps"]["AV5"]["steps"] == 7 and out["row_steps"]["AV3"]["steps"] == 7
    assert "Dev choices" in "\n".join(render.sec_robust(out, notes=False))   # the renderer reads it


def test_a_done_sweep_is_reused_only_for_the_same_models(tmp_path):
    r = rb.RowRunner(str(tmp_path / "exp"), "d", "c")
    out = os.path.join(r.rows_dir, "sweep", "dev_x")
    os.makedirs(out)
    models = {"A": {"path": "/p/a", "adapter_threshold": 0.0}, "T0.5": {"path": "/p/b", "adapter_threshold": 0.5}}
    json.dump({"models": models}, open(os.path.join(out, "sweep.json"), "w"))
    ran = []
    r.sh = lambda cmd, log: ran.append(cmd)
    assert r.sweep("dev_x", ["A=/p/a", "T0.5=/p/b@0.5"], "dev", True)["models"] == models   # reused
    assert rb.sweep_done(models, ["A=/p/a@0", "T0.5=/p/b@0.5"])
    assert not rb.sweep_done(models, ["A=/p/a", "T0.5=/p/b@0.25"])      # another threshold
    assert not rb.sweep_done(models, ["A=/p/a"]) and not rb.sweep_done(models, ["A=/p/c", "T0.5=/p/b@0.5"])
    assert not ran


def test_recipe_lists_the_row_stages():
    import subprocess
    out = subprocess.run(["bash", os.path.join(ROOT, "recipes", "misp2022", "run.sh"), "--help"],
                         capture_output=True, text=True).stdout
    for n, name in ((15, "rows_train"), (16, "rows_select"), (17, "rows_sweep"), (18, "rows_table")):
        assert f"{n} {name}" in out
    assert "--rows FILE" in out
    # without --rows the row stages are skipped: the default recipe (make demo) runs stages 1-14 only
    src = open(os.path.join(ROOT, "recipes", "misp2022", "run.sh")).read()
    assert 'rows=                #' in src and 'if [ -n "$rows" ]; then' in src


def test_noadapter_pack_is_the_base_audio_path(tmp_path):
    """The decode-only row AV6-noadapter: AV6's run packed with every LoRA B at 0 decodes, on the routed
    audio-only path, exactly as the base model's audio-only path; the adapters themselves are non-zero."""
    import torch
    import yaml

    from avsr.bin.rows import RowRunner
    from avsr.models import AVSRModel, load_config
    from avsr.pack import load_packed
    from avsr.text.tokens import write_token_list
    tokens = ["<blank>", "<unk>", "你", "好", "<sos/eos>"]
    write_token_list(tokens, str(tmp_path / "tokens.txt"))
    torch.manual_seed(0)
    m = AVSRModel(load_config(os.path.join(ROOT, "conf", "micro.yaml"), vocab_size=len(tokens), adapter_rank=2))
    with torch.no_grad():
        for p in m.adapters.parameters():
            p.normal_(0, 1.0)
    run = tmp_path / "runs" / "AV6-r2"
    run.mkdir(parents=True)
    torch.save(m.state_dict(), run / "model.pth")
    (run / "config.yaml").write_text(yaml.safe_dump({"model": m.cfg.to_dict(),
                                                     "data": {"token_list": str(tmp_path / "tokens.txt")}}))
    r = RowRunner(str(tmp_path / "exp"), str(tmp_path / "data"), os.path.join(ROOT, "conf", "micro.yaml"),
                  rows_dir=str(tmp_path / "rows"))
    out = r.pack_without_adapters("AV6-noadapter", str(run))
    sd = load_packed(out)[0].state_dict()
    bs = [k for k in sd if k.startswith("adapters.loras.") and k.endswith(".B")]
    assert bs and all(not sd[k].any() for k in bs)
    assert any(sd[k.replace(".B", ".A")].any() for k in bs)              # only B is zeroed
    assert all(torch.equal(sd[k], v) for k, v in m.state_dict().items() if not k.startswith("adapters."))
    assert r.pack_without_adapters("AV6-noadapter", str(run)) == out     # reused


def test_budget_steps_of_another_row(tmp_path):
    """{steps: "@AV5"}: a run trains for exactly the optimiser steps AV5's chosen run took; "@av0" for the
    recipe's AV0 training; a row not trained before it is an error naming the spec and the row."""
    from avsr.bin.rows import Experiment, RowRunner
    spec = load_spec(os.path.join(ROOT, "conf", "rows", "dai2024.yaml"), "leaderboard")
    ckd = expand(spec.rows["CKD"])
    assert {r.steps_of for r in ckd} == {"AV5"} and all(r.steps == 0 for r in ckd)
    exp = tmp_path / "exp"
    (exp / "train_av0").mkdir(parents=True)
    (exp / "train_av0" / "train_result.json").write_text(json.dumps({"history": [{"step": 7}, {"step": 90}]}))
    av5 = tmp_path / "rows" / "AV5-mse-w100"
    av5.mkdir(parents=True)
    (av5 / "train_result.json").write_text(json.dumps({"history": [{"step": 172}]}))
    r = RowRunner(str(exp), str(tmp_path / "data"), os.path.join(ROOT, "conf", "micro.yaml"),
                  rows_dir=str(tmp_path / "rows"))
    t = Experiment(spec, r)
    with pytest.raises(SystemExit, match="CKD.budget.*AV5"):
        t._budget_steps(ckd[0])
    t.chosen["AV5"] = expand(spec.rows["AV5"])[0]
    t.dirs[t.chosen["AV5"].name] = str(av5)
    assert t._budget_steps(ckd[0]) == 172
    from avsr.eval.rows import _parse_row        # the MLA row (not in a table yet): AV0's own steps
    path = os.path.join(ROOT, "conf", "rows", "dai2024.yaml")
    y = yaml.safe_load(open(path, encoding="utf-8"))
    mla = expand(_parse_row(path, "MLA", y["rows"]["MLA"], y.get("defaults") or {}))
    assert mla[0].steps_of == "av0" and t._budget_steps(mla[0]) == 90


@pytest.mark.parametrize("steps", ["AV5", "@", 0, True])
def test_budget_steps_reference_validated(tmp_path, steps):
    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump({"rows": {"X": {"init": "av0", "budget": {"steps": steps}}},
                                 "tables": {"t": {"rows": ["X"]}}}))
    with pytest.raises(RowSpecError, match="budget"):
        load_spec(str(p), "t")


# ------------------------------------------------------------------------------------ equal step budgets
EQUAL = """
defaults: {budget: {epochs: 2}, lr: 0.001, warmup_steps: 1}
rows:
  AV5: {init: av0}
  CKD: {init: av0, budget: {steps: "@AV5"}}
  AV6:
    init: AV5
    name: "AV6-on-{init}"
    methods: [ms_adapter]
    budget: {steps: "@AV5", init_share: 0.5}
    grid: {budget.init_share: {values: [0.5, 0.25], name: "-i{:g}"}}
    select: {sweep: "dev_share-{init}", rates: [1.0], threshold: 0, label: "I{budget.init_share}"}
  AV6-after: {init: AV5, methods: [ms_adapter], budget: {steps: "@AV5"}}
  AV6-paper: {init: AV5, methods: [ms_adapter]}
  MLA: {init: av0_init, budget: {steps: "@av0"}}
roles: {student: AV5}
tables:
  t: {rows: [AV5, CKD, AV6, MLA, AV6-paper]}
  after: {rows: [AV5, AV6-after]}
  over: {rows: [AV5, AV6-after], override: {AV6-after: {budget: {steps: "@AV5", init_share: 0.25}}}}
"""


def _equal(tmp_path, table):
    tmp_path.mkdir(parents=True, exist_ok=True)
    p = tmp_path / "equal.yaml"
    p.write_text(EQUAL)
    r = _FakeRunner(tmp_path, {"I0.5": 0.4, "I0.25": 0.5})
    with open(os.path.join(r.exp, "train_av0", "train_result.json"), "w") as f:
        json.dump({"history": [{"step": 60}, {"step": 91}]}, f)        # AV0's fine-tune from A0 + V: 91 steps
    return str(p), r, rb.Experiment(load_spec(str(p), table), r)


def test_equal_budget_resolution_split_and_the_steps_table(tmp_path):
    """AV5 (2 epochs, 14 steps) sets the budget: CKD trains 14 steps; AV6 = an AV5 part retrained for
    init_share of the 14 steps + the adapter part for the rest, 14 in all; MLA gets AV0's 91 steps; a row
    on the full AV5 without a step budget counts AV5's steps too.  Bugs caught: "@AV5" not resolved to
    AV5's steps, AV6's adapter steps on top of AV5's, the table without each row's steps."""
    path, r, exp = _equal(tmp_path, "t")
    exp.train()
    max_steps = {n: yaml.safe_load(open(os.path.join(r.rows_dir, n, "config.yaml")))["trainer"].get("max_steps")
                 for n in os.listdir(r.rows_dir) if os.path.isfile(os.path.join(r.rows_dir, n, "config.yaml"))}
    assert max_steps == {"AV5": None, "CKD": 14, "AV5-s7": 7, "AV6-on-AV5-i0.5": 7, "AV5-s4": 4,
                         "AV6-on-AV5-i0.25": 10, "MLA": 91, "AV6-paper": None}
    cfg = yaml.safe_load(open(os.path.join(r.rows_dir, "AV6-on-AV5-i0.25", "config.yaml")))
    assert cfg["trainer"]["init"] == os.path.join(r.rows_dir, "AV5-s4", "model.pth")
    assert exp.chosen["AV6"].name == "AV6-on-AV5-i0.5"                      # dev: I0.5 0.4 < I0.25 0.5
    steps = exp.row_steps()
    assert steps["AV0"] == {"steps": 91}
    assert steps["AV5"] == {"run": "AV5", "steps": 14, "own": 14, "init": 0, "init_run": None, "budget": None,
                            "budget_of": None}
    assert steps["CKD"]["steps"] == 14 and steps["CKD"]["budget"] == 14 and steps["CKD"]["budget_of"] == "@AV5"
    assert steps["AV6"] == {"run": "AV6-on-AV5-i0.5", "steps": 14, "own": 7, "init": 7, "init_run": "AV5-s7",
                            "budget": 14, "budget_of": "@AV5"}
    assert steps["MLA"]["steps"] == 91 and steps["MLA"]["budget_of"] == "@av0"
    assert steps["AV6-paper"]["steps"] == 14 + 14 and steps["AV6-paper"]["budget"] is None
    n = len(r.calls)
    rb.Experiment(load_spec(path, "t"), r).train()                      # a re-run reuses every run
    assert len(r.calls) == n


def test_a_row_over_its_budget_is_an_error_naming_the_spec_and_the_row(tmp_path):
    """AV6 on the whole of AV5 with AV5's budget: nothing is left for the adapters (error before
    training); a run that took more steps than its budget (error after training)."""
    path, r, exp = _equal(tmp_path, "after")
    with pytest.raises(SystemExit, match=rf"{path}: rows\.AV6-after: budget 14 steps \(the steps of @AV5\), but "
                                         r"its init AV5 already took 14"):
        exp.train()
    assert not os.path.exists(os.path.join(r.rows_dir, "AV6-after"))
    path, r, exp = _equal(tmp_path / "o", "over")      # the table's override splits the budget: fine
    exp.train()
    assert exp.row_steps()["AV6-after"]["steps"] == 14
    fake = r.sh

    def greedy(cmd, log):                               # CKD's trainer ignores its max_steps
        fake(cmd, log)
        d = cmd[cmd.index("--exp_dir") + 1]
        if os.path.basename(d) == "CKD":
            json.dump({"history": [{"step": 15}]}, open(os.path.join(d, "train_result.json"), "w"))
    path, r, exp = _equal(tmp_path / "g", "t")
    r.sh = greedy
    with pytest.raises(SystemExit, match=rf"{path}: rows\.CKD: run CKD took 15 optimiser steps \(0 of its init "
                                         r"\+ 15 of its own\), over its budget of 14 steps \(the steps of @AV5\)"):
        exp.train()


def test_schedule_av0_trains_a_row_as_the_recipe_trained_av0(tmp_path):
    """A row with ``schedule: av0`` (AV1, AV2, the merge pair) gets AV0's epochs, lr, warm-up, averaging and
    early stopping from train_av0/config.yaml, not the spec's defaults; a re-run reuses it, and an AV0
    retrained on another schedule sends it back to training.  Bugs caught: the defaults' 2 epochs and lr
    used, best_n / patience left at the driver's, the schedule missing from the reuse check."""
    p = tmp_path / "rows.yaml"
    p.write_text("defaults: {budget: {epochs: 2, steps: 9}, lr: 0.0005, warmup_steps: 50}\n"
                 "rows: {AV2: {init: av0_init, schedule: av0, options: {d_prob: 0.5}}, AV3: {init: av0}}\n"
                 "tables: {t: {rows: [AV2, AV3]}}")
    r = _FakeRunner(tmp_path, {})
    av0_cfg = os.path.join(r.exp, "train_av0", "config.yaml")

    def av0(lr):
        yaml.safe_dump({"trainer": {"init": ["/a0.pth", "/v.pth::visual_"], "max_epochs": 8, "lr": lr,
                                    "warmup_steps": 60, "best_n": 5, "patience": 6},
                        "methods": ['audio_noise:{"prob": 0.8}']}, open(av0_cfg, "w"))
    av0(0.001)
    exp = rb.Experiment(load_spec(str(p), "t"), r)
    exp.train()
    tc = yaml.safe_load(open(os.path.join(r.rows_dir, "AV2", "config.yaml")))["trainer"]
    assert {k: tc[k] for k in ("max_epochs", "lr", "warmup_steps", "best_n", "patience")} == \
        {"max_epochs": 8, "lr": 0.001, "warmup_steps": 60, "best_n": 5, "patience": 6}
    assert tc["init"] == ["/a0.pth", "/v.pth::visual_"]
    tc3 = yaml.safe_load(open(os.path.join(r.rows_dir, "AV3", "config.yaml")))["trainer"]
    assert (tc3["max_epochs"], tc3["lr"], tc3["best_n"], tc3["patience"]) == (2, 0.0005, 2, 3)   # its own
    assert tc3["max_steps"] == 9 and "max_steps" not in tc          # the defaults' step cap is not AV0's
    assert exp.row_steps()["AV2"]["steps"] == 7 * 8 and exp.row_steps()["AV2"]["budget"] is None
    n = len(r.calls)
    rb.Experiment(load_spec(str(p), "t"), r).train()
    assert len(r.calls) == n
    av0(0.002)
    rb.Experiment(load_spec(str(p), "t"), r).train()
    assert len(r.calls) == n + 1 and any(x.startswith("AV2.stale-") for x in os.listdir(r.rows_dir))


def test_schedule_av0_with_a_step_cap(tmp_path):
    """``schedule: av0`` with ``budget: {steps: "@av0"}`` (MLA): AV0's epochs, lr, warm-up, averaging and
    early stopping, capped at the optimiser steps AV0's training took.  Bugs caught: the cap dropped
    (schedule: av0 meant no cap), the schedule dropped for the steps-only budget's epoch cap."""
    p = tmp_path / "rows.yaml"
    p.write_text("defaults: {budget: {epochs: 2}, lr: 0.0005, warmup_steps: 50}\n"
                 "rows: {M: {init: av0_init, schedule: av0, budget: {steps: '@av0'}}}\n"
                 "tables: {t: {rows: [M]}}")
    r = _FakeRunner(tmp_path, {})
    d = os.path.join(r.exp, "train_av0")
    yaml.safe_dump({"trainer": {"init": ["/a0.pth", "/v.pth::visual_"], "max_epochs": 8, "lr": 0.001,
                                "warmup_steps": 60, "best_n": 5, "patience": 6}}, open(os.path.join(d, "config.yaml"), "w"))
    json.dump({"history": [{"epoch": 8, "step": 40}]}, open(os.path.join(d, "train_result.json"), "w"))
    exp = rb.Experiment(load_spec(str(p), "t"), r)
    exp.train()
    tc = yaml.safe_load(open(os.path.join(r.rows_dir, "M", "config.yaml")))["trainer"]
    assert {k: tc[k] for k in ("max_epochs", "lr", "warmup_steps", "best_n", "patience", "max_steps")} == \
        {"max_epochs": 8, "lr": 0.001, "warmup_steps": 60, "best_n": 5, "patience": 6, "max_steps": 40}
    assert exp.row_steps()["M"]["budget"] == 40


def test_v_joins_the_eval_sweep_when_the_recipe_packed_it(tmp_path):
    """The recipe's V (lips alone) is a leaderboard row beside A0 and AV0 when ``packed/v`` exists."""
    r = _FakeRunner(tmp_path, {})
    exp = rb.Experiment(_spec(tmp_path), r)
    exp.select()
    names = lambda: [s.split("=", 1)[0] for s in exp.eval_models()]  # noqa: E731
    assert names()[:2] == ["A0", "AV0"] and "V" not in names()
    os.makedirs(os.path.join(r.exp, "packed", "v"))
    open(os.path.join(r.exp, "packed", "v", "model.pth"), "w").close()
    assert names()[:3] == ["A0", "V", "AV0"]
    assert exp.eval_models()[1] == "V=" + os.path.join(r.exp, "packed", "v")


def test_leaderboard_table_holds_every_row_in_one_run():
    """Table ``leaderboard`` trains every row the leaderboard names (the recipe adds A0, V and AV0): the
    Dai rows, the study rows, the ablations and the three other methods with their combinations; each
    chooses from at most 4 dev settings (MLA at most 2); the methods from AV0 get AV5's steps, MLA AV0's,
    the dropout rows from AV0's init AV0's own schedule; AV6-ontop is the paper's MS-Adapter on the whole
    AV5.  The rows that are no method (the study's, the ablations of dropout and of the merge) are no
    candidates for the goal."""
    lb = load_spec(SPEC, "leaderboard")
    named = {"AV1", "AV2", "AV3", "AV5", "AV6", "S.1", "S.3", "S.5", "S.7", "AV3-frozen", "AV5-fusedtap",
             "AV6-alllinear", "AV6-noadapter", "AV0-lastmerge", "MLA", "MLA-noproj", "CKD", "TFR",
             "CKD+MS-Adapter", "TFR+MS-Adapter"}
    assert named <= set(lb.rows) | set(lb.decodes) and lb.search == "beam10"
    for name, row in lb.rows.items():
        n = len(expand(row, init_run="X" if row.init in lb.rows else None))
        assert n <= (2 if name.startswith("MLA") else 4), (name, n)
    assert all(lb.rows[n].schedule == "av0" for n in ("AV1", "AV2", "AV0-bundle", "AV0-lastmerge"))
    for n in ("CKD", "TFR", "AV6", "AV6-alllinear", "CKD+MS-Adapter", "TFR+MS-Adapter"):
        assert lb.rows[n].budget["steps"] == "@AV5", n
    for n in ("AV6", "AV6-alllinear", "CKD+MS-Adapter", "TFR+MS-Adapter"):
        assert "budget.init_share" in lb.rows[n].grid, n
    assert lb.rows["MLA"].budget == lb.rows["MLA-noproj"].budget == {"steps": "@av0"}
    # MLA stands beside AV0: its schedule, its augmentation, its optimiser steps
    assert all(lb.rows[n].schedule == "av0" and lb.rows[n].audio_aug for n in ("MLA", "MLA-noproj"))
    top, core6 = lb.rows["AV6-ontop"], load_spec(SPEC, "core").rows["AV6"]
    assert top.init == "AV5" and "steps" not in top.budget
    assert (top.methods, top.set, top.freeze, top.audio_aug) == (core6.methods, core6.set, core6.freeze,
                                                                 core6.audio_aug)
    assert lb.decodes["AV6-noadapter"].of == "AV6"
    assert set(lb.roles["baseline_rows"]) == {"S.1", "S.3", "S.5", "S.7", "AV3-frozen", "AV0-bundle",
                                              "AV0-lastmerge", "AV6-noadapter", "AV6-ontop"}
    # AV6-ontop's runs are the core table's AV6 runs (same names, same training) at 2 and 8 epochs
    on = [r.name for r in expand(top, init_run="AV5-mse-w100")]
    assert on == ["AV6-on-AV5-mse-w100", "AV6-on-AV5-mse-w100-e8"]
    assert set(on) <= {r.name for r in expand(core6, init_run="AV5-mse-w100")}


def test_pack_failure_names_the_log_and_the_log_the_cause(tmp_path):
    """Packing runs in the driver's process (no interpreter per row); a run dir that cannot be packed
    stops the driver with an error naming pack.log, which names the missing file."""
    r = rb.RowRunner(str(tmp_path / "exp"), str(tmp_path / "data"), "c.yaml")
    os.makedirs(tmp_path / "run")
    with pytest.raises(SystemExit, match=r"avsr pack failed \(rc 1\); see .*pack\.log"):
        r.pack("AV3", str(tmp_path / "run"))
    log = open(os.path.join(r.rows_dir, "pack.log")).read()
    assert "+ avsr pack --exp_dir" in log and f"{tmp_path / 'run' / 'config.yaml'}: not found" in log


def test_the_recipes_gpus_reach_the_runs_and_the_sweeps(tmp_path):
    """The recipe's --ngpu and decode device reach stage 15's training (torchrun and cuda for > 1 GPU, cuda for
    one) and the sweeps of stages 16-17 (avsr eval --device); with no GPU both stay on the CPU."""
    seen = []

    def capture(cmd, log):
        seen.append(list(cmd))
        if "avsr.bin.train" in cmd:
            _fake_sh([])(cmd, log)
        else:                                         # avsr eval: the sweep.json it would write
            out = cmd[cmd.index("--out_dir") + 1]
            json.dump({"models": {}}, open(os.path.join(out, "sweep.json"), "w"))

    for ngpu, device in ((2, "cuda:1"), (1, "cuda"), (0, "cpu")):
        seen.clear()
        r = rb.RowRunner(str(tmp_path / f"exp{ngpu}"), str(tmp_path / "data"), "c.yaml", ngpu=ngpu, device=device)
        r.sh = capture
        r.train("A", ["/x/av0.pth"], [], epochs=1)
        r.sweep("dev_a", ["A=/x/packed"], "dev", greedy=True)
        train, sweep = seen
        assert ("torch.distributed.run" in train and "--nproc_per_node=2" in train) == (ngpu > 1)
        assert (train[train.index("--device") + 1] == "cuda") if ngpu else "--device" not in train
        assert sweep[sweep.index("--device") + 1] == device
    assert "--ngpu" in rb.build_parser().format_help() and rb.build_parser().parse_args(
        ["train", "--rows", "r", "--exp_dir", "e", "--data_dir", "d", "--config", "c"]).device == "cpu"
