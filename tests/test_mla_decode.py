"""Decoding MLA models by entropy fusion of their audio and video paths' CTC posteriors
(``Speech2Text(fusion="entropy")``, ``avsr pack --decode_fusion entropy``)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from avsr.data.dataset import collate
from avsr.decoding import batch_beam_search, ctc_greedy
from avsr.decoding.entropy_fusion import entropy_fusion
from avsr.eval.sweep import default_conditions, run_sweep
from avsr.inference import Speech2Text
from avsr.models import AVSRModel, load_config
from avsr.models.model import reconcile_video
from avsr.text.tokens import Tokenizer, write_token_list

ROOT = Path(__file__).resolve().parents[1]
TOKENS = ["<blank>", "<unk>"] + list("abcdefghij") + ["<sos/eos>"]
TOK = Tokenizer(TOKENS)
V = len(TOKENS)


def _model(seed=0, **kw):
    """A micro AV model as MLA leaves it (cross-attention and merge untouched), with peaky CTC."""
    torch.manual_seed(seed)
    m = AVSRModel(load_config(ROOT / "conf" / "micro.yaml", vocab_size=V, **kw)).eval()
    with torch.no_grad():
        m.ctc.ctc_lo.weight.mul_(8.0)
        m.decoder.output_layer.weight.mul_(8.0)
    return m


def _items(n=3, seed=0, video_delta=(0, -6, 3), present=None):
    """Utterances of different lengths; ``video_delta``: video frames more/less than the audio's span."""
    g = torch.Generator().manual_seed(seed)
    items = []
    for i in range(n):
        k = 12800 + 3200 * i
        it = {"utt_id": f"u{i}", "audio": 0.1 * torch.randn(k, generator=g),
              "video": torch.randint(1, 255, (k // 640 + video_delta[i % len(video_delta)], 88, 88), generator=g,
                                     dtype=torch.uint8),
              "detected": None, "tokens": None, "text": "abc"}
        if present is not None and present[i] is not None:
            it["present"] = torch.full((it["video"].shape[0],), bool(present[i]))
            if not present[i]:                       # black, as the dataset writes an absent video
                it["video"] = torch.zeros_like(it["video"])
        items.append(it)
    return items


def _paths(model, b):
    """By hand: the audio path, the video path on the reconciled video, their CTC log-posteriors."""
    with torch.no_grad():
        enc_a, la, _ = model.encode(b, modality="audio")
        video, vl = reconcile_video(b.video, b.video_lens, la)
        enc_v, lv, _ = model.encode(b.replace(video=video, video_lens=vl), modality="video")
        logp_a = torch.log_softmax(model.ctc_logits(enc_a), -1)
        logp_v = torch.log_softmax(model.ctc_logits(enc_v), -1)
    assert torch.equal(lv, la)
    return logp_a, la, logp_v, torch.minimum(b.video_lens, la)


def test_fused_greedy_equals_hand_computation():
    model = _model()
    b = collate(_items())
    logp_a, la, logp_v, lv = _paths(model, b)
    assert (b.video_lens < la).any() and (b.video_lens > la).any()      # a shorter and a longer video
    fused = entropy_fusion(logp_a, logp_v, la, lv)
    want = ctc_greedy(fused, la)
    s2t = Speech2Text(model, TOK, ctc_greedy=True, fusion="entropy")
    res = s2t.decode_batch(b)
    assert [r.token_ids for r in res] == want
    assert [r.modality for r in res] == ["fusion"] * 3
    assert s2t.search_name == "ctc_greedy+entropy"
    # the fusion matters here: neither path alone, nor the untrained AV path, gives the same
    assert want != ctc_greedy(logp_a, la) and want != ctc_greedy(logp_v, la)
    plain = Speech2Text(model, TOK, ctc_greedy=True)
    assert [r.token_ids for r in plain.decode_batch(b)] != want
    # the fused posteriors are what ctc_posteriors gives (and what the greedy read)
    post = s2t.ctc_posteriors(b)
    for j, (lp, mod) in enumerate(post):
        assert mod == "fusion" and lp.shape == (int(la[j]), V)
        assert torch.allclose(torch.from_numpy(lp), fused[j, :int(la[j])], atol=1e-5)
    # a forced modality bypasses the fusion
    assert [r.token_ids for r in s2t.decode_batch(b, modality="audio")] == ctc_greedy(logp_a, la)


def test_fused_beam_search_is_ctc_only_on_fused_posteriors(monkeypatch):
    model = _model(1)
    b = collate(_items(seed=1))
    logp_a, la, logp_v, lv = _paths(model, b)
    fused = entropy_fusion(logp_a, logp_v, la, lv)
    want = batch_beam_search(None, fused, fused, la, beam_size=3, sos=model.sos, eos=model.eos, ctc_weight=1.0,
                             nbest=1, vocab_size=V)
    s2t = Speech2Text(model, TOK, beam_size=3, fusion="entropy")
    assert s2t.ctc_weight == 1.0 and model.cfg.ctc_weight < 1.0
    # the attention decoder is never run
    monkeypatch.setattr(model.decoder, "forward_one_step",
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError("decoder used")))
    res = s2t.decode_batch(b)
    assert [r.token_ids for r in res] == [h[0].yseq for h in want]
    assert [r.score for r in res] == pytest.approx([h[0].score for h in want], rel=1e-5)


