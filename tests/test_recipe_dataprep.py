"""recipes/misp2022 data preparation: TextGrids -> data dirs -> ROIs -> tokens -> summary.

Builds its own tiny MISP2022-layout corpus (wav via soundfile, h264 mp4 via PyAV,
TextGrids written by hand in UTF-8 and UTF-16, detection JSON via
frontends.lip_boxes.write_detections).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "misp2022"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(RECIPE / "local"))

import misp  # noqa: E402  (recipes/misp2022/local/misp.py)
import prepare_data  # noqa: E402

from avsr.data.datadir import read_datadir, validate_datadir  # noqa: E402
from avsr.data.roi_dump import extract_rois, load_roi, segment_frames  # noqa: E402
from avsr.text.tokens import (Tokenizer, build_char_token_list, read_token_list,  # noqa: E402
                              train_sentencepiece)
from frontends.lip_boxes import SpeakerTrack, write_detections  # noqa: E402

W, H, FPS, SR = 160, 96, 25, 16000
BOX_W, BOX_H = 20.0, 12.0
CENTRES = {"001": (40.0, 48.0), "002": (120.0, 48.0)}  # lip-box centres (x, y)


def patch_value(spk: str, i: int) -> int:
    """Grey level of speaker ``spk``'s mouth patch in frame ``i`` (distinct per frame)."""
    return 20 + (i * 7) % 200 if spk == "001" else 235 - (i * 5) % 150


# ----------------------------------------------------------------------------- fixture corpus


def write_mp4(path: Path, n_frames: int, spks=("001", "002"), faststart: bool = False) -> None:
    import av
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", options={"movflags": "faststart"} if faststart else {}) as c:
        st = c.add_stream("libx264", rate=FPS)
        st.width, st.height, st.pix_fmt = W, H, "yuv420p"
        st.options = {"qp": "0", "preset": "ultrafast"}
        for i in range(n_frames):
            img = np.full((H, W), 128, np.uint8)
            for s in spks:
                cx, cy = CENTRES[s]
                img[int(cy) - 24:int(cy) + 24, int(cx) - 24:int(cx) + 24] = patch_value(s, i)
            fr = av.VideoFrame.from_ndarray(img, format="gray").reformat(format="yuv420p")
            for p in st.encode(fr):
                c.mux(p)
        for p in st.encode():
            c.mux(p)


def write_wavs(root: Path, split: str, session: str, seconds: float, channels: int = 2) -> None:
    import soundfile as sf
    rng = np.random.default_rng(0)
    d = root / "audio" / split / "far"
    d.mkdir(parents=True, exist_ok=True)
    for ch in range(channels):
        x = (rng.standard_normal(int(seconds * SR)) * 1000).astype(np.int16)
        sf.write(str(d / f"{session}_Far_{ch}.wav"), x, SR, subtype="PCM_16")


def textgrid_text(intervals, xmax: float, tier: str = misp.TIER) -> str:
    """Praat long text format with gaps filled by empty intervals."""
    full, t = [], 0.0
    for s, e, x in sorted(intervals):
        if s > t:
            full.append((t, s, ""))
        full.append((s, e, x))
        t = e
    if t < xmax:
        full.append((t, xmax, ""))
    lines = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "",
             "xmin = 0 ", f"xmax = {xmax} ", "tiers? <exists> ", "size = 1 ", "item []: ",
             "    item [1]:", '        class = "IntervalTier" ', f'        name = "{tier}" ',
             "        xmin = 0 ", f"        xmax = {xmax} ", f"        intervals: size = {len(full)} "]
    for k, (s, e, x) in enumerate(full, 1):
        x = x.replace('"', '""')
        lines += [f"        intervals [{k}]:", f"            xmin = {s} ", f"            xmax = {e} ",
                  f'            text = "{x}" ']
    return "\n".join(lines) + "\n"


def write_textgrid(path: Path, intervals, xmax: float, encoding: str = "utf-8",
                   tier: str = misp.TIER) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(textgrid_text(intervals, xmax, tier).encode(encoding))


