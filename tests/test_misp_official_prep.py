"""Stage 1 of recipes/misp2022 with the official data preparation's rules (the default).

The expected kept set, ids and boundaries are computed here by the official expressions,
written out independently of ``local/misp.py`` (mispchallenge/misp2022_baseline
``track2_AVDR/local/prepare_data.py`` and its reader ``track2_AVDR/tool/text_grid.py``),
on hand-made TextGrids in the release's form (UTF-8, CRLF, each ``intervals [k]:`` header
twice, with and without BOM).  Golden real ids come from a public dump of the MISP2022
eval set.  The second half covers the eval data dir built from a segment file
(``--eval_segments``) and the data dir without ``text`` it needs.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LOCAL = REPO / "recipes" / "misp2022" / "local"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(LOCAL))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import misp  # noqa: E402  (recipes/misp2022/local/misp.py)
import prepare_data  # noqa: E402

from avsr.data.datadir import (DataDir, DataDirError, Segment, read_datadir,  # noqa: E402
                               validate_datadir, write_datadir)
from test_misp_formats import official_textgrid  # noqa: E402
from test_recipe_dataprep import FPS, write_mp4, write_wavs  # noqa: E402

# ----------------------------------------------------------------------------- the official rules,
# written out as the official prepare_data.py states them (not through misp.py)

OFF_REJECTED = ["<NOISE>", "<DEAF>"]
OFF_PUNCT = [" ", "。", ".", "?", "？", "!", "！", "，", ",", "、"]
OFF_SOUNDS = ["呃", "啊", "噢", "嗯", "唉"]


def official_expected(spk: str, session: str, intervals):
    """utt -> (start, end, text) of the intervals the official code keeps.

    ``intervals``: (xmin string, xmax string, text as in the file); the official reader
    parses times with float() and removes spaces and quotes from the text.
    """
    kept = {}
    for xmin_s, xmax_s, label in intervals:
        xmin, xmax = float(xmin_s), float(xmax_s)
        text = label.replace(" ", "").replace('"', "")
        if text not in OFF_REJECTED and xmax - xmin >= 0.04:
            start = round(xmin - xmin % 0.04, 2)
            end = xmax + 0.04 - xmax % 0.04 if xmax % 0.04 != 0 else xmax
            end = round(end, 2)
            utt = "S{}_{}_{:06d}-{:06d}".format(spk, session, int(round(start * 100, 0)),
                                                int(round(end * 100, 0)))
            for p in OFF_PUNCT:
                text = text.replace(p, "")
            if text not in OFF_SOUNDS:
                kept[utt] = (start, end, text)
    return kept


# ----------------------------------------------------------------------------- rules, unit level


def test_official_segment_matches_the_official_expressions():
    labels = ["", "你好。", "嗯", "嗯。", "嗯嗯", "<NOISE>", "<DEAF>", "< NOISE >", "<NOISE>啊",
              "啊！", "，。", "今天 天气", "唉?", "噢 ", "呃、"]
    times = [0.0, 0.04, 0.12, 0.2, 0.24, 0.999, 0.9999999999, 1.0, 1.04, 3.3, 3.339, 3.34,
             5.9999999999, 6.0, 12.36, 100.0, 1000.04]
    times += [round(k * 0.01, 2) for k in range(0, 700, 7)]
    n_kept = n_dropped = 0
    for i, xmin in enumerate(times):
        for xmax in times:
            if xmax < xmin:
                continue
            label = labels[(i + int(xmax * 100)) % len(labels)]
            exp = official_expected("001", "R01_S001002_C01_I0", [(repr(xmin), repr(xmax), label)])
            seg, drop = misp.official_segment(xmin, xmax, label)
            utt = misp.utterance_id("001", "R01_S001002_C01_I0", seg.start_units, seg.end_units)
            assert (drop is None) == bool(exp), (xmin, xmax, label, drop)
            if exp:
                assert exp == {utt: (seg.start, seg.end, seg.text)}, (xmin, xmax, label)
                n_kept += 1
            else:
                n_dropped += 1
    assert n_kept > 1000 and n_dropped > 1000


@pytest.mark.parametrize("label,category", [
    ("<NOISE>", misp.DROP_REJECTED), ("<DEAF>", misp.DROP_REJECTED),
    ("< DEAF >", misp.DROP_REJECTED),  # the official reader removes spaces first
    ("嗯", misp.DROP_FILLER), ("嗯。", misp.DROP_FILLER), ("啊！", misp.DROP_FILLER),
    ("唉 ?", misp.DROP_FILLER),
    ("嗯嗯", None), ("嗯嗯。", None), ("<NOISE>啊", None), ("", None), ("，。", None),
    ("<noise>", None),  # the comparison is case-sensitive
])
def test_official_drop_categories(label, category):
    assert misp.official_segment(1.0, 2.0, label)[1] == category


def test_official_min_duration_and_boundaries():
    # 40 ms is kept, 39 ms is not (xmax - xmin >= 0.04 in float64)
    assert misp.official_segment(1.0, 1.04, "好")[1] is None
    assert misp.official_segment(3.3, 3.339, "对")[1] == misp.DROP_SHORT
    # float64: 0.24 - 0.2 = 0.03999999999999998 < 0.04, dropped although it is 40 ms on paper
    assert 0.24 - 0.2 < 0.04 and misp.official_segment(0.2, 0.24, "嗯嗯")[1] == misp.DROP_SHORT
    seg, _ = misp.official_segment(0.12, 0.2, "你好")
    assert (seg.start, seg.end, seg.start_units, seg.end_units) == (0.08, 0.24, 8, 24)
    # on grid points: 1.0 starts one frame early, 1.04 ends one frame late
    seg, _ = misp.official_segment(1.0, 1.04, "好")
    assert (seg.start_units, seg.end_units) == (96, 108)
    assert misp.official_reader_text('a b"c=d') == "abc"


# ----------------------------------------------------------------------------- golden real ids
# mispchallenge/MISP-ICME-AVSR, misp2023/avsr/dump/raw/22_eval_far_farlip/text (the id and the
# reference text) and .../speech_shape (the segment's samples at 16 kHz), commit
# 87a2b624e2ba97a1ddd6f2cb6856037eee29cf39.  The repository has no segments file for this
# set; speech_shape gives (end - start) of every segment.
GOLDEN = [
    ("S016_R01_S016017_C02_I1_000156-000252", "我是一号", 15360),
    ("S016_R01_S016017_C02_I1_024148-024252", "嗯嗯嗯", 16640),
    ("S016_R01_S016017_C02_I1_052872-053828", None, 152960),
    ("S016_R01_S016017_C02_I1_053824-054232", "到场把它讲一下写一个写个什么字据在手里边", 65280),
    ("S017_R01_S016017_C02_I1_000312-000404", None, 14720),
    ("S055_R02_S055056_C09_I1_071468-071556", "嗯嗯", 14080),
    ("S189_R11_S189190191192_C10_I2_000992-001088", None, 15360),
    ("S223_R14_S223224_C02_I2_003256-003372", None, 18560),
    ("S280_R52_S280281282_C03_I0_002928-003148", None, 35200),
    ("S358_R61_S357358359_C07_I0_000936-001180", None, 39040),
    ("S405_R69_S405406_C07_I1_001196-001420", None, 35840),
    ("S415_R71_S412413414415416417_C04_I1_051708-051772", None, 10240),
]


@pytest.mark.parametrize("utt,text,samples", GOLDEN)
def test_golden_real_ids(utt, text, samples):
    p = misp.parse_utterance_id(utt)
    assert p is not None
    assert utt == f"S{p.spk}_{p.session}_{p.start_units:06d}-{p.end_units:06d}"
    assert p.start_units % 4 == 0 and p.end_units % 4 == 0  # the 40 ms grid
    assert (p.end_units - p.start_units) * 160 == samples  # 10 ms = 160 samples
    # the id builders, fed the parsed session, speaker and implied boundaries
    assert misp.utterance_id(p.spk, p.session, p.start_units, p.end_units) == utt
    assert misp.official_utterance_id(p.spk, p.session, p.start, p.end) == utt
    # an interval inside the first and last 40 ms cells maps to the same id
    seg, drop = misp.official_segment(p.start + 0.013, p.end - 0.013, text or "好")
    assert drop is None
    assert misp.utterance_id(p.spk, p.session, seg.start_units, seg.end_units) == utt
    assert (seg.start, seg.end) == (p.start, p.end)
    if text:  # the released reference text survives the rules and the normalisation
        assert misp.normalize_text(seg.text) == text


def test_golden_neighbours_overlap():
    # adjacent intervals snapped outward overlap in the release (053824 < 053828)
    a = misp.parse_utterance_id(GOLDEN[2][0])
    b = misp.parse_utterance_id(GOLDEN[3][0])
    assert a.session == b.session and a.spk == b.spk and b.start_units < a.end_units


@pytest.mark.parametrize("bad", ["S016_R01_000156-000252x", "016_R01_S016017_C02_I1_000156-000252",
                                 "S016_R01_S016017_C02_I1_156-252", "S016_R01_S016017_C02_I1"])
def test_parse_utterance_id_rejects(bad):
    assert misp.parse_utterance_id(bad) is None


# ----------------------------------------------------------------------------- stage 1, TextGrids

SESSION = "R01_S001002_C01_I0"
SECONDS = 8.0
TG = {
    "001": [("0", "0.12", ""),              # empty: kept by the official rules, skipped here
            ("0.12", "0.2", "你好。"),        # grid points: 0.08-0.24
            ("0.2", "0.24", "嗯嗯"),          # 0.03999... s in float64: too short
            ("0.24", "0.999", "<NOISE>"),
            ("0.999", "1.0", ""),            # 1 ms
            ("1.0", "1.04", "好"),            # 40 ms: kept
            ("1.04", "1.5", "嗯"),
            ("1.5", "2.0", "嗯。"),
            ("2.0", "2.5", "嗯嗯"),
            ("2.5", "3.3", "今天 天气 好！"),
            ("3.3", "3.339", "对"),           # 39 ms
            ("3.339", "3.5", "< DEAF >"),
            ("3.5", "4.0", "小t，OK?"),
            ("4.0", "4.5", "<NOISE>啊"),      # kept: not exactly a mark, not a filler
            ("4.5", "5.0", "，。"),           # kept by the official rules, no speech characters
            ("5.0", "5.9999999999", "中国"),
            ("5.9999999999", "8.0", "")],
    "002": [("0", "0.5", ""), ("0.5", "1.9", "天气好"), ("1.9", "2.4", "唉！"),
            ("2.4", "3.6", "人民"), ("3.6", "8.0", "")],
}
#: official-kept intervals whose normalised text is empty (the one documented departure)
DEPARTURES = {("001", "0", "0.12"), ("001", "4.5", "5.0"), ("001", "5.9999999999", "8.0"),
              ("002", "0", "0.5"), ("002", "3.6", "8.0")}


def _media(root: Path, split: str, session: str, seconds: float = SECONDS) -> None:
    write_wavs(root, split, session, seconds)
    write_mp4(root / "video" / split / "far" / f"{session}_Far.mp4", int(seconds * FPS))


def _write_tgs(root: Path, split: str, session: str, tgs, bom_first: bool = True) -> None:
    tdir = root / "transcription" / split
    tdir.mkdir(parents=True, exist_ok=True)
    for k, (spk, iv) in enumerate(tgs.items()):
        text = official_textgrid(iv, SECONDS)
        (tdir / f"{session}_Near_{spk}.TextGrid").write_bytes(
            (b"\xef\xbb\xbf" if (k == 0 and bom_first) else b"") + text.encode("utf-8"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("misp")
    _media(root, "train", SESSION)
    _write_tgs(root, "train", SESSION, TG)
    return root


def test_official_form_read_with_and_without_bom(tmp_path):
    text = official_textgrid(TG["001"], SECONDS)
    assert text.count("intervals [3]:") == 2 and "\r\n" in text
    out = []
    for bom in (b"", b"\xef\xbb\xbf"):
        p = tmp_path / f"{len(bom)}_Near_001.TextGrid"
        p.write_bytes(bom + text.encode("utf-8"))
        out.append(misp.read_tier(str(p), keep_empty=True))
    assert out[0] == out[1]
    assert [(repr(s), repr(e)) for s, e, _ in out[0]] == \
        [(repr(float(s)), repr(float(e))) for s, e, _ in TG["001"]]
    assert [x for _, _, x in out[0]] == [x.strip() for _, _, x in TG["001"]]
    # without keep_empty the empty intervals are left out (the toolkit rules)
    assert len(misp.read_tier(str(p))) == len(TG["001"]) - 3


def test_prepare_official_kept_set(corpus, tmp_path):
    out = tmp_path / "train_all"
    rep = prepare_data.prepare_split(str(corpus), "train", str(out))
    official = {}
    departures = set()
    for spk, iv in TG.items():
        for xmin_s, xmax_s, label in iv:
            exp = official_expected(spk, SESSION, [(xmin_s, xmax_s, label)])
            for utt, v in exp.items():
                if (spk, xmin_s, xmax_s) in DEPARTURES:
                    departures.add(utt)
                else:
                    official[utt] = v
    assert len(departures) == len(DEPARTURES)  # the official code keeps every one of them
    dd = read_datadir(out)
    assert sorted(dd.utts) == sorted(official)
    for utt, (start, end, text) in official.items():
        assert (dd.segments[utt].start, dd.segments[utt].end) == (start, end), utt
        assert dd.text[utt] == misp.normalize_text(text)
        assert dd.utt2spk[utt] == utt.split("_")[0]
    # spot checks of the expressions on this data
    assert dd.text[f"S001_{SESSION}_000008-000024"] == "你好"
    assert dd.text[f"S001_{SESSION}_000096-000108"] == "好"
    assert dd.text[f"S001_{SESSION}_000196-000252"] == "嗯嗯"
    assert dd.text[f"S001_{SESSION}_000348-000400"] == "小TOK"
    assert dd.text[f"S001_{SESSION}_000396-000452"] == "啊"
    assert dd.text[f"S001_{SESSION}_000496-000600"] == "中国"
    assert f"S002_{SESSION}_000048-000192" in dd.text and f"S002_{SESSION}_000236-000364" in dd.text
    # every id is on the 40 ms grid
    for utt in dd.utts:
        p = misp.parse_utterance_id(utt)
        assert p.start_units % 4 == 0 and p.end_units % 4 == 0
    # the report: every departure under its category, the drops under theirs
    skipped = [line.split("\t") for line in (out / "skipped").read_text().splitlines()]
    by_cat = {}
    for kind, ident, reason in skipped:
        by_cat.setdefault(reason.split(":")[0], set()).add(ident)
    assert by_cat[prepare_data.NO_SPEECH_AFTER_NORM] == departures
    report = json.loads((out / "prep_report.json").read_text())
    assert report["text_norm"] == "official"
    seg = report["segments"]
    assert seg["found"] == sum(len(v) for v in TG.values()) and seg["kept"] == len(official)
    assert seg["skipped"] == {misp.DROP_REJECTED: 2, misp.DROP_SHORT: 3, misp.DROP_FILLER: 3,
                              prepare_data.NO_SPEECH_AFTER_NORM: 5}
    assert rep.segments_kept == len(official)


def test_prepare_toolkit_rules_unchanged(corpus, tmp_path):
    out = tmp_path / "train_all"
    prepare_data.main(["--misp_root", str(corpus), "--splits", "train", "--data_dir", str(tmp_path),
                       "--text_norm", "toolkit"])
    dd = read_datadir(out)
    # 10 ms ids of the interval times; fillers kept; marks-only intervals dropped
    assert dd.text[f"S001_{SESSION}_000012-000020"] == "你好"
    assert dd.text[f"S001_{SESSION}_000104-000150"] == "嗯"
    assert dd.text[f"S001_{SESSION}_000330-000334"] == "对"
    assert f"S002_{SESSION}_000050-000190" in dd.text
    assert not any("_000024-000100" in u for u in dd.utts)  # <NOISE>
    assert json.loads((out / "prep_report.json").read_text())["text_norm"] == "toolkit"


def test_duplicate_ids_reported(tmp_path):
    root = tmp_path / "misp"
    _media(root, "train", SESSION)
    iv = [("0", "0.5", ""), ("0.5", "1.9", "天气好"), ("0.51", "1.89", "天气"), ("1.9", "8.0", "")]
    _write_tgs(root, "train", SESSION, {"001": iv})
    out = tmp_path / "train_all"
    rep = prepare_data.prepare_split(str(root), "train", str(out))
    dd = read_datadir(out)
    utt = f"S001_{SESSION}_000048-000192"
    assert dd.utts == [utt] and dd.text[utt] == "天气好"  # the first in time order
    assert rep.skipped_segments["duplicate id"] == 1
    assert f"segment\t{utt}\tduplicate id" in (out / "skipped").read_text()


# ----------------------------------------------------------------------------- data dir without text


def test_datadir_without_text(tmp_path):
    dd = DataDir(wav={"r_Far": "/x.wav"}, segments={"S1_a": Segment("r_Far", 0.0, 1.0)},
                 utt2spk={"S1_a": "S1"})
    with pytest.raises(DataDirError, match="text"):
        write_datadir(dd, tmp_path / "strict")
    write_datadir(dd, tmp_path / "d", require_text=False)
    assert not (tmp_path / "d" / "text").exists()
    assert validate_datadir(tmp_path / "d", check_media=False, require_text=False).ok
    res = validate_datadir(tmp_path / "d", check_media=False)
    assert not res.ok and "text: missing" in res.report()
    # a text file that is there is checked as always
    (tmp_path / "d" / "text").write_text("S1_b x\n")
    res = validate_datadir(tmp_path / "d", check_media=False, require_text=False)
    assert not res.ok and "no text for 1 utterance" in res.report()


# ----------------------------------------------------------------------------- eval segment file

EVAL_SESSION = "R02_S003004_C02_I1"
EVAL_TG = {"003": [("0", "0.5", ""), ("0.5", "1.9", "天气好"), ("1.9", "2.4", "唉！"),
                   ("2.4", "3.6", "人民，"), ("3.6", "8.0", "")],
           "004": [("0", "1.0", ""), ("1.0", "2.6", "你好"), ("2.6", "8.0", "")]}
# ids as the official preparation writes them for EVAL_TG, in a non-sorted file order, with
# every accepted wav_name form
EVAL_LINES = [
    f"S004_{EVAL_SESSION}_000096-000264 S004 {EVAL_SESSION}_Far 0.96 2.64",
    f"S003_{EVAL_SESSION}_000236-000364 S003 {EVAL_SESSION}_Far_0.wav 2.36 3.64",
    f"S003_{EVAL_SESSION}_000048-000192 S003 {{root}}/audio/eval/far/{EVAL_SESSION}_Far_1.wav 0.48 1.92",
]


@pytest.fixture(scope="module")
def eval_corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("misp_eval")
    _media(root, "eval", EVAL_SESSION)
    return root


def _seg_file(path: Path, root: Path, lines) -> Path:
    path.write_text("".join(line.format(root=root) + "\n" for line in lines), encoding="utf-8")
    return path


def _run_eval(root: Path, seg: Path, data: Path, *extra: str) -> None:
    prepare_data.main(["--misp_root", str(root), "--splits", "eval", "--data_dir", str(data),
                       "--eval_segments", str(seg), *extra])


def test_eval_segments_without_textgrids(eval_corpus, tmp_path, capsys):
    lines = EVAL_LINES + [f"S004_{EVAL_SESSION}_000780-000820 S004 {EVAL_SESSION}_Far_0 7.80 8.20"]
    seg = _seg_file(tmp_path / "segments.txt", eval_corpus, lines)
    _run_eval(eval_corpus, seg, tmp_path / "data")
    out = tmp_path / "data" / "eval_all"
    ids = [line.split()[0] for line in lines]
    assert (out / "eval_segment_ids").read_text().splitlines() == ids  # file order
    assert not (out / "text").exists()
    dd = read_datadir(out)
    assert dd.utts == sorted(ids)
    assert dd.utt2spk[ids[0]] == "S004"
    assert dd.segments[ids[2]] == Segment(f"{EVAL_SESSION}_Far", 0.48, 1.92)
    assert dd.segments[ids[3]] == Segment(f"{EVAL_SESSION}_Far", 7.8, 8.2)  # after the media: kept
    assert dd.wav == {f"{EVAL_SESSION}_Far": str(eval_corpus / "audio/eval/far" / f"{EVAL_SESSION}_Far_0.wav")}
    assert dd.video == {f"{EVAL_SESSION}_Far": str(eval_corpus / "video/eval/far" / f"{EVAL_SESSION}_Far.mp4")}
    assert validate_datadir(out, check_media=False, require_video=True, require_text=False).ok
    o = capsys.readouterr().out
    assert f"{seg}:4:" in o and "kept" in o  # the warning names the line
    assert "scoring will be skipped" in o
    report = json.loads((out / "prep_report.json").read_text())
    assert report["beyond_media_end"] == 1 and report["text"] == "absent"
    # --channel picks the wav of wav.scp whatever channel a wav_name names
    _run_eval(eval_corpus, seg, tmp_path / "data1", "--channel", "1")
    assert read_datadir(tmp_path / "data1" / "eval_all").wav[f"{EVAL_SESSION}_Far"].endswith("_Far_1.wav")


def test_eval_segments_with_references(eval_corpus, tmp_path, capsys):
    root = tmp_path / "misp"
    (root / "audio").mkdir(parents=True)
    (root / "video").mkdir()
    (root / "audio" / "eval").symlink_to(eval_corpus / "audio" / "eval")
    (root / "video" / "eval").symlink_to(eval_corpus / "video" / "eval")
    _write_tgs(root, "eval", EVAL_SESSION, EVAL_TG)
    seg = _seg_file(tmp_path / "segments.txt", root, EVAL_LINES)
    _run_eval(root, seg, tmp_path / "data")
    out = tmp_path / "data" / "eval_all"
    dd = read_datadir(out)
    assert dd.text == {f"S004_{EVAL_SESSION}_000096-000264": "你好",
                       f"S003_{EVAL_SESSION}_000236-000364": "人民",
                       f"S003_{EVAL_SESSION}_000048-000192": "天气好"}
    assert validate_datadir(out, check_media=False, require_video=True).ok
    assert json.loads((out / "prep_report.json").read_text())["text"] == "written"
    # one id without a reference of the same id (toolkit ids differ): no text at all
    capsys.readouterr()
    _run_eval(root, seg, tmp_path / "data_tk", "--text_norm", "toolkit")
    out = tmp_path / "data_tk" / "eval_all"
    assert not (out / "text").exists() and len(read_datadir(out).utts) == 3
    o = capsys.readouterr().out
    assert "no text file written" in o and "scoring will be skipped" in o


@pytest.mark.parametrize("bad,line,reason", [
    ("S009_R09_S009_C01_I0_000000-000100 S009 R09_S009_C01_I0_Far 0.00 1.00", 2,
     "no usable far media for session R09_S009_C01_I0"),
    ("S004_x_000000-000100 S004 {session}_Far 0.00", 2, "expected 5 fields"),
    ("S004_x_000100-000100 S004 {session}_Far 1.00 1.00", 2, "end 1.00 <= start 1.00"),
    ("S004_x_000000-000100 S004 {session}_Far zero 1.00", 2, "not numbers"),
    ("S004_x_000000-000100 S004 {session}_Near_004.wav 0.00 1.00", 2, "wav_name"),
    (EVAL_LINES[0], 2, "duplicate segment id"),
])
def test_eval_segment_file_errors_name_the_line(eval_corpus, tmp_path, bad, line, reason):
    seg = _seg_file(tmp_path / "segments.txt", eval_corpus,
                    [EVAL_LINES[0], bad.format(session=EVAL_SESSION), EVAL_LINES[1]])
    with pytest.raises(SystemExit) as ei:
        _run_eval(eval_corpus, seg, tmp_path / "data")
    msg = str(ei.value.code)
    assert msg.startswith(f"ERROR: {seg}:{line}: ") and reason in msg, msg
    assert not (tmp_path / "data" / "eval_all").exists()


def test_eval_segment_file_error_exit_status(eval_corpus, tmp_path):
    seg = _seg_file(tmp_path / "segments.txt", eval_corpus, [EVAL_LINES[0], "just three fields"])
    p = subprocess.run([sys.executable, str(LOCAL / "prepare_data.py"), "--misp_root", str(eval_corpus),
                        "--splits", "eval", "--data_dir", str(tmp_path / "data"),
                        "--eval_segments", str(seg)],
                       capture_output=True, text=True, timeout=120, cwd=REPO,
                       env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert p.returncode == 1
    assert f"{seg}:2: expected 5 fields" in p.stderr


def test_wav_name_forms():
    s = "R01_S016017_C02_I1"
    for name, ch in ((f"{s}_Far", None), (f"{s}_Far.wav", None), (f"{s}_Far_3", 3),
                     (f"{s}_Far_0.wav", 0), (f"/data/eval/far/{s}_Far_5.wav", 5)):
        assert misp.parse_wav_name(name) == (s, ch), name
    for name in (f"{s}_Near_016.wav", f"{s}_Middle_0.wav", f"{s}_Far_x", "Far"):
        assert misp.parse_wav_name(name) is None, name
