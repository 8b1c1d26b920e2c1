"""SynthMISP video: mouth tracks from viseme events, drawn faces, h264 encoding, lip and face boxes.

Pipeline (one session)::

    tracks = [mouth_track(events_of_speaker, T) for each speaker]     # float32 [T, 3] each
    scene = make_scene(rng, width=640, height=360, face_seeds=[...])  # background, faces, lighting
    true_boxes = render_session("x_Far.mp4", scene, tracks, rng)      # lip boxes float32 [n_faces, T, 4]
    faces = face_boxes(scene, tracks, T)                              # face boxes float32 [n_faces, T, 4]
    dets = detections_from_boxes(true_boxes, rng, long_gaps=..., true_face_boxes=faces)
    # -> frontends.lip_boxes.write_official_detections (the release's frame-keyed form)

Mouth track channels (all float32, one row per 25 fps frame):

0. ``opening``  -- lip aperture, 0 = lips pressed together, 1 = jaw fully open ("a").
1. ``width``    -- mouth width, 0 = narrow/neutral, 1 = fully spread ("i").
2. ``rounding`` -- signed lip posture: +1 = rounded and protruded ("u"), -1 = lower lip
   tucked under the upper teeth ("f"), 0 = neutral.

Drawing is vectorised: cv2 anti-aliased primitives (sub-pixel, ``shift=4``) for the face
and a numpy soft-coverage patch (analytic ellipse distance) for the mouth, so lip shapes
change smoothly with sub-pixel accuracy.  The per-frame Python loop is over frames and
faces only, never over pixels.  Frames are RGB uint8.

Everything that moves smoothly over time (head motion, blinks, lighting drift) is a closed-form
function of the absolute frame time drawn from parameters fixed in :func:`make_scene`, so a
session rendered in chunks is identical to one rendered in one go; per-frame camera noise is
drawn from the ``rng`` passed to :func:`render_frames` (consumed in frame order).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

from frontends.constants import VIDEO_FPS
from frontends.lip_boxes import SpeakerTrack

FPS = VIDEO_FPS

# ----------------------------------------------------------------------------- visemes -> targets
#: Articulatory targets per viseme class: (opening, width, rounding); see the module docstring.
#: ``sil`` is a relaxed closed mouth with the lips barely parted (opening just above
#: PRESS_OPENING, so the lips are at full thickness); ``bilabial`` presses the lips together
#: (opening 0: drawn thinner, with a dark seam); ``labiodental`` shows the upper teeth resting on
#: a raised, tucked lower lip; ``rounded`` is a small round opening with protruded lips;
#: ``spread`` a wide mouth with a thin opening showing teeth; ``open`` a large opening (jaw down,
#: teeth and tongue visible); ``other`` (mostly consonants) a small neutral opening.
#: Openings roughly follow acoustic energy (open > rounded > spread vowels > consonants), which
#: is what makes the mouth track correlate with the talker's speech envelope (proxy check 2).
VISEME_TARGETS = {
    "sil": (0.06, 0.40, 0.0),
    "bilabial": (0.00, 0.40, 0.0),
    "labiodental": (0.30, 0.25, -1.0),
    "rounded": (0.60, 0.00, 1.0),
    "spread": (0.35, 1.00, 0.0),
    "open": (1.00, 0.55, 0.0),
    "other": (0.20, 0.50, 0.0),
}
SIL = VISEME_TARGETS["sil"]

#: Coarticulation: Gaussian smoothing of the frame-sampled targets with this standard deviation
#: (seconds).  It is two-sided, i.e. anticipatory plus carry-over coarticulation; at 25 fps
#: 30 ms is 0.75 frame, so a 3-frame phone reaches ~97 % of its target in its middle and a
#: 1-frame phone ~50 %.  (Measured on espeak-ng speech: 30 ms tracks the speech envelope better
#: than 40 ms, mean r 0.65 vs 0.62.)
COARTIC_SIGMA_S = 0.030
#: Bilabial closures are kept: at every frame sampled as bilabial the smoothed opening is
#: capped at this value (the lips really touch), so smoothing cannot hide short closures.
CLOSURE_MAX_OPENING = 0.02
#: Lips are drawn thinner (pressed) as the opening goes from this value down to 0.
PRESS_OPENING = 0.05
#: Upper teeth show only below this much of the lip gap (px), so a barely parted mouth shows a dark slit.
TEETH_GAP_PX = 1.6


def _gauss_kernel(sigma_frames: float) -> np.ndarray:
    r = max(1, int(np.ceil(3 * sigma_frames)))
    x = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma_frames) ** 2)
    return k / k.sum()


def smooth_edges(x: np.ndarray, sigma_frames: float) -> np.ndarray:
    """Gaussian smoothing along axis 0 with edge-replicated padding (float64 in, float64 out)."""
    if sigma_frames <= 0 or len(x) == 0:
        return np.asarray(x, dtype=np.float64).copy()
    k = _gauss_kernel(sigma_frames)
    r = len(k) // 2
    xp = np.pad(np.asarray(x, dtype=np.float64), [(r, r)] + [(0, 0)] * (np.ndim(x) - 1), mode="edge")
    if xp.ndim == 1:
        return np.convolve(xp, k, mode="valid")
    return np.stack([np.convolve(xp[:, c], k, mode="valid") for c in range(xp.shape[1])], axis=1)


#: Valid range of each mouth-track channel (opening, width, rounding).
TRACK_LO = np.array([0.0, 0.0, -1.0])
TRACK_HI = np.array([1.0, 1.0, 1.0])


def mouth_track(events, num_frames: int, fps: float = FPS, t0: float = 0.0,
                smooth: float = COARTIC_SIGMA_S, activity: float = 1.0, jitter: float = 0.0,
                rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """Mouth track float32 [num_frames, 3] = (opening, width, rounding) from phone events.

    ``events``: objects with ``viseme``, ``start``, ``end`` (seconds; frame ``i`` is centred at
    ``t0 + (i + 0.5) / fps``).  Each frame takes the target of the event active at its centre
    (later events win on overlap); frames outside all events are ``sil``.  A bilabial event so
    short that it covers no frame centre still claims the frame holding its midpoint.  The
    targets are then smoothed with a Gaussian of ``smooth`` seconds (coarticulation; 0 = off)
    and the opening at bilabial frames is capped at :data:`CLOSURE_MAX_OPENING`.

    Articulation variability (both off by default): ``jitter`` adds Gaussian noise of that standard
    deviation to each phone's target (one draw per event from ``rng``, in event order; clipped to
    the channel ranges), so one viseme is not always one mouth shape; ``activity`` scales every
    target's distance from the rest posture ``sil`` (a talker who barely moves the lips: < 1).
    """
    if jitter < 0 or activity < 0:
        raise ValueError(f"jitter and activity must be >= 0 (got {jitter}, {activity})")
    if jitter > 0 and rng is None:
        raise ValueError("jitter > 0 needs an rng")
    num_frames = int(num_frames)
    sil = np.asarray(SIL, dtype=np.float64)
    tgt = np.tile(sil, (num_frames, 1))
    bil = np.zeros(num_frames, dtype=bool)
    if num_frames == 0:
        return tgt.astype(np.float32)
    centres = t0 + (np.arange(num_frames) + 0.5) / fps
    for e in events:
        v = e.viseme if e.viseme in VISEME_TARGETS else "other"
        target = np.asarray(VISEME_TARGETS[v], dtype=np.float64)
        if jitter > 0:
            target = np.clip(target + rng.normal(0.0, jitter, 3), TRACK_LO, TRACK_HI)
        if activity != 1.0:
            target = np.clip(sil + activity * (target - sil), TRACK_LO, TRACK_HI)
        a, b = np.searchsorted(centres, [e.start, e.end])
        if b > a:
            tgt[a:b] = target
            bil[a:b] = v == "bilabial"
        elif v == "bilabial":
            i = int(np.floor(((e.start + e.end) / 2 - t0) * fps))
            if 0 <= i < num_frames:
                tgt[i] = target
                bil[i] = True
    out = smooth_edges(tgt, smooth * fps)
    out[bil, 0] = np.minimum(out[bil, 0], CLOSURE_MAX_OPENING)
    return out.astype(np.float32)


# ----------------------------------------------------------------------------- appearance
#: Base skin tones (RGB), light to dark; each face jitters one of them.
SKIN_TONES = np.array([(241, 200, 172), (226, 178, 143), (204, 148, 108), (168, 112, 78),
                       (125, 82, 58), (95, 62, 45)], dtype=np.float64)
HAIR_COLOURS = np.array([(25, 20, 18), (60, 40, 28), (110, 75, 45), (150, 140, 130),
                         (40, 30, 25)], dtype=np.float64)
MOUTH_DARK = (48, 16, 22)    # inside of the mouth
TONGUE = (176, 78, 88)
#: Face half-width as a fraction of the frame height (x style size x slot depth): 0.15 * 360 = 54 px,
#: so a neutral mouth is ~44 px wide and a rounded one ~28 px at 640x360.
FACE_SCALE = 0.15
#: Mouth half-width at rest, in face half-widths.
MOUTH_HALF_WIDTH = 0.42


@dataclass
class FaceStyle:
    """A speaker's appearance (drawn from the speaker's own seed: same face in every session)."""
    skin: Tuple[float, float, float]
    lip: Tuple[float, float, float]
    teeth: Tuple[float, float, float]
    hair: Tuple[float, float, float]
    shirt: Tuple[float, float, float]
    iris: Tuple[float, float, float]
    hair_style: int          # 0 short, 1 long, 2 close-cropped
    size: float              # face scale multiplier
    aspect: float            # head half-height / half-width
    mouth_scale: float       # mouth width multiplier
    mouth_y: float           # lip line below the head centre, in head half-heights
    eye_y: float             # eyes above the head centre, in head half-heights
    eye_dx: float            # eye offset from the midline, in face half-widths
    brow_lift: float
    glasses: bool
    mole: Optional[Tuple[float, float]]   # (x, y) offset in face half-widths, or None

    @staticmethod
    def sample(rng: np.random.Generator) -> "FaceStyle":
        skin = SKIN_TONES[rng.integers(len(SKIN_TONES))] * rng.uniform(0.93, 1.05, 3)
        skin = np.clip(skin, 30, 250)
        # lips: darker and redder than the skin, so they contrast in grey for every tone
        lip = np.clip(skin * np.array([0.80, 0.52, 0.56]) * rng.uniform(0.85, 1.0)
                      + rng.uniform(-8, 8, 3), 15, 240)
        return FaceStyle(
            skin=tuple(float(v) for v in skin), lip=tuple(float(v) for v in lip),
            teeth=tuple(float(v) for v in np.array([236, 230, 214]) * rng.uniform(0.88, 1.0)),
            hair=tuple(float(v) for v in HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))] * rng.uniform(0.8, 1.2)),
            shirt=tuple(float(v) for v in rng.uniform(30, 220, 3)),
            iris=tuple(float(v) for v in rng.uniform(20, 110, 3)),
            hair_style=int(rng.integers(3)), size=float(rng.uniform(0.92, 1.08)),
            aspect=float(rng.uniform(1.22, 1.38)), mouth_scale=float(rng.uniform(0.93, 1.07)),
            mouth_y=float(rng.uniform(0.50, 0.56)), eye_y=float(rng.uniform(0.10, 0.18)),
            eye_dx=float(rng.uniform(0.34, 0.42)), brow_lift=float(rng.uniform(0.16, 0.24)),
            glasses=bool(rng.random() < 0.25),
            mole=(float(rng.uniform(-0.6, 0.6)), float(rng.uniform(-0.3, 0.5))) if rng.random() < 0.3 else None)


@dataclass
class Face:
    """A FaceStyle placed in a scene, with its smooth head-motion parameters."""
    style: FaceStyle
    cx: float                 # rest position of the head centre (px)
    cy: float
    scale: float              # face half-width (px) at rest
    motion_amp: np.ndarray    # [3, K] amplitudes of x (px), y (px), scale (relative) sinusoids
    motion_freq: np.ndarray   # [3, K] Hz
    motion_phase: np.ndarray  # [3, K] rad
    blink_rate: float         # blinks per second
    blink_phase: float

    def motion(self, t: np.ndarray):
        """(cx, cy, scale) float64 [len(t)] at times ``t`` (seconds): smooth, closed-form."""
        s = np.sum(self.motion_amp[:, :, None] * np.sin(2 * np.pi * self.motion_freq[:, :, None] * t[None, None]
                                                        + self.motion_phase[:, :, None]), axis=1)
        return self.cx + s[0], self.cy + s[1], self.scale * (1.0 + s[2])

    def eyes_open(self, t: np.ndarray) -> np.ndarray:
        """Eye opening in [0.1, 1] at times ``t``: quasi-periodic blinks of ~0.12 s."""
        ph = t * self.blink_rate + 0.2 * np.sin(2 * np.pi * 0.11 * t + self.blink_phase) + self.blink_phase
        f = np.mod(ph, 1.0)
        return np.where(f < 0.12 * self.blink_rate, 0.1, 1.0)


#: Head motion: K sinusoids per axis, frequencies 0.05-0.6 Hz; translation amplitude (sum) about
#: 6 % of the face half-width in x and 4 % in y, scale +-2.5 %.
MOTION_COMPONENTS = 3
MOTION_FREQ_HZ = (0.05, 0.6)
MOTION_AMP = (0.06, 0.04, 0.025)
#: Per-frame lighting: global gain 1 +- ~8 % and per-channel tint +- ~3 %, drifting at 0.01-0.08 Hz.
LIGHT_GAIN_AMP = 0.08
LIGHT_TINT_AMP = 0.03
LIGHT_FREQ_HZ = (0.01, 0.08)
#: Camera noise: Gaussian, sigma drawn per session in this range (grey levels); a bank of
#: NOISE_BANK frames is drawn once per scene and one is picked per frame.
NOISE_SIGMA = (1.0, 2.5)
NOISE_BANK = 6


@dataclass
class Scene:
    """A session's camera view: static background, faces, lighting drift, camera noise."""
    width: int
    height: int
    fps: float
    background: np.ndarray        # uint8 [H, W, 3]
    faces: List[Face]
    light_amp: np.ndarray         # [4, 2]: gain + 3 tints, two sinusoids each
    light_freq: np.ndarray        # [4, 2] Hz
    light_phase: np.ndarray       # [4, 2]
    noise: np.ndarray             # int16 [NOISE_BANK, H, W, 3]
    tv_box: Tuple[int, int, int, int]
    tv_rate: float                # TV picture changes per second
    tv_seed: int

    def lighting(self, t: np.ndarray) -> np.ndarray:
        """Per-channel gain float64 [len(t), 3] at times ``t``."""
        s = np.sum(self.light_amp[:, :, None] * np.sin(2 * np.pi * self.light_freq[:, :, None] * t[None, None]
                                                       + self.light_phase[:, :, None]), axis=1)   # [4, n]
        return ((1.0 + s[0])[:, None] * (1.0 + s[1:].T))


