"""SynthMISP: a deterministic synthetic corpus in the MISP2022 release layout as the official
baselines read it (docs/MISP2022_FORMATS.md; every remaining difference: docs/SYNTHMISP.md).

    python -m avsr.bin.synthmisp --out corpus/synthmisp_tiny --preset tiny --seed 1 --nj 2

Each session is a conversation of 2-3 speakers, each with several utterances,
with overlapping turns.  Everything of a session is drawn from an RNG seeded by
``(seed, split, session index)`` alone, and sessions are written independently,
so the output bytes do not depend on ``--nj`` (``generation_stats.json``, which
holds wall-clock timings, is the one file that differs between runs).

Written (see docs/SYNTHMISP.md)::

    audio/<split>/far/<session>_Far_<ch>.wav         16 kHz int16 mono, ch = 0..n_channels-1 (6):
                                                     SynthMISP's linear array, delays from the seats
    video/<split>/far/<session>_Far.mp4              h264 25 fps
    transcription/<split>/<session>_Near_<spk>.TextGrid
                                                     tier 内容层, UTF-8, CRLF, doubled interval headers;
                                                     <NOISE>/<DEAF> marks and filler-only intervals
    roi_coordinates/<split>/far/lip/<session>_Far.json
                                                     the release's frame-keyed lip and face boxes
                                                     ({"<frame>": [{"id", "x1".."y2", "lip"}]}),
                                                     ~5-15 % of frames without a detection
    segments/{dev,eval}.txt                          <segment_id> <speaker_id> <wav_name> <start> <end>:
                                                     the utterances the official preparation keeps,
                                                     with its ids and 40 ms boundaries
    truth/<split>/<session>.npz                      generator ground truth (mouth tracks, visemes,
                                                     speech envelopes, lip and face boxes, array and
                                                     seat geometry, per-channel delays); never read by
                                                     data preparation
    truth/<split>/<session>.json                     session summary, written last: a re-run skips
                                                     sessions that have it (resume); ``turns``: per
                                                     utterance its speaker, start, end, text and each
                                                     character's ``[char, start, end]`` in session
                                                     seconds (:func:`turn_truth`)
    synthmisp.json                                   preset, seed and knobs (deterministic)
    generation_stats.json                            per-part timings (not deterministic)
"""
from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
import soundfile as sf
from scipy.signal import fftconvolve

from avsr.synthmisp.layout import TIER  # noqa: F401  (the tier 内容层)
from frontends.constants import SAMPLE_RATE, VIDEO_FPS

SPLITS = ("train", "dev", "eval")
SR = SAMPLE_RATE
FPS = VIDEO_FPS
MARKS = ("<NOISE>", "<DEAF>")
#: Splits that get a segment file ``<root>/segments/<split>.txt`` (as the release's dev/eval sets).
SEGMENT_SPLITS = ("dev", "eval")


@dataclass
class Knobs:
    """Corpus sizes and difficulty knobs.  Every field is a command-line flag (``--snr_db 0 10``)."""
    sessions: Tuple[int, int, int] = (2, 1, 1)          # train, dev, eval sessions
    speakers_per_session: Tuple[int, int] = (2, 3)      # inclusive range
    utts_per_speaker: Tuple[int, int] = (2, 3)          # inclusive range
    speaker_pool: Tuple[int, int, int] = (12, 6, 6)     # distinct speakers per split (disjoint ids)
    n_channels: int = 6                                 # far-field microphones written (the release: 6)
    mic_spacing_m: float = 0.05                         # uniform linear array, mic spacing (SynthMISP's choice)
    spk_distance_m: Tuple[float, float] = (1.5, 4.0)    # talker seat: distance from the array centre
    spk_azimuth_deg: Tuple[float, float] = (20.0, 160.0)  # talker seats: azimuth range (0/180 = along the array)
    overlap_prob: float = 0.5                           # P(turn overlaps the previous speaker's turn)
    overlap_frac: Tuple[float, float] = (0.5, 0.9)      # overlap length / shorter of the two turns
    gap_s: Tuple[float, float] = (0.2, 0.9)             # pause between non-overlapping turns
    snr_db: Tuple[float, float] = (0.0, 10.0)           # speech (all talkers) to TV noise, per session
    spk_gain_db: Tuple[float, float] = (-3.0, 3.0)      # per-speaker level (distance) variation
    rt60_s: Tuple[float, float] = (0.2, 0.5)            # reverberation time
    drr_db: Tuple[float, float] = (0.0, 6.0)            # direct-to-reverberant ratio
    width: int = 640                                    # camera frame (<= 640x360)
    height: int = 360
    crf: int = 28                                       # x264 quality
    x264_preset: str = "veryfast"
    miss_rate: Tuple[float, float] = (0.05, 0.15)       # share of frames with no lip detection
    undetected_seg_prob: float = 0.04                   # share of segments made mostly undetected
    mark_prob: float = 0.3                              # P(a <NOISE>/<DEAF> interval after a turn)
    filler_prob: float = 0.15                           # P(a short filler-only interval after a turn)
    n_chars: int = 0                                    # character inventory of the text (0 = all 430)
    lip_activity: Tuple[float, float] = (1.0, 1.0)      # per-speaker articulation extent (x distance from rest)
    articulation_jitter: float = 0.0                    # s.d. of per-phone noise on the mouth targets

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


