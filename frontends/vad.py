"""Offline energy-based voice activity detection: where a recording holds sound worth decoding.

:func:`energy_vad` cuts a 16 kHz recording into speech segments ``[(start, end), ...]`` (seconds);
``avsr decode`` and :meth:`avsr.inference.Speech2Text.transcribe` decode each segment on its own.
It is a level detector, not a speech detector: loud non-speech (music, a TV) is kept and left to the
recogniser; it never needs a model.  The rule, with the defaults of :class:`VadConfig`:

1. **Frames**: ``frame_s`` = 25 ms windows every ``hop_s`` = 10 ms; a frame's level is
   ``10 log10(mean(x^2) + 1e-10)`` dB (the last partial window counts as a frame).
2. **Threshold**: ``floor`` = the 10th percentile of the frame levels (the background), ``peak`` = the
   95th percentile (loud speech).  A frame is *active* when its level exceeds
   ``floor + ratio * (peak - floor)`` with ``ratio = 0.3``.  When ``peak - floor < min_range_db``
   (10 dB: one level throughout, all speech or all noise) every frame is active and the recording is
   one segment (then cut by rule 5) -- the recogniser decides.
3. **Gaps**: inactive runs shorter than ``min_silence_s`` (0.30 s) between active frames become active.
4. **Segments**: active runs shorter than ``min_speech_s`` (0.20 s) are dropped; each kept run is
   widened by ``pad_s`` (0.15 s) on both sides (clipped to the recording; runs that then touch or
   overlap are merged).  A segment starts at its first frame's start and ends at its last frame's
   end (the recording's end when that is the last frame).
5. **Length limit**: a segment longer than ``max_segment_s`` (20 s) is split at its quietest frame
   (lowest level), looking only at frames at least ``min_piece_s`` (1 s) from either end; the two
   pieces are split again until every piece is at most ``max_segment_s``.

A recording shorter than one frame, or silent (all zeros), gives no segments.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np

from frontends.constants import SAMPLE_RATE

__all__ = ["VadConfig", "energy_vad", "frame_levels", "split_long"]


@dataclass(frozen=True)
class VadConfig:
    """The parameters of :func:`energy_vad` (see the module docstring for the rule)."""
    frame_s: float = 0.025
    hop_s: float = 0.010
    floor_percentile: float = 10.0
    peak_percentile: float = 95.0
    ratio: float = 0.3
    min_range_db: float = 10.0
    min_silence_s: float = 0.30
    min_speech_s: float = 0.20
    pad_s: float = 0.15
    max_segment_s: float = 20.0
    min_piece_s: float = 1.0

    def __post_init__(self):
        if not (0 < self.frame_s and 0 < self.hop_s and 0 <= self.ratio <= 1 and self.max_segment_s > 0):
            raise ValueError(f"bad VAD settings: {self}")
        if self.max_segment_s <= 2 * self.min_piece_s:
            raise ValueError(f"max_segment_s ({self.max_segment_s}) must exceed 2 * min_piece_s ({self.min_piece_s})")


def frame_levels(audio: np.ndarray, sr: int = SAMPLE_RATE, frame_s: float = 0.025,
                 hop_s: float = 0.010) -> np.ndarray:
    """Level (dB) of each frame ``i`` = samples ``[i * hop, i * hop + frame)``, float64 ``[F]``."""
    x = np.asarray(audio, dtype=np.float64).reshape(-1)
    win, hop = max(int(round(frame_s * sr)), 1), max(int(round(hop_s * sr)), 1)
    if len(x) == 0:
        return np.zeros(0)
    n = 1 + max(len(x) - win, 0) // hop + (1 if len(x) > win and (len(x) - win) % hop else 0)
    c = np.concatenate([[0.0], np.cumsum(x * x)])
    a = np.arange(n) * hop
    b = np.minimum(a + win, len(x))
    return 10.0 * np.log10((c[b] - c[a]) / np.maximum(b - a, 1) + 1e-10)


def _runs(mask: np.ndarray) -> List[Tuple[int, int]]:
    """``[start, end)`` index runs of True."""
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


def split_long(seg: Tuple[int, int], levels: np.ndarray, max_frames: int, min_piece: int) -> List[Tuple[int, int]]:
    """Split the frame range ``[a, b)`` at its quietest frame (at least ``min_piece`` frames from
    either end) until every piece has at most ``max_frames`` frames."""
    a, b = seg
    if b - a <= max_frames:
        return [(a, b)]
    lo, hi = a + min_piece, b - min_piece
    if hi <= lo:
        lo, hi = a + 1, b - 1
    cut = lo + int(np.argmin(levels[lo:hi]))
    return split_long((a, cut), levels, max_frames, min_piece) + split_long((cut, b), levels, max_frames, min_piece)


def energy_vad(audio: np.ndarray, sr: int = SAMPLE_RATE, config: Optional[VadConfig] = None,
               **overrides) -> List[Tuple[float, float]]:
    """Speech segments ``[(start, end), ...]`` in seconds, sorted, not overlapping (module docstring);
    keyword arguments override :class:`VadConfig` fields."""
    cfg = config or VadConfig()
    if overrides:
        cfg = VadConfig(**{**cfg.__dict__, **overrides})
    x = np.asarray(audio, dtype=np.float64).reshape(-1)
    dur = len(x) / sr
    lev = frame_levels(x, sr, cfg.frame_s, cfg.hop_s)
    if len(lev) == 0 or not np.any(x):
        return []
    hop = cfg.hop_s
    floor = float(np.percentile(lev, cfg.floor_percentile))
    peak = float(np.percentile(lev, cfg.peak_percentile))
    if peak - floor < cfg.min_range_db:
        active = np.ones(len(lev), dtype=bool)
    else:
        active = lev > floor + cfg.ratio * (peak - floor)
    # 3. fill short inner gaps
    min_gap = int(round(cfg.min_silence_s / hop))
    for a, b in _runs(~active):
        if a > 0 and b < len(active) and b - a < min_gap:
            active[a:b] = True
    # 4. drop short runs, pad, merge
    min_run = int(round(cfg.min_speech_s / hop))
    pad = int(round(cfg.pad_s / hop))
    segs: List[Tuple[int, int]] = []
    for a, b in _runs(active):
        if b - a < min_run:
            continue
        a, b = max(0, a - pad), min(len(lev), b + pad)
        if segs and a <= segs[-1][1]:
            segs[-1] = (segs[-1][0], max(b, segs[-1][1]))
        else:
            segs.append((a, b))
    # 5. length limit
    max_frames = int(np.floor(cfg.max_segment_s / hop))
    min_piece = int(round(cfg.min_piece_s / hop))
    out: List[Tuple[float, float]] = []
    for s in segs:
        pieces = split_long(s, lev, max_frames, min_piece)
        for i, (a, b) in enumerate(pieces):
            # a piece ends where the next begins (a split point); the last piece of a segment at the
            # end of its last frame (the recording's end for the last frame of the recording)
            end = b * hop if i < len(pieces) - 1 else (dur if b >= len(lev) else (b - 1) * hop + cfg.frame_s)
            out.append((round(a * hop, 3), round(min(end, dur), 3)))
    return out
