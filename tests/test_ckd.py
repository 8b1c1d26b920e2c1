"""CKD (counterfactual modality-balanced KD): weights, hinge, counterfactual inputs, frozen teachers,
BatchNorm statistics, scores, and a short training run through avsr.bin.train."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from avsr.data.dataset import AVSRDataset, collate
from avsr.data.roi_dump import save_roi
from avsr.models import AVSRModel, load_model_config
from avsr.robust.ckd import (CKDMethod, balance_weights, ctc_feasible, mean_video, tempered_kl,
                             utterance_nll)
from avsr.utils.checkpoint import save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
SR = 16000
TOKENS = ["<blank>", "<unk>", "好", "你", "世", "界", "的", "<sos/eos>"]
# utt -> (recording, start, end, text)
UTTS = {
    "S001_R01_A_000010-000110": ("R01_A_Far", 0.10, 1.10, "你好世界"),
    "S001_R01_A_000120-000220": ("R01_A_Far", 1.20, 2.20, "好的"),
    "S002_R01_A_000020-000140": ("R01_A_Far", 0.20, 1.40, "世界你好好"),
    "S002_R02_B_000000-000090": ("R02_B_Far", 0.00, 0.90, "你的"),
}


def _frames(start, end):
    return int(np.floor(end * 25 + 0.5)) - int(np.floor(start * 25 + 0.5))


def _write_tab(path: Path, rows):
    path.write_text("".join(f"{k} {v}\n" for k, v in sorted(rows.items())), encoding="utf-8")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A tiny Kaldi-style AV data dir (2 recordings, 4 utterances, 96x96 ROI dumps), the token list,
    and random A0 / V / AV0 weights with the micro config."""
    import soundfile as sf
    root = tmp_path_factory.mktemp("ckd")
    d = root / "data" / "train"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    wavs = {}
    for rec in ("R01_A_Far", "R02_B_Far"):
        x = (3000 * rng.standard_normal(int(2.5 * SR))).astype(np.int16)
        p = root / "wav" / f"{rec}_0.wav"
        p.parent.mkdir(exist_ok=True)
        sf.write(str(p), x, SR, subtype="PCM_16")
        wavs[rec] = str(p)
    rois, nroi = {}, {}
    for u, (rec, s, e, _) in UTTS.items():
        T = _frames(s, e)
        roi = rng.integers(1, 256, size=(T, 96, 96), dtype=np.uint8)
        p = root / "roi" / rec / f"{u}.npz"
        p.parent.mkdir(parents=True, exist_ok=True)
        save_roi(str(p), roi, np.ones(T, bool))
        rois[u], nroi[u] = str(p), T
    _write_tab(d / "wav.scp", wavs)
    _write_tab(d / "segments", {u: f"{r} {s:.2f} {e:.2f}" for u, (r, s, e, _) in UTTS.items()})
    _write_tab(d / "text", {u: t for u, (_, _, _, t) in UTTS.items()})
    _write_tab(d / "utt2spk", {u: u[:4] for u in UTTS})
    spk = {}
    for u in sorted(UTTS):
        spk.setdefault(u[:4], []).append(u)
    _write_tab(d / "spk2utt", {s: " ".join(v) for s, v in spk.items()})
    _write_tab(d / "roi.scp", rois)
    _write_tab(d / "utt2num_roi_frames", nroi)
    tok = root / "data" / "token_list" / "char" / "tokens.txt"
    tok.parent.mkdir(parents=True)
    tok.write_text("\n".join(TOKENS) + "\n", encoding="utf-8")
    # the expected dataset mean frame: every frame of every utterance, centre 88x88 crop, float64
    allf = np.concatenate([np.load(p)["roi"][:, 4:92, 4:92] for p in rois.values()]).astype(np.float64)
    models = {}
    for i, mode in enumerate(("audio", "video", "audiovisual")):
        torch.manual_seed(10 + i)
        m = AVSRModel(cfg(mode=mode))
        models[mode] = str(root / f"{mode}.pth")
        save_checkpoint(m.state_dict(), models[mode])
    return {"dir": d, "tok": tok, "mean": allf.mean(0), "models": models, "root": root}


def cfg(**kw):
    return load_model_config(ROOT / "conf" / "micro.yaml", vocab_size=len(TOKENS), **kw)


