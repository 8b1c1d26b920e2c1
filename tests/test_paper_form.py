"""The model and methods in the form of Dai et al.'s figure (CVPR 2024), and the earlier forms kept as
ablations: the merge over the visual bundle, the dual cross-attention, MDA-KD's tap and teacher inputs
(SpecAug masks, babble, undropped video whatever the method order, dropout policy), the MS-Adapter on
Q/K/V, and old configs read in their old form."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import yaml

from avsr.data.dataset import collate
from avsr.models import AVSRModel, ModelConfig, count_parameters, load_model_config

ROOT = Path(__file__).resolve().parents[1]
V = 12


def cfg(**kw) -> ModelConfig:
    return load_model_config(ROOT / "conf" / "micro.yaml", vocab_size=V, **kw)


def items(n=4, seed=0, dur=1.0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        k = int(16000 * dur) + 1600 * i
        out.append({"utt_id": f"u{i}", "audio": 0.1 * torch.randn(k, generator=g),
                    "video": torch.randint(1, 255, (k // 640 + 1, 88, 88), generator=g, dtype=torch.uint8),
                    "detected": None, "tokens": torch.randint(1, V - 1, (3 + i,), generator=g), "text": "ab"})
    return out


def randomize_fusion(model: AVSRModel, std=0.2, seed=0):
    """Non-zero cross-attention output projections and merge FFN (both zero-initialised)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.startswith(("cross_", "merge_ffn.")) and p.dim() > 1:
                p.copy_(std * torch.randn(p.shape, generator=g))


# ------------------------------------------------------------------------------------------ config
def test_defaults_are_the_paper_form_and_old_configs_read_as_the_old_form(tmp_path):
    assert ModelConfig().merge == "bundle" and ModelConfig().adapter_scope == "qkv"
    for name in ("micro", "demo", "mini", "full"):
        c = load_model_config(ROOT / "conf" / f"{name}.yaml", vocab_size=V)
        assert (c.merge, c.adapter_scope) == ("bundle", "qkv"), name
    # a model: section written before the keys existed (packed models, exp dirs) is the old form
    old = {k: v for k, v in cfg().to_dict().items() if k not in ("merge", "adapter_scope")}
    c_old = load_model_config(old)
    assert (c_old.merge, c_old.adapter_scope) == ("last", "all")
    assert ModelConfig.from_dict(old).merge == "last"
    # what the toolkit writes carries the keys, so a new config reads back as written
    assert cfg().to_dict()["merge"] == "bundle" and load_model_config(cfg().to_dict()).merge == "bundle"
    assert load_model_config({**old, "merge": "bundle"}).merge == "bundle"
    with pytest.raises(ValueError, match="merge"):
        cfg(merge="sum")
    with pytest.raises(ValueError, match="adapter_scope"):
        cfg(adapter_scope="q")


def test_old_packed_model_without_the_keys_loads_as_last_merge_and_all_linear_adapters(tmp_path):
    """A packed AV6 of an earlier version: config.yaml without merge / adapter_scope, weights of the
    a_N + FFN([a_N; v_N]) merge and every-Linear adapters: it loads strictly and decodes as before."""
    from avsr.pack import load_packed, pack_model
    torch.manual_seed(0)
    old_cfg = cfg(merge="last", adapter_rank=2, adapter_scope="all")
    model = AVSRModel(old_cfg)
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("\n".join(["<blank>", "<unk>"] + list("abcdefghi") + ["<sos/eos>"]) + "\n")
    out = pack_model(tmp_path / "packed", model_config=old_cfg, token_list=tokens, weights=model.state_dict())
    conf_p = Path(out) / "config.yaml"
    conf = yaml.safe_load(conf_p.read_text())
    conf["model"].pop("merge")
    conf["model"].pop("adapter_scope")
    conf_p.write_text(yaml.safe_dump(conf))
    loaded, _, _ = load_packed(out, verify=False)
    assert loaded.cfg.merge == "last" and loaded.cfg.adapter_scope == "all"
    assert loaded.merge_ffn[0].in_features == 2 * old_cfg.d_model
    # the same weights do not fit the new default form: the key decides the shapes
    with pytest.raises(RuntimeError):
        AVSRModel(cfg(adapter_rank=2)).load_state_dict(model.state_dict())


