"""Trainer, checkpoints and training-method plug-ins on a toy model (CPU, seconds)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Dict

import numpy as np
import pytest
import torch
from torch import nn

from avsr.data.batch import Batch
from avsr.robust.frame_dropout import FrameDropoutMethod
from avsr.trainer import (CheckpointError, Trainer, TrainerConfig, TrainingMethod, WarmupLR,
                          average_checkpoints, load_checkpoint, load_partial, noam_lr, save_checkpoint)

HERE = os.path.dirname(os.path.abspath(__file__))
NUM_CLASSES = 3


# ---------------------------------------------------------------------------- toy data / model
class ToyDataset(torch.utils.data.Dataset):
    """Items like AVSRDataset's: video uint8 [T, 4, 4] whose brightness encodes the class."""

    def __init__(self, n: int, seed: int = 0, equal_len: bool = False, prefix: str = "u"):
        rng = np.random.default_rng(seed)
        self.items = []
        for i in range(n):
            c = int(rng.integers(NUM_CLASSES))
            T = 8 if equal_len else int(rng.integers(5, 20))
            v = np.clip(rng.normal(50 + 70 * c, 40, size=(T, 4, 4)), 0, 255).astype(np.uint8)
            self.items.append({"utt_id": f"{prefix}{i:04d}", "audio": None, "video": torch.from_numpy(v),
                               "tokens": torch.tensor([c], dtype=torch.int64), "text": str(c)})

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]

    def num_frames(self, i):
        return int(self.items[i]["video"].shape[0])


@dataclass
class ToyOut:
    loss: torch.Tensor
    taps: Dict[str, torch.Tensor]
    stats: Dict[str, float] = field(default_factory=dict)


