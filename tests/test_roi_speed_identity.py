"""The fast decode paths give the same pixels as the earlier whole-frame path: gray frames
(luma table), region conversion (gray and RGB), crop-while-decoding ROIs in both crop modes, and
prepare_pair's streaming path (detection JSON, including a video with dropped frames, and the
offline detector).  No speed is asserted here (scripts/bench_roi.py measures it)."""
import fractions
import json

import av
import numpy as np
import pytest

from frontends.roi import crop_roi, crop_video_rois, crop_window, to_gray
from frontends.video import iter_video, iter_video_regions, read_video

W, H, FPS = 160, 120, 25


def _colour_clip(path, n=40, drop=(), pix_fmt="yuv420p"):
    """A colourful moving h264 clip (chroma varies per pixel, so RGB conversion is exercised);
    frames in ``drop`` are left out (a timestamp gap: slots without a real frame)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:H, 0:W]
    c = av.open(str(path), "w")
    s = c.add_stream("libx264", rate=FPS)
    s.width, s.height, s.pix_fmt = W, H, pix_fmt
    s.options = {"crf": "18"}
    for i in range(n):
        if i in drop:
            continue
        img = np.stack([(xx * 2 + i * 3) % 256, (yy * 3 + i * 5) % 256, (xx + yy + i * 7) % 256], -1)
        img = np.clip(img + rng.normal(0, 20, img.shape), 0, 255).astype(np.uint8)
        f = av.VideoFrame.from_ndarray(img, format="rgb24")
        f.pts, f.time_base = i, fractions.Fraction(1, FPS)
        for pk in s.encode(f):
            c.mux(pk)
    for pk in s.encode():
        c.mux(pk)
    c.close()
    return str(path)


def _boxes(n):
    t = np.arange(n)
    cx, cy = 80 + 30 * np.sin(t / 5), 60 + 10 * np.cos(t / 7)
    w = 30 + 25 * (t % 3)                                   # some boxes > 96 px side after margin: resized
    b = np.stack([cx - w / 2, cy - w / 4, cx + w / 2, cy + w / 4], 1)
    b[3] = [-40, -30, 10, 5]                                # partly outside the frame
    b[4] = [150, 100, 200, 140]
    b[5] = [-300, -300, -250, -260]                         # wholly outside
    return b


@pytest.mark.parametrize("pix_fmt", ["yuv420p", "yuv444p"])
def test_fast_gray_and_regions_equal_whole_frame(tmp_path, pix_fmt):
    v = _colour_clip(tmp_path / "c.mp4", pix_fmt=pix_fmt)
    for gray in (True, False):
        old = read_video(v, gray=gray, fast=False).frames
        new = read_video(v, gray=gray, fast=True).frames
        assert np.array_equal(old, new)
        rng = np.random.default_rng(1)
        wins = {}

        def region(i, h, w):
            r0, c0 = int(rng.integers(0, h - 1)), int(rng.integers(0, w - 1))
            wins[i] = (r0, int(rng.integers(r0 + 1, h + 1)), c0, int(rng.integers(c0 + 1, w + 1)))
            return wins[i]
        n = 0
        for i, patch, _p in iter_video_regions(v, region, gray=gray):
            r0, r1, c0, c1 = wins[i]
            assert np.array_equal(patch, old[i, r0:r1, c0:c1]), (gray, i, wins[i])
            n += 1
        assert n == len(old)


@pytest.mark.parametrize("mode", ["official", "toolkit"])
def test_crop_while_decoding_equals_crop_of_whole_frames(tmp_path, mode):
    v = _colour_clip(tmp_path / "c.mp4")
    boxes = _boxes(40)
    frames = read_video(v, gray=mode == "toolkit", fast=False).frames
    ref = np.stack([crop_roi(f, b, 96, mode) for f, b in zip(frames, boxes)])
    if mode == "official":
        ref = to_gray(ref)
    for fast in (True, False):
        roi, cropped, present = crop_video_rois(v, boxes, 96, mode, fast=fast)
        assert cropped.all() and present.all()
        assert np.array_equal(roi, ref), (mode, fast)
    # a region that covers the crop window gives the same crop
    f, b = frames[7], boxes[7]
    r0, r1, c0, c1 = crop_window(b, H, W, 96, mode)
    part = crop_roi(f[r0:r1, c0:c1], b, 96, mode, origin=(r0, c0), frame_shape=(H, W))
    assert np.array_equal(part, crop_roi(f, b, 96, mode))
    with pytest.raises(ValueError):
        crop_roi(f[r0 + 1:r1, c0:c1], b, 96, mode, origin=(r0 + 1, c0), frame_shape=(H, W))


@pytest.mark.parametrize("crop", ["official", "toolkit"])
def test_prepare_pair_stream_equals_hold(tmp_path, crop):
    from frontends.pairs import prepare_pair
    # frames 12..17 missing: the streamed first pass assumed every slot present and must redo neighbours
    v = _colour_clip(tmp_path / "gap.mp4", n=50, drop=set(range(12, 18)))
    det = tmp_path / "det.json"
    b = _boxes(50)
    b[20:26] = np.nan                                        # missing detections next to the gap
    from frontends.lip_boxes import SpeakerTrack, write_detections
    ok = np.isfinite(b).all(1)
    b[ok] = np.round(b[ok], 1)
    write_detections(str(det), video=v, fps=FPS, num_frames=50, width=W, height=H,
                     speakers={"001": SpeakerTrack(frames=np.flatnonzero(ok), boxes=b[ok])})
    a = prepare_pair(None, v, detection=str(det), crop=crop, stream=False, need_audio=False)
    s = prepare_pair(None, v, detection=str(det), crop=crop, stream=True, need_audio=False)
    assert not read_video(v).present.all()
    assert a.roi is not None and np.array_equal(a.roi, s.roi)
    assert np.array_equal(a.detected, s.detected) and a.warnings == s.warnings
    assert any("missing on the 25 fps grid" in w for w in s.warnings)


@pytest.mark.parametrize("stream", [True, False])
def test_a_detection_file_that_is_not_this_videos_is_named_in_a_warning(tmp_path, stream):
    """Detections running far past the video's end, or boxes outside its frame, warn (naming the file);
    this video's own file does not."""
    from frontends.lip_boxes import SpeakerTrack, write_detections
    from frontends.pairs import prepare_pair
    v = _colour_clip(tmp_path / "c.mp4", n=50)

    def det(name, boxes):
        p = tmp_path / name
        write_detections(str(p), video=v, fps=FPS, num_frames=len(boxes), width=W, height=H,
                         speakers={"001": SpeakerTrack(frames=np.arange(len(boxes)), boxes=np.round(boxes, 1))})
        return str(p)
    own = det("own.json", _boxes(50))
    long = det("long.json", np.concatenate([_boxes(50)] * 4))           # 200 frames: 8 s for a 2 s video
    off = _boxes(50)
    off[:, [0, 2]] += 10 * W                                          # every box right of the frame
    off = det("off.json", off)
    warn = {k: prepare_pair(None, v, detection=p, stream=stream, need_audio=False, video_type="full").warnings
            for k, p in (("own", own), ("long", long), ("off", off))}
    roi = prepare_pair(None, v, detection=own, stream=stream, need_audio=False).warnings   # 160x120: an ROI video
    assert any(w.startswith(f"{own}: not used: {v} is taken as a lip-ROI video") for w in roi), roi
    assert not any("detection file" in w for w in warn["own"]), warn["own"]
    assert any(w.startswith(f"{long}: detections run to 8.0 s but the video is 2.0 s") for w in warn["long"]), warn
    assert any(w.startswith(f"{off}: 100 % of its lip boxes lie outside the {W}x{H} frame") for w in warn["off"]), warn
