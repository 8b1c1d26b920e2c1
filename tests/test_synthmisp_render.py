"""SynthMISP video: mouth tracks, face rendering, h264 encoding, detections, and the proxy checks."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pytest

av = pytest.importorskip("av")

from avsr.synthmisp import proxy, render as R  # noqa: E402
from frontends.lip_boxes import load_detections, write_detections  # noqa: E402
from frontends.roi import center_crop, crop_roi  # noqa: E402

VIS = ("sil", "bilabial", "labiodental", "rounded", "spread", "open", "other")


@dataclass
class Ev:  # same fields as speech.PhoneEvent
    phoneme: str
    viseme: str
    start: float
    end: float


def random_events(rng, dur, lo=0.08, hi=0.2):
    t, ev = 0.0, []
    while t < dur:
        d = rng.uniform(lo, hi)
        ev.append(Ev("x", VIS[rng.integers(len(VIS))], t, t + d))
        t += d
    return ev


def centre_labels(ev, T, fps=25):
    lab = np.zeros(T, dtype=np.int64)    # 0 = sil outside events
    c = (np.arange(T) + 0.5) / fps
    for e in ev:
        a, b = np.searchsorted(c, [e.start, e.end])
        lab[a:b] = VIS.index(e.viseme)
    return lab


# ----------------------------------------------------------------------------- mouth tracks
def test_mouth_track_targets_and_bilabial_closures():
    ev = [Ev("a", "open", 0.20, 0.44), Ev("p", "bilabial", 0.44, 0.52), Ev("a", "open", 0.52, 0.862),
          Ev("b", "bilabial", 0.862, 0.895),          # 33 ms between frame centres 0.86 and 0.90
          Ev("a", "open", 0.895, 1.2), Ev("m", "bilabial", 1.2, 1.4)]
    T = 45
    tr = R.mouth_track(ev, T)
    assert tr.shape == (T, 3) and tr.dtype == np.float32
    assert np.all(np.isfinite(tr))
    # frames outside all events are sil (after smoothing has settled)
    np.testing.assert_allclose(tr[:2], np.tile(R.VISEME_TARGETS["sil"], (2, 1)), atol=1e-6)
    np.testing.assert_allclose(tr[-5:], np.tile(R.VISEME_TARGETS["sil"], (5, 1)), atol=1e-6)
    # bilabial frames (centre inside the event) are closed, even the 1-2 frame ones
    for s, e in [(0.44, 0.52), (1.2, 1.4)]:
        idx = np.flatnonzero(((np.arange(T) + 0.5) / 25 >= s) & ((np.arange(T) + 0.5) / 25 < e))
        assert len(idx) >= 2
        assert np.all(tr[idx, 0] <= R.CLOSURE_MAX_OPENING + 1e-6)
    # the short closure claims the frame holding its midpoint (0.8785 s: frame 21, 0.84-0.88 s),
    # although that frame's centre lies in the preceding open vowel
    assert tr[21, 0] <= R.CLOSURE_MAX_OPENING + 1e-6
    assert tr[20, 0] < 0.9 and tr[22, 0] < 0.9
    # the open vowels in between open wide; smoothing did not erase them
    assert tr[8, 0] > 0.8 and tr[16, 0] > 0.8
    # coarticulation: the frame before a closure is already partly closing
    assert 0.1 < tr[10, 0] < 0.99
    # empty input, zero frames
    assert R.mouth_track([], 0).shape == (0, 3)
    np.testing.assert_allclose(R.mouth_track([], 4), np.tile(R.VISEME_TARGETS["sil"], (4, 1)), atol=1e-6)


def test_mouth_track_articulation_knobs():
    rng = np.random.default_rng(3)
    ev = random_events(rng, 3.0)
    T = 75
    base = R.mouth_track(ev, T).astype(np.float64)
    sil = np.asarray(R.VISEME_TARGETS["sil"])
    # the defaults are the plain track; jitter 0 draws nothing from the rng
    r0 = np.random.default_rng(0)
    np.testing.assert_array_equal(R.mouth_track(ev, T, activity=1.0, jitter=0.0, rng=r0), base.astype(np.float32))
    assert r0.integers(1 << 30) == np.random.default_rng(0).integers(1 << 30)
    # activity scales every frame's distance from the rest posture (smoothing is linear; closures
    # are capped at a closed opening either way)
    half = R.mouth_track(ev, T, activity=0.5).astype(np.float64)
    free = base[:, 0] > R.CLOSURE_MAX_OPENING
    np.testing.assert_allclose((half - sil)[free], 0.5 * (base - sil)[free], atol=1e-5)
    np.testing.assert_allclose(R.mouth_track(ev, T, activity=0.0)[free], np.tile(sil, (T, 1))[free], atol=1e-5)
    # jitter: per-phone noise of about that s.d., seeded, inside the channel ranges, one shape per phone
    j1 = R.mouth_track(ev, T, jitter=0.15, rng=np.random.default_rng(1), smooth=0.0)
    j1b = R.mouth_track(ev, T, jitter=0.15, rng=np.random.default_rng(1), smooth=0.0)
    j2 = R.mouth_track(ev, T, jitter=0.15, rng=np.random.default_rng(2), smooth=0.0)
    plain = R.mouth_track(ev, T, smooth=0.0)
    np.testing.assert_array_equal(j1, j1b)
    assert not np.array_equal(j1, j2)
    assert np.all(j1 >= R.TRACK_LO - 1e-6) and np.all(j1 <= R.TRACK_HI + 1e-6)
    d = (j1 - plain)[:, 1]                                    # width: targets 0.25-1, little clipping
    assert 0.05 < np.std(d[np.abs(d) > 0]) < 0.25
    lab = centre_labels(ev, T)
    for e in ev:                                              # a phone keeps one (noisy) target
        c = (np.arange(T) + 0.5) / 25
        a, b = np.searchsorted(c, [e.start, e.end])
        if b - a >= 2 and e.viseme != "bilabial":
            assert np.ptp(j1[a:b], axis=0).max() < 1e-6, (e, lab[a:b])
    with pytest.raises(ValueError, match="rng"):
        R.mouth_track(ev, T, jitter=0.1)
    with pytest.raises(ValueError, match=">= 0"):
        R.mouth_track(ev, T, activity=-1.0)


# ----------------------------------------------------------------------------- rendering
@pytest.fixture(scope="module")
def scene4():
    rng = np.random.default_rng(11)
    return R.make_scene(rng, 640, 360, face_seeds=[5, 6, 7, 8])


def test_render_shapes_boxes_and_head_motion(scene4):
    T = 60
    tracks = [np.tile(np.float32(R.VISEME_TARGETS["sil"]), (T, 1)) for _ in range(4)]
    fr, bx = R.render_frames(scene4, scene4.faces, tracks, 0, T, np.random.default_rng(0))
    assert fr.shape == (T, 360, 640, 3) and fr.dtype == np.uint8
    assert bx.shape == (4, T, 4) and bx.dtype == np.float32
    assert np.all(bx[..., 0] >= 0) and np.all(bx[..., 1] >= 0)
    assert np.all(bx[..., 2] <= 640) and np.all(bx[..., 3] <= 360)
    assert np.all(bx[..., 2] > bx[..., 0]) and np.all(bx[..., 3] > bx[..., 1])
    # faces in separate slots: mouth boxes of different faces never overlap
    xs = np.sort(bx[:, :, 0].mean(axis=1))
    assert np.all(np.diff(xs) > 60)
    # the mouth is wide enough for a 88x88 ROI to carry detail
    assert np.all(bx[..., 2] - bx[..., 0] >= 30)
    # boxes follow the head: the mouth stays at the head's midline while the head moves
    t = np.arange(T) / 25.0
    for j, f in enumerate(scene4.faces):
        cx, cy, s = f.motion(t)
        mx = 0.5 * (bx[j, :, 0] + bx[j, :, 2])
        assert np.ptp(mx) > 0.5                   # it moves ...
        assert np.max(np.abs(mx - cx)) < 0.01     # ... with the head
        my = 0.5 * (bx[j, :, 1] + bx[j, :, 3])
        assert np.corrcoef(my - cy, s)[0, 1] > 0.9 or np.ptp(my - cy) < 0.5
    # the mouth region really changes with the track: open vs closed differ in pixels
    open_tr = [np.tile(np.float32(R.VISEME_TARGETS["open"]), (2, 1)) for _ in range(4)]
    fo, bo = R.render_frames(scene4, scene4.faces, open_tr, 0, 2, np.random.default_rng(0))
    j = 0
    x1, y1, x2, y2 = (int(v) for v in bo[j, 0])
    diff = np.abs(fo[0, y1:y2, x1:x2].astype(int) - fr[0, y1:y2, x1:x2].astype(int)).mean()
    assert diff > 20
    assert (bo[j, 0, 3] - bo[j, 0, 1]) > 2 * (bx[j, 0, 3] - bx[j, 0, 1])


def test_face_boxes_hold_the_lips_and_follow_head_and_jaw(scene4):
    T = 40
    tracks = [np.array([R.VISEME_TARGETS["open" if i % 2 else "sil"] for i in range(T)], np.float32)] * 4
    _, lips = R.render_frames(scene4, scene4.faces, tracks, 0, T, np.random.default_rng(0))
    faces = R.face_boxes(scene4, tracks, T)
    assert faces.shape == (4, T, 4) and faces.dtype == np.float32
    # the drawn mouth lies inside the face box, in its lower half
    assert np.all(lips[..., 0] > faces[..., 0]) and np.all(lips[..., 2] < faces[..., 2])
    assert np.all(lips[..., 1] > 0.5 * (faces[..., 1] + faces[..., 3])) and np.all(lips[..., 3] < faces[..., 3])
    t = np.arange(T) / 25.0
    for j, f in enumerate(scene4.faces):
        cx, cy, s = f.motion(t)
        np.testing.assert_allclose(0.5 * (faces[j, :, 0] + faces[j, :, 2]), cx, atol=1e-3)   # follows the head
        np.testing.assert_allclose(faces[j, :, 2] - faces[j, :, 0], 2 * s, rtol=1e-5)        # head width
        # the jaw drops with the opening: open frames reach lower than the closed frames around them
        below = faces[j, :, 3] - cy
        assert np.all(below[1::2] > below[0::2] + 1.0)
    # a track shorter than the session is drawn as sil beyond its end
    short = R.face_boxes(scene4, [tr[:10] for tr in tracks], T)
    np.testing.assert_allclose(short[:, :10], faces[:, :10])
    np.testing.assert_allclose(short[:, 10::2], faces[:, 10::2], atol=1e-3)   # sil frames agree


def test_rounded_is_narrow_and_spread_is_wide(scene4):
    tracks = [np.array([R.VISEME_TARGETS[v] for v in ("rounded", "sil", "spread")], np.float32)] * 4
    _, bx = R.render_frames(scene4, scene4.faces, tracks, 0, 3, np.random.default_rng(0))
    w = bx[..., 2] - bx[..., 0]
    assert np.all(w[:, 0] < w[:, 1]) and np.all(w[:, 2] > w[:, 1])
    assert np.all(w[:, 0] >= 20)


def _digest(p):
    with open(p, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_determinism_and_mp4_decodes(tmp_path):
    def run(path, chunk):
        rng = np.random.default_rng(21)
        sc = R.make_scene(rng, 320, 180, face_seeds=[1, 2])
        ev_rng = np.random.default_rng(3)
        tracks = [R.mouth_track(random_events(ev_rng, 2.0), 50) for _ in range(2)]
        return R.render_session(str(path), sc, tracks, rng, chunk=chunk)

    b1 = run(tmp_path / "a.mp4", 50)
    b2 = run(tmp_path / "b.mp4", 50)
    b3 = run(tmp_path / "c.mp4", 7)          # streaming in other chunk sizes changes nothing
    assert b1.shape == (2, 50, 4) and b1.dtype == np.float32
    np.testing.assert_array_equal(b1, b2)
    np.testing.assert_array_equal(b1, b3)
    assert _digest(tmp_path / "a.mp4") == _digest(tmp_path / "b.mp4") == _digest(tmp_path / "c.mp4")
    assert not list(tmp_path.glob("*.tmp*"))     # atomic write left no temporaries
    # same frames through encode_mp4 -> same bytes; iterable input works too
    fr, _ = R.render_frames(R.make_scene(np.random.default_rng(1), 320, 180, n_faces=2),
                            R.make_scene(np.random.default_rng(1), 320, 180, n_faces=2).faces,
                            [np.tile(np.float32(R.SIL), (30, 1))] * 2, 0, 30, np.random.default_rng(2))
    assert R.encode_mp4(str(tmp_path / "d.mp4"), fr) == 30
    R.encode_mp4(str(tmp_path / "e.mp4"), (fr[i:i + 8] for i in range(0, 30, 8)))
    assert _digest(tmp_path / "d.mp4") == _digest(tmp_path / "e.mp4")
    # decodes as 25 fps h264 with the right number of frames on the i/25 grid
    with av.open(str(tmp_path / "a.mp4")) as c:
        st = c.streams.video[0]
        assert st.codec_context.name == "h264"
        assert float(st.average_rate) == 25.0
        assert (st.width, st.height) == (320, 180)
        times = [f.time for f in c.decode(video=0)]
    assert len(times) == 50
    np.testing.assert_allclose(times, np.arange(50) / 25.0, atol=1e-6)


# ----------------------------------------------------------------------------- proxy checks
def test_viseme_classifier_on_encoded_rois(tmp_path):
    """ROIs cut (frontends.roi) from decoded h264 of rendered synthetic phone sequences."""
    rois, labels = [], []
    T = 100
    for s in range(4):
        rng = np.random.default_rng(100 + s)
        n = 2 + s % 3
        sc = R.make_scene(rng, 640, 360, face_seeds=list(rng.integers(0, 10**6, n)))
        evs = [random_events(rng, T / 25) for _ in range(n)]
        boxes = R.render_session(str(tmp_path / f"s{s}.mp4"), sc, [R.mouth_track(e, T) for e in evs], rng)
        with av.open(str(tmp_path / f"s{s}.mp4")) as c:
            gray = np.stack([f.to_ndarray(format="gray") for f in c.decode(video=0)])
        assert len(gray) == T
        for j in range(n):
            lab = centre_labels(evs[j], T)
            stable = np.zeros(T, dtype=bool)     # mid-phone frames, as in checks.viseme_check
            stable[1:-1] = (lab[1:-1] == lab[:-2]) & (lab[1:-1] == lab[2:])
            for i in np.flatnonzero(stable & (lab < 6)):
                rois.append(center_crop(crop_roi(gray[i], boxes[j, i], 96), 88))
                labels.append(lab[i])
    labels = np.array(labels)
    assert set(labels.tolist()) == set(range(6))
    res = proxy.viseme_classification(np.stack(rois), labels, seed=0)
    assert res["classes"] == list(proxy.CLASSES)
    conf = np.array(res["confusion"])
    assert conf.shape == (6, 6) and conf.sum() == res["n_test"]
    assert res["n_train"] + res["n_test"] == len(labels)
    assert res["accuracy"] >= 0.70, res


def test_viseme_classification_split_and_groups():
    rng = np.random.default_rng(0)
    protos = rng.integers(0, 255, size=(6, 88, 88))
    labels = np.repeat(np.arange(6), 10)
    rois = np.clip(protos[labels] + rng.normal(0, 20, (60, 88, 88)), 0, 255).astype(np.uint8)
    r = proxy.viseme_classification(rois, labels, seed=1)
    assert r["accuracy"] == 1.0 and r["n_test"] == 18
    r2 = proxy.viseme_classification(rois, labels, seed=1)
    assert r2 == r
    g = proxy.viseme_classification(rois, labels, seed=1, groups=np.arange(60) // 5)
    assert g["n_test"] % 5 == 0 and g["n_test"] > 0
    with pytest.raises(ValueError):
        proxy.viseme_classification(rois, labels[:-1], seed=0)


def synthetic_envelope(events, T, rng, fps=25):
    """Speech-like RMS envelope: vowels loud, consonants soft, silence quiet (100 Hz, then per frame)."""
    energy = {"sil": 0.0, "bilabial": 0.05, "labiodental": 0.15, "other": 0.3, "spread": 0.6,
              "rounded": 0.75, "open": 1.0}
    t = (np.arange(T * 4) + 0.5) / (fps * 4)
    e = np.zeros(len(t))
    for ev in events:
        e[(t >= ev.start) & (t < ev.end)] = energy[ev.viseme]
    e = np.convolve(e, np.ones(3) / 3, mode="same")
    env = e.reshape(T, 4).mean(axis=1)
    return env * rng.uniform(0.7, 1.3, T) + 0.01 * rng.random(T)


def test_envelope_correlation_tracks_own_speaker():
    rng = np.random.default_rng(4)
    T = 250
    ev_t, ev_i = random_events(rng, 10.0), random_events(rng, 10.0)
    track = R.mouth_track(ev_t, T)
    r = proxy.envelope_correlation(track[:, 0], synthetic_envelope(ev_t, T, rng), synthetic_envelope(ev_i, T, rng))
    assert set(r) == {"r_target", "r_interferer"}
    assert r["r_target"] >= 0.5, r
    assert r["r_target"] - r["r_interferer"] >= 0.3, r
    # a constant series has no measurable correlation (no NaN)
    assert proxy.envelope_correlation(np.zeros(T), np.ones(T), np.ones(T)) == {"r_target": 0.0, "r_interferer": 0.0}


# ----------------------------------------------------------------------------- detections
def test_detections_drop_5_to_15_percent(tmp_path):
    rng = np.random.default_rng(9)
    T = 1000
    true = np.zeros((3, T, 4), np.float32)
    true[..., 0], true[..., 1] = 100 + np.arange(3)[:, None] * 150, 200
    true[..., 2], true[..., 3] = true[..., 0] + 40, true[..., 1] + 20
    dets = R.detections_from_boxes(true, rng, miss_rate=(0.05, 0.15))
    assert len(dets) == 3
    for j, d in enumerate(dets):
        miss = 1.0 - len(d.frames) / T
        assert 0.05 - 1e-9 <= miss <= 0.15 + 1e-9, miss
        assert d.frames.dtype == np.int64 and np.all(np.diff(d.frames) > 0)
        assert d.boxes.shape == (len(d.frames), 4) and d.boxes.dtype == np.float32
        err = np.abs(d.boxes - true[j, d.frames])
        assert err.max() < 6 and 0.2 < err.mean() < 2.0           # small jitter
        assert np.all(d.boxes[:, 2] > d.boxes[:, 0])
        gaps = np.diff(d.frames)
        assert np.any(gaps >= 3)                                 # some bursts of >= 2 missed frames
    # long gaps: those ranges are mostly undetected
    rng = np.random.default_rng(9)
    dets2 = R.detections_from_boxes(true, rng, long_gaps=[[], [(300, 400)], []])
    inside = np.sum((dets2[1].frames >= 300) & (dets2[1].frames < 400))
    assert inside <= 25
    # round trip through the detection-file writer
    p = tmp_path / "x_Far.json"
    write_detections(p, video="x_Far.mp4", fps=25, num_frames=T, width=640, height=360,
                     speakers={"001": dets[0], "002": dets[1], "003": dets[2]})
    sd = load_detections(p)
    dense = sd.boxes("002")
    assert np.isnan(dense[:, 0]).sum() == T - len(dets[1].frames)
    np.testing.assert_allclose(dense[dets[1].frames], dets[1].boxes, atol=0.051)
    # with true face boxes each track also gets jittered face boxes for its detected frames, and
    # the lip-box draws stay what they were without them
    faces = true + np.array([-30, -60, 30, 40], np.float32)
    d3 = R.detections_from_boxes(true, np.random.default_rng(9), miss_rate=(0.05, 0.15), true_face_boxes=faces)
    for a, b in zip(dets, d3):
        np.testing.assert_array_equal(a.frames, b.frames)
        assert a.face_boxes is None and b.face_boxes.shape == (len(b.frames), 4)
        np.testing.assert_array_equal(a.boxes, b.boxes)
    err = np.abs(d3[1].face_boxes - faces[1, d3[1].frames])
    assert err.max() < 12 and 0.5 < err.mean() < 4.0
