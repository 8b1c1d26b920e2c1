"""LoRA adapters (MS-Adapter): identity at init, switchable, trained alone on the audio-only path,
routed by the frame mask at inference."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from avsr.data.dataset import collate
from avsr.models import AVSRModel, count_parameters, load_config

ROOT = Path(__file__).resolve().parents[1]
V = 12


def cfg(**kw):
    return load_config(ROOT / "conf" / "micro.yaml", vocab_size=V, **kw)


def items(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        k = 16000 + 2400 * i
        out.append({"utt_id": f"u{i}", "audio": 0.1 * torch.randn(k, generator=g),
                    "video": torch.randint(1, 255, (k // 640 + 1, 88, 88), generator=g, dtype=torch.uint8),
                    "detected": None, "tokens": torch.randint(1, V - 1, (3 + i,), generator=g), "text": "ab"})
    return out


def test_identity_at_init_switch_and_deepcopy():
    torch.manual_seed(0)
    base = AVSRModel(cfg()).eval()
    ad = AVSRModel(cfg(adapter_rank=4)).eval()
    missing, unexpected = ad.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("adapters.") for k in missing)
    b = collate(items(2))
    with torch.no_grad():
        ref = base(b, modality="audio").loss
        assert torch.allclose(ad(b, modality="audio").loss, ref, atol=1e-6)   # B = 0: identity
        for p in ad.adapters.parameters():
            if p.shape[-1] == 4:          # the B matrices
                p.normal_(0, 0.5)
        on = ad(b, modality="audio").loss         # auto: AV model, audio path -> adapters on
        av = ad(b).loss
        off = ad(b, modality="audio", adapters="off").loss
        av_off = ad(b, adapters="off").loss
    assert not torch.allclose(on, ref, atol=1e-4) and torch.allclose(off, ref, atol=1e-6)
    assert torch.allclose(av, av_off, atol=1e-6)      # the AV path never uses the adapters (auto)
    cp = copy.deepcopy(ad)
    with torch.no_grad():
        for p in cp.adapters.parameters():
            p.zero_()
        assert torch.allclose(ad(b, modality="audio").loss, on, atol=1e-6)   # the copy has its own hooks
        assert torch.allclose(cp(b, modality="audio").loss, ref, atol=1e-6)
    # adapted layers: audio Conformers, shared Conformers, decoder layers only
    names = list(ad.adapters.loras.keys())
    assert names and all(n.startswith(("audio_encoder__encoders", "shared_encoder__encoders", "decoder__decoders"))
                         for n in names)


def test_adapter_share_of_parameters():
    m = AVSRModel(load_config(ROOT / "conf" / "mini.yaml", vocab_size=433, adapter_rank=8))
    c = count_parameters(m)
    assert 0 < c["adapter"] / c["total"] < 0.05, c


def test_training_changes_only_adapters(tmp_path):
    from avsr.robust.ms_adapter import MSAdapterMethod
    from avsr.trainer import Trainer, TrainerConfig

    its = items(4)

    class DS(torch.utils.data.Dataset):
        durations = [1.0 + 0.15 * i for i in range(4)]

        def __len__(self):
            return 4

        def __getitem__(self, i):
            return its[i]

    torch.manual_seed(0)
    model = AVSRModel(cfg(adapter_rank=4))
    m = MSAdapterMethod()
    tr = Trainer(model, DS(), DS(), TrainerConfig(max_epochs=2, batch_size=2, progress=False, warmup_steps=2,
                                                  lr=0.01, metric="loss"), methods=[m], exp_dir=tmp_path)
    opt = {id(p) for g in tr.optimizer.param_groups for p in g["params"]}
    assert opt == {id(p) for p in model.adapters.parameters()}
    # one step by hand: gradients only on adapters; visual/cross/merge get none at all
    b = tr.prepare_batch(collate(its[:2]), train=True)
    assert b.video is None
    loss, out, _ = tr.forward_loss(b)
    loss.backward()
    for n, p in model.named_parameters():
        if n.startswith("adapters.") and n.endswith(".B"):
            assert p.grad is not None and p.grad.abs().sum() > 0, n
        elif not n.startswith("adapters."):
            assert p.grad is None, n
    tr.optimizer.zero_grad(set_to_none=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}   # (the hand-made forward ran BN in train mode)
    tr.fit()
    after = model.state_dict()
    changed = [k for k in after if not torch.equal(before[k], after[k])]
    assert changed and all(k.startswith("adapters.") for k in changed), changed[:5]  # BN stats included
    assert m.counts["adapter_parameters"] == sum(p.numel() for p in model.adapters.parameters())


def test_inference_routing_by_frame_mask(tmp_path):
    from avsr.inference import Speech2Text
    from avsr.robust.frame_loss import apply_missing_video
    from avsr.text.tokens import Tokenizer

    tok = Tokenizer(["<blank>", "<unk>"] + list("abcdefghi") + ["<sos/eos>"])
    torch.manual_seed(0)
    model = AVSRModel(cfg(adapter_rank=4)).eval()
    with torch.no_grad():
        for p in model.adapters.parameters():
            if p.shape[-1] == 4:
                p.normal_(0, 1.0)
        model.ctc.ctc_lo.weight.mul_(8)
        model.decoder.output_layer.weight.mul_(8)
    b = collate(items(3))
    full = apply_missing_video(b, 1.0, "whole")                 # every frame gone
    mixed = b.replace(video=torch.cat([full.video[:1], b.video[1:]]),
                      frame_mask=torch.cat([full.frame_mask[:1], b.frame_mask[1:]]))
    s2t = Speech2Text(model, tok, beam_size=2, adapter_threshold=0.0)
    r = s2t.route(mixed)
    assert r.tolist() == [True, False, False]
    res = s2t.decode_batch(mixed)
    assert [x.modality for x in res] == ["audio", "audiovisual", "audiovisual"]
    alone = s2t.decode_batch(collate([{**items(3)[0], "video": None}]))
    assert alone[0].token_ids == res[0].token_ids and abs(alone[0].score - res[0].score) < 1e-3
    # forced off: every utterance on the AV path, even with no frames at all
    s_off = Speech2Text(model, tok, beam_size=2, adapters="off")
    assert s_off.route(mixed) is None
    assert [x.modality for x in s_off.decode_batch(mixed)] == ["audiovisual"] * 3
    # a threshold tuned higher routes partly missing video too
    half = apply_missing_video(b, 0.6, "random")
    s_hi = Speech2Text(model, tok, beam_size=2, adapter_threshold=0.5)
    assert s_hi.route(half).all()
    with pytest.raises(ValueError):
        Speech2Text(model, tok, adapters="maybe")
