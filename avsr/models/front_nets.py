"""Audio and visual front-end *networks* (arrays -> embeddings; the media front-ends that turn
files into arrays are the top-level :mod:`frontends` package).  Every module here has
``forward(xs, lens) -> (out, out_lens)``.

Audio (:class:`AudioFrontend`)
    16 kHz waveform -> ESPnet ``Stft`` (n_fft 512, hann window 400, hop 160, **center=False**) ->
    power -> ESPnet ``LogMel`` (80 bins, natural log) -> global mean/variance normalisation with
    ``feat_mean``/``feat_std`` buffers (ESPnet ``GlobalMVN`` idea; filled by
    ``set_normalization`` / :func:`compute_feature_stats`) -> SpecAug time masks (training only,
    ESPnet ``SpecAug`` with time warp and frequency masks off).
    ``center=False`` is Kaldi's snip-edges framing: ``frames = 1 + (N - 512) // 160`` and every frame
    depends only on samples inside the utterance, so the features do not depend on how much
    zero padding the batch adds (exact padding invariance).  Padded frames are set to 0.
    Minimum input: 512 + 6 * 160 samples (7 frames, needed by the 4x subsampling).

Visual
    ``uint8 [B, T, H, W]`` -> float / 255 -> ``(x - video_mean) / video_std``; frames beyond
    ``lens`` are set to 0 *after* normalisation (equal to the zero padding of Conv3D, so the
    output is independent of batch padding).
    :class:`ResNet18Frontend`: Conv3D(1->64, k=(5,7,7), s=(1,2,2), p=(2,3,3)) + BN3d + PReLU +
    MaxPool3d((1,3,3), (1,2,2), (0,1,1)) + per-frame ResNet-18 trunk (BasicBlocks 64-128-256-512,
    2 each) + global average pool -> Linear(512, d).
    :class:`LightFrontend`: per frame, area-resize 88 -> ``light_input_size`` (44), then
    ``len(light_channels)`` blocks of Conv2d(3x3, stride 2) + BN + ReLU, global average pool ->
    Linear(c_last, d).  Only valid frames go through the 2-D trunks (padded frames are skipped,
    which saves time and keeps them out of BatchNorm statistics); output at padded frames is 0.

:class:`VGGSubsampling` is the paper's "VGG" audio front-end option: 2 blocks of
[Conv3x3+ReLU, Conv3x3+ReLU, MaxPool 2x2] (channels ``vgg_channels``) -> Linear(c * n_mels/4, d);
4x in time (``T -> T // 4``), padded frames masked to 0 after every conv and pooling.
"""
from __future__ import annotations

from typing import Iterable, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from espnet.nets.pytorch_backend.nets_utils import make_pad_mask
from espnet2.asr.specaug.specaug import SpecAug
from espnet2.layers.mask_along_axis import MaskAlongAxis
from espnet2.layers.log_mel import LogMel
from espnet2.layers.stft import Stft

from frontends.constants import FBANK_HOP_LENGTH, FBANK_N_FFT, FBANK_N_MELS, FBANK_WIN_LENGTH, SAMPLE_RATE


def _valid(lens: torch.Tensor, T: int) -> torch.Tensor:
    """bool [B, T], True on valid positions."""
    return torch.arange(T, device=lens.device)[None, :] < lens[:, None]


