#!/usr/bin/env python
"""Cost of the far-array front-ends (ch0, mean, wpe): seconds of compute per hour of audio, peak RSS.

    python scripts/bench_far_frontend.py --minutes 2 --runs 3 --out docs/results/bench_far_frontend.json

A synthetic 6-channel far-field recording of ``--minutes`` minutes is written as
``<session>_Far_{0..5}.wav`` (16-bit PCM) into a temporary directory: syllable-rate modulated
noise convolved, per channel, with its own exponentially decaying noise impulse response
(RT60 0.6 s, direct path delayed by the channel index in samples).  WPE's cost depends on the
length and channel count, not on what is said.

Each mode runs in its own subprocess (so peak RSS is per mode) with ``--threads`` BLAS/OpenMP
threads (default 1: the recipe runs sessions in parallel, one process each).  The subprocess loads
the channels with :func:`frontends.far.load_far_array` (timed as ``load_seconds``), then runs
:func:`frontends.far.far_frontend` ``--runs`` times; ``compute_seconds`` is the median of the
runs and ``seconds_per_hour`` = ``compute_seconds`` / audio hours.  ``peak_rss_mb`` is the
process's peak resident set (``ru_maxrss``), ``rss_after_load_mb`` its peak before the front-end
ran.  WPE processes blocks of at most :data:`frontends.far.WPE_BLOCK_S` seconds, so its memory
grows with ``--minutes`` only up to that block length.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)
from _bench_common import command_line, emit, machine_info  # noqa: E402

SESSION = "R01_S001002_C01_I0"
MODES = ("ch0", "mean", "wpe")


def synthesise(folder: str, minutes: float, channels: int, seed: int = 0) -> list:
    """Write the synthetic far array; its channel file paths."""
    import numpy as np
    import soundfile as sf
    from scipy.signal import fftconvolve

    from frontends.constants import SAMPLE_RATE

    rng = np.random.default_rng(seed)
    n = int(round(minutes * 60 * SAMPLE_RATE))
    t = np.arange(n) / SAMPLE_RATE
    src = rng.standard_normal(n) * (0.5 + 0.5 * np.abs(np.sin(np.pi * 4.0 * t)))
    rt60 = 0.6
    k = int(rt60 * SAMPLE_RATE)
    x = np.zeros((channels, n))
    for c in range(channels):
        h = np.zeros(k + c)
        h[c] = 1.0
        h[c:] += 0.3 * rng.standard_normal(k) * np.exp(-6.9078 * np.arange(k) / k)
        x[c] = fftconvolve(src, h)[:n]
    x *= 0.9 / np.max(np.abs(x))
    paths = []
    for c in range(channels):
        p = os.path.join(folder, f"{SESSION}_Far_{c}.wav")
        sf.write(p, x[c], SAMPLE_RATE, subtype="PCM_16")
        paths.append(p)
    return paths


def run_mode(mode: str, folder: str, runs: int) -> dict:
    """In the subprocess: load the array, time ``runs`` front-end calls."""
    import numpy as np

    from frontends.constants import SAMPLE_RATE
    from frontends.far import far_channel_paths, far_frontend, load_far_array

    t0 = time.perf_counter()
    x = load_far_array(far_channel_paths(os.path.join(folder, f"{SESSION}_Far_0.wav")))
    load_s = time.perf_counter() - t0
    rss_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        y = far_frontend(x, mode)
        times.append(time.perf_counter() - t0)
    assert y.shape == (x.shape[1],) and np.all(np.isfinite(y))
    hours = x.shape[1] / SAMPLE_RATE / 3600.0
    med = statistics.median(times)
    return {"mode": mode, "channels": int(x.shape[0]), "audio_seconds": x.shape[1] / SAMPLE_RATE,
            "load_seconds": round(load_s, 3), "runs_seconds": [round(s, 3) for s in times],
            "compute_seconds": round(med, 3), "seconds_per_hour": round(med / hours, 2),
            "real_time_factor": round(med / (hours * 3600.0), 5),
            "rss_after_load_mb": round(rss_load, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=2.0, help="length of the synthetic recording [2]")
    ap.add_argument("--channels", type=int, default=6, help="far-array channels [6]")
    ap.add_argument("--runs", type=int, default=3, help="front-end calls per mode (median) [3]")
    ap.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP threads per mode [1]")
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    ap.add_argument("--out", default=None, help="also write the JSON here")
    ap.add_argument("--child", nargs=2, metavar=("MODE", "DIR"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(run_mode(a.child[0], a.child[1], a.runs)))
        return
    env = dict(os.environ)
    for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[v] = str(a.threads)
    res = {}
    load_before = [round(v, 2) for v in os.getloadavg()]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        synthesise(tmp, a.minutes, a.channels)
        synth_s = time.perf_counter() - t0
        for mode in a.modes:
            p = subprocess.run([sys.executable, os.path.abspath(__file__), "--runs", str(a.runs),
                                "--child", mode, tmp], capture_output=True, text=True, env=env)
            if p.returncode != 0:
                raise SystemExit(f"{mode} failed:\n{p.stderr[-3000:]}")
            res[mode] = json.loads(p.stdout.strip().splitlines()[-1])
            print(f"{mode}: {res[mode]['seconds_per_hour']:.1f} s per hour of audio "
                  f"(median of {a.runs}: {res[mode]['compute_seconds']:.2f} s), "
                  f"peak {res[mode]['peak_rss_mb']:.0f} MB", file=sys.stderr, flush=True)
    import nara_wpe
    import numpy
    import scipy

    from frontends.far import WPE_BLOCK_S, WPE_OPTIONS, WPE_STFT
    try:
        from importlib.metadata import version
        nara_version = version("nara-wpe")
    except Exception:  # noqa: BLE001 - informational only
        nara_version = getattr(nara_wpe, "__version__", "")
    out = {"audio": {"minutes": a.minutes, "channels": a.channels, "synthesis_s": round(synth_s, 2),
                     "kind": "synthetic: modulated noise, per-channel RT60 0.6 s noise RIRs, 16-bit wav"},
           "runs": a.runs, "threads": a.threads,
           # other processes on the machine slow the timings down: 1/5/15-minute load averages
           "load_average": {"before": load_before, "after": [round(v, 2) for v in os.getloadavg()]},
           "wpe_settings": {"stft": WPE_STFT, "wpe": WPE_OPTIONS, "block_s": WPE_BLOCK_S},
           "modes": res,
           "seconds_per_hour": {m: r["seconds_per_hour"] for m, r in res.items()},
           "machine": {**machine_info(), "numpy": numpy.__version__, "scipy": scipy.__version__,
                       "nara_wpe": nara_version},
           "command": command_line()}
    emit(out, a.out)


if __name__ == "__main__":
    main()
