"""Far-field microphone array front-end: channel files -> one enhanced channel.

A MISP2022 far array is written as separate mono files ``<session>_Far_<ch>.wav`` (16 kHz,
``ch = 0..5`` in the release).  This module finds a session's channel files, loads them as one
``[C, N]`` array and reduces the array to one signal with one of three front-ends
(:data:`MODES`):

``ch0``
    the reference channel as it is (``ref``, default 0: what a data dir whose ``wav.scp`` points
    at ``_Far_0.wav`` reads).
``mean``
    the equal-weight average of all channels (no steering, no delay compensation).
``wpe``
    multi-channel weighted prediction error dereverberation (nara-wpe, numpy) of all channels
    jointly, then the reference channel (default 0) of the dereverberated array.

WPE settings (facts from the official baselines, mispchallenge/misp2022_baseline
``track1_AVSD/data_prepare/run_wpe.py`` and ``track2_AVDR/local/run_wpe.py``; the code here is
this toolkit's own):

* STFT from ``nara_wpe.utils.stft``/``istft``: FFT size 512, shift 128 (32 ms / 8 ms), window
  length = FFT size, nara-wpe's default Blackman window, ``fading=True``, ``pad=True``,
  ``symmetric_window=False`` (:data:`WPE_STFT`);
* ``nara_wpe.wpe.wpe_v8`` with ``iterations=5``, ``statistics_mode="full"`` and nara-wpe's default
  ``taps=10``, ``delay=3`` (the baselines leave these at the default; :data:`WPE_OPTIONS`);
* all channels of a session in one call (a ``[F, C, T]`` STFT, so the prediction filter of each
  channel uses every channel's past);
* track 1 processes a session in consecutive 5-minute blocks (track 2 processes it whole): here
  :data:`WPE_BLOCK_S` = 300 s blocks, each dereverberated on its own and trimmed to its exact
  length before concatenation (so the output is aligned with the input sample for sample).

Which channel is kept: the baselines write all six dereverberated channels and then beamform
them with BeamformIt (``track2_AVDR/local/enhancement.sh``).  BeamformIt is not part of this
toolkit, so ``wpe`` returns one channel of the dereverberated array: the reference channel
``ref`` (default 0, the channel the toolkit's data dirs read without a front-end).

Documented behaviours
---------------------
* :func:`far_channel_paths` lists the existing sibling files ``<prefix>_Far_<k>.wav`` of one
  channel file, sorted by ``k`` as an integer; a name that is not ``<prefix>_Far_<k>.wav``, or a
  file that does not exist, raises :class:`~frontends.errors.MediaError` naming it.  With
  ``expect=C`` the channels ``0..C-1`` must all exist (the first missing one is named in the
  error) and only those are returned.
* :func:`load_far_array` requires every file to be a readable mono file at
  :data:`~frontends.constants.SAMPLE_RATE` (no resampling: another rate, several channels in one
  file, or an unreadable file raises :class:`~frontends.errors.MediaError` naming the file).
  Channels of different lengths are **trimmed to the shortest** (as the official baselines do),
  with a logged warning naming the files and lengths (also appended to ``notes`` when given).
* :func:`far_frontend` returns float32 ``[N]``, the same length as its input ``[C, N]``.  A
  one-channel input is accepted by every mode (``wpe`` then is single-channel WPE).
"""
from __future__ import annotations

import logging
import os
import re
from typing import List, Optional, Sequence

import numpy as np

from frontends.audio import audio_info, load_audio
from frontends.constants import SAMPLE_RATE
from frontends.errors import MediaError

__all__ = ["MODES", "WPE_STFT", "WPE_OPTIONS", "WPE_BLOCK_S", "FAR_NAME", "far_channel_paths",
           "load_far_array", "far_frontend", "wpe_dereverb"]

log = logging.getLogger(__name__)

#: The front-ends of :func:`far_frontend`.
MODES = ("ch0", "mean", "wpe")

#: ``nara_wpe.utils.stft`` options of the official baselines (FFT size 512, shift 128).
WPE_STFT = dict(size=512, shift=128, window_length=None, fading=True, pad=True,
                symmetric_window=False)

#: ``nara_wpe.wpe.wpe_v8`` options of the official baselines (taps and delay: nara-wpe defaults).
WPE_OPTIONS = dict(taps=10, delay=3, iterations=5, statistics_mode="full")

#: Block length in seconds: WPE runs on consecutive blocks of this length (official track 1).
WPE_BLOCK_S = 300.0

#: ``<prefix>_Far_<ch>.wav``
FAR_NAME = re.compile(r"^(?P<prefix>.+)_Far_(?P<ch>\d+)\.wav$")


