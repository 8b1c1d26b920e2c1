"""Audio from a video container (frontends.audio.load_container_audio), aligned to the video's
25 fps grid with the AAC encoder priming handled, and pairs without a wav (frontends.pairs).

Test media are written here with PyAV (libx264 + FFmpeg's native AAC encoder): a dark clip with one
white frame (the flash, grid frame FLASH) and an audio track with a 1 kHz beep starting at the
flash's instant.  FFmpeg's AAC encoder primes 1024 samples; an mp4 records them in its edit list
(first packet pts -1024 + skip_samples), so decoding every sample from 0 puts the beep 1024
samples late (measured, 16 kHz source: 1.4801 s aligned vs 1.5441 s raw, 64 ms, more than one
video frame; 48 kHz: 21.3 ms; 8 kHz: 128 ms).
"""
import shutil
import subprocess
from fractions import Fraction

import av
import numpy as np
import pytest
import soundfile as sf

from frontends.audio import ContainerAudioInfo, load_audio, load_container_audio
from frontends.constants import SAMPLE_RATE, VIDEO_FPS
from frontends.errors import MediaError
from frontends.pairs import prepare_pair
from frontends.video import GRID_FPS, read_video

FLASH = 37                    # grid frame of the white frame
FRAME_S = 1.0 / VIDEO_FPS     # one video frame (40 ms)
PRIMING = 1024                # FFmpeg's AAC encoder delay, samples at the source rate
W, H = 64, 48                 # small frame: prepare_pair treats it as an ROI video


def beep_track(sr, ch, seconds, t0, beep_at, left_only=False):
    """float32 [ch, N] starting at container time t0: faint noise + a 30 ms 1 kHz beep at beep_at."""
    t = t0 + np.arange(int(round(seconds * sr))) / sr
    a = 0.001 * np.random.default_rng(0).standard_normal(len(t))
    m = (t >= beep_at) & (t < beep_at + 0.03)
    a[m] += 0.5 * np.sin(2 * np.pi * 1000.0 * (t[m] - beep_at))
    a = np.tile(a.astype(np.float32), (ch, 1))
    if left_only and ch == 2:
        a[1] = 0.001 * np.random.default_rng(1).standard_normal(a.shape[1]).astype(np.float32)
    return a


def make_av(path, *, fmt="mp4", sr=16000, ch=1, video_start=0.0, audio_start=0.0, n_frames=75,
            audio_seconds=3.5, with_audio=True, left_only=False, audio=None, options=None):
    """A clip whose grid frame FLASH is white and whose beep starts at that frame's instant.

    ``video_start`` / ``audio_start``: container time (s) of the first video frame / audio sample.
    ``audio``: float32 [ch, N] to encode instead of the beep track.
    """
    c = av.open(str(path), "w", format=fmt, options=options or {})
    vs = c.add_stream("libx264", rate=VIDEO_FPS)
    vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
    vs.codec_context.thread_count = 1
    t_flash = video_start + FLASH / VIDEO_FPS
    packets = []
    v0 = int(round(video_start * VIDEO_FPS))
    for i in range(n_frames):
        img = np.full((H, W, 3), 255 if i == FLASH else 20, np.uint8)
        f = av.VideoFrame.from_ndarray(img, format="rgb24")
        f.pts, f.time_base = v0 + i, Fraction(1, VIDEO_FPS)
        packets += vs.encode(f)
    packets += vs.encode(None)
    if with_audio:
        ast = c.add_stream("aac", rate=sr)
        ast.layout = "stereo" if ch == 2 else "mono"
        a = audio if audio is not None else beep_track(sr, ch, audio_seconds, audio_start, t_flash, left_only)
        a0 = int(round(audio_start * sr))
        for s in range(0, a.shape[1], 1024):
            f = av.AudioFrame.from_ndarray(np.ascontiguousarray(a[:, s:s + 1024]), format="fltp",
                                           layout=ast.layout.name)
            f.sample_rate, f.pts, f.time_base = sr, a0 + s, Fraction(1, sr)
            packets += ast.encode(f)
        packets += ast.encode(None)
    for p in packets:
        c.mux(p)
    c.close()
    return path


def onset_s(x, sr=SAMPLE_RATE):
    """Time of the first sample above a quarter of the peak (the beep's first half-cycle)."""
    x = np.abs(np.asarray(x))
    return float(np.argmax(x > 0.25 * x.max())) / sr


