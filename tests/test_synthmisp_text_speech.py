"""Tests of SynthMISP text generation (avsr.synthmisp.text) and speech synthesis (avsr.synthmisp.speech)."""

from __future__ import annotations

import ctypes
import hashlib
import os
import re

import numpy as np
import pytest

from avsr.synthmisp import text as T

# ---------------------------------------------------------------------------
# text
# ---------------------------------------------------------------------------
SYL_RE = re.compile(r"^[a-z]+[1-5]$")


def test_vocab_size_and_one_char_per_toned_syllable():
    assert len(T.VOCAB) >= 300
    assert len(set(T.VOCAB)) == len(T.VOCAB)
    assert set(T.CHAR2SYL) == set(T.VOCAB)
    syls = list(T.CHAR2SYL.values())
    assert len(set(syls)) == len(syls), "two characters share a toned syllable"
    assert all(SYL_RE.match(s) for s in syls), [s for s in syls if not SYL_RE.match(s)]
    assert {T.SYL2CHAR[s] for s in syls} == set(T.VOCAB)
    assert T.homophone_floor(T.VOCAB) == 0.0


@pytest.mark.parametrize("n", [120, 150, 200, 300])
def test_restricted_inventory_size_coverage_and_no_homophones(n):
    words, vocab = T.restrict_words(n)
    assert len(vocab) <= n and len(vocab) >= n - 5       # the budget is used, not left idle
    assert T.homophone_floor(vocab) == 0.0
    gen = T.TextGenerator(n_chars=n)
    sents = gen.sentences(3000, np.random.default_rng(3))
    used = set("".join(sents))
    assert used <= set(vocab)                              # the grammar never leaves the inventory
    assert len(used) >= 0.97 * len(vocab)                  # and draws on (nearly) all of it
    assert all(T.MIN_LEN <= len(s) <= T.MAX_LEN for s in sents)
    for pos in ("pron", "person", "place", "adj", "vt", "vi", "noun", "time"):
        assert len(words[pos]) >= 2, pos


def test_restricted_inventory_full_and_too_small():
    full = T.TextGenerator().sentences(200, np.random.default_rng(9))
    assert T.TextGenerator(n_chars=0).sentences(200, np.random.default_rng(9)) == full
    assert T.TextGenerator(n_chars=len(T.VOCAB)).sentences(200, np.random.default_rng(9)) == full
    assert T.TextGenerator(n_chars=150).sentences(200, np.random.default_rng(9)) != full
    with pytest.raises(ValueError, match="n_chars=60 is too small"):
        T.restrict_words(60)
    from avsr.synthmisp.generate import knobs_for
    with pytest.raises(ValueError, match="too small"):
        knobs_for("tiny", n_chars=60)
    assert knobs_for("tiny", n_chars=150).n_chars == 150


def test_homophone_floor_counts_homophones():
    # 是/市 are both shi4, 十 is shi2
    assert T.homophone_floor(["是", "市", "十"]) == pytest.approx(1 / 3)
    assert T.homophone_floor([]) == 0.0


def test_every_word_read_by_pypinyin_as_in_char_map():
    from pypinyin import Style, lazy_pinyin

    for w in T._all_words():
        got = lazy_pinyin(w, style=Style.TONE3, neutral_tone_with_five=True)
        assert got == [T.CHAR2SYL[c] for c in w], w


def test_sentences_length_vocab_and_pypinyin_agreement():
    from pypinyin import Style, lazy_pinyin

    gen = T.TextGenerator()
    rng = np.random.default_rng(11)
    sents = [gen.sentence(rng) for _ in range(2000)]
    lens = [len(s) for s in sents]
    assert min(lens) >= T.MIN_LEN == 6 and max(lens) <= T.MAX_LEN == 16
    assert len(set(lens)) >= 8  # a spread of lengths, not one template
    assert set("".join(sents)) <= set(T.VOCAB)
    assert len(set(sents)) > 1900  # hardly any repeats
    for s in sents[:600]:
        py = T.to_pinyin(s)
        assert len(py) == len(s)
        assert py == lazy_pinyin(s, style=Style.TONE3, neutral_tone_with_five=True), s
    assert T.pinyin_string("我们") == "wo3 men5"


def test_sentence_determinism():
    a = T.TextGenerator(seed=1).sentences(50, np.random.default_rng(5))
    b = T.TextGenerator(seed=2).sentences(50, np.random.default_rng(5))
    c = T.TextGenerator().sentences(50, np.random.default_rng(6))
    assert a == b  # only the rng passed in matters
    assert a != c
    # the generator's own rng (seeded) is used when none is given
    assert T.TextGenerator(seed=3).sentences(20) == T.TextGenerator(seed=3).sentences(20)


def test_to_pinyin_rejects_unknown_characters():
    with pytest.raises(KeyError, match="not in the SynthMISP vocabulary"):
        T.to_pinyin("我们吃饺子")
    assert T.to_pinyin("我们， 去。") == ["wo3", "men5", "qu4"]