class ToyModel(nn.Module):
    def __init__(self, dropout: float = 0.1):
        super().__init__()
        self.enc = nn.Linear(16, 8)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(8, NUM_CLASSES)
        self.seen = []  # inputs seen (for the hook test)

    def forward(self, batch: Batch, **kw) -> ToyOut:
        self.seen.append((list(batch.utt_ids), batch.video.clone(), batch.video_lens.clone()))
        x = batch.video.float().flatten(2) / 255.0               # [B, T, 16]
        h = self.drop(torch.tanh(self.enc(x)))                   # [B, T, 8]
        mask = (torch.arange(x.shape[1])[None] < batch.video_lens[:, None]).float()
        pooled = (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        logits = self.head(pooled)
        y = batch.tokens[:, 0]
        loss = nn.functional.cross_entropy(logits, y)
        acc = float((logits.argmax(-1) == y).float().mean())
        return ToyOut(loss, {"hidden": h, "lens": batch.video_lens},
                      {"loss_ce": float(loss.detach()), "acc": acc})


def cfg(**kw) -> TrainerConfig:
    base = dict(lr=1e-2, warmup_steps=0, batch_size=8, max_epochs=2, seed=0, best_n=2, metric="acc",
                grad_clip=5.0, log_interval=1, progress=False, save_every_steps=0, device="cpu")
    base.update(kw)
    return TrainerConfig(**base)


def make_trainer(tmp, config, methods=(), n_train=48, n_valid=16, dropout=0.1, equal_len=False, **kw):
    torch.manual_seed(1234)
    model = ToyModel(dropout)
    return Trainer(model, ToyDataset(n_train, 0, equal_len), ToyDataset(n_valid, 1, equal_len, "v"), config,
                   methods=methods, exp_dir=str(tmp), **kw)


def flat(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


# ---------------------------------------------------------------------------- schedule / config
def test_warmup_schedule_values():
    assert noam_lr(1, 1.0, 4) == pytest.approx(4 ** 0.5 * 4 ** -1.5)
    assert noam_lr(4, 2e-3, 4) == pytest.approx(2e-3)           # peak = lr at step = warmup
    assert noam_lr(16, 1.0, 4) == pytest.approx(0.5)            # lr * sqrt(warmup / step)
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=1e-3)
    sch = WarmupLR(opt, warmup_steps=5)
    got = []
    for s in range(1, 12):
        got.append(opt.param_groups[0]["lr"])          # lr used by update s
        opt.step()
        sch.step()
    want = [1e-3 * 5 ** 0.5 * min(s ** -0.5, s * 5 ** -1.5) for s in range(1, 12)]
    assert np.allclose(got, want, rtol=1e-12)
    assert max(got) == pytest.approx(1e-3) and int(np.argmax(got)) == 4


def test_config_from_yaml(tmp_path):
    (tmp_path / "c.yaml").write_text("model: {d: 4}\ntrainer:\n  lr: 0.002\n  accum_grad: 4\n"
                                     "  betas: [0.9, 0.98]\n  metric: loss\n")
    c = TrainerConfig.from_yaml(tmp_path / "c.yaml")
    assert (c.lr, c.accum_grad, c.betas, c.metric) == (0.002, 4, (0.9, 0.98), "loss")
    with pytest.raises(ValueError, match="bogus"):
        TrainerConfig.from_dict({"trainer": {"bogus": 1}})


def test_amp_is_off_on_cpu(tmp_path):
    tr = make_trainer(tmp_path, cfg(amp=True, device="cpu"))
    assert not tr.use_amp and tr.scaler is None and tr.world_size == 1 and tr.ddp_model is tr.model


# ---------------------------------------------------------------------------- training
def test_loss_decreases_and_best_n_average(tmp_path):
    tr = make_trainer(tmp_path, cfg(lr=0.05, max_epochs=5, best_n=2, metric="loss"))
    res = tr.fit()
    losses = [h["valid"]["loss"] for h in res.history]
    assert losses[-1] < losses[0] * 0.8, losses
    assert res.history[-1]["train"]["loss"] < res.history[0]["train"]["loss"]
    # best-N: exactly the 2 best epochs kept, averaged file = mean of them
    assert len(res.best) == 2 and res.best == sorted(res.best)
    assert sorted(res.best)[0][0] == min(losses)
    kept = sorted(f for f in os.listdir(tmp_path) if f.startswith("epoch"))
    assert kept == sorted(f"epoch{e}.pth" for _, e in res.best)
    avg = load_checkpoint(res.averaged)
    sds = [load_checkpoint(tmp_path / f"epoch{e}.pth")["model"] for _, e in res.best]
    for k in avg:
        assert torch.allclose(avg[k], (sds[0][k] + sds[1][k]) / 2, atol=1e-7)
    log = (tmp_path / "train.log").read_text()
    assert "epoch 1 valid" in log and "averaged 2 best" in log


def test_average_checkpoints(tmp_path):
    ps = []
    for i in range(3):
        ps.append(save_checkpoint({"model": {"w": torch.full((2,), float(i)),
                                             "n": torch.tensor(i, dtype=torch.int64)}}, tmp_path / f"{i}.pth"))
    avg = average_checkpoints(ps)
    assert torch.equal(avg["w"], torch.ones(2)) and int(avg["n"]) == 0


def test_max_steps_ends_training_after_that_many_updates(tmp_path):
    tr = make_trainer(tmp_path, cfg(max_epochs=10, batch_size=8, accum_grad=2, max_steps=3, metric="loss"))
    res = tr.fit()
    assert tr.step == 3 and res.epochs_run == len(res.history) < 10
    assert res.history[-1]["step"] == 3 and all("valid" in h for h in res.history)


def test_early_stop(tmp_path):
    # lr 0: the metric never improves -> stop after 1 + patience epochs
    tr = make_trainer(tmp_path, cfg(lr=0.0, max_epochs=10, patience=2, metric="loss"))
    res = tr.fit()
    assert res.stopped_early and res.epochs_run == 3 and len(res.history) == 3


def _one_update(tmp, **kw):
    tr = make_trainer(tmp, cfg(max_epochs=1, shuffle=False, **kw), n_train=8, n_valid=4, dropout=0.0,
                      equal_len=True)
    before = flat(tr.model).clone()
    res = tr.fit()
    assert tr.step == 1
    return before, flat(tr.model), res


@pytest.mark.parametrize("optim", ["sgd", "adam"])
def test_accumulation_equivalence(tmp_path, optim):
    b0, full, _ = _one_update(tmp_path / "a", optim=optim, lr=0.1, batch_size=8, accum_grad=1, grad_clip=0)
    b1, acc, _ = _one_update(tmp_path / "b", optim=optim, lr=0.1, batch_size=4, accum_grad=2, grad_clip=0)
    assert torch.equal(b0, b1)
    assert not torch.allclose(b0, full)
    assert torch.allclose(full, acc, atol=1e-6), (full - acc).abs().max()


def test_grad_clip(tmp_path):
    clip = 1e-3
    before, after, res = _one_update(tmp_path, optim="sgd", lr=1.0, batch_size=8, grad_clip=clip)
    assert res.history[0]["train"]["grad_norm"] > clip * 10
    assert float((after - before).norm()) == pytest.approx(clip, rel=1e-4)


# ---------------------------------------------------------------------------- checkpoints
class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_atomic_save_weights_only_and_pickled_code_refused(tmp_path, monkeypatch):
    p = tmp_path / "ck.pth"
    save_checkpoint({"model": {"w": torch.ones(3)}, "n": 1}, p)
    assert load_checkpoint(p)["model"]["w"].sum() == 3
    # a failing write leaves the old file intact and no temporary file
    real = torch.save

    def boom(obj, f, *a, **k):
        f.write(b"partial")
        raise OSError("disk full")
    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        save_checkpoint({"model": {"w": torch.zeros(3)}}, p)
    monkeypatch.setattr(torch, "save", real)
    assert load_checkpoint(p)["model"]["w"].sum() == 3
    assert sorted(os.listdir(tmp_path)) == ["ck.pth"]
    # pickled code: refused, the error names the file, nothing ran
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.ones(1)}, "x": Evil(marker)}, evil)
    with pytest.raises(CheckpointError) as ei:
        load_checkpoint(evil)
    assert str(evil) in str(ei.value) and "weights-only" in str(ei.value)
    assert not marker.exists()
    # also through the trainer's resume and load_partial
    exp = tmp_path / "exp"
    exp.mkdir()
    torch.save({"format": "avsr-trainer-1", "x": Evil(marker)}, exp / "checkpoint.pth")
    tr = make_trainer(exp, cfg())
    with pytest.raises(CheckpointError, match="checkpoint.pth"):
        tr.fit()
    with pytest.raises(CheckpointError, match="evil.pth"):
        load_partial(tr.model, str(evil))
    assert not marker.exists()