def make_trainer(data, tmp_path, method, seed=1, **tc):
    from avsr.trainer import Trainer, TrainerConfig
    ds = AVSRDataset(data["dir"], data["tok"], train=True)
    torch.manual_seed(seed)
    student = AVSRModel(cfg())
    conf = dict(max_epochs=1, batch_size=4, progress=False, warmup_steps=10, metric="loss", lr=1e-3)
    conf.update(tc)
    return Trainer(student, ds, None, TrainerConfig(**conf), methods=[method], exp_dir=tmp_path / "exp"), ds


def ckd(data, **kw):
    return CKDMethod(teacher_audio=data["models"]["audio"], teacher_video=data["models"]["video"], **kw)


def first_batch(tr, ds):
    return tr.prepare_batch(collate([ds[i] for i in range(len(ds))]), train=True)


# ------------------------------------------------------------------------------ pure functions
def test_weights_on_hand_numbers_and_clamps():
    # s_joint 5, s_a 3, s_v 1: c_a = (5-1)/3 = 4/3, c_v = (5-3)/1 = 2, w_a = 2*2/(4/3+2) = 1.2, w_v = 0.8
    w_a, w_v, c_a, c_v = balance_weights(torch.tensor([5.0]), torch.tensor([3.0]), torch.tensor([1.0]))
    assert c_a.item() == pytest.approx(4 / 3) and c_v.item() == pytest.approx(2.0)
    assert w_a.item() == pytest.approx(1.2) and w_v.item() == pytest.approx(0.8)
    # swapping the modalities swaps the weights (a bug giving the weight to the wrong modality fails)
    w_a2, w_v2, _, _ = balance_weights(torch.tensor([5.0]), torch.tensor([1.0]), torch.tensor([3.0]))
    assert (w_a2.item(), w_v2.item()) == (pytest.approx(0.8), pytest.approx(1.2))
    # clamps: audio alone hurts (s_a < 0) -> c_a = 1e-8 -> w_a ~ 2, w_v ~ 0; tiny s_v -> c_v = 10
    s_j, s_a, s_v = torch.tensor([2.0, 5.0, 0.0]), torch.tensor([-1.0, 4.0, 0.0]), torch.tensor([1.0, 1e-6, 0.0])
    w_a, w_v, c_a, c_v = balance_weights(s_j, s_a, s_v)
    assert c_a[0].item() == pytest.approx(1e-8) and c_v[0].item() == pytest.approx(3.0)
    assert w_a[0].item() == pytest.approx(2.0, abs=1e-6) and w_v[0].item() == pytest.approx(0.0, abs=1e-6)
    # c_v = (5 - 4)/1e-6 clamped to 10, c_a = (5 - 1e-6)/4
    assert c_v[1].item() == 10.0 and c_a[1].item() == pytest.approx(1.25)
    assert w_a[1].item() == pytest.approx(2 * 10 / (1.25 + 10))
    # 0/0 counts as 1 on both sides: equal weights
    assert (w_a[2].item(), w_v[2].item()) == (1.0, 1.0)
    assert torch.all(w_a + w_v == 2.0) and torch.isfinite(w_a).all()


def test_weights_are_detached():
    s = [torch.tensor([3.0, 1.0], requires_grad=True) for _ in range(3)]
    outs = balance_weights(s[0] * 2, s[1], s[2] + 1)
    assert all(not o.requires_grad and o.grad_fn is None for o in outs)


def test_ctc_feasible_counts_repeats():
    tokens = torch.tensor([[2, 2, 3, -1], [2, 3, 4, 5], [4, 4, 4, -1]])
    lens = torch.tensor([3, 4, 3])
    # need: 3 + 1 repeat = 4; 4; 3 + 2 repeats = 5
    assert ctc_feasible(torch.tensor([4, 4, 4]), tokens, lens).tolist() == [True, True, False]
    assert ctc_feasible(torch.tensor([3, 3, 5]), tokens, lens).tolist() == [False, False, True]


def test_mean_video_is_the_frame_on_real_frames_only():
    frame = torch.rand(8, 8) * 255
    v = mean_video(torch.zeros(2, 5, 8, 8, dtype=torch.uint8), torch.tensor([5, 3]), frame)
    assert v.dtype == torch.float32
    assert torch.equal(v[0, 4], frame) and torch.equal(v[1, 2], frame)
    assert torch.all(v[1, 3:] == 0)
    with pytest.raises(ValueError, match="mean video frame"):
        mean_video(torch.zeros(1, 2, 6, 6, dtype=torch.uint8), None, frame)


