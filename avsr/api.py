"""The Python API: load a packed model, transcribe a recording, write the result::

    from avsr import load_model
    model = load_model("exp/packed/av0")                    # a Speech2Text (device, beam_size, nbest, ...)
    result = model.transcribe("a.wav", "a.mp4", detection="a.json")   # paths, arrays or tensors; video optional

``result`` is a :class:`Transcription`: ``text``, ``score``, ``segments`` (one per voice-activity
segment: ``start``, ``end``, ``text``, ``score`` and ``tokens`` -- each token, i.e. each character
of a character model, with ``start``/``end`` seconds from the CTC forced alignment and ``conf``),
``nbest``, ``modality``, ``duration``, ``warnings``.  :meth:`avsr.inference.Speech2Text.transcribe`
does the work (segmentation by :func:`frontends.vad.energy_vad`, decoding, alignment by
:mod:`avsr.alignment`); this module only loads and formats.

Output formats (:func:`format_transcription`, ``avsr decode --output_format``):

``jsonl``  one JSON object per recording (:meth:`Transcription.to_dict` plus the caller's fields)
``text``   the text, one line per recording
``kaldi``  ``<key> <text>``
``srt``    SubRip: one numbered cue per segment with text, ``HH:MM:SS,mmm --> HH:MM:SS,mmm``
``vtt``    WebVTT: ``WEBVTT`` header, then one cue per segment, ``HH:MM:SS.mmm --> HH:MM:SS.mmm``
``ctm``    one line per token: ``<key> 1 <start> <dur> <token> <conf>`` (seconds, 3 decimals; conf 2)

Importing this module (and ``avsr``) does not import torch; :func:`load_model` does.
"""
from __future__ import annotations

import heapq
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence

__all__ = ["load_model", "Transcription", "TranscriptSegment", "OUTPUT_FORMATS", "TIMED_FORMATS",
           "format_transcription", "srt_time", "kbest_concat"]

OUTPUT_FORMATS = ("jsonl", "text", "kaldi", "srt", "vtt", "ctm")
#: the formats that write token times (format_transcription reads ``tokens`` for these alone: text and kaldi
#: write the text, srt and vtt cues are segments), so only they need the tokens aligned
TIMED_FORMATS = ("jsonl", "ctm")


def load_model(path: "str | os.PathLike[str]", device: str = "cpu", **decode_overrides):
    """The packed model dir ``path`` (``avsr pack``) as a :class:`avsr.inference.Speech2Text`, with the
    model's stored decoding defaults; keyword arguments override them (``beam_size``, ``ctc_weight``,
    ``nbest``, ``ctc_greedy``, ``adapter_threshold``, ...).  Call its ``transcribe``."""
    from avsr.inference import Speech2Text, check_device
    check_device(device)
    return Speech2Text.from_packed(os.fspath(path), device=device, **decode_overrides)


@dataclass
class TranscriptSegment:
    """One decoded segment: seconds from the start of the recording, the text, the search score
    (log domain), the path (``audio``/``video``/``audiovisual``), ``tokens`` =
    ``[{"token", "start", "end", "conf"}, ...]`` and ``nbest`` = ``[{"text", "score"}, ...]``."""
    start: float
    end: float
    text: str
    score: float
    modality: str
    tokens: List[Dict] = field(default_factory=list)
    nbest: List[Dict] = field(default_factory=list)


@dataclass
class Transcription:
    """A recording's transcription (see the module docstring).  ``score`` is the sum of the
    segments' scores; ``nbest`` the best ``N`` whole-recording hypotheses (one per combination of
    segment hypotheses, :func:`kbest_concat`), best first, the first equal to ``text``."""
    text: str
    score: float
    segments: List[TranscriptSegment]
    modality: Optional[str]
    duration: float
    nbest: List[Dict] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)
    timings: Dict[str, float] = field(default_factory=dict)

    def to_dict(self, nbest: bool = True) -> Dict:
        d = asdict(self)
        d["score"] = _num(d["score"])
        for s in d["segments"]:
            s["score"] = _num(s["score"])
            for h in s["nbest"]:
                h["score"] = _num(h["score"])
            if not nbest:
                s.pop("nbest")
        for h in d["nbest"]:
            h["score"] = _num(h["score"])
        if not nbest:
            d.pop("nbest")
        d["timings"] = {k: round(v, 4) for k, v in d["timings"].items()}
        return d


