"""Lip region of interest: box interpolation, square crops, the skip rule.

Documented behaviours
---------------------
* **Boxes** are ``(x1, y1, x2, y2)`` in pixels of the full frame (x = column,
  y = row), as in :mod:`frontends.lip_boxes`.  A row with any NaN is "missing".
* **Interpolation** (:func:`interpolate_boxes`): missing rows are filled by linear
  interpolation in time (frame index), independently per coordinate, between the
  nearest detected rows; gaps before the first / after the last detection hold
  that detection.  No detection at all -> ``ValueError``.
* **Crop** (:func:`crop_roi`): a square centred at the box centre with side
  ``max(w, h) * ROI_MARGIN`` (:data:`ROI_MARGIN` = 1.6: the lip box plus 30 % on
  each side, so the chin/jaw motion and some cheek are in view and small box
  jitter does not cut the lips), rounded to whole pixels, then resized to
  ``size x size`` with ``cv2.INTER_AREA`` when shrinking and ``cv2.INTER_LINEAR``
  when enlarging.  Pixels of the square outside the frame are **edge-replicated**
  (index clipping, like ``cv2.BORDER_REPLICATE``), so boxes partly or wholly
  outside the frame still give a full crop.
* **Skip rule** (:func:`should_skip`): a segment is skipped when fewer than
  :data:`MIN_DETECTED_FRACTION` (half) of its frames have a real detection;
  exactly half is kept.  An empty segment is skipped.
"""
from __future__ import annotations

from typing import Tuple

import cv2
import numpy as np

from frontends.constants import CROP_SIZE, ROI_SIZE

__all__ = ["ROI_MARGIN", "ROI_SIZE", "CROP_SIZE", "MIN_DETECTED_FRACTION", "interpolate_boxes",
           "crop_roi", "crop_rois", "center_crop", "detected_fraction", "should_skip"]

#: Side of the square crop relative to the longer side of the lip box.
ROI_MARGIN = 1.6
# ROI_SIZE (side of the stored ROI) and CROP_SIZE (side of the centre crop fed to the visual
# front-end) come from frontends.constants and are re-exported here.
#: Segments with a smaller fraction of detected frames are skipped.
MIN_DETECTED_FRACTION = 0.5


def interpolate_boxes(boxes) -> Tuple[np.ndarray, np.ndarray]:
    """Fill missing (NaN) rows of a ``[T, 4]`` box track.

    Returns ``(boxes float32 [T, 4], detected bool [T])`` where ``detected`` marks
    the rows that were given (all four values finite).  Missing rows between two
    detections are linearly interpolated per coordinate in frame index; leading /
    trailing missing rows copy the first / last detection.  Raises ``ValueError``
    when ``boxes`` is not ``[T, 4]`` or no row is detected (including ``T == 0``).
    """
    b = np.asarray(boxes, dtype=np.float64)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"boxes must have shape [T, 4], got {b.shape}")
    detected = np.all(np.isfinite(b), axis=1)
    if not detected.any():
        raise ValueError(f"no detected box in {b.shape[0]} frame(s): cannot interpolate")
    out = b.copy()
    if not detected.all():
        t = np.arange(b.shape[0], dtype=np.float64)
        idx = np.flatnonzero(detected)
        miss = ~detected
        for k in range(4):
            out[miss, k] = np.interp(t[miss], idx.astype(np.float64), b[idx, k])
    return out.astype(np.float32), detected


def _square(box, margin: float) -> Tuple[int, int, int]:
    """(x0, y0, side) in whole pixels of the crop square for ``box``."""
    x1, y1, x2, y2 = (float(v) for v in np.asarray(box, dtype=np.float64).reshape(4))
    if not all(np.isfinite([x1, y1, x2, y2])):
        raise ValueError(f"box has non-finite values: {box!r} (interpolate first)")
    w, h = x2 - x1, y2 - y1
    if max(w, h) <= 0:
        raise ValueError(f"degenerate box {box!r}: width and height must not both be <= 0")
    cx, cy = 0.5 * (x1 + x2), 0.5 * (y1 + y2)
    side = max(1, int(round(max(w, h) * margin)))
    x0 = int(np.floor(cx - side / 2.0 + 0.5))
    y0 = int(np.floor(cy - side / 2.0 + 0.5))
    return x0, y0, side


