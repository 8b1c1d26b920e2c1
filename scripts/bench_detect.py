#!/usr/bin/env python
"""Face/mouth detection speed against accuracy: per-frame whole-frame Haar detection (the
reference) vs :func:`frontends.face_detectors.track_mouth` with a ``stride`` and a ``search``, in one
process.

    python scripts/bench_detect.py --out docs/results/bench_detect.json

The clip: scikit-image's astronaut photograph (shipped offline) panned and zoomed over a 640x360
canvas at 30 fps (``--seconds``, default 4): the face moves by up to ~5 px and its size changes by
up to ~1 % per frame.  Frames are held in memory (decoding is not timed).  Every run times each
setting once, settings alternating, on the first CPU of the affinity mask with
``cv2.setNumThreads(1)``.  Reported per setting: median seconds, real-time factor (clip seconds /
detection seconds; ``x_real_time`` >= 5 is the target), the IoU of its mouth boxes with the
reference's (mean, 5th percentile and minimum over frames where both have a box; the target is a
minimum >= 0.9), the share of frames whose box equals the reference's, and the share of frames
with a box.  Settings: every ``--strides`` x ``--searches`` pair (``search`` as ``track_mouth``:
``frame`` = whole frame, ``near`` = the cheaper cascade search around the last face, ``window`` =
the whole-frame search computed only around the last face).  The row ``stride 1, frame`` is the
reference, ``stride 5, frame`` the earlier default, and the ``track_mouth`` defaults
(``DEFAULT_STRIDE``, ``DEFAULT_SEARCH``) are marked.

Also reported, outside the timing: how much the reference's own box moves, as the IoU of each
frame's box with the previous frame's (next to the same for a box that moves exactly with the face),
and as the IoU of the boxes found on the frame shifted by one pixel (right and down) with the
unshifted ones.
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

from frontends.face_detectors import DEFAULT_SEARCH, DEFAULT_STRIDE, SEARCHES, HaarDetector, track_mouth  # noqa: E402

H = 360
W = H * 16 // 9          # a 16:9 canvas like the SynthMISP far videos


def astronaut_motion(seconds: float = 6.0, fps: float = 30.0, width: int = W, height: int = H) -> np.ndarray:
    """Per frame ``[T, 3]``: (zoom, x offset, y offset) of the astronaut clip: photo point ``(u, v)``
    lands on canvas point ``(zoom * u + x offset, zoom * v + y offset)``."""
    n = int(round(seconds * fps))
    t = np.arange(n) / fps
    zoom = 0.62 + 0.10 * np.sin(2 * np.pi * 0.15 * t)               # canvas px per photo px
    fx, fy = 230.0, 130.0                                            # photo point that follows the path
    px = width / 2 + 120 * np.sin(2 * np.pi * 0.12 * t)              # where that point lands
    py = height / 2 + 30 * np.sin(2 * np.pi * 0.2 * t + 0.7)
    return np.stack([zoom, px - zoom * fx, py - zoom * fy], 1)


def astronaut_clip(seconds: float = 6.0, fps: float = 30.0, width: int = W, height: int = H) -> np.ndarray:
    """uint8 RGB frames ``[T, height, width, 3]``: the astronaut photograph panned and zoomed
    smoothly (a moving, resizing face; :func:`astronaut_motion`)."""
    import skimage.data
    img = skimage.data.astronaut()                                  # 512x512 RGB, face near (230, 120)
    motion = astronaut_motion(seconds, fps, width, height)
    n = len(motion)
    out = np.empty((n, height, width, 3), np.uint8)
    for i in range(n):
        z, ox, oy = motion[i]
        m = np.array([[z, 0, ox], [0, z, oy]], np.float64)
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


def _stats(b: np.ndarray, ref: np.ndarray) -> dict:
    v = iou(b.astype(np.float64), ref.astype(np.float64))
    ok = np.isfinite(v)
    r = lambda x: round(float(x), 4)  # noqa: E731
    return {"iou_mean": r(v[ok].mean()) if ok.any() else None,
            "iou_p5": r(np.percentile(v[ok], 5)) if ok.any() else None,
            "iou_min": r(v[ok].min()) if ok.any() else None,
            "frames_equal_to_reference": r(np.all(b == ref, axis=1).mean()),
            "frames_with_box": r(np.isfinite(b).all(1).mean())}


def reference_jitter(frames: np.ndarray, motion: np.ndarray, det: HaarDetector, ref: np.ndarray) -> dict:
    """How far the per-frame box moves by itself: IoU with the previous frame's box, against the same for
    a box that moves exactly with the face (the first frame's box carried along by the clip's motion),
    and IoU with the box found on the frame shifted one pixel right and down (mapped back)."""
    f2f = iou(ref[1:].astype(np.float64), ref[:-1].astype(np.float64))
    z, ox, oy = motion[:, 0:1], motion[:, 1:2], motion[:, 2:3]
    photo = (ref[0].astype(np.float64) - [ox[0, 0], oy[0, 0], ox[0, 0], oy[0, 0]]) / z[0, 0]
    true = np.concatenate([z * photo[0] + ox, z * photo[1] + oy, z * photo[2] + ox, z * photo[3] + oy], 1)
    f2f_true = iou(true[1:], true[:-1])
    shifted = np.full(ref.shape, np.nan)
    for t, f in enumerate(frames):
        g = np.pad(f, ((1, 0), (1, 0), (0, 0)), mode="edge")[:-1, :-1]
        dets = det.detect(g)
        if dets and np.isfinite(ref[t]).all():
            c = ((ref[t, 0] + ref[t, 2]) / 2 + 1, (ref[t, 1] + ref[t, 3]) / 2 + 1)
            d = min(dets, key=lambda x: ((x.mouth[0] + x.mouth[2]) / 2 - c[0]) ** 2
                    + ((x.mouth[1] + x.mouth[3]) / 2 - c[1]) ** 2)
            shifted[t] = np.asarray(d.mouth) - 1.0
    sh = iou(shifted, ref.astype(np.float64))
    r = lambda v: {"mean": round(float(np.nanmean(v)), 4), "p5": round(float(np.nanpercentile(v, 5)), 4),  # noqa: E731
                   "min": round(float(np.nanmin(v)), 4)}
    return {"iou_with_previous_frame": r(f2f), "iou_with_previous_frame_moving_with_the_face": r(f2f_true),
            "iou_one_pixel_shift": r(sh)}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--strides", default="1,5", help="comma list of strides [1,5]")
    p.add_argument("--searches", default="frame,near,window", help="comma list of track_mouth searches "
                   f"({', '.join(SEARCHES)}) [frame,near,window]")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--out")
    a = p.parse_args(argv)
    cpu = pin_one_core()
    frames = astronaut_clip(a.seconds, a.fps)
    motion = astronaut_motion(a.seconds, a.fps)
    det = HaarDetector()
    settings = [(int(st), se) for se in a.searches.split(",") for st in a.strides.split(",")]
    for se in {se for _, se in settings}:
        if se not in SEARCHES:
            p.error(f"unknown search {se!r}")
    if (1, "frame") not in settings:
        settings.insert(0, (1, "frame"))
    secs = {k: [] for k in settings}
    boxes = {}
    track_mouth(frames[:5], det)                                    # warm-up
    for _ in range(a.runs):
        for st, se in settings:
            t0 = time.perf_counter()
            b, _w = track_mouth(frames, det, stride=st, search=se)
            secs[(st, se)].append(time.perf_counter() - t0)
            boxes[(st, se)] = b
    ref = boxes[(1, "frame")]
    dur = len(frames) / a.fps
    res = []
    for st, se in settings:
        med = statistics.median(secs[(st, se)])
        role = ("reference" if (st, se) == (1, "frame") else "before (earlier default)" if (st, se) == (5, "frame")
                else "after (default)" if (st, se) == (DEFAULT_STRIDE, DEFAULT_SEARCH) else "")
        res.append({"stride": st, "search": se, "role": role, "seconds": round(med, 3),
                    "runs": [round(x, 3) for x in secs[(st, se)]],
                    "ms_per_frame": round(1000 * med / len(frames), 2), "x_real_time": round(dur / med, 2),
                    **_stats(boxes[(st, se)], ref)})
    out = {"machine": {**machine_info(), "opencv": cv2.__version__, "pinned_cpu": cpu, "cv2_threads": cv2.getNumThreads()},
           "command": command_line(),
           "clip": {"source": "skimage.data.astronaut panned/zoomed (scripts/bench_detect.py astronaut_clip)",
                    "width": W, "height": H, "fps": a.fps, "frames": len(frames), "seconds": dur},
           "detector": "haar (OpenCV haarcascade_frontalface_default, scaleFactor 1.1, minNeighbors 5, minSize 24)",
           "reference": "stride 1, search frame (whole-frame detection on every frame)",
           "defaults": {"stride": DEFAULT_STRIDE, "search": DEFAULT_SEARCH},
           "reference_jitter": reference_jitter(frames, motion, det, ref),
           "runs": a.runs, "results": res}
    emit(out, a.out)
    return out


if __name__ == "__main__":
    main()
