"""track_mouth's default (every frame, searched near the last face: HaarDetector.detect_around) gives
the whole-frame per-frame boxes on a moving face (the astronaut photograph panned and zoomed, as
scripts/bench_detect.py measures): detect_around is what runs, it returns the whole-frame boxes, and
the whole frame is searched again when nothing is found near the last face.  With a stride:
interpolated rows between successes, the last frame searched, streamed frames the same as held.
Speed is not asserted (scripts/bench_detect.py measures it)."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "scripts"))
from bench_detect import astronaut_clip, astronaut_motion, iou  # noqa: E402

from frontends.face_detectors import (DEFAULT_SEARCH, DEFAULT_STRIDE, Detection, Detector, HaarDetector,  # noqa: E402
                                      track_mouth)


@pytest.fixture(scope="module")
def clip():
    return astronaut_clip(seconds=1.5, fps=30.0)


@pytest.fixture(scope="module")
def per_frame(clip):
    boxes, _ = track_mouth(clip, HaarDetector(), search="frame")          # the reference: whole frame, every frame
    assert np.isfinite(boxes).all()
    return boxes


class _Counting(HaarDetector):
    """Haar, counting whole-frame searches and searches near the last face."""

    def __init__(self):
        super().__init__()
        self.whole = self.around = 0

    def detect(self, frame):
        self.whole += 1
        return super().detect(frame)

    def detect_around(self, frame, face, **kw):
        self.around += 1
        return super().detect_around(frame, face, **kw)


def test_default_is_the_per_frame_boxes_searched_near_the_last_face(clip, per_frame):
    assert (DEFAULT_STRIDE, DEFAULT_SEARCH) == (1, "window")
    det = _Counting()
    boxes, w = track_mouth(clip, det)
    assert not w and (det.whole, det.around) == (1, len(clip) - 1)     # the whole frame once, then near the face
    v = iou(boxes.astype(np.float64), per_frame.astype(np.float64))
    assert v.min() >= 0.9, v
    assert np.array_equal(boxes, per_frame)                              # in fact the same boxes on every frame


def test_detect_around_is_the_whole_frame_detection_near_the_face(clip):
    det = HaarDetector()
    for t in (1, 9, 23, 44):
        prev = det.detect(clip[t - 1])[0].face                           # the face box of the frame before
        whole = det.detect(clip[t])
        near = det.detect_around(clip[t], prev)
        assert len(whole) == 1 and [d.face for d in near] == [d.face for d in whole]
        assert [d.mouth for d in near] == [d.mouth for d in whole]
    x1, y1, x2, y2 = prev
    away = (x1 + 250, y1, x2 + 250, y2) if x1 < 320 else (x1 - 250, y1, x2 - 250, y2)
    assert det.detect_around(clip[44], away) == []                      # nothing there: the caller falls back


def test_detect_around_on_another_face():
    # Grace Hopper's portrait (matplotlib's sample data) moving like the astronaut: a larger face whose
    # box groups windows over a wider range of sizes than the astronaut's
    import cv2
    import matplotlib.cbook
    img = cv2.cvtColor(cv2.imread(str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))),
                       cv2.COLOR_BGR2RGB)
    motion = astronaut_motion(seconds=1.0, fps=30.0)
    frames = np.stack([cv2.warpAffine(img, np.array([[0.9 * z, 0, ox + 40], [0, 0.9 * z, oy - 20]]), (640, 360),
                                      borderValue=(90, 90, 90)) for z, ox, oy in motion])
    det = HaarDetector()
    whole = [det.detect(f) for f in frames]
    assert all(len(w) == 1 for w in whole)
    for t in range(1, len(frames)):
        near = det.detect_around(frames[t], whole[t - 1][0].face)
        assert [d.face for d in near] == [whole[t][0].face], t


def test_window_search_falls_back_to_the_whole_frame(clip):
    # the face jumps 30 px (half a face width) between frames 10 and 11: farther than the search near the
    # last face reaches, nearer than track_mouth's "another face" distance; the whole frame is searched
    jumped = np.concatenate([clip[:11], np.roll(clip[11:21], 30, axis=2)])
    ref, _ = track_mouth(jumped, HaarDetector(), search="frame")
    assert np.isfinite(ref).all()
    det = _Counting()
    boxes, _ = track_mouth(jumped, det)
    assert det.whole == 2                                                # frame 0 and frame 11
    assert np.array_equal(boxes, ref)


def test_search_choices(clip):
    a, _ = track_mouth(clip[:6], HaarDetector(), local=True)             # the earlier keyword is search="near"
    b, _ = track_mouth(clip[:6], HaarDetector(), search="near")
    assert np.array_equal(a, b)
    with pytest.raises(ValueError):
        track_mouth(clip[:2], HaarDetector(), search="everywhere")
    with pytest.raises(ValueError):
        track_mouth(clip[:2], HaarDetector(), local=True, search="window")


def test_earlier_stride_keeps_detected_rows(clip, per_frame):
    boxes, w = track_mouth(clip, HaarDetector(), stride=5, search="frame")
    assert np.isfinite(boxes).all() and not w
    assert np.allclose(boxes[::5], per_frame[::5])                       # detected rows are the detector's
    assert np.allclose(boxes[-1], per_frame[-1])                         # the last frame is searched


def test_stride_from_an_iterator_equals_array(clip):
    a, _ = track_mouth(clip[:20], HaarDetector(), stride=4)
    b, _ = track_mouth(iter(list(clip[:20])), HaarDetector(), stride=4)
    assert np.array_equal(a, b, equal_nan=True)


class _Scripted(Detector):
    """Finds one face whose mouth box is (t, t, t + 10, t + 10) on frame value t; none where t is in miss."""

    def __init__(self, miss=()):
        self.miss, self.calls = set(miss), []

    def detect(self, frame):
        t = int(frame[0, 0])
        self.calls.append(t)
        if t in self.miss:
            return []
        return [Detection((t, t, t + 50, t + 50), (t, t, t + 10, t + 10))]


def test_interpolation_rules():
    frames = np.arange(11, dtype=np.uint8)[:, None, None] * np.ones((1, 4, 4), np.uint8)
    d = _Scripted(miss={6})
    boxes, _ = track_mouth(frames, d, stride=3)
    assert d.calls == [0, 3, 6, 9, 10]                      # every 3rd frame and the last
    assert np.allclose(boxes[1], [1, 1, 11, 11]) and np.allclose(boxes[2], [2, 2, 12, 12])   # interpolated
    assert np.isnan(boxes[4:9]).all()                       # between a success and a miss: NaN
    assert np.allclose(boxes[9], [9, 9, 19, 19]) and np.allclose(boxes[10], [10, 10, 20, 20])
    with pytest.raises(ValueError):
        track_mouth(frames, d, stride=0)