def flash_time(path):
    """Time of the white frame on the toolkit's video grid (frontends.video.read_video)."""
    clip = read_video(path, fps=GRID_FPS)
    i = int(np.argmax(clip.frames.reshape(len(clip), -1).mean(axis=1)))
    assert i == FLASH
    return i / GRID_FPS


def raw_decode(path):
    """Every decoded sample from 0, the mp4 edit list ignored (no priming compensation): what a
    reader that concatenates the decoder's output would get.  Mono, source rate."""
    with av.open(str(path), options={"ignore_editlist": "1"}) as c:
        st = c.streams.audio[0]
        x = np.concatenate([f.to_ndarray()[0] for f in c.decode(st)])
        return x, st.codec_context.sample_rate


# ------------------------------------------------------------------------------------------------
# the central check: audio onset vs flash on the video grid
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sr,ch", [(16000, 1), (44100, 2), (48000, 2), (8000, 1)])
def test_beep_within_one_frame_of_flash_and_priming_compensated(tmp_path, sr, ch):
    p = make_av(tmp_path / f"av_{sr}_{ch}.mp4", sr=sr, ch=ch)
    t_flash = flash_time(p)
    y, info = load_container_audio(p)
    assert isinstance(info, ContainerAudioInfo) and info.sr == SAMPLE_RATE and info.source_sr == sr
    assert info.has_video and info.channels == ch and info.codec == "aac"
    t_on = onset_s(y)
    assert abs(t_on - t_flash) < FRAME_S                 # the requirement: within one video frame
    assert abs(t_on - t_flash) < 0.002                   # measured: 0.06 ms (one 16 kHz sample)
    # without the compensation: the beep lands PRIMING samples late
    raw, rsr = raw_decode(p)
    t_raw = onset_s(raw, rsr)
    assert t_raw - t_on >= PRIMING / sr - 0.002
    if sr <= 16000:                                      # 64 ms (16 kHz), 128 ms (8 kHz): > 1 frame
        assert t_raw - t_flash > FRAME_S


@pytest.mark.parametrize("fmt,ext", [("mp4", "mp4"), ("matroska", "mkv")])
@pytest.mark.parametrize("video_start,audio_start", [(0.32, 0.0), (0.0, 0.3)])
def test_streams_starting_at_different_times(tmp_path, fmt, ext, video_start, audio_start):
    """Audio starting before the video is cut, audio starting after it is padded with silence."""
    p = make_av(tmp_path / f"off.{ext}", fmt=fmt, video_start=video_start, audio_start=audio_start)
    t_flash = flash_time(p)
    y, info = load_container_audio(p)
    assert abs(onset_s(y) - t_flash) < 0.002
    assert info.origin == pytest.approx(video_start, abs=1e-3)
    if video_start > audio_start:
        assert info.dropped >= round((video_start - audio_start) * info.source_sr) - 2
        assert info.padded == 0
    else:
        assert info.padded > 0 and info.dropped == 0
        lead = y[:int((audio_start - 0.1) * SAMPLE_RATE)]
        assert np.max(np.abs(lead)) == 0.0               # the silence before the audio starts
    # the audio ends where the track ends, on the aligned time line
    end = audio_start + 3.5 - video_start
    assert len(y) / SAMPLE_RATE == pytest.approx(end, abs=0.03)


def test_timestamp_gap_filled_with_silence(tmp_path):
    """An audio track with a 0.5 s hole in its timestamps keeps later sound at its time."""
    sr = 16000
    path = tmp_path / "gap.mkv"
    c = av.open(str(path), "w", format="matroska")
    vs = c.add_stream("libx264", rate=VIDEO_FPS)
    vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
    ast = c.add_stream("aac", rate=sr)
    ast.layout = "mono"
    pk = []
    for i in range(75):
        f = av.VideoFrame.from_ndarray(np.full((H, W, 3), 255 if i == FLASH else 20, np.uint8), format="rgb24")
        f.pts, f.time_base = i, Fraction(1, VIDEO_FPS)
        pk += vs.encode(f)
    pk += vs.encode(None)
    a = beep_track(sr, 1, 3.5, 0.0, FLASH / VIDEO_FPS)
    hole = (int(0.512 * sr), int(1.024 * sr))            # 16 AAC frames not recorded
    for s in range(0, a.shape[1], 1024):
        if hole[0] <= s < hole[1]:
            continue
        f = av.AudioFrame.from_ndarray(np.ascontiguousarray(a[:, s:s + 1024]), format="fltp", layout="mono")
        f.sample_rate, f.pts, f.time_base = sr, s, Fraction(1, sr)
        pk += ast.encode(f)
    pk += ast.encode(None)
    for p in pk:
        c.mux(p)
    c.close()
    y, info = load_container_audio(path)
    assert info.gap_samples == pytest.approx(hole[1] - hole[0], abs=1100)
    assert abs(onset_s(y) - flash_time(path)) < 0.002


