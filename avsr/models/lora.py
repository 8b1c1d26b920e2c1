"""Low-rank adapters (LoRA) on chosen ``nn.Linear`` layers, switchable at run time (MS-Adapter).

``Adapters(model, rank, alpha, dropout, targets)`` attaches one :class:`LoRA` to every
``nn.Linear`` whose qualified name starts with one of ``targets`` (default: the audio Conformers,
the shared Conformers and the decoder layers), through a forward hook that adds
``scale * B(A(dropout(x)))`` to the layer's output while ``adapters.active`` is True.  The base
layers are untouched (same parameter names, so checkpoints without adapters load unchanged) and
``B`` is zero-initialised, so adapters start as the identity.  Adapter parameters live under
``adapters.loras.<layer name with "." -> "__">.{A,B}``.

The hooks are small objects (not closures), so ``copy.deepcopy(model)`` gives a copy whose hooks
use the copy's adapters.
"""
from __future__ import annotations

import contextlib
import math
from typing import Iterator, Sequence

import torch
from torch import nn

__all__ = ["LoRA", "Adapters", "DEFAULT_TARGETS"]

DEFAULT_TARGETS = ("audio_encoder.encoders.", "shared_encoder.encoders.", "decoder.decoders.")


class LoRA(nn.Module):
    def __init__(self, in_features: int, out_features: int, rank: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        self.A = nn.Parameter(torch.empty(rank, in_features))
        self.B = nn.Parameter(torch.zeros(out_features, rank))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        self.scale = float(alpha) / rank
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.drop(x) @ self.A.t() @ self.B.t()) * self.scale


class _Hook:
    def __init__(self, owner: "Adapters", key: str):
        self.owner, self.key = owner, key

    def __call__(self, module, inputs, output):
        if not self.owner.active:
            return None
        return output + self.owner.loras[self.key](inputs[0])


class Adapters(nn.Module):
    def __init__(self, model: nn.Module, rank: int, alpha: float = 0.0, dropout: float = 0.0,
                 targets: Sequence[str] = DEFAULT_TARGETS):
        super().__init__()
        self.active = False
        self.loras = nn.ModuleDict()
        alpha = float(alpha) if alpha else float(rank)
        for name, mod in model.named_modules():
            if isinstance(mod, nn.Linear) and name.startswith(tuple(targets)):
                key = name.replace(".", "__")
                self.loras[key] = LoRA(mod.in_features, mod.out_features, rank, alpha, dropout)
                mod.register_forward_hook(_Hook(self, key))
        if not len(self.loras):
            raise ValueError(f"no nn.Linear layer matches the adapter targets {tuple(targets)}")

    @contextlib.contextmanager
    def switch(self, on: bool) -> Iterator[None]:
        old = self.active
        self.active = bool(on)
        try:
            yield
        finally:
            self.active = old

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
