"""CKD: counterfactual modality-balanced knowledge distillation (ACM MM 2024, code
``CRIPAC-DIG/Balanced-Multimodal-Rec``, ``codes/train_kd.py``), mapped onto the AV model.

Two frozen unimodal teachers (the recipe's A0 for the audio, V for the video) each distil into the
student's *counterfactual* unimodal forward (the other modality replaced by its dataset mean), with a
one-sided hinge on the gold-transcript scores; a per-utterance weight, computed from the student's
own counterfactual forwards, gives the modality the student under-uses more distillation::

    loss = task + beta * mean_b sum_m w_m[b] * (hinge_m[b] + kappa * gen_m[b])

Counterfactual inputs ("the modality replaced by its dataset mean")
-------------------------------------------------------------------
* **mean audio** (``a_bar``): the normalised fbank zero vector at every frame of the utterance's own
  length.  The model normalises the fbank with the training set's global mean/std
  (``feats_stats.json``), so 0 *is* the dataset-mean log-mel frame (and it is what SpecAug's time
  masks already write).  It enters through ``encode(front={"feats": ...})``; no waveform is made.
* **mean video** (``v_bar``): every real frame (``t < video_lens[b]``) replaced by the mean training
  frame of :func:`avsr.data.dataset.dataset_video_mean` (pixel units, float, *not* rounded to uint8,
  *not* the black frame that frame dropout writes); frames beyond ``video_lens`` stay 0 (padding).
  ``video_mean=<number>`` uses a constant frame instead (e.g. ``0``: black frames, the
  frame-dropout representation of a missing frame); ``video_mean_utts`` caps the utterances read.

Scores (per utterance, from the gold transcript)
------------------------------------------------
``NLL_x``: the negative log-likelihood of the gold tokens under input ``x`` (``score``: ``joint`` =
``ctc_weight * CTC + (1 - ctc_weight) * attention`` with the model's own ``ctc_weight`` (default),
``ctc`` or ``att``), summed over the utterance's tokens like the task loss; the attention part is the
teacher-forced NLL *without* label smoothing (``<sos/eos>`` included).  The score of an input is its
gain over "nothing" (both modalities counterfactual)::

    s_x = NLL(a_bar, v_bar) - NLL(x)         x in {joint (a, v), a = (a, v_bar), v = (a_bar, v)}

Every student forward sees the same audio features: the student's own augmented fbank of the task
forward (SpecAug masks included, the ``audio_feats`` tap) or zeros, so score differences come from
the modalities only.  Utterances whose CTC is infeasible (fewer frames than tokens + repeats) get
no CKD term (weights 1, hinge 0).

Weights (per utterance, detached; the original's formula)
---------------------------------------------------------
``c_a = clamp((s_joint - s_v) / s_a, 1e-8, 10)``, ``c_v = clamp((s_joint - s_a) / s_v, 1e-8, 10)``
(a 0/0 ratio counts as 1), ``w_a = 2 c_v / (c_a + c_v)``, ``w_v = 2 - w_a``.  ``c_a`` is the audio's
marginal gain given the video relative to its gain alone; the modality with the smaller ``c`` gets the
larger weight.  The weights use the student's forwards of this very step (training mode: dropout on,
so they carry its noise; validation: eval mode) and never carry gradients.

Specific KD (the hinge)
-----------------------
``hinge_a = max(0, s_teacher_a - s_student_a)`` with ``s_teacher_a`` the A0 teacher's gain
``NLL_A0(a_bar) - NLL_A0(a)`` and ``s_student_a = NLL_S(a_bar, v_bar) - NLL_S(a, v_bar)``; the
student's both-counterfactual NLL is a reference level only (no gradient: pushing the "nothing"
likelihood down would raise every gain without learning anything), so the gradient reaches the
student through ``NLL_S(a, v_bar)``.  Likewise for the video with V on the video.  ``hinge="loglik"``
compares plain log-likelihoods instead: ``max(0, NLL_S(a, v_bar) - NLL_A0(a))``.  The hinge is zero
when the student's unimodal path already beats the teacher.

Generic KD (optional, ``kappa``; off by default)
------------------------------------------------
The original distils tempered predictions on *unlabelled* pairs; there are none here, so with
``kappa > 0`` it runs on the same labelled batch: the per-frame ``KL(p_T^tau || p_S^tau)`` of tempered
CTC posteriors (``softmax(logits / tau)``) between each teacher and the student's matching
counterfactual forward, averaged over the utterance's aligned frames (the first ``min(T_T, T_S)``:
A0 and the student share the audio frame grid; V runs on the 25 fps video grid, which the student's
audio-length grid cuts by about 2 frames).  Default ``tau = 1``: the original's ``0.1`` sharpens a
*scalar* ranking margin through a sigmoid; over a CTC vocabulary ``tau = 0.1`` turns the KL into a
near-hard cross-entropy on the teacher's argmax with 10x gradients.

Teachers
--------
``teacher_audio`` (A0) and ``teacher_video`` (V): a ``model.pth`` / checkpoint or a packed dir.  Their
config is the ``config.yaml`` beside the weights when there is one (a training exp dir or a packed
dir), else the student's with the teacher's mode; the vocabulary must be the student's.  They are
registered with ``trainer.register_frozen`` (eval mode, no gradients, not in the optimiser, not in
checkpoints) and always run in eval mode (their test-time behaviour).  A0 gets the student's
augmented fbank, re-normalised from the student's feature statistics to its own (identity when both
use the recipe's ``feats_stats.json``); its "nothing" is its own zero fbank.  V gets the student's
video (``teacher_video_input="student"``, default: the video after frame dropout, so the hinge
compares the two on the same input) or the video before any dropout (``"clean"``,
``batch.extras["clean_video"]``); its "nothing" is the mean video.  A0 and V are recipe models that
are trained anyway, so the teachers add no training to a row's budget.  Cost per step: three extra
student forwards (two of them back-propagated, one without gradients), one extra decoder pass on the
task forward's encoder output, and four teacher forwards without gradients (two with ``hinge="loglik"``).

BatchNorm (the visual front-end)
--------------------------------
The task forward is the only one that moves the student's BatchNorm running statistics.  Student
forwards with the mean video run BatchNorm on its running statistics (a batch of identical frames
has degenerate batch statistics; at test time a constant frame meets the running statistics too);
forwards with the real video use batch statistics like the task forward, with momentum 0.

Logged loss terms (added to the loss, summing to the CKD loss): ``loss_ckd_a``, ``loss_ckd_v``
(each ``beta * mean_b w_m (hinge_m + kappa gen_m)``).  Logged as diagnostics that are not added to
the loss (``extra_stats``), per forward: ``ckd_w_a``, ``ckd_w_v`` (the mean balance weights) and
``ckd_active_a``, ``ckd_active_v`` (the share of utterances whose hinge is active).  The last
forward's full diagnostics (weights, ``c``, hinges, scores) are in :attr:`CKDMethod.last`.
"""
from __future__ import annotations