# ------------------------------------------------------------------------------------------------
# channels, rates, segments, the load_audio route
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sr,ch", [(16000, 1), (44100, 1), (44100, 2), (48000, 1), (48000, 2)])
def test_rates_and_channels_resampled(tmp_path, sr, ch):
    p = make_av(tmp_path / f"r_{sr}_{ch}.mp4", sr=sr, ch=ch, left_only=True)
    y, info = load_container_audio(p)
    assert y.dtype == np.float32 and y.ndim == 1
    assert len(y) == pytest.approx(3.5 * SAMPLE_RATE, abs=2)    # edit list: no priming, no end padding
    beep = y[int(FLASH * FRAME_S * SAMPLE_RATE) + 16:int((FLASH * FRAME_S + 0.03) * SAMPLE_RATE) - 16]
    spec = np.abs(np.fft.rfft(beep * np.hanning(len(beep))))
    assert abs(np.argmax(spec) * SAMPLE_RATE / len(beep) - 1000.0) < 40
    amp = np.sqrt(2 * np.mean(beep ** 2))
    expect = 0.5 if ch == 1 else 0.25                    # stereo, beep on the left only: mean = half
    assert amp == pytest.approx(expect, rel=0.1)
    if ch == 2:
        left, _ = load_container_audio(p, channel=0)
        right, _ = load_container_audio(p, channel=1)
        assert np.allclose((left + right) / 2, y, atol=1e-5)
        assert np.max(np.abs(right)) < 0.02
        with pytest.raises(MediaError, match="channel 2 out of range"):
            load_container_audio(p, channel=2)
    native, ninfo = load_container_audio(p, target_sr=None)
    assert ninfo.sr == sr and len(native) == pytest.approx(3.5 * sr, abs=2)


def test_load_audio_routes_containers_and_segments(tmp_path):
    p = make_av(tmp_path / "av.mp4", sr=48000, ch=2)
    full, _ = load_container_audio(p)
    assert np.array_equal(load_audio(p), full)            # `--wav av.mp4`
    seg = load_audio(p, start=1.0, end=2.0)
    assert np.array_equal(seg, full[SAMPLE_RATE:2 * SAMPLE_RATE])
    with pytest.raises(MediaError, match="segment outside the file"):
        load_audio(p, start=1.0, end=9.0)
    # also without an extension that says "video"
    q = tmp_path / "recording.dat"
    q.write_bytes(p.read_bytes())
    assert np.array_equal(load_audio(q), full)


