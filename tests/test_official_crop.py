"""The official lip crop (frontends.roi, mode="official", the default) against the MISP2022 baseline's
rule written out here by hand (mispchallenge/misp2022_baseline track2_AVDR/local/segment_video_roi.py,
crop_frame_roi): side L = max(h, w, 96) native pixels around the box, int()-truncated ends, clipped
to the frame, INTER_AREA to 96x96 only when the window is not 96x96; the baseline's gray weights;
its interpolation (int64 truncation); and the ROI job's wiring (RGB frame -> crop -> gray)."""
from __future__ import annotations

import json
import math

import av
import cv2
import numpy as np
import pytest

from frontends.roi import (DEFAULT_CROP, GRAY_WEIGHTS, crop_roi, crop_rois, interpolate_boxes,
                           official_window, to_gray)

ROI = 96


def frame(h=360, w=640, c=None, seed=0):
    """Random pixels: any resampling or off-by-one shows up."""
    shape = (h, w) if c is None else (h, w, c)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def rule(img, box):
    """The baseline's rule, spelled out (box = x1, y1, x2, y2; rows from y, columns from x)."""
    x1, y1, x2, y2 = box
    L = max(y2 - y1, x2 - x1, ROI)
    r0 = max(int(y1 - (L - (y2 - y1)) / 2), 0)
    r1 = min(int(y2 + (L - (y2 - y1)) / 2), img.shape[0])
    c0 = max(int(x1 - (L - (x2 - x1)) / 2), 0)
    c1 = min(int(x2 + (L - (x2 - x1)) / 2), img.shape[1])
    win = img[r0:r1, c0:c1]
    if win.shape[:2] != (ROI, ROI):
        win = cv2.resize(win, (ROI, ROI), interpolation=cv2.INTER_AREA)
    return win


def test_default_is_official():
    assert DEFAULT_CROP == "official"
    img = frame()
    box = (300, 200, 330, 220)
    assert np.array_equal(crop_roi(img, box), crop_roi(img, box, mode="official"))
    assert not np.array_equal(crop_roi(img, box), crop_roi(img, box, mode="toolkit"))


def test_small_box_gives_native_96_pixels():
    img = frame()
    box = (140, 100, 170, 120)                       # 30 x 20 px < 96: no resize at all
    assert official_window(box, *img.shape) == (62, 158, 107, 203)   # 100 - 38 .. 120 + 38, 140 - 33 .. 170 + 33
    out = crop_roi(img, box)
    assert out.shape == (ROI, ROI) and out.dtype == np.uint8
    assert np.array_equal(out, img[62:158, 107:203])                 # the native pixels, untouched
    assert np.array_equal(out, rule(img, box))
    odd = (140, 100, 169, 121)                       # odd extensions (33.5, 37.5): int() truncation
    assert official_window(odd, *img.shape) == (62, 158, 106, 202)
    assert np.array_equal(crop_roi(img, odd), img[62:158, 106:202])


def test_big_box_150x120_is_shrunk_with_inter_area():
    img = frame()
    box = (100, 80, 250, 200)                        # w 150, h 120 -> a 150 px square
    assert official_window(box, *img.shape) == (65, 215, 100, 250)
    want = cv2.resize(img[65:215, 100:250], (ROI, ROI), interpolation=cv2.INTER_AREA)
    out = crop_roi(img, box)
    assert np.array_equal(out, want) and np.array_equal(out, rule(img, box))
    lin = cv2.resize(img[65:215, 100:250], (ROI, ROI), interpolation=cv2.INTER_LINEAR)
    assert not np.array_equal(out, lin)              # the interpolation is INTER_AREA, not another


def test_box_at_the_frame_edge_is_clipped_then_resized():
    img = frame()
    box = (600, 300, 630, 340)                       # L = 96: columns 567..663, rows 272..368
    assert official_window(box, *img.shape) == (272, 360, 567, 640)  # clipped: 88 x 73, no padding
    want = cv2.resize(img[272:360, 567:640], (ROI, ROI), interpolation=cv2.INTER_AREA)
    assert np.array_equal(crop_roi(img, box), want) and np.array_equal(crop_roi(img, box), rule(img, box))
    corner = (-10, -5, 20, 15)                       # top-left corner: starts clipped at 0
    assert official_window(corner, *img.shape) == (0, 53, 0, 53)
    assert np.array_equal(crop_roi(img, corner), rule(img, corner))
    # wholly outside (the baseline fails there): the one-pixel strip at the nearest edge
    assert official_window((700, 400, 720, 420), *img.shape) == (359, 360, 639, 640)
    assert np.all(crop_roi(img, (700, 400, 720, 420)) == img[359, 639])


