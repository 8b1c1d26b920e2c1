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
    # both paths are timed by the same stages of Speech2Text (for the cost breakdown), and the stages
    # fit in the whole decode
    stages = ("audio_front", "visual_front", "encoder", "search")
    for res in (a, b):
        for name, t in res["timing"].items():
            assert set(t) == {*stages, "decode"}, name
            assert all(t[k] >= 0 for k in stages) and sum(t[k] for k in stages) <= t["decode"] + 1e-6, name
        assert res["timing"]["A0"]["visual_front"] == 0 and res["timing"]["AV"]["visual_front"] > 0
        assert res["timing"]["V"]["audio_front"] == 0 and res["timing"]["AV"]["audio_front"] > 0


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


def _count_encoded_rows(s2t):
    """Wrap the model's encoder: a list that receives the batch size of every encoder forward."""
    rows, enc = [], s2t.model.encode

    def counting(batch, modality=None, front=None):
        out = enc(batch, modality=modality, front=front)
        rows.append(int(out[0].shape[0]))
        return out
    s2t.model.encode = counting
    return rows


@pytest.mark.parametrize("cache", [True, False])
def test_cached_sweep_encodes_each_distinct_input_once(cache):
    """Conditions rate 0, rate 1, whole, babble on B utterances: random@1 and whole black out the
    same frames, so an AV model has 3 distinct inputs per utterance; A0 ignores the video (2); V
    ignores the audio (2); on AV6's adapter path the video is not an input, so random@1 = whole (3).
    Independent decodes encode every condition (4 per utterance)."""
    models = {"A0": Speech2Text(_model("audio", 0), TOK, beam_size=2, ctc_greedy=True),
              "V": Speech2Text(_model("video", 1), TOK, beam_size=2, ctc_greedy=True),
              "AV": Speech2Text(_model("audiovisual", 2), TOK, beam_size=2, ctc_greedy=True),
              "AV6": Speech2Text(_model("audiovisual", 3, adapter_rank=2), TOK, beam_size=2, ctc_greedy=True,
                                 adapter_threshold=0.0)}
    counts = {m: _count_encoded_rows(s) for m, s in models.items()}
    conds = default_conditions(rates=(0.0, 1.0), segment=(), snrs=(-5.0,))
    assert [c.name for c in conds] == ["random@0", "random@1", "whole", "babble-5dB"]
    ds = DS(4)
    res = run_sweep(models, ds, conds, batch_size=4, cache=cache, progress=False)
    B = len(ds)
    expect = {"A0": 2 * B, "V": 2 * B, "AV": 3 * B, "AV6": 3 * B} if cache else {m: 4 * B for m in models}
    assert {m: sum(c) for m, c in counts.items()} == expect
    if cache:   # the frame-loss conditions of a batch are one stacked forward (AV6: one per route)
        assert counts["AV"] == [2 * B, B] and counts["A0"] == [B, B] and counts["V"] == [2 * B]
        assert sorted(counts["AV6"]) == [B, B, B]
    assert res["hyps"]["AV6"]["random@1"] == res["hyps"]["AV6"]["whole"]


def test_dedupe_specs_same_dir_and_threshold(tmp_path):
    from avsr.bin.eval import dedupe_specs, parse_models
    (tmp_path / "av6").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "av6")
    specs = parse_models([f"AV6={tmp_path}/av6@0", f"AV6-tuned={tmp_path}/link@0", f"T={tmp_path}/av6@0.25",
                          f"N={tmp_path}/av6@none", f"N2={tmp_path}/av6/@none"])
    unique, alias = dedupe_specs(specs)
    assert list(unique) == ["AV6", "T", "N"] and alias == {"AV6-tuned": "AV6", "N2": "N"}


def test_eval_refuses_a_name_given_twice_and_an_unknown_baseline_before_loading_any_model(tmp_path):
    from avsr.bin.eval import main, parse_models
    with pytest.raises(SystemExit, match="the name 'A0' is given twice"):
        parse_models(["A0=x/a0", "A0=x/av0"])
    with pytest.raises(SystemExit, match="an empty name"):
        parse_models(["=x/a0"])
    for opt in ("--baseline", "--reference"):
        with pytest.raises(SystemExit, match=f"{opt} 'X' is not one of the --models names"):
            main(["--models", "A0=/nonexistent/a0", "--data_dir", str(tmp_path), "--out_dir", str(tmp_path / "o"),
                  opt, "X"])


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


def test_interrupted_sweep_resumes_from_its_batch_log(tmp_path):
    """run_sweep with a BatchLog: killed while loading its second batch, the log holds the first; a
    second run with the same log decodes only the rest and returns what one uninterrupted run returns
    (hypotheses and the similarity taps); a log with another signature is not used."""
    from avsr.utils.io import BatchLog

    class Ok(DS):
        utt_ids = [f"u{i}" for i in range(5)]

    class Dies(Ok):
        def __getitem__(self, i):
            if i == 2:                    # order by length: u4 u3 | u2 u1 | u0
                raise KeyboardInterrupt
            return super().__getitem__(i)

    models = {"A0": Speech2Text(_model("audio", 0), TOK, beam_size=2, ctc_greedy=True),
              "AV": Speech2Text(_model("audiovisual", 2), TOK, beam_size=2, ctc_greedy=True)}
    conds = default_conditions(rates=(0.0, 0.5), snrs=())
    kw = dict(batch_size=2, progress=False, collect_fused=(0.5,))
    full = run_sweep(models, Ok(), conds, **kw)
    path, sig = str(tmp_path / "progress.jsonl"), {"models": ["A0", "AV"], "seed": 0}
    with pytest.raises(KeyboardInterrupt):
        run_sweep(models, Dies(), conds, log=BatchLog(path, sig), **kw)
    log = BatchLog(path, sig)
    assert len(log.records) == 1 and set(log.records[0]["hyps"]["AV"]["random@0.5"]) == {"u3", "u4"}
    calls = []
    orig = Speech2Text.decode_variants

    def count(self, batch, variants, cache=True):
        calls.append(list(batch.utt_ids))
        return orig(self, batch, variants, cache=cache)

    Speech2Text.decode_variants = count
    try:
        res = run_sweep(models, Ok(), conds, log=log, **kw)
    finally:
        Speech2Text.decode_variants = orig
    assert sorted(u for c in calls for u in c) == sorted(["u0", "u1", "u2"] * 2)
    assert res["hyps"] == full["hyps"] and res["resumed_utts"] == 2
    for m in models:
        assert set(res["fused"][m][0.5]) == set(full["fused"][m][0.5])
        for u, v in full["fused"][m][0.5].items():
            np.testing.assert_array_equal(res["fused"][m][0.5][u], v)
    log.finish()
    assert not (tmp_path / "progress.jsonl").exists()
    BatchLog(path, sig).append({"hyps": {}, "skipped": [], "fused": {}})
    other = BatchLog(path, {**sig, "seed": 1})
    assert other.restarted and other.records == []
