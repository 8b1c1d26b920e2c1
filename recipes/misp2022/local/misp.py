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
* utterance ``S<SpkID>_<Session>_<start>-<end>`` (:func:`utterance_id`, parsed back by
  :func:`parse_utterance_id`): start/end in 10 ms units, zero-padded to 6 digits
  (``S016_R01_S016017_C02_I1_000156-000252``).  Which times go in depends on the text rules
  (``--text_norm`` of ``local/prepare_data.py``):

  - ``official`` (the default): the official boundaries (:func:`official_boundaries`, the
    interval snapped outward to the 40 ms grid as the official expression computes it in
    float64), in units by :func:`official_time_units`; the ``segments`` file holds the same
    official start/end seconds (2 decimals).  The released eval ids are multiples of 4.
  - ``toolkit``: the interval times themselves in 10 ms units, rounded half up
    (:func:`time_units`); ``segments`` holds the same quantised times.

TextGrid reading: the file's bytes are decoded by BOM (UTF-16 LE/BE, UTF-8 with BOM),
otherwise as UTF-8, otherwise as UTF-16 when the bytes look like it (NUL bytes),
otherwise GB18030; then normalised (:func:`normalize_textgrid_text`: BOM removed,
CRLF/CR -> LF, an ``intervals [k]:``/``points [k]:`` header line that repeats the line
before it dropped -- the release writes each interval header twice, which praatio
refuses) and parsed by praatio (long or short text format).  Only the interval tier
named :data:`TIER` (``内容层``) is used; a file without it raises :class:`TextGridError`.
A file that still cannot be parsed raises :class:`TextGridError` naming the file.
praatio strips a label's outer whitespace and unescapes ``""`` to ``"``.

Official text rules (``--text_norm official``; :func:`official_segment`), as the official
data preparation writes them (mispchallenge/misp2022_baseline
``track2_AVDR/local/prepare_data.py``, with its TextGrid reader ``track2_AVDR/tool/text_grid.py``):

* the interval's text as the official reader returns it (:func:`official_reader_text`):
  the text up to the first ``=`` with every space and ``"`` removed;
* an interval is dropped when that text is exactly ``<NOISE>`` or ``<DEAF>``
  (:data:`OFFICIAL_REJECTED`), or when ``xmax - xmin < 0.04`` (float64), or when the text
  with the 10 characters of :data:`OFFICIAL_PUNCTUATION` removed *equals* one filler of
  :data:`OFFICIAL_FILLERS` (``嗯`` and ``嗯。`` are dropped, ``嗯嗯`` is kept);
* every other interval is kept, with its official text (punctuation list removed) and
  the official boundaries.  The official reader keeps empty intervals (text ``''``), and
  ``''`` is neither rejected nor a filler, so the official preparation keeps every empty
  interval of at least 40 ms as an utterance with empty text (its Kaldi recipe then
  aligns them as silence).

The single departure of the toolkit from the official kept set: the text that feeds
tokens and CER is the official text passed through :func:`normalize_text` (so that
references and hypotheses are normalised alike), and an interval the official rules
keep whose normalised text is empty -- every empty interval, ``<NOISE>`` with other
characters around it, punctuation only -- is skipped and reported (category
``no speech characters after normalisation``).  Two intervals of one speaker that map
to the same id are kept once (the first in time order) and the others reported
(``duplicate id``); the official code de-duplicates identical lines with ``set()`` and
would write two ``text`` lines for one id when the texts differ.  One reader difference
remains: praatio strips a label's outer tabs and non-ASCII spaces (U+3000), which the
official reader keeps, so a filler surrounded by such characters is dropped here and
kept there.

Toolkit text rules (``--text_norm toolkit``): :func:`normalize_text` on the label, an
interval whose normalised text is empty is dropped, intervals shorter than 10 ms are
dropped, times are the interval times in 10 ms units.

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

