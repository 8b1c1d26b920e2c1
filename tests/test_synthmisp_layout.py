"""SynthMISP writes the release's forms as the official baselines read them: 6 far channels whose
delays follow the stated array geometry, lip boxes in the frame-keyed JSON, TextGrids with CRLF and
doubled interval headers, and segment files with the official ids and 40 ms boundaries."""
import glob
import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from avsr.synthmisp import generate as G
from avsr.synthmisp import layout as L
from frontends.lip_boxes import OFFICIAL, SpeakerTrack, load_detections, write_official_detections

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "recipes" / "misp2022" / "local"))
import misp  # noqa: E402  (the recipe's reader and official expression: an independent check)

SR = 16000


# ----------------------------------------------------------------------------- helpers
def gcc_phat_lag(x, y, up=32, max_lag=20):
    """Lag (samples, 1/up resolution) by which ``y`` trails ``x`` (GCC-PHAT)."""
    n = len(x) + len(y)
    R = np.fft.rfft(y, n) * np.conj(np.fft.rfft(x, n))
    cc = np.fft.irfft(R / (np.abs(R) + 1e-12), n * up)
    m = max_lag * up
    cc = np.concatenate([cc[-m:], cc[:m + 1]])
    return (int(np.argmax(cc)) - m) / up


def single_talker_stretches(t, min_len=1.0):
    """(speaker index, (start, end)) of stretches >= min_len s in which only that turn is active."""
    st, en, spk = t["turn_start"], t["turn_end"], t["turn_spk"]
    out = []
    for j in range(len(st)):
        a, b = float(st[j]), float(en[j])
        cuts = sorted((max(a, float(st[i])), min(b, float(en[i]))) for i in range(len(st))
                      if i != j and st[i] < b and en[i] > a)
        s = a
        for x, y in cuts + [(b, b)]:
            if x - s >= min_len:
                out.append((int(spk[j]), (s, x)))
            s = max(s, y)
    return out


def espnet_structure_ok(data: bytes) -> int:
    """The structure ESPnet's misp2021 reader asserts (prepare_far_data.py), re-stated; returns the
    number of intervals."""
    lines = data.decode("utf-8").splitlines(keepends=True)
    if lines[-1] == "\r\n":
        lines = lines[:-1]
    assert "File type" in lines[0] and "Object class" in lines[1]
    assert lines[2] == "\r\n" and lines[7] == "item []:\r\n"
    assert "xmin" in lines[3] and "xmax" in lines[4] and "tiers?" in lines[5] and "size" in lines[6]
    start = lines.index("    item [1]:\r\n")
    tier = lines[start + 1:]
    assert "class" in tier[0] and "name" in tier[1] and "intervals: size" in tier[4]
    n = int(tier[4].split("=")[1])
    assert len(tier[5:]) == 5 * n
    for k in range(n):
        head = " " * 8 + f"intervals [{k + 1}]:\r\n"
        assert tier[5 + 5 * k] == head and tier[6 + 5 * k] == head
        assert "xmin" in tier[7 + 5 * k] and "xmax" in tier[8 + 5 * k] and "text" in tier[9 + 5 * k]
    return n


def official_lines_from_textgrids(root, split):
    """The official preparation's kept utterances, from the TextGrids as the recipe reads them and
    the recipe's own official expression (misp.official_boundaries / official_time_units)."""
    punct = [" ", "。", ".", "?", "？", "!", "！", "，", ",", "、"]
    sounds = ["呃", "啊", "噢", "嗯", "唉"]
    out = []
    for p in sorted(glob.glob(f"{root}/transcription/{split}/*.TextGrid")):
        name = misp.parse_near_name(os.path.basename(p))
        for xmin, xmax, text in misp.read_tier(p):
            if text in ("<NOISE>", "<DEAF>") or xmax - xmin < 0.04:
                continue
            t = text
            for c in punct:
                t = t.replace(c, "")
            if t in sounds:
                continue
            s, e = misp.official_boundaries(xmin, xmax)
            seg = (f"S{name.spk}_{name.session}_{misp.official_time_units(s):06d}-"
                   f"{misp.official_time_units(e):06d}")
            out.append(f"{seg} S{name.spk} {name.session}_Far {s} {e}")
    return sorted(out)


