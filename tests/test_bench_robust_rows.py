"""bench_robust's row bookkeeping: a finished row trained from another init is not reused."""
import json
import os
import sys
from types import SimpleNamespace

import pytest
import yaml

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))
import bench_robust  # noqa: E402


def _bench(tmp_path, calls):
    args = SimpleNamespace(exp_dir=str(tmp_path / "exp"), data_dir=str(tmp_path / "data"), config="c.yaml",
                           epochs=1, lr=1e-3, warmup=1, ft_freeze=[])
    b = bench_robust.Bench(args)

    def fake_sh(cmd, log):  # stands in for avsr.bin.train: writes what a finished row has
        d = cmd[cmd.index("--exp_dir") + 1]
        init = cmd[cmd.index("--init") + 1]
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
            yaml.safe_dump({"trainer": {"init": init, **{k[len("trainer."):]: float(v) for k, v in sets.items()
                                                         if k.startswith("trainer.")},
                                        **({"freeze_param": freeze} if freeze else {})},
                            "methods": [cmd[i + 1] for i, x in enumerate(cmd) if x == "--method"]}, f)
        for n in ("model.pth", "train_result.json"):
            open(os.path.join(d, n), "w").write("{}")
        calls.append(init)
    b.sh = fake_sh
    return b


def test_finished_row_is_skipped_with_same_init(tmp_path):
    calls = []
    b = _bench(tmp_path, calls)
    b.train("AV6", ["/x/AV5-mse/model.pth"], [])
    b.train("AV6", ["/x/AV5-mse/model.pth"], [])
    assert calls == ["/x/AV5-mse/model.pth"]


def test_row_from_other_init_is_moved_aside_with_its_pack_and_sweeps(tmp_path):
    calls = []
    b = _bench(tmp_path, calls)
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
    b = _bench(tmp_path, [])
    d = os.path.join(b.exp, "train_av0")
    os.makedirs(d)
    noise = 'audio_noise:{"prob": 0.8, "snr": [-20, 5]}'
    for init, want in (("/x/a0/model.pth", ["/x/a0/model.pth"]),   # one spec: stored as a plain string
                       (["/x/a0/model.pth", "/x/v/model.pth::visual_"], ["/x/a0/model.pth", "/x/v/model.pth::visual_"])):
        with open(os.path.join(d, "config.yaml"), "w") as f:
            yaml.safe_dump({"trainer": {"init": init}, "methods": [noise, 'mda_kd:{"teacher": "t"}']}, f)
        assert b.av0_settings() == (want, ["--method", noise])


def test_kd_ablation_trains_scores_and_keeps_current_on_a_tie(tmp_path):
    calls = []
    b = _bench(tmp_path, calls)
    b.pack = lambda row, d: f"/packed/{row}"
    dev = {"AV5-mse-w10": 0.50, "AV5-mse-w0.1": 0.60}
    swept = []

    def fake_sweep(name, models, split, greedy, **kw):
        swept.append((name, split, greedy, tuple(models)))
        return {"cer": {m.split("=")[0]: {c: {"cer": dev[m.split("=")[0]]} for c in bench_robust.SEL_CONDS}
                        for m in models}}
    b.sweep = fake_sweep
    rows, packed = {}, {}
    variants = {w: (f"AV5-mse-w{w:g}", {"distance": "mse", "tap": "fused", "weight": w}) for w in (10, 0.1)}
    score, win, row = b.kd_ablation("dev_kd_weight", "/t/av0.pth", ["--d_prob", "0.5"], rows, packed,
                                    1.0, 0.55, "AV5-mse", variants)
    assert score == {1.0: 0.55, 10: 0.50, 0.1: 0.60} and win == 10 and row == "AV5-mse-w10"
    assert set(rows) == {"AV5-mse-w10", "AV5-mse-w0.1"} and packed["AV5-mse-w10"] == "/packed/AV5-mse-w10"
    assert swept[0][:3] == ("dev_kd_weight", "dev", True) and calls == ["/t/av0.pth", "/t/av0.pth"]
    # the current setting wins a tie; nothing to try: no sweep, the current row stays
    dev["AV5-mse-w10-fusion"] = 0.50
    score, win, row = b.kd_ablation("dev_kd_tap", "/t/av0.pth", [], rows, packed, "fused", 0.50, "AV5-mse-w10",
                                    {"fusion": ("AV5-mse-w10-fusion", {"tap": "fusion"})})
    assert win == "fused" and row == "AV5-mse-w10" and score == {"fused": 0.50, "fusion": 0.50}
    n = len(swept)
    assert b.kd_ablation("x", "/t", [], rows, packed, "fused", 0.4, "R", {}) == ({"fused": 0.4}, "fused", "R")
    assert len(swept) == n