def test_load_partial(tmp_path):
    src = ToyModel()
    src.head = nn.Linear(8, 5)       # another shape
    sd = dict(src.state_dict())
    sd["extra.weight"] = torch.zeros(2)
    dst = ToyModel()
    old_head = dst.head.weight.detach().clone()
    res = load_partial(dst, {"model": sd}, ignore=["enc.bias"])
    loaded, missing, unexpected, mismatch = res
    assert loaded == ["enc.weight"]
    assert missing == ["enc.bias"] and unexpected == ["extra.weight"]
    assert mismatch == ["head.weight", "head.bias"]
    assert torch.equal(dst.enc.weight, src.enc.weight) and torch.equal(dst.head.weight, old_head)


def test_checkpoint_round_trip_in_process(tmp_path):
    tr = make_trainer(tmp_path, cfg(max_epochs=1), methods=[FrameDropoutMethod(d_prob=0.5, seed=3)])
    tr.fit()
    ck = torch.load(tmp_path / "checkpoint.pth", weights_only=True)
    assert ck["epoch"] == 1 and ck["epoch_done"] and ck["sampler"]["position"] == 0
    assert ck["ranks"][0]["methods"][0]["name"] == "frame_dropout"
    assert set(ck["ranks"][0]["rng"]) >= {"python", "numpy", "torch"}


