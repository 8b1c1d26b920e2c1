"""avsr.data.datadir: Kaldi-style data dirs (read/write round trip, validation, atomic writes)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from avsr.data.datadir import (DataDir, DataDirError, Segment, filter_datadir,  # noqa: E402
                               read_datadir, validate_datadir, write_datadir)


def write_wav(path: Path, seconds: float, sr: int = 16000) -> str:
    import soundfile as sf
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.zeros(int(seconds * sr), np.int16), sr, subtype="PCM_16")
    return str(path)


def write_mp4(path: Path, n_frames: int, fps: int = 25) -> str:
    import av
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        st = c.add_stream("libx264", rate=fps)
        st.width, st.height, st.pix_fmt = 64, 48, "yuv420p"
        st.options = {"preset": "ultrafast"}
        for i in range(n_frames):
            img = np.full((48, 64, 3), (i * 9) % 256, np.uint8)
            for p in st.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in st.encode():
            c.mux(p)
    return str(path)


@pytest.fixture()
def media(tmp_path):
    return {"wav": write_wav(tmp_path / "m" / "a.wav", 4.0),
            "mp4": write_mp4(tmp_path / "m" / "a.mp4", 50)}  # 2.0 s of video


def sample(media) -> DataDir:
    dd = DataDir()
    dd.wav = {"recA": media["wav"]}
    dd.video = {"recA": media["mp4"]}
    for utt, spk, s, e, t in [("S002_recA_000050-000100", "S002", 0.5, 1.0, "你好"),
                              ("S001_recA_000010-000120", "S001", 0.1, 1.2, "世界 ABC"),
                              ("S001_recA_000130-000190", "S001", 1.3, 1.9, "中国")]:
        dd.segments[utt] = Segment("recA", s, e)
        dd.text[utt] = t
        dd.utt2spk[utt] = spk
    return dd


def test_round_trip_sorted(tmp_path, media):
    out = tmp_path / "d"
    write_datadir(sample(media), out)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["segments", "spk2utt", "text", "utt2spk", "video.scp", "wav.scp"]
    for n in names:
        keys = [line.split()[0] for line in (out / n).read_text(encoding="utf-8").splitlines()]
        assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert (out / "spk2utt").read_text().splitlines() == [
        "S001 S001_recA_000010-000120 S001_recA_000130-000190", "S002 S002_recA_000050-000100"]
    assert (out / "segments").read_text().splitlines()[0] == "S001_recA_000010-000120 recA 0.10 1.20"
    dd = read_datadir(out)
    assert dd.text["S001_recA_000010-000120"] == "世界 ABC"
    assert dd.segments["S002_recA_000050-000100"] == Segment("recA", 0.5, 1.0)
    assert dd.utts == sorted(sample(media).utt2spk)
    res = validate_datadir(out, require_video=True)
    assert res.ok, res.report()


def _write_raw(d: Path, files: dict) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for name, lines in files.items():
        (d / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return d


def _good_files(media) -> dict:
    return {
        "wav.scp": [f"recA {media['wav']}"],
        "video.scp": [f"recA {media['mp4']}"],
        "segments": ["S001_u1 recA 0.10 0.50", "S001_u2 recA 0.60 0.90", "S002_u3 recA 1.00 1.50"],
        "text": ["S001_u1 一", "S001_u2 二", "S002_u3 三"],
        "utt2spk": ["S001_u1 S001", "S001_u2 S001", "S002_u3 S002"],
        "spk2utt": ["S001 S001_u1 S001_u2", "S002 S002_u3"],
    }


def test_validate_good(tmp_path, media):
    res = validate_datadir(_write_raw(tmp_path / "d", _good_files(media)), require_video=True)
    assert res.ok, res.report()


@pytest.mark.parametrize("case,expect", [
    ("unsorted", "text: not sorted"),
    ("duplicate", "utt2spk: duplicate ids: S001_u2"),
    ("missing_text", "text: no text for 1 utterance(s), e.g. S002_u3"),
    ("missing_wav", "wav.scp: no audio for 1 recording(s), e.g. recB"),
    ("missing_video", "video.scp: no video for 1 recording(s), e.g. recB"),
    ("spk2utt", "spk2utt: does not match utt2spk"),
    ("prefix", "not sorted the same by speaker"),
    ("empty_text", "empty text for 1 utterance(s)"),
    ("bad_times", "bad times for 'S001_u1'"),
    ("missing_file", "spk2utt: missing"),
])
def test_validate_catches(tmp_path, media, case, expect):
    f = _good_files(media)
    if case == "unsorted":
        f["text"] = [f["text"][1], f["text"][0], f["text"][2]]
    elif case == "duplicate":
        f["utt2spk"].insert(2, "S001_u2 S001")
    elif case == "missing_text":
        f["text"] = f["text"][:2]
    elif case in ("missing_wav", "missing_video"):
        f["segments"][2] = "S002_u3 recB 1.00 1.50"
        if case == "missing_wav":
            f["video.scp"].append(f"recB {media['mp4']}")
        else:
            f["wav.scp"].append(f"recB {media['wav']}")
    elif case == "spk2utt":
        f["spk2utt"] = ["S001 S001_u1", "S002 S002_u3"]
    elif case == "prefix":  # speaker ids that are not prefixes of the utterance ids
        f["utt2spk"] = ["S001_u1 B", "S001_u2 A", "S002_u3 A"]
        f["spk2utt"] = ["A S001_u2 S002_u3", "B S001_u1"]
    elif case == "empty_text":
        f["text"][1] = "S001_u2"
    elif case == "bad_times":
        f["segments"][0] = "S001_u1 recA 0.50 0.10"
    elif case == "missing_file":
        del f["spk2utt"]
    res = validate_datadir(_write_raw(tmp_path / "d", f), require_video=True)
    assert not res.ok
    assert any(expect in e for e in res.errors), res.errors


def test_validate_media(tmp_path, media):
    f = _good_files(media)
    f["segments"][2] = "S002_u3 recA 1.00 2.50"  # video is 2.0 s, wav 4.0 s
    res = validate_datadir(_write_raw(tmp_path / "a", f))
    assert not res.errors and list(res.bad_segments) == ["S002_u3"]
    assert "after the end of the video (2.00 s)" in res.bad_segments["S002_u3"]
    f["segments"][2] = "S002_u3 recA 1.00 2.01"  # inside the 20 ms tolerance
    assert validate_datadir(_write_raw(tmp_path / "b", f)).ok
    f["segments"][2] = "S002_u3 recA 1.00 4.50"
    res = validate_datadir(_write_raw(tmp_path / "c", f))
    assert "after the end of the audio (4.00 s)" in res.bad_segments["S002_u3"]
    os.unlink(media["wav"])
    res = validate_datadir(_write_raw(tmp_path / "d", _good_files(media)))
    assert res.media_errors == {media["wav"]: "audio file not found"}
    assert validate_datadir(tmp_path / "d", check_media=False).ok


def test_write_is_atomic(tmp_path, media):
    out = tmp_path / "d"
    write_datadir(sample(media), out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    bad = sample(media)
    bad.text.pop("S002_recA_000050-000100")  # an utterance without text
    with pytest.raises(DataDirError, match="no text for 1 utterance"):
        write_datadir(bad, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "m"]  # no temp dirs left
    with pytest.raises(DataDirError, match="invalid id"):
        dd = sample(media)
        dd.text["bad id"] = "x"
        write_datadir(dd, tmp_path / "e")
    assert not (tmp_path / "e").exists()


def test_read_rejects_duplicates(tmp_path, media):
    f = _good_files(media)
    f["text"].append("S002_u3 again")
    with pytest.raises(DataDirError, match="duplicate id 'S002_u3'"):
        read_datadir(_write_raw(tmp_path / "d", f))


def test_filter_and_extra_tables(tmp_path, media):
    src = tmp_path / "src"
    dd = sample(media)
    dd.extra["utt2num_roi_frames"] = {u: "10" for u in dd.utt2spk}
    dd.roi = {u: f"/x/{u}.npz" for u in dd.utt2spk}
    write_datadir(dd, src)
    sub = filter_datadir(src, tmp_path / "dst", ["S001_recA_000010-000120"],
                         extra_files={"skipped": "utt\tS002_recA_000050-000100\tno ROI\n"})
    assert sub.utts == ["S001_recA_000010-000120"]
    back = read_datadir(tmp_path / "dst")
    assert back.extra["utt2num_roi_frames"] == {"S001_recA_000010-000120": "10"}
    assert list(back.roi) == ["S001_recA_000010-000120"] and back.wav == dd.wav
    assert (tmp_path / "dst" / "skipped").read_text().startswith("utt\t")
    assert validate_datadir(tmp_path / "dst", require_roi=True, check_media=False).ok


def test_cli_validate(tmp_path, media):
    d = _write_raw(tmp_path / "d", _good_files(media))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    p = subprocess.run([sys.executable, "-m", "avsr.bin.datadir", "validate", str(d)],
                       capture_output=True, text=True, env=env)
    assert p.returncode == 0 and "OK" in p.stdout
    (d / "text").write_text("S001_u2 二\nS001_u1 一\nS002_u3 三\n", encoding="utf-8")
    p = subprocess.run([sys.executable, "-m", "avsr.bin.datadir", "validate", str(d)],
                       capture_output=True, text=True, env=env)
    assert p.returncode == 1 and "not sorted" in p.stderr
