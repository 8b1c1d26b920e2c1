"""Audio front-end: any wav/flac on disk, or the audio track of a video container -> mono float32
at :data:`~frontends.constants.SAMPLE_RATE`.

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
* **Video containers** (mp4, mov, m4a, mkv, webm, avi, ts, ...): a file libsndfile cannot read
  but FFmpeg opens as a container other than libsndfile's own formats (wav, w64, aiff, flac, au,
  caf, ...) is read by :func:`load_container_audio` (PyAV): its audio track is aligned to the
  video's frame grid (encoder priming dropped; see that function), averaged or channel-selected,
  and resampled with FFmpeg's resampler.  ``--wav video.mp4`` therefore works.  Such a file
  without an audio stream raises :class:`MediaError` ("no audio stream").  :func:`audio_info`
  still reads only what libsndfile reads.
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

__all__ = ["AudioInfo", "audio_info", "load_audio", "resample", "END_TOLERANCE_S", "TARGET_SR",
           "ContainerAudioInfo", "load_container_audio", "is_kaldi_entry", "load_kaldi_audio"]

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


def _segment_samples(path: str, start: float, end: Optional[float], n: int, sr: int, what: str,
                     check_end: bool = True) -> "tuple[int, int]":
    """Sample range ``[f0, f1)`` of the segment ``start``-``end`` s (None: to the end) in ``n`` samples at
    ``sr``; a segment outside them is a :class:`MediaError` naming ``path`` (``what``: "file" or "audio", the
    duration the message names).  An end within :data:`END_TOLERANCE_S` past the end is clipped;
    ``check_end=False`` clips any end (when ``n`` is not the stream's full length)."""
    dur = n / sr
    f0 = int(round(start * sr))
    if f0 >= n:
        raise MediaError(path, f"segment outside the file: start {start:.3f} s >= {what} duration {dur:.3f} s")
    if end is None:
        return f0, n
    if check_end and end > dur + END_TOLERANCE_S:
        raise MediaError(path, f"segment outside the file: requested {start:.3f}-{end:.3f} s "
                               f"but the {what} duration is {dur:.3f} s")
    return f0, min(n, int(round(end * sr)))


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
    path: wav / flac / anything libsndfile reads; or a video container with an audio track (then
        :func:`load_container_audio` is used: aligned to the video's grid, FFmpeg's resampler).
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
    try:
        info = audio_info(path)
    except MediaError as e:
        if e.reason.startswith("not a readable audio file") and _is_av_container(path):
            return load_container_audio(path, target_sr=target_sr, channel=channel, start=start, end=end)[0]
        raise
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
    f0, f1 = _segment_samples(path, start, end, n, sr, "file")
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


# --------------------------------------------------------------------------------------------
# Audio tracks of video containers (mp4, mov, mkv, ...), aligned to the video's frame grid
# --------------------------------------------------------------------------------------------

#: Formats libsndfile itself reads (FFmpeg's demuxer names): when libsndfile refuses such a file,
#: :func:`load_audio` reports libsndfile's error instead of trying the file as a video container.
_SNDFILE_FORMATS = frozenset({"wav", "w64", "aiff", "flac", "au", "caf", "voc", "sds", "rf64"})

#: FFmpeg demuxer names of the mov/mp4 family, whose audio streams declare an exact end.
_MOV_FORMATS = frozenset({"mov", "mp4", "m4a", "3gp", "3g2", "mj2"})

#: A jump in the audio frames' timestamps of more than this many seconds beyond the samples
#: decoded so far is a gap in the recording and is filled with silence.
CONTAINER_GAP_TOL_S = 0.02

#: Decoded audio ending more than this many seconds before the stream's declared end is reported
#: as a truncated/corrupt file.
CONTAINER_TRUNC_TOL_S = 0.1


@dataclass(frozen=True)
class ContainerAudioInfo:
    """How :func:`load_container_audio` placed a container's audio track on the video's time line.

    Times are seconds; ``origin`` and ``audio_start`` are on the container's clock, ``offset`` and
    ``end`` are relative to ``origin`` (the instant of video grid frame 0, see
    :mod:`frontends.video`).
    """

    path: str
    codec: str  #: FFmpeg decoder name of the audio stream, e.g. ``"aac"``
    source_sr: int  #: sample rate of the audio stream
    channels: int  #: channel count of the audio stream
    sr: int  #: sample rate of the returned samples
    has_video: bool  #: whether the container has a video stream (else the origin is the audio's own start)
    origin: float  #: container time of output sample 0 (the video's first frame)
    audio_start: float  #: container time of the first decoded sample (after the decoder's ``skip_samples``)
    offset: float  #: ``audio_start - origin``: > 0 silence was prepended, < 0 leading samples were dropped
    dropped: int  #: leading decoded samples (at ``source_sr``) before the origin, dropped (encoder priming)
    padded: int  #: zero samples (at ``source_sr``) prepended because the audio starts after the origin
    gap_samples: int  #: zero samples (at ``source_sr``) inserted into timestamp gaps
    end_trimmed: int  #: decoded samples (at ``source_sr``) past the stream's declared end, dropped (encoder padding)
    num_samples: int  #: length of the returned array (after ``start``/``end``)
    duration: float  #: ``num_samples / sr``


def _frame_float(frame) -> np.ndarray:
    """A decoded :class:`av.AudioFrame` as float32 ``[channels, samples]`` in ``[-1, 1)``."""
    a = frame.to_ndarray()
    fmt = frame.format
    ch = len(frame.layout.channels) or 1
    if not fmt.is_planar:
        a = a.reshape(-1, ch).T
    if a.dtype == np.uint8:
        return (a.astype(np.float32) - 128.0) / 128.0
    if a.dtype.kind == "i":
        return a.astype(np.float32) / float(np.iinfo(a.dtype).max + 1)
    return a.astype(np.float32, copy=False)


def _av_error_reason(e: BaseException) -> str:
    s = getattr(e, "strerror", None)
    return str(s) if s else (str(e) or type(e).__name__)


def _open_container(path: str):
    import av
    try:
        return av.open(path, mode="r")
    except av.error.FFmpegError as e:
        raise MediaError(path, f"not a readable media file ({_av_error_reason(e)})") from None
    except (OSError, ValueError) as e:
        raise MediaError(path, f"cannot open ({e})") from None


def _video_origin(path: str, container) -> Optional[float]:
    """Container time of video grid frame 0, defined as :mod:`frontends.video` defines it: the video
    stream's ``start_time``, else the first decoded video frame's timestamp; None without video."""
    import av
    if not container.streams.video:
        return None
    vs = container.streams.video[0]
    if vs.start_time is not None and vs.time_base is not None:
        return float(vs.start_time * vs.time_base)
    other = _open_container(path)
    try:
        st = other.streams.video[0]
        for frame in other.decode(st):
            ftb = frame.time_base or st.time_base
            if frame.pts is not None and ftb is not None:
                return float(frame.pts * ftb)
            return 0.0
    except av.error.FFmpegError as e:
        raise MediaError(path, f"cannot decode the first video frame ({_av_error_reason(e)})") from None
    finally:
        other.close()
    return 0.0


def _is_av_container(path: str) -> bool:
    """Whether FFmpeg opens ``path`` as a media container that is not one of libsndfile's own formats."""
    try:
        import av
        with av.open(path, mode="r") as c:
            names = set(str(c.format.name).split(","))
            return not (names & _SNDFILE_FORMATS) and bool(c.streams.audio or c.streams.video)
    except Exception:  # noqa: BLE001 - anything FFmpeg refuses is simply not a container
        return False


class _Resampler:
    """Mono float32 chunks at ``sr_in`` -> float32 at ``sr_out`` with PyAV's ``AudioResampler``
    (FFmpeg's libswresample, default filter; output aligned to the input, no net delay)."""

    def __init__(self, sr_in: int, sr_out: int):
        self.sr_in, self.sr_out = sr_in, sr_out
        self.out: list = []
        self.n_in = 0
        self.r = None
        if sr_in != sr_out:
            from av.audio.resampler import AudioResampler
            self.r = AudioResampler(format="fltp", layout="mono", rate=sr_out)

    def _take(self, frames) -> None:
        for f in frames:
            self.out.append(f.to_ndarray()[0].astype(np.float32, copy=False))

    def push(self, x: np.ndarray) -> None:
        if x.size == 0:
            return
        if self.r is None:
            self.out.append(np.ascontiguousarray(x, dtype=np.float32))
            return
        import av
        from fractions import Fraction
        for s in range(0, len(x), 1 << 16):
            part = np.ascontiguousarray(x[s:s + (1 << 16)], dtype=np.float32)[None, :]
            f = av.AudioFrame.from_ndarray(part, format="fltp", layout="mono")
            f.sample_rate = self.sr_in
            f.pts = self.n_in
            f.time_base = Fraction(1, self.sr_in)
            self.n_in += part.shape[1]
            self._take(self.r.resample(f))

    def finish(self) -> np.ndarray:
        if self.r is not None:
            self._take(self.r.resample(None))
        return np.concatenate(self.out) if self.out else np.zeros(0, np.float32)


def load_container_audio(path: "str | os.PathLike[str]", *, target_sr: Optional[int] = TARGET_SR,
                         channel: Union[int, str] = "mean", start: float = 0.0,
                         end: Optional[float] = None) -> "tuple[np.ndarray, ContainerAudioInfo]":
    """The audio track of a video container (mp4, mov, m4a, mkv, webm, avi, ts, ...) as 1-D float32
    at ``target_sr`` Hz, with sample 0 at the instant of the video's grid frame 0.

    What is used
    ------------
    * **Decoding**: PyAV (FFmpeg), first audio stream.  FFmpeg's demuxer turns the container's
      record of the encoder delay into timestamps: an mp4/mov edit list (``elst`` media time) gives
      the first packet a negative pts plus ``skip_samples`` side data, which the decoder applies
      (the AAC priming, typically 1024 or 2112 samples, never reaches us and the first decoded
      frame's pts is the first real sample).  Containers without such a record (Matroska, MPEG-TS
      from FFmpeg) keep the priming samples but time-stamp them *before* the video's first frame.
    * **Time line**: the origin is the video stream's ``start_time`` (times ``time_base``), else its
      first decoded frame's pts: the same origin as :func:`frontends.video.read_video`'s grid.  The
      first decoded audio frame's ``pts * time_base`` gives ``offset = audio_start - origin``;
      ``round(-offset * sr)`` leading samples are dropped when the audio starts earlier (priming,
      or a recording that started before the camera), ``round(offset * sr)`` zeros are prepended
      when it starts later.  Later frames follow contiguously; a timestamp jump of more than
      :data:`CONTAINER_GAP_TOL_S` beyond the decoded samples is filled with silence.  Samples past
      the stream's declared end (``start_time + duration``, e.g. the encoder's padding of the last
      AAC frame) are dropped; only for the mov/mp4 family (mp4, mov, m4a, 3gp), whose sample
      tables and edit list state that end exactly (other demuxers may estimate it).  A container without a video stream uses the audio stream's own
      ``start_time`` (clamped at 0) as the origin.  All of this is done at the source rate.
    * **Channels**: ``channel="mean"`` averages all channels with equal weight (as
      :func:`load_audio`); an ``int`` selects one (out of range: :class:`MediaError`).
    * **Resampling**: PyAV's ``AudioResampler`` (libswresample, default filter, flushed at the
      end); about ``N * target_sr / source_sr`` samples; ``target_sr=None`` keeps the source rate.
    * **Segments**: ``start``/``end`` are seconds on the aligned time line; the whole track up to
      ``end`` is decoded, then samples ``[round(start*sr), round(end*sr))`` are returned, with the
      same tolerance and errors as :func:`load_audio`.

    Errors (:class:`MediaError`, message starting with the path): missing/empty file, not a media
    file, no audio stream, decoding failure, no decodable samples, audio ending more than
    :data:`CONTAINER_TRUNC_TOL_S` before the stream's declared end (mov/mp4 family; a truncated file).

    Returns ``(samples float32 [N], ContainerAudioInfo)``.
    """
    import av
    path = os.fspath(path)
    _check_file(path)
    if isinstance(channel, str):
        if channel != "mean":
            raise ValueError(f"channel must be an int or 'mean', got {channel!r}")
    elif isinstance(channel, (bool, np.bool_)) or not isinstance(channel, (int, np.integer)):
        raise ValueError(f"channel must be an int or 'mean', got {channel!r}")
    start, end = check_time_range(start, end)
    container = _open_container(path)
    try:
        if not container.streams.audio:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            raise MediaError(path, f"no audio stream (streams: {', '.join(kinds)})")
        ast = container.streams.audio[0]
        cc = ast.codec_context
        sr_in = int(cc.sample_rate or 0)
        n_ch = int(cc.channels or 0) if hasattr(cc, "channels") else 0
        if sr_in <= 0:
            raise MediaError(path, f"audio stream has no valid sample rate ({sr_in})")
        if not isinstance(channel, str) and n_ch and not 0 <= int(channel) < n_ch:
            raise MediaError(path, f"channel {int(channel)} out of range: the audio stream has {n_ch} channel(s)")
        tb = ast.time_base
        vorigin = _video_origin(path, container)
        has_video = vorigin is not None
        a_st = float(ast.start_time * tb) if (ast.start_time is not None and tb is not None) else None
        # only the mov/mp4 family states the stream's end exactly (sample tables + edit list);
        # elsewhere (MPEG-TS, ...) FFmpeg may estimate the duration from the bit rate
        exact_end = bool(set(str(container.format.name).split(",")) & _MOV_FORMATS)
        declared_end = (float((ast.start_time + ast.duration) * tb)
                        if (exact_end and ast.start_time is not None and ast.duration and tb is not None)
                        else None)
        sr_out = sr_in if target_sr is None else _as_int_rate(target_sr, "target_sr")
        res = _Resampler(sr_in, sr_out)
        # samples at sr_in relative to the origin; stop a little after `end`
        stop_at = None if end is None else int(math.ceil((end + 0.2) * sr_in))
        origin = vorigin
        pos = None          # index (at sr_in, relative to origin) of the next sample to place
        audio_start = None
        padded = 0
        end_idx = None
        last_t = 0.0
        counts = {"dropped": 0, "gap": 0, "trimmed": 0}

        def place(x: np.ndarray, gap: bool) -> None:
            """Samples x at indices [pos, pos + len(x)): those before the origin are dropped,
            those at/after the declared end trimmed, the rest go to the resampler."""
            nonlocal pos
            n = len(x)
            lo = min(n, max(0, -pos))
            hi = n if end_idx is None else max(lo, min(n, end_idx - pos))
            res.push(x[lo:hi])
            if gap:
                counts["gap"] += hi - lo
            else:
                counts["dropped"] += lo
                counts["trimmed"] += n - hi
            pos += n

        try:
            for frame in container.decode(ast):
                if frame.samples == 0:
                    continue
                ftb = frame.time_base or tb
                t = float(frame.pts * ftb) if (frame.pts is not None and ftb is not None) else None
                if pos is None:
                    audio_start = t if t is not None else (a_st if a_st is not None else 0.0)
                    if origin is None:
                        origin = max(0.0, a_st if a_st is not None else audio_start)
                    pos = int(round((audio_start - origin) * sr_in))
                    if declared_end is not None:
                        end_idx = int(round((declared_end - origin) * sr_in))
                    if pos > 0:
                        padded = pos
                        res.push(np.zeros(pos, np.float32))
                elif t is not None:
                    want = int(round((t - origin) * sr_in))
                    if want - pos > CONTAINER_GAP_TOL_S * sr_in:
                        place(np.zeros(want - pos, np.float32), gap=True)
                x = _frame_float(frame)
                x = x.mean(axis=0, dtype=np.float64).astype(np.float32) if isinstance(channel, str) \
                    else x[int(channel)]
                place(x, gap=False)
                last_t = pos / sr_in
                if stop_at is not None and pos >= stop_at:
                    break
        except av.error.FFmpegError as e:
            raise MediaError(path, f"truncated/corrupt audio: decoding failed at t={last_t:.3f} s "
                                   f"({_av_error_reason(e)})") from None
        if pos is None:
            raise MediaError(path, "the audio stream has no decodable samples")
        decoded_end = pos if end_idx is None else min(pos, end_idx)
        if (stop_at is None or pos < stop_at) and end_idx is not None and \
                (end_idx - pos) > CONTAINER_TRUNC_TOL_S * sr_in:
            raise MediaError(path, f"truncated/corrupt audio: only {pos / sr_in:.3f} s decodable but the "
                                   f"stream header says {end_idx / sr_in:.3f} s")
        y = res.finish()
        codec = str(cc.name)
    finally:
        container.close()
    if len(y) == 0 or decoded_end <= 0:
        raise MediaError(path, "no audio samples at or after the video's first frame")
    if start > 0 or end is not None:
        # (decoding stopped at the segment's end: an end past the stream cannot be told from the data)
        full = stop_at is None or pos < stop_at
        f0, f1 = _segment_samples(path, start, end, len(y), sr_out, "audio", check_end=full)
        y = np.ascontiguousarray(y[f0:f1])
    info = ContainerAudioInfo(path=path, codec=codec, source_sr=sr_in, channels=n_ch, sr=sr_out,
                              has_video=has_video, origin=float(origin), audio_start=float(audio_start),
                              offset=float(audio_start - origin), dropped=counts["dropped"], padded=int(padded),
                              gap_samples=counts["gap"], end_trimmed=counts["trimmed"], num_samples=len(y),
                              duration=len(y) / sr_out)
    return y, info
