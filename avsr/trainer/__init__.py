"""Training: :class:`Trainer` / :class:`TrainerConfig` (:mod:`avsr.trainer.trainer`) and RNG
states for exact resume (:mod:`avsr.trainer.rng`).  Checkpoint I/O (:mod:`avsr.utils.checkpoint`)
and the training-method plug-in interface (:mod:`avsr.method`) live outside the trainer, so that
models, packing, inference and the robustness methods do not depend on it; their names are
re-exported here for training code."""
from avsr.method import TrainingMethod  # noqa: F401
from avsr.trainer.trainer import FitResult, Trainer, TrainerConfig, WarmupLR, noam_lr  # noqa: F401
from avsr.utils.checkpoint import (CheckpointError, PartialLoad, average_checkpoints,  # noqa: F401
                                   load_checkpoint, load_partial, save_checkpoint)

__all__ = ["CheckpointError", "FitResult", "PartialLoad", "Trainer", "TrainerConfig", "TrainingMethod",
           "WarmupLR", "average_checkpoints", "load_checkpoint", "load_partial", "noam_lr",
           "save_checkpoint"]
