"""MLA, alternating unimodal adaptation (Zhang et al., "Multimodal Representation Learning by
Alternating Unimodal Adaptation", CVPR 2024; released code: Cecile-hi/Multimodal-Learning-with-
Alternating-Unimodal-Adaptation, ``main.py`` and ``utils/utils.py``), as a training method of the
audio-visual model.

What it does
------------
Each mini-batch is used twice, one modality at a time, through one *shared head*:

1. an **audio-only step**: ``model(batch, modality="audio")`` (audio front-end, audio Conformers,
   shared head), the model's own loss, its own backward and its own optimiser step;
2. a **video-only step**: ``model(batch, modality="video")`` (visual front-end, visual Conformers
   without cross-attention, shared head), its own backward and optimiser step.

So every batch makes **two optimiser updates** (``trainer.step`` grows by 2; the learning-rate
schedule, warm-up and ``max_steps`` budgets count these updates; when the audio step's update spends
``max_steps``, that batch's video step is not made, so a run never exceeds its step budget).  The cross-attention blocks and the
merge FFN are never on either path: MLA is *late fusion*.  :meth:`MLAMethod.setup` freezes them
(``cross_a2v``, ``cross_v2a``, ``merge_ffn``, ``merge_norms``: never in the optimiser), so an MLA model
keeps its initialisation's values there and its audio-visual path (``modality="audiovisual"``) is not
what MLA trains; an MLA model is decoded by fusing its two unimodal paths (below).

The shared head (AVSR mapping)
------------------------------
The model's layers that both unimodal paths run: the ``M`` shared Conformers, the CTC linear and the
attention decoder (in ``modality="audio"`` and ``"video"`` the model feeds ``LN_a(a_N)`` resp.
``LN_v(v_N)`` into the same shared layers and heads, ``avsr/models/model.py``).  Both steps train all
of them with the model's own hybrid loss.  The **projected** part (``head``):

``encoder`` (default)  every ``nn.Linear`` of the shared Conformers (attention Q/K/V/output, both
                       FFNs) and the CTC linear ``ctc.ctc_lo`` - the layers that produce the CTC
                       posteriors the test-time fusion reads;
``all``                the same plus every ``nn.Linear`` of the attention decoder.

Not projected: the relative-position projections ``linear_pos`` (their input is the positional table,
not a frame of either modality), convolutions, LayerNorms and every bias (the released code projects
one weight matrix and no bias).

The gradient projection (OWM-style, ``project: true``)
------------------------------------------------------
One matrix ``P`` per projected Linear, ``[in, in]``, initialised to the identity and shared by the
two modalities.  At each step, with ``r`` the Linear's input averaged over the batch and the valid
frames (decoder Linears: the valid token positions) of that step's forward::

    k = P r
    P <- P - k k^T / (alpha + r^T k)
    P <- P / ||P||_F
    grad_W <- grad_W P^T            (W: [out, in]; trainer.register_grad_hook on the Linear)

``update: before`` (default, the released code's order): ``P`` absorbs the current step's ``r``
before that step's gradient is projected; ``update: after`` (OWM's order): the gradient is projected
with ``P`` of the earlier steps and ``r`` is absorbed afterwards.  ``alpha`` falls geometrically from
``alpha[0]`` to ``alpha[1]`` within every epoch, ``alpha = a0 * (a1 / a0) ** (i / n)`` at batch ``i``
of ``n`` (``0.1 ** (1 + i / n)`` with the defaults, as in the released code); both steps of a batch
use the same ``alpha``.  The released code skips this projection through a parameter-name check that
never matches; here it is applied deliberately, and ``project: false`` is the ablation (plain
alternation).  With gradient accumulation (``accum_grad > 1``) each micro-batch's forward updates
``P`` and each micro-batch's gradient is projected with the ``P`` of that moment; the audio and the
video gradients are accumulated separately (the other modality's are stashed) and each modality
still gets its own optimiser step at the end of the group.  Under DDP ``r`` is averaged over the
ranks so that ``P`` stays identical on every rank, and the trainer must run with
``trainer.find_unused_parameters: true`` (each step leaves one branch unused).

Utterances without a single present video frame (``frame_mask`` all False, e.g. the data dir's
audio-only utterances) are left out of the video step; a batch without video makes the audio step
only (logged as ``mla_video_skipped``).

Validation and selection
------------------------
Validation forwards run ``modality=valid_modality`` (default ``audio``), so the trainer's ``cer``
is the audio path's CTC-greedy CER.  With ``fused_valid`` (default on) the method also reports, on
every validation batch (as ``extra_stats``: validation statistics, never added to a loss), CTC-greedy token errors per utterance of the audio path
(``mla_errs_audio``), the video path (``mla_errs_video``) and the entropy fusion of the two
(``mla_errs_fused``, :func:`avsr.decoding.entropy_fusion.entropy_fusion`).  For a fixed dev set
errors per utterance rank checkpoints exactly as CER does (both are the total error count divided
by a constant), so ``--set trainer.metric=mla_errs_fused`` selects and averages epochs by the fused
decode, the form an MLA model is decoded in.  (Character token lists: token errors are character
errors.)

Test time
---------
Per-frame CTC posteriors of the audio and the video path, fused with weights
``softmax(-entropy)`` after aligning the video path to the audio frames by the model's length rule
(:mod:`avsr.decoding.entropy_fusion`).  The attention decoder is not fused: MLA rows decode CTC-only
on the fused posteriors.  With missing video the entropy weights are MLA's own switch (no frame mask
is read): black frames that make the video path uncertain give the audio path the weight.

Logged (per batch): ``loss`` (mean of the two steps' losses), ``loss_audio``, ``loss_video`` and the
model's other stats per step (``loss_ctc_audio``, ``acc_video``, ...), ``grad_norm_audio``,
``grad_norm_video``, ``lr``, ``mla_alpha``.

Hyper-parameters: ``project`` (True), ``head`` (``encoder``), ``alpha`` ((0.1, 0.01)), ``update``
(``before``), ``valid_modality`` (``audio``), ``fused_valid`` (True), ``temperature`` (1.0, of the
validation fusion).
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from avsr.method import TrainingMethod

__all__ = ["MLAMethod", "owm_update", "project_grad", "alpha_at", "head_linears", "FUSION_PREFIXES",
           "HEADS", "UPDATES", "edit_distance"]

#: parameters that are on neither unimodal path (frozen by MLA)
FUSION_PREFIXES = ("cross_a2v.", "cross_v2a.", "merge_ffn.", "merge_norms.")
HEADS = ("encoder", "all")
UPDATES = ("before", "after")
MODALITIES = ("audio", "video")


# ---------------------------------------------------------------------------- the projection
def owm_update(P: torch.Tensor, r: torch.Tensor, alpha: float) -> torch.Tensor:
    """One OWM update of ``P`` [n, n] with the mean input ``r`` [n]:
    ``k = P r``, ``P - k k^T / (alpha + r^T k)``, divided by its Frobenius norm."""
    r = r.to(P.dtype).reshape(-1, 1)
    k = P @ r
    P = P - (k @ k.T) / (float(alpha) + (r.T @ k))
    return P / torch.linalg.matrix_norm(P, ord="fro")


def project_grad(grad: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
    """``grad_W P^T`` for a Linear weight gradient ``[out, in]``."""
    return (grad.to(P.dtype) @ P.T).to(grad.dtype)


def alpha_at(i: int, n: int, start: float = 0.1, end: float = 0.01) -> float:
    """``alpha`` at batch ``i`` (0-based) of an epoch of ``n`` batches: geometric from ``start``
    (``i = 0``) towards ``end`` (``i = n``)."""
    n = max(int(n), 1)
    return float(start) * (float(end) / float(start)) ** (min(max(int(i), 0), n) / n)


def head_linears(model: nn.Module, head: str = "encoder") -> List[Tuple[str, nn.Linear]]:
    """The projected Linears of the shared head: ``(name, module)`` in model order (module docstring)."""
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, got {head!r}")
    prefixes = ("shared_encoder.", "ctc.") + (("decoder.",) if head == "all" else ())
    out = []
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear) and name.startswith(prefixes) and not name.endswith("linear_pos"):
            out.append((name, mod))
    return out


def edit_distance(a: Sequence[int], b: Sequence[int]) -> int:
    """Levenshtein distance between two token sequences."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, y in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y))
        prev = cur
    return prev[-1]


