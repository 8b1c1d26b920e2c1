"""MDA-KD (Dai et al., CVPR 2024): distil the distribution of a full-video teacher's multimodal
representation into a student trained with dropped frames.

``loss = task + lambda_kd * D(teacher tap, student tap)`` on every sample (dropped or not).  The
tap is configurable: default ``visual_bundle``, the visual input of the merge FFN (the paper's
figure draws L_KD on the features that enter the FFN: with ``merge: bundle`` the visual front-end
output and every fusion layer's visual output, see ``avsr/models/model.py``); ``fused`` (the input
of the shared layers, the ablation row ``AV5-fusedtap``), ``fusion{i}.audio`` /
``fusion{i}.visual`` / ``shared_out``.  Several taps are joined with ``+`` and their distances
averaged; ``fusion`` stands for every per-fusion-layer tap (``fusion0.audio+fusion0.visual+...``),
so ``fusion+fused`` adds the fused tap to them.

What the teacher (AV0, frozen) receives: the student's inputs with the video *undropped*, i.e.

* **audio**: exactly the student's augmented audio features: the batch's audio after every batch
  transform (babble noise of ``audio_noise`` included, whatever the method order) and the
  student's own normalised fbank *with the student's SpecAug time masks* (the student's
  ``audio_feats`` tap, given to the teacher through ``encode(front={"feats": ...})``).
  ``teacher_audio="own"`` (an ablation, the toolkit's earlier behaviour) lets the teacher compute
  its own fbank from the batch audio instead, without SpecAug;
* **video**: the batch's video before any frame dropout, whatever order the methods are given in:
  :class:`avsr.robust.frame_dropout.FrameDropout` and this method's ``transform_batch`` both keep
  the video they receive in ``batch.extras["clean_video"]`` unless a method before them already
  did (the first one wins), so the teacher gets the video as the batch came from the data
  loader.  A method of one's own that blackens frames must do the same (``setdefault``).

Dropout policy: the teacher runs with every dropout off (it is frozen, in eval mode); its
BatchNorm layers compute like the student's (batch statistics of the teacher's own input while the
student's BatchNorm trains, running statistics when the student's is frozen or in eval mode) and
the teacher's running statistics never change.  The student keeps its configured dropout: the KD
term uses the student's one training forward, the one of the task loss (a second, dropout-free
student forward would double the cost).  So with the teacher's own weights, the same inputs and
the student's dropout at 0 the KD loss is 0 in training mode (tested), and with dropout on it is
the dropout noise of the student's representation.

Distances ``D`` (all computed per utterance over its valid frames, then averaged over the batch):

``mse``       frame-wise mean squared error on aligned frames (the frames are time-aligned:
              teacher and student see the same audio and the same video grid).
``cosine``    frame-wise ``1 - cos`` on aligned frames.
``gauss_kl``  distribution distance with second-order statistics: per utterance, ``n_samples``
              frames are sampled (without replacement; all when shorter) from the teacher and,
              independently, from the student; a diagonal Gaussian is fitted to each (mean **and**
              variance per dimension) and ``KL(N_teacher || N_student)`` is averaged over
              dimensions.  The student's variance is floored at ``var_floor``.
``mmd``       squared maximum mean discrepancy between the sampled student and teacher frames
              with a sum of RBF kernels (bandwidths: the median pairwise distance x {0.5, 1, 2},
              median taken on the detached teacher-student distances).
"""
from __future__ import annotations

import contextlib
from typing import Any, Dict, Iterator, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import nn

from avsr.method import TrainingMethod

__all__ = ["DISTANCES", "TEACHER_AUDIO", "distance", "expand_taps", "mirror_batchnorm", "MDAKDMethod"]

DISTANCES = ("mse", "cosine", "gauss_kl", "mmd")
TEACHER_AUDIO = ("student", "own")


def _sample(x: torch.Tensor, n: int, k: int, g: Optional[torch.Generator]) -> torch.Tensor:
    if k <= 0 or n >= k:
        return x[:k]
    idx = torch.randperm(k, generator=g, device="cpu")[:n].to(x.device)
    return x.index_select(0, idx)


def _gauss_kl(t: torch.Tensor, s: torch.Tensor, var_floor: float) -> torch.Tensor:
    mt, ms = t.mean(0), s.mean(0)
    vt = t.var(0, unbiased=False) + var_floor
    vs = s.var(0, unbiased=False) + var_floor
    kl = 0.5 * (torch.log(vs / vt) + (vt + (mt - ms) ** 2) / vs - 1.0)
    return kl.mean()