# ---------------------------------------------------------------------------- resume after SIGKILL
CHILD = r"""
import os, sys, time, torch
sys.path.insert(0, {here!r})
torch.set_num_threads(1)
import test_trainer as t
from avsr.trainer import TrainingMethod
from avsr.robust.frame_dropout import FrameDropoutMethod

class Stall(TrainingMethod):
    name = "stall"
    def __init__(self, at):
        self.at = at
    def on_step_end(self, trainer, stats):
        if self.at and trainer.step == self.at:
            open(os.path.join(trainer.exp_dir, "STALLED"), "w").close()
            time.sleep(600)

tr = t.make_trainer({exp!r}, t.cfg(max_epochs=2, batch_size=4, accum_grad=2, save_every_steps=2,
                                   log_interval=100),
                    methods=[FrameDropoutMethod(d_prob=0.5, seed=5), Stall({stall})])
tr.fit()
torch.save({{k: v for k, v in tr.model.state_dict().items()}}, {out!r})
"""


def _child(exp, stall, out):
    code = CHILD.format(here=HERE, exp=str(exp), stall=stall, out=str(out))
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_resume_after_sigkill(tmp_path):
    # 48 items, batch 4 -> 12 batches = 6 updates per epoch; step checkpoints at steps 2, 4 (mid-epoch)
    ref = _child(tmp_path / "ref", 0, tmp_path / "ref.pt")
    run = _child(tmp_path / "run", 3, tmp_path / "unused.pt")   # stalls after update 3 (checkpoint at 2)
    try:
        deadline = time.time() + 60
        while not (tmp_path / "run" / "STALLED").exists():
            assert run.poll() is None, run.stderr.read().decode()
            assert time.time() < deadline
            time.sleep(0.05)
        os.kill(run.pid, signal.SIGKILL)
        run.wait()
    finally:
        if run.poll() is None:
            run.kill()
            ref.kill()
    assert run.returncode == -signal.SIGKILL
    ck = load_checkpoint(tmp_path / "run" / "checkpoint.pth")
    assert (ck["epoch"], ck["epoch_done"], ck["step"], ck["sampler"]["position"]) == (1, False, 2, 4)
    os.unlink(tmp_path / "run" / "STALLED")
    res = _child(tmp_path / "run", 0, tmp_path / "resumed.pt")
    assert res.wait(120) == 0, res.stderr.read().decode()
    assert ref.wait(120) == 0, ref.stderr.read().decode()
    a = torch.load(tmp_path / "ref.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed.pt", weights_only=True)
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6, rtol=0), k
    assert "resumed from" in (tmp_path / "run" / "train.log").read_text()
    ca = load_checkpoint(tmp_path / "ref" / "checkpoint.pth")
    cb = load_checkpoint(tmp_path / "run" / "checkpoint.pth")
    assert ca["step"] == cb["step"] == 12 and ca["best"] == cb["best"]
    assert ca["ranks"][0]["methods"][0] == cb["ranks"][0]["methods"][0]   # FrameDropout RNG


def test_resume_reads_the_checkpoint_to_the_host(tmp_path, monkeypatch):
    # resuming on CUDA once loaded the checkpoint onto the GPU, and the numpy RNG state, a CUDA tensor,
    # then failed in set_rng_state ("can't convert cuda:0 device type tensor to numpy"); the checkpoint
    # is read to the CPU, the model and optimiser move their tensors, and the host states stay host
    tr = make_trainer(tmp_path, cfg(max_epochs=1))
    tr.fit()
    import avsr.trainer.trainer as trainer_mod
    seen = []

    def spy(path, map_location=None):
        seen.append(map_location)
        return load_checkpoint(path, map_location=map_location)

    monkeypatch.setattr(trainer_mod, "load_checkpoint", spy)
    tr2 = make_trainer(tmp_path, cfg(max_epochs=2))
    assert tr2.resume()
    assert seen == ["cpu"]
    assert (tr2.epoch, tr2.epoch_done) == (1, True)
    ck = load_checkpoint(tmp_path / "checkpoint.pth")
    assert ck["ranks"][0]["rng"]["numpy"]["keys"].device.type == "cpu"