# ------------------------------------------------------------------------------------------ merge
@pytest.mark.parametrize("n_fusion", [1, 2])
def test_bundle_merge_is_an_ffn_over_the_frontend_and_every_fusion_visual_output(n_fusion):
    torch.manual_seed(0)
    model = AVSRModel(cfg(fusion_layers=n_fusion)).eval()
    randomize_fusion(model)
    d = model.cfg.d_model
    assert model.merge_ffn[0].in_features == (n_fusion + 1) * d and len(model.merge_norms) == n_fusion
    b = collate(items(2))
    seen = {}
    h = model.visual_frontend.register_forward_hook(lambda m, i, o: seen.update(v0=o[0]))   # returns None
    with torch.no_grad():
        _, _, taps = model.encode(b)
    h.remove()
    valid = taps["mask"][..., None].float()
    members = [model.merge_norms[0](seen["v0"])]
    members += [model.merge_norms[i](taps[f"fusion{i - 1}.visual"]) for i in range(1, n_fusion)]
    members += [model.visual_encoder.after_norm(taps[f"fusion{n_fusion - 1}.visual"])]
    bundle = torch.cat(members, dim=-1)
    assert torch.allclose(taps["visual_bundle"], bundle, atol=1e-6)
    a_n = model.audio_encoder.after_norm(taps[f"fusion{n_fusion - 1}.audio"])
    with torch.no_grad():
        want = (a_n + model.merge_ffn(bundle)) * valid
    assert torch.allclose(taps["fused"], want, atol=1e-5)
    # every member matters: perturbing the front-end's LayerNorm changes the fused representation
    with torch.no_grad():
        model.merge_norms[0].bias.add_(1.0)
        _, _, taps2 = model.encode(b)
    assert (taps2["fused"] - taps["fused"]).abs().max() > 1e-3


def test_last_merge_is_the_ablation_form():
    torch.manual_seed(0)
    model = AVSRModel(cfg(merge="last", fusion_layers=2)).eval()
    randomize_fusion(model)
    assert not hasattr(model, "merge_norms") and model.merge_ffn[0].in_features == 2 * model.cfg.d_model
    with torch.no_grad():
        _, _, taps = model.encode(collate(items(2)))
        a_n = model.audio_encoder.after_norm(taps["fusion1.audio"])
        v_n = model.visual_encoder.after_norm(taps["fusion1.visual"])
        want = (a_n + model.merge_ffn(torch.cat([a_n, v_n], -1))) * taps["mask"][..., None].float()
    assert torch.allclose(taps["fused"], want, atol=1e-5)
    assert torch.allclose(taps["visual_bundle"], v_n)


def test_parameter_count_stays_comparable():
    for name, most in (("micro", 0.001), ("demo", 0.02), ("mini", 0.03), ("full", 0.05)):
        n = {m: count_parameters(AVSRModel(load_model_config(ROOT / "conf" / f"{name}.yaml", vocab_size=1000,
                                                             merge=m)))["total"] for m in ("bundle", "last")}
        assert 0 <= n["bundle"] - n["last"] <= most * n["last"], (name, n)


def test_av_from_a0_is_still_a0_at_step_0_with_the_bundle_merge():
    from avsr.models import load_partial
    torch.manual_seed(0)
    a0 = AVSRModel(cfg(mode="audio")).eval()
    av = AVSRModel(cfg(fusion_layers=1)).eval()
    res = load_partial(av, a0.state_dict())
    assert {k for k in res.missing if k.startswith("merge_")} == {k for k in av.state_dict() if k.startswith("merge_")}
    b = collate(items(2))
    with torch.no_grad():
        assert torch.allclose(a0.encode(b)[0], av.encode(b)[0], atol=1e-5)