def write_detection(root: Path, split: str, session: str, n_frames: int, missing=None) -> None:
    """All frames detected except ``missing[spk]`` (an iterable of frame indices)."""
    missing = missing or {}
    tracks = {}
    for s, (cx, cy) in CENTRES.items():
        frames = np.array([i for i in range(n_frames) if i not in set(missing.get(s, ()))], np.int64)
        box = [cx - BOX_W / 2, cy - BOX_H / 2, cx + BOX_W / 2, cy + BOX_H / 2]
        tracks[s] = SpeakerTrack(frames, np.tile(np.array(box, np.float32), (len(frames), 1)))
    d = root / "detection" / split / "far"
    d.mkdir(parents=True, exist_ok=True)
    write_detections(d / f"{session}_Far.json", video=f"{session}_Far.mp4", fps=FPS,
                     num_frames=n_frames, width=W, height=H, speakers=tracks)


# speaker -> intervals; times chosen so that 10 ms quantisation and frame rounding are exercised
TG = {
    "001": [(0.20, 1.004, "你好，世界！"), (1.20, 1.50, "<NOISE>"), (1.60, 2.80, "ＡＢＣ１２３ok<DEAF>。")],
    "002": [(0.50, 1.90, "今天 天气 好"), (2.00, 2.30, "<DEAF>"), (2.40, 3.60, "“中国”，人民？")],
}


def make_session(root: Path, split: str, session: str, *, seconds: float = 4.0,
                 video_seconds: float | None = None, encoding: str = "utf-8",
                 missing=None, tg=None) -> None:
    n = int(round((video_seconds or seconds) * FPS))
    write_wavs(root, split, session, seconds)
    write_mp4(root / "video" / split / "far" / f"{session}_Far.mp4", n)
    write_detection(root, split, session, n, missing)
    for spk, iv in (tg or TG).items():
        write_textgrid(root / "transcription" / split / f"{session}_Near_{spk}.TextGrid", iv,
                       seconds, encoding)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("misp")
    make_session(root, "train", "R01_S001002_C01_I0", encoding="utf-8",
                 missing={"002": range(50, 100)})  # speaker 002: frames 50..99 undetected
    make_session(root, "train", "R01_S001002_C01_I1", encoding="utf-16")
    make_session(root, "dev", "R02_S001002_C01_I0", encoding="utf-16-le")
    make_session(root, "eval", "R02_S001002_C01_I1", encoding="utf-8")
    return root


# ----------------------------------------------------------------------------- text + TextGrid


def test_normalize_text_rules():
    n = misp.normalize_text
    assert n("你好，世界！") == "你好世界"
    assert n("ＡＢＣ１２３ok<DEAF>。") == "ABC123OK"
    assert n("“中国”，人民？") == "中国人民"
    assert n("今天 天气\u3000好") == "今天天气好"
    assert n("<NOISE>") == "" and n(" <DEAF> ") == "" and n("<noise>嗯<Deaf>") == "嗯"
    assert n("Hello, world... (test)-[x]") == "HELLOWORLDTESTX"
    assert n("《红楼梦》……—、；：") == "红楼梦"
    assert n("①号") == "1号"


