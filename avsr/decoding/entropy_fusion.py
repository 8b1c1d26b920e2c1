"""Entropy-weighted late fusion of two CTC paths (the test-time fusion of MLA, alternating
unimodal adaptation, Zhang et al., CVPR 2024).

The audio-only and the video-only paths of one model each give per-frame CTC log-posteriors.  At
every audio frame ``t`` the two are combined with weights ``softmax(-[H_a(t), H_v(t)] / temperature)``
where ``H_m(t) = -sum_k p_m(t, k) log p_m(t, k)`` is the entropy (nats) of path ``m``'s posterior, so
the more confident path dominates and equal entropies give equal weights::

    logp(t) = log_softmax(w_a(t) * logp_a(t) + w_v(t) * logp_v(t))

The weighted sum of log-posteriors is MLA's weighted sum of logits (a logit vector and its
log-softmax differ by a per-frame constant, which the final ``log_softmax`` removes), i.e. a
normalised weighted geometric mean of the two posteriors.  ``combine="prob"`` takes the weighted
arithmetic mean of the posteriors instead, ``log(w_a p_a + w_v p_v)`` (an ablation).

Frame alignment follows the model's own length rule (``avsr.models.model.reconcile_video``): the
audio length after subsampling is the reference; the video path's frames are paired with the audio
frames by index, cut to the audio length when longer.  Where the video path has no frame (the video
is shorter than the audio: ``t >= lens_v[b]``), the audio posterior is taken alone (``w_a = 1``);
the model itself would have seen black padding frames there, which carry no information.

``granularity="utterance"`` uses one pair of weights per utterance (softmax of the *mean* entropy of
each path over the utterance's paired frames) instead of one per frame.  ``present`` (optional bool
``[B, T']``, True = a real video frame) forces ``w_v = 0`` on the frames it marks missing: a
mask-aware variant; MLA itself reads no mask (the entropies are its switch).

The module depends on torch only (decoding code never imports training code).
"""
from __future__ import annotations

from typing import Optional, Tuple, Union

import torch

__all__ = ["entropy", "entropy_fusion", "COMBINE", "GRANULARITY", "FUSIONS"]

#: the decode settings ``fusion`` of :class:`avsr.inference.Speech2Text` (and of a pack's decoding
#: defaults) besides None: ``"entropy"`` = :func:`entropy_fusion` of the audio and the video path
FUSIONS = ("entropy",)
COMBINE = ("logp", "prob")
GRANULARITY = ("frame", "utterance")


def entropy(logp: torch.Tensor) -> torch.Tensor:
    """Entropy in nats of log-posteriors ``[..., V]`` -> ``[...]`` (``0 * log 0 = 0``)."""
    p = logp.exp()
    return -(p * logp.masked_fill(p == 0, 0.0)).sum(-1)


def _lens(lens, B: int, T: int, device) -> torch.Tensor:
    if lens is None:
        return torch.full((B,), T, dtype=torch.long, device=device)
    lens = torch.as_tensor(lens, device=device).long().view(-1)
    if lens.numel() != B:
        raise ValueError(f"lens has {lens.numel()} entries for a batch of {B}")
    return lens.clamp(0, T)


def entropy_fusion(logp_a: torch.Tensor, logp_v: torch.Tensor, lens_a=None, lens_v=None, *,
                   temperature: float = 1.0, combine: str = "logp", granularity: str = "frame",
                   present: Optional[torch.Tensor] = None, return_weights: bool = False
                   ) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
    """Fuse audio ``[B, T, V]`` and video ``[B, T', V]`` CTC log-posteriors -> ``[B, T, V]``.

    ``lens_a`` / ``lens_v``: valid frames per utterance (default: all).  Output frames
    ``t >= lens_a[b]`` are the audio path's frames unchanged (padding; decoders ignore them).
    ``return_weights``: also return the audio weight ``w_a`` ``[B, T]`` (``w_v = 1 - w_a``; 1 where
    the video has no paired frame, and in padding).  See the module docstring for the rule.
    """
    if logp_a.dim() != 3 or logp_v.dim() != 3:
        raise ValueError(f"log-posteriors must be [B, T, V], got {tuple(logp_a.shape)} and {tuple(logp_v.shape)}")
    B, T, V = logp_a.shape
    if logp_v.size(0) != B or logp_v.size(2) != V:
        raise ValueError(f"audio {tuple(logp_a.shape)} and video {tuple(logp_v.shape)} posteriors differ "
                         "in batch size or vocabulary")
    if combine not in COMBINE:
        raise ValueError(f"combine must be one of {COMBINE}, got {combine!r}")
    if granularity not in GRANULARITY:
        raise ValueError(f"granularity must be one of {GRANULARITY}, got {granularity!r}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    dev = logp_a.device
    la = _lens(lens_a, B, T, dev)
    lv = _lens(lens_v, B, logp_v.size(1), dev)
    # the video path cut / padded to the audio frame grid (the model's length rule)
    Tv = logp_v.size(1)
    if Tv >= T:
        v = logp_v[:, :T]
    else:
        v = torch.cat([logp_v, logp_v.new_zeros(B, T - Tv, V)], dim=1)
    t = torch.arange(T, device=dev)[None, :]
    paired = (t < la[:, None]) & (t < lv[:, None])                     # [B, T]
    if present is not None:
        pres = torch.as_tensor(present, device=dev).bool()
        if pres.dim() != 2 or pres.size(0) != B:
            raise ValueError(f"present must be bool [B, T'], got {tuple(pres.shape)}")
        pres = pres[:, :T] if pres.size(1) >= T else torch.cat(
            [pres, pres.new_zeros(B, T - pres.size(1))], dim=1)
        paired = paired & pres
    a32, v32 = logp_a.float(), v.float()
    ha, hv = entropy(a32), entropy(v32)                                 # [B, T]
    if granularity == "utterance":
        n = paired.sum(1).clamp_min(1).to(ha.dtype)
        ha = ((ha * paired).sum(1) / n)[:, None].expand(B, T)
        hv = ((hv * paired).sum(1) / n)[:, None].expand(B, T)
    w_a = torch.softmax(torch.stack([-ha, -hv], dim=-1) / float(temperature), dim=-1)[..., 0]
    w_a = torch.where(paired, w_a, torch.ones_like(w_a))
    wa, wv = w_a[..., None], (1.0 - w_a)[..., None]
    # finite log-posteriors (0 * -inf would be NaN); unpaired video frames have weight 0
    a32 = a32.clamp_min(-1e4)
    v32 = torch.where(paired[..., None], v32, a32).clamp_min(-1e4)
    if combine == "logp":
        fused = torch.log_softmax(wa * a32 + wv * v32, dim=-1)
    else:
        fused = torch.logaddexp(torch.log(wa) + a32, torch.log(wv) + v32)
    fused = torch.where((t < la[:, None])[..., None], fused, logp_a.float()).to(logp_a.dtype)
    return (fused, w_a) if return_weights else fused
