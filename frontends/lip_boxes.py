"""Per-session lip-detection files: the schema we assume for MISP2022, behind one parser.

The real MISP2022 detection files' location and schema are not public in what we
have, so this module is the single place that knows the format.  To support a
different layout, write another ``load_*`` function that returns the same
:class:`SessionDetections` and register it in :data:`LOADERS`.

Assumed location: ``<misp_root>/detection/<split>/far/<session>_Far.json``
(one file per session video).

Assumed schema (``avsr-misp-detection-v1``)::

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
import os
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional

import numpy as np

from frontends.errors import MediaError

FORMAT = "avsr-misp-detection-v1"


@dataclass
class SpeakerTrack:
    frames: np.ndarray  # int64 [K], ascending, frames with a detection
    boxes: np.ndarray  # float32 [K, 4], x1 y1 x2 y2
    lip_points: Optional[list] = None

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

    def boxes(self, spk: str, num_frames: Optional[int] = None) -> np.ndarray:
        """Dense [T, 4] boxes (NaN = missing) for one speaker."""
        if spk not in self.speakers:
            raise MediaError(self.path, f"no detections for speaker {spk!r} "
                             f"(has {sorted(self.speakers)})")
        return self.speakers[spk].dense(self.num_frames if num_frames is None else num_frames)


def load_avsr_v1(path: "str | os.PathLike[str]") -> SessionDetections:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MediaError(path, "detection file not found")
    try:
        with open(path, "r", encoding="utf-8") as f:
            d = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MediaError(path, f"cannot parse detection JSON ({e})") from None
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
                                 video=str(d.get("video", "")), speakers=spk)
    except (KeyError, TypeError, ValueError) as e:
        raise MediaError(path, f"malformed detection file ({e})") from None


LOADERS: Dict[str, Callable[[str], SessionDetections]] = {FORMAT: load_avsr_v1}


def load_detections(path: "str | os.PathLike[str]", fmt: str = FORMAT) -> SessionDetections:
    """Load a per-session detection file with the registered parser ``fmt``."""
    if fmt not in LOADERS:
        raise ValueError(f"unknown detection format {fmt!r}; known: {sorted(LOADERS)}")
    return LOADERS[fmt](os.fspath(path))


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
