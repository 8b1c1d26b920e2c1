"""TFR (avsr/robust/tfr.py): reconstruction of the dropped frames' visual features on the micro model."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from avsr.data.dataset import collate
from avsr.models import AVSRModel, count_parameters, load_config
from avsr.robust.frame_dropout import FrameDropoutMethod
from avsr.robust.tfr import HEAD_NAME, TFRMethod, reconstruction_loss
from avsr.trainer import Trainer, TrainerConfig

ROOT = Path(__file__).resolve().parents[1]
V = 12


def _items(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        ns = 16000 + 1600 * i
        out.append({"utt_id": f"u{i}", "audio": 0.1 * torch.randn(ns, generator=g),
                    "video": torch.randint(1, 255, (ns // 640, 88, 88), generator=g, dtype=torch.uint8),
                    "detected": None, "tokens": torch.randint(1, V - 1, (4,), generator=g), "text": "ab"})
    return out


def _trainer(tmp_path, tfr=None, dropout=None, items=(), name="exp", valid=None, **tkw):
    torch.manual_seed(0)
    model = AVSRModel(load_config(ROOT / "conf" / "micro.yaml", vocab_size=V))
    tfr = tfr or TFRMethod(warmup_steps=0, weight=1.0)
    dropout = dropout or FrameDropoutMethod(rate=0.5, d_prob=1.0)
    tc = TrainerConfig(**{**dict(max_epochs=1, batch_size=2, progress=False, warmup_steps=10, metric="loss"), **tkw})
    tr = Trainer(model, list(items), valid, tc, methods=[tfr, dropout], exp_dir=tmp_path / name)
    return model, tfr, tr


def _expected_missing(b, lens, T):
    """Independent form: dropped = not in frame_mask, within the video and the model's grid."""
    t = torch.arange(T)[None, :]
    fm = torch.zeros(len(b), T, dtype=torch.bool)
    k = min(T, b.frame_mask.size(1))
    fm[:, :k] = b.frame_mask[:, :k].cpu()
    return ~fm & (t < lens.cpu()[:, None]) & (t < b.video_lens.cpu()[:, None])


def _forward(tr, model, b):
    out = model(b)
    return out, out.taps["lens"], out.taps["fused"].size(1)


def test_zero_when_nothing_dropped(tmp_path):
    """Bug caught: the loss counts present (or all) positions instead of the dropped ones."""
    model, tfr, tr = _trainer(tmp_path, dropout=FrameDropoutMethod(rate=0.5, d_prob=0.0))
    b = tr.prepare_batch(collate(_items()[:2]), train=True)
    assert bool(b.frame_mask[:, :20].all())
    _, _, stats = tr.forward_loss(b)
    assert stats["loss_tfr"] == 0.0
    # the same model with frames dropped: positive
    model2, tfr2, tr2 = _trainer(tmp_path, name="exp2")
    b2 = tr2.prepare_batch(collate(_items()[:2]), train=True)
    _, _, stats2 = tr2.forward_loss(b2)
    assert stats2["loss_tfr"] > 0.0


