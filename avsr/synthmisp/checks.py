"""Proxy checks that SynthMISP video carries what its audio lacks, run on a generated corpus.

1. **Visemes are real**: lip ROIs cut from the *encoded* far video (decoded by
   timestamps with :mod:`frontends.video`, cropped with :mod:`frontends.roi`, the
   same code data preparation uses) are classified into the six viseme classes by
   a nearest centroid on pixels (:func:`avsr.synthmisp.proxy.viseme_classification`).
   Frames are labelled with the viseme at the frame centre (non-speech frames
   count as ``sil``); from every run of equal labels only the middle frame is used
   (mid-phone, so the label is what is drawn even for 1-2 frame phones such as
   /b/ or /f/).  Classes are capped at ``per_class`` frames (seeded) to keep
   them balanced.
2. **Video tracks its own speaker**: in every segment that is overlapped >= 40 % by
   another talker, the target's mouth-opening track is correlated with the
   target's and with the interferer's speech envelope
   (:func:`avsr.synthmisp.proxy.envelope_correlation`); reported as the mean over
   those segments.

    python -m avsr.bin.synthmisp_checks --root corpus/synthmisp_mini --split dev --out checks.json
"""
from __future__ import annotations

import glob
import json
import os
from typing import Dict, List, Optional

import numpy as np

from frontends.constants import CROP_SIZE, ROI_SIZE, VIDEO_FPS

FPS = VIDEO_FPS


def _run_middles(lab: np.ndarray) -> np.ndarray:
    """Index of the middle frame of every run of equal labels."""
    if len(lab) == 0:
        return np.zeros(0, dtype=int)
    starts = np.flatnonzero(np.r_[True, lab[1:] != lab[:-1]])
    ends = np.r_[starts[1:], len(lab)]
    return (starts + ends - 1) // 2


def viseme_check(root: str, split: str = "dev", per_class: int = 300, seed: int = 0,
                 max_sessions: Optional[int] = None) -> Dict:
    from avsr.synthmisp import proxy
    from avsr.synthmisp.speech import VISEMES
    from frontends.roi import center_crop, crop_roi
    from frontends.video import iter_video

    classes = [v for v in VISEMES if v != "other"]
    rng = np.random.default_rng(seed)
    files = sorted(glob.glob(os.path.join(root, "truth", split, "*.npz")))[:max_sessions]
    # pick the frames first (cheap), then decode each video once
    picks: Dict[str, List] = {}
    for f in files:
        t = np.load(f)
        name = os.path.basename(f)[:-4]
        for s in range(t["visemes"].shape[0]):
            lab = t["visemes"][s].astype(int)
            lab = np.where(lab < 0, VISEMES.index("sil"), lab)
            for i in _run_middles(lab):
                if VISEMES[lab[i]] in classes:
                    picks.setdefault(VISEMES[lab[i]], []).append((name, s, int(i)))
    chosen = []
    for c in classes:
        cand = picks.get(c, [])
        idx = rng.permutation(len(cand))[:per_class]
        chosen += [(cand[j], classes.index(c)) for j in sorted(idx)]
    by_session: Dict[str, Dict[int, List]] = {}
    for (name, s, i), y in chosen:
        by_session.setdefault(name, {}).setdefault(i, []).append((s, y))
    rois, labels = [], []
    for name, frames in sorted(by_session.items()):
        boxes = np.load(os.path.join(root, "truth", split, f"{name}.npz"))["boxes"]
        video = os.path.join(root, "video", split, "far", f"{name}_Far.mp4")
        last = max(frames)
        for gi, frame, _present in iter_video(video, fps=FPS, gray=True):
            if gi in frames:
                for s, y in frames[gi]:
                    rois.append(center_crop(crop_roi(frame, boxes[s, gi], size=ROI_SIZE), CROP_SIZE))
                    labels.append(y)
            if gi >= last:
                break
    res = proxy.viseme_classification(np.stack(rois), np.array(labels), seed=seed)
    res["classes"] = classes
    res["counts"] = {c: int(np.sum(np.array(labels) == k)) for k, c in enumerate(classes)}
    return res


def tracking_check(root: str, split: str = "dev", min_overlap: float = 0.4,
                   max_sessions: Optional[int] = None) -> Dict:
    from avsr.synthmisp import proxy

    files = sorted(glob.glob(os.path.join(root, "truth", split, "*.npz")))[:max_sessions]
    rt, ri = [], []
    for f in files:
        t = np.load(f)
        spk, st, en, ov = t["turn_spk"], t["turn_start"], t["turn_end"], t["turn_overlap"]
        T = t["tracks"].shape[1]
        for j in range(len(spk)):
            if ov[j] < min_overlap:
                continue
            a, b = int(round(st[j] * FPS)), min(T, int(round(en[j] * FPS)))
            # the interferer: the other speaker with the most speech energy inside the segment
            others = [s for s in range(t["tracks"].shape[0]) if s != spk[j]]
            o = max(others, key=lambda s: float(np.sum(t["envelopes"][s, a:b])))
            r = proxy.envelope_correlation(t["tracks"][spk[j], a:b, 0], t["envelopes"][spk[j], a:b],
                                           t["envelopes"][o, a:b])
            rt.append(r["r_target"])
            ri.append(r["r_interferer"])
    rt_a, ri_a = np.array(rt), np.array(ri)
    return {"segments": len(rt), "r_target": float(np.mean(rt_a)) if rt else float("nan"),
            "r_interferer": float(np.mean(ri_a)) if ri else float("nan"),
            "r_diff": float(np.mean(rt_a - ri_a)) if rt else float("nan"),
            "r_target_p10": float(np.percentile(rt_a, 10)) if rt else float("nan")}


def run_checks(root: str, split: str = "dev", per_class: int = 300, seed: int = 0,
               max_sessions: Optional[int] = None) -> Dict:
    return {"split": split, "viseme": viseme_check(root, split, per_class, seed, max_sessions),
            "tracking": tracking_check(root, split, max_sessions=max_sessions)}
