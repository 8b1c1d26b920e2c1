"""Model configuration: one dataclass schema for every mode, loaded from YAML.

A YAML file (``conf/*.yaml``) has two top-level sections:

``model:``  the fields of :class:`ModelConfig` (unknown keys are an error)
``trainer:`` the fields of :class:`avsr.trainer.TrainerConfig` (the model ignores them)

``vocab_size`` is normally 0 in YAML and is filled in by the trainer from the token list
(``load_model_config(path, vocab_size=len(tokens))``).  :func:`load_model_config` is the one
YAML -> :class:`ModelConfig` parser (training, stats, packing and packed-model loading use it);
:func:`avsr.models.build_model_from_config` goes on to the model.  Token id conventions are ESPnet's:
``0 = <blank>``, ``vocab_size - 1 = <sos/eos>``, padding of targets ``-1`` (IGNORE_ID).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, List, Mapping, Optional, Tuple, Union

import yaml

from frontends.constants import (FBANK_HOP_LENGTH, FBANK_N_FFT, FBANK_N_MELS, FBANK_WIN_LENGTH,
                                 SAMPLE_RATE)

MODES = ("audio", "video", "audiovisual")
MERGES = ("bundle", "last")
ADAPTER_SCOPES = ("qkv", "all")
#: what a loaded ``model:`` mapping without these keys means (it was written before they existed)
LEGACY_DEFAULTS = {"merge": "last", "adapter_scope": "all"}


@dataclass
class ModelConfig:
    """All model hyper-parameters (see ``avsr/models/model.py`` for the architecture).

    mode                 ``audio`` (A0), ``video`` (V) or ``audiovisual`` (AV)
    vocab_size           number of output tokens incl. <blank> (id 0) and <sos/eos> (last id)
    d_model / heads / linear_units   width, attention heads and FFN width of every Conformer,
                         the cross-attention and the decoder
    fusion_layers (N)    dual cross-attention fusion layers (audio + visual Conformer each)
    visual_pre_blocks    visual-only Conformer blocks before fusion
    shared_layers (M)    shared Conformer layers after the merge FFN
    decoder_layers (K)   Transformer decoder layers
    cnn_module_kernel    Conformer depthwise-conv kernel
    merge                how the fusion layers' outputs enter the shared layers (``avsr/models/model.py``):
                         ``bundle`` (the paper's figure, the default of new configs): an FFN over the
                         visual bundle (the visual front-end output and every fusion layer's visual
                         output, each LayerNorm-ed, concatenated), added to the last audio output;
                         ``last`` (the ablation, and every config written before the key existed):
                         ``a_N + FFN([a_N; v_N])`` on the last fusion layer only
    merge_ffn_units      hidden width of the merge FFN, 0 = linear_units
    audio_subsampling    ``conv2d`` (ESPnet Conv2dSubsampling, 4x) or ``vgg`` (2 VGG blocks, 4x)
    visual_frontend      ``resnet18`` (Conv3D + ResNet-18) or ``light`` (small per-frame 2-D CNN)
    light_input_size     frames are resized (area) to this side before the light CNN
    light_channels       channels of the light CNN's stride-2 conv blocks
    video_mean/video_std pixel normalisation after /255 (lip-reading constants of Ma et al.,
                         0.421 / 0.165, as used in LRW / LRS3 recipes)
    fs, n_fft, win_length, hop_length, n_mels   fbank (Kaldi-like snip-edges framing, see AudioFrontend)
    specaug              apply SpecAug time masks in training; ``time_mask_width_range`` and
                         ``num_time_mask`` configure it (time masks only, as in the paper)
    num_freq_mask        > 0: also that many frequency masks (widths ``freq_mask_width_range`` mel bins,
                         ESPnet's ``MaskAlongAxis``), after the time masks; 0 (default) = the paper's form
    ctc_weight (lambda)  loss = lambda * CTC + (1 - lambda) * attention
    align_ctc_weight     > 0: an alignment CTC head next to the recognising one, trained with the encoder
                         with label priors (Huang et al. 2024: CTC on log p - alpha log P, P a running
                         mean of its posteriors, alpha = ``align_ctc_prior``), added to the loss with this
                         weight; forced alignment (timestamps) then uses it.  0 = none
    lsm_weight           label smoothing of the attention loss
    adapter_rank         MS-Adapter LoRA rank (0 = no adapters); ``adapter_alpha`` (0 = rank),
                         ``adapter_dropout``, ``adapter_targets`` (name prefixes of the adapted
                         modules: audio Conformers, shared Conformers, decoder layers),
                         ``adapter_scope``: ``qkv`` (the paper's figure, the default of new configs:
                         the query, key and value projections of their attention layers) or ``all``
                         (the ablation, and every config written before the key existed: every
                         ``nn.Linear`` under the targets)

    A ``model:`` mapping that lacks ``merge`` or ``adapter_scope`` was written before those keys
    existed (a packed model or a training ``config.yaml`` of an older version):
    :meth:`from_dict` (and so :func:`load_model_config`) reads it as :data:`LEGACY_DEFAULTS`
    (``merge: last``, ``adapter_scope: all``), the form it was trained with.  The dataclass
    defaults (``ModelConfig()``) and every ``conf/*.yaml`` are the paper's form, and every config
    the toolkit writes (``to_dict``: the trainer's ``config.yaml``, packed models) carries both keys.
    """
    mode: str = "audiovisual"
    vocab_size: int = 0
    d_model: int = 256
    heads: int = 4
    linear_units: int = 1024
    fusion_layers: int = 2
    visual_pre_blocks: int = 1
    shared_layers: int = 2
    decoder_layers: int = 2
    decoder_linear_units: int = 0  # 0 = linear_units
    cnn_module_kernel: int = 15
    dropout_rate: float = 0.1
    positional_dropout_rate: float = 0.1
    attention_dropout_rate: float = 0.0
    merge: str = "bundle"
    merge_ffn_units: int = 0
    # audio front-end
    fs: int = SAMPLE_RATE
    n_fft: int = FBANK_N_FFT
    win_length: int = FBANK_WIN_LENGTH
    hop_length: int = FBANK_HOP_LENGTH
    n_mels: int = FBANK_N_MELS
    audio_subsampling: str = "conv2d"
    vgg_channels: List[int] = field(default_factory=lambda: [32, 64])
    specaug: bool = True
    time_mask_width_range: List[int] = field(default_factory=lambda: [0, 40])
    num_time_mask: int = 2
    num_freq_mask: int = 0
    freq_mask_width_range: List[int] = field(default_factory=lambda: [0, 27])
    # visual front-end
    visual_frontend: str = "light"
    light_input_size: int = 44
    light_channels: List[int] = field(default_factory=lambda: [16, 32, 64, 64])
    video_mean: float = 0.421
    video_std: float = 0.165
    # loss
    ctc_weight: float = 0.3
    align_ctc_weight: float = 0.0
    align_ctc_prior: float = 0.3
    lsm_weight: float = 0.1
    # MS-Adapter (LoRA); used on the audio-only path of an AV model
    adapter_rank: int = 0
    adapter_alpha: float = 0.0
    adapter_dropout: float = 0.0
    adapter_targets: List[str] = field(default_factory=lambda: ["audio_encoder.encoders.",
                                                                "shared_encoder.encoders.",
                                                                "decoder.decoders."])
    adapter_scope: str = "qkv"

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.audio_subsampling not in ("conv2d", "vgg"):
            raise ValueError(f"audio_subsampling must be conv2d or vgg, got {self.audio_subsampling!r}")
        if self.visual_frontend not in ("resnet18", "light"):
            raise ValueError(f"visual_frontend must be resnet18 or light, got {self.visual_frontend!r}")
        if not 0.0 <= self.ctc_weight <= 1.0:
            raise ValueError("ctc_weight must be in [0, 1]")
        if not (self.align_ctc_weight >= 0.0 and self.align_ctc_prior >= 0.0):
            raise ValueError(f"align_ctc_weight and align_ctc_prior must be >= 0, got {self.align_ctc_weight}, "
                             f"{self.align_ctc_prior}")
        if self.d_model % self.heads:
            raise ValueError("d_model must be divisible by heads")
        if self.merge not in MERGES:
            raise ValueError(f"merge must be one of {MERGES}, got {self.merge!r}")
        if self.adapter_scope not in ADAPTER_SCOPES:
            raise ValueError(f"adapter_scope must be one of {ADAPTER_SCOPES}, got {self.adapter_scope!r}")

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        """From a ``model:`` mapping; a key it lacks takes the dataclass default, except the keys of
        :data:`LEGACY_DEFAULTS` (a mapping without them predates them: ``merge: last``,
        ``adapter_scope: all``)."""
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**{**LEGACY_DEFAULTS, **d})

    def to_dict(self) -> dict:
        return asdict(self)

    def replace(self, **kw) -> "ModelConfig":
        d = self.to_dict()
        d.update(kw)
        return ModelConfig.from_dict(d)


def read_config(path: Union[str, Path]) -> dict:
    """The parsed YAML file (a mapping; ``{}`` for an empty file), e.g. a training exp dir's
    ``config.yaml`` whose ``data:`` section a tool needs besides the model."""
    with open(path, encoding="utf-8") as f:
        d = yaml.safe_load(f) or {}
    if not isinstance(d, dict):
        raise ValueError(f"{path}: top level must be a mapping")
    return d


ConfigSource = Union[str, Path, Mapping[str, Any], ModelConfig]


def load_model_config(source: ConfigSource, **overrides) -> ModelConfig:
    """The one YAML -> :class:`ModelConfig` function, with keyword overrides.

    ``source``: a YAML file path (its ``model:`` section is used: a training ``conf/*.yaml``,
    a training exp dir's ``config.yaml`` or a packed dir's ``config.yaml``); a parsed YAML
    mapping with a ``model:`` section; a mapping of the ``model:`` section itself (it has no
    ``model`` key, which is not a field of :class:`ModelConfig`); or a :class:`ModelConfig`.
    Unknown keys are an error; a mapping without ``merge`` / ``adapter_scope`` is read as
    :data:`LEGACY_DEFAULTS` (``merge: last``, ``adapter_scope: all``; see :class:`ModelConfig`).
    """
    if isinstance(source, ModelConfig):
        d = source.to_dict()
    elif isinstance(source, Mapping):
        d = dict(source["model"] or {}) if "model" in source else dict(source)
    else:
        d = dict(read_config(source).get("model") or {})
    d.update(overrides)
    return ModelConfig.from_dict(d)


#: the former name of :func:`load_model_config`
load_config = load_model_config
