"""CTC forced alignment (avsr.alignment), the energy VAD (frontends.vad), SynthMISP's character
times, and the timing accuracy on SynthMISP (slow): the local CTC aligner (avsr.models.aligner) trained on
SynthMISP's demo preset, aligned with the reference text of held-out sessions, against the generator's
character times."""
from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from avsr.alignment import AlignmentError, ctc_occupancy, ctc_viterbi, frame_times, token_spans, token_times
from frontends.constants import SAMPLE_RATE
from frontends.vad import VadConfig, energy_vad, frame_levels

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- Viterbi
def _collapse(seq, blank=0):
    out, prev = [], None
    for s in seq:
        if s != prev and s != blank:
            out.append(s)
        prev = s
    return out


def _brute_best(lp, y):
    """Best CTC path by enumeration: (score, labels per frame)."""
    T, V = lp.shape
    best = (-np.inf, None)
    for seq in itertools.product(range(V), repeat=T):
        if _collapse(seq) == list(y):
            sc = sum(lp[t, s] for t, s in enumerate(seq))
            if sc > best[0] + 1e-12:
                best = (sc, seq)
    return best


def _path_score(lp, y, path):
    return sum(lp[t, (y[k] if k >= 0 else 0)] for t, k in enumerate(path))


@pytest.mark.parametrize("seed", range(6))
def test_viterbi_is_the_best_path(seed):
    """On random posteriors, the returned path is a valid CTC path of the tokens and its score
    equals the best over every path (enumerated)."""
    rng = np.random.default_rng(seed)
    T, V = 6, 4
    lp = np.log(rng.dirichlet(np.ones(V), size=T)).astype(np.float32)
    y = [[1, 2], [2, 2], [1, 2, 3], [3], [1, 1, 2], [3, 1, 3]][seed]
    path = ctc_viterbi(lp, y)
    labels = [y[k] if k >= 0 else 0 for k in path]
    assert _collapse(labels) == y
    # token indices on the path are non-decreasing and each token is visited
    ks = [k for k in path if k >= 0]
    assert ks == sorted(ks) and sorted(set(ks)) == list(range(len(y)))
    best, _ = _brute_best(lp, y)
    assert abs(_path_score(lp, y, path) - best) < 1e-4


def _state_paths(T, L, topology):
    """Every state path of ``L`` tokens over ``T`` frames on the extended states ``0 .. 2L`` (even: blank),
    with the moves of :func:`ctc_viterbi`'s topology (``repeat``: which tokens repeat the one before)."""
    S = 2 * L + 1

    def rec(path):
        if len(path) == T:
            if path[-1] >= S - 2:
                yield list(path)
            return
        s = path[-1]
        for n in (s, s + 1, s + 2):
            if n < S and (n != s + 2 or (n % 2 == 1 and topology(n))):
                yield from rec(path + [n])
    for s0 in (0, 1):
        yield from rec([s0])


