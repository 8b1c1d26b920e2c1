"""A wav (+ optional mp4) pair -> model input: 16 kHz mono audio and 96x96 lip ROIs at 25 fps.

:func:`prepare_pair` is what ``avsr decode --wav/--video`` and ``--pairs`` use.

Audio sources:

* **A wav** (``wav=``; anything :func:`frontends.audio.load_audio` reads, which includes the audio
  track of a video container): its sample 0 is taken as the instant of video grid frame 0.
* **The video's own audio track** (``wav=None``): :func:`frontends.audio.load_container_audio`,
  aligned to the video's 25 fps grid (encoder priming dropped, a later audio start padded with
  silence), so audio sample 0 is the instant of grid frame 0.
* **None** (``wav=None``, the container has no audio stream, and ``need_audio=False`` for a
  video-only model): ``PreparedPair.audio`` is ``None``, ``duration`` is the video grid's length,
  ``timings`` has no ``audio_load``, and a warning says "no audio track".  With ``need_audio=True``
  (the default) a missing audio track raises :class:`~frontends.errors.MediaError` naming the video.
  A pair with neither audio nor a mouth to crop raises MediaError (nothing to decode).

Video inputs:

* **ROI video** (``video_type="roi"``, or ``"auto"`` when the frame is at most ``roi_max_side``
  pixels on its longer side): already a mouth crop; every frame is resized to 96x96.
* **Full frame + detection JSON** (MISP format, :mod:`frontends.lip_boxes`): the lip boxes of one
  speaker (``speaker``; else the only one; else ``face_index`` into the sorted speaker ids; else
  the first, with a warning).
* **Full frame, no boxes**: an offline detector (:mod:`frontends.face_detectors`) tracks the target face's
  mouth (``face_index`` / ``bbox`` / largest face with a warning).

The lip crop (``crop``, :data:`frontends.roi.CROP_MODES`) is the one ``avsr prepare_rois --crop`` makes
for data dirs, so that a model sees the same ROIs on a pair as in training: ``"official"`` (default)
decodes RGB frames, cuts the MISP2022 baseline's window and converts it with the baseline's gray
weights (:func:`frontends.roi.to_gray`; an ROI video is resized, then converted the same way);
``"toolkit"`` cuts the toolkit's 1.6x square from the decoder's gray frames.
Missing detections are interpolated (:func:`frontends.roi.interpolate_boxes`); grid slots without a
real frame nearby (dropped / VFR gaps) become black frames.  No mouth found at all -> ``roi=None``
and the warning "decoding audio only".  A video more than 0.5 s shorter or longer than the audio
gives a warning (the model cuts it, or pads it with black frames, to the audio length).
Bad media raise :class:`frontends.errors.MediaError` naming the file.

Memory: a full-frame video is never held whole (``stream=True``, the default).  With a detection
JSON the boxes of every slot are computed first (all slots assumed present), the video is decoded
once and cropped while decoding (:func:`frontends.roi.iter_video_rois`); when the decoded grid
turns out to differ (slots without a real frame, another length), the boxes are recomputed with the
true ``present`` mask and only the slots whose box changed are cropped again in a second pass, so
the ROIs equal those of the whole-frame path.  With an offline detector, a first pass runs the
detector over the decoded frames one at a time and a second pass crops.  ``timings`` then has
``video_decode`` = the first pass (decoding + cropping, or decoding + detection) and ``roi`` = the
rest.  ROI videos (small frames) are read whole as before.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np

from frontends.audio import load_audio, load_container_audio
from frontends.errors import MediaError, check_file
from frontends.constants import ROI_SIZE, SAMPLE_RATE
from frontends.roi import CROP_MODES, DEFAULT_CROP, crop_rois, interpolate_boxes, to_gray
from frontends.video import GRID_FPS, read_video, video_info

__all__ = ["PreparedPair", "prepare_pair", "length_mismatch"]


@dataclass
class PreparedPair:
    """Arrays of one pair.  ``audio`` float32 [N] at :data:`~frontends.constants.SAMPLE_RATE`, or
    None (video-only pair: no wav and no audio track, ``need_audio=False``); ``roi`` uint8
    [T, 96, 96] on the 25 fps grid, or None (audio only); ``detected`` bool [T]."""

    audio: Optional[np.ndarray]           # float32 [N] at SAMPLE_RATE, or None (video only)
    roi: Optional[np.ndarray] = None      # uint8 [T, 96, 96] at 25 fps, or None (audio only)
    detected: Optional[np.ndarray] = None  # bool [T]
    warnings: List[str] = field(default_factory=list)
    timings: Dict[str, float] = field(default_factory=dict)
    audio_source: Optional[str] = None    # "wav", "container" (the video's own track) or None

    @property
    def duration(self) -> float:
        """Seconds: the audio's length, else (video only) the ROI grid's length, else 0."""
        if self.audio is not None:
            return len(self.audio) / SAMPLE_RATE
        if self.roi is not None:
            return len(self.roi) / GRID_FPS
        return 0.0


def _speaker(dets, speaker: Optional[str], face_index: Optional[int], warnings: List[str]) -> str:
    spks = sorted(dets.speakers)
    if not spks:
        raise MediaError(dets.path, "detection file lists no speaker")
    if speaker is not None:
        if speaker not in dets.speakers:
            raise MediaError(dets.path, f"no speaker {speaker!r} (has {spks})")
        return speaker
    if len(spks) == 1:
        return spks[0]
    if face_index is not None:
        if not 0 <= face_index < len(spks):
            raise MediaError(dets.path, f"--face-index {face_index}: only {len(spks)} speakers {spks}")
        return spks[face_index]
    warnings.append(f"{os.path.basename(dets.path)}: {len(spks)} speakers {spks}; using {spks[0]} "
                    f"(choose with --speaker or --face-index)")
    return spks[0]


def _container_has_audio(path: str) -> bool:
    import av
    check_file(path)
    try:
        with av.open(path, mode="r") as c:
            return bool(c.streams.audio)
    except av.error.FFmpegError as e:
        raise MediaError(path, f"not a readable media file ({e})") from None


def prepare_pair(wav: Optional[str] = None, video: Optional[str] = None, *, detection: Optional[str] = None,
                 speaker: Optional[str] = None, detector: str = "haar", face_index: Optional[int] = None,
                 bbox: Optional[Sequence[float]] = None, video_type: str = "auto", roi_max_side: int = 160,
                 channel="mean", max_seconds: Optional[float] = None, crop: str = DEFAULT_CROP,
                 need_audio: bool = True, detect_every: int = 1, stream: bool = True) -> PreparedPair:
    """Audio (and lip ROIs) of one wav (+ mp4) pair; see the module docstring.

    ``wav=None`` takes the audio from ``video``'s own track, aligned to its frame grid; when the
    container has no audio stream, ``need_audio=False`` (a video-only model) gives ``audio=None``
    and ``need_audio=True`` raises :class:`MediaError` naming the video.

    ``detect_every``: the offline detector's ``stride`` (:func:`frontends.face_detectors.track_mouth`:
    detect on every N-th frame, interpolate between).  ``stream=True`` (default): a full-frame video
    is decoded while cropping and no whole frame is kept (module docstring, "Memory"); ``False``:
    the earlier path, every frame decoded into memory first (same ROIs, more memory).
    """
    if video_type not in ("auto", "roi", "full"):
        raise ValueError(f"video_type must be auto, roi or full, got {video_type!r}")
    if crop not in CROP_MODES:
        raise ValueError(f"crop must be one of {CROP_MODES}, got {crop!r}")
    if wav is None and video is None:
        raise ValueError("prepare_pair needs a wav, a video, or both")
    official = crop == "official"
    t0 = time.perf_counter()
    audio, source = None, None
    if wav is not None:
        audio, source, apath = load_audio(wav, channel=channel), "wav", wav
    elif _container_has_audio(video):
        audio, source, apath = load_container_audio(video, channel=channel)[0], "container", video
    elif need_audio:
        raise MediaError(video, "no audio stream in the video and no wav given (pass a wav, or decode with "
                                "a video-only model)")
    if audio is not None:
        if audio.size == 0:
            raise MediaError(apath, "no audio samples (zero length)")
        if max_seconds is not None and len(audio) / SAMPLE_RATE > max_seconds:
            raise MediaError(apath, f"{len(audio) / SAMPLE_RATE:.0f} s is longer than the limit of "
                                    f"{max_seconds:.0f} s (--max_seconds); split the recording first")
        out = PreparedPair(audio=audio, audio_source=source)
        out.timings["audio_load"] = time.perf_counter() - t0
    else:
        out = PreparedPair(audio=None)
        out.warnings.append(f"{video}: no audio track; video only")
        if max_seconds is not None:
            vdur = float(video_info(video)["duration"])
            if vdur > max_seconds:
                raise MediaError(video, f"{vdur:.0f} s is longer than the limit of {max_seconds:.0f} s "
                                        f"(--max_seconds); split the recording first")
    if video is None:
        return out
    if stream:
        info = video_info(video)
        kind = video_type if video_type != "auto" else (
            "roi" if max(info["height"], info["width"]) <= roi_max_side else "full")
        if kind == "full":
            return _stream_full(out, video, info, official, crop, detection, speaker, detector, face_index, bbox,
                                detect_every)
    t0 = time.perf_counter()
    clip = read_video(video, fps=GRID_FPS, gray=not official, fast=stream)
    out.timings["video_decode"] = time.perf_counter() - t0
    T = len(clip)
    if T == 0:
        raise MediaError(video, "no video frames")
    t0 = time.perf_counter()
    frames = clip.frames
    H, W = frames.shape[1:3]
    kind = video_type if video_type != "auto" else ("roi" if max(H, W) <= roi_max_side else "full")
    if kind == "roi":
        if detection is not None:
            out.warnings.append(f"{detection}: not used: {video} is taken as a lip-ROI video ({W}x{H}; "
                                f"video_type 'full' crops it with the detections)")
        roi = np.stack([cv2.resize(f, (ROI_SIZE, ROI_SIZE), interpolation=cv2.INTER_AREA if max(H, W) > ROI_SIZE
                                   else cv2.INTER_LINEAR) for f in frames])
        if official:
            roi = to_gray(roi)
        detected = clip.present.copy()
    else:
        if detection is not None:
            on_grid = _json_boxes(detection, speaker, face_index, out.warnings)
            boxes = on_grid(T)
            _check_boxes(detection, on_grid.length, boxes, T, W, H, out.warnings)
        else:
            from frontends.face_detectors import get_detector, track_mouth
            boxes, w = track_mouth(frames, get_detector(detector), face_index=face_index,
                                   bbox=tuple(bbox) if bbox is not None else None, stride=detect_every)
            out.warnings += w
        boxes[~clip.present] = np.nan
        if not np.isfinite(boxes).all(axis=1).any():
            if out.audio is None:
                raise MediaError(video, "no face/mouth detected in any frame and no audio: nothing to decode")
            out.warnings.append(f"{video}: no face/mouth detected in any frame; decoding audio only")
            out.timings["roi"] = time.perf_counter() - t0
            return out
        full, detected = interpolate_boxes(boxes, mode=crop)
        roi = crop_rois(frames, full, mode=crop)
        if official:
            roi = to_gray(roi)
        if detected.mean() < 0.5:
            out.warnings.append(f"{video}: mouth detected in only {100 * detected.mean():.0f} % of the frames "
                                f"(the rest interpolated)")
    return _finish(out, video, roi, detected, clip.present, t0)


def _json_boxes(detection: str, speaker, face_index, warnings: List[str]):
    """Read the detection JSON; returns ``f(T) -> float32 [T, 4]`` boxes on the 25 fps grid (NaN = none)."""
    check_file(detection)
    from frontends.lip_boxes import load_detections
    dets = load_detections(detection)
    spk = _speaker(dets, speaker, face_index, warnings)
    boxes_src = dets.boxes(spk)

    def on_grid(T: int) -> np.ndarray:
        boxes = np.full((T, 4), np.nan, dtype=np.float32)
        if abs(dets.fps - GRID_FPS) < 1e-6:
            n = min(T, len(boxes_src))
            boxes[:n] = boxes_src[:n]
        else:   # map grid slots to the detection file's frame indices by time
            idx = np.rint(np.arange(T) / GRID_FPS * dets.fps).astype(int)
            ok = idx < len(boxes_src)
            boxes[ok] = boxes_src[idx[ok]]
        return boxes
    on_grid.length = len(boxes_src) * GRID_FPS / dets.fps  # type: ignore[attr-defined]
    return on_grid


def _check_boxes(detection: str, length: float, boxes: np.ndarray, T: int, W: int, H: int,
                 warnings: List[str]) -> None:
    """Warnings when a detection file does not look like this video's: its detections run more than a
    second past the video's end, or most of its boxes lie outside the frame."""
    if length > T + GRID_FPS:
        warnings.append(f"{detection}: detections run to {length / GRID_FPS:.1f} s but the video is "
                        f"{T / GRID_FPS:.1f} s long: is it this video's detection file?")
    ok = np.isfinite(boxes).all(axis=1)
    if ok.any() and W > 0 and H > 0:
        b = boxes[ok]
        outside = (b[:, 2] <= 0) | (b[:, 3] <= 0) | (b[:, 0] >= W) | (b[:, 1] >= H)
        if outside.mean() > 0.5:
            warnings.append(f"{detection}: {100 * outside.mean():.0f} % of its lip boxes lie outside the "
                            f"{W}x{H} frame: is it this video's detection file?")