def crop_roi(gray: np.ndarray, box, size: int = ROI_SIZE) -> np.ndarray:
    """Square lip crop of one frame, resized to ``size x size`` uint8.

    ``gray`` is uint8 ``[H, W]`` (``[H, W, C]`` also works and keeps ``C``);
    ``box`` is ``(x1, y1, x2, y2)``.  The square is centred at the box centre,
    side ``max(w, h) * ROI_MARGIN`` pixels; out-of-frame pixels are
    edge-replicated (see the module docstring).  Non-uint8 input is rounded and
    clipped to 0..255 first.
    """
    img = np.asarray(gray)
    if img.ndim not in (2, 3) or img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError(f"expected a [H, W] (or [H, W, C]) image, got shape {img.shape}")
    if img.dtype != np.uint8:
        img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    size = int(size)
    if size <= 0:
        raise ValueError(f"size must be > 0, got {size}")
    H, W = img.shape[:2]
    x0, y0, side = _square(box, ROI_MARGIN)
    if x0 >= 0 and y0 >= 0 and x0 + side <= W and y0 + side <= H:
        patch = img[y0:y0 + side, x0:x0 + side]
    else:
        ys = np.clip(np.arange(y0, y0 + side), 0, H - 1)
        xs = np.clip(np.arange(x0, x0 + side), 0, W - 1)
        patch = img[ys][:, xs]
    if side == size:
        out = np.array(patch, copy=True)
    else:
        interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
        out = cv2.resize(np.ascontiguousarray(patch), (size, size), interpolation=interp)
    if img.ndim == 3 and out.ndim == 2:  # cv2 drops a single channel axis
        out = out[..., None]
    return out


def crop_rois(frames: np.ndarray, boxes, size: int = ROI_SIZE) -> np.ndarray:
    """:func:`crop_roi` for every frame: ``frames [T, H, W]``, ``boxes [T, 4]`` -> uint8 ``[T, size, size]``.

    Boxes must be complete (run :func:`interpolate_boxes` first); ``T`` must match.
    """
    frames = np.asarray(frames)
    b = np.asarray(boxes, dtype=np.float64)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"boxes must have shape [T, 4], got {b.shape}")
    if frames.ndim < 3 or frames.shape[0] != b.shape[0]:
        raise ValueError(f"frames {frames.shape} and boxes {b.shape} disagree on T")
    out = np.empty((frames.shape[0], int(size), int(size)) + frames.shape[3:], dtype=np.uint8)
    for t in range(frames.shape[0]):
        out[t] = crop_roi(frames[t], b[t], size)
    return out


def center_crop(x, size: int = CROP_SIZE):
    """Centre ``size x size`` crop over the last two dims (numpy array or torch tensor).

    Offsets are ``(H - size) // 2`` and ``(W - size) // 2`` (96 -> 88 cuts 4 px per
    side).  Returns a view (slicing).  ``ValueError`` when the input is smaller.
    """
    H, W = int(x.shape[-2]), int(x.shape[-1])
    size = int(size)
    if size <= 0 or H < size or W < size:
        raise ValueError(f"cannot centre-crop {size}x{size} from {H}x{W}")
    a, b = (H - size) // 2, (W - size) // 2
    return x[..., a:a + size, b:b + size]


def detected_fraction(detected) -> float:
    """Fraction of True entries in ``detected`` (0.0 for an empty segment)."""
    d = np.asarray(detected, dtype=bool).reshape(-1)
    return float(d.mean()) if d.size else 0.0


def should_skip(detected) -> bool:
    """True when fewer than :data:`MIN_DETECTED_FRACTION` of the frames have a detection."""
    return detected_fraction(detected) < MIN_DETECTED_FRACTION
