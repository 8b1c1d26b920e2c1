"""Per-session lip-box files, in the forms the MISP2022 release and this toolkit use.

This module is the single place that knows the lip-box file formats.
:func:`load_detections` reads any of them (``fmt="auto"``, the default, picks the form
from the file's content) into one :class:`SessionDetections`; docs/MISP2022_FORMATS.md
lists each fact with the official source file it comes from.

Locations (one file per session video, ``<session>_Far.json``; :func:`find_detection_file`):

* the release, as the official baselines read it:
  ``<misp_root>/roi_coordinates/<split>/far/lip/<session>_Far.json``;
* this toolkit (the offline detector): ``<misp_root>/detection/<split>/far/<session>_Far.json``;
  SynthMISP writes the release's location and form (:func:`write_official_detections`).

Forms, auto-detected:

1. ``misp2022-frame-keyed`` (:data:`OFFICIAL`), the released files::

       {"<frame>": [{"id": 5, "x1": .., "y1": .., "x2": .., "y2": .., "lip": [x1, y1, x2, y2]}, ...], ...}

   ``<frame>`` is the 0-based index of the decoded video frame (25 fps), ``id`` the
   integer speaker number (``5`` -> speaker key ``"005"``), ``x1..y2`` the face box and
   ``lip`` the lip box the crop uses.  An entry without a usable ``lip`` is no detection;
   if a frame lists one speaker twice the first entry counts.  There is no fps, frame
   count or frame size in the file: fps is 25, ``num_frames`` is the last listed frame + 1,
   width and height are 0 (unknown).
2. ``misp2022-raw-frames`` (:data:`OFFICIAL_RAW`), the raw variant: the same mapping
   wrapped in ``{"frames": {...}}``.  Some raw sessions (``_C00xx_`` in the raw name,
   ``_Cxx_`` in the released one) start late: frame ``f`` of the raw file is frame
   ``f - round(offset * 25)`` of the session video, and earlier frames are dropped.  The
   offset comes from ``offset_seconds=`` when given, else from :data:`RAW_SESSION_OFFSETS_S`
   by the session id in the file name (raw or renamed form); other sessions have offset 0.
   A raw ``_C00xx_`` session missing from the table is an error (pass ``offset_seconds``).
3. ``avsr-misp-detection-v1`` (:data:`FORMAT`), the toolkit's own schema, below.

A file that fits no form raises :class:`~frontends.errors.MediaError` naming the file.

Schema ``avsr-misp-detection-v1``::

    {
      "format": "avsr-misp-detection-v1",
      "video": "R01_S001002_C01_I0_Far.mp4",   # file name of the video it describes
      "fps": 25,                               # frame index i is at time i / fps seconds
      "num_frames": 1500,
      "width": 640, "height": 360,
      "speakers": {
        "001": {                               # SpkID as in the Near TextGrid file name
          "frames": [0, 1, 2, 5, ...],          # frames that HAVE a detection (ascending)
          "boxes": [[x1, y1, x2, y2], ...],     # lip box in pixels, one per listed frame
          "lip_points": [[[x, y], ...], ...]    # optional, one list of points per listed frame
        }
      }
    }

Frames not listed for a speaker had no detection.  Downstream code
(:func:`frontends.roi.interpolate_boxes`) interpolates them and applies the
"skip a segment with < 50 % detected frames" rule.
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional

import numpy as np

from frontends.constants import VIDEO_FPS
from frontends.errors import MediaError

FORMAT = "avsr-misp-detection-v1"
OFFICIAL = "misp2022-frame-keyed"
OFFICIAL_RAW = "misp2022-raw-frames"
AUTO = "auto"

#: Frame rate of the official lip-box files (not stored in them; the official readers
#: assume 25 fps: misp2022_baseline ``track2_AVDR/local/segment_video_roi.py``).
OFFICIAL_FPS = float(VIDEO_FPS)

#: Per-session start offsets in seconds of the raw ``"frames"`` lip-box files, keyed by
#: the raw session id.  Data table from mispchallenge/misp2022_baseline
#: ``track2_AVDR/local/format_detection_json.py`` (``split_c0001_dic``), which drops the
#: first ``round(offset * 25)`` frames and renames ``_C00xx_`` to ``_Cxx_``.
RAW_SESSION_OFFSETS_S: Dict[str, float] = {
    "R01_S010011012_C0001_I0": 218, "R01_S021022023_C0001_I0": 204,
    "R01_S024025026027_C0001_I1": 220, "R01_S037038039040_C0001_I2": 0,
    "R02_S060061_C0001_I0": 112, "R02_S062063_C0001_I0": 106, "R02_S064065_C0001_I0": 119,
    "R02_S068069_C0001_I0": 102, "R03_S070071_C0001_I1": 136, "R03_S070071_C0001_I2": 0,
    "R03_S072073_C0001_I1": 137, "R03_S072073_C0001_I2": 0, "R03_S077078_C0001_I1": 171,
    "R03_S077078_C0001_I2": 0, "R03_S079080081_C0001_I0": 267, "R03_S088089_C0001_I1": 148,
    "R03_S088089_C0001_I2": 0, "R03_S102103104_C0001_I0": 188, "R03_S105106_C0001_I1": 195,
    "R03_S105106_C0001_I2": 0, "R03_S113114115_C0001_I0": 204, "R07_S149150_C0001_I1": 163,
    "R07_S149150_C0001_I2": 0, "R07_S151152153_C0001_I0": 206, "R08_S158159160_C0001_I0": 168,
    "R08_S161162163164_C0001_I1": 247, "R08_S161162163164_C0001_I2": 0,
    "R08_S165166_C0001_I1": 149, "R08_S165166_C0001_I2": 0, "R08_S167168_C0001_I1": 140,
    "R08_S167168_C0001_I2": 0, "R08_S167168_C0001_I3": 0, "R08_S169170171172_C0001_I1": 226,
    "R08_S169170171172_C0001_I2": 0, "R11_S193194_C0001_I1": 126, "R11_S193194_C0001_I2": 0,
    "R13_S212213214_C0001_I0": 169, "R13_S215216217218_C0001_I1": 177,
    "R15_S228229_C0001_I1": 150, "R15_S228229_C0001_I2": 0, "R16_S242243244245_C0001_I1": 225,
    "R52_S272273_C0001_I2": 0, "R54_S294295296297298299_C0001_I1": 467,
    "R54_S294295296297298299_C0001_I2": 0, "R54_S300301302_C0001_I0": 223,
    "R55_S306307_C0001_I1": 71, "R55_S308309310311_C0001_I1": 828,
    "R55_S308309310311_C0001_I2": 0, "R62_S367368369370_C0001_I2": 0,
    "R66_S386387388389390391_C0001_I2": 0, "R67_S392393394_C0001_I0": 231,
    "R67_S395396397398_C0001_I1": 276, "R67_S395396397398_C0001_I2": 0,
    "R70_S409410411_C0001_I0": 220, "R72_S424425_C0001_I1": 197, "R72_S424425_C0001_I2": 0,
    "R77_S429430_C0001_I2": 0, "R80_S455456457_C0001_I0": 284, "R04_S134135_C0009_I1": 110,
    "R12_S203204205_C0009_I2": 0, "R10_S186187188_C0009_I2": 0, "R12_S203204205_C0009_I1": 164,
    "R16_S242243244245_C0001_I2": 0, "R53_S283284285_C0001_I0": 365,
    "R53_S286287288289_C0001_I1": 795, "R74_S431432433434435436_C0001_I2": 0,
}

_SESSION_RE = re.compile(r"^(R\d+_S\d+_C\d+_I\d+)")
_RAW_CONFIG_RE = re.compile(r"_C00(\d+)_")


def released_session_id(session: str) -> str:
    """Raw ``R01_S010011012_C0001_I0`` -> released ``R01_S010011012_C01_I0`` (``_C00`` -> ``_C``)."""
    return session.replace("_C00", "_C")


def raw_session_ids(session: str) -> List[str]:
    """Released ``..._C01_...`` -> the raw ids it may come from (``..._C0001_...``)."""
    m = re.search(r"_C(\d\d)_", session)
    return [session[:m.start()] + f"_C00{m.group(1)}_" + session[m.end():]] if m else []


def raw_session_offset(name: str) -> Optional[float]:
    """Offset (s) of the raw lip-box file ``name`` (a file name or session id), or None if
    the session is a raw ``_C00xx_`` one missing from :data:`RAW_SESSION_OFFSETS_S`.

    Looked up under the raw id, then under the raw ids of a released (``_Cxx_``) id;
    a session that is neither in the table nor a raw ``_C00xx_`` id has offset 0.
    """
    m = _SESSION_RE.match(os.path.basename(name))
    if not m:
        return 0.0
    sess = m.group(1)
    if sess in RAW_SESSION_OFFSETS_S:
        return float(RAW_SESSION_OFFSETS_S[sess])
    for raw in raw_session_ids(sess):
        if raw in RAW_SESSION_OFFSETS_S:
            return float(RAW_SESSION_OFFSETS_S[raw])
    if _RAW_CONFIG_RE.search(sess + "_"):
        return None
    return 0.0


@dataclass
class SpeakerTrack:
    frames: np.ndarray  # int64 [K], ascending, frames with a detection
    boxes: np.ndarray  # float32 [K, 4], x1 y1 x2 y2
    lip_points: Optional[list] = None
    face_boxes: Optional[np.ndarray] = None  # float32 [K, 4] or None (official files: x1..y2)

    def dense(self, num_frames: int) -> np.ndarray:
        """[num_frames, 4] float32 boxes, NaN rows where there is no detection."""
        out = np.full((num_frames, 4), np.nan, dtype=np.float32)
        keep = self.frames < num_frames
        out[self.frames[keep]] = self.boxes[keep]
        return out


@dataclass
class SessionDetections:
    path: str
    fps: float
    num_frames: int
    width: int
    height: int
    video: str = ""
    speakers: Dict[str, SpeakerTrack] = field(default_factory=dict)
    format: str = FORMAT

    def boxes(self, spk: str, num_frames: Optional[int] = None) -> np.ndarray:
        """Dense [T, 4] boxes (NaN = missing) for one speaker."""
        if spk not in self.speakers:
            raise MediaError(self.path, f"no detections for speaker {spk!r} "
                             f"(has {sorted(self.speakers)})")
        return self.speakers[spk].dense(self.num_frames if num_frames is None else num_frames)


def _read_json(path: str):
    if not os.path.isfile(path):
        raise MediaError(path, "detection file not found")
    try:
        with open(path, "r", encoding="utf-8-sig") as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MediaError(path, f"cannot parse detection JSON ({e})") from None


def _is_frame_keyed(d) -> bool:
    return (isinstance(d, dict) and all(isinstance(k, str) and k.strip().isdigit() for k in d)
            and all(isinstance(v, list) for v in d.values()))


def detect_format(d) -> Optional[str]:
    """The form of a parsed lip-box JSON document, or None when none fits."""
    if isinstance(d, dict) and "format" in d:
        return FORMAT if d.get("format") == FORMAT else None
    if isinstance(d, dict) and set(d) >= {"frames"} and _is_frame_keyed(d["frames"]) \
            and not any(k.strip().isdigit() for k in d):
        return OFFICIAL_RAW
    if _is_frame_keyed(d):
        return OFFICIAL
    return None


def _parse_avsr_v1(path: str, d) -> SessionDetections:
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise MediaError(path, f"not an {FORMAT} detection file")
    try:
        spk = {}
        for sid, tr in d["speakers"].items():
            frames = np.asarray(tr["frames"], dtype=np.int64).reshape(-1)
            boxes = np.asarray(tr["boxes"], dtype=np.float32).reshape(-1, 4)
            if len(frames) != len(boxes):
                raise ValueError(f"speaker {sid}: {len(frames)} frames but {len(boxes)} boxes")
            if len(frames) > 1 and np.any(np.diff(frames) <= 0):
                raise ValueError(f"speaker {sid}: frame indices not strictly ascending")
            spk[str(sid)] = SpeakerTrack(frames, boxes, tr.get("lip_points"))
        return SessionDetections(path=path, fps=float(d["fps"]), num_frames=int(d["num_frames"]),
                                 width=int(d["width"]), height=int(d["height"]),
                                 video=str(d.get("video", "")), speakers=spk, format=FORMAT)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise MediaError(path, f"malformed detection file ({e})") from None


def _box4(v) -> Optional[List[float]]:
    """A list of 4 finite numbers, or None when ``v`` is no usable box."""
    if not isinstance(v, (list, tuple)) or len(v) != 4:
        return None
    try:
        b = [float(x) for x in v]
    except (TypeError, ValueError):
        return None
    return b if all(math.isfinite(x) for x in b) else None


def _speaker_key(v) -> str:
    if isinstance(v, bool):
        raise ValueError(f"speaker id {v!r} is not an integer")
    if isinstance(v, int) or (isinstance(v, float) and v.is_integer()):
        n = int(v)
    elif isinstance(v, str) and v.strip().isdigit():
        n = int(v.strip())
    else:
        raise ValueError(f"speaker id {v!r} is not an integer")
    if n < 0:
        raise ValueError(f"speaker id {v!r} is negative")
    return f"{n:03d}"


def _parse_frame_keyed(path: str, mapping: Mapping, *, start_frame: int = 0,
                       fmt: str = OFFICIAL) -> SessionDetections:
    """Frame-keyed official mapping -> SessionDetections; frames before ``start_frame``
    are dropped and the rest shifted by ``-start_frame``."""
    per_spk: Dict[str, Dict[str, list]] = {}
    last = -1
    try:
        for key in sorted(mapping, key=lambda k: int(k)):
            f = int(key) - start_frame
            if f < 0:
                continue
            last = max(last, f)
            seen = set()
            for e in mapping[key]:
                if not isinstance(e, dict) or "id" not in e:
                    raise ValueError(f"frame {key}: entry {e!r} has no speaker 'id'")
                spk = _speaker_key(e["id"])
                lip = _box4(e.get("lip"))
                if lip is None or spk in seen:  # no lip box = no detection; first entry counts
                    continue
                seen.add(spk)
                face = _box4([e.get("x1"), e.get("y1"), e.get("x2"), e.get("y2")])
                t = per_spk.setdefault(spk, {"frames": [], "boxes": [], "face": []})
                t["frames"].append(f)
                t["boxes"].append(lip)
                t["face"].append(face if face is not None else [math.nan] * 4)
    except (TypeError, ValueError) as e:
        raise MediaError(path, f"malformed {fmt} lip-box file ({e})") from None
    speakers = {s: SpeakerTrack(np.asarray(t["frames"], np.int64),
                                np.asarray(t["boxes"], np.float32).reshape(-1, 4),
                                face_boxes=np.asarray(t["face"], np.float32).reshape(-1, 4))
                for s, t in sorted(per_spk.items())}
    return SessionDetections(path=path, fps=OFFICIAL_FPS, num_frames=last + 1, width=0, height=0,
                             video="", speakers=speakers, format=fmt)


def load_avsr_v1(path: "str | os.PathLike[str]") -> SessionDetections:
    path = os.fspath(path)
    return _parse_avsr_v1(path, _read_json(path))


def load_official(path: "str | os.PathLike[str]") -> SessionDetections:
    """A released frame-keyed lip-box file (form 1 of the module docstring)."""
    path = os.fspath(path)
    d = _read_json(path)
    if detect_format(d) != OFFICIAL:
        raise MediaError(path, f"not a {OFFICIAL} lip-box file ({_describe(d)})")
    return _parse_frame_keyed(path, d)


def load_official_raw(path: "str | os.PathLike[str]",
                      offset_seconds: Optional[float] = None) -> SessionDetections:
    """A raw ``{"frames": {...}}`` lip-box file (form 2), shifted by the session's offset."""
    path = os.fspath(path)
    d = _read_json(path)
    if detect_format(d) != OFFICIAL_RAW:
        raise MediaError(path, f"not a {OFFICIAL_RAW} lip-box file ({_describe(d)})")
    return _parse_raw(path, d, offset_seconds)