@pytest.mark.parametrize("enc", ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be"])
def test_read_tier_encodings(tmp_path, enc):
    p = tmp_path / "R01_S001_C01_I0_Near_001.TextGrid"
    write_textgrid(p, TG["001"], 4.0, enc)
    iv = misp.read_tier(str(p))
    assert [x[2] for x in iv] == [t for _, _, t in TG["001"]]
    assert iv[0][:2] == (0.20, 1.004)


def test_read_tier_missing_tier_and_garbage(tmp_path):
    p = tmp_path / "x_Near_001.TextGrid"
    write_textgrid(p, TG["001"], 4.0, tier="other")
    with pytest.raises(misp.TextGridError) as ei:
        misp.read_tier(str(p))
    assert str(ei.value).startswith(str(p)) and "内容层" in str(ei.value)
    assert ei.value.kind == "missing tier"
    p.write_bytes(b"\x00\x01garbage")
    with pytest.raises(misp.TextGridError) as ei:
        misp.read_tier(str(p))
    assert ei.value.kind == "unreadable TextGrid"


def test_names_and_ids():
    nn = misp.parse_near_name("R01_S001002003_C01_I0_Near_002.TextGrid")
    assert nn == misp.NearName("R01_S001002003_C01_I0", "002")
    assert misp.parse_near_name("R01_S001_C01_I0_Far.TextGrid") is None
    assert misp.utterance_id("001", "R01_S001002003_C01_I0", misp.time_units(1.145),
                             misp.time_units(1.52)) == "S001_R01_S001002003_C01_I0_000115-000152"
    assert segment_frames(0.20, 1.00) == (5, 25) and segment_frames(0.50, 1.90) == (13, 48)


# ----------------------------------------------------------------------------- stage 1


def test_prepare_round_trip(corpus, tmp_path, capsys):
    out = tmp_path / "train_all"
    rep = prepare_data.prepare_split(str(corpus), "train", str(out), channel=1, text_norm="toolkit")
    assert validate_datadir(out, require_video=True).ok
    dd = read_datadir(out)
    s0, s1 = "R01_S001002_C01_I0", "R01_S001002_C01_I1"
    exp_text = {"S001_{}_000020-000100": "你好世界", "S001_{}_000160-000280": "ABC123OK",
                "S002_{}_000050-000190": "今天天气好", "S002_{}_000240-000360": "中国人民"}
    want = {k.format(s): v for s in (s0, s1) for k, v in exp_text.items()}
    assert dd.text == want  # UTF-8 (s0) and UTF-16 (s1) TextGrids; marks dropped
    assert dd.utt2spk[f"S002_{s1}_000050-000190"] == "S002"
    seg = dd.segments[f"S001_{s0}_000020-000100"]
    assert (seg.recording, seg.start, seg.end) == (f"{s0}_Far", 0.20, 1.00)
    assert dd.wav[f"{s0}_Far"] == str(corpus / "audio/train/far" / f"{s0}_Far_1.wav")
    assert dd.video[f"{s1}_Far"] == str(corpus / "video/train/far" / f"{s1}_Far.mp4")
    assert dd.spk2utt["S001"] == sorted(u for u in want if u.startswith("S001"))
    lines = (out / "segments").read_text().splitlines()
    assert lines == sorted(lines) and lines[0] == f"S001_{s0}_000020-000100 {s0}_Far 0.20 1.00"
    assert rep.segments_found == 12 and rep.segments_kept == 8
    assert rep.skipped_segments == {"only non-speech marks": 4}
    rj = json.loads((out / "prep_report.json").read_text())
    assert rj["sessions"] == {"found": 2, "kept": 2, "skipped": {}}
    skipped = (out / "skipped").read_text()
    assert "<NOISE>" in skipped and "<DEAF>" in skipped
    assert not [p for p in tmp_path.iterdir() if ".tmp." in p.name]


def make_bad_corpus(root: Path) -> dict:
    """One good session and one session per bad-input case (split 'train')."""
    s = {k: f"R0{i}_S001002_C01_I0" for i, k in
         enumerate(["good", "nowav", "badmp4", "notier", "short"], 1)}
    for k, sess in s.items():
        make_session(root, "train", sess, video_seconds=2.0 if k == "short" else None)
    (root / "audio/train/far" / f"{s['nowav']}_Far_0.wav").unlink()
    (root / "video/train/far" / f"{s['badmp4']}_Far.mp4").write_bytes(os.urandom(3000))
    write_textgrid(root / "transcription/train" / f"{s['notier']}_Near_001.TextGrid",
                   TG["001"], 4.0, tier="words")
    return s


def test_prepare_bad_inputs(tmp_path, capsys):
    root = tmp_path / "misp"
    s = make_bad_corpus(root)
    out = tmp_path / "data" / "train_all"
    rep = prepare_data.prepare_split(str(root), "train", str(out), channel=0, text_norm="toolkit")
    log = capsys.readouterr().out
    # each problem names its file
    assert str(root / "audio/train/far" / f"{s['nowav']}_Far_0.wav") in log
    assert str(root / "video/train/far" / f"{s['badmp4']}_Far.mp4") in log
    assert str(root / "transcription/train" / f"{s['notier']}_Near_001.TextGrid") in log
    short_mp4 = str(root / "video/train/far" / f"{s['short']}_Far.mp4")
    assert short_mp4 in log and "end after it" in log
    assert rep.skipped_sessions == {"missing wav": 1, "unreadable mp4": 1}
    assert rep.skipped_textgrids == {"missing tier": 1}
    # short video (2 s): the segments ending after 2.02 s are skipped, the others kept
    assert rep.skipped_segments["beyond mp4 end"] == 2
    dd = read_datadir(out)
    recs = {dd.recording_of(u) for u in dd.utts}
    assert recs == {f"{s[k]}_Far" for k in ("good", "notier", "short")}
    assert sorted(u for u in dd.utts if s["short"] in u) == [
        f"S001_{s['short']}_000020-000100", f"S002_{s['short']}_000050-000190"]
    assert not any(s["notier"] in u and u.startswith("S001") for u in dd.utts)
    assert validate_datadir(out, require_video=True).ok
    rep.print_summary()
    summary = capsys.readouterr().out
    assert "1 missing wav" in summary and "1 unreadable mp4" in summary
    assert "2 beyond mp4 end" in summary and "1 missing tier" in summary


def test_prepare_never_half_written(tmp_path, capsys):
    root = tmp_path / "misp"
    make_session(root, "train", "R01_S001002_C01_I0")
    out = tmp_path / "data" / "train_all"
    prepare_data.prepare_split(str(root), "train", str(out), text_norm="toolkit")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    # now every session is unusable: the split fails and the old data dir stays as it was
    (root / "audio/train/far/R01_S001002_C01_I0_Far_0.wav").unlink()
    with pytest.raises(SystemExit, match="no usable segments"):
        prepare_data.prepare_split(str(root), "train", str(out), text_norm="toolkit")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["train_all"]


# ----------------------------------------------------------------------------- stage 2


@pytest.fixture(scope="module")
def train_all(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "train_all"
    prepare_data.prepare_split(str(corpus), "train", str(out), text_norm="toolkit")
    return out


def test_rois_content_and_skip_rule(corpus, train_all, tmp_path):
    rep = extract_rois(str(train_all), str(corpus / "detection/train/far"), str(tmp_path / "roi"),
                       nj=1, spk_prefix="S", filtered_dir=str(tmp_path / "train"), progress=False)
    s0, s1 = "R01_S001002_C01_I0", "R01_S001002_C01_I1"
    dd = read_datadir(tmp_path / "train")
    # speaker 002 of s0 has no detection in frames 50..99: its segment 2.40-3.60 s
    # (frames 60..89) is skipped, its segment 0.50-1.90 s (frames 13..47) is kept
    assert f"S002_{s0}_000240-000360" not in dd.roi
    assert f"S002_{s0}_000050-000190" in dd.roi
    assert rep["skipped_by_reason"] == {"< 50% frames detected": 1}
    assert rep["with_roi"] == 7
    assert "S002_R01_S001002_C01_I0_000240-000360" in (tmp_path / "train" / "skipped").read_text()
    assert validate_datadir(tmp_path / "train", require_video=True, require_roi=True).ok
    assert sorted(dd.utts) == sorted(dd.roi)

    # content at the known box: speaker 001's patch value of the segment's grid frames
    utt = f"S001_{s1}_000160-000280"  # frames 40..69
    roi, det = load_roi(dd.roi[utt])
    assert roi.dtype == np.uint8 and roi.shape == (30, 96, 96) and det.dtype == bool and det.all()
    for k in (0, 1, 29):
        assert abs(int(roi[k, 48, 48]) - patch_value("001", 40 + k)) <= 3
    # the square (side 1.6 * 20 = 32 px) lies inside the 48x48 patch: ROI is uniform
    assert int(roi[0, 28:68, 22:66].max()) - int(roi[0, 28:68, 22:66].min()) <= 6
    utt2 = f"S002_{s0}_000050-000190"  # frames 13..47, detected only up to frame 49
    roi2, det2 = load_roi(dd.roi[utt2])
    assert roi2.shape[0] == 35 and det2.all()
    assert abs(int(roi2[0, 48, 52]) - patch_value("002", 13)) <= 3
    assert dd.extra["utt2num_roi_frames"][utt] == "30"
    assert (tmp_path / "roi" / "roi.scp").read_text() == (tmp_path / "train" / "roi.scp").read_text()


def test_rois_interpolated_gap_kept(tmp_path):
    """A gap of undetected frames inside a segment is interpolated; detected marks it."""
    root = tmp_path / "misp"
    make_session(root, "train", "R01_S001002_C01_I0", missing={"001": range(10, 20)})
    prepare_data.prepare_split(str(root), "train", str(tmp_path / "all"), text_norm="toolkit")
    extract_rois(str(tmp_path / "all"), str(root / "detection/train/far"), str(tmp_path / "roi"),
                 spk_prefix="S", progress=False)
    roi, det = load_roi(str(tmp_path / "roi/R01_S001002_C01_I0_Far/"
                            "S001_R01_S001002_C01_I0_000020-000100.npz"))  # frames 5..24
    assert roi.shape[0] == 20
    assert det.tolist() == [not (10 <= f < 20) for f in range(5, 25)]
    assert abs(int(roi[7, 48, 48]) - patch_value("001", 12)) <= 3  # crop at the interpolated box


def test_rois_bad_sessions_and_nj(corpus, tmp_path, capsys):
    root = tmp_path / "misp"
    sess = [f"R0{i}_S001002_C01_I0" for i in range(1, 5)]
    for s in sess:
        make_session(root, "train", s)
    prepare_data.prepare_split(str(root), "train", str(tmp_path / "all"), text_norm="toolkit")
    # after stage 1: one detection file disappears, one mp4 gets corrupted
    (root / "detection/train/far" / f"{sess[1]}_Far.json").unlink()
    mp4 = root / "video/train/far" / f"{sess[2]}_Far.mp4"
    mp4.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    reps = {}
    for nj in (1, 2):
        reps[nj] = extract_rois(str(tmp_path / "all"), str(root / "detection/train/far"),
                                str(tmp_path / f"roi{nj}"), nj=nj, spk_prefix="S",
                                filtered_dir=str(tmp_path / f"train{nj}"), progress=False)
    err = capsys.readouterr().err
    assert str(root / "detection/train/far" / f"{sess[1]}_Far.json") in err
    assert str(mp4) in err
    r = reps[1]
    assert r["sessions_failed"] == 2 and r["with_roi"] == 8 and r["skipped"] == 8
    assert r["skipped_by_reason"] == {"session failed: detection file": 4,
                                      "session failed: video": 4}
    # identical outputs for nj 1 and 2 (paths differ only in the out dir name)
    for name in ("roi.scp", "skipped", "utt2num_roi_frames"):
        a = (tmp_path / "roi1" / name).read_text().replace("roi1", "roiN")
        b = (tmp_path / "roi2" / name).read_text().replace("roi2", "roiN")
        assert a == b, name
    for name in ("text", "segments", "utt2spk", "spk2utt", "wav.scp", "video.scp", "utt2roi_detected"):
        assert (tmp_path / "train1" / name).read_bytes() == (tmp_path / "train2" / name).read_bytes()
    files1 = sorted(p.relative_to(tmp_path / "roi1") for p in (tmp_path / "roi1").rglob("*.npz"))
    files2 = sorted(p.relative_to(tmp_path / "roi2") for p in (tmp_path / "roi2").rglob("*.npz"))
    assert files1 == files2 and len(files1) == 8
    for f in files1:  # ROI files are byte-identical
        assert (tmp_path / "roi1" / f).read_bytes() == (tmp_path / "roi2" / f).read_bytes()
    assert not list(tmp_path.glob("*.tmp.*")) and not list(tmp_path.rglob("*.part"))


def test_rois_truncated_video_keeps_finished(tmp_path, capsys):
    """A video that breaks part-way: utterances finished before the damage keep their ROIs."""
    root = tmp_path / "misp"
    sess = "R01_S001002_C01_I0"
    make_session(root, "train", sess)
    mp4 = root / "video/train/far" / f"{sess}_Far.mp4"
    write_mp4(mp4, 100, faststart=True)  # index first: cutting the file cuts frames
    prepare_data.prepare_split(str(root), "train", str(tmp_path / "all"), text_norm="toolkit")
    data = mp4.read_bytes()
    mp4.write_bytes(data[: len(data) * 6 // 10])
    rep = extract_rois(str(tmp_path / "all"), str(root / "detection/train/far"),
                       str(tmp_path / "roi"), spk_prefix="S", filtered_dir=str(tmp_path / "flt"),
                       progress=False)
    assert str(mp4) in capsys.readouterr().err
    assert rep["sessions_failed"] == 1 and rep["skipped_by_reason"] == {"video decode failed": 2}
    assert sorted(read_datadir(tmp_path / "flt").roi) == [
        f"S001_{sess}_000020-000100", f"S002_{sess}_000050-000190"]


# ----------------------------------------------------------------------------- stage 3


def test_char_tokens_and_tokenizer(tmp_path):
    toks = build_char_token_list(["好好你", "你好A", "B"])
    assert toks == ["<blank>", "<unk>", "好", "你", "A", "B", "<sos/eos>"]
    tk = Tokenizer(toks)
    ids = tk.encode("你好C")
    assert ids == [3, 2, 1]
    assert tk.decode([0] + ids + [6]) == "你好<unk>"


def test_sentencepiece_tokens(tmp_path):
    texts = ["今天天气好", "你好世界", "中国人民你好", "今天你好", "ABC123OK"] * 3
    with pytest.raises(ValueError, match="vocab_size 10 is too small"):
        train_sentencepiece(texts, str(tmp_path / "small"), vocab_size=10)
    toks = train_sentencepiece(texts, str(tmp_path / "bpe"), vocab_size=40)
    assert toks[:2] == ["<blank>", "<unk>"] and toks[-1] == "<sos/eos>"
    assert len(set(toks)) == len(toks) and "<s>" not in toks
    tk = Tokenizer(toks, "bpe", str(tmp_path / "bpe" / "bpe.model"))
    ids = tk.encode("今天你好")
    assert ids and tk.unk_id not in ids and tk.decode(ids) == "今天你好"
    assert tk.decode([tk.sos_eos_id] + ids + [0]) == "今天你好"


# ----------------------------------------------------------------------------- run.sh


def _run(args, cwd=RECIPE):
    t = time.time()
    p = subprocess.run(["bash", "./run.sh", *args], cwd=cwd, capture_output=True, text=True,
                       timeout=300)
    return p, time.time() - t


def test_run_sh_stages_rerun_force(corpus, tmp_path):
    exp, data = tmp_path / "exp", tmp_path / "data"
    common = ["--misp_root", str(corpus), "--exp_dir", str(exp), "--data_dir", str(data)]
    p, _ = _run(["--stage", "1", "--stop_stage", "4", "--nj", "1", "--token_type", "bpe",
                 "--nbpe", "40", *common])
    assert p.returncode == 0, p.stdout + p.stderr
    names = ["1_data", "2_rois", "3_tokens", "4_summary"]
    markers = [exp / "stages" / f"{n}.done" for n in names]
    assert all(m.is_file() for m in markers)
    for n in names:
        num, name = n.split("_", 1)
        assert (exp / "logs" / f"stage{num}_{name}.log").stat().st_size > 0
    for split in ("train", "dev", "eval"):
        assert validate_datadir(data / f"{split}_all", require_video=True).ok
        assert validate_datadir(data / split, require_video=True, require_roi=True).ok
    toks = read_token_list(str(data / "token_list/char/tokens.txt"))
    assert toks[:2] == ["<blank>", "<unk>"] and toks[-1] == "<sos/eos>"
    assert set("你好世界ABC123OK今天气中国人民") == set(toks[2:-1])
    assert (data / "token_list/bpe_unigram40/bpe.model").is_file()
    summ = json.loads((exp / "data_summary.json").read_text())
    assert summ["splits"]["train"]["utterances"] == 7 and summ["splits"]["dev"]["utterances"] == 4
    assert summ["splits"]["train"]["roi_frames"] > 0 and summ["token_lists"]["char"] == len(toks)
    assert "ROI frames" in p.stdout  # the summary table went to the console (tee)
    stamp = {m: m.read_text() for m in markers}
    snapshot = {str(f.relative_to(data)): f.read_bytes() for f in sorted(data.rglob("*"))
                if f.is_file() and "roi_report" not in f.name}  # (timings, nj)
    assert sum(k.endswith(".npz") for k in snapshot) == 15

    # re-run: everything skipped (done markers untouched)
    p, dt = _run(["--stage", "1", "--stop_stage", "4", *common])
    assert p.returncode == 0, p.stderr
    assert p.stderr.count("already done") == 4
    assert {m: m.read_text() for m in markers} == stamp

    # --force with --nj 2 redoes stages 1-2 (later markers cleared), outputs identical
    time.sleep(1.1)
    p, _ = _run(["--stage", "1", "--stop_stage", "2", "--force", "--nj", "2", *common])
    assert p.returncode == 0, p.stderr
    assert markers[0].read_text() != stamp[markers[0]] and markers[1].read_text() != stamp[markers[1]]
    assert not markers[2].exists() and not markers[3].exists()
    snap2 = {str(f.relative_to(data)): f.read_bytes() for f in sorted(data.rglob("*"))
             if f.is_file() and "roi_report" not in f.name}
    assert snap2.keys() == snapshot.keys()
    for k, v in snapshot.items():
        assert snap2[k] == v, k
    assert not list(data.glob("*.tmp.*")) and not list(data.rglob("*.old.*"))


def test_run_sh_bad_corpus_reports(tmp_path):
    root = tmp_path / "misp"
    s = make_bad_corpus(root)
    exp, data = tmp_path / "exp", tmp_path / "data"
    p, _ = _run(["--misp_root", str(root), "--exp_dir", str(exp), "--data_dir", str(data),
                 "--splits", "train", "--stop_stage", "2", "--nj", "2"])
    assert p.returncode == 0, p.stdout + p.stderr
    out = p.stdout + p.stderr
    assert f"{s['nowav']}_Far_0.wav" in out and f"{s['badmp4']}_Far.mp4" in out
    assert f"{s['notier']}_Near_001.TextGrid" in out and "end after it" in out
    assert "1 missing wav" in out and "1 unreadable mp4" in out
    log1 = (exp / "logs" / "stage1_data.log").read_text()
    assert "1 missing wav" in log1
    assert validate_datadir(data / "train", require_roi=True).ok


def test_run_sh_usage_errors(tmp_path):
    p, _ = _run(["--help"])
    assert p.returncode == 0 and "1 data" in p.stdout and "4 summary" in p.stdout
    p, _ = _run(["--no_such_option", "1"])
    assert p.returncode != 0 and "no_such_option" in p.stderr
    p, _ = _run(["--force=maybe"])
    assert p.returncode != 0 and "takes true or false" in p.stderr
    p, _ = _run(["--nj=0"])
    assert p.returncode != 0 and "--nj must be >= 1" in p.stderr
    p, _ = _run(["--bootstrap_unit", "speaker"])
    assert p.returncode != 0 and "--bootstrap_unit must be utterance or recording, got 'speaker'" in p.stderr
    p, _ = _run(["--help"])
    assert "--bootstrap_unit U" in p.stdout
    p, _ = _run(["--exp_dir", str(tmp_path / "exp"), "--data_dir", str(tmp_path / "d"),
                 "--misp_root", str(tmp_path / "nowhere")])
    assert p.returncode != 0 and "nowhere" in p.stdout + p.stderr
    assert not (tmp_path / "exp/stages/1_data.done").exists()


def test_stage_8_trains_av0_only_when_a_model_needs_it(tmp_path):
    """--models without av0 (nor av5/av6, which start from it) skips stage 8 with a message instead of
    training AV0; with av0 it would need A0's weights (here: a clear error naming them)."""
    exp = tmp_path / "exp"
    common = ["--exp_dir", str(exp), "--data_dir", str(tmp_path / "data"), "--stage", "8", "--stop_stage", "8"]
    p, _ = _run([*common, "--models", "a0 v"])
    assert p.returncode == 0, p.stdout + p.stderr
    assert "stage 8: av0 not in --models (a0 v); not trained" in p.stdout + p.stderr
    assert not (exp / "train_av0").exists() and not (exp / "stages" / "8_train_av0.done").exists()
    p, _ = _run([*common, "--models", "a0 v av5"])                 # not skipped as done by the call before
    assert p.returncode != 0 and "train_a0/model.pth not found" in p.stdout + p.stderr