def _subset(batch, keep: torch.Tensor):
    """The utterances of ``batch`` where ``keep`` [B] is True (tensors and per-utterance lists)."""
    idx = torch.nonzero(keep.cpu(), as_tuple=False).view(-1)
    B = len(batch)

    def take(x):
        if isinstance(x, torch.Tensor) and x.dim() > 0 and x.size(0) == B:
            return x.index_select(0, idx.to(x.device))
        if isinstance(x, (list, tuple)) and len(x) == B:
            return type(x)(x[int(i)] for i in idx)
        return x
    kw = {f: take(getattr(batch, f)) for f in ("utt_ids", "audio", "audio_lens", "video", "video_lens",
                                                "frame_mask", "tokens", "token_lens")}
    kw["extras"] = {k: take(v) for k, v in batch.extras.items()}
    return batch.replace(**kw)


# ---------------------------------------------------------------------------- the method
class MLAMethod(TrainingMethod):
    """``MLAMethod(project=True, head="encoder", alpha=(0.1, 0.01), update="before",
    valid_modality="audio", fused_valid=True, temperature=1.0)``; see the module docstring."""
    name = "mla"

    def __init__(self, project: bool = True, head: str = "encoder", alpha: Sequence[float] = (0.1, 0.01),
                 update: str = "before", valid_modality: str = "audio", fused_valid: bool = True,
                 temperature: float = 1.0):
        if head not in HEADS:
            raise ValueError(f"mla: head must be one of {HEADS}, got {head!r}")
        if update not in UPDATES:
            raise ValueError(f"mla: update must be one of {UPDATES}, got {update!r}")
        if valid_modality not in ("audio", "video", "audiovisual"):
            raise ValueError(f"mla: valid_modality must be audio, video or audiovisual, got {valid_modality!r}")
        alpha = (float(alpha), float(alpha)) if isinstance(alpha, (int, float)) else tuple(float(a) for a in alpha)
        if len(alpha) != 2 or not all(a > 0 for a in alpha):
            raise ValueError(f"mla: alpha must be [start, end] with both > 0, got {alpha!r}")
        self.project, self.head, self.alpha_range, self.update = bool(project), head, alpha, update
        self.valid_modality, self.fused_valid, self.temperature = valid_modality, bool(fused_valid), float(temperature)
        self.P: Dict[str, torch.Tensor] = {}
        self.alpha = alpha[0]
        self.position = (0, 0)          # (batch index in the epoch, batches in the epoch) of the last step
        self.updates = 0                # P updates so far
        self._linears: List[Tuple[str, nn.Linear]] = []
        self._captured: Dict[str, List[torch.Tensor]] = {}
        self._capturing = False
        self._stash: Dict[str, List[Optional[torch.Tensor]]] = {}
        self._params: List[nn.Parameter] = []
        self._world = 1
        self.counts: Dict[str, int] = {}

    # ------------------------------------------------------------------ setup
    def setup(self, trainer) -> None:
        model = trainer.model
        if getattr(model, "cfg", None) is None or model.cfg.mode != "audiovisual":
            raise ValueError("mla: alternates the audio-only and video-only paths of an audio-visual model "
                             "(model mode audiovisual)")
        self._world = int(getattr(trainer, "world_size", 1))
        if self._world > 1 and not trainer.config.find_unused_parameters:
            raise ValueError("mla: under DDP each step leaves one branch unused; set "
                             "trainer.find_unused_parameters: true")
        n_frozen = 0
        for name, p in model.named_parameters():
            if name.startswith(FUSION_PREFIXES) and p.requires_grad:
                p.requires_grad_(False)
                n_frozen += p.numel()
        self._linears = [(n, m) for n, m in head_linears(model, self.head) if m.weight.requires_grad]
        if not self._linears:
            raise ValueError(f"mla: the shared head ({self.head}) has no trainable Linear")
        self.counts = {"fusion_frozen": n_frozen, "projected_linears": len(self._linears)}
        dev = trainer.device
        if not self.P:
            self.P = {n: torch.eye(m.in_features, device=dev) for n, m in self._linears}
        else:                           # load_state_dict ran first
            self.P = {n: P.to(dev) for n, P in self.P.items()}
        for name, mod in self._linears:
            mod.register_forward_hook(self._capture_hook(name))
            if self.project:
                trainer.register_grad_hook(name, self._grad_hook(name))

    def _capture_hook(self, name: str):
        def hook(module, inputs, output):
            if self._capturing:
                self._captured.setdefault(name, []).append(inputs[0].detach())
        return hook

    def _grad_hook(self, name: str):
        def hook(param_name: str, grad: torch.Tensor):
            if param_name.endswith(".weight") and grad.dim() == 2:
                return project_grad(grad, self.P[name])
            return None
        return hook

    # ------------------------------------------------------------------ P updates
    def _input_means(self, out, batch) -> Dict[str, torch.Tensor]:
        """``r`` per projected Linear: its input averaged over the batch and the valid positions."""
        enc_mask = out.taps["mask"]
        dec_mask = None
        if batch.token_lens is not None:
            tl = batch.token_lens.to(enc_mask.device) + 1
            dec_mask = torch.arange(int(tl.max()), device=enc_mask.device)[None, :] < tl[:, None]
        rs: Dict[str, torch.Tensor] = {}
        for name, xs in self._captured.items():
            num, den = 0.0, 0.0
            for x in xs:
                x = x.float()
                if x.dim() != 3:
                    num, den = num + x.reshape(-1, x.size(-1)).sum(0), den + x.numel() // x.size(-1)
                    continue
                on_tokens = name.startswith("decoder.") and not name.endswith(("src_attn.linear_k",
                                                                                "src_attn.linear_v"))
                m = dec_mask if on_tokens else enc_mask
                if m is None or m.shape != x.shape[:2]:
                    m = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
                mf = m.to(x.dtype)[..., None]
                num, den = num + (x * mf).sum((0, 1)), den + float(m.sum())
            rs[name] = num / max(den, 1.0)
        if self._world > 1:
            import torch.distributed as dist
            for name in sorted(rs):
                dist.all_reduce(rs[name])
                rs[name] /= self._world
        return rs

    def _absorb(self, rs: Mapping[str, torch.Tensor], alpha: float) -> None:
        for name, r in rs.items():
            if name in self.P:
                self.P[name] = owm_update(self.P[name], r.to(self.P[name].device), alpha)
        self.updates += 1

    # ------------------------------------------------------------------ gradient stash (accumulation)
    def _swap_in(self, trainer, modality: str) -> None:
        """Put this modality's accumulated gradients (if any) into ``.grad``."""
        saved = self._stash.pop(modality, None)
        for i, p in enumerate(trainer.params):
            p.grad = saved[i] if saved is not None else None

    def _swap_out(self, trainer, modality: str) -> None:
        self._stash[modality] = [p.grad for p in trainer.params]
        for p in trainer.params:
            p.grad = None

    # ------------------------------------------------------------------ the step
    def video_batch(self, batch):
        """The utterances of ``batch`` that have at least one present video frame (None: none)."""
        if batch.video is None:
            return None
        if batch.frame_mask is None:
            return batch
        keep = batch.frame_mask.bool().any(1)
        if bool(keep.all()):
            return batch
        if not bool(keep.any()):
            return None
        return _subset(batch, keep)

    def train_step(self, trainer, batch) -> Dict[str, float]:
        n = len(trainer.train_sampler) if getattr(trainer, "train_sampler", None) is not None else 1
        i = int(trainer.batches_in_epoch)
        alpha = alpha_at(i, n, *self.alpha_range)
        self.alpha, self.position = alpha, (i, int(n))
        stats: Dict[str, float] = {"mla_alpha": alpha}
        losses = []
        for modality in MODALITIES:
            if modality == "video" and trainer.is_update_step and trainer.steps_spent():
                stats["mla_budget_end"] = 1.0       # the step budget ended with the audio update
                break
            b = batch if modality == "audio" else self.video_batch(batch)
            if b is None:
                stats["mla_video_skipped"] = 1.0
                if modality in self._stash and trainer.is_update_step:   # the group's earlier video gradients
                    self._swap_in(trainer, modality)
                    st = trainer.optimizer_step()
                    st.pop("lr", None)
                    stats.update({f"{k}_{modality}": v for k, v in st.items()})
                continue
            if trainer.accum_scale > 1:
                self._swap_in(trainer, modality)
            with trainer.no_sync():
                self._captured, self._capturing = {}, True
                try:
                    loss, out, st = trainer.forward_loss(b, modality=modality)
                finally:
                    self._capturing = False
                rs = self._input_means(out, b) if self.project else {}
                self._captured = {}
                if self.project and self.update == "before":
                    self._absorb(rs, alpha)
                trainer.backward(loss / trainer.accum_scale)
                if self.project and self.update == "after":
                    self._absorb(rs, alpha)
            if trainer.is_update_step:
                st.update(trainer.optimizer_step())
            elif trainer.accum_scale > 1:
                self._swap_out(trainer, modality)
            st.pop("lr", None)
            losses.append(st.get("loss", float("nan")))
            for k, v in st.items():
                stats[f"{k}_{modality}"] = v
        if trainer.accum_scale > 1 and trainer.is_update_step:
            self._stash = {}
        stats["loss"] = sum(losses) / len(losses)
        stats["lr"] = trainer.lr
        return stats

    # ------------------------------------------------------------------ validation
    def forward_kwargs(self, batch) -> Dict[str, Any]:
        return {} if self.valid_modality == "audiovisual" else {"modality": self.valid_modality}

    def extra_stats(self, batch, out, model) -> Dict[str, float]:
        """Validation only (``fused_valid``): CTC-greedy token errors per utterance of the audio path, the
        video path and their entropy fusion (``mla_errs_audio`` / ``_video`` / ``_fused``)."""
        if model.training or not self.fused_valid or batch.video is None or batch.tokens is None:
            return {}
        from avsr.decoding.ctc_greedy import ctc_greedy
        from avsr.decoding.entropy_fusion import entropy_fusion
        with torch.no_grad():
            if self.valid_modality == "audio":
                enc_a, lens_a = out.enc_out, out.enc_lens
            else:
                enc_a, lens_a, _ = model.encode(batch, modality="audio")
            enc_v, lens_v, _ = model.encode(batch, modality="video")
            la = torch.log_softmax(model.ctc_logits(enc_a).float(), dim=-1)
            lv = torch.log_softmax(model.ctc_logits(enc_v).float(), dim=-1)
            fused = entropy_fusion(la, lv, lens_a, lens_v, temperature=self.temperature)
            refs = [[int(t) for t in row[:int(n)]] for row, n in zip(batch.tokens.cpu(), batch.token_lens.cpu())]
            res = {}
            for key, lp, ln in (("audio", la, lens_a), ("video", lv, lens_v), ("fused", fused, lens_a)):
                errs = sum(edit_distance(h, r) for h, r in zip(ctc_greedy(lp, ln), refs))
                res[f"mla_errs_{key}"] = errs / max(len(batch), 1)
        return res

    # ------------------------------------------------------------------ state
    def state_dict(self) -> Dict[str, Any]:
        return {"P": {n: P.detach().cpu().clone() for n, P in self.P.items()}, "alpha": float(self.alpha),
                "position": [int(self.position[0]), int(self.position[1])], "updates": int(self.updates),
                "project": self.project, "head": self.head}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if "P" in state:
            if self.P and set(state["P"]) != set(self.P):
                raise ValueError(f"mla: the checkpoint's projections ({sorted(state['P'])[:3]}...) do not match "
                                 f"this head ({self.head}: {sorted(self.P)[:3]}...)")
            dev = {n: P.device for n, P in self.P.items()}
            self.P = {n: P.to(dev.get(n, P.device)).clone() for n, P in state["P"].items()}
        self.alpha = float(state.get("alpha", self.alpha))
        self.position = tuple(state.get("position", self.position))
        self.updates = int(state.get("updates", self.updates))

    def __repr__(self) -> str:
        return (f"MLAMethod(project={self.project}, head={self.head!r}, alpha={list(self.alpha_range)}, "
                f"update={self.update!r}, valid_modality={self.valid_modality!r}, fused_valid={self.fused_valid}"
                f"{', ' + str(self.counts) if self.counts else ''})")