Eval segment files (:func:`read_segment_file`): the eval release's list of segments to
recognise, one ``<segment_id> <speaker_id> <wav_name> <start> <end>`` per line (the
challenge's MISP2021 task 2 data page); ``wav_name`` is ``<Session>_Far`` or
``<Session>_Far_<Ch>``, with or without ``.wav``, or a path to such a file
(:func:`parse_wav_name`).  A line that cannot be used raises :class:`SegmentFileError`
(``str()`` is ``FILE:LINE: reason``).
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
        end   = round(xmax + 0.04 - xmax % 0.04   if xmax % 0.04 != 0   else xmax, 2)

    (both branches of ``end`` are rounded to 2 decimals, as in the official code).

    Binary floating point makes ``x % 0.04`` for a multiple ``x`` of 0.04 either a hair
    above 0 or a hair below 0.04, so on grid points this is not floor/ceil: e.g.
    ``xmin = 0.12`` gives start 0.08 (one frame earlier) and ``xmax = 0.2`` gives end 0.24
    (one frame later), while ``0.04`` stays ``0.04`` at both ends.
    """
    xmin, xmax = float(xmin), float(xmax)
    g = OFFICIAL_GRID
    start = round(xmin - xmin % g, 2)
    r = xmax % g
    end = round(xmax + g - r if r != 0 else xmax, 2)
    return start, end


def official_time_units(stamp: float) -> int:
    """A boundary (s) -> 10 ms units as the official utterance id writes them
    (``int(round(stamp * 100, 0))``, Python's round: half to even)."""
    return int(round(float(stamp) * 100, 0))


#: Interval texts the official preparation drops (compared with the whole text).
OFFICIAL_REJECTED = ("<NOISE>", "<DEAF>")
#: The official punctuation list, removed from the text before the filler test.
OFFICIAL_PUNCTUATION = (" ", "。", ".", "?", "？", "!", "！", "，", ",", "、")
#: Single filler characters: an interval whose text (punctuation removed) equals one is dropped.
OFFICIAL_FILLERS = ("呃", "啊", "噢", "嗯", "唉")
#: The official minimum interval duration (s): kept when ``xmax - xmin >= 0.04``.
OFFICIAL_MIN_DURATION = 0.04

#: Drop categories of :func:`official_segment` (also the report's categories).
DROP_REJECTED = "non-speech mark (<NOISE>/<DEAF>)"
DROP_SHORT = "shorter than 40 ms"
DROP_FILLER = "single filler"


def official_reader_text(label: str) -> str:
    """An interval label (as praatio returns it) -> the text the official reader returns.

    The official reader (``track2_AVDR/tool/text_grid.py``) takes the ``text = "..."`` line,
    keeps what lies between its first and second ``=``, and removes every space, ``"``,
    CR and LF.  From the label that is: the part before the label's first ``=``, with
    spaces, quotes, CR and LF removed.
    """
    t = label.split("=")[0]
    for c in (" ", '"', "\r", "\n"):
        t = t.replace(c, "")
    return t


def official_text(text: str) -> str:
    """Remove the official punctuation list (:data:`OFFICIAL_PUNCTUATION`) from ``text``."""
    for c in OFFICIAL_PUNCTUATION:
        text = text.replace(c, "")
    return text


@dataclass(frozen=True)
class OfficialSegment:
    """An interval the official rules keep."""

    start: float  # official start (s), 2 decimals
    end: float  # official end (s), 2 decimals
    start_units: int  # 10 ms units, as the id writes them
    end_units: int
    text: str  # the official text: reader text with the punctuation list removed


def official_segment(xmin: float, xmax: float, label: str) -> Tuple[OfficialSegment, Optional[str]]:
    """Apply the official rules to one interval.

    Returns ``(segment, None)`` when the official preparation keeps the interval, and
    ``(segment, category)`` when it drops it (``category`` one of :data:`DROP_REJECTED`,
    :data:`DROP_SHORT`, :data:`DROP_FILLER`, tested in this order); the segment is
    returned in both cases so that a dropped interval can be reported under its id.
    """
    xmin, xmax = float(xmin), float(xmax)
    raw = official_reader_text(label)
    start, end = official_boundaries(xmin, xmax)
    seg = OfficialSegment(start, end, official_time_units(start), official_time_units(end),
                          official_text(raw))
    if raw in OFFICIAL_REJECTED:
        return seg, DROP_REJECTED
    if not xmax - xmin >= OFFICIAL_MIN_DURATION:
        return seg, DROP_SHORT
    if seg.text in OFFICIAL_FILLERS:
        return seg, DROP_FILLER
    return seg, None


def official_utterance_id(spk: str, session: str, start: float, end: float) -> str:
    """The official utterance id of a segment with official boundaries ``start``/``end`` (s)."""
    return utterance_id(spk, session, official_time_units(start), official_time_units(end))


@dataclass(frozen=True)
class UtteranceId:
    spk: str  # SpkID without the "S", e.g. "016"
    session: str
    start_units: int
    end_units: int

    @property
    def start(self) -> float:
        return self.start_units / 100.0

    @property
    def end(self) -> float:
        return self.end_units / 100.0


_UTT_RE = re.compile(r"^S(?P<spk>[0-9A-Za-z]+)_(?P<session>\S+)_(?P<s>\d{6,})-(?P<e>\d{6,})$")


def parse_utterance_id(utt: str) -> Optional[UtteranceId]:
    """``S016_R01_S016017_C02_I1_000156-000252`` -> UtteranceId("016", "R01_S016017_C02_I1", 156, 252).

    ``None`` when ``utt`` is not of that form.  :func:`utterance_id` writes the string back.
    """
    m = _UTT_RE.match(utt)
    if not m:
        return None
    return UtteranceId(m.group("spk"), m.group("session"), int(m.group("s")), int(m.group("e")))


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


def read_tier(path: str, tier: str = TIER, *,
              keep_empty: bool = False) -> List[Tuple[float, float, str]]:
    """Intervals ``(start, end, label)`` of ``tier`` in ``path``, sorted by time.

    Intervals with an empty (or all-whitespace) label are left out unless ``keep_empty``
    (the official reader keeps them).

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
        tg = textgrid_io.parseTextgridStr(data, includeEmptyIntervals=keep_empty)
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
            if keep_empty or label.strip():
                out.append((start, end, label))
    except (TypeError, ValueError, IndexError) as e:
        raise TextGridError(path, f"malformed interval in tier {tier!r} ({e})") from None
    out.sort(key=lambda x: (x[0], x[1]))
    return out


# --------------------------------------------------------------------------- eval segment files

_WAV_NAME_RE = re.compile(r"^(?P<session>.+)_Far(?:_(?P<ch>\d+))?$")


def parse_wav_name(name: str) -> Optional[Tuple[str, Optional[int]]]:
    """``R01_S016017_C02_I1_Far_0.wav`` (or a path to it, or without ``.wav``, or
    ``..._Far``) -> ``("R01_S016017_C02_I1", 0)`` (channel ``None`` for ``..._Far``).

    ``None`` when the name is not of that form.
    """
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    if base.lower().endswith(".wav"):
        base = base[:-4]
    m = _WAV_NAME_RE.match(base)
    if not m:
        return None
    ch = m.group("ch")
    return m.group("session"), (int(ch) if ch is not None else None)


class SegmentFileError(Exception):
    """A line of an eval segment file that cannot be used; ``str()`` is ``FILE:LINE: reason``."""

    def __init__(self, path: str, line: int, reason: str):
        self.path = path
        self.line = line
        self.reason = reason
        super().__init__(f"{path}:{line}: {reason}")


@dataclass(frozen=True)
class EvalSegment:
    utt: str
    speaker: str
    wav_name: str
    session: str
    start: float
    end: float
    line: int  # 1-based line number in the file


def read_segment_file(path: str) -> List[EvalSegment]:
    """Read an eval segment file (``<segment_id> <speaker_id> <wav_name> <start> <end>``).

    Blank lines are ignored.  Raises :class:`SegmentFileError` naming ``FILE:LINE`` for a
    line without exactly 5 fields, a time that is not a finite number >= 0,
    ``end <= start``, a ``wav_name`` not of the form :func:`parse_wav_name` reads, or an
    id already used on an earlier line; :class:`SegmentFileError` with line 0 when the
    file cannot be read or has no segment.  Segments are returned in file order.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise SegmentFileError(path, 0, f"cannot read ({e.strerror or e})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise SegmentFileError(path, 0, f"not UTF-8 text ({e})") from None
    out: List[EvalSegment] = []
    seen = {}
    for no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        f = line.split()
        if len(f) != 5:
            raise SegmentFileError(path, no, f"expected 5 fields '<segment_id> <speaker_id> "
                                             f"<wav_name> <start> <end>', got {len(f)}: {line.strip()!r}")
        utt, spk, wav_name, s, e = f
        try:
            start, end = float(s), float(e)
        except ValueError:
            raise SegmentFileError(path, no, f"start/end are not numbers: {s!r} {e!r}") from None
        if not (math.isfinite(start) and math.isfinite(end)) or start < 0:
            raise SegmentFileError(path, no, f"bad times: start {s} end {e}")
        if end <= start:
            raise SegmentFileError(path, no, f"end {e} <= start {s} for {utt}")
        parsed = parse_wav_name(wav_name)
        if parsed is None:
            raise SegmentFileError(path, no, f"wav_name {wav_name!r} is not <Session>_Far or "
                                             f"<Session>_Far_<Ch> (with or without .wav)")
        if utt in seen:
            raise SegmentFileError(path, no, f"duplicate segment id {utt} (first on line {seen[utt]})")
        seen[utt] = no
        out.append(EvalSegment(utt, spk, wav_name, parsed[0], start, end, no))
    if not out:
        raise SegmentFileError(path, 0, "no segment in the file")
    return out
