"""SynthMISP's files in the forms the official MISP2022 baselines read: TextGrids and segment files.

**TextGrids** (:func:`textgrid_text`, :func:`write_textgrid`): Praat's long text form as the
official readers expect it -- UTF-8 without BOM, CRLF line ends, one interval tier, and each
interval's ``intervals [k]:`` header written twice (5 lines per interval).  ESPnet
``egs2/misp2021/avsr1/local/prepare_far_data.py`` (``read_textgrid_from_file``,
``read_tier_from_lines``) asserts exactly this: line 2 is ``"\\r\\n"``, line 7 ``"item []:\\r\\n"``,
tier headers ``"    item [k]:\\r\\n"``, 5 lines per interval with both headers
``"        intervals [k]:\\r\\n"``, and it drops one trailing ``"\\r\\n"`` line;
misp2022_baseline ``track2_AVDR/tool/text_grid.py`` writes the same (``write_textgrid_to_file``).
Times are written as Python writes a float (``repr``), so a reader's ``float()`` gets back the
very value the segment file was computed from.  Only the given intervals are written: the gaps
between them are not filled with empty intervals (the official readers do not need them, and
the official rules would keep an empty interval as an utterance with empty text).

**Official utterances** (:func:`official_kept`, :func:`official_segment`): which interval the
official preparation keeps and the id and boundaries it gives it, as misp2022_baseline
``track2_AVDR/local/prepare_data.py`` (``prepare_segments_text_utt2spk_worker``) computes them:

* dropped: raw text exactly ``<NOISE>`` or ``<DEAF>``; ``xmax - xmin < 0.04``; text with the
  punctuation of :data:`PUNCTUATION` removed equal to one filler of :data:`FILLERS`
  (``嗯``, ``啊。`` are dropped; ``嗯嗯`` is kept);
* ``start = round(xmin - xmin % 0.04, 2)``, ``end = round(xmax + 0.04 - xmax % 0.04, 2)`` if
  ``xmax % 0.04 != 0`` else ``xmax``, in float64;
* id ``S<spk>_<session>_<start>-<end>`` with times ``int(round(t * 100, 0))`` zero-padded to 6.

The expression is written here again (the library does not import recipe code); the recipe's
``recipes/misp2022/local/misp.py`` ``official_boundaries`` is the same expression, and
tests/test_synthmisp_layout.py checks that both give the same ids.

**Segment files** (:func:`segment_line`, :func:`write_segment_file`):
``<root>/segments/<split>.txt``, one line per kept utterance,
``<segment_id> <speaker_id> <wav_name> <start> <end>`` (``S001``, ``<session>_Far``, seconds as in
the id, written as Python writes the float), sorted by segment id.  The line format is the
challenge's eval segment file (MISP2021 task 2 data page); where the release keeps that file
is not known, so the location is SynthMISP's choice.
"""
from __future__ import annotations

import os
from typing import Iterable, List, Sequence, Tuple

#: The transcription tier of the Near TextGrids ("content layer").
TIER = "内容层"
#: Raw interval texts the official preparation drops.
REJECTED = ("<NOISE>", "<DEAF>")
#: Removed from a text before the filler test (misp2022_baseline prepare_data.py ``punctuation_list``).
PUNCTUATION = (" ", "。", ".", "?", "？", "!", "！", "，", ",", "、")
#: Single-character fillers the official preparation drops (``sound_list``).
FILLERS = ("呃", "啊", "噢", "嗯", "唉")
#: Shortest kept interval (s) and the official boundary grid (s, one 25 fps frame).
MIN_DURATION = 0.04
GRID = 0.04

CRLF = "\r\n"


def _num(t: float) -> str:
    return repr(float(t))