def _make_background(rng: np.random.Generator, width: int, height: int):
    """A room: wall with a vertical gradient, floor band, a door/shelf, a window and a TV."""
    wall = rng.uniform(90, 210, 3)
    yy = np.linspace(0.0, 1.0, height)[:, None, None]
    img = wall[None, None] * (1.08 - 0.25 * yy) * np.ones((1, width, 1))
    floor_y = int(height * rng.uniform(0.78, 0.86))
    img[floor_y:] = rng.uniform(50, 140, 3)
    bg = np.clip(img, 0, 255).astype(np.uint8)
    # window and shelf (static); positions scaled to the frame
    for _ in range(int(rng.integers(2, 4))):
        w, h = int(width * rng.uniform(0.08, 0.2)), int(height * rng.uniform(0.12, 0.3))
        x, y = int(rng.integers(0, width - w)), int(rng.integers(0, max(1, floor_y - h)))
        col = tuple(float(v) for v in rng.uniform(40, 230, 3))
        cv2.rectangle(bg, (x, y), (x + w, y + h), col, -1, cv2.LINE_AA)
        cv2.rectangle(bg, (x, y), (x + w, y + h), tuple(0.6 * c for c in col), 2, cv2.LINE_AA)
    # the TV (its picture changes over time in render_frames)
    tw, th = int(width * rng.uniform(0.14, 0.2)), int(height * rng.uniform(0.14, 0.2))
    tx = int(rng.choice([int(width * 0.01), width - tw - int(width * 0.01)]))
    ty = int(height * rng.uniform(0.02, 0.08))
    cv2.rectangle(bg, (tx - 3, ty - 3), (tx + tw + 3, ty + th + 3), (20, 20, 22), -1)
    return bg, (tx, ty, tx + tw, ty + th)


