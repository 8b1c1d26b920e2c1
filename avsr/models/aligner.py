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

Two directions (``directions: both``, the default of ``conf/aligner.yaml``): a second network of the same
form reads each utterance backwards (trained on the reversed waveform and token sequence, on the same fbank
front), and :meth:`LocalAligner.times` gives each token the mean of the two directions' starts and ends.  A
CTC network may emit a token a little after its sound (on SynthMISP the forward network's midpoints are about
10 ms late, the backward one's about 6 ms early); the mean cancels that and averages the two networks' errors
(on the SynthMISP mini, dev 81.3 -> 86.0 % of midpoints within 80 ms with two separately trained networks,
``docs/notebook/ctc_edges.md``).  ``avsr train_aligner`` trains them one after the other, each as a one-direction
run would be (:attr:`LocalAligner.train_only`; trained together, with one gradient clip and one early stop on
the summed loss, they gained less on dev).

Adaptation at alignment time (``adapt_steps``, 30 in ``conf/aligner.yaml``): before aligning a segment, each
network fits a scale and a shift per mel bin of its input to the CTC loss of the text it is given
(:meth:`LocalAligner.adapt`; the weights stay fixed), as HMM aligners adapt to each speaker before their second
pass.  It serves voices the aligner never heard: on SynthMISP mini, +4.3 points on training voices held out of a
probe's training, +3.1 on eval (its voices are never heard in training), +0.7 on dev (not resolved;
``docs/notebook/ctc_edges.md``).  It costs 30 forward and backward passes per segment and direction.

Times (``rule: posterior`` in ``conf/aligner.yaml``): each token at its expected frame under the path posterior
at acoustic scale 1/12, over the best path's span and 8 frames either side (:func:`avsr.alignment.token_times`), not
at its best-path spike; chosen on dev and on dev with a second of silence around each segment
(``docs/notebook/ctc_edges.md``).

Options measured and not the default (``docs/notebook/ctc_edges.md``): ``topology: hmm`` with
``inner_blank_penalty`` (tokens that hold their frames, trained by :func:`topology_nll`; from scratch the
tokens collapse into a block, fine-tuned from a CTC aligner with ``avsr train_aligner --init`` it gains on dev and
not on eval), ``rule: own``; in training, ``speed_perturb`` (the Kaldi/ESPnet 0.9/1.0/1.1 resampling, per batch),
``freq_masks`` (ESPnet frequency masks) and ``vtlp`` (vocal tract length perturbation,
:func:`avsr.models.front_nets.vtlp`; dev -4.0 points); ``utterance_cmn`` (each utterance's mean fbank removed: the
scores then depend on the whole utterance, not only on the receptive field); ``cepstra`` (the log-mel spectrum
smoothed to its first DCT coefficients, as MFCCs drop the pitch harmonics: +1.3 points on voices held out of
training with 13, -1.5 with 20; :func:`cepstral_smoother`).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from avsr.models.front_nets import AudioFrontend
from frontends.constants import FBANK_HOP_LENGTH, FBANK_N_FFT, FBANK_N_MELS, SAMPLE_RATE

