"""CER under simulated video frame loss (and babble noise), for several models, with shared work cached.

    from avsr.eval.sweep import default_conditions, run_sweep
    res = run_sweep({"A0": s2t_a0, "AV0": s2t_av0}, dataset, default_conditions(), batch_size=16)

Conditions: ``random`` frame loss at every rate of ``RATES``, ``segment`` at 0.5, ``whole``, and
babble noise at 0 / -2.5 / -5 dB SNR with full video.  Frame loss is seeded per utterance, rate and
pattern (:func:`avsr.robust.missing_video.drop_frames`); babble is seeded per utterance and SNR.

**Cached sweep** (``cache=True``).  What does not depend on the drop pattern is computed once per
batch of utterances: the audio front-end (fbank, subsampling, positional encoding) and the
per-frame visual CNN features of the clean video (a dropped frame is a black frame, whose feature is
one constant vector: the black-frame feature).  All the frame-loss conditions of a batch then run
as ONE stacked encoder forward and ONE batched search (``B x conditions`` utterances).  A model
without video (A0) gives the same output for every frame-loss condition and is decoded once.  The
uncached path (``cache=False``) decodes every condition independently from the raw batch; a test
checks that both give identical hypotheses.  Only per-frame visual front-ends can be cached (the
``light`` CNN); a Conv3D front-end (``resnet18``) falls back to computing features per condition.

MS-Adapter routing: utterances whose share of present frames is <= the model's Speech2Text
``adapter_threshold`` are decoded on the audio-only path with the adapters on (same as
:meth:`Speech2Text.decode_batch`).
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from avsr.data.batch import Batch
from avsr.models.model import reconcile_video
from avsr.robust.audio_noise import mix_at_snr
from avsr.robust.missing_video import drop_frames, stable_seed

__all__ = ["RATES", "Condition", "default_conditions", "add_babble", "run_sweep", "degradation_area"]

RATES = (0.0, 0.1, 0.25, 0.3, 0.5, 0.7, 0.75, 1.0)


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


def _present_share(frame_mask: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
    T = frame_mask.shape[1]
    valid = torch.arange(T)[None, :] < lens.cpu()[:, None]
    return (frame_mask.cpu() & valid).sum(1).float() / lens.cpu().clamp_min(1).float()


class _Timer:
    def __init__(self):
        self.t: Dict[str, float] = {}

    def add(self, k: str, dt: float):
        self.t[k] = self.t.get(k, 0.0) + dt


def _cat_front(a_front, k: int):
    a, pos, lens, mask = a_front
    return (a.repeat(k, 1, 1), pos, lens.repeat(k), mask.repeat(k, 1, 1))


def _decode_cached(s2t, batch: Batch, conds: List[Condition], pool, seed: int, timer: _Timer) -> Dict[str, list]:
    """One model, one batch, all conditions: ``{condition name: [Result per utterance]}``."""
    model = s2t.model
    mode = model.cfg.mode
    out: Dict[str, list] = {}
    B = len(batch)
    drop_conds = [c for c in conds if c.snr_db is None]
    noise_conds = [c for c in conds if c.snr_db is not None]
    with torch.no_grad():
        t0 = time.perf_counter()
        a_front = model.audio_front(batch.to(s2t.device)) if model.has_audio else None
        timer.add("audio_front", time.perf_counter() - t0)
        if mode == "audio":
            # A0: the video does not matter; decode clean audio once for all frame-loss conditions
            res = _run(s2t, "audio", {"audio": a_front}, B, timer)
            for c in drop_conds:
                out[c.name] = res
        else:
            t0 = time.perf_counter()
            per_frame = model.cfg.visual_frontend == "light"
            if mode == "audiovisual":
                video, vlens = reconcile_video(batch.video, batch.video_lens, a_front[2].cpu())
            else:
                video, vlens = batch.video, batch.video_lens
            feats = black = None
            if per_frame:
                feats, _ = model.visual_frontend(video.to(s2t.device), vlens.to(s2t.device))
                z = torch.zeros((1, 1) + tuple(video.shape[2:]), dtype=video.dtype, device=s2t.device)
                black = model.visual_frontend(z, torch.ones(1, dtype=torch.long, device=s2t.device))[0][0, 0]
            timer.add("visual_front", time.perf_counter() - t0)
            fronts_v, routes, drops = [], [], []
            for c in drop_conds:
                if c.drops_video:
                    _, fmask = drop_frames(batch.video, batch.video_lens, c.rate, c.pattern, list(batch.utt_ids),
                                           seed, frame_mask=batch.frame_mask)
                else:
                    fmask = batch.frame_mask if batch.frame_mask is not None else \
                        torch.arange(batch.video.shape[1])[None, :] < batch.video_lens[:, None]
                routes.append(_route(s2t, fmask, batch.video_lens))
                t0 = time.perf_counter()
                Tt = video.shape[1]
                fm = fmask[:, :Tt] if fmask.shape[1] >= Tt else torch.cat(
                    [fmask, fmask.new_zeros(B, Tt - fmask.shape[1])], 1)
                inside = torch.arange(Tt)[None, :] < batch.video_lens[:, None]
                dropped = (~fm) & inside        # frames that become black (beyond the video: black already)
                if per_frame:
                    f = torch.where(dropped[..., None].to(feats.device), black, feats)
                else:
                    f, _ = model.visual_frontend((video * (~dropped)[..., None, None].to(video.dtype)).to(s2t.device),
                                                 vlens.to(s2t.device))
                fronts_v.append(f)
                drops.append(dropped)
                timer.add("visual_front", time.perf_counter() - t0)
            k = len(drop_conds)
            if k:
                route = torch.cat(routes) if routes[0] is not None else None
                front = {"visual": torch.cat(fronts_v)}
                if mode == "audiovisual":
                    front["audio"] = _cat_front(a_front, k)
                vb = Batch(utt_ids=list(batch.utt_ids) * k, video_lens=batch.video_lens.repeat(k))
                # identical inputs give identical outputs: decode each distinct input of an utterance once
                uniq, src = _distinct_inputs(torch.cat(drops), route, B)
                if len(uniq) < B * k:
                    idx = torch.tensor(uniq)
                    front = _sub_front(front, idx.to(s2t.device))
                    route = None if route is None else route[idx]
                    vb = Batch(utt_ids=[vb.utt_ids[i] for i in uniq], video_lens=vb.video_lens[idx])
                res_u = _run(s2t, mode, front, len(uniq), timer, route=route, vbatch=vb)
                res = [res_u[j] for j in src]
                for i, c in enumerate(drop_conds):
                    out[c.name] = res[i * B:(i + 1) * B]
        for c in noise_conds:
            a_n = None
            if model.has_audio:          # (babble does not reach a video-only model)
                t0 = time.perf_counter()
                a_n = model.audio_front(add_babble(batch, pool, c.snr_db, seed).to(s2t.device))
                timer.add("audio_front", time.perf_counter() - t0)
            if mode == "audio":
                out[c.name] = _run(s2t, "audio", {"audio": a_n}, B, timer)
            elif mode == "video":      # babble does not reach a video-only model: clean-video result
                fv = feats if per_frame else model.visual_frontend(video.to(s2t.device), vlens.to(s2t.device))[0]
                out[c.name] = out.get(Condition(0.0).name) or _run(s2t, "video", {"visual": fv}, B, timer,
                                                                   vbatch=batch)
            else:
                i0 = [c2.name for c2 in drop_conds].index(Condition(0.0).name) if Condition(0.0) in drop_conds else None
                fv = fronts_v[i0] if i0 is not None else model.visual_frontend(
                    video.to(s2t.device), vlens.to(s2t.device))[0]
                fmask = batch.frame_mask if batch.frame_mask is not None else \
                    torch.arange(batch.video.shape[1])[None, :] < batch.video_lens[:, None]
                out[c.name] = _run(s2t, mode, {"audio": a_n, "visual": fv}, B, timer,
                                   route=_route(s2t, fmask, batch.video_lens), vbatch=batch)
    return out


def _distinct_inputs(dropped: torch.Tensor, route: Optional[torch.Tensor], B: int):
    """Rows of the stacked frame-loss conditions (row ``i * B + j``: condition ``i``, utterance ``j``) whose
    model input is distinct, and for every row the position of its input among them.  An utterance's input
    is fixed by its blacked-out frames (``dropped`` [B*k, T]), or, on the audio-only adapter path
    (``route``), by nothing else: random@1.0 and ``whole`` coincide, and so does a low rate that drops
    no frame of a short utterance with rate 0.  Returns ``(distinct rows, [index into them per row])``."""
    seen: Dict[tuple, int] = {}
    uniq: List[int] = []
    src: List[int] = []
    packed = np.packbits(dropped.cpu().numpy(), axis=1)
    for r in range(dropped.shape[0]):
        key = (r % B, None) if route is not None and bool(route[r]) else (r % B, packed[r].tobytes())
        if key not in seen:
            seen[key] = len(uniq)
            uniq.append(r)
        src.append(seen[key])
    return uniq, src


def _route(s2t, fmask, vlens) -> Optional[torch.Tensor]:
    m = s2t.model
    if m.adapters is None or m.cfg.mode != "audiovisual" or s2t.adapter_threshold is None or m.adapter_policy == "off":
        return None
    return _present_share(fmask, vlens) <= float(s2t.adapter_threshold) + 1e-9


def _sub_front(front: Dict, idx: torch.Tensor) -> Dict:
    out = {}
    if "audio" in front:
        a, pos, lens, mask = front["audio"]
        out["audio"] = (a[idx], pos, lens[idx], mask[idx])
    if "visual" in front:
        out["visual"] = front["visual"][idx]
    return out


def _run(s2t, mode: str, front: Dict, n: int, timer: _Timer, route=None, vbatch: Optional[Batch] = None) -> list:
    """Encode from precomputed fronts and search; with ``route``, the routed utterances run the
    audio-only path with adapters."""
    model = s2t.model
    res: List = [None] * n
    groups = [(torch.arange(n), mode)]
    if route is not None and bool(route.any()):
        groups = [(torch.nonzero(route).flatten(), "audio"), (torch.nonzero(~route).flatten(), mode)]
    for idx, m in groups:
        if idx.numel() == 0:
            continue
        f = _sub_front(front, idx.to(s2t.device))
        if m == "audio":
            f.pop("visual", None)
        b = Batch(utt_ids=[""] * idx.numel())
        if m == "video" and vbatch is not None:
            b = b.replace(video_lens=vbatch.video_lens[idx.cpu()].to(s2t.device))
        t0 = time.perf_counter()
        with model.adapter_switch(model.adapters_for(m)):
            enc, lens, _ = model.encode(b, modality=m, front=f)
            timer.add("encoder", time.perf_counter() - t0)
            t0 = time.perf_counter()
            rs = s2t.decode_encoded(enc, lens, m)
            timer.add("search", time.perf_counter() - t0)
        for j, r in zip(idx.tolist(), rs):
            res[j] = r
    return res


@contextmanager
def _stage_times(s2t, timer: _Timer):
    """Per-stage times of Speech2Text's own decode (the uncached sweep), under the cached sweep's stage
    names: ``audio_front`` (:meth:`audio_front`), ``visual_front`` (the visual front-end's forward),
    ``encoder`` (the rest of the encode) and ``search``.  The model is wrapped only inside the block."""
    model = s2t.model
    spent = {"audio_front": 0.0, "visual_front": 0.0}
    orig_front = model.audio_front
    started = []

    def audio_front(batch):
        t0 = time.perf_counter()
        try:
            return orig_front(batch)
        finally:
            spent["audio_front"] += time.perf_counter() - t0

    def v_pre(_m, _inp):
        started.append(time.perf_counter())

    def v_post(_m, _inp, _out):
        spent["visual_front"] += time.perf_counter() - started.pop()

    enc0, search0 = s2t.timings["encode"], s2t.timings["search"]
    vf = getattr(model, "visual_frontend", None)
    hooks = []
    try:
        model.audio_front = audio_front          # an instance attribute over the method, removed below
        if vf is not None:
            hooks = [vf.register_forward_pre_hook(v_pre), vf.register_forward_hook(v_post)]
        yield
    finally:
        vars(model).pop("audio_front", None)
        for h in hooks:
            h.remove()
        for k, v in spent.items():
            timer.add(k, v)
        timer.add("encoder", s2t.timings["encode"] - enc0 - spent["audio_front"] - spent["visual_front"])
        timer.add("search", s2t.timings["search"] - search0)


def _decode_uncached(s2t, batch: Batch, conds: List[Condition], pool, seed: int, timer: _Timer) -> Dict[str, list]:
    """Every condition decoded on its own, by Speech2Text's own path, from the raw batch; per-stage
    times as in the cached sweep, plus ``decode`` (the whole decode of each condition)."""
    out = {}
    mode = s2t.model.cfg.mode
    for c in conds:
        b = batch
        t0 = time.perf_counter()
        if c.snr_db is not None:
            if s2t.model.has_audio:      # the mixing counts as audio front-end, as in the cached sweep
                b = add_babble(batch, pool, c.snr_db, seed)
                timer.add("audio_front", time.perf_counter() - t0)
        elif c.drops_video and b.video is not None:
            video, mask = drop_frames(b.video, b.video_lens, c.rate, c.pattern, list(b.utt_ids), seed,
                                      frame_mask=b.frame_mask)
            b = b.replace(video=video, frame_mask=mask)
        if mode == "audio":
            b = b.replace(video=None, video_lens=None, frame_mask=None)
        with _stage_times(s2t, timer):
            out[c.name] = s2t.decode_batch(b)
        timer.add("decode", time.perf_counter() - t0)
    return out


def run_sweep(models: Dict[str, object], dataset, conditions: Sequence[Condition], batch_size: int = 16,
              cache: bool = True, seed: int = 0, limit: int = 0, progress: bool = True,
              collect_fused: Sequence[float] = ()) -> Dict:
    """Decode ``dataset`` (an :class:`~avsr.data.dataset.AVSRDataset` with audio+video) with every
    model under every condition.  Returns ``{"hyps": {model: {cond: {utt: text}}}, "timing":
    {model: {stage: s}}, "conditions": [...], "fused": {model: {rate: [U, d]}}, "skipped": {utt: reason}}``.
    An utterance whose media cannot be read is skipped for every model and condition and listed in
    ``skipped`` (``avsr eval`` then scores it as an empty hypothesis, as ``avsr decode`` does); the
    sweep goes on.
    ``collect_fused``: random-pattern rates at which to also collect mean-pooled ``fused``
    representations (for the representation-similarity diagnostic)."""
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
    load_s = 0.0
    bar = tqdm(total=n, desc="sweep", disable=not progress, leave=False)
    for s in range(0, n, batch_size):
        t0 = time.perf_counter()
        items, bad = load_items(dataset, order[s:s + batch_size])
        skipped.update(bad)
        load_s += time.perf_counter() - t0
        if not items:
            bar.update(len(order[s:s + batch_size]))
            continue
        batch = collate(items)
        for name, s2t in models.items():
            fn = _decode_cached if cache else _decode_uncached
            res = fn(s2t, batch, conds, pool, seed, timers[name])
            for cname, rs in res.items():
                for u, r in zip(batch.utt_ids, rs):
                    hyps[name][cname][u] = r.text
            for r in collect_fused:
                fused[name][float(r)].update(_fused(s2t, batch, float(r), seed))
        bar.update(len(order[s:s + batch_size]))
    bar.close()
    return {"hyps": hyps, "timing": {m: dict(t.t) for m, t in timers.items()}, "load_seconds": load_s,
            "skipped": skipped,
            "conditions": [c.name for c in conds], "cache": cache,
            "fused": {m: {r: d for r, d in v.items()} for m, v in fused.items()}}


def _fused(s2t, batch: Batch, rate: float, seed: int) -> Dict[str, np.ndarray]:
    """Mean-pooled ``fused`` tap per utterance at a random frame-loss rate (model's own path)."""
    model = s2t.model
    b = batch
    if model.cfg.mode == "audio":
        b = b.replace(video=None, video_lens=None, frame_mask=None)
    elif rate > 0:
        video, mask = drop_frames(b.video, b.video_lens, rate, "random", list(b.utt_ids), seed, frame_mask=b.frame_mask)
        b = b.replace(video=video, frame_mask=mask)
    with torch.no_grad():
        _, lens, taps = model.encode(b.to(s2t.device))
    x, m = taps["fused"], taps["mask"]
    pooled = (x * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp_min(1)
    return {u: pooled[i].cpu().numpy() for i, u in enumerate(batch.utt_ids)}


def degradation_area(cer_by_rate: Dict[float, float], ref0: float) -> float:
    """Trapezoidal area under ``CER(r) - ref0`` over the rate grid (ref0: CER of AV0 at rate 0)."""
    rs = sorted(cer_by_rate)
    ys = [cer_by_rate[r] - ref0 for r in rs]
    return float(sum((rs[i + 1] - rs[i]) * (ys[i] + ys[i + 1]) / 2.0 for i in range(len(rs) - 1)))
