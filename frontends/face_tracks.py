"""Lip boxes for a whole far-field session when the release gives none: detect, track, match speakers.

Used by ``avsr.bin.detect_lips`` (recipe stage 2 when a set has neither ``roi_coordinates/`` nor
``detection/`` lip boxes).  The output is a lip-box file in the release's frame-keyed form
(``{"<frame>": [{"id", "x1", "y1", "x2", "y2", "lip"}]}``, see docs/MISP2022_FORMATS.md), so the
rest of stage 2 reads it like a released file.

Steps, all documented behaviour:

1. **Detection** (:func:`detect_session`): the video is streamed once on the 25 fps grid (gray).
   Every ``stride``-th present frame is given to an offline detector (:mod:`frontends.face_detectors`;
   Haar by default), on a copy scaled down to at most ``max_width`` pixels wide (boxes are scaled
   back).  For each detection the *mouth motion* is the mean absolute difference between this frame
   and the previous grid frame inside the mouth box (gray levels; NaN on the first frame).
2. **Tracking** (:func:`link_tracks`): detections are linked frame to frame by centre distance,
   nearest first; a detection joins a track whose last face centre is within one face width and that
   was seen at most ``max_gap`` frames before; otherwise it starts a new track.
3. **Which face is which speaker** (:func:`assign_speakers`): the session's segments give, per
   speaker, the frames in which that speaker talks.  A track's score for a speaker is its mean mouth
   motion over its detections inside that speaker's segments (at least ``min_hits`` of them; fewer:
   no score).  The Hungarian assignment (``scipy.optimize.linear_sum_assignment``) picks one track per
   speaker and one speaker per track, maximising the total score.  So the target face of a speaker
   is *the face whose mouth moves most while that speaker talks*.  A speaker left without a track
   gets no lip boxes: its segments are decoded audio-only (recipe stage 2 ``--keep_all``).
4. **Writing** (:func:`official_entries`): each assigned track's detections are written under the
   speaker's integer id; frames between two detections of the same track at most ``stride`` frames
   apart are filled by linear interpolation and written as detections (the detector only ran on
   every ``stride``-th frame); longer gaps stay empty (no detection).  Coordinates are rounded to
   whole pixels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

__all__ = ["FaceHit", "Track", "detect_session", "link_tracks", "assign_speakers", "official_entries"]

Box = Tuple[float, float, float, float]


@dataclass
class FaceHit:
    frame: int
    face: Box
    mouth: Box
    motion: float = float("nan")

    @property
    def center(self) -> Tuple[float, float]:
        return 0.5 * (self.face[0] + self.face[2]), 0.5 * (self.face[1] + self.face[3])

    @property
    def width(self) -> float:
        return float(self.face[2] - self.face[0])


@dataclass
class Track:
    hits: List[FaceHit] = field(default_factory=list)

    @property
    def last(self) -> FaceHit:
        return self.hits[-1]


def _mouth_motion(cur: np.ndarray, prev: Optional[np.ndarray], box: Box) -> float:
    if prev is None:
        return float("nan")
    H, W = cur.shape[:2]
    x1, y1 = max(0, int(math.floor(box[0]))), max(0, int(math.floor(box[1])))
    x2, y2 = min(W, int(math.ceil(box[2]))), min(H, int(math.ceil(box[3])))
    if x2 <= x1 or y2 <= y1:
        return float("nan")
    a = cur[y1:y2, x1:x2].astype(np.int16)
    b = prev[y1:y2, x1:x2].astype(np.int16)
    return float(np.abs(a - b).mean())


def detect_session(video_path: str, detector, *, stride: int = 5, max_width: int = 960) -> Tuple[List[List[FaceHit]], int]:
    """Per sampled frame, the detections (:class:`FaceHit`); and the number of grid frames.

    Raises :class:`frontends.errors.MediaError` (naming the file) for an unreadable video.
    """
    import cv2

    from frontends.video import iter_video

    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    out: List[List[FaceHit]] = []
    prev = None
    n = 0
    for idx, frame, present in iter_video(video_path, gray=True):
        n = idx + 1
        if present and idx % stride == 0:
            H, W = frame.shape[:2]
            scale = min(1.0, float(max_width) / W) if max_width else 1.0
            small = frame if scale == 1.0 else cv2.resize(frame, (max(1, round(W * scale)), max(1, round(H * scale))),
                                                          interpolation=cv2.INTER_AREA)
            hits = []
            for d in detector.detect(small):
                face = tuple(float(v) / scale for v in d.face)
                mouth = tuple(float(v) / scale for v in d.mouth)
                hits.append(FaceHit(idx, face, mouth, _mouth_motion(frame, prev, mouth)))
            out.append(hits)
        prev = frame
    return out, n


def link_tracks(frames: Iterable[Sequence[FaceHit]], *, max_gap: int = 25) -> List[Track]:
    """Link per-frame detections into tracks (module docstring, step 2)."""
    tracks: List[Track] = []
    for hits in frames:
        if not hits:
            continue
        t = hits[0].frame
        live = [k for k, tr in enumerate(tracks) if t - tr.last.frame <= max_gap]
        pairs = []
        for i, h in enumerate(hits):
            for k in live:
                last = tracks[k].last
                d = math.hypot(h.center[0] - last.center[0], h.center[1] - last.center[1])
                if d <= max(last.width, 1.0):
                    pairs.append((d, i, k))
        pairs.sort()
        used_h, used_t = set(), set()
        for _d, i, k in pairs:
            if i in used_h or k in used_t:
                continue
            tracks[k].hits.append(hits[i])
            used_h.add(i)
            used_t.add(k)
        for i, h in enumerate(hits):
            if i not in used_h:
                tracks.append(Track([h]))
    return tracks


def assign_speakers(tracks: Sequence[Track], speaker_frames: Mapping[int, Sequence[Tuple[int, int]]],
                    *, min_hits: int = 3) -> Tuple[Dict[int, int], Dict[int, Dict[int, float]]]:
    """``{speaker: track index}`` and the score table ``{speaker: {track: mean motion}}``.

    ``speaker_frames``: per speaker, ``[start, end)`` grid-frame ranges of that speaker's segments.
    """
    from scipy.optimize import linear_sum_assignment

    spks = sorted(speaker_frames)
    scores: Dict[int, Dict[int, float]] = {s: {} for s in spks}
    for s in spks:
        ranges = list(speaker_frames[s])
        for k, tr in enumerate(tracks):
            vals = [h.motion for h in tr.hits
                    if np.isfinite(h.motion) and any(a <= h.frame < b for a, b in ranges)]
            if len(vals) >= min_hits:
                scores[s][k] = float(np.mean(vals))
    if not spks or not tracks:
        return {}, scores
    big = 1e9
    cost = np.full((len(spks), len(tracks)), big)
    for i, s in enumerate(spks):
        for k, v in scores[s].items():
            cost[i, k] = -v
    rows, cols = linear_sum_assignment(cost)
    out = {spks[i]: int(k) for i, k in zip(rows, cols) if cost[i, k] < big}
    return out, scores


def official_entries(tracks: Sequence[Track], assignment: Mapping[int, int], *,
                     stride: int = 5) -> Dict[str, List[dict]]:
    """The frame-keyed mapping ``{"<frame>": [{"id", "x1", "y1", "x2", "y2", "lip"}]}`` (step 4)."""
    frames: Dict[int, List[dict]] = {}

    def put(t: int, spk: int, face, mouth) -> None:
        f = [int(round(v)) for v in face]
        m = [int(round(v)) for v in mouth]
        frames.setdefault(t, []).append({"id": int(spk), "x1": f[0], "y1": f[1], "x2": f[2], "y2": f[3],
                                         "lip": m})

    for spk, k in sorted(assignment.items()):
        hits = sorted(tracks[k].hits, key=lambda h: h.frame)
        for j, h in enumerate(hits):
            put(h.frame, spk, h.face, h.mouth)
            if j + 1 < len(hits):
                nxt = hits[j + 1]
                gap = nxt.frame - h.frame
                if 1 < gap <= stride:
                    for t in range(h.frame + 1, nxt.frame):
                        a = (t - h.frame) / gap
                        put(t, spk, [(1 - a) * p + a * q for p, q in zip(h.face, nxt.face)],
                            [(1 - a) * p + a * q for p, q in zip(h.mouth, nxt.mouth)])
    return {str(t): frames[t] for t in sorted(frames)}
