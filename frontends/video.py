"""Video front-end: mp4 (anything FFmpeg reads) -> frames on a fixed 25 fps grid.

Frames are decoded with PyAV and placed **by their timestamps**, never by their
index, so 24, 25, 29.97, 30 fps and variable-frame-rate (VFR) files all come out
on the same time grid.

Documented behaviours
---------------------
* **Time origin.**  Time 0 is the start of the video stream
  (``stream.start_time``; the first decoded frame's timestamp when the container
  does not store it).  For a constant 25 fps file, grid index == frame index.
* **Grid.**  Grid slot ``i`` is at time ``start + i / fps``.  Its frame is the
  decoded frame whose presentation time (``frame.pts * frame.time_base``) is
  nearest to the slot time (ties go to the earlier frame), so down-sampling
  (30 -> 25) drops frames and up-sampling (24 -> 25) repeats them.
* **Grid length.**  The decoded duration is ``t_last + d_last`` where ``t_last``
  is the last decoded frame's time and ``d_last`` its duration (``frame.duration``;
  when that is not set, the last inter-frame interval; for a single-frame file the
  nominal frame period).  Without ``end`` the grid has
  ``round((duration - start) * fps)`` slots; with ``end`` it has
  ``round((end - start) * fps)`` slots (rounding half up).
* **present mask.**  ``present[i]`` is True when the chosen frame lies within
  ``interval / 2 + max(1 ms, 10 % of interval)`` of the slot time, where
  ``interval`` is the *local* source frame interval: the smaller of the two
  intervals adjoining the chosen frame (the last frame uses its own duration for
  the missing neighbour).  Plain rate conversion (24/29.97/30 -> 25 fps) therefore
  gives all-True masks, while slots inside a VFR gap (e.g. no frames for 0.5 s) or
  at a dropped frame get False: they repeat the nearest real frame but are marked.
* **Non-increasing timestamps** (duplicated/broken pts) are dropped; a frame
  without a pts is placed one nominal frame period after the previous one.
* **Truncated / corrupt files.**  If the decoder fails part-way, or the decodable
  frames end more than ``max(0.1 s, 2 source frames)`` before the duration stored
  in the stream header, a :class:`~frontends.errors.MediaError`
  ``"truncated/corrupt video: ... at t=X s ..."`` is raised when decoding reaches
  that point.  :func:`iter_video` has by then already yielded the slots before
  the damage; :func:`read_video` returns nothing.  A :func:`read_video` call
  whose ``end`` lies before the damage succeeds (decoding stops at ``end``).
* **Segment beyond the end.**  :func:`read_video` with ``end`` (or ``start``)
  more than half a grid period past the decoded duration of an intact file raises
  ``MediaError("video is shorter than requested segment (X s < Y s)")``.
* **Other bad input** (missing, not a regular file, 0 bytes, not media, no video
  stream, zero decodable frames) raises :class:`MediaError`; ``str()`` starts with
  the path.
* **Threads.**  Decoding uses FFmpeg's automatic threading
  (``thread_type="AUTO"``, thread count from the CPU affinity mask).
  :func:`iter_video` keeps at most two decoded frames in memory.
* **Pixel conversion** (``fast=True``, the default) gives the same pixels as FFmpeg's swscale
  conversion of the whole frame (``frame.to_ndarray(format="gray"/"rgb24")``, the earlier path,
  still taken with ``fast=False``), at less cost: gray frames of 8-bit planar YUV
  (``yuv420p``, ``yuvj420p``, ``yuv422p``, ``yuv444p`` and their ``j`` forms) are the luma plane
  mapped through a 256-entry table that swscale itself computes once per stream (its gray output
  is a function of the luma value alone; the table is checked on a frame holding every value at
  many positions, and the whole-frame conversion is used when the check fails);
  :func:`iter_video_regions` converts only the requested region of each frame: gray through the
  same table, RGB by swscale on a small frame that holds the region's luma and chroma samples
  (region widened to whole chroma samples; swscale's unscaled YUV->RGB path uses the chroma sample
  of each pixel's own 2x2 block, so a pixel's colour does not depend on the region around it).
  Other pixel formats use the whole-frame conversion and slice it.  ``tests/test_roi_speed_identity.py``
  compares both paths pixel for pixel.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter

from frontends.constants import VIDEO_FPS
from frontends.errors import MediaError, check_file as _check_file, check_time_range

__all__ = ["VideoClip", "read_video", "iter_video", "iter_video_regions", "video_info", "GRID_FPS"]

#: Default grid rate (frames per second) of every video the toolkit reads (:data:`frontends.constants.VIDEO_FPS`).
GRID_FPS = float(VIDEO_FPS)

#: ``present`` tolerance: fraction of the local source interval added to its half ...
PRESENT_TOL_FRAC = 0.1
#: ... but at least this many seconds (timestamp rounding in the container).
PRESENT_TOL_S = 0.001

_EPS = 1e-9


@dataclass
class VideoClip:
    """Frames resampled onto a ``fps`` grid; slot ``i`` is at ``start + i / fps`` seconds."""

    frames: np.ndarray  #: uint8 [T, H, W] (gray) or [T, H, W, 3] (RGB)
    present: np.ndarray  #: bool [T]; False where no real frame was near the slot
    fps: float  #: grid rate
    source_fps: float  #: the stream's average frame rate (container value; measured if unset)
    path: str
    start: float = 0.0  #: time of slot 0 in seconds from the stream start

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    @property
    def times(self) -> np.ndarray:
        """float64 [T] slot times in seconds."""
        return self.start + np.arange(len(self), dtype=np.float64) / self.fps


def _av_reason(e: BaseException) -> str:
    s = getattr(e, "strerror", None)
    return str(s) if s else (str(e) or type(e).__name__)


def _open(path: str):
    """Open ``path`` and return ``(container, video_stream)``; MediaError on failure."""
    _check_file(path)
    try:
        container = av.open(path, mode="r")
    except av.error.FFmpegError as e:
        raise MediaError(path, f"not a readable media file ({_av_reason(e)})") from None
    except (OSError, ValueError) as e:
        raise MediaError(path, f"cannot open ({e})") from None
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        container.close()
        raise MediaError(path, f"no video stream (streams: {', '.join(kinds)})")
    return container, container.streams.video[0]


def _rate(stream) -> float:
    for r in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        try:
            if r is not None and float(r) > 0 and math.isfinite(float(r)):
                return float(r)
        except (ZeroDivisionError, TypeError, ValueError):
            continue
    return 0.0


def _header_duration(stream) -> Optional[float]:
    if stream.duration is not None and stream.duration > 0 and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return None


def video_info(path: "str | os.PathLike[str]") -> Dict:
    """Header facts of the first video stream, without decoding.

    Returns ``dict(duration, fps, width, height, num_frames, codec)``: ``duration``
    in seconds from the stream header (the container duration when the stream
    has none, else 0.0); ``fps`` the average frame rate (0.0 if unknown);
    ``num_frames`` the stored frame count, or ``round(duration * fps)`` when the
    container does not store it; ``codec`` the FFmpeg decoder name (``"h264"``).
    """
    path = os.fspath(path)
    container, stream = _open(path)
    try:
        fps = _rate(stream)
        dur = _header_duration(stream)
        if dur is None:
            dur = container.duration / av.time_base if container.duration else 0.0
        n = int(stream.frames or 0)
        if n <= 0:
            n = int(round(dur * fps))
        cc = stream.codec_context
        return {"duration": float(dur), "fps": fps, "width": int(cc.width), "height": int(cc.height),
                "num_frames": n, "codec": str(cc.name)}
    finally:
        container.close()


def _round_half_up(x: float) -> int:
    # half-up (not Python's half-to-even), with a little slack for float noise
    return int(math.floor(x + 0.5 + 1e-9))


def _threshold(interval: float) -> float:
    return 0.5 * interval + max(PRESENT_TOL_S, PRESENT_TOL_FRAC * interval)


#: 8-bit planar YUV formats with a fast path: (horizontal, vertical) chroma subsampling.
_PLANAR_YUV = {"yuv420p": (2, 2), "yuvj420p": (2, 2), "yuv422p": (2, 1), "yuvj422p": (2, 1),
               "yuv444p": (1, 1), "yuvj444p": (1, 1)}


def _plane(frame, k: int, rows: int, cols: int) -> np.ndarray:
    """View of plane ``k`` of an av frame as uint8 ``[rows, cols]`` (no copy)."""
    pl = frame.planes[k]
    return np.frombuffer(pl, np.uint8).reshape(-1, pl.line_size)[:rows, :cols]


class _Converter:
    """Decoded av frames -> numpy, whole or a region, equal to swscale's whole-frame conversion
    (see "Pixel conversion" in the module docstring); ``fast=False``: always the whole-frame
    swscale conversion (the earlier path)."""

    def __init__(self, gray: bool, fast: bool = True):
        self.gray, self.fast = gray, fast
        self._luts: Dict[tuple, Optional[np.ndarray]] = {}
        self._subs: Dict[tuple, object] = {}
        self._reformatter = VideoReformatter()

    def _whole(self, frame) -> np.ndarray:
        a = frame.to_ndarray(format="gray" if self.gray else "rgb24")
        if self.gray and a.ndim == 3:
            a = a[..., 0]
        return np.ascontiguousarray(a, dtype=np.uint8)

    def _key(self, frame) -> tuple:
        return (frame.format.name, frame.width, frame.height, int(frame.colorspace or 0),
                int(frame.color_range or 0))

    def _lut(self, frame) -> Optional[np.ndarray]:
        """swscale's luma -> gray table for frames like ``frame`` (None: no fast path)."""
        key = self._key(frame)
        if key in self._luts:
            return self._luts[key]
        lut = None
        name, W, H = key[0], key[1], key[2]
        if name in _PLANAR_YUV:
            probe = av.VideoFrame(W, H, name)
            probe.colorspace, probe.color_range = frame.colorspace, frame.color_range
            sx, sy = _PLANAR_YUV[name]
            yy, xx = np.mgrid[0:H, 0:W]
            pattern = ((yy * 7 + xx * 3 + (yy // 5) * 11) % 256).astype(np.uint8)
            _plane(probe, 0, H, W)[...] = pattern
            for k in (1, 2):
                _plane(probe, k, -(-H // sy), -(-W // sx))[...] = 128
            out = probe.to_ndarray(format="gray")
            if out.ndim == 3:
                out = out[..., 0]
            cand = np.zeros(256, np.uint8)
            cand[pattern.ravel()] = out.ravel()
            if np.array_equal(cand[pattern], out) and len(np.unique(pattern)) == 256:
                lut = cand
        self._luts[key] = lut
        return lut

    def full(self, frame) -> np.ndarray:
        if self.fast and self.gray:
            lut = self._lut(frame)
            if lut is not None:
                return cv2.LUT(_plane(frame, 0, frame.height, frame.width), lut)
        return self._whole(frame)

    def region(self, frame, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        """Pixels ``[r0:r1, c0:c1]`` of the converted frame (rows/columns inside the frame)."""
        if not self.fast:
            return np.ascontiguousarray(self._whole(frame)[r0:r1, c0:c1])
        name = frame.format.name
        if self.gray:
            lut = self._lut(frame)
            if lut is not None:
                return cv2.LUT(_plane(frame, 0, frame.height, frame.width)[r0:r1, c0:c1], lut)
            return np.ascontiguousarray(self._whole(frame)[r0:r1, c0:c1])
        if name not in _PLANAR_YUV:
            return np.ascontiguousarray(self._whole(frame)[r0:r1, c0:c1])
        sx, sy = _PLANAR_YUV[name]
        H, W = frame.height, frame.width
        R0, C0 = r0 - r0 % sy, c0 - c0 % sx                    # whole chroma samples
        hh, ww = r1 - R0, c1 - C0
        hh, ww = max(64, -(-hh // 32) * 32), max(64, -(-ww // 32) * 32)   # few sizes: swscale contexts reused
        hh, ww = min(hh, H - R0 + (H - R0) % sy), min(ww, W - C0 + (W - C0) % sx)
        key = (name, hh, ww, int(frame.colorspace or 0), int(frame.color_range or 0))
        sub = self._subs.get(key)
        if sub is None:
            sub = self._subs[key] = av.VideoFrame(ww, hh, name)
            sub.colorspace, sub.color_range = frame.colorspace, frame.color_range
        R1, C1 = min(H, R0 + hh), min(W, C0 + ww)
        _plane(sub, 0, R1 - R0, C1 - C0)[...] = _plane(frame, 0, H, W)[R0:R1, C0:C1]
        cr0, cr1, cc0, cc1 = R0 // sy, -(-R1 // sy), C0 // sx, -(-C1 // sx)
        ch, cw = -(-H // sy), -(-W // sx)
        for k in (1, 2):
            _plane(sub, k, cr1 - cr0, cc1 - cc0)[...] = _plane(frame, k, ch, cw)[cr0:cr1, cc0:cc1]
        rgb = self._reformatter.reformat(sub, format="rgb24").to_ndarray()
        return np.ascontiguousarray(rgb[r0 - R0:r1 - R0, c0 - C0:c1 - C0])


class _Grid:
    """Owns an open container; :meth:`run` yields ``(i, frame, present)`` grid slots."""

    def __init__(self, path: str, fps: float, gray: bool, start: float, end: Optional[float],
                 fast: bool = True, region: Optional[Callable[[int, int, int], Optional[Tuple[int, int, int, int]]]] = None):
        self.conv = _Converter(gray, fast)
        self.region = region
        fps = float(fps)
        if not math.isfinite(fps) or fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps!r}")
        start, end = check_time_range(start, end)
        self.path, self.fps, self.gray, self.start, self.end = path, fps, gray, start, end
        self.container, self.stream = _open(path)
        st = self.stream
        st.thread_type = "AUTO"
        self.tb = st.time_base
        self.source_fps = _rate(st)
        self.hdr_dur = _header_duration(st)
        self.st0 = float(st.start_time * self.tb) if (st.start_time is not None and self.tb) else None
        self.decoded_end: Optional[float] = None

    def close(self) -> None:
        try:
            self.container.close()
        except Exception:  # pragma: no cover - closing a broken container
            pass

    def _convert(self, frame) -> np.ndarray:
        return self.conv.full(frame)

    def _convert_region(self, frame, i: int) -> np.ndarray:
        win = self.region(i, frame.height, frame.width)
        if win is None:
            return self.conv.full(frame)
        r0, r1, c0, c1 = (int(v) for v in win)
        if not (0 <= r0 < r1 <= frame.height and 0 <= c0 < c1 <= frame.width):
            raise ValueError(f"region {win} of slot {i} is empty or outside the {frame.height}x{frame.width} frame")
        return self.conv.region(frame, r0, r1, c0, c1)

    def _frames(self, origin_box: List[Optional[float]]) -> Iterator[Tuple[float, float, object]]:
        """Decoded frames as ``(t, duration, frame)`` with t relative to the origin."""
        st, tb = self.stream, self.tb
        nominal = 1.0 / (self.source_fps or self.fps)
        seek_to = self.start - 1.0  # one second of margin: the frame before slot 0 matters
        if self.st0 is not None and seek_to > 0:
            try:
                self.container.seek(int((self.st0 + seek_to) / tb), stream=st, backward=True,
                                    any_frame=False)
            except av.error.FFmpegError as e:
                raise MediaError(self.path, f"cannot seek to {seek_to:.3f} s ({_av_reason(e)})") from None
        last_abs = None
        try:
            for frame in self.container.decode(st):
                ftb = frame.time_base or tb
                if frame.pts is not None and ftb is not None:
                    t_abs = float(frame.pts * ftb)
                elif last_abs is not None:
                    t_abs = last_abs + nominal
                else:
                    t_abs = self.st0 or 0.0
                last_abs = t_abs
                if origin_box[0] is None:
                    origin_box[0] = self.st0 if self.st0 is not None else t_abs
                d = float(frame.duration * ftb) if (frame.duration and ftb is not None) else 0.0
                yield t_abs - origin_box[0], d, frame
        except av.error.FFmpegError as e:
            at = (last_abs - origin_box[0]) if (last_abs is not None and origin_box[0] is not None) else 0.0
            raise MediaError(self.path, f"truncated/corrupt video: decoding failed at t={at:.3f} s "
                                        f"({_av_reason(e)})") from None

    def run(self) -> Iterator[Tuple[int, np.ndarray, bool]]:
        fps, start, end = self.fps, self.start, self.end
        n_slots = None if end is None else _round_half_up((end - start) * fps)
        origin: List[Optional[float]] = [None]
        i = 0
        prev_t = cur_t = None
        cur_d = 0.0
        cur_frame = cur_arr = None
        try:
            def emit(interval):
                nonlocal i, cur_arr
                thr = _threshold(interval)
                s = start + i / fps
                if self.region is not None:
                    out = self._convert_region(cur_frame, i)
                elif cur_arr is None:
                    cur_arr = self._convert(cur_frame)
                    out = cur_arr
                else:
                    out = cur_arr.copy()  # a repeated frame: callers may modify what they get
                res = (i, out, bool(abs(s - cur_t) <= thr))
                i += 1
                return res

            for t, d, frame in self._frames(origin):
                if cur_t is None:
                    cur_t, cur_d, cur_frame = t, d, frame
                    continue
                if t <= cur_t + _EPS:
                    continue
                mid = 0.5 * (cur_t + t)
                interval = (t - cur_t) if prev_t is None else min(t - cur_t, cur_t - prev_t)
                while (n_slots is None or i < n_slots) and start + i / fps <= mid + _EPS:
                    yield emit(interval)
                if n_slots is not None and i >= n_slots:
                    return
                prev_t, cur_t, cur_d, cur_frame, cur_arr = cur_t, t, d, frame, None
            # end of stream
            if cur_t is None:
                if self.st0 is not None and start > 1.0:
                    raise MediaError(self.path, "video is shorter than requested segment "
                                                f"(no frames at or after {start:.3f} s)")
                raise MediaError(self.path, "zero frames: no decodable video frames")
            if cur_d <= 0:
                cur_d = (cur_t - prev_t) if prev_t is not None else 1.0 / (self.source_fps or fps)
            duration = cur_t + cur_d
            self.decoded_end = duration
            if self.hdr_dur is not None:
                hdr_end = self.hdr_dur + ((self.st0 or 0.0) - (origin[0] or 0.0))
                slack = max(0.1, 2.0 / self.source_fps) if self.source_fps else 0.1
                if duration < hdr_end - slack:
                    raise MediaError(self.path, f"truncated/corrupt video: decodable frames end at "
                                                f"t={duration:.3f} s but the header says {hdr_end:.3f} s")
            want_end = end if end is not None else start
            if want_end > duration + 0.5 / fps:
                raise MediaError(self.path, f"video is shorter than requested segment "
                                            f"({duration:.3f} s < {want_end:.3f} s)")
            if n_slots is None:
                n_slots = max(0, _round_half_up((duration - start) * fps))
            interval = cur_d if prev_t is None else min(cur_d, cur_t - prev_t)
            while i < n_slots:
                yield emit(interval)
        finally:
            self.close()


def iter_video(path: "str | os.PathLike[str]", *, fps: float = GRID_FPS,
               gray: bool = True, fast: bool = True) -> Iterator[Tuple[int, np.ndarray, bool]]:
    """Stream a whole video as ``(grid_index, frame, present)`` on the ``fps`` grid.

    Same grid / present / truncation rules as :func:`read_video` (module
    docstring) but holds at most two decoded frames, so session-long videos can be
    processed in constant memory.  ``frame`` is uint8 [H, W] (``gray``) or
    [H, W, 3] RGB.  The file is opened (and bad input raises
    :class:`MediaError`) when this function is called; the decoder is closed when
    the iterator is exhausted, closed, or garbage-collected (``break`` is fine).
    ``fast=False`` converts every frame with swscale as a whole (same pixels, slower; see
    "Pixel conversion" in the module docstring).
    """
    g = _Grid(os.fspath(path), fps, gray, 0.0, None, fast=fast)
    return g.run()


def iter_video_regions(path: "str | os.PathLike[str]",
                       region: Callable[[int, int, int], Optional[Tuple[int, int, int, int]]], *,
                       fps: float = GRID_FPS, gray: bool = True,
                       fast: bool = True) -> Iterator[Tuple[int, np.ndarray, bool]]:
    """:func:`iter_video` that converts only a region of each grid slot's frame.

    ``region(i, height, width)`` gives ``(r0, r1, c0, c1)`` (rows ``r0:r1``, columns ``c0:c1``, ends
    exclusive, non-empty and inside the frame) for grid slot ``i``, or None for the whole frame;
    it is called once per slot, in slot order.  Yields ``(grid_index, patch, present)`` where
    ``patch`` equals ``frame[r0:r1, c0:c1]`` of the frame :func:`iter_video` would yield (uint8,
    gray or RGB), but only those pixels are converted (module docstring, "Pixel conversion").
    A region outside the frame raises ``ValueError``.
    """
    g = _Grid(os.fspath(path), fps, gray, 0.0, None, fast=fast, region=region)
    return g.run()


def read_video(path: "str | os.PathLike[str]", *, fps: float = GRID_FPS, gray: bool = True,
               start: float = 0.0, end: Optional[float] = None, fast: bool = True) -> VideoClip:
    """Decode ``[start, end)`` seconds of ``path`` onto the ``fps`` grid.

    Returns a :class:`VideoClip` with ``T`` frames (see the module docstring for
    the grid length, the nearest-frame rule and the ``present`` mask).  For
    ``start > 1 s`` the decoder seeks to the key frame before ``start - 1 s``
    instead of decoding from the beginning.  With ``end`` past the decoded
    duration -> :class:`MediaError` "video is shorter than requested segment".
    ``fast=False``: whole-frame swscale conversion (same pixels; module docstring).
    """
    path = os.fspath(path)
    g = _Grid(path, fps, gray, start, end, fast=fast)
    frames: List[np.ndarray] = []
    present: List[bool] = []
    for _i, fr, p in g.run():
        frames.append(fr)
        present.append(p)
    if frames:
        arr = np.stack(frames)
    else:
        st = g.stream.codec_context
        shape = (0, int(st.height), int(st.width)) + (() if gray else (3,))
        arr = np.zeros(shape, dtype=np.uint8)
    src = g.source_fps
    return VideoClip(frames=arr, present=np.asarray(present, dtype=bool), fps=float(fps),
                     source_fps=float(src), path=path, start=float(start))