def test_errors_name_the_file(tmp_path):
    silent = make_av(tmp_path / "silent.mp4", with_audio=False)
    for fn in (load_container_audio, load_audio):
        with pytest.raises(MediaError, match="no audio stream") as ei:
            fn(silent)
        assert str(ei.value).startswith(str(silent))
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 10)
    with pytest.raises(MediaError) as ei:
        load_container_audio(junk)
    assert str(ei.value).startswith(str(junk)) and "not a readable media file" in str(ei.value)
    with pytest.raises(MediaError, match="not a readable audio file"):   # load_audio's own message kept
        load_audio(junk)
    # moov at the end (the muxer's default): a cut file loses its index and cannot be opened
    data = make_av(tmp_path / "end.mp4").read_bytes()
    assert data.find(b"moov") > data.find(b"mdat")
    cut = tmp_path / "cut_end.mp4"
    cut.write_bytes(data[:len(data) // 2])
    with pytest.raises(MediaError) as ei:
        load_container_audio(cut)
    assert str(ei.value).startswith(str(cut))
    # moov first (faststart): the index survives, the samples end early -> truncated
    data = make_av(tmp_path / "fast.mp4", options={"movflags": "faststart"}).read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")
    cut = tmp_path / "cut_fast.mp4"
    cut.write_bytes(data[:len(data) * 2 // 3])
    with pytest.raises(MediaError, match="truncated/corrupt audio") as ei:
        load_container_audio(cut)
    assert str(ei.value).startswith(str(cut))


def test_wav_behaviour_unchanged(tmp_path):
    x = beep_track(44100, 2, 1.0, 0.0, 0.5)
    p = tmp_path / "a.wav"
    sf.write(p, x.T, 44100, subtype="PCM_16")
    y = load_audio(p)
    assert len(y) == SAMPLE_RATE                          # scipy polyphase path, ceil(N * 16000 / sr)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....WAVEfmt garbage")
    with pytest.raises(MediaError, match="not a readable audio file"):
        load_audio(bad)


# ------------------------------------------------------------------------------------------------
# prepare_pair without a wav
# ------------------------------------------------------------------------------------------------

def test_prepare_pair_audio_from_container_equals_extracted_wav(tmp_path):
    p = make_av(tmp_path / "av.mp4", sr=44100, ch=2)
    from_video = prepare_pair(None, p)
    assert from_video.audio_source == "container" and from_video.roi is not None
    # the track as a wav, written from the decoder's own samples at the source rate (mp4 edit
    # list applied by FFmpeg), then read through the wav path (libsndfile + scipy resampling)
    native, info = load_container_audio(p, target_sr=None)
    assert info.offset == 0.0 and info.dropped == 0
    wav = tmp_path / "extracted.wav"
    sf.write(wav, native, info.source_sr, subtype="FLOAT")
    from_wav = prepare_pair(wav, p)
    assert from_wav.audio_source == "wav"
    a, b = from_video.audio, from_wav.audio
    assert abs(len(a) - len(b)) <= 1
    n = min(len(a), len(b))
    assert np.max(np.abs(a[:n] - b[:n])) < 0.02           # two resamplers (FFmpeg's vs scipy's)
    assert np.corrcoef(a[:n], b[:n])[0, 1] > 0.999
    assert np.array_equal(from_video.roi, from_wav.roi)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg binary not installed")
def test_prepare_pair_matches_ffmpeg_cli_extraction(tmp_path):
    """An independent extraction: the ffmpeg command line's ``-vn`` wav of the same mp4."""
    p = make_av(tmp_path / "av.mp4", sr=48000, ch=2)
    wav = tmp_path / "ffmpeg.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-i", str(p), "-vn", "-c:a", "pcm_f32le",
                    str(wav)], check=True)
    a = prepare_pair(None, p).audio
    b = prepare_pair(wav, p).audio
    n = min(len(a), len(b))
    # the ffmpeg CLI (FFmpeg 5.1 here) keeps the last AAC frame's padding that the mp4 declares
    # beyond the track's end; load_container_audio drops it: at most one AAC frame longer
    assert 0 <= len(b) - len(a) <= PRIMING * SAMPLE_RATE // 48000 + 2
    assert np.max(np.abs(a[:n] - b[:n])) < 0.02
    assert abs(onset_s(a) - onset_s(b)) < 0.001


def test_prepare_pair_video_only(tmp_path):
    silent = make_av(tmp_path / "silent.mp4", with_audio=False)
    with pytest.raises(MediaError, match="no audio stream") as ei:
        prepare_pair(None, silent)
    assert str(ei.value).startswith(str(silent))
    pair = prepare_pair(None, silent, need_audio=False)
    assert pair.audio is None and pair.audio_source is None
    assert pair.roi is not None and pair.roi.shape[0] == 75 and pair.detected.all()
    assert pair.duration == pytest.approx(75 / GRID_FPS)
    assert "audio_load" not in pair.timings
    assert any("no audio track" in w for w in pair.warnings)
    with pytest.raises(MediaError, match="--max_seconds"):
        prepare_pair(None, silent, need_audio=False, max_seconds=1.0)
    # a video-only model still gets the audio when the container has it
    p = make_av(tmp_path / "av.mp4")
    assert prepare_pair(None, p, need_audio=False).audio is not None
    with pytest.raises(ValueError):
        prepare_pair(None, None)
