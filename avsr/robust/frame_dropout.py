"""Training-time frame dropout: :class:`FrameDropout` (a batch transform) and
:class:`FrameDropoutMethod` (the same as a :class:`avsr.method.TrainingMethod`).

During training each sample gets, with probability ``d_prob``, black frames at a fixed
rate or one drawn from ``(lo, hi]`` in ``pattern`` (patterns, counts and black frames:
:mod:`avsr.robust.frame_loss`).  Validation batches are left
untouched unless ``on_valid=True`` (then the same object draws drops for them too).  The
generator state is saved in trainer checkpoints, so a resumed run draws the same drops.

Under DDP (``trainer.world_size > 1``) each rank re-seeds its generator with
``stable_seed(seed, "rank", rank)`` at ``setup`` so ranks draw different drops.

Example::

    from avsr.robust.frame_dropout import FrameDropoutMethod
    Trainer(model, train_set, valid_set, cfg, methods=[FrameDropoutMethod(d_prob=0.5)], exp_dir=...)

Documented behaviours
---------------------
* **Training** (:class:`FrameDropout`): per sample, with probability ``d_prob``, drop
  frames at a rate that is fixed or drawn uniformly from ``(lo, hi]`` (default
  ``(0, 1]``).  The randomness comes from a ``numpy.random.Generator`` (PCG64) owned by the
  object, not from the per-utterance hash; :meth:`FrameDropout.state_dict` /
  :meth:`FrameDropout.load_state_dict` save and restore it so a resumed run draws exactly
  the same drops.  Only frames ``< video_lens[b]`` are candidates; padding is untouched.
* **The undropped video is kept**: ``batch.extras["clean_video"]`` holds the video as it came in,
  unless an earlier transform already set it (the first one wins), so a frozen teacher
  (:class:`avsr.robust.mda_kd.MDAKDMethod`) sees the video before any dropout whatever order the
  methods are given in.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from avsr.method import TrainingMethod
from avsr.robust.frame_loss import _check_pattern, _check_rate, drop_mask, stable_seed

__all__ = ["FrameDropout", "FrameDropoutMethod"]


class FrameDropout:
    """Training-time frame dropout (see the module docstring).

    ``rate``: a fixed rate in [0, 1], or a ``(lo, hi)`` range from which a rate is drawn
    uniformly in ``(lo, hi]`` per dropped sample (default ``(0.0, 1.0)``: uniform in (0, 1]).
    ``d_prob``: probability that a sample gets dropout at all.  ``pattern``: one of
    :data:`avsr.robust.frame_loss.PATTERNS`, or a sequence of them (one drawn uniformly per dropped sample).
    ``seed``: seeds the generator owned by the object.
    """

    def __init__(self, rate: Union[float, Tuple[float, float]] = (0.0, 1.0), d_prob: float = 0.5,
                 pattern: Union[str, Sequence[str]] = "random", seed: int = 0):
        if isinstance(rate, (tuple, list)):
            if len(rate) != 2:
                raise ValueError(f"rate range must be (lo, hi), got {rate!r}")
            lo, hi = _check_rate(rate[0]), _check_rate(rate[1])
            if lo > hi:
                raise ValueError(f"rate range must have lo <= hi, got {rate!r}")
            self.rate: Union[float, Tuple[float, float]] = (lo, hi)
        else:
            self.rate = _check_rate(rate)
        d = float(d_prob)
        if not 0.0 <= d <= 1.0:
            raise ValueError(f"d_prob must be in [0, 1], got {d_prob!r}")
        self.d_prob = d
        self.patterns = [pattern] if isinstance(pattern, str) else list(pattern)
        if not self.patterns:
            raise ValueError("no pattern given")
        for p in self.patterns:
            _check_pattern(p)
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)

    def __repr__(self) -> str:
        pat = self.patterns[0] if len(self.patterns) == 1 else self.patterns
        return f"FrameDropout(rate={self.rate!r}, d_prob={self.d_prob}, pattern={pat!r}, seed={self.seed})"

    # ------------------------------------------------------------------ randomness
    def state_dict(self) -> Dict[str, Any]:
        return {"seed": self.seed, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.seed = int(state.get("seed", self.seed))
        self.rng = np.random.default_rng(self.seed)
        self.rng.bit_generator.state = state["rng"]

    def sample(self, T: int) -> Tuple[np.ndarray, float, Optional[str]]:
        """One sample's decision: ``(drop bool [T], rate, pattern)`` (rate 0 / pattern None when skipped)."""
        apply = self.rng.random() < self.d_prob
        if not apply:
            return np.zeros(int(T), dtype=bool), 0.0, None
        if isinstance(self.rate, tuple):
            lo, hi = self.rate
            rate = hi - self.rng.random() * (hi - lo)  # uniform in (lo, hi]
        else:
            rate = self.rate
        pattern = self.patterns[0] if len(self.patterns) == 1 else \
            self.patterns[int(self.rng.integers(len(self.patterns)))]
        return drop_mask(T, rate, pattern, rng=self.rng), float(rate), pattern

    # ------------------------------------------------------------------ batch
    def __call__(self, batch):
        """A new Batch with frames dropped (video cloned; the input batch is not modified).

        ``frame_mask`` (made from ``video_lens`` when the batch has none) gets False for the
        dropped frames; existing False entries stay False; padding is untouched.
        ``extras["frame_loss_rate"]``: float32 ``[B]``, the frame-loss rate applied (0 = no dropout);
        ``extras["clean_video"]``: the input video (kept when already set by an earlier transform).
        """
        if batch.video is None:
            return batch
        video = batch.video.clone()
        B, T = int(video.shape[0]), int(video.shape[1])
        lens = batch.video_lens.tolist() if batch.video_lens is not None else [T] * B
        if batch.frame_mask is not None:
            mask = batch.frame_mask.clone().bool()
        else:
            mask = torch.arange(T)[None, :] < torch.as_tensor(lens)[:, None]
            mask = mask.to(video.device)
        rates = torch.zeros(B, dtype=torch.float32)
        for b in range(B):
            n = min(int(lens[b]), T)
            drop, rate, _ = self.sample(n)
            rates[b] = rate
            idx = np.flatnonzero(drop)
            if len(idx):
                ti = torch.as_tensor(idx, device=video.device)
                video[b, ti] = 0
                mask[b, ti] = False
        extras = dict(batch.extras)
        extras["frame_loss_rate"] = rates
        if extras.get("clean_video") is None:
            extras["clean_video"] = batch.video
        return batch.replace(video=video, frame_mask=mask, extras=extras)


class FrameDropoutMethod(TrainingMethod):
    name = "frame_dropout"

    def __init__(self, rate: Union[float, Tuple[float, float]] = (0.0, 1.0), d_prob: float = 0.5,
                 pattern: Union[str, Sequence[str]] = "random", seed: int = 0, on_valid: bool = False):
        self.kw = dict(rate=rate, d_prob=d_prob, pattern=pattern)
        self.seed = int(seed)
        self.on_valid = bool(on_valid)
        self.dropout = FrameDropout(seed=self.seed, **self.kw)

    def setup(self, trainer) -> None:
        if getattr(trainer, "world_size", 1) > 1:
            self.dropout = FrameDropout(seed=stable_seed(self.seed, "rank", trainer.rank) % 2 ** 63, **self.kw)

    def transform_batch(self, batch, train: bool):
        if train or self.on_valid:
            return self.dropout(batch)
        return batch

    def state_dict(self) -> Dict[str, Any]:
        return self.dropout.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.dropout.load_state_dict(dict(state))

    def __repr__(self) -> str:
        return f"FrameDropoutMethod({self.dropout!r}, on_valid={self.on_valid})"
