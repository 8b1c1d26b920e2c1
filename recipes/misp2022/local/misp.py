"""MISP2022 corpus specifics: file naming, TextGrid reading, text normalisation.

File naming (see docs/DESIGN.md)::

    transcription/<split>/<Session>_Near_<SpkID>.TextGrid      tier 内容层
    audio/<split>/far/<Session>_Far_<Ch>.wav
    video/<split>/far/<Session>_Far.mp4
    detection/<split>/far/<Session>_Far.json                  (toolkit), or the release's
    roi_coordinates/<split>/far/lip/<Session>_Far.json        (see frontends/lip_boxes.py)

``<Session>`` is ``<Room>_<SpeakerIDs>_<Config>_<Index>``, e.g. ``R01_S001002003_C01_I0``;
``<SpkID>`` is the 3-digit speaker number (``001``).

Ids written to the data dir:

* recording ``<Session>_Far``
* speaker ``S<SpkID>``
* utterance ``S<SpkID>_<Session>_<start>-<end>`` where start/end are the interval
  times in 10 ms units, rounded half up, zero-padded to 6 digits
  (``S001_R01_S001002003_C01_I0_000115-000152``).  The ``segments`` file holds the
  same quantised times in seconds, so the id and the segment always agree.

TextGrid reading: the file's bytes are decoded by BOM (UTF-16 LE/BE, UTF-8 with BOM),
otherwise as UTF-8, otherwise as UTF-16 when the bytes look like it (NUL bytes),
otherwise GB18030; then normalised (:func:`normalize_textgrid_text`: BOM removed,
CRLF/CR -> LF, an ``intervals [k]:``/``points [k]:`` header line that repeats the line
before it dropped -- the release writes each interval header twice, which praatio
refuses) and parsed by praatio (long or short text format).  Only the interval tier
named :data:`TIER` (``内容层``) is used; a file without it raises :class:`TextGridError`.
A file that still cannot be parsed raises :class:`TextGridError` naming the file.

Official boundaries (:func:`official_boundaries`): the expression of the official data
preparation (misp2022_baseline ``track2_AVDR/local/prepare_data.py``), provided and
tested but not used by stage 1 yet.

Text normalisation (:func:`normalize_text`), in this order:

1. Unicode NFKC: full-width ASCII letters/digits/punctuation become half-width
   (``ＡＢＣ１２`` -> ``ABC12``), the ideographic space becomes a space, and other
   compatibility forms (circled digits, ligatures) are unfolded.
2. Non-speech marks in angle brackets are removed wherever they occur:
   ``<NOISE>``, ``<DEAF>`` and any other ``<...>`` tag (case-insensitive).
3. Latin letters are upper-cased.
4. Everything that is not a letter or a digit (Unicode categories L* and N*) is
   removed: Chinese and ASCII punctuation (``，。！？、；：“”‘’（）《》…—`` and
   ``!"#$%&'()*+,-./:;<=>?@[]^_`{|}~``), symbols, and all whitespace.

An interval whose normalised text is empty (only marks, only punctuation) is dropped.
"""
from __future__ import annotations

import math
import os
import re
import unicodedata
from dataclasses import dataclass
from typing import List, Optional, Tuple

#: The transcription tier of the MISP2022 Near TextGrids ("content layer").
TIER = "内容层"

#: Non-speech marks: any <...> tag (``<NOISE>``, ``<DEAF>``, ...).
MARK_RE = re.compile(r"<[^<>]*>")

_TG_RE = re.compile(r"^(?P<session>.+)_Near_(?P<spk>[0-9A-Za-z]+)\.TextGrid$", re.IGNORECASE)


class TextGridError(Exception):
    """A TextGrid that cannot be used; ``str()`` starts with the path."""

    def __init__(self, path: str, reason: str, kind: str = "unreadable TextGrid"):
        self.path = path
        self.reason = reason
        self.kind = kind
        super().__init__(f"{path}: {reason}")


@dataclass(frozen=True)
class NearName:
    session: str
    spk: str  # SpkID as in the file name, e.g. "001"


def parse_near_name(filename: str) -> Optional[NearName]:
    """``R01_S001002_C01_I0_Near_001.TextGrid`` -> NearName("R01_S001002_C01_I0", "001")."""
    m = _TG_RE.match(os.path.basename(filename))
    if not m:
        return None
    return NearName(m.group("session"), m.group("spk"))


def recording_id(session: str) -> str:
    return f"{session}_Far"


def speaker_id(spk: str) -> str:
    return f"S{spk}"


def time_units(t: float) -> int:
    """Seconds -> 10 ms units, rounded half up."""
    return int(math.floor(t * 100.0 + 0.5 + 1e-9))


def utterance_id(spk: str, session: str, start_units: int, end_units: int) -> str:
    return f"{speaker_id(spk)}_{session}_{start_units:06d}-{end_units:06d}"


def far_wav_path(root: str, split: str, session: str, channel: int) -> str:
    return os.path.join(root, "audio", split, "far", f"{session}_Far_{channel}.wav")


def far_video_path(root: str, split: str, session: str) -> str:
    return os.path.join(root, "video", split, "far", f"{session}_Far.mp4")


def detection_dir(root: str, split: str) -> str:
    return os.path.join(root, "detection", split, "far")


def transcription_dir(root: str, split: str) -> str:
    return os.path.join(root, "transcription", split)


# --------------------------------------------------------------------------- text


