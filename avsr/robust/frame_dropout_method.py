"""Frame dropout as a training method (:class:`avsr.trainer.method.TrainingMethod`).

Wraps :class:`avsr.robust.missing_video.FrameDropout`: during training each sample gets,
with probability ``d_prob``, black frames at a fixed rate or one drawn from ``(lo, hi]``
in ``pattern`` (see :mod:`avsr.robust.missing_video`).  Validation batches are left
untouched unless ``on_valid=True`` (then the same object draws drops for them too).  The
generator state is saved in trainer checkpoints, so a resumed run draws the same drops.

Under DDP (``trainer.world_size > 1``) each rank re-seeds its generator with
``stable_seed(seed, "rank", rank)`` at ``setup`` so ranks draw different drops.

Example::

    from avsr.robust.frame_dropout_method import FrameDropoutMethod
    Trainer(model, train_set, valid_set, cfg, methods=[FrameDropoutMethod(d_prob=0.5)], exp_dir=...)
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Sequence, Tuple, Union

from avsr.robust.missing_video import FrameDropout, stable_seed
from avsr.trainer.method import TrainingMethod

__all__ = ["FrameDropoutMethod"]


class FrameDropoutMethod(TrainingMethod):
    name = "frame_dropout"

    def __init__(self, rate: Union[float, Tuple[float, float]] = (0.0, 1.0), d_prob: float = 0.5,
                 pattern: Union[str, Sequence[str]] = "random", seed: int = 0, on_valid: bool = False):
        self.kw = dict(rate=rate, d_prob=d_prob, pattern=pattern)
        self.seed = int(seed)
        self.on_valid = bool(on_valid)
        self.dropout = FrameDropout(seed=self.seed, **self.kw)

    def setup(self, trainer) -> None:
        if getattr(trainer, "world_size", 1) > 1:
            self.dropout = FrameDropout(seed=stable_seed(self.seed, "rank", trainer.rank) % 2 ** 63, **self.kw)

    def transform_batch(self, batch, train: bool):
        if train or self.on_valid:
            return self.dropout(batch)
        return batch

    def state_dict(self) -> Dict[str, Any]:
        return self.dropout.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.dropout.load_state_dict(dict(state))

    def __repr__(self) -> str:
        return f"FrameDropoutMethod({self.dropout!r}, on_valid={self.on_valid})"
