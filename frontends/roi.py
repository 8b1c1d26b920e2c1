"""Lip region of interest: box interpolation, square crops, the skip rule.

Two crops exist, chosen by ``mode`` (:data:`CROP_MODES`); ``"official"`` is the default
(:data:`DEFAULT_CROP`) everywhere ROIs are made (``avsr prepare_rois --crop``,
:func:`frontends.pairs.prepare_pair` ``crop=``).

Documented behaviours
---------------------
* **Boxes** are ``(x1, y1, x2, y2)`` in pixels of the full frame (x = column,
  y = row), as in :mod:`frontends.lip_boxes`.  A row with any NaN is "missing".
* **Interpolation** (:func:`interpolate_boxes`): missing rows are filled by linear
  interpolation in time (frame index), independently per coordinate, between the
  nearest detected rows; gaps before the first / after the last detection hold
  that detection.  No detection at all -> ``ValueError``.  ``mode="official"``
  computes an interpolated row as ``before + (t - t_before) * (after - before) /
  (t_after - t_before)`` in float64 and truncates it toward zero to whole pixels
  (``astype(int64)``), as the MISP2022 baseline does (mispchallenge/misp2022_baseline
  ``track2_AVDR/local/segment_video_roi.py``, ``segment_roi_json``); detected rows
  and held edge rows keep their values.  The baseline searches the nearest
  detections before and after *the segment* (anywhere in the session), which is the
  same pair of rows as interpolating over the whole session track, so given the
  session's track both give the same boxes; ``mode="toolkit"`` (the default of this
  function) keeps the unrounded float32 values (``numpy.interp``).
* **Official crop** (``crop_roi(..., mode="official")``), the geometry of
  ``crop_frame_roi`` in the same baseline file: side ``L = max(h, w, size)`` in
  native pixels (``w = x2 - x1``, ``h = y2 - y1``); rows
  ``max(int(y1 - (L - h) / 2), 0) .. min(int(y2 + (L - h) / 2), H)`` (end exclusive),
  columns likewise with ``x``/``w``/``W`` (``int()`` truncates toward zero, so the window
  may be one pixel off ``L``).  The window is **clipped** to the frame (no padding):
  near an edge the crop is smaller or not square.  It is resized to ``size x size`` with
  ``cv2.INTER_AREA`` only when it is not already ``size x size``, so a lip box smaller
  than ``size`` gives the native pixels of a ``size``-pixel square around it, and a
  larger box is shrunk.  A box wholly outside the frame (empty window after clipping;
  the baseline fails there) uses the one-pixel strip at the nearest frame edge.
  The baseline crops the **colour** frame (BGR from OpenCV) and its visual front-end
  converts to gray as ``0.299 R + 0.587 G + 0.114 B`` in float
  (``track2_AVDR/network/network_feature_extract.py``, ``GrayCropFlip``).  The toolkit
  stores uint8: crop the RGB frame, then :func:`to_gray` (that formula, rounded), which
  matches the baseline's float gray within 0.5 grey level.  Converting to gray first
  and then resizing differs only by rounding (measured on 97 crops of a SynthMISP far
  video, frames upscaled 3x so the boxes exceed 96 px and get resized: mean 0.23, max
  1.44 grey levels from the baseline's float gray, vs mean 0.22, max 0.50 for
  crop-then-convert; the two uint8 results differ at 4.1 % of the pixels).  The
  decoder's own gray (PyAV ``format="gray"``, what ``mode="toolkit"`` crops) is another
  luma: on the native SynthMISP crops (boxes < 96 px, no resize) it is mean 1.48, max
  9.6 grey levels from the weighted RGB (max 25 over whole frames).  PyAV's ``rgb24``
  frames were identical to ``cv2.VideoCapture``'s BGR frames (reversed) on the same
  file, and decoding to RGB instead of gray cost no measurable time there (0.7-1.8
  ms per 640x360 frame either way on a shared 2-core machine).
* **Toolkit crop** (``mode="toolkit"``): a square centred at the box centre with side
  ``max(w, h) * ROI_MARGIN`` (:data:`ROI_MARGIN` = 1.6: the lip box plus 30 % on
  each side, so the chin/jaw motion and some cheek are in view and small box
  jitter does not cut the lips), rounded to whole pixels, then resized to
  ``size x size`` with ``cv2.INTER_AREA`` when shrinking and ``cv2.INTER_LINEAR``
  when enlarging.  Pixels of the square outside the frame are **edge-replicated**
  (index clipping, like ``cv2.BORDER_REPLICATE``), so boxes partly or wholly
  outside the frame still give a full crop.  It crops whatever frame it is given
  (the ROI jobs give it the decoder's gray frames).
* **Cropping while decoding** (:func:`iter_video_rois`, :func:`crop_video_rois`): the video is
  decoded once and only the pixels a crop reads (:func:`crop_window`) are converted from the
  decoder's YUV (:func:`frontends.video.iter_video_regions`), so no full frame is converted or
  kept; the ROIs are bit-identical to decoding whole frames (:func:`frontends.video.iter_video`),
  then :func:`crop_roi` (and :func:`to_gray` for ``"official"``).  ``"official"`` converts the
  window to RGB, crops, then applies :func:`to_gray`; ``"toolkit"`` crops the decoder's gray.
* **Skip rule** (:func:`should_skip`): a segment is skipped when fewer than
  :data:`MIN_DETECTED_FRACTION` (half) of its frames have a real detection;
  exactly half is kept.  An empty segment is skipped.
"""
from __future__ import annotations