@pytest.mark.parametrize("seed", range(5))
def test_hmm_topology_viterbi_and_forward_by_enumeration(seed):
    """The hmm topology: the Viterbi path is the best of all its paths (a repeat needs no blank between)
    and the forward sum of :func:`avsr.models.aligner.topology_nll` is their log-sum-exp (both
    enumerated); on the CTC topology the sum is torch's CTC loss."""
    import torch

    from avsr.models.aligner import topology_nll
    rng = np.random.default_rng(seed)
    T, V = 6, 4
    lp = np.log(rng.dirichlet(np.ones(V), size=T))
    y = [[1, 1], [2, 2, 3], [1, 2, 3], [3, 3, 3], [2, 1]][seed]
    L = len(y)

    def score(path):
        return sum(lp[t, y[(s - 1) // 2] if s % 2 else 0] for t, s in enumerate(path))
    paths = list(_state_paths(T, L, lambda n: True))
    scores = np.array([score(p) for p in paths])
    got = ctc_viterbi(lp, y, topology="hmm")
    states, last = [], -1                                 # token index per frame -> state (blank after token k: 2k + 2)
    for k in got:
        states.append(2 * k + 1 if k >= 0 else 2 * last + 2)
        last = k if k >= 0 else last
    assert states in paths and score(states) == pytest.approx(scores.max(), abs=1e-9)
    lpt = torch.tensor(lp, dtype=torch.float64)[None]
    args = (torch.tensor([T]), torch.tensor([y]), torch.tensor([L]))
    assert float(topology_nll(lpt, *args, topology="hmm")[0]) == pytest.approx(-np.logaddexp.reduce(scores), abs=1e-9)
    ctc_paths = list(_state_paths(T, L, lambda n: n >= 3 and y[(n - 1) // 2] != y[(n - 3) // 2]))
    ctc = -np.logaddexp.reduce([score(p) for p in ctc_paths])
    ref = torch.nn.functional.ctc_loss(lpt.transpose(0, 1), torch.tensor(y), torch.tensor([T]), torch.tensor([L]),
                                       reduction="none")
    assert float(topology_nll(lpt, *args, topology="ctc")[0]) == pytest.approx(ctc, abs=1e-9)
    assert float(ref[0]) == pytest.approx(ctc, abs=1e-9)


def test_hmm_topology_tokens_hold_their_frames():
    """On the hmm topology a token holds the frames where it is likely and a repeat follows directly
    (CTC cannot place it in so few frames); the ``own`` rule gives each token its frames."""
    T, V = 12, 4
    lp = np.full((T, V), np.log(0.1))
    truth = [0, 0, 1, 1, 1, 1, 1, 2, 2, 0, 0, 0]           # label per frame: 0 blank; tokens 1 1 2 (a repeat)
    for t in range(T):
        lp[t, truth[t]] = np.log(0.7)
    y = [1, 1, 2]
    with pytest.raises(AlignmentError):
        ctc_viterbi(lp[:3], y)                             # CTC: 3 tokens with a repeat need 4 frames
    assert list(ctc_viterbi(lp[:3], y, topology="hmm")) == [0, 1, 2]
    path = ctc_viterbi(lp, y, topology="hmm")
    assert list(path[:2]) == [-1, -1] and list(path[-3:]) == [-1, -1, -1] and -1 not in path[2:9]
    assert token_spans(path, 3)[2] == (7, 8)
    tt = token_times(lp, y, offset=0.0, stride=0.04, topology="hmm", rule="own")
    assert [(x.first_frame, x.last_frame) for x in tt][2] == (7, 8)
    assert tt[2].start == pytest.approx(0.28) and tt[2].end == pytest.approx(0.36)
    assert tt[0].start == pytest.approx(0.08)             # no edge frames: the first token starts at its own frame
    with pytest.raises(AlignmentError, match="rule"):
        token_times(lp, y, offset=0.0, stride=0.04, rule="centre")
    with pytest.raises(AlignmentError, match="topology"):
        ctc_viterbi(lp, y, topology="hsmm")


def test_planted_spikes_and_times():
    """Posteriors with spikes at known frames: the spans and the timing rule, by hand."""
    T, V = 20, 5
    lp = np.full((T, V), np.log(0.01), dtype=np.float32)
    lp[:, 0] = np.log(0.96)
    spikes = {3: 2, 4: 2, 9: 3, 15: 2}             # frame -> token
    for t, v in spikes.items():
        lp[t] = np.log(0.01)
        lp[t, v] = np.log(0.96)
    y = [2, 3, 2]
    assert token_spans(ctc_viterbi(lp, y), 3) == [(3, 4), (9, 9), (15, 15)]
    tt = token_times(lp, y, offset=0.026, stride=0.04, edge_frames=2, time_offset=10.0)
    # token 0: from 2 frames before its spike to the middle of the blanks 5..8 (5, 6 go before)
    # token 1: frames 7..12 (blanks 10..14: 10, 11, 12 before, 13, 14 after); token 2: 13..17
    assert [(x.first_frame, x.last_frame) for x in tt] == [(3, 4), (9, 9), (15, 15)]
    exp = [(1, 6), (7, 12), (13, 17)]
    for x, (lo, hi) in zip(tt, exp):
        assert x.start == pytest.approx(10.0 + 0.026 + lo * 0.04, abs=1e-6)
        assert x.end == pytest.approx(10.0 + 0.026 + (hi + 1) * 0.04, abs=1e-6)
        assert x.conf == pytest.approx(0.96, abs=1e-4)


@pytest.mark.parametrize("topology", ["ctc", "hmm"])
def test_ctc_occupancy_by_enumeration(topology):
    """The forward-backward occupancy of each token's state is the posterior share, at the acoustic scale, of the
    enumerated paths that hold that state at that frame (a repeat included: CTC needs a blank between)."""
    rng = np.random.default_rng(3)
    T, V, y, scale = 7, 4, [2, 2, 3], 0.4
    lp = np.log(rng.dirichlet(np.ones(V), size=T))
    ok = (lambda n: True) if topology == "hmm" else (lambda n: n >= 3 and y[(n - 1) // 2] != y[(n - 3) // 2])
    paths = list(_state_paths(T, len(y), ok))
    w = np.array([scale * sum(lp[t, y[(s - 1) // 2] if s % 2 else 0] for t, s in enumerate(p)) for p in paths])
    w = np.exp(w - np.logaddexp.reduce(w))
    want = np.zeros((T, len(y)))
    for p, pw in zip(paths, w):
        for t, s in enumerate(p):
            if s % 2:
                want[t, (s - 1) // 2] += pw
    got = ctc_occupancy(lp, y, scale=scale, topology=topology)
    assert got.shape == (T, len(y))
    np.testing.assert_allclose(got, want, atol=1e-9)
    with pytest.raises(AlignmentError, match="scale"):
        ctc_occupancy(lp, y, scale=0.0)


def _two_tokens(T=40, evidence=((8, 2), (16, 2), (26, 3)), p=0.9):
    lp = np.full((T, 4), np.log((1 - p) / 3))
    lp[:, 0] = np.log(p)
    for t, v in evidence:
        lp[t] = np.log((1 - p) / 3)
        lp[t, v] = np.log(p)
    return lp


def test_posterior_rule_centres_on_the_evidence():
    """Rule ``posterior``: a token with equal evidence at two frames (8 and 16) is centred between them, where the
    best path puts it on one; with one clear spike each, it keeps the split rule's times to half a frame."""
    lp = _two_tokens()
    split = token_times(lp, [2, 3], offset=0.0, stride=0.04)
    post = token_times(lp, [2, 3], offset=0.0, stride=0.04, rule="posterior", posterior_scale=1.0)
    assert (split[0].first_frame, split[0].last_frame) in ((8, 8), (16, 16))
    assert [(x.first_frame, x.last_frame, x.conf) for x in post] == [(x.first_frame, x.last_frame, x.conf) for x in split]
    # token 2 near frame 12 (the mean of 8 and 16), token 3 at 26: their boundary near frame edge 19.5, where the
    # split rule puts it at edge 18 or 22
    assert post[0].end == pytest.approx(19.5 * 0.04, abs=0.02) and post[1].start == post[0].end
    assert abs(split[0].end - 19.5 * 0.04) >= 0.06
    clear = _two_tokens(evidence=((12, 2), (26, 3)))
    a = token_times(clear, [2, 3], offset=0.0, stride=0.04)
    b = token_times(clear, [2, 3], offset=0.0, stride=0.04, rule="posterior")
    assert max(abs(x.start - y.start) + abs(x.end - y.end) for x, y in zip(a, b)) <= 0.02 + 1e-9


def test_posterior_rule_keeps_to_the_speech():
    """At a small acoustic scale the path posterior spreads tokens into silence around them; the posterior margin
    keeps the times where they were when 60 frames of silence come before and after (a bug that drops the window
    moves them, checked below by a margin as long as the input)."""
    lp = _two_tokens(T=32, evidence=((10, 2), (13, 1), (16, 2), (20, 3)))
    sil = np.tile(_two_tokens(T=1, evidence=())[0], (60, 1))
    padded = np.concatenate([sil, lp, sil])
    y = [2, 1, 2, 3]
    kw = dict(offset=0.0, stride=0.04, rule="posterior", posterior_scale=1 / 12)
    mids = lambda tt, shift=0.0: [round((x.start + x.end) / 2 - shift, 3) for x in tt]  # noqa: E731
    base = mids(token_times(lp, y, **kw))
    assert mids(token_times(padded, y, **kw), 60 * 0.04) == pytest.approx(base, abs=1e-6)
    wide = mids(token_times(padded, y, posterior_margin=200, **kw), 60 * 0.04)
    assert max(abs(a - b) for a, b in zip(wide, base)) > 0.08
    with pytest.raises(AlignmentError, match="posterior_margin"):
        token_times(lp, y, offset=0.0, stride=0.04, rule="posterior", posterior_margin=-1)


def test_alignment_errors():
    lp = np.log(np.full((2, 4), 0.25, dtype=np.float32))
    with pytest.raises(AlignmentError, match="need at least 3 frames"):
        ctc_viterbi(lp, [1, 1])                      # a repeat needs a blank between
    assert list(ctc_viterbi(np.log(np.full((3, 4), 0.25)), [1, 1])) == [0, -1, 1]
    with pytest.raises(AlignmentError, match="blank"):
        ctc_viterbi(lp, [0])
    with pytest.raises(AlignmentError, match="token ids"):
        ctc_viterbi(lp, [7])
    assert token_times(lp, [], offset=0, stride=0.04) == []


def test_frame_times_follow_the_config():
    from avsr.models.config import ModelConfig
    cfg = ModelConfig(mode="audiovisual")
    off, stride = frame_times(cfg)
    assert stride == pytest.approx(0.04)
    # conv2d: encoder frame 0 sees fbank frames 0..6, centred on samples 3 * 160 + 256 = 736 (46 ms)
    assert off + stride / 2 == pytest.approx(0.046)
    assert frame_times(cfg, "video") == (0.0, pytest.approx(0.04))
    vgg = ModelConfig(mode="audio", audio_subsampling="vgg")
    assert sum(frame_times(vgg)) - frame_times(vgg)[1] / 2 == pytest.approx(0.031)


# ----------------------------------------------------------------------------- VAD
def _tone(seconds, amp=0.3, f=220.0):
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (amp * np.sin(2 * np.pi * f * t)).astype(np.float32)


def test_vad_finds_bursts_and_bridges_short_gaps():
    rng = np.random.default_rng(0)
    sil = lambda s: (0.001 * rng.standard_normal(int(s * SAMPLE_RATE))).astype(np.float32)  # noqa: E731
    x = np.concatenate([sil(1.0), _tone(1.0), sil(0.2), _tone(0.5), sil(1.5), _tone(0.1), sil(1.0),
                        _tone(0.8), sil(0.5)])
    segs = energy_vad(x)
    # burst 1 + 0.2 s gap + burst 2 merge; the 0.1 s click is dropped; the last burst stays; 0.15 s pads
    assert len(segs) == 2
    (a0, b0), (a1, b1) = segs
    assert a0 == pytest.approx(1.0 - 0.15, abs=0.03) and b0 == pytest.approx(2.7 + 0.15, abs=0.03)
    assert a1 == pytest.approx(5.3 - 0.15, abs=0.03) and b1 == pytest.approx(6.1 + 0.15, abs=0.03)


def test_vad_long_segment_split_at_quietest_point():
    x = np.concatenate([_tone(7.0), 0.05 * _tone(0.15), _tone(6.0)])   # a dip (-26 dB) but no silence
    segs = energy_vad(x, max_segment_s=10.0)
    assert len(segs) == 2 and segs[0][0] == 0.0
    assert 7.0 <= segs[0][1] <= 7.15 and segs[1][0] == segs[0][1]
    assert segs[1][1] == pytest.approx(len(x) / SAMPLE_RATE, abs=0.01)
    assert all(b - a <= 10.0 for a, b in segs)


def test_vad_edge_cases():
    assert energy_vad(np.zeros(SAMPLE_RATE, np.float32)) == []
    assert energy_vad(np.zeros(10, np.float32)) == []
    # one level throughout (all speech): one segment, the whole recording
    assert energy_vad(_tone(3.0)) == [(0.0, 3.0)]
    assert len(frame_levels(np.ones(SAMPLE_RATE))) == 99         # 98 whole windows + a partial one
    with pytest.raises(ValueError):
        VadConfig(max_segment_s=1.5)


# ----------------------------------------------------------------------------- SynthMISP truth and accuracy
pytestmark_espeak = pytest.mark.skipif(not os.path.exists("/usr/bin/espeak-ng") and not os.environ.get("ESPEAK"),
                                       reason="espeak-ng not installed")


@pytestmark_espeak
def test_synthmisp_char_times_tile_the_sounds():
    """Character intervals follow each other inside the utterance; the first starts at the first
    sound (not at the leading pad) and the last ends at the last sound."""
    from avsr.synthmisp import speech
    utt = speech.synthesize("我们去公园", speech.VOICES[0])
    ct = speech.char_times(utt)
    assert [c for c, _, _ in ct] == list("我们去公园")
    sounds = [e for e in utt.events if e.viseme != "sil"]
    assert ct[0][1] == pytest.approx(sounds[0].start) and ct[-1][2] == pytest.approx(sounds[-1].end)
    for (_, s0, e0), (_, s1, e1) in zip(ct, ct[1:]):
        assert s0 < e0 <= s1 < e1


def _run(cmd, **kw):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, *cmd], capture_output=True, text=True, env=env, **kw)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    return p


@pytest.fixture(scope="module")
def synth_aligner(tmp_path_factory):
    """SynthMISP's demo preset (0.4 h of training speech, 48 training sessions; video frames made small, the
    aligner reads only the audio), its stage-1 data dirs, and the local CTC aligner trained on its training
    segments by ``avsr train_aligner`` with ``conf/aligner.yaml``: ``(corpus, dev data dir, aligner dir)``."""
    root = tmp_path_factory.mktemp("align")
    corpus, data, exp = root / "corpus", root / "data", root / "exp"
    p = subprocess.run(["bash", str(ROOT / "recipes" / "synthmisp" / "run.sh"), "--preset", "demo", "--nj", "2",
                        "--gen_args", "--width 160 --height 90", "--corpus_dir", str(corpus), "--exp_dir", str(exp),
                        "--data_dir", str(data), "--stage", "0", "--stop_stage", "1"],
                       capture_output=True, text=True, timeout=1800)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    train = data / "train_all"
    _run(["-m", "avsr.bin.tokens", "--text", str(train / "text"), "--token_type", "char",
          "--output_dir", str(data / "tok")])
    _run(["-m", "avsr.bin.train_aligner", "--train_data", str(train), "--valid_data", str(data / "dev_all"),
          "--token_list", str(data / "tok" / "tokens.txt"), "--exp_dir", str(exp / "aligner"),
          "--set", "trainer.progress=false"], timeout=1800)
    return corpus, data / "dev_all", exp / "aligner"


def _aligner_errors(corpus, dev, aligner_dir):
    """Absolute errors (s) of the aligner's character midpoints on the held-out sessions of ``dev``."""
    from avsr.models.aligner import load_aligner
    from avsr.synthmisp.truth import segment_truths
    from avsr.text.tokens import Tokenizer
    from frontends.audio import load_audio
    al = load_aligner(str(aligner_dir))
    tok = Tokenizer(str(aligner_dir / "tokens.txt"))
    wav = dict(ln.split(" ", 1) for ln in (dev / "wav.scp").read_text().splitlines())
    errs = []
    for st in segment_truths(corpus, dev):
        if st.turn is None:                           # a filler-only interval the official rules keep (嗯嗯)
            continue
        audio = load_audio(wav[st.session + "_Far"], start=st.start, end=st.end)
        tt = al.times(audio, tok.encode(st.text), time_offset=st.start)
        assert len(tt) == len(st.chars)
        errs += [abs((x.start + x.end) / 2 - (a + b) / 2) for x, (_, a, b) in zip(tt, st.chars)]
    return np.array(errs)


@pytestmark_espeak
@pytest.mark.slow
def test_aligner_times_follow_the_sound(synth_aligner):
    """The aligner trained on 0.4 h of SynthMISP (the demo preset; conf/aligner.yaml) times the characters of
    held-out sessions by their sound: at least 45 % of the midpoints within 80 ms and a median error below
    0.1 s (measured 63 % and 58 ms on this preset's dev sessions with the two directions, adaptation and path
    posterior of conf/aligner.yaml, docs/notebook/results/aligner_demo_two_directions_adapt30_posterior.json, and 71 %
    and 49 ms on this test's own corpus; 36 % and 118 ms with the best path's frames, rule split; 93-94 % and 26 ms
    with the mini's 4.3 h, docs/BENCHMARKS.md).
    The recognisers' CTC heads, which place characters by the segment's edges, give about 10 % and 380 ms
    (docs/notebook/ctc_edges.md)."""
    errs = _aligner_errors(*synth_aligner)
    share = float((errs <= 0.08).mean())
    print(f"aligner: {share:.3f} of {len(errs)} characters within 80 ms, median error {np.median(errs) * 1000:.0f} ms")
    assert len(errs) >= 300
    assert share >= 0.45 and float(np.median(errs)) < 0.1, (share, float(np.median(errs)))


# what `make bench-aligner` builds and measures (SynthMISP mini, 4.3 h of training audio; hours of CPU for the corpus
# and the recogniser's statistics, about 23 min for the aligner), in the checkout AVSR_MINI_ROOT (default: this one)
MINI_ROOT = Path(os.environ.get("AVSR_MINI_ROOT", str(ROOT)))
MINI = {"corpus": MINI_ROOT / "corpora" / "synthmisp_mini",
        "eval": MINI_ROOT / "recipes" / "synthmisp" / "data" / "synthmisp_mini" / "eval",
        "aligner": MINI_ROOT / "recipes" / "synthmisp" / "exp" / "synthmisp_mini" / "aligner"}


@pytest.mark.slow
def test_mini_aligner_meets_the_80ms_target():
    """The target: at least 90 % of the character midpoints within 80 ms of the generator's truth, on the eval
    sessions of SynthMISP mini (voices never heard in training) with the aligner of conf/aligner.yaml trained on the
    mini (measured 93.3 %, docs/BENCHMARKS.md, and 93.2 % in this test's run; 85.8 % with the best
    path's frames instead of the path posterior).
    Skipped until `make bench-aligner` has built the mini and its aligner (the demo preset's 0.4 h is far from the
    target: test_aligner_times_follow_the_sound)."""
    missing = [str(p) for p in MINI.values() if not p.exists()]
    if missing:
        pytest.skip(f"no SynthMISP mini aligner (make bench-aligner, or AVSR_MINI_ROOT): {', '.join(missing)}")
    errs = _aligner_errors(MINI["corpus"], MINI["eval"], MINI["aligner"])
    share = float((errs <= 0.08).mean())
    print(f"mini aligner: {share:.3f} of {len(errs)} characters within 80 ms, median error {np.median(errs) * 1000:.0f} ms")
    assert len(errs) >= 5000
    assert share >= 0.9, f"{share:.3f} of {len(errs)} characters within 80 ms (median error {np.median(errs):.3f} s)"