def test_bigram_perplexity_moderate():
    gen = T.TextGenerator()
    rng = np.random.default_rng(0)
    sents = [gen.sentence(rng) for _ in range(1800)]
    train, test = sents[:1500], sents[1500:]
    ppl = T.bigram_perplexity(train, test)
    assert 10.0 < ppl < 100.0, ppl
    # a memorised text is much more predictable than held-out text
    assert T.bigram_perplexity(train, train[:300]) < ppl
    # unseen characters get a finite probability
    assert np.isfinite(T.bigram_perplexity(train, ["饺子很好吃"]))
    # toy check: deterministic text has perplexity close to 1
    assert T.bigram_perplexity(["ab"] * 100, ["ab"]) < 1.2


# ---------------------------------------------------------------------------
# speech
# ---------------------------------------------------------------------------
def _have_espeak() -> bool:
    try:
        ctypes.CDLL("libespeak-ng.so.1")
        return True
    except OSError:
        return False


espeak = pytest.mark.skipif(not _have_espeak(), reason="libespeak-ng not installed (apt-get install espeak-ng)")


def _md5(u) -> str:
    return hashlib.md5(u.wave.tobytes()).hexdigest()


@espeak
def test_synthesize_wave_and_events():
    from avsr.synthmisp import speech as S

    text = "老王明天买八本杂志"
    u = S.synthesize(text, S.VOICES[0])
    assert u.sr == 16000 and u.wave.dtype == np.float32 and u.wave.ndim == 1
    assert 0.45 <= float(np.max(np.abs(u.wave))) <= 0.5 + 1e-6
    # ~9 syllables of Mandarin: a few syllables per second
    assert 0.1 * len(text) < u.duration < 0.6 * len(text), u.duration
    assert u.pinyin == T.to_pinyin(text)
    ev = u.events
    assert ev[0].start == 0.0 and ev[-1].end == pytest.approx(u.duration, abs=1e-9)
    for a, b in zip(ev, ev[1:]):
        assert a.end == pytest.approx(b.start, abs=1e-9)  # contiguous, monotone
    assert all(e.end > e.start for e in ev)
    assert all(e.viseme in S.VISEMES for e in ev)
    assert {"bilabial", "open", "spread"} <= {e.viseme for e in ev}
    # syllables tile the wave too, one per character
    assert [s.char for s in u.syllables] == list(text)
    assert u.syllables[0].start == 0.0 and u.syllables[-1].end == pytest.approx(u.duration)
    assert all(a.end == pytest.approx(b.start) for a, b in zip(u.syllables, u.syllables[1:]))
    # no silent trimming errors: audio energy at the start and end is small, inside large
    env = S.speech_envelope(u.wave)
    assert env.max() > 0.05 and env[0] < 0.5 * env.max()


@espeak
def test_bilabials_at_plausible_times():
    from avsr.synthmisp import speech as S

    text = "他们买八本书"  # mai3 ba1 ben3: three bilabial onsets
    u = S.synthesize(text, S.VOICES[6])
    bil = [e for e in u.events if e.viseme == "bilabial"]
    targets = [s for s in u.syllables if s.pinyin[0] in "bpm" and not s.pinyin.startswith("men")]
    assert len(targets) == 3
    for syl in targets:  # each b/p/m syllable begins with a bilabial event
        hits = [e for e in bil if syl.start - 0.03 <= e.start <= syl.start + 0.08]
        assert hits, (syl, bil)
        assert all(e.end - e.start < 0.25 for e in hits)
    # and every bilabial lies in a syllable whose pinyin starts with b/p/m (incl. men5)
    for e in bil:
        mid = 0.5 * (e.start + e.end)
        owner = [s for s in u.syllables if s.start <= mid < s.end]
        assert owner and owner[0].pinyin[0] in "bpm", (e, owner)
    # bilabial closures have low acoustic energy relative to the following vowel
    env = S.speech_envelope(u.wave, fps=100)
    for e in bil:
        i0, i1 = int(e.start * 100), max(int(e.end * 100), int(e.start * 100) + 1)
        assert env[i0:i1].mean() < env.max()


@espeak
def test_same_bytes_twice_independent_of_history():
    from avsr.synthmisp import speech as S

    text = "老师在公园散步"
    a = S.synthesize(text, S.VOICES[2])
    S.synthesize("小王买了三杯茶", S.VOICES[8])
    b = S.synthesize(text, S.VOICES[2])
    assert _md5(a) == _md5(b)
    assert a.events == b.events


