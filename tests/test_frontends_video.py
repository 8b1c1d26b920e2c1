"""frontends.video: timestamp-based decoding onto the 25 fps grid, present mask, bad input.

Every test video encodes its frame index k in the picture (left half = 16 * (k // 16),
right half = 16 * (k % 16)), so which source frame landed in which grid slot can be
read back from the decoded pixels.
"""
import fractions
import math
import shutil
import subprocess

import av
import numpy as np
import pytest

from frontends.errors import MediaError
from frontends.video import VideoClip, iter_video, read_video, video_info

W, H = 64, 48
GRID = 25.0

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg binary not installed")


def index_image(k: int) -> np.ndarray:
    a = np.empty((H, W), np.uint8)
    a[:, : W // 2] = 16 * (k // 16)
    a[:, W // 2:] = 16 * (k % 16)
    return a


def read_index(a: np.ndarray) -> int:
    left = a[4:-4, 4: W // 2 - 4].mean()
    right = a[4:-4, W // 2 + 4: -4].mean()
    return int(round(left / 16)) * 16 + int(round(right / 16))


def ffmpeg(*args, data=None):
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *args], input=data, check=True,
                   stdout=subprocess.DEVNULL)


def encode_cfr(path, n, rate, codec="libx264", extra=()):
    """n index frames at constant ``rate`` (ffmpeg string, e.g. '30000/1001') via ffmpeg."""
    raw = b"".join(index_image(k).tobytes() for k in range(n))
    quality = ["-crf", "12"] if codec == "libx264" else ["-q:v", "2"]
    ffmpeg("-f", "rawvideo", "-pix_fmt", "gray", "-s", f"{W}x{H}", "-r", rate, "-i", "-",
           "-c:v", codec, *quality, "-g", "15", "-pix_fmt", "yuv420p", *extra, str(path), data=raw)
    return path


def encode_vfr(path, pts_ms):
    """Index frames at explicit presentation times (milliseconds) with PyAV."""
    tb = fractions.Fraction(1, 1000)
    c = av.open(str(path), "w")
    s = c.add_stream("libx264", rate=30)
    s.width, s.height, s.pix_fmt = W, H, "yuv420p"
    s.time_base = tb
    s.codec_context.time_base = tb
    s.options = {"crf": "12"}
    for k, p in enumerate(pts_ms):
        f = av.VideoFrame.from_ndarray(index_image(k), format="gray")
        f.pts, f.time_base = int(p), tb
        for pk in s.encode(f):
            c.mux(pk)
    for pk in s.encode():
        c.mux(pk)
    c.close()
    return path


def nearest(src_times, fps=GRID, n=None, start=0.0):
    """Expected source frame per grid slot (nearest timestamp; ties -> earlier)."""
    src = np.asarray(src_times, dtype=np.float64)
    slots = start + np.arange(n) / fps
    d = np.abs(slots[:, None] - src[None, :])
    return np.argmin(d + 1e-9 * np.arange(len(src))[None, :], axis=1)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("video")
    m = {
        "30": encode_cfr(d / "v30.mp4", 60, "30"),
        "2997": encode_cfr(d / "v2997_mpeg4.mp4", 60, "30000/1001", codec="mpeg4"),
        "24": encode_cfr(d / "v24.mp4", 48, "24"),
        "30long": encode_cfr(d / "v30long.mp4", 90, "30", extra=("-movflags", "+faststart")),
    }
    # VFR: 30 fps until 1.0 s, nothing until 1.51 s, then 30 fps again
    pts = [round(k * 1000 / 30) for k in range(31)] + [1510 + round(k * 1000 / 30) for k in range(15)]
    m["vfr"] = encode_vfr(d / "vfr.mp4", pts)
    m["vfr_pts"] = np.array(pts) / 1000.0
    # 25 fps with the frame at 0.40 s dropped
    m["drop_pts"] = np.array([k * 40 for k in range(25) if k != 10]) / 1000.0
    m["drop"] = encode_vfr(d / "drop25.mp4", m["drop_pts"] * 1000)
    return m


@pytest.mark.parametrize("key,n_src,src_fps", [("30", 60, 30.0), ("2997", 60, 30000 / 1001),
                                                 ("24", 48, 24.0)])
def test_cfr_resampled_to_grid_by_timestamp(media, key, n_src, src_fps):
    clip = read_video(media[key])
    assert isinstance(clip, VideoClip)
    duration = n_src / src_fps
    T = int(math.floor(duration * GRID + 0.5))
    assert clip.frames.shape == (T, H, W) and clip.frames.dtype == np.uint8
    assert clip.present.dtype == bool and clip.present.shape == (T,)
    assert clip.present.all()  # plain rate conversion: every slot has a real frame nearby
    assert clip.fps == GRID and clip.source_fps == pytest.approx(src_fps, rel=1e-3)
    got = [read_index(f) for f in clip.frames]
    want = nearest(np.arange(n_src) / src_fps, n=T)
    assert got == want.tolist()
    if key == "24":  # up-sampling keeps every frame and repeats one per second
        assert sorted(set(got)) == list(range(48)) and len(got) - len(set(got)) == 2
    else:  # down-sampling drops 1 of 6 frames
        assert len(set(got)) == 50


def test_vfr_gap_marks_absent_slots(media):
    clip = read_video(media["vfr"])
    info = video_info(media["vfr"])
    T = int(math.floor(info["duration"] * GRID + 0.5))
    assert len(clip) == T == 50
    # frames up to 1.0 s and from 1.51 s; slots 1.04 .. 1.48 s fall in the gap
    assert clip.present[:26].all()
    assert not clip.present[26:38].any()
    assert clip.present[38:].all()
    got = [read_index(f) for f in clip.frames]
    assert got == nearest(media["vfr_pts"], n=T).tolist()
    assert got[26:32] == [30] * 6 and got[32:38] == [31] * 6  # gap slots repeat the nearest frame


def test_dropped_frame_at_25fps(media):
    clip = read_video(media["drop"])
    assert len(clip) == 25
    assert clip.present.tolist() == [k != 10 for k in range(25)]
    got = [read_index(f) for f in clip.frames]
    assert got == nearest(media["drop_pts"], n=25).tolist()
    assert got[:10] == list(range(10)) and got[11:] == list(range(10, 24))  # index k -> frame k


def test_iter_video_matches_read_video_and_streams(media):
    clip = read_video(media["vfr"], gray=True)
    it = iter_video(media["vfr"])
    assert iter(it) is it and not isinstance(it, (list, tuple))
    items = list(it)
    assert [i for i, _, _ in items] == list(range(len(clip)))
    assert np.array_equal(np.stack([f for _, f, _ in items]), clip.frames)
    assert np.array_equal(np.array([p for _, _, p in items]), clip.present)
    # early break closes cleanly; frames are independent arrays
    seen = []
    for i, f, _p in iter_video(media["24"]):
        f[:] = 0
        seen.append(i)
        if i == 5:
            break
    assert seen == list(range(6))


def test_rgb_output(media):
    clip = read_video(media["30"], gray=False, end=0.4)
    assert clip.frames.shape == (10, H, W, 3) and clip.frames.dtype == np.uint8
    gray = read_video(media["30"], gray=True, end=0.4).frames
    assert np.abs(clip.frames.astype(int).mean(-1) - gray).mean() < 3


def test_segments_and_seek(media):
    full = read_video(media["30long"])
    assert len(full) == 75
    seg = read_video(media["30long"], start=0.4, end=1.2)  # no seek
    assert len(seg) == 20 and np.array_equal(seg.frames, full.frames[10:30])
    seg = read_video(media["30long"], start=1.6, end=2.4)  # seeks (start > 1 s)
    assert len(seg) == 20 and seg.present.all() and seg.start == 1.6
    assert [read_index(f) for f in seg.frames] == [read_index(f) for f in full.frames[40:60]]
    tail = read_video(media["30long"], start=2.6)
    assert len(tail) == 10 and np.array_equal(tail.frames, full.frames[65:])
    assert np.allclose(tail.times, 2.6 + np.arange(10) / 25)
    with pytest.raises(MediaError, match=r"shorter than requested segment \(3\.000 s < 3\.500 s\)"):
        read_video(media["30long"], start=2.0, end=3.5)
    with pytest.raises(ValueError):
        read_video(media["30long"], start=1.0, end=0.5)


def test_video_info(media):
    info = video_info(media["2997"])
    assert set(info) == {"duration", "fps", "width", "height", "num_frames", "codec"}
    assert info["fps"] == pytest.approx(29.97, abs=0.01)
    assert info["duration"] == pytest.approx(60 / (30000 / 1001), abs=1e-3)
    assert (info["width"], info["height"], info["num_frames"], info["codec"]) == (W, H, 60, "mpeg4")
    assert video_info(media["30"])["codec"] == "h264"


def _raises_naming(path, fn, match=None):
    with pytest.raises(MediaError) as ei:
        fn(path)
    assert path.name in str(ei.value) and str(ei.value).startswith(str(path))
    if match:
        assert match in ei.value.reason, ei.value.reason
    return ei.value


@pytest.mark.parametrize("fn", [read_video, video_info, iter_video])
def test_bad_input_basic(tmp_path, fn):
    _raises_naming(tmp_path / "missing_clip.mp4", fn, "not found")
    empty = tmp_path / "empty_clip.mp4"
    empty.write_bytes(b"")
    _raises_naming(empty, fn, "0 bytes")
    txt = tmp_path / "notes_clip.mp4"
    txt.write_text("this is not a video\n" * 50)
    _raises_naming(txt, fn, "not a readable media file")


def test_bad_input_audio_only_and_truncated(media, tmp_path):
    audio = tmp_path / "audio_only.mp4"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac", str(audio))
    for fn in (read_video, video_info, iter_video):
        _raises_naming(audio, fn, "no video stream")
    # moov at the end (ffmpeg default): cutting the file loses the index
    data = media["30"].read_bytes()
    cut = tmp_path / "cut_default.mp4"
    cut.write_bytes(data[: len(data) // 2])
    _raises_naming(cut, read_video)
    # moov first (+faststart): the header survives and the media data ends early
    data = media["30long"].read_bytes()
    cut2 = tmp_path / "cut_faststart.mp4"
    cut2.write_bytes(data[: len(data) * 7 // 10])
    e = _raises_naming(cut2, read_video, "truncated")
    assert "t=" in e.reason
    # iter_video yields the intact part, then raises
    got = []
    with pytest.raises(MediaError, match="truncated"):
        for i, _f, _p in iter_video(cut2):
            got.append(i)
    assert 5 <= len(got) < 75 and got == list(range(len(got)))
    # a segment entirely before the damage is still readable (decoding stops at `end`)
    ok = read_video(cut2, end=len(got) / 25)
    want = nearest(np.arange(90) / 30, n=len(got)).tolist()
    assert len(ok) == len(got) and [read_index(f) for f in ok.frames] == want
    # half the bytes: still a MediaError naming the file
    cut3 = tmp_path / "cut_half.mp4"
    cut3.write_bytes(data[: len(data) // 2])
    _raises_naming(cut3, read_video, "truncated")
