"""Video frame loss simulation: drop lip-video frames (black frames + ``frame_mask``).

Used by evaluation (:func:`drop_frames`, :func:`apply_missing_video`) and by training-time
frame dropout (:mod:`avsr.robust.frame_dropout`).

Documented behaviours
---------------------
* **Count**: at rate ``r`` an utterance of ``T`` frames loses exactly
  ``k = num_dropped(T, r) = floor(r * T + 0.5)`` frames (round half up, not Python's
  banker's ``round``); ``0 <= r <= 1``.  ``whole`` drops all ``T`` frames whatever the rate.
* **Patterns** (:data:`PATTERNS`):

  - ``random``: ``k`` frames chosen uniformly without replacement.
  - ``segment``: contiguous blocks of :data:`SEGMENT_MIN`..:data:`SEGMENT_MAX` (5-25) frames.
    Block lengths are drawn uniformly until they cover ``k`` frames; the last block is
    trimmed so the count is exactly ``k``, and if the trim would leave it shorter than 5
    frames it is rebalanced with the previous block (merged when both together are < 10,
    else the previous block gives frames so the last has 5) - so every block is 5-25 frames
    whenever ``k >= 5`` (with ``k < 5`` there is one block of ``k`` frames).  The blocks are
    put in random order and the ``T - k`` kept frames are spread over the gaps uniformly
    (stars and bars) with at least one kept frame between two blocks, so blocks never
    overlap or touch.  Only when there are too few kept frames to separate them
    (``T - k < blocks - 1``, rates close to 1) do some blocks touch.
  - ``whole``: every frame.
  - ``head``: the camera starts late - the first ``k`` frames.
  - ``tail``: the camera stops early - the last ``k`` frames.

* **Black frames**: a dropped frame is set to pixel value 0 (uint8, i.e. before any
  normalisation) and its ``frame_mask`` entry is False.  ``frame_mask`` is True where a
  frame is real; frames past an utterance's length (padding) are False in masks made
  here, and entries that were already False (e.g. undetected frames a caller marked) stay
  False.  By default the model does not see the mask.
* **Evaluation seeding** (:func:`drop_frames`, :func:`drop_mask`): the drop positions of
  ``(utt_id, T, rate, pattern, seed)`` are a pure function.  The random generator is
  ``numpy.random.default_rng`` seeded with the first 8 bytes of
  ``sha256(f"{seed}|{utt_id}|{pattern}|{rate!r}")`` (:func:`stable_seed`; never Python's
  ``hash()``, which is salted per process), so conditions reproduce across calls,
  processes and machines.
* **Nested ``random``**: for ``random`` the key leaves out the rate
  (``f"{seed}|{utt_id}|random"``): one random priority order of the ``T`` frames per
  utterance, of which the first ``k`` are dropped.  Hence a frame dropped at rate ``r``
  is also dropped at every ``r' > r`` (same utterance and seed), which makes
  error-rate-vs-missing-rate curves monotone-comparable.  ``head``/``tail``/``whole``
  are nested by construction; ``segment`` is not (its key includes the rate).
* **Training**: :class:`avsr.robust.frame_dropout.FrameDropout` draws drops from a generator it
  owns (not from the per-utterance hash), with the same patterns and counts.
"""
from __future__ import annotations

import hashlib
import math
from typing import Any, List, Optional, Sequence, Union

import numpy as np
import torch

__all__ = ["PATTERNS", "SEGMENT_MIN", "SEGMENT_MAX", "SeededRng", "num_dropped", "stable_seed", "drop_mask",
           "drop_frames", "apply_missing_video"]

PATTERNS = ("random", "segment", "whole", "head", "tail")
#: Block length range (frames, inclusive) of the ``segment`` pattern.
SEGMENT_MIN = 5
SEGMENT_MAX = 25


def _check_rate(rate: float) -> float:
    r = float(rate)
    if not (math.isfinite(r) and 0.0 <= r <= 1.0):
        raise ValueError(f"missing-video rate must be in [0, 1], got {rate!r}")
    return r


def _check_pattern(pattern: str) -> str:
    if pattern not in PATTERNS:
        raise ValueError(f"unknown missing-video pattern {pattern!r} (one of {', '.join(PATTERNS)})")
    return pattern


