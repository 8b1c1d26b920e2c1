"""The Python API (``from avsr import load_model``; ``model.transcribe``): inputs as paths, arrays or
tensors, video optional, VAD segments with token times, n-best; ``avsr decode`` output formats."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from frontends.constants import ROI_SIZE, SAMPLE_RATE, SAMPLES_PER_FRAME

ROOT = Path(__file__).resolve().parents[1]


def test_import_avsr_is_light():
    code = "import sys, avsr; print(avsr.load_model.__module__, 'torch' in sys.modules, 'numpy' in sys.modules)"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["avsr.api", "False", "False"]


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """A micro AV model with adapters (random weights, seed 0) packed with a 9-token list."""
    import torch

    from avsr.models import AVSRModel, load_config
    from avsr.pack import pack_model
    from avsr.text.tokens import write_token_list
    d = tmp_path_factory.mktemp("model")
    toks = ["<blank>", "<unk>"] + list("我们今天去北京") + ["<sos/eos>"]
    write_token_list(toks, str(d / "tokens.txt"))
    torch.manual_seed(0)
    m = AVSRModel(load_config(ROOT / "conf" / "micro.yaml", vocab_size=len(toks), adapter_rank=2))
    pack_model(d / "packed", model_config=m.cfg.to_dict(), token_list=d / "tokens.txt", weights=m.state_dict())
    return d / "packed"


def _speechlike(seconds, seed=0):
    """Bursts of modulated noise (~syllables) with silences between: something for the VAD."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    x = 0.002 * rng.standard_normal(n)
    for s in (0.5, 2.6):                       # two 1.2 s "phrases"
        a = int(s * SAMPLE_RATE)
        t = np.arange(int(1.2 * SAMPLE_RATE)) / SAMPLE_RATE
        x[a:a + len(t)] += 0.3 * rng.standard_normal(len(t)) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    audio = _speechlike(4.5)
    sf.write(d / "a.wav", audio, SAMPLE_RATE, subtype="FLOAT")         # read back exactly
    rng = np.random.default_rng(1)
    roi = rng.integers(0, 256, (len(audio) // SAMPLES_PER_FRAME, ROI_SIZE, ROI_SIZE), dtype=np.uint8)
    return {"wav": d / "a.wav", "audio": audio, "roi": roi}


@pytest.fixture(scope="module")
def model(packed):
    from avsr import load_model
    return load_model(packed, beam_size=3)


def test_transcribe_segments_and_times(model, media):
    tr = model.transcribe(media["audio"], media["roi"])
    # the VAD finds the two phrases (0.5-1.7 s, 2.6-3.8 s) padded by 0.15 s
    assert [(round(s.start, 1), round(s.end, 1)) for s in tr.segments] == [(0.3, 1.9), (2.4, 4.0)]
    assert tr.text == "".join(s.text for s in tr.segments)
    assert tr.score == pytest.approx(sum(s.score for s in tr.segments))
    assert tr.modality == "audiovisual" and tr.duration == pytest.approx(4.5)
    for s in tr.segments:
        assert len(s.tokens) == len(s.text)                    # character model: one token per character
        assert "".join(t["token"] for t in s.tokens) == s.text
        for t in s.tokens:                                     # times relative to the recording, inside the segment
            assert s.start - 1e-6 <= t["start"] < t["end"] <= s.end + 0.05 and 0 <= t["conf"] <= 1
        for a, b in zip(s.tokens, s.tokens[1:]):
            assert a["end"] <= b["start"] + 1e-6
    assert tr.nbest[0]["text"] == tr.text


def test_inputs_paths_arrays_tensors_and_no_video(model, media):
    import torch
    a, roi = media["audio"], media["roi"]
    ref = model.transcribe(a, roi)
    t = model.transcribe(torch.from_numpy(a), torch.from_numpy(roi))
    assert [s.text for s in t.segments] == [s.text for s in ref.segments]
    assert t.score == pytest.approx(ref.score, abs=1e-3)
    # an 88x88 (already cropped) ROI array is taken as is
    c = model.transcribe(a, roi[:, 4:92, 4:92])
    assert c.score == pytest.approx(ref.score, abs=1e-3)
    # no video: the audio-only path, with a warning; the same as the path form
    na = model.transcribe(a)
    assert na.modality == "audio" and any("no video" in w for w in na.warnings)
    p = model.transcribe(str(media["wav"]))
    assert p.text == na.text and p.score == pytest.approx(na.score, abs=1e-3)
    assert p.segments[0].start == na.segments[0].start
    with pytest.raises(TypeError, match="both as file paths or both as arrays"):
        model.transcribe(str(media["wav"]), roi)
    with pytest.raises(TypeError, match="file inputs only"):
        model.transcribe(a, roi, detection="x.json")
    with pytest.raises(ValueError, match="1-D"):
        model.transcribe(np.zeros((2, SAMPLE_RATE), np.float32))
    # int16 PCM is scaled as an int16 wav is read; a float video (e.g. in [0, 1]) is refused, not cast
    pcm = np.round(a * 32767).clip(-32768, 32767).astype(np.int16)
    assert model.transcribe(pcm).score == pytest.approx(model.transcribe(pcm / 32768.0).score, abs=1e-3)
    with pytest.raises(TypeError, match="float .* or int16 / int32 PCM, got torch.uint8"):
        model.transcribe(np.zeros(SAMPLE_RATE, np.uint8))
    with pytest.raises(TypeError, match="video must be uint8 pixels"):
        model.transcribe(a, roi / 255.0)
    # an array at another rate is resampled with sample_rate (as a file at that rate would be)
    from frontends.audio import resample
    a8 = resample(a, SAMPLE_RATE, 8000).astype(np.float32)
    r8 = model.transcribe(a8, sample_rate=8000)
    assert r8.duration == pytest.approx(4.5, abs=1e-3)
    assert r8.score == pytest.approx(model.transcribe(resample(a8, 8000, SAMPLE_RATE).astype(np.float32)).score, abs=1e-3)
    with pytest.raises(TypeError, match="sample_rate applies to an audio array"):
        model.transcribe(str(media["wav"]), sample_rate=8000)
    # a video array much shorter than the audio is decoded with a warning, as a file pair is
    assert any("video is 4.1 s shorter than the audio (10 frames" in w for w in model.transcribe(a, roi[:10]).warnings)
    assert not any("shorter than the audio" in w for w in ref.warnings)


def test_an_audio_model_never_opens_the_video_file(packed, media, tmp_path):
    """An audio-only model ignores the video: a missing or corrupt video file is not read (no error,
    no video warning), and the result equals the decode without it."""
    import torch

    from avsr import load_model
    from avsr.models import AVSRModel, load_config
    from avsr.pack import pack_model
    torch.manual_seed(0)
    m = AVSRModel(load_config(ROOT / "conf" / "micro.yaml", vocab_size=10, mode="audio"))
    pack_model(tmp_path / "a0", model_config=m.cfg.to_dict(), token_list=packed / "tokens.txt", weights=m.state_dict())
    a0 = load_model(tmp_path / "a0", beam_size=2)
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    ref = a0.transcribe(str(media["wav"]))
    for v in (tmp_path / "bad.mp4", tmp_path / "missing.mp4"):
        tr = a0.transcribe(str(media["wav"]), str(v))
        assert tr.text == ref.text and tr.score == pytest.approx(ref.score) and tr.modality == "audio"
        assert "video_decode" not in tr.timings


def test_segmentation_modes(model, media):
    a = media["audio"]
    whole = model.transcribe(a, segmentation="none")
    assert [(s.start, s.end) for s in whole.segments] == [(0.0, 4.5)]
    fixed = model.transcribe(a, segmentation="fixed", max_segment_seconds=2.0)
    assert [(s.start, s.end) for s in fixed.segments] == [(0.0, 2.0), (2.0, 4.0), (4.0, 4.5)]
    short = model.transcribe(a, vad_options={"max_segment_s": 2.5, "min_piece_s": 0.5, "pad_s": 0.5})
    assert all(s.end - s.start <= 2.5 + 1e-6 for s in short.segments)
    assert model.transcribe(np.zeros(2 * SAMPLE_RATE, np.float32)).segments == []


def test_nbest(model, media):
    tr = model.transcribe(media["audio"], media["roi"], nbest=4)
    one = model.transcribe(media["audio"], media["roi"])
    for seg, ref in zip(tr.segments, one.segments):
        texts = [h["text"] for h in seg.nbest]
        scores = [h["score"] for h in seg.nbest]
        assert len(seg.nbest) == 4 and len(set(texts)) == 4
        assert scores == sorted(scores, reverse=True)
        assert texts[0] == seg.text
    assert len(tr.nbest) == 4 and len({h["text"] for h in tr.nbest}) == 4
    assert [h["score"] for h in tr.nbest] == sorted((h["score"] for h in tr.nbest), reverse=True)
    assert tr.nbest[0]["text"] == tr.text and tr.nbest[0]["score"] == pytest.approx(tr.score)
    assert model.nbest == 1 and model.keep_posteriors is False      # transcribe restores the decoder's settings


def test_beam_search_nbest_distinct():
    """batch_beam_search returns N distinct token sequences, finite scores, best first; the first is
    the 1-best of a search with nbest=1."""
    import torch

    from avsr.decoding import batch_beam_search
    torch.manual_seed(0)
    B, T, V = 2, 12, 7
    logp = torch.log_softmax(torch.randn(B, T, V) * 2, -1)
    enc = torch.zeros(B, T, 4)
    lens = torch.tensor([12, 9])
    kw = dict(beam_size=6, sos=V - 1, eos=V - 1, ctc_weight=1.0, vocab_size=V)
    many = batch_beam_search(None, logp, enc, lens, nbest=5, **kw)
    one = batch_beam_search(None, logp, enc, lens, nbest=1, **kw)
    for hs, h1 in zip(many, one):
        assert len(hs) == 5 and len({tuple(h.yseq) for h in hs}) == 5
        sc = [h.score for h in hs]
        assert sc == sorted(sc, reverse=True) and all(np.isfinite(sc))
        assert hs[0].yseq == h1[0].yseq


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "avsr.cli", "decode", *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, **kw)


def test_cli_formats(packed, media, tmp_path):
    sys.path.insert(0, str(ROOT / "tests"))
    from test_output_formats import parse_ctm, parse_srt, parse_vtt
    wav = media["wav"]
    p = _cli("--model", packed, "--wav", wav, "--beam_size", "3", "--nbest", "3")
    assert p.returncode == 0, p.stderr[-2000:]
    rec = json.loads(p.stdout)
    assert rec["key"] == "a" and rec["chunks"] == len(rec["segments"]) == 2 and rec["modality"] == "audio"
    assert len(rec["nbest"]) == 3 and rec["nbest"][0]["text"] == rec["text"]
    assert {"start", "end", "text", "score", "tokens", "nbest"} <= set(rec["segments"][0])
    assert "timing" in rec and "audio_load" in rec["timing"]
    srt = parse_srt(_cli("--model", packed, "--wav", wav, "--beam_size", "3", "--output_format", "srt").stdout)
    assert [(round(a, 1), round(b, 1)) for a, b, _ in srt] == [(0.3, 1.9), (2.4, 4.0)][:len(srt)]
    assert "".join(t for _, _, t in srt) == rec["text"]
    vtt = parse_vtt(_cli("--model", packed, "--wav", wav, "--beam_size", "3", "--output_format", "vtt").stdout)
    assert vtt == srt
    ctm = parse_ctm(_cli("--model", packed, "--wav", wav, "--beam_size", "3", "--output_format", "ctm").stdout)
    assert "".join(w for *_, w, _ in ctm) == rec["text"] and all(k == "a" for k, *_ in ctm)   # a.wav
    txt = _cli("--model", packed, "--wav", wav, "--beam_size", "3", "--output_format", "text").stdout
    assert txt == rec["text"] + "\n"
    # several pairs: srt goes to one file per key in --output DIR; kaldi lines
    lst = tmp_path / "pairs.tsv"
    lst.write_text(f"one\t{wav}\t-\ntwo\t{wav}\t-\n")
    q = _cli("--model", packed, "--pairs", lst, "--beam_size", "3", "--output_format", "srt", "--output",
             tmp_path / "subs", "--no_progress")
    assert q.returncode == 0, q.stderr[-2000:]
    assert sorted(os.listdir(tmp_path / "subs")) == ["one.srt", "two.srt"]
    assert parse_srt((tmp_path / "subs" / "one.srt").read_text(encoding="utf-8")) == srt
    r = _cli("--model", packed, "--pairs", lst, "--beam_size", "3", "--output_format", "srt", "--no_progress")
    assert r.returncode != 0 and "--output DIR" in r.stderr
    k = _cli("--model", packed, "--pairs", lst, "--beam_size", "3", "--output_format", "kaldi", "--no_progress")
    assert k.stdout.splitlines() == [f"one {rec['text']}", f"two {rec['text']}"]