def test_colour_frames_and_gray_weights():
    rgb = frame(c=3, seed=1)
    for box in [(140, 100, 170, 120), (100, 80, 250, 200), (600, 300, 630, 340)]:
        c = crop_roi(rgb, box)
        assert c.shape == (ROI, ROI, 3) and np.array_equal(c, rule(rgb, box))
        f = c.astype(np.float64) @ np.array(GRAY_WEIGHTS)             # the baseline's float gray
        g = to_gray(c)
        assert g.dtype == np.uint8 and np.abs(g - f).max() <= 0.5 + 1e-9
    assert GRAY_WEIGHTS == (0.299, 0.587, 0.114)
    px = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]]], dtype=np.uint8)
    assert to_gray(px).tolist() == [[76, 150, 29, 18]]   # 76.245, 149.685, 29.07, 18.15 (R first)
    with pytest.raises(ValueError):
        to_gray(np.zeros((4, 4), np.uint8))


def test_crop_rois_official_default():
    img = frame()
    frames = np.stack([img, img // 2])
    boxes = np.array([[140, 100, 170, 120], [100, 80, 250, 200]], dtype=np.float32)
    out = crop_rois(frames, boxes)
    assert out.shape == (2, ROI, ROI)
    assert np.array_equal(out[0], rule(frames[0], boxes[0])) and np.array_equal(out[1], rule(frames[1], boxes[1]))


def test_official_interpolation_truncates_like_the_baseline():
    nan = [np.nan] * 4
    boxes = np.array([[10, 20, 30, 40], nan, nan, [11, 21, 33, 45], nan, [5, 5, 5, 5]], dtype=np.float64)
    out, det = interpolate_boxes(boxes, mode="official")
    assert det.tolist() == [True, False, False, True, False, True]
    # before + (t - t0) * (after - before) / (t1 - t0), then astype(int64)
    assert out[1].tolist() == [10, 20, 31, 41]       # 10.33, 20.33, 31, 41.67
    assert out[2].tolist() == [10, 20, 32, 43]       # 10.67, 20.67, 32, 43.33
    assert out[4].tolist() == [8, 13, 19, 25]        # half-way: 8, 13, 19, 25
    tk, _ = interpolate_boxes(boxes)                 # the toolkit keeps the fractions
    assert abs(tk[1, 3] - 41.6667) < 1e-3
    lead = np.array([nan, [3.7, 4, 5, 6], nan], dtype=np.float64)
    assert np.allclose(interpolate_boxes(lead, mode="official")[0], [[3.7, 4, 5, 6]] * 3)  # held, not truncated
    # the baseline's order of operations: exact integers stay exact (np.interp can land just below)
    t = np.arange(1, 49)
    for a in range(0, 30):
        for b in range(a + 1, 40):
            for n in (3, 6, 7, 49):
                tr = np.full((n + 1, 4), np.nan)
                tr[0], tr[n] = a, b
                got = interpolate_boxes(tr, mode="official")[0][1:n, 0]
                want = [int(a + k * (b - a) / n) for k in t[:n - 1]]
                assert got.tolist() == want, (a, b, n)


def _write_mp4(path, frames_rgb):
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = frames_rgb.shape[2], frames_rgb.shape[1], "yuv420p"
        s.options = {"crf": "18"}
        for f in frames_rgb:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


@pytest.mark.parametrize("crop", ["official", "toolkit"])
def test_roi_job_crops_rgb_then_gray_in_official_mode(tmp_path, crop):
    """avsr prepare_rois --crop: official = the baseline's window on the decoded RGB frame, then
    the baseline's gray weights; toolkit = the 1.6x square on the decoder's gray frame."""
    from avsr.data.roi_dump import extract_rois, load_roi
    from frontends.video import read_video

    T, H, W = 20, 120, 160
    yy, xx = np.mgrid[0:H, 0:W]
    frames = np.stack([np.stack([(xx * 1.5 + 3 * t) % 256, (yy * 2 + t) % 256,
                                 (xx + yy) % 256], -1).astype(np.uint8) for t in range(T)])
    rec = "R01_S001_C01_I0_Far"
    _write_mp4(tmp_path / f"{rec}.mp4", frames)
    wav = tmp_path / "a.wav"
    import soundfile as sf
    sf.write(wav, np.zeros(16000), 16000)
    boxes = {str(t): [{"id": 1, "x1": 0, "y1": 0, "x2": 10, "y2": 10, "lip": [60 + t, 40, 100 + t, 70]}]
             for t in range(T) if t not in (5, 6, 7)}              # frames 5..7 interpolated
    (tmp_path / "det").mkdir()
    (tmp_path / "det" / f"{rec}.json").write_text(json.dumps(boxes))
    dd = tmp_path / "dd"
    dd.mkdir()
    utt = "S001_R01_S001_C01_I0_000000-000080"
    (dd / "wav.scp").write_text(f"{rec} {wav}\n")
    (dd / "video.scp").write_text(f"{rec} {tmp_path / f'{rec}.mp4'}\n")
    (dd / "segments").write_text(f"{utt} {rec} 0.00 0.80\n")
    (dd / "text").write_text(f"{utt} 你好\n")
    (dd / "utt2spk").write_text(f"{utt} S001\n")
    (dd / "spk2utt").write_text(f"S001 {utt}\n")
    rep = extract_rois(str(dd), str(tmp_path / "det"), str(tmp_path / "roi"), spk_prefix="S",
                       progress=False, crop=crop)
    assert rep["with_roi"] == 1 and rep["crop"] == crop
    roi, det = load_roi(str(tmp_path / "roi" / rec / f"{utt}.npz"))
    assert roi.shape == (T, ROI, ROI) and det.tolist() == [t not in (5, 6, 7) for t in range(T)]
    rgb = read_video(str(tmp_path / f"{rec}.mp4"), gray=False).frames
    gray = read_video(str(tmp_path / f"{rec}.mp4"), gray=True).frames
    for t in (0, 6, 19):
        x0 = 60 + t if t not in (5, 6, 7) else math.trunc(64 + (t - 4) * 4 / 4)   # interpolated 4 -> 8
        box = (x0, 40, x0 + 40, 70)
        if crop == "official":
            want = to_gray(rule(rgb[t], box))                     # 40 x 30 px box: native 96 px window
        else:
            want = crop_roi(gray[t], box, mode="toolkit")
        assert np.array_equal(roi[t], want), t


def test_prepare_pair_crop_keyword(tmp_path):
    """frontends.pairs.prepare_pair(crop=...): the same crop as the ROI job (official by default)."""
    import soundfile as sf

    from frontends.pairs import prepare_pair
    from frontends.video import read_video

    T, H, W = 10, 120, 160
    yy, xx = np.mgrid[0:H, 0:W]
    frames = np.stack([np.stack([(xx * 1.5 + 3 * t) % 256, (yy * 2 + t) % 256,
                                 (xx + yy) % 256], -1).astype(np.uint8) for t in range(T)])
    _write_mp4(tmp_path / "v.mp4", frames)
    sf.write(tmp_path / "a.wav", np.zeros(6400), 16000)
    lips = {str(t): [{"id": 1, "x1": 0, "y1": 0, "x2": 10, "y2": 10, "lip": [50, 40, 90, 64]}] for t in range(T)}
    (tmp_path / "d.json").write_text(json.dumps(lips))
    rgb = read_video(str(tmp_path / "v.mp4"), gray=False).frames
    gray = read_video(str(tmp_path / "v.mp4"), gray=True).frames
    box = (50, 40, 90, 64)
    kw = {"detection": str(tmp_path / "d.json"), "video_type": "full"}
    off = prepare_pair(str(tmp_path / "a.wav"), str(tmp_path / "v.mp4"), **kw)
    tk = prepare_pair(str(tmp_path / "a.wav"), str(tmp_path / "v.mp4"), crop="toolkit", **kw)
    assert off.roi.shape == tk.roi.shape == (T, ROI, ROI)
    for t in (0, 9):
        assert np.array_equal(off.roi[t], to_gray(rule(rgb[t], box)))
        assert np.array_equal(tk.roi[t], crop_roi(gray[t], box, mode="toolkit"))
    # an ROI video (already a mouth crop) is resized, then converted with the same gray weights
    roi_video = prepare_pair(str(tmp_path / "a.wav"), str(tmp_path / "v.mp4"), video_type="roi")
    want = to_gray(cv2.resize(rgb[3], (ROI, ROI), interpolation=cv2.INTER_AREA))
    assert np.array_equal(roi_video.roi[3], want)
    with pytest.raises(ValueError, match="crop"):
        prepare_pair(str(tmp_path / "a.wav"), crop="square")