def _finish(out: PreparedPair, video: str, roi: np.ndarray, detected: np.ndarray, present: np.ndarray,
            t_roi: float) -> PreparedPair:
    T = len(present)
    roi[~present] = 0          # slots without a real frame: black, like a dropped frame
    if (~present).any():
        out.warnings.append(f"{video}: {int((~present).sum())} of {T} frames missing on the 25 fps grid "
                            f"(black frames)")
    out.roi, out.detected = roi, detected
    out.timings["roi"] = time.perf_counter() - t_roi
    if out.audio is not None:
        w = length_mismatch(T, out.duration)
        if w:
            out.warnings.append(f"{video}: {w}")
    return out


def length_mismatch(frames: int, audio_seconds: float, detail: str = "") -> Optional[str]:
    """The warning for a video of ``frames`` frames on the 25 fps grid that is more than 0.5 s longer or
    shorter than its audio (``detail`` goes after "than the audio"), or None."""
    diff = frames / GRID_FPS - audio_seconds
    if abs(diff) <= 0.5:
        return None
    return (f"video is {abs(diff):.1f} s {'longer' if diff > 0 else 'shorter'} than the audio{detail}; the model "
            f"{'cuts it' if diff > 0 else 'pads it with black frames'} to the audio length")


def _no_mouth(out: PreparedPair, video: str, t0: float) -> PreparedPair:
    if out.audio is None:
        raise MediaError(video, "no face/mouth detected in any frame and no audio: nothing to decode")
    out.warnings.append(f"{video}: no face/mouth detected in any frame; decoding audio only")
    out.timings["roi"] = time.perf_counter() - t0
    return out


