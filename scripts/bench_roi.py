#!/usr/bin/env python
"""Lip-ROI throughput on ONE CPU core: decode-only, crop-only and decode+crop (frames/s).

    python scripts/bench_roi.py --out docs/results/bench_roi.json
    python scripts/bench_roi.py --video session_Far.mp4 --detections session_Far.json --speaker 001

Without ``--video`` a 640x360 25 fps h264 clip (textured background, moving face-like
blob, lighting drift, encoded with libx264 ``crf 23``) is synthesised into a temporary
directory.  Without ``--detections`` the lip box follows the synthetic mouth (or sits
in the frame centre for a given ``--video``).

What is timed (each the median of ``--runs`` runs, on the first CPU of this
process's affinity mask, ``cv2.setNumThreads(1)``; FFmpeg's automatic threading then
sees one CPU):

* ``decode``: :func:`frontends.video.iter_video` (gray, 25 fps grid) over the clip.
* ``crop``: :func:`frontends.roi.crop_roi` (96x96) on frames already in memory.
* ``decode_crop``: both, as ROI extraction does it.

The result (``frames_per_s`` per stage and every run) is printed as JSON together
with the machine, library versions and the command; ``--out`` also writes it.
"""
from __future__ import annotations

import argparse
import fractions
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench_common import command_line, machine_info  # noqa: E402

import av  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402

from frontends.lip_boxes import load_detections  # noqa: E402
from frontends.roi import crop_roi, interpolate_boxes  # noqa: E402
from frontends.constants import ROI_SIZE, VIDEO_FPS  # noqa: E402
from frontends.video import iter_video, video_info  # noqa: E402

W, H, FPS = 640, 360, VIDEO_FPS


def mouth_track(n: int) -> np.ndarray:
    """Synthetic lip boxes [n, 4]: the mouth drifts slowly and opens/closes."""
    t = np.arange(n) / FPS
    cx = W / 2 + 60 * np.sin(2 * np.pi * 0.11 * t)
    cy = H * 0.62 + 15 * np.sin(2 * np.pi * 0.07 * t + 1.0)
    w = 70 + 6 * np.sin(2 * np.pi * 0.5 * t)
    h = 28 + 14 * np.abs(np.sin(2 * np.pi * 2.1 * t))
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1).astype(np.float32)


