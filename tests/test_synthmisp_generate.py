"""SynthMISP generator: layout, determinism across --nj, resume, and the two proxy checks (tiny preset)."""
import glob
import hashlib
import json
import os
import re

import numpy as np
import pytest
import soundfile as sf

from avsr.synthmisp import generate as G

SESSION_RE = r"R\d\d_S(?:\d{3}){2,}_C\d\d_I\d+"


def _digest(root):
    out = {}
    for p in sorted(glob.glob(os.path.join(root, "**", "*"), recursive=True)):
        if os.path.isfile(p) and os.path.basename(p) != "generation_stats.json":
            with open(p, "rb") as f:
                out[os.path.relpath(p, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("synth") / "tiny_nj2")
    summary = G.generate(root, "tiny", seed=3, nj=2, progress=False)
    return root, summary


def test_layout(tiny):
    root, summary = tiny
    k = G.knobs_for("tiny")
    for split, n in zip(G.SPLITS, k.sessions):
        videos = sorted(glob.glob(f"{root}/video/{split}/far/*_Far.mp4"))
        assert len(videos) == n
        for v in videos:
            sess = os.path.basename(v)[: -len("_Far.mp4")]
            assert re.fullmatch(SESSION_RE, sess), sess
            spk = re.findall(r"\d{3}", sess.split("_")[1])
            for c in range(k.n_channels):
                info = sf.info(f"{root}/audio/{split}/far/{sess}_Far_{c}.wav")
                assert info.samplerate == 16000 and info.channels == 1 and info.subtype == "PCM_16"
            for s in spk:
                tg = open(f"{root}/transcription/{split}/{sess}_Near_{s}.TextGrid", encoding="utf-8").read()
                assert "内容层" in tg
            det = json.load(open(f"{root}/detection/{split}/far/{sess}_Far.json"))
            assert sorted(det["speakers"]) == sorted(spk)
            assert det["width"] <= 640 and det["height"] <= 360
    assert summary["splits"]["train"]["segments"] >= 8


def test_video_stream(tiny):
    import av
    root, _ = tiny
    v = sorted(glob.glob(f"{root}/video/dev/far/*.mp4"))[0]
    with av.open(v) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "h264"
        assert abs(float(s.average_rate) - 25) < 1e-6
        assert s.width <= 640 and s.height <= 360
        n = sum(1 for _ in c.decode(s))
    det = json.load(open(v.replace("/video/", "/detection/").replace(".mp4", ".json")))
    assert n == det["num_frames"]


def test_marks_and_texts(tiny):
    root, _ = tiny
    texts = "".join(open(p, encoding="utf-8").read()
                               for p in glob.glob(f"{root}/transcription/*/*.TextGrid"))
    assert "<NOISE>" in texts or "<DEAF>" in texts
    chars = set(re.findall(r'text = "([^"<]+)"', texts))
    assert all(6 <= len(t) <= 16 for t in chars)


def test_detection_misses_and_channels(tiny):
    root, _ = tiny
    miss = []
    for f in glob.glob(f"{root}/detection/*/far/*.json"):
        d = json.load(open(f))
        for tr in d["speakers"].values():
            miss.append(1 - len(tr["frames"]) / d["num_frames"])
    assert 0.03 <= np.mean(miss) <= 0.25
    # two channels: not identical, and the cross-correlation peaks at a small lag
    w0 = sorted(glob.glob(f"{root}/audio/train/far/*_Far_0.wav"))[0]
    a, _ = sf.read(w0)
    b, _ = sf.read(w0.replace("_Far_0.wav", "_Far_1.wav"))
    assert not np.allclose(a, b)
    n = 16000 * 4
    lags = range(-10, 11)
    cc = [np.dot(a[20:n - 20], b[20 + l:n - 20 + l]) for l in lags]
    assert abs(list(lags)[int(np.argmax(cc))]) <= G.Knobs().mic_delay_max


def test_deterministic_across_nj_and_resume(tiny, tmp_path):
    root, _ = tiny
    other = str(tmp_path / "tiny_nj1")
    G.generate(other, "tiny", seed=3, nj=1, progress=False)
    assert _digest(root) == _digest(other)
    # resume: finished sessions are skipped and nothing changes
    before = _digest(other)
    G.generate(other, "tiny", seed=3, nj=1, progress=False)
    stats = json.load(open(os.path.join(other, "generation_stats.json")))
    assert stats["resumed_sessions"] == sum(G.knobs_for("tiny").sessions)
    assert _digest(other) == before


def test_proxy_checks_tiny(tiny):
    from avsr.synthmisp.checks import tracking_check, viseme_check
    root, _ = tiny
    v = viseme_check(root, "train", per_class=120, seed=0)
    assert v["accuracy"] >= 0.70, v
    t = tracking_check(root, "train")
    assert t["segments"] >= 1
    assert t["r_target"] >= 0.5 and t["r_target"] - t["r_interferer"] >= 0.3, t
