"""Low-rank adapters (LoRA) on chosen ``nn.Linear`` layers, switchable at run time (MS-Adapter).

``Adapters(model, rank, alpha, dropout, targets, layers)`` attaches one :class:`LoRA` to every
``nn.Linear`` whose qualified name starts with one of ``targets`` (default: the audio Conformers,
the shared Conformers and the decoder layers) and, when ``layers`` is given, whose own name (the
last part of the qualified name) is one of ``layers``: :data:`QKV_LAYERS` (``linear_q``,
``linear_k``, ``linear_v``: the query, key and value projections of ESPnet's attention layers, the
self-attention of the Conformers and the self- and source-attention of the decoder layers) is the
paper's figure (``W_{K,Q,V}``, the model's ``adapter_scope: qkv``); ``None`` adapts every Linear
under the targets (``adapter_scope: all``: also the output and positional projections, the
feed-forward layers).  The hook adds
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
from typing import Dict, Iterator, Mapping, Optional, Sequence

import torch
from torch import nn

__all__ = ["LoRA", "Adapters", "DEFAULT_TARGETS", "QKV_LAYERS", "identity_adapter_state"]

DEFAULT_TARGETS = ("audio_encoder.encoders.", "shared_encoder.encoders.", "decoder.decoders.")
#: the layer names of the query, key and value projections (ESPnet ``MultiHeadedAttention``)
QKV_LAYERS = ("linear_q", "linear_k", "linear_v")


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
                 targets: Sequence[str] = DEFAULT_TARGETS, layers: Optional[Sequence[str]] = None):
        super().__init__()
        self.active = False
        self.loras = nn.ModuleDict()
        alpha = float(alpha) if alpha else float(rank)
        for name, mod in model.named_modules():
            if (isinstance(mod, nn.Linear) and name.startswith(tuple(targets))
                    and (layers is None or name.rsplit(".", 1)[-1] in tuple(layers))):
                key = name.replace(".", "__")
                self.loras[key] = LoRA(mod.in_features, mod.out_features, rank, alpha, dropout)
                mod.register_forward_hook(_Hook(self, key))
        if not len(self.loras):
            raise ValueError(f"no nn.Linear layer matches the adapter targets {tuple(targets)}"
                             + (f" and layers {tuple(layers)}" if layers is not None else ""))

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


def identity_adapter_state(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """A copy of a model state dict whose adapters compute nothing: every LoRA ``B`` (``adapters.
    loras.<layer>.B``) set to 0, every other tensor unchanged.  A model with these weights, routed
    to the audio-only path with the adapters "on", computes exactly the base model's audio-only
    path: the row spec's decode-only row ``AV6-noadapter`` (the adapters' own gain)."""
    out = {}
    for k, v in state.items():
        out[k] = torch.zeros_like(v) if k.startswith("adapters.loras.") and k.endswith(".B") else v
    return out
