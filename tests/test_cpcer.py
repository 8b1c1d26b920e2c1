"""cpCER (avsr.eval.cpcer), the MISP2022 AVSR metric, on hand-made sessions whose values are worked out
in the comments, and the report (avsr.bin.report) on a tiny fake decode dir + data dir (no model)."""
import json
import os

import pytest

from avsr.bin import report
from avsr.eval.cpcer import (CpCERError, Utt, datadir_cpcer, hyp_norm, ref_norm, score_cpcer, session_of,
                             session_score)
from avsr.data.datadir import DataDir, Segment


def utts(session, spk_texts):
    """[(speaker, start, text), ...] -> Utt list (utt id from speaker and start)."""
    return [Utt(f"{spk}_{session}_{int(100 * st):06d}", session, spk, st, t) for spk, st, t in spk_texts]


def test_identity_assignment():
    # ref A "abcd", B "efg" (7 chars); hyp A "abxd" (1 substitution), B "ef" (1 deletion):
    # identity 1 + 1 = 2 edits; the swap costs d(abxd, efg) 4 + d(ef, abcd) 4 = 8 -> cpCER 2/7
    sc = session_score({"A": "abcd", "B": "efg"}, {"A": "abxd", "B": "ef"})
    assert (sc["edits"], sc["ref_chars"]) == (2, 7)
    assert sc["cpcer"] == pytest.approx(2 / 7)
    assert sc["assignment"] == {"A": "A", "B": "B"}
    # equal strings for both speakers: every assignment costs 0; the tie keeps the labels
    assert session_score({"A": "ab", "B": "ab"}, {"A": "ab", "B": "ab"})["assignment"] == {"A": "A", "B": "B"}
    # ref A "a", B "b"; hyp A "b", B "b": identity 1 + 0 = swap 0 + 1 = 1 edit; the tie keeps the labels
    # (scipy alone, on the edit counts, returns the swap here)
    sc = session_score({"A": "a", "B": "b"}, {"A": "b", "B": "b"})
    assert sc["edits"] == 1 and sc["assignment"] == {"A": "A", "B": "B"}


def test_swapped_speaker_labels_are_matched_by_the_hungarian_assignment():
    # hyp A says B's words and vice versa: identity = d(efg, abcd) 4 + d(abcd, efg) 4 = 8 edits,
    # the swap = 0 edits -> cpCER 0
    sc = session_score({"A": "abcd", "B": "efg"}, {"A": "efg", "B": "abcd"})
    assert sc["edits"] == 0 and sc["cpcer"] == 0.0
    assert sc["assignment"] == {"A": "B", "B": "A"}
    # labels unrelated to the reference's (a diarisation's): same answer
    sc = session_score({"A": "abcd", "B": "efg"}, {"spk1": "efg", "spk2": "abcx"})
    assert sc["edits"] == 1 and sc["assignment"] == {"spk1": "B", "spk2": "A"}


def test_missing_hypothesis_speaker_counts_its_characters_as_deletions():
    # ref A "abcd", B "efg"; only A hypothesised (correct): B's 3 characters deleted -> 3/7
    sc = session_score({"A": "abcd", "B": "efg"}, {"A": "abcd"})
    assert (sc["edits"], sc["ref_chars"]) == (3, 7)
    assert sc["assignment"] == {"A": "A"}
    # one hypothesis speaker "X" saying B's words: matched to B, A's 4 characters deleted -> 4/7
    sc = session_score({"A": "abcd", "B": "efg"}, {"X": "efg"})
    assert (sc["edits"], sc["assignment"]) == (4, {"X": "B"})


def test_extra_hypothesis_speaker_counts_as_insertions():
    # ref A "abcd" (4 chars); hyp A "abcd" + C "xy": the official tool raises here; the toolkit pads the
    # reference side with an empty speaker, so C's 2 characters are insertions -> 2/4
    sc = session_score({"A": "abcd"}, {"A": "abcd", "C": "xy"})
    assert (sc["edits"], sc["ref_chars"], sc["cpcer"]) == (2, 4, 0.5)
    assert sc["assignment"] == {"A": "A", "C": None}