def test_row_with_other_epochs_or_lr_is_moved_aside(tmp_path):
    calls = []
    b = _bench(tmp_path, calls)
    b.train("AV3", ["/x/av0.pth"], [])
    b.a.epochs = 4                        # a re-run with --epochs 4 must not reuse the 1-epoch row
    b.train("AV3", ["/x/av0.pth"], [])
    b.train("AV3", ["/x/av0.pth"], [])    # ...and then reuses the 4-epoch one
    b.a.lr = 2e-4
    b.train("AV3", ["/x/av0.pth"], [])
    assert calls == ["/x/av0.pth"] * 3
    assert len([n for n in os.listdir(b.rows_dir) if n.startswith("AV3.stale-")]) == 2
    cfg = yaml.safe_load(open(os.path.join(b.rows_dir, "AV3", "config.yaml")))["trainer"]
    assert cfg["max_epochs"] == 4 and cfg["lr"] == 2e-4


def test_row_with_other_method_settings_is_moved_aside(tmp_path):
    calls = []
    b = _bench(tmp_path, calls)
    kd1 = ["--d_prob", "0.5", "--method", 'mda_kd:{"distance": "mse", "weight": 1.0}']
    kd10 = ["--d_prob", "0.5", "--method", 'mda_kd:{"distance": "mse", "weight": 10.0}']
    b.train("AV5-mse", ["/x/av0.pth"], kd1)
    b.train("AV5-mse", ["/x/av0.pth"], kd1)     # same settings: reused
    b.train("AV5-mse", ["/x/av0.pth"], kd10)    # the same name for another λ_KD: not reused
    assert calls == ["/x/av0.pth"] * 2
    assert len([n for n in os.listdir(b.rows_dir) if n.startswith("AV5-mse.stale-")]) == 1
    assert yaml.safe_load(open(os.path.join(b.rows_dir, "AV5-mse", "config.yaml")))["methods"] == [kd10[-1]]


def test_kd_row_names_every_setting_apart_from_the_defaults():
    assert bench_robust.kd_row("mse", 1.0, "fused") == "AV5-mse"
    assert bench_robust.kd_row("mse", 10, "fused") == "AV5-mse-w10"
    assert bench_robust.kd_row("gauss_kl", 0.1, "fusion") == "AV5-gauss_kl-w0.1-fusion"
    assert bench_robust.kd_row("mse", 1, "fusion+fused") == "AV5-mse-fusion+fused"
    assert bench_robust._methods(["--d_prob", "0.5", "--method", "a", "--method", "b:{}"]) == ["a", "b:{}"]


def test_rows_dir_option(tmp_path):
    args = SimpleNamespace(exp_dir=str(tmp_path / "exp"), data_dir="d", config="c", epochs=1, lr=1e-3, warmup=1,
                           rows_dir=str(tmp_path / "elsewhere"))
    b = bench_robust.Bench(args)
    assert b.rows_dir == str(tmp_path / "elsewhere") and os.path.isdir(b.rows_dir)


def test_row_with_other_frozen_parts_is_moved_aside(tmp_path):
    calls = []
    b = _bench(tmp_path, calls)
    b.train("AV3", ["/x/av0/model.pth"], ["--d_prob", "0.5"])
    b.train("AV3", ["/x/av0/model.pth"], ["--d_prob", "0.5"], freeze=["audio_encoder", "shared_encoder"])
    assert len(calls) == 2                                   # the unfrozen row is not a frozen one
    cfg = yaml.safe_load(open(os.path.join(b.rows_dir, "AV3", "config.yaml")))
    assert cfg["trainer"]["freeze_param"] == ["audio_encoder", "shared_encoder"]
    assert any(n.startswith("AV3.stale-") for n in os.listdir(b.rows_dir))
    b.train("AV3", ["/x/av0/model.pth"], ["--d_prob", "0.5"], freeze=["audio_encoder", "shared_encoder"])
    assert len(calls) == 2                                   # same freeze: reused
    # AV5 rows take --ft_freeze through train_kd
    b.a.ft_freeze = ["audio_encoder"]
    b.train_kd("AV5-mse", "/x/av0/model.pth", ["--d_prob", "0.5"], {"distance": "mse"})
    cfg = yaml.safe_load(open(os.path.join(b.rows_dir, "AV5-mse", "config.yaml")))
    assert cfg["trainer"]["freeze_param"] == ["audio_encoder"]