def test_only_missing_positions_count_and_normalisation(tmp_path):
    """Predictions at present positions do not change the loss; a prediction off by 0.5 in every
    element gives 0.125 = SmoothL1(0.5) whatever the number of missing positions and dims.
    Bugs caught: a loss over every frame; a sum not divided by count x dims (or by the count only)."""
    model, tfr, tr = _trainer(tmp_path)
    model.eval()
    items = _items()
    seen = []
    for pair in (items[:2], items[2:]):
        b = tr.prepare_batch(collate(pair), train=True)
        out, lens, T = _forward(tr, model, b)
        missing = tfr.missing_positions(b, lens, T)
        assert torch.equal(missing.cpu(), _expected_missing(b, lens, T))
        target = tfr.target_features(b, lens, model)
        pred = target + 0.5
        tfr.head.forward = lambda x, valid, _p=pred: _p          # the head's output, controlled
        base = tfr.extra_losses(b, out, model)["loss_tfr"]
        assert abs(float(base) - 0.125) < 1e-6
        p2 = pred.clone()
        p2[~missing] += 100.0                                    # present and padded positions
        tfr.head.forward = lambda x, valid, _p=p2: _p
        assert abs(float(tfr.extra_losses(b, out, model)["loss_tfr"]) - 0.125) < 1e-6
        p3 = pred.clone()
        idx = missing.nonzero()[0]
        p3[idx[0], idx[1]] += 100.0                              # one missing position
        tfr.head.forward = lambda x, valid, _p=p3: _p
        assert float(tfr.extra_losses(b, out, model)["loss_tfr"]) > 0.2
        seen.append(int(missing.sum()))
        del tfr.head.forward
    assert seen[0] != seen[1]                                    # two different counts, both 0.125


def test_reconstruction_loss_normalised_by_count_times_dims():
    g = torch.Generator().manual_seed(0)
    target = torch.randn(2, 7, 5, generator=g)
    missing = torch.zeros(2, 7, dtype=torch.bool)
    missing[0, 1] = missing[0, 4] = missing[1, 6] = True
    pred = target.clone()
    pred[0, 4, 2] += 3.0                                         # |d| > beta: 3 - 0.5
    pred[1, 0] += 50.0                                           # not missing: ignored
    loss = reconstruction_loss(pred, target, missing, beta=1.0)
    assert abs(float(loss) - 2.5 / (3 * 5)) < 1e-6
    assert float(reconstruction_loss(pred, target, torch.zeros_like(missing))) == 0.0
    # the target is detached: no gradient reaches it
    t = target.clone().requires_grad_(True)
    p = (target + 0.3).requires_grad_(True)
    reconstruction_loss(p, t, missing).backward()
    assert t.grad is None and p.grad is not None and float(p.grad.abs().sum()) > 0