def _scale_path(monkeypatch, model, path, k):
    """Make one path confident: its encoder output (so its CTC logits) times ``k``."""
    enc = model.encode

    def scaled(batch, modality=None, front=None):
        e, lens, taps = enc(batch, modality=modality, front=front)
        return (e * k if modality == path else e), lens, taps
    monkeypatch.setattr(model, "encode", scaled)


@pytest.mark.parametrize("confident", ["audio", "video"])
def test_confident_path_dominates(monkeypatch, confident):
    model = _model(2)
    b = collate(_items(seed=2, video_delta=(1, 2, 3)))      # every audio frame has a video frame
    _scale_path(monkeypatch, model, confident, 30.0)
    logp_a, la, logp_v, lv = _paths(model, b)
    assert (lv == la).all()
    hyp_a, hyp_v = ctc_greedy(logp_a, la), ctc_greedy(logp_v, la)
    assert hyp_a != hyp_v
    res = Speech2Text(model, TOK, ctc_greedy=True, fusion="entropy").decode_batch(b)
    assert [r.token_ids for r in res] == (hyp_a if confident == "audio" else hyp_v)


def test_missing_video_goes_through_the_fusion_and_no_video_decodes_the_audio_path():
    """The frame mask is not read: an utterance whose frames are all missing (u1, as the data dir's
    audio-only utterances) is fused like the others (its black frames are the video path's input and
    the entropy weights are the switch); only a batch without video decodes the audio path alone."""
    model = _model(3)
    items = _items(seed=3, present=[None, False, None])     # u1: no present frame
    b = collate(items)
    logp_a, la, logp_v, lv = _paths(model, b)
    s2t = Speech2Text(model, TOK, ctc_greedy=True, fusion="entropy")
    res = s2t.decode_batch(b)
    assert [r.modality for r in res] == ["fusion"] * 3
    fused = entropy_fusion(logp_a, logp_v, la, lv)
    assert [r.token_ids for r in res] == ctc_greedy(fused, la)
    # the mask is not read: the same pixels with every frame marked present decode the same
    full = b.replace(frame_mask=torch.arange(b.video.shape[1])[None, :] < b.video_lens[:, None])
    assert [r.token_ids for r in s2t.decode_batch(full)] == [r.token_ids for r in res]
    # the black video's path does count: fused != the audio path alone for u1 (the micro model's video
    # path is confident enough on black frames to move some frame's argmax)
    assert not torch.allclose(fused[1, :int(la[1])], logp_a[1, :int(la[1])])
    # a batch without video: the audio path, as a plain audio-only decode
    bn = b.replace(video=None, video_lens=None, frame_mask=None)
    plain = Speech2Text(model, TOK, ctc_greedy=True).decode_batch(bn, modality="audio")
    got = s2t.decode_batch(bn)
    assert [r.token_ids for r in got] == [r.token_ids for r in plain] == ctc_greedy(logp_a, la)
    assert {r.modality for r in got} == {"audio"}


class _DS(torch.utils.data.Dataset):
    def __init__(self, items):
        self.items = items
        self.durations = [len(it["audio"]) / 16000 for it in items]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]

    def load_audio(self, i):
        return self.items[i]["audio"].numpy()