def test_utterances_are_concatenated_by_start_time_not_input_order_or_id():
    # speaker A says "ab" at 1.0 s and "cd" at 5.0 s, given out of order and with ids that sort the other
    # way; the reference string is "abcd" -> the hypothesis "ab" + "cd" has 0 edits (input order would
    # give "cdab" vs "abcd": 4 edits)
    refs = [Utt("A_a", "S1", "A", 5.0, "cd"), Utt("A_z", "S1", "A", 1.0, "ab")]
    hyps = [Utt("A_z", "S1", "A", 1.0, "ab"), Utt("A_a", "S1", "A", 5.0, "cd")]
    c = score_cpcer(refs, hyps)
    assert (c["edits"], c["ref_chars"], c["cpcer"]) == (0, 4, 0.0)
    # a hypothesis whose own utterances arrive reversed is reordered the same way
    assert score_cpcer(refs, hyps[::-1])["edits"] == 0
    # ... but a hypothesis that says "cd" first really is wrong
    bad = [Utt("A_z", "S1", "A", 1.0, "cd"), Utt("A_a", "S1", "A", 5.0, "ab")]
    assert score_cpcer(refs, bad)["edits"] == 4


def test_unk_in_the_hypothesis_becomes_star():
    # ref "ab*d" vs hyp "ab<UNK>d" -> "ab*d": 0 edits; ref "abcd" -> 1 substitution (1/4); unmapped, "ab<UNK>d"
    # vs "abcd" would be 5 edits
    assert hyp_norm("ab<UNK>d") == "ab*d" and hyp_norm("a b <unk>") == "ab*"
    assert session_score({"A": "ab*d"}, {"A": "ab<UNK>d"})["edits"] == 0
    sc = session_score({"A": "abcd"}, {"A": "ab<UNK>d"})
    assert (sc["edits"], sc["ref_chars"]) == (1, 4)
    # the reference is not mapped (as the official tool); whitespace is removed on both sides
    assert ref_norm("a <UNK>") == "a<UNK>"
    assert session_score({"A": "ab cd"}, {"A": "a bcd"})["edits"] == 0


def test_overall_is_pooled_not_the_mean_of_session_ratios():
    # S1: ref "a" (1 char), hyp "b" -> 1 edit, cpCER 1.0; S2: ref "abcdefghi" (9 chars), exact -> 0.0
    # overall = (1 + 0) / (1 + 9) = 0.1; the mean of the session ratios would be 0.5
    refs = utts("S1", [("A", 0.0, "a")]) + utts("S2", [("A", 0.0, "abcdefghi")])
    hyps = utts("S1", [("A", 0.0, "b")]) + utts("S2", [("A", 0.0, "abcdefghi")])
    c = score_cpcer(refs, hyps)
    assert c["per_session"] == {"S1": {"cpcer": 1.0, "edits": 1, "ref_chars": 1},
                                "S2": {"cpcer": 0.0, "edits": 0, "ref_chars": 9}}
    assert c["cpcer"] == pytest.approx(0.1) and (c["edits"], c["ref_chars"]) == (1, 10)


def test_session_of_strips_the_far_suffix():
    assert session_of("R01_S001002_C01_I0_Far") == "R01_S001002_C01_I0"
    assert session_of("rec1") == "rec1"


def test_datadir_cpcer_takes_oracle_speakers_sessions_and_start_times():
    dd = DataDir(segments={"u1": Segment("R1_Far", 3.0, 4.0), "u2": Segment("R1_Far", 1.0, 2.0),
                           "u3": Segment("R1_Far", 0.0, 1.0)},
                 text={"u1": "cd", "u2": "ab", "u3": "xy"}, utt2spk={"u1": "A", "u2": "A", "u3": "B"})
    # A: "ab" + "cd" by start time; hyp of u1 missing -> "ab" vs "abcd": 2 deletions; B exact -> 2/6
    c = datadir_cpcer(dd, {"u2": "ab", "u3": "xy"})
    assert c["per_session"] == {"R1": {"cpcer": pytest.approx(2 / 6), "edits": 2, "ref_chars": 6}}
    # only the scored utterances count
    assert datadir_cpcer(dd, {"u2": "ab", "u3": "xy"}, utts=["u2", "u3"])["edits"] == 0
    dd.utt2spk.pop("u3")
    with pytest.raises(CpCERError, match=r"^data/x: utterance 'u3' has no speaker"):
        datadir_cpcer(dd, {}, name="data/x")