# ----------------------------------------------------------------------------- a clean corpus
@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """One session per split with the TV noise 40 dB down, so single-talker stretches show the
    talker's own inter-channel delays."""
    root = str(tmp_path_factory.mktemp("layout") / "clean")
    G.generate(root, "tiny", seed=5, nj=1, progress=False, sessions=(1, 1, 1), snr_db=(40.0, 40.0),
               filler_prob=0.5)
    return root


def test_six_channels_with_the_geometric_delays(clean):
    k = G.knobs_for("tiny")
    assert k.n_channels == 6
    checked = 0
    for f in sorted(glob.glob(f"{clean}/truth/*/*.npz")):
        split, name = f.split("/")[-2], os.path.basename(f)[:-4]
        t = np.load(f)
        wavs = [f"{clean}/audio/{split}/far/{name}_Far_{c}.wav" for c in range(6)]
        assert not os.path.exists(f"{clean}/audio/{split}/far/{name}_Far_6.wav")
        infos = [sf.info(w) for w in wavs]
        assert all(i.samplerate == SR and i.channels == 1 and i.subtype == "PCM_16" for i in infos)
        assert len({i.frames for i in infos}) == 1
        # the stored delays are the stated geometry's: spacing, seats, 343 m/s, nearest mic = 0
        mics = t["mic_positions_m"]
        np.testing.assert_allclose(np.diff(mics[:, 0]), k.mic_spacing_m)
        np.testing.assert_allclose(mics[:, 1], 0.0)
        for s, pos in enumerate(t["speaker_positions_m"]):
            d = np.hypot(*(mics - pos).T)
            np.testing.assert_allclose(t["speaker_delays"][s], (d - d.min()) / 343.0 * SR)
            az = np.rad2deg(np.arctan2(pos[1], pos[0]))
            assert k.spk_azimuth_deg[0] <= az <= k.spk_azimuth_deg[1]
            assert k.spk_distance_m[0] <= np.hypot(*pos) <= k.spk_distance_m[1]
        # the audio follows them: GCC-PHAT of each channel against channel 0 on a single-talker
        # stretch peaks at the geometric delay, to a fraction of a sample
        w = np.stack([sf.read(p)[0] for p in wavs])
        for s, (a, b) in single_talker_stretches(t):
            seg = w[:, int(a * SR) + 800:int(b * SR) - 800]
            geo = t["speaker_delays"][s] - t["speaker_delays"][s][0]
            est = np.array([gcc_phat_lag(seg[0], seg[c]) for c in range(6)])
            assert np.max(np.abs(est - geo)) <= 0.2, (name, s, est, geo)
            checked += 1
    assert checked >= 3


def test_textgrid_bytes_official_form(clean):
    files = sorted(glob.glob(f"{clean}/transcription/*/*.TextGrid"))
    assert files
    fillers = 0
    for p in files:
        data = open(p, "rb").read()
        assert not data.startswith(b"\xef\xbb\xbf")
        assert data.count(b"\n") == data.count(b"\r\n") and data.endswith(b"\r\n\r\n")
        n = espnet_structure_ok(data)
        text = data.decode("utf-8")
        assert 'name = "内容层"' in text
        heads = re.findall(r"^ {8}intervals \[(\d+)\]:\r$", text, flags=re.M)
        assert heads == [str(k) for k in range(1, n + 1) for _ in range(2)]
        got = misp.read_tier(p)
        assert len(got) == n                        # the recipe's reader sees every interval
        assert all(round(s, 2) == s and round(e, 2) == e and e > s for s, e, _ in got)
        fillers += sum(x in G.FILLER_TEXTS for _, _, x in got)
    assert fillers >= 1


def test_segment_files_hold_the_official_ids(clean):
    assert not os.path.exists(f"{clean}/segments/train.txt")
    for split in ("dev", "eval"):
        lines = open(f"{clean}/segments/{split}.txt", encoding="utf-8").read().splitlines()
        assert lines and lines == sorted(lines)
        assert lines == official_lines_from_textgrids(clean, split)
        for ln in lines:
            seg, spk, wav, s, e = ln.split(" ")
            assert seg.startswith(spk + "_") and wav.endswith("_Far")
            assert os.path.isfile(f"{clean}/video/{split}/far/{wav}.mp4")
            a, b = (int(x) for x in seg.rsplit("_", 1)[1].split("-"))
            assert a % 4 == 0 and b % 4 == 0 and b > a          # 40 ms grid, as the release's ids