# ---------------------------------------------------------------------------- plug-ins
class Recorder(TrainingMethod):
    """Exercises every hook: inputs, extra loss from a tap, frozen teacher, grad hook."""
    name = "recorder"

    def __init__(self):
        self.calls = {"transform_train": 0, "transform_valid": 0, "extra": 0, "hook": 0, "epoch_end": 0}
        self.step_end = 0

    def setup(self, trainer):
        # dataset-level statistics: the mean training frame (cf. avsr.data.dataset.dataset_video_mean)
        frames = torch.cat([trainer.train_set[i]["video"] for i in range(len(trainer.train_set))])
        self.mean_frame = frames.double().mean(0)
        self.teacher = trainer.register_frozen("teacher", nn.Linear(16, 8))
        self.teacher_init = [p.detach().clone() for p in self.teacher.parameters()]

        def hook(name, g):
            assert name.startswith("enc.")
            self.calls["hook"] += 1
            return torch.zeros_like(g)      # freeze the encoder through its gradients
        trainer.register_grad_hook("enc", hook)

    def transform_batch(self, batch, train):
        self.calls["transform_train" if train else "transform_valid"] += 1
        return batch.replace(video=255 - batch.video)

    def extra_losses(self, batch, out, model):
        self.calls["extra"] += 1
        h = out.taps["hidden"]
        with torch.no_grad():
            t = torch.tanh(self.teacher(batch.video.float().flatten(2) / 255.0))
        return {"loss_kd": 0.5 * ((h - t) ** 2).mean()}

    def on_step_end(self, trainer, stats):
        self.step_end += 1

    def on_epoch_end(self, trainer, epoch, valid_stats):
        self.calls["epoch_end"] += 1
        assert "loss_kd" in valid_stats


def test_plugin_hooks(tmp_path):
    m = Recorder()
    tr = make_trainer(tmp_path, cfg(max_epochs=1, optim="sgd", lr=0.1), methods=[m], dropout=0.0)
    enc0 = [p.detach().clone() for p in tr.model.enc.parameters()]
    head0 = tr.model.head.weight.detach().clone()
    res = tr.fit()
    assert m.mean_frame.shape == (4, 4) and 50 < float(m.mean_frame.mean()) < 200
    # transform_batch: the model saw the inverted video, train and valid
    assert m.calls["transform_train"] == 6 and m.calls["transform_valid"] == 2
    by_id = {it["utt_id"]: it["video"] for it in tr.train_set.items + tr.valid_set.items}
    for ids, video, lens in tr.model.seen:
        for u, v, n in zip(ids, video, lens.tolist()):
            assert torch.equal(v[:n], 255 - by_id[u])
    # extra loss: added and logged
    assert m.calls["extra"] == 8
    h = res.history[0]
    assert "loss_kd" in h["train"] and "loss_kd" in h["valid"]
    assert h["train"]["loss"] == pytest.approx(h["train"]["loss_model"] + h["train"]["loss_kd"], rel=1e-6)
    assert "loss_kd=" in (tmp_path / "train.log").read_text()
    # teacher: frozen, eval, not optimised, not in checkpoints
    assert not m.teacher.training
    assert all(p.grad is None and not p.requires_grad for p in m.teacher.parameters())
    opt_ids = {id(p) for g in tr.optimizer.param_groups for p in g["params"]}
    assert not opt_ids & {id(p) for p in m.teacher.parameters()}
    assert all(torch.equal(a, b) for a, b in zip(m.teacher.parameters(), m.teacher_init))
    ck = load_checkpoint(tmp_path / "checkpoint.pth")
    assert set(ck["model"]) == set(tr.model.state_dict())
    # grad hook fired on enc only (2 params x 6 backward passes) and zeroed its gradients
    assert m.calls["hook"] == 12 and m.step_end == 6
    assert all(torch.equal(a, b) for a, b in zip(tr.model.enc.parameters(), enc0))
    assert not torch.equal(tr.model.head.weight, head0)