# ------------------------------------------------------------------------------------ the report

SESS1, SESS2 = "R01_S001002_C01_I0", "R02_S003004_C01_I0"
# (utt, recording, start, end, speaker, reference)
UTTS = [(f"S001_{SESS1}_000100-000200", SESS1, 1.0, 2.0, "S001", "你好"),
        (f"S001_{SESS1}_000500-000600", SESS1, 5.0, 6.0, "S001", "世界"),
        (f"S002_{SESS1}_000300-000400", SESS1, 3.0, 4.0, "S002", "早上好"),
        (f"S003_{SESS2}_000050-000150", SESS2, 0.5, 1.5, "S003", "谢谢你"),
        (f"S004_{SESS2}_000200-000300", SESS2, 2.0, 3.0, "S004", "再见")]
# a0 on dev: session 1: 世界 -> 世介 (1 substitution), 早上好 -> 早上 (1 deletion): 2 / 7;
# session 2: S004 has no hypothesis line: 2 deletions: 2 / 5; overall (2 + 2) / (7 + 5) = 1/3
A0_HYPS = {UTTS[0][0]: "你好", UTTS[1][0]: "世介", UTTS[2][0]: "早上", UTTS[3][0]: "谢谢你"}


def _write(path, lines):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(f"{x}\n" for x in lines)


def _data_dir(root, split, with_text):
    d = os.path.join(root, split)
    _write(os.path.join(d, "wav.scp"), sorted(f"{s}_Far /nowhere/{s}_Far_0.wav" for s in (SESS1, SESS2)))
    _write(os.path.join(d, "segments"), sorted(f"{u} {r}_Far {a:.2f} {b:.2f}" for u, r, a, b, _, _ in UTTS))
    _write(os.path.join(d, "utt2spk"), sorted(f"{u} {s}" for u, _, _, _, s, _ in UTTS))
    if with_text:
        _write(os.path.join(d, "text"), sorted(f"{u} {t}" for u, *_, t in UTTS))
    return d


def _decode(dec_root, model, split, data_dir, hyps, scored):
    d = os.path.join(dec_root, f"{model}_{split}")
    _write(os.path.join(d, "text"), [f"{u} {hyps[u]}" for u in sorted(hyps)])
    res = {"model": f"/packed/{model}", "data_dir": os.path.abspath(data_dir), "modality": "audio",
           "search": "beam10", "num_utts": len(UTTS), "skipped": 0, "timing": {"utts_per_second": 1.0, "rtf": 0.1}}
    if scored:      # as avsr.bin.decode writes it when the data dir has references (numbers made up)
        per = {u: [0 if hyps.get(u) == t else 1, len(t)] for u, *_, t in UTTS}
        e, n = sum(v[0] for v in per.values()), sum(v[1] for v in per.values())
        res.update({"cer": e / n, "lo": 0.0, "hi": 0.5, "errors": e, "ref_chars": n, "per_utt": per})
    with open(os.path.join(d, "result.json"), "w", encoding="utf-8") as f:
        json.dump(res, f, ensure_ascii=False)


@pytest.fixture
def fake(tmp_path):
    data, dec = tmp_path / "data", tmp_path / "decode"
    dev, ev = _data_dir(str(data), "dev", True), _data_dir(str(data), "eval", False)
    _decode(str(dec), "a0", "dev", dev, A0_HYPS, True)
    _decode(str(dec), "av0", "dev", dev, {u: t for u, *_, t in UTTS}, True)
    for m in ("a0", "av0"):
        _decode(str(dec), m, "eval", ev, A0_HYPS, False)
    return tmp_path