def test_target_is_clean_detached_and_leaves_batchnorm_alone(tmp_path):
    """The target is the front-end on the undropped video, without gradient: the visual front-end's
    gradient from loss_tfr equals the one with the target replaced by a constant; BatchNorm running
    statistics are not moved by the target pass.  Bugs caught: target from the dropped video, a
    target with a graph (gradient through the target path), an extra BatchNorm update."""
    model, tfr, tr = _trainer(tmp_path)
    b = tr.prepare_batch(collate(_items()[:2]), train=True)
    model.train()
    bn = [m for m in model.visual_frontend.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    before = [(m.running_mean.clone(), m.running_var.clone(), int(m.num_batches_tracked)) for m in bn]
    lens = torch.tensor([24, 26])
    tgt = tfr.target_features(b, lens, model)
    assert tgt.grad_fn is None and not tgt.requires_grad
    for m, (rm, rv, n) in zip(bn, before):
        assert torch.equal(m.running_mean, rm) and torch.equal(m.running_var, rv) and int(m.num_batches_tracked) == n
    # clean, not dropped: the dropped batch's own front-end output differs at the dropped frames
    from avsr.models.model import reconcile_video
    model.eval()
    with torch.no_grad():
        clean = tfr.target_features(b, lens, model)
        own, _ = model.visual_frontend(*reconcile_video(b.video, b.video_lens, lens))
    missing = tfr.missing_positions(b, lens, 26)
    assert not torch.allclose(clean[missing], own[missing])
    assert torch.allclose(clean[~missing & (torch.arange(26) < lens[:, None])],
                          own[~missing & (torch.arange(26) < lens[:, None])], atol=1e-5)

    def grads(const):
        model.zero_grad()
        tfr.head.zero_grad()
        out = model(b)
        if const:
            fixed = tfr.target_features(b, out.taps["lens"], model).clone()
            orig = tfr.target_features
            tfr.target_features = lambda *a, **k: fixed
        loss = tfr.extra_losses(b, out, model)["loss_tfr"]
        if const:
            tfr.target_features = orig
        loss.backward()
        return [p.grad.clone() if p.grad is not None else torch.zeros_like(p)
                for p in model.visual_frontend.parameters()]
    g1, g2 = grads(False), grads(True)
    assert all(torch.allclose(a, c, atol=1e-7) for a, c in zip(g1, g2))


def test_warmup_in_optimiser_steps(tmp_path):
    """Bug caught: the warm-up ignored, or counted in something other than trainer.step."""
    model, tfr, tr = _trainer(tmp_path, tfr=TFRMethod(warmup_steps=3, weight=1.0))
    b = tr.prepare_batch(collate(_items()[:2]), train=True)
    for step, positive in ((0, False), (2, False), (3, True), (10, True)):
        tr.step = step
        _, _, stats = tr.forward_loss(b)
        assert (stats["loss_tfr"] > 0) == positive, (step, stats["loss_tfr"])


def test_mask_resampled_per_batch(tmp_path):
    """Each batch gets a new drop mask and the loss uses the batch's own (no cached mask)."""
    model, tfr, tr = _trainer(tmp_path, dropout=FrameDropoutMethod(rate=(0.0, 1.0), d_prob=1.0, seed=3))
    model.eval()
    items = _items()[:2]
    masks, losses = [], []
    for _ in range(3):
        b = tr.prepare_batch(collate(items), train=True)
        out, lens, T = _forward(tr, model, b)
        m = tfr.missing_positions(b, lens, T)
        assert torch.equal(m.cpu(), _expected_missing(b, lens, T))
        masks.append(m)
        losses.append(float(tfr.extra_losses(b, out, model)["loss_tfr"].detach()))
    assert not torch.equal(masks[0], masks[1]) and not torch.equal(masks[1], masks[2])
    assert len(set(losses)) == 3


def test_head_trains_and_stays_out_of_the_model_files(tmp_path):
    """The head is a trainable module of the trainer (register_trainable): its parameters are optimised
    and change; the model's state dict, snapshots and module tree are a plain AVSRModel's; the head is
    saved in the training state (checkpoint.pth) and restored on resume.  Bugs caught: head not in the
    optimiser, head keys in model.pth (packing would fail), count_parameters failing after training, a
    resumed run with a fresh head."""
    model, tfr, tr = _trainer(tmp_path, items=_items(), valid=_items()[:2], max_epochs=2)
    opt_ids = {id(p) for g in tr.optimizer.param_groups for p in g["params"]}
    head_params = list(tfr.head.parameters())
    assert head_params and all(id(p) in opt_ids for p in head_params)
    assert tr.trainables[HEAD_NAME] is tfr.head and HEAD_NAME not in dict(model.named_children())
    before = [p.detach().clone() for p in head_params]
    assert not any(k.startswith(HEAD_NAME) for k in model.state_dict())
    tr.fit()
    assert any(not torch.equal(a, p.detach()) for a, p in zip(before, head_params))
    assert "loss_tfr" in tr.history[-1]["train"] and np.isfinite(tr.history[-1]["train"]["loss_tfr"])
    assert HEAD_NAME not in dict(model.named_children())
    count_parameters(model)                                       # every name maps to a part
    from avsr.utils.checkpoint import load_checkpoint
    fresh = AVSRModel(load_config(ROOT / "conf" / "micro.yaml", vocab_size=V))
    for f in ("epoch2.pth", "valid.loss.ave_2best.pth"):
        fresh.load_state_dict(load_checkpoint(tmp_path / "exp" / f)["model"] if f.startswith("epoch")
                              else load_checkpoint(tmp_path / "exp" / f), strict=True)
    ck = load_checkpoint(tmp_path / "exp" / "checkpoint.pth")
    assert not any(k.startswith(HEAD_NAME) for k in ck["model"])
    saved = ck["trainables"][HEAD_NAME]
    assert all(torch.equal(saved[k], v) for k, v in tfr.head.state_dict().items())
    assert "head" not in ck["ranks"][0]["methods"][0]["state"]               # one copy, the trainer's
    # resume: a new process builds a new head and gets the saved one back
    model2, tfr2, tr2 = _trainer(tmp_path, items=_items(), valid=_items()[:2], max_epochs=2)
    assert not all(torch.equal(saved[k], v) for k, v in tfr2.head.state_dict().items())
    assert tr2.resume()
    assert all(torch.equal(saved[k], v) for k, v in tfr2.head.state_dict().items())


def test_recognition_path_unchanged(tmp_path):
    """The head is a side branch: the model's own loss is the same with the method set up."""
    torch.manual_seed(0)
    ref = AVSRModel(load_config(ROOT / "conf" / "micro.yaml", vocab_size=V))
    model, tfr, tr = _trainer(tmp_path)
    model.load_state_dict(ref.state_dict())
    model.eval()
    ref.eval()
    b = tr.prepare_batch(collate(_items()[:2]), train=True)
    loss, out, stats = tr.forward_loss(b)
    assert torch.allclose(ref(b).loss, out.loss) and stats["loss_model"] == pytest.approx(float(ref(b).loss))


@pytest.mark.parametrize("tap,target", [("visual_bundle", "student"), ("fused", "frozen")])
def test_other_taps_and_frozen_target(tmp_path, tap, target):
    model, tfr, tr = _trainer(tmp_path, tfr=TFRMethod(warmup_steps=0, tap=tap, target=target))
    if target == "frozen":
        assert "tfr_target" in tr.frozen
        opt_ids = {id(p) for g in tr.optimizer.param_groups for p in g["params"]}
        assert not opt_ids & {id(p) for p in tfr.target_net.parameters()}
    b = tr.prepare_batch(collate(_items()[:2]), train=True)
    loss, _, stats = tr.forward_loss(b)
    loss.backward()
    assert stats["loss_tfr"] > 0 and all(p.grad is not None for p in tfr.head.parameters())


def test_setup_errors(tmp_path):
    torch.manual_seed(0)
    model = AVSRModel(load_config(ROOT / "conf" / "micro.yaml", vocab_size=V))
    tc = TrainerConfig(max_epochs=1, batch_size=2, progress=False, metric="loss")
    with pytest.raises(ValueError, match="no frame dropout"):
        Trainer(model, [], None, tc, methods=[TFRMethod()], exp_dir=tmp_path / "a")
    with pytest.raises(ValueError, match="before the frame dropout"):
        Trainer(model, [], None, tc, methods=[FrameDropoutMethod(), TFRMethod()], exp_dir=tmp_path / "b")
    with pytest.raises(ValueError, match="unknown tap"):
        Trainer(model, [], None, tc, methods=[TFRMethod(tap="nope"), FrameDropoutMethod()], exp_dir=tmp_path / "c")
    with pytest.raises(ValueError, match="target"):
        TFRMethod(target="teacher")
    from avsr.robust.registry import build_method
    m = build_method('tfr:{"weight": 3, "warmup_steps": 7, "tap": "visual_bundle"}')
    assert isinstance(m, TFRMethod) and (m.weight, m.warmup_steps, m.tap) == (3.0, 7, "visual_bundle")


def _tiny_datadir(root: Path):
    """4 utterances of 1-1.3 s (noise wav, random ROIs), a Kaldi-style data dir and a token list."""
    import soundfile as sf
    from avsr.data.roi_dump import save_roi
    from frontends.constants import SAMPLE_RATE
    d = root / "data" / "train"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    utts = {f"S001_R01_A_{i:06d}-{i + 100 + 10 * i:06d}": (i, 1.0 + 0.1 * i, "你好世界"[: 2 + i % 3]) for i in range(4)}
    wav = root / "rec.wav"
    sf.write(str(wav), (rng.standard_normal(8 * SAMPLE_RATE) * 3000).astype(np.int16), SAMPLE_RATE, subtype="PCM_16")
    rows = {k: [] for k in ("segments", "text", "utt2spk", "roi.scp", "utt2num_roi_frames")}
    for u, (i, dur, text) in sorted(utts.items()):
        T = int(round(dur * 25))
        p = root / "roi" / f"{u}.npz"
        p.parent.mkdir(exist_ok=True)
        save_roi(str(p), rng.integers(1, 256, size=(T, 96, 96), dtype=np.uint8), np.ones(T, bool))
        rows["segments"].append(f"{u} R01_A_Far {i * 1.5:.2f} {i * 1.5 + dur:.2f}")
        rows["text"].append(f"{u} {text}")
        rows["utt2spk"].append(f"{u} S001")
        rows["roi.scp"].append(f"{u} {p}")
        rows["utt2num_roi_frames"].append(f"{u} {T}")
    for k, v in rows.items():
        (d / k).write_text("\n".join(v) + "\n", encoding="utf-8")
    (d / "wav.scp").write_text(f"R01_A_Far {wav}\n")
    (d / "spk2utt").write_text("S001 " + " ".join(sorted(utts)) + "\n")
    tok = root / "tokens.txt"
    tok.write_text("<blank>\n<unk>\n你\n好\n世\n界\n<sos/eos>\n", encoding="utf-8")
    return d, tok


def test_train_cli_logs_finite_tfr_loss_and_packs(tmp_path):
    """avsr.bin.train with --method tfr and the frame dropout: loss_tfr logged and finite (positive
    after the warm-up), train_result.json written (count_parameters after fit), and the result packs."""
    from avsr.bin import pack as pack_cli
    from avsr.bin import train as train_cli
    from avsr.pack import load_packed
    d, tok = _tiny_datadir(tmp_path)
    exp = tmp_path / "exp"
    rc = train_cli.main(["--config", str(ROOT / "conf" / "micro.yaml"), "--mode", "audiovisual",
                         "--train_data", str(d), "--valid_data", str(d), "--token_list", str(tok),
                         "--exp_dir", str(exp), "--frame_dropout_prob", "1.0", "--frame_loss_rate", "0", "1",
                         "--method", 'tfr:{"warmup_steps": 1, "weight": 1.0}', "--device", "cpu",
                         "--set", "trainer.max_epochs=2", "trainer.batch_size=2", "trainer.log_interval=1",
                         "trainer.progress=false"])
    assert rc == 0
    res = json.loads((exp / "train_result.json").read_text())
    vals = [h["train"]["loss_tfr"] for h in res["history"]]
    assert all(np.isfinite(v) for v in vals) and vals[-1] > 0
    log = (exp / "train.log").read_text()
    assert "loss_tfr=" in log
    # the diagnostics (extra_stats): logged per interval and per epoch, not part of the loss
    assert "tfr_recon=" in log and "tfr_missing=" in log
    last = res["history"][-1]["train"]
    assert 0 < last["tfr_missing"] <= 1 and last["tfr_recon"] > 0
    assert last["loss"] == pytest.approx(last["loss_model"] + last["loss_tfr"], rel=1e-5)
    assert "TFRMethod" in " ".join(res["methods"]) and "total" in res["parameters"]
    # the training state holds the head, the packed model does not, and loads weights-only
    assert HEAD_NAME in torch.load(exp / "checkpoint.pth", weights_only=True)["trainables"]
    assert pack_cli.main(["--exp_dir", str(exp), "--out", str(tmp_path / "packed")]) == 0
    sd = torch.load(tmp_path / "packed" / "model.pth", weights_only=True)       # a plain state dict
    assert "audio_frontend.feat_mean" in sd and not any(HEAD_NAME in k for k in sd)
    model, *_ = load_packed(tmp_path / "packed")
    assert not any(HEAD_NAME in k for k in model.state_dict())
