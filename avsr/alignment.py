"""CTC forced alignment: when each token of a known token sequence is spoken.

:func:`ctc_viterbi` finds the single best CTC path of a token sequence through the frame-wise CTC
log-posteriors of one utterance (``model.ctc.log_softmax(enc)``, ``[T, V]``): the usual CTC
topology over the extended label sequence ``blank, y1, blank, y2, ..., yL, blank`` (``2L + 1``
states); from state ``s`` a path stays, moves to ``s + 1``, or skips the blank to ``s + 2`` when
``y`` at ``s + 2`` differs from ``y`` at ``s``; it starts in state 0 or 1 and ends in the last or
the second-to-last state.  Dynamic programming (max-product, numpy, ``O(T * L)``) with back
pointers; ties go to the lower state (the later move).  It needs ``T >= L + r`` frames (``r``:
adjacent repeated tokens, which need a blank between them), else :class:`AlignmentError`.

:func:`token_times` turns a path into times.  Encoder frame ``t`` covers
``[offset + t * stride, offset + (t + 1) * stride)`` seconds (:func:`frame_times` from the model
config: 40 ms frames after the 4x subsampling of 10 ms fbank hops; ``offset`` puts frame ``t``'s
centre on the centre of the samples it sees).  A token owns the frames its state holds on the best
path (its "spike", usually 1-2 frames: CTC posteriors are peaky); the blank frames between two
tokens are split at their middle, the first half going to the token before, the second to the one
after (the token's ``start`` is the first frame of its half of the blanks before, its ``end`` the
last frame of its half of the blanks after).  The first token starts at most ``edge_frames`` before
its spike and the last ends at most ``edge_frames`` after its own (leading and trailing blanks are
silence more often than speech).  ``conf`` is the largest posterior of the token over its spike
frames, in ``[0, 1]``.  The same rule serves the local aligner's scores
(:mod:`avsr.models.aligner`); on SynthMISP its midpoints are closer to the truth than those of each
token's own frames (``first_frame``/``last_frame``).

Rule ``posterior`` (the local aligner's default, ``conf/aligner.yaml``) puts the same split on each
token's expected frame instead of its best-path spike: :func:`ctc_occupancy` gives the posterior of
each token's state at each frame over all paths (forward-backward), at an acoustic scale below 1 as
Kaldi's lattice posteriors take it (``--acoustic-scale 0.1``), so a token whose evidence is spread, or
split between frames, is placed at its centre rather than on the one frame the best path picked.  The
posterior is taken over the best path's span and a margin of frames either side, so silence around
the speech does not draw the tokens into it.

SynthMISP's truth files hold every character's spoken interval (:mod:`avsr.synthmisp.truth` matches
a data dir's segments to them); ``scripts/bench_alignment.py`` measures this rule against them, both
on a model's CTC posteriors and on "oracle" posteriors with one spike at the frame nearest each true
character midpoint (the error the frame grid and the rule add by themselves), and shows where a
model's spikes lie (``docs/BENCHMARKS.md``).  The times are only as good as the spikes: a CTC head
that emits its tokens at the edges of its input rather than on the speech gives wrong times with a
correct path.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["AlignmentError", "TokenTime", "ctc_viterbi", "ctc_occupancy", "token_spans", "token_times", "frame_times",
           "TOPOLOGIES", "RULES"]

TOPOLOGIES = ("ctc", "hmm")
RULES = ("split", "own", "posterior")


class AlignmentError(ValueError):
    """The token sequence cannot be aligned to the frames (too few frames, bad input)."""


@dataclass
class TokenTime:
    """One aligned token: its id, seconds (``start``, ``end``), the spike's frames and ``conf``."""
    token_id: int
    start: float
    end: float
    conf: float
    first_frame: int
    last_frame: int