@pytest.mark.parametrize("greedy", [True, False])
def test_cached_sweep_equals_uncached_and_shares_paths(monkeypatch, greedy):
    model = _model(4)
    items = _items(5, seed=4, video_delta=(0, -8, 2), present=[None, None, False, None, None])
    s2t = Speech2Text(model, TOK, beam_size=2, ctc_greedy=greedy, fusion="entropy")
    conds = default_conditions(rates=(0.0, 0.3, 1.0), segment=(0.5,), snrs=(-5.0,))
    rows = {"audio": 0, "video": 0}
    enc = model.encode

    def count(batch, modality=None, front=None, **kw):
        rows[modality] += len(batch)
        return enc(batch, modality=modality, front=front, **kw)
    monkeypatch.setattr(model, "encode", count)
    a = run_sweep({"MLA": s2t}, _DS(items), conds, batch_size=5, cache=True, progress=False)
    cached_rows = dict(rows)
    b = run_sweep({"MLA": s2t}, _DS(items), conds, batch_size=5, cache=False, progress=False)
    assert a["hyps"] == b["hyps"]
    h = a["hyps"]["MLA"]
    assert h["random@0"] != h["whole"] or h["random@0"] != h["random@0.3"]       # conditions differ
    # cached: the audio path once per distinct audio (own + babble), the video path once per distinct
    # video (random@0 = babble's; random@0.3, segment@0.5 each; whole = random@1.0, all black; u2, with
    # no present frame, has only the black one)
    assert cached_rows["audio"] == 5 * 2
    assert cached_rows["video"] == 4 * 4 + 1
    assert rows["audio"] - cached_rows["audio"] == 5 * len(conds)
    # "whole" (no frame shown) is the fusion with the video path on black frames, not a mask switch
    bb = collate(items)
    black = bb.replace(video=torch.zeros_like(bb.video), frame_mask=None)
    want = s2t.decode_batch(black)
    assert [h["whole"][u] for u in bb.utt_ids] == [r.text for r in want] == [h["random@1"][u] for u in bb.utt_ids]
    assert {r.modality for r in want} == {"fusion"}


def _exp_dir(tmp_path, model):
    import yaml
    from avsr.utils.checkpoint import save_checkpoint
    d = tmp_path / "exp"
    d.mkdir()
    write_token_list(TOKENS, str(d / "tokens.txt"))
    (d / "config.yaml").write_text(yaml.safe_dump({"model": model.cfg.to_dict(),
                                                   "data": {"token_list": str(d / "tokens.txt")}}))
    save_checkpoint(model.state_dict(), str(d / "model.pth"))
    return d


def test_pack_round_trip_keeps_fusion(tmp_path):
    from avsr.bin import pack as pack_bin
    from avsr.pack import PackError, load_packed, pack_model
    model = _model(5)
    d = _exp_dir(tmp_path, model)
    assert pack_bin.main(["--exp_dir", str(d), "--out", str(tmp_path / "p"), "--decode_fusion", "entropy",
                          "--beam_size", "3"]) == 0
    _, _, info = load_packed(tmp_path / "p")
    assert info["decode"] == {"beam_size": 3, "fusion": "entropy", "ctc_weight": 1.0}
    s = Speech2Text.from_packed(tmp_path / "p", ctc_greedy=True)
    assert s.fusion == "entropy" and s.ctc_weight == 1.0
    b = collate(_items(seed=5))
    ref = Speech2Text(model, TOK, ctc_greedy=True, fusion="entropy").decode_batch(b)
    assert [r.text for r in s.decode_batch(b)] == [r.text for r in ref]
    off = Speech2Text.from_packed(tmp_path / "p", ctc_greedy=True, fusion=None)
    assert off.fusion is None and {r.modality for r in off.decode_batch(b)} == {"audiovisual"}
    # fusion off: the CTC weight stored for the fusion goes with it (the model's own joint search), unless given
    assert off.ctc_weight == model.cfg.ctc_weight != 1.0
    assert Speech2Text.from_packed(tmp_path / "p", fusion=None, ctc_weight=0.7).ctc_weight == 0.7
    # without the flag nothing is stored
    assert pack_bin.main(["--exp_dir", str(d), "--out", str(tmp_path / "q")]) == 0
    assert "fusion" not in load_packed(tmp_path / "q")[2]["decode"]
    assert Speech2Text.from_packed(tmp_path / "q").fusion is None
    assert Speech2Text.from_packed(tmp_path / "q", fusion="entropy").ctc_weight == 1.0
    # what a fusion pack cannot be
    with pytest.raises(SystemExit):
        pack_bin.main(["--exp_dir", str(d), "--out", str(tmp_path / "r"), "--decode_fusion", "entropy",
                       "--ctc_weight", "0.3"])
    with pytest.raises(PackError, match="audio-visual"):
        a0 = _model(5, mode="audio")
        pack_model(tmp_path / "s", model_config=a0.cfg.to_dict(), token_list=d / "tokens.txt",
                   weights=a0.state_dict(), decode={"fusion": "entropy"})
    with pytest.raises(PackError, match="fusion must be"):
        pack_model(tmp_path / "s", model_config=model.cfg.to_dict(), token_list=d / "tokens.txt",
                   weights=model.state_dict(), decode={"fusion": "mean"})
    ad = _model(5, adapter_rank=2)
    (tmp_path / "x").mkdir()
    d2 = _exp_dir(tmp_path / "x", ad)
    with pytest.raises(SystemExit):
        pack_bin.main(["--exp_dir", str(d2), "--out", str(tmp_path / "t"), "--decode_fusion", "entropy"])


