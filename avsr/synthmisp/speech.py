"""SynthMISP speech: Mandarin TTS with phoneme timings from libespeak-ng (ctypes).

``synthesize(text, voice)`` turns a sentence over the SynthMISP vocabulary into a
16 kHz waveform together with time-aligned phoneme / viseme events, which the
video renderer turns into mouth movements.

How it works
------------
* The text is converted to toned pinyin with :func:`avsr.synthmisp.text.to_pinyin`
  (one syllable per character, neutral tone ``5``) and read by the espeak-ng
  voice ``cmn-latn-pinyin`` (plain ``cmn`` would read the tone digits as English
  numbers), e.g. ``"wo3 men5 qu4 gong1 yuan2"``.
* ``libespeak-ng.so.1`` is driven through ctypes (in a server process, see below) in
  ``AUDIO_OUTPUT_SYNCHRONOUS`` mode with ``espeakINITIALIZE_PHONEME_EVENTS``:
  the synth callback receives the 22050 Hz samples and an event list in which
  every phoneme carries its start sample.  Phoneme *i* lasts until phoneme
  *i+1* starts; the last one until the end of the audio.
* The audio is resampled to 16 kHz (``resample_poly(320, 441)``), leading and
  trailing silence is trimmed (keeping ``PAD`` seconds), the peak is normalised
  to ``PEAK`` and all event times are shifted by the same amount, so times are in
  seconds from the first sample of ``Utterance.wave`` and the events tile
  ``[0, duration]`` exactly.
* libespeak-ng keeps hidden state between syntheses (e.g. the function-static
  pitch-flutter phase in ``wavegen.c``), so two calls in one process would not
  give the same bytes.  Each process therefore starts (lazily, on first use) a
  small espeak-ng *server* process (Python + ctypes only, no numpy) that loads
  the library and initialises it once, and serves every request from a fresh
  ``fork`` of that pristine state (C ``rand()`` re-seeded, all voice parameters
  set).  Output bytes depend only on ``(text, voice)``; a request costs a fork
  (~5 ms).  After ``os.fork`` of the *calling* process the child notices the pid
  change and starts its own server.  The server exits when its parent closes the
  pipe (at exit, or when the parent dies).  Not thread safe: one synthesis at a
  time per process.

Viseme classes
--------------
``VISEMES = ("sil", "bilabial", "labiodental", "rounded", "spread", "open", "other")``.
espeak-ng's phoneme mnemonics for ``cmn-latn-pinyin`` (the complete inventory,
collected by synthesising every toned syllable pypinyin knows) map as follows;
diphthongs and triphthongs are classed by the lip shape that dominates them
(the rounded glide for u-/ü- finals with mid vowels, the open nucleus for a-finals):

==============  ==========================================================  =========================
viseme          espeak mnemonics                                            pinyin
==============  ==========================================================  =========================
sil             ``_`` ``_:`` ``_!`` ``_|`` ... (every mnemonic starting     pauses
                with ``_``)
bilabial        ``p`` ``ph`` ``m``                                          b p m
labiodental     ``f``                                                       f
rounded         ``w`` ``u`` ``o`` ``ou`` ``uo`` ``u@`` ``ong`` ``uei``      w u o ou uo un ong ui,
                ``y`` ``yE`` ``y&`` ``y@`` ``yu`` ``yi`` ``;`` ``io``       ü üe üan ün yong yu yo,
                ``iou``                                                     iu
spread          ``i`` ``i[`` ``i.`` ``iE`` ``ei`` ``E`` ``@`` ``o-`` ``@r``  i (incl. zi/zhi), ie, ei,
                ``j``; sibilants ``ts`` ``tsh`` ``s`` ``ts.`` ``ts.h``      ê, e, en/eng schwa, er, y;
                ``s.`` ``tS;`` ``tS;h`` ``S;``                              z c s zh ch sh j q x
open            ``a`` ``A`` ``ai`` ``Au`` ``iA`` ``ua`` ``uai``             a ai ao ia iao ua uai, an ang
other           ``t`` ``th`` ``k`` ``kh`` ``X`` ``n`` ``N`` ``N-`` ``l``     d t g k h n ng l r
                ``z.``
==============  ==========================================================  =========================

Unknown mnemonics (another espeak-ng version) fall back to ``other`` (consonant-
like) -- never silently to a lip class.

Short pauses inside an utterance (``_|`` etc. shorter than ``CLOSURE_MAX``
seconds) are espeak's stop closures and word junctures; they are merged into the
*following* phoneme, because during the closure of a /b/ or /p/ the lips are
already shut.  Longer pauses stay ``sil``.
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import glob
import json
import os
import struct
import subprocess
import sys
from dataclasses import dataclass, field

import numpy as np
from scipy.signal import resample_poly

from frontends.constants import SAMPLE_RATE, VIDEO_FPS

from .text import to_pinyin

__all__ = [
    "VISEMES",
    "PHONEME_TO_VISEME",
    "Voice",
    "VOICES",
    "PhoneEvent",
    "Syllable",
    "Utterance",
    "EspeakError",
    "synthesize",
    "char_times",
    "phoneme_to_viseme",
    "speech_envelope",
    "SAMPLE_RATE",
]

# SAMPLE_RATE (16 kHz, the rate of every synthesised utterance): frontends.constants
ESPEAK_RATE = 22050
PEAK = 0.5
PAD = 0.05  # seconds of silence kept before the first / after the last sound
SILENCE_REL = 0.02  # trimming threshold relative to the peak
CLOSURE_MAX = 0.12  # inner pauses shorter than this are merged into the next phoneme

VISEMES = ("sil", "bilabial", "labiodental", "rounded", "spread", "open", "other")

_MAP_TABLE = {
    "bilabial": "p ph m",
    "labiodental": "f",
    "rounded": "w u o ou uo u@ ong uei y yE y& y@ yu yi ; io iou",
    "spread": "i i[ i. iE ei E @ o- @r j ts tsh s ts. ts.h s. tS; tS;h S;",
    "open": "a A ai Au iA ua uai",
    "other": "t th k kh X n N N- l z.",
}
PHONEME_TO_VISEME: dict[str, str] = {ph: vis for vis, s in _MAP_TABLE.items() for ph in s.split()}


def phoneme_to_viseme(phoneme: str) -> str:
    """Viseme class of an espeak-ng mnemonic (see the module table)."""
    if phoneme.startswith("_") or phoneme == "":
        return "sil"
    return PHONEME_TO_VISEME.get(phoneme, "other")


# ---------------------------------------------------------------------------
# Data classes
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Voice:
    """One synthetic speaker.

    ``variant``: espeak-ng voice variant (``m1``..``m7``, ``f1``..``f5``, ``klatt*``, ...);
    ``pitch``: base pitch 0-100 (espeak default 50); ``range``: pitch range 0-100
    (default 50; 0 = monotone); ``rate``: speed in words (= syllables here) per
    minute, 80-450; ``wordgap``: extra pause between syllables in units of 10 ms.
    """

    name: str
    variant: str
    pitch: int = 50
    range: int = 50
    rate: int = 175
    wordgap: int = 0
    gender: str = "m"

    @property
    def espeak_name(self) -> str:
        return f"cmn-latn-pinyin+{self.variant}" if self.variant else "cmn-latn-pinyin"


# Twelve clearly different speakers: formant variants of both genders,
# spread base pitches, pitch ranges and speaking rates.
VOICES: list[Voice] = [
    Voice("M1", "m1", pitch=25, range=40, rate=165, gender="m"),
    Voice("M2", "m3", pitch=55, range=60, rate=185, gender="m"),
    Voice("M3", "m7", pitch=40, range=50, rate=150, gender="m"),
    Voice("M4", "m2", pitch=70, range=35, rate=200, gender="m"),
    Voice("M5", "m6", pitch=45, range=65, rate=175, gender="m"),
    Voice("M6", "klatt", pitch=35, range=45, rate=170, gender="m"),
    Voice("F1", "f1", pitch=45, range=60, rate=170, gender="f"),
    Voice("F2", "f2", pitch=70, range=50, rate=190, gender="f"),
    Voice("F3", "f3", pitch=55, range=70, rate=160, gender="f"),
    Voice("F4", "f4", pitch=80, range=45, rate=180, gender="f"),
    Voice("F5", "f5", pitch=35, range=55, rate=205, gender="f"),
    Voice("M7", "klatt4", pitch=60, range=55, rate=175, gender="m"),
]

# More speakers: espeak-ng's other human-sounding variants (robotic, whispering and croaking
# ones left out, and the few that override the rate or sound female with a male label), each
# with its own base pitch (women's at least 45), range
# and rate from a fixed table; speaker id i uses VOICES[(i - 1) % len(VOICES)], so the first
# twelve ids keep their voices.
_MORE_VARIANTS = (
    ("adam", "m"), ("Alex", "m"), ("Alicia", "f"), ("Andy", "m"), ("aunty", "f"),
    ("belinda", "f"), ("benjamin", "m"), ("boris", "m"), ("caleb", "m"), ("david", "m"), ("Denis", "m"),
    ("ed", "m"), ("edward", "m"), ("Gene", "m"), ("Hugo", "m"), ("iven", "m"), ("Jacky", "m"),
    ("john", "m"), ("Lee", "m"), ("linda", "f"), ("max", "m"), ("Michael", "m"), ("Mike", "m"),
    ("paul", "m"), ("steph", "f"), ("steph2", "f"), ("steph3", "f"), ("m4", "m"), ("m5", "m"), ("m8", "m"), ("klatt2", "m"),
    ("klatt3", "m"), ("klatt5", "m"), ("klatt6", "m"), ("norbert", "m"), ("travis", "m"), ("victor", "m"),
)
VOICES += [
    Voice(f"V{i + 13}", v, pitch=(20 if g == "m" else 45) + (37 * i) % (61 if g == "m" else 36), range=35 + (23 * i) % 36, rate=150 + (29 * i) % 56,
          gender=g)
    for i, (v, g) in enumerate(_MORE_VARIANTS)
]


@dataclass(frozen=True)
class PhoneEvent:
    phoneme: str  # espeak-ng mnemonic ("_" for silence)
    viseme: str  # one of VISEMES
    start: float  # seconds from the start of Utterance.wave
    end: float


@dataclass(frozen=True)
class Syllable:
    char: str
    pinyin: str  # toned, e.g. "hao3"
    start: float
    end: float


@dataclass
class Utterance:
    wave: np.ndarray  # float32 [N] at sr, peak PEAK
    events: list[PhoneEvent]  # tile [0, duration], seconds from wave[0]
    sr: int = SAMPLE_RATE
    text: str = ""
    pinyin: list[str] = field(default_factory=list)
    syllables: list[Syllable] = field(default_factory=list)  # one per character, tile [0, duration]
    voice: Voice | None = None

    @property
    def duration(self) -> float:
        return len(self.wave) / self.sr


class EspeakError(RuntimeError):
    """libespeak-ng is missing, or it failed."""


# ---------------------------------------------------------------------------
# ctypes binding
# ---------------------------------------------------------------------------
_EV_WORD, _EV_END, _EV_PHONEME = 1, 5, 7
_P_RATE, _P_VOLUME, _P_PITCH, _P_RANGE, _P_WORDGAP = 1, 2, 3, 4, 7  # espeak_PARAMETER
_INSTALL_HINT = "install it with `apt-get install espeak-ng` (Debian/Ubuntu) or your system's espeak-ng package"

# The espeak-ng server ("zygote").  libespeak-ng keeps hidden synthesis state
# between calls (e.g. the function-static pitch-flutter phase in wavegen.c), so
# the same text would not give the same bytes twice in one process.  The zygote
# is a small separate Python process (ctypes only) that initialises espeak-ng
# once and never synthesises itself: every request is served by a fork of it,
# which starts from exactly the same library state and exits afterwards.
# Protocol on its stdin/stdout: 4-byte little-endian length + payload.
#   startup reply:  b"OK" or b"ER<message>"
#   request:        JSON {"text", "voice", "params": [[id, value], ...]}
#   reply:          b"OK" + u32 n_events + n_events * (i32 type, i32 sample, i32 textpos, 8s name) + int16 samples
#                   or b"ER<message>"
_ZYGOTE_SRC = r"""
import ctypes, json, os, struct, sys
inp, out = sys.stdin.buffer, sys.stdout.buffer
def send(b):
    out.write(struct.pack('<I', len(b)) + b); out.flush()
