"""MLA (alternating unimodal adaptation, avsr/robust/mla.py) and its test-time entropy fusion
(avsr/decoding/entropy_fusion.py)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from avsr.decoding.entropy_fusion import entropy, entropy_fusion
from avsr.robust.mla import FUSION_PREFIXES, MLAMethod, alpha_at, edit_distance, owm_update, project_grad

ROOT = Path(__file__).resolve().parents[1]
V = 12


# ---------------------------------------------------------------------------- the OWM projection
def test_owm_update_matches_hand_computation():
    # P = I, r = (1, 2), alpha = 0.1: k = r, r^T k = 5, P - k k^T / 5.1, then / Frobenius norm
    P = owm_update(torch.eye(2, dtype=torch.float64), torch.tensor([1.0, 2.0]), 0.1)
    raw = np.array([[1 - 1 / 5.1, -2 / 5.1], [-2 / 5.1, 1 - 4 / 5.1]])
    np.testing.assert_allclose(P.numpy(), raw / np.sqrt((raw ** 2).sum()), rtol=1e-12)
    # a general P: the same formula written with numpy
    g = np.random.default_rng(0)
    A = g.normal(size=(5, 5))
    P0 = A @ A.T + np.eye(5)
    r = g.normal(size=5)
    k = P0 @ r
    want = P0 - np.outer(k, k) / (0.03 + r @ k)
    want /= np.linalg.norm(want, "fro")
    got = owm_update(torch.tensor(P0), torch.tensor(r), 0.03).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-10)
    assert abs(np.linalg.norm(got, "fro") - 1.0) < 1e-12


def test_projected_gradient_is_orthogonal_to_absorbed_inputs():
    """The OWM property: after P absorbed r1 and r2, grad_W P^T has (almost) no component along them,
    while a direction orthogonal to both keeps its share."""
    g = torch.Generator().manual_seed(0)
    n = 16
    r1, r2 = torch.randn(n, generator=g, dtype=torch.float64), torch.randn(n, generator=g, dtype=torch.float64)
    G = torch.randn(8, n, generator=g, dtype=torch.float64)
    P = torch.eye(n, dtype=torch.float64)
    for r in (r1, r2):
        P = owm_update(P, r, 1e-4)
    Gp = project_grad(G, P)
    for r in (r1, r2):
        before = (G @ r).norm() / (G.norm() * r.norm())
        after = (Gp @ r).norm() / (Gp.norm() * r.norm())
        assert before > 0.1 and after < 1e-3 * before
    q, _ = torch.linalg.qr(torch.stack([r1, r2], 1), mode="complete")
    u = q[:, 2]                                     # orthogonal to r1 and r2
    assert torch.allclose(Gp @ u, (G @ u) * (Gp @ u).norm() / (G @ u).norm(), atol=1e-10)


def test_alpha_schedule_within_an_epoch():
    assert alpha_at(0, 10) == pytest.approx(0.1)
    assert alpha_at(5, 10) == pytest.approx(0.1 ** 1.5)
    assert alpha_at(10, 10) == pytest.approx(0.01)
    assert alpha_at(3, 4, 0.2, 0.02) == pytest.approx(0.2 * 0.1 ** 0.75)


# ---------------------------------------------------------------------------- entropy fusion
def _logp(x):
    return torch.log_softmax(torch.as_tensor(x, dtype=torch.float32), -1)


def test_entropy_fusion_confident_path_dominates():
    B, T = 1, 3
    sharp = torch.full((B, T, V), -20.0)
    sharp[..., 5] = 20.0
    flat = torch.zeros(B, T, V)
    fused, w_a = entropy_fusion(_logp(flat), _logp(sharp), return_weights=True)
    assert (w_a < 0.2).all()                                   # the video is confident: its weight
    assert (fused.argmax(-1) == 5).all()
    fused2, w_a2 = entropy_fusion(_logp(sharp), _logp(flat), return_weights=True)
    assert torch.allclose(w_a2, 1 - w_a) and (fused2.argmax(-1) == 5).all()
    # weights are softmax(-H): check the value
    ha, hv = entropy(_logp(flat)), entropy(_logp(sharp))
    assert torch.allclose(w_a, torch.exp(-ha) / (torch.exp(-ha) + torch.exp(-hv)), atol=1e-5)
    assert torch.allclose(fused.exp().sum(-1), torch.ones(B, T), atol=1e-5)


def test_entropy_fusion_equal_entropies_give_the_mean():
    a = torch.tensor([[[3.0, 1.0, 0.0, 0.0]]])
    v = torch.tensor([[[0.0, 3.0, 1.0, 0.0]]])                 # a permutation: the same entropy
    fused, w_a = entropy_fusion(_logp(a), _logp(v), return_weights=True)
    assert torch.allclose(w_a, torch.tensor([[0.5]]))
    assert torch.allclose(fused, torch.log_softmax(0.5 * (_logp(a) + _logp(v)), -1), atol=1e-6)
    fp = entropy_fusion(_logp(a), _logp(v), combine="prob")
    assert torch.allclose(fp.exp(), 0.5 * (_logp(a).exp() + _logp(v).exp()), atol=1e-6)


def test_entropy_fusion_aligns_lengths_by_the_audio():
    g = torch.Generator().manual_seed(0)
    la, lv = _logp(torch.randn(2, 6, V, generator=g)), _logp(torch.randn(2, 8, V, generator=g))
    lens_a, lens_v = torch.tensor([6, 5]), torch.tensor([8, 3])
    fused, w_a = entropy_fusion(la, lv, lens_a, lens_v, return_weights=True)
    assert fused.shape == la.shape                             # the video cut to the audio grid
    # utterance 0: every audio frame paired with the video frame of the same index (frames 6, 7 cut)
    w = w_a[0]
    assert torch.allclose(fused[0], torch.log_softmax(w[:, None] * la[0] + (1 - w[:, None]) * lv[0, :6], -1),
                          atol=1e-5)
    # utterance 1: video frames 0..2 only; audio frames 3, 4 take the audio alone; frame 5 is padding
    assert (w_a[1, 3:] == 1).all() and (w_a[1, :3] < 1).all()
    assert torch.allclose(fused[1, 3:5], la[1, 3:5], atol=1e-5)
    assert torch.equal(fused[1, 5], la[1, 5])
    # a video path shorter than the audio tensor
    f2 = entropy_fusion(la, lv[:, :4], lens_a, torch.tensor([4, 3]))
    assert f2.shape == la.shape and torch.allclose(f2[0, 4:], la[0, 4:], atol=1e-5)
    # a frame mask, when given, takes missing frames off the video
    pres = torch.ones(2, 8, dtype=torch.bool)
    pres[0, 2] = False
    _, w3 = entropy_fusion(la, lv, lens_a, lens_v, present=pres, return_weights=True)
    assert w3[0, 2] == 1 and torch.allclose(w3[0, :2], w_a[0, :2])
    # one weight per utterance
    _, wu = entropy_fusion(la, lv, lens_a, lens_v, granularity="utterance", return_weights=True)
    assert torch.allclose(wu[0], wu[0, :1].expand(6)) and torch.allclose(wu[1, :3], wu[1, :1].expand(3))


def test_edit_distance():
    assert edit_distance([1, 2, 3], [1, 3]) == 1 and edit_distance([], [4, 5]) == 2
    assert edit_distance([1, 2], [2, 1]) == 2 and edit_distance([7], [7]) == 0


# ---------------------------------------------------------------------------- the method in the trainer
def _items(n=4, seed=0, lens=None):
    g = torch.Generator().manual_seed(seed)
    items = []
    for i in range(n):
        ns = (lens[i] if lens else 8000 + 1600 * i)
        items.append({"utt_id": f"u{i}", "audio": 0.1 * torch.randn(ns, generator=g),
                      "video": torch.randint(1, 255, (ns // 640, 88, 88), generator=g, dtype=torch.uint8),
                      "detected": None, "tokens": torch.randint(1, V - 1, (4,), generator=g), "text": "ab"})
    return items


class _DS(torch.utils.data.Dataset):
    def __init__(self, items):
        self.items = items
        self.durations = [it["audio"].numel() / 16000 for it in items]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def _model(**over):
    from avsr.models import AVSRModel, load_config
    cfg = load_config(ROOT / "conf" / "micro.yaml", vocab_size=V, **over)
    torch.manual_seed(0)
    return AVSRModel(cfg)


def _trainer(tmp, method, items=None, valid=None, **tc):
    from avsr.trainer import Trainer, TrainerConfig
    kw = dict(max_epochs=1, batch_size=2, progress=False, warmup_steps=10, metric="loss", shuffle=False)
    kw.update(tc)
    return Trainer(_model(), _DS(items or _items()), valid, TrainerConfig(**kw), methods=[method],
                   exp_dir=tmp)


def _snap(model, prefixes):
    return {n: p.detach().clone() for n, p in model.named_parameters() if n.startswith(prefixes)}


def _changed(model, snap):
    named = dict(model.named_parameters())
    return any(not torch.equal(named[n], v) for n, v in snap.items())


def test_alternation_two_steps_per_batch_and_late_fusion(tmp_path):
    """Audio step then video step on every batch, each its own optimiser step: the audio step moves the
    audio branch and never the visual one, the video step the reverse, cross-attention and merge never."""
    meth = MLAMethod()
    tr = _trainer(tmp_path / "exp", meth)
    model = tr.model
    seen = []
    fwd = model.forward

    def spy(batch, modality=None, **kw):
        seen.append(modality)
        return fwd(batch, modality=modality, **kw)
    model.forward = spy
    audio_p = ("audio_encoder.", "audio_frontend.")
    visual_p = ("visual_encoder.", "visual_frontend.")
    fusion0 = _snap(model, FUSION_PREFIXES)
    assert fusion0 and not any(p.requires_grad for n, p in model.named_parameters() if n.startswith(FUSION_PREFIXES))
    opt_ids = {id(p) for g in tr.optimizer.param_groups for p in g["params"]}
    assert not opt_ids & {id(p) for n, p in model.named_parameters() if n.startswith(FUSION_PREFIXES)}
    log = []
    step = tr.optimizer_step

    def spy_step():
        before = {"audio": _snap(model, audio_p), "visual": _snap(model, visual_p),
                  "shared": _snap(model, ("shared_encoder.", "ctc."))}
        out = step()
        log.append({k: _changed(model, v) for k, v in before.items()})
        return out
    tr.optimizer_step = spy_step
    tr.fit()
    assert seen == ["audio", "video"] * 2                      # 4 utterances, batches of 2, no valid set
    assert tr.step == 4 and len(log) == 4
    for i, ch in enumerate(log):
        if i % 2 == 0:
            assert ch == {"audio": True, "visual": False, "shared": True}, (i, ch)
        else:
            assert ch == {"audio": False, "visual": True, "shared": True}, (i, ch)
    assert not _changed(model, fusion0)
    h = tr.history[-1]["train"]
    for k in ("loss", "loss_audio", "loss_video", "loss_ctc_audio", "loss_ctc_video", "grad_norm_audio",
              "grad_norm_video", "mla_alpha"):
        assert k in h and math.isfinite(h[k]), k


def test_projection_hook_math_and_masked_input_mean(tmp_path):
    """The CTC linear's weight gradient of the audio step is the plain gradient times P^T, with P the
    identity updated by r = the mean of the encoder output over the valid frames only."""
    from avsr.data.dataset import collate
    items = _items(2, lens=[16000, 25600])                        # padding in utterance 0
    grads, Ps = {}, {}
    for project in (False, True):
        meth = MLAMethod(project=project)
        from avsr.trainer import Trainer, TrainerConfig
        torch.manual_seed(0)
        model = _model(dropout_rate=0.0, positional_dropout_rate=0.0, specaug=False)
        tr = Trainer(model, _DS(items), None,
                     TrainerConfig(max_epochs=1, batch_size=2, progress=False, warmup_steps=10, metric="loss"),
                     methods=[meth], exp_dir=tmp_path / f"exp{project}")
        b = tr.prepare_batch(collate(items), train=True)
        tr.model.train()
        rec = []

        def spy_step(_tr=tr, _rec=rec, _meth=meth):
            named = dict(_tr.model.named_parameters())
            _rec.append({n: None if named[n].grad is None else named[n].grad.clone() for n in ("ctc.ctc_lo.weight", "ctc.ctc_lo.bias",
                                                             "audio_encoder.encoders.0.feed_forward.w_1.weight")}
                        | {"P": _meth.P["ctc.ctc_lo"].clone()})
            _tr.optimizer.zero_grad(set_to_none=True)
            return {}
        tr.optimizer_step = spy_step
        tr.batches_in_epoch = 0
        meth.train_step(tr, b)
        grads[project] = rec[0]
        if project:
            with torch.no_grad():
                enc, lens, taps = model.encode(b, modality="audio")
            m = taps["mask"]
            assert not m.all()
            r = (enc * m[..., None]).sum((0, 1)) / m.sum()
            Ps["want"] = owm_update(torch.eye(enc.size(-1)), r, 0.1)
    g0, g1 = grads[False], grads[True]
    assert torch.allclose(g1["P"], Ps["want"], atol=1e-5)
    assert torch.allclose(g1["ctc.ctc_lo.weight"], g0["ctc.ctc_lo.weight"] @ g1["P"].T, atol=1e-5)
    assert not torch.allclose(g1["ctc.ctc_lo.weight"], g0["ctc.ctc_lo.weight"], atol=1e-4)
    assert torch.equal(g1["ctc.ctc_lo.bias"], g0["ctc.ctc_lo.bias"])          # biases are not projected
    assert torch.allclose(g1["audio_encoder.encoders.0.feed_forward.w_1.weight"],
                          g0["audio_encoder.encoders.0.feed_forward.w_1.weight"], atol=1e-6)
    assert torch.equal(g0["P"], torch.eye(g0["P"].size(0)))                 # project: false leaves P alone


def test_alpha_restarts_each_epoch_and_resume_restores_P(tmp_path):
    meth = MLAMethod()
    tr = _trainer(tmp_path / "exp", meth, batch_size=1, max_epochs=2)
    alphas = []
    step = meth.train_step

    def spy(trainer, batch):
        out = step(trainer, batch)
        alphas.append(out["mla_alpha"])
        return out
    meth.train_step = spy
    tr.fit()
    want = [0.1 * 0.1 ** (i / 4) for i in range(4)]
    assert alphas == pytest.approx(want + want)
    assert meth.updates == 16                                   # 2 epochs x 4 batches x 2 steps
    assert not torch.allclose(meth.P["ctc.ctc_lo"], torch.eye(64) / 8.0)
    meth2 = MLAMethod()
    tr2 = _trainer(tmp_path / "exp", meth2, batch_size=1, max_epochs=2)
    assert torch.equal(meth2.P["ctc.ctc_lo"], torch.eye(64))
    tr2.fit()                                                   # resumes: nothing left to train
    assert tr2.step == tr.step
    for n, P in meth.P.items():
        assert torch.equal(meth2.P[n], P), n
    assert meth2.updates == meth.updates and tuple(meth2.position) == (3, 4)
    assert meth2.alpha == pytest.approx(want[-1])


def test_video_step_leaves_out_utterances_without_video_and_accumulates_per_modality(tmp_path):
    """accum_grad 2: the audio gradients of a group reach the audio update only, the video ones the video
    update; an utterance without a present frame is not in the video step."""
    from avsr.data.dataset import collate
    items = _items(4)
    meth = MLAMethod()
    tr = _trainer(tmp_path / "exp", meth, items=items, accum_grad=2, batch_size=1)
    sizes = []
    fwd = tr.model.forward

    def spy(batch, modality=None, **kw):
        sizes.append((modality, len(batch)))
        return fwd(batch, modality=modality, **kw)
    tr.model.forward = spy
    has = []
    step = tr.optimizer_step

    def spy_step():
        named = dict(tr.model.named_parameters())
        has.append((any(named[n].grad is not None for n in named if n.startswith("audio_encoder.")),
                    any(named[n].grad is not None for n in named if n.startswith("visual_encoder."))))
        return step()
    tr.optimizer_step = spy_step
    tr.fit()
    assert tr.step == 4 and has == [(True, False), (False, True)] * 2
    assert sizes == [("audio", 1), ("video", 1)] * 4
    # a batch whose second utterance has no present frame: the video step sees one utterance
    b = collate(items[:2])
    b.frame_mask[1] = False
    vb = meth.video_batch(b)
    assert len(vb) == 1 and vb.utt_ids == ["u0"] and vb.tokens.shape[0] == 1 and vb.video.shape[0] == 1
    b.frame_mask[0] = False
    assert meth.video_batch(b) is None


def test_fused_validation_stats_and_registry(tmp_path):
    from avsr.robust.registry import build_method
    m = build_method('mla:{"project": false, "alpha": [0.2, 0.02], "head": "all"}')
    assert isinstance(m, MLAMethod) and not m.project and m.alpha_range == (0.2, 0.02) and m.head == "all"
    meth = MLAMethod(head="all")
    tr = _trainer(tmp_path / "exp", meth, valid=_DS(_items(2, seed=3)), metric="mla_errs_fused")
    assert any(n.startswith("decoder.") for n in meth.P)
    assert not any(n.endswith("linear_pos") for n in meth.P)
    res = tr.fit()
    v = tr.history[-1]["valid"]
    for k in ("mla_errs_audio", "mla_errs_video", "mla_errs_fused"):
        assert k in v and 0 <= v[k] <= 8, (k, v)                # 4 reference tokens per utterance
    assert res.averaged and "mla_errs_fused" in res.averaged
    # the error counts are statistics (extra_stats), not loss terms: a validation forward's total loss is
    # the model's own
    tr.model.eval()
    from avsr.data.dataset import collate
    b = tr.prepare_batch(collate(_items(2, seed=3)), train=False)
    loss, out, stats = tr.forward_loss(b)
    assert stats["mla_errs_fused"] > 0 and stats["loss"] == stats["loss_model"]
    assert float(loss.detach()) == pytest.approx(float(out.loss.detach()))
    with pytest.raises(ValueError, match="audiovisual"):
        from avsr.trainer import Trainer, TrainerConfig
        from avsr.models import AVSRModel, load_config
        a0 = AVSRModel(load_config(ROOT / "conf" / "micro.yaml", vocab_size=V, mode="audio"))
        Trainer(a0, _DS(_items(2)), None, TrainerConfig(progress=False), methods=[MLAMethod()],
                exp_dir=tmp_path / "a0")


@pytest.mark.parametrize("aug", [False, True])
def test_train_command_on_a_tiny_data_dir(tmp_path, aug):
    """python -m avsr.bin.train --method mla on a tiny Kaldi-style data dir: both steps' losses are logged
    and finite, and the fused dev errors are the selection metric; with AV0's augmentation before it (the
    leaderboard's MLA rows: speed perturbation and babble, as the rows driver orders them) too."""
    import json

    import soundfile as sf

    from avsr.bin.train import main
    from avsr.data.roi_dump import save_roi

    d = tmp_path / "data"
    d.mkdir()
    rng = np.random.default_rng(0)
    wav = tmp_path / "rec.wav"
    sf.write(str(wav), (rng.normal(size=16000 * 6) * 3000).astype(np.int16), 16000, subtype="PCM_16")
    utts = {f"S001_R01_A_{i:06d}-{i + 100:06d}": (i / 100, i / 100 + 1.0, "你好世界的"[: 2 + i % 3])
            for i in (0, 100, 200, 300)}
    rois = {}
    for u, (s, e, _) in utts.items():
        p = tmp_path / "roi" / f"{u}.npz"
        p.parent.mkdir(exist_ok=True)
        save_roi(str(p), rng.integers(1, 256, size=(25, 96, 96), dtype=np.uint8), np.ones(25, bool))
        rois[u] = str(p)

    def tab(name, rows):
        (d / name).write_text("".join(f"{k} {v}\n" for k, v in sorted(rows.items())), encoding="utf-8")
    tab("wav.scp", {"R01_A_Far": str(wav)})
    tab("segments", {u: f"R01_A_Far {s:.2f} {e:.2f}" for u, (s, e, _) in utts.items()})
    tab("text", {u: t for u, (_, _, t) in utts.items()})
    tab("utt2spk", {u: "S001" for u in utts})
    tab("spk2utt", {"S001": " ".join(sorted(utts))})
    tab("roi.scp", rois)
    tok = tmp_path / "tokens.txt"
    tok.write_text("<blank>\n<unk>\n好\n你\n世\n界\n的\n<sos/eos>\n", encoding="utf-8")
    exp = tmp_path / "exp"
    rc = main(["--config", str(ROOT / "conf" / "micro.yaml"), "--mode", "audiovisual", "--train_data", str(d),
               "--valid_data", str(d), "--token_list", str(tok), "--exp_dir", str(exp),
               *(["--method", 'speed_perturb:{"factors": [0.9,1.0,1.1]}',
                  "--method", 'audio_noise:{"prob": 1.0, "snr": [-15, 5]}'] if aug else []),
               "--method", 'mla:{"project": true}', "--set", "trainer.max_epochs=1", "trainer.batch_size=2",
               "trainer.progress=false", "trainer.metric=mla_errs_fused"])
    assert rc == 0
    res = json.loads((exp / "train_result.json").read_text())
    h = res["history"][-1]
    assert h["step"] == 4                                       # 2 batches x (audio + video)
    for k in ("loss_audio", "loss_video", "loss_ctc_audio", "loss_ctc_video", "mla_alpha"):
        assert math.isfinite(h["train"][k]), k
    assert math.isfinite(h["valid"]["mla_errs_fused"]) and math.isfinite(h["valid"]["cer"])
    assert (exp / "model.pth").is_file()
    log = (exp / "train.log").read_text()
    assert "loss_video=" in log and "MLAMethod(project=True" in log
    assert ("AudioNoise" in log or "audio_noise" in log) == aug