def _num(x: float):
    """A JSON-safe score (``None`` for -inf / NaN)."""
    x = float(x)
    return round(x, 4) if x == x and abs(x) != float("inf") else None


def kbest_concat(lists: Sequence[Sequence[Dict]], n: int, sep: str = "") -> List[Dict]:
    """The ``n`` best concatenations of one hypothesis per segment (``lists[i]``: segment ``i``'s
    ``{"text", "score"}`` best first), by the sum of the scores, best first; texts that repeat keep
    their best score only.  ``[]`` when a segment has no hypothesis."""
    lists = [list(x) for x in lists]
    if not lists:
        return [{"text": "", "score": 0.0}]
    if any(not x for x in lists):
        return []

    def total(ix):
        return sum(float(lists[i][k]["score"]) for i, k in enumerate(ix))

    start = tuple(0 for _ in lists)
    heap = [(-total(start), start)]
    seen, out, texts = {start}, [], set()
    while heap and len(out) < n:
        neg, ix = heapq.heappop(heap)
        text = sep.join(lists[i][k]["text"] for i, k in enumerate(ix))
        if text not in texts:
            texts.add(text)
            out.append({"text": text, "score": -neg})
        for i in range(len(lists)):
            if ix[i] + 1 < len(lists[i]):
                nx = ix[:i] + (ix[i] + 1,) + ix[i + 1:]
                if nx not in seen:
                    seen.add(nx)
                    heapq.heappush(heap, (-total(nx), nx))
    return out


def srt_time(t: float, sep: str = ",") -> str:
    """``HH:MM:SS,mmm`` (``sep="."``: WebVTT's ``HH:MM:SS.mmm``), rounded to the millisecond."""
    ms = max(int(round(float(t) * 1000)), 0)
    h, ms = divmod(ms, 3600000)
    m, ms = divmod(ms, 60000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def format_transcription(tr: Transcription, fmt: str, key: str = "utt", extra: Optional[Dict] = None,
                         nbest: bool = False) -> str:
    """``tr`` in output format ``fmt`` (:data:`OUTPUT_FORMATS`), ending with a newline (empty string
    for an srt/vtt/ctm without any segment text).  ``extra``: fields put first in a ``jsonl``
    record (``key`` is always there); ``nbest``: keep the ``nbest`` lists in ``jsonl``."""
    if fmt not in OUTPUT_FORMATS:
        raise ValueError(f"output format must be one of {OUTPUT_FORMATS}, got {fmt!r}")
    if fmt == "jsonl":
        rec = {"key": key, **(extra or {}), **tr.to_dict(nbest=nbest)}
        return json.dumps(rec, ensure_ascii=False) + "\n"
    if fmt == "text":
        return tr.text + "\n"
    if fmt == "kaldi":
        return f"{key} {tr.text}\n"
    if fmt == "ctm":
        lines = []
        for seg in tr.segments:
            for tok in seg.tokens:
                dur = max(float(tok["end"]) - float(tok["start"]), 0.0)
                lines.append(f"{key} 1 {float(tok['start']):.3f} {dur:.3f} {tok['token']} {float(tok['conf']):.2f}\n")
        return "".join(lines)
    sep = "," if fmt == "srt" else "."
    cues = [s for s in tr.segments if s.text]
    parts = ["WEBVTT\n\n"] if fmt == "vtt" else []
    for i, s in enumerate(cues, 1):
        head = f"{i}\n" if fmt == "srt" else ""
        parts.append(f"{head}{srt_time(s.start, sep)} --> {srt_time(s.end, sep)}\n{s.text}\n\n")
    return "".join(parts) if cues or fmt == "vtt" else ""
