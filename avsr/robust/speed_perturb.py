"""Speed perturbation of the training batches, as a training method.

Kaldi's and ESPnet's recipes triple their training audio with copies at speed 0.9 and 1.1 (sox
``speed``: tempo and pitch change together).  This is the same perturbation drawn on the fly: each
training utterance gets a factor from ``factors`` (uniformly, by default 0.9 / 1.0 / 1.1) and

* its waveform is resampled by the factor (:func:`scipy.signal.resample_poly` with the factor as a
  ratio of small integers, so the anti-aliasing filter of a polyphase resampler applies): ``n``
  samples become ``ceil(n / factor)``, played at the same rate;
* its video, when there is one, is retimed the same way: output frame ``j`` is input frame
  ``floor(j * factor)`` (frames repeated at 0.9, skipped at 1.1), ``frame_mask`` with it, so lips and
  sound stay in step;
* its transcript does not change.

Validation batches are left as they are.  The generator state is saved in trainer checkpoints, so a
resumed run draws the same factors; under DDP each rank re-seeds with ``stable_seed(seed, "rank", rank)``.

    build_method('speed_perturb:{"factors": [0.9, 1.0, 1.1]}')
"""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Sequence

import numpy as np
import torch

from avsr.method import TrainingMethod
from avsr.robust.frame_loss import SeededRng

__all__ = ["SpeedPerturbMethod", "speed_audio", "speed_frames"]


def _ratio(factor: float) -> Fraction:
    return Fraction(factor).limit_denominator(100)


def speed_audio(x: np.ndarray, factor: float) -> np.ndarray:
    """``x`` (1-D) played ``factor`` times faster: ``ceil(len(x) / factor)`` samples (polyphase resampling)."""
    from scipy.signal import resample_poly
    if factor == 1.0 or x.size == 0:
        return x.copy()
    r = _ratio(factor)
    y = resample_poly(x.astype(np.float64), r.denominator, r.numerator)
    n = math.ceil(x.size * r.denominator / r.numerator)
    return y[:n]


def speed_frames(n_frames: int, factor: float) -> np.ndarray:
    """Indices of the input frames that make the video ``factor`` times faster (``ceil(n / factor)`` frames)."""
    r = _ratio(factor)
    m = math.ceil(n_frames * r.denominator / r.numerator)
    return np.minimum((np.arange(m) * r.numerator) // r.denominator, max(n_frames - 1, 0))


class SpeedPerturbMethod(SeededRng, TrainingMethod):
    name = "speed_perturb"

    def __init__(self, factors: Sequence[float] = (0.9, 1.0, 1.1), seed: int = 0):
        fs = [float(f) for f in (factors if isinstance(factors, (list, tuple)) else [factors])]
        if not fs or any(not 0.5 <= f <= 2.0 for f in fs):
            raise ValueError(f"speed_perturb: factors must be a non-empty list within [0.5, 2], got {list(factors)}")
        self.factors = fs
        self._init_rng(seed, "speed_perturb")

    def transform_batch(self, batch, train: bool):
        if not train:
            return batch
        B = len(batch.utt_ids)
        picks = [self.factors[int(i)] for i in self.rng.integers(0, len(self.factors), size=B)]
        if all(f == 1.0 for f in picks):
            return batch
        kw = {}
        if batch.audio is not None:
            waves = [speed_audio(batch.audio[b, :int(batch.audio_lens[b])].numpy(), f) for b, f in enumerate(picks)]
            lens = [w.size for w in waves]
            audio = torch.zeros(B, max(lens), dtype=batch.audio.dtype)
            for b, w in enumerate(waves):
                audio[b, :w.size] = torch.from_numpy(w).to(batch.audio.dtype)
            kw.update(audio=audio, audio_lens=torch.tensor(lens, dtype=batch.audio_lens.dtype))
        if batch.video is not None:
            idx = [speed_frames(int(batch.video_lens[b]), f) for b, f in enumerate(picks)]
            T = max(len(i) for i in idx)
            video = torch.zeros((B, T) + tuple(batch.video.shape[2:]), dtype=batch.video.dtype)
            mask = None if batch.frame_mask is None else torch.zeros(B, T, dtype=batch.frame_mask.dtype)
            for b, i in enumerate(idx):
                t = torch.from_numpy(i)
                video[b, :len(i)] = batch.video[b, t]
                if mask is not None:
                    mask[b, :len(i)] = batch.frame_mask[b, t]
            kw.update(video=video, video_lens=torch.tensor([len(i) for i in idx], dtype=batch.video_lens.dtype))
            if mask is not None:
                kw["frame_mask"] = mask
        return batch.replace(**kw)

    def __repr__(self) -> str:
        return f"SpeedPerturbMethod(factors={self.factors}, seed={self.seed})"