def test_tempered_kl_zero_on_identical_positive_otherwise_and_ignores_padding():
    g = torch.Generator().manual_seed(0)
    t = torch.randn(2, 6, 5, generator=g)
    lens = torch.tensor([6, 4])
    assert torch.allclose(tempered_kl(t, lens, t.clone(), lens, 0.5), torch.zeros(2), atol=1e-6)
    s = t + torch.randn(2, 6, 5, generator=g)
    k = tempered_kl(t, lens, s, lens, 1.0)
    assert torch.all(k > 0)
    s2 = s.clone()
    s2[1, 4:] = 50.0                                   # padding frames of utterance 1
    assert torch.allclose(tempered_kl(t, lens, s2, torch.tensor([6, 4]), 1.0), k)
    # frame-aligned over the shorter of the two lengths (V's video grid vs the audio grid)
    k3 = tempered_kl(t, torch.tensor([6, 6]), s2, torch.tensor([6, 4]), 1.0)
    assert torch.allclose(k3, k)


def test_utterance_nll_matches_the_models_losses():
    """Per-utterance CTC and attention NLL average to the model's own (batch-mean) losses."""
    from avsr.data.batch import Batch
    torch.manual_seed(0)
    model = AVSRModel(cfg(lsm_weight=0.0)).eval()
    g = torch.Generator().manual_seed(1)
    B, n = 3, 16000
    b = Batch(utt_ids=["a", "b", "c"], audio=0.1 * torch.randn(B, n, generator=g),
              audio_lens=torch.tensor([n, n - 3200, n - 6400]),
              video=torch.randint(1, 255, (B, 25, 88, 88), generator=g, dtype=torch.uint8),
              video_lens=torch.tensor([25, 20, 15]),
              tokens=torch.tensor([[2, 3, 4], [5, 5, -1], [6, -1, -1]]), token_lens=torch.tensor([3, 2, 1]))
    with torch.no_grad():
        out = model(b)
        ctc = utterance_nll(model, out.enc_out, out.enc_lens, b.tokens, b.token_lens, "ctc")
        att = utterance_nll(model, out.enc_out, out.enc_lens, b.tokens, b.token_lens, "att")
        joint = utterance_nll(model, out.enc_out, out.enc_lens, b.tokens, b.token_lens, "joint")
    assert ctc.shape == (3,) and float(ctc.mean()) == pytest.approx(float(out.loss_ctc), rel=1e-4)
    assert float(att.mean()) == pytest.approx(float(out.loss_att), rel=1e-4)
    assert torch.allclose(joint, 0.3 * ctc + 0.7 * att)


# ------------------------------------------------------------------------------ the method
def test_counterfactual_inputs(data, tmp_path):
    """Student forwards: mean video = the training set's mean frame (not black, not rounded), padding 0;
    mean audio = the zero normalised fbank; the audio-only forward gets the task forward's fbank."""
    m = ckd(data)
    tr, ds = make_trainer(data, tmp_path, m)
    assert np.allclose(m.frame.numpy(), data["mean"], atol=1e-3)
    b = first_batch(tr, ds)
    model = tr.model
    calls = []
    enc = model.encode

    def spy(batch, modality=None, front=None):
        calls.append((batch.video, batch.video_lens, (front or {}).get("feats"), modality))
        return enc(batch, modality, front)
    model.encode = spy
    try:
        loss, out, stats = tr.forward_loss(b)
    finally:
        del model.encode
    assert len(calls) == 4                          # task forward + nothing + audio-only + video-only
    feats = out.taps["audio_feats"]
    mean = torch.from_numpy(data["mean"]).float()
    seen = {"vbar": 0, "zeros": 0, "feats": 0, "real_video": 0}
    for video, vlens, fe, mod in calls[1:]:
        assert mod == "audiovisual" and fe is not None
        if video.dtype.is_floating_point:
            seen["vbar"] += 1
            for i in range(len(vlens)):
                k = int(vlens[i])
                assert torch.allclose(video[i, :k], mean.expand(k, -1, -1), atol=1e-3)
                assert torch.all(video[i, k:] == 0)
            assert float((video[0, 0] - video[0, 0].round()).abs().max()) > 0   # not rounded to uint8
        else:
            assert torch.equal(video, b.video)
            seen["real_video"] += 1
        if torch.count_nonzero(fe[0]) == 0:
            assert fe[0].shape == feats.shape and torch.equal(fe[1], out.taps["audio_feat_lens"])
            seen["zeros"] += 1
        else:
            assert torch.equal(fe[0], feats)
            seen["feats"] += 1
    assert seen == {"vbar": 2, "zeros": 2, "feats": 1, "real_video": 1}
    assert math.isfinite(stats["loss_ckd_a"]) and math.isfinite(stats["loss_ckd_v"])