def _check(logp, tokens: Sequence[int], blank: int, topology: str) -> Tuple[np.ndarray, np.ndarray]:
    """``(lp [T, V] float32, y [L] int64)``, or :class:`AlignmentError` for a bad topology, shape or token id,
    or too few frames."""
    if topology not in TOPOLOGIES:
        raise AlignmentError(f"topology must be one of {TOPOLOGIES}, got {topology!r}")
    lp = logp.detach().cpu().float().numpy() if hasattr(logp, "detach") else np.asarray(logp, np.float32)
    if lp.ndim != 2:
        raise AlignmentError(f"logp must be [T, V], got shape {lp.shape}")
    T, V = lp.shape
    y = np.asarray(list(tokens), dtype=np.int64)
    if len(y) and ((y < 0).any() or (y >= V).any() or (y == blank).any()):
        raise AlignmentError(f"token ids must be in [0, {V}) and not the blank {blank}")
    repeats = int((y[1:] == y[:-1]).sum()) if topology == "ctc" else 0
    if len(y) and T < len(y) + repeats:
        raise AlignmentError(f"{len(y)} tokens ({repeats} repeated) need at least {len(y) + repeats} frames, got {T}")
    return lp, y


def _graph(lp: np.ndarray, y: np.ndarray, blank: int, topology: str, inner_blank_penalty: float
           ) -> Tuple[np.ndarray, np.ndarray]:
    """The states ``blank, y1, blank, ..., yL, blank`` of ``topology``: ``(emit [T, 2L + 1], skip [2L + 1])``,
    each state's score per frame (less the inner blank penalty) and whether it may be entered from ``s - 2``."""
    S = 2 * len(y) + 1
    ext = np.full(S, blank, dtype=np.int64)
    ext[1::2] = y
    skip = np.zeros(S, dtype=bool)                    # s may be entered from s - 2
    skip[3::2] = (y[1:] != y[:-1]) if topology == "ctc" else True
    pen = np.zeros(S)
    pen[2:S - 2:2] = inner_blank_penalty               # the blanks between two tokens (not the first or last)
    return lp[:, ext].astype(np.float64) - pen, skip


