"""Audio front-end: any wav/flac on disk -> mono float32 at 16 kHz.

Reading is done with :mod:`soundfile` (libsndfile), so every sample rate, channel
count and bit depth libsndfile knows is accepted (8-bit unsigned, 16/24/32-bit
signed integer, 32/64-bit float, in WAV, FLAC, ...).  Integer PCM is scaled to
``[-1, 1)`` by libsndfile; float files are returned as stored (no clipping).

Documented behaviours
---------------------
* **Channels**: ``channel="mean"`` (the default) averages all channels with equal
  weight (for a mono file this is the identity); an ``int`` selects that channel
  (0-based; negative indices are not accepted).
* **Resampling**: :func:`resample` is polyphase filtering with
  :func:`scipy.signal.resample_poly` using ``up = sr_out / g`` and
  ``down = sr_in / g`` with ``g = gcd(sr_in, sr_out)`` (scipy's default Kaiser
  window).  The output has ``ceil(N * sr_out / sr_in)`` samples.  Channel selection
  or averaging happens *before* resampling.
* **Segments**: ``start``/``end`` are seconds in the file's own time line; only
  the frames ``[round(start * sr), round(end * sr))`` are read from disk (soundfile
  seek + read).  ``end=None`` means the end of the file.  An ``end`` up to
  :data:`END_TOLERANCE_S` past the file end is clamped to the end (rounding in
  segment lists); anything later, or a ``start`` at/after the end, raises
  :class:`~frontends.errors.MediaError` stating the file's duration.
  ``start < 0`` or ``end <= start`` is a caller bug and raises ``ValueError``.
* **Bad input** always raises :class:`~frontends.errors.MediaError` (``str()``
  starts with the path): missing file, not a regular file, 0-byte file, file that
  is not audio libsndfile can parse, zero-length audio, channel index out of
  range, segment outside the file, and truncated/corrupt files.  Truncation is
  detected (a) for RIFF/WAVE files whose ``data`` chunk declares more bytes than
  the file holds (libsndfile would otherwise silently return the shorter
  remainder), and (b) for any format whose decoder fails, or returns fewer frames
  than its header declares, while reading the requested part.
"""
from __future__ import annotations

import math
import os
import re
import struct
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from frontends.constants import SAMPLE_RATE
from frontends.errors import MediaError, check_file as _check_file, check_time_range

__all__ = ["AudioInfo", "audio_info", "load_audio", "resample", "END_TOLERANCE_S", "TARGET_SR"]

#: Default output sample rate of :func:`load_audio` (:data:`frontends.constants.SAMPLE_RATE`).
TARGET_SR = SAMPLE_RATE

#: A requested segment ``end`` may exceed the file duration by at most this many
#: seconds (one 10 ms unit of Kaldi segment times); it is then clamped to the end
#: of the file.
END_TOLERANCE_S = 0.01


@dataclass(frozen=True)
class AudioInfo:
    """Header facts of an audio file (nothing is decoded)."""

    sr: int  #: sample rate in Hz
    num_frames: int  #: samples per channel
    channels: int
    duration: float  #: ``num_frames / sr`` seconds
    subtype: str  #: libsndfile subtype, e.g. ``"PCM_16"``, ``"PCM_U8"``, ``"FLOAT"``


def _libsndfile_reason(e: Exception) -> str:
    msg = str(e)
    # soundfile prefixes "Error opening '<path>': " - the path is already in MediaError
    if ": " in msg and msg.startswith("Error opening"):
        msg = msg.split(": ", 1)[1]
    return msg.strip() or type(e).__name__


def _wav_truncation(path: str) -> Optional[str]:
    """Reason string if a RIFF/WAVE file's data chunk is cut short, else None.

    Only plain RIFF/WAVE is inspected; a declared size of 0 or 0xFFFFFFFF (what
    streaming writers leave when they cannot seek back) is treated as "unknown".
    """
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            size = os.fstat(f.fileno()).st_size
            pos = 12
            block_align = None
            while pos + 8 <= size:
                f.seek(pos)
                ck = f.read(8)
                if len(ck) < 8:
                    return None
                cid, clen = ck[:4], struct.unpack("<I", ck[4:])[0]
                if cid == b"fmt " and clen >= 14:
                    fmt = f.read(16)
                    if len(fmt) >= 14:
                        block_align = struct.unpack("<H", fmt[12:14])[0]
                if cid == b"data":
                    if clen in (0, 0xFFFFFFFF):
                        return None
                    have = size - (pos + 8)
                    if have < clen:
                        if block_align:
                            return (f"truncated/corrupt WAV: header declares {clen // block_align} frames "
                                    f"but only {have // block_align} are present")
                        return f"truncated/corrupt WAV: data chunk declares {clen} bytes, file holds {have}"
                    return None
                pos += 8 + clen + (clen & 1)
    except OSError:
        return None
    return None