PRESETS: Dict[str, dict] = {
    # unit tests: seconds
    "tiny": dict(sessions=(2, 1, 1), speakers_per_session=(2, 2), utts_per_speaker=(2, 3),
                 speaker_pool=(4, 2, 2)),
    # make demo: about a minute to generate, trains in minutes on 2 cores; 150 characters (docs/SYNTHMISP.md:
    # dev CER falls by about 9 points per doubling of training tokens per character), eval big enough to test;
    # lips blurred by the articulation knobs so the video is a smaller help than with clean lips, as on MISP
    # (docs/SYNTHMISP.md, "What each knob does")
    "demo": dict(sessions=(48, 6, 16), speakers_per_session=(2, 3), utts_per_speaker=(4, 6),
                 speaker_pool=(16, 6, 6), n_chars=150, lip_activity=(0.4, 1.0), articulation_jitter=0.15),
    # benchmarks and the leaderboard: about 4.2 h of training speech from 48 speakers, eval >= 1,000
    # segments from 24 speakers whose voices training never hears; 150 characters; lips blurrier than the
    # demo's, chosen at this size so that lips alone are weaker than audio and AV0 gains about the
    # paper's share over A0 (docs/SYNTHMISP.md, "What each knob does"; docs/notebook/video_strength.md)
    "mini": dict(sessions=(480, 24, 80), speakers_per_session=(2, 3), utts_per_speaker=(4, 6),
                 speaker_pool=(48, 12, 24), n_chars=150, lip_activity=(0.2, 0.65), articulation_jitter=0.4),
}


def knobs_for(preset: str, **overrides) -> Knobs:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    kw = dict(PRESETS[preset])
    kw.update({k: v for k, v in overrides.items() if v is not None})
    k = Knobs(**kw)
    bad = []
    if k.n_channels < 1:
        bad.append(f"n_channels must be >= 1 (got {k.n_channels})")
    if not k.mic_spacing_m > 0:
        bad.append(f"mic_spacing_m must be > 0 (got {k.mic_spacing_m})")
    if not 0 < k.spk_distance_m[0] <= k.spk_distance_m[1]:
        bad.append(f"spk_distance_m must be 0 < lo <= hi (got {k.spk_distance_m})")
    if not 0 <= k.spk_azimuth_deg[0] <= k.spk_azimuth_deg[1] <= 180:
        bad.append(f"spk_azimuth_deg must be 0 <= lo <= hi <= 180 (got {k.spk_azimuth_deg})")
    if not (0 <= k.mark_prob and 0 <= k.filler_prob and k.mark_prob + k.filler_prob <= 1):
        bad.append(f"mark_prob and filler_prob must be >= 0 with a sum <= 1 (got {k.mark_prob}, {k.filler_prob})")
    if not 0 <= k.lip_activity[0] <= k.lip_activity[1]:
        bad.append(f"lip_activity must be 0 <= lo <= hi (got {k.lip_activity})")
    if not k.articulation_jitter >= 0:
        bad.append(f"articulation_jitter must be >= 0 (got {k.articulation_jitter})")
    try:                                  # the voice mapping's own check (an eval pool too big to keep apart)
        from avsr.synthmisp.speech import VOICES
        voice_index("001", k, len(VOICES))
    except ValueError as e:
        bad.append(str(e))
    if k.n_chars:
        try:
            from avsr.synthmisp.text import restrict_words
            restrict_words(k.n_chars)
        except ValueError as e:
            bad.append(str(e))
    if bad:
        raise ValueError("; ".join(bad))
    return k


# ----------------------------------------------------------------------------- speakers
@dataclass
class SpeakerSpec:
    spk_id: str            # "001"
    voice: object          # avsr.synthmisp.speech.Voice
    face_seed: int
    gain_db: float
    lip_activity: float = 1.0


def speaker_ids(k: Knobs, split: str) -> List[str]:
    off = {"train": 0, "dev": k.speaker_pool[0], "eval": k.speaker_pool[0] + k.speaker_pool[1]}[split]
    n = k.speaker_pool[SPLITS.index(split)]
    return [f"{off + i + 1:03d}" for i in range(n)]


def voice_index(spk_id: str, k: Knobs, n_voices: int) -> int:
    """Index of a speaker's base voice in ``speech.VOICES`` (``n_voices`` of them).  With pools of at most
    ``n_voices`` speakers in all, speaker id *i* has voice *i - 1*: every speaker its own.  With more, the
    eval pool keeps the last ``speaker_pool[2]`` voices to itself, and the train and dev speakers cycle
    through the others (their voices differ by the per-speaker pitch and rate jitter only), so that no
    eval voice is heard in training."""
    i = int(spk_id) - 1
    n_train, n_dev, n_eval = k.speaker_pool
    if n_train + n_dev + n_eval <= n_voices:
        return i % n_voices
    if n_eval >= n_voices:
        raise ValueError(f"speaker_pool: {n_eval} eval speakers need {n_eval} of the {n_voices} voices to "
                         "themselves, and training needs at least one")
    shared = n_voices - n_eval
    if i >= n_train + n_dev:                      # an eval speaker
        return shared + (i - n_train - n_dev) % n_eval
    return i % shared