def far_channel_paths(wav_path: "str | os.PathLike[str]", expect: Optional[int] = None) -> List[str]:
    """The channel files of the far array that ``wav_path`` (``<prefix>_Far_<k>.wav``) belongs to.

    Returns the existing files ``<prefix>_Far_<j>.wav`` of the same folder sorted by ``j``
    (``wav_path`` itself included).  With ``expect=C``: exactly ``<prefix>_Far_0..C-1.wav``, each
    of which must exist.  Raises :class:`~frontends.errors.MediaError` naming ``wav_path`` when
    its name does not fit or it does not exist, or naming the first missing channel file.
    """
    wav_path = os.fspath(wav_path)
    folder, name = os.path.split(wav_path)
    m = FAR_NAME.match(name)
    if m is None:
        raise MediaError(wav_path, "not a far-array channel file (expected <session>_Far_<ch>.wav)")
    if not os.path.isfile(wav_path):
        raise MediaError(wav_path, "file not found")
    prefix = m.group("prefix")
    found = {}
    for entry in os.listdir(folder or "."):
        em = FAR_NAME.match(entry)
        if em is not None and em.group("prefix") == prefix \
                and os.path.isfile(os.path.join(folder, entry)):
            found.setdefault(int(em.group("ch")), os.path.join(folder, entry))
    if expect is None:
        return [found[k] for k in sorted(found)]
    if expect < 1:
        raise ValueError(f"expect must be >= 1, got {expect}")
    for k in range(expect):
        if k not in found:
            have = ",".join(str(j) for j in sorted(found))
            raise MediaError(os.path.join(folder, f"{prefix}_Far_{k}.wav"),
                             f"far-array channel file missing (expected channels 0..{expect - 1}, "
                             f"found {have})")
    return [found[k] for k in range(expect)]


def load_far_array(paths: Sequence["str | os.PathLike[str]"],
                   notes: Optional[List[str]] = None) -> np.ndarray:
    """float32 ``[C, N]``: the mono files ``paths`` as rows, trimmed to the shortest file.

    Each file must be readable, mono and at :data:`~frontends.constants.SAMPLE_RATE`, else
    :class:`~frontends.errors.MediaError` naming it.  A length mismatch trims every channel to the
    shortest one and logs a warning (also appended to ``notes`` when a list is given).
    """
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise ValueError("load_far_array: no channel files given")
    for p in paths:
        info = audio_info(p)
        if info.sr != SAMPLE_RATE:
            raise MediaError(p, f"sample rate {info.sr} Hz, the far-array front-end needs "
                                f"{SAMPLE_RATE} Hz")
        if info.channels != 1:
            raise MediaError(p, f"{info.channels} channels in one file, expected a mono channel file")
    rows = [load_audio(p, target_sr=SAMPLE_RATE, channel=0) for p in paths]
    lengths = [len(r) for r in rows]
    n = min(lengths)
    if max(lengths) != n:
        msg = (f"{paths[0]}: far-array channels differ in length, trimmed to the shortest "
               f"({n} samples): " + ", ".join(f"{os.path.basename(p)}={k}"
                                               for p, k in zip(paths, lengths)))
        log.warning(msg)
        if notes is not None:
            notes.append(msg)
    return np.stack([r[:n] for r in rows]).astype(np.float32, copy=False)


def wpe_dereverb(x: np.ndarray, block_s: float = WPE_BLOCK_S,
                 keep: Optional[Sequence[int]] = None) -> np.ndarray:
    """All channels of ``x`` (float ``[C, N]``) dereverberated jointly: float32 ``[len(keep), N]``.

    Settings: :data:`WPE_STFT`, :data:`WPE_OPTIONS`, blocks of ``block_s`` seconds
    (:data:`WPE_BLOCK_S`).  ``keep``: the channels returned (default: all); every channel takes
    part in the prediction either way, only the inverse STFT is skipped for the others.  Memory:
    the STFT of one block of all channels (complex128, about 0.18 GB per minute of 6 channels)
    plus one channel's transforms at a time.
    """
    from nara_wpe.utils import istft, stft
    from nara_wpe.wpe import wpe_v8

    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"wpe_dereverb expects [C, N], got shape {x.shape}")
    keep = list(range(x.shape[0])) if keep is None else [int(c) for c in keep]
    n = x.shape[1]
    block = max(1, int(round(block_s * SAMPLE_RATE)))
    out = np.zeros((len(keep), n), dtype=np.float32)
    for s in range(0, n, block):
        seg = x[:, s:s + block]
        if not np.any(seg):          # digital silence: WPE's power normalisation would divide by 0
            continue
        spec = None
        for c in range(seg.shape[0]):                                  # one channel at a time
            sc = stft(seg[c].astype(np.float64), **WPE_STFT)           # [T, F]
            if spec is None:
                spec = np.empty((sc.shape[1], seg.shape[0], sc.shape[0]), dtype=sc.dtype)
            spec[:, c, :] = sc.T                                       # [F, C, T]
            del sc
        wpe_v8(spec, **WPE_OPTIONS, inplace=True)                      # frequency by frequency
        for i, c in enumerate(keep):
            y = istft(spec[:, c, :].T, size=WPE_STFT["size"], shift=WPE_STFT["shift"])
            out[i, s:s + seg.shape[1]] = y[:seg.shape[1]]
        del spec
    return out


def far_frontend(x: np.ndarray, mode: str, ref: int = 0) -> np.ndarray:
    """One channel float32 ``[N]`` from a far array ``x`` (float ``[C, N]``) by front-end ``mode``.

    ``ch0``: channel ``ref``; ``mean``: channel average; ``wpe``: channel ``ref`` of
    :func:`wpe_dereverb` (all channels dereverberated jointly).  ``ref`` (default 0) is the
    reference channel, e.g. the channel a data dir's ``wav.scp`` names.
    """
    if mode not in MODES:
        raise ValueError(f"unknown far front-end mode {mode!r} (choose from {', '.join(MODES)})")
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"far_frontend expects [C, N] with C >= 1, got shape {x.shape}")
    if not 0 <= ref < x.shape[0]:
        raise ValueError(f"reference channel {ref} out of range for {x.shape[0]} channels")
    if mode == "ch0":
        return x[ref].astype(np.float32)
    if mode == "mean":
        return x.mean(axis=0, dtype=np.float64).astype(np.float32)
    return wpe_dereverb(x, keep=[ref])[0]
