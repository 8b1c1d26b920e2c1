"""The landmark detector (mediapipe's bundled face mesh, installed with --no-deps) runs offline with
numpy 2 and the one OpenCV, and finds the mouth of a real photograph that ships with scikit-image."""
from __future__ import annotations

import importlib.metadata as md

import numpy as np
import pytest

mp = pytest.importorskip("mediapipe", reason="the landmarks extra is installed by make install")


def test_one_opencv_and_numpy_2():
    names = {d.metadata["Name"].lower() for d in md.distributions()}
    assert not {"opencv-contrib-python", "opencv-python"} & names        # only opencv-python-headless
    assert int(np.__version__.split(".")[0]) >= 2


def test_mediapipe_finds_the_astronauts_mouth():
    import skimage.data

    from frontends.face_detectors import get_detector
    img = skimage.data.astronaut()                     # RGB, the lips around x 223, y 145
    dets = get_detector("mediapipe").detect(img)
    assert len(dets) == 1
    x1, y1, x2, y2 = dets[0].mouth
    assert x1 < 223 < x2 and y1 < 145 < y2 and (x2 - x1) < 70 and (y2 - y1) < 40
    fx1, fy1, fx2, fy2 = dets[0].face
    assert fx1 < x1 and fy1 < y1 and x2 < fx2 and y2 < fy2          # the mouth inside the face
    # a landmark mouth box is tighter than Haar's box derived from the face box
    from frontends.face_detectors import HaarDetector
    h = HaarDetector().detect(img)[0].mouth
    assert (x2 - x1) * (y2 - y1) < (h[2] - h[0]) * (h[3] - h[1])
