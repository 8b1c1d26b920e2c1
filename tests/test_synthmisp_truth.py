"""avsr.synthmisp.truth: a data dir's segments matched to the generator's turns, on a hand-made truth
file whose segments are cut by the official rules (avsr.synthmisp.layout) as the recipe cuts them."""
import json

import pytest

from avsr.synthmisp import layout
from avsr.synthmisp.truth import TruthError, load_turns, match_turn, overlap_share, segment_truths

SESSION = "R01_S001002_C01_I0"


def _chars(text, start, end):
    step = (end - start - 0.1) / len(text)
    return [[c, round(start + 0.05 + i * step, 3), round(start + 0.05 + (i + 1) * step, 3)] for i, c in enumerate(text)]


def _turn(spk, text, start, end):
    return {"speaker": spk, "start": start, "end": end, "text": text, "chars": _chars(text, start, end)}


TURNS = [_turn("001", "我们去公园", 0.57, 2.8137),       # official segment 0.56 - 2.84
         _turn("002", "今天下雨", 2.10, 4.0021),          # overlaps the first
         _turn("001", "小王在家看书", 4.93, 6.5012),      # the same speaker as the first, later
         _turn("002", "他们买了车", 6.6, 7.9173)]
FILLER = ("002", 5.0, 5.4, "嗯嗯")                          # kept by the official rules, no turn


def _corpus(tmp_path, turns=TURNS, text_of=None):
    corpus, data = tmp_path / "corpus", tmp_path / "data"
    (corpus / "truth" / "dev").mkdir(parents=True)
    data.mkdir()
    (corpus / "truth" / "dev" / f"{SESSION}.json").write_text(
        json.dumps({"session": SESSION, "turns": turns}, ensure_ascii=False), encoding="utf-8")
    rows = []
    intervals = [(t["speaker"], round(t["start"], 2), round(t["end"], 2), t["text"]) for t in turns]  # the TextGrid's
    for spk, s, e, text in intervals + [FILLER]:
        assert layout.official_kept(s, e, text)
        utt, a, b = layout.official_segment(spk, SESSION, s, e)
        rows.append((utt, a, b, f"S{spk}", (text_of or {}).get(text, layout.official_text(text))))
    rows.sort()
    w = lambda name, lines: (data / name).write_text("".join(l + "\n" for l in lines), encoding="utf-8")  # noqa: E731
    w("wav.scp", [f"{SESSION}_Far /nowhere/{SESSION}_Far_0.wav"])
    w("segments", [f"{u} {SESSION}_Far {a} {b}" for u, a, b, _, _ in rows])
    w("text", [f"{u} {t}" for u, _, _, _, t in rows])
    w("utt2spk", [f"{u} {s}" for u, _, _, s, _ in rows])
    return corpus, data


def test_segments_find_their_turns(tmp_path):
    corpus, data = _corpus(tmp_path)
    st = {x.text: x for x in segment_truths(corpus, data)}
    assert len(st) == 5
    for t in TURNS:
        x = st[t["text"]]
        assert x.turn is t or x.turn == t
        assert x.speaker == t["speaker"] and x.session == SESSION
        assert x.chars == [(c, a, b) for c, a, b in t["chars"]]
        # the official grid: start moved down, end up, by under 40 ms (6.6 % 0.04 is 0.0399..: 6.56); the
        # TextGrid rounds the end to 10 ms (4.0021 -> 4.0)
        assert 0 <= t["start"] - x.start <= 0.04 + 1e-9 and -0.006 <= x.end - t["end"] < 0.04
    assert st["嗯嗯"].turn is None and st["嗯嗯"].chars == []
    # overlap: the first two turns overlap from 2.10 to 2.8137; the third turn is alone
    assert st["我们去公园"].overlap == pytest.approx((2.8137 - 2.10) / (2.8137 - 0.57))
    assert st["今天下雨"].overlap == pytest.approx((2.8137 - 2.10) / (4.0021 - 2.10))
    assert st["小王在家看书"].overlap == 0.0 and st["小王在家看书"].char_overlapped == [False] * 6
    # per character: midpoints inside the other talker's sounds (2.15 .. 3.9521)
    other = (TURNS[1]["chars"][0][1], TURNS[1]["chars"][-1][2])
    exp = [other[0] <= (a + b) / 2 < other[1] for _, a, b in TURNS[0]["chars"]]
    assert st["我们去公园"].char_overlapped == exp and any(exp) and not all(exp)


def test_match_turn_windows():
    t = TURNS[0]                       # 0.57 - 2.8137: official 0.56 - 2.84
    assert match_turn(TURNS, "S001", 0.56, 2.84) is t
    assert match_turn(TURNS, "001", 0.56, 2.84, "我们去公园") is t
    assert match_turn(TURNS, "002", 0.56, 2.84) is None          # another talker's segment at that time
    assert match_turn(TURNS, "001", 0.52, 2.84) is None          # a grid step early: not this turn
    assert match_turn(TURNS, "001", 0.60, 2.84) is None          # starts after the turn's start
    assert match_turn(TURNS, "001", 0.56, 2.80) is None          # ends before the turn's end
    assert match_turn(TURNS, "001", 0.56, 2.88) is None
    with pytest.raises(TruthError, match="its turn"):
        match_turn(TURNS, "001", 0.56, 2.84, "我们去学校")
    assert overlap_share(TURNS[2], TURNS) == 0.0
    # two other talkers overlapping each other: their union counts once (2 .. 6 of 0 .. 10)
    three = [_turn("001", "我们去公园", 0.0, 10.0), _turn("002", "今天", 2.0, 5.0),
             _turn("003", "下雨", 4.0, 6.0), _turn("001", "好", 11.0, 12.0)]
    assert overlap_share(three[0], three) == pytest.approx(0.4)


def test_text_mismatch_and_duplicate_sessions(tmp_path):
    corpus, data = _corpus(tmp_path, text_of={"今天下雨": "今天下雪"})
    with pytest.raises(TruthError, match="今天下雪"):
        segment_truths(corpus, data)
    corpus, data = _corpus(tmp_path / "b")
    (corpus / "truth" / "eval").mkdir()
    (corpus / "truth" / "eval" / f"{SESSION}.json").write_text(
        (corpus / "truth" / "dev" / f"{SESSION}.json").read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(TruthError, match="two splits"):
        load_turns(corpus)
    assert list(load_turns(corpus, ["dev"])) == [SESSION]