def make_speaker(seed: int, spk_id: str, k: Knobs) -> SpeakerSpec:
    """A speaker's voice, face and level depend only on (seed, spk_id) (the base voice also on the pool
    sizes when they exceed the voices: :func:`voice_index`)."""
    from avsr.synthmisp import speech
    rng = np.random.default_rng([seed, 7, int(spk_id)])
    base = speech.VOICES[voice_index(spk_id, k, len(speech.VOICES))]
    voice = dataclasses.replace(
        base,
        pitch=int(np.clip(base.pitch + rng.integers(-8, 9), 0, 99)),
        rate=int(np.clip(base.rate + rng.integers(-15, 16), 80, 400)),
    )
    face_seed, gain_db = int(rng.integers(2**31)), float(rng.uniform(*k.spk_gain_db))
    # drawn last, so the draws above (and every corpus generated before this knob) are unchanged
    activity = float(rng.uniform(*k.lip_activity)) if tuple(k.lip_activity) != (1.0, 1.0) else 1.0
    return SpeakerSpec(spk_id, voice, face_seed, gain_db, activity)


# ----------------------------------------------------------------------------- planning
@dataclass
class Turn:
    spk: int               # index into session speakers
    text: str
    start: float           # seconds in session
    wave: np.ndarray       # dry speech, 16 kHz
    events: list           # PhoneEvent list, times relative to the utterance
    undetected: bool = False
    chars: list = field(default_factory=list)   # (char, start, end) relative to the utterance (speech.char_times)

    @property
    def end(self) -> float:
        return self.start + len(self.wave) / SR


def session_name(split: str, idx: int, spk_ids: List[str], rng: np.random.Generator) -> str:
    room = int(rng.integers(1, 10))
    config = int(rng.integers(1, 10))
    return f"R{room:02d}_S{''.join(spk_ids)}_C{config:02d}_I{idx}"


def order_turns(counts: List[int], rng: np.random.Generator) -> List[int]:
    """Speaker order for the turns: random, avoiding the same speaker twice in a row when possible."""
    left = list(counts)
    order: List[int] = []
    while sum(left):
        cand = [s for s in range(len(left)) if left[s] and (not order or s != order[-1])]
        if not cand:
            cand = [s for s in range(len(left)) if left[s]]
        w = np.array([left[s] for s in cand], dtype=float)
        s = cand[int(rng.choice(len(cand), p=w / w.sum()))]
        order.append(s)
        left[s] -= 1
    return order


def place_turns(turns: List[Turn], k: Knobs, rng: np.random.Generator) -> None:
    """Assign start times: pauses between turns, or an overlap with the previous (other) speaker."""
    t_end_all = float(rng.uniform(0.5, 1.0))
    last_end = {}
    prev: Optional[Turn] = None
    for t in turns:
        dur = len(t.wave) / SR
        if prev is not None and prev.spk != t.spk and rng.random() < k.overlap_prob:
            ov = float(rng.uniform(*k.overlap_frac)) * min(dur, prev.end - prev.start)
            start = max(prev.end - ov, prev.start + 0.1, last_end.get(t.spk, 0.0) + 0.2)
        else:
            start = t_end_all + float(rng.uniform(*k.gap_s))
        t.start = round(start, 2)   # 10 ms grid, as MISP segment ids
        last_end[t.spk] = t.end
        t_end_all = max(t_end_all, t.end)
        prev = t


def covered_share(start: float, end: float, spans) -> float:
    """Share of ``[start, end]`` covered by the union of ``spans`` (``(s, e)`` pairs, clipped to it)."""
    iv = sorted((max(s, start), min(e, end)) for s, e in spans if s < end and e > start)
    cov, cur_s, cur_e = 0.0, None, None
    for s, e in iv:
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                cov += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None:
        cov += cur_e - cur_s
    return cov / (end - start)


def overlap_fraction(turns: List[Turn]) -> List[float]:
    """Per turn: share of its duration during which another speaker talks."""
    return [covered_share(t.start, t.end, [(o.start, o.end) for o in turns if o is not t and o.spk != t.spk])
            for t in turns]


# ----------------------------------------------------------------------------- acoustics
#: Speed of sound (m/s) for the inter-channel delays.
SPEED_OF_SOUND = 343.0
#: Half length (taps) of the windowed-sinc fractional-delay filter of the direct path; index
#: ``FD_HALF`` of a :func:`synth_rir` response is time 0.
FD_HALF = 16
#: Where the TV (the noise source) stands: azimuth range (deg) and distance range (m) from the array centre.
TV_AZIMUTH_DEG = (0.0, 180.0)
TV_DISTANCE_M = (3.0, 4.5)