def test_lip_boxes_in_the_release_form(clean):
    assert not os.path.exists(f"{clean}/detection")
    for f in sorted(glob.glob(f"{clean}/truth/*/*.npz")):
        split, name = f.split("/")[-2], os.path.basename(f)[:-4]
        t = np.load(f)
        p = f"{clean}/roi_coordinates/{split}/far/lip/{name}_Far.json"
        raw = json.load(open(p))
        keys = list(raw)
        assert keys == [str(i) for i in sorted(int(x) for x in keys)]
        for entries in raw.values():
            for e in entries:
                assert set(e) == {"id", "x1", "y1", "x2", "y2", "lip"}
                assert all(type(e[c]) is int for c in ("id", "x1", "y1", "x2", "y2"))
                assert len(e["lip"]) == 4 and all(type(v) is int for v in e["lip"])
        d = load_detections(p)
        assert d.format == OFFICIAL and sorted(d.speakers) == sorted(str(s) for s in t["speakers"])
        for j, spk in enumerate(t["speakers"]):
            tr = d.speakers[str(spk)]
            T = t["boxes"].shape[1]
            assert 0.75 <= len(tr.frames) / T < 0.97
            assert np.abs(tr.boxes - t["boxes"][j, tr.frames]).max() < 6
            assert np.abs(tr.face_boxes - t["face_boxes"][j, tr.frames]).max() < 12


# ----------------------------------------------------------------------------- unit tests
def test_official_json_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    T = 200
    tracks = {}
    for spk in ("005", "012"):
        frames = np.sort(rng.choice(T, size=150, replace=False)).astype(np.int64)
        lip = np.concatenate([rng.uniform(100, 400, (150, 2)), rng.uniform(0, 1, (150, 2))], 1)
        lip[:, 2:] += lip[:, :2] + 30
        face = lip + np.array([-40.0, -90.0, 40.0, 30.0])
        tracks[spk] = SpeakerTrack(frames, lip.astype(np.float32), face_boxes=face.astype(np.float32))
    p = tmp_path / "R01_S005012_C01_I0_Far.json"
    write_official_detections(p, tracks)
    raw = json.load(open(p))
    assert {e["id"] for v in raw.values() for e in v} == {5, 12}
    assert all([e["id"] for e in v] == sorted(e["id"] for e in v) for v in raw.values())
    d = load_detections(p)
    assert d.format == OFFICIAL and sorted(d.speakers) == ["005", "012"]
    last = max(int(tr.frames[-1]) for tr in tracks.values())
    assert d.num_frames == last + 1
    for spk, tr in tracks.items():
        got = d.speakers[spk]
        np.testing.assert_array_equal(got.frames, tr.frames)
        np.testing.assert_array_equal(got.boxes, np.floor(tr.boxes.astype(np.float64) + 0.5))
        np.testing.assert_array_equal(got.face_boxes, np.floor(tr.face_boxes.astype(np.float64) + 0.5))
        detected = ~np.isnan(d.boxes(spk, T)[:, 0])
        want = np.zeros(T, bool)
        want[tr.frames] = True
        np.testing.assert_array_equal(detected, want)
    with pytest.raises(ValueError, match="face boxes"):
        write_official_detections(tmp_path / "x.json", {"001": SpeakerTrack(np.arange(2), np.ones((2, 4), np.float32))})


def test_textgrid_writer_and_reader_agree(tmp_path):
    ivs = [(0.12, 1.5, "你好。"), (1.6, 1.9, "<NOISE>"), (2.0, 2.2, "嗯嗯"), (2.5, 2.53, "啊")]
    p = str(tmp_path / "R01_S001002_C01_I0_Near_001.TextGrid")
    L.write_textgrid(p, ivs, 0.0, 3.0)
    data = open(p, "rb").read()
    assert espnet_structure_ok(data) == 4
    assert data.startswith(b'File type = "ooTextFile"\r\nObject class = "TextGrid"\r\n\r\nxmin = 0.0\r\n')
    assert misp.read_tier(p) == ivs
    with pytest.raises(ValueError, match="quote"):
        L.textgrid_text([(0.0, 1.0, 'a"b')], 0.0, 1.0)


