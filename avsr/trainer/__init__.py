"""Training: :class:`Trainer` / :class:`TrainerConfig` (:mod:`avsr.trainer.trainer`), checkpoint
I/O (:mod:`avsr.trainer.checkpoint`) and the training-method plug-in interface
(:mod:`avsr.trainer.method`)."""
from avsr.trainer.checkpoint import (CheckpointError, PartialLoad, average_checkpoints,  # noqa: F401
                                     load_checkpoint, load_partial, save_checkpoint)
from avsr.trainer.method import TrainingMethod  # noqa: F401
from avsr.trainer.trainer import FitResult, Trainer, TrainerConfig, WarmupLR, noam_lr  # noqa: F401

__all__ = ["CheckpointError", "FitResult", "PartialLoad", "Trainer", "TrainerConfig", "TrainingMethod",
           "WarmupLR", "average_checkpoints", "load_checkpoint", "load_partial", "noam_lr",
           "save_checkpoint"]
