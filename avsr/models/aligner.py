"""A local CTC aligner: the times of a known transcript, from the sound around each character.

Why a second network: the recognisers' CTC heads sit on Conformers whose self-attention sees the whole
segment, and on SynthMISP they emit their characters in the first and last frames of a segment, far
from the sounds (docs/notebook/ctc_edges.md: about 80-90 % of their non-blank frames in the first or
last 5 frames, whatever the data size, the head, label priors at alignment time or silence around the
segment).  Forced alignment on those posteriors puts few character midpoints within 80 ms of the truth.
This aligner cannot do that: it has no attention and no recurrence, so the score of frame ``t`` depends
only on the audio within :meth:`LocalAligner.receptive_field` of it, about ±0.3 s, and it can only place
a character where that character sounds.  It is not a recogniser: it only times a given text (the
decoded hypothesis or a reference), by the Viterbi path of :func:`avsr.alignment.token_times`, the way
Montreal Forced Aligner's acoustic model serves a text it is given.

Network: log-mel fbank (:class:`avsr.models.front_nets.AudioFrontend`, the recipe's global mean and
variance) -> two 1-D convolutions (kernel 5, stride 2, SiLU) to 40 ms frames -> ``layers`` residual
blocks of Conv1d(kernel ``kernel``) + BatchNorm + SiLU -> linear to the token list.

Training: CTC on label-prior-adjusted scores ``log p(k|x) - prior_weight * log P(k)`` (Huang et al.,
"Less peaky and more accurate CTC forced alignment by label priors", ICASSP 2024), with ``P`` a running
mean of the posteriors over valid frames (momentum ``prior_momentum``), kept in the weights; alignment
reads the same adjusted scores.  The prior keeps blank from taking every frame, so character spans
cover their sounds instead of one peaky frame.

Options measured and not the default (``docs/notebook/ctc_edges.md``): ``topology: hmm`` with
``inner_blank_penalty`` (tokens that hold their frames, trained by :func:`topology_nll`; from scratch the
tokens collapse into a block, fine-tuned from a CTC aligner with ``avsr train_aligner --init`` it gains on dev and
not on eval), ``rule: own``; in training, ``speed_perturb`` (the Kaldi/ESPnet 0.9/1.0/1.1 resampling, per batch),
``freq_masks`` (ESPnet frequency masks) and ``vtlp`` (vocal tract length perturbation,
:func:`avsr.models.front_nets.vtlp`); ``utterance_cmn`` (each utterance's mean fbank removed: the
scores then depend on the whole utterance, not only on the receptive field).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from avsr.models.front_nets import AudioFrontend
from frontends.constants import FBANK_HOP_LENGTH, FBANK_N_FFT, FBANK_N_MELS, SAMPLE_RATE

SUBSAMPLING = 4          # two stride-2 convolutions: 10 ms fbank frames -> 40 ms


@dataclass
class AlignerConfig:
    vocab_size: int
    d: int = 256
    kernel: int = 5
    layers: int = 3
    prior_weight: float = 0.3
    prior_momentum: float = 0.01
    topology: str = "ctc"          # "ctc" or "hmm" (avsr.alignment.ctc_viterbi); "hmm" trains with topology_nll
    inner_blank_penalty: float = 0.0   # nats per frame of blank between two tokens, in training and alignment
    speed_perturb: Tuple[float, ...] = ()   # training: each batch resampled at one of these speeds (1.0: as is)
    freq_masks: int = 0                 # training: ESPnet frequency masks (width 0-27 mel bins) per utterance
    rule: str = "split"            # timing rule of avsr.alignment.token_times: "split" (blanks shared) or "own"
    utterance_cmn: bool = False    # subtract each utterance's mean fbank (over its valid frames) after the global one
    vtlp: Tuple[float, ...] = ()   # training: (lo, hi), each utterance's spectrum warped by a factor ~ U(lo, hi)

    def __post_init__(self):
        from avsr.alignment import RULES, TOPOLOGIES
        if self.topology not in TOPOLOGIES:
            raise ValueError(f"aligner topology must be one of {TOPOLOGIES}, got {self.topology!r}")
        self.speed_perturb = tuple(float(x) for x in self.speed_perturb)
        if any(not 0.5 <= x <= 2.0 for x in self.speed_perturb):
            raise ValueError(f"speed_perturb factors must be in [0.5, 2], got {self.speed_perturb}")
        if self.inner_blank_penalty < 0:
            raise ValueError(f"inner_blank_penalty must be >= 0, got {self.inner_blank_penalty}")
        self.vtlp = tuple(float(x) for x in self.vtlp)
        if self.vtlp and (len(self.vtlp) != 2 or not 0.5 <= self.vtlp[0] <= self.vtlp[1] <= 2.0):
            raise ValueError(f"vtlp must be (lo, hi) with 0.5 <= lo <= hi <= 2, got {self.vtlp}")
        if self.rule not in RULES:
            raise ValueError(f"aligner rule must be one of {RULES}, got {self.rule!r}")

    def to_dict(self) -> Dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Dict) -> "AlignerConfig":
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown aligner config keys {sorted(unknown)}")
        return cls(**d)


class AlignerOutput:
    """What :meth:`LocalAligner.forward` returns to the trainer."""

    def __init__(self, loss: torch.Tensor):
        self.loss = loss
        self.taps: Dict[str, torch.Tensor] = {}
        self.stats = {"loss_ctc": loss.detach()}


def _conv_len(n: torch.Tensor) -> torch.Tensor:
    """Output length of a kernel-5, stride-2, padding-2 convolution."""
    return torch.div(n - 1, 2, rounding_mode="floor") + 1


class LocalAligner(nn.Module):
    """See the module docstring."""

    def __init__(self, cfg: AlignerConfig):
        super().__init__()
        if cfg.kernel % 2 != 1 or cfg.kernel < 1:
            raise ValueError(f"kernel must be odd and >= 1, got {cfg.kernel}")
        self.cfg = cfg
        self.front = AudioFrontend(specaug=cfg.freq_masks > 0, num_time_mask=0, num_freq_mask=cfg.freq_masks)
        d = cfg.d
        self.sub = nn.ModuleList([nn.Conv1d(FBANK_N_MELS, d, 5, stride=2, padding=2),
                                  nn.Conv1d(d, d, 5, stride=2, padding=2)])
        self.blocks = nn.ModuleList([nn.Sequential(nn.Conv1d(d, d, cfg.kernel, padding=cfg.kernel // 2),
                                                   nn.BatchNorm1d(d), nn.SiLU()) for _ in range(cfg.layers)])
        self.out = nn.Linear(d, cfg.vocab_size)
        self.register_buffer("log_prior", torch.full((cfg.vocab_size,), -math.log(cfg.vocab_size)))

    # ------------------------------------------------------------------ geometry
    @staticmethod
    def frame_times() -> Tuple[float, float]:
        """``(offset, stride)`` seconds, as :func:`avsr.alignment.frame_times`: frame ``t`` is centred on fbank
        frame ``4t`` (symmetric padding), whose window is centred at ``(4t * hop + n_fft / 2) / fs``."""
        stride = SUBSAMPLING * FBANK_HOP_LENGTH / SAMPLE_RATE
        return FBANK_N_FFT / 2.0 / SAMPLE_RATE - stride / 2.0, stride

    def receptive_field(self) -> float:
        """Seconds of audio either side of a frame's centre that can change its score."""
        fb = 2 + 2 * 2 + (self.cfg.kernel // 2) * SUBSAMPLING * self.cfg.layers     # fbank frames either side
        return (fb * FBANK_HOP_LENGTH + FBANK_N_FFT / 2.0) / SAMPLE_RATE

    # ------------------------------------------------------------------ forward
    def encode(self, wav: torch.Tensor, lens: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(log-posteriors [B, T, V], lens [B])`` of 16 kHz waveforms ``wav [B, N]``."""
        warp = None
        if self.training and self.cfg.vtlp:
            lo, hi = self.cfg.vtlp
            warp = lo + (hi - lo) * torch.rand(wav.size(0), device=wav.device)
        feats, olens = self.front(wav, lens, warp)
        if self.cfg.utterance_cmn:
            valid = (torch.arange(feats.size(1), device=feats.device)[None] < olens[:, None])[..., None]
            mean = (feats * valid).sum(1, keepdim=True) / olens.clamp_min(1)[:, None, None]
            feats = (feats - mean) * valid
        x = feats.transpose(1, 2)
        # padded frames are set to 0 after every layer, as the convolutions' own zero padding: a batch's
        # padding changes nothing
        for conv in self.sub:
            x = F.silu(conv(x))
            olens = _conv_len(olens).clamp(max=x.size(2))
            valid = (torch.arange(x.size(2), device=x.device)[None] < olens[:, None])[:, None, :]
            x = x * valid
        for b in self.blocks:
            x = (x + b(x)) * valid
        return self.out(x.transpose(1, 2)).float().log_softmax(-1), olens

    def scores(self, logp: torch.Tensor) -> torch.Tensor:
        """What training and alignment read: ``logp - prior_weight * log_prior``."""
        return logp - self.cfg.prior_weight * self.log_prior

    @torch.no_grad()
    def update_prior(self, logp: torch.Tensor, lens: torch.Tensor) -> None:
        valid = torch.arange(logp.size(1), device=logp.device)[None] < lens[:, None]
        if bool(valid.any()):
            m = self.cfg.prior_momentum
            mean = logp.exp()[valid].mean(0)
            self.log_prior.copy_(torch.log((1 - m) * self.log_prior.exp() + m * mean).clamp_min(-30.0))

    def forward(self, batch) -> "AlignerOutput":
        """The trainer's interface (:class:`avsr.trainer.Trainer`): a :class:`avsr.data.batch.Batch` with
        audio and tokens -> ``out.loss`` (see :meth:`loss`)."""
        wav, lens = batch.audio, batch.audio_lens
        if self.training and self.cfg.speed_perturb:
            wav, lens = speed_perturb(wav, lens, self.cfg.speed_perturb)
        loss = self.loss(wav, lens, batch.tokens, batch.token_lens)
        return AlignerOutput(loss)

    def loss(self, wav, lens, tokens, token_lens) -> torch.Tensor:
        """CTC loss of the prior-adjusted scores, summed over utterances and divided by the batch size
        (training mode also moves the running prior)."""
        logp, olens = self.encode(wav, lens)
        if self.training:
            self.update_prior(logp.detach(), olens)
        sc = self.scores(logp)
        if self.cfg.topology == "hmm" or self.cfg.inner_blank_penalty:
            return topology_nll(sc, olens, tokens, token_lens, topology=self.cfg.topology,
                                inner_blank_penalty=self.cfg.inner_blank_penalty).sum() / len(token_lens)
        tgt = torch.cat([tokens[i, :int(n)] for i, n in enumerate(token_lens)])
        return F.ctc_loss(sc.transpose(0, 1), tgt, olens, token_lens, blank=0, reduction="sum",
                          zero_infinity=True) / len(token_lens)

    @torch.no_grad()
    def log_posteriors(self, wav) -> torch.Tensor:
        """Log-posteriors ``[T, V]`` (float32, CPU) of one waveform ``[N]`` (numpy or tensor)."""
        p = next(self.parameters())
        w = torch.as_tensor(wav, dtype=torch.float32, device=p.device).reshape(1, -1)
        lp, ol = self.encode(w, torch.tensor([w.size(1)], device=p.device))
        return lp[0, :int(ol[0])].float().cpu()

    def align_scores(self, wav) -> torch.Tensor:
        """Alignment scores ``[T, V]`` (float32, CPU; :meth:`scores` of :meth:`log_posteriors`) of one waveform."""
        return self.scores(self.log_posteriors(wav))

    def token_times(self, scores, token_ids, time_offset: float = 0.0):
        """Times of ``token_ids`` on this aligner's ``scores`` (:meth:`align_scores`): :func:`avsr.alignment.token_times`
        with the aligner's frame clock, topology, inner blank penalty and timing rule."""
        from avsr.alignment import token_times
        off, stride = self.frame_times()
        return token_times(scores, token_ids, offset=off, stride=stride, time_offset=time_offset,
                           topology=self.cfg.topology, inner_blank_penalty=self.cfg.inner_blank_penalty,
                           rule=self.cfg.rule)


def speed_perturb(wav: torch.Tensor, lens: torch.Tensor, factors) -> Tuple[torch.Tensor, torch.Tensor]:
    """A padded batch ``wav [B, N]`` played at one speed drawn from ``factors`` (torch's random stream), as sox's
    ``speed`` (Kaldi and ESPnet recipes' 0.9/1.0/1.1 perturbation): resampled by linear interpolation to
    ``N / factor`` samples, so tempo, pitch and formants all move; ``lens`` scaled alike."""
    f = float(factors[int(torch.randint(len(factors), ()))])
    if f == 1.0:
        return wav, lens
    n = max(1, int(round(wav.size(1) / f)))
    out = F.interpolate(wav[:, None].float(), size=n, mode="linear", align_corners=False)[:, 0]
    return out, torch.clamp(torch.round(lens.float() / f).long(), 1, n)


_NEG = -1.0e9        # log-score of an impossible state (finite: no NaN gradients)


def topology_nll(scores: torch.Tensor, lens: torch.Tensor, tokens: torch.Tensor, token_lens: torch.Tensor, *,
                 topology: str = "hmm", inner_blank_penalty: float = 0.0, blank: int = 0) -> torch.Tensor:
    """Negative log of the summed score of all paths of each utterance's tokens through ``scores``
    ``[B, T, V]`` (valid frames ``lens``), on the topology of :func:`avsr.alignment.ctc_viterbi`
    (``"ctc"``: the CTC loss, equal to :func:`torch.nn.functional.ctc_loss` per utterance; ``"hmm"``:
    a token may follow the one before directly, repeats too; each frame of blank between two tokens
    costs ``inner_blank_penalty``).  The forward algorithm in log space over ``2L + 1`` states,
    differentiable; ``[B]``, 0 for an utterance with no path (too few frames), as ``zero_infinity``."""
    B, T, V = scores.shape
    Lmax = int(token_lens.max()) if len(token_lens) else 0
    S = 2 * Lmax + 1
    dev = scores.device
    y = tokens[:, :Lmax].long().clamp(0, V - 1)
    pos = torch.arange(Lmax, device=dev)[None]
    y = torch.where(pos < token_lens[:, None], y, torch.full_like(y, blank))
    ext = torch.full((B, S), blank, dtype=torch.long, device=dev)
    ext[:, 1::2] = y
    emit = scores.gather(2, ext[:, None, :].expand(B, T, S))                     # [B, T, S]
    s_idx = torch.arange(S, device=dev)[None]
    if inner_blank_penalty:
        inner = (s_idx % 2 == 0) & (s_idx >= 2) & (s_idx <= (2 * token_lens - 2)[:, None])
        emit = emit - inner_blank_penalty * inner[:, None, :].to(emit.dtype)
    skip = torch.zeros(B, S, dtype=torch.bool, device=dev)                       # s may be entered from s - 2
    if topology == "hmm":
        skip[:, 3::2] = True
    else:
        skip[:, 3::2] = y[:, 1:] != y[:, :-1]
    neg = torch.full((B, S), _NEG, dtype=emit.dtype, device=dev)
    alpha = torch.where(s_idx < 2, emit[:, 0], neg)
    for t in range(1, T):
        one = torch.cat([neg[:, :1], alpha[:, :-1]], 1)
        two = torch.where(skip, torch.cat([neg[:, :2], alpha[:, :-2]], 1), neg)
        new = torch.logsumexp(torch.stack([alpha, one, two]), 0) + emit[:, t]
        alpha = torch.where((t < lens)[:, None], new, alpha)
    last = (2 * token_lens)[:, None]
    fin = torch.logsumexp(torch.cat([alpha.gather(1, last), alpha.gather(1, (last - 1).clamp_min(0))
                                     .masked_fill((token_lens == 0)[:, None], _NEG)], 1), 1)
    nll = -fin
    return torch.where(fin > _NEG / 2, nll, torch.zeros_like(nll))


def load_aligner(d: str, map_location="cpu"):
    """The :class:`avsr.models.aligner.LocalAligner` of an aligner dir or a packed model dir
    (``aligner.pth`` + ``aligner_config.yaml``), weights-only, in eval mode."""
    import os

    import yaml

    from avsr.utils.checkpoint import load_checkpoint, model_state
    with open(os.path.join(d, "aligner_config.yaml"), encoding="utf-8") as f:
        cfg = AlignerConfig.from_dict((yaml.safe_load(f) or {}).get("aligner") or {})
    m = LocalAligner(cfg)
    m.load_state_dict(model_state(load_checkpoint(os.path.join(d, "aligner.pth"), map_location=map_location)))
    return m.eval()
