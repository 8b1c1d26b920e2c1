"""Proxy checks that SynthMISP video carries information the audio mixture lacks.

1. :func:`viseme_classification` -- a nearest-centroid classifier on raw lip-ROI pixels: if the
   six viseme classes are separable by something this simple, the drawn mouths really carry
   the phonetic information a visual front-end must learn.
2. :func:`envelope_correlation` -- the target's mouth opening must follow the target's own
   speech envelope, and clearly less the interfering talker's (so video tells the talkers
   apart in overlapped speech).

Both are pure numpy; :mod:`avsr.synthmisp.checks` runs them on a generated corpus.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np

#: The six classes of the viseme check (speech.VISEMES without "other"), in label order.
CLASSES = ("sil", "bilabial", "labiodental", "rounded", "spread", "open")
#: Share of each class held out for testing.
TEST_FRACTION = 0.3
#: Envelope correlation: all series are smoothed with a Gaussian of this sigma (frames; 0.5 frame
#: = 20 ms at 25 fps) before Pearson r -- light smoothing that removes frame-level jitter of the
#: RMS envelope without hiding syllable-rate (3-8 Hz) modulation (with espeak-ng speech, more
#: smoothing lowers r: 1 frame 0.64, 2 frames 0.54 mean r_target).
ENV_SMOOTH_FRAMES = 0.5


def _normalise(rois: np.ndarray) -> np.ndarray:
    """[N, ...] -> float32 [N, D], each image to zero mean and unit standard deviation."""
    x = np.asarray(rois, dtype=np.float32).reshape(len(rois), -1)
    x = x - x.mean(axis=1, keepdims=True)
    return x / np.maximum(x.std(axis=1, keepdims=True), 1e-6)


def viseme_classification(rois: np.ndarray, labels: np.ndarray, seed: int = 0, *,
                          classes: Sequence[str] = CLASSES, test_fraction: float = TEST_FRACTION,
                          groups: Optional[np.ndarray] = None) -> Dict:
    """Nearest-centroid viseme classification on pixels.

    ``rois``: uint8 [N, H, W] (88x88 grey lip crops); ``labels``: int [N] indices into ``classes``.
    Each image is normalised to zero mean / unit std, class centroids are the mean of the training
    images, a test image takes the class of the nearest centroid (Euclidean).  Split: per class,
    ``test_fraction`` of the items (at least one where a class has >= 2) go to test, chosen by
    ``default_rng(seed)``; with ``groups`` (e.g. an utterance id per ROI) whole groups are held
    out instead, so no utterance is in both sides.

    Returns ``dict(accuracy, confusion, classes, n_train, n_test, per_class_accuracy)``;
    ``confusion[i][j]`` counts test items of true class ``i`` predicted as ``j``.
    """
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    if len(labels) != len(rois):
        raise ValueError(f"{len(rois)} ROIs but {len(labels)} labels")
    C = len(classes)
    if len(labels) and (labels.min() < 0 or labels.max() >= C):
        raise ValueError(f"labels must be in [0, {C})")
    rng = np.random.default_rng(seed)
    test = np.zeros(len(labels), dtype=bool)
    if groups is not None:
        groups = np.asarray(groups).reshape(-1)
        ug = np.unique(groups)
        ug = ug[rng.permutation(len(ug))]
        test[np.isin(groups, ug[:max(1, int(round(test_fraction * len(ug))))])] = True
    else:
        for c in range(C):
            idx = np.flatnonzero(labels == c)
            if len(idx) < 2:
                continue
            k = min(len(idx) - 1, max(1, int(round(test_fraction * len(idx)))))
            test[rng.permutation(idx)[:k]] = True
    x = _normalise(rois)
    train = ~test
    present = np.array([np.any(labels[train] == c) for c in range(C)])
    cents = np.zeros((C, x.shape[1]), dtype=np.float64)
    for c in range(C):
        if present[c]:
            cents[c] = x[train & (labels == c)].mean(axis=0)
    xt = x[test].astype(np.float64)
    # squared distance up to the per-item constant |x|^2
    d = (cents ** 2).sum(axis=1)[None, :] - 2.0 * xt @ cents.T
    d[:, ~present] = np.inf
    pred = np.argmin(d, axis=1) if len(xt) else np.zeros(0, dtype=np.int64)
    yt = labels[test]
    conf = np.zeros((C, C), dtype=np.int64)
    np.add.at(conf, (yt, pred), 1)
    rows = conf.sum(axis=1)
    return {"accuracy": float(np.mean(pred == yt)) if len(yt) else float("nan"),
            "confusion": conf.tolist(), "classes": list(classes),
            "n_train": int(train.sum()), "n_test": int(test.sum()),
            "per_class_accuracy": {classes[c]: (float(conf[c, c] / rows[c]) if rows[c] else None)
                                   for c in range(C)}}


def _smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if sigma <= 0 or len(x) < 2:
        return x
    r = max(1, int(np.ceil(3 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    return np.convolve(np.pad(x, r, mode="edge"), k, mode="valid")


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation; 0.0 when either series is constant (no linear relation measurable)."""
    a = np.asarray(a, dtype=np.float64) - np.mean(a)
    b = np.asarray(b, dtype=np.float64) - np.mean(b)
    den = np.sqrt(np.sum(a * a) * np.sum(b * b))
    return float(np.sum(a * b) / den) if den > 1e-12 else 0.0


def envelope_correlation(mouth_opening: np.ndarray, target_env: np.ndarray, interferer_env: np.ndarray,
                         smooth_frames: float = ENV_SMOOTH_FRAMES) -> Dict[str, float]:
    """Pearson r of the mouth-opening track with the target's and the interferer's speech envelope.

    All three series are per-frame (same rate, same length; longer ones are cut to the shortest)
    and are smoothed with a Gaussian of ``smooth_frames`` (:data:`ENV_SMOOTH_FRAMES`) first.
    Returns ``dict(r_target, r_interferer)``.
    """
    n = min(len(mouth_opening), len(target_env), len(interferer_env))
    m = _smooth(np.asarray(mouth_opening)[:n], smooth_frames)
    rt = pearson(m, _smooth(np.asarray(target_env)[:n], smooth_frames))
    ri = pearson(m, _smooth(np.asarray(interferer_env)[:n], smooth_frames))
    return {"r_target": rt, "r_interferer": ri}