from typing import Iterator, Optional, Tuple

import cv2
import numpy as np

from frontends.constants import CROP_SIZE, ROI_SIZE

__all__ = ["ROI_MARGIN", "ROI_SIZE", "CROP_SIZE", "MIN_DETECTED_FRACTION", "CROP_MODES", "DEFAULT_CROP",
           "GRAY_WEIGHTS", "interpolate_boxes", "official_window", "crop_window", "crop_roi", "crop_rois",
           "to_gray", "iter_video_rois", "crop_video_rois", "center_crop", "detected_fraction", "should_skip"]

#: The two crops (see the module docstring): the MISP2022 baseline's, and the toolkit's earlier one.
CROP_MODES = ("official", "toolkit")
#: The crop used when none is named.
DEFAULT_CROP = "official"
#: (R, G, B) weights of the baseline's gray conversion (its visual front-end, in float).
GRAY_WEIGHTS = (0.299, 0.587, 0.114)

#: Side of the square crop relative to the longer side of the lip box.
ROI_MARGIN = 1.6
# ROI_SIZE (side of the stored ROI) and CROP_SIZE (side of the centre crop fed to the visual
# front-end) come from frontends.constants and are re-exported here.
#: Segments with a smaller fraction of detected frames are skipped.
MIN_DETECTED_FRACTION = 0.5


def _check_mode(mode: str) -> str:
    if mode not in CROP_MODES:
        raise ValueError(f"crop mode must be one of {CROP_MODES}, got {mode!r}")
    return mode


def interpolate_boxes(boxes, mode: str = "toolkit") -> Tuple[np.ndarray, np.ndarray]:
    """Fill missing (NaN) rows of a ``[T, 4]`` box track.

    Returns ``(boxes float32 [T, 4], detected bool [T])`` where ``detected`` marks
    the rows that were given (all four values finite).  Missing rows between two
    detections are linearly interpolated per coordinate in frame index; leading /
    trailing missing rows copy the first / last detection.  ``mode="official"``:
    interpolated rows are computed with the baseline's expression in float64 and
    truncated toward zero (see the module docstring).  Raises ``ValueError``
    when ``boxes`` is not ``[T, 4]`` or no row is detected (including ``T == 0``).
    """
    _check_mode(mode)
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
        if mode == "toolkit":
            for k in range(4):
                out[miss, k] = np.interp(t[miss], idx.astype(np.float64), b[idx, k])
        else:
            tm = np.flatnonzero(miss)
            after = np.searchsorted(idx, tm)              # first detection after each missing row
            lead, trail = after == 0, after == len(idx)
            out[tm[lead]] = b[idx[0]]                     # before the first detection: hold it
            out[tm[trail]] = b[idx[-1]]                   # after the last one: hold it
            mid = ~(lead | trail)
            if mid.any():
                t0, t1 = idx[after[mid] - 1], idx[after[mid]]
                f0, f1 = b[t0], b[t1]
                val = f0 + (tm[mid] - t0)[:, None] * (f1 - f0) / (t1 - t0)[:, None]
                out[tm[mid]] = np.trunc(val)
    return out.astype(np.float32), detected