def recv():
    h = inp.read(4)
    if len(h) < 4:
        return None
    n = struct.unpack('<I', h)[0]
    return inp.read(n)
class EvId(ctypes.Union):
    _fields_ = [('number', ctypes.c_int), ('name', ctypes.c_char_p), ('string', ctypes.c_char * 8)]
class Ev(ctypes.Structure):
    _fields_ = [('type', ctypes.c_int), ('unique_identifier', ctypes.c_uint), ('text_position', ctypes.c_int),
                ('length', ctypes.c_int), ('audio_position', ctypes.c_int), ('sample', ctypes.c_int),
                ('user_data', ctypes.c_void_p), ('id', EvId)]
CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(Ev))
chunks, evs = [], []
def cb(wav, n, ev):
    if n > 0:
        chunks.append(ctypes.string_at(wav, 2 * n))
    i = 0
    while ev[i].type != 0:
        e = ev[i]
        if e.type in (1, 5, 7):
            name = bytes(e.id.string) if e.type == 7 else b''
            evs.append(struct.pack('<iii8s', e.type, e.sample, e.text_position, name))
        i += 1
    return 0
try:
    lib = None
    err = ''
    for name in sys.argv[2:]:
        try:
            lib = ctypes.CDLL(name); break
        except OSError as e:
            err = str(e)
    if lib is None:
        raise RuntimeError('libespeak-ng (libespeak-ng.so.1) could not be loaded: ' + err)
    libc = ctypes.CDLL(None)
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetSynthCallback.argtypes = [CB]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                 ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    # AUDIO_OUTPUT_SYNCHRONOUS, espeakINITIALIZE_PHONEME_EVENTS
    sr = lib.espeak_Initialize(2, 0, sys.argv[1].encode(), 1)
    if sr != 22050:
        raise RuntimeError('espeak_Initialize failed or gave sample rate %d' % sr)
    cbf = CB(cb)
    lib.espeak_SetSynthCallback(cbf)
    send(b'OK')
