"""The local CTC aligner (avsr.models.aligner, avsr train_aligner): its scores depend only on the audio
within its receptive field, its frame clock is the audio's, it learns to time tokens by their sound
(tones at known times), and a packed model carries it into transcribe."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from avsr.alignment import token_times
from avsr.models.aligner import AlignerConfig, LocalAligner, cepstral_smoother, load_aligner

ROOT = Path(__file__).resolve().parents[1]
SR = 16000


def _aligner(V=6, **kw):
    torch.manual_seed(0)
    return LocalAligner(AlignerConfig(vocab_size=V, d=32, **kw)).eval()


def test_scores_depend_only_on_the_audio_within_the_receptive_field():
    """Noise added to the first 0.5 s changes the scores of the frames whose receptive field reaches into it
    and of no later frame; a batch's padding changes nothing."""
    m = _aligner()
    off, stride = m.frame_times()
    rf = m.receptive_field()
    assert 0.2 < rf < 0.5
    g = torch.Generator().manual_seed(1)
    w = torch.randn(1, 3 * SR, generator=g)
    w2 = w.clone()
    w2[0, :SR // 2] += 5 * torch.randn(SR // 2, generator=g)
    a, n = m.encode(w, torch.tensor([w.size(1)]))
    b, _ = m.encode(w2, torch.tensor([w.size(1)]))
    changed = np.nonzero(((a - b).abs().amax(-1)[0] > 1e-5).numpy())[0]
    centres = off + stride / 2 + stride * changed
    assert changed.min() == 0 and centres.max() <= 0.5 + rf + 1e-6
    assert centres.max() > 0.5 + rf - 3 * stride          # the field is as wide as stated, not much narrower
    # padding: the second utterance alone equals its row of a padded batch
    short = w[:, : 2 * SR]
    batch = torch.cat([w, torch.nn.functional.pad(short, (0, SR))])
    pb, lb = m.encode(batch, torch.tensor([3 * SR, 2 * SR]))
    ps, ls = m.encode(short, torch.tensor([2 * SR]))
    assert int(lb[1]) == int(ls[0]) and torch.allclose(pb[1, : int(ls[0])], ps[0], atol=1e-5)


def test_config_checks():
    """An unknown topology, timing rule or direction, a negative inner blank penalty, a number of cepstra outside
    [0, n_mels], a negative number of adaptation steps or a learning rate <= 0, a posterior scale <= 0 and a negative
    posterior margin are refused when the config is made."""
    for bad in ({"topology": "hsmm"}, {"rule": "centre"}, {"inner_blank_penalty": -1.0}, {"directions": "backward"},
                {"cepstra": 81}, {"cepstra": -1}, {"adapt_steps": -1}, {"adapt_lr": 0.0}, {"posterior_scale": 0.0},
                {"posterior_margin": -1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            AlignerConfig(vocab_size=6, **bad)


def test_reverse_padded_and_the_backward_network():
    """reverse_padded reverses each row within its length and leaves the padding; a forward-only aligner has no
    backward network; with "both", the backward network's loss is that of the reversed utterances (the sum of
    the two directions' losses equals the loss with the backward network fed the reversed batch)."""
    from avsr.models.aligner import reverse_padded
    x = torch.tensor([[1, 2, 3, 4, -1], [5, 6, -1, -1, -1]])
    assert reverse_padded(x, torch.tensor([4, 2])).tolist() == [[4, 3, 2, 1, -1], [6, 5, -1, -1, -1]]
    w = torch.arange(12.0).reshape(2, 3, 2)
    assert reverse_padded(w, torch.tensor([3, 1])).tolist() == [[[4, 5], [2, 3], [0, 1]], [[6, 7], [8, 9], [10, 11]]]
    with pytest.raises(ValueError, match="no backward network"):
        _aligner().align_scores(np.zeros(SR, np.float32), backward=True)
    m = _aligner(directions="both")
    assert m.back is not None and len(m.state_dict()) > len(_aligner().state_dict())
    g = torch.Generator().manual_seed(2)
    wav = torch.randn(2, SR, generator=g)
    wav[1, SR // 2:] = 0
    lens, toks, tl = torch.tensor([SR, SR // 2]), torch.tensor([[1, 2, 3], [4, 5, -1]]), torch.tensor([3, 2])
    with torch.no_grad():
        both = m.loss(wav, lens, toks, tl)
        one = m._loss(wav, lens, toks, tl, backward=False)
        back = m._loss(reverse_padded(wav, lens), lens, torch.tensor([[3, 2, 1], [5, 4, -1]]), tl, backward=True)
    assert torch.allclose(both, one + back) and not torch.allclose(one, back)


def test_training_augmentations():
    """Speed perturbation plays a batch at one of the given speeds (length and valid lengths scaled, a tone's
    pitch scaled alike; 1.0 leaves it as is); frequency masks zero mel bands in training only."""
    from avsr.models.aligner import speed_perturb
    t = torch.arange(SR) / SR
    wav = torch.stack([torch.sin(2 * np.pi * 500 * t), torch.sin(2 * np.pi * 500 * t) * (t < 0.5)])
    lens = torch.tensor([SR, SR // 2])
    same, sl = speed_perturb(wav, lens, (1.0,))
    assert same is wav and sl is lens
    for f in (0.9, 1.1):
        out, ol = speed_perturb(wav, lens, (f,))
        assert out.shape[1] == round(SR / f) and ol.tolist() == [round(SR / f), round(SR / 2 / f)]
        spec = torch.fft.rfft(out[0]).abs()
        peak = float(spec.argmax()) * SR / out.shape[1]
        assert abs(peak - 500 * f) < 5, (f, peak)
    torch.manual_seed(3)
    picks = {speed_perturb(wav, lens, (0.9, 1.0, 1.1))[0].shape[1] for _ in range(30)}
    assert picks == {round(SR / 0.9), SR, round(SR / 1.1)}
    m = LocalAligner(AlignerConfig(vocab_size=6, d=32, freq_masks=2))
    x = torch.randn(1, SR)
    feats_eval, _ = m.eval().front(x, torch.tensor([SR]))
    torch.manual_seed(0)
    feats_train, _ = m.train().front(x, torch.tensor([SR]))
    zero_bands = (feats_train[0] == 0).all(0)
    assert zero_bands.any() and torch.equal(feats_train[0][:, ~zero_bands], feats_eval[0][:, ~zero_bands])
    assert not (feats_eval[0] == 0).all(0).any()
    with pytest.raises(ValueError, match="speed_perturb"):
        AlignerConfig(vocab_size=6, speed_perturb=(0.1,))


def test_vtlp_moves_a_tone_by_the_warp_factor():
    """Vocal tract length perturbation: factor 1 leaves the power spectrum as it is; below the knee a tone at
    f moves to alpha * f, above it the warp is the line to Nyquist (0 and Nyquist stay), each utterance of a batch
    by its own factor; the aligner warps in training only, with factors drawn from its range."""
    from avsr.models.front_nets import vtlp
    K = 257
    nyq = SR / 2
    hz = torch.linspace(0, nyq, K)
    power = torch.stack([torch.exp(-0.5 * ((hz - c) / 40.0) ** 2) for c in (1000.0, 1000.0, 6500.0)])[:, None]
    same = vtlp(power, torch.ones(3), SR)
    assert torch.allclose(same, power, atol=1e-6)
    out = vtlp(power, torch.tensor([0.9, 1.1, 1.1]), SR)
    peaks = hz[out[:, 0].argmax(-1)]
    knee_out = 4800.0                                     # f_hi * min(1.1, 1); the source knee is 4800 / 1.1
    above = nyq - (nyq - 6500.0) * (nyq - knee_out) / (nyq - 4800.0 / 1.1)
    for got, want in zip(peaks.tolist(), (900.0, 1100.0, above)):
        assert abs(got - want) <= nyq / (K - 1), (got, want)
    ramp = hz.expand(2, 1, K)
    warped = vtlp(ramp, torch.tensor([0.9, 1.1]), SR)
    assert torch.allclose(warped[:, 0, [0, -1]], torch.tensor([[0.0, nyq]] * 2), atol=1e-3)
    assert (warped[:, 0].diff(dim=-1) > 0).all()              # a monotone map of frequency
    m = LocalAligner(AlignerConfig(vocab_size=6, d=32, vtlp=(0.9, 1.1)))
    plain = LocalAligner(AlignerConfig(vocab_size=6, d=32))
    plain.load_state_dict(m.state_dict())
    x = torch.randn(2, SR)
    lens = torch.tensor([SR, SR])
    assert torch.equal(m.eval().encode(x, lens)[0], plain.eval().encode(x, lens)[0])
    seen = []
    front = m.front.forward
    m.front.forward = lambda wav, n, warp=None: (seen.append(warp), front(wav, n, warp))[1]
    with torch.no_grad():
        m.eval().encode(x, lens)
        for _ in range(20):
            m.train().encode(x, lens)
    assert seen[0] is None
    drawn = torch.cat(seen[1:])
    assert drawn.min() >= 0.9 and drawn.max() <= 1.1 and drawn.std() > 0.03 and len(set(drawn.tolist())) == 40
    for bad in ((1.1, 0.9), (0.9,), (0.3, 1.0)):
        with pytest.raises(ValueError, match="vtlp"):
            AlignerConfig(vocab_size=6, vtlp=bad)


def test_utterance_cmn_removes_the_input_gain():
    """With ``utterance_cmn`` the scores do not change when the input is twice as loud (a constant per mel bin is
    removed by the utterance's mean), in a padded batch too; without it they do."""
    g = torch.Generator().manual_seed(4)
    w = 0.1 * torch.randn(1, 2 * SR, generator=g)
    lens = torch.tensor([2 * SR])
    for cmn in (True, False):
        m = _aligner(utterance_cmn=cmn)
        a, _ = m.encode(w, lens)
        b, _ = m.encode(2 * w, lens)
        assert torch.allclose(a, b, atol=1e-3) == cmn
    m = _aligner(utterance_cmn=True)
    pb, lb = m.encode(torch.cat([torch.nn.functional.pad(w, (0, SR)), 0.1 * torch.randn(1, 3 * SR, generator=g)]),
                      torch.tensor([2 * SR, 3 * SR]))
    alone, la = m.encode(w, lens)
    assert torch.allclose(pb[0, :int(la[0])], alone[0], atol=1e-5)


def test_cepstra_smooth_the_log_mel_spectrum_before_normalisation():
    """``cepstral_smoother(n, k)`` is the orthogonal projection onto the first k DCT-II vectors (symmetric,
    idempotent, rank k; the identity for k = n): it keeps a slow spectral slope and removes a ripple of period
    4 bins (pitch harmonics' scale).  With ``cepstra`` the network reads the raw log-mel spectrum so smoothed and
    then normalised by the global mean (smoothed) and std, not the normalised spectrum smoothed: the two differ
    when the std differs between bins, as it does here; padded frames stay 0."""
    P = cepstral_smoother(80, 13)
    assert torch.allclose(P, P.T) and torch.allclose(P @ P, P, atol=1e-6)
    assert int(torch.linalg.matrix_rank(P)) == 13
    assert torch.allclose(cepstral_smoother(80, 80), torch.eye(80), atol=1e-6)
    slope = torch.linspace(-1, 1, 80)[None] ** 2
    ripple = torch.cos(np.pi / 80 * (torch.arange(80) + 0.5) * 40)[None]     # DCT-II coefficient 40 alone
    assert (slope @ P - slope).abs().max() < 0.05 and (ripple @ P).abs().max() < 1e-4
    g = torch.Generator().manual_seed(5)
    w = 0.1 * torch.randn(2, 2 * SR, generator=g)
    lens = torch.tensor([2 * SR, SR])
    mean, std = torch.randn(80, generator=g), 0.5 + torch.rand(80, generator=g) * 3
    seen = {}
    for k in (13, 0):
        m = _aligner(cepstra=k)
        m.front.set_normalization(mean, std)
        h = m.sub[0].register_forward_pre_hook(lambda mod, args: seen.__setitem__(k, args[0].transpose(1, 2)))
        m.encode(w, lens)
        h.remove()
    raw, flens = m.front.fbank(w, lens)
    valid = (torch.arange(raw.size(1))[None] < flens[:, None])[..., None]
    assert torch.allclose(seen[0], (raw - mean) / std * valid, atol=1e-4)
    want = ((raw @ P) - mean @ P) / std * valid
    assert torch.allclose(seen[13], want, atol=1e-4)
    assert not torch.allclose(seen[13], ((raw - mean) / std) @ P * valid, atol=1e-2)
    assert seen[13][1, int(flens[1]):].abs().max() == 0


def test_frame_clock_is_the_audio_clock():
    """A click at time tau moves the scores most at the frame whose centre is nearest tau."""
    m = _aligner(layers=0)
    off, stride = m.frame_times()
    base = 0.01 * torch.randn(1, 2 * SR, generator=torch.Generator().manual_seed(2))
    a, _ = m.encode(base, torch.tensor([2 * SR]))
    for tau in (0.5, 0.913, 1.37):
        w = base.clone()
        k = int(tau * SR)
        w[0, k - 40:k + 40] += 1.0
        b, _ = m.encode(w, torch.tensor([2 * SR]))
        t = int((a - b).abs().sum(-1)[0].argmax())
        assert abs(off + (t + 0.5) * stride - tau) <= stride, (tau, t)


def _tone_corpus(n_utts=48, seed=0):
    """Utterances of 3-5 tokens (1..4), each a tone of its own pitch for 0.15-0.3 s at a random time, with
    silence and noise between: (waveforms, token lists, [(start, end)] per token)."""
    rng = np.random.default_rng(seed)
    freqs = {1: 300.0, 2: 700.0, 3: 1300.0, 4: 2500.0}
    out = []
    for _ in range(n_utts):
        toks = list(rng.integers(1, 5, size=rng.integers(3, 6)))
        t, parts, times = 0.2 + rng.uniform(0, 0.3), [], []
        for k in toks:
            d = rng.uniform(0.15, 0.3)
            times.append((t, t + d))
            t += d + rng.uniform(0.0, 0.08)
        n = int((t + 0.2) * SR)
        x = 0.02 * rng.standard_normal(n)
        for k, (s, e) in zip(toks, times):
            i = np.arange(int(s * SR), int(e * SR))
            x[i] += 0.5 * np.sin(2 * np.pi * freqs[k] * i / SR)
        out.append((x.astype(np.float32), [int(k) for k in toks], times))
    return out


@pytest.fixture(scope="module")
def tone_aligner():
    """An aligner with two directions, trained with CTC and label priors on the tones of :func:`_tone_corpus`."""
    torch.manual_seed(0)
    m = LocalAligner(AlignerConfig(vocab_size=6, d=48, layers=2, directions="both"))
    feats = [torch.as_tensor(x) for x, _, _ in _tone_corpus(64)]
    mean = torch.cat([m.front.fbank(f[None], torch.tensor([len(f)]))[0][0] for f in feats]).mean(0)
    std = torch.cat([m.front.fbank(f[None], torch.tensor([len(f)]))[0][0] for f in feats]).std(0)
    m.front.set_normalization(mean, std)
    train = _tone_corpus(64, seed=0)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    m.train()
    for step in range(100):
        idx = np.random.default_rng(step).choice(len(train), 8, replace=False)
        xs = [train[i] for i in idx]
        L = max(len(x) for x, _, _ in xs)
        wav = torch.stack([torch.nn.functional.pad(torch.as_tensor(x), (0, L - len(x))) for x, _, _ in xs])
        lens = torch.tensor([len(x) for x, _, _ in xs])
        T = max(len(t) for _, t, _ in xs)
        tok = torch.tensor([t + [0] * (T - len(t)) for _, t, _ in xs])
        loss = m.loss(wav, lens, tok, torch.tensor([len(t) for _, t, _ in xs]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return m.eval()


def _tone_share(m, direction=None, channel=None):
    """Share of held-out tone midpoints within 80 ms (and the median error), the audio through ``channel``."""
    errs = []
    for x, toks, times in _tone_corpus(16, seed=99):
        tt = m.times(x if channel is None else channel(x), toks, direction=direction)
        errs += [abs((a.start + a.end) / 2 - (s + e) / 2) for a, (s, e) in zip(tt, times)]
    return float(np.mean(np.array(errs) <= 0.08)), float(np.median(errs))


def test_it_learns_to_time_tokens_by_their_sound(tone_aligner):
    """Trained with CTC and label priors on tones at random times (syllable-like: 0.15-0.3 s, at most
    80 ms apart), the aligner puts 90 % of the token midpoints of held-out utterances within 80 ms of the
    truth (a model that placed tokens by their position, or a wrong frame clock, would not); with directions
    "both", so do the backward network (trained on the reversed utterances, its times mapped back) and the
    mean of the two."""
    for direction in ("forward", "backward", None):     # None: the mean of the two (directions "both")
        share, med = _tone_share(tone_aligner, direction)
        assert share >= 0.9, f"{direction}: {share:.2f} of tokens within 80 ms (median {med * 1000:.0f} ms)"


def _boost_above_1khz(x):
    """A channel training never had: +20 dB above 1 kHz (zero-phase, noise and tones alike)."""
    spec = np.fft.rfft(x)
    spec[np.fft.rfftfreq(len(x), 1 / SR) > 1000] *= 10.0
    return np.fft.irfft(spec, len(x)).astype(np.float32)


def test_adaptation_to_the_given_text_undoes_a_channel_training_never_had(tone_aligner):
    """Through a +20 dB treble boost the trained tone aligner times fewer than half the tokens within 80 ms; with
    ``adapt_steps`` 30 (each utterance's input scale and shift per mel bin fitted to the CTC loss of its known
    text, each direction's network for itself) it times 85 %, and on the clean audio adaptation keeps its 90 %.
    The weights, their gradients and the training mode are left as they were; under torch.inference_mode it
    still adapts."""
    m = tone_aligner
    before = {k: v.clone() for k, v in m.state_dict().items()}
    grads = [None if p.grad is None else p.grad.clone() for p in m.parameters()]
    assert _tone_share(m, channel=_boost_above_1khz)[0] < 0.5
    m.cfg = dataclasses.replace(m.cfg, adapt_steps=30)
    try:
        assert _tone_share(m, channel=_boost_above_1khz)[0] >= 0.85
        assert _tone_share(m)[0] >= 0.9
        x, toks, _ = _tone_corpus(1, seed=98)[0]
        with torch.inference_mode():
            adapted = m.times(_boost_above_1khz(x), toks)
        m.cfg = dataclasses.replace(m.cfg, adapt_steps=0)
        assert [(t.start, t.end) for t in adapted] != [(t.start, t.end) for t in m.times(_boost_above_1khz(x), toks)]
    finally:
        m.cfg = dataclasses.replace(m.cfg, adapt_steps=0)
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    assert all((g is None and p.grad is None) or torch.equal(g, p.grad) for g, p in zip(grads, m.parameters()))
    assert not m.training


def _aligner_dir(d: Path, toks, seed=0, directions="forward"):
    """An avsr train_aligner dir with random weights (what pack and transcribe read)."""
    import yaml

    from avsr.utils.checkpoint import save_checkpoint
    d.mkdir(parents=True, exist_ok=True)
    (d / "tokens.txt").write_text("".join(t + "\n" for t in toks), encoding="utf-8")
    cfg = AlignerConfig(vocab_size=len(toks), d=32, layers=1, directions=directions)
    torch.manual_seed(seed)
    save_checkpoint(LocalAligner(cfg).state_dict(), d / "aligner.pth")
    (d / "aligner_config.yaml").write_text(yaml.safe_dump({"aligner": cfg.to_dict()}), encoding="utf-8")
    return d


def test_a_packed_aligner_times_the_tokens_of_transcribe(tmp_path):
    """avsr pack --aligner_dir carries the aligner (checksummed); from_packed loads it and transcribe's
    token times are its alignment of the decoded text, not the CTC's; aligner=None gives
    the CTC's again; align_adapt_steps sets its adaptation (load_model and avsr decode), and avsr decode aligns
    only for the outputs with token times.  An aligner with another token list is refused naming its tokens.txt."""
    from avsr import load_model
    from avsr.models import AVSRModel, load_config
    from avsr.pack import PackError, pack_model
    from avsr.text.tokens import write_token_list
    toks = ["<blank>", "<unk>"] + list("我们今天去北京") + ["<sos/eos>"]
    write_token_list(toks, str(tmp_path / "tokens.txt"))
    torch.manual_seed(0)
    m = AVSRModel(load_config(ROOT / "conf" / "micro.yaml", vocab_size=len(toks), mode="audio"))
    al = _aligner_dir(tmp_path / "al", toks, directions="both")
    pack_model(tmp_path / "packed", model_config=m.cfg.to_dict(), token_list=tmp_path / "tokens.txt",
               weights=m.state_dict(), aligner_dir=al)
    meta = json.loads((tmp_path / "packed" / "meta.json").read_text())
    assert {"aligner.pth", "aligner_config.yaml"} <= set(meta["sha256"]) and meta["aligner"]["receptive_field_s"] > 0
    audio = (0.3 * np.random.default_rng(0).standard_normal(2 * SR)).astype(np.float32)
    with_al = load_model(tmp_path / "packed", beam_size=2, maxlenratio=0.1)     # at most 5 tokens
    assert with_al.aligner is not None
    tr = with_al.transcribe(audio, segmentation="none")
    seg = tr.segments[0]
    assert seg.text                                     # random weights (seed 0) decode some text
    ref = load_aligner(al)
    off, stride = ref.frame_times()
    ids = [toks.index(t["token"]) for t in seg.tokens]
    fwd = token_times(ref.align_scores(audio).numpy(), ids, offset=off, stride=stride)
    # the backward network reads the reversed audio: its token k is token n-1-k, reversed time t is dur - t
    dur = len(audio) / SR
    bwd = token_times(ref.align_scores(audio, backward=True).numpy(), ids[::-1], offset=off, stride=stride)[::-1]
    want = [((f.start + dur - b.end) / 2, (f.end + dur - b.start) / 2) for f, b in zip(fwd, bwd)]
    assert max(abs(f.end - (dur - b.start)) for f, b in zip(fwd, bwd)) > 0.02      # the two directions differ
    got = [x for t in seg.tokens for x in (t["start"], t["end"])]
    assert got == pytest.approx([x for w in want for x in w], abs=1.5e-3)
    assert all(0 <= t["conf"] <= 1 for t in seg.tokens)          # posteriors, not the prior-adjusted scores
    ctc = load_model(tmp_path / "packed", beam_size=2, maxlenratio=0.1, aligner=None).transcribe(audio, segmentation="none")
    assert ctc.text == tr.text and [(t["start"], t["end"]) for t in ctc.segments[0].tokens] != \
        [tuple(round(x, 3) for x in w) for w in want]
    # align_adapt_steps (load_model, avsr decode --align_adapt_steps) sets the aligner's adaptation: the times are
    # then the adapted alignment's, which differ
    adapted = load_model(tmp_path / "packed", beam_size=2, maxlenratio=0.1, align_adapt_steps=3)
    assert adapted.aligner.cfg.adapt_steps == 3
    ref.cfg = dataclasses.replace(ref.cfg, adapt_steps=3)
    want3 = [(x.start, x.end) for x in ref.times(audio, ids)]
    seg3 = adapted.transcribe(audio, segmentation="none").segments[0]
    assert [(t["start"], t["end"]) for t in seg3.tokens] == want3 and want3 != [tuple(w) for w in want]
    # avsr decode times tokens only for the outputs that carry them (jsonl, ctm), by the aligner when there is one
    import soundfile as sf

    from avsr.bin import decode_pairs
    sf.write(tmp_path / "a.wav", audio, SR)
    calls = []
    orig = LocalAligner.times
    try:
        LocalAligner.times = lambda self, *a, **k: calls.append(self.cfg.adapt_steps) or orig(self, *a, **k)
        for fmt, n in (("text", 0), ("srt", 0), ("ctm", 1), ("jsonl", 1)):
            calls.clear()
            assert decode_pairs.main(["--model", str(tmp_path / "packed"), "--wav", str(tmp_path / "a.wav"),
                                      "--segmentation", "none", "--beam_size", "2", "--output_format", fmt,
                                      "--align_adapt_steps", "2", "--output", str(tmp_path / f"o.{fmt}")]) == 0
            assert calls == [2] * n, fmt
    finally:
        LocalAligner.times = orig
    assert (tmp_path / "o.ctm").read_text().strip() and (tmp_path / "o.text").read_text().strip()
    with pytest.raises(SystemExit, match="align_adapt_steps"):
        decode_pairs.main(["--model", str(tmp_path / "packed"), "--wav", str(tmp_path / "a.wav"), "--align_adapt_steps", "-1"])
    # a changed aligner file fails the checksum; another token list is refused at pack time
    p = tmp_path / "packed" / "aligner.pth"
    p.write_bytes(p.read_bytes()[:-8] + b"00000000")
    with pytest.raises(PackError, match="aligner.pth"):
        load_model(tmp_path / "packed")
    other = _aligner_dir(tmp_path / "al2", toks[:-2] + ["海", "<sos/eos>"])
    with pytest.raises(PackError, match="al2/tokens.txt"):
        pack_model(tmp_path / "p2", model_config=m.cfg.to_dict(), token_list=tmp_path / "tokens.txt",
                   weights=m.state_dict(), aligner_dir=other)


def test_train_aligner_resumes_keeps_and_moves_aside(tmp_path, capsys):
    """avsr train_aligner on a small Kaldi dir writes what pack reads; the same command again keeps the
    finished run (another device or progress display too, or other alignment-only settings, which its config then
    takes); another configuration moves the old run aside and trains anew."""
    import soundfile as sf

    from avsr.bin import train_aligner
    d = tmp_path / "data"
    d.mkdir()
    rng = np.random.default_rng(0)
    texts = {"u1": "你好", "u2": "世界你", "u3": "好的", "u4": "的世界"}
    for u in texts:
        sf.write(d / f"{u}.wav", (0.1 * rng.standard_normal(SR)).astype(np.float32), SR)
    (d / "wav.scp").write_text("".join(f"{u} {d / (u + '.wav')}\n" for u in texts))
    (d / "text").write_text("".join(f"{u} {t}\n" for u, t in texts.items()), encoding="utf-8")
    (d / "utt2spk").write_text("".join(f"{u} s\n" for u in texts))
    toks = tmp_path / "tokens.txt"
    toks.write_text("".join(t + "\n" for t in ["<blank>", "<unk>", *"你好世界的", "<sos/eos>"]), encoding="utf-8")
    exp = tmp_path / "al"
    args = ["--train_data", str(d), "--valid_data", str(d), "--token_list", str(toks), "--exp_dir", str(exp),
            "--set", "trainer.max_epochs=1", "trainer.progress=false", "trainer.batch_size=2", "trainer.batch_bins=null",
            "aligner.d=16", "aligner.layers=1"]
    assert train_aligner.main(args) == 0
    res = json.loads((exp / "train_result.json").read_text())
    assert res["train_utterances"] == 4 and res["parameters"] > 0
    al = load_aligner(str(exp))                         # what pack and transcribe load
    assert al.cfg.d == 16 and al.cfg.vocab_size == 8
    # directions "both" (conf/aligner.yaml): each network is what a one-direction run trains, the backward one on
    # the reversed utterances (here a data dir of reversed wavs and texts)
    assert al.cfg.directions == "both" and (exp / "forward" / "train.log").is_file()
    r = tmp_path / "rev"
    r.mkdir()
    for u, t in texts.items():
        x, _ = sf.read(d / f"{u}.wav", dtype="float32")
        sf.write(r / f"{u}.wav", x[::-1], SR)
    (r / "wav.scp").write_text("".join(f"{u} {r / (u + '.wav')}\n" for u in texts))
    (r / "text").write_text("".join(f"{u} {t[::-1]}\n" for u, t in texts.items()), encoding="utf-8")
    (r / "utt2spk").write_text("".join(f"{u} s\n" for u in texts))
    stats = tmp_path / "stats.json"        # one normalisation for all three runs (not each data dir's own)
    stats.write_text(json.dumps({"mean": [0.0] * 80, "std": [1.0] * 80}))
    both = ["--stats", str(stats)] + [str(tmp_path / "both") if a == str(exp) else a for a in args]
    assert train_aligner.main(both) == 0
    al = load_aligner(str(tmp_path / "both"))
    one = ["--stats", str(stats)] + args + ["aligner.directions=forward"]
    assert train_aligner.main(one[:one.index("--exp_dir") + 1] + [str(tmp_path / "fw")] + one[one.index("--exp_dir") + 2:]) == 0
    rev = [str(r) if a == str(d) else a for a in one]
    assert train_aligner.main(rev[:rev.index("--exp_dir") + 1] + [str(tmp_path / "bw")] + rev[rev.index("--exp_dir") + 2:]) == 0
    fw, bw = load_aligner(str(tmp_path / "fw")), load_aligner(str(tmp_path / "bw"))
    assert fw.back is None and torch.equal(al.out.weight, fw.out.weight) and torch.equal(al.log_prior, fw.log_prior)
    assert torch.equal(al.back.out.weight, bw.out.weight) and torch.equal(al.back.log_prior, bw.log_prior)
    assert not torch.equal(al.out.weight, al.back.out.weight)
    # a one-direction --init starts the forward network of a "both" run; the backward one starts from the fresh draws
    half = ["--stats", str(stats)] + [str(tmp_path / "half") if a == str(exp) else a for a in args] + ["trainer.lr=0.0"]
    assert train_aligner.main(half + ["--init", str(tmp_path / "fw")]) == 0
    h = load_aligner(str(tmp_path / "half"))
    from avsr.trainer import TrainerConfig
    torch.manual_seed(TrainerConfig().seed)
    fresh = LocalAligner(AlignerConfig(vocab_size=8, d=16, layers=1))
    assert torch.equal(h.out.weight, fw.out.weight) and torch.equal(h.back.out.weight, fresh.out.weight)
    capsys.readouterr()
    assert train_aligner.main(args + ["--device", "cpu", "--set", "trainer.progress=true"]) == 0
    assert "trained" in capsys.readouterr().out
    # a run written before a setting existed (here: no topology, rule, speed_perturb or adaptation) counts as the
    # same run
    import yaml
    cfg_path = exp / "aligner_config.yaml"
    written = yaml.safe_load(cfg_path.read_text())
    for k in ("topology", "rule", "speed_perturb", "adapt_steps", "adapt_lr"):
        written["aligner"].pop(k)
    written.pop("init")
    cfg_path.write_text(yaml.safe_dump(written))
    assert train_aligner.main(args) == 0 and "trained" in capsys.readouterr().out
    # alignment-only settings (adaptation) keep the finished run and go into its config, where load_aligner reads them
    w0 = (exp / "aligner.pth").read_bytes()
    assert train_aligner.main(args + ["aligner.adapt_steps=7", "aligner.adapt_lr=0.05", "aligner.rule=own",
                                      "aligner.posterior_scale=0.5", "aligner.posterior_margin=3"]) == 0
    assert "trained" in capsys.readouterr().out and not list(tmp_path.glob("al.stale-*"))
    kept = load_aligner(str(exp))
    assert (kept.cfg.adapt_steps, kept.cfg.adapt_lr, kept.cfg.rule) == (7, 0.05, "own")
    assert (kept.cfg.posterior_scale, kept.cfg.posterior_margin) == (0.5, 3)
    assert (exp / "aligner.pth").read_bytes() == w0                   # not trained again
    conf = yaml.safe_load((ROOT / "conf" / "aligner.yaml").read_text())["aligner"]
    assert train_aligner.main(args) == 0
    back = load_aligner(str(exp)).cfg
    assert (back.adapt_steps, back.rule, back.posterior_scale) == (conf["adapt_steps"], conf["rule"], conf["posterior_scale"])
    capsys.readouterr()
    assert train_aligner.main(args[:-2] + ["aligner.layers=2"]) == 0
    assert "moved to" in capsys.readouterr().out
    assert load_aligner(str(exp)).cfg.layers == 2 and len(list(tmp_path.glob("al.stale-*"))) == 1
    # --init: another run (moved aside), starting from the given aligner's weights and label prior
    start = load_aligner(str(exp))
    ft = args[:-2] + ["aligner.layers=2", "trainer.lr=0.0"]
    ft[ft.index(str(exp))] = str(tmp_path / "ft")
    assert train_aligner.main(ft + ["--init", str(exp)]) == 0
    got = load_aligner(str(tmp_path / "ft"))
    for (k, a), b in zip(start.named_parameters(), got.parameters()):
        assert torch.allclose(a, b), k                        # lr 0: the init's weights, not a fresh draw
    assert train_aligner.main(ft + ["--init", str(exp / "aligner.pth")]) == 0
    assert "moved to" in capsys.readouterr().out               # another init is another run
    with pytest.raises(SystemExit, match="init .*aligner.pth"):
        train_aligner.main(ft[:-2] + ["aligner.layers=3", "--init", str(exp)])
