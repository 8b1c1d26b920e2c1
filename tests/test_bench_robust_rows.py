"""bench_robust's row bookkeeping: a finished row trained from another init is not reused."""
import json
import os
import sys
from types import SimpleNamespace

import yaml

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))
import bench_robust  # noqa: E402


def _bench(tmp_path, calls):
    args = SimpleNamespace(exp_dir=str(tmp_path / "exp"), data_dir=str(tmp_path / "data"), config="c.yaml",
                           epochs=1, lr=1e-3, warmup=1)
    b = bench_robust.Bench(args)

    def fake_sh(cmd, log):  # stands in for avsr.bin.train: writes what a finished row has
        d = cmd[cmd.index("--exp_dir") + 1]
        init = cmd[cmd.index("--init") + 1]
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "config.yaml"), "w") as f:
            yaml.safe_dump({"trainer": {"init": init}}, f)
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