def _parse_raw(path: str, d, offset_seconds: Optional[float]) -> SessionDetections:
    if offset_seconds is None:
        offset_seconds = raw_session_offset(path)
        if offset_seconds is None:
            raise MediaError(path, "raw lip-box file of a _C00xx_ session whose frame offset is "
                                   "not in RAW_SESSION_OFFSETS_S; pass offset_seconds")
    offset_seconds = float(offset_seconds)
    if not math.isfinite(offset_seconds) or offset_seconds < 0:
        raise ValueError(f"offset_seconds must be >= 0, got {offset_seconds}")
    start = int(round(offset_seconds * OFFICIAL_FPS))
    return _parse_frame_keyed(path, d["frames"], start_frame=start, fmt=OFFICIAL_RAW)


def _describe(d) -> str:
    if isinstance(d, dict):
        keys = list(d)[:5]
        return f"top-level keys {keys}{' ...' if len(d) > 5 else ''}"
    return f"top level is a {type(d).__name__}"


def _load_auto(path: str, offset_seconds: Optional[float] = None) -> SessionDetections:
    d = _read_json(path)
    fmt = detect_format(d)
    if fmt == FORMAT:
        return _parse_avsr_v1(path, d)
    if fmt == OFFICIAL:
        return _parse_frame_keyed(path, d)
    if fmt == OFFICIAL_RAW:
        return _parse_raw(path, d, offset_seconds)
    if isinstance(d, dict) and "format" in d:
        raise MediaError(path, f"unknown lip-box format {d.get('format')!r} (known: {FORMAT})")
    raise MediaError(path, "not a lip-box file in any known form (the release's frame-keyed "
                           "{\"<frame>\": [{\"id\", \"lip\", ...}]}, its raw {\"frames\": ...} "
                           f"variant, or {FORMAT}); {_describe(d)}")