def _checked_box(box) -> Tuple[float, float, float, float, float, float]:
    """``(x1, y1, x2, y2, w, h)`` of a finite, non-degenerate box (``ValueError`` otherwise)."""
    x1, y1, x2, y2 = (float(v) for v in np.asarray(box, dtype=np.float64).reshape(4))
    if not all(np.isfinite([x1, y1, x2, y2])):
        raise ValueError(f"box has non-finite values: {box!r} (interpolate first)")
    w, h = x2 - x1, y2 - y1
    if max(w, h) <= 0:
        raise ValueError(f"degenerate box {box!r}: width and height must not both be <= 0")
    return x1, y1, x2, y2, w, h


def _square(box, margin: float) -> Tuple[int, int, int]:
    """(x0, y0, side) in whole pixels of the crop square for ``box``."""
    x1, y1, x2, y2, w, h = _checked_box(box)
    cx, cy = 0.5 * (x1 + x2), 0.5 * (y1 + y2)
    side = max(1, int(round(max(w, h) * margin)))
    x0 = int(np.floor(cx - side / 2.0 + 0.5))
    y0 = int(np.floor(cy - side / 2.0 + 0.5))
    return x0, y0, side


def official_window(box, height: int, width: int, size: int = ROI_SIZE) -> Tuple[int, int, int, int]:
    """``(row0, row1, col0, col1)`` (ends exclusive) of the official crop of ``box`` in a
    ``height x width`` frame: side ``max(h, w, size)``, ``int()``-truncated ends, clipped to the
    frame (see the module docstring); never empty (a box wholly outside uses the nearest edge strip)."""
    x1, y1, x2, y2, w, h = _checked_box(box)
    side = max(h, w, float(size))
    ey, ex = (side - h) / 2, (side - w) / 2
    r0, r1 = max(int(y1 - ey), 0), min(int(y2 + ey), int(height))
    c0, c1 = max(int(x1 - ex), 0), min(int(x2 + ex), int(width))
    if r1 <= r0:  # wholly above / below the frame
        r0 = min(max(r0, 0), int(height) - 1) if r1 > 0 else 0
        r1 = r0 + 1
    if c1 <= c0:
        c0 = min(max(c0, 0), int(width) - 1) if c1 > 0 else 0
        c1 = c0 + 1
    return r0, r1, c0, c1


def _as_image(frame) -> np.ndarray:
    img = np.asarray(frame)
    if img.ndim not in (2, 3) or img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError(f"expected a [H, W] (or [H, W, C]) image, got shape {img.shape}")
    if img.dtype != np.uint8:
        img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return img


def crop_window(box, height: int, width: int, size: int = ROI_SIZE,
                mode: str = DEFAULT_CROP) -> Tuple[int, int, int, int]:
    """``(row0, row1, col0, col1)`` (ends exclusive, never empty, inside the frame): the pixels of a
    ``height x width`` frame that :func:`crop_roi` reads for ``box``.  ``"official"``:
    :func:`official_window`; ``"toolkit"``: the crop square clipped to the frame (its outside pixels
    repeat edge pixels that lie in this window)."""
    _check_mode(mode)
    H, W = int(height), int(width)
    if mode == "official":
        return official_window(box, H, W, size)
    x0, y0, side = _square(box, ROI_MARGIN)
    r0, r1 = min(max(y0, 0), H - 1), min(max(y0 + side - 1, 0), H - 1) + 1
    c0, c1 = min(max(x0, 0), W - 1), min(max(x0 + side - 1, 0), W - 1) + 1
    return r0, r1, c0, c1