SUBSAMPLING = 4          # two stride-2 convolutions: 10 ms fbank frames -> 40 ms
DIRECTIONS = ("forward", "both")


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
    rule: str = "split"            # timing rule of avsr.alignment.token_times: "split" (blanks shared), "own" or
                                   # "posterior" (the split rule on each token's expected frame)
    posterior_scale: float = 1.0   # rule "posterior": acoustic scale of the path posterior (below 1: flatter)
    posterior_margin: int = 8      # rule "posterior": frames beyond the best path's first and last spike it sees
    utterance_cmn: bool = False    # subtract each utterance's mean fbank (over its valid frames) after the global one
    vtlp: Tuple[float, ...] = ()   # training: (lo, hi), each utterance's spectrum warped by a factor ~ U(lo, hi)
    directions: str = "forward"    # "forward", or "both": a second network reads each utterance backwards and
                                   # the times are the mean of the two directions' (LocalAligner.times)
    cepstra: int = 0               # > 0: each frame's log-mel spectrum smoothed to its first ``cepstra`` DCT
                                   # coefficients (cepstral liftering, as MFCCs; 0: the fbank as it is)
    adapt_steps: int = 0           # alignment: Adam steps fitting each utterance's input scale and shift per mel
                                   # bin to the CTC loss of the text it is given (LocalAligner.adapt; 0: none)
    adapt_lr: float = 0.1          # their learning rate

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
        if self.directions not in DIRECTIONS:
            raise ValueError(f"aligner directions must be one of {DIRECTIONS}, got {self.directions!r}")
        if self.rule not in RULES:
            raise ValueError(f"aligner rule must be one of {RULES}, got {self.rule!r}")
        if not self.posterior_scale > 0 or self.posterior_margin < 0:
            raise ValueError(f"posterior_scale must be > 0 and posterior_margin >= 0, got {self.posterior_scale}, "
                             f"{self.posterior_margin}")
        if self.adapt_steps < 0 or self.adapt_lr <= 0:
            raise ValueError(f"adapt_steps must be >= 0 and adapt_lr > 0, got {self.adapt_steps}, {self.adapt_lr}")
        if not 0 <= self.cepstra <= FBANK_N_MELS:
            raise ValueError(f"cepstra must be in [0, {FBANK_N_MELS}], got {self.cepstra}")

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


