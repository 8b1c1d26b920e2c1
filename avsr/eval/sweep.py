"""CER under simulated video frame loss (and babble noise), for several models, with shared work cached.

    from avsr.eval.sweep import default_conditions, run_sweep
    res = run_sweep({"A0": s2t_a0, "AV0": s2t_av0}, dataset, default_conditions(), batch_size=16)

Conditions: ``random`` frame loss at every rate of ``RATES``, ``segment`` at 0.5, ``whole``, and
babble noise at 0 / -2.5 / -5 dB SNR with full video.  Frame loss is seeded per utterance, rate and
pattern (:func:`avsr.robust.frame_loss.drop_frames`); babble is seeded per utterance and SNR.

Every decode goes through :meth:`avsr.inference.Speech2Text.decode_variants`: this module only
turns the conditions into input variants of each batch (which frames are shown, which audio is
heard; the babble mixing is done once per batch for all models) and collects the hypotheses.

**Cached sweep** (``cache=True``, what ``avsr eval`` runs).  The audio front-end of each distinct
audio and the per-frame visual features of the clean video are computed once per batch (a dropped
frame is a black frame, whose feature is one constant vector); the frame-loss conditions of a batch
run as one stacked encoder forward and one batched search, and each distinct model input of an
utterance is decoded once: an audio-only model (A0) decodes the clean audio once for every
frame-loss condition, and on the MS-Adapter path the video is not an input (``whole`` = random@1).
The uncached path (``cache=False``) decodes every condition on its own through
:meth:`~avsr.inference.Speech2Text.decode_batch`; a test checks that both give identical
hypotheses.  Only per-frame visual front-ends are cached (the ``light`` CNN); a Conv3D front-end
(``resnet18``) computes features per condition.  A frame without a detection counts as missing
(black) in every condition.

MS-Adapter routing is :meth:`Speech2Text.route`, the same as in every other decode: utterances whose
share of present frames is <= the decoder's ``adapter_threshold`` take the audio-only path.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np

from avsr.data.batch import Batch
from avsr.inference import STAGES, Variant
from avsr.robust.audio_noise import mix_at_snr
from avsr.robust.frame_loss import drop_frames, stable_seed

__all__ = ["RATES", "PAPER_RATES", "Condition", "default_conditions", "add_babble", "run_sweep",
           "degradation_area", "area_rates", "sweep_areas"]

RATES = (0.0, 0.1, 0.25, 0.3, 0.5, 0.7, 0.75, 1.0)
#: the random-loss rates of the paper's table (Dai et al., CVPR 2024): the grid of the leaderboard's
#: degradation area and of the non-inferiority claim; a subset of :data:`RATES`
PAPER_RATES = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclass(frozen=True)
class Condition:
    rate: float = 0.0
    pattern: str = "random"
    snr_db: Optional[float] = None

    @property
    def name(self) -> str:
        if self.snr_db is not None:
            return f"babble{self.snr_db:+g}dB"
        if self.pattern == "whole":
            return "whole"
        return f"{self.pattern}@{self.rate:g}"

    @property
    def drops_video(self) -> bool:
        return self.snr_db is None and (self.pattern == "whole" or self.rate > 0)


def default_conditions(rates: Sequence[float] = RATES, segment: Sequence[float] = (0.5,), whole: bool = True,
                       snrs: Sequence[float] = (0.0, -2.5, -5.0)) -> List[Condition]:
    c = [Condition(float(r), "random") for r in rates]
    c += [Condition(float(r), "segment") for r in segment]
    if whole:
        c.append(Condition(1.0, "whole"))
    c += [Condition(0.0, "random", float(s)) for s in snrs]
    return c


def add_babble(batch: Batch, pool: Sequence[np.ndarray], snr_db: float, seed: int = 0, talkers: int = 3) -> Batch:
    """Mix ``talkers`` utterances drawn from ``pool`` (seeded per utterance and SNR) into each
    utterance's valid samples at ``snr_db`` (power ratio over the utterance)."""
    audio = batch.audio.clone()
    for b, u in enumerate(batch.utt_ids):
        n = int(batch.audio_lens[b])
        rng = np.random.default_rng(stable_seed(seed, "babble", u, float(snr_db)) % 2 ** 63)
        parts = []
        for _ in range(talkers):
            src = pool[int(rng.integers(len(pool)))]
            if len(src) == 0:
                continue
            parts.append((src, int(rng.integers(len(src)))))
        audio[b, :n] = mix_at_snr(audio[b, :n], parts, snr_db).to(audio.dtype)
    return batch.replace(audio=audio)


