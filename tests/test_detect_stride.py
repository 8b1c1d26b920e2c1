"""track_mouth with a stride: boxes within IoU 0.9 (mean) of per-frame detection on a moving face
(the astronaut photograph panned and zoomed, as scripts/bench_detect.py measures), interpolated
rows between successes, the last frame searched, streamed frames, and prepare_pair's detector path
the same streamed or held.  Speed is not asserted (scripts/bench_detect.py measures it)."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "scripts"))
from bench_detect import astronaut_clip, iou  # noqa: E402

from frontends.face_detectors import DEFAULT_STRIDE, Detection, Detector, HaarDetector, track_mouth  # noqa: E402


@pytest.fixture(scope="module")
def clip():
    return astronaut_clip(seconds=1.5, fps=30.0)


@pytest.fixture(scope="module")
def per_frame(clip):
    boxes, _ = track_mouth(clip, HaarDetector())
    assert np.isfinite(boxes).all()
    return boxes


def test_default_stride_within_iou_of_per_frame(clip, per_frame):
    boxes, w = track_mouth(clip, HaarDetector(), stride=DEFAULT_STRIDE)
    assert np.isfinite(boxes).all() and not w
    v = iou(boxes.astype(np.float64), per_frame.astype(np.float64))
    assert v.mean() >= 0.9, v
    assert np.allclose(boxes[::DEFAULT_STRIDE], per_frame[::DEFAULT_STRIDE])   # detected rows are the detector's
    assert np.allclose(boxes[-1], per_frame[-1])                              # the last frame is searched


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