def test_fusion_settings_are_checked():
    with pytest.raises(ValueError, match="MS-Adapters"):
        Speech2Text(_model(6, adapter_rank=2), TOK, fusion="entropy")
    with pytest.raises(ValueError, match="MS-Adapters"):
        Speech2Text(_model(6), TOK, fusion="entropy", adapters="on")
    with pytest.raises(ValueError, match="audio-visual"):
        Speech2Text(_model(6, mode="audio"), TOK, fusion="entropy")
    with pytest.raises(ValueError, match="ctc_weight"):
        Speech2Text(_model(6), TOK, fusion="entropy", ctc_weight=0.3)
    with pytest.raises(ValueError, match="fusion must be"):
        Speech2Text(_model(6), TOK, fusion="mean")
    assert Speech2Text(_model(6), TOK, fusion="none").fusion is None


@pytest.mark.parametrize("cli", ["decode", "decode_pairs", "eval"])
def test_cli_flag_reaches_speech2text(monkeypatch, tmp_path, cli):
    import importlib
    mod = importlib.import_module(f"avsr.bin.{cli}")
    seen = []

    class Stop(Exception):
        pass

    def fake(path, device="cpu", **kw):
        seen.append(kw)
        raise Stop
    monkeypatch.setattr(Speech2Text, "from_packed", staticmethod(fake))
    base = {"decode": ["--model", "m", "--data_dir", str(tmp_path), "--out_dir", str(tmp_path / "o")],
            "decode_pairs": ["--model", "m", "--wav", "a.wav"],
            "eval": ["--models", "X=m", "--data_dir", str(tmp_path), "--out_dir", str(tmp_path / "o")]}[cli]
    for flag, want in ((["--decode_fusion", "entropy"], "entropy"), (["--decode_fusion", "none"], None)):
        with pytest.raises(Stop):
            mod.main(base + flag)
        assert seen[-1]["fusion"] == want
    with pytest.raises(Stop):
        mod.main(base)
    assert "fusion" not in seen[-1]                     # the pack's own setting


def test_rows_driver_packs_mla_runs_with_fusion(tmp_path, monkeypatch):
    """RowRunner.pack: a run trained with the mla method gets --decode_fusion entropy; others do not; a
    pack made without the flag is redone."""
    import yaml
    from avsr.bin.rows import RowRunner
    r = RowRunner(tmp_path / "exp", tmp_path / "data", None, rows_dir=tmp_path / "rows")
    cmds = []

    def pack_cli(cmd):                                      # the avsr pack arguments
        cmds.append(cmd)
        out = cmd[cmd.index("--out") + 1]
        os.makedirs(out, exist_ok=True)
        open(os.path.join(out, "model.pth"), "w").close()
        fusion = cmd[cmd.index("--decode_fusion") + 1] if "--decode_fusion" in cmd else None
        with open(os.path.join(out, "config.yaml"), "w") as f:
            yaml.safe_dump({"decode": {"fusion": fusion} if fusion else {}}, f)
    monkeypatch.setattr(r, "pack_cli", pack_cli)
    runs = {}
    for name, methods in (("MLA", ['mla:{"project": true}']), ("CKD", ["ckd:{}"]), ("AV3", [])):
        d = tmp_path / "train" / name
        d.mkdir(parents=True)
        (d / "config.yaml").write_text(yaml.safe_dump({"methods": methods}))
        runs[name] = str(d)
    for name, d in runs.items():
        r.pack(name, d)
    assert [("--decode_fusion" in c, c[c.index("--out") + 1].endswith(n)) for c, n in zip(cmds, runs)] == \
        [(True, True), (False, True), (False, True)]
    assert cmds[0][-2:] == ["--decode_fusion", "entropy"]
    r.pack("MLA", runs["MLA"])                              # done with the flag: reused
    assert len(cmds) == 3
    with open(os.path.join(r.rows_dir, "packed", "MLA", "config.yaml"), "w") as f:
        yaml.safe_dump({"decode": {}}, f)                   # an older pack without the fusion: redone
    r.pack("MLA", runs["MLA"])
    assert len(cmds) == 4 and cmds[-1][-1] == "entropy"