class _Timer:
    def __init__(self):
        self.t: Dict[str, float] = {}

    def add(self, k: str, dt: float):
        self.t[k] = self.t.get(k, 0.0) + dt


def condition_variants(batch: Batch, conds: Sequence[Condition], pool, seed: int = 0) -> List[Variant]:
    """The :class:`~avsr.inference.Variant` of each condition for one batch: the frames a frame-loss
    condition keeps (seeded per utterance, rate and pattern), the babble-mixed audio of a noise
    condition (seeded per utterance and SNR; full video)."""
    out = []
    for c in conds:
        if c.snr_db is not None:
            out.append(Variant(c.name, audio=None if batch.audio is None else
                               add_babble(batch, pool, c.snr_db, seed).audio))
        elif c.drops_video and batch.video is not None:
            _, fmask = drop_frames(batch.video, batch.video_lens, c.rate, c.pattern, list(batch.utt_ids), seed,
                                   frame_mask=batch.frame_mask)
            out.append(Variant(c.name, frame_mask=fmask))
        else:
            out.append(Variant(c.name))
    return out


def run_sweep(models: Dict[str, object], dataset, conditions: Sequence[Condition], batch_size: int = 16,
              cache: bool = True, seed: int = 0, limit: int = 0, progress: bool = True,
              collect_fused: Sequence[float] = (), log=None) -> Dict:
    """Decode ``dataset`` (an :class:`~avsr.data.dataset.AVSRDataset` with audio+video) with every
    model under every condition.  Returns ``{"hyps": {model: {cond: {utt: text}}}, "timing":
    {model: {stage: s}}, "conditions": [...], "fused": {model: {rate: [U, d]}}, "skipped": {utt: reason}}``.
    An utterance whose media cannot be read is skipped for every model and condition and listed in
    ``skipped`` (``avsr eval`` then scores it as an empty hypothesis, as ``avsr decode`` does); the
    sweep goes on.
    ``collect_fused``: random-pattern rates at which to also collect mean-pooled ``fused``
    representations (for the representation-similarity diagnostic).
    ``log``: an :class:`avsr.utils.io.BatchLog`; its records (batches of an interrupted run of the same
    sweep) are taken as decoded, and every batch decoded now is appended to it (``resumed_utts`` in the
    result counts the former; the timings cover only this run's batches)."""
    from tqdm import tqdm

    from avsr.data.dataset import collate, load_items
    conds = list(conditions)
    n = len(dataset) if not limit else min(limit, len(dataset))
    order = sorted(range(n), key=lambda i: -dataset.durations[i])
    pool, skipped = [], {}
    if any(c.snr_db is not None for c in conds):
        for i in range(min(n, 64)):       # babble sources: the first utterances of the set (seeded choice)
            try:
                pool.append(dataset.load_audio(i).astype(np.float64))
            except Exception:  # noqa: BLE001 - an unreadable source is not a babble source (reported below)
                pass
    hyps = {m: {c.name: {} for c in conds} for m in models}
    timers = {m: _Timer() for m in models}
    fused = {m: {float(r): {} for r in collect_fused} for m in models}
    load_s = cond_s = 0.0
    done = set()
    for rec in (log.records if log is not None else ()):
        skipped.update(dict(rec["skipped"]))
        for name, by_c in rec["hyps"].items():
            for cname, h in by_c.items():
                hyps[name][cname].update(h)
                done.update(h)
        for name, by_r in rec["fused"].items():
            for r, d in by_r.items():
                fused[name][float(r)].update({u: np.asarray(v, dtype=np.float32) for u, v in d.items()})
    done |= set(skipped)
    bar = tqdm(total=n, desc="sweep", disable=not progress, leave=False)
    for s in range(0, n, batch_size):
        if done and all(dataset.utt_ids[i] in done for i in order[s:s + batch_size]):
            bar.update(len(order[s:s + batch_size]))
            continue
        t0 = time.perf_counter()
        items, bad = load_items(dataset, order[s:s + batch_size])
        skipped.update(bad)
        load_s += time.perf_counter() - t0
        rec = {"hyps": {m: {c.name: {} for c in conds} for m in models}, "skipped": [list(x) for x in bad],
               "fused": {m: {repr(float(r)): {} for r in collect_fused} for m in models}}
        if not items:
            if log is not None:
                log.append(rec)
            bar.update(len(order[s:s + batch_size]))
            continue
        batch = collate(items)
        t0 = time.perf_counter()
        variants = condition_variants(batch, conds, pool, seed)
        cond_s += time.perf_counter() - t0
        for name, s2t in models.items():
            before = dict(s2t.timings)
            t0 = time.perf_counter()
            res = s2t.decode_variants(batch, variants, cache=cache)
            timers[name].add("decode", time.perf_counter() - t0)
            for k in STAGES:
                timers[name].add(k, s2t.timings[k] - before[k])
            for cname, rs in res.items():
                for u, r in zip(batch.utt_ids, rs):
                    hyps[name][cname][u] = rec["hyps"][name][cname][u] = r.text
            for r in collect_fused:
                f = _fused(s2t, batch, float(r), seed)
                fused[name][float(r)].update(f)
                rec["fused"][name][repr(float(r))] = {u: np.asarray(v, dtype=np.float32).tolist()
                                                       for u, v in f.items()}
        if log is not None:
            log.append(rec)
        bar.update(len(order[s:s + batch_size]))
    bar.close()
    return {"hyps": hyps, "timing": {m: dict(t.t) for m, t in timers.items()}, "load_seconds": load_s,
            "condition_seconds": cond_s, "resumed_utts": len(done),
            "skipped": skipped,
            "conditions": [c.name for c in conds], "cache": cache,
            "fused": {m: {r: d for r, d in v.items()} for m, v in fused.items()}}


