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

``--before_after`` (``make``-free: ``python scripts/bench_roi.py --before_after --out
docs/results/bench_roi_speed.json``) times the earlier and the current decode path in one process,
alternating stage by stage within each run, for both crop modes:

* ``decode_before`` / ``decode_after``: :func:`frontends.video.iter_video` gray with ``fast=False``
  (swscale converts every whole frame: the earlier path) / ``fast=True`` (luma table);
* ``decode_rgb_before`` / ``decode_rgb_after``: the same with RGB frames;
* ``<mode>_before``: whole frames decoded the earlier way (RGB for ``official``, gray for
  ``toolkit``), :func:`frontends.roi.crop_roi`, and :func:`frontends.roi.to_gray` for ``official``
  (what ``prepare_pair`` did); ``<mode>_after``: :func:`frontends.roi.iter_video_rois` (only the
  crop window converted).

It reports medians, the ratios of decode+crop to decode-only, and whether the ROIs of the two paths
are identical (every pixel of every frame, both modes).
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
from frontends.roi import crop_roi, crop_video_rois, interpolate_boxes, iter_video_rois, to_gray  # noqa: E402
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


def before_after(video: str, boxes: np.ndarray, size: int, runs: int):
    """The ``--before_after`` stages (module docstring), alternated within each run."""
    def dec(gray, fast):
        def f():
            n = 0
            for _i, _f, _p in iter_video(video, fps=FPS, gray=gray, fast=fast):
                n += 1
            return n
        return f

    def crop_before(mode):
        official = mode == "official"

        def f():
            n = 0
            for i, fr, _p in iter_video(video, fps=FPS, gray=not official, fast=False):
                r = crop_roi(fr, boxes[min(i, len(boxes) - 1)], size, mode)
                if official:
                    r = to_gray(r)
                n += 1
            return n
        return f

    full = np.concatenate([boxes, np.repeat(boxes[-1:], 100, 0)])  # a box for every grid slot

    def crop_after(mode):
        def f():
            n = 0
            for _i, _r, _p in iter_video_rois(video, full, size, mode, fps=FPS):
                n += 1
            return n
        return f

    stages = {"decode_before": dec(True, False), "decode_after": dec(True, True),
              "decode_rgb_before": dec(False, False), "decode_rgb_after": dec(False, True)}
    for mode in ("official", "toolkit"):
        stages[f"{mode}_before"], stages[f"{mode}_after"] = crop_before(mode), crop_after(mode)
    per = {k: [] for k in stages}
    for _ in range(runs):
        for k, fn in stages.items():
            t0 = time.perf_counter()
            n = fn()
            per[k].append(n / (time.perf_counter() - t0))
    res = {k: {"frames_per_s": round(statistics.median(v), 1), "runs": [round(x, 1) for x in v]}
           for k, v in per.items()}
    med = {k: statistics.median(v) for k, v in per.items()}
    ratios = {}
    for mode in ("official", "toolkit"):
        for when in ("before", "after"):
            ratios[f"{mode}_{when}_vs_decode_before"] = round(med[f"{mode}_{when}"] / med["decode_before"], 3)
            ratios[f"{mode}_{when}_vs_decode_after"] = round(med[f"{mode}_{when}"] / med["decode_after"], 3)
    ratios["decode_after_vs_before"] = round(med["decode_after"] / med["decode_before"], 3)
    identical = {}
    for mode in ("official", "toolkit"):
        old = crop_video_rois(video, full, size, mode, fps=FPS, fast=False)
        new = crop_video_rois(video, full, size, mode, fps=FPS, fast=True)
        identical[mode] = bool(all(np.array_equal(x, y) for x, y in zip(old, new)))
    gray_old = [f for _i, f, _p in iter_video(video, fps=FPS, gray=True, fast=False)]
    gray_new = [f for _i, f, _p in iter_video(video, fps=FPS, gray=True, fast=True)]
    identical["decode_gray"] = len(gray_old) == len(gray_new) and all(
        np.array_equal(x, y) for x, y in zip(gray_old, gray_new))
    return res, {"ratios": ratios, "identical": identical,
                 "stages": {"decode_before": "iter_video gray, fast=False (swscale on whole frames)",
                            "decode_after": "iter_video gray, fast=True (luma table)",
                            "official_before": "iter_video RGB fast=False + crop_roi official + to_gray",
                            "official_after": "iter_video_rois official (RGB of the crop window only)",
                            "toolkit_before": "iter_video gray fast=False + crop_roi toolkit",
                            "toolkit_after": "iter_video_rois toolkit (gray of the crop window only)"}}


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
    p.add_argument("--before_after", action="store_true",
                   help="time the earlier and the current decode(+crop) paths, alternating, both crop modes")
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
        extra = {}
        if not a.before_after:
            for name, fn in (("decode", decode_only), ("crop", crop_only), ("decode_crop", decode_crop)):
                runs = timed(fn, a.runs)
                res[name] = {"frames_per_s": round(statistics.median(runs), 1),
                             "runs": [round(r, 1) for r in runs]}
        else:
            res, extra = before_after(video, boxes, a.size, a.runs)

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
        **extra,
    }
    print(json.dumps(out, indent=1))
    if a.out:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        with open(a.out, "w") as f:
            json.dump(out, f, indent=1)
    return out


if __name__ == "__main__":
    main()
