"""Robustness plug-ins: simulations of unreliable video used by training and evaluation.

:mod:`avsr.robust.frame_loss` - video frame loss (black frames + ``frame_mask``) for evaluation;
:mod:`avsr.robust.frame_dropout` - training-time frame dropout (``FrameDropout`` and its
:class:`avsr.method.TrainingMethod`, ``FrameDropoutMethod``).  Methods here depend on the
:mod:`avsr.method` interface only, never on :mod:`avsr.trainer`.
"""
from avsr.robust.frame_dropout import FrameDropout  # noqa: F401
from avsr.robust.frame_loss import (PATTERNS, apply_missing_video, drop_frames, drop_mask,  # noqa: F401
                                    num_dropped, stable_seed)

__all__ = ["PATTERNS", "FrameDropout", "apply_missing_video", "drop_frames", "drop_mask",
           "num_dropped", "stable_seed"]
