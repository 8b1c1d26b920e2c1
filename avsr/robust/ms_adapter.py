"""MS-Adapter training (Dai et al., CVPR 2024): LoRA adapters on the audio Conformers, the shared
Conformers and the decoder of an AV model, trained with the base frozen on audio-only input.

The student model must be built with ``model.adapter_rank > 0`` (e.g. ``--set model.adapter_rank=8``)
and initialised from the robust AV model (``--init``): the base weights are then exactly those of
that model, and only ``adapters.*`` are trained.  Every batch loses its video, and the model runs
its audio-only path (no visual branch, no cross-attention, no merge-FFN term) with the adapters on.
BatchNorm layers of the frozen base stay in eval mode (the trainer keeps every BatchNorm whose
parameters are frozen in eval mode), so the base (and thus the AV path) does not change at all.
At inference :class:`avsr.inference.Speech2Text` switches the adapters on for the utterances routed
to the audio-only path (no video, or present frames <= a threshold).
"""
from __future__ import annotations

from typing import Any, Dict

from avsr.method import TrainingMethod

__all__ = ["MSAdapterMethod"]


class MSAdapterMethod(TrainingMethod):
    name = "ms_adapter"

    def setup(self, trainer) -> None:
        model = trainer.model
        if getattr(model, "adapters", None) is None:
            raise ValueError("MS-Adapter training needs a model built with adapter_rank > 0 "
                             "(e.g. --set model.adapter_rank=8)")
        if model.cfg.mode != "audiovisual":
            raise ValueError("MS-Adapter adapts an audio-visual model (mode audiovisual)")
        n_base = n_ad = 0
        for name, p in model.named_parameters():
            train = name.startswith("adapters.")
            p.requires_grad_(train)
            if train:
                n_ad += p.numel()
            else:
                n_base += p.numel()
        self.counts = {"adapter_parameters": n_ad, "base_parameters": n_base}

    def transform_batch(self, batch, train: bool):
        return batch.replace(video=None, video_lens=None, frame_mask=None)

    def forward_kwargs(self, batch) -> Dict[str, Any]:
        return {"modality": "audio"}

    def __repr__(self) -> str:
        return f"MSAdapterMethod({getattr(self, 'counts', {})})"