# ------------------------------------------------------------------------------------------ cross-attention
def test_dual_cross_attention_reads_the_other_stream():
    """With non-zero cross-attention weights, the video reaches fusion0.audio (through CA_a2v) and the
    audio reaches fusion0.visual (through CA_v2a): each branch's first layer output depends on the other
    stream.  Fails if CA_a2v attends to the audio or CA_v2a to the video."""
    torch.manual_seed(0)
    model = AVSRModel(cfg()).eval()
    b = collate(items(2))
    g = torch.Generator().manual_seed(5)
    other_video = b.replace(video=torch.randint(1, 255, b.video.shape, generator=g, dtype=torch.uint8))
    other_audio = b.replace(audio=b.audio + 0.05 * torch.randn(b.audio.shape, generator=g) * (b.audio != 0))

    def run(batch):
        with torch.no_grad():
            return model.encode(batch)[2]

    # zero-initialised output projections: no cross-modal path at all yet
    base = run(b)
    assert torch.equal(run(other_video)["fusion0.audio"], base["fusion0.audio"])
    assert torch.equal(run(other_audio)["fusion0.visual"], base["fusion0.visual"])
    with torch.no_grad():
        for ca in (model.cross_a2v[0], model.cross_v2a[0]):
            ca.attn.linear_out.weight.normal_(0, 0.3)
    base = run(b)
    v_changed, a_changed = run(other_video), run(other_audio)
    m = base["mask"]
    assert (v_changed["fusion0.audio"] - base["fusion0.audio"])[m].abs().max() > 1e-3     # video -> audio
    assert (a_changed["fusion0.visual"] - base["fusion0.visual"])[m].abs().max() > 1e-3   # audio -> video
    # and not through a path that skips the cross-attention: with CA_a2v silenced the video no longer
    # reaches the audio branch of layer 0, with CA_v2a silenced the audio no longer reaches the visual one
    with torch.no_grad():
        w_a2v = model.cross_a2v[0].attn.linear_out.weight.clone()
        model.cross_a2v[0].attn.linear_out.weight.zero_()
    assert torch.equal(run(other_video)["fusion0.audio"], run(b)["fusion0.audio"])
    with torch.no_grad():
        model.cross_a2v[0].attn.linear_out.weight.copy_(w_a2v)
        model.cross_v2a[0].attn.linear_out.weight.zero_()
    assert torch.equal(run(other_audio)["fusion0.visual"], run(b)["fusion0.visual"])


# ------------------------------------------------------------------------------------------ MDA-KD
class _DS(torch.utils.data.Dataset):
    def __init__(self, its):
        self.its = its
        self.durations = [len(x["audio"]) / 16000 for x in its]

    def __len__(self):
        return len(self.its)

    def __getitem__(self, i):
        return self.its[i]


def _kd_trainer(tmp_path, methods, student):
    from avsr.trainer import Trainer, TrainerConfig
    tc = TrainerConfig(max_epochs=1, batch_size=2, progress=False, warmup_steps=10, metric="loss")
    return Trainer(student, _DS(items(4)), None, tc, methods=methods, exp_dir=tmp_path / "exp")


def test_frequency_masks_are_off_by_default_and_never_hide_the_time_mask():
    """``num_freq_mask > 0`` zeroes whole mel bands in training only; the time mask read off SpecAug is
    the same frames with and without them (a frequency mask over the marker column would mark every frame)."""
    from avsr.models.front_nets import AudioFrontend
    assert ModelConfig().num_freq_mask == 0 and AVSRModel(cfg(mode="audio")).audio_frontend.freq_mask is None
    wav, lens = torch.randn(3, 16000), torch.tensor([16000, 12000, 16000])
    out = {}
    for n in (0, 2):
        fe = AudioFrontend(time_mask_width_range=(8, 12), num_time_mask=2, num_freq_mask=n,
                           freq_mask_width_range=(10, 12)).train()
        torch.manual_seed(1)
        out[n] = fe.forward_masked(wav, lens)
    (f0, fl, t0), (f2, _, t2) = out[0], out[2]
    assert torch.equal(t0, t2) and t2.any() and not t2.all()
    for b in range(3):
        keep = ~t2[b] & (torch.arange(f2.size(1)) < fl[b])
        zero_bands = (f2[b, keep] == 0).all(0)
        assert 10 <= int(zero_bands.sum()) <= 24, int(zero_bands.sum())       # 2 masks of 10-12 bins
        assert not (f0[b, keep] == 0).all(0).any()
        assert torch.equal(f2[b, keep][:, ~zero_bands], f0[b, keep][:, ~zero_bands])
    fe.eval()
    feats, _, tm = fe.forward_masked(wav, lens)
    assert tm is None and not (feats[0] == 0).all(0).any()