def make_scene(rng: np.random.Generator, width: int = 640, height: int = 360, *,
               face_seeds: Optional[Sequence[int]] = None, n_faces: Optional[int] = None,
               fps: float = FPS) -> Scene:
    """A session scene with one face per speaker.

    ``face_seeds``: one seed per speaker; the speaker's :class:`FaceStyle` is drawn from
    ``default_rng(face_seed)`` alone (the same person looks the same in every session).
    Without it, ``n_faces`` styles are drawn from ``rng``.  Seating (left-to-right slot order),
    head motion, background, lighting and noise come from ``rng``.
    """
    if width % 2 or height % 2 or width > 640 or height > 360:
        raise ValueError(f"frame size must be even and <= 640x360, got {width}x{height}")
    if face_seeds is not None:
        styles = [FaceStyle.sample(np.random.default_rng(int(s))) for s in face_seeds]
    else:
        styles = [FaceStyle.sample(rng) for _ in range(int(n_faces or 2))]
    n = len(styles)
    if not 1 <= n <= 4:
        raise ValueError(f"1-4 faces supported, got {n}")
    bg, tv = _make_background(rng, width, height)
    order = rng.permutation(n)
    faces = []
    for j, st in enumerate(styles):
        slot_w = width / n
        scale = height * FACE_SCALE * st.size * rng.uniform(0.95, 1.03)
        scale = min(scale, slot_w / 2.9)   # head + ears + hair fit the slot
        cx = slot_w * (order[j] + 0.5) + rng.uniform(-0.06, 0.06) * slot_w
        cy = height * rng.uniform(0.38, 0.44)
        amp = np.stack([rng.dirichlet(np.ones(MOTION_COMPONENTS)) * MOTION_AMP[0] * scale,
                        rng.dirichlet(np.ones(MOTION_COMPONENTS)) * MOTION_AMP[1] * scale,
                        rng.dirichlet(np.ones(MOTION_COMPONENTS)) * MOTION_AMP[2]])
        faces.append(Face(st, float(cx), float(cy), float(scale), amp,
                          rng.uniform(*MOTION_FREQ_HZ, size=(3, MOTION_COMPONENTS)),
                          rng.uniform(0, 2 * np.pi, size=(3, MOTION_COMPONENTS)),
                          float(rng.uniform(0.15, 0.35)), float(rng.uniform(0, 1))))
    la = np.stack([rng.dirichlet(np.ones(2)) * LIGHT_GAIN_AMP] +
                  [rng.dirichlet(np.ones(2)) * LIGHT_TINT_AMP for _ in range(3)])
    sigma = rng.uniform(*NOISE_SIGMA)
    noise = np.round(rng.standard_normal((NOISE_BANK, height, width, 3), dtype=np.float32) * sigma)
    return Scene(width, height, float(fps), bg, faces, la,
                 rng.uniform(*LIGHT_FREQ_HZ, size=(4, 2)), rng.uniform(0, 2 * np.pi, size=(4, 2)),
                 noise.astype(np.int16), tv, float(rng.uniform(0.3, 1.5)), int(rng.integers(2**31)))