class AudioFrontend(nn.Module):
    """Waveform -> normalised (and in training, time-masked) 80-dim log-mel fbank."""

    def __init__(self, fs=SAMPLE_RATE, n_fft=FBANK_N_FFT, win_length=FBANK_WIN_LENGTH,
                 hop_length=FBANK_HOP_LENGTH, n_mels=FBANK_N_MELS,
                 specaug=True, time_mask_width_range=(0, 40), num_time_mask=2,
                 num_freq_mask=0, freq_mask_width_range=(0, 27)):
        super().__init__()
        self.stft = Stft(n_fft=n_fft, win_length=win_length, hop_length=hop_length,
                         center=False, window="hann")
        self.logmel = LogMel(fs=fs, n_fft=n_fft, n_mels=n_mels)
        self.n_mels = n_mels
        self.register_buffer("feat_mean", torch.zeros(n_mels))
        self.register_buffer("feat_std", torch.ones(n_mels))
        self.specaug = (SpecAug(apply_time_warp=False, apply_freq_mask=False, apply_time_mask=True,
                                time_mask_width_range=tuple(time_mask_width_range),
                                num_time_mask=num_time_mask)
                        if specaug and num_time_mask > 0 else None)
        # frequency masks (off in the paper's form): applied after the time masks, outside the marker
        # column that reads the time mask off SpecAug, so that column is never frequency-masked
        self.freq_mask = (MaskAlongAxis(mask_width_range=tuple(freq_mask_width_range), num_mask=num_freq_mask,
                                        dim="freq") if specaug and num_freq_mask > 0 else None)

    def fbank(self, wav: torch.Tensor, lens: torch.Tensor, warp: Optional[torch.Tensor] = None
              ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Un-normalised log-mel [B, F, n_mels] and frame lengths (padded frames 0); ``warp`` [B]: each
        utterance's power spectrum first warped along frequency by :func:`vtlp` with that factor."""
        spec, flens = self.stft(wav.float(), lens)
        power = spec[..., 0] ** 2 + spec[..., 1] ** 2
        if warp is not None:
            power = vtlp(power, warp, self.logmel.mel_options["sr"])
        feats, flens = self.logmel(power, flens)
        feats = feats.masked_fill(~_valid(flens, feats.size(1))[..., None], 0.0)
        return feats, flens

    def set_normalization(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.feat_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.feat_std.copy_(torch.as_tensor(std, dtype=torch.float32).clamp_min(1e-5))

    def forward(self, wav: torch.Tensor, lens: torch.Tensor, warp: Optional[torch.Tensor] = None
                ) -> Tuple[torch.Tensor, torch.Tensor]:
        feats, flens, _ = self.forward_masked(wav, lens, warp)
        return feats, flens

    def forward_masked(self, wav: torch.Tensor, lens: torch.Tensor, warp: Optional[torch.Tensor] = None
                       ) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        """``(feats [B, F, n_mels], flens, time_mask)``: :meth:`forward` plus the SpecAug time mask it
        applied (bool [B, F], True = frame set to 0; None when SpecAug did not run).  The mask is
        read off ESPnet's ``SpecAug`` by masking one extra constant feature column with the
        spectrogram (its draws depend on the time axis only, so the random stream is the one
        ``SpecAug`` alone would use)."""
        feats, flens = self.fbank(wav, lens, warp)
        feats = (feats - self.feat_mean) / self.feat_std
        feats = feats.masked_fill(~_valid(flens, feats.size(1))[..., None], 0.0)
        tmask = None
        if self.training and self.specaug is not None:
            marked = torch.cat([feats, feats.new_ones(feats.shape[:2] + (1,))], dim=-1)
            marked, _ = self.specaug(marked, flens)
            feats, tmask = marked[..., :-1].contiguous(), marked[..., -1] == 0
        if self.training and self.freq_mask is not None:
            feats, _ = self.freq_mask(feats, flens)
        return feats, flens, tmask


def vtlp(power: torch.Tensor, alpha: torch.Tensor, fs: int, f_hi: float = 4800.0) -> torch.Tensor:
    """Vocal tract length perturbation (Jaitly and Hinton, ICML 2013 workshop): the power spectra
    ``power [B, T, K]`` (bins 0..fs/2) with frequency ``f`` moved to ``g(f)``, the piecewise-linear warp of
    Kaldi's VTLN: ``g(f) = alpha * f`` up to ``f_hi * min(alpha, 1) / alpha``, then the straight line to
    ``(fs/2, fs/2)``, so 0 and Nyquist stay.  ``alpha [B]`` per utterance (> 1 moves formants up).  Each output
    bin reads the input at ``g^-1`` of its frequency by linear interpolation between the two nearest bins."""
    K = power.size(-1)
    nyq = fs / 2.0
    f = torch.linspace(0.0, nyq, K, device=power.device, dtype=power.dtype)[None]          # output bins
    a = alpha.to(power.dtype)[:, None]
    knee_out = f_hi * torch.clamp(a, max=1.0)                                              # g(knee_in)
    knee_in = knee_out / a
    src = torch.where(f <= knee_out, f / a, nyq - (nyq - f) * (nyq - knee_in) / (nyq - knee_out))
    pos = (src / nyq * (K - 1)).clamp(0, K - 1)                                            # [B, K]
    lo = pos.floor().long().clamp(max=K - 2)
    w = (pos - lo.to(pos.dtype))[:, None, :]
    idx = lo[:, None, :].expand(-1, power.size(1), -1)
    return power.gather(2, idx) * (1 - w) + power.gather(2, idx + 1) * w


@torch.no_grad()
def compute_feature_stats(frontend: AudioFrontend, batches: Iterable) -> Tuple[torch.Tensor, torch.Tensor]:
    """Global mean / std of the un-normalised fbank over all valid frames of ``batches``.

    ``batches`` yields ``avsr.data.batch.Batch`` (``audio``, ``audio_lens``) or ``(wav, lens)``
    pairs.  Sums are accumulated in float64 (ESPnet ``collect_stats``)."""
    n = 0
    s = torch.zeros(frontend.n_mels, dtype=torch.float64)
    ss = torch.zeros(frontend.n_mels, dtype=torch.float64)
    for b in batches:
        wav, lens = (b.audio, b.audio_lens) if hasattr(b, "audio") else b
        feats, flens = frontend.fbank(wav.to(frontend.feat_mean.device), lens.to(frontend.feat_mean.device))
        x = feats[_valid(flens, feats.size(1))].double().cpu()
        n += x.size(0)
        s += x.sum(0)
        ss += (x * x).sum(0)
    if n == 0:
        raise ValueError("compute_feature_stats: no frames")
    mean = s / n
    var = (ss / n - mean * mean).clamp_min(0.0)
    return mean.float(), var.sqrt().float().clamp_min(1e-5)


class VGGSubsampling(nn.Module):
    """2 VGG blocks, 4x subsampling in time and frequency, then Linear to ``odim``."""

    def __init__(self, idim: int, odim: int, channels: Sequence[int] = (32, 64)):
        super().__init__()
        c1, c2 = channels
        self.convs = nn.ModuleList([nn.Conv2d(1, c1, 3, padding=1), nn.Conv2d(c1, c1, 3, padding=1),
                                    nn.Conv2d(c1, c2, 3, padding=1), nn.Conv2d(c2, c2, 3, padding=1)])
        self.out = nn.Linear(c2 * (idim // 4), odim)

    def forward(self, x: torch.Tensor, lens: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x = x.unsqueeze(1)  # B,1,T,F
        for blk in range(2):
            for j in range(2):
                x = F.relu(self.convs[2 * blk + j](x))
                x = x * _valid(lens, x.size(2))[:, None, :, None]
            x = F.max_pool2d(x, 2)
            lens = lens // 2
            x = x * _valid(lens, x.size(2))[:, None, :, None]
        b, c, t, f = x.shape
        x = self.out(x.transpose(1, 2).reshape(b, t, c * f))
        return x, lens


def _normalize_video(video: torch.Tensor, lens: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    x = (video.float() / 255.0 - mean) / std
    return x * _valid(lens, x.size(1))[:, :, None, None]


class BasicBlock(nn.Module):
    """ResNet BasicBlock (two 3x3 convs + BN, identity or 1x1-conv shortcut)."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                     if stride != 1 or cin != cout else None)

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.down is None else self.down(x)))


class ResNet18Frontend(nn.Module):
    """Conv3D stem + per-frame ResNet-18 trunk + global average pool + Linear(512, d)."""

    def __init__(self, odim: int, mean: float = 0.421, std: float = 0.165):
        super().__init__()
        self.mean, self.std = mean, std
        self.stem = nn.Sequential(
            nn.Conv3d(1, 64, (5, 7, 7), (1, 2, 2), (2, 3, 3), bias=False),
            nn.BatchNorm3d(64), nn.PReLU(64),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)))
        layers, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.trunk = nn.Sequential(*layers)
        self.proj = nn.Linear(512, odim)

    def forward(self, video: torch.Tensor, lens: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x = _normalize_video(video, lens, self.mean, self.std)  # B,T,H,W
        B, T = x.shape[:2]
        x = self.stem(x.unsqueeze(1))  # B,64,T,h,w
        x = x.transpose(1, 2)  # B,T,64,h,w
        valid = _valid(lens, T)
        y = self.trunk(x[valid])  # N,512,h',w'
        y = self.proj(y.mean(dim=(2, 3)))
        out = y.new_zeros(B, T, y.size(-1))
        out[valid] = y
        return out, lens


class LightFrontend(nn.Module):
    """Small per-frame 2-D CNN for CPU training (see module docstring)."""

    def __init__(self, odim: int, input_size: int = 44, channels: Sequence[int] = (16, 32, 64, 64),
                 mean: float = 0.421, std: float = 0.165):
        super().__init__()
        self.mean, self.std, self.input_size = mean, std, input_size
        layers, cin = [], 1
        for c in channels:
            layers += [nn.Conv2d(cin, c, 3, 2, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            cin = c
        self.cnn = nn.Sequential(*layers)
        self.proj = nn.Linear(cin, odim)

    def forward(self, video: torch.Tensor, lens: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        B, T = video.shape[:2]
        valid = _valid(lens, T)
        x = _normalize_video(video[valid].unsqueeze(0), valid.sum().view(1), self.mean, self.std)[0]
        x = x.unsqueeze(1)  # N,1,H,W
        if x.size(-1) != self.input_size or x.size(-2) != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="area")
        y = self.proj(self.cnn(x).mean(dim=(2, 3)))
        out = y.new_zeros(B, T, y.size(-1))
        out[valid] = y
        return out, lens