def synthesise(path: str, seconds: float, seed: int = 0) -> np.ndarray:
    """Write a 640x360 25 fps h264 test clip; returns its lip boxes [T, 4]."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * FPS))
    boxes = mouth_track(n)
    base = cv2.GaussianBlur(rng.integers(0, 256, (H, W), dtype=np.uint8), (0, 0), 3)
    base = cv2.normalize(base, None, 40, 200, cv2.NORM_MINMAX)
    yy, xx = np.mgrid[0:H, 0:W]
    tb = fractions.Fraction(1, FPS)
    c = av.open(path, "w")
    s = c.add_stream("libx264", rate=FPS)
    s.width, s.height, s.pix_fmt = W, H, "yuv420p"
    s.options = {"crf": "23", "preset": "veryfast", "g": "50"}
    for i in range(n):
        x1, y1, x2, y2 = boxes[i]
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        img = np.roll(base, (i // 2) % 40, axis=1).astype(np.float32) * (0.9 + 0.1 * np.sin(i / 40))
        face = ((xx - cx) / 150.0) ** 2 + ((yy - (cy - 60)) / 170.0) ** 2 < 1
        img[face] = 0.5 * img[face] + 90
        mouth = ((xx - cx) / ((x2 - x1) / 2)) ** 2 + ((yy - cy) / ((y2 - y1) / 2)) ** 2 < 1
        img[mouth] = 30
        img += rng.normal(0, 4, img.shape)
        frame = av.VideoFrame.from_ndarray(np.clip(img, 0, 255).astype(np.uint8), format="gray")
        frame.pts, frame.time_base = i, tb
        for pk in s.encode(frame):
            c.mux(pk)
    for pk in s.encode():
        c.mux(pk)
    c.close()
    return boxes


def pin_one_core() -> int:
    cpu = min(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})
    cv2.setNumThreads(1)
    return cpu


def timed(fn, runs: int):
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        n = fn()
        out.append(n / (time.perf_counter() - t0))
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--video", help="video to decode (default: synthesise a 640x360 clip)")
    p.add_argument("--detections", help="frontends.lip_boxes JSON for --video")
    p.add_argument("--speaker", help="speaker id in --detections (default: the first)")
    p.add_argument("--seconds", type=float, default=12.0, help="length of the synthetic clip [12]")
    p.add_argument("--max-frames", type=int, default=750,
                   help="frames held in memory for the crop-only stage [750]")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--size", type=int, default=ROI_SIZE, help=f"ROI side [{ROI_SIZE}]")
    p.add_argument("--out", help="also write the JSON here")
    a = p.parse_args(argv)

    cpu = pin_one_core()
    with tempfile.TemporaryDirectory() as tmp:
        if a.video:
            video = a.video
            t_syn = None
        else:
            video = os.path.join(tmp, "bench_640x360.mp4")
            t0 = time.perf_counter()
            boxes = synthesise(video, a.seconds)
            t_syn = time.perf_counter() - t0
        info = video_info(video)
        if a.video:
            n_est = max(1, int(round(info["duration"] * FPS)))
            if a.detections:
                det = load_detections(a.detections)
                spk = a.speaker or sorted(det.speakers)[0]
                boxes, _ = interpolate_boxes(det.boxes(spk, n_est))
            else:
                bw = info["width"] / 8
                cxy = (info["width"] / 2, info["height"] / 2)
                boxes = np.tile(np.array([cxy[0] - bw / 2, cxy[1] - bw / 4, cxy[0] + bw / 2,
                                          cxy[1] + bw / 4], np.float32), (n_est, 1))

        def box(i):
            return boxes[min(i, len(boxes) - 1)]

        def decode_only():
            n = 0
            for _i, _f, _p in iter_video(video, fps=FPS, gray=True):
                n += 1
            return n

        held = []
        for i, f, _p in iter_video(video, fps=FPS, gray=True):
            held.append(f)
            if len(held) >= a.max_frames:
                break

        def crop_only():
            for i, f in enumerate(held):
                crop_roi(f, box(i), a.size)
            return len(held)

        def decode_crop():
            n = 0
            for i, f, _p in iter_video(video, fps=FPS, gray=True):
                crop_roi(f, box(i), a.size)
                n += 1
            return n

        n_frames = decode_only()  # warm-up (file cache, libraries)
        res = {}
        for name, fn in (("decode", decode_only), ("crop", crop_only), ("decode_crop", decode_crop)):
            runs = timed(fn, a.runs)
            res[name] = {"frames_per_s": round(statistics.median(runs), 1),
                         "runs": [round(r, 1) for r in runs]}

    box_side = float(np.median(np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])))
    out = {
        "machine": {**machine_info(), "opencv": cv2.__version__, "av": av.__version__,
                    "ffmpeg_libavcodec": ".".join(map(str, av.library_versions.get("libavcodec", ()))),
                    "numpy": np.__version__, "pinned_cpu": cpu, "cv2_threads": cv2.getNumThreads()},
        "command": command_line(),
        "video": {"path": a.video or "(synthetic, deleted)", **info, "grid_frames": n_frames,
                  "synthesis_s": None if t_syn is None else round(t_syn, 2)},
        "roi": {"size": a.size, "median_box_side_px": round(box_side, 1)},
        "runs": a.runs,
        "results": res,
    }
    print(json.dumps(out, indent=1))
    if a.out:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        with open(a.out, "w") as f:
            json.dump(out, f, indent=1)
    return out


if __name__ == "__main__":
    main()
