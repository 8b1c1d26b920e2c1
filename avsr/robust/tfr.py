"""TFR: reconstruction of the missing visual features from the fused sequence, an auxiliary loss
after TFR-Net (Yuan et al., "Transformer-based Feature Reconstruction Network for Robust
Multimodal Sentiment Analysis", ACM MM 2021; MMSA's ``tfr_net``), carried over to AVSR with
missing lip frames.

What it does
------------
Frames are dropped by the toolkit's frame dropout (:class:`avsr.robust.frame_dropout.FrameDropout`,
the same policy as AV3: ``--frame_dropout_prob 0.5 --frame_loss_rate 0 1 --frame_loss_pattern
random``); its generator draws a new mask for every batch (TFR-Net's static per-dataset mask is
not used).  A reconstruction head owned by this method reads the fused sequence of the student's
one training forward and predicts, per frame, the visual front-end's output for the *undropped*
video::

    pred   = Linear(LN(x)),  x = s + Dropout(MHA(LN(s) + PE, LN(s) + PE, LN(s), key padding))
    target = visual_frontend(clean video)          (no gradient, see "Target")
    L_tfr  = SmoothL1_beta(pred, target) summed over the missing positions / (n_missing * d)
    loss   = task loss + weight * L_tfr            (weight 0 until ``warmup_steps`` updates)

``s`` is a tap of the student (``tap``, default ``fused``), ``PE`` sinusoidal positions (added to
queries and keys only, so the attention can tell near frames from far ones; the fused sequence's
own positions live inside the relative-position Conformers and are not visible to a plain
attention block).  Recognition is unchanged: the model's forward, CTC and decoder use the fused
features as before; the head is a side branch that only adds the loss ``loss_tfr`` (logged, the
weighted term) and, as diagnostics that are not added to the loss (``extra_stats``), ``tfr_recon``
(the unweighted reconstruction loss, also during the warm-up) and ``tfr_missing`` (the share of
the forward's valid frames that are missing).

Missing positions
-----------------
A position ``t`` of utterance ``b`` counts when the frame was present when the batch reached this
method and frame dropout then removed it: ``present[b, t] and not frame_mask[b, t]``, on the
model's frame grid (``t < lens[b]``).  :meth:`TFRMethod.transform_batch` keeps the mask it
receives in ``batch.extras["tfr_present"]`` (padding, and utterances without lip boxes, whose
frames are black in the clean video too, are never counted) and the undropped video in
``batch.extras["clean_video"]`` unless an earlier method already kept it (the first one wins, as
:mod:`avsr.robust.mda_kd` does).  So TFR must come **before** the frame dropout in the method list
(``avsr.bin.train`` puts ``--method`` specs first and the ``--frame_dropout_prob`` dropout last);
``setup`` raises a :class:`ValueError` when a :class:`FrameDropoutMethod` comes before it or when
there is none (without dropout nothing is missing and the loss would silently be 0).  No position
missing in a batch: the loss is 0 (with a zero gradient into the head).  Validation batches are not
dropped (unless the dropout has ``on_valid``), so the validation ``loss_tfr`` is 0 then.

Frame-rate alignment
--------------------
In an audio-visual forward the audio frame rate after the 4x subsampling is 25 frames/s and the
model cuts or black-pads each utterance's video to the audio length (``reconcile_video`` in
:mod:`avsr.models.model`), so ``fused[b, t]`` and the visual front-end output ``v_0[b, t]`` are on
one grid, index by index (the ~1-frame offset between audio frame ``t`` and video frame ``t`` is
left to the model, as in the model itself).  The target is computed on that grid: the clean video
is reconciled to the forward's ``lens`` exactly as the model does, then passed through the
front-end; ``frame_mask`` (video grid) is cut or padded (False) to the same length.

Target
------
``target="student"`` (default): the student's own visual front-end on the clean video, under
``torch.no_grad`` and detached (a trainable target could collapse to a constant that the head
predicts trivially).  Its BatchNorm layers compute as in the student's forward (batch statistics
in training, running statistics in evaluation or when frozen), but their running statistics are
not updated by this extra pass.  The front-end keeps training through the task loss only; the
target moves with it.  ``target="frozen"``: a frozen copy of the front-end as it was at ``setup``
(after ``--init``, i.e. AV0's), registered with ``trainer.register_frozen`` (eval mode, running
statistics): a fixed target (an ablation).

The head's parameters
---------------------
``setup`` registers the head with ``trainer.register_trainable("tfr_head", head)``: its parameters
are optimised with the model's (same learning rate, schedule and clipping), their gradients are
averaged over DDP ranks, and its weights are saved in the trainer's ``checkpoint.pth`` (restored on
resume) but not in the model files: ``epoch<N>.pth``, the averaged ``model.pth``, packing and
decoding see a plain :class:`AVSRModel` (the head is never part of the model's module tree).

A forward without the tap (e.g. an audio-only forward of MS-Adapter) gets no ``loss_tfr``.

Hyper-parameters (``tfr:{json}``): ``weight`` (10.0), ``warmup_steps`` (50 optimiser updates on
``trainer.step``: about 0.6 epoch of SynthMISP mini at batch 16, where a 2-epoch budget is about
170 updates), ``tap`` (``fused``; ``visual_bundle``, ``shared_out``, ``fusion{i}.audio|visual``),
``target`` (``student`` | ``frozen``), ``beta`` (SmoothL1's beta, 1.0), ``heads`` (the model's),
``dropout`` (the model's ``dropout_rate``).
"""
from __future__ import annotations