# ----------------------------------------------------------------------------- drawing
_SH = 4               # cv2 sub-pixel bits
_SC = 1 << _SH


def _pt(x: float, y: float):
    return int(round(x * _SC)), int(round(y * _SC))


def _ell(img, cx, cy, ax, ay, col, start=0, end=360, thickness=-1):
    cv2.ellipse(img, _pt(cx, cy), _pt(max(ax, 0.1), max(ay, 0.1)), 0, start, end, col, thickness,
                cv2.LINE_AA, _SH)


def _shade(col, f):
    return tuple(float(min(255.0, c * f)) for c in col)


def _ellipse_cov(X: np.ndarray, Y: np.ndarray, A, B) -> np.ndarray:
    """Anti-aliased coverage (0..1) of the ellipse (X/A)^2 + (Y/B)^2 <= 1 (A, B scalars or arrays).

    Uses the first-order signed distance (d - 1) / |grad d| so edges are ~1 px soft.
    """
    A = np.maximum(A, 1e-3)
    B = np.maximum(B, 1e-3)
    u, v = X / A, Y / B
    d = np.sqrt(u * u + v * v)
    g = np.sqrt((u / A) ** 2 + (v / B) ** 2)
    sd = (d - 1.0) * d / np.maximum(g, 1e-6)
    return np.where(d < 0.5, 1.0, np.clip(0.5 - sd, 0.0, 1.0))


def mouth_geometry(mw0: float, p) -> dict:
    """Mouth shape (px, relative to the lip-line point) for params ``p`` = (opening, width, rounding)
    and rest half-width ``mw0``.  Returns a, ai (outer/inner half-widths), g (half gap), yc (gap
    centre below the lip line), tu, tl (upper/lower lip thickness), press, rpos, rneg, and the
    tight box offsets (x1, y1, x2, y2)."""
    o = float(np.clip(p[0], 0.0, 1.2))
    w = float(np.clip(p[1], 0.0, 1.0))
    r = float(np.clip(p[2], -1.0, 1.0))
    rpos, rneg = max(r, 0.0), max(-r, 0.0)
    press = 0.5 + 0.5 * min(1.0, o / PRESS_OPENING)            # pressed lips are thinner
    a = mw0 * (0.80 + 0.42 * w) * (1.0 - 0.30 * rpos)
    g = mw0 * 0.50 * o
    yc = g * 0.6 - rneg * mw0 * 0.06                          # jaw drops; tucked lower lip rises
    thin = 1.0 - 0.3 * w                                      # spreading stretches the lips thin
    tu = mw0 * 0.24 * press * thin * (1.0 + 0.6 * rpos) * (1.0 + 0.25 * rneg)
    tl = mw0 * 0.30 * press * thin * (1.0 + 0.5 * rpos) * (1.0 - 0.3 * rneg)
    ai = a * (0.88 - 0.36 * rpos)
    return dict(a=a, ai=ai, g=g, yc=yc, tu=tu, tl=tl, press=press, rpos=rpos, rneg=rneg,
                box=(-a, yc - g - tu, a, yc + g + tl))