@pytest.mark.parametrize("teacher_audio", ["student", "own"])
def test_kd_with_the_students_own_weights_is_zero_in_training_mode(tmp_path, teacher_audio):
    """Teacher = the student's weights, SpecAug on, babble on, no dropped frames, the student's dropout 0:
    the KD loss in training mode is 0 when the teacher gets the student's augmented features (the
    default), and large when it computes its own (unmasked) features: the SpecAug masks must be shared."""
    from avsr.robust.audio_noise import AudioNoiseMethod
    from avsr.robust.frame_dropout import FrameDropoutMethod
    from avsr.robust.mda_kd import MDAKDMethod
    from avsr.utils.checkpoint import save_checkpoint
    torch.manual_seed(0)
    c = cfg(dropout_rate=0.0, positional_dropout_rate=0.0, attention_dropout_rate=0.0, specaug=True,
            time_mask_width_range=[8, 12], num_time_mask=2, num_freq_mask=2)   # (frequency masks shared too)
    student = AVSRModel(c)
    randomize_fusion(student)          # a trained-like model: the visual branch hears the audio
    save_checkpoint(student.state_dict(), tmp_path / "teacher.pth")
    kd = MDAKDMethod(str(tmp_path / "teacher.pth"), distance="mse", weight=1.0, teacher_audio=teacher_audio)
    assert kd.tap == "visual_bundle"
    tr = _kd_trainer(tmp_path, [AudioNoiseMethod(prob=1.0, snr=(0, 5)), kd, FrameDropoutMethod(d_prob=0.0)], student)
    tr._train_mode()
    assert student.training and not kd.teacher.training
    raw = collate(items(2))
    b = tr.prepare_batch(raw, train=True)
    assert not torch.equal(b.audio, raw.audio)                        # babble mixed in
    assert torch.equal(b.video, raw.video)                            # no frame dropped
    torch.manual_seed(3)
    loss, out, stats = tr.forward_loss(b)
    assert out.taps["specaug_mask"].any()                             # SpecAug did mask frames
    ttaps = kd.teacher_taps(b, out, student)
    if teacher_audio == "student":
        assert stats["loss_kd"] <= 1e-6, stats
        for t in ("visual_bundle", "fused", "shared_out"):
            assert torch.allclose(ttaps[t], out.taps[t], atol=1e-5), t
    else:
        assert stats["loss_kd"] > 1e-3, stats
    # the teacher stayed frozen and in eval mode; its BatchNorm statistics did not move
    before = torch.load(tmp_path / "teacher.pth", weights_only=True)
    for k, v in kd.teacher.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not kd.teacher.training and all(not m.training for m in kd.teacher.modules())


def test_kd_teacher_batchnorm_mirrors_the_students_mode(tmp_path):
    """Without the mirroring (teacher BatchNorm on running statistics while the student's uses batch
    statistics) the same weights and inputs would give a KD loss > 0."""
    from avsr.robust.mda_kd import MDAKDMethod, distance
    from avsr.utils.checkpoint import save_checkpoint
    torch.manual_seed(0)
    student = AVSRModel(cfg(dropout_rate=0.0, positional_dropout_rate=0.0, specaug=False))
    randomize_fusion(student)
    save_checkpoint(student.state_dict(), tmp_path / "t.pth")
    kd = MDAKDMethod(str(tmp_path / "t.pth"), weight=1.0)
    tr = _kd_trainer(tmp_path, [kd], student)
    b = tr.prepare_batch(collate(items(2)), train=True)
    # a frozen student BatchNorm (eval, as the trainer keeps frozen ones) leaves the teacher's on running
    # statistics too (both have the same ones here: the student's have not moved yet)
    tr._train_mode()
    for m in student.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()
    _, out, stats = tr.forward_loss(b)
    assert stats["loss_kd"] <= 1e-6
    # a training student BatchNorm: the teacher's uses batch statistics as well
    tr._train_mode()
    _, out, stats = tr.forward_loss(b)
    assert stats["loss_kd"] <= 1e-6
    with torch.no_grad():
        _, _, plain = kd.teacher.encode(b.replace(video=b.extras["clean_video"]), modality="audiovisual")
    gap = distance("mse", out.taps["visual_bundle"].detach(), plain["visual_bundle"], out.taps["lens"])
    assert float(gap) > 1e-4