def test_train_step_override_and_single_owner(tmp_path):
    class Owner(TrainingMethod):
        n = 0

        def train_step(self, trainer, batch):
            Owner.n += 1
            return trainer.default_train_step(batch)
    tr = make_trainer(tmp_path, cfg(max_epochs=1), methods=[Owner()])
    tr.fit()
    assert Owner.n == 6 and tr.step == 6
    with pytest.raises(ValueError, match="at most one"):
        make_trainer(tmp_path, cfg(), methods=[Owner(), Owner()])


def test_frame_dropout_method_rate_and_resume():
    def batch(B=400, T=20):
        return Batch(utt_ids=[f"u{i}" for i in range(B)], video=torch.full((B, T, 2, 2), 200, dtype=torch.uint8),
                     video_lens=torch.full((B,), T, dtype=torch.int64))
    m = FrameDropoutMethod(rate=0.5, d_prob=0.3, seed=7)
    b = batch()
    assert m.transform_batch(b, train=False) is b
    out = m.transform_batch(b, train=True)
    dropped = ~out.frame_mask
    has = dropped.any(1).float().mean().item()
    assert abs(has - 0.3) < 0.07
    assert (dropped.sum(1)[dropped.any(1)] == 10).all()                 # rate 0.5 of 20 frames
    assert (out.video[dropped] == 0).all() and (out.video[~dropped] == 200).all()
    assert torch.equal(b.video, torch.full_like(b.video, 200))          # input untouched
    # RNG state resumes (through a weights-only round trip)
    import io
    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    buf.seek(0)
    m2 = FrameDropoutMethod(rate=0.5, d_prob=0.3, seed=999)
    m2.load_state_dict(torch.load(buf, weights_only=True))
    x1, x2 = m.transform_batch(batch(50), True), m2.transform_batch(batch(50), True)
    assert torch.equal(x1.video, x2.video) and torch.equal(x1.frame_mask, x2.frame_mask)


def test_cer_hook_init_and_optional_tensorboard(tmp_path):
    src = make_trainer(tmp_path / "src", cfg(max_epochs=1))
    src.fit()
    calls = []

    def cer_fn(model, batch, out):
        calls.append(len(batch))
        return 1.0, 4.0                     # 1 error per 4 reference chars
    tr = make_trainer(tmp_path / "b", cfg(max_epochs=2, metric="cer", tensorboard=True,
                                          init=str(tmp_path / "src" / "epoch1.pth"), init_ignore=("head.",)),
                      cer_fn=cer_fn)
    assert torch.equal(tr.model.enc.weight, src.model.enc.weight)
    assert tr.init_result.missing == ["head.weight", "head.bias"]
    res = tr.fit()
    assert sum(calls) == 2 * 16
    assert res.history[0]["valid"]["cer"] == pytest.approx(0.125 * 2)   # 2 batches: 2 / 8
    assert res.averaged.endswith("valid.cer.ave_2best.pth")
    log = (tmp_path / "b" / "train.log").read_text()
    assert "init from" in log
    import importlib.util
    if importlib.util.find_spec("tensorboard") is not None:
        assert (tmp_path / "b" / "tensorboard").is_dir()
    else:
        assert "TensorBoard unavailable" in log


# ---------------------------------------------------------------------------- freeze_param
class ToyBNModel(ToyModel):
    """ToyModel with a BatchNorm on the pooled features (running statistics to keep still)."""

    def __init__(self):
        super().__init__(dropout=0.0)
        self.bn = nn.BatchNorm1d(8)

    def forward(self, batch: Batch, **kw) -> ToyOut:
        x = batch.video.float().flatten(2) / 255.0
        h = torch.tanh(self.enc(x))
        mask = (torch.arange(x.shape[1])[None] < batch.video_lens[:, None]).float()
        pooled = self.bn((h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True))
        logits = self.head(pooled)
        loss = nn.functional.cross_entropy(logits, batch.tokens[:, 0])
        return ToyOut(loss, {"hidden": h, "lens": batch.video_lens}, {"loss_ce": float(loss.detach())})