def _draw_mouth(img: np.ndarray, mx: float, my: float, mw0: float, p, style: FaceStyle) -> np.ndarray:
    """Composite the mouth onto ``img`` in place (numpy soft masks on a local patch); returns the
    tight lip box (x1, y1, x2, y2) in pixels (pixel centres at integer coordinates)."""
    m = mouth_geometry(mw0, p)
    a, ai, g, yc, tu, tl = m["a"], m["ai"], m["g"], m["yc"], m["tu"], m["tl"]
    rpos, rneg, press = m["rpos"], m["rneg"], m["press"]
    bx1, by1, bx2, by2 = m["box"]
    H, W = img.shape[:2]
    x0, x1 = max(0, int(np.floor(mx + bx1)) - 2), min(W, int(np.ceil(mx + bx2)) + 3)
    y0, y1 = max(0, int(np.floor(my + by1)) - 2), min(H, int(np.ceil(my + by2)) + 5)
    box = np.array([mx + bx1, my + by1, mx + bx2, my + by2], dtype=np.float32)
    if x1 <= x0 or y1 <= y0:
        return box
    X = (np.arange(x0, x1, dtype=np.float32) - mx)[None, :]
    Y = (np.arange(y0, y1, dtype=np.float32) - (my + yc))[:, None]
    patch = img[y0:y1, x0:x1].astype(np.float32)

    def put(cov, col):
        nonlocal patch
        patch += cov[..., None] * (np.asarray(col, dtype=np.float32) - patch)

    lip = np.asarray(style.lip, dtype=np.float32)
    skin = np.asarray(style.skin, dtype=np.float32)
    lip = lip + (1.0 - press) * 0.8 * (skin - lip)                 # pressed lips blanch
    # outer lip outline: upper half-ellipse with a cupid's bow dip, lower half-ellipse
    bow = 1.0 - 0.22 * np.exp(-(X / (0.28 * a)) ** 2)
    B = np.where(Y < 0, (g + tu) * bow + 0 * X, g + tl + 0 * X)
    upper = Y < 0
    lip_col = np.where(upper[..., None], lip * 0.86, lip * (1.0 - 0.35 * rneg))
    cov = _ellipse_cov(X, Y, a, B)
    patch += cov[..., None] * (lip_col - patch)
    # lower lip highlight (protrusion catches light)
    put(_ellipse_cov(X, Y - (g + 0.5 * tl), 0.45 * a, 0.22 * tl) * (0.35 + 0.4 * rpos), lip * 1.25)
    if g > 0.05:
        inner = _ellipse_cov(X, Y, ai, g)
        put(inner, MOUTH_DARK)
        if g > 2.0:     # tongue at the bottom of a larger opening
            put(inner * _ellipse_cov(X, Y - 0.8 * g, 0.6 * ai, 0.5 * g), TONGUE)
        # upper teeth hang from the top of the opening; they fill it when the lower lip is tucked
        th = (1.0 - rneg) * min(mw0 * 0.24 * (1.0 - rpos), max(0.0, 2.0 * g - TEETH_GAP_PX)) + rneg * 2.0 * g
        put(inner * np.clip(0.5 + (-g + th - Y), 0.0, 1.0) * np.clip(1.0 - 1.5 * rpos, 0.0, 1.0)
            * np.clip(0.8 * ai - np.abs(X) + 0.5, 0.0, 1.0), style.teeth)
    # the seam where the lips meet: darker when pressed, fades as the lips part
    seam = np.clip(1.0 - np.abs(Y) / 0.9, 0.0, 1.0) * _ellipse_cov(X, 0 * Y, 0.95 * a, 1.0)
    put(seam * (0.45 + 0.45 * (1.0 - press)) * max(0.0, 1.0 - g / 1.5), MOUTH_DARK)
    # tucked lower lip: shadow crease under it
    if rneg > 0:
        put(np.clip(1.0 - np.abs(Y - (g + tl + 1.2)) / 1.2, 0.0, 1.0) * _ellipse_cov(X, 0 * Y, 0.7 * a, 1.0)
            * 0.55 * rneg, skin * 0.45)
    img[y0:y1, x0:x1] = np.clip(patch + 0.5, 0, 255).astype(np.uint8)
    return box


def _half_gap(style: FaceStyle, S, opening):
    """Half the lip gap (px) of a face of half-width ``S`` at mouth ``opening`` (scalars or arrays)."""
    return S * MOUTH_HALF_WIDTH * style.mouth_scale * 0.50 * np.clip(opening, 0, 1.2)


def face_box(style: FaceStyle, cx, cy, S, opening) -> np.ndarray:
    """The face box (x1, y1, x2, y2) in pixels of a face drawn by :func:`_draw_face`: the bounding
    box of the head's skin ellipse (centre ``(cx, cy)``, half-width ``S``, half-height
    ``S * style.aspect``), its lower edge moving down with the jaw (``0.35`` x the mouth's half gap
    at ``opening``).  Ears and hair are outside it.  Scalars or equal-length arrays; float64 [..., 4]."""
    Hh = S * style.aspect
    g = _half_gap(style, S, opening)
    return np.stack(np.broadcast_arrays(cx - S, cy - Hh, cx + S, cy + Hh + 0.35 * g), axis=-1).astype(np.float64)


