"""The audio-visual speech recognition model of Dai et al. (CVPR 2024), built from ESPnet blocks.

Architecture (``d = d_model``, all Conformers are ESPnet ``EncoderLayer``: macaron FFN, rel-pos
self-attention (``rel_pos_type="latest"``), conv module, pre-LayerNorm, swish)::

    audio:  wav -> AudioFrontend (fbank, global MVN, SpecAug time masks)
                -> Conv2dSubsampling 4x (or VGG 4x) + RelPositionalEncoding    [25 frames/s]
    video:  uint8 ROIs -> ResNet18Frontend | LightFrontend -> RelPositionalEncoding
                -> ``visual_pre_blocks`` visual-only Conformers
    fusion layer i = 0..N-1  (both cross-attentions read the layer's *inputs* a, v):
            a' = a + CA_a2v(LN(a), LN(v))     key padding mask of v
            v' = v + CA_v2a(LN(v), LN(a))     key padding mask of a
            a  = AudioConformer_i(a');  v = VisualConformer_i(v')
            taps ``fusion{i}.audio`` / ``fusion{i}.visual`` = a / v (before the final LayerNorm)
    merge (``cfg.merge``), a_n = LN_a(a_N) (the audio stack's ``after_norm``):
      ``bundle`` (default; the paper's figure: an FFN takes the visual front-end output and every
            fusion layer's visual output, and its output is added to the last audio output):
            bundle = [LN_0(v_0); LN_1(v_1); ...; LN_{N-1}(v_{N-1}); LN_v(v_N)]   [B, T, (N+1) d]
            with v_0 the visual front-end output (before the positional scaling and the
            ``visual_pre_blocks``), v_i the output of fusion layer i's visual Conformer,
            LN_0..LN_{N-1} own LayerNorms (``merge_norms``), LN_v the visual stack's ``after_norm``;
            fused = a_n + FFN(bundle)                tap ``visual_bundle`` = bundle
      ``last`` (ablation; every config written before ``merge`` existed):
            fused = a_n + FFN([a_n; LN_v(v_N)])      tap ``visual_bundle`` = LN_v(v_N)
            tap ``fused`` (input of the shared layers); ``visual_bundle`` is the visual input of the FFN
    shared: M Conformers + LayerNorm -> enc_out      tap ``shared_out``
    heads:  ESPnet CTC (linear) and a K-layer ESPnet TransformerDecoder;
            loss = ctc_weight * CTC + (1 - ctc_weight) * label-smoothed attention loss;
            optional (``align_ctc_weight`` > 0, not in the paper): + align_ctc_weight * an alignment
            CTC head with label priors, which forced alignment reads (timestamps).

Implementation notes / design choices
- Each stack is an ESPnet ``ConformerEncoder``: ``audio_encoder`` (input_layer conv2d, N blocks),
  ``visual_encoder`` (input_layer None, ``visual_pre_blocks + N`` blocks; the first
  ``visual_pre_blocks`` are the visual-only blocks), ``shared_encoder`` (input_layer None, M blocks).
  We call ``.embed`` once per stream (so ``RelPositionalEncoding`` scales by sqrt(d) once), drive
  the ``.encoders`` with ``(x, pos_emb)`` tuples ourselves and finish with ``.after_norm``.  The
  shared layers reuse the positional embedding of the stream that feeds them (audio in ``audio``
  and ``audiovisual`` modes, visual in ``video`` mode); ``shared_encoder.embed`` is never called.
- Audio lengths after Conv2dSubsampling are computed exactly as ``((F - 1)//2 - 1)//2`` (ESPnet's
  subsampled mask counts up to 2 extra frames for shorter utterances of a padded batch).
- Padding: the ESPnet Conformer conv module does not mask padded frames, so its depthwise conv
  would leak padding into valid frames.  Every conv module is switched to
  :class:`MaskedConvolutionModule` (a subclass, same parameters/names) that zeroes padded frames
  before the depthwise conv.  With snip-edges fbank and masked visual front-ends the encoder output
  of an utterance does not depend on batch padding (tested to 1e-5 in eval mode).
- Cross-attention: ESPnet ``MultiHeadedAttention`` with LayerNorms on query and key/value, dropout
  on the output, output projection (``attn.linear_out``) zero-initialised.  The merge FFN is
  Linear(k d, merge_ffn_units) + Swish + Dropout + Linear(merge_ffn_units, d) with k = N + 1
  (``bundle``) or 2 (``last``), last Linear zero-initialised.  Hence an AV model initialised from
  an A0 model computes exactly the A0 function at step 0.  At step 0 only CA_a2v's output
  projection and the FFN's last Linear get non-zero gradients; everything upstream of a zero
  projection (the whole visual branch, the CA q/k/v, the FFN's first Linear and the bundle's
  LayerNorms, and CA_v2a's output projection, whose output reaches the loss only through the
  visual stream) gets an exactly zero gradient until those layers move (visual branch from
  step 1 on).
- Parameters of the merge: ``bundle`` has (N + 1) d inputs to the FFN's first Linear where
  ``last`` has 2 d (the same for N = 1; demo, N = 2: +0.08 M of 5.7 M; mini, N = 3: +0.3 M of
  12 M; full, N = 12: +11.5 M of 262 M), plus N LayerNorms.  The merge parameters are
  ``merge_ffn.*`` and ``merge_norms.*`` (part ``merge``); neither exists in A0 or V.
- Audio features for a teacher: in training the taps also carry ``audio_feats`` (the normalised
  fbank after SpecAug, [B, F, n_mels]), ``audio_feat_lens`` and ``specaug_mask`` (bool [B, F],
  True = frame masked); ``encode(batch, front={"feats": (audio_feats, audio_feat_lens)})`` runs
  a model on exactly those features (MDA-KD's teacher gets the student's augmented audio so).
- Length rule (AV): the audio length after 4x subsampling is the reference.  The video of each
  utterance is cut to it, or padded with black frames (uint8 0) up to it; frames beyond the
  reconciled length are padding.  With ``center=False`` fbank, ``T_a = ((F-1)//2 - 1)//2`` with
  ``F = 1 + (N-512)//160``, i.e. about 2 frames shorter than the 25 fps video of the same span,
  e.g. 4 s = 64000 samples -> 397 fbank frames -> 98 audio frames vs 100 video frames: the last
  2 video frames are cut.  Audio frame t (centre ~40 t + 46 ms) and video frame t (40 t ms) are
  paired as they are; the ~1-frame offset is left to the model.
- Modes.  ``audio`` (A0): only the audio front-end, audio Conformers, shared layers, CTC and decoder
  are *built* (same names/shapes as in AV).  ``video`` (V): the audio side (audio front-end, audio
  Conformers, cross-attention, merge FFN) is not built; the visual Conformers of the fusion layers
  run without cross-attention, ``fused = LN_v(v)``, then the same shared layers/decoder; lengths
  are the video lengths.  ``audiovisual``: everything.  An AV model can be run in a forced
  modality: ``model(batch, modality="audio")`` skips the visual branch, the cross-attention and the
  FFN term entirely (MS-Adapter path; those parameters get grad None); ``modality="video"`` runs
  the V path.  A0 / V checkpoints initialise an AV model through :func:`load_partial`.
- The ``frame_mask`` of the batch is not used by the model (black frames are simply input).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

import torch
from torch import nn

from espnet.nets.pytorch_backend.conformer.convolution import ConvolutionModule
from espnet.nets.pytorch_backend.nets_utils import make_pad_mask, th_accuracy
from espnet.nets.pytorch_backend.transformer.add_sos_eos import add_sos_eos
from espnet.nets.pytorch_backend.transformer.attention import MultiHeadedAttention
from espnet.nets.pytorch_backend.transformer.label_smoothing_loss import LabelSmoothingLoss
from espnet.nets.pytorch_backend.transformer.layer_norm import LayerNorm
from espnet2.asr.ctc import CTC
from espnet2.asr.decoder.transformer_decoder import TransformerDecoder
from espnet2.asr.encoder.conformer_encoder import ConformerEncoder

from avsr.data.batch import IGNORE_ID, Batch
from avsr.models.config import ConfigSource, ModelConfig, load_model_config
from avsr.models.front_nets import (AudioFrontend, LightFrontend, ResNet18Frontend, VGGSubsampling,
                                    compute_feature_stats)

# parameter-name prefixes of the model's parts
AUDIO_PREFIXES = ("audio_frontend.", "audio_vgg.", "audio_encoder.")
VISUAL_PREFIXES = ("visual_frontend.", "visual_encoder.")
CROSS_PREFIXES = ("cross_a2v.", "cross_v2a.")
MERGE_PREFIXES = ("merge_ffn.", "merge_norms.")
BACKEND_PREFIXES = ("shared_encoder.", "ctc.", "decoder.")
ADAPTER_PREFIXES = ("adapters.",)


class MaskedConvolutionModule(ConvolutionModule):
    """ESPnet Conformer conv module that zeroes padded frames before the depthwise conv.

    The owner sets ``self.pad_mask`` (bool [B, T], True = valid) before calling the layer."""

    pad_mask: Optional[torch.Tensor] = None

    def forward(self, x):
        x = x.transpose(1, 2)
        x = nn.functional.glu(self.pointwise_conv1(x), dim=1)
        if self.pad_mask is not None and self.pad_mask.size(-1) == x.size(-1):
            x = x * self.pad_mask[:, None, :].to(x.dtype)
        x = self.depthwise_conv(x)
        x = self.activation(self.norm(x))
        x = self.pointwise_conv2(x)
        return x.transpose(1, 2)


class CrossAttention(nn.Module):
    """Returns ``Dropout(MHA(LN(q), LN(kv), LN(kv), kv_mask))`` (the residual *increment*)."""

    def __init__(self, d: int, heads: int, attention_dropout: float, dropout: float):
        super().__init__()
        self.norm_q = LayerNorm(d)
        self.norm_kv = LayerNorm(d)
        self.attn = MultiHeadedAttention(heads, d, attention_dropout)
        self.dropout = nn.Dropout(dropout)
        nn.init.zeros_(self.attn.linear_out.weight)
        nn.init.zeros_(self.attn.linear_out.bias)

    def forward(self, q: torch.Tensor, kv: torch.Tensor, kv_mask: torch.Tensor) -> torch.Tensor:
        kv = self.norm_kv(kv)
        return self.dropout(self.attn(self.norm_q(q), kv, kv, kv_mask))


@dataclass
class ModelOutput:
    """What ``AVSRModel.forward`` returns.

    loss / loss_ctc / loss_att  scalars (None when the term is off, loss None without tokens)
    acc        decoder token accuracy (float, None without decoder loss)
    taps       dict name -> tensor [B, T, d]: ``fusion{i}.audio``, ``fusion{i}.visual``, ``fused``,
               ``shared_out``, ``visual_bundle`` ([B, T, (N+1) d] with ``merge: bundle``, audiovisual
               only), plus ``lens`` (int64 [B]) and ``mask`` (bool [B, T], True = valid), and with audio
               ``audio_feats`` ([B, F, n_mels]), ``audio_feat_lens`` and ``specaug_mask`` ([B, F])
    enc_out / enc_lens  encoder output (= ``shared_out``) and lengths
    """
    loss: Optional[torch.Tensor]
    loss_ctc: Optional[torch.Tensor]
    loss_att: Optional[torch.Tensor]
    acc: Optional[float]
    taps: Dict[str, torch.Tensor]
    enc_out: torch.Tensor
    enc_lens: torch.Tensor

    @property
    def stats(self) -> Dict[str, float]:
        d = {}
        for k in ("loss", "loss_ctc", "loss_att"):
            v = getattr(self, k)
            if v is not None:
                d[k] = float(v.detach())
        if self.acc is not None:
            d["acc"] = float(self.acc)
        return d

    def tap(self, name: str) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(x [B,T,d], lens [B], mask bool [B,T])`` of a named tap."""
        return self.taps[name], self.taps["lens"], self.taps["mask"]


