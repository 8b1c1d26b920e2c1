"""MDA-KD distances and the method inside the trainer."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from avsr.robust.mda_kd import DISTANCES, MDAKDMethod, distance

ROOT = Path(__file__).resolve().parents[1]


def _pair(B=3, T=40, D=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(B, T, D, generator=g)
    lens = torch.tensor([T, T - 7, 12])
    return t, lens


@pytest.mark.parametrize("name", DISTANCES)
def test_zero_on_identical_and_grad_to_student_only(name):
    t, lens = _pair()
    s = t.clone().requires_grad_(True)
    tt = t.clone().requires_grad_(True)
    d = distance(name, s, tt, lens, n_samples=1000)      # all frames: deterministic
    assert abs(float(d.detach())) < 1e-5
    s2 = (t + 0.5 * torch.randn_like(t)).requires_grad_(True)
    d2 = distance(name, s2, tt, lens, n_samples=1000)
    assert float(d2.detach()) > 1e-3
    d2.backward()
    assert s2.grad is not None and s2.grad.abs().sum() > 0 and tt.grad is None


@pytest.mark.parametrize("name", DISTANCES)
def test_padding_is_ignored(name):
    t, lens = _pair()
    s = t + 0.3
    a = distance(name, s, t, lens, n_samples=1000)
    s2, t2 = s.clone(), t.clone()
    s2[1, int(lens[1]):] = 99.0
    t2[2, int(lens[2]):] = -50.0
    assert torch.allclose(a, distance(name, s2, t2, lens, n_samples=1000), atol=1e-5)


def test_distribution_distances_see_variance_not_only_means():
    """Same per-dimension means, different spread: a mean-only distance would say 0."""
    g = torch.Generator().manual_seed(1)
    t = torch.randn(2, 200, 8, generator=g)
    s = (t - t.mean(1, keepdim=True)) * 3.0 + t.mean(1, keepdim=True)
    lens = torch.tensor([200, 200])
    mean_gap = (s.mean(1) - t.mean(1)).abs().max()
    assert mean_gap < 1e-5
    assert float(distance("gauss_kl", s, t, lens, n_samples=1000)) > 0.5
    assert float(distance("mmd", s, t, lens, n_samples=1000)) > 0.05


def test_sampling_is_seeded():
    t, lens = _pair(T=200)
    lens = torch.tensor([200, 150, 120])
    s = t + torch.randn_like(t)
    a = distance("mmd", s, t, lens, n_samples=32, generator=torch.Generator().manual_seed(3))
    b = distance("mmd", s, t, lens, n_samples=32, generator=torch.Generator().manual_seed(3))
    c = distance("mmd", s, t, lens, n_samples=32, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_method_in_trainer(tmp_path):
    """Teacher frozen (unchanged, not in the optimiser), sees clean video; the student sees black frames."""
    from avsr.data.batch import Batch
    from avsr.data.dataset import collate
    from avsr.models import AVSRModel, load_config
    from avsr.robust.frame_dropout import FrameDropoutMethod
    from avsr.trainer import Trainer, TrainerConfig
    from avsr.utils.checkpoint import save_checkpoint

    V = 12
    cfg = load_config(ROOT / "conf" / "micro.yaml", vocab_size=V)
    torch.manual_seed(0)
    teacher = AVSRModel(cfg)
    save_checkpoint(teacher.state_dict(), tmp_path / "teacher.pth")
    g = torch.Generator().manual_seed(0)
    items = []
    for i in range(4):
        n = 16000 + 1600 * i
        items.append({"utt_id": f"u{i}", "audio": 0.1 * torch.randn(n, generator=g),
                      "video": torch.randint(1, 255, (n // 640, 88, 88), generator=g, dtype=torch.uint8),
                      "detected": None, "tokens": torch.randint(1, V - 1, (4,), generator=g), "text": "ab"})

    class DS(torch.utils.data.Dataset):
        durations = [1.0 + 0.1 * i for i in range(4)]

        def __len__(self):
            return 4

        def __getitem__(self, i):
            return items[i]

    torch.manual_seed(1)
    student = AVSRModel(cfg)
    kd = MDAKDMethod(str(tmp_path / "teacher.pth"), tap="fused", distance="gauss_kl", weight=1.0, n_samples=16)
    seen = {}

    tc = TrainerConfig(max_epochs=1, batch_size=2, progress=False, warmup_steps=10, metric="loss")
    tr = Trainer(student, DS(), None, tc, methods=[kd, FrameDropoutMethod(rate=1.0, d_prob=1.0)],
                 exp_dir=tmp_path / "exp")
    t_enc = kd.teacher.encode

    def spy(batch, modality=None, front=None):
        seen["teacher_video_max"] = int(batch.video.max())
        return t_enc(batch, modality, front)
    kd.teacher.encode = spy
    before = {k: v.clone() for k, v in kd.teacher.state_dict().items()}
    b = tr.prepare_batch(collate([items[0], items[1]]), train=True)
    assert isinstance(b, Batch) and int(b.video.max()) == 0          # the student: every frame black
    loss, out, stats = tr.forward_loss(b)
    assert seen["teacher_video_max"] > 0 and stats["loss_kd"] > 0      # the teacher: clean frames
    tr.fit()
    assert all(torch.equal(before[k], v) for k, v in kd.teacher.state_dict().items())
    assert not any(p.requires_grad for p in kd.teacher.parameters())
    opt_ids = {id(p) for grp in tr.optimizer.param_groups for p in grp["params"]}
    assert not opt_ids & {id(p) for p in kd.teacher.parameters()}
    assert "loss_kd" in tr.history[-1]["train"]


def test_expand_taps():
    from avsr.robust.mda_kd import expand_taps
    avail = ["fusion0.audio", "fusion0.visual", "fusion1.audio", "fusion1.visual", "fused", "shared_out"]
    assert expand_taps("fused", avail) == ["fused"]
    assert expand_taps("fusion", avail) == avail[:4]
    assert expand_taps("fusion+fused", avail) == avail[:5]
    assert expand_taps("fusion1.visual+fusion", avail) == ["fusion1.visual", "fusion0.audio", "fusion0.visual",
                                                          "fusion1.audio"]
    with pytest.raises(ValueError, match="fusion9.audio"):
        expand_taps("fused+fusion9.audio", avail)


def test_multi_tap_loss_is_mean_and_reaches_fusion_layers(tmp_path):
    """``fusion+fused``: loss_kd = mean of the single-tap distances; with only the per-fusion-layer
    taps the KD gradient reaches the fusion layers but not the shared layers after them."""
    from avsr.data.dataset import collate
    from avsr.models import AVSRModel, load_config
    from avsr.robust.frame_dropout import FrameDropoutMethod
    from avsr.trainer import Trainer, TrainerConfig
    from avsr.utils.checkpoint import save_checkpoint

    V = 12
    cfg = load_config(ROOT / "conf" / "micro.yaml", vocab_size=V)
    torch.manual_seed(0)
    save_checkpoint(AVSRModel(cfg).state_dict(), tmp_path / "teacher.pth")
    g = torch.Generator().manual_seed(0)
    items = [{"utt_id": f"u{i}", "audio": 0.1 * torch.randn(16000, generator=g),
              "video": torch.randint(1, 255, (25, 88, 88), generator=g, dtype=torch.uint8),
              "detected": None, "tokens": torch.randint(1, V - 1, (4,), generator=g), "text": "ab"}
             for i in range(2)]
    torch.manual_seed(1)
    student = AVSRModel(cfg)
    tc = TrainerConfig(max_epochs=1, batch_size=2, progress=False, warmup_steps=10, metric="loss")
    specs = ("fusion+fused", "fusion", *student.tap_names("audiovisual")[:-1])
    # set every method up (the teacher is a deepcopy of the student) before any forward
    setups = {}
    for i, spec in enumerate(specs):
        kd = MDAKDMethod(str(tmp_path / "teacher.pth"), tap=spec, distance="mse", weight=1.0)
        setups[spec] = (kd, Trainer(student, [], None, tc, methods=[kd, FrameDropoutMethod(rate=1.0, d_prob=1.0)],
                                    exp_dir=tmp_path / f"exp_{i}"))
    student.eval()                          # no dropout: every spec sees the same forward
    losses = {}
    for spec, (kd, tr) in setups.items():
        b = tr.prepare_batch(collate(items), train=True)
        out = student(b)
        losses[spec] = kd.extra_losses(b, out, student)["loss_kd"]
        if spec == "fusion":
            student.zero_grad()
            losses[spec].backward()
            shared = [p.grad for p in student.shared_encoder.parameters()]
            assert all(gr is None or float(gr.abs().sum()) == 0 for gr in shared)
            for mod in (student.cross_a2v[0], student.audio_encoder.encoders[0]):
                assert sum(float(p.grad.abs().sum()) for p in mod.parameters() if p.grad is not None) > 0
    singles = [losses[t] for t in student.tap_names("audiovisual")[:-1] if t != "visual_bundle"]
    assert setups["fused"][0].taps == ["fused"] and len(setups["fusion"][0].taps) == 2 * cfg.fusion_layers
    assert torch.allclose(losses["fusion+fused"], torch.stack(singles).mean(), rtol=1e-5)
    assert torch.allclose(losses["fusion"], torch.stack(singles[:-1]).mean(), rtol=1e-5)