def crop_roi(frame: np.ndarray, box, size: int = ROI_SIZE, mode: str = DEFAULT_CROP, *,
             origin: Tuple[int, int] = (0, 0), frame_shape: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """Lip crop of one frame, resized to ``size x size`` uint8.

    ``frame`` is uint8 ``[H, W]`` or ``[H, W, C]`` (the channels are kept: crop an RGB frame
    and convert the crop with :func:`to_gray` for the official gray); ``box`` is
    ``(x1, y1, x2, y2)``.  ``mode="official"`` (default): the MISP2022 baseline's window
    (:func:`official_window`: side ``max(w, h, size)``, clipped to the frame), resized with
    ``INTER_AREA`` only when it is not ``size x size``.  ``mode="toolkit"``: a square of side
    ``max(w, h) * ROI_MARGIN`` around the box centre, out-of-frame pixels edge-replicated
    (see the module docstring).  Non-uint8 input is rounded and clipped to 0..255 first.

    ``frame`` may also be a part of the frame: ``origin`` = (row, column) of its top-left pixel
    in the whole frame and ``frame_shape`` = the whole frame's ``(H, W)``; it must cover
    :func:`crop_window` (else ``ValueError``).  The result equals cropping the whole frame.
    """
    _check_mode(mode)
    img = _as_image(frame)
    size = int(size)
    if size <= 0:
        raise ValueError(f"size must be > 0, got {size}")
    H, W = (int(v) for v in (frame_shape if frame_shape is not None else img.shape[:2]))
    oy, ox = (int(v) for v in origin)
    if frame_shape is not None or oy or ox:
        r0, r1, c0, c1 = crop_window(box, H, W, size, mode)
        if r0 < oy or c0 < ox or r1 > oy + img.shape[0] or c1 > ox + img.shape[1]:
            raise ValueError(f"the region {img.shape[:2]} at {origin} does not cover the crop window "
                             f"rows {r0}:{r1}, columns {c0}:{c1}")
    if mode == "official":
        r0, r1, c0, c1 = official_window(box, H, W, size)
        patch = img[r0 - oy:r1 - oy, c0 - ox:c1 - ox]
        if patch.shape[0] == size and patch.shape[1] == size:
            out = np.array(patch, copy=True)
        else:
            out = cv2.resize(np.ascontiguousarray(patch), (size, size), interpolation=cv2.INTER_AREA)
    else:
        x0, y0, side = _square(box, ROI_MARGIN)
        if x0 >= 0 and y0 >= 0 and x0 + side <= W and y0 + side <= H:
            patch = img[y0 - oy:y0 + side - oy, x0 - ox:x0 + side - ox]
        else:
            ys = np.clip(np.arange(y0, y0 + side), 0, H - 1) - oy
            xs = np.clip(np.arange(x0, x0 + side), 0, W - 1) - ox
            patch = img[ys][:, xs]
        if side == size:
            out = np.array(patch, copy=True)
        else:
            interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
            out = cv2.resize(np.ascontiguousarray(patch), (size, size), interpolation=interp)
    if img.ndim == 3 and out.ndim == 2:  # cv2 drops a single channel axis
        out = out[..., None]
    return out


def to_gray(rgb) -> np.ndarray:
    """uint8 gray of RGB pixels ``[..., 3]``: ``round(0.299 R + 0.587 G + 0.114 B)`` computed in
    float64 (the baseline's conversion, :data:`GRAY_WEIGHTS`, rounded to the nearest level)."""
    x = np.asarray(rgb)
    if x.ndim < 3 or x.shape[-1] != 3:
        raise ValueError(f"expected RGB pixels [..., 3], got shape {x.shape}")
    x = x.astype(np.float64)
    g = GRAY_WEIGHTS[0] * x[..., 0] + GRAY_WEIGHTS[1] * x[..., 1] + GRAY_WEIGHTS[2] * x[..., 2]
    return np.clip(np.rint(g), 0, 255).astype(np.uint8)


def crop_rois(frames: np.ndarray, boxes, size: int = ROI_SIZE, mode: str = DEFAULT_CROP) -> np.ndarray:
    """:func:`crop_roi` for every frame: ``frames [T, H, W(, C)]``, ``boxes [T, 4]`` -> uint8
    ``[T, size, size(, C)]``.

    Boxes must be complete (run :func:`interpolate_boxes` first); ``T`` must match.
    """
    _check_mode(mode)
    frames = np.asarray(frames)
    b = np.asarray(boxes, dtype=np.float64)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"boxes must have shape [T, 4], got {b.shape}")
    if frames.ndim < 3 or frames.shape[0] != b.shape[0]:
        raise ValueError(f"frames {frames.shape} and boxes {b.shape} disagree on T")
    out = np.empty((frames.shape[0], int(size), int(size)) + frames.shape[3:], dtype=np.uint8)
    for t in range(frames.shape[0]):
        out[t] = crop_roi(frames[t], b[t], size, mode)
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