def face_boxes(scene: Scene, tracks: Sequence[np.ndarray], num_frames: int,
               start_frame: int = 0) -> np.ndarray:
    """True face boxes float32 [n_faces, num_frames, 4] of ``scene.faces`` for frames
    ``start_frame ..`` (:func:`face_box` at each frame's head position, size and mouth opening;
    closed form, no drawing).  ``tracks[j]`` is face ``j``'s mouth track, ``sil`` beyond its end."""
    if len(tracks) != len(scene.faces):
        raise ValueError(f"{len(scene.faces)} faces but {len(tracks)} tracks")
    fi = np.arange(start_frame, start_frame + int(num_frames))
    t = fi / scene.fps
    out = np.zeros((len(scene.faces), len(fi), 4), dtype=np.float32)
    for j, face in enumerate(scene.faces):
        cx, cy, S = face.motion(t)
        tr = np.asarray(tracks[j], dtype=np.float64)
        opening = np.full(len(fi), SIL[0], dtype=np.float64)
        inside = fi < len(tr)
        opening[inside] = tr[fi[inside], 0]
        out[j] = face_box(face.style, cx, cy, S, opening)
    return out


def _draw_face(img: np.ndarray, face: Face, cx: float, cy: float, S: float, p, eye: float) -> np.ndarray:
    """Draw one face (head centre (cx, cy), half-width S) with mouth params ``p``; returns its lip box."""
    st = face.style
    Hh = S * st.aspect
    skin = st.skin
    shadow = _shade(skin, 0.85)
    g = _half_gap(st, S, p[0])                                                        # mouth half gap
    # body and neck
    _ell(img, cx, cy + Hh + 1.3 * S, 1.75 * S, 1.3 * S, st.shirt)
    cv2.fillConvexPoly(img, np.array([_pt(cx - 0.42 * S, cy + 0.5 * Hh), _pt(cx + 0.42 * S, cy + 0.5 * Hh),
                                      _pt(cx + 0.46 * S, cy + Hh + 0.5 * S), _pt(cx - 0.46 * S, cy + Hh + 0.5 * S)]),
                       shadow, cv2.LINE_AA, _SH)
    if st.hair_style == 1:   # long hair behind the head
        _ell(img, cx, cy + 0.2 * Hh, 1.2 * S, 1.22 * Hh, st.hair)
    _ell(img, cx - 0.98 * S, cy - 0.02 * Hh, 0.16 * S, 0.27 * S, _shade(skin, 0.93))
    _ell(img, cx + 0.98 * S, cy - 0.02 * Hh, 0.16 * S, 0.27 * S, _shade(skin, 0.93))
    _ell(img, cx, cy, S, Hh + 0.35 * g, skin, 0, 180)     # jaw drops with the opening
    _ell(img, cx, cy, S, Hh, skin)
    # hair
    if st.hair_style == 2:
        _ell(img, cx, cy - 0.35 * Hh, 0.97 * S, 0.68 * Hh, st.hair, 180, 360)
    else:
        _ell(img, cx, cy - 0.3 * Hh, 1.05 * S, 0.78 * Hh, st.hair, 180, 360)
        _ell(img, cx - 0.5 * S, cy - 0.42 * Hh, 0.5 * S, 0.2 * Hh, st.hair)     # side fringe
    # eyes, brows, glasses
    ey = cy - st.eye_y * Hh
    for sgn in (-1.0, 1.0):
        ex = cx + sgn * st.eye_dx * S
        _ell(img, ex, ey, 0.19 * S, 0.10 * S * eye, (240, 240, 236))
        if eye > 0.5:
            _ell(img, ex, ey, 0.085 * S, 0.085 * S, st.iris)
            _ell(img, ex, ey, 0.04 * S, 0.04 * S, (10, 10, 10))
        _ell(img, ex, ey, 0.2 * S, 0.11 * S * max(eye, 0.3), _shade(skin, 0.6), 180, 360, 1)
        by = ey - st.brow_lift * Hh
        cv2.line(img, _pt(ex - 0.2 * S, by + 0.03 * S), _pt(ex + 0.2 * S, by - 0.01 * S), st.hair,
                 max(1, int(round(0.07 * S))), cv2.LINE_AA, _SH)
        if st.glasses:
            _ell(img, ex, ey, 0.27 * S, 0.2 * S, (30, 30, 35), thickness=max(1, int(round(0.035 * S))))
    if st.glasses:
        cv2.line(img, _pt(cx - 0.12 * S, ey), _pt(cx + 0.12 * S, ey), (30, 30, 35), 1, cv2.LINE_AA, _SH)
    # nose
    ny = cy + 0.2 * Hh
    _ell(img, cx, ny - 0.05 * Hh, 0.1 * S, 0.26 * S, _shade(skin, 0.93))
    _ell(img, cx, ny + 0.08 * S, 0.17 * S, 0.09 * S, _shade(skin, 0.88))
    _ell(img, cx - 0.07 * S, ny + 0.11 * S, 0.035 * S, 0.025 * S, _shade(skin, 0.45))
    _ell(img, cx + 0.07 * S, ny + 0.11 * S, 0.035 * S, 0.025 * S, _shade(skin, 0.45))
    if st.mole is not None:
        _ell(img, cx + st.mole[0] * S, cy + st.mole[1] * Hh, 0.03 * S, 0.03 * S, _shade(skin, 0.4))
    return _draw_mouth(img, cx, cy + st.mouth_y * Hh, S * MOUTH_HALF_WIDTH * st.mouth_scale, p, st)


