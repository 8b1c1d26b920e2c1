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

:func:`track_mouth` runs a detector on every frame and follows ONE target face: chosen by
``face_index`` (faces of the first frame with detections, ordered left to right), or by ``bbox``
(the face whose centre is nearest the centre of that box), or by default the largest face (ties:
the most central), with a warning when several faces are present.  Later frames take the detection
nearest the previous target centre (within one face width); frames without one are NaN rows, left
to :func:`frontends.roi.interpolate_boxes`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

__all__ = ["Detection", "Detector", "HaarDetector", "MediaPipeDetector", "get_detector", "track_mouth",
           "DETECTORS"]

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

    def detect(self, frame: np.ndarray) -> List[Detection]:
        g = cv2.equalizeHist(_gray(frame))
        faces = self.cascade.detectMultiScale(g, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                                              minSize=(self.min_face, self.min_face))
        out = []
        a, b, c, d = self.MOUTH
        for (x, y, w, h) in (faces if len(faces) else []):
            out.append(Detection((float(x), float(y), float(x + w), float(y + h)),
                                 (x + a * w, y + b * h, x + c * w, y + d * h)))
        return out


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


def track_mouth(frames: np.ndarray, detector: Detector, face_index: Optional[int] = None,
                bbox: Optional[Box] = None) -> Tuple[np.ndarray, List[str]]:
    """Mouth boxes ``float32 [T, 4]`` (NaN = no detection) of one target face, and warnings."""
    T = len(frames)
    boxes = np.full((T, 4), np.nan, dtype=np.float32)
    warnings: List[str] = []
    target: Optional[Detection] = None
    for t in range(T):
        dets = detector.detect(frames[t])
        if not dets:
            continue
        if target is None:
            target = _pick(dets, np.asarray(frames[t]).shape, face_index, bbox, warnings)
            d = target
        else:
            cx, cy = target.center
            d = min(dets, key=lambda x: (x.center[0] - cx) ** 2 + (x.center[1] - cy) ** 2)
            if (d.center[0] - cx) ** 2 + (d.center[1] - cy) ** 2 > target.width ** 2:
                continue                       # another face: not our target in this frame
            target = d
        boxes[t] = d.mouth
    return boxes, warnings
