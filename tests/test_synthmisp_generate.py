"""SynthMISP generator: layout, determinism across --nj, resume, and the two proxy checks (tiny preset).

The release forms themselves (array delays, lip-box JSON, TextGrid bytes, segment files) are
tested in tests/test_synthmisp_layout.py."""
import glob
import hashlib
import json
import os
import re

import numpy as np
import pytest
import soundfile as sf

from avsr.synthmisp import generate as G
from frontends.lip_boxes import load_detections

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
            det = load_detections(f"{root}/roi_coordinates/{split}/far/lip/{sess}_Far.json")
            assert det.format == "misp2022-frame-keyed"
            assert sorted(det.speakers) == sorted(spk)
        assert not os.path.exists(f"{root}/detection")
    assert k.n_channels == 6
    for split in ("dev", "eval"):
        assert os.path.getsize(f"{root}/segments/{split}.txt") > 0
    assert not os.path.exists(f"{root}/segments/train.txt")
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
    truth = np.load(v.replace("/video/", "/truth/").replace("/far/", "/").replace("_Far.mp4", ".npz"))
    assert n == truth["boxes"].shape[1]
    det = json.load(open(v.replace("/video/", "/roi_coordinates/").replace("/far/", "/far/lip/")
                         .replace(".mp4", ".json")))
    assert max(int(f) for f in det) < n


def test_marks_and_texts(tiny):
    root, _ = tiny
    texts = "".join(open(p, encoding="utf-8").read()
                               for p in glob.glob(f"{root}/transcription/*/*.TextGrid"))
    assert "<NOISE>" in texts or "<DEAF>" in texts
    chars = set(re.findall(r'text = "([^"<]+)"', texts)) - set(G.FILLER_TEXTS)
    assert chars and all(6 <= len(t) <= 16 for t in chars)


def test_detection_misses_and_channels(tiny):
    root, _ = tiny
    miss = []
    for f in glob.glob(f"{root}/roi_coordinates/*/far/lip/*.json"):
        d = load_detections(f)
        T = np.load(f.replace("/roi_coordinates/", "/truth/").replace("/far/lip/", "/")
                    .replace("_Far.json", ".npz"))["boxes"].shape[1]
        for tr in d.speakers.values():
            miss.append(1 - len(tr.frames) / T)
    assert 0.03 <= np.mean(miss) <= 0.25
    # the far channels differ, and the cross-correlation of the two end microphones peaks
    # within the array's largest possible delay (its aperture in samples)
    k = G.Knobs()
    w0 = sorted(glob.glob(f"{root}/audio/train/far/*_Far_0.wav"))[0]
    a, _ = sf.read(w0)
    b, _ = sf.read(w0.replace("_Far_0.wav", f"_Far_{k.n_channels - 1}.wav"))
    assert not np.allclose(a, b)
    n = 16000 * 4
    lags = range(-20, 21)
    cc = [np.dot(a[20:n - 20], b[20 + l:n - 20 + l]) for l in lags]
    aperture = (k.n_channels - 1) * k.mic_spacing_m / G.SPEED_OF_SOUND * 16000
    assert abs(list(lags)[int(np.argmax(cc))]) <= np.ceil(aperture)


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


def test_every_turn_is_one_official_segment(tiny):
    """avsr.synthmisp.truth.match_turn on the generator's own official segment lines: each turn of
    the truth is the turn of exactly one segment (of its speaker); a segment with no turn is a
    filler-only interval (short)."""
    from avsr.synthmisp.truth import load_turns, match_turn
    root, _ = tiny
    turns = load_turns(root)
    n_turns = n_fillers = 0
    for f in glob.glob(f"{root}/truth/*/*.json"):
        d = json.load(open(f, encoding="utf-8"))
        hits = {}
        for ln in d["official_segments"]:
            seg, spk, rec, s, e = ln.split()
            assert rec == d["session"] + "_Far"
            t = match_turn(turns[d["session"]], spk, float(s), float(e))
            if t is None:
                assert float(e) - float(s) <= max(G.FILLER_LEN_S) + 0.08, ln
                n_fillers += 1
            else:
                assert t["speaker"] == spk[1:]
                hits.setdefault(id(t), []).append(seg)
        assert sorted(hits) == sorted(id(t) for t in turns[d["session"]]), f
        assert all(len(v) == 1 for v in hits.values())
        n_turns += len(hits)
    assert n_turns >= 8


def test_articulation_knobs_change_only_the_video(tiny, tmp_path):
    # lip_activity / articulation_jitter draw from their own streams: audio, text and lip boxes'
    # files stay byte-identical to the default corpus; the far video (and its lip boxes and truth) change
    root, _ = tiny
    other = str(tmp_path / "tiny_lips")
    G.generate(other, "tiny", seed=3, nj=2, progress=False, lip_activity=(0.3, 0.6), articulation_jitter=0.1)
    a, b = _digest(root), _digest(other)
    assert a.keys() == b.keys()
    changed = {p for p in a if a[p] != b[p]}
    assert changed and all(p.endswith(".mp4") or p == "synthmisp.json" or "/lip/" in p or p.startswith("truth/") for p in changed), changed
    assert any(p.endswith(".mp4") for p in changed)
    assert not any(p.endswith((".wav", ".TextGrid")) for p in changed)
    meta = json.load(open(os.path.join(other, "synthmisp.json")))
    assert meta["knobs"]["lip_activity"] == [0.3, 0.6] and meta["knobs"]["articulation_jitter"] == 0.1
    with pytest.raises(ValueError, match="lip_activity"):
        G.knobs_for("tiny", lip_activity=(0.8, 0.5))


def test_eval_voices_unheard_in_training():
    """Pools up to the voice count: every speaker its own voice, as before (the demo's corpus unchanged);
    larger pools (the mini preset's 48/12/24): no eval speaker's base voice is a training speaker's."""
    from avsr.synthmisp import speech
    from avsr.synthmisp.generate import knobs_for, make_speaker, speaker_ids, voice_index
    V = len(speech.VOICES)
    demo = knobs_for("demo")
    ids = [s for sp in G.SPLITS for s in speaker_ids(demo, sp)]
    assert [voice_index(s, demo, V) for s in ids] == [int(s) - 1 for s in ids]
    k = knobs_for("mini")
    assert k.speaker_pool == (48, 12, 24)
    voices = {sp: {make_speaker(1, s, k).voice.variant for s in speaker_ids(k, sp)} for sp in G.SPLITS}
    idx = {sp: {voice_index(s, k, V) for s in speaker_ids(k, sp)} for sp in G.SPLITS}
    assert len(idx["eval"]) == 24 and not idx["eval"] & (idx["train"] | idx["dev"])
    assert len(idx["train"]) == V - 24                 # training keeps every voice the eval pool leaves
    assert not voices["eval"] & voices["train"]        # variants too: no variant is listed twice
    with pytest.raises(ValueError, match="eval speakers"):
        voice_index("001", G.Knobs(speaker_pool=(4, 2, V)), V)
    with pytest.raises(ValueError, match="eval speakers"):      # refused with the other knobs, before generating
        knobs_for("demo", speaker_pool=(4, 2, V))