def test_hinge_zero_when_student_beats_teacher(data, tmp_path):
    """Teacher gains far below the student's: both terms exactly 0 with zero gradients; far above:
    positive terms whose gradient reaches the student."""
    m = ckd(data, beta=0.5)
    tr, ds = make_trainer(data, tmp_path, m)
    b = first_batch(tr, ds)
    model = tr.model.eval()                         # deterministic student forwards
    real = CKDMethod._teacher
    gap = {"value": 0.0}

    def fake(self, teacher, batch, **kw):
        nll, enc, lens = real(self, teacher, batch, **kw)
        baseline = (batch.video is not None and batch.video.dtype.is_floating_point) if kw.get("modality") == "video" \
            else torch.count_nonzero(kw["front"]["feats"][0]) == 0
        # teacher gain = gap: the baseline at 0, the real input at -gap
        return (torch.zeros_like(nll) if baseline else torch.full_like(nll, -gap["value"])), enc, lens
    params = [p for p in model.parameters() if p.requires_grad]
    try:
        CKDMethod._teacher = fake
        out = model(b)
        gap["value"] = -1e4                          # the student beats the teacher by far
        ex = m.extra_losses(b, out, model)
        assert float(ex["loss_ckd_a"].detach()) == 0.0 and float(ex["loss_ckd_v"].detach()) == 0.0
        assert m.last["active_a"] == 0.0 and m.last["active_v"] == 0.0
        grads = torch.autograd.grad(ex["loss_ckd_a"] + ex["loss_ckd_v"], params, allow_unused=True)
        assert all(g is None or torch.count_nonzero(g) == 0 for g in grads)
        gap["value"] = 1e4                           # the teacher far better
        ex = m.extra_losses(b, out, model)
        la, lv = float(ex["loss_ckd_a"].detach()), float(ex["loss_ckd_v"].detach())
        assert m.last["active_a"] == 1.0 and m.last["active_v"] == 1.0
        # loss = beta * mean(w * (gap - s_student)), with mean w = 1 per utterance pair (w_a + w_v = 2)
        assert la + lv == pytest.approx(0.5 * 2 * 1e4, rel=0.05)
        grads = torch.autograd.grad(ex["loss_ckd_a"], params, allow_unused=True)
        named = dict(zip([n for n, p in model.named_parameters() if p.requires_grad], grads))
        assert named["audio_encoder.encoders.0.feed_forward.w_1.weight"].abs().sum() > 0
    finally:
        CKDMethod._teacher = real


def test_batchnorm_statistics_move_only_in_the_task_forward(data, tmp_path):
    m = ckd(data)
    tr, ds = make_trainer(data, tmp_path, m)
    b = first_batch(tr, ds)
    model = tr.model
    assert model.training
    bn_names = [n for n, x in model.named_buffers() if "running" in n or "num_batches" in n]
    assert bn_names
    modes = {n: x.training for n, x in model.named_modules()}
    before = {n: x.clone() for n, x in model.named_buffers() if n in bn_names}
    out = model(b)
    after_task = {n: x.clone() for n, x in model.named_buffers() if n in bn_names}
    assert any(not torch.equal(before[n], after_task[n]) for n in bn_names)   # the task forward moves them
    m.extra_losses(b, out, model)
    assert all(torch.equal(after_task[n], x) for n, x in model.named_buffers() if n in bn_names)
    assert modes == {n: x.training for n, x in model.named_modules()}      # modes restored