def audio_info(path: "str | os.PathLike[str]") -> AudioInfo:
    """Read the header of ``path``.

    Raises :class:`MediaError` for a missing, empty or non-audio file, and for a
    WAV file whose data chunk is truncated.  A zero-length file is *reported*
    (``num_frames == 0``) here; :func:`load_audio` refuses it.
    """
    path = os.fspath(path)
    _check_file(path)
    try:
        info = sf.info(path)
    except (sf.SoundFileError, RuntimeError) as e:
        raise MediaError(path, f"not a readable audio file ({_libsndfile_reason(e)})") from None
    trunc = _wav_truncation(path)
    if trunc:
        raise MediaError(path, trunc)
    sr = int(info.samplerate)
    if sr <= 0:
        raise MediaError(path, f"invalid sample rate {sr}")
    n = int(info.frames)
    return AudioInfo(sr=sr, num_frames=n, channels=int(info.channels), duration=n / sr,
                     subtype=str(info.subtype))


def _as_int_rate(sr, name: str) -> int:
    r = float(sr)
    if not math.isfinite(r) or r <= 0 or r != int(r):
        raise ValueError(f"{name} must be a positive integer rate in Hz, got {sr!r}")
    return int(r)


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample ``x`` (1-D, or [..., N] along the last axis) from ``sr_in`` to ``sr_out`` Hz.

    Polyphase filtering with ``scipy.signal.resample_poly(x, sr_out/g, sr_in/g)``,
    ``g = gcd(sr_in, sr_out)``.  Rates must be positive integers (``44100.0`` is
    fine).  Equal rates return a float32 copy.  Output dtype is float32 and the
    length is ``ceil(N * sr_out / sr_in)``.
    """
    a, b = _as_int_rate(sr_in, "sr_in"), _as_int_rate(sr_out, "sr_out")
    x = np.asarray(x)
    if a == b:
        return np.array(x, dtype=np.float32, copy=True)
    if x.shape[-1] == 0:
        return np.zeros(x.shape, dtype=np.float32)
    g = math.gcd(a, b)
    y = resample_poly(np.asarray(x, dtype=np.float64), b // g, a // g, axis=-1)
    return y.astype(np.float32, copy=False)


def load_audio(path: "str | os.PathLike[str]", *, target_sr: Optional[int] = TARGET_SR,
               channel: Union[int, str] = "mean", start: float = 0.0,
               end: Optional[float] = None) -> np.ndarray:
    """Load (part of) an audio file as 1-D float32 at ``target_sr`` Hz.

    Parameters
    ----------
    path: wav / flac / anything libsndfile reads.
    target_sr: output rate (default 16 kHz); ``None`` keeps the file's rate.
    channel: ``"mean"`` (default) = average of all channels; an ``int`` = that
        0-based channel.  Out of range -> :class:`MediaError`.
    start, end: segment in seconds (``end=None``: to the end of the file); only
        frames ``[round(start*sr), round(end*sr))`` are read.  See the module
        docstring for the tolerance and the errors.

    Returns
    -------
    np.ndarray float32 [N]; ``N = ceil(n_read * target_sr / sr)``.
    """
    path = os.fspath(path)
    info = audio_info(path)
    if isinstance(channel, str):
        if channel != "mean":
            raise ValueError(f"channel must be an int or 'mean', got {channel!r}")
    elif isinstance(channel, (bool, np.bool_)) or not isinstance(channel, (int, np.integer)):
        raise ValueError(f"channel must be an int or 'mean', got {channel!r}")
    elif not 0 <= int(channel) < info.channels:
        raise MediaError(path, f"channel {int(channel)} out of range: file has {info.channels} channel(s)")
    if info.num_frames == 0:
        raise MediaError(path, "zero-length audio (0 samples)")
    start, end = check_time_range(start, end)
    sr, n = info.sr, info.num_frames
    dur = info.duration
    f0 = int(round(start * sr))
    if f0 >= n:
        raise MediaError(path, f"segment outside the file: start {start:.3f} s >= "
                               f"file duration {dur:.3f} s")
    if end is None:
        f1 = n
    else:
        if end > dur + END_TOLERANCE_S:
            raise MediaError(path, f"segment outside the file: requested {start:.3f}-{end:.3f} s "
                                   f"but the file duration is {dur:.3f} s")
        f1 = min(n, int(round(end * sr)))
    want = max(0, f1 - f0)
    try:
        with sf.SoundFile(path) as f:
            if f0:
                f.seek(f0)
            data = f.read(want, dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError) as e:
        raise MediaError(path, f"truncated/corrupt audio: decoding failed after "
                               f"~{start:.3f} s ({_libsndfile_reason(e)})") from None
    if data.shape[0] < want:
        got_t = (f0 + data.shape[0]) / sr
        raise MediaError(path, f"truncated/corrupt audio: only {got_t:.3f} s decodable "
                               f"but the header says {dur:.3f} s")
    if isinstance(channel, str):
        x = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float64)
    else:
        x = data[:, int(channel)]
    x = np.ascontiguousarray(x, dtype=np.float32)
    if target_sr is None or int(target_sr) == sr:
        return x
    return resample(x, sr, target_sr)


_ARK_OFFSET = re.compile(r".*\.ark(\.gz)?:\d+(\[[^\]]*\])?$")


def is_kaldi_entry(entry: str) -> bool:
    """Whether a ``wav.scp`` value is a Kaldi pipe (``cmd ... |``) or an ark entry (``file.ark:offset``)
    rather than a file path."""
    e = str(entry).strip()
    return e.endswith("|") or bool(_ARK_OFFSET.match(e))


def load_kaldi_audio(entry: str, *, target_sr: Optional[int] = TARGET_SR, channel: Union[int, str] = "mean",
                     start: float = 0.0, end: Optional[float] = None) -> np.ndarray:
    """:func:`load_audio` for a Kaldi ``wav.scp`` value that is a pipe or an ark entry, read with
    kaldiio (the pipe's output or the ark's record must be a wav); same result conventions."""
    try:
        import kaldiio
    except ImportError:  # pragma: no cover - kaldiio is a dependency
        raise MediaError(entry, "Kaldi pipe/ark entries need kaldiio (pip install kaldiio)") from None
    try:
        got = kaldiio.load_mat(str(entry).strip())
    except Exception as e:  # noqa: BLE001 - kaldiio raises many kinds; one line naming the entry
        raise MediaError(entry, f"cannot read this Kaldi wav.scp entry ({type(e).__name__}: {e})") from None
    if not (isinstance(got, tuple) and len(got) == 2):
        raise MediaError(entry, "not audio: the entry holds a matrix, not (rate, samples)")
    sr, data = int(got[0]), np.asarray(got[1])
    if data.ndim == 1:
        data = data[:, None]
    if data.dtype.kind == "i":
        data = data.astype(np.float32) / float(np.iinfo(data.dtype).max + 1)
    data = data.astype(np.float32)
    n = data.shape[0]
    if n == 0:
        raise MediaError(entry, "zero-length audio (0 samples)")
    if not isinstance(channel, str) and not 0 <= int(channel) < data.shape[1]:
        raise MediaError(entry, f"channel {int(channel)} out of range: the audio has {data.shape[1]} channel(s)")
    start, end = check_time_range(start, end)
    f0 = int(round(start * sr))
    f1 = n if end is None else min(n, int(round(end * sr)))
    if f0 >= n or (end is not None and end > n / sr + END_TOLERANCE_S):
        raise MediaError(entry, f"segment {start:.3f}-{end if end is not None else n / sr:.3f} s outside the "
                                f"audio ({n / sr:.3f} s)")
    data = data[f0:f1]
    x = data.mean(axis=1, dtype=np.float64) if isinstance(channel, str) and data.shape[1] > 1 else \
        data[:, 0 if isinstance(channel, str) else int(channel)]
    x = np.ascontiguousarray(x, dtype=np.float32)
    if target_sr is None or int(target_sr) == sr:
        return x
    return resample(x, sr, target_sr)
