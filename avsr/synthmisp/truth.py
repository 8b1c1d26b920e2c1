"""SynthMISP's ground truth for the utterances of a data dir: which generated turn a segment is, and
when each of its characters is spoken.

The generator writes ``<corpus>/truth/<split>/<session>.json`` per session
(:func:`avsr.synthmisp.generate.turn_truth`): ``turns``, each with ``speaker`` (``"024"``),
``start`` / ``end`` (session seconds), ``text`` and ``chars`` = ``[[char, start, end], ...]`` (the
character's sounds, session seconds).  A data dir made from the corpus (the recipe's stage 1) has
one segment per kept transcript interval, with the official boundaries of
:func:`avsr.synthmisp.layout.official_boundaries`: the turn's start and end (rounded to 10 ms in the
TextGrid) moved out to the 40 ms grid.  :func:`match_turn` inverts that: the turn of the segment's
speaker whose start lies in ``[start, start + 0.04)`` and whose end lies in ``(end - 0.04, end]``
(each with 6 ms of slack for the 10 ms / 1 ms roundings).  Turns of one speaker never overlap, so
at most one matches; a kept interval that is no turn (a filler such as ``嗯嗯``) matches none.  A
matched turn whose text (punctuation removed as the official rules do) is not the segment's text
is an error: the data dir was not made from this corpus.

:func:`segment_truths` does this for every segment of a data dir and adds the share of the turn
during which another talker speaks (the truth is per talker: an overlapped segment's audio also
holds the other talker's speech).
"""
from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from avsr.eval.cpcer import session_of
from avsr.synthmisp.layout import GRID, official_text

__all__ = ["TruthError", "SegmentTruth", "load_turns", "session_snr", "match_turn", "overlap_share", "segment_truths"]

#: Slack (s) on each side of the boundary windows of :func:`match_turn`: the TextGrid rounds to 10 ms
#: (at most 5 ms off), the truth JSON to 1 ms.
SLACK = 0.006


class TruthError(ValueError):
    """The truth and the data dir do not fit together (a segment's turn says other text, a session is
    missing, a session name is in two splits)."""


@dataclass
class SegmentTruth:
    """One segment of a data dir with its generated turn (``None``: the interval is no turn, e.g. a
    filler) and that turn's characters ``[(char, start, end)]`` in session seconds."""
    utt: str
    session: str
    speaker: str
    start: float
    end: float
    text: str
    turn: Optional[dict] = None
    chars: List[Tuple[str, float, float]] = field(default_factory=list)
    overlap: float = 0.0        # share of the turn's duration during which another talker speaks
    # per character: its midpoint lies within another talker's sounds (their first to last character)
    char_overlapped: List[bool] = field(default_factory=list)


def _truth_files(corpus: "str | os.PathLike[str]", splits: Optional[Sequence[str]] = None):
    """``(path, contents)`` of every ``<corpus>/truth/<split>/*.json`` of ``splits`` (default: every split)."""
    root = os.path.join(os.fspath(corpus), "truth")
    if not os.path.isdir(root):
        raise TruthError(f"{root}: no truth directory (not a SynthMISP corpus?)")
    splits = sorted(os.listdir(root)) if splits is None else list(splits)
    for split in splits:
        for f in sorted(glob.glob(os.path.join(root, split, "*.json"))):
            with open(f, encoding="utf-8") as fh:
                yield f, json.load(fh)


def load_turns(corpus: "str | os.PathLike[str]", splits: Optional[Sequence[str]] = None) -> Dict[str, List[dict]]:
    """``{session: turns}`` from ``<corpus>/truth/<split>/*.json`` of ``splits`` (default: every split)."""
    out: Dict[str, List[dict]] = {}
    for f, d in _truth_files(corpus, splits):
        if "turns" not in d:
            raise TruthError(f"{f}: no 'turns' (written by an older generator: generate the corpus again)")
        if d["session"] in out:
            raise TruthError(f"{f}: session {d['session']} is in two splits")
        out[d["session"]] = d["turns"]
    return out


def session_snr(corpus: "str | os.PathLike[str]", splits: Optional[Sequence[str]] = None) -> Dict[str, float]:
    """``{session: snr_db}``: the talkers-to-TV-noise ratio the generator drew for each session
    (``snr_db`` of ``<corpus>/truth/<split>/<session>.json``)."""
    out: Dict[str, float] = {}
    for f, d in _truth_files(corpus, splits):
        if "snr_db" not in d or "session" not in d:
            raise TruthError(f"{f}: no 'snr_db' (written by an older generator: generate the corpus again)")
        out[d["session"]] = float(d["snr_db"])
    return out


def match_turn(turns: Sequence[dict], speaker: str, start: float, end: float,
               text: Optional[str] = None) -> Optional[dict]:
    """The turn of ``speaker`` (``"024"`` or ``"S024"``) that the segment ``[start, end]`` was cut from
    (rule of the module docstring), or ``None``.  With ``text``, a matched turn must say it
    (:class:`TruthError` otherwise)."""
    spk = speaker[1:] if speaker.startswith("S") else speaker
    hits = [t for t in turns if t["speaker"] == spk
            and start - SLACK <= t["start"] < start + GRID + SLACK
            and end - GRID - SLACK < t["end"] <= end + SLACK]
    if not hits:
        return None
    if len(hits) > 1:
        raise TruthError(f"segment S{spk} {start}-{end}: {len(hits)} turns match")
    t = hits[0]
    if text is not None and official_text(t["text"]) != text:
        raise TruthError(f"segment S{spk} {start}-{end}: the data dir says {text!r}, its turn {t['text']!r}")
    return t


def overlap_share(turn: dict, turns: Sequence[dict]) -> float:
    """Share of ``turn``'s duration during which a turn of another speaker sounds (the generator's own
    measure, :func:`avsr.synthmisp.generate.covered_share`)."""
    from avsr.synthmisp.generate import covered_share
    return covered_share(turn["start"], turn["end"],
                         [(o["start"], o["end"]) for o in turns if o["speaker"] != turn["speaker"]])


def segment_truths(corpus: "str | os.PathLike[str]", data_dir: "str | os.PathLike[str]") -> List[SegmentTruth]:
    """Every segment of ``data_dir`` (sorted by id) with its turn of the ``corpus`` truth."""
    from avsr.data.datadir import read_datadir
    dd = read_datadir(data_dir)
    if not dd.segments:
        raise TruthError(f"{data_dir}: no segments file")
    by_session = load_turns(corpus)
    out: List[SegmentTruth] = []
    for utt in sorted(dd.segments):
        seg = dd.segments[utt]
        session = session_of(seg.recording)
        if session not in by_session:
            raise TruthError(f"{utt}: session {session} has no truth file in {corpus}")
        turns = by_session[session]
        spk = dd.utt2spk.get(utt, utt.split("_")[0])
        text = dd.text.get(utt)
        t = match_turn(turns, spk, seg.start, seg.end, text)
        st = SegmentTruth(utt, session, spk[1:] if spk.startswith("S") else spk, seg.start, seg.end, text or "")
        if t is not None:
            st.turn = t
            st.chars = [(c, float(a), float(b)) for c, a, b in t["chars"]]
            st.overlap = overlap_share(t, turns)
            others = [(o["chars"][0][1], o["chars"][-1][2]) if o["chars"] else (o["start"], o["end"])
                      for o in turns if o["speaker"] != t["speaker"]]
            st.char_overlapped = [any(s <= (a + b) / 2 < e for s, e in others) for _, a, b in st.chars]
        out.append(st)
    return out
