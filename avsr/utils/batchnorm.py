"""BatchNorm helper shared by training methods that run extra forwards of a model in training."""
from __future__ import annotations

import contextlib
from typing import Iterator

from torch import nn

__all__ = ["bn_no_update"]


@contextlib.contextmanager
def bn_no_update(model: nn.Module) -> Iterator[None]:
    """Inside: BatchNorm layers of ``model`` in training mode still use batch statistics, but their
    running statistics (and ``num_batches_tracked``) do not move (momentum 0, counter restored)."""
    saved = []
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training:
            nbt = m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None
            saved.append((m, m.momentum, nbt))
            m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum, nbt in saved:
            m.momentum = momentum
            if nbt is not None:
                m.num_batches_tracked.copy_(nbt)