def _bn_fit(tmp, freeze):
    torch.manual_seed(1234)
    model = ToyBNModel()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    tr = Trainer(model, ToyDataset(32, 0), ToyDataset(8, 1, prefix="v"),
                 cfg(max_epochs=2, metric="loss", freeze_param=freeze), exp_dir=str(tmp))
    tr.fit()
    after = model.state_dict()
    return tr, {k: not torch.equal(before[k], after[k]) for k in before}


def test_freeze_param_keeps_parameters_and_batchnorm_statistics(tmp_path):
    tr, changed = _bn_fit(tmp_path / "frozen", ("enc", "bn"))
    assert not any(changed[k] for k in changed if k.startswith(("enc.", "bn."))), changed
    assert changed["head.weight"] and changed["head.bias"]
    opt_ids = {id(p) for g in tr.optimizer.param_groups for p in g["params"]}
    assert opt_ids == {id(tr.model.head.weight), id(tr.model.head.bias)}
    # without freezing, the same run moves both the weights and the running statistics
    _, changed = _bn_fit(tmp_path / "free", ())
    assert changed["enc.weight"] and changed["bn.weight"] and changed["bn.running_mean"]
    # TrainerConfig.from_dict takes the YAML list form
    assert TrainerConfig.from_dict({"trainer": {"freeze_param": ["enc"]}}).freeze_param == ("enc",)


def test_freeze_param_rejects_unknown_prefix_and_freezing_everything(tmp_path):
    with pytest.raises(ValueError, match=r"no parameter starts with \['encoder'\]"):
        make_trainer(tmp_path / "a", cfg(freeze_param=("encoder",)))
    with pytest.raises(ValueError, match="freezes every parameter"):
        make_trainer(tmp_path / "b", cfg(freeze_param=("enc", "head")))


# ---------------------------------------------------------------------------- extra_stats / register_trainable
class Diagnose(TrainingMethod):
    """Reports the mean |hidden| of every forward as an extra stat, never as a loss."""
    name = "diagnose"

    def extra_stats(self, batch, out, model):
        return {"hidden_abs": out.taps["hidden"].detach().abs().mean(), "n_utts": float(len(batch))}


def test_extra_stats_are_logged_but_never_reach_the_loss(tmp_path):
    """Bugs caught: stats not logged per interval / epoch / validation, or added to the loss (the run's
    weights would then differ from a run without the method)."""
    ref = make_trainer(tmp_path / "ref", cfg(max_epochs=1, optim="sgd", lr=0.1), dropout=0.0)
    ref.fit()
    tr = make_trainer(tmp_path / "diag", cfg(max_epochs=1, optim="sgd", lr=0.1), methods=[Diagnose()], dropout=0.0)
    res = tr.fit()
    assert torch.equal(flat(tr.model), flat(ref.model))                  # same training: not a loss term
    h, h_ref = res.history[0], ref.history[0]
    assert h["train"]["loss"] == pytest.approx(h_ref["train"]["loss"], rel=1e-9)
    assert h["train"]["loss"] == pytest.approx(h["train"]["loss_model"], rel=1e-9)
    assert 0 < h["train"]["hidden_abs"] < 1 and h["train"]["n_utts"] > 0
    assert 0 < h["valid"]["hidden_abs"] < 1
    log = (tmp_path / "diag" / "train.log").read_text()
    step_lines = [x for x in log.splitlines() if " step " in x]
    assert len(step_lines) == 6 and all("hidden_abs=" in x for x in step_lines)     # every log interval


def test_extra_stats_name_clash(tmp_path):
    class Clash(TrainingMethod):
        def extra_stats(self, batch, out, model):
            return {"acc": 1.0}                # the model's own stat
    tr = make_trainer(tmp_path, cfg(max_epochs=1), methods=[Clash()])
    with pytest.raises(ValueError, match="extra stat name 'acc'"):
        tr.fit()


