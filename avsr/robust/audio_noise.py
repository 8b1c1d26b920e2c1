"""Babble-noise augmentation of the training audio, as a training method.

auto_avsr trains its audio-visual models on speech mixed with babble at random SNRs; this is
that augmentation for :class:`avsr.trainer.trainer.Trainer`.  With probability ``prob`` a
training sample gets ``talkers`` *other utterances of the same batch* (each circularly shifted
by a random offset and tiled to the sample's length, each normalised to unit power) added to
its waveform at an SNR drawn uniformly from ``snr`` (dB, power over the sample's valid
samples).  Padding stays zero, lengths do not change, the video is not touched.  Validation
batches are left clean.  The generator state is saved in trainer checkpoints, so a resumed run
draws the same noise; under DDP each rank re-seeds with ``stable_seed(seed, "rank", rank)``.

Why it is in the toolkit: an audio-visual model fine-tuned from an audio model that already
fits its training set (A0) gets almost no training signal that rewards using the video; with
noisy audio in training the video is the only way to lower the loss on the noisy samples
(docs/BENCHMARKS.md, calibration).  Evaluation-time babble is
:func:`avsr.eval.sweep.add_babble` (a seeded pool of utterances of the test set).

    build_method('audio_noise:{"prob": 0.8, "snr": [-10, 10]}')
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence, Tuple, Union

import numpy as np
import torch

from avsr.robust.frame_loss import SeededRng
from avsr.method import TrainingMethod

__all__ = ["AudioNoiseMethod", "mix_at_snr", "mix_babble"]


def mix_at_snr(x: torch.Tensor, parts: Iterable[Tuple[np.ndarray, int]], snr_db: float) -> torch.Tensor:
    """``x`` (one utterance's valid samples) plus babble at ``snr_db``, as a float64 tensor.

    The babble is the sum of ``parts``, each ``(source, offset)``: the source circularly shifted by
    ``offset`` samples, tiled to ``len(x)`` and normalised to unit power; it is scaled so that
    power(x) / power(babble) is ``snr_db``.  Shared by this training augmentation and the
    evaluation babble (:func:`avsr.eval.sweep.add_babble`).
    """
    n = x.shape[0]
    noise = np.zeros(n, dtype=np.float64)
    for src, off in parts:
        rep = np.resize(np.roll(src, -off), n)
        noise += rep / (np.sqrt(np.mean(rep.astype(np.float64) ** 2)) + 1e-8)
    x = x.double()
    ps = float((x ** 2).mean()) + 1e-12
    pn = float(np.mean(noise ** 2)) + 1e-12
    g = math.sqrt(ps / (pn * 10 ** (snr_db / 10.0)))
    return x + torch.from_numpy(noise * g)


def mix_babble(audio: torch.Tensor, audio_lens: torch.Tensor, rng: np.random.Generator, prob: float,
               snr: Tuple[float, float], talkers: int) -> Tuple[torch.Tensor, np.ndarray]:
    """Return (noisy copy of ``audio`` [B, N], per-sample SNR in dB with ``nan`` = left clean).

    Sources for sample ``b`` are other samples of the batch (never ``b`` itself); a batch of one
    utterance is left clean.
    """
    B = audio.shape[0]
    out = audio.clone()
    snrs = np.full(B, np.nan)
    lens = [int(n) for n in audio_lens]
    for b in range(B):
        # draw every number for every sample, so the stream does not depend on earlier outcomes
        use = rng.random() < prob
        s_db = float(rng.uniform(snr[0], snr[1]))
        others = [j for j in range(B) if j != b and lens[j] > 0]
        picks = rng.integers(0, max(len(others), 1), size=talkers)
        offs = rng.random(talkers)
        n = lens[b]
        if not use or not others or n == 0:
            continue
        parts = []
        for p, o in zip(picks, offs):
            j = others[int(p)]
            parts.append((audio[j, :lens[j]].numpy(), int(o * lens[j])))
        out[b, :n] = mix_at_snr(audio[b, :n], parts, s_db).to(audio.dtype)
        snrs[b] = s_db
    return out, snrs


class AudioNoiseMethod(SeededRng, TrainingMethod):
    name = "audio_noise"

    def __init__(self, prob: float = 0.8, snr: Union[float, Sequence[float]] = (-10.0, 10.0),
                 talkers: int = 3, seed: int = 0):
        if isinstance(snr, (int, float)):
            snr = (float(snr), float(snr))
        lo, hi = (float(v) for v in snr)
        if not 0.0 <= float(prob) <= 1.0:
            raise ValueError(f"audio_noise: prob must be in [0, 1], got {prob}")
        if hi < lo:
            raise ValueError(f"audio_noise: snr range must be [low, high] dB, got {list(snr)}")
        if int(talkers) < 1:
            raise ValueError(f"audio_noise: talkers must be >= 1, got {talkers}")
        self.prob, self.snr, self.talkers = float(prob), (lo, hi), int(talkers)
        self._init_rng(seed, "audio_noise")

    def transform_batch(self, batch, train: bool):
        if not train or batch.audio is None:
            return batch
        audio, _ = mix_babble(batch.audio, batch.audio_lens, self.rng, self.prob, self.snr, self.talkers)
        return batch.replace(audio=audio)

    def __repr__(self) -> str:
        return f"AudioNoiseMethod(prob={self.prob}, snr={list(self.snr)}, talkers={self.talkers}, seed={self.seed})"
