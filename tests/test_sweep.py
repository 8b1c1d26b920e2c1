"""The frame-loss / noise sweep: cached (shared front-ends, stacked conditions) == uncached."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from avsr.data.dataset import collate
from avsr.eval.sweep import Condition, add_babble, default_conditions, degradation_area, run_sweep
from avsr.inference import Speech2Text
from avsr.models import AVSRModel, load_config
from avsr.text.tokens import Tokenizer

ROOT = Path(__file__).resolve().parents[1]
TOK = Tokenizer(["<blank>", "<unk>"] + list("abcdefghij") + ["<sos/eos>"])
V = TOK.vocab_size


class DS(torch.utils.data.Dataset):
    def __init__(self, n=5, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.items = []
        for i in range(n):
            k = 12000 + 3000 * i
            self.items.append({"utt_id": f"u{i}", "audio": 0.1 * torch.randn(k, generator=g),
                               "video": torch.randint(1, 255, (k // 640 + (i % 3) - 1, 88, 88), generator=g,
                                                      dtype=torch.uint8),
                               "detected": None, "tokens": None, "text": "abc"})
        self.durations = [len(it["audio"]) / 16000 for it in self.items]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]

    def load_audio(self, i):
        return self.items[i]["audio"].numpy()


def _model(mode, seed, **kw):
    torch.manual_seed(seed)
    m = AVSRModel(load_config(ROOT / "conf" / "micro.yaml", vocab_size=V, mode=mode, **kw)).eval()
    with torch.no_grad():
        m.ctc.ctc_lo.weight.mul_(10)
        m.decoder.output_layer.weight.mul_(10)
        if mode == "audiovisual":      # zero-initialised fusion: make the video matter
            m.merge_ffn[-1].weight.normal_(0, 0.5)
            for ca in m.cross_a2v:
                ca.attn.linear_out.weight.normal_(0, 0.5)
        if m.adapters is not None:
            for p in m.adapters.parameters():
                if p.shape[-1] == m.cfg.adapter_rank:
                    p.normal_(0, 1.0)
    return m


@pytest.mark.parametrize("greedy", [True, False])
def test_cached_equals_uncached(greedy):
    models = {
        "A0": Speech2Text(_model("audio", 0), TOK, beam_size=2, ctc_greedy=greedy),
        "V": Speech2Text(_model("video", 1), TOK, beam_size=2, ctc_greedy=greedy),
        "AV": Speech2Text(_model("audiovisual", 2), TOK, beam_size=2, ctc_greedy=greedy),
        "AV6": Speech2Text(_model("audiovisual", 3, adapter_rank=2), TOK, beam_size=2, ctc_greedy=greedy,
                           adapter_threshold=0.0),
    }
    conds = default_conditions(rates=(0.0, 0.3, 1.0), snrs=(-5.0,))
    ds = DS()
    a = run_sweep(models, ds, conds, batch_size=3, cache=True, progress=False)
    b = run_sweep(models, ds, conds, batch_size=3, cache=False, progress=False)
    assert a["hyps"] == b["hyps"]
    av = a["hyps"]["AV"]
    assert av["random@0"] != av["whole"] or av["random@0"] != av["random@0.3"]   # conditions differ
    assert a["hyps"]["A0"]["random@0"] == a["hyps"]["A0"]["whole"]              # audio-only: same
    assert a["hyps"]["A0"]["random@0"] != a["hyps"]["A0"]["babble-5dB"]
    assert set(a["timing"]["AV"]) >= {"audio_front", "visual_front", "encoder", "search"}
    # the independent decodes are timed by stage too (for the cost breakdown), and the stages fit in
    # the whole decode; the wrapping is gone afterwards
    stages = ("audio_front", "visual_front", "encoder", "search")
    for name, t in b["timing"].items():
        assert set(t) == {*stages, "decode"}, name
        assert all(t[k] >= 0 for k in stages) and sum(t[k] for k in stages) <= t["decode"] + 1e-6, name
    assert b["timing"]["A0"]["visual_front"] == 0 and b["timing"]["AV"]["visual_front"] > 0
    assert b["timing"]["V"]["audio_front"] == 0 and b["timing"]["AV"]["audio_front"] > 0
    for s2t in models.values():
        assert "audio_front" not in vars(s2t.model)
        vf = getattr(s2t.model, "visual_frontend", None)
        assert vf is None or not (vf._forward_hooks or vf._forward_pre_hooks)


def test_babble_snr_and_seed():
    ds = DS(3)
    b = collate([ds[i] for i in range(3)])
    pool = [ds.load_audio(i) for i in range(3)]
    n1 = add_babble(b, pool, -5.0, seed=1)
    n2 = add_babble(b, pool, -5.0, seed=1)
    assert torch.equal(n1.audio, n2.audio)
    for i in range(3):
        k = int(b.audio_lens[i])
        s = b.audio[i, :k].double()
        noise = (n1.audio[i, :k] - b.audio[i, :k]).double()
        snr = 10 * np.log10(float((s ** 2).mean()) / float((noise ** 2).mean()))
        assert abs(snr + 5.0) < 0.1
        assert torch.equal(n1.audio[i, k:], b.audio[i, k:])      # padding untouched


def test_degradation_area():
    assert degradation_area({0.0: 0.2, 1.0: 0.2}, 0.2) == 0.0
    assert abs(degradation_area({0.0: 0.2, 0.5: 0.3, 1.0: 0.6}, 0.2) - (0.5 * 0.05 + 0.5 * 0.25)) < 1e-12
    assert Condition(0.5, "segment").name == "segment@0.5" and Condition(snr_db=-2.5).name == "babble-2.5dB"


def test_distinct_inputs_decodes_each_input_of_an_utterance_once():
    from avsr.eval.sweep import _distinct_inputs
    B, T = 2, 4
    none = torch.zeros(B, T, dtype=torch.bool)
    allb = torch.ones(B, T, dtype=torch.bool)
    some = torch.tensor([[1, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)   # utt 1: nothing dropped
    # conditions: rate 0, a low rate, rate 1, whole
    d = torch.cat([none, some, allb, allb])
    uniq, src = _distinct_inputs(d, None, B)
    # rate 1 == whole for both utterances; the low rate == rate 0 for utterance 1
    assert uniq == [0, 1, 2, 4, 5]
    assert src == [0, 1, 2, 1, 3, 4, 3, 4]
    assert all(torch.equal(d[uniq[s]], d[r]) and uniq[s] % B == r % B for r, s in enumerate(src))
    # on the adapter path (routed) the video is not an input: every routed row of an utterance is one
    route = torch.tensor([False, False, False, False, True, True, True, True])
    uniq, src = _distinct_inputs(d, route, B)
    assert uniq == [0, 1, 2, 4, 5] and src[4:] == [3, 4, 3, 4]
    route = torch.tensor([False, False, True, True, True, True, True, True])   # a threshold that routes more
    uniq, src = _distinct_inputs(d, route, B)
    assert uniq == [0, 1, 2, 3] and src == [0, 1, 2, 3, 2, 3, 2, 3]


def test_dedupe_specs_same_dir_and_threshold(tmp_path):
    from avsr.bin.eval import dedupe_specs, parse_models
    (tmp_path / "av6").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "av6")
    specs = parse_models([f"AV6={tmp_path}/av6@0", f"AV6-tuned={tmp_path}/link@0", f"T={tmp_path}/av6@0.25",
                          f"N={tmp_path}/av6@none", f"N2={tmp_path}/av6/@none"])
    unique, alias = dedupe_specs(specs)
    assert list(unique) == ["AV6", "T", "N"] and alias == {"AV6-tuned": "AV6", "N2": "N"}


def test_unreadable_utterance_is_skipped_for_every_model_and_condition():
    from frontends.errors import MediaError

    class Broken(DS):
        utt_ids = [f"u{i}" for i in range(5)]

        def __getitem__(self, i):
            if i == 2:
                raise MediaError("/x/u2.npz", "unreadable ROI file (utterance u2)")
            return super().__getitem__(i)

        def load_audio(self, i):
            if i == 2:
                raise MediaError("/x/u2.wav", "truncated")
            return super().load_audio(i)

    models = {"A0": Speech2Text(_model("audio", 0), TOK, beam_size=2, ctc_greedy=True),
              "AV": Speech2Text(_model("audiovisual", 2), TOK, beam_size=2, ctc_greedy=True)}
    conds = default_conditions(rates=(0.0, 1.0), snrs=(-5.0,))
    res = run_sweep(models, Broken(), conds, batch_size=2, progress=False)
    assert list(res["skipped"]) == ["u2"] and "/x/u2.npz" in res["skipped"]["u2"]
    for m in models:
        for c in res["conditions"]:
            assert set(res["hyps"][m][c]) == {"u0", "u1", "u3", "u4"}, (m, c)
    ok = run_sweep(models, DS(), conds, batch_size=2, progress=False)
    assert ok["skipped"] == {} and set(ok["hyps"]["AV"]["whole"]) == {f"u{i}" for i in range(5)}