LOADERS: Dict[str, Callable[[str], SessionDetections]] = {
    FORMAT: load_avsr_v1, OFFICIAL: load_official, OFFICIAL_RAW: load_official_raw,
    AUTO: _load_auto}


def load_detections(path: "str | os.PathLike[str]", fmt: str = AUTO, *,
                    offset_seconds: Optional[float] = None) -> SessionDetections:
    """Load a per-session lip-box file; ``fmt="auto"`` picks the form from the content.

    ``offset_seconds`` applies to the raw ``"frames"`` form only (see the module docstring).
    """
    if fmt not in LOADERS:
        raise ValueError(f"unknown detection format {fmt!r}; known: {sorted(LOADERS)}")
    path = os.fspath(path)
    if fmt == OFFICIAL_RAW or fmt == AUTO:
        return LOADERS[fmt](path, offset_seconds)  # type: ignore[call-arg]
    return LOADERS[fmt](path)


def find_detection_file(detection_dir: "str | os.PathLike[str]", recording: str) -> str:
    """The lip-box file of ``recording`` (``<session>_Far``) in ``detection_dir``.

    ``<recording>.json`` when it exists; otherwise a raw file as
    misp2022_baseline ``format_detection_json.py`` reads them: ``<recording>_<x>.json``
    or the same with the raw session id (``_C01_`` -> ``_C0001_``), when exactly one
    matches.  Falls back to ``<recording>.json`` (whose absence the loader reports).
    """
    detection_dir = os.fspath(detection_dir)
    default = os.path.join(detection_dir, recording + ".json")
    if os.path.isfile(default):
        return default
    try:
        names = os.listdir(detection_dir)
    except OSError:
        return default
    stems = [recording] + raw_session_ids(recording)
    hits = sorted(n for n in names if n.endswith(".json")
                  and any(n.startswith(st + "_") and "_" not in n[len(st) + 1:-5] for st in stems))
    return os.path.join(detection_dir, hits[0]) if len(hits) == 1 else default