def _mmd(t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    xy = torch.cat([s, t], 0)
    d2 = torch.cdist(xy, xy).pow(2)
    n = s.size(0)
    with torch.no_grad():
        cross = d2[:n, n:]
        med = cross.median().clamp_min(1e-6)
    k = sum(torch.exp(-d2 / (2.0 * med * f)) for f in (0.25, 1.0, 4.0))  # bandwidth^2 = med * f
    kss, ktt, kst = k[:n, :n], k[n:, n:], k[:n, n:]
    return kss.mean() + ktt.mean() - 2.0 * kst.mean()


def distance(name: str, student: torch.Tensor, teacher: torch.Tensor, lens: torch.Tensor,
             n_samples: int = 64, generator: Optional[torch.Generator] = None,
             var_floor: float = 1e-4) -> torch.Tensor:
    """Mean over utterances of ``D(student[b, :lens[b]], teacher[b, :lens[b]])``; gradients flow to
    ``student`` only (``teacher`` is detached)."""
    if name not in DISTANCES:
        raise ValueError(f"unknown distance {name!r}; choose from {DISTANCES}")
    if student.shape != teacher.shape:
        raise ValueError(f"student {tuple(student.shape)} and teacher {tuple(teacher.shape)} taps differ in shape")
    teacher = teacher.detach()
    lens = lens.to("cpu").long()
    out = []
    for b in range(student.size(0)):
        k = int(lens[b])
        if k == 0:
            continue
        s, t = student[b, :k].float(), teacher[b, :k].float()
        if name == "mse":
            out.append(((s - t) ** 2).mean())
        elif name == "cosine":
            out.append((1.0 - F.cosine_similarity(s, t, dim=-1)).mean())
        else:
            ss, tt = _sample(s, n_samples, k, generator), _sample(t, n_samples, k, generator)
            if min(ss.size(0), tt.size(0)) < 2:
                continue
            out.append(_gauss_kl(tt, ss, var_floor) if name == "gauss_kl" else _mmd(tt, ss))
    if not out:
        return student.sum() * 0.0
    return torch.stack(out).mean()


def expand_taps(spec: str, available) -> list:
    """The tap names of ``spec`` (``+``-joined; ``fusion`` = every ``fusion{i}.*`` of ``available``),
    in order, without repeats; an unknown name is a ValueError listing ``available``."""
    available = list(available)
    out = []
    for part in str(spec).split("+"):
        part = part.strip()
        names = [n for n in available if n.startswith("fusion") and "." in n] if part == "fusion" else [part]
        if not names or any(n not in available for n in names):
            raise ValueError(f"unknown tap {part!r} in {spec!r}; the model has {available} "
                             "(and 'fusion' for all per-fusion-layer taps)")
        out += [n for n in names if n not in out]
    return out


@contextlib.contextmanager
def mirror_batchnorm(teacher: nn.Module, student: nn.Module) -> Iterator[None]:
    """Inside: every BatchNorm layer of ``teacher`` whose namesake in ``student`` is in training mode
    uses batch statistics too (momentum 0, so its running statistics do not move); afterwards it is
    back in eval mode with its momentum and ``num_batches_tracked`` as before."""
    trained = {n for n, m in student.named_modules()
               if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training}
    saved = []
    for n, m in teacher.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and n in trained and not m.training:
            nbt = m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None
            saved.append((m, m.momentum, nbt))
            m.momentum = 0.0
            m.train()
    try:
        yield
    finally:
        for m, momentum, nbt in saved:
            m.eval()
            m.momentum = momentum
            if nbt is not None:
                m.num_batches_tracked.copy_(nbt)


class MDAKDMethod(TrainingMethod):
    """``MDAKDMethod(teacher="exp/train_av0/model.pth", tap="visual_bundle", distance="mse", weight=100.0)``.

    The distance and weight defaults are the SynthMISP mini dev choice made with the ``fused`` tap
    and the earlier ``last`` merge (docs/ROBUSTNESS.md; the four distances were within 0.4 points
    of dev CER of each other there, so the choice is weakly determined).

    ``teacher``: weights of an AV model with the student's config (a packed dir or a ``.pth``);
    it is built with the student's own config and frozen.  ``teacher_audio``: ``student`` (default:
    the student's augmented fbank, SpecAug masks included) or ``own`` (the teacher's own fbank of
    the batch audio, no SpecAug).  Logged loss: ``loss_kd`` (weighted).
    """
    name = "mda_kd"

    def __init__(self, teacher: str, tap: str = "visual_bundle", distance: str = "mse", weight: float = 100.0,
                 n_samples: int = 64, seed: int = 0, var_floor: float = 1e-4, teacher_audio: str = "student"):
        if distance not in DISTANCES:
            raise ValueError(f"unknown distance {distance!r}; choose from {DISTANCES}")
        if teacher_audio not in TEACHER_AUDIO:
            raise ValueError(f"teacher_audio must be one of {TEACHER_AUDIO}, got {teacher_audio!r}")
        self.teacher_audio = teacher_audio
        self.teacher_path, self.tap, self.dist = teacher, tap, distance
        self.weight, self.n_samples, self.var_floor = float(weight), int(n_samples), float(var_floor)
        self.seed = int(seed)
        self.gen = torch.Generator().manual_seed(self.seed)
        self.teacher = None
        self.taps = None

    def setup(self, trainer) -> None:
        import copy
        import os

        from avsr.utils.checkpoint import load_checkpoint, model_state
        student = trainer.model
        teacher = copy.deepcopy(student)
        path = self.teacher_path
        if os.path.isdir(path):
            path = os.path.join(path, "model.pth")
        sd = model_state(load_checkpoint(path))
        try:
            missing, unexpected = teacher.load_state_dict(sd, strict=False)
        except RuntimeError as e:      # shapes differ, e.g. a teacher trained with another merge
            raise ValueError(f"{path}: teacher weights do not fit the student's config "
                             f"(merge {student.cfg.merge!r}): {str(e).splitlines()[-1].strip()}") from None
        # a teacher must provide every tensor the tap depends on: require a full AV match
        bad = [k for k in missing if not k.startswith(("adapter", "lora"))]
        if bad or unexpected:
            raise ValueError(f"{path}: teacher weights do not fit the student's config "
                             f"(missing {bad[:4]}, unexpected {list(unexpected)[:4]})")
        self.teacher = trainer.register_frozen("mda_kd_teacher", teacher)
        self.taps = expand_taps(self.tap, student.tap_names("audiovisual"))

    def transform_batch(self, batch, train: bool):
        """Keeps the video in ``extras["clean_video"]`` unless an earlier method (frame dropout) already
        kept the video it received."""
        if batch.video is None or batch.extras.get("clean_video") is not None:
            return batch
        extras = dict(batch.extras)
        extras["clean_video"] = batch.video
        return batch.replace(extras=extras)

    def teacher_taps(self, batch, out, model) -> Dict[str, torch.Tensor]:
        """The teacher's taps for the student's forward ``out`` on ``batch`` (no gradients)."""
        clean = batch.extras.get("clean_video")
        dev = out.taps[self.taps[0]].device
        front = {}
        if self.teacher_audio == "student":
            if "audio_feats" not in out.taps:
                raise ValueError("mda_kd: the student's output has no audio_feats tap (an audio-visual forward "
                                 "of avsr.models.AVSRModel is needed)")
            front["feats"] = (out.taps["audio_feats"].detach(), out.taps["audio_feat_lens"])
        with torch.no_grad(), mirror_batchnorm(self.teacher, model):
            _, _, ttaps = self.teacher.encode(batch.replace(video=clean.to(dev)), modality="audiovisual",
                                              front=front)
        return ttaps

    def extra_losses(self, batch, out, model) -> Dict[str, torch.Tensor]:
        clean = batch.extras.get("clean_video")
        if clean is None or any(t not in out.taps for t in self.taps):
            return {}
        ttaps = self.teacher_taps(batch, out, model)
        d = torch.stack([distance(self.dist, out.taps[t], ttaps[t], out.taps["lens"], n_samples=self.n_samples,
                                  generator=self.gen, var_floor=self.var_floor) for t in self.taps]).mean()
        return {"loss_kd": self.weight * d}

    def state_dict(self) -> Dict[str, Any]:
        return {"gen": self.gen.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if "gen" in state:
            self.gen.set_state(state["gen"])

    def __repr__(self) -> str:
        return (f"MDAKDMethod(teacher={self.teacher_path!r}, tap={self.tap!r}, distance={self.dist!r}, "
                f"weight={self.weight}, n_samples={self.n_samples}, teacher_audio={self.teacher_audio!r})")
