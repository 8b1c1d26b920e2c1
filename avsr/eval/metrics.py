"""Character error rate (jiwer), bootstrap confidence intervals and paired bootstrap.

CER is ``sum(errors) / sum(reference characters)`` over a set of utterances, where the errors of
one utterance are jiwer's substitutions + deletions + insertions on characters (spaces removed:
Mandarin text has no word spaces; an empty hypothesis counts every reference character as
deleted, an empty reference counts every hypothesis character as inserted).

Bootstrap (Koehn 2004 / Bisani & Ney 2004 style): resample utterances with replacement ``n``
times with a seeded generator and recompute the corpus CER each time; the 95 % interval is the
2.5 / 97.5 percentiles.  The paired bootstrap resamples the *same* utterances for two systems
and reports how often system B is not better than system A (a one-sided p-value for "B beats A").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Sequence, Tuple

import jiwer
import numpy as np

__all__ = ["UttScore", "utt_error_split", "utt_errors", "score_texts", "corpus_cer", "bootstrap_ci", "paired_bootstrap"]


def _norm(s: str) -> str:
    return "".join(str(s).split())


def utt_error_split(ref: str, hyp: str) -> Tuple[int, int, int, int]:
    """``(substitutions, deletions, insertions, reference length)`` in characters for one utterance."""
    r, h = _norm(ref), _norm(hyp)
    if not r:
        return 0, 0, len(h), 0
    if not h:
        return 0, len(r), 0, len(r)
    o = jiwer.process_characters(r, h)
    return int(o.substitutions), int(o.deletions), int(o.insertions), len(r)


def utt_errors(ref: str, hyp: str) -> Tuple[int, int]:
    """``(errors, reference length)`` in characters for one utterance."""
    s, d, i, n = utt_error_split(ref, hyp)
    return s + d + i, n


@dataclass
class UttScore:
    utt_id: str
    errors: int
    ref_len: int


def score_texts(refs: Mapping[str, str], hyps: Mapping[str, str]) -> Tuple[list, list]:
    """Score every utterance of ``refs`` (a missing hypothesis counts as empty).

    Returns ``(scores, missing_ids)``."""
    scores, missing = [], []
    for u in sorted(refs):
        if u not in hyps:
            missing.append(u)
        e, n = utt_errors(refs[u], hyps.get(u, ""))
        scores.append(UttScore(u, e, n))
    return scores, missing


def corpus_cer(errors: Sequence[float], ref_lens: Sequence[float]) -> float:
    n = float(np.sum(ref_lens))
    return float(np.sum(errors)) / n if n > 0 else float("nan")


def _resample_idx(n: int, num: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(num, n))


def bootstrap_ci(errors: Sequence[float], ref_lens: Sequence[float], num: int = 1000, seed: int = 0,
                 alpha: float = 0.05) -> Dict[str, float]:
    """Corpus CER with a ``1 - alpha`` bootstrap interval over utterances."""
    e = np.asarray(errors, dtype=np.float64)
    n = np.asarray(ref_lens, dtype=np.float64)
    if e.shape != n.shape or e.ndim != 1 or len(e) == 0:
        raise ValueError("errors and ref_lens must be equal-length non-empty 1-D sequences")
    idx = _resample_idx(len(e), num, seed)
    den = n[idx].sum(1)
    cers = np.where(den > 0, e[idx].sum(1) / np.maximum(den, 1e-12), np.nan)
    lo, hi = np.nanpercentile(cers, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return {"cer": corpus_cer(e, n), "lo": float(lo), "hi": float(hi), "num_utts": int(len(e)),
            "errors": int(e.sum()), "ref_chars": int(n.sum()), "resamples": int(num), "seed": int(seed)}


def paired_bootstrap(errors_a: Sequence[float], errors_b: Sequence[float], ref_lens: Sequence[float],
                     num: int = 1000, seed: int = 0, alpha: float = 0.05) -> Dict[str, float]:
    """Compare system B with system A on the same utterances (same order).

    Returns the CERs, the relative reduction ``(A - B) / A`` with its bootstrap interval, and
    ``p_b_not_better``: the share of resamples in which B's CER is >= A's (B is significantly
    better at level alpha when it is < alpha)."""
    a = np.asarray(errors_a, dtype=np.float64)
    b = np.asarray(errors_b, dtype=np.float64)
    n = np.asarray(ref_lens, dtype=np.float64)
    if not (a.shape == b.shape == n.shape) or a.ndim != 1 or len(a) == 0:
        raise ValueError("errors_a, errors_b and ref_lens must be equal-length non-empty 1-D sequences")
    idx = _resample_idx(len(a), num, seed)
    den = np.maximum(n[idx].sum(1), 1e-12)
    ca, cb = a[idx].sum(1) / den, b[idx].sum(1) / den
    rel = np.where(ca > 0, (ca - cb) / np.maximum(ca, 1e-12), 0.0)
    lo, hi = np.percentile(rel, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    cer_a, cer_b = corpus_cer(a, n), corpus_cer(b, n)
    return {"cer_a": cer_a, "cer_b": cer_b,
            "rel_reduction": (cer_a - cer_b) / cer_a if cer_a > 0 else 0.0,
            "rel_lo": float(lo), "rel_hi": float(hi),
            "p_b_not_better": float(np.mean(cb >= ca)), "resamples": int(num), "seed": int(seed)}


def read_text_file(path: str) -> Dict[str, str]:
    """Kaldi ``text``: ``<utt> <transcript>`` per line (an utterance with empty text is kept)."""
    out: Dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            parts = line.split(maxsplit=1)
            out[parts[0]] = parts[1] if len(parts) > 1 else ""
    return out


def summarize(scores: Sequence[UttScore], num: int = 1000, seed: int = 0,
              missing: Optional[Sequence[str]] = None) -> Dict[str, float]:
    d = bootstrap_ci([s.errors for s in scores], [s.ref_len for s in scores], num=num, seed=seed)
    d["missing_hyps"] = len(missing or [])
    return d