except Exception as e:
    send(b'ER' + str(e).encode()); sys.exit(1)
while True:
    req = recv()
    if req is None:
        break
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            q = json.loads(req)
            rc = lib.espeak_SetVoiceByName(q['voice'].encode())
            if rc != 0:
                raise RuntimeError('espeak-ng voice %r not available (error %d)' % (q['voice'], rc))
            for par, val in q['params']:
                if lib.espeak_SetParameter(par, val, 0) != 0:
                    raise RuntimeError('espeak_SetParameter(%d, %d) failed' % (par, val))
            libc.srand(12345)
            data = q['text'].encode()
            rc = lib.espeak_Synth(data, len(data) + 1, 0, 1, 0, 1, None, None)
            if rc != 0:
                raise RuntimeError('espeak_Synth failed (error %d)' % rc)
            msg = b'OK' + struct.pack('<I', len(evs)) + b''.join(evs) + b''.join(chunks)
        except Exception as e:
            msg = b'ER' + str(e).encode()
        view = memoryview(msg)
        while view:
            view = view[os.write(w, view):]
        os._exit(0)
    os.close(w)
    parts = []
    while True:
        b = os.read(r, 1 << 16)
        if not b:
            break
        parts.append(b)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    msg = b''.join(parts)
    if status != 0 or msg[:2] not in (b'OK', b'ER'):
        msg = b'ERespeak-ng worker died (wait status %d)' % status
    send(msg)
