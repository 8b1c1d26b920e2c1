#!/usr/bin/env python
"""Face/mouth detection speed against accuracy: per-frame detection (the earlier path) vs
:func:`frontends.face_detectors.track_mouth` with ``stride`` (and ``scale``), in one process.

    python scripts/bench_detect.py --out docs/results/bench_detect.json

The clip: scikit-image's astronaut photograph (shipped offline) panned and zoomed over a 640x360
canvas at 30 fps (``--seconds``, default 6): the face moves by up to ~5 px and its size changes by
up to ~1 % per frame.  Frames are held in memory (decoding is not timed).  Every run times each
setting once, settings alternating, on the first CPU of the affinity mask with
``cv2.setNumThreads(1)``.  Reported per setting: median seconds, real-time factor (clip seconds /
detection seconds; ``x_real_time`` >= 5 is the target), and the IoU of its mouth boxes with the
per-frame detection's (mean, min, over frames where both have a box), plus the share of frames
with a box.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench_common import command_line, emit, machine_info  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from frontends.face_detectors import HaarDetector, track_mouth  # noqa: E402

H = 360
W = H * 16 // 9          # a 16:9 canvas like the SynthMISP far videos


def astronaut_clip(seconds: float = 6.0, fps: float = 30.0, width: int = W, height: int = H) -> np.ndarray:
    """uint8 RGB frames ``[T, height, width, 3]``: the astronaut photograph panned and zoomed
    smoothly (a moving, resizing face)."""
    import skimage.data
    img = skimage.data.astronaut()                                  # 512x512 RGB, face near (230, 120)
    n = int(round(seconds * fps))
    t = np.arange(n) / fps
    zoom = 0.62 + 0.10 * np.sin(2 * np.pi * 0.15 * t)               # canvas px per photo px
    fx = 230 + 0 * t                                                 # photo point that follows the path
    fy = 130 + 0 * t
    px = width / 2 + 120 * np.sin(2 * np.pi * 0.12 * t)              # where that point lands
    py = height / 2 + 30 * np.sin(2 * np.pi * 0.2 * t + 0.7)
    out = np.empty((n, height, width, 3), np.uint8)
    for i in range(n):
        m = np.array([[zoom[i], 0, px[i] - zoom[i] * fx[i]], [0, zoom[i], py[i] - zoom[i] * fy[i]]], np.float64)
        out[i] = cv2.warpAffine(img, m, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                borderValue=(90, 90, 90))
    return out


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU per row of two box arrays ``[T, 4]`` (NaN where either row is missing)."""
    ix = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = ix * iy
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def pin_one_core() -> int:
    cpu = min(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})
    cv2.setNumThreads(1)
    return cpu


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--strides", default="1,2,3,4,5,6,8", help="comma list of strides [1,2,3,4,5,6,8]")
    p.add_argument("--scales", default="1,local", help="comma list of detection scales, or 'local' (search near "
                   "the last face, track_mouth local=True) [1,local]")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--out")
    a = p.parse_args(argv)
    cpu = pin_one_core()
    frames = astronaut_clip(a.seconds, a.fps)
    det = HaarDetector()
    settings = [(int(s), c) for c in a.scales.split(",") for s in a.strides.split(",")]
    settings = [(st, "local" if c == "local" else float(c)) for st, c in settings]
    if (1, 1.0) not in settings:
        settings.insert(0, (1, 1.0))
    secs = {k: [] for k in settings}
    boxes = {}
    track_mouth(frames[:5], det)                                    # warm-up
    for _ in range(a.runs):
        for st, sc in settings:
            t0 = time.perf_counter()
            b, _w = track_mouth(frames, det, stride=st, scale=1.0 if sc == "local" else sc, local=sc == "local")
            secs[(st, sc)].append(time.perf_counter() - t0)
            boxes[(st, sc)] = b
    ref = boxes[(1, 1.0)]
    dur = len(frames) / a.fps
    res = []
    for st, sc in settings:
        b = boxes[(st, sc)]
        v = iou(b.astype(np.float64), ref.astype(np.float64))
        ok = np.isfinite(v)
        med = statistics.median(secs[(st, sc)])
        res.append({"stride": st, "scale": sc, "seconds": round(med, 3), "runs": [round(x, 3) for x in secs[(st, sc)]],
                    "ms_per_frame": round(1000 * med / len(frames), 2), "x_real_time": round(dur / med, 2),
                    "iou_mean": round(float(v[ok].mean()), 4) if ok.any() else None,
                    "iou_min": round(float(v[ok].min()), 4) if ok.any() else None,
                    "frames_with_box": round(float(np.isfinite(b).all(1).mean()), 4)})
    out = {"machine": {**machine_info(), "opencv": cv2.__version__, "pinned_cpu": cpu, "cv2_threads": cv2.getNumThreads()},
           "command": command_line(),
           "clip": {"source": "skimage.data.astronaut panned/zoomed (scripts/bench_detect.py astronaut_clip)",
                    "width": W, "height": H, "fps": a.fps, "frames": len(frames), "seconds": dur},
           "detector": "haar", "reference": "stride 1, scale 1 (per-frame detection, the earlier path)",
           "runs": a.runs, "results": res}
    emit(out, a.out)
    return out


if __name__ == "__main__":
    main()
