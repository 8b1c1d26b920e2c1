"""cpCER, the MISP2022 AVSR (task 2) metric: concatenated minimum-permutation character error rate.

Definition, as scored by the challenge's tool (mispchallenge/misp2022_baseline
``track2_AVDR/tool/cpcer.py``, edit counts as in ``track2_AVDR/tool/cer.py``):

* **per session**, every speaker's utterance texts are concatenated in order of segment start time
  (ties: utterance id; the official tools sort lines by utterance id, whose ``SSSSSS-EEEEEE`` time
  suffix gives the same order), for the reference and for the hypothesis; whitespace is removed
  (Mandarin text has no word spaces, as in :mod:`avsr.eval.metrics`);
* in the **hypothesis only**, ``<UNK>`` becomes ``*`` (the official tool replaces it in the
  concatenated hypothesis string, never in the reference); the toolkit's own unknown token
  ``<unk>`` (:data:`avsr.text.tokens.UNK`) is mapped the same way;
* the edits between a reference speaker's string and a hypothesis speaker's string are their
  character Levenshtein distance (substitutions + deletions + insertions, each cost 1), computed with
  ``rapidfuzz.distance.Levenshtein`` (the edit-distance library jiwer itself uses);
* reference and hypothesis speakers are matched one to one by the assignment with the fewest
  total edits (Hungarian algorithm, ``scipy.optimize.linear_sum_assignment``), whatever the
  labels are: cpCER is invariant to a renaming of the hypothesis speakers.  With oracle speaker
  ids (every hypothesis inherits the speaker of its segment, as :func:`datadir_cpcer` does) the
  best assignment is normally the identity; among assignments with equally few edits the one that
  matches the most equal labels is taken, so a tie never reports a needless swap;
* a reference speaker left without a hypothesis speaker is matched to an empty string (all its
  characters are deletions), as the official tool pads the hypothesis side;
* **more hypothesis speakers than reference speakers**: the official tool raises
  ``ValueError('The number of speakers should be <= ground truth.')``.  This module instead pads the
  reference side with empty speakers, so each unmatched hypothesis speaker's characters count as
  insertions (and add no reference characters);
* session cpCER = Σ edits / Σ reference characters of the session; **overall** cpCER = Σ edits over
  all sessions / Σ reference characters over all sessions (a pooled ratio, not the mean of the
  session ratios), as the official tool's ``cost_total / entire_total``.

A session that has hypotheses but no reference utterance counts all its hypothesis characters as
insertions in the overall numerator; its own cpCER is ``None`` (no reference characters).  The
official tool stores distances in ``int16`` (wrong past 32767 characters per speaker string); the
distances here are exact integers.

Implementation: written here, not taken from ``meeteval``: meeteval scores cpWER over
whitespace-separated words (characters would have to be re-spaced), ships only as an sdist that
builds a Cython/C++ extension, and would be a new dependency for a 20-line assignment.

Interface::

    score_cpcer(refs, hyps) -> {"cpcer", "edits", "ref_chars", "per_session": {session: {"cpcer", "edits", "ref_chars"}}}
    datadir_cpcer(dd, hyps, utts=None, name="") -> the same dict, speakers/sessions/start times from a data dir

``refs`` and ``hyps`` are iterables of :class:`Utt`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

import numpy as np
from rapidfuzz.distance import Levenshtein
from scipy.optimize import linear_sum_assignment

__all__ = ["Utt", "CpCERError", "UNK_TOKENS", "session_of", "hyp_norm", "ref_norm", "speaker_strings",
           "assign_speakers", "session_score", "score_cpcer", "datadir_cpcer"]

#: Hypothesis tokens scored as ``*``: the official ``<UNK>`` and the toolkit's ``<unk>``.
UNK_TOKENS = ("<UNK>", "<unk>")

_WS = re.compile(r"\s+")


class CpCERError(ValueError):
    """Inputs that cannot be scored (e.g. an utterance without a speaker); the message names the source."""


@dataclass(frozen=True)
class Utt:
    """One utterance: its session (recording), speaker, start time in seconds, and text."""

    utt_id: str
    session: str
    speaker: str
    start: float
    text: str


def session_of(recording: str) -> str:
    """The session name of a recording id: the id without a trailing ``_Far`` (MISP far-field
    recordings are ``<session>_Far``), else the id itself."""
    return recording[:-len("_Far")] if recording.endswith("_Far") and len(recording) > 4 else recording


def ref_norm(text: str) -> str:
    """A reference string as scored: whitespace removed."""
    return _WS.sub("", text)


def hyp_norm(text: str) -> str:
    """A hypothesis string as scored: whitespace removed, ``<UNK>`` / ``<unk>`` -> ``*``."""
    text = _WS.sub("", text)
    for tok in UNK_TOKENS:
        text = text.replace(tok, "*")
    return text


def speaker_strings(utts: Iterable[Utt]) -> Dict[str, Dict[str, str]]:
    """``{session: {speaker: concatenated raw text}}``, utterances ordered by (start, utt id)."""
    by: Dict[str, Dict[str, List[Tuple[float, str, str]]]] = {}
    for u in utts:
        by.setdefault(u.session, {}).setdefault(u.speaker, []).append((float(u.start), u.utt_id, u.text))
    return {s: {spk: "".join(t for _, _, t in sorted(v)) for spk, v in spks.items()}
            for s, spks in by.items()}


def assign_speakers(ref: Mapping[str, str], hyp: Mapping[str, str]) -> Tuple[int, Dict[str, Optional[str]]]:
    """Match scored speaker strings one to one with the fewest total edits.

    ``ref``/``hyp``: ``{speaker: normalised string}``.  Both sides are padded with empty speakers to
    the same size.  Returns ``(edits, {hyp speaker: matched reference speaker or None})``; a
    reference speaker absent from the values is matched to nothing (all deletions)."""
    rs, hs = sorted(ref), sorted(hyp)
    n = max(len(rs), len(hs))
    if n == 0:
        return 0, {}
    r_str = [ref[s] for s in rs] + [""] * (n - len(rs))
    h_str = [hyp[s] for s in hs] + [""] * (n - len(hs))
    dist = np.array([[Levenshtein.distance(h, r) for r in r_str] for h in h_str], dtype=np.int64)
    # fewest edits first; among equal totals, most equal labels (sum of label penalties < n + 1)
    same = np.array([[i < len(hs) and j < len(rs) and hs[i] == rs[j] for j in range(n)] for i in range(n)])
    rows, cols = linear_sum_assignment(dist * (n + 1) + (~same).astype(np.int64))
    edits = int(dist[rows, cols].sum())
    match = {hs[i]: (rs[j] if j < len(rs) else None) for i, j in zip(rows, cols) if i < len(hs)}
    return edits, match


def session_score(ref: Mapping[str, str], hyp: Mapping[str, str]) -> Dict[str, object]:
    """cpCER of one session from raw concatenated speaker texts (``{speaker: text}``).

    Returns ``{"cpcer": float or None, "edits": int, "ref_chars": int, "assignment": {hyp spk: ref spk or None}}``."""
    r = {s: ref_norm(t) for s, t in ref.items()}
    h = {s: hyp_norm(t) for s, t in hyp.items()}
    edits, match = assign_speakers(r, h)
    n = sum(len(t) for t in r.values())
    return {"cpcer": edits / n if n else None, "edits": edits, "ref_chars": n, "assignment": match}


def score_cpcer(refs: Iterable[Utt], hyps: Iterable[Utt]) -> Dict[str, object]:
    """cpCER per session and overall (pooled: Σ edits / Σ reference characters).

    Returns ``{"cpcer": overall or None, "edits", "ref_chars", "per_session": {session: {"cpcer",
    "edits", "ref_chars"}}}`` (sessions sorted), ready for JSON."""
    rs, hs = speaker_strings(refs), speaker_strings(hyps)
    per: Dict[str, Dict[str, object]] = {}
    for s in sorted(set(rs) | set(hs)):
        sc = session_score(rs.get(s, {}), hs.get(s, {}))
        per[s] = {"cpcer": sc["cpcer"], "edits": sc["edits"], "ref_chars": sc["ref_chars"]}
    e = sum(int(v["edits"]) for v in per.values())
    n = sum(int(v["ref_chars"]) for v in per.values())
    return {"cpcer": e / n if n else None, "edits": e, "ref_chars": n, "per_session": per}


def datadir_cpcer(dd, hyps: Mapping[str, str], utts: Optional[Iterable[str]] = None,
                  name: str = "") -> Dict[str, object]:
    """cpCER of hypotheses ``{utt: text}`` on a data dir (:class:`avsr.data.datadir.DataDir`) with
    oracle speakers: each hypothesis takes its segment's speaker (``utt2spk``), session
    (:func:`session_of` its recording; without ``segments`` every utterance is its own recording)
    and start time.

    ``utts``: the scored utterances (default: every utterance with a reference ``text``); a scored
    utterance without a hypothesis counts as an empty one (as in the CER).  ``name`` (the data
    dir's path) starts error messages.  Raises :class:`CpCERError` for a scored utterance without
    reference text or speaker."""
    utts = sorted(dd.text) if utts is None else sorted(utts)
    prefix = f"{name}: " if name else ""
    refs, hs = [], []
    for u in utts:
        if u not in dd.text:
            raise CpCERError(f"{prefix}utterance {u!r} has no reference in text")
        if u not in dd.utt2spk:
            raise CpCERError(f"{prefix}utterance {u!r} has no speaker in utt2spk")
        if dd.segments and u not in dd.segments:
            raise CpCERError(f"{prefix}utterance {u!r} has no entry in segments")
        sess, start = session_of(dd.recording_of(u)), dd.span(u)[0]
        refs.append(Utt(u, sess, dd.utt2spk[u], start, dd.text[u]))
        hs.append(Utt(u, sess, dd.utt2spk[u], start, hyps.get(u, "")))
    return score_cpcer(refs, hs)