def textgrid_text(intervals: Sequence[Tuple[float, float, str]], xmin: float, xmax: float,
                  tier: str = TIER) -> str:
    """The TextGrid text (CRLF line ends, doubled interval headers) of one interval tier.

    ``intervals``: ``(start, end, text)`` in seconds, written in the given order; a text must not
    contain ``"`` or a line break (``ValueError``).
    """
    lines = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "",
             f"xmin = {_num(xmin)}", f"xmax = {_num(xmax)}", "tiers? <exists>", "size = 1",
             "item []:", "    item [1]:", '        class = "IntervalTier"', f'        name = "{tier}"',
             f"        xmin = {_num(xmin)}", f"        xmax = {_num(xmax)}",
             f"        intervals: size = {len(intervals)}"]
    for k, (s, e, text) in enumerate(intervals, 1):
        if '"' in text or "\n" in text or "\r" in text:
            raise ValueError(f"interval {k}: text {text!r} holds a quote or a line break")
        if not float(e) >= float(s):
            raise ValueError(f"interval {k}: end {e} before start {s}")
        head = f"        intervals [{k}]:"
        lines += [head, head, f"            xmin = {_num(s)}", f"            xmax = {_num(e)}",
                  f'            text = "{text}"']
    lines.append("")   # the final empty line the official writer adds (its readers drop it)
    return CRLF.join(lines) + CRLF


def write_textgrid(path: str, intervals: Sequence[Tuple[float, float, str]], xmin: float, xmax: float,
                   tier: str = TIER) -> None:
    """Write :func:`textgrid_text` to ``path`` as UTF-8 bytes (no BOM), atomically."""
    data = textgrid_text(intervals, xmin, xmax, tier).encode("utf-8")
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def official_text(text: str) -> str:
    """The text with the official punctuation list removed."""
    for p in PUNCTUATION:
        text = text.replace(p, "")
    return text


def official_kept(xmin: float, xmax: float, text: str) -> bool:
    """Whether the official preparation keeps this interval (rules of the module docstring)."""
    if text in REJECTED or not xmax - xmin >= MIN_DURATION:
        return False
    return official_text(text) not in FILLERS


def official_boundaries(xmin: float, xmax: float) -> Tuple[float, float]:
    """Segment start and end (s), float64, by the official expression (module docstring)."""
    xmin, xmax = float(xmin), float(xmax)
    start = round(xmin - xmin % GRID, 2)
    r = xmax % GRID
    end = round(xmax + GRID - r, 2) if r != 0 else xmax
    return start, end


def official_time_units(t: float) -> int:
    """Seconds -> the 10 ms units of the official id (``int(round(t * 100, 0))``, half to even)."""
    return int(round(float(t) * 100, 0))


def official_segment(spk: str, session: str, xmin: float, xmax: float) -> Tuple[str, float, float]:
    """``(segment_id, start, end)`` of an interval of speaker ``spk`` (``"001"``) in ``session``."""
    start, end = official_boundaries(xmin, xmax)
    seg = f"S{spk}_{session}_{official_time_units(start):06d}-{official_time_units(end):06d}"
    return seg, start, end


def segment_line(spk: str, session: str, xmin: float, xmax: float) -> str:
    """One segment-file line ``<segment_id> S<spk> <session>_Far <start> <end>``."""
    seg, start, end = official_segment(spk, session, xmin, xmax)
    return f"{seg} S{spk} {session}_Far {_num(start)} {_num(end)}"


def session_segment_lines(session: str, tiers: Iterable[Tuple[str, Sequence[Tuple[float, float, str]]]]) -> List[str]:
    """Segment lines of the kept intervals of ``tiers`` (``(spk, intervals)`` per speaker)."""
    return [segment_line(spk, session, s, e) for spk, ivs in tiers for s, e, x in ivs
            if official_kept(s, e, x)]


def write_segment_file(path: str, lines: Iterable[str]) -> None:
    """Write segment lines, sorted by segment id (byte order), LF line ends, atomically."""
    lines = sorted(set(lines))
    ids = [ln.split(" ", 1)[0] for ln in lines]
    if len(ids) != len(set(ids)):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"{path}: duplicate segment ids {dup[:5]}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write("".join(ln + "\n" for ln in lines))
    os.replace(tmp, path)
