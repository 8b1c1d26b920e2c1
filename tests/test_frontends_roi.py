"""frontends.roi: box interpolation, the toolkit's square crops with edge replication (``mode="toolkit"``,
unchanged), centre crop, skip rule.  The official crop (the default): tests/test_official_crop.py."""
import functools

import numpy as np
import pytest

from frontends import roi
from frontends.roi import (MIN_DETECTED_FRACTION, ROI_MARGIN, center_crop, crop_roi, crop_rois,
                           detected_fraction, interpolate_boxes, should_skip)

NAN = [np.nan] * 4
#: the toolkit's crop, called as before the official crop became the default
tk_crop = functools.partial(crop_roi, mode="toolkit")


def gradient(h=120, w=160):
    """uint8 image where value = column index (x) in one image and row index (y) in the other."""
    xs = np.broadcast_to(np.arange(w, dtype=np.uint8)[None, :], (h, w)).copy()
    ys = np.broadcast_to(np.arange(h, dtype=np.uint8)[:, None], (h, w)).copy()
    return xs, ys


def test_interpolate_known_numbers():
    boxes = np.array([NAN,
                      [10, 20, 30, 40],
                      NAN,
                      NAN,
                      [16, 26, 42, 52],
                      [np.nan, 1, 2, 3],  # any NaN -> missing row
                      NAN], dtype=np.float64)
    out, det = interpolate_boxes(boxes)
    assert out.dtype == np.float32 and out.shape == (7, 4)
    assert det.tolist() == [False, True, False, False, True, False, False]
    want = np.array([[10, 20, 30, 40],   # leading gap holds the first detection
                     [10, 20, 30, 40],
                     [12, 22, 34, 44],   # 1/3 of the way
                     [14, 24, 38, 48],   # 2/3 of the way
                     [16, 26, 42, 52],
                     [16, 26, 42, 52],   # trailing gap holds the last detection
                     [16, 26, 42, 52]], dtype=np.float32)
    assert np.allclose(out, want)
    assert not np.isnan(boxes[1]).any() and np.isnan(boxes[0]).all()  # input untouched
    full, det2 = interpolate_boxes(want)
    assert det2.all() and np.array_equal(full, want)


def test_interpolate_errors():
    with pytest.raises(ValueError, match="no detected box"):
        interpolate_boxes(np.full((5, 4), np.nan))
    with pytest.raises(ValueError):
        interpolate_boxes(np.zeros((0, 4)))
    with pytest.raises(ValueError):
        interpolate_boxes(np.zeros((3, 3)))


def test_margin_constant_documented():
    assert 1.4 <= ROI_MARGIN <= 1.8
    assert "ROI_MARGIN" in roi.__doc__ and str(ROI_MARGIN) in roi.__doc__


def test_crop_inside_frame_values():
    xs, ys = gradient()
    box = (70, 50, 90, 60)  # centre (80, 55), w=20 -> side 32
    side = int(round(20 * ROI_MARGIN))
    assert side == 32
    cx = tk_crop(xs, box, size=side)  # no resampling: exact pixels
    cy = tk_crop(ys, box, size=side)
    assert cx.shape == (32, 32) and cx.dtype == np.uint8
    assert np.array_equal(cx[0], np.arange(64, 96))  # columns 80-16 .. 80+15
    assert np.array_equal(cy[:, 0], np.arange(39, 71))  # rows 55-16 .. 55+15
    big = tk_crop(xs, box, size=96)  # upscaled (linear): centre keeps its value
    assert big.shape == (96, 96)
    assert abs(int(big[48, 48]) - 80) <= 1 and abs(int(tk_crop(ys, box, 96)[48, 48]) - 55) <= 1
    assert np.all(np.diff(big[10].astype(int)) >= 0)  # still a left-to-right ramp
    small = tk_crop(xs, (40, 20, 120, 100), size=16)  # side 128 -> area-averaged down
    assert small.shape == (16, 16)
    # bin j averages columns 16+8j .. 23+8j -> 19.5 + 8j
    assert np.all(np.abs(small[5].astype(float) - (19.5 + 8 * np.arange(16))) <= 1)


def test_crop_out_of_frame_edge_replicated():
    xs, ys = gradient()
    box = (-20, -10, 20, 10)  # centred on the top-left corner, side 64
    cx = tk_crop(xs, box, size=64)
    cy = tk_crop(ys, box, size=64)
    assert cx.shape == (64, 64)
    # columns -32..31: negative columns replicate column 0
    assert np.array_equal(cx[0], np.clip(np.arange(-32, 32), 0, None))
    assert np.array_equal(cy[:, 0], np.clip(np.arange(-32, 32), 0, None))
    # bottom-right corner, partly outside
    cx = tk_crop(xs, (150, 110, 170, 130), size=32)
    assert np.array_equal(cx[0], np.clip(np.arange(160 - 16, 160 + 16), None, 159))
    cy = tk_crop(ys, (150, 110, 170, 130), size=32)
    assert np.array_equal(cy[:, 0], np.clip(np.arange(120 - 16, 120 + 16), None, 119))
    # entirely outside: every pixel is the nearest edge pixel
    far = tk_crop(xs, (500, 500, 520, 520), size=96)
    assert far.shape == (96, 96) and np.all(far == 159)
    # colour frames keep their channels
    rgb = np.stack([xs, ys, np.zeros_like(xs)], -1)
    c = tk_crop(rgb, (70, 50, 90, 60), size=32)
    assert c.shape == (32, 32, 3) and np.array_equal(c[..., 0], tk_crop(xs, (70, 50, 90, 60), 32))


def test_crop_bad_boxes():
    xs, _ = gradient()
    for mode in ("toolkit", "official"):
        with pytest.raises(ValueError):
            crop_roi(xs, (np.nan, 0, 10, 10), mode=mode)
        with pytest.raises(ValueError):
            crop_roi(xs, (10, 10, 10, 10), mode=mode)
    with pytest.raises(ValueError, match="crop mode"):
        crop_roi(xs, (70, 50, 90, 60), mode="square")


def test_crop_rois_and_center_crop():
    xs, _ = gradient()
    frames = np.stack([xs, xs // 2, xs // 4])
    boxes = np.array([[70, 50, 90, 60]] * 3, dtype=np.float32)
    out = crop_rois(frames, boxes, size=96, mode="toolkit")
    assert out.shape == (3, 96, 96) and out.dtype == np.uint8
    assert np.array_equal(out[1], tk_crop(frames[1], boxes[1], 96))
    with pytest.raises(ValueError):
        crop_rois(frames, boxes[:2])
    x = np.arange(96 * 96).reshape(96, 96)
    c = center_crop(x, 88)
    assert c.shape == (88, 88) and c[0, 0] == x[4, 4] and c[-1, -1] == x[91, 91]
    assert center_crop(out, 88).shape == (3, 88, 88)
    assert center_crop(np.zeros((2, 5, 7)), 4).shape == (2, 4, 4)
    with pytest.raises(ValueError):
        center_crop(np.zeros((80, 96)), 88)


def test_skip_rule():
    assert MIN_DETECTED_FRACTION == 0.5
    assert detected_fraction([True, False, True, True]) == 0.75
    assert detected_fraction([]) == 0.0
    assert not should_skip([True, False])  # exactly half: kept
    assert should_skip([True, False, False])  # fewer than half: skipped
    assert not should_skip(np.ones(10, bool))
    assert should_skip(np.zeros(10, bool))
    assert should_skip([])
    _, det = interpolate_boxes(np.array([[1, 1, 2, 2], NAN, NAN, NAN]))
    assert detected_fraction(det) == 0.25 and should_skip(det)