import contextlib
import math
import os
from typing import Any, Dict, Iterator, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from avsr.method import TrainingMethod
from avsr.utils.batchnorm import bn_no_update

__all__ = ["SCORES", "HINGES", "TEACHER_VIDEO_INPUTS", "balance_weights", "mean_video", "ctc_feasible",
           "utterance_nll", "tempered_kl", "bn_running_stats", "load_teacher", "CKDMethod"]

SCORES = ("joint", "ctc", "att")
HINGES = ("gain", "loglik")
TEACHER_VIDEO_INPUTS = ("student", "clean")


# ------------------------------------------------------------------------------ the pieces
def balance_weights(s_joint: torch.Tensor, s_a: torch.Tensor, s_v: torch.Tensor, lo: float = 1e-8,
                    hi: float = 10.0) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(w_a, w_v, c_a, c_v)`` per utterance, all detached: ``c_a = clamp((s_joint - s_v) / s_a, lo, hi)``,
    ``c_v = clamp((s_joint - s_a) / s_v, lo, hi)`` (0/0 counts as 1, +-inf clamps),
    ``w_a = 2 c_v / (c_a + c_v)``, ``w_v = 2 - w_a``."""
    s_joint, s_a, s_v = (x.detach().double() for x in (s_joint, s_a, s_v))

    def coeff(num, den):
        r = torch.nan_to_num(num / den, nan=1.0, posinf=hi, neginf=lo)
        return r.clamp(lo, hi)
    c_a, c_v = coeff(s_joint - s_v, s_a), coeff(s_joint - s_a, s_v)
    w_a = 2.0 * c_v / (c_a + c_v)
    f = torch.float32
    return w_a.to(f), (2.0 - w_a).to(f), c_a.to(f), c_v.to(f)


def mean_video(video: torch.Tensor, video_lens: Optional[torch.Tensor], frame: torch.Tensor) -> torch.Tensor:
    """float32 ``[B, T, H, W]``: ``frame`` ([H, W], pixel units) at every ``t < video_lens[b]``, 0 beyond."""
    B, T, H, W = video.shape
    if tuple(frame.shape) != (H, W):
        raise ValueError(f"ckd: the mean video frame is {tuple(frame.shape)} but the batch's frames are "
                         f"{(H, W)} (the crop of the training set must be the batch's)")
    lens = video_lens if video_lens is not None else torch.full((B,), T)
    keep = torch.arange(T, device=video.device)[None, :] < lens.to(video.device)[:, None]
    return frame.to(video.device, torch.float32)[None, None] * keep[:, :, None, None].float()


def ctc_feasible(in_lens: torch.Tensor, tokens: torch.Tensor, token_lens: torch.Tensor) -> torch.Tensor:
    """bool ``[B]``: a CTC path exists (``in_lens >= token_lens + repeated neighbours``)."""
    tl = token_lens.to(tokens.device)
    L = tokens.size(1)
    pos = torch.arange(L, device=tokens.device)[None, :]
    rep = (tokens[:, 1:] == tokens[:, :-1]) & (pos[:, 1:] < tl[:, None]) if L > 1 else tokens[:, :0].bool()
    need = tl + rep.sum(1)
    return in_lens.to(tokens.device) >= need


def utterance_nll(model: nn.Module, enc_out: torch.Tensor, enc_lens: torch.Tensor, tokens: torch.Tensor,
                  token_lens: torch.Tensor, score: str = "joint") -> torch.Tensor:
    """float32 ``[B]``: the gold transcript's NLL per utterance under ``model``'s heads on ``enc_out``:
    ``ctc`` (ESPnet's CTC, blank 0, summed; infeasible utterances 0), ``att`` (teacher-forced decoder NLL
    of the tokens and ``<sos/eos>``, no label smoothing, summed) or ``joint`` (``ctc_weight`` mix as in
    the task loss; a model without decoder or with ``ctc_weight`` 1 uses CTC, with 0 the decoder)."""
    if score not in SCORES:
        raise ValueError(f"ckd: score must be one of {SCORES}, got {score!r}")
    from espnet.nets.pytorch_backend.transformer.add_sos_eos import add_sos_eos
    w = float(model.cfg.ctc_weight)
    has_dec = model.decoder is not None
    use_ctc = score == "ctc" or (score == "joint" and (w > 0 or not has_dec))
    use_att = score == "att" or (score == "joint" and w < 1 and has_dec)
    if score == "att" and not has_dec:
        raise ValueError("ckd: score 'att' needs a model with an attention decoder")
    tokens = tokens.to(enc_out.device)
    token_lens = token_lens.to(enc_out.device)
    ctc = att = None
    if use_ctc:
        logp = model.ctc_logits(enc_out).float().log_softmax(-1)
        ctc = F.ctc_loss(logp.transpose(0, 1), tokens.clamp_min(0), enc_lens.to(enc_out.device), token_lens,
                         blank=0, reduction="none", zero_infinity=True)
    if use_att:
        ys_in, ys_out = add_sos_eos(tokens, model.sos, model.eos, model.ignore_id)
        dec, _ = model.decoder(enc_out, enc_lens, ys_in, token_lens + 1)
        lp = dec.float().log_softmax(-1)
        valid = ys_out != model.ignore_id
        att = -(lp.gather(-1, ys_out.clamp_min(0)[..., None])[..., 0] * valid).sum(1)
    if ctc is None:
        return att
    if att is None:
        return ctc
    return w * ctc + (1.0 - w) * att


def tempered_kl(t_logits: torch.Tensor, t_lens: torch.Tensor, s_logits: torch.Tensor, s_lens: torch.Tensor,
                tau: float) -> torch.Tensor:
    """float32 ``[B]``: per utterance, the mean over its first ``min(t_lens, s_lens)`` frames of
    ``KL(softmax(t / tau) || softmax(s / tau))`` (teacher detached; 0 for an utterance without frames)."""
    T = min(t_logits.size(1), s_logits.size(1))
    lt = (t_logits[:, :T].detach().float() / tau).log_softmax(-1)
    ls = (s_logits[:, :T].float() / tau).log_softmax(-1)
    kl = (lt.exp() * (lt - ls)).sum(-1)                                   # [B, T]
    n = torch.minimum(t_lens.to(kl.device), s_lens.to(kl.device)).clamp_max(T)
    valid = torch.arange(T, device=kl.device)[None, :] < n[:, None]
    return (kl * valid).sum(1) / n.clamp_min(1).float()


def _train_bns(model: nn.Module):
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]


@contextlib.contextmanager
def bn_running_stats(model: nn.Module) -> Iterator[None]:
    """Inside: BatchNorm layers in training mode compute with their running statistics (eval mode),
    which do not move; afterwards they are in training mode again."""
    bns = _train_bns(model)
    for m in bns:
        m.eval()
    try:
        yield
    finally:
        for m in bns:
            m.train()


def load_teacher(path: str, mode: str, student) -> nn.Module:
    """An :class:`avsr.models.AVSRModel` in ``mode`` with the weights at ``path`` (a ``.pth``, or a dir
    with ``model.pth``); config: ``config.yaml`` beside the weights when present, else the student's
    with ``mode`` (no adapters).  Errors name the path."""
    from avsr.models import AVSRModel, load_model_config
    from avsr.utils.checkpoint import load_checkpoint, model_state
    wpath = os.path.join(path, "model.pth") if os.path.isdir(path) else path
    cpath = os.path.join(os.path.dirname(os.path.abspath(wpath)), "config.yaml")
    if os.path.isfile(cpath):
        try:
            cfg = load_model_config(cpath, adapter_rank=0)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{cpath}: not a model config ({e})") from None
        if cfg.mode != mode:
            raise ValueError(f"{cpath}: the ckd teacher must be a {mode!r} model, its config says {cfg.mode!r}")
    else:
        cfg = student.cfg.replace(mode=mode, adapter_rank=0)
    if cfg.vocab_size != student.cfg.vocab_size:
        raise ValueError(f"{wpath}: teacher vocabulary {cfg.vocab_size} != student's {student.cfg.vocab_size}")
    teacher = AVSRModel(cfg)
    sd = model_state(load_checkpoint(wpath))
    try:
        missing, unexpected = teacher.load_state_dict(sd, strict=False)
    except RuntimeError as e:
        raise ValueError(f"{wpath}: weights do not fit a {mode!r} model of this config: "
                         f"{str(e).splitlines()[-1].strip()}") from None
    if missing or unexpected:
        raise ValueError(f"{wpath}: weights do not fit a {mode!r} model of this config "
                         f"(missing {list(missing)[:4]}, unexpected {list(unexpected)[:4]})")
    return teacher


# ------------------------------------------------------------------------------ the method
class CKDMethod(TrainingMethod):
    """``CKDMethod(teacher_audio="exp/train_a0/model.pth", teacher_video="exp/train_v/model.pth", beta=0.01)``
    (see the module docstring).

    ``beta`` (0.01, the original's ``kd_ratio``; our scores are per-utterance nats, see
    docs/ROBUSTNESS.md for the dev grid), ``kappa`` (0: no generic KD; the original 5), ``tau`` (1.0),
    ``score`` (``joint`` | ``ctc`` | ``att``), ``hinge`` (``gain`` | ``loglik``), ``clamp`` ([1e-8, 10]),
    ``teacher_video_input`` (``student`` | ``clean``), ``video_mean`` (None: the training set's mean
    frame; a number: a constant frame), ``video_mean_utts`` (None: every training utterance).
    """
    name = "ckd"

    def __init__(self, teacher_audio: str, teacher_video: str, beta: float = 0.01, kappa: float = 0.0,
                 tau: float = 1.0, score: str = "joint", hinge: str = "gain", clamp=(1e-8, 10.0),
                 teacher_video_input: str = "student", video_mean: Optional[float] = None,
                 video_mean_utts: Optional[int] = None):
        if score not in SCORES:
            raise ValueError(f"ckd: score must be one of {SCORES}, got {score!r}")
        if hinge not in HINGES:
            raise ValueError(f"ckd: hinge must be one of {HINGES}, got {hinge!r}")
        if teacher_video_input not in TEACHER_VIDEO_INPUTS:
            raise ValueError(f"ckd: teacher_video_input must be one of {TEACHER_VIDEO_INPUTS}, "
                             f"got {teacher_video_input!r}")
        if float(beta) < 0 or float(kappa) < 0 or not float(tau) > 0:
            raise ValueError(f"ckd: need beta >= 0, kappa >= 0, tau > 0; got {beta}, {kappa}, {tau}")
        lo, hi = (float(x) for x in clamp)
        if not 0 < lo < hi:
            raise ValueError(f"ckd: clamp must be [lo, hi] with 0 < lo < hi, got {clamp!r}")
        self.teacher_audio_path, self.teacher_video_path = str(teacher_audio), str(teacher_video)
        self.beta, self.kappa, self.tau = float(beta), float(kappa), float(tau)
        self.score, self.hinge, self.clamp = score, hinge, (lo, hi)
        self.teacher_video_input = teacher_video_input
        self.video_mean = None if video_mean is None else float(video_mean)
        self.video_mean_utts = None if video_mean_utts is None else int(video_mean_utts)
        self.teacher_a: Optional[nn.Module] = None
        self.teacher_v: Optional[nn.Module] = None
        self.frame: Optional[torch.Tensor] = None      # [H, W] float32 pixels; None: constant (lazy)
        self.last: Dict[str, float] = {}

    # ---------------------------------------------------------------- setup
    def setup(self, trainer) -> None:
        student = trainer.model
        if getattr(student, "cfg", None) is None or student.cfg.mode != "audiovisual":
            raise ValueError("ckd: the student must be an audio-visual avsr.models.AVSRModel")
        self.teacher_a = trainer.register_frozen(
            "ckd_teacher_audio", load_teacher(self.teacher_audio_path, "audio", student))
        self.teacher_v = trainer.register_frozen(
            "ckd_teacher_video", load_teacher(self.teacher_video_path, "video", student))
        if self.video_mean is None:
            ds = trainer.train_set
            if not hasattr(ds, "dd"):
                raise ValueError("ckd: video_mean=None needs a training set with ROI files "
                                 "(avsr.data.dataset.AVSRDataset); give video_mean=<pixel value> otherwise")
            from avsr.data.dataset import dataset_video_mean
            self.frame = dataset_video_mean(ds, max_utts=self.video_mean_utts)

    def mean_frame(self, H: int, W: int) -> torch.Tensor:
        if self.frame is not None:
            return self.frame
        if self.video_mean is None:
            raise RuntimeError("ckd: setup() was not called (no mean video frame)")
        return torch.full((H, W), self.video_mean, dtype=torch.float32)

    def transform_batch(self, batch, train: bool):
        """Keeps the video in ``extras["clean_video"]`` unless an earlier method already did (for
        ``teacher_video_input="clean"``)."""
        if self.teacher_video_input != "clean" or batch.video is None or batch.extras.get("clean_video") is not None:
            return batch
        extras = dict(batch.extras)
        extras["clean_video"] = batch.video
        return batch.replace(extras=extras)

    # ---------------------------------------------------------------- forwards
    def _student(self, model, batch, feats, video, *, bn: str):
        """``(NLL [B], ctc logits, lens)`` of the student on ``feats`` (fbank, lens) and ``video``."""
        ctx = bn_running_stats(model) if bn == "running" else bn_no_update(model)
        with ctx, model.adapter_switch(model.adapters_for("audiovisual")):
            enc, lens, _ = model.encode(batch.replace(video=video), modality="audiovisual",
                                        front={"feats": feats})
            nll = utterance_nll(model, enc, lens, batch.tokens, batch.token_lens, self.score)
        return nll, enc, lens

    @staticmethod
    def _renorm(feats, flens, student, teacher):
        """Student-normalised fbank -> the teacher's normalisation (padded frames 0)."""
        fs, ft = student.audio_frontend, teacher.audio_frontend
        x = (feats * fs.feat_std + fs.feat_mean - ft.feat_mean) / ft.feat_std
        valid = torch.arange(x.size(1), device=x.device)[None, :] < flens.to(x.device)[:, None]
        return x * valid[..., None].to(x.dtype)

    def _teacher(self, teacher, batch, **enc_kw):
        with torch.no_grad():
            enc, lens, _ = teacher.encode(batch, **enc_kw)
            nll = utterance_nll(teacher, enc, lens, batch.tokens, batch.token_lens, self.score)
        return nll, enc, lens

    # ---------------------------------------------------------------- loss
    #: the diagnostics of :attr:`last` that :meth:`extra_stats` logs (as ``ckd_<name>``)
    LOGGED = ("w_a", "w_v", "active_a", "active_v")

    def extra_stats(self, batch, out, model) -> Dict[str, float]:
        """``ckd_w_a``, ``ckd_w_v`` (mean balance weights) and ``ckd_active_a``, ``ckd_active_v`` (share of
        active hinges) of this forward (none when it had no CKD term); not added to the loss."""
        return {f"ckd_{k}": self.last[k] for k in self.LOGGED if math.isfinite(self.last.get(k, math.nan))}

    def extra_losses(self, batch, out, model) -> Dict[str, torch.Tensor]:
        self.last = {}
        if batch.tokens is None or batch.video is None or "audio_feats" not in out.taps:
            return {}
        if self.teacher_a is None:
            raise RuntimeError("ckd: setup() was not called (no teachers)")
        dev = out.enc_out.device
        tokens, tlens = batch.tokens.to(dev), batch.token_lens.to(dev)
        feats, flens = out.taps["audio_feats"].detach(), out.taps["audio_feat_lens"]
        zeros = torch.zeros_like(feats)
        H, W = batch.video.shape[-2:]
        vbar = mean_video(batch.video.to(dev), batch.video_lens, self.mean_frame(H, W))
        lo, hi = self.clamp

        # the student: joint (the task forward), audio-only and video-only counterfactuals, nothing
        with torch.no_grad():
            nll_j = utterance_nll(model, out.enc_out.detach(), out.enc_lens, tokens, tlens, self.score)
            nll_0, _, _ = self._student(model, batch, (zeros, flens), vbar, bn="running")
        nll_a, s_enc_a, s_lens = self._student(model, batch, (feats, flens), vbar, bn="running")
        nll_v, s_enc_v, _ = self._student(model, batch, (zeros, flens), batch.video, bn="no_update")
        s_j, s_a, s_v = nll_0 - nll_j, nll_0 - nll_a.detach(), nll_0 - nll_v.detach()
        w_a, w_v, c_a, c_v = balance_weights(s_j, s_a, s_v, lo, hi)

        # the teachers (eval mode, no gradients)
        ta, tv = self.teacher_a, self.teacher_v
        fa = self._renorm(feats, flens, model, ta)
        nll_ta, t_enc_a, t_lens_a = self._teacher(ta, batch, modality="audio", front={"feats": (fa, flens)})
        if self.teacher_video_input == "clean" and batch.extras.get("clean_video") is not None:
            tvid = batch.extras["clean_video"].to(dev)
        else:
            tvid = batch.video
        nll_tv, t_enc_v, t_lens_v = self._teacher(tv, batch.replace(video=tvid), modality="video")
        if self.hinge == "gain":
            nll_ta0, _, _ = self._teacher(ta, batch, modality="audio", front={"feats": (torch.zeros_like(fa), flens)})
            nll_tv0, _, _ = self._teacher(tv, batch.replace(video=vbar), modality="video")
            target_a, target_v = nll_ta0 - nll_ta, nll_tv0 - nll_tv
            stud_a, stud_v = nll_0 - nll_a, nll_0 - nll_v
        else:
            target_a, target_v = -nll_ta, -nll_tv
            stud_a, stud_v = -nll_a, -nll_v

        # utterances with a feasible CTC everywhere it is used
        ok = torch.ones_like(nll_j, dtype=torch.bool)
        if self.score != "att":
            ok &= ctc_feasible(s_lens, tokens, tlens) & ctc_feasible(t_lens_v, tokens, tlens)
        okf = ok.float()
        w_a = torch.where(ok, w_a, torch.ones_like(w_a))
        w_v = torch.where(ok, w_v, torch.ones_like(w_v))
        hinge_a = F.relu(target_a.detach() - stud_a) * okf
        hinge_v = F.relu(target_v.detach() - stud_v) * okf
        term_a, term_v = hinge_a, hinge_v
        gen_a = gen_v = None
        if self.kappa > 0:
            gen_a = tempered_kl(ta.ctc_logits(t_enc_a), t_lens_a, model.ctc_logits(s_enc_a), s_lens, self.tau) * okf
            gen_v = tempered_kl(tv.ctc_logits(t_enc_v), t_lens_v, model.ctc_logits(s_enc_v), s_lens, self.tau) * okf
            term_a = term_a + self.kappa * gen_a
            term_v = term_v + self.kappa * gen_v
        loss_a = self.beta * (w_a * term_a).mean()
        loss_v = self.beta * (w_v * term_v).mean()

        def m(x):
            return float(x.detach().float().mean()) if x is not None and x.numel() else math.nan
        self.last = {"w_a": m(w_a), "w_v": m(w_v), "c_a": m(c_a), "c_v": m(c_v),
                     "hinge_a": m(hinge_a), "hinge_v": m(hinge_v),
                     "active_a": m((hinge_a > 0).float()), "active_v": m((hinge_v > 0).float()),
                     "s_joint": m(s_j), "s_a": m(s_a), "s_v": m(s_v),
                     "s_teacher_a": m(target_a), "s_teacher_v": m(target_v),
                     "gen_a": m(gen_a), "gen_v": m(gen_v), "valid": m(okf)}
        return {"loss_ckd_a": loss_a, "loss_ckd_v": loss_v}

    def __repr__(self) -> str:
        return (f"CKDMethod(teacher_audio={self.teacher_audio_path!r}, teacher_video={self.teacher_video_path!r}, "
                f"beta={self.beta}, kappa={self.kappa}, tau={self.tau}, score={self.score!r}, hinge={self.hinge!r}, "
                f"clamp={list(self.clamp)}, teacher_video_input={self.teacher_video_input!r}, "
                f"video_mean={self.video_mean!r}, video_mean_utts={self.video_mean_utts!r})")