def test_kd_choice_is_one_joint_dev_minimum_over_distance_and_weight():
    grid = {(d, w): bench_robust.kd_row(d, w, "fused") for d in ("mse", "cosine", "mmd") for w in (1.0, 10.0)}
    assert list(grid.values()) == ["AV5-mse", "AV5-mse-w10", "AV5-cosine", "AV5-cosine-w10", "AV5-mmd", "AV5-mmd-w10"]
    # the frozen-audio-side dev scores of 2026-11-24: at λ 1 cosine leads mse, so choosing the distance at λ 1
    # and then λ for cosine alone gives cosine λ 10 (0.5983); the joint minimum is mse λ 10 (0.5938)
    score = {"AV5-mse": 0.6001, "AV5-cosine": 0.5998, "AV5-mmd": 0.6012,
             "AV5-mse-w10": 0.5938, "AV5-cosine-w10": 0.5983, "AV5-mmd-w10": 0.6100}
    assert bench_robust.choose_on_dev(grid, score) == ("mse", 10.0)
    # a tie goes to the earlier distance, then the earlier weight
    tie = dict.fromkeys(score, 0.6)
    assert bench_robust.choose_on_dev(grid, tie) == ("mse", 1.0)
    tie["AV5-cosine"] = tie["AV5-mmd-w10"] = 0.5
    assert bench_robust.choose_on_dev(grid, tie) == ("cosine", 1.0)
    # nothing scored (one row given, as in the core table): the first key
    assert bench_robust.choose_on_dev({("mse", 10.0): "AV5-mse-w10"}, {}) == ("mse", 10.0)
    # a row left unscored is an error, not a win
    with pytest.raises(ValueError, match="AV5-mmd-w10"):
        bench_robust.choose_on_dev(grid, {r: v for r, v in score.items() if r != "AV5-mmd-w10"})


def test_adapter_epochs_grid_trains_one_row_each_and_dev_chooses_with_no_video(tmp_path):
    calls = []
    b = _bench(tmp_path, calls)
    b.a.adapter_rank = 4
    b.pack = lambda row, d: f"/packed/{row}"
    dev = {"/packed/AV6-on-AV5-mse-w10": 0.70, "/packed/AV6-on-AV5-mse-w10-e4": 0.66,
           "/packed/AV6-on-AV5-mse-w10-e8": 0.66}
    swept = []

    def fake_sweep(name, models, split, greedy, rates=None, **kw):
        swept.append((name, split, greedy, tuple(rates), tuple(models)))
        return {"cer": {m.split("=")[0]: {"random@1": {"cer": dev[m.split("=", 1)[1].rsplit("@", 1)[0]]}}
                        for m in models}}
    b.sweep = fake_sweep
    score, e, made = b.adapters("AV5-mse-w10", "/rows/AV5-mse-w10", [1, 4, 8])
    # one row per value (the default --epochs keeps the plain name), each trained for its own epochs
    assert [r for r, _, _ in made.values()] == ["AV6-on-AV5-mse-w10", "AV6-on-AV5-mse-w10-e4",
                                                "AV6-on-AV5-mse-w10-e8"]
    assert calls == ["/rows/AV5-mse-w10/model.pth"] * 3
    for n, (r, d, _) in made.items():
        cfg = yaml.safe_load(open(os.path.join(d, "config.yaml")))
        assert cfg["trainer"]["max_epochs"] == n and cfg["methods"] == ["ms_adapter"]
    # dev, greedy, no video only, at threshold 0; the tie between 4 and 8 epochs goes to 4
    assert swept == [("dev_adapter_epochs-AV5-mse-w10", "dev", True, (1.0,),
                      ("E1=/packed/AV6-on-AV5-mse-w10@0", "E4=/packed/AV6-on-AV5-mse-w10-e4@0",
                       "E8=/packed/AV6-on-AV5-mse-w10-e8@0"))]
    assert score == {1: 0.70, 4: 0.66, 8: 0.66} and e == 4
    # re-run: the finished rows are reused; a single value: no dev sweep, that row
    score, e, made = b.adapters("AV5-mse-w10", "/rows/AV5-mse-w10", [8])
    assert (score, e, made[8][0]) == ({}, 8, "AV6-on-AV5-mse-w10-e8") and len(calls) == 3 and len(swept) == 1