class AuxHead(TrainingMethod):
    """A method with its own trainable module: a linear probe on the hidden tap."""
    name = "aux"

    def setup(self, trainer):
        self.probe = trainer.register_trainable("aux_probe", nn.Linear(8, NUM_CLASSES))

    def extra_losses(self, batch, out, model):
        h = out.taps["hidden"].mean(1)
        return {"loss_aux": nn.functional.cross_entropy(self.probe(h), batch.tokens[:, 0])}


def test_register_trainable_is_optimised_resumed_and_not_in_model_files(tmp_path):
    """Bugs caught: the module not optimised, missing from the training state (a resumed run starts a
    fresh one), or saved into the model snapshots / the averaged model (packing and decoding would see
    a foreign tensor)."""
    m = AuxHead()
    tr = make_trainer(tmp_path, cfg(max_epochs=2, save_every_steps=2), methods=[m])
    opt_ids = [id(p) for g in tr.optimizer.param_groups for p in g["params"]]
    assert opt_ids[-2:] == [id(p) for p in m.probe.parameters()]        # after the model's
    before = [p.detach().clone() for p in m.probe.parameters()]
    res = tr.fit()
    assert any(not torch.equal(a, p) for a, p in zip(before, m.probe.parameters()))
    assert "aux_probe" not in dict(tr.model.named_children())
    model_keys = set(tr.model.state_dict())
    for f in ("epoch1.pth", "epoch2.pth"):
        assert set(load_checkpoint(tmp_path / f)["model"]) == model_keys
    assert set(torch.load(res.averaged, weights_only=True)) == model_keys
    ck = torch.load(tmp_path / "checkpoint.pth", weights_only=True)
    assert set(ck["model"]) == model_keys
    assert all(torch.equal(ck["trainables"]["aux_probe"][k], v) for k, v in m.probe.state_dict().items())
    # resume: a new trainer with a fresh probe gets the saved one back
    m2 = AuxHead()
    tr2 = make_trainer(tmp_path, cfg(max_epochs=2), methods=[m2])
    assert not all(torch.equal(a, b) for a, b in zip(m2.probe.parameters(), m.probe.parameters()))
    assert tr2.resume()
    assert all(torch.equal(a, b) for a, b in zip(m2.probe.parameters(), m.probe.parameters()))
    # a checkpoint whose trainable modules do not match the methods' is refused
    with pytest.raises(CheckpointError, match="aux_probe"):
        make_trainer(tmp_path / "other", cfg(max_epochs=2)).load_state_dict(ck, "ck")


def test_register_trainable_misuse(tmp_path):
    tr = make_trainer(tmp_path, cfg(max_epochs=1))
    with pytest.raises(RuntimeError, match="setup"):
        tr.register_trainable("late", nn.Linear(2, 2))

    class PartOfModel(TrainingMethod):
        def setup(self, trainer):
            trainer.register_trainable("head", trainer.model.head)
    with pytest.raises(ValueError, match="part of the model"):
        make_trainer(tmp_path / "b", cfg(max_epochs=1), methods=[PartOfModel()])


class _Stream:
    """A stderr stand-in that keeps what is written and says whether it is a terminal."""

    def __init__(self, tty: bool):
        self.tty, self.parts = tty, []

    def write(self, s):
        self.parts.append(s)
        return len(s)

    def flush(self):
        pass

    def isatty(self):
        return self.tty

    @property
    def text(self):
        return "".join(self.parts)


@pytest.mark.parametrize("tty", [True, False])
def test_progress_bars_only_on_a_terminal(tmp_path, monkeypatch, tty):
    # a recipe's stage log is a pipe (tee): a bar there would be kept as one line per redraw
    stream = _Stream(tty)
    monkeypatch.setattr(sys, "stderr", stream)
    make_trainer(tmp_path, cfg(max_epochs=1, progress=True, log_interval=100)).fit()
    bar = "epoch 1:" in stream.text and "it/s" in stream.text
    assert bar == tty, stream.text[:500]