def ctc_viterbi(logp, tokens: Sequence[int], blank: int = 0, topology: str = "ctc",
                inner_blank_penalty: float = 0.0) -> np.ndarray:
    """Best path of ``tokens`` through ``logp`` (``[T, V]`` log-posteriors or scores, numpy or torch):
    int64 ``[T]``, the index (0-based, into ``tokens``) of the token each frame emits, ``-1`` for
    blank frames.  :class:`AlignmentError` when it cannot be aligned.

    ``topology`` ``"ctc"``: the CTC topology of the module docstring.  ``"hmm"``: the same states, but
    a token may follow the one before directly even when it repeats it (the states are positions in
    the sequence, not labels), so a token can hold every frame up to the next one
    (:func:`avsr.models.aligner.topology_nll` trains on it).  ``inner_blank_penalty`` (either topology):
    nats taken from the score of every frame of blank *between* two tokens; the blanks before the first
    and after the last token cost nothing (silence around the speech)."""
    lp, y = _check(logp, tokens, blank, topology)
    T, L = lp.shape[0], len(y)
    if L == 0:
        return np.full(T, -1, dtype=np.int64)
    emit, skip = _graph(lp, y, blank, topology, inner_blank_penalty)
    S = 2 * L + 1
    neg = -np.inf
    delta = np.full(S, neg)
    delta[:2] = emit[0, :2]
    back = np.zeros((T, S), dtype=np.int8)           # 0 stay, 1 from s-1, 2 from s-2
    states = np.arange(S)
    for t in range(1, T):
        stay = delta
        one = np.concatenate([[neg], delta[:-1]])
        two = np.where(skip, np.concatenate([[neg, neg], delta[:-2]]), neg)
        cand = np.stack([stay, one, two])             # ties: argmax takes the first (stay)
        arg = np.argmax(cand, axis=0)
        delta = cand[arg, states] + emit[t]
        back[t] = arg
    ends = [S - 1, S - 2]
    s = ends[int(np.argmax([delta[S - 1], delta[S - 2]]))]
    if not np.isfinite(delta[s]):
        raise AlignmentError("no finite-probability CTC path for these tokens")
    path = np.empty(T, dtype=np.int64)
    for t in range(T - 1, -1, -1):
        path[t] = s
        s -= int(back[t, s])
    return np.where(path % 2 == 1, path // 2, -1)


def ctc_occupancy(logp, tokens: Sequence[int], blank: int = 0, scale: float = 1.0, topology: str = "ctc",
                  inner_blank_penalty: float = 0.0) -> np.ndarray:
    """``gamma [T, L]``: the posterior probability that frame ``t`` is held by the state of token ``k``, over
    all paths of ``tokens`` through the scores ``scale * logp`` (the forward-backward algorithm on the graph
    of :func:`ctc_viterbi`, same topology and inner blank penalty).  ``scale`` is the acoustic scale of
    lattice posteriors (Kaldi's ``--acoustic-scale``): below 1 it flattens the path posterior, so a token's
    occupancy spreads over the frames its neighbours leave it.  :class:`AlignmentError` as
    :func:`ctc_viterbi`."""
    if not scale > 0:
        raise AlignmentError(f"scale must be > 0, got {scale}")
    lp, y = _check(logp, tokens, blank, topology)
    T, L = lp.shape[0], len(y)
    if L == 0:
        return np.zeros((T, 0))
    emit, skip = _graph(lp, y, blank, topology, inner_blank_penalty)
    emit = emit * scale
    S = 2 * L + 1
    neg = -np.inf
    skip_next = np.concatenate([skip[2:], [False, False]])     # s may move on to s + 2

    def lse3(a, b, c):
        m = np.maximum(np.maximum(a, b), c)
        m0 = np.where(np.isfinite(m), m, 0.0)
        with np.errstate(divide="ignore"):
            return m0 + np.log(np.exp(a - m0) + np.exp(b - m0) + np.exp(c - m0))

    alpha = np.full((T, S), neg)
    alpha[0, :2] = emit[0, :2]
    for t in range(1, T):
        a = alpha[t - 1]
        alpha[t] = lse3(a, np.concatenate([[neg], a[:-1]]),
                        np.where(skip, np.concatenate([[neg, neg], a[:-2]]), neg)) + emit[t]
    beta = np.full((T, S), neg)
    beta[T - 1, S - 2:] = 0.0
    for t in range(T - 2, -1, -1):
        n = beta[t + 1] + emit[t + 1]
        beta[t] = lse3(n, np.concatenate([n[1:], [neg]]), np.where(skip_next, np.concatenate([n[2:], [neg, neg]]), neg))
    g = alpha + beta
    z = np.logaddexp(g[0, 0], g[0, 1])
    if not np.isfinite(z):
        raise AlignmentError("no finite-probability CTC path for these tokens")
    return np.exp(g[:, 1::2] - z)


def token_spans(path: np.ndarray, n_tokens: int) -> List[Tuple[int, int]]:
    """``(first, last)`` frame of each token's spike on a :func:`ctc_viterbi` path."""
    spans: List[Optional[List[int]]] = [None] * n_tokens
    for t, k in enumerate(path):
        if k < 0:
            continue
        if spans[k] is None:
            spans[k] = [t, t]
        else:
            spans[k][1] = t
    if any(s is None for s in spans):
        raise AlignmentError("path does not visit every token")
    return [(a, b) for a, b in spans]  # type: ignore[misc]


def frame_times(cfg, modality: Optional[str] = None) -> Tuple[float, float]:
    """``(offset, stride)`` in seconds of the encoder frames of a model config (``ModelConfig``):
    frame ``t`` covers ``[offset + t * stride, offset + (t + 1) * stride)``.

    Audio (``audio`` and ``audiovisual``; the AV encoder follows the audio frames): fbank frame ``f``
    covers samples ``[f * hop, f * hop + n_fft)``; ``conv2d`` subsampling (two 3x3 stride-2 convs)
    makes encoder frame ``t`` from fbank frames ``4t .. 4t + 6`` (centre ``4t + 3``), ``vgg`` (two
    2x2 poolings) from ``4t .. 4t + 3`` (centre ``4t + 1.5``).  Video: frame ``t`` is the 25 fps
    grid slot ``[t / fps, (t + 1) / fps)``."""
    from frontends.constants import VIDEO_FPS
    mode = modality or cfg.mode
    if mode == "video":
        return 0.0, 1.0 / VIDEO_FPS
    fs, hop, n_fft = float(cfg.fs), float(cfg.hop_length), float(cfg.n_fft)
    sub = 4
    centre_fbank = 1.5 if getattr(cfg, "audio_subsampling", "conv2d") == "vgg" else 3.0
    stride = sub * hop / fs
    centre0 = (centre_fbank * hop + n_fft / 2.0) / fs
    return centre0 - stride / 2.0, stride


def token_times(logp, tokens: Sequence[int], *, offset: float, stride: float, blank: int = 0,
                edge_frames: int = 4, time_offset: float = 0.0, topology: str = "ctc",
                inner_blank_penalty: float = 0.0, rule: str = "split", posterior_scale: float = 1.0,
                posterior_margin: int = 8) -> List[TokenTime]:
    """Forced alignment of ``tokens`` on ``logp`` ``[T, V]`` (:func:`ctc_viterbi` on ``topology``
    with ``inner_blank_penalty``); times in seconds plus ``time_offset`` (e.g. the segment's start in the
    recording).  ``rule`` ``"split"``: the timing rule of the module docstring (blanks between two
    tokens split at their middle); ``"own"``: each token's own frames, ``[first, last + 1)``;
    ``"posterior"``: the split rule on each token's expected frame under the path posterior
    (:func:`ctc_occupancy` at ``posterior_scale``) instead of its best-path spike: two neighbours'
    boundary is the middle of their expected frames.  The posterior is taken over the frames from
    ``posterior_margin`` before the best path's first spike to as many after its last (at a small scale the
    path posterior would otherwise spread the tokens over any silence around them); the first token's start
    and the last one's end are the split rule's (moved out to the expected frame where that lies beyond
    them).  The spike frames and ``conf`` stay the best path's."""
    if rule not in RULES:
        raise AlignmentError(f"rule must be one of {RULES}, got {rule!r}")
    lp = logp.detach().cpu().float().numpy() if hasattr(logp, "detach") else np.asarray(logp, np.float32)
    tokens = [int(t) for t in tokens]
    if not tokens:
        return []
    path = ctc_viterbi(lp, tokens, blank=blank, topology=topology, inner_blank_penalty=inner_blank_penalty)
    spans = token_spans(path, len(tokens))
    T = lp.shape[0]
    if rule == "posterior":
        edges = _posterior_edges(lp, tokens, spans, blank, edge_frames, topology, inner_blank_penalty,
                                 posterior_scale, posterior_margin)
    else:
        edges = _spike_edges(spans, T, edge_frames, own=rule == "own")
    return [TokenTime(tokens[k], round(time_offset + max(0.0, offset + lo * stride), 3),
                      round(time_offset + offset + hi * stride, 3),
                      round(float(np.exp(lp[a:b + 1, tokens[k]].max())), 4), a, b)
            for k, ((a, b), (lo, hi)) in enumerate(zip(spans, edges))]


def _spike_edges(spans, T: int, edge_frames: int, own: bool) -> List[Tuple[int, int]]:
    """Each token's ``[start, end)`` in frame edges by its best-path spike: its own frames (``own``), or the
    split rule of the module docstring."""
    edges = []
    for k, (a, b) in enumerate(spans):
        if own:
            lo, hi = a, b
        else:
            if k == 0:
                lo = max(0, a - edge_frames)
            else:
                pb = spans[k - 1][1]
                lo = pb + 1 + (a - pb) // 2          # second half of the blanks before (an odd middle frame goes before)
            if k == len(spans) - 1:
                hi = min(T - 1, b + edge_frames)
            else:
                na = spans[k + 1][0]
                hi = b + (na - b) // 2                # first half of the blanks after
        edges.append((lo, hi + 1))
    return edges


def _posterior_edges(lp, tokens, spans, blank: int, edge_frames: int, topology: str, inner_blank_penalty: float,
                     scale: float, margin: int) -> List[Tuple[float, float]]:
    """Each token's ``[start, end)`` in frame edges by rule ``posterior`` (:func:`token_times`)."""
    if margin < 0:
        raise AlignmentError(f"posterior_margin must be >= 0, got {margin}")
    T = lp.shape[0]
    w0, w1 = max(0, spans[0][0] - margin), min(T, spans[-1][1] + margin + 1)
    g = ctc_occupancy(lp[w0:w1], tokens, blank=blank, scale=scale, topology=topology,
                      inner_blank_penalty=inner_blank_penalty)
    centre = w0 + (g * np.arange(w1 - w0)[:, None]).sum(0) / g.sum(0)       # expected frame of each token
    inner = (centre[:-1] + centre[1:]) / 2.0 + 0.5                          # boundaries, in frame edges
    lo0 = min(float(max(0, spans[0][0] - edge_frames)), float(np.floor(centre[0])))
    hi_last = max(float(min(T - 1, spans[-1][1] + edge_frames) + 1), float(np.floor(centre[-1]) + 1))
    bounds = np.concatenate([[lo0], inner, [hi_last]])
    return list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))