def num_dropped(T: int, rate: float, pattern: str = "random") -> int:
    """Frames dropped from ``T`` at ``rate``: ``floor(rate*T + 0.5)`` (``T`` for ``whole``)."""
    T = int(T)
    if T < 0:
        raise ValueError(f"T must be >= 0, got {T}")
    r = _check_rate(rate)
    if _check_pattern(pattern) == "whole":
        return T
    return min(T, int(math.floor(r * T + 0.5 + 1e-9)))


def stable_seed(*parts: Any) -> int:
    """A 64-bit seed from ``"|".join(map(str, parts))`` via sha256 (stable across processes)."""
    key = "|".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "little")


class SeededRng:
    """Mixin of a training method that draws from its own numpy generator: seeded from ``(seed, name)``
    (:meth:`_init_rng`), re-seeded with ``stable_seed(seed, "rank", rank)`` on each DDP rank (``setup``),
    saved in trainer checkpoints and restored on resume (``state_dict`` / ``load_state_dict``).  Put it
    before :class:`avsr.method.TrainingMethod` in the bases."""

    def _init_rng(self, seed: int, name: str) -> None:
        self.seed = int(seed)
        self.rng = np.random.default_rng(stable_seed(self.seed, name) % 2 ** 63)

    def setup(self, trainer) -> None:
        if getattr(trainer, "world_size", 1) > 1:
            self.rng = np.random.default_rng(stable_seed(self.seed, "rank", trainer.rank) % 2 ** 63)

    def state_dict(self) -> dict:
        return {"seed": self.seed, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state) -> None:
        self.seed = int(state.get("seed", self.seed))
        if "rng" in state:
            self.rng.bit_generator.state = state["rng"]


def _eval_rng(utt_id: str, rate: float, pattern: str, seed: int) -> np.random.Generator:
    if pattern == "random":  # rate left out: one priority order per utterance (nested)
        return np.random.default_rng(stable_seed(seed, utt_id, pattern))
    return np.random.default_rng(stable_seed(seed, utt_id, pattern, repr(float(rate))))


def _segment_blocks(k: int, rng: np.random.Generator) -> List[int]:
    """Block lengths (5-25) summing to exactly ``k`` (see the module docstring)."""
    if k <= 0:
        return []
    if k < SEGMENT_MIN:
        return [k]
    blocks: List[int] = []
    total = 0
    while total < k:
        n = int(rng.integers(SEGMENT_MIN, SEGMENT_MAX + 1))
        blocks.append(n)
        total += n
    blocks[-1] -= total - k  # trim the last block
    if blocks[-1] < SEGMENT_MIN:
        last = blocks.pop()
        if blocks:
            prev = blocks.pop()
            both = prev + last
            if both < 2 * SEGMENT_MIN:
                blocks.append(both)
            else:
                blocks += [both - SEGMENT_MIN, SEGMENT_MIN]
        else:
            blocks.append(last)
    return blocks


def _drop_indices(T: int, rate: float, pattern: str, rng: np.random.Generator) -> np.ndarray:
    k = num_dropped(T, rate, pattern)
    if pattern == "random":
        order = rng.permutation(T)  # drawn even for k == 0 / k == T (fixed stream use)
        return np.sort(order[:k])
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    if pattern in ("whole",) or k == T:
        return np.arange(T)
    if pattern == "head":
        return np.arange(k)
    if pattern == "tail":
        return np.arange(T - k, T)
    # segment
    blocks = _segment_blocks(k, rng)
    rng.shuffle(blocks)
    m = len(blocks)
    free = T - k
    min_gap = 1 if free >= m - 1 else 0
    extra = free - min_gap * (m - 1)
    # stars and bars: ``extra`` kept frames into m + 1 gaps, uniformly over compositions
    cuts = np.sort(rng.choice(extra + m, size=m, replace=False))
    gaps = np.diff(np.concatenate([[-1], cuts])) - 1  # m gaps before each block
    out = []
    pos = 0
    for i, (g, n) in enumerate(zip(gaps, blocks)):
        pos += int(g) + (min_gap if i > 0 else 0)
        out.append(np.arange(pos, pos + n))
        pos += n
    idx = np.concatenate(out)
    assert idx[-1] < T and len(idx) == k
    return idx