def _build_net(m: nn.Module, cfg: AlignerConfig) -> nn.Module:
    """Give ``m`` one direction's network: subsampling, residual blocks, output layer and running label prior."""
    d = cfg.d
    m.sub = nn.ModuleList([nn.Conv1d(FBANK_N_MELS, d, 5, stride=2, padding=2),
                           nn.Conv1d(d, d, 5, stride=2, padding=2)])
    m.blocks = nn.ModuleList([nn.Sequential(nn.Conv1d(d, d, cfg.kernel, padding=cfg.kernel // 2),
                                            nn.BatchNorm1d(d), nn.SiLU()) for _ in range(cfg.layers)])
    m.out = nn.Linear(d, cfg.vocab_size)
    m.register_buffer("log_prior", torch.full((cfg.vocab_size,), -math.log(cfg.vocab_size)))
    return m


def cepstral_smoother(n: int, keep: int) -> torch.Tensor:
    """``P [n, n]`` with ``x @ P`` the spectrum ``x`` (last axis, ``n`` bins) rebuilt from its first ``keep``
    orthonormal DCT-II coefficients: the low-quefrency envelope, without the fine structure (pitch harmonics)
    that higher coefficients carry.  Symmetric and idempotent."""
    k = torch.arange(keep, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None]
    d = torch.cos(math.pi / n * (i + 0.5) * k) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return (d.T @ d).float()


def reverse_padded(x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
    """Each row of a padded batch ``x [B, N, ...]`` reversed within its first ``lens[i]`` entries (padding stays)."""
    n = x.size(1)
    idx = torch.arange(n, device=x.device)[None].expand(x.size(0), n)
    rev = (lens.to(x.device)[:, None] - 1 - idx)
    idx = torch.where(rev >= 0, rev, idx)
    return x.gather(1, idx.reshape(idx.shape + (1,) * (x.dim() - 2)).expand(x.shape))


class LocalAligner(nn.Module):
    """See the module docstring."""

    def __init__(self, cfg: AlignerConfig):
        super().__init__()
        if cfg.kernel % 2 != 1 or cfg.kernel < 1:
            raise ValueError(f"kernel must be odd and >= 1, got {cfg.kernel}")
        self.cfg = cfg
        self.front = AudioFrontend(specaug=cfg.freq_masks > 0, num_time_mask=0, num_freq_mask=cfg.freq_masks)
        # cepstra: projection of a log-mel frame onto its first `cepstra` orthonormal DCT-II basis vectors
        self.register_buffer("lifter", cepstral_smoother(FBANK_N_MELS, cfg.cepstra) if cfg.cepstra else None,
                             persistent=False)
        _build_net(self, cfg)                      # the forward network (sub, blocks, out, log_prior)
        # directions "both": the backward network, on the same fbank front (features of the reversed waveform)
        self.back = _build_net(nn.Module(), cfg) if cfg.directions == "both" else None
        #: training: None = every network's loss; "forward" / "backward": that network's alone (avsr train_aligner
        #: trains the two directions one after the other, each as a one-direction run would be)
        self.train_only: Optional[str] = None

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
    def _net(self, backward: bool) -> nn.Module:
        if backward and self.back is None:
            raise ValueError("this aligner has no backward network (directions: forward)")
        return self.back if backward else self

    def encode(self, wav: torch.Tensor, lens: torch.Tensor, backward: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(log-posteriors [B, T, V], lens [B])`` of 16 kHz waveforms ``wav [B, N]`` by the forward network, or
        with ``backward`` by the backward one (it expects reversed waveforms: :func:`reverse_padded`)."""
        return self.network(*self.features(wav, lens), backward)

    def features(self, wav: torch.Tensor, lens: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(feats [B, F, n_mels], flens)``: what the networks read (normalised fbank, smoothed with ``cepstra``,
        less each utterance's mean with ``utterance_cmn``; warped by ``vtlp`` in training)."""
        warp = None
        if self.training and self.cfg.vtlp:
            lo, hi = self.cfg.vtlp
            warp = lo + (hi - lo) * torch.rand(wav.size(0), device=wav.device)
        feats, olens = self.front(wav, lens, warp)
        if self.lifter is not None:
            # smooth the log-mel spectrum itself, not its normalised form: undo the global std, project, redo
            std = self.front.feat_std
            feats = ((feats * std) @ self.lifter) / std
        if self.cfg.utterance_cmn:
            valid = (torch.arange(feats.size(1), device=feats.device)[None] < olens[:, None])[..., None]
            mean = (feats * valid).sum(1, keepdim=True) / olens.clamp_min(1)[:, None, None]
            feats = (feats - mean) * valid
        return feats, olens

    def network(self, feats: torch.Tensor, olens: torch.Tensor, backward: bool = False
                ) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(log-posteriors [B, T, V], lens [B])`` of one direction's network on :meth:`features`."""
        net = self._net(backward)
        x = feats.transpose(1, 2)
        # padded frames are set to 0 after every layer, as the convolutions' own zero padding: a batch's
        # padding changes nothing
        for conv in net.sub:
            x = F.silu(conv(x))
            olens = _conv_len(olens).clamp(max=x.size(2))
            valid = (torch.arange(x.size(2), device=x.device)[None] < olens[:, None])[:, None, :]
            x = x * valid
        for b in net.blocks:
            x = (x + b(x)) * valid
        return net.out(x.transpose(1, 2)).float().log_softmax(-1), olens

    def scores(self, logp: torch.Tensor, backward: bool = False) -> torch.Tensor:
        """What training and alignment read: ``logp - prior_weight * log_prior`` (of that direction's network)."""
        return logp - self.cfg.prior_weight * self._net(backward).log_prior

    @torch.no_grad()
    def update_prior(self, logp: torch.Tensor, lens: torch.Tensor, backward: bool = False) -> None:
        valid = torch.arange(logp.size(1), device=logp.device)[None] < lens[:, None]
        if bool(valid.any()):
            m = self.cfg.prior_momentum
            mean = logp.exp()[valid].mean(0)
            prior = self._net(backward).log_prior
            prior.copy_(torch.log((1 - m) * prior.exp() + m * mean).clamp_min(-30.0))

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
        (training mode also moves the running prior); with directions "both", plus the backward network's on
        the reversed waveforms and token sequences."""
        if self.train_only not in (None, "forward", "backward"):
            raise ValueError(f"train_only must be None, forward or backward, got {self.train_only!r}")
        loss = 0.0
        if self.train_only != "backward":
            loss = self._loss(wav, lens, tokens, token_lens, backward=False)
        if self.train_only == "backward" or (self.train_only is None and self.back is not None):
            loss = loss + self._loss(reverse_padded(wav, lens), lens, reverse_padded(tokens, token_lens), token_lens,
                                     backward=True)
        return loss

    def _loss(self, wav, lens, tokens, token_lens, backward: bool) -> torch.Tensor:
        logp, olens = self.encode(wav, lens, backward)
        if self.training:
            self.update_prior(logp.detach(), olens, backward)
        return self._nll(self.scores(logp, backward), olens, tokens, token_lens)

    def _nll(self, sc, olens, tokens, token_lens) -> torch.Tensor:
        """The training loss of the scores ``sc [B, T, V]`` (CTC, or :func:`topology_nll`), over the batch size."""
        if self.cfg.topology == "hmm" or self.cfg.inner_blank_penalty:
            return topology_nll(sc, olens, tokens, token_lens, topology=self.cfg.topology,
                                inner_blank_penalty=self.cfg.inner_blank_penalty).sum() / len(token_lens)
        tgt = torch.cat([tokens[i, :int(n)] for i, n in enumerate(token_lens)])
        return F.ctc_loss(sc.transpose(0, 1), tgt, olens, token_lens, blank=0, reduction="sum",
                          zero_infinity=True) / len(token_lens)

    def log_posteriors(self, wav, backward: bool = False, token_ids=None) -> torch.Tensor:
        """Log-posteriors ``[T, V]`` (float32, CPU) of one waveform ``[N]`` (numpy or tensor); ``backward``: the
        backward network's, of the reversed waveform (frame 0 is the end of the utterance).  With ``token_ids``
        (in the order that network reads them) and ``adapt_steps``, on the input :meth:`adapt` fits to them."""
        p = next(self.parameters())
        w = torch.as_tensor(wav, dtype=torch.float32, device=p.device).reshape(1, -1)
        if backward:
            w = w.flip(1)
        lens = torch.tensor([w.size(1)], device=p.device)
        with torch.no_grad():
            feats, flens = self.features(w, lens)
        transform = None
        if token_ids is not None and self.cfg.adapt_steps and len(token_ids):
            transform = self.adapt(feats, flens, token_ids, backward)
        with torch.no_grad():
            if transform is not None:
                feats = feats * transform[0].exp() + transform[1]
            lp, ol = self.network(feats, flens, backward)
        return lp[0, :int(ol[0])].float().cpu()

    def adapt(self, feats: torch.Tensor, flens: torch.Tensor, token_ids, backward: bool = False
              ) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(log_scale, shift)`` ``[n_mels]`` fitted to one utterance (``feats [1, F, n_mels]``, :meth:`features`):
        ``adapt_steps`` Adam steps (``adapt_lr``, from the identity) on the training loss of ``token_ids`` given
        the features ``feats * exp(log_scale) + shift``; the weights stay as they are.  A per-utterance form of
        the speaker adaptation of HMM aligners (MFA's fMLLR pass): the known text pulls an unheard voice's
        features towards what the network was trained on.  A per-frame transform the same for every frame:
        it cannot move a sound in time."""
        # gradients even when called under torch.no_grad or torch.inference_mode (a clone made outside inference
        # mode can be saved for backward); they are taken for a and b alone, the weights' .grad stay as they are
        with torch.inference_mode(False), torch.enable_grad():
            feats = feats.clone()
            n = feats.size(-1)
            a = torch.zeros(n, device=feats.device, requires_grad=True)
            b = torch.zeros(n, device=feats.device, requires_grad=True)
            opt = torch.optim.Adam([a, b], lr=self.cfg.adapt_lr)
            tokens = torch.as_tensor([int(t) for t in token_ids], device=feats.device)[None]
            token_lens = torch.tensor([tokens.size(1)], device=feats.device)
            for _ in range(self.cfg.adapt_steps):
                lp, ol = self.network(feats * a.exp() + b, flens, backward)
                loss = self._nll(self.scores(lp, backward), ol, tokens, token_lens)
                a.grad, b.grad = torch.autograd.grad(loss, [a, b])
                opt.step()
        return a.detach(), b.detach()

    def align_scores(self, wav, backward: bool = False) -> torch.Tensor:
        """Alignment scores ``[T, V]`` (float32, CPU; :meth:`scores` of :meth:`log_posteriors`) of one waveform."""
        return self.scores(self.log_posteriors(wav, backward), backward)

    def times(self, wav, token_ids, time_offset: float = 0.0, direction: Optional[str] = None):
        """The times of ``token_ids`` in the waveform ``wav`` ``[N]`` (16 kHz): a list of
        :class:`avsr.alignment.TokenTime`, seconds plus ``time_offset``, ``conf`` the token's largest posterior
        over its frames.  The one place that times tokens with this aligner (``transcribe``, ``avsr decode``,
        the bench).  ``direction`` None: the aligner's own (with directions "both", each token's start, end and
        conf are the means of the forward and the backward network's, its frames the forward network's);
        "forward" or "backward": that network alone.  With ``adapt_steps``, each network first adapts its input to
        ``token_ids`` (:meth:`adapt`)."""
        ids = [int(t) for t in token_ids]
        direction = direction or ("both" if self.back is not None else "forward")
        if direction not in ("forward", "backward", "both"):
            raise ValueError(f"direction must be forward, backward or both, got {direction!r}")
        fwd = bwd = None
        if direction != "backward":
            lp = self.log_posteriors(wav, token_ids=ids)
            fwd = self.token_times(self.scores(lp), ids, time_offset=time_offset)
            _set_conf(fwd, lp)
        if direction != "forward":
            lp = self.log_posteriors(wav, backward=True, token_ids=ids[::-1])
            rev = self.token_times(self.scores(lp, backward=True), ids[::-1])
            _set_conf(rev, lp)
            n = lp.size(0)
            # reversed time t is forward time (end of the waveform) - t: a token's start is that minus its reversed end
            end = time_offset + len(wav) / float(SAMPLE_RATE)
            bwd = [dataclasses.replace(x, start=round(end - x.end, 3), end=round(end - x.start, 3),
                                       first_frame=n - 1 - x.last_frame, last_frame=n - 1 - x.first_frame)
                   for x in rev[::-1]]
        if fwd is None or bwd is None:
            return fwd if bwd is None else bwd
        return [dataclasses.replace(f, start=round((f.start + b.start) / 2, 3), end=round((f.end + b.end) / 2, 3),
                                    conf=round((f.conf + b.conf) / 2, 4)) for f, b in zip(fwd, bwd)]

    def token_times(self, scores, token_ids, time_offset: float = 0.0):
        """Times of ``token_ids`` on this aligner's ``scores`` (:meth:`align_scores`): :func:`avsr.alignment.token_times`
        with the aligner's frame clock, topology, inner blank penalty and timing rule (with its posterior scale and
        margin)."""
        from avsr.alignment import token_times
        off, stride = self.frame_times()
        return token_times(scores, token_ids, offset=off, stride=stride, time_offset=time_offset,
                           topology=self.cfg.topology, inner_blank_penalty=self.cfg.inner_blank_penalty,
                           rule=self.cfg.rule, posterior_scale=self.cfg.posterior_scale,
                           posterior_margin=self.cfg.posterior_margin)


def _set_conf(tt, logp: torch.Tensor) -> None:
    """Each token's conf: its largest posterior over its frames (alignment scores carry the prior, not in [0, 1])."""
    for x in tt:
        x.conf = round(float(logp[x.first_frame:x.last_frame + 1, x.token_id].max().exp()), 4)


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