def test_official_rules_and_ids_match_the_recipe_expression():
    assert not L.official_kept(0.0, 1.0, "<NOISE>") and not L.official_kept(0.0, 1.0, "<DEAF>")
    assert not L.official_kept(0.0, 1.0, "嗯") and not L.official_kept(0.0, 1.0, "啊。")
    assert L.official_kept(0.0, 1.0, "嗯嗯") and L.official_kept(0.0, 1.0, "你好")
    assert not L.official_kept(1.0, 1.03, "你好") and L.official_kept(1.0, 1.04, "你好")
    # every 10 ms time up to 12 s, grid points included (0.12 starts at 0.08, 0.2 ends at 0.24)
    assert L.official_boundaries(0.12, 0.2) == (0.08, 0.24)
    for i in range(0, 1200, 1):
        a = round(i / 100, 2)
        b = round(a + 0.37 + (i % 7) / 100, 2)
        assert L.official_boundaries(a, b) == misp.official_boundaries(a, b)
        s, e = L.official_boundaries(a, b)
        seg, s2, e2 = L.official_segment("007", "R02_S007008_C03_I1", a, b)
        assert (s2, e2) == (s, e)
        assert seg == (f"S007_R02_S007008_C03_I1_{misp.official_time_units(s):06d}-"
                       f"{misp.official_time_units(e):06d}")
    assert L.segment_line("007", "R02_S007008_C03_I1", 1.45, 4.85) == \
        "S007_R02_S007008_C03_I1_000144-000488 S007 R02_S007008_C03_I1_Far 1.44 4.88"


def test_fractional_delay_rir():
    rng = np.random.default_rng(1)
    h = G.synth_rir(rng, 0.3, 60.0, 5.0)            # an integer delay is a unit impulse
    assert h[G.FD_HALF + 5] == pytest.approx(1.0) and np.all(h[:G.FD_HALF + 5] == 0)
    x = np.random.default_rng(2).standard_normal(SR)
    ys = [np.convolve(x, G.synth_rir(np.random.default_rng(3), 0.3, 60.0, d))[G.FD_HALF:G.FD_HALF + SR]
          for d in (2.0, 3.3, 7.75)]
    assert gcc_phat_lag(ys[0], ys[1]) == pytest.approx(1.3, abs=0.05)
    assert gcc_phat_lag(ys[0], ys[2]) == pytest.approx(5.75, abs=0.05)


def test_array_geometry():
    mics = G.mic_positions(6, 0.05)
    np.testing.assert_allclose(mics[:, 0], [-0.125, -0.075, -0.025, 0.025, 0.075, 0.125])
    far_end = G.channel_delays(np.array([100.0, 0.0]), mics)        # end-fire, far: full aperture
    np.testing.assert_allclose(far_end, (5 - np.arange(6)) * 0.05 / 343.0 * SR, rtol=1e-3)
    np.testing.assert_allclose(G.channel_delays(np.array([0.0, 100.0]), mics), 0.0, atol=1e-2)
    pos, az, dist = G.seat_positions(np.random.default_rng(0), 3, (20.0, 160.0), (1.5, 4.0))
    assert sorted(np.digitize(az, np.linspace(20, 160, 4)[1:-1])) == [0, 1, 2]   # one seat per sector
    np.testing.assert_allclose(np.hypot(*pos.T), dist)


def test_fillers_lie_in_silence():
    k = G.Knobs(mark_prob=0.0, filler_prob=1.0)
    wave = np.zeros(int(1.5 * SR))
    turns = [G.Turn(0, "甲", 0.5, wave, []), G.Turn(1, "乙", 2.3, wave, []), G.Turn(0, "丙", 4.5, wave, []),
             G.Turn(1, "丁", 6.4, wave, [])]
    seen = set()
    for seed in range(30):
        ivs = G.speaker_intervals(turns, 0, np.random.default_rng(seed), k, 9.0)
        fill = [(s, e, x) for s, e, x in ivs if x in G.FILLER_TEXTS]
        assert fill
        for s, e, x in fill:
            seen.add(x)
            assert 0.1 <= e - s <= 0.31
            assert all(e <= t.start or s >= t.end for t in turns)    # nobody speaks under a filler
    assert seen == set(G.FILLER_TEXTS)
