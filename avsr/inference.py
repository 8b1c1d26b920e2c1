"""``Speech2Text``: batched inference for AVSR / ASR / VSR models (separate from any CLI).

    s2t = Speech2Text.from_packed("exp/.../packed", beam_size=10)        # or Speech2Text(model, tokenizer)
    res = s2t(audio, video)                 # one utterance: float32 [N] 16 kHz, uint8 ROIs [T,88,88] or None
    results = s2t.decode_batch(batch)       # a padded Batch: several utterances in ONE forward

Search: joint CTC/attention beam search batched across utterances
(:func:`avsr.decoding.batch_beam_search`: CTC prefix scores + decoder + length bonus), or the
CTC-greedy fast path (``ctc_greedy=True``, or ``beam_size=0``).  Modality: an AV model given no
video runs its audio-only path (``modality="audio"``: no visual branch, no cross-attention, no
merge FFN term, adapters on if it has them).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch

from avsr.data.batch import Batch
from avsr.decoding import batch_beam_search, ctc_greedy

__all__ = ["Speech2Text", "Result"]


@dataclass
class Result:
    text: str
    token_ids: List[int]
    score: float
    modality: str
    nbest: List[Dict] = field(default_factory=list)


def _as_tensor(x, dtype):
    if x is None:
        return None
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    return x.to(dtype)


def _subset(batch: Batch, idx: List[int]) -> Batch:
    """The utterances ``idx`` of a padded batch (padding trimmed to the longest kept one)."""
    it = torch.tensor(idx)
    kw = {"utt_ids": [batch.utt_ids[i] for i in idx]}
    for name, lname in (("audio", "audio_lens"), ("video", "video_lens"), ("tokens", "token_lens")):
        x, lens = getattr(batch, name), getattr(batch, lname)
        if x is None:
            continue
        ln = lens.index_select(0, it.to(lens.device))
        kw[name] = x.index_select(0, it.to(x.device))[:, :int(ln.max())]
        kw[lname] = ln
        if name == "video" and batch.frame_mask is not None:
            kw["frame_mask"] = batch.frame_mask.index_select(0, it.to(batch.frame_mask.device))[:, :int(ln.max())]
    return Batch(**kw)


class Speech2Text:
    def __init__(self, model: torch.nn.Module, tokenizer, *, device: Union[str, torch.device] = "cpu",
                 beam_size: int = 10, ctc_weight: Optional[float] = None, penalty: float = 0.0,
                 maxlenratio: float = 0.0, minlenratio: float = 0.0, ctc_greedy: bool = False,
                 nbest: int = 1, crop: int = 88, adapters: str = "auto",
                 adapter_threshold: Optional[float] = 0.0):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.beam_size = int(beam_size)
        self.ctc_weight = float(model.cfg.ctc_weight if ctc_weight is None else ctc_weight)
        if model.decoder is None:
            self.ctc_weight = 1.0
        self.penalty = float(penalty)
        self.maxlenratio = float(maxlenratio)
        self.minlenratio = float(minlenratio)
        self.use_greedy = bool(ctc_greedy) or self.beam_size <= 0
        self.nbest = int(nbest)
        self.crop = int(crop)
        self.timings: Dict[str, float] = {"encode": 0.0, "search": 0.0}
        # MS-Adapter routing: "auto" = adapters on the audio-only path; utterances whose share of
        # present video frames is <= adapter_threshold take that path (0: only with no frame at
        # all, the paper's behaviour; None: never route by the frame mask).  "on"/"off" force them.
        if adapters not in ("auto", "on", "off"):
            raise ValueError(f"adapters must be auto, on or off, got {adapters!r}")
        self.model.adapter_policy = adapters
        self.adapter_threshold = adapter_threshold

    @classmethod
    def from_packed(cls, path, device="cpu", **kw) -> "Speech2Text":
        from avsr.pack import load_packed
        model, tok, info = load_packed(path, device=device)
        dec = dict(info.get("decode") or {})
        dec.update(kw)
        s = cls(model, tok, device=device, **dec)
        s.info = info
        return s

    # ------------------------------------------------------------------ modality
    def pick_modality(self, batch: Batch, modality: Optional[str] = None) -> str:
        if modality:
            return modality
        mode = self.model.cfg.mode
        if mode == "audiovisual" and batch.video is None:
            return "audio"
        return mode

    # ------------------------------------------------------------------ decoding
    @torch.no_grad()
    def encode(self, batch: Batch, modality: Optional[str] = None):
        m = self.pick_modality(batch, modality)
        t0 = time.perf_counter()
        enc, lens, _ = self.model.encode(batch.to(self.device), modality=m)
        self.timings["encode"] += time.perf_counter() - t0
        return enc, lens, m

    @torch.no_grad()
    def decode_encoded(self, enc: torch.Tensor, lens: torch.Tensor, modality: str) -> List[Result]:
        t0 = time.perf_counter()
        model = self.model
        logp = model.ctc.log_softmax(enc)
        out: List[Result] = []
        if self.use_greedy:
            seqs = ctc_greedy(logp, lens)
            best = logp.max(-1).values
            for b, ids in enumerate(seqs):
                out.append(Result(self.tokenizer.decode(ids), ids, float(best[b, :int(lens[b])].sum()), modality))
        else:
            hyps = batch_beam_search(
                model.decoder if self.ctc_weight < 1.0 else None,
                logp if self.ctc_weight > 0 else None, enc, lens,
                beam_size=self.beam_size, sos=model.sos, eos=model.eos, ctc_weight=self.ctc_weight,
                length_bonus=self.penalty, maxlenratio=self.maxlenratio, minlenratio=self.minlenratio,
                nbest=max(self.nbest, 1), vocab_size=model.cfg.vocab_size)
            for b, hs in enumerate(hyps):
                if not hs:
                    out.append(Result("", [], float("-inf"), modality))
                    continue
                nb = []
                for h in hs:
                    ids = [int(t) for t in h.yseq if int(t) not in (model.sos, model.eos)]
                    nb.append({"text": self.tokenizer.decode(ids), "token_ids": ids, "score": float(h.score)})
                out.append(Result(nb[0]["text"], nb[0]["token_ids"], nb[0]["score"], modality, nb))
        self.timings["search"] += time.perf_counter() - t0
        return out

    def route(self, batch: Batch) -> Optional[torch.Tensor]:
        """Bool [B]: utterances sent to the audio-only (adapter) path by the frame mask, or None."""
        m = self.model
        if (m.adapters is None or m.cfg.mode != "audiovisual" or batch.video is None
                or self.adapter_threshold is None or m.adapter_policy == "off"):
            return None
        fm = batch.frame_mask if batch.frame_mask is not None else batch.video.flatten(2).any(-1)
        T = batch.video.shape[1]
        valid = torch.arange(T)[None, :] < batch.video_lens.cpu()[:, None]
        present = (fm.cpu() & valid).sum(1).float() / batch.video_lens.cpu().clamp_min(1).float()
        return present <= float(self.adapter_threshold) + 1e-9

    def decode_batch(self, batch: Batch, modality: Optional[str] = None) -> List[Result]:
        """Decode every utterance of a padded batch in one encoder forward and one batched search
        (two when MS-Adapter routing splits the batch into audio-only and audio-visual parts)."""
        r = self.route(batch) if modality is None else None
        if r is not None and bool(r.any()):
            out: List[Optional[Result]] = [None] * len(batch)
            for sel, mod in ((r, "audio"), (~r, None)):
                idx = torch.nonzero(sel).flatten().tolist()
                if not idx:
                    continue
                sub = _subset(batch, idx)
                if mod == "audio":
                    sub = sub.replace(video=None, video_lens=None, frame_mask=None)
                for i, res in zip(idx, self._decode(sub, mod)):
                    out[i] = res
            return out  # type: ignore[return-value]
        return self._decode(batch, modality)

    def _decode(self, batch: Batch, modality: Optional[str]) -> List[Result]:
        m = self.pick_modality(batch, modality)
        with self.model.adapter_switch(self.model.adapters_for(m)):
            enc, lens, m = self.encode(batch, m)
            return self.decode_encoded(enc, lens, m)

    def make_batch(self, items: Sequence[Dict]) -> Batch:
        """A Batch from dicts with ``audio`` (float [N] 16 kHz) and optional ``video`` (uint8 ROIs
        ``[T, H, W]``, H=W=88 or 96: 96 is centre-cropped) -- all items with video, or none."""
        from avsr.data.dataset import collate
        prepared = []
        has_v = [it.get("video") is not None for it in items]
        if any(has_v) and not all(has_v):
            raise ValueError("make_batch: either every item has video or none (decode them separately)")
        for i, it in enumerate(items):
            a = _as_tensor(it.get("audio"), torch.float32)
            v = _as_tensor(it.get("video"), torch.uint8)
            if v is not None and v.shape[-1] != self.crop:
                off = (v.shape[-1] - self.crop) // 2
                v = v[..., off:off + self.crop, off:off + self.crop]
            prepared.append({"utt_id": it.get("utt_id", f"utt{i}"), "audio": a, "video": v,
                             "detected": None if v is None else torch.ones(v.shape[0], dtype=torch.bool),
                             "tokens": None, "text": None})
        return collate(prepared)

    def __call__(self, audio, video=None, modality: Optional[str] = None) -> Result:
        return self.decode_batch(self.make_batch([{"audio": audio, "video": video}]), modality)[0]