def _fused(s2t, batch: Batch, rate: float, seed: int) -> Dict[str, np.ndarray]:
    """Mean-pooled ``fused`` tap per utterance at a random frame-loss rate (model's own path)."""
    b = batch
    if s2t.model.cfg.mode != "audio" and rate > 0:
        video, mask = drop_frames(b.video, b.video_lens, rate, "random", list(b.utt_ids), seed, frame_mask=b.frame_mask)
        b = b.replace(video=video, frame_mask=mask)
    return s2t.pooled_representation(b, "fused")


def degradation_area(cer_by_rate: Dict[float, float], ref0: float, rates: Optional[Sequence[float]] = None) -> float:
    """Trapezoidal area under ``CER(r) - ref0`` over the rate grid (ref0: CER of AV0 at rate 0), in the
    units of the CERs given times rate.

    ``rates``: None = every rate of ``cer_by_rate`` (``avsr eval``'s area over its whole grid, :data:`RATES`
    by default); a sequence (:data:`PAPER_RATES` for the paper's table) = only those rates, each of which
    must be in ``cer_by_rate`` (``KeyError`` naming the missing rate otherwise).  Rates are compared as
    floats."""
    if rates is not None:
        have = {float(r): v for r, v in cer_by_rate.items()}
        missing = [r for r in rates if float(r) not in have]
        if missing:
            raise KeyError(f"degradation_area: no CER at rate(s) {', '.join(f'{r:g}' for r in missing)}")
        cer_by_rate = {float(r): have[float(r)] for r in rates}
    rs = sorted(cer_by_rate)
    ys = [cer_by_rate[r] - ref0 for r in rs]
    return float(sum((rs[i + 1] - rs[i]) * (ys[i] + ys[i + 1]) / 2.0 for i in range(len(rs) - 1)))


def sweep_areas(cer: Dict[str, Dict[str, Dict]], reference: str) -> Dict[str, float]:
    """Each model's degradation area in a sweep's CER table ``cer`` (``{model: {condition: {"cer": ...}}}``,
    as ``avsr eval`` writes it): the trapezoid of CER(r) - ``reference``'s CER at rate 0 over the paper's
    rates (:data:`PAPER_RATES`), the grid of the paper's table; over every ``random@`` rate of the sweep when
    one of those is missing.  ``{}`` without ``reference`` at rate 0."""
    ref = (cer.get(reference) or {}).get("random@0")
    if ref is None:
        return {}
    out = {}
    for m, row in cer.items():
        by_rate = {float(c.split("@", 1)[1]): v["cer"] for c, v in row.items() if c.startswith("random@")}
        out[m] = degradation_area(by_rate, ref["cer"], area_rates(by_rate))
    return out


def area_rates(have) -> List[float]:
    """The rates a degradation area spans, given the random-loss rates a sweep ``have``: the paper's
    (:data:`PAPER_RATES`) when it has all of them, else all it has."""
    have = sorted(float(r) for r in have)
    return list(PAPER_RATES) if all(r in have for r in PAPER_RATES) else have