import copy
import math
from typing import Any, Dict, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import nn

from avsr.method import TrainingMethod
from avsr.utils.batchnorm import bn_no_update

__all__ = ["HEAD_NAME", "TARGETS", "ReconstructionHead", "reconstruction_loss", "TFRMethod"]

HEAD_NAME = "tfr_head"
TARGETS = ("student", "frozen")


def _sinusoid(T: int, d: int, device, dtype) -> torch.Tensor:
    pos = torch.arange(T, device=device, dtype=torch.float32)[:, None]
    i = torch.arange(0, d, 2, device=device, dtype=torch.float32)
    ang = pos * torch.exp(-math.log(10000.0) * i / d)
    pe = torch.zeros(T, d, device=device, dtype=torch.float32)
    pe[:, 0::2] = torch.sin(ang)
    pe[:, 1::2] = torch.cos(ang[:, : d // 2])
    return pe.to(dtype)


class ReconstructionHead(nn.Module):
    """One pre-LayerNorm self-attention block (residual) and a linear map to ``d_out``.

    ``forward(x [B, T, d_in], valid bool [B, T]) -> [B, T, d_out]``; padded frames are masked as
    keys (their own outputs are meaningless and never scored)."""

    def __init__(self, d_in: int, d_out: int, heads: int = 4, dropout: float = 0.1,
                 attention_dropout: float = 0.0):
        super().__init__()
        from espnet.nets.pytorch_backend.transformer.attention import MultiHeadedAttention
        from espnet.nets.pytorch_backend.transformer.layer_norm import LayerNorm
        if d_in % heads:
            raise ValueError(f"tfr: the head's input size {d_in} is not a multiple of heads={heads}")
        self.norm_in = LayerNorm(d_in)
        self.attn = MultiHeadedAttention(heads, d_in, attention_dropout)
        self.dropout = nn.Dropout(dropout)
        self.norm_out = LayerNorm(d_in)
        self.proj = nn.Linear(d_in, d_out)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        h = self.norm_in(x)
        qk = h + _sinusoid(x.size(1), x.size(2), x.device, h.dtype)[None]
        x = x + self.dropout(self.attn(qk, qk, h, valid[:, None, :].to(x.device)))
        return self.proj(self.norm_out(x))


def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor, missing: torch.Tensor,
                        beta: float = 1.0) -> torch.Tensor:
    """SmoothL1 (``beta``) between ``pred`` and the **detached** ``target`` ([B, T, d]) summed over the
    positions where ``missing`` (bool [B, T]) is True, divided by ``n_missing * d``; computed in
    float32.  No missing position: ``0 * pred.sum()`` (0, gradient 0, graph kept)."""
    if pred.shape != target.shape:
        raise ValueError(f"tfr: prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    if missing.shape != pred.shape[:2]:
        raise ValueError(f"tfr: missing mask {tuple(missing.shape)} does not fit {tuple(pred.shape[:2])}")
    missing = missing.to(pred.device).bool()
    n = int(missing.sum())
    if n == 0:
        return pred.sum() * 0.0
    p = pred[missing].float()
    t = target.detach()[missing].float()
    return F.smooth_l1_loss(p, t, reduction="sum", beta=beta) / (n * pred.size(-1))


class TFRMethod(TrainingMethod):
    """``TFRMethod(weight=10.0, warmup_steps=50, tap="fused", target="student", beta=1.0)``; see the
    module docstring.  Needs a frame dropout after it in the method list.  Logged: ``loss_tfr``
    (the weighted term; 0 during the warm-up); extra stats ``tfr_recon`` (unweighted) and
    ``tfr_missing`` (share of missing frames)."""

    name = "tfr"

    def __init__(self, weight: float = 10.0, warmup_steps: int = 50, tap: str = "fused", target: str = "student",
                 beta: float = 1.0, heads: Optional[int] = None, dropout: Optional[float] = None):
        if target not in TARGETS:
            raise ValueError(f"tfr: target must be one of {TARGETS}, got {target!r}")
        if float(weight) < 0:
            raise ValueError(f"tfr: weight must be >= 0, got {weight!r}")
        if int(warmup_steps) < 0:
            raise ValueError(f"tfr: warmup_steps must be >= 0, got {warmup_steps!r}")
        if float(beta) <= 0:
            raise ValueError(f"tfr: beta must be > 0, got {beta!r}")
        self.weight, self.warmup_steps = float(weight), int(warmup_steps)
        self.tap, self.target, self.beta = str(tap), target, float(beta)
        self.heads, self.dropout = heads, dropout
        self.head: Optional[ReconstructionHead] = None
        self.target_net: Optional[nn.Module] = None
        self.trainer = None
        self.last: Dict[str, float] = {}

    # ------------------------------------------------------------------ setup
    def setup(self, trainer) -> None:
        from avsr.robust.frame_dropout import FrameDropoutMethod
        model = trainer.model
        cfg = getattr(model, "cfg", None)
        if cfg is None or cfg.mode != "audiovisual":
            raise ValueError("tfr: needs an audio-visual AVSRModel (mode audiovisual)")
        taps = model.tap_names("audiovisual")
        if self.tap not in taps:
            raise ValueError(f"tfr: unknown tap {self.tap!r}; the model has {taps}")
        me = next(i for i, m in enumerate(trainer.methods) if m is self)
        drops = [i for i, m in enumerate(trainer.methods) if isinstance(m, FrameDropoutMethod)]
        if not drops:
            raise ValueError("tfr: no frame dropout to reconstruct from: add --frame_dropout_prob P "
                             "(or a frame_dropout method after tfr)")
        if min(drops) < me:
            raise ValueError("tfr: must come before the frame dropout in the method list (it keeps the "
                             "frame mask the dropout then changes)")
        d = cfg.d_model
        d_in = d * (cfg.fusion_layers + 1) if (self.tap == "visual_bundle" and cfg.merge == "bundle") else d
        heads = int(self.heads or cfg.heads)
        if d_in % heads:
            raise ValueError(f"tfr: tap {self.tap!r} has {d_in} dims, not a multiple of heads={heads}")
        self.head = trainer.register_trainable(HEAD_NAME, ReconstructionHead(
            d_in, d, heads, cfg.dropout_rate if self.dropout is None else float(self.dropout),
            cfg.attention_dropout_rate))
        if self.target == "frozen":
            self.target_net = trainer.register_frozen("tfr_target", copy.deepcopy(model.visual_frontend))
        self.trainer = trainer

    # ------------------------------------------------------------------ batches
    def transform_batch(self, batch, train: bool):
        """Keeps the frame mask as received in ``extras["tfr_present"]`` and the video in
        ``extras["clean_video"]`` (unless an earlier method kept it)."""
        if batch.video is None:
            return batch
        extras = dict(batch.extras)
        if batch.frame_mask is not None:
            present = batch.frame_mask.clone().bool()
        else:
            T = int(batch.video.shape[1])
            present = torch.arange(T)[None, :] < batch.video_lens.cpu()[:, None]
        extras["tfr_present"] = present
        if extras.get("clean_video") is None:
            extras["clean_video"] = batch.video
        return batch.replace(extras=extras)

    # ------------------------------------------------------------------ loss parts
    @property
    def active(self) -> bool:
        """Whether the warm-up is over (``trainer.step >= warmup_steps``)."""
        return self.trainer is not None and int(self.trainer.step) >= self.warmup_steps

    @staticmethod
    def missing_positions(batch, lens: torch.Tensor, T: int) -> torch.Tensor:
        """bool ``[B, T]`` on the model's frame grid: present when the batch reached TFR, dropped since."""
        dev = lens.device
        B = len(batch)
        Tv = int(batch.video.shape[1])
        vlens = batch.video_lens.to(dev)
        grid = torch.arange(Tv, device=dev)[None, :]
        fm = batch.frame_mask.to(dev).bool() if batch.frame_mask is not None else grid < vlens[:, None]
        pre = batch.extras.get("tfr_present")
        pre = pre.to(dev).bool() if pre is not None else grid < vlens[:, None]
        dropped = pre & ~fm
        if Tv >= T:
            dropped = dropped[:, :T]
        else:
            dropped = torch.cat([dropped, dropped.new_zeros(B, T - Tv)], dim=1)
        return dropped & (torch.arange(T, device=dev)[None, :] < lens.to(dev)[:, None])

    def target_features(self, batch, lens: torch.Tensor, model: nn.Module) -> torch.Tensor:
        """The visual front-end output of the undropped video on the model's grid ``[B, max(lens), d]``,
        without gradient."""
        from avsr.models.model import reconcile_video
        clean = batch.extras.get("clean_video")
        if clean is None:
            clean = batch.video
        dev = lens.device
        video, vlens = reconcile_video(clean.to(dev), batch.video_lens.to(dev), lens)
        with torch.no_grad():
            if self.target_net is not None:
                feats, _ = self.target_net(video, vlens)
            else:
                with bn_no_update(model.visual_frontend):
                    feats, _ = model.visual_frontend(video, vlens)
        return feats.detach()

    def extra_losses(self, batch, out, model) -> Dict[str, torch.Tensor]:
        if self.head is None:
            raise RuntimeError("tfr: setup() has not run (use the method inside a Trainer)")
        self.last = {}
        if batch.video is None or self.tap not in out.taps:
            return {}
        src, lens, valid = out.taps[self.tap], out.taps["lens"], out.taps["mask"]
        T = src.size(1)
        missing = self.missing_positions(batch, lens, T)
        target = self.target_features(batch, lens, model)
        if target.size(1) != T:
            raise ValueError(f"tfr: target has {target.size(1)} frames, tap {self.tap!r} has {T}")
        self.head.train(model.training)
        pred = self.head(src, valid)
        loss = reconstruction_loss(pred, target, missing, self.beta)
        w = self.weight if self.active else 0.0
        n_valid = int(valid.sum())   # the tap's valid-frame mask
        self.last = {"tfr_recon": float(loss.detach()), "tfr_missing": float(missing.sum()) / max(n_valid, 1)}
        return {"loss_tfr": w * loss}

    def extra_stats(self, batch, out, model) -> Dict[str, float]:
        """``tfr_recon`` (the unweighted reconstruction loss) and ``tfr_missing`` (the share of the
        forward's valid frames that are missing) of this forward; not added to the loss."""
        return dict(self.last)

    # ------------------------------------------------------------------ state
    # the head's weights are in the trainer's checkpoint (register_trainable); checkpoints written
    # before that kept them in this method's state, which is still read
    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if "head" in state and self.head is not None:
            self.head.load_state_dict(dict(state["head"]))

    def __repr__(self) -> str:
        return (f"TFRMethod(weight={self.weight}, warmup_steps={self.warmup_steps}, tap={self.tap!r}, "
                f"target={self.target!r}, beta={self.beta})")