def _stream_full(out: PreparedPair, video: str, info: Dict, official: bool, crop: str, detection, speaker,
                 detector: str, face_index, bbox, detect_every: int) -> PreparedPair:
    """The full-frame path without holding frames (module docstring, "Memory")."""
    from frontends.roi import iter_video_rois
    from frontends.video import iter_video
    t0 = time.perf_counter()
    if detection is not None:
        on_grid = _json_boxes(detection, speaker, face_index, out.warnings)
        n_est = max(1, int(round(info["duration"] * GRID_FPS)), int(np.ceil(on_grid.length))) + 2
        est = on_grid(n_est)
        if not np.isfinite(est).all(axis=1).any():
            present = np.array([p for _i, _f, p in iter_video(video, fps=GRID_FPS, gray=True)], bool)
            if len(present) == 0:
                raise MediaError(video, "no video frames")
            out.timings["video_decode"] = time.perf_counter() - t0
            return _no_mouth(out, video, time.perf_counter())
        est_full, _ = interpolate_boxes(est, mode=crop)
        rois, present = [], []
        for _i, r, p in iter_video_rois(video, est_full, mode=crop, fps=GRID_FPS):
            rois.append(r)
            present.append(p)
        out.timings["video_decode"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        T = len(present)
        if T == 0:
            raise MediaError(video, "no video frames")
        present = np.asarray(present, bool)
        boxes = on_grid(T)
        _check_boxes(detection, on_grid.length, boxes, T, int(info["width"]), int(info["height"]), out.warnings)
    else:
        from frontends.face_detectors import get_detector, track_mouth
        present_l: List[bool] = []

        def frames():
            for _i, f, p in iter_video(video, fps=GRID_FPS, gray=not official):
                present_l.append(p)
                yield f
        boxes, w = track_mouth(frames(), get_detector(detector), face_index=face_index,
                               bbox=tuple(bbox) if bbox is not None else None, stride=detect_every)
        out.warnings += w
        out.timings["video_decode"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        T = len(present_l)
        if T == 0:
            raise MediaError(video, "no video frames")
        present = np.asarray(present_l, bool)
        rois = [None] * T
        est_full = np.zeros((0, 4), np.float32)
    boxes[~present] = np.nan
    if not np.isfinite(boxes).all(axis=1).any():
        return _no_mouth(out, video, t1)
    full, detected = interpolate_boxes(boxes, mode=crop)
    n = min(T, len(est_full))
    same = np.zeros(T, bool)
    same[:n] = np.all(full[:n] == est_full[:n], axis=1)
    redo = present & ~same
    redo[[i for i in range(min(T, len(rois))) if rois[i] is None and present[i]]] = True
    if redo.any():                 # second pass: only the slots whose box differs from the first pass's
        want = np.full((T, 4), np.nan, np.float32)
        want[redo] = full[redo]
        for i, r, _p in iter_video_rois(video, want, mode=crop, fps=GRID_FPS):
            if i < T and redo[i]:
                rois[i] = r
    blank = np.zeros((ROI_SIZE, ROI_SIZE), np.uint8)
    roi = np.stack([blank if r is None else r for r in rois[:T]])
    if detected.mean() < 0.5:
        out.warnings.append(f"{video}: mouth detected in only {100 * detected.mean():.0f} % of the frames "
                            f"(the rest interpolated)")
    return _finish(out, video, roi, detected, present, t1)
