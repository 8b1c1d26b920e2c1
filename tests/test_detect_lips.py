"""Lip boxes when a set has none: tracking, speaker-to-face matching, the frame-keyed output, the CLI."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from frontends.face_tracks import FaceHit, Track, assign_speakers, link_tracks, official_entries

ROOT = Path(__file__).resolve().parents[1]


def _hit(t, cx, motion=0.0, w=40.0):
    face = (cx - w / 2, 100.0, cx + w / 2, 100.0 + w)
    mouth = (cx - w / 4, 126.0, cx + w / 4, 137.0)
    return FaceHit(t, face, mouth, motion)


def test_link_tracks_follows_faces_and_starts_new_ones():
    frames = [[_hit(0, 100), _hit(0, 300)], [_hit(5, 305), _hit(5, 104)], [_hit(10, 600)],
              [_hit(200, 102)]]                       # frame 200: too long after -> new track
    tracks = link_tracks(frames, max_gap=25)
    centres = [[round(h.center[0]) for h in t.hits] for t in tracks]
    assert centres == [[100, 104], [300, 305], [600], [102]]


def test_assign_speakers_by_mouth_motion_while_talking():
    # two faces; speaker 16 talks in frames 0-49 (left mouth moves), speaker 17 in 50-99 (right)
    left = Track([_hit(t, 100, motion=9.0 if t < 50 else 1.0) for t in range(0, 100, 5)])
    right = Track([_hit(t, 300, motion=1.0 if t < 50 else 8.0) for t in range(0, 100, 5)])
    ranges = {16: [(0, 50)], 17: [(50, 100)]}
    assign, scores = assign_speakers([left, right], ranges)
    assert assign == {16: 0, 17: 1}
    assign, _ = assign_speakers([right, left], ranges)        # order of tracks does not matter
    assert assign == {16: 1, 17: 0}
    # the Hungarian choice, not a greedy one: speaker 16 prefers track 0 only slightly, speaker 17 needs it
    a = Track([_hit(t, 100, motion=5.0) for t in range(0, 100, 5)])
    b = Track([_hit(t, 300, motion=4.9 if t < 50 else 0.0) for t in range(0, 100, 5)])
    assign, _ = assign_speakers([a, b], ranges)
    assert assign == {16: 1, 17: 0}
    # a speaker with too few detections in its segments gets no face
    assign, scores = assign_speakers([left], {16: [(0, 50)], 17: [(95, 96)]})
    assert assign == {16: 0} and scores[17] == {}


def test_official_entries_fill_short_gaps_only():
    tr = Track([_hit(0, 100), _hit(5, 110), _hit(30, 120)])
    m = official_entries([tr], {16: 0}, stride=5)
    keys = sorted(int(k) for k in m)
    assert keys == [0, 1, 2, 3, 4, 5, 30]                 # 5 -> 30 is longer than the stride: no fill
    e = m["2"][0]
    assert e["id"] == 16 and set(e) == {"id", "x1", "y1", "x2", "y2", "lip"}
    assert e["x1"] == round(100 - 20 + 0.4 * 10) and all(isinstance(v, int) for v in e["lip"])
    # and the release reader takes it as a speaker "016" track
    from frontends.lip_boxes import load_detections
    import tempfile, os
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "R01_S016017_C01_I0_Far.json")
        with open(p, "w") as f:
            json.dump(m, f)
        det = load_detections(p)
    assert "016" in det.speakers


def _two_face_video(path: Path, n: int = 40):
    import cv2
    import skimage.data

    from avsr.synthmisp.render import encode_mp4
    face = cv2.resize(skimage.data.astronaut(), (256, 256))
    base = np.full((300, 600, 3), 200, np.uint8)
    base[20:276, 20:276] = face
    base[20:276, 324:580] = face
    rng = np.random.default_rng(0)
    frames = []
    for t in range(n):
        f = base.copy()
        x0 = 20 if t < n // 2 else 324                       # whose mouth moves (astronaut mouth ~ (111, 72))
        m = f[20 + 68:20 + 80, x0 + 100:x0 + 124].astype(np.int16) + int(rng.integers(-40, 40))
        f[20 + 68:20 + 80, x0 + 100:x0 + 124] = np.clip(m, 0, 255).astype(np.uint8)
        frames.append(f)
    encode_mp4(str(path), np.stack(frames))


def test_cli_matches_speakers_to_faces(tmp_path):
    video = tmp_path / "R01_S016017_C01_I0_Far.mp4"
    _two_face_video(video)
    d = tmp_path / "data"
    d.mkdir()
    rec = "R01_S016017_C01_I0_Far"
    (d / "video.scp").write_text(f"{rec} {video}\n")
    (d / "wav.scp").write_text(f"{rec} {tmp_path / 'x.wav'}\n")
    (d / "segments").write_text(f"S016_a {rec} 0.00 0.80\nS017_b {rec} 0.80 1.60\n")
    (d / "utt2spk").write_text("S016_a S016\nS017_b S017\n")
    (d / "spk2utt").write_text("S016 S016_a\nS017 S017_b\n")
    out = tmp_path / "det"
    p = subprocess.run([sys.executable, "-m", "avsr.bin.detect_lips", "--data_dir", str(d), "--out_dir", str(out),
                        "--stride", "2"], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    m = json.loads((out / f"{rec}.json").read_text())
    xs = {16: [], 17: []}
    for entries in m.values():
        for e in entries:
            xs[e["id"]].append((e["lip"][0] + e["lip"][2]) / 2)
    assert xs[16] and xs[17]
    assert np.mean(xs[16]) < 300 < np.mean(xs[17])          # speaker 16 = the left face, 17 = the right
    rep = json.loads((out / "detect_report.json").read_text())
    assert rep["recordings"][rec]["speaker_track"]
    # resume: the file is kept, and an unreadable video is reported while the rest goes on
    (d / "video.scp").write_text(f"{rec} {video}\nR02_S001_C01_I0_Far {tmp_path / 'nope.mp4'}\n")
    (d / "segments").write_text(f"S016_a {rec} 0.00 0.80\nS017_b {rec} 0.80 1.60\n"
                                f"S001_c R02_S001_C01_I0_Far 0.00 0.80\n")
    (d / "utt2spk").write_text("S001_c S001\nS016_a S016\nS017_b S017\n")
    (d / "spk2utt").write_text("S001 S001_c\nS016 S016_a\nS017 S017_b\n")
    (d / "wav.scp").write_text(f"{rec} {tmp_path / 'x.wav'}\nR02_S001_C01_I0_Far {tmp_path / 'y.wav'}\n")
    p = subprocess.run([sys.executable, "-m", "avsr.bin.detect_lips", "--data_dir", str(d), "--out_dir", str(out)],
                       cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "nope.mp4" in p.stderr
    rep = json.loads((out / "detect_report.json").read_text())
    assert "reused" in rep["recordings"][rec] and "error" in rep["recordings"]["R02_S001_C01_I0_Far"]