def write_detections(path: "str | os.PathLike[str]", *, video: str, fps: float, num_frames: int,
                     width: int, height: int, speakers: Dict[str, SpeakerTrack]) -> None:
    """Write an ``avsr-misp-detection-v1`` file (atomically). Boxes are rounded to 0.1 px."""
    path = os.fspath(path)
    out = {"format": FORMAT, "video": video, "fps": fps, "num_frames": int(num_frames),
           "width": int(width), "height": int(height), "speakers": {}}
    for sid, tr in speakers.items():
        e = {"frames": [int(i) for i in tr.frames],
             "boxes": [[round(float(v), 1) for v in b] for b in tr.boxes]}
        if tr.lip_points is not None:
            e["lip_points"] = tr.lip_points
        out["speakers"][str(sid)] = e
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(out, f, separators=(",", ":"), sort_keys=True)
    os.replace(tmp, path)


def _int_coord(v: float) -> int:
    """Nearest integer, halves rounded up (the same on every platform)."""
    return int(math.floor(float(v) + 0.5))


def write_official_detections(path: "str | os.PathLike[str]",
                              speakers: Dict[str, SpeakerTrack]) -> None:
    """Write a ``misp2022-frame-keyed`` lip-box file (form 1 of the module docstring), atomically.

    ``speakers`` maps the speaker key (``"005"``, the TextGrid's SpkID; written as the integer
    ``id`` 5) to its track; every track needs ``face_boxes`` (the ``x1..y2`` face box of each
    detected frame).  A frame key is written for every frame in which at least one speaker has
    a detection (ascending, as decimal strings); within a frame the entries are ordered by
    speaker number; a speaker missing from a frame has no detection there.  Coordinates are
    rounded to the nearest integer pixel (halves up), as in the released files.

    :func:`load_detections` reads the file back: the same frames per speaker and the rounded
    lip and face boxes; ``num_frames`` becomes the last written frame + 1 and width/height 0
    (the form stores neither).  Raises ``ValueError`` for a speaker key that is not a number, a
    track without face boxes, lengths that disagree, or non-finite coordinates.
    """
    path = os.fspath(path)
    per_frame: Dict[int, list] = {}
    for sid in sorted(speakers, key=lambda k: int(_speaker_key(k))):
        tr = speakers[sid]
        num = int(_speaker_key(sid))
        frames = np.asarray(tr.frames, dtype=np.int64).reshape(-1)
        lips = np.asarray(tr.boxes, dtype=np.float64).reshape(-1, 4)
        if tr.face_boxes is None:
            raise ValueError(f"speaker {sid}: the official form needs face boxes (SpeakerTrack.face_boxes)")
        faces = np.asarray(tr.face_boxes, dtype=np.float64).reshape(-1, 4)
        if not len(frames) == len(lips) == len(faces):
            raise ValueError(f"speaker {sid}: {len(frames)} frames, {len(lips)} lip boxes, "
                             f"{len(faces)} face boxes")
        if not (np.all(np.isfinite(lips)) and np.all(np.isfinite(faces))):
            raise ValueError(f"speaker {sid}: non-finite box coordinates")
        if len(frames) and frames.min() < 0:
            raise ValueError(f"speaker {sid}: negative frame index")
        for f, lip, face in zip(frames.tolist(), lips, faces):
            fx = [_int_coord(v) for v in face]
            per_frame.setdefault(int(f), []).append(
                {"id": num, "x1": fx[0], "y1": fx[1], "x2": fx[2], "y2": fx[3],
                 "lip": [_int_coord(v) for v in lip]})
    out = {str(f): per_frame[f] for f in sorted(per_frame)}
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(out, fh, separators=(",", ":"))
    os.replace(tmp, path)
