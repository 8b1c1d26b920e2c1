"""The one typed batch that the model, the trainer, the training methods and decoding exchange."""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import List, Optional

import torch

IGNORE_ID = -1  # padding value of ``tokens`` (ESPnet convention)


@dataclass
class Batch:
    """A padded mini-batch.

    audio       float32 [B, N]   16 kHz waveform, zero-padded (the model computes fbank itself)
    audio_lens  int64   [B]      samples
    video       uint8   [B, T, H, W]  lip ROIs at 25 fps (88x88 after the crop); a dropped or
                                 missing frame is a black frame (0) - pixel value before normalisation
    video_lens  int64   [B]      frames
    frame_mask  bool    [B, T]   True where the frame is real (present and not dropped). Recorded for
                                 evaluation and mask-aware variants; by default the model does not see it.
    tokens      int64   [B, L]   target token ids, padded with IGNORE_ID (-1); may be None at inference
    token_lens  int64   [B]
    """
    utt_ids: List[str]
    audio: Optional[torch.Tensor] = None
    audio_lens: Optional[torch.Tensor] = None
    video: Optional[torch.Tensor] = None
    video_lens: Optional[torch.Tensor] = None
    frame_mask: Optional[torch.Tensor] = None
    tokens: Optional[torch.Tensor] = None
    token_lens: Optional[torch.Tensor] = None
    extras: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.utt_ids)

    def to(self, device) -> "Batch":
        kw = {f.name: (getattr(self, f.name).to(device) if isinstance(getattr(self, f.name), torch.Tensor)
                       else getattr(self, f.name)) for f in fields(self)}
        return Batch(**kw)

    def replace(self, **kw) -> "Batch":
        return replace(self, **kw)