def reconcile_video(video: torch.Tensor, video_lens: torch.Tensor,
                    target_lens: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Cut or pad (black, uint8 0) each utterance's video to ``target_lens`` frames.

    Returns ``(video [B, max(target_lens), H, W], target_lens)``; frames t >= video_lens[b] are
    black, frames t >= target_lens[b] are padding."""
    B, T = video.shape[:2]
    Tt = int(target_lens.max()) if B else 0
    if T >= Tt:
        v = video[:, :Tt]
    else:
        v = torch.cat([video, video.new_zeros((B, Tt - T) + tuple(video.shape[2:]))], dim=1)
    keep = torch.arange(Tt, device=video.device)[None, :] < video_lens.to(video.device)[:, None]
    v = v * keep[:, :, None, None].to(v.dtype)
    return v, target_lens.clone()


def _conformer_stack(cfg: ModelConfig, num_blocks: int, input_size: int, input_layer) -> ConformerEncoder:
    enc = ConformerEncoder(
        input_size=input_size, output_size=cfg.d_model, attention_heads=cfg.heads,
        linear_units=cfg.linear_units, num_blocks=num_blocks, dropout_rate=cfg.dropout_rate,
        positional_dropout_rate=cfg.positional_dropout_rate,
        attention_dropout_rate=cfg.attention_dropout_rate, input_layer=input_layer,
        normalize_before=True, macaron_style=True, rel_pos_type="latest",
        pos_enc_layer_type="rel_pos", selfattention_layer_type="rel_selfattn",
        activation_type="swish", use_cnn_module=True, cnn_module_kernel=cfg.cnn_module_kernel)
    for layer in enc.encoders:
        layer.conv_module.__class__ = MaskedConvolutionModule
    return enc


class AVSRModel(nn.Module):
    """See the module docstring.  ``AVSRModel(cfg)``; ``model(batch) -> ModelOutput``."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.vocab_size < 3:
            raise ValueError("cfg.vocab_size must be set (>= 3: <blank>, tokens, <sos/eos>)")
        self.cfg = cfg
        d = cfg.d_model
        self.has_audio = cfg.mode in ("audio", "audiovisual")
        self.has_video = cfg.mode in ("video", "audiovisual")
        if self.has_audio:
            self.audio_frontend = AudioFrontend(cfg.fs, cfg.n_fft, cfg.win_length, cfg.hop_length,
                                                cfg.n_mels, cfg.specaug, cfg.time_mask_width_range,
                                                cfg.num_time_mask, cfg.num_freq_mask, cfg.freq_mask_width_range)
            if cfg.audio_subsampling == "vgg":
                self.audio_vgg = VGGSubsampling(cfg.n_mels, d, cfg.vgg_channels)
                self.audio_encoder = _conformer_stack(cfg, cfg.fusion_layers, d, None)
            else:
                self.audio_encoder = _conformer_stack(cfg, cfg.fusion_layers, cfg.n_mels, "conv2d")
        if self.has_video:
            if cfg.visual_frontend == "resnet18":
                self.visual_frontend = ResNet18Frontend(d, cfg.video_mean, cfg.video_std)
            else:
                self.visual_frontend = LightFrontend(d, cfg.light_input_size, cfg.light_channels,
                                                     cfg.video_mean, cfg.video_std)
            self.visual_encoder = _conformer_stack(cfg, cfg.visual_pre_blocks + cfg.fusion_layers, d, None)
        if self.has_audio and self.has_video:
            mk = lambda: CrossAttention(d, cfg.heads, cfg.attention_dropout_rate, cfg.dropout_rate)  # noqa: E731
            self.cross_a2v = nn.ModuleList([mk() for _ in range(cfg.fusion_layers)])
            self.cross_v2a = nn.ModuleList([mk() for _ in range(cfg.fusion_layers)])
            units = cfg.merge_ffn_units or cfg.linear_units
            if cfg.merge == "bundle":
                # LN_0 (front-end output) .. LN_{N-1}; the last fusion output uses the stack's after_norm
                self.merge_norms = nn.ModuleList([LayerNorm(d) for _ in range(cfg.fusion_layers)])
                k = cfg.fusion_layers + 1
            else:
                k = 2
            self.merge_ffn = nn.Sequential(nn.Linear(k * d, units), nn.SiLU(), nn.Dropout(cfg.dropout_rate),
                                           nn.Linear(units, d))
            nn.init.zeros_(self.merge_ffn[-1].weight)
            nn.init.zeros_(self.merge_ffn[-1].bias)
        self.shared_encoder = _conformer_stack(cfg, cfg.shared_layers, d, None)
        self.ctc = CTC(odim=cfg.vocab_size, encoder_output_size=d)
        if cfg.align_ctc_weight > 0:   # the alignment CTC (label priors); its prior is saved with the weights
            self.align_ctc = nn.Linear(d, cfg.vocab_size)
            self.register_buffer("align_log_prior", torch.full((cfg.vocab_size,), -math.log(cfg.vocab_size)))
        self.decoder = (TransformerDecoder(
            vocab_size=cfg.vocab_size, encoder_output_size=d, attention_heads=cfg.heads,
            linear_units=cfg.decoder_linear_units or cfg.linear_units, num_blocks=cfg.decoder_layers,
            dropout_rate=cfg.dropout_rate, positional_dropout_rate=cfg.positional_dropout_rate,
            self_attention_dropout_rate=cfg.attention_dropout_rate,
            src_attention_dropout_rate=cfg.attention_dropout_rate)
            if cfg.ctc_weight < 1.0 and cfg.decoder_layers > 0 else None)
        self.criterion_att = LabelSmoothingLoss(cfg.vocab_size, IGNORE_ID, cfg.lsm_weight, normalize_length=False)
        self.sos = self.eos = cfg.vocab_size - 1
        self.ignore_id = IGNORE_ID
        # MS-Adapter: LoRA on the Q/K/V projections (adapter_scope qkv; "all": every Linear) of the
        # audio Conformers, shared Conformers and decoder, switched on for
        # the audio-only path of an AV model (policy "auto"), or forced "on" / "off" by the caller
        if cfg.adapter_rank > 0:
            from avsr.models.lora import Adapters
            from avsr.models.lora import QKV_LAYERS
            self.adapters = Adapters(self, cfg.adapter_rank, cfg.adapter_alpha, cfg.adapter_dropout,
                                     cfg.adapter_targets,
                                     layers=QKV_LAYERS if cfg.adapter_scope == "qkv" else None)
        else:
            self.adapters = None

    # ------------------------------------------------------------------ adapters
    def adapters_for(self, modality: Optional[str] = None, policy: str = "auto") -> bool:
        """Whether the adapters are used for a forward in ``modality`` under ``policy``: ``auto``
        (the audio-only path of an AV model), ``on`` or ``off``."""
        if policy not in ("auto", "on", "off"):
            raise ValueError(f"adapter policy must be auto, on or off, got {policy!r}")
        if self.adapters is None or policy == "off":
            return False
        if policy == "on":
            return True
        return self.cfg.mode == "audiovisual" and (modality or self.cfg.mode) == "audio"

    def adapter_switch(self, on: bool):
        """Context manager: adapters on/off for everything run inside (encoder and decoder)."""
        import contextlib
        return self.adapters.switch(on) if self.adapters is not None else contextlib.nullcontext()

    # ------------------------------------------------------------------ normalisation stats
    def set_normalization(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Set the global fbank mean / std buffers (stored in the state dict)."""
        if not self.has_audio:
            raise ValueError("a video-only model has no audio normalisation")
        self.audio_frontend.set_normalization(mean, std)

    def compute_stats(self, batches: Iterable) -> Tuple[torch.Tensor, torch.Tensor]:
        """Accumulate fbank statistics over ``batches`` (Batch or (wav, lens)) and set them."""
        if not self.has_audio:
            raise ValueError("a video-only model has no audio normalisation")
        mean, std = compute_feature_stats(self.audio_frontend, batches)
        self.set_normalization(mean, std)
        return mean, std

    # ------------------------------------------------------------------ encoder
    def tap_names(self, modality: Optional[str] = None) -> List[str]:
        """The representation taps of a forward in ``modality``: ``fusion{i}.audio|visual``,
        ``visual_bundle`` (audiovisual only), ``fused``, ``shared_out`` (all [B, T, *])."""
        mode = modality or self.cfg.mode
        names = []
        for i in range(self.cfg.fusion_layers):
            if mode in ("audio", "audiovisual"):
                names.append(f"fusion{i}.audio")
            if mode in ("video", "audiovisual"):
                names.append(f"fusion{i}.visual")
        if mode == "audiovisual":
            names.append("visual_bundle")
        return names + ["fused", "shared_out"]

    @staticmethod
    def _run(layer, x, pos, mask):
        layer.conv_module.pad_mask = mask[:, 0, :]
        try:
            (x, _), _ = layer((x, pos), mask)
        finally:
            layer.conv_module.pad_mask = None
        return x

    def audio_front(self, batch: Batch, feats: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
                    extra: Optional[Dict[str, torch.Tensor]] = None):
        """fbank + subsampling + positional encoding: ``(a [B,T,d], pos_a, lens [B], mask [B,1,T])``.
        Independent of the video, so a frame-loss sweep computes it once per utterance.

        ``feats``: ``(fbank [B, F, n_mels], lens [B])`` to use instead of the audio front-end's own
        (``batch.audio`` is then not read).  ``extra``: a dict that receives ``audio_feats``,
        ``audio_feat_lens`` and ``specaug_mask`` (all False when SpecAug did not run)."""
        cfg = self.cfg
        if feats is not None:
            feats, flens = feats
            smask = torch.zeros(feats.shape[:2], dtype=torch.bool, device=feats.device)
        else:
            feats, flens, smask = self.audio_frontend.forward_masked(batch.audio, batch.audio_lens)
            if smask is None:
                smask = torch.zeros(feats.shape[:2], dtype=torch.bool, device=feats.device)
        if extra is not None:
            extra.update(audio_feats=feats, audio_feat_lens=flens, specaug_mask=smask)
        if cfg.audio_subsampling == "vgg":
            a, lens = self.audio_vgg(feats, flens)
            a, pos_a = self.audio_encoder.embed(a)
            mask = (~make_pad_mask(lens, maxlen=a.size(1)))[:, None, :].to(a.device)
        else:
            fmask = (~make_pad_mask(flens, maxlen=feats.size(1)))[:, None, :].to(feats.device)
            (a, pos_a), _ = self.audio_encoder.embed(feats, fmask)
            # exact output lengths of two (k=3, s=2) convs; ESPnet's subsampled mask
            # over-counts by up to 2 frames for utterances shorter than the batch maximum
            lens = torch.div(torch.div(flens - 1, 2, rounding_mode="floor") - 1, 2, rounding_mode="floor")
            mask = (~make_pad_mask(lens, maxlen=a.size(1)))[:, None, :].to(a.device)
        return a, pos_a, lens, mask

    def encode(self, batch: Batch, modality: Optional[str] = None, front: Optional[Dict] = None
               ) -> Tuple[torch.Tensor, torch.Tensor, Dict[str, torch.Tensor]]:
        """``(enc_out [B,T,d], enc_lens [B], taps)``; ``modality`` forces ``audio``/``video``/``audiovisual``.

        ``front`` (evaluation sweeps): precomputed ``"audio"`` = :meth:`audio_front` output and/or
        ``"visual"`` = visual front-end features ``[B, T, d]`` of the (length-reconciled) video;
        with them the corresponding inputs of ``batch`` are not read.  ``"feats"``: ``(fbank, lens)``
        features the audio front-end would produce (e.g. another model's ``audio_feats`` tap, SpecAug
        included), used instead of ``batch.audio``.

        ``taps``: see :meth:`tap_names`, plus ``lens`` and ``mask``, and with audio ``audio_feats``,
        ``audio_feat_lens``, ``specaug_mask`` (:meth:`audio_front`)."""
        cfg = self.cfg
        front = front or {}
        mode = modality or cfg.mode
        use_a = mode in ("audio", "audiovisual")
        use_v = mode in ("video", "audiovisual")
        if mode not in ("audio", "video", "audiovisual"):
            raise ValueError(f"unknown modality {mode!r}")
        if (use_a and not self.has_audio) or (use_v and not self.has_video):
            raise ValueError(f"a model built with mode={cfg.mode!r} cannot run modality={mode!r}")
        if use_a and batch.audio is None and "audio" not in front and "feats" not in front:
            raise ValueError(f"modality {mode!r} needs batch.audio")
        if use_v and batch.video is None and "visual" not in front:
            raise ValueError(f"modality {mode!r} needs batch.video (use modality='audio' without video)")
        taps: Dict[str, torch.Tensor] = {}
        if use_a:
            a, pos_a, lens, mask = (front["audio"] if "audio" in front
                                    else self.audio_front(batch, feats=front.get("feats"), extra=taps))
        if use_v:
            if "visual" in front:
                v = front["visual"]
                vlens = lens if use_a else batch.video_lens
            else:
                if use_a:
                    video, vlens = reconcile_video(batch.video, batch.video_lens, lens)
                else:
                    video, vlens = batch.video, batch.video_lens
                v, vlens = self.visual_frontend(video, vlens)
            visual = [v]                      # the visual bundle: front-end output, then each fusion layer's
            v, pos_v = self.visual_encoder.embed(v)
            if not use_a:
                lens = vlens
                mask = (~make_pad_mask(lens, maxlen=v.size(1)))[:, None, :].to(v.device)
            vlayers = list(self.visual_encoder.encoders)
            for layer in vlayers[:cfg.visual_pre_blocks]:
                v = self._run(layer, v, pos_v, mask)
            vlayers = vlayers[cfg.visual_pre_blocks:]
        alayers = list(self.audio_encoder.encoders) if use_a else None
        for i in range(cfg.fusion_layers):
            if use_a and use_v:
                a_in, v_in = a, v
                a = a_in + self.cross_a2v[i](a_in, v_in, mask)
                v = v_in + self.cross_v2a[i](v_in, a_in, mask)
            if use_a:
                a = self._run(alayers[i], a, pos_a, mask)
                taps[f"fusion{i}.audio"] = a
            if use_v:
                v = self._run(vlayers[i], v, pos_v, mask)
                taps[f"fusion{i}.visual"] = v
                visual.append(v)
        valid = mask[:, 0, :]
        if use_a:
            a_n = self.audio_encoder.after_norm(a)
            if use_v:
                v_n = self.visual_encoder.after_norm(v)
                if cfg.merge == "bundle":
                    bundle = torch.cat([norm(x) for norm, x in zip(self.merge_norms, visual[:-1])] + [v_n], dim=-1)
                    taps["visual_bundle"] = bundle
                    fused = a_n + self.merge_ffn(bundle)
                else:
                    taps["visual_bundle"] = v_n
                    fused = a_n + self.merge_ffn(torch.cat([a_n, v_n], dim=-1))
            else:
                fused = a_n
            pos = pos_a
        else:
            fused = self.visual_encoder.after_norm(v)
            pos = pos_v
        fused = fused * valid[..., None].to(fused.dtype)
        taps["fused"] = fused
        x = fused
        for layer in self.shared_encoder.encoders:
            x = self._run(layer, x, pos, mask)
        enc_out = self.shared_encoder.after_norm(x)
        taps["shared_out"] = enc_out
        taps["lens"] = lens
        taps["mask"] = valid
        return enc_out, lens, taps

    # ------------------------------------------------------------------ heads and loss
    def ctc_logits(self, enc_out: torch.Tensor) -> torch.Tensor:
        """Pre-softmax CTC activations [B, T, vocab]."""
        return self.ctc.ctc_lo(enc_out)

    def forward(self, batch: Batch, modality: Optional[str] = None, adapters: str = "auto") -> ModelOutput:
        with self.adapter_switch(self.adapters_for(modality, adapters)):
            return self._forward(batch, modality)

    def _forward(self, batch: Batch, modality: Optional[str] = None) -> ModelOutput:
        enc_out, enc_lens, taps = self.encode(batch, modality)
        loss = loss_ctc = loss_att = acc = None
        if batch.tokens is not None:
            tokens = batch.tokens.to(enc_out.device)
            token_lens = batch.token_lens.to(enc_out.device)
            w = self.cfg.ctc_weight
            if w > 0:
                loss_ctc = self.ctc(enc_out, enc_lens, tokens, token_lens)
            if self.decoder is not None:
                ys_in, ys_out = add_sos_eos(tokens, self.sos, self.eos, self.ignore_id)
                dec_out, _ = self.decoder(enc_out, enc_lens, ys_in, token_lens + 1)
                loss_att = self.criterion_att(dec_out, ys_out)
                acc = th_accuracy(dec_out.reshape(-1, self.cfg.vocab_size), ys_out, self.ignore_id)
            if loss_att is None:
                loss = loss_ctc
            elif loss_ctc is None:
                loss = loss_att
            else:
                loss = w * loss_ctc + (1 - w) * loss_att
            if self.cfg.align_ctc_weight > 0:
                loss = loss + self.cfg.align_ctc_weight * self._align_ctc_loss(enc_out, enc_lens, tokens, token_lens)
        return ModelOutput(loss, loss_ctc, loss_att, acc, taps, enc_out, enc_lens)

    def align_scores(self, enc_out: torch.Tensor) -> torch.Tensor:
        """Frame scores ``[B, T, vocab]`` of the alignment CTC: ``log p - alpha log P`` (unnormalised)."""
        lp = self.align_ctc(enc_out).float().log_softmax(-1)
        return lp - self.cfg.align_ctc_prior * self.align_log_prior

    def _align_ctc_loss(self, enc_out, enc_lens, tokens, token_lens) -> torch.Tensor:
        """CTC of the alignment head on ``log p - alpha log P`` (batch-size average, as ESPnet's CTC); in
        training the running prior first moves towards this batch's mean posterior over its valid frames."""
        lp = self.align_ctc(enc_out).float().log_softmax(-1)
        if self.training:
            valid = ~make_pad_mask(enc_lens, maxlen=lp.size(1)).to(lp.device)
            with torch.no_grad():
                mean = lp.exp()[valid].mean(0)
                self.align_log_prior.copy_(torch.log(0.99 * self.align_log_prior.exp() + 0.01 * mean).clamp_min(-30.0))
        scores = lp - self.cfg.align_ctc_prior * self.align_log_prior
        target = torch.cat([tokens[i, :int(n)] for i, n in enumerate(token_lens)])
        return nn.functional.ctc_loss(scores.transpose(0, 1), target, enc_lens, token_lens, blank=0,
                                      reduction="sum", zero_infinity=True) / lp.size(0)


def build_model(cfg: ModelConfig) -> AVSRModel:
    return AVSRModel(cfg)


def build_model_from_config(source: ConfigSource, **overrides) -> AVSRModel:
    """YAML (path or parsed mapping) / ``model:`` section / :class:`ModelConfig` -> :class:`AVSRModel`
    (:func:`avsr.models.config.load_model_config`, then the model)."""
    return AVSRModel(load_model_config(source, **overrides))


def param_part(name: str) -> str:
    """``audio`` | ``visual`` | ``cross`` | ``merge`` | ``backend`` | ``adapter`` for a parameter name."""
    for part, prefixes in (("audio", AUDIO_PREFIXES), ("visual", VISUAL_PREFIXES),
                           ("cross", CROSS_PREFIXES), ("merge", MERGE_PREFIXES),
                           ("backend", BACKEND_PREFIXES), ("adapter", ADAPTER_PREFIXES)):
        if name.startswith(prefixes):
            return part
    raise KeyError(name)


def count_parameters(model: nn.Module) -> Dict[str, int]:
    """Trainable parameter counts per part and in total."""
    out: Dict[str, int] = {}
    for n, p in model.named_parameters():
        part = param_part(n)
        out[part] = out.get(part, 0) + p.numel()
    out["total"] = sum(p.numel() for p in model.parameters())
    return out