@espeak
def test_same_bytes_after_fork():
    from avsr.synthmisp import speech as S

    text = "我们明天去图书馆看书"
    want = _md5(S.synthesize(text, S.VOICES[1]))
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: must start its own espeak-ng server and give the same bytes
        code = 1
        try:
            os.close(r)
            os.write(w, _md5(S.synthesize(text, S.VOICES[1])).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    got = b""
    while chunk := os.read(r, 1024):
        got += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert status == 0
    assert got.decode() == want
    assert _md5(S.synthesize(text, S.VOICES[1])) == want  # parent still works


def _median_f0(w: np.ndarray, sr: int = 16000) -> float:
    fr, hop = int(0.04 * sr), int(0.01 * sr)
    lo, hi = int(sr / 450), int(sr / 50)
    f0 = []
    for i in range(0, len(w) - fr, hop):
        x = w[i : i + fr].astype(np.float64)
        if np.sqrt(np.mean(x * x)) < 0.05:
            continue
        x = x - x.mean()
        ac = np.correlate(x, x, "full")[fr - 1 :]
        k = lo + int(np.argmax(ac[lo:hi]))
        if ac[k] > 0.4 * ac[0]:
            f0.append(sr / k)
    return float(np.median(f0))


def _centroid(w: np.ndarray, sr: int = 16000) -> float:
    mag = np.abs(np.fft.rfft(w))
    f = np.fft.rfftfreq(len(w), 1 / sr)
    return float((mag * f).sum() / mag.sum())


@espeak
def test_voices_are_distinct():
    from avsr.synthmisp import speech as S

    assert len(S.VOICES) >= 8
    assert len({v.name for v in S.VOICES}) == len(S.VOICES)
    assert {v.gender for v in S.VOICES} == {"m", "f"}
    text = "老王明天买八本杂志"
    feats = []
    hashes = set()
    for v in S.VOICES:
        u = S.synthesize(text, v)
        hashes.add(_md5(u))
        feats.append((_median_f0(u.wave), _centroid(u.wave), u.duration, v.gender))
    assert len(hashes) == len(S.VOICES)
    # female voices are higher pitched than male ones
    male = [f[0] for f in feats if f[3] == "m"]
    female = [f[0] for f in feats if f[3] == "f"]
    assert min(female) > max(male) * 1.1, (male, female)
    # the twelve base voices: every pair differs clearly in F0, spectral centroid or speaking rate
    base = 12
    for i in range(base):
        for j in range(i + 1, base):
            a, b = feats[i], feats[j]
            rel = [abs(a[k] - b[k]) / max(a[k], b[k]) for k in range(3)]
            assert max(rel) > 0.05, (S.VOICES[i].name, S.VOICES[j].name, a, b)
    # the rest widen the pool (some resemble a base voice, as real speakers do): distinct audio,
    # a spread of pitches and rates for both genders
    assert len(S.VOICES) >= 48
    more = feats[base:]
    assert min(f[0] for f in more if f[3] == "m") < 70 < 110 < max(f[0] for f in more if f[3] == "m")
    assert min(f[0] for f in more if f[3] == "f") > 140 and len([f for f in more if f[3] == "f"]) >= 5
    durs = [f[2] for f in more]
    assert max(durs) / min(durs) > 1.3


def test_viseme_mapping_table():
    from avsr.synthmisp import speech as S

    assert S.VISEMES == ("sil", "bilabial", "labiodental", "rounded", "spread", "open", "other")
    assert set(S.PHONEME_TO_VISEME.values()) <= set(S.VISEMES)
    assert [S.phoneme_to_viseme(p) for p in ("p", "ph", "m")] == ["bilabial"] * 3
    assert S.phoneme_to_viseme("f") == "labiodental"
    assert S.phoneme_to_viseme("u") == "rounded" and S.phoneme_to_viseme("y") == "rounded"
    assert S.phoneme_to_viseme("i") == "spread" and S.phoneme_to_viseme("S;") == "spread"
    assert S.phoneme_to_viseme("A") == "open" and S.phoneme_to_viseme("ai") == "open"
    assert S.phoneme_to_viseme("t") == "other" and S.phoneme_to_viseme("N") == "other"
    assert S.phoneme_to_viseme("_|") == "sil" and S.phoneme_to_viseme("_:") == "sil"
    assert S.phoneme_to_viseme("??") == "other"


def test_speech_envelope():
    from avsr.synthmisp import speech as S

    sr = 16000
    x = np.zeros(sr, np.float32)
    x[6400:12800] = 0.5 * np.sin(2 * np.pi * 200 * np.arange(6400) / sr)
    env = S.speech_envelope(x, sr=sr, fps=25)
    assert env.dtype == np.float32 and env.shape == (25,)
    assert np.all(env[:10] == 0) and np.all(env[20:] == 0)
    assert np.allclose(env[10:20], 0.5 / np.sqrt(2), atol=1e-3)
    assert S.speech_envelope(np.zeros(1000, np.float32)).shape == (2,)  # partial last frame


def test_missing_library_message(monkeypatch):
    from avsr.synthmisp import speech as S

    monkeypatch.setattr(S, "_ENGINE", None)
    monkeypatch.setattr(S, "_library_names", lambda: ["libespeak-ng-does-not-exist.so.9"])
    with pytest.raises(S.EspeakError, match="apt-get install espeak-ng"):
        S.synthesize("我们", S.VOICES[0])
