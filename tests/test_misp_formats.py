"""The MISP2022 release's own file forms (docs/MISP2022_FORMATS.md).

Hand-written files in each form the official baselines read: frame-keyed lip-box JSON with
integer speaker ids, its raw ``"frames"`` variant with per-session offsets, TextGrids with
doubled interval headers + CRLF (+ BOM); the official boundary expression; and
recipes/misp2022/run.sh stages 1-2 on a tiny corpus in the release's layout
(``roi_coordinates/<set>/far/lip/<session>_Far.json``).
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "misp2022"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(RECIPE / "local"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import misp  # noqa: E402  (recipes/misp2022/local/misp.py)

from avsr.data.datadir import read_datadir, validate_datadir  # noqa: E402
from avsr.data.roi_dump import load_roi  # noqa: E402
from frontends.errors import MediaError  # noqa: E402
from frontends.lip_boxes import (FORMAT, OFFICIAL, OFFICIAL_RAW, RAW_SESSION_OFFSETS_S,  # noqa: E402
                                 SpeakerTrack, find_detection_file, load_detections,
                                 raw_session_offset, write_detections)
from test_recipe_dataprep import (BOX_H, BOX_W, CENTRES, FPS, patch_value, write_mp4,  # noqa: E402
                                  write_wavs)

# ----------------------------------------------------------------------------- lip boxes


def _entry(spk: int, lip, face=(10, 20, 110, 140)):
    x1, y1, x2, y2 = face
    e = {"id": spk, "x1": x1, "y1": y1, "x2": x2, "y2": y2}
    if lip is not None:
        e["lip"] = list(lip)
    return e


def test_frame_keyed_integer_ids(tmp_path):
    p = tmp_path / "R01_S005012_C01_I0_Far.json"
    p.write_text(json.dumps({
        "0": [_entry(5, [40, 50, 60, 62]), _entry(12, [140, 52, 158, 64])],
        "1": [_entry(5, [41, 50, 61, 62])],
        "3": [_entry(12, [141, 52, 159, 64]), _entry(12, [1, 1, 2, 2])],  # twice: first counts
        "4": [_entry(5, None), _entry(5, [])],  # no lip box: no detection
        "10": [],
    }))
    d = load_detections(p)
    assert d.format == OFFICIAL and d.fps == 25.0 and d.num_frames == 11
    assert sorted(d.speakers) == ["005", "012"]
    s5, s12 = d.speakers["005"], d.speakers["012"]
    assert s5.frames.tolist() == [0, 1] and s12.frames.tolist() == [0, 3]
    np.testing.assert_array_equal(s5.boxes, [[40, 50, 60, 62], [41, 50, 61, 62]])
    np.testing.assert_array_equal(s12.boxes[1], [141, 52, 159, 64])
    np.testing.assert_array_equal(s5.face_boxes[0], [10, 20, 110, 140])
    dense = d.boxes("005")
    assert dense.shape == (11, 4) and np.isnan(dense[2]).all() and np.isnan(dense[4]).all()
    # the roi_dump / pairs interface: the "S" prefix is stripped by the caller
    assert load_detections(p, OFFICIAL).speakers.keys() == d.speakers.keys()


def test_raw_frames_variant_offsets(tmp_path):
    assert RAW_SESSION_OFFSETS_S["R01_S010011012_C0001_I0"] == 218  # format_detection_json.py
    start = 218 * 25
    frames = {str(start - 1): [_entry(10, [1, 1, 5, 5])],  # before the offset: dropped
              str(start): [_entry(10, [40, 50, 60, 62])],
              str(start + 7): [_entry(11, [80, 50, 100, 62])]}
    raw = tmp_path / "R01_S010011012_C0001_I0_Far_raw.json"
    raw.write_text(json.dumps({"frames": frames}))
    d = load_detections(raw)
    assert d.format == OFFICIAL_RAW and d.num_frames == 8
    assert d.speakers["010"].frames.tolist() == [0] and d.speakers["011"].frames.tolist() == [7]
    np.testing.assert_array_equal(d.speakers["010"].boxes[0], [40, 50, 60, 62])
    # the released name (_C0001_ -> _C01_) finds the same offset
    rel = tmp_path / "R01_S010011012_C01_I0_Far.json"
    rel.write_text(raw.read_text())
    assert load_detections(rel).speakers["011"].frames.tolist() == [7]
    # explicit offset wins; a session not in the table has offset 0
    assert load_detections(raw, offset_seconds=0.0).speakers["010"].frames.tolist() == [start - 1, start]
    other = tmp_path / "R09_S001002_C01_I0_Far.json"
    other.write_text(json.dumps({"frames": {"3": [_entry(1, [1, 2, 3, 4])]}}))
    assert load_detections(other).speakers["001"].frames.tolist() == [3]
    assert raw_session_offset("R03_S070071_C0001_I2_Far_x.json") == 0.0
    # a raw _C00xx_ session missing from the table: error naming the file
    unk = tmp_path / "R99_S001002_C0001_I0_Far_raw.json"
    unk.write_text(json.dumps({"frames": {"3": [_entry(1, [1, 2, 3, 4])]}}))
    with pytest.raises(MediaError, match=r"R99_S001002_C0001_I0_Far_raw\.json.*offset_seconds"):
        load_detections(unk)
    assert load_detections(unk, offset_seconds=0.08).speakers["001"].frames.tolist() == [1]
    # the raw file is found for its released recording id
    assert find_detection_file(tmp_path, "R99_S001002_C01_I0_Far") == str(unk)
    assert find_detection_file(tmp_path, "R01_S010011012_C01_I0_Far") == str(rel)


@pytest.mark.parametrize("content,reason", [
    ('{"0": [{"id": 1, "lip": [1, 2, 3, 4]}', "cannot parse"),
    ('[1, 2, 3]', "not a lip-box file"),
    ('{"video": "x.mp4", "boxes": []}', "not a lip-box file"),
    ('{"format": "something-else"}', "unknown lip-box format"),
    ('{"0": [{"id": "five", "lip": [1, 2, 3, 4]}]}', "malformed"),
    ('{"0": [{"lip": [1, 2, 3, 4]}]}', "malformed"),
])
def test_bad_lip_box_file_names_the_file(tmp_path, content, reason):
    p = tmp_path / "R01_S001002_C01_I0_Far.json"
    p.write_text(content)
    with pytest.raises(MediaError) as ei:
        load_detections(p)
    assert str(ei.value).startswith(str(p)) and reason in str(ei.value)
    with pytest.raises(MediaError, match="not found"):
        load_detections(tmp_path / "missing.json")


def test_toolkit_schema_still_read(tmp_path):
    p = tmp_path / "a_Far.json"
    tr = SpeakerTrack(np.array([0, 2]), np.array([[1, 2, 3, 4], [5, 6, 7, 8]], np.float32))
    write_detections(p, video="a_Far.mp4", fps=25, num_frames=5, width=64, height=48,
                     speakers={"001": tr})
    for fmt in ("auto", FORMAT):
        d = load_detections(p, fmt)
        assert d.format == FORMAT and (d.width, d.height, d.num_frames) == (64, 48, 5)
        assert d.speakers["001"].frames.tolist() == [0, 2]


# ----------------------------------------------------------------------------- TextGrid


def official_textgrid(intervals, xmax: float, tier: str = misp.TIER) -> str:
    """The long TextGrid form the release uses: CRLF, each interval header written twice."""
    lines = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "", "xmin = 0.0",
             f"xmax = {xmax}", "tiers? <exists>", "size =  1", "item []:", "    item [1]:",
             '        class = "IntervalTier"', f'        name = "{tier}"', "        xmin = 0.0",
             f"        xmax = {xmax}", f"        intervals: size = {len(intervals)}"]
    for k, (s, e, x) in enumerate(intervals, 1):
        lines += [f"        intervals [{k}]:"] * 2
        lines += [f"            xmin = {s}", f"            xmax = {e}", f'            text = "{x}"']
    return "\r\n".join(lines) + "\r\n\r\n"


OFFICIAL_TG = [(0.0, 0.52, ""), (0.52, 1.7, "你好，世界。"), (1.7, 2.0, "<NOISE>"),
               (2.0, 3.1, "今天 天气 好"), (3.1, 4.0, "")]


@pytest.mark.parametrize("bom", [True, False])
def test_textgrid_doubled_headers_crlf(tmp_path, bom):
    text = official_textgrid(OFFICIAL_TG, 4.0)
    assert text.count("intervals [2]:") == 2 and "\r\n" in text
    p = tmp_path / "R01_S001002_C01_I0_Near_001.TextGrid"
    p.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    assert misp.read_tier(str(p)) == [(0.52, 1.7, "你好，世界。"), (1.7, 2.0, "<NOISE>"),
                                      (2.0, 3.1, "今天 天气 好")]


def test_normalize_textgrid_text_keeps_toolkit_form():
    plain = 'File type = "ooTextFile"\n        intervals [1]:\n            xmin = 0\n'
    assert misp.normalize_textgrid_text(plain) == plain
    doubled = "\ufeff" + plain.replace("\n", "\r\n").replace(
        "        intervals [1]:\r\n", "        intervals [1]:\r\n        intervals [1]:\r\n")
    assert misp.normalize_textgrid_text(doubled) == plain


def test_unreadable_textgrid_names_the_file(tmp_path):
    p = tmp_path / "R01_S001002_C01_I0_Near_001.TextGrid"
    text = official_textgrid(OFFICIAL_TG, 4.0).replace("            xmax = 1.7\r\n", "", 1)
    p.write_bytes(text.encode("utf-8"))
    with pytest.raises(misp.TextGridError) as ei:
        misp.read_tier(str(p))
    assert str(ei.value).startswith(str(p)) and ei.value.kind == "unreadable TextGrid"


# ----------------------------------------------------------------------------- boundaries


def test_official_boundaries_on_grid_points():
    ob = misp.official_boundaries
    # off the grid: outward to the 40 ms grid, like floor/ceil
    assert ob(0.123, 1.001) == (0.12, 1.04)
    # on the grid the float64 remainder is ~0 or ~0.04, so the expression is not floor/ceil
    assert ob(0.12, 0.12) == (0.08, 0.12)   # 0.12 % 0.04 = 0.0399...: start one frame early
    assert ob(0.2, 0.2) == (0.2, 0.24)      # 0.2 % 0.04 = 6.9e-18: end one frame late
    assert ob(1.0, 1.0) == (0.96, 1.0)
    assert ob(0.04, 0.04) == (0.04, 0.04)   # remainder exactly 0 (the 'else xmax' branch)
    assert ob(0.0, 0.0) == (0.0, 0.0)
    diffs = 0
    for k in range(1, 250):
        x = round(k * 0.04, 2)
        s, e = ob(x, x)
        floor_, ceil_ = math.floor(x / 0.04 + 1e-9) * 0.04, math.ceil(x / 0.04 - 1e-9) * 0.04
        assert s in (round(floor_, 2), round(floor_ - 0.04, 2)) and e in (round(ceil_, 2), round(ceil_ + 0.04, 2))
        diffs += (abs(s - floor_) > 1e-9) + (abs(e - ceil_) > 1e-9)
    assert diffs > 100  # most grid points differ from floor/ceil at one end
    # the utterance id's 10 ms units, as the official id writes them
    s, e = ob(0.12, 0.2)  # a 0.12-0.20 s interval becomes 0.08-0.24 s
    assert (misp.official_time_units(s), misp.official_time_units(e)) == (8, 24)


# ----------------------------------------------------------------------------- run.sh stages 1-2

SESSION = "R01_S001002_C01_I0"


def write_official_lip_json(path: Path, n_frames: int, missing=None) -> None:
    """Official frame-keyed schema: integer ids, face box + lip box."""
    missing = missing or {}
    out = {}
    for i in range(n_frames):
        ents = []
        for s, (cx, cy) in CENTRES.items():
            if i in set(missing.get(s, ())):
                continue
            lip = [cx - BOX_W / 2, cy - BOX_H / 2, cx + BOX_W / 2, cy + BOX_H / 2]
            ents.append({"id": int(s), "x1": cx - 30, "y1": cy - 40, "x2": cx + 30, "y2": cy + 20,
                         "lip": lip})
        if ents:
            out[str(i)] = ents
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out))


def test_run_sh_official_layout(tmp_path):
    root, seconds = tmp_path / "misp", 4.0
    n = int(seconds * FPS)
    write_wavs(root, "train", SESSION, seconds)
    write_mp4(root / "video" / "train" / "far" / f"{SESSION}_Far.mp4", n)
    write_official_lip_json(root / "roi_coordinates" / "train" / "far" / "lip" / f"{SESSION}_Far.json",
                            n, missing={"002": range(50, 100)})
    tg = {"001": [(0.0, 0.2, ""), (0.2, 1.0, "你好，世界！"), (1.0, 1.6, "<NOISE>"),
                  (1.6, 2.8, "今天"), (2.8, 4.0, "")],
          "002": [(0.0, 0.5, ""), (0.5, 1.9, "天气好"), (1.9, 2.4, ""), (2.4, 3.6, "人民"),
                  (3.6, 4.0, "")]}
    tdir = root / "transcription" / "train"
    tdir.mkdir(parents=True)
    for k, (spk, iv) in enumerate(tg.items()):
        (tdir / f"{SESSION}_Near_{spk}.TextGrid").write_bytes(
            (b"\xef\xbb\xbf" if k == 0 else b"") + official_textgrid(iv, seconds).encode("utf-8"))
    exp, data = tmp_path / "exp", tmp_path / "data"
    p = subprocess.run(["bash", "./run.sh", "--stage", "1", "--stop_stage", "2", "--nj", "1",
                        "--splits", "train", "--misp_root", str(root), "--exp_dir", str(exp),
                        "--data_dir", str(data)],
                       cwd=RECIPE, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "roi_coordinates/train/far/lip" in p.stdout + p.stderr
    dd_all = read_datadir(data / "train_all")
    # official ids (the default --text_norm): boundaries snapped outward to the 40 ms grid by
    # the official float64 expression, e.g. 0.5-1.9 s -> 0.48-1.92 s, 2.4-3.6 s -> 2.36-3.64 s
    assert sorted(dd_all.utts) == [f"S001_{SESSION}_000020-000100", f"S001_{SESSION}_000160-000280",
                                   f"S002_{SESSION}_000048-000192", f"S002_{SESSION}_000236-000364"]
    assert dd_all.segments[f"S002_{SESSION}_000048-000192"].start == 0.48
    assert validate_datadir(data / "train", require_video=True, require_roi=True).ok
    dd = read_datadir(data / "train")
    # speaker 002 has no lip box in frames 50..99: its 2.36-3.64 s segment is skipped
    assert sorted(dd.roi) == [f"S001_{SESSION}_000020-000100", f"S001_{SESSION}_000160-000280",
                              f"S002_{SESSION}_000048-000192"]
    roi, det = load_roi(dd.roi[f"S001_{SESSION}_000160-000280"])  # frames 40..69
    assert roi.shape == (30, 96, 96) and det.all()
    for k in (0, 29):
        assert abs(int(roi[k, 48, 48]) - patch_value("001", 40 + k)) <= 3


def test_run_sh_bad_lip_json_skips_only_its_session(tmp_path):
    """A lip-box file that fits no form is reported with its path; its session's segments are skipped
    and the other session goes on (stage 2), in the release layout."""
    root, seconds = tmp_path / "misp", 2.0
    n = int(seconds * FPS)
    other = SESSION.replace("_I0", "_I1") if SESSION.endswith("_I0") else SESSION + "x"
    tdir = root / "transcription" / "train"
    tdir.mkdir(parents=True)
    for sess in (SESSION, other):
        write_wavs(root, "train", sess, seconds)
        write_mp4(root / "video" / "train" / "far" / f"{sess}_Far.mp4", n)
        (tdir / f"{sess}_Near_001.TextGrid").write_text(
            official_textgrid([(0.0, 0.2, ""), (0.2, 1.6, "你好"), (1.6, 2.0, "")], seconds), encoding="utf-8")
    lip = root / "roi_coordinates" / "train" / "far" / "lip"
    write_official_lip_json(lip / f"{SESSION}_Far.json", n)
    bad = lip / f"{other}_Far.json"
    bad.write_text('{"0": [{"id": "x", "lip": "nope"}]}')
    exp, data = tmp_path / "exp", tmp_path / "data"
    p = subprocess.run(["bash", "./run.sh", "--stage", "1", "--stop_stage", "2", "--nj", "1",
                        "--splits", "train", "--misp_root", str(root), "--exp_dir", str(exp),
                        "--data_dir", str(data)],
                       cwd=RECIPE, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    log = p.stdout + p.stderr + (exp / "logs" / "stage2_rois.log").read_text()
    assert str(bad) in log
    dd = read_datadir(data / "train")
    assert dd.roi and all(SESSION in u for u in dd.roi)           # the good session's ROIs are there
    skipped = (data / "train" / "skipped").read_text()
    assert other in skipped


def test_run_sh_set_without_lip_boxes_runs_the_detector(tmp_path):
    """A set with neither roi_coordinates/ nor detection/: stage 2 runs avsr detect_lips on its far videos
    (lip boxes in the frame-keyed form under data/lip_detect/<set>) and reads them like released ones; with
    --eval_segments every segment stays (audio-only when no face is found)."""
    root, seconds = tmp_path / "misp", 2.0
    n = int(seconds * FPS)
    write_wavs(root, "eval", SESSION, seconds)
    write_mp4(root / "video" / "eval" / "far" / f"{SESSION}_Far.mp4", n)
    seg = tmp_path / "eval_segments.txt"
    seg.write_text(f"S001_{SESSION}_000020-000160 S001 {SESSION}_Far 0.20 1.60\n")
    exp, data = tmp_path / "exp", tmp_path / "data"
    p = subprocess.run(["bash", "./run.sh", "--stage", "1", "--stop_stage", "2", "--nj", "1",
                        "--splits", "eval", "--misp_root", str(root), "--exp_dir", str(exp),
                        "--data_dir", str(data), "--eval_segments", str(seg)],
                       cwd=RECIPE, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    log = p.stdout + p.stderr
    assert "running the haar face detector" in log
    rep = json.loads((data / "lip_detect" / "eval" / "detect_report.json").read_text())
    assert f"{SESSION}_Far" in rep["recordings"]
    dd = read_datadir(data / "eval")
    assert sorted(dd.utts) == [f"S001_{SESSION}_000020-000160"]       # kept, whatever the detector found