def test_teachers_frozen_and_terms_logged(data, tmp_path):
    m = ckd(data, kappa=1.0)
    tr, ds = make_trainer(data, tmp_path, m, batch_size=2)
    before = {k: {n: v.clone() for n, v in t.state_dict().items()} for k, t in
              (("a", m.teacher_a), ("v", m.teacher_v))}
    student_before = {n: p.detach().clone() for n, p in tr.model.named_parameters()}
    opt_ids = {id(p) for g in tr.optimizer.param_groups for p in g["params"]}
    for t in (m.teacher_a, m.teacher_v):
        assert not t.training and not any(p.requires_grad for p in t.parameters())
        assert not any(id(p) in opt_ids for p in t.parameters())
    assert m.teacher_a.cfg.mode == "audio" and m.teacher_v.cfg.mode == "video"
    res = tr.fit()
    for k, t in (("a", m.teacher_a), ("v", m.teacher_v)):
        assert all(torch.equal(before[k][n], v) for n, v in t.state_dict().items())
    assert any(not torch.equal(student_before[n], p) for n, p in tr.model.named_parameters())
    train = res.history[-1]["train"]
    for k in ("loss_ckd_a", "loss_ckd_v"):
        assert k in train and math.isfinite(train[k])
    assert math.isfinite(m.last["gen_a"]) and m.last["gen_a"] > 0
    # the balance weights are logged (extra_stats) and are not loss terms: w_a + w_v = 2 per utterance
    assert train["ckd_w_a"] + train["ckd_w_v"] == pytest.approx(2.0, abs=1e-5)
    assert 0 <= train["ckd_active_a"] <= 1 and 0 <= train["ckd_active_v"] <= 1
    assert train["loss"] == pytest.approx(train["loss_model"] + train["loss_ckd_a"] + train["loss_ckd_v"], rel=1e-5)
    ck = torch.load(tmp_path / "exp" / "checkpoint.pth", weights_only=True)
    keys = ck["model"].keys() if "model" in ck else ck.keys()
    assert not any("ckd_teacher" in k for k in keys)


def test_teacher_config_beside_the_weights(data, tmp_path):
    import yaml
    d = tmp_path / "train_v"
    d.mkdir()
    torch.manual_seed(3)
    save_checkpoint(AVSRModel(cfg(mode="video")).state_dict(), d / "model.pth")
    (d / "config.yaml").write_text(yaml.safe_dump({"model": cfg(mode="audio").to_dict()}))
    with pytest.raises(ValueError, match="must be a 'video' model"):
        make_trainer(data, tmp_path, CKDMethod(data["models"]["audio"], str(d / "model.pth")))
    (d / "config.yaml").write_text(yaml.safe_dump({"model": cfg(mode="video").to_dict()}))
    m = CKDMethod(data["models"]["audio"], str(d))             # a dir: its model.pth and config.yaml
    make_trainer(data, tmp_path, m)
    assert m.teacher_v.cfg.mode == "video"
    with pytest.raises(ValueError, match="do not fit"):          # an AV checkpoint is no A0
        make_trainer(data, tmp_path, CKDMethod(data["models"]["audiovisual"], data["models"]["video"]))


def test_registry_builds_ckd():
    from avsr.robust.registry import build_method
    m = build_method('ckd:{"teacher_audio": "a.pth", "teacher_video": "v.pth", "beta": 0.1, "kappa": 5}')
    assert isinstance(m, CKDMethod) and (m.beta, m.kappa, m.tau) == (0.1, 5.0, 1.0)
    with pytest.raises(ValueError, match="hinge"):
        CKDMethod("a", "v", hinge="bogus")


def test_train_command_logs_ckd_terms(data, tmp_path):
    """python -m avsr.bin.train ... --init AV0 --method ckd:{...}: the terms are logged and finite."""
    from avsr.bin.train import main
    exp = tmp_path / "exp_ckd"
    spec = "ckd:" + json.dumps({"teacher_audio": data["models"]["audio"], "teacher_video": data["models"]["video"],
                                "beta": 0.1})
    rc = main(["--config", str(ROOT / "conf" / "micro.yaml"), "--mode", "audiovisual",
               "--train_data", str(data["dir"]), "--valid_data", str(data["dir"]), "--token_list", str(data["tok"]),
               "--exp_dir", str(exp), "--init", data["models"]["audiovisual"], "--method", spec,
               "--d_prob", "0.5", "--set", "trainer.max_epochs=1", "trainer.batch_size=2",
               "trainer.progress=false", "--threads", "1"])
    assert rc == 0 and (exp / "model.pth").is_file()
    res = json.loads((exp / "train_result.json").read_text())
    hist = res["history"][-1]
    for k in ("loss_ckd_a", "loss_ckd_v"):
        assert math.isfinite(hist["train"][k]) and math.isfinite(hist["valid"][k])
    assert any(r.startswith("CKDMethod(") for r in res["methods"])
    log = (exp / "train.log").read_text()
    assert "loss_ckd_a=" in log and "loss_ckd_v=" in log
    assert "ckd_w_a=" in log and "ckd_w_v=" in log
