"""The one plug-in interface for training methods (:class:`TrainingMethod`).

It lives outside :mod:`avsr.trainer` so that methods (:mod:`avsr.robust`) depend on this
interface only, never on the trainer; :class:`avsr.trainer.Trainer` calls the hooks.

A *training method* changes how the model is trained without touching the trainer: frame
dropout, knowledge distillation from a frozen teacher, modality dropout, gradient
modulation, auxiliary losses on intermediate representations, ...  A method subclasses
:class:`TrainingMethod` and overrides only the hooks it needs.  ``Trainer(...,
methods=[m1, m2])`` applies several methods **in list order**.

Hooks (all optional)
--------------------
``setup(trainer)``
    Called once by ``Trainer.__init__``, after the model was moved to its device and
    **before** the optimiser is built and the model is wrapped in DDP.  A method may read
    ``trainer.train_set`` (dataset-level statistics, e.g.
    :func:`avsr.data.dataset.dataset_video_mean`), ``trainer.config``, ``trainer.device``,
    ``trainer.rank`` / ``trainer.world_size``; register frozen models with
    ``trainer.register_frozen(name, module)`` (moved to the device, ``eval()`` mode,
    ``requires_grad_(False)``, never in the optimiser, never in the student's
    checkpoints - the method reloads it in ``setup``); register extra trainable modules of its
    own (e.g. an auxiliary head) with ``trainer.register_trainable(name, module)`` (moved to the
    device, optimised with the model's parameters - same learning rate, schedule and clipping -,
    gradients averaged over DDP ranks, ``train()``/``eval()`` with the model, saved in the training
    state ``checkpoint.pth`` and restored on resume, but never in the model files: the epoch
    snapshots, the averaged ``model.pth`` and packs hold the model alone); and register gradient hooks with
    ``trainer.register_grad_hook(module_name, fn)`` (``module_name`` is a dotted name in
    the *unwrapped* model, ``""`` = the whole model; ``fn(param_name, grad) -> grad or None``
    is called on the gradient of every parameter of that module, on every backward pass;
    ``kind="output"`` registers ``fn(module, grad_input, grad_output)`` as a full backward
    hook on the module instead).
``transform_batch(batch, train) -> batch``
    Change the inputs.  Called on the CPU batch before it is moved to the device, for
    training (``train=True``) and validation (``train=False``) batches, methods in order.
    Return a new :class:`~avsr.data.batch.Batch` (``batch.replace(...)``); do not modify
    the input in place.
``extra_losses(batch, out, model) -> dict[str, Tensor]``
    Extra loss terms from the model output (``out.taps``: name -> ``[B, T, D]`` plus
    ``"lens"``), the batch, and e.g. a teacher.  They are **added** (unweighted - weight
    them yourself) to ``out.loss``; each is logged under its name (names must be unique
    across methods).  ``model`` is the unwrapped model.  Computed in training and in
    validation (validation reports them but ``loss`` stays the model's own loss).
``extra_stats(batch, out, model) -> dict[str, float]``
    Diagnostics that are **not** part of the loss (e.g. balance weights, an unweighted auxiliary
    loss, the share of dropped frames): scalars (floats or 0-dim tensors) logged like the loss terms
    - in every ``log_interval`` line, the epoch's train means, the validation stats and
    ``history`` - under their names (unique across methods and the model's stats).  Called on every
    forward of :meth:`Trainer.forward_loss`, in training and validation, after every method's
    ``extra_losses`` of the same forward, so a method may report what its ``extra_losses``
    computed.  A value never reaches the loss or the gradients.
``forward_kwargs(batch) -> dict``
    Keyword arguments for the model's forward (e.g. ``{"modality": "audio"}`` for an
    audio-only method), merged in method order for training *and* validation forwards;
    arguments given to ``trainer.forward_loss`` explicitly win.
``train_step(trainer, batch) -> dict[str, float]``
    Owns one training micro-step (the batch is already transformed and on the device).
    The default (:meth:`TrainingMethod.train_step`) is ``trainer.default_train_step(batch)``:
    forward, model loss + extra losses, backward of ``loss / trainer.accum_scale`` (the
    number of micro-batches in this accumulation group; AMP-aware; forward and backward
    inside ``trainer.no_sync()`` so DDP all-reduces only on update steps), and on the last micro-step of
    an accumulation group ``trainer.optimizer_step()`` (unscale, clip, step, scheduler,
    zero-grad).  **At most one** method may override it.  Building blocks for an override:
    ``trainer.forward_loss(batch, **model_kwargs) -> (loss, out, stats)``,
    ``trainer.backward(loss)``, ``trainer.is_update_step`` (bool),
    ``trainer.accum_scale`` (micro-batches in this accumulation group),
    ``trainer.no_sync()`` (context), ``trainer.optimizer_step() -> stats``.
``on_epoch_start(trainer, epoch)`` / ``on_step_end(trainer, stats)`` / ``on_epoch_end(trainer, epoch, valid_stats)``
    Bookkeeping; ``on_step_end`` runs after every optimiser update (before a step
    checkpoint is written, so state updated there is saved).
``state_dict() -> dict`` / ``load_state_dict(state)``
    Saved in every trainer checkpoint (per DDP rank) and restored on resume.  Values must
    be tensors or plain Python types (checkpoints are loaded with ``weights_only=True``).

Example
-------
A distillation method with a frozen teacher, a loss on a named tap and a gradient hook::

    import torch
    from avsr.method import TrainingMethod

    class Distill(TrainingMethod):
        name = "distill"

        def __init__(self, teacher_ckpt, weight=0.5, tap="fused"):
            self.teacher_ckpt, self.weight, self.tap = teacher_ckpt, weight, tap

        def setup(self, trainer):
            teacher = build_teacher()                       # any nn.Module
            load_partial(teacher, self.teacher_ckpt)        # avsr.utils.checkpoint
            self.teacher = trainer.register_frozen("teacher", teacher)
            # halve the gradients reaching the visual front-end
            trainer.register_grad_hook("visual_frontend", lambda name, g: 0.5 * g)

        def extra_losses(self, batch, out, model):
            with torch.no_grad():
                t = self.teacher(batch).taps[self.tap]
            s = out.taps[self.tap]
            return {"loss_kd": self.weight * torch.nn.functional.mse_loss(s, t)}

    trainer = Trainer(model, train_set, valid_set, config,
                      methods=[FrameDropoutMethod(d_prob=0.5), Distill("teacher.pth")],
                      exp_dir="exp/avsr_kd")
    trainer.fit()

An override of the step, e.g. alternating audio-only and video-only updates::

    class Alternate(TrainingMethod):
        def train_step(self, trainer, batch):
            modality = ("audio", "video")[trainer.step % 2]
            with trainer.no_sync():      # DDP: skip the all-reduce unless this is an update step
                loss, out, stats = trainer.forward_loss(batch, modality=modality)
                trainer.backward(loss / trainer.accum_scale)
            if trainer.is_update_step:
                stats.update(trainer.optimizer_step())
            return stats
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Protocol, runtime_checkable

import torch

if TYPE_CHECKING:  # pragma: no cover
    from avsr.data.batch import Batch
    from avsr.trainer.trainer import Trainer

__all__ = ["TrainingMethod", "ModelOutputLike", "TrainableModel"]


@runtime_checkable
class ModelOutputLike(Protocol):
    """What the trainer needs from ``model(batch)``: ``loss`` (scalar tensor), ``taps``
    (dict name -> tensor), and optionally ``stats`` (dict name -> float, or a property)."""
    loss: torch.Tensor
    taps: Dict[str, torch.Tensor]


class TrainableModel(Protocol):
    def __call__(self, batch: "Batch", **kwargs: Any) -> ModelOutputLike: ...


class TrainingMethod:
    """Base class of training methods; every hook is a no-op (see the module docstring)."""

    #: name used in logs and in checkpoints (default: the class name)
    name: Optional[str] = None

    def method_name(self) -> str:
        return self.name or type(self).__name__

    def setup(self, trainer: "Trainer") -> None:
        pass

    def transform_batch(self, batch: "Batch", train: bool) -> "Batch":
        return batch

    def extra_losses(self, batch: "Batch", out: Any, model: torch.nn.Module) -> Dict[str, torch.Tensor]:
        return {}

    def extra_stats(self, batch: "Batch", out: Any, model: torch.nn.Module) -> Dict[str, Any]:
        return {}

    def forward_kwargs(self, batch: "Batch") -> Dict[str, Any]:
        return {}

    def train_step(self, trainer: "Trainer", batch: "Batch") -> Dict[str, float]:
        return trainer.default_train_step(batch)

    def on_epoch_start(self, trainer: "Trainer", epoch: int) -> None:
        pass

    def on_step_end(self, trainer: "Trainer", stats: Dict[str, float]) -> None:
        pass

    def on_epoch_end(self, trainer: "Trainer", epoch: int, valid_stats: Dict[str, float]) -> None:
        pass

    def state_dict(self) -> Dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass

    def overrides_train_step(self) -> bool:
        return type(self).train_step is not TrainingMethod.train_step

    def __repr__(self) -> str:
        return f"{self.method_name()}()"