@pytest.mark.parametrize("order", ["kd_first", "dropout_first", "specs_dropout_first"])
def test_kd_teacher_gets_the_undropped_video_whatever_the_method_order(tmp_path, order):
    from avsr.robust.frame_dropout import FrameDropoutMethod
    from avsr.robust.mda_kd import MDAKDMethod
    from avsr.robust.registry import build_method
    from avsr.utils.checkpoint import save_checkpoint
    torch.manual_seed(0)
    student = AVSRModel(cfg())
    save_checkpoint(student.state_dict(), tmp_path / "t.pth")
    if order == "specs_dropout_first":    # as avsr.bin.train builds them from --method specs
        methods = [build_method('frame_dropout:{"rate": 1.0, "d_prob": 1.0}'),
                   build_method(f'mda_kd:{{"teacher": "{tmp_path / "t.pth"}"}}')]
    else:
        kd = MDAKDMethod(str(tmp_path / "t.pth"))
        fd = FrameDropoutMethod(rate=1.0, d_prob=1.0)
        methods = [kd, fd] if order == "kd_first" else [fd, kd]
    kd = next(m for m in methods if isinstance(m, MDAKDMethod))
    tr = _kd_trainer(tmp_path, methods, student)
    seen = {}
    enc = kd.teacher.encode

    def spy(batch, modality=None, front=None):
        seen["video"] = batch.video.clone()
        return enc(batch, modality, front)
    kd.teacher.encode = spy
    raw = collate(items(2))
    b = tr.prepare_batch(raw, train=True)
    assert int(b.video.max()) == 0                                     # the student: every frame black
    _, _, stats = tr.forward_loss(b)
    assert torch.equal(seen["video"], raw.video) and stats["loss_kd"] > 0   # the teacher: the loader's video


def test_kd_teacher_of_another_merge_is_a_clear_error(tmp_path):
    from avsr.robust.mda_kd import MDAKDMethod
    from avsr.utils.checkpoint import save_checkpoint
    save_checkpoint(AVSRModel(cfg(merge="last", fusion_layers=2)).state_dict(), tmp_path / "last.pth")
    kd = MDAKDMethod(str(tmp_path / "last.pth"))
    with pytest.raises(ValueError, match=r"last\.pth: teacher weights do not fit"):
        _kd_trainer(tmp_path, [kd], AVSRModel(cfg(fusion_layers=2)))


# ------------------------------------------------------------------------------------------ MS-Adapter
def test_adapters_sit_on_qkv_of_audio_shared_and_decoder_by_default():
    m = AVSRModel(cfg(adapter_rank=2))
    names = list(m.adapters.loras)
    assert names and all(n.endswith(("__linear_q", "__linear_k", "__linear_v")) for n in names)
    assert {n.split("__")[0] for n in names} == {"audio_encoder", "shared_encoder", "decoder"}
    assert any("__src_attn__" in n for n in names) and any("__self_attn__" in n for n in names)
    n_attn = sum(1 for n, mod in m.named_modules() if isinstance(mod, torch.nn.Linear)
                 and n.startswith(("audio_encoder.encoders.", "shared_encoder.encoders.", "decoder.decoders."))
                 and n.endswith((".linear_q", ".linear_k", ".linear_v")))
    assert len(names) == n_attn
    every = AVSRModel(cfg(adapter_rank=2, adapter_scope="all"))
    assert set(names) < set(every.adapters.loras)
    assert any("feed_forward" in n for n in every.adapters.loras)


def test_zeroed_adapters_are_the_base_model_on_the_routed_path():
    """identity_adapter_state: the decode-only AV6-noadapter row (AV6's weights with B = 0) computes the
    base model's audio-only path exactly, adapters switched on or not."""
    from avsr.models.lora import identity_adapter_state
    torch.manual_seed(0)
    m = AVSRModel(cfg(adapter_rank=2)).eval()
    with torch.no_grad():
        for n, p in m.adapters.named_parameters():
            if n.endswith(".B"):
                p.normal_(0, 0.5)
    b = collate(items(2))
    with torch.no_grad():
        on = m(b, modality="audio").loss
        off = m(b, modality="audio", adapters="off").loss
        assert not torch.allclose(on, off, atol=1e-4)
        z = copy.deepcopy(m)
        sd = identity_adapter_state(m.state_dict())
        assert all(torch.equal(sd[k], v) for k, v in m.state_dict().items() if not k.endswith(".B"))
        z.load_state_dict(sd)
        assert torch.allclose(z(b, modality="audio").loss, off, atol=1e-6)
