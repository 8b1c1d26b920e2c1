"""frontends.audio: any rate / channel count / bit depth -> mono float32 16 kHz; bad input."""
import numpy as np
import pytest
import soundfile as sf

from frontends.audio import AudioInfo, audio_info, load_audio, resample
from frontends.errors import MediaError


def sine(freq, sr, seconds, amp=0.5, phase=0.0):
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t + phase)).astype(np.float64)


def peak_hz(x, sr):
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.argmax(spec) * sr / len(x)


@pytest.mark.parametrize("sr", [8000, 22050, 44100, 48000, 16000])
def test_rates_resampled_to_16k_keep_frequency(tmp_path, sr):
    p = tmp_path / f"tone_{sr}.wav"
    sf.write(p, sine(440.0, sr, 1.0), sr, subtype="PCM_16")
    x = load_audio(p)
    assert x.dtype == np.float32 and x.ndim == 1
    assert len(x) == 16000  # ceil(N * 16000 / sr) for N = sr
    assert abs(peak_hz(x, 16000) - 440.0) <= 1.0
    ref = sine(440.0, 16000, 1.0)
    mid = slice(800, -800)  # away from the filter edges
    assert np.max(np.abs(x[mid] - ref[mid])) < 0.01
    assert np.sqrt(np.mean(x[mid] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


@pytest.mark.parametrize("subtype,tol", [("PCM_U8", 1.5 / 128), ("PCM_16", 1e-4), ("PCM_24", 1e-6),
                                         ("PCM_32", 1e-6), ("FLOAT", 1e-7)])
def test_bit_depths(tmp_path, subtype, tol):
    x = sine(300.0, 16000, 0.25, amp=0.7)
    p = tmp_path / f"depth_{subtype}.wav"
    sf.write(p, x, 16000, subtype=subtype)
    info = audio_info(p)
    assert isinstance(info, AudioInfo) and info.subtype == subtype
    y = load_audio(p)
    assert y.dtype == np.float32 and len(y) == len(x)
    assert np.max(np.abs(y - x)) <= tol


def test_flac_and_channels(tmp_path):
    sr = 44100
    left, right = sine(200.0, sr, 0.5, 0.4), sine(1000.0, sr, 0.5, 0.2)
    p = tmp_path / "stereo.flac"
    sf.write(p, np.stack([left, right], 1), sr, subtype="PCM_24")
    info = audio_info(p)
    assert (info.sr, info.channels, info.num_frames) == (sr, 2, 22050)
    assert info.duration == pytest.approx(0.5)
    raw_mean = load_audio(p, target_sr=None)
    assert len(raw_mean) == 22050
    assert np.allclose(raw_mean, (left + right) / 2, atol=1e-5)  # "mean" = equal-weight average
    l16 = load_audio(p, channel=0)
    r16 = load_audio(p, channel=1)
    m16 = load_audio(p)  # default channel="mean"
    assert len(l16) == len(r16) == len(m16) == 8000
    assert abs(peak_hz(l16, 16000) - 200) <= 2 and abs(peak_hz(r16, 16000) - 1000) <= 2
    assert np.allclose(m16, (l16 + r16) / 2, atol=1e-5)
    with pytest.raises(MediaError, match="channel 2 out of range: file has 2 channel"):
        load_audio(p, channel=2)
    with pytest.raises(MediaError, match="out of range"):
        load_audio(p, channel=-1)
    with pytest.raises(ValueError):
        load_audio(p, channel="left")


def test_segment_reads_only_that_part(tmp_path):
    sr = 8000
    x = np.arange(3 * sr, dtype=np.float64) / (3 * sr)  # a ramp: value encodes position
    p = tmp_path / "ramp.wav"
    sf.write(p, x, sr, subtype="FLOAT")
    seg = load_audio(p, target_sr=None, start=1.0, end=1.5)
    assert len(seg) == 4000 and np.allclose(seg, x[8000:12000])
    assert len(load_audio(p, start=1.0, end=1.5)) == 8000
    assert np.allclose(load_audio(p, target_sr=None, start=2.5), x[20000:])
    assert len(load_audio(p, target_sr=None, end=3.009)) == 3 * sr  # <= 10 ms past the end: clamped
    with pytest.raises(MediaError, match=r"segment outside the file.*duration is 3\.000 s"):
        load_audio(p, start=2.0, end=3.5)
    with pytest.raises(MediaError, match="segment outside the file"):
        load_audio(p, start=2.0, end=3.02)
    with pytest.raises(MediaError, match=r"start 3\.200 s >= file duration 3\.000 s"):
        load_audio(p, start=3.2)
    with pytest.raises(ValueError):
        load_audio(p, start=1.0, end=0.5)
    with pytest.raises(ValueError):
        load_audio(p, start=-0.1)


def test_resample_function():
    x = sine(1000.0, 48000, 0.5)
    y = resample(x, 48000, 16000)
    assert y.dtype == np.float32 and len(y) == 8000
    assert abs(peak_hz(y, 16000) - 1000) <= 2
    assert len(resample(x[:1001], 48000, 16000)) == 334  # ceil(1001 / 3)
    assert len(resample(np.zeros(100), 22050.0, 16000)) == 73  # ceil(100 * 320 / 441)
    same = resample(x, 16000, 16000)
    assert same.dtype == np.float32 and np.allclose(same, x, atol=1e-7)
    two = resample(np.stack([x, -x]), 48000, 16000)  # [..., N] along the last axis
    assert two.shape == (2, 8000) and np.allclose(two[0], -two[1])
    # an 7 kHz tone is removed when going to 8 kHz (anti-aliasing), not folded to 1 kHz
    z = resample(sine(7000.0, 48000, 0.5), 48000, 8000)
    assert np.sqrt(np.mean(z[200:-200] ** 2)) < 0.01
    with pytest.raises(ValueError):
        resample(x, 44100.5, 16000)
    with pytest.raises(ValueError):
        resample(x, 0, 16000)


def _raises_naming(path, match):
    with pytest.raises(MediaError) as ei:
        load_audio(path)
    msg = str(ei.value)
    assert msg.startswith(str(path)) and path.name in msg
    assert match in ei.value.reason, ei.value.reason


def test_bad_input(tmp_path):
    _raises_naming(tmp_path / "nope_missing.wav", "file not found")
    (tmp_path / "zero_bytes.wav").write_bytes(b"")
    _raises_naming(tmp_path / "zero_bytes.wav", "0 bytes")
    (tmp_path / "text_file.wav").write_text("hello, I am not audio\n" * 20)
    _raises_naming(tmp_path / "text_file.wav", "not a readable audio file")
    (tmp_path / "a_dir.wav").mkdir()
    _raises_naming(tmp_path / "a_dir.wav", "not a regular file")
    sf.write(tmp_path / "no_samples.wav", np.zeros(0, np.float32), 16000)
    assert audio_info(tmp_path / "no_samples.wav").num_frames == 0
    _raises_naming(tmp_path / "no_samples.wav", "zero-length")


@pytest.mark.parametrize("ext", ["wav", "flac"])
def test_truncated(tmp_path, ext):
    x = sine(440.0, 16000, 2.0)
    good = tmp_path / f"good.{ext}"
    sf.write(good, x, 16000, subtype="PCM_16")
    data = good.read_bytes()
    bad = tmp_path / f"cut_half.{ext}"
    bad.write_bytes(data[: len(data) // 2])
    _raises_naming(bad, "truncated")
    if ext == "wav":  # the header check also guards audio_info and any segment
        with pytest.raises(MediaError, match="header declares 32000 frames"):
            audio_info(bad)
