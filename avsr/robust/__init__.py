"""Robustness plug-ins: simulations of unreliable video used by training and evaluation.

:mod:`avsr.robust.missing_video` - missing lip-video frames (black frames + ``frame_mask``).
"""
from avsr.robust.missing_video import (PATTERNS, FrameDropout, apply_missing_video,  # noqa: F401
                                       drop_frames, drop_mask, num_dropped, stable_seed)

__all__ = ["PATTERNS", "FrameDropout", "apply_missing_video", "drop_frames", "drop_mask",
           "num_dropped", "stable_seed"]