def render_frames(scene: Scene, faces: Sequence[Face], tracks: Sequence[np.ndarray], start_frame: int,
                  num_frames: int, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """Render frames ``start_frame .. start_frame + num_frames - 1`` of a scene.

    ``faces`` is usually ``scene.faces``; ``tracks[j]`` is face ``j``'s mouth track [T, 3]
    (frames beyond its end are drawn as ``sil``).  Returns ``(frames uint8 [n, H, W, 3] RGB,
    lip_boxes float32 [n_faces, n, 4])`` with tight lip boxes (x1, y1, x2, y2) in pixels.
    """
    if len(tracks) != len(faces):
        raise ValueError(f"{len(faces)} faces but {len(tracks)} tracks")
    n, H, W = int(num_frames), scene.height, scene.width
    frames = np.empty((n, H, W, 3), dtype=np.uint8)
    boxes = np.zeros((len(faces), n, 4), dtype=np.float32)
    fi = np.arange(start_frame, start_frame + n)
    t = fi / scene.fps
    motion = [f.motion(t) for f in faces]
    eyes = [f.eyes_open(t) for f in faces]
    gains = scene.lighting(t)
    lut_x = np.arange(256, dtype=np.float64)[:, None]
    noise_idx = rng.integers(0, len(scene.noise), size=n)
    tx0, ty0, tx1, ty1 = scene.tv_box
    sil = np.asarray(SIL, dtype=np.float32)
    for k in range(n):
        img = frames[k]
        img[...] = scene.background
        # TV picture: a few coloured bands that change a few times per second
        tv = np.random.default_rng([scene.tv_seed, int(fi[k] / scene.fps * scene.tv_rate)])
        nb = 3
        for b in range(nb):
            cv2.rectangle(img, (tx0, ty0 + (ty1 - ty0) * b // nb), (tx1, ty0 + (ty1 - ty0) * (b + 1) // nb),
                          tuple(float(v) for v in tv.uniform(20, 235, 3)), -1)
        for j, face in enumerate(faces):
            tr = tracks[j]
            p = tr[fi[k]] if fi[k] < len(tr) else sil
            boxes[j, k] = _draw_face(img, face, motion[j][0][k], motion[j][1][k], motion[j][2][k], p, eyes[j][k])
        lut = np.clip(lut_x * gains[k][None, :] + 0.5, 0, 255).astype(np.uint8).reshape(256, 1, 3)
        cv2.LUT(img, lut, dst=img)
        cv2.add(img, scene.noise[noise_idx[k]], dst=img, dtype=cv2.CV_8U)
    return frames, boxes


# ----------------------------------------------------------------------------- encoding
#: x264 settings for reproducible bytes.  Measured (x264 core 165 via PyAV 18, veryfast, 2 busy
#: cores): with the defaults, 12 encodes of the same 60 frames gave 5 different files at
#: ``threads=1``; with ``mbtree=0`` (and no threaded lookahead) 60 of 60 were identical.
#: Macroblock-tree rate control only redistributes bits, so switching it off costs some size
#: at equal CRF, not correctness.
X264_PARAMS = "threads=1:sync-lookahead=0:mbtree=0"


class Mp4Writer:
    """Streaming h264/yuv420p MP4 writer (PyAV, libx264), atomic: writes ``path + '.tmp.mp4'`` and
    renames on :meth:`close`.  Deterministic (same frames -> same bytes): x264 runs with one
    thread with :data:`X264_PARAMS`, so the bytes depend neither on the core count nor on machine
    load; the colour conversion is done by OpenCV rather than libswscale (see :meth:`write`)."""

    def __init__(self, path: str, width: int, height: int, fps: int = FPS, crf: int = 28,
                 preset: str = "veryfast"):
        import av
        self.path = os.fspath(path)
        self.tmp = self.path + ".tmp.mp4"
        d = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(d, exist_ok=True)
        self._c = av.open(self.tmp, mode="w", format="mp4")
        self._s = self._c.add_stream("libx264", rate=int(fps),
                                     options={"crf": str(crf), "preset": str(preset), "threads": "1",
                                              "x264-params": X264_PARAMS})
        self._s.width, self._s.height, self._s.pix_fmt = int(width), int(height), "yuv420p"
        self._s.codec_context.thread_count = 1
        self._n = 0
        self._av = av

    def write(self, frames: np.ndarray) -> None:
        """Append RGB uint8 frames [n, H, W, 3] (or one frame [H, W, 3])."""
        frames = np.asarray(frames, dtype=np.uint8)
        if frames.ndim == 3:
            frames = frames[None]
        for f in frames:
            # RGB -> yuv420p here with OpenCV (BT.601 limited range, what decoders assume for
            # untagged h264), a fixed single-threaded conversion independent of libswscale's setup.
            yuv = cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2YUV_I420)
            vf = self._av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            vf.pts = self._n
            self._n += 1
            for pkt in self._s.encode(vf):
                self._c.mux(pkt)

    def close(self) -> None:
        for pkt in self._s.encode(None):
            self._c.mux(pkt)
        self._c.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        try:
            self._c.close()
        except Exception:
            pass
        if os.path.exists(self.tmp):
            os.remove(self.tmp)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False


def encode_mp4(path: str, frames, fps: int = FPS, preset: str = "veryfast", crf: int = 28) -> int:
    """Encode RGB uint8 frames (an array [n, H, W, 3] or an iterable of frames / frame chunks)
    to an h264 yuv420p MP4 at ``path`` (atomic).  Returns the number of frames written."""
    it = iter([frames]) if isinstance(frames, np.ndarray) else iter(frames)
    w = None
    try:
        for chunk in it:
            chunk = np.asarray(chunk, dtype=np.uint8)
            if w is None:
                w = Mp4Writer(path, chunk.shape[-2], chunk.shape[-3], fps=fps, crf=crf, preset=preset)
            w.write(chunk)
        if w is None:
            raise ValueError("no frames to encode")
        w.close()
    except BaseException:
        if w is not None:
            w.abort()
        raise
    return w._n


#: Frames rendered per chunk by render_session (bounds memory: 50 x 640x360x3 = 35 MB).
CHUNK_FRAMES = 50


def render_session(path: str, scene: Scene, tracks: Sequence[np.ndarray], rng: np.random.Generator, *,
                   fps: int = FPS, crf: int = 28, preset: str = "veryfast",
                   num_frames: Optional[int] = None, chunk: int = CHUNK_FRAMES) -> np.ndarray:
    """Render a whole session into ``path`` (streaming, ``chunk`` frames at a time) and return the
    true lip boxes float32 [n_faces, T, 4] (T = ``num_frames`` or the tracks' length)."""
    T = int(num_frames if num_frames is not None else len(tracks[0]))
    if T <= 0:
        raise ValueError("a session needs at least one frame")
    boxes = np.zeros((len(scene.faces), T, 4), dtype=np.float32)
    with Mp4Writer(path, scene.width, scene.height, fps=fps, crf=crf, preset=preset) as w:
        for s in range(0, T, chunk):
            n = min(chunk, T - s)
            fr, bx = render_frames(scene, scene.faces, tracks, s, n, rng)
            w.write(fr)
            boxes[:, s:s + n] = bx
    return boxes


# ----------------------------------------------------------------------------- detections
#: Share of a face's missed frames that come in short bursts (the rest are isolated frames),
#: and the burst length range (frames).
BURST_SHARE = 0.5
BURST_LEN = (2, 8)
#: Inside a requested long gap, this share of frames is still detected (mostly undetected).
LONG_GAP_KEEP = 0.1


def detections_from_boxes(true_boxes: np.ndarray, rng: np.random.Generator, *,
                          miss_rate: Tuple[float, float] = (0.05, 0.15),
                          burst_share: float = BURST_SHARE, burst_len: Tuple[int, int] = BURST_LEN,
                          long_gaps: Optional[Sequence[Sequence[Tuple[int, int]]]] = None,
                          long_gap_keep: float = LONG_GAP_KEEP, jitter_px: float = 1.0,
                          true_face_boxes: Optional[np.ndarray] = None,
                          face_jitter_px: float = 2.0) -> List[SpeakerTrack]:
    """Simulated lip detections from true boxes [n_faces, T, 4].

    Per face a miss rate is drawn uniformly from ``miss_rate``; ``burst_share`` of those misses
    are short bursts of ``burst_len`` frames, the rest isolated frames.  ``long_gaps[j]`` lists
    ``(start_frame, end_frame)`` ranges of face ``j`` in which only ``long_gap_keep`` of frames are
    detected (segments made mostly undetected; these come on top of the miss rate).  Detected
    boxes get Gaussian jitter of ``jitter_px`` pixels per coordinate.  With ``true_face_boxes``
    ([n_faces, T, 4], :func:`face_boxes`) each track also gets ``face_boxes`` for its detected
    frames, with ``face_jitter_px`` of jitter (drawn after all lip boxes, so frames and lip boxes
    are the same with or without face boxes).  Returns one
    :class:`frontends.lip_boxes.SpeakerTrack` per face.
    """
    true_boxes = np.asarray(true_boxes, dtype=np.float64)
    n_faces, T = true_boxes.shape[:2]
    out = []
    for j in range(n_faces):
        miss = np.zeros(T, dtype=bool)
        M = int(round(rng.uniform(*miss_rate) * T))
        target_burst = int(round(burst_share * M))
        guard = 0
        while miss.sum() < target_burst and guard < 10 * T + 10:
            guard += 1
            need = target_burst - int(miss.sum())
            L = min(int(rng.integers(burst_len[0], burst_len[1] + 1)), need)
            s = int(rng.integers(0, max(1, T - L + 1)))
            miss[s:s + L] = True
        left = M - int(miss.sum())
        if left > 0:
            free = np.flatnonzero(~miss)
            miss[rng.choice(free, size=min(left, len(free)), replace=False)] = True
        for a, b in (long_gaps[j] if long_gaps is not None and j < len(long_gaps) else []):
            a, b = max(0, int(a)), min(T, int(b))
            if b > a:
                miss[a:b] = rng.random(b - a) >= long_gap_keep
        keep = np.flatnonzero(~miss)
        bx = true_boxes[j, keep] + rng.normal(0.0, jitter_px, size=(len(keep), 4))
        bx = np.concatenate([np.minimum(bx[:, :2], bx[:, 2:]), np.maximum(bx[:, :2], bx[:, 2:])], axis=1)
        out.append(SpeakerTrack(frames=keep.astype(np.int64), boxes=bx.astype(np.float32)))
    if true_face_boxes is not None:   # drawn after every face's lip boxes: those stay as without them
        for j, tr in enumerate(out):
            fb = np.asarray(true_face_boxes[j], dtype=np.float64)[tr.frames] \
                + rng.normal(0.0, face_jitter_px, size=(len(tr.frames), 4))
            tr.face_boxes = np.concatenate([np.minimum(fb[:, :2], fb[:, 2:]), np.maximum(fb[:, :2], fb[:, 2:])],
                                           axis=1).astype(np.float32)
    return out
