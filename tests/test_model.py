"""Tests of avsr.models (micro config, random tensors, CPU, fast)."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest

from avsr.trainer import TrainerConfig
import torch

from avsr.data.batch import IGNORE_ID, Batch
from avsr.models import (AVSRModel, ModelConfig, compute_feature_stats, load_config,
                         load_partial, param_part, reconcile_video)

ROOT = Path(__file__).resolve().parents[1]
V = 12


def micro_cfg(**kw) -> ModelConfig:
    return load_config(ROOT / "conf" / "micro.yaml", vocab_size=V, **kw)


def make_batch(durs=(1.0, 0.7), seed=0, with_tokens=True, video_extra=1) -> Batch:
    g = torch.Generator().manual_seed(seed)
    B = len(durs)
    n = [int(d * 16000) for d in durs]
    t = [int(round(d * 25)) + video_extra for d in durs]
    audio = torch.zeros(B, max(n))
    video = torch.zeros(B, max(t), 88, 88, dtype=torch.uint8)
    for i in range(B):
        audio[i, :n[i]] = 0.1 * torch.randn(n[i], generator=g)
        video[i, :t[i]] = torch.randint(0, 256, (t[i], 88, 88), generator=g, dtype=torch.uint8)
    L = [3 + i for i in range(B)]
    tokens = torch.full((B, max(L)), IGNORE_ID, dtype=torch.long)
    for i in range(B):
        tokens[i, :L[i]] = torch.randint(1, V - 1, (L[i],), generator=g)
    return Batch(utt_ids=[f"u{i}" for i in range(B)], audio=audio, audio_lens=torch.tensor(n),
                 video=video, video_lens=torch.tensor(t), frame_mask=video.flatten(2).any(-1),
                 tokens=tokens if with_tokens else None,
                 token_lens=torch.tensor(L) if with_tokens else None)


def sub(b: Batch, idx) -> Batch:
    """Sub-batch with the padding trimmed to its own longest utterance."""
    idx = list(idx)
    na, nv = int(b.audio_lens[idx].max()), int(b.video_lens[idx].max())
    nt = int(b.token_lens[idx].max())
    return Batch(utt_ids=[b.utt_ids[i] for i in idx], audio=b.audio[idx, :na], audio_lens=b.audio_lens[idx],
                 video=b.video[idx, :nv], video_lens=b.video_lens[idx], tokens=b.tokens[idx, :nt],
                 token_lens=b.token_lens[idx])


def expected_audio_frames(n):
    f = 1 + (n - 512) // 160
    return ((f - 1) // 2 - 1) // 2


def test_configs_load_and_build():
    for name in ("micro", "demo", "mini", "full"):
        cfg = load_config(ROOT / "conf" / f"{name}.yaml", vocab_size=V)
        opt = TrainerConfig.from_yaml(ROOT / "conf" / f"{name}.yaml")
        assert cfg.mode == "audiovisual" and opt.lr > 0
    full = load_config(ROOT / "conf" / "full.yaml", vocab_size=V)
    assert (full.d_model, full.heads, full.linear_units, full.fusion_layers, full.visual_pre_blocks,
            full.decoder_layers, full.visual_frontend) == (512, 8, 2048, 12, 2, 6, "resnet18")
    for name in ("micro", "demo"):
        AVSRModel(load_config(ROOT / "conf" / f"{name}.yaml", vocab_size=V))
    with pytest.raises(ValueError):
        ModelConfig.from_dict({"nonsense": 1})
    with pytest.raises(ValueError):
        ModelConfig(mode="lip")


@pytest.mark.parametrize("mode", ["audio", "video", "audiovisual"])
def test_shapes_and_masks(mode):
    torch.manual_seed(0)
    model = AVSRModel(micro_cfg(mode=mode)).eval()
    b = make_batch((1.0, 0.7))
    out = model(b)
    B, d = 2, model.cfg.d_model
    if mode == "video":
        lens = b.video_lens
    else:
        lens = torch.tensor([expected_audio_frames(int(n)) for n in b.audio_lens])
    assert torch.equal(out.enc_lens, lens)
    T = int(lens.max())
    assert out.enc_out.shape == (B, T, d)
    feat_taps = {"audio_feats", "audio_feat_lens", "specaug_mask"} if mode != "video" else set()
    assert set(out.taps) == set(model.tap_names()) | {"lens", "mask"} | feat_taps
    assert ("visual_bundle" in out.taps) == (mode == "audiovisual")
    for name in model.tap_names():
        # the visual bundle: front-end output and every fusion layer's visual output (merge: bundle)
        width = d * (model.cfg.fusion_layers + 1) if name == "visual_bundle" else d
        assert out.taps[name].shape == (B, T, width), name
    if feat_taps:
        F = int(out.taps["audio_feat_lens"].max())
        assert out.taps["audio_feats"].shape == (B, F, 80) and not out.taps["specaug_mask"].any()  # eval
    assert torch.equal(out.taps["mask"], torch.arange(T)[None] < lens[:, None])
    assert torch.all(out.taps["fused"][~out.taps["mask"]] == 0)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert set(out.stats) == {"loss", "loss_ctc", "loss_att", "acc"}
    x, l, m = out.tap("fused")
    assert x.shape == (B, T, d) and torch.equal(l, lens)
    # encode without tokens
    enc, el, taps = model.encode(make_batch((1.0, 0.7), with_tokens=False))
    assert torch.allclose(enc, out.enc_out, atol=1e-6)
    assert model(make_batch(with_tokens=False)).loss is None
    # modules of other modalities are not built
    names = [n for n, _ in model.named_parameters()]
    parts = {param_part(n) for n in names}
    expect = {"audio": {"audio", "backend"}, "video": {"visual", "backend"},
              "audiovisual": {"audio", "visual", "cross", "merge", "backend"}}[mode]
    assert parts == expect
    if mode != "audiovisual":
        other = "video" if mode == "audio" else "audio"
        with pytest.raises(ValueError):
            model.encode(b, modality=other)


def test_reconcile_video_rule():
    video = torch.full((2, 5, 4, 4), 200, dtype=torch.uint8)
    v, l = reconcile_video(video, torch.tensor([5, 3]), torch.tensor([4, 6]))
    assert v.shape == (2, 6, 4, 4) and l.tolist() == [4, 6]
    assert torch.all(v[0, :4] == 200)                          # cut to 4
    assert torch.all(v[1, :3] == 200) and torch.all(v[1, 3:] == 0)  # padded with black


def test_forced_audio_mode_skips_visual_branch():
    torch.manual_seed(0)
    model = AVSRModel(micro_cfg())
    model.train()
    out = model(make_batch(), modality="audio")
    assert not any(k.endswith(".visual") for k in out.taps)
    out.loss.backward()
    for n, p in model.named_parameters():
        if param_part(n) in ("visual", "cross", "merge"):
            assert p.grad is None, n
        elif n.startswith("audio_") or n.startswith("shared_encoder.") or n.startswith("ctc."):
            assert p.grad is not None, n


def test_audiovisual_gradients_and_zero_init():
    torch.manual_seed(0)
    model = AVSRModel(micro_cfg(dropout_rate=0.0, positional_dropout_rate=0.0, specaug=False))
    model.train()
    b = make_batch()
    model(b).loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is not None for g in grads.values()), [n for n, g in grads.items() if g is None]
    zero_init = [n for n in grads if ".attn.linear_out." in n and n.startswith("cross_")] + \
        [n for n in grads if n.startswith("merge_ffn.3.")]
    assert len(zero_init) == 2 * 2 + 2
    for n in zero_init:
        assert float(model.get_parameter(n).detach().abs().max()) == 0.0
    # At step 0 only the zero-initialised layers that feed the audio path directly get a gradient:
    # CA_a2v's output projection and the merge FFN's last Linear.  Everything upstream of a zero
    # projection gets an exactly zero gradient: the whole visual branch, CA q/k/v, the first FFN
    # Linear, and also CA_v2a's output projection (its output only reaches the loss through the
    # visual stream, i.e. through CA_a2v of the next layer or the merge FFN, both zero).
    nonzero = {n for n in grads if (n.startswith("cross_a2v.") and ".attn.linear_out." in n)
               or n.startswith("merge_ffn.3.")}
    assert len(nonzero) == 4
    for n, g in grads.items():
        part = param_part(n)
        if n in nonzero:
            assert float(g.abs().max()) > 0, n
        elif part in ("visual", "cross", "merge"):
            assert float(g.abs().max()) == 0.0, n
    # after one step the visual branch receives gradient
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    opt.step()
    opt.zero_grad(set_to_none=True)
    model(b).loss.backward()
    vis = [p.grad for n, p in model.named_parameters() if n.startswith("visual_frontend.proj")]
    assert vis and all(float(g.abs().max()) > 0 for g in vis)
    for prefix in ("cross_a2v.0.attn.linear_q", "merge_ffn.0."):
        gs = [p.grad for n, p in model.named_parameters() if n.startswith(prefix)]
        assert gs and all(float(g.abs().max()) > 0 for g in gs), prefix


@pytest.mark.parametrize("mode,sub_", [("audiovisual", "conv2d"), ("audio", "vgg"), ("video", "conv2d")])
def test_padding_invariance(mode, sub_):
    torch.manual_seed(0)
    model = AVSRModel(micro_cfg(mode=mode, audio_subsampling=sub_)).eval()
    # non-trivial cross-attention / FFN (they are zero-initialised)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.startswith(("cross_", "merge_ffn.")):
                p.normal_(0, 0.1)
    b = make_batch((1.3, 0.72, 0.9), seed=1)
    with torch.no_grad():
        both = model(sub(b, [1, 0]))
        short = model(sub(b, [1]))
        long = model(sub(b, [0]))
    T = int(short.enc_lens[0])
    assert int(both.enc_lens[0]) == T
    for name in ["fused", "shared_out"] + [k for k in short.taps if k.startswith("fusion")]:
        assert torch.allclose(both.taps[name][0, :T], short.taps[name][0], atol=1e-5), name
    assert torch.allclose(both.loss_ctc, (short.loss_ctc + long.loss_ctc) / 2, atol=1e-4)
    assert torch.allclose(both.loss_att, (short.loss_att + long.loss_att) / 2, atol=1e-5)
    assert torch.allclose(both.loss, (short.loss + long.loss) / 2, atol=1e-4)


@pytest.mark.parametrize("kind", ["resnet18", "light"])
def test_visual_frontend_padding_invariance(kind):
    from avsr.models import LightFrontend, ResNet18Frontend
    torch.manual_seed(0)
    fe = (ResNet18Frontend(32) if kind == "resnet18" else LightFrontend(32)).eval()
    g = torch.Generator().manual_seed(0)
    video = torch.randint(0, 256, (2, 7, 88, 88), generator=g, dtype=torch.uint8)
    lens = torch.tensor([7, 4])
    with torch.no_grad():
        both, bl = fe(video, lens)
        alone, _ = fe(video[1:, :4], lens[1:])
    assert torch.equal(bl, lens) and both.shape == (2, 7, 32)
    assert torch.allclose(both[1, :4], alone[0], atol=1e-5)
    assert torch.all(both[1, 4:] == 0)


def test_a0_to_av_init():
    torch.manual_seed(0)
    a0 = AVSRModel(micro_cfg(mode="audio"))
    b = make_batch()
    a0.compute_stats([b])  # non-trivial buffers must be carried over too
    av = AVSRModel(micro_cfg(mode="audiovisual"))
    res = load_partial(av, a0.state_dict())
    av_keys = set(av.state_dict())
    not_loaded = {k for k in av_keys if k.startswith(("visual_", "cross_", "merge_ffn.", "merge_norms."))}
    assert set(res.loaded) == av_keys - not_loaded
    assert set(res.missing) == not_loaded and not res.unexpected and not res.mismatched
    assert torch.equal(av.audio_frontend.feat_mean, a0.audio_frontend.feat_mean)
    a0.eval(), av.eval()
    with torch.no_grad():
        ea, la, _ = a0.encode(b)
        ev, lv, _ = av.encode(b)
        assert torch.equal(la, lv)
        assert torch.allclose(a0.ctc_logits(ea), av.ctc_logits(ev), atol=1e-5)
        assert torch.allclose(a0(b).loss, av(b).loss, atol=1e-5)
    # the other way round: AV -> A0 fills everything, reports the AV-only tensors as unexpected
    res2 = load_partial(AVSRModel(micro_cfg(mode="audio")), av.state_dict())
    assert not res2.missing and set(res2.unexpected) == not_loaded
    # a V checkpoint fills the visual branch of an AV model (here selected by prefix)
    vmodel = AVSRModel(micro_cfg(mode="video"))
    res3 = load_partial(av, {"model": vmodel.state_dict()}, include=("visual_",))
    assert set(res3.loaded) == {k for k in av_keys if k.startswith("visual_")}
    assert torch.equal(av.visual_frontend.proj.weight, vmodel.visual_frontend.proj.weight)
    assert not torch.equal(av.ctc.ctc_lo.weight, vmodel.ctc.ctc_lo.weight)
    # an AV model without video in the batch must be run with modality="audio"
    with pytest.raises(ValueError):
        av.encode(b.replace(video=None))
    assert torch.allclose(av.encode(b.replace(video=None), modality="audio")[0], ea, atol=1e-5)


def test_no_forbidden_imports():
    """Importing and running the model pulls in neither torchaudio nor the ESPnet task/bin layers."""
    import subprocess
    import sys
    code = (
        "import sys, torch\n"
        "from avsr.models import AVSRModel, load_config\n"
        f"m = AVSRModel(load_config({str(ROOT / 'conf' / 'micro.yaml')!r}, vocab_size=5))\n"
        "bad = ('torchaudio', 'espnet2.tasks', 'espnet2.bin', 'espnet2.asr.frontend.default',"
        " 'espnet2.text.build_tokenizer')\n"
        "print([k for k in sys.modules if k.startswith(bad)])\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]", r.stdout


def test_fbank_and_stats_round_trip():
    torch.manual_seed(0)
    model = AVSRModel(micro_cfg(mode="audio"))
    fe = model.audio_frontend
    batches = [make_batch((1.0, 0.5), seed=s) for s in range(2)]
    for s, b in enumerate(batches):  # a non-zero mean / non-unit scale per bin
        b.audio[:] = b.audio * (s + 1) + 0.05 * torch.sin(torch.arange(b.audio.size(1)) * 0.3)
        b.audio[:, :][torch.arange(b.audio.size(1))[None] >= b.audio_lens[:, None]] = 0
    feats, flens = fe.fbank(batches[0].audio, batches[0].audio_lens)
    assert feats.shape[-1] == 80
    assert flens.tolist() == [1 + (n - 512) // 160 for n in batches[0].audio_lens.tolist()]
    # snip-edges framing: the features of an utterance do not depend on batch padding
    alone, _ = fe.fbank(batches[0].audio[1:, :8000], batches[0].audio_lens[1:])
    assert torch.allclose(alone[0], feats[1, :alone.size(1)], atol=1e-5)
    mean, std = model.compute_stats(iter(batches))
    m2, s2 = compute_feature_stats(fe, [(b.audio, b.audio_lens) for b in batches])
    assert torch.allclose(mean, m2) and torch.allclose(std, s2)
    fe.eval()
    allf = []
    for b in batches:
        x, l = fe(b.audio, b.audio_lens)
        allf.append(x[torch.arange(x.size(1))[None] < l[:, None]])
    allf = torch.cat(allf)
    assert allf.mean(0).abs().max() < 1e-3 and (allf.std(0, unbiased=False) - 1).abs().max() < 1e-3
    # stats live in the state dict
    other = AVSRModel(micro_cfg(mode="audio"))
    other.load_state_dict(model.state_dict())
    assert torch.equal(other.audio_frontend.feat_std, std)
    other.set_normalization(torch.zeros(80), torch.ones(80))
    assert torch.equal(other.audio_frontend.feat_mean, torch.zeros(80))


def test_tiny_model_overfits():
    torch.manual_seed(0)
    cfg = micro_cfg(mode="audio", dropout_rate=0.0, positional_dropout_rate=0.0, specaug=False)
    model = AVSRModel(cfg)
    b = make_batch((0.8, 0.7, 0.6, 0.75), seed=3)
    model.compute_stats([b])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(60):
        out = model(b)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(float(out.loss.detach()))
    assert losses[-1] < 0.2 * losses[0], losses[::10]


def test_init_from_a0_and_v_through_the_trainer(tmp_path):
    """--init A0 PATH::visual_ fills the audio side from A0 and the visual branch from V."""
    from avsr.utils.checkpoint import init_specs
    from avsr.trainer.trainer import Trainer, TrainerConfig
    torch.manual_seed(0)
    a0, v = AVSRModel(micro_cfg(mode="audio")), AVSRModel(micro_cfg(mode="video"))
    torch.save(a0.state_dict(), tmp_path / "a0.pth")
    torch.save({"model": v.state_dict()}, tmp_path / "v.pth")
    assert init_specs(str(tmp_path / "a0.pth")) == [(str(tmp_path / "a0.pth"), None)]
    with pytest.raises(ValueError, match="empty prefix"):
        init_specs(["x.pth::"])
    tc = TrainerConfig.from_dict({"init": [str(tmp_path / "a0.pth"), f"{tmp_path / 'v.pth'}::visual_"],
                                  "max_epochs": 1, "device": "cpu"})
    av = AVSRModel(micro_cfg(mode="audiovisual"))
    tr = Trainer(av, [], [], tc, exp_dir=str(tmp_path / "exp"))
    sd = av.state_dict()
    for k, t in sd.items():
        if k.startswith("visual_"):
            assert torch.equal(t, v.state_dict()[k]), k
        elif k in a0.state_dict():
            assert torch.equal(t, a0.state_dict()[k]), k   # V's decoder/CTC did not overwrite A0's
    not_loaded = {k for k in sd if k.startswith(("cross_", "merge_ffn.", "merge_norms."))}
    assert set(tr.init_result.missing) == not_loaded
    assert set(tr.init_result.loaded) == set(sd) - not_loaded


def test_alignment_ctc_head_with_label_priors():
    # an alignment CTC next to the recognising one: its loss is CTC on log p - alpha log P (P first moved
    # towards the batch's mean posterior over valid frames, in training only), added with its weight;
    # the recognising CTC and the attention loss are untouched; the prior is saved with the weights
    w, alpha = 0.5, 0.3
    model = AVSRModel(micro_cfg(mode="audio", specaug=False, align_ctc_weight=w, align_ctc_prior=alpha))
    assert {"align_ctc.weight", "align_log_prior"} <= set(model.state_dict())
    assert not any("align" in k for k in AVSRModel(micro_cfg(mode="audio")).state_dict())
    batch = make_batch(durs=(1.0, 0.6))
    model.train()
    prior0 = model.align_log_prior.clone()
    torch.manual_seed(5)
    out = model(batch, modality="audio")
    torch.manual_seed(5)
    enc, lens, _ = model.encode(batch, "audio")
    lp = model.align_ctc(enc).log_softmax(-1)
    valid = torch.arange(enc.size(1))[None] < lens[:, None]
    prior = torch.log(0.99 * prior0.exp() + 0.01 * lp.exp()[valid].mean(0))
    torch.testing.assert_close(model.align_log_prior, prior.detach(), rtol=1e-5, atol=1e-6)
    tgt = torch.cat([batch.tokens[i, :n] for i, n in enumerate(batch.token_lens.tolist())])
    align = torch.nn.functional.ctc_loss((lp - alpha * prior).transpose(0, 1), tgt, lens, batch.token_lens,
                                         reduction="sum", zero_infinity=True) / 2
    cw = model.cfg.ctc_weight
    torch.testing.assert_close(out.loss, cw * out.loss_ctc + (1 - cw) * out.loss_att + w * align, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(model.align_scores(enc), lp - alpha * prior.detach())
    out.loss.backward()
    assert model.align_ctc.weight.grad is not None
    enc_grad = [p.grad for n, p in model.named_parameters() if n.startswith("audio_encoder.")]
    assert any(g is not None and float(g.abs().sum()) > 0 for g in enc_grad)   # it trains the encoder too
    model.eval()
    with torch.no_grad():
        model(batch, modality="audio")
    torch.testing.assert_close(model.align_log_prior, prior.detach())            # no update outside training
    with pytest.raises(ValueError, match="align_ctc_weight"):
        micro_cfg(align_ctc_weight=-1.0)
