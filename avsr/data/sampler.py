"""Length-bucketed batch sampler: resumable mid-epoch, shardable over DDP ranks.

Documented behaviours
---------------------
* **Batches** are made once, deterministically: indices sorted by ``(length, index)``
  ascending, then cut greedily so that every batch respects both bounds that are given:
  ``batch_bins`` - the *padded* size ``len(batch) * max(length in batch) <= batch_bins``
  (like ESPnet's ``length``/``numel`` batch types counted with padding), and ``batch_size``
  - at most that many items.  An item longer than ``batch_bins`` alone forms a batch of one
  (it is never dropped).  ``lengths`` may be in any unit (frames, samples, seconds) as long
  as ``batch_bins`` uses the same one.
* **Epoch order**: with ``shuffle`` the batch order of epoch ``e`` is the permutation drawn
  by ``numpy.random.default_rng([seed, e])`` (the batch contents never change); without
  it, shortest batches first.  Every item is in exactly one batch per epoch (before DDP
  padding).
* **DDP**: with ``num_replicas = R`` the epoch's batch list is padded to a multiple of
  ``R`` by repeating its first batches (cyclically), and rank ``r`` takes positions
  ``r, r + R, ...``.  Every rank gets ``ceil(num_batches / R)`` batches; without padding
  the ranks' batches are disjoint and together cover each item once; the padding repeats
  at most ``R - 1`` batches.
* **Resume**: :meth:`state_dict` is ``{"epoch", "position"}`` - ``position`` is the number
  of this rank's batches of the epoch already yielded by ``__iter__``.  A DataLoader with
  workers pre-fetches ahead of the training step, so a trainer should pass the number of
  batches it has actually consumed: ``state_dict(position=n)``.  After
  :meth:`load_state_dict` the next ``__iter__`` yields exactly the remaining batches of that
  epoch; when an iteration finishes, ``position`` goes back to 0.  :meth:`set_epoch` with a
  *different* epoch resets ``position`` to 0; with the current epoch it keeps it (so the
  usual ``load_state_dict(...); for e in range(start, n): set_epoch(e); ...`` resumes
  correctly).  ``len(sampler)`` is the number of batches of a full epoch on this rank.
"""
from __future__ import annotations

from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch

__all__ = ["LengthBatchSampler", "make_batches"]


def make_batches(lengths: Sequence[float], *, batch_bins: Optional[float] = None,
                 batch_size: Optional[int] = None) -> List[List[int]]:
    """Length-sorted batches bounded by padded size ``batch_bins`` and/or ``batch_size``."""
    if batch_bins is None and batch_size is None:
        raise ValueError("give batch_bins and/or batch_size")
    if batch_size is not None and int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if batch_bins is not None and not float(batch_bins) > 0:
        raise ValueError(f"batch_bins must be > 0, got {batch_bins}")
    lens = [float(x) for x in lengths]
    if any(not np.isfinite(x) or x < 0 for x in lens):
        raise ValueError("lengths must be finite and >= 0")
    order = sorted(range(len(lens)), key=lambda i: (lens[i], i))
    batches: List[List[int]] = []
    cur: List[int] = []
    for i in order:
        n = len(cur) + 1
        ok = True
        if batch_size is not None and n > int(batch_size):
            ok = False
        if batch_bins is not None and n * lens[i] > float(batch_bins):  # lens[i] = new max
            ok = False
        if cur and not ok:
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    return batches


class LengthBatchSampler(torch.utils.data.Sampler):
    """Batch sampler for ``DataLoader(dataset, batch_sampler=...)``; see the module docstring."""

    def __init__(self, lengths: Sequence[float], *, batch_bins: Optional[float] = None,
                 batch_size: Optional[int] = None, shuffle: bool = True, seed: int = 0,
                 num_replicas: int = 1, rank: int = 0):
        if int(num_replicas) < 1 or not 0 <= int(rank) < int(num_replicas):
            raise ValueError(f"need num_replicas >= 1 and 0 <= rank < num_replicas, "
                             f"got {num_replicas}, {rank}")
        self.lengths = [float(x) for x in lengths]
        self.batch_bins = batch_bins
        self.batch_size = batch_size
        self.batches = make_batches(self.lengths, batch_bins=batch_bins, batch_size=batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.epoch = 0
        self.position = 0

    @classmethod
    def from_dataset(cls, dataset, **kw) -> "LengthBatchSampler":
        """Lengths = video frames of each item (``dataset.num_frames(i)``), so ``batch_bins``
        counts padded 25 fps frames."""
        return cls([dataset.num_frames(i) for i in range(len(dataset))], **kw)

    def __len__(self) -> int:
        return -(-len(self.batches) // self.num_replicas) if self.batches else 0

    def epoch_batches(self, epoch: Optional[int] = None) -> List[List[int]]:
        """This rank's batches of ``epoch`` (default: the current one), in order."""
        e = self.epoch if epoch is None else int(epoch)
        n = len(self.batches)
        if n == 0:
            return []
        if self.shuffle:
            order = np.random.default_rng([self.seed, e]).permutation(n).tolist()
        else:
            order = list(range(n))
        total = len(self) * self.num_replicas
        order = [order[i % n] for i in range(total)]
        return [list(self.batches[j]) for j in order[self.rank::self.num_replicas]]

    def set_epoch(self, epoch: int) -> None:
        if int(epoch) != self.epoch:
            self.epoch = int(epoch)
            self.position = 0

    def __iter__(self) -> Iterator[List[int]]:
        batches = self.epoch_batches()
        while self.position < len(batches):
            b = batches[self.position]
            self.position += 1
            yield b
        self.position = 0

    def state_dict(self, position: Optional[int] = None) -> Dict[str, int]:
        return {"epoch": self.epoch, "position": self.position if position is None else int(position)}

    def load_state_dict(self, state: Dict[str, int]) -> None:
        pos = int(state["position"])
        if not 0 <= pos <= len(self):
            raise ValueError(f"position {pos} out of range 0..{len(self)}")
        self.epoch = int(state["epoch"])
        self.position = pos