def test_odd_step_budget_ends_with_the_audio_update(tmp_path):
    """max_steps = 3 (an odd "@av0" budget): the third update is the audio step of batch 2 and that batch's
    video step is not made, so the run takes exactly its budget (the rows driver refuses a run over it)."""
    meth = MLAMethod()
    tr = _trainer(tmp_path / "exp", meth, max_steps=3, max_epochs=5)
    seen = []
    fwd = tr.model.forward

    def spy(batch, modality=None, **kw):
        seen.append(modality)
        return fwd(batch, modality=modality, **kw)
    tr.model.forward = spy
    tr.fit()
    assert tr.step == 3 and seen == ["audio", "video", "audio"]
    assert tr.history[-1]["train"]["mla_budget_end"] == 1.0


def test_step_checkpoints_and_logs_fire_with_two_updates_per_batch(tmp_path):
    """MLA makes two optimiser steps per batch, so the step count can jump over a multiple of
    ``save_every_steps`` / ``log_interval`` (odd values): the mid-epoch checkpoint and the step log
    still fire when the count passes one (``trainer._crossed``), not only when it lands on it."""
    from avsr.trainer.trainer import _crossed
    assert _crossed(2, 4, 3) and not _crossed(3, 5, 3) and _crossed(5, 6, 3) and _crossed(0, 1, 1)
    tr = _trainer(tmp_path / "exp", MLAMethod(), items=_items(8), save_every_steps=3, log_interval=3)
    saved = []
    save = tr.save

    def spy_save(*a, **kw):
        saved.append(tr.step)
        return save(*a, **kw)
    tr.save = spy_save
    tr.fit()
    # 4 batches, 2 updates each: steps 2, 4, 6, 8 after each batch; 3 and 6 are passed by batches 2 and 3
    # (batch 4 ends the epoch, whose checkpoint is the epoch's own)
    assert tr.step == 8
    assert saved[:2] == [4, 6], saved