def drop_mask(T: int, rate: float, pattern: str = "random", *, utt_id: Optional[str] = None,
              seed: int = 0, rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """bool ``[T]``, True for the frames to drop.

    With ``rng`` the positions come from that generator (training); otherwise from the
    stable per-utterance key of ``(seed, utt_id, pattern, rate)`` (evaluation; ``utt_id``
    required).  See the module docstring for the patterns and the nested property.
    """
    _check_pattern(pattern)
    _check_rate(rate)
    if rng is None:
        if utt_id is None:
            raise ValueError("drop_mask needs utt_id (or an rng)")
        rng = _eval_rng(str(utt_id), rate, pattern, int(seed))
    m = np.zeros(int(T), dtype=bool)
    m[_drop_indices(int(T), rate, pattern, rng)] = True
    return m


def drop_frames(video, lens=None, rate: float = 0.0, pattern: str = "random",
                utt_ids: Union[str, Sequence[str], None] = None, seed: int = 0, *,
                frame_mask=None):
    """Evaluation-time missing video: ``(video, frame_mask)`` with dropped frames set to 0.

    ``video``: uint8 ``[T, H, W]`` or ``[B, T, H, W]`` (torch tensor or numpy array; any
    trailing dims after T are fine).  ``lens``: frames per sample (int / ``[B]``; None = T).
    ``utt_ids``: one id (unbatched) or ``B`` ids.  ``frame_mask``: optional existing bool
    mask ``[T]`` / ``[B, T]`` (False entries stay False).  The input is not modified; the
    result has the input's type.  ``frame_mask`` is True for real frames, False for dropped
    frames and for frames ``>= lens``.  Positions are the pure function described in the
    module docstring (nested in ``rate`` for ``random``).
    """
    is_torch = isinstance(video, torch.Tensor)
    v = video.clone() if is_torch else np.array(video, copy=True)
    single = isinstance(utt_ids, str) or utt_ids is None
    if single:
        if v.ndim < 1:
            raise ValueError("video must be [T, H, W] or [B, T, H, W]")
        v = v[None]
        ids = [utt_ids]
        lens_l = [int(v.shape[1]) if lens is None else int(np.asarray(lens).reshape(-1)[0])]
        fm = None if frame_mask is None else frame_mask[None]
    else:
        ids = list(utt_ids)
        if len(ids) != v.shape[0]:
            raise ValueError(f"{len(ids)} utt_ids for a batch of {v.shape[0]}")
        lens_l = ([int(v.shape[1])] * len(ids) if lens is None
                  else [int(x) for x in (lens.tolist() if hasattr(lens, "tolist") else lens)])
        fm = frame_mask
    if any(i is None for i in ids):
        raise ValueError("drop_frames needs utt_ids (the drop positions are keyed by utterance)")
    B, T = int(v.shape[0]), int(v.shape[1])
    mask = np.zeros((B, T), dtype=bool)
    for b in range(B):
        n = min(lens_l[b], T)
        mask[b, :n] = True
        d = drop_mask(n, rate, pattern, utt_id=ids[b], seed=seed)
        mask[b, :n] &= ~d
        idx = np.flatnonzero(d)
        if len(idx):
            v[b, torch.as_tensor(idx) if is_torch else idx] = 0
    if fm is not None:
        mask &= (fm.detach().cpu().numpy() if isinstance(fm, torch.Tensor) else np.asarray(fm)).astype(bool)
    out_mask = torch.from_numpy(mask).to(v.device) if is_torch else mask
    if single:
        return v[0], out_mask[0]
    return v, out_mask


def apply_missing_video(batch, rate: float, pattern: str = "random", seed: int = 0):
    """:func:`drop_frames` on a :class:`~avsr.data.batch.Batch` (evaluation); returns a new Batch.

    Records ``extras["missing_video"] = {"rate", "pattern", "seed"}``.
    """
    if batch.video is None:
        raise ValueError("the batch has no video")
    video, mask = drop_frames(batch.video, batch.video_lens, rate, pattern, list(batch.utt_ids),
                              seed, frame_mask=batch.frame_mask)
    extras = dict(batch.extras)
    extras["missing_video"] = {"rate": float(rate), "pattern": pattern, "seed": int(seed)}
    return batch.replace(video=video, frame_mask=mask, extras=extras)
