"""Far-array front-end (frontends.far) and its data-dir command (avsr.bin.far_frontend).

The central test builds a reverberant 6-channel recording from SynthMISP's own pieces (espeak-ng
speech, ``synth_rir`` with RT60 0.6 s and a 0 dB direct-to-reverberant ratio per channel) and
measures the DRR of each front-end's output against the known direct path of channel 0.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import fftconvolve

from avsr.bin import far_frontend as cli
from frontends.constants import SAMPLE_RATE
from frontends.errors import MediaError
from frontends.far import far_channel_paths, far_frontend, load_far_array, wpe_dereverb

ROOT = Path(__file__).resolve().parents[1]


def drr_db(y: np.ndarray, direct: np.ndarray) -> float:
    """DRR of ``y`` w.r.t. the known direct-path signal: least-squares projection ``a * direct``
    of ``y`` on it against the rest, ``10 log10(|a d|^2 / |y - a d|^2)``."""
    y, d = y.astype(np.float64), direct.astype(np.float64)
    a = float(y @ d) / float(d @ d)
    r = y - a * d
    return 10 * np.log10(a * a * float(d @ d) / float(r @ r))


@pytest.fixture(scope="module")
def reverberant():
    """(x float32 [6, N], direct path of channel 0 [N]) for ~10 s of SynthMISP speech."""
    from avsr.synthmisp import speech as S
    from avsr.synthmisp.generate import synth_rir
    from avsr.synthmisp.text import TextGenerator

    rng = np.random.default_rng(0)
    gen = TextGenerator(seed=1)
    s = np.concatenate([S.synthesize(gen.sentence(rng), S.VOICES[i]).wave for i in range(3)])
    s = s.astype(np.float64)
    n = len(s)
    # channel c: direct path delayed by c samples (inter-microphone delay) + its own reverberant tail.
    # The direct path is the largest tap of a response (unit impulse; the tail has unit energy
    # spread over RT60); channel 0's (delay 0) marks time 0 for every channel.
    rirs = [synth_rir(rng, 0.6, 0.0, c) for c in range(6)]
    off = int(np.argmax(np.abs(rirs[0])))
    x = np.stack([fftconvolve(s, h)[off:off + n] for h in rirs])
    g = 0.9 / np.max(np.abs(x))
    return (g * x).astype(np.float32), g * s          # channel 0's direct path: delay 0, gain 1


def test_wpe_raises_drr(reverberant):
    x, direct = reverberant
    ch0 = drr_db(far_frontend(x, "ch0"), direct)
    mean = drr_db(far_frontend(x, "mean"), direct)
    wpe = drr_db(far_frontend(x, "wpe"), direct)
    # measured (seed 0, 9.6 s): ch0 -0.26 dB, mean 0.22 dB, wpe 5.21 dB (gain 5.5 dB; seeds 1-3:
    # gains 8.5, 6.3, 6.0 dB).  A WPE that returned its input, lost the alignment or used one
    # channel's tail as another's would stay near 0 dB.
    assert -2.0 < ch0 < 2.0
    assert wpe > ch0 + 3.0, (ch0, mean, wpe)
    assert wpe > mean + 3.0, (ch0, mean, wpe)


def test_wpe_blocks_keep_alignment(reverberant):
    """Blocks of 3 s (the default is 300 s) are dereverberated separately and stitched: the output
    keeps the input length and sample alignment (a drift of a few samples would ruin the DRR)."""
    x, direct = reverberant
    y = wpe_dereverb(x, block_s=3.0)
    assert y.shape == x.shape and y.dtype == np.float32
    assert drr_db(y[0], direct) > drr_db(x[0], direct) + 2.5


def test_modes_shapes_and_values():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 5000)).astype(np.float32) * 0.1
    for mode in ("ch0", "mean", "wpe"):
        y = far_frontend(x, mode)
        assert y.shape == (5000,) and y.dtype == np.float32, mode
    np.testing.assert_array_equal(far_frontend(x, "ch0"), x[0])
    np.testing.assert_array_equal(far_frontend(x, "ch0", ref=2), x[2])
    np.testing.assert_allclose(far_frontend(x, "mean"), x.mean(0), atol=1e-7)
    assert far_frontend(x[:1], "wpe").shape == (5000,)          # one channel: single-channel WPE
    odd = rng.standard_normal((2, 4321)).astype(np.float32)     # not a multiple of the STFT shift
    assert far_frontend(odd, "wpe").shape == (4321,)
    assert np.all(far_frontend(np.zeros((3, 3000), np.float32), "wpe") == 0)   # silence stays silent
    with pytest.raises(ValueError, match="unknown far front-end mode"):
        far_frontend(x, "beamformit")
    with pytest.raises(ValueError, match="reference channel"):
        far_frontend(x, "ch0", ref=4)


def _write_session(folder: Path, session: str, channels, n: int = SAMPLE_RATE, seed: int = 0,
                   lengths=None) -> None:
    rng = np.random.default_rng(seed)
    src = rng.standard_normal(n + 400) * 0.05
    folder.mkdir(parents=True, exist_ok=True)
    for c in channels:
        k = n if lengths is None else lengths[c]
        y = src[c * 7: c * 7 + k] + 0.02 * rng.standard_normal(k)   # delayed copies + own noise
        sf.write(folder / f"{session}_Far_{c}.wav", y, SAMPLE_RATE, subtype="PCM_16")


def test_channel_paths_and_loading(tmp_path):
    far = tmp_path / "far"
    _write_session(far, "R01_S001002_C01_I0", range(3))
    _write_session(far, "R01_S001002_C01_I1", [0, 1, 3])
    (far / "R01_S001002_C01_I0_Far_0.txt").write_text("x")            # not a channel file
    paths = far_channel_paths(far / "R01_S001002_C01_I0_Far_1.wav")
    assert [os.path.basename(p) for p in paths] == [f"R01_S001002_C01_I0_Far_{c}.wav" for c in range(3)]
    assert len(far_channel_paths(far / "R01_S001002_C01_I1_Far_0.wav")) == 3
    with pytest.raises(MediaError, match=r"R01_S001002_C01_I1_Far_2\.wav: far-array channel file missing"):
        far_channel_paths(far / "R01_S001002_C01_I1_Far_0.wav", expect=4)
    with pytest.raises(MediaError, match=r"^\S*R01_Near_001\.wav: not a far-array channel file"):
        far_channel_paths(far / "R01_Near_001.wav")
    with pytest.raises(MediaError, match="file not found"):
        far_channel_paths(far / "R09_S001_C01_I0_Far_0.wav")
    x = load_far_array(paths)
    assert x.shape == (3, SAMPLE_RATE) and x.dtype == np.float32
    np.testing.assert_allclose(x[1], sf.read(paths[1], dtype="float32")[0])
    # different lengths: trimmed to the shortest, with a note naming the files
    _write_session(far, "R02_S003_C01_I0", range(2), lengths=[SAMPLE_RATE, SAMPLE_RATE - 100])
    notes = []
    y = load_far_array(far_channel_paths(far / "R02_S003_C01_I0_Far_0.wav"), notes=notes)
    assert y.shape == (2, SAMPLE_RATE - 100) and "trimmed to the shortest" in notes[0]
    # another sample rate or a stereo file: an error naming that file
    sf.write(far / "R03_S004_C01_I0_Far_0.wav", np.zeros(800), SAMPLE_RATE // 2)
    with pytest.raises(MediaError, match=r"R03_S004_C01_I0_Far_0\.wav: sample rate"):
        load_far_array([far / "R03_S004_C01_I0_Far_0.wav"])
    sf.write(far / "R03_S004_C01_I0_Far_1.wav", np.zeros((800, 2)), SAMPLE_RATE)
    with pytest.raises(MediaError, match=r"R03_S004_C01_I0_Far_1\.wav: 2 channels"):
        load_far_array([far / "R03_S004_C01_I0_Far_1.wav"])
    (far / "R03_S004_C01_I0_Far_2.wav").write_bytes(b"not a wav")
    with pytest.raises(MediaError, match=r"R03_S004_C01_I0_Far_2\.wav"):
        load_far_array([paths[0], far / "R03_S004_C01_I0_Far_2.wav"])


SESSIONS = ["R01_S001002_C01_I0", "R01_S001002_C01_I1", "R02_S003004_C02_I0"]


def _datadir(tmp_path: Path) -> Path:
    """A 3-session data dir, 3 channels each; the last session lacks channel 2."""
    far = tmp_path / "corpus" / "audio" / "dev" / "far"
    for i, s in enumerate(SESSIONS):
        _write_session(far, s, range(3) if i < 2 else [0, 1], seed=i)
    d = tmp_path / "data" / "dev_all"
    d.mkdir(parents=True)
    (d / "wav.scp").write_text("".join(f"{s}_Far {far}/{s}_Far_0.wav\n" for s in SESSIONS))
    return d


def _mtimes(folder: Path) -> dict:
    return {p.name: p.stat().st_mtime_ns for p in sorted(folder.iterdir())}


def test_cli_wpe_fallback_resume_restore(tmp_path):
    d = _datadir(tmp_path)
    orig = (d / "wav.scp").read_text()
    out = tmp_path / "dump" / "far_wpe" / "dev"
    p = subprocess.run([sys.executable, "-m", "avsr.bin.far_frontend", "--data_dir", str(d),
                        "--mode", "wpe", "--out_dir", str(out), "--nj", "2"],
                       capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    assert f"{SESSIONS[2]}_Far_2.wav: far-array channel file missing" in p.stderr
    rep = json.loads((out / "far_frontend_report.json").read_text())
    assert rep["num_channels"] == 3 and rep["recordings"] == 3
    assert rep["written"] == [f"{s}_Far" for s in SESSIONS[:2]] and rep["reused"] == []
    assert [f["recording"] for f in rep["fallback"]] == [f"{SESSIONS[2]}_Far"]
    assert rep["fallback"][0]["file"].endswith(f"{SESSIONS[2]}_Far_2.wav")
    assert rep["settings"]["wpe"] == {"taps": 10, "delay": 3, "iterations": 5, "statistics_mode": "full"}
    # wav.scp: the two complete sessions point at their outputs, the third keeps its channel file
    assert (d / "wav.scp.orig").read_text() == orig
    scp = dict(line.split(" ", 1) for line in (d / "wav.scp").read_text().splitlines())
    assert list(scp) == [f"{s}_Far" for s in SESSIONS]
    for s in SESSIONS[:2]:
        assert scp[f"{s}_Far"] == str(out / f"{s}_Far.wav")
    assert scp[f"{SESSIONS[2]}_Far"] == dict(l.split(" ", 1) for l in orig.splitlines())[f"{SESSIONS[2]}_Far"]
    # the output: 16-bit PCM, 16 kHz, the input's length, the WPE of the loaded channels
    info = sf.info(str(out / f"{SESSIONS[0]}_Far.wav"))
    assert (info.samplerate, info.channels, info.frames, info.subtype) == (SAMPLE_RATE, 1, SAMPLE_RATE, "PCM_16")
    far = tmp_path / "corpus" / "audio" / "dev" / "far"
    x = load_far_array(far_channel_paths(far / f"{SESSIONS[0]}_Far_0.wav"))
    got = sf.read(str(out / f"{SESSIONS[0]}_Far.wav"), dtype="float32")[0]
    np.testing.assert_allclose(got, far_frontend(x, "wpe"), atol=1.5 / 32768)
    assert not np.allclose(got, x[0], atol=1e-3)                      # it did change the signal

    # resume: a second run rewrites nothing (outputs, wav.scp, wav.scp.orig keep their mtimes)
    before, before_d = _mtimes(out), _mtimes(d)
    rep2 = cli.run(str(d), "wpe", str(out), log=lambda m: None)
    assert rep2["written"] == [] and rep2["reused"] == [f"{s}_Far" for s in SESSIONS[:2]]
    after = _mtimes(out)
    after.pop("far_frontend_report.json"), before.pop("far_frontend_report.json")
    assert after == before and _mtimes(d) == before_d
    # an interrupted run: one output lost, a temp file left behind -> only that one is written
    (out / f"{SESSIONS[1]}_Far.wav").unlink()
    (out / f".{SESSIONS[1]}_Far.wav.tmp.99999").write_bytes(b"RIFF")
    rep3 = cli.run(str(d), "wpe", str(out), log=lambda m: None)
    assert rep3["written"] == [f"{SESSIONS[1]}_Far"] and rep3["reused"] == [f"{SESSIONS[0]}_Far"]
    assert (out / f"{SESSIONS[0]}_Far.wav").stat().st_mtime_ns == before[f"{SESSIONS[0]}_Far.wav"]
    # a truncated output (wrong length) is not reused
    sf.write(out / f"{SESSIONS[0]}_Far.wav", np.zeros(100), SAMPLE_RATE, subtype="PCM_16")
    assert cli.run(str(d), "wpe", str(out), log=lambda m: None)["written"] == [f"{SESSIONS[0]}_Far"]

    # another mode into the same out_dir: refused; into its own out_dir: starts from wav.scp.orig
    with pytest.raises(cli.FarFrontendError, match="holds outputs of another front-end"):
        cli.run(str(d), "mean", str(out), log=lambda m: None)
    rep_m = cli.run(str(d), "mean", str(tmp_path / "far_mean"), log=lambda m: None)
    assert rep_m["written"] == [f"{s}_Far" for s in SESSIONS[:2]]
    got = sf.read(str(tmp_path / "far_mean" / f"{SESSIONS[0]}_Far.wav"), dtype="float32")[0]
    np.testing.assert_allclose(got, x.mean(0), atol=1.5 / 32768)
    assert (d / "wav.scp.orig").read_text() == orig
    # --mode ch0 restores the original wav.scp
    p = subprocess.run([sys.executable, "-m", "avsr.bin.far_frontend", "--data_dir", str(d), "--mode", "ch0"],
                       capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    assert (d / "wav.scp").read_text() == orig


def test_cli_ch0_leaves_wav_scp(tmp_path):
    d = _datadir(tmp_path)
    before = _mtimes(d)
    cli.run(str(d), "ch0", None, log=lambda m: None)
    assert _mtimes(d) == before and not (d / "wav.scp.orig").exists()


def test_cli_pipe_entry_is_an_error(tmp_path):
    d = _datadir(tmp_path)
    with open(d / "wav.scp", "a") as f:
        f.write("R09_S009_C01_I0_Far sox in.flac -t wav - |\n")
    before = (d / "wav.scp").read_text()
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-m", "avsr.bin.far_frontend", "--data_dir", str(d),
                        "--mode", "mean", "--out_dir", str(out)], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 1
    assert "R09_S009_C01_I0_Far: 'sox in.flac -t wav - |' is a Kaldi pipe/ark entry" in p.stderr
    assert "Traceback" not in p.stderr
    assert (d / "wav.scp").read_text() == before and not out.exists()


def test_cli_not_far_entries_and_explicit_channel_count(tmp_path):
    d = _datadir(tmp_path)
    near = tmp_path / "near.wav"
    sf.write(near, np.zeros(SAMPLE_RATE), SAMPLE_RATE, subtype="PCM_16")
    rows = (d / "wav.scp").read_text() + f"Z_near {near}\n"
    (d / "wav.scp").write_text(rows)
    rep = cli.run(str(d), "mean", str(tmp_path / "o"), num_channels=2, log=lambda m: None)
    assert rep["not_far"] == ["Z_near"] and rep["fallback"] == []     # 2 channels: all sessions complete
    assert len(rep["written"]) == 3
    assert f"Z_near {near}\n" in (d / "wav.scp").read_text()
