"""Output formats of a transcription (avsr.api.format_transcription, ``avsr decode --output_format``):
golden SRT, VTT and CTM files for a fixed transcription, checked by a parser written here from the
formats' definitions (SubRip cues, WebVTT header and cues, NIST CTM lines), plus jsonl / text / kaldi.

Regenerate the golden files (only after checking the change by hand):
    .venv/bin/python tests/test_output_formats.py --write
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from avsr.api import Transcription, TranscriptSegment, format_transcription, kbest_concat, srt_time  # noqa: E402

GOLDEN = ROOT / "tests" / "golden"


def fixed() -> Transcription:
    """Two spoken segments (the second past one hour), one silent segment without text."""
    seg1 = TranscriptSegment(0.53, 2.107, "你好", -1.25, "audiovisual",
                             [{"token": "你", "start": 0.566, "end": 1.006, "conf": 0.9712},
                              {"token": "好", "start": 1.006, "end": 1.966, "conf": 0.5}],
                             [{"text": "你好", "score": -1.25}, {"text": "你", "score": -3.5}])
    seg2 = TranscriptSegment(5.0, 5.9, "", -0.1, "audiovisual", [], [{"text": "", "score": -0.1}])
    seg3 = TranscriptSegment(3599.9995, 3601.25, "再见", -2.0, "audio",
                             [{"token": "再", "start": 3600.026, "end": 3600.506, "conf": 0.333},
                              {"token": "见", "start": 3600.506, "end": 3601.186, "conf": 1.0}],
                             [{"text": "再见", "score": -2.0}])
    return Transcription("你好再见", -3.35, [seg1, seg2, seg3], "audiovisual+audio", 3602.0,
                         kbest_concat([seg1.nbest, seg2.nbest, seg3.nbest], 2), [], {"decode": 0.5})


def parse_srt(text: str):
    """SubRip: blocks separated by one blank line: index (1, 2, ...), ``HH:MM:SS,mmm --> HH:MM:SS,mmm``,
    one or more text lines."""
    assert text.endswith("\n\n") and "\n\n\n" not in text
    cues = []
    for i, block in enumerate(text[:-2].split("\n\n"), 1):
        lines = block.split("\n")
        assert lines[0] == str(i), block
        m = re.fullmatch(r"(\d\d):([0-5]\d):([0-5]\d),(\d{3}) --> (\d\d):([0-5]\d):([0-5]\d),(\d{3})", lines[1])
        assert m, lines[1]
        g = [int(x) for x in m.groups()]
        t0 = g[0] * 3600 + g[1] * 60 + g[2] + g[3] / 1000
        t1 = g[4] * 3600 + g[5] * 60 + g[6] + g[7] / 1000
        assert t0 <= t1 and len(lines) >= 3 and all(lines[2:])
        cues.append((t0, t1, "\n".join(lines[2:])))
    return cues


def parse_vtt(text: str):
    """WebVTT: ``WEBVTT`` first line, a blank line, then cues ``HH:MM:SS.mmm --> HH:MM:SS.mmm`` + text."""
    assert text.startswith("WEBVTT\n\n")
    body = text[len("WEBVTT\n\n"):]
    cues = []
    if not body:
        return cues
    assert body.endswith("\n\n")
    for block in body[:-2].split("\n\n"):
        lines = block.split("\n")
        m = re.fullmatch(r"(\d\d):([0-5]\d):([0-5]\d)\.(\d{3}) --> (\d\d):([0-5]\d):([0-5]\d)\.(\d{3})", lines[0])
        assert m, lines[0]
        g = [int(x) for x in m.groups()]
        cues.append((g[0] * 3600 + g[1] * 60 + g[2] + g[3] / 1000, g[4] * 3600 + g[5] * 60 + g[6] + g[7] / 1000,
                     "\n".join(lines[1:])))
    return cues


def parse_ctm(text: str):
    """NIST CTM: ``<key> <channel> <start> <duration> <word> <confidence>`` per line."""
    out = []
    for line in text.splitlines():
        f = line.split(" ")
        assert len(f) == 6, line
        key, ch, st, du, w, cf = f
        assert ch == "1" and re.fullmatch(r"\d+\.\d{3}", st) and re.fullmatch(r"\d+\.\d{3}", du)
        assert re.fullmatch(r"[01]\.\d\d", cf) and 0 <= float(cf) <= 1 and w
        out.append((key, float(st), float(du), w, float(cf)))
    return out


CASES = {"srt": "fixed.srt", "vtt": "fixed.vtt", "ctm": "fixed.ctm"}


@pytest.mark.parametrize("fmt", sorted(CASES))
def test_golden_files(fmt):
    got = format_transcription(fixed(), fmt, key="rec1")
    assert got == (GOLDEN / CASES[fmt]).read_text(encoding="utf-8")


def test_parsed_content():
    tr = fixed()
    srt = parse_srt(format_transcription(tr, "srt"))
    vtt = parse_vtt(format_transcription(tr, "vtt"))
    # one cue per segment with text (the silent segment has none), times to the millisecond
    assert srt == vtt == [(0.53, 2.107, "你好"), (3600.0, 3601.25, "再见")]
    ctm = parse_ctm(format_transcription(tr, "ctm", key="rec1"))
    assert [w for _, _, _, w, _ in ctm] == list("你好再见")
    assert ctm[0] == ("rec1", 0.566, 0.44, "你", 0.97)
    assert all(k == "rec1" for k, *_ in ctm)
    for (_, s0, d0, *_), (_, s1, *_) in zip(ctm, ctm[1:]):
        assert s0 + d0 <= s1 + 1e-9                     # tokens in order, not overlapping


def test_srt_time_rounding():
    assert srt_time(0) == "00:00:00,000"
    assert srt_time(3599.9995) == "01:00:00,000"
    assert srt_time(61.0004, ".") == "00:01:01.000"
    assert srt_time(36000 + 5.5) == "10:00:05,500"


def test_jsonl_text_kaldi():
    tr = fixed()
    rec = json.loads(format_transcription(tr, "jsonl", key="rec1", extra={"wav": "a.wav"}, nbest=True))
    assert list(rec)[:2] == ["key", "wav"] and rec["text"] == "你好再见" and rec["score"] == -3.35
    assert [s["text"] for s in rec["segments"]] == ["你好", "", "再见"]
    assert rec["segments"][0]["tokens"][1] == {"token": "好", "start": 1.006, "end": 1.966, "conf": 0.5}
    assert rec["nbest"] == [{"text": "你好再见", "score": -3.35}, {"text": "你再见", "score": -5.6}]
    assert "nbest" not in json.loads(format_transcription(tr, "jsonl"))
    assert format_transcription(tr, "text") == "你好再见\n"
    assert format_transcription(tr, "kaldi", key="rec1") == "rec1 你好再见\n"
    empty = Transcription("", 0.0, [], None, 1.0)
    assert format_transcription(empty, "srt") == "" and format_transcription(empty, "ctm") == ""
    assert format_transcription(empty, "vtt") == "WEBVTT\n\n"
    with pytest.raises(ValueError, match="output format"):
        format_transcription(tr, "tsv")


def test_kbest_concat():
    a = [{"text": "a", "score": -1.0}, {"text": "b", "score": -2.0}]
    b = [{"text": "x", "score": -0.5}, {"text": "y", "score": -0.7}, {"text": "z", "score": -5.0}]
    got = kbest_concat([a, b], 4)
    assert [g["text"] for g in got] == ["ax", "ay", "bx", "by"]
    assert [round(g["score"], 6) for g in got] == [-1.5, -1.7, -2.5, -2.7]
    # the same text from two combinations is listed once, with its best score
    c = [{"text": "ab", "score": -1.0}, {"text": "a", "score": -1.1}]
    d = [{"text": "", "score": -1.0}, {"text": "b", "score": -1.05}]
    got = kbest_concat([c, d], 4)                   # ab+"" -2.0, ab+b -2.05, a+"" -2.1, a+b = "ab" again
    assert [g["text"] for g in got] == ["ab", "abb", "a"] and got[0]["score"] == -2.0
    assert kbest_concat([a, []], 2) == []


if __name__ == "__main__" and "--write" in sys.argv:
    for fmt, name in CASES.items():
        (GOLDEN / name).write_text(format_transcription(fixed(), fmt, key="rec1"), encoding="utf-8")
        print("wrote", GOLDEN / name)