def iter_video_rois(path, boxes, size: int = ROI_SIZE, mode: str = DEFAULT_CROP, *, fps: Optional[float] = None,
                    fast: bool = True) -> Iterator[Tuple[int, Optional[np.ndarray], bool]]:
    """Decode ``path`` once and crop every grid slot: yields ``(grid_index, roi, present)``.

    ``boxes`` float ``[N, 4]``: slot ``i`` is cropped with ``boxes[i]``; a slot at or past ``N``,
    or whose row is not finite, yields ``roi=None`` (nothing converted).  ``roi`` is uint8
    ``[size, size]``: ``"official"`` = :func:`to_gray` of the crop of the RGB frame, ``"toolkit"`` =
    the crop of the decoder's gray frame.  Only the crop window's pixels are converted (module
    docstring, "Cropping while decoding"); ``fast=False`` decodes whole frames the earlier way
    (:func:`frontends.video.iter_video` ``fast=False``, then :func:`crop_roi`), same ROIs.
    ``fps``: the grid rate (default :data:`frontends.video.GRID_FPS`).
    """
    from frontends.video import GRID_FPS, iter_video, iter_video_regions
    _check_mode(mode)
    b = np.asarray(boxes, dtype=np.float64)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"boxes must have shape [N, 4], got {b.shape}")
    ok = np.all(np.isfinite(b), axis=1)
    official, size = mode == "official", int(size)
    fps = GRID_FPS if fps is None else fps
    if not fast:
        for i, frame, present in iter_video(path, fps=fps, gray=not official, fast=False):
            if i >= len(b) or not ok[i]:
                yield i, None, present
                continue
            r = crop_roi(frame, b[i], size, mode)
            yield i, (to_gray(r) if official else r), present
        return
    wins = {}
    shape = [None]

    def region(i, H, W):
        shape[0] = (H, W)
        if i >= len(b) or not ok[i]:
            wins[i] = None
            return 0, 1, 0, 1                    # one pixel, unused
        wins[i] = w = crop_window(b[i], H, W, size, mode)
        return w

    for i, patch, present in iter_video_regions(path, region, fps=fps, gray=not official):
        w = wins.pop(i)
        if w is None:
            yield i, None, present
            continue
        r = crop_roi(patch, b[i], size, mode, origin=(w[0], w[2]), frame_shape=shape[0])
        yield i, (to_gray(r) if official else r), present


def crop_video_rois(path, boxes, size: int = ROI_SIZE, mode: str = DEFAULT_CROP, *, fps: Optional[float] = None,
                    fast: bool = True) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`iter_video_rois` collected: ``(roi uint8 [T, size, size], cropped bool [T], present bool [T])``
    over the video's ``T`` grid slots; slots without a box (``cropped`` False) are zeros."""
    rois, cropped, present = [], [], []
    blank = np.zeros((int(size), int(size)), np.uint8)
    for _i, r, p in iter_video_rois(path, boxes, size, mode, fps=fps, fast=fast):
        rois.append(blank if r is None else r)
        cropped.append(r is not None)
        present.append(p)
    roi = np.stack(rois) if rois else np.zeros((0, int(size), int(size)), np.uint8)
    return roi, np.asarray(cropped, bool), np.asarray(present, bool)
