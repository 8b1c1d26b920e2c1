"""CTC greedy (best-path) decoding: the fast path of batched inference."""

from __future__ import annotations

from typing import List

import torch


def ctc_greedy(
    ctc_logp: torch.Tensor, lens: torch.Tensor, blank: int = 0
) -> List[List[int]]:
    """Best-path CTC decoding of a padded batch.

    Args:
        ctc_logp: ``[B, T, V]`` CTC (log-)posteriors (any monotone scores work:
            only the arg-max is used).
        lens: ``[B]`` valid frame counts; frames ``t >= lens[b]`` are ignored.
        blank: blank token id (ESPnet convention: 0).

    Returns:
        One token-id list per utterance: repeats collapsed, blanks dropped.
    """
    if ctc_logp.dim() != 3:
        raise ValueError(f"ctc_logp must be [B, T, V], got {tuple(ctc_logp.shape)}")
    B, T, _ = ctc_logp.shape
    lens = torch.as_tensor(lens, device=ctc_logp.device).long().view(-1)
    if lens.numel() != B:
        raise ValueError(f"lens has {lens.numel()} entries for a batch of {B}")
    ids = ctc_logp.argmax(dim=-1)  # [B, T]
    prev = torch.full_like(ids, -1)
    prev[:, 1:] = ids[:, :-1]
    valid = torch.arange(T, device=ids.device).unsqueeze(0) < lens.unsqueeze(1)
    keep = valid & (ids != blank) & (ids != prev)
    ids = ids.cpu()
    keep = keep.cpu()
    return [ids[b][keep[b]].tolist() for b in range(B)]