def test_report_has_cpcer_per_session_and_overall_and_skips_a_set_without_text(fake, capsys):
    out = str(fake / "report")
    assert report.main(["--decode_dir", str(fake / "decode"), "--models", "a0", "av0", "--sets", "dev", "eval",
                        "--baseline", "a0", "--out", out, "--bootstrap", "50"]) == 0
    printed = capsys.readouterr().out
    assert "skipping a0_eval" in printed and "has no text" in printed
    with open(out + ".json", encoding="utf-8") as f:
        rep = json.load(f)
    assert rep["no_reference"] == ["a0_eval", "av0_eval"] and rep["cpcer_skipped"] == []
    assert [(r["model"], r["set"]) for r in rep["rows"]] == [("a0", "dev"), ("av0", "dev")]
    a0, av0 = rep["rows"]
    assert a0["cpcer"]["overall"] == pytest.approx(1 / 3)
    assert a0["cpcer"]["per_session"] == {SESS1: {"cpcer": pytest.approx(2 / 7), "edits": 2, "ref_chars": 7},
                                          SESS2: {"cpcer": pytest.approx(2 / 5), "edits": 2, "ref_chars": 5}}
    assert av0["cpcer"]["overall"] == 0.0 and "vs_baseline" in av0
    assert a0["cer"] == pytest.approx(3 / 12)     # the CER columns are the decode's, unchanged
    with open(out + ".md", encoding="utf-8") as f:
        md = f.read()
    head, a0_line = md.splitlines()[0], md.splitlines()[2]
    assert "| CER % [95 % CI] | cpCER % | utts |" in head
    assert a0_line.startswith("| dev | a0 | audio | beam10 | 25.00 [0.00, 50.00] | 33.33 | 5 |")
    assert "cpCER % per session (dev):" in md
    assert f"| {SESS1} | 7 | 28.57 | 0.00 |" in md and f"| {SESS2} | 5 | 40.00 | 0.00 |" in md
    assert "no reference text (not scored): a0_eval, av0_eval" in md


def test_report_finds_moved_data_dirs_with_data_root(fake, capsys):
    os.rename(fake / "data", fake / "moved")
    out = str(fake / "r1")
    report.main(["--decode_dir", str(fake / "decode"), "--models", "a0", "--sets", "dev", "--out", out])
    with open(out + ".json", encoding="utf-8") as f:
        rep = json.load(f)
    assert "cpcer" not in rep["rows"][0] and "not found" in rep["cpcer_skipped"][0]
    assert "no cpCER for a0_dev" in capsys.readouterr().out
    out = str(fake / "r2")
    report.main(["--decode_dir", str(fake / "decode"), "--models", "a0", "--sets", "dev", "--out", out,
                 "--data_root", str(fake / "moved")])
    with open(out + ".json", encoding="utf-8") as f:
        assert json.load(f)["rows"][0]["cpcer"]["overall"] == pytest.approx(1 / 3)


def test_report_states_each_finished_stage_wall_time_in_stage_order(fake, tmp_path):
    stages = tmp_path / "stages"
    stages.mkdir()
    (stages / "0_generate.seconds").write_text("61\n")
    (stages / "0_generate.done").write_text("preset=demo seed=1 gen_args=\n")      # SynthMISP's marker: no time
    for n, name, secs in [(12, "decode", 40), (2, "rois", 19), (6, "train_a0", 300)]:
        (stages / f"{n}_{name}.done").write_text(f"stage: {n} {name}\nfinished: x\nseconds: {secs}\nsignature: s\n")
    (stages / "7_train_v.done").write_text("stage: 7 train_v\nsignature: s\n")     # older marker without a time
    out = str(fake / "report_t")
    assert report.main(["--decode_dir", str(fake / "decode"), "--models", "a0", "av0", "--sets", "dev",
                        "--baseline", "a0", "--out", out, "--bootstrap", "20", "--stages_dir", str(stages)]) == 0
    with open(out + ".json", encoding="utf-8") as f:
        rep = json.load(f)
    assert list(rep["stage_seconds"].items()) == [("0_generate", 61), ("2_rois", 19), ("6_train_a0", 300),
                                                   ("12_decode", 40)]
    with open(out + ".md", encoding="utf-8") as f:
        md = f.read()
    assert ("Wall time by stage: 0_generate 61 s, 2_rois 19 s, 6_train_a0 300 s, 12_decode 40 s; "
            "total 420 s (7.0 min).") in md