def normalize_text(text: str) -> str:
    """Apply the normalisation rules of the module docstring."""
    s = unicodedata.normalize("NFKC", text)
    s = MARK_RE.sub("", s)
    s = s.upper()
    return "".join(c for c in s if unicodedata.category(c)[0] in "LN")


def has_mark(text: str) -> bool:
    return MARK_RE.search(unicodedata.normalize("NFKC", text)) is not None


# --------------------------------------------------------------------------- boundaries

#: The official preparation's time grid (one 25 fps video frame), seconds.
OFFICIAL_GRID = 0.04


def official_boundaries(xmin: float, xmax: float) -> Tuple[float, float]:
    """Segment start/end (s) of an interval as the official preparation computes them.

    In float64, as misp2022_baseline ``track2_AVDR/local/prepare_data.py`` (and ESPnet
    ``egs2/misp2021/avsr1/local/prepare_far_data.py``) write it::

        start = round(xmin - xmin % 0.04, 2)
        end   = round(xmax + 0.04 - xmax % 0.04, 2)   if xmax % 0.04 != 0   else xmax

    Binary floating point makes ``x % 0.04`` for a multiple ``x`` of 0.04 either a hair
    above 0 or a hair below 0.04, so on grid points this is not floor/ceil: e.g.
    ``xmin = 0.12`` gives start 0.08 (one frame earlier) and ``xmax = 0.2`` gives end 0.24
    (one frame later), while ``0.04`` stays ``0.04`` at both ends.
    """
    xmin, xmax = float(xmin), float(xmax)
    g = OFFICIAL_GRID
    start = round(xmin - xmin % g, 2)
    r = xmax % g
    end = round(xmax + g - r, 2) if r != 0 else xmax
    return start, end


def official_time_units(stamp: float) -> int:
    """A boundary (s) -> 10 ms units as the official utterance id writes them
    (``int(round(stamp * 100, 0))``, Python's round: half to even)."""
    return int(round(float(stamp) * 100, 0))


# --------------------------------------------------------------------------- TextGrid

#: An interval/point header line (``intervals [3]:``) of the long TextGrid form.
_TG_HEADER_RE = re.compile(r"^\s*(intervals|points)\s*\[\s*\d+\s*\]\s*:\s*$")


def normalize_textgrid_text(text: str) -> str:
    """The official TextGrid form -> one praatio reads.

    Removes a leading BOM, turns CRLF (and lone CR) into LF, and drops an
    ``intervals [k]:`` / ``points [k]:`` line that repeats the line just before it (the
    release writes each interval's header twice: 5 lines per interval).  A TextGrid
    already in praatio's form comes back unchanged except for line ends.
    """
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    out: List[str] = []
    for line in text.split("\n"):
        if out and _TG_HEADER_RE.match(line) and line.strip() == out[-1].strip():
            continue
        out.append(line)
    return "\n".join(out)



def decode_textgrid_bytes(data: bytes) -> str:
    """Decode a TextGrid file's bytes (see module docstring for the order of attempts)."""
    if data.startswith(b"\xff\xfe") or data.startswith(b"\xfe\xff"):
        return data.decode("utf-16")
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    if b"\x00" in data and len(data) % 2 == 0:
        # BOM-less UTF-16: ASCII characters have their zero byte first (BE) or second (LE)
        even_zeros = data[0::2].count(0)
        odd_zeros = data[1::2].count(0)
        enc = "utf-16-be" if even_zeros > odd_zeros else "utf-16-le"
        try:
            return data.decode(enc)
        except UnicodeDecodeError:
            pass
    return data.decode("gb18030")


def read_tier(path: str, tier: str = TIER) -> List[Tuple[float, float, str]]:
    """Non-empty intervals ``(start, end, label)`` of ``tier`` in ``path``.

    Raises :class:`TextGridError` (``kind`` ``"missing tier"`` or ``"unreadable TextGrid"``).
    """
    from praatio.utilities import textgrid_io

    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise TextGridError(path, f"cannot read ({e.strerror or e})") from None
    if not raw.strip():
        raise TextGridError(path, "empty file")
    try:
        data = decode_textgrid_bytes(raw)
    except UnicodeDecodeError as e:
        raise TextGridError(path, f"unknown text encoding ({e})") from None
    data = normalize_textgrid_text(data)
    try:
        tg = textgrid_io.parseTextgridStr(data, includeEmptyIntervals=False)
        tiers = {t["name"]: t for t in tg["tiers"]}
    except Exception as e:  # praatio raises assorted errors on malformed files
        raise TextGridError(path, f"not a parseable TextGrid ({type(e).__name__}: {e})") from None
    if tier not in tiers:
        names = ", ".join(repr(n) for n in tiers) or "none"
        raise TextGridError(path, f"no tier {tier!r} (tiers: {names})", kind="missing tier")
    t = tiers[tier]
    if t.get("class") not in ("IntervalTier", None):
        raise TextGridError(path, f"tier {tier!r} is a {t.get('class')}, not an IntervalTier",
                            kind="missing tier")
    out = []
    try:
        for e in t["entries"]:
            start, end, label = float(e[0]), float(e[1]), str(e[2])
            if label.strip():
                out.append((start, end, label))
    except (TypeError, ValueError, IndexError) as e:
        raise TextGridError(path, f"malformed interval in tier {tier!r} ({e})") from None
    out.sort(key=lambda x: (x[0], x[1]))
    return out