def mic_positions(n_channels: int, spacing_m: float) -> np.ndarray:
    """Microphone positions float64 [C, 2] (m): SynthMISP's uniform linear array along x, centred
    at the origin, channel 0 at the most negative x (the real array's geometry is not in any
    source we have; this one is SynthMISP's choice)."""
    c = np.arange(int(n_channels), dtype=np.float64)
    return np.stack([(c - (n_channels - 1) / 2.0) * float(spacing_m), np.zeros_like(c)], axis=1)


def seat_positions(rng: np.random.Generator, n: int, azimuth_deg: Tuple[float, float],
                   distance_m: Tuple[float, float]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Talker seats in front of the array (y > 0): ``(positions [n, 2] m, azimuths deg, distances m)``.

    The azimuth range is cut into ``n`` equal sectors and each seat drawn uniformly inside its own
    sector (so seats are apart); sectors are assigned to the talkers in a random order, distances
    drawn uniformly from ``distance_m``.  Azimuth 0 points along +x (towards the last channel).
    """
    edges = np.linspace(float(azimuth_deg[0]), float(azimuth_deg[1]), n + 1)
    az = rng.uniform(edges[:-1], edges[1:])[rng.permutation(n)]
    dist = rng.uniform(float(distance_m[0]), float(distance_m[1]), size=n)
    rad = np.deg2rad(az)
    return np.stack([dist * np.cos(rad), dist * np.sin(rad)], axis=1), az, dist


def channel_delays(pos: np.ndarray, mics: np.ndarray) -> np.ndarray:
    """Direct-path delay (samples, float64 [C]) of a source at ``pos`` to each microphone, relative
    to the nearest microphone: ``(|pos - mic_c| - min_c' |pos - mic_c'|) / SPEED_OF_SOUND * SR``
    (near-field, spherical wave, in the array's plane).  The common propagation delay is left out,
    so the audio stays aligned with the transcripts and the video."""
    d = np.sqrt(np.sum((np.asarray(mics, np.float64) - np.asarray(pos, np.float64)[None]) ** 2, axis=1))
    return (d - d.min()) / SPEED_OF_SOUND * SR


def synth_rir(rng: np.random.Generator, rt60: float, drr_db: float, delay: float) -> np.ndarray:
    """Room response: a direct path delayed by ``delay`` samples (fractional: a Hann-windowed sinc
    of ``2 * FD_HALF`` taps; an integer delay is an exact unit impulse) plus an exponentially
    decaying noise tail (-60 dB at ``rt60``, starting 2 ms after the direct path) with a few early
    reflections, scaled to a direct-to-reverberant ratio of ``drr_db``.

    Index ``i`` of the returned response is time ``(i - FD_HALF) / SR``: convolve and drop the
    first ``FD_HALF`` output samples.
    """
    n = int(rt60 * SR)
    t = np.arange(n) / SR
    tail = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60)     # -60 dB at rt60
    tail[: int(0.002 * SR)] = 0.0                                    # tail starts after 2 ms
    for _ in range(4):                                               # a few early reflections
        i = int(rng.uniform(0.003, 0.02) * SR)
        tail[i] += rng.uniform(0.3, 0.6) * rng.choice([-1.0, 1.0])
    tail *= np.sqrt(10 ** (-drr_db / 10) / np.sum(tail ** 2))
    delay = float(delay)
    if delay < 0:
        raise ValueError(f"delay must be >= 0, got {delay}")
    d0 = int(np.floor(delay))
    frac = delay - d0
    h = np.zeros(FD_HALF + d0 + max(n, FD_HALF + 1), dtype=np.float64)
    if frac == 0.0:
        h[FD_HALF + d0] = 1.0
    else:
        taps = np.arange(-FD_HALF + 1, FD_HALF + 1)                  # positions d0 + taps
        x = taps - frac
        h[FD_HALF + d0 + taps] = np.sinc(x) * (0.5 + 0.5 * np.cos(np.pi * x / (FD_HALF + 1)))
    h[FD_HALF + d0:FD_HALF + d0 + n] += tail
    return h


def tv_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """TV-like noise: music-like harmonic notes plus speech-shaped, syllable-rate modulated noise."""
    t = np.arange(n) / SR
    music = np.zeros(n)
    pos = 0
    while pos < n:                                                   # a melody of random notes
        ln = int(rng.uniform(0.15, 0.6) * SR)
        f0 = 110.0 * 2 ** (rng.integers(0, 24) / 12)
        seg = slice(pos, min(n, pos + ln))
        tt = t[seg] - t[pos]
        env = np.minimum(1.0, tt / 0.01) * np.exp(-tt / rng.uniform(0.15, 0.5))
        note = sum((0.6 ** h) * np.sin(2 * np.pi * f0 * (h + 1) * tt) for h in range(4))
        music[seg] += env * note
        pos += ln
    white = rng.standard_normal(n + 512)
    # speech-shaped: long-term speech spectrum ~ low-passed (-6 dB/oct above ~500 Hz) pinkish noise
    b = np.exp(-np.arange(512) / 6.0)
    shaped = fftconvolve(white, b / b.sum(), mode="full")[512:512 + n]
    am_rate = rng.uniform(3.0, 6.0)
    am = 0.5 + 0.5 * np.abs(np.sin(np.pi * am_rate * t + rng.uniform(0, np.pi)))
    speechy = shaped * am
    music /= np.sqrt(np.mean(music ** 2)) + 1e-9
    speechy /= np.sqrt(np.mean(speechy ** 2)) + 1e-9
    return 0.5 * music + speechy


def _convolve_channels(sources: List[np.ndarray], rirs: List[List[np.ndarray]], n: int) -> np.ndarray:
    """``out[c] = sum_s sources[s] * rirs[s][c]`` (linear convolution), samples ``FD_HALF ..
    FD_HALF + n - 1`` (time 0 of the responses), float64 [C, n]; one FFT per source and per response."""
    from scipy import fft as sfft
    longest = max(len(h) for hs in rirs for h in hs)
    nfft = sfft.next_fast_len(n + longest + FD_HALF, real=True)
    acc = np.zeros((len(rirs[0]), nfft // 2 + 1), dtype=np.complex128)
    for x, hs in zip(sources, rirs):
        X = sfft.rfft(x, nfft)
        for c, h in enumerate(hs):
            acc[c] += X * sfft.rfft(h, nfft)
    return sfft.irfft(acc, nfft, axis=-1)[:, FD_HALF:FD_HALF + n]


def mix_session(turns: List[Turn], speakers: List[SpeakerSpec], k: Knobs,
                rng: np.random.Generator) -> Tuple[np.ndarray, Dict[str, float], Dict[str, np.ndarray]]:
    """Far-field mixture [n_channels, N] float, the drawn acoustic conditions, and the geometry.

    Talkers sit at :func:`seat_positions` in front of SynthMISP's linear array
    (:func:`mic_positions`); each talker reaches microphone ``c`` through its own
    :func:`synth_rir` whose direct path is delayed by :func:`channel_delays` (fractional samples).
    The TV noise source stands at its own seat (:data:`TV_AZIMUTH_DEG`, :data:`TV_DISTANCE_M`) and
    reaches the microphones the same way.  The geometry dict holds ``mic_positions_m`` [C, 2],
    ``speaker_positions_m`` [S, 2], ``speaker_azimuth_deg``, ``speaker_distance_m`` [S],
    ``speaker_delays`` [S, C] (samples), ``tv_position_m`` [2] and ``tv_delays`` [C].
    """
    n = int(np.ceil((max(t.end for t in turns) + rng.uniform(0.5, 1.0)) * SR))
    rt60 = float(rng.uniform(*k.rt60_s))
    n_spk = len(speakers)
    dry = np.zeros((n_spk, n))
    for t in turns:
        i = int(round(t.start * SR))
        dry[t.spk, i:i + len(t.wave)] += t.wave
    mics = mic_positions(k.n_channels, k.mic_spacing_m)
    pos, az, dist = seat_positions(rng, n_spk, k.spk_azimuth_deg, k.spk_distance_m)
    delays = np.stack([channel_delays(p, mics) for p in pos])                  # [S, C]
    rirs = [[synth_rir(rng, rt60, float(rng.uniform(*k.drr_db)), delays[s, c]) for c in range(k.n_channels)]
            for s in range(n_spk)]
    gains = [10 ** (sp.gain_db / 20) for sp in speakers]
    speech = _convolve_channels([g * d for g, d in zip(gains, dry)], rirs, n)
    active = np.abs(speech[0]) > 1e-4
    p_speech = float(np.mean(speech[0][active] ** 2)) if active.any() else 1e-6
    snr = float(rng.uniform(*k.snr_db))
    src = tv_noise(rng, n)
    tv_pos, _, _ = seat_positions(rng, 1, TV_AZIMUTH_DEG, TV_DISTANCE_M)
    tv_delays = channel_delays(tv_pos[0], mics)
    noise = _convolve_channels([src], [[synth_rir(rng, rt60, 3.0, tv_delays[c]) for c in range(k.n_channels)]], n)
    noise *= np.sqrt(p_speech / 10 ** (snr / 10) / np.mean(noise[0] ** 2))
    sensor = rng.standard_normal(speech.shape) * np.sqrt(p_speech) * 10 ** (-45 / 20)
    mix = speech + noise + sensor
    mix *= 0.9 / np.max(np.abs(mix))
    geom = {"mic_positions_m": mics, "speaker_positions_m": pos, "speaker_azimuth_deg": az,
            "speaker_distance_m": dist, "speaker_delays": delays, "tv_position_m": tv_pos[0],
            "tv_delays": tv_delays}
    return mix, {"snr_db": round(snr, 2), "rt60_s": round(rt60, 3)}, geom


# ----------------------------------------------------------------------------- transcripts
#: Filler-only interval texts and their weights.  ``嗯`` and ``啊。`` are dropped by the official
#: text rules (one filler after removing punctuation); ``嗯嗯`` is kept by them, as in the real
#: transcripts.  They are short and lie where nobody speaks: noise, never speech to learn.
FILLER_TEXTS = ("嗯", "啊。", "嗯嗯")
FILLER_WEIGHTS = (0.4, 0.4, 0.2)
FILLER_LEN_S = (0.12, 0.3)


def _silent_window(busy: List[Tuple[float, float]], lo: float, hi: float, length: float,
                   guard: float = 0.05) -> Optional[float]:
    """Earliest start ``s >= lo`` with ``[s, s + length]`` inside ``[lo, hi]`` and at least ``guard``
    away from every busy interval, or None."""
    s = lo
    for a, b in sorted(busy):
        if b + guard <= s:
            continue
        if a - guard >= s + length:
            break
        s = max(s, b + guard)
    return s if s + length <= hi else None


def speaker_intervals(turns: List[Turn], spk: int, rng: np.random.Generator, k: Knobs,
                      duration: float) -> List[Tuple[float, float, str]]:
    """The speaker's transcript tier: their turns, plus non-speech intervals in the gaps after them.

    After a turn followed by more than 0.5 s before the speaker's next turn, one draw decides:
    with ``mark_prob`` a ``<NOISE>``/``<DEAF>`` mark (0.3 s, from 0.1 s after the turn), with
    ``filler_prob`` a filler-only interval (:data:`FILLER_TEXTS`, :data:`FILLER_LEN_S` long) placed
    in the first stretch of that gap where no talker speaks (none if there is no such stretch).
    Interval times are rounded to 10 ms (what the TextGrid holds).
    """
    own = sorted((t for t in turns if t.spk == spk), key=lambda t: t.start)
    busy = [(t.start, t.end) for t in turns]
    out: List[Tuple[float, float, str]] = []
    for i, t in enumerate(own):
        out.append((t.start, t.end, t.text))
        nxt = own[i + 1].start if i + 1 < len(own) else duration
        if nxt - t.end > 0.5:
            r = rng.random()
            if r < k.mark_prob:
                s = t.end + 0.1
                out.append((s, min(s + 0.3, nxt - 0.1), str(rng.choice(MARKS))))
            elif r < k.mark_prob + k.filler_prob:
                text = FILLER_TEXTS[int(rng.choice(len(FILLER_TEXTS), p=FILLER_WEIGHTS))]
                length = float(rng.uniform(*FILLER_LEN_S))
                s = _silent_window(busy, t.end + 0.1, nxt - 0.1, length)
                if s is not None:
                    out.append((s, s + length, text))
    return [(round(s, 2), round(e, 2), x) for s, e, x in out]


# ----------------------------------------------------------------------------- one session
def _write_wavs(paths: List[str], mix: np.ndarray) -> None:
    for p, ch in zip(paths, mix):
        tmp = p + ".tmp.wav"
        sf.write(tmp, np.round(ch * 32767).astype(np.int16), SR, subtype="PCM_16", format="WAV")
        os.replace(tmp, p)


def generate_session(root: str, split: str, idx: int, seed: int, k: Knobs) -> dict:
    """Generate one session; returns counts and per-part timings."""
    from avsr.synthmisp import layout, render, speech, text as textmod
    from frontends.lip_boxes import write_official_detections

    rng = np.random.default_rng([seed, SPLITS.index(split), idx])
    timings = {"speech": 0.0, "mixing": 0.0, "video_render_encode": 0.0, "write": 0.0}
    pool = speaker_ids(k, split)
    n_spk = int(rng.integers(k.speakers_per_session[0], k.speakers_per_session[1] + 1))
    spk_ids = sorted(str(s) for s in rng.choice(pool, size=n_spk, replace=False))
    speakers = [make_speaker(seed, s, k) for s in spk_ids]
    name = session_name(split, idx, spk_ids, rng)
    done = os.path.join(root, "truth", split, f"{name}.json")
    if os.path.exists(done):   # finished earlier (written last): resume without redoing it
        with open(done, encoding="utf-8") as f:
            info = json.load(f)
        if "turns" in info:   # else: written by an older version (no character times), make it again
            return {**info, "timings": dict(timings), "resumed": True}

    # speech
    t0 = time.perf_counter()
    gen = textmod.TextGenerator(n_chars=k.n_chars)
    counts = [int(rng.integers(k.utts_per_speaker[0], k.utts_per_speaker[1] + 1)) for _ in speakers]
    turns: List[Turn] = []
    for s in order_turns(counts, rng):
        sent = gen.sentence(rng)
        utt = speech.synthesize(sent, speakers[s].voice)
        turns.append(Turn(s, sent, 0.0, utt.wave.astype(np.float64), list(utt.events),
                          chars=speech.char_times(utt)))
    timings["speech"] = time.perf_counter() - t0

    # timeline + audio
    t0 = time.perf_counter()
    place_turns(turns, k, rng)
    mix, cond, geom = mix_session(turns, speakers, k, rng)
    duration = mix.shape[1] / SR
    timings["mixing"] = time.perf_counter() - t0

    # video: per-speaker mouth tracks from their own phoneme timings
    t0 = time.perf_counter()
    num_frames = int(np.floor(duration * FPS))
    # articulation noise has its own stream: the session's draws stay those of a corpus without it
    arng = np.random.default_rng([seed, SPLITS.index(split), idx, 1])
    tracks, labels = [], []
    for s in range(n_spk):
        ev = []
        for t in turns:
            if t.spk == s:
                ev += [dataclasses.replace(e, start=e.start + t.start, end=e.end + t.start) for e in t.events]
        tracks.append(render.mouth_track(ev, num_frames, fps=FPS, activity=speakers[s].lip_activity,
                                         jitter=k.articulation_jitter, rng=arng))
        labels.append(viseme_labels(ev, num_frames))
    vpath = os.path.join(root, "video", split, "far", f"{name}_Far.mp4")
    scene = render.make_scene(rng, width=k.width, height=k.height,
                              face_seeds=[sp.face_seed for sp in speakers])
    true_boxes = render.render_session(vpath, scene, tracks, rng, fps=FPS, crf=k.crf,
                                       preset=k.x264_preset)
    timings["video_render_encode"] = time.perf_counter() - t0

    # detections: misses + a few mostly-undetected segments
    t0 = time.perf_counter()
    long_gaps: List[List[Tuple[int, int]]] = [[] for _ in range(n_spk)]
    for t in turns:
        if rng.random() < k.undetected_seg_prob:
            t.undetected = True
            a, b = int(t.start * FPS), int(np.ceil(t.end * FPS))
            cut = int(0.75 * (b - a))
            off = int(rng.integers(0, b - a - cut + 1))
            long_gaps[t.spk].append((a + off, a + off + cut))
    true_faces = render.face_boxes(scene, tracks, num_frames)
    tracks_det = render.detections_from_boxes(true_boxes, rng, miss_rate=k.miss_rate, long_gaps=long_gaps,
                                              true_face_boxes=true_faces)
    write_official_detections(os.path.join(root, "roi_coordinates", split, "far", "lip", f"{name}_Far.json"),
                              {sp.spk_id: tr for sp, tr in zip(speakers, tracks_det)})

    _write_wavs([os.path.join(root, "audio", split, "far", f"{name}_Far_{c}.wav")
                 for c in range(k.n_channels)], mix)
    tiers = []
    for s, sp in enumerate(speakers):
        ivs = speaker_intervals(turns, s, rng, k, duration)
        layout.write_textgrid(os.path.join(root, "transcription", split, f"{name}_Near_{sp.spk_id}.TextGrid"),
                              ivs, 0.0, round(duration, 2))
        tiers.append((sp.spk_id, ivs))
    seg_lines = layout.session_segment_lines(name, tiers)
    env = np.zeros((n_spk, num_frames), dtype=np.float32)
    for s in range(n_spk):
        dry = np.zeros(mix.shape[1])
        for t in turns:
            if t.spk == s:
                i = int(round(t.start * SR))
                dry[i:i + len(t.wave)] += t.wave
        env[s] = speech.speech_envelope(dry.astype(np.float32), sr=SR, fps=FPS)[:num_frames]
    ov = overlap_fraction(turns)
    tmp = os.path.join(root, "truth", split, f"{name}.tmp.npz")
    np.savez_compressed(
        tmp, speakers=np.array(spk_ids), tracks=np.stack(tracks).astype(np.float32),
        visemes=np.stack(labels), envelopes=env, boxes=np.asarray(true_boxes, np.float32),
        face_boxes=np.asarray(true_faces, np.float32),
        **{k_: np.asarray(v) for k_, v in geom.items()},
        turn_spk=np.array([t.spk for t in turns]), turn_start=np.array([t.start for t in turns]),
        turn_end=np.array([t.end for t in turns]), turn_overlap=np.array(ov),
        turn_undetected=np.array([t.undetected for t in turns]))
    os.replace(tmp, os.path.join(root, "truth", split, f"{name}.npz"))
    info = {"split": split, "session": name, "segments": len(turns),
            "speech_s": round(float(sum(len(t.wave) for t in turns) / SR), 3),
            "duration_s": round(duration, 3), "overlap40": int(sum(o >= 0.4 for o in ov)),
            "undetected": int(sum(t.undetected for t in turns)), **cond,
            "speaker_azimuth_deg": [round(float(v), 2) for v in geom["speaker_azimuth_deg"]],
            "speaker_distance_m": [round(float(v), 3) for v in geom["speaker_distance_m"]],
            "speaker_delays": [[round(float(v), 3) for v in row] for row in geom["speaker_delays"]],
            "official_segments": seg_lines, "turns": turn_truth(turns, spk_ids)}
    with open(done + ".tmp", "w", encoding="utf-8") as f:
        json.dump(info, f, indent=1, sort_keys=True)
    os.replace(done + ".tmp", done)
    timings["write"] = time.perf_counter() - t0
    return {**info, "timings": timings, "resumed": False}


def turn_truth(turns: List[Turn], spk_ids: List[str]) -> List[dict]:
    """Ground truth per turn (in the order spoken): ``speaker`` (3-digit id), ``start`` / ``end`` and
    ``chars`` = ``[[char, start, end], ...]`` in session seconds (rounded to 1 ms), ``text``.  A
    character's interval is its syllable without the silence at its edges
    (:func:`avsr.synthmisp.speech.char_times`); the dry speech of the turn starts at ``start``."""
    out = []
    for t in turns:
        out.append({"speaker": spk_ids[t.spk], "start": round(float(t.start), 3), "end": round(float(t.end), 3),
                    "text": t.text,
                    "chars": [[c, round(float(t.start + a), 3), round(float(t.start + b), 3)] for c, a, b in t.chars]})
    return out


def viseme_labels(events, num_frames: int) -> np.ndarray:
    """Per-frame viseme class index (into speech.VISEMES) at the frame centre; -1 where no event."""
    from avsr.synthmisp.speech import VISEMES
    lab = np.full(num_frames, -1, dtype=np.int8)
    centres = (np.arange(num_frames) + 0.5) / FPS
    for e in events:
        a, b = np.searchsorted(centres, [e.start, e.end])
        lab[a:b] = VISEMES.index(e.viseme)
    return lab


# ----------------------------------------------------------------------------- corpus
def _job(args):
    root, split, idx, seed, k = args
    try:
        return generate_session(root, split, idx, seed, k)
    except Exception as e:  # report which session failed, keep the others
        import traceback
        return {"split": split, "index": idx, "error": f"{type(e).__name__}: {e}",
                "traceback": traceback.format_exc()}


def generate(root: str, preset: str = "tiny", seed: int = 1, nj: int = 1, progress: bool = True,
             **overrides) -> dict:
    """Generate the whole corpus under ``root``; returns the summary (also written as JSON)."""
    k = knobs_for(preset, **overrides)
    for split in SPLITS:
        for sub in ("audio/{}/far", "video/{}/far", "transcription/{}", "roi_coordinates/{}/far/lip", "truth/{}"):
            os.makedirs(os.path.join(root, sub.format(split)), exist_ok=True)
    jobs = [(root, split, i, seed, k) for si, split in enumerate(SPLITS) for i in range(k.sessions[si])]
    t0 = time.perf_counter()
    results = []
    from tqdm import tqdm
    bar = tqdm(total=len(jobs), desc="SynthMISP sessions", disable=not progress, file=sys.stderr)
    if nj <= 1:
        for j in jobs:
            results.append(_job(j))
            bar.update()
    else:
        ctx = mp.get_context("fork")
        with ctx.Pool(nj) as pool:
            for r in pool.imap(_job, jobs):
                results.append(r)
                bar.update()
    bar.close()
    wall = time.perf_counter() - t0
    errors = [r for r in results if "error" in r]
    ok = [r for r in results if "error" not in r]
    meta = {"generator": "avsr.synthmisp", "preset": preset, "seed": seed, "knobs": k.to_dict(),
            "splits": {s: {"sessions": sum(r["split"] == s for r in ok),
                           "segments": sum(r["segments"] for r in ok if r["split"] == s),
                           "speech_hours": round(sum(r["speech_s"] for r in ok if r["split"] == s) / 3600, 4),
                           "session_hours": round(sum(r["duration_s"] for r in ok if r["split"] == s) / 3600, 4),
                           "segments_overlap_ge_40pct": sum(r["overlap40"] for r in ok if r["split"] == s),
                           "segments_mostly_undetected": sum(r["undetected"] for r in ok if r["split"] == s)}
                       for s in SPLITS}}
    with open(os.path.join(root, "synthmisp.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1, sort_keys=True, ensure_ascii=False)
    if not errors:
        from avsr.synthmisp.layout import write_segment_file
        for split in SEGMENT_SPLITS:
            write_segment_file(os.path.join(root, "segments", f"{split}.txt"),
                               [ln for r in ok if r["split"] == split for ln in r["official_segments"]])
    parts = {p: round(sum(r["timings"][p] for r in ok), 2) for p in ok[0]["timings"]} if ok else {}
    stats = {"wall_s": round(wall, 2), "nj": nj, "cpu_s_by_part": parts,
             "resumed_sessions": sum(bool(r.get("resumed")) for r in ok),
             "sessions": [{kk: r[kk] for kk in ("split", "session", "segments", "duration_s", "snr_db")}
                          for r in ok], "errors": errors}
    with open(os.path.join(root, "generation_stats.json"), "w", encoding="utf-8") as f:
        json.dump(stats, f, indent=1)
    if errors:
        for e in errors:
            print(f"ERROR session {e['split']}/{e['index']}: {e['error']}", file=sys.stderr)
        raise SystemExit(f"{len(errors)} session(s) failed; see {root}/generation_stats.json")
    return {**meta, "wall_s": stats["wall_s"], "cpu_s_by_part": parts}
