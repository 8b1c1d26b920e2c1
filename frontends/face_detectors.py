"""Offline face / mouth detectors behind one interface, and mouth tracking over a video.

``Detector.detect(frame) -> list[Detection]`` for one uint8 frame (gray ``[H, W]`` or RGB
``[H, W, 3]``); a :class:`Detection` has a face box and a mouth box (``x1, y1, x2, y2`` pixels).

* ``haar`` (:class:`HaarDetector`, always available): OpenCV's frontal-face Haar cascade (shipped
  inside opencv-python-headless, nothing downloaded); the mouth box is derived from the face box:
  ``x`` from 25 % to 75 % of the face width, ``y`` from 65 % to 92 % of its height (measured on
  frontal faces; tested on scikit-image's astronaut photograph).
* ``mediapipe`` (:class:`MediaPipeDetector`; ``make install`` puts it in: ``pip install -e ".[landmarks]"``
  then ``pip install --no-deps mediapipe==0.10.21``, because mediapipe declares ``numpy<2`` and a second
  OpenCV although its bundled face mesh runs with numpy 2 and opencv-python-headless; nothing is downloaded
  at run time, the face-mesh model ships inside the wheel):
  face-mesh lip landmarks; the mouth box is the bounding box of the outer-lip landmarks.  Without
  the package, :func:`get_detector` raises a clear error saying how to install it.

:func:`track_mouth` runs a detector on every ``stride``-th frame and follows ONE target face: chosen by
``face_index`` (faces of the first frame with detections, ordered left to right), or by ``bbox``
(the face whose centre is nearest the centre of that box), or by default the largest face (ties:
the most central), with a warning when several faces are present.  Later frames take the detection
nearest the previous target centre (within one face width); frames without one are NaN rows, left
to :func:`frontends.roi.interpolate_boxes`.  By default (``search="window"``, Haar) later frames are
searched only near the target's last face box (:meth:`HaarDetector.detect_around`: the whole-frame
cascade search evaluated there only, which returns the whole-frame boxes at a fraction of the cost),
and the whole frame again when nothing is found there.

With ``stride=N > 1`` the detector runs on frames ``0, N, 2N, ...`` and on the last frame; the mouth
boxes of the frames between two successful detections are linearly interpolated (per coordinate, in
frame index) and count as detected; frames between a success and a miss stay NaN.  ``scale < 1``
runs the detector on the frame resized by ``scale`` (``INTER_AREA``) and maps its boxes back (the
Haar ``min_face`` then applies to the small frame).  Measured on a 30 fps 640x360 clip of the
astronaut photograph panned and zoomed (``scripts/bench_detect.py``, ``docs/results/bench_detect.json``):
see :data:`DEFAULT_STRIDE`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence, Tuple

import cv2
import numpy as np

__all__ = ["Detection", "Detector", "HaarDetector", "MediaPipeDetector", "get_detector", "track_mouth",
           "DETECTORS", "DEFAULT_STRIDE", "DEFAULT_SEARCH", "SEARCHES"]

#: Default ``stride`` of :func:`track_mouth` callers (``avsr decode --detect_every``) and default
#: ``search`` of :func:`track_mouth`, chosen from the measurement in ``docs/results/bench_detect.json``:
#: detecting on every frame, near the last face, gives the per-frame boxes at several times real time,
#: where detecting on every N-th frame and interpolating does not stay within IoU 0.9 of them (the
#: per-frame Haar box itself moves from frame to frame more than the face does).
DEFAULT_STRIDE = 1
DEFAULT_SEARCH = "window"
SEARCHES = ("window", "near", "frame")

Box = Tuple[float, float, float, float]


@dataclass
class Detection:
    face: Box
    mouth: Box
    score: float = 1.0

    @property
    def center(self) -> Tuple[float, float]:
        return ((self.face[0] + self.face[2]) / 2.0, (self.face[1] + self.face[3]) / 2.0)

    @property
    def width(self) -> float:
        return self.face[2] - self.face[0]


class Detector:
    name = "base"

    def detect(self, frame: np.ndarray) -> List[Detection]:  # pragma: no cover - interface
        raise NotImplementedError


def _gray(frame: np.ndarray) -> np.ndarray:
    f = np.asarray(frame)
    if f.ndim == 3:
        f = cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)
    return np.ascontiguousarray(f.astype(np.uint8, copy=False))


class HaarDetector(Detector):
    name = "haar"
    MOUTH = (0.25, 0.65, 0.75, 0.92)   # fractions of the face box

    def __init__(self, cascade: Optional[str] = None, scale_factor: float = 1.1, min_neighbors: int = 5,
                 min_face: int = 24):
        path = cascade or os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml")
        self.cascade = cv2.CascadeClassifier(path)
        if self.cascade.empty():
            raise RuntimeError(f"{path}: cannot load the Haar cascade")
        self.scale_factor, self.min_neighbors, self.min_face = scale_factor, min_neighbors, min_face
        # detect_around scans 2x-upsampled crops at factor 2 (step 1) with a second instance so that neither
        # instance's per-scale state is rebuilt on every call
        self._step1 = cv2.CascadeClassifier(path)
        self._pyramids = {}

    def detect(self, frame: np.ndarray) -> List[Detection]:
        g = cv2.equalizeHist(_gray(frame))
        faces = self.cascade.detectMultiScale(g, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                                              minSize=(self.min_face, self.min_face))
        return self._dets(faces, 0, 0)

    def _dets(self, faces, ox: float, oy: float) -> List[Detection]:
        out = []
        a, b, c, d = self.MOUTH
        for (x, y, w, h) in (faces if len(faces) else []):
            x, y = x + ox, y + oy
            out.append(Detection((float(x), float(y), float(x + w), float(y + h)),
                                 (x + a * w, y + b * h, x + c * w, y + d * h)))
        return out

    def detect_near(self, frame: np.ndarray, face: Box, margin: float = 0.5, size_range=(0.75, 1.35)) -> List[Detection]:
        """Faces near ``face`` only: the cascade searches the face box widened by ``margin`` face
        widths on each side, at face sizes ``size_range`` times the box's width (histogram equalised
        over the whole frame, as :meth:`detect`).  Much cheaper than :meth:`detect`; the boxes are
        close to, not always equal to, a whole-frame search."""
        g = cv2.equalizeHist(_gray(frame))
        H, W = g.shape[:2]
        x1, y1, x2, y2 = face
        fw = max(x2 - x1, y2 - y1)
        c0, c1 = max(0, int(x1 - margin * fw)), min(W, int(np.ceil(x2 + margin * fw)))
        r0, r1 = max(0, int(y1 - margin * fw)), min(H, int(np.ceil(y2 + margin * fw)))
        if c1 - c0 < self.min_face or r1 - r0 < self.min_face:
            return []
        lo = max(self.min_face, int(size_range[0] * fw))
        hi = max(lo + 1, int(np.ceil(size_range[1] * fw)))
        faces = self.cascade.detectMultiScale(g[r0:r1, c0:c1], scaleFactor=self.scale_factor,
                                              minNeighbors=self.min_neighbors, minSize=(lo, lo), maxSize=(hi, hi))
        return self._dets(faces, c0, r0)

    def _pyramid(self, W: int, H: int) -> List[Tuple[np.float32, int, int, int, int, int]]:
        """The scales ``detectMultiScale`` searches on a ``W x H`` image, as it enumerates them: ``(factor
        as float32, window width, window height, scaled width, scaled height, position step)``."""
        key = (W, H)
        if key not in self._pyramids:
            ow, oh = self.cascade.getOriginalWindowSize()
            out, factor = [], 1.0
            while True:                                     # OpenCV: for (double factor = 1; ; factor *= scaleFactor)
                w, h = int(np.rint(ow * factor)), int(np.rint(oh * factor))   # cvRound: half to even, like lrint
                if w > W or h > H:
                    break
                if w >= self.min_face and h >= self.min_face:
                    f = np.float32(factor)
                    out.append((f, int(np.rint(np.float32(ow) * f)), int(np.rint(np.float32(oh) * f)),
                                int(np.rint(np.float32(W) / f)), int(np.rint(np.float32(H) / f)), 1 if f >= 2 else 2))
                factor *= self.scale_factor
            self._pyramids[key] = out
        return self._pyramids[key]

    def detect_around(self, frame: np.ndarray, face: Box, center_range: float = 0.25, size_range=(0.5, 2.0),
                      accept: float = 0.1, warm: int = 4) -> List[Detection]:
        """The faces :meth:`detect` finds near ``face``, computed only there: the whole-frame search's own
        windows (its image pyramid, resampled the same way, its positions and scan order) whose centres lie
        within ``center_range`` face widths of the centre of ``face``, at window sizes ``size_range`` times
        its width, grouped as ``detectMultiScale`` groups them; of the groups, those centred within
        ``accept`` face widths (``[]`` when none is).  When every window of a face's group lies inside
        those ranges the box is the one :meth:`detect` returns, to the pixel.  On the benchmark clip the
        windows of a group lie within 0.15 face widths of its centre, so a face that moved by up to
        ``accept`` = ``center_range`` - 0.15 face widths is found as the whole-frame search finds it
        (``scripts/bench_detect.py`` counts the frames where the boxes are equal); a face that moved
        farther is left to the caller's whole-frame search.  ``warm`` extra
        positions are scanned to the left of each row so that OpenCV's scan, which skips the next
        position after a window rejected by the first stage, falls into step with the whole-frame
        scan before the range starts.

        The whole-frame search evaluates, at factor ``f``, the cascade's window (24x24 for the default
        cascade) at every ``step``-th position of the frame resized to ``round(W/f) x round(H/f)``
        (``INTER_LINEAR_EXACT``), ``step`` 1 from factor 2 up and 2 below.  Here the frame is resized the
        same way and the cascade runs on a crop of it: directly at factor 1 (step 2), or upsampled 2x
        (nearest) at factor 2, which the cascade downsamples back exactly and scans with step 1."""
        g = cv2.equalizeHist(_gray(frame))
        H, W = g.shape[:2]
        ow, oh = self.cascade.getOriginalWindowSize()
        x1, y1, x2, y2 = face
        fw = max(x2 - x1, y2 - y1)
        cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
        reach = center_range * fw
        cand = []
        for f, rw, rh, sw, sh, step in self._pyramid(W, H):
            if rw < size_range[0] * fw or rw > size_range[1] * fw:
                continue
            ff = float(f)
            # window top-left positions (scaled image) whose centre is within reach, on the scan's lattice
            xl, xh = int(np.floor((cx - reach) / ff - ow / 2)), int(np.ceil((cx + reach) / ff - ow / 2))
            yl, yh = int(np.floor((cy - reach) / ff - oh / 2)), int(np.ceil((cy + reach) / ff - oh / 2))
            c0 = max(0, xl - warm * step)
            c0 -= c0 % step
            r0 = max(0, yl)
            r0 -= r0 % step
            c1, r1 = min(sw, xh + ow + 1), min(sh, yh + oh + 1)
            if c1 - c0 <= ow or r1 - r0 <= oh:
                continue
            crop = cv2.resize(g, (sw, sh), interpolation=cv2.INTER_LINEAR_EXACT)[r0:r1, c0:c1]
            if step == 1:
                up = cv2.resize(crop, (2 * crop.shape[1], 2 * crop.shape[0]), interpolation=cv2.INTER_NEAREST)
                found = self._step1.detectMultiScale(up, scaleFactor=2.0, minNeighbors=0, minSize=(2 * ow, 2 * oh),
                                                     maxSize=(2 * ow, 2 * oh))
                pos = [(x // 2, y // 2) for (x, y, _w, _h) in (found if len(found) else [])]
            else:
                found = self.cascade.detectMultiScale(np.ascontiguousarray(crop), scaleFactor=1.1, minNeighbors=0,
                                                      minSize=(ow, oh), maxSize=(ow, oh))
                pos = [(x, y) for (x, y, _w, _h) in (found if len(found) else [])]
            for x, y in pos:                               # OpenCV: Rect(cvRound(x*scale), cvRound(y*scale), ...)
                cand.append([int(np.rint(np.float32(x + c0) * f)), int(np.rint(np.float32(y + r0) * f)), rw, rh])
        if not cand:
            return []
        if self.min_neighbors > 0:
            rects, _ = cv2.groupRectangles(cand, self.min_neighbors, 0.2)
        else:
            rects = cand
        keep = [r for r in (rects if len(rects) else [])
                if max(abs(r[0] + r[2] / 2.0 - cx), abs(r[1] + r[3] / 2.0 - cy)) <= accept * fw]
        return self._dets(keep, 0, 0)


class MediaPipeDetector(Detector):
    name = "mediapipe"
    # outer-lip landmarks of the 468-point face mesh
    LIPS = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)

    def __init__(self, max_faces: int = 4):
        try:
            import mediapipe as mp  # noqa: F401
        except ImportError:
            raise RuntimeError("the mediapipe detector needs the optional package: pip install -e '.[landmarks]' && "
                               "pip install --no-deps mediapipe==0.10.21 (or use --detector haar)") from None
        self.mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=False, max_num_faces=max_faces,
                                                    refine_landmarks=False)

    def detect(self, frame: np.ndarray) -> List[Detection]:
        f = np.asarray(frame)
        rgb = cv2.cvtColor(f, cv2.COLOR_GRAY2RGB) if f.ndim == 2 else f
        H, W = rgb.shape[:2]
        res = self.mesh.process(rgb)
        out = []
        for lm in (res.multi_face_landmarks or []):
            pts = np.array([(p.x * W, p.y * H) for p in lm.landmark])
            lips = pts[list(self.LIPS)]
            out.append(Detection((*pts.min(0), *pts.max(0)), (*lips.min(0), *lips.max(0))))
        return out


DETECTORS = {"haar": HaarDetector, "mediapipe": MediaPipeDetector}


def get_detector(name: str = "haar", **kw) -> Detector:
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; choose from {sorted(DETECTORS)}")
    return DETECTORS[name](**kw)


def _pick(dets: Sequence[Detection], shape, face_index: Optional[int], bbox: Optional[Box],
          warnings: List[str]) -> Detection:
    order = sorted(dets, key=lambda d: d.center[0])          # left to right
    if face_index is not None:
        if not 0 <= face_index < len(order):
            raise ValueError(f"--face-index {face_index}: only {len(order)} face(s) found")
        return order[face_index]
    if bbox is not None:
        cx, cy = (bbox[0] + bbox[2]) / 2.0, (bbox[1] + bbox[3]) / 2.0
        return min(order, key=lambda d: (d.center[0] - cx) ** 2 + (d.center[1] - cy) ** 2)
    H, W = shape[:2]
    best = max(order, key=lambda d: (round(d.width), -((d.center[0] - W / 2) ** 2 + (d.center[1] - H / 2) ** 2)))
    if len(order) > 1:
        warnings.append(f"{len(order)} faces found; using the largest (index {order.index(best)} left to right); "
                        f"choose another with --face-index or --bbox")
    return best


def _scaled(detector: Detector, frame, scale: float) -> List[Detection]:
    if scale == 1.0:
        return detector.detect(frame)
    f = np.asarray(frame)
    H, W = f.shape[:2]
    small = cv2.resize(f, (max(1, int(round(W * scale))), max(1, int(round(H * scale)))),
                       interpolation=cv2.INTER_AREA)
    sx, sy = W / small.shape[1], H / small.shape[0]
    out = []
    for d in detector.detect(small):
        fb, mb = d.face, d.mouth
        out.append(Detection((fb[0] * sx, fb[1] * sy, fb[2] * sx, fb[3] * sy),
                             (mb[0] * sx, mb[1] * sy, mb[2] * sx, mb[3] * sy), d.score))
    return out


def track_mouth(frames: "np.ndarray | Iterable[np.ndarray]", detector: Detector, face_index: Optional[int] = None,
                bbox: Optional[Box] = None, stride: int = 1, scale: float = 1.0,
                local: bool = False, search: Optional[str] = None) -> Tuple[np.ndarray, List[str]]:
    """Mouth boxes ``float32 [T, 4]`` (NaN = no detection) of one target face, and warnings.

    ``frames``: an array ``[T, H, W(, 3)]`` or any iterable of frames (consumed once, one frame held
    at a time, e.g. the frames of :func:`frontends.video.iter_video`).  ``stride``: detect on every
    ``stride``-th frame and the last one, interpolating between successes; ``scale``: detect on frames
    resized by this factor (module docstring).  ``search`` (default :data:`DEFAULT_SEARCH`), once the
    target is found:

    * ``"window"``: the detector's ``detect_around`` (Haar): the whole-frame search computed only near
      the target's last face box (same boxes there, see :meth:`HaarDetector.detect_around`); used with
      ``scale`` 1 only;
    * ``"near"`` (also ``local=True``, the earlier keyword): the detector's ``detect_near`` (Haar): a
      cheaper cascade search of the region around the last face box, close to but not the same as
      the whole-frame search;
    * ``"frame"``: the whole frame every time.

    ``window`` and ``near`` fall back to the whole frame when they find nothing, and detectors without
    the method (``mediapipe``) always search the whole frame.
    """
    stride = int(stride)
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    scale = float(scale)
    if not 0 < scale <= 1:
        raise ValueError(f"scale must be in (0, 1], got {scale}")
    if search is None:
        search = "near" if local else DEFAULT_SEARCH
    elif local and search != "near":
        raise ValueError(f"local=True is search='near', not {search!r}")
    if search not in SEARCHES:
        raise ValueError(f"unknown search {search!r}; choose from {SEARCHES}")
    rows: List[np.ndarray] = []
    warnings: List[str] = []
    target: Optional[Detection] = None
    last_hit: Optional[int] = None         # frame index of the previous successful detection
    nan = np.full(4, np.nan, dtype=np.float32)

    def detect(t: int, frame) -> None:
        nonlocal target, last_hit
        dets = None
        if target is not None:
            if search == "window" and scale == 1.0 and hasattr(detector, "detect_around"):
                dets = detector.detect_around(frame, target.face)
            elif search == "near" and hasattr(detector, "detect_near"):
                dets = detector.detect_near(frame, target.face)
        if not dets:
            dets = _scaled(detector, frame, scale)
        if not dets:
            last_hit = None
            return
        if target is None:
            target = _pick(dets, np.asarray(frame).shape, face_index, bbox, warnings)
            d = target
        else:
            cx, cy = target.center
            d = min(dets, key=lambda x: (x.center[0] - cx) ** 2 + (x.center[1] - cy) ** 2)
            if (d.center[0] - cx) ** 2 + (d.center[1] - cy) ** 2 > target.width ** 2:
                last_hit = None
                return                       # another face: not our target in this frame
            target = d
        rows[t] = np.asarray(d.mouth, dtype=np.float32)
        if last_hit is not None and t - last_hit > 1:
            a, b = rows[last_hit].astype(np.float64), rows[t].astype(np.float64)
            for k in range(last_hit + 1, t):
                w = (k - last_hit) / (t - last_hit)
                rows[k] = ((1 - w) * a + w * b).astype(np.float32)
        last_hit = t

    it = iter(frames)
    pending = None                          # (index, frame) not yet known to be the last one
    t = 0
    for frame in it:
        if pending is not None:
            pt, pf = pending
            if pt % stride == 0:
                detect(pt, pf)
        rows.append(nan.copy())
        pending = (t, frame)
        t += 1
    if pending is not None:
        detect(*pending)                    # the last frame is always searched
    boxes = np.stack(rows).astype(np.float32) if rows else np.zeros((0, 4), np.float32)
    return boxes, warnings