"""


def _find_data_path() -> str | None:
    cands = []
    env = os.environ.get("ESPEAK_DATA_PATH")
    if env:
        cands += [env, os.path.join(env, "espeak-ng-data")]
    cands += sorted(glob.glob("/usr/lib/*/espeak-ng-data"))
    cands += ["/usr/lib/espeak-ng-data", "/usr/share/espeak-ng-data", "/usr/local/share/espeak-ng-data",
              "/usr/local/lib/espeak-ng-data", "/opt/homebrew/share/espeak-ng-data"]
    for c in cands:
        if os.path.isfile(os.path.join(c, "phontab")) and os.path.isfile(os.path.join(c, "cmn_dict")):
            return c
    return None


def _library_names() -> list[str]:
    names = ["libespeak-ng.so.1"]
    found = ctypes.util.find_library("espeak-ng")
    if found:
        names.append(found)
    names.append("libespeak-ng.dylib")
    return names


class _Espeak:
    """Client of the espeak-ng zygote of this process (started lazily, restarted after fork)."""

    def __init__(self):
        libs = _library_names()
        loaded = False
        for n in libs:
            try:
                ctypes.CDLL(n)
                loaded = True
                break
            except OSError:
                continue
        if not loaded:
            raise EspeakError(f"libespeak-ng (libespeak-ng.so.1) not found; {_INSTALL_HINT}")
        self.data_path = _find_data_path()
        if self.data_path is None:
            raise EspeakError(
                "espeak-ng data with the Mandarin dictionary (cmn_dict) not found; "
                f"set ESPEAK_DATA_PATH or {_INSTALL_HINT}"
            )
        self.pid = os.getpid()
        self.proc = subprocess.Popen(
            [sys.executable, "-S", "-c", _ZYGOTE_SRC, self.data_path, *libs],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )
        reply = self._recv()
        if reply[:2] != b"OK":
            self.close()
            raise EspeakError(f"espeak-ng could not be initialised: {reply[2:].decode(errors='replace')}; {_INSTALL_HINT}")

    def _send(self, payload: bytes) -> None:
        self.proc.stdin.write(struct.pack("<I", len(payload)) + payload)
        self.proc.stdin.flush()

    def _recv(self) -> bytes:
        head = self.proc.stdout.read(4)
        if len(head) < 4:
            raise EspeakError("the espeak-ng server process ended unexpectedly")
        n = struct.unpack("<I", head)[0]
        data = self.proc.stdout.read(n)
        if len(data) < n:
            raise EspeakError("the espeak-ng server process ended unexpectedly")
        return data

    def close(self) -> None:
        if self.pid != os.getpid():  # the zygote belongs to the parent process
            return
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        try:
            self.proc.stdout.close()
        except OSError:
            pass

    def synth(self, text: str, voice: Voice) -> tuple[np.ndarray, list[tuple[int, int, int, str]]]:
        params = [[_P_RATE, int(voice.rate)], [_P_VOLUME, 100], [_P_PITCH, int(voice.pitch)],
                  [_P_RANGE, int(voice.range)], [_P_WORDGAP, int(voice.wordgap)]]
        self._send(json.dumps({"text": text, "voice": voice.espeak_name, "params": params}).encode())
        msg = self._recv()
        if msg[:2] != b"OK":
            raise EspeakError(msg[2:].decode(errors="replace") + f" (text {text!r})")
        n_ev = struct.unpack_from("<I", msg, 2)[0]
        off = 6
        events = []
        for typ, sample, textpos, name in struct.iter_unpack("<iii8s", msg[off:off + 20 * n_ev]):
            events.append((typ, sample, textpos, name.split(b"\0", 1)[0].decode("ascii", "replace")))
        wave = np.frombuffer(msg[off + 20 * n_ev:], dtype="<i2").astype(np.int16)
        return wave, events


_ENGINE: _Espeak | None = None
_STALE: list[_Espeak] = []  # zygote clients inherited through fork (kept alive, never used)


def _engine() -> _Espeak:
    global _ENGINE
    if _ENGINE is not None and _ENGINE.pid != os.getpid():
        _STALE.append(_ENGINE)  # forked child: the parent's server is not ours
        _ENGINE = None
    if _ENGINE is None:
        _ENGINE = _Espeak()
        atexit.register(_ENGINE.close)
    return _ENGINE


# ---------------------------------------------------------------------------
# Synthesis
# ---------------------------------------------------------------------------
def _phone_segments(raw_events, n_samples: int) -> tuple[list[tuple[str, int, int]], list[tuple[int, int]]]:
    """(phoneme, start, end) in 22050 Hz samples tiling [0, n_samples]; word (text_pos, start) list."""
    phones: list[tuple[str, int]] = []
    words: list[tuple[int, int]] = []
    for typ, sample, textpos, name in raw_events:
        s = min(max(int(sample), 0), n_samples)
        if typ == _EV_PHONEME:
            phones.append((name, s))
        elif typ == _EV_WORD:
            words.append((textpos, s))
    segs: list[tuple[str, int, int]] = []
    if not phones:
        return [("_", 0, n_samples)], words
    if phones[0][1] > 0:
        segs.append(("_", 0, phones[0][1]))
    for i, (name, s) in enumerate(phones):
        e = phones[i + 1][1] if i + 1 < len(phones) else n_samples
        if e > s:
            segs.append((name, s, e))
    return segs, words


def synthesize(text: str, voice: Voice) -> Utterance:
    """Synthesise ``text`` (SynthMISP characters) with ``voice``.

    Returns an :class:`Utterance` with a float32 16 kHz ``wave`` (peak ``PEAK``),
    ``events`` (phoneme/viseme intervals tiling ``[0, duration]``, in seconds) and
    per-character ``syllables``.
    """
    sylls = to_pinyin(text)
    chars = [c for c in text if not (c.isspace() or c in "，。！？、；：,.!?;:")]
    if not sylls:
        raise ValueError(f"nothing to say in {text!r}")
    espeak_text = " ".join(sylls)
    raw, raw_events = _engine().synth(espeak_text, voice)
    if raw.size == 0:
        raise EspeakError(f"espeak-ng produced no audio for {espeak_text!r}")
    n22 = len(raw)
    segs, words = _phone_segments(raw_events, n22)

    # 22050 -> 16000 Hz
    x = resample_poly(raw.astype(np.float64) / 32768.0, 320, 441)
    scale = SAMPLE_RATE / ESPEAK_RATE

    # trim leading / trailing silence, keeping PAD seconds
    peak = float(np.max(np.abs(x)))
    if peak <= 0.0:
        raise EspeakError(f"espeak-ng produced silence for {espeak_text!r}")
    loud = np.flatnonzero(np.abs(x) > SILENCE_REL * peak)
    pad = int(round(PAD * SAMPLE_RATE))
    a = max(int(loud[0]) - pad, 0)
    b = min(int(loud[-1]) + 1 + pad, len(x))
    wave = (x[a:b] * (PEAK / peak)).astype(np.float32)
    n = len(wave)
    dur = n / SAMPLE_RATE

    def to_t(s22: int) -> float:
        return min(max(s22 * scale - a, 0.0), float(n)) / SAMPLE_RATE

    # phoneme events on the trimmed time axis
    ev: list[list] = []
    for name, s, e in segs:
        t0, t1 = to_t(s), to_t(e)
        if t1 > t0:
            ev.append([name, t0, t1])
    # short inner pauses are closures of the following phoneme
    merged: list[list] = []
    for i, (name, t0, t1) in enumerate(ev):
        is_sil = phoneme_to_viseme(name) == "sil"
        if is_sil and 0 < i < len(ev) - 1 and (t1 - t0) < CLOSURE_MAX and phoneme_to_viseme(ev[i + 1][0]) != "sil":
            ev[i + 1][1] = t0
            continue
        if merged and is_sil and phoneme_to_viseme(merged[-1][0]) == "sil":
            merged[-1][2] = t1  # join adjacent pauses
            continue
        merged.append([name, t0, t1])
    if not merged:
        merged = [["_", 0.0, dur]]
    merged[0][1] = 0.0
    merged[-1][2] = dur
    events = [PhoneEvent(name, phoneme_to_viseme(name), float(t0), float(t1)) for name, t0, t1 in merged]

    # syllables: one espeak word per syllable, text positions are 1-based character offsets
    starts = []
    pos = 1
    for syl in sylls:
        starts.append(pos)
        pos += len(syl) + 1
    word_start = {}
    for tp, s in words:
        word_start.setdefault(tp, s)
    syllables: list[Syllable] = []
    if all(p in word_start for p in starts):
        bounds = [to_t(word_start[p]) for p in starts] + [to_t(n22)]
        for i, (c, syl) in enumerate(zip(chars, sylls)):
            end = dur if i == len(sylls) - 1 else max(bounds[i + 1], bounds[i])
            syllables.append(Syllable(c, syl, bounds[i], end))
    return Utterance(wave=wave, events=events, sr=SAMPLE_RATE, text=text, pinyin=sylls, syllables=syllables, voice=voice)


def char_times(utt: Utterance) -> list[tuple[str, float, float]]:
    """Per character of ``utt``: ``(char, start, end)`` in seconds from ``utt.wave[0]``.

    Each character's interval is its syllable (:attr:`Utterance.syllables`, bounded by espeak-ng's
    word events) without the silence (``sil`` phoneme events) at its edges: the first character
    starts at its first sound, not at the leading pad, the last ends at its last sound.  A syllable
    made only of silence keeps its whole interval.  Empty when espeak-ng gave no word events.
    """
    sounds = [(e.start, e.end) for e in utt.events if e.viseme != "sil"]
    out: list[tuple[str, float, float]] = []
    for syl in utt.syllables:
        inside = [(max(a, syl.start), min(b, syl.end)) for a, b in sounds if a < syl.end and b > syl.start]
        inside = [(a, b) for a, b in inside if b > a]
        if inside:
            out.append((syl.char, float(inside[0][0]), float(inside[-1][1])))
        else:
            out.append((syl.char, float(syl.start), float(syl.end)))
    return out


def speech_envelope(wave: np.ndarray, sr: int = SAMPLE_RATE, fps: float = float(VIDEO_FPS)) -> np.ndarray:
    """RMS of ``wave`` per video frame (frame ``i`` covers ``[i/fps, (i+1)/fps)``), float32 [ceil(N*fps/sr)]."""
    x = np.asarray(wave, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError("wave must be 1-D")
    hop = sr / fps
    n_frames = int(np.ceil(len(x) / hop)) if len(x) else 0
    out = np.zeros(n_frames, np.float32)
    edges = np.round(np.arange(n_frames + 1) * hop).astype(np.int64)
    edges[-1] = len(x)
    csum = np.concatenate([[0.0], np.cumsum(x * x)])
    lens = np.maximum(edges[1:] - edges[:-1], 1)
    out[:] = np.sqrt(np.maximum(csum[edges[1:]] - csum[edges[:-1]], 0.0) / lens)
    return out
