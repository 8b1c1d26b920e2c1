"""``Speech2Text``: the one class that runs a model for text.

Every decode in the toolkit goes through it: ``avsr decode`` (wav+mp4 pairs and data dirs), the
recipe's decode stage and ``avsr eval`` (the CER-vs-frame-loss sweep)::

    s2t = Speech2Text.from_packed("exp/.../packed", beam_size=10)        # or Speech2Text(model, tokenizer)
    res = s2t(audio, video)                 # one utterance: float32 [N] 16 kHz, uint8 ROIs [T,88,88] or None
    results = s2t.decode_batch(batch)       # a padded Batch: several utterances in ONE forward
    results = s2t.decode_items(items, batch_size=8)          # dicts with audio / video, batched here
    by_name = s2t.decode_variants(batch, [Variant("whole", frame_mask=...), Variant("babble", audio=...)])

It owns, in one place:

* **cropping and batching** (:meth:`make_batch`, :meth:`decode_items`): 96x96 ROIs are centre-cropped
  to the model's 88x88 input by :func:`frontends.roi.center_crop`;
* **search**: joint CTC/attention beam search batched across utterances
  (:func:`avsr.decoding.batch_beam_search`), or CTC greedy (``ctc_greedy=True`` or ``beam_size=0``);
  with ``lm_weight > 0`` the beam search adds a token LM's scores (shallow fusion, :mod:`avsr.lm`):
  the packed model's LM (``avsr pack --lm_dir``) at the pack's default weight, which ``lm_weight=``
  overrides (0: the LM is not even loaded).  CTC greedy never uses the LM (a warning says so when
  ``lm_weight > 0``);
* **late fusion of two CTC paths** (``fusion="entropy"``, the test-time decode of MLA models,
  :mod:`avsr.robust.mla`): an AV model's audio path (``modality="audio"``) and video path
  (``modality="video"`` on the video reconciled to the audio length by the model's own rule,
  :func:`avsr.models.model.reconcile_video`) each give per-frame CTC log-posteriors, fused by
  :func:`avsr.decoding.entropy_fusion.entropy_fusion` (temperature 1, per frame, weighted
  log-posteriors; video frames beyond the utterance's real video are not paired; no frame mask is
  read), then CTC greedy or CTC prefix beam search with ``ctc_weight`` 1 (the attention
  decoder is not fused).  Only an utterance without video frames (a batch without video, or 0
  frames) decodes its audio path alone; one whose frames are all missing (black, e.g. the data dir's
  audio-only utterances, or every frame dropped) is fused like the others, the entropy weights
  being MLA's switch.  Results of fused
  utterances have ``modality="fusion"`` (posteriors on the audio frame grid).  The default comes
  from the packed model (``avsr pack --decode_fusion entropy``); ``fusion=`` overrides it; a forced
  ``modality`` (``decode_batch(batch, "audio")``) bypasses it;
* **modality and MS-Adapter routing** (:meth:`route`): an AV model given no video runs its audio-only
  path (no visual branch, no cross-attention, no merge term, adapters on if it has them); with video,
  an utterance whose share of present frames is at or below ``adapter_threshold`` takes the same
  path.  The default threshold and adapter policy come from the packed model (``avsr pack
  --adapter_threshold``); a constructor argument overrides them.  Nothing is stored on the model;
* **the cached multi-condition decode** (:meth:`decode_variants`) that ``avsr eval`` runs: the audio
  front-end of each distinct audio and the per-frame visual features of the clean video are computed
  once per batch, and each *distinct* model input of an utterance is encoded and searched once (a
  dropped frame is a black frame, whose feature is one constant vector).  ``cache=False`` decodes
  every variant on its own through :meth:`decode_batch`; both give identical hypotheses (tested).

Per-stage seconds accumulate in ``timings``: ``audio_front``, ``visual_front``, ``encoder`` (the rest
of the encode) and ``search``; ``encode`` is their encode part (front-ends + encoder).
"""
from __future__ import annotations

import dataclasses
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, Union

import numpy as np
import torch

from avsr.data.batch import Batch
from avsr.decoding import batch_beam_search, ctc_greedy
from avsr.decoding.entropy_fusion import FUSIONS, entropy_fusion
from avsr.models.model import reconcile_video
from frontends.constants import CROP_SIZE, SAMPLE_RATE, SAMPLES_PER_FRAME
from frontends.roi import center_crop

__all__ = ["Speech2Text", "Result", "Variant", "ADAPTER_POLICIES", "FUSIONS", "fixed_windows", "check_device"]

ADAPTER_POLICIES = ("auto", "on", "off")
#: the ``modality`` of a Result decoded from fused audio and video CTC posteriors
FUSED = "fusion"
STAGES = ("audio_front", "visual_front", "encoder", "search")


@dataclass
class Result:
    """One utterance's decode.  ``score``: the search's total weighted log score (CTC greedy: the sum
    of the best frame log-posteriors); ``nbest``: ``[{"text", "token_ids", "score"}, ...]`` best
    first (beam search); ``ctc_logp``: float32 ``[T, V]`` CTC frame scores of its encoder frames for
    forced alignment (the log-posteriors, or the alignment CTC's scores when the model has one), only
    when the decoder keeps them (``keep_posteriors``, :meth:`Speech2Text.transcribe`)."""
    text: str
    token_ids: List[int]
    score: float
    modality: str
    nbest: List[Dict] = field(default_factory=list)
    ctc_logp: Optional[np.ndarray] = field(default=None, repr=False)


@dataclass(frozen=True)
class Variant:
    """One input condition of a batch for :meth:`Speech2Text.decode_variants`.

    ``frame_mask``: bool ``[B, T]``, the frames shown (the others are black; ``None``: the batch's
    own mask).  ``audio``: ``[B, N]`` audio replacing the batch's (``None``: the batch's own), e.g.
    babble-mixed; it has the batch's lengths."""
    name: str
    frame_mask: Optional[torch.Tensor] = None
    audio: Optional[torch.Tensor] = None


def fixed_windows(audio, roi=None, seconds: float = 30.0):
    """Cut a recording into windows of ``seconds``: ``[(audio, roi or None), ...]``; the ROI frames
    follow the audio (25 fps on the 16 kHz clock); a tail under 0.1 s joins the previous window."""
    n = len(audio)
    step = int(seconds * SAMPLE_RATE)
    if n <= step:
        return [(audio, roi)]
    out = []
    for s in range(0, n, step):
        a = audio[s:s + step]
        if len(a) < SAMPLE_RATE // 10 and out:
            out[-1] = (audio[s - step:], None if roi is None else roi[(s - step) // SAMPLES_PER_FRAME:])
            continue
        r = None if roi is None else roi[s // SAMPLES_PER_FRAME:(s + step) // SAMPLES_PER_FRAME]
        out.append((a, r if r is None or len(r) else None))
    return out


def check_device(device: str) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N``, with a clear error when it is malformed or absent."""
    import re
    if not re.fullmatch(r"cpu|cuda(:\d+)?", str(device)):
        raise ValueError(f"--device must be cpu, cuda or cuda:N, got {device!r}")
    if str(device).startswith("cuda"):
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        idx = int(str(device).split(":")[1]) if ":" in str(device) else 0
        if idx >= n:
            raise RuntimeError(f"--device {device}: {n} CUDA device(s) available")
    return torch.device(device)


def _as_tensor(x, dtype):
    if x is None:
        return None
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a numpy array or a torch tensor, got {type(x).__name__} "
                        "(file paths: see frontends.pairs.prepare_pair)")
    return x if dtype is None else x.to(dtype)


#: full scale of integer PCM sample types (an int16 array is read as soundfile reads an int16 wav)
_PCM_SCALE = {torch.int16: 32768.0, torch.int32: 2147483648.0}


def _audio_array(x) -> np.ndarray:
    """float32 numpy samples of :meth:`Speech2Text.transcribe`'s ``audio`` array: floats as they are
    (full scale 1.0), int16 / int32 PCM scaled to it; other integer types refused."""
    t = _as_tensor(x, None)
    if t.dtype in _PCM_SCALE:
        return (t.double() / _PCM_SCALE[t.dtype]).float().cpu().numpy()
    if not t.is_floating_point():
        raise TypeError(f"transcribe: audio samples must be float (full scale 1.0) or int16 / int32 PCM, got {t.dtype}")
    return t.float().cpu().numpy()


def _video_array(x) -> np.ndarray:
    """uint8 numpy lip ROIs of :meth:`Speech2Text.transcribe`'s ``video`` array; anything else refused
    (a float video in [0, 1] would silently turn black as uint8)."""
    t = _as_tensor(x, None)
    if t.dtype != torch.uint8:
        raise TypeError(f"transcribe: video must be uint8 pixels (0-255), got {t.dtype}; e.g. "
                        "(frames * 255).round().astype(np.uint8) for floats in [0, 1]")
    return t.cpu().numpy()


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


def present_mask(batch: Batch, frame_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Bool ``[B, T]`` of the frames an utterance shows: ``frame_mask``, else the batch's, else all
    frames within ``video_lens``."""
    if frame_mask is not None:
        return frame_mask
    if batch.frame_mask is not None:
        return batch.frame_mask
    return torch.arange(batch.video.shape[1])[None, :] < batch.video_lens.cpu()[:, None]


def video_given(batch: Batch) -> torch.Tensor:
    """Bool ``[B]`` (CPU): the utterances that come with video frames (``video_lens > 0``), whatever
    ``frame_mask`` says: the late-fusion decode reads no mask, a missing frame is a black frame (as the
    model sees it), and the entropy weights decide how much its video path counts."""
    if batch.video is None:
        return torch.zeros(len(batch), dtype=torch.bool)
    if batch.video_lens is None:
        return torch.ones(len(batch), dtype=torch.bool)
    return batch.video_lens.cpu() > 0


def normalize_fusion(fusion) -> Optional[str]:
    """``None`` for no fusion (``None``, ``""``, ``"none"``), else one of :data:`FUSIONS`."""
    if fusion is None or str(fusion).lower() in ("", "none"):
        return None
    if str(fusion) not in FUSIONS:
        raise ValueError(f"fusion must be None or one of {FUSIONS}, got {fusion!r}")
    return str(fusion)


def _sub_front(front: Dict, idx: torch.Tensor) -> Dict:
    out = {}
    if "audio" in front:
        a, pos, lens, mask = front["audio"]
        out["audio"] = (a[idx], pos, lens[idx], mask[idx])
    if "visual" in front:
        out["visual"] = front["visual"][idx]
    return out


class Speech2Text:
    def __init__(self, model: torch.nn.Module, tokenizer, *, device: Union[str, torch.device] = "cpu",
                 beam_size: int = 10, ctc_weight: Optional[float] = None, penalty: float = 0.0,
                 maxlenratio: float = 0.0, minlenratio: float = 0.0, ctc_greedy: bool = False,
                 nbest: int = 1, crop: Optional[int] = None, adapters: str = "auto",
                 adapter_threshold: Optional[float] = 0.0, lm: Optional[torch.nn.Module] = None,
                 lm_weight: float = 0.0, fusion: Optional[str] = None, aligner: Optional[torch.nn.Module] = None):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.beam_size = int(beam_size)
        # late fusion of the audio and the video path's CTC posteriors (MLA models): CTC only
        self.fusion = normalize_fusion(fusion)
        if self.fusion is not None:
            if model.cfg.mode != "audiovisual":
                raise ValueError(f"fusion {self.fusion!r} fuses the audio and the video path of an audio-visual "
                                 f"model; this model is {model.cfg.mode!r}")
            if adapters == "on" or (getattr(model, "adapters", None) is not None and adapters != "off"):
                raise ValueError(f"fusion {self.fusion!r} and MS-Adapters cannot be combined (a fusion model has "
                                 "no adapters; decode this model without fusion, or with adapters='off')")
            if ctc_weight is not None and float(ctc_weight) != 1.0:
                raise ValueError(f"fusion {self.fusion!r} decodes the fused CTC posteriors only: ctc_weight must be "
                                 f"1.0, got {ctc_weight}")
            ctc_weight = 1.0
        self.ctc_weight = float(model.cfg.ctc_weight if ctc_weight is None else ctc_weight)
        if model.decoder is None:
            self.ctc_weight = 1.0
        self.penalty = float(penalty)
        self.maxlenratio = float(maxlenratio)
        self.minlenratio = float(minlenratio)
        self.use_greedy = bool(ctc_greedy) or self.beam_size <= 0
        self.nbest = int(nbest)
        self.keep_posteriors = False
        self.crop = int(CROP_SIZE if crop is None else crop)
        self.timings: Dict[str, float] = {"encode": 0.0, **{k: 0.0 for k in STAGES}}
        # MS-Adapter routing: "auto" = adapters on the audio-only path of an AV model; utterances whose
        # share of present video frames is <= adapter_threshold take that path (0: only with no frame
        # at all, the paper's behaviour; None: never route by the frame mask).  "on"/"off" force them.
        if adapters not in ADAPTER_POLICIES:
            raise ValueError(f"adapters must be one of {ADAPTER_POLICIES}, got {adapters!r}")
        self.adapters = adapters
        self.adapter_threshold = None if adapter_threshold is None else float(adapter_threshold)
        # shallow fusion: the LM's log-probabilities times lm_weight join the beam search's scores
        self.lm_weight = float(lm_weight or 0.0)
        if self.lm_weight < 0:
            raise ValueError(f"lm_weight must be >= 0, got {self.lm_weight}")
        if self.lm_weight > 0 and self.use_greedy:
            warnings.warn(f"lm_weight {self.lm_weight:g} is ignored: CTC greedy decoding does not use the LM",
                          stacklevel=2)
        elif self.lm_weight > 0 and lm is None:
            raise ValueError("lm_weight > 0 needs an LM (a packed model with one: avsr pack --lm_dir)")
        self.lm = None if lm is None else lm.to(self.device).eval()
        # token times: the local CTC aligner (avsr.models.aligner) on the audio paths when there is one,
        # else the model's CTC (align)
        self.aligner = None if aligner is None else aligner.to(self.device).eval()
        self.info: Dict = {}

    @classmethod
    def from_packed(cls, path, device="cpu", **kw) -> "Speech2Text":
        """A packed model dir (``avsr pack``) with its stored decoding defaults (beam size, CTC
        weight, adapter threshold, LM weight, ``fusion``); keyword arguments given override them
        (``adapter_threshold=None``: never route by the frames; ``lm_weight=0``: no LM;
        ``fusion=None``: the model's own path even when the pack stores a fusion; the CTC weight 1.0
        that a fusion pack stores with its fusion then goes too, unless ``ctc_weight`` is given, so the
        own path is the model's joint CTC/attention search).  The pack's LM is loaded only when the beam
        search uses it (``lm_weight > 0``, not CTC greedy).  The pack's aligner is loaded when it has one
        (``aligner=None`` given: token times from the model's CTC instead; ``align_adapt_steps``: its
        adaptation steps per segment, :meth:`avsr.models.aligner.LocalAligner.adapt`)."""
        from avsr.pack import PackError, load_packed, load_packed_aligner, load_packed_lm
        model, tok, info = load_packed(path, device=device)
        dec = dict(info.get("decode") or {})
        if dec.get("fusion") is not None and "fusion" in kw and kw["fusion"] is None and "ctc_weight" not in kw:
            dec.pop("ctc_weight", None)
        dec.update(kw)
        lm_weight = float(dec.get("lm_weight") or 0.0)
        greedy = bool(dec.get("ctc_greedy")) or int(dec.get("beam_size", 10)) <= 0
        if lm_weight > 0 and not greedy:
            if not info.get("has_lm"):
                raise PackError(path, f"lm_weight {lm_weight:g} asked for, but this packed model has no LM "
                                      "(pack one in with avsr pack --lm_dir)")
            dec["lm"] = load_packed_lm(path, device=device)
        adapt = dec.pop("align_adapt_steps", None)
        if "aligner" not in kw and info.get("has_aligner"):
            dec["aligner"] = load_packed_aligner(path, device=device)
            if adapt is not None:
                al = dec["aligner"]
                al.cfg = dataclasses.replace(al.cfg, adapt_steps=int(adapt))
        s = cls(model, tok, device=device, **dec)
        s.info = info
        return s

    @property
    def search_name(self) -> str:
        """``ctc_greedy`` or ``beam<N>``, with ``+<fusion>`` when the decode fuses two CTC paths."""
        name = "ctc_greedy" if self.use_greedy else f"beam{self.beam_size}"
        return name if self.fusion is None else f"{name}+{self.fusion}"

    # ------------------------------------------------------------------ modality and routing
    def pick_modality(self, batch: Batch, modality: Optional[str] = None) -> str:
        if modality:
            return modality
        mode = self.model.cfg.mode
        if mode == "audiovisual" and batch.video is None:
            return "audio"
        return mode

    def adapters_on(self, modality: str) -> bool:
        """Whether the adapters run for a forward in ``modality`` under this decoder's policy."""
        return self.model.adapters_for(modality, self.adapters)

    @contextmanager
    def _adapters(self, modality: str) -> Iterator[None]:
        with self.model.adapter_switch(self.adapters_on(modality)):
            yield

    def route(self, batch: Batch, frame_mask: Optional[torch.Tensor] = None) -> Optional[torch.Tensor]:
        """Bool [B]: utterances sent to the audio-only (adapter) path by their frames (``frame_mask``,
        default the batch's), or None when this model and policy never route."""
        m = self.model
        if (m.adapters is None or m.cfg.mode != "audiovisual" or batch.video is None
                or self.adapter_threshold is None or self.adapters == "off"):
            return None
        if frame_mask is None and batch.frame_mask is None:
            fm = batch.video.flatten(2).any(-1)          # no mask given: the frames that are not black
        else:
            fm = present_mask(batch, frame_mask)
        T = fm.shape[1]
        lens = batch.video_lens.cpu()
        valid = torch.arange(T)[None, :] < lens[:, None]
        present = (fm.cpu() & valid).sum(1).float() / lens.clamp_min(1).float()
        return present <= self.adapter_threshold + 1e-9

    # ------------------------------------------------------------------ encoder and search
    def _tick(self, stage: str, t0: float) -> None:
        dt = time.perf_counter() - t0
        self.timings[stage] += dt
        if stage != "search":
            self.timings["encode"] += dt

    def _fronts(self, batch: Batch, modality: str) -> Dict:
        """The front-end outputs of ``batch`` for ``modality`` (timed per stage)."""
        model, front = self.model, {}
        if modality in ("audio", "audiovisual"):
            t0 = time.perf_counter()
            front["audio"] = model.audio_front(batch)
            self._tick("audio_front", t0)
        if modality in ("video", "audiovisual"):
            t0 = time.perf_counter()
            if "audio" in front:
                video, vlens = reconcile_video(batch.video, batch.video_lens, front["audio"][2])
            else:
                video, vlens = batch.video, batch.video_lens
            front["visual"] = model.visual_frontend(video, vlens)[0]
            self._tick("visual_front", t0)
        return front

    def _encode_front(self, front: Dict, n: int, modality: str, video_lens=None):
        """Encoder from front-end outputs (``n`` utterances): ``(enc, lens)``."""
        b = Batch(utt_ids=[""] * n)
        if modality == "video":
            b = b.replace(video_lens=video_lens.to(self.device))
        t0 = time.perf_counter()
        enc, lens, _ = self.model.encode(b, modality=modality, front=front)
        self._tick("encoder", t0)
        return enc, lens

    @torch.no_grad()
    def encode(self, batch: Batch, modality: Optional[str] = None):
        """``(enc [B, T, d], lens [B], modality)`` for a batch (adapters per the policy, no routing)."""
        m = self.pick_modality(batch, modality)
        batch = batch.to(self.device)
        with self._adapters(m):
            enc, lens = self._encode_front(self._fronts(batch, m), len(batch), m, batch.video_lens)
        return enc, lens, m

    @torch.no_grad()
    def decode_encoded(self, enc: torch.Tensor, lens: torch.Tensor, modality: str) -> List[Result]:
        t0 = time.perf_counter()
        return self._search_logp(self.model.ctc.log_softmax(enc), enc, lens, modality, t0)

    def _search_logp(self, logp: torch.Tensor, enc: torch.Tensor, lens: torch.Tensor, modality,
                     t0: Optional[float] = None) -> List[Result]:
        """The search on CTC log-posteriors ``logp`` [B, T, V] (and ``enc`` for the attention
        decoder); ``modality``: one name, or one per utterance."""
        t0 = time.perf_counter() if t0 is None else t0
        model = self.model
        mods = [modality] * enc.shape[0] if isinstance(modality, str) else list(modality)
        out: List[Result] = []
        if self.use_greedy:
            seqs = ctc_greedy(logp, lens)
            best = logp.max(-1).values
            for b, ids in enumerate(seqs):
                out.append(Result(self.tokenizer.decode(ids), ids, float(best[b, :int(lens[b])].sum()), mods[b]))
        else:
            hyps = batch_beam_search(
                model.decoder if self.ctc_weight < 1.0 else None,
                logp if self.ctc_weight > 0 else None, enc, lens,
                beam_size=max(self.beam_size, self.nbest), sos=model.sos, eos=model.eos, ctc_weight=self.ctc_weight,
                length_bonus=self.penalty, maxlenratio=self.maxlenratio, minlenratio=self.minlenratio,
                nbest=max(self.nbest, 1), vocab_size=model.cfg.vocab_size,
                lm=self.lm if self.lm_weight > 0 else None, lm_weight=self.lm_weight)
            for b, hs in enumerate(hyps):
                if not hs:
                    out.append(Result("", [], float("-inf"), mods[b]))
                    continue
                nb = []
                for h in hs:
                    ids = [int(t) for t in h.yseq if int(t) not in (model.sos, model.eos)]
                    nb.append({"text": self.tokenizer.decode(ids), "token_ids": ids, "score": float(h.score)})
                out.append(Result(nb[0]["text"], nb[0]["token_ids"], nb[0]["score"], mods[b], nb))
        if self.keep_posteriors:
            lp = self._alignment_scores(logp, enc).float().cpu().numpy()
            for b, r in enumerate(out):
                r.ctc_logp = lp[b, :int(lens[b])]
        self._tick("search", t0)
        return out

    def _search_front(self, front: Dict, n: int, modality: str, route=None, video_lens=None) -> List[Result]:
        """Encoder + search from front-end outputs of ``n`` utterances; with ``route``, the routed
        ones run the audio-only path (adapters per the policy)."""
        res: List[Optional[Result]] = [None] * n
        groups = [(torch.arange(n), modality)]
        if route is not None and bool(route.any()):
            groups = [(torch.nonzero(route).flatten(), "audio"), (torch.nonzero(~route).flatten(), modality)]
        for idx, m in groups:
            if idx.numel() == 0:
                continue
            f = front if len(groups) == 1 else _sub_front(front, idx.to(self.device))
            if m == "audio":
                f = {k: v for k, v in f.items() if k != "visual"}
            vl = None if video_lens is None else video_lens[idx.cpu()]
            with self._adapters(m):
                enc, lens = self._encode_front(f, idx.numel(), m, vl)
                rs = self.decode_encoded(enc, lens, m)
            for j, r in zip(idx.tolist(), rs):
                res[j] = r
        return res  # type: ignore[return-value]

    # ------------------------------------------------------------------ decoding a batch
    @torch.no_grad()
    def decode_batch(self, batch: Batch, modality: Optional[str] = None) -> List[Result]:
        """Decode every utterance of a padded batch in one encoder forward and one batched search
        (two when MS-Adapter routing splits the batch into audio-only and audio-visual parts; with
        ``fusion``, one forward per path and one search on the fused posteriors)."""
        if self.fusion is not None and modality is None:
            logp, enc, lens, mods = self.fused_posteriors(batch)
            return self._search_logp(logp, enc, lens, mods)
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
        batch = batch.to(self.device)
        with self._adapters(m):
            front = self._fronts(batch, m)
        return self._search_front(front, len(batch), m, video_lens=batch.video_lens)

    # ------------------------------------------------------------------ late fusion of two CTC paths
    def _path_logp(self, front: Dict, n: int, modality: str, video_lens=None):
        """``(CTC log-posteriors, enc, lens)`` of the unimodal path ``modality`` from front-end outputs."""
        with self._adapters(modality):
            enc, lens = self._encode_front(front, n, modality, video_lens)
        return self.model.ctc.log_softmax(enc), enc, lens

    @staticmethod
    def _fuse(logp_a, lens_a, logp_v, lens_v, has_video) -> torch.Tensor:
        """Entropy fusion; utterances without video keep their audio posteriors exactly."""
        fused = entropy_fusion(logp_a, logp_v, lens_a, lens_v)
        return torch.where(has_video.to(fused.device)[:, None, None], fused, logp_a)

    @torch.no_grad()
    def fused_posteriors(self, batch: Batch):
        """``(logp [B, T, V], enc_a, lens, modalities)`` of the ``fusion`` decode of a batch: the audio
        path's and the video path's CTC log-posteriors fused per frame
        (:func:`avsr.decoding.entropy_fusion.entropy_fusion`; the video reconciled to the audio length,
        its frames paired up to ``min(video_lens, audio frames)``), on the audio frame grid.
        Utterances without video frames (no video in the batch, or 0 frames: :func:`video_given`) keep
        the audio path's posteriors (modality ``audio``); the others are ``"fusion"``, also when every
        frame is missing: the frame mask is not read (black frames are input, as for the model), and
        the entropy weights are the switch."""
        model = self.model
        batch = batch.to(self.device)
        n = len(batch)
        t0 = time.perf_counter()
        fa = model.audio_front(batch)
        self._tick("audio_front", t0)
        logp_a, enc_a, lens_a = self._path_logp({"audio": fa}, n, "audio")
        has_v = video_given(batch)
        if not bool(has_v.any()):
            return logp_a, enc_a, lens_a, ["audio"] * n
        t0 = time.perf_counter()
        video, vlens = reconcile_video(batch.video, batch.video_lens, fa[2])
        vis = model.visual_frontend(video, vlens)[0]
        self._tick("visual_front", t0)
        logp_v, _, _ = self._path_logp({"visual": vis}, n, "video", vlens)
        lens_v = torch.minimum(batch.video_lens.to(lens_a.device), lens_a)
        fused = self._fuse(logp_a, lens_a, logp_v, lens_v, has_v)
        return fused, enc_a, lens_a, [FUSED if h else "audio" for h in has_v.tolist()]

    def _variants_fused(self, batch: Batch, variants: Sequence[Variant]) -> Dict[str, List[Result]]:
        """The cached :meth:`decode_variants` of a ``fusion`` decoder: the audio path once per
        distinct audio of an utterance, the video path once per distinct video (blacked-out frames)
        of an utterance, one search over every distinct (audio, video) pair."""
        if not variants:
            return {}
        model = self.model
        batch = batch.to(self.device)
        B = len(batch)
        sources, src_of = [batch.audio], []
        for v in variants:
            if v.audio is not None:
                sources.append(v.audio.to(self.device))
                src_of.append(len(sources) - 1)
            else:
                src_of.append(0)
        a_fr: Dict[int, tuple] = {}
        for s in sorted(set(src_of)):
            t0 = time.perf_counter()
            a_fr[s] = model.audio_front(batch.replace(audio=sources[s]))
            self._tick("audio_front", t0)
        a_lens = a_fr[src_of[0]][2]            # every source has the batch's audio lengths
        use_v = batch.video is not None
        feats = black = video = vlens = None
        drops = []
        given = video_given(batch).tolist()     # the same for every variant: no frame mask is read
        if use_v:
            t0 = time.perf_counter()
            video, vlens = reconcile_video(batch.video, batch.video_lens, a_lens)
            if model.cfg.visual_frontend == "light":          # per-frame features: a black frame's is constant
                feats = model.visual_frontend(video, vlens)[0]
                z = torch.zeros((1, 1) + tuple(video.shape[2:]), dtype=video.dtype, device=self.device)
                black = model.visual_frontend(z, torch.ones(1, dtype=torch.long, device=self.device))[0][0, 0]
            self._tick("visual_front", t0)
            Tt = video.shape[1]
            inside = torch.arange(Tt)[None, :] < batch.video_lens.cpu()[:, None]
            for v in variants:
                fm = present_mask(batch, v.frame_mask).cpu()
                fm = fm[:, :Tt] if fm.shape[1] >= Tt else torch.cat([fm, fm.new_zeros(B, Tt - fm.shape[1])], 1)
                drops.append((~fm) & inside)
        # distinct inputs: audio (utterance, source), video (utterance, dropped frames), and their pairs
        a_keys: Dict[tuple, int] = {}
        v_keys: Dict[tuple, tuple] = {}
        pairs: Dict[tuple, int] = {}
        keys = []
        for i in range(len(variants)):
            packed = np.packbits(drops[i].numpy(), axis=1) if use_v else None
            row = []
            for j in range(B):
                ak = (j, src_of[i])
                a_keys.setdefault(ak, len(a_keys))
                vk = (j, packed[j].tobytes()) if given[j] else None
                if vk is not None and vk not in v_keys:
                    v_keys[vk] = (len(v_keys), i)
                pairs.setdefault((ak, vk), len(pairs))
                row.append((ak, vk))
            keys.append(row)
        if not pairs:
            return {v.name: [] for v in variants}
        # the audio path, once per distinct audio
        al = list(a_keys)
        first = next(iter(a_fr.values()))
        a = torch.stack([a_fr[s][0][j] for j, s in al])
        fa = (a, first[1], torch.stack([a_fr[s][2][j] for j, s in al]), torch.stack([a_fr[s][3][j] for j, s in al]))
        logp_a, enc_a, lens_a = self._path_logp({"audio": fa}, len(al), "audio")
        # the video path, once per distinct video
        logp_v = None
        if v_keys:
            t0 = time.perf_counter()
            fv, v_feats = [], {}
            for (j, _), (_, i) in v_keys.items():
                d = drops[i][j]
                if feats is not None:
                    fv.append(torch.where(d[:, None].to(feats.device), black, feats[j]))
                else:                          # a Conv3D front-end: features of the variant's own video
                    if i not in v_feats:
                        keep = (~drops[i])[..., None, None].to(video.dtype).to(video.device)
                        v_feats[i] = model.visual_frontend(video * keep, vlens)[0]
                    fv.append(v_feats[i][j])
            vis = torch.stack(fv)
            self._tick("visual_front", t0)
            vl = torch.stack([vlens[j] for j, _ in v_keys])
            logp_v, _, _ = self._path_logp({"visual": vis}, len(v_keys), "video", vl)
        # fuse each distinct (audio, video) pair, one search
        pl = list(pairs)
        ai = torch.tensor([a_keys[ak] for ak, _ in pl], device=self.device)
        la, ea, ln = logp_a.index_select(0, ai), enc_a.index_select(0, ai), lens_a.index_select(0, ai)
        hv = torch.tensor([vk is not None for _, vk in pl])
        if logp_v is not None:
            vi = torch.tensor([v_keys[vk][0] if vk is not None else 0 for _, vk in pl], device=self.device)
            real = torch.stack([batch.video_lens[ak[0]] for ak, _ in pl]).to(ln.device)
            la = self._fuse(la, ln, logp_v.index_select(0, vi), torch.minimum(real, ln), hv)
        res = self._search_logp(la, ea, ln, [FUSED if h else "audio" for h in hv.tolist()])
        return {v.name: [res[pairs[k]] for k in keys[i]] for i, v in enumerate(variants)}

    # ------------------------------------------------------------------ items and single utterances
    def make_batch(self, items: Sequence[Dict]) -> Batch:
        """A Batch from dicts with ``audio`` (float [N] 16 kHz) and optional ``video`` (uint8 ROIs
        ``[T, H, W]``, H=W=88 or 96: larger ROIs are centre-cropped) -- all items with video, or none."""
        from avsr.data.dataset import collate
        prepared = []
        has_v = [it.get("video") is not None for it in items]
        if any(has_v) and not all(has_v):
            raise ValueError("make_batch: either every item has video or none (decode them separately)")
        for i, it in enumerate(items):
            a = _as_tensor(it.get("audio"), torch.float32)
            v = _as_tensor(it.get("video"), torch.uint8)
            if v is not None and v.shape[-1] != self.crop:
                v = center_crop(v, self.crop)
            prepared.append({"utt_id": it.get("utt_id", f"utt{i}"), "audio": a, "video": v,
                             "detected": None if v is None else torch.ones(v.shape[0], dtype=torch.bool),
                             "tokens": None, "text": None})
        return collate(prepared)

    def decode_items(self, items: Sequence[Dict], batch_size: int = 8) -> List[Result]:
        """Decode dicts (``audio``, optional ``video``, ``utt_id``) ``batch_size`` at a time, the items
        with video and those without in separate batches; results in the order of ``items``."""
        out: List[Optional[Result]] = [None] * len(items)
        for has_video in (True, False):
            idx = [i for i, it in enumerate(items) if (it.get("video") is not None) == has_video]
            for s in range(0, len(idx), max(int(batch_size), 1)):
                part = idx[s:s + batch_size]
                for i, r in zip(part, self.decode_batch(self.make_batch([items[i] for i in part]))):
                    out[i] = r
        return out  # type: ignore[return-value]

    def __call__(self, audio, video=None, modality: Optional[str] = None) -> Result:
        return self.decode_batch(self.make_batch([{"audio": audio, "video": video}]), modality)[0]

    # ------------------------------------------------------------------ CTC posteriors and alignment
    def _alignment_scores(self, logp: torch.Tensor, enc: torch.Tensor) -> torch.Tensor:
        """What forced alignment reads: the alignment CTC's scores (``model.align_scores``, label priors)
        when the model has that head and no late fusion is on, else the CTC log-posteriors ``logp``."""
        if getattr(self.model, "align_ctc", None) is not None and self.fusion is None:
            return self.model.align_scores(enc)
        return logp

    @torch.no_grad()
    def ctc_posteriors(self, batch: Batch, modality: Optional[str] = None, for_alignment: bool = False) -> List[tuple]:
        """Per utterance of a padded batch: ``(logp float32 [T, V], modality)``, the CTC
        log-posteriors of its valid encoder frames on the path :meth:`decode_batch` takes (MS-Adapter
        routing included; with ``fusion``, the fused posteriors of :meth:`fused_posteriors`;
        ``modality`` forces one path); ``for_alignment``: the scores :meth:`align` should read instead
        (the alignment CTC's for a model with one)."""
        if self.fusion is not None and modality is None:
            logp, _, lens, mods = self.fused_posteriors(batch)
            lp = logp.float().cpu().numpy()
            return [(lp[j, :int(lens[j])], mods[j]) for j in range(len(batch))]
        r = self.route(batch) if modality is None else None
        groups = [(list(range(len(batch))), modality, batch)]
        if r is not None and bool(r.any()):
            groups = []
            for sel, mod in ((r, "audio"), (~r, None)):
                idx = torch.nonzero(sel).flatten().tolist()
                if idx:
                    sub = _subset(batch, idx)
                    groups.append((idx, mod, sub.replace(video=None, video_lens=None, frame_mask=None)
                                   if mod == "audio" else sub))
        out: List[Optional[tuple]] = [None] * len(batch)
        for idx, mod, sub in groups:
            enc, lens, m = self.encode(sub, mod)
            lp = self.model.ctc.log_softmax(enc)
            lp = (self._alignment_scores(lp, enc) if for_alignment else lp).float().cpu().numpy()
            for j, i in enumerate(idx):
                out[i] = (lp[j, :int(lens[j])], m)
        return out  # type: ignore[return-value]

    def frame_times(self, modality: Optional[str] = None):
        """``(offset, stride)`` seconds of the encoder frames on ``modality``'s path
        (:func:`avsr.alignment.frame_times` of the model config)."""
        from avsr.alignment import frame_times
        return frame_times(self.model.cfg, modality)

    def align(self, token_ids: Sequence[int], logp, modality: Optional[str] = None, time_offset: float = 0.0):
        """CTC forced alignment of ``token_ids`` on ``logp`` ``[T, V]`` (:meth:`ctc_posteriors`, or a
        Result's ``ctc_logp``): a list of :class:`avsr.alignment.TokenTime`, seconds plus
        ``time_offset``.  Raises :class:`avsr.alignment.AlignmentError` when it cannot be aligned."""
        from avsr.alignment import token_times
        off, stride = self.frame_times(modality)
        return token_times(logp, token_ids, offset=off, stride=stride, time_offset=time_offset)

    def time_tokens(self, token_ids: Sequence[int], audio=None, logp=None, modality: Optional[str] = None,
                    time_offset: float = 0.0):
        """Times of ``token_ids`` (a hypothesis or a reference) in one segment: with an aligner and the
        segment's ``audio`` (16 kHz ``[N]``) on an audio path (``modality`` not ``video``), by the aligner's
        scores; else by :meth:`align` on the model's CTC scores ``logp`` (:meth:`ctc_posteriors`).  A list of
        :class:`avsr.alignment.TokenTime`; :class:`avsr.alignment.AlignmentError` when it cannot be aligned."""
        from avsr.alignment import AlignmentError
        if self.aligner is not None and audio is not None and modality != "video":
            return self.aligner.times(audio, token_ids, time_offset=time_offset)
        if logp is None:
            raise AlignmentError("no scores to align on (no aligner with audio, no CTC scores)")
        return self.align(token_ids, logp, modality, time_offset=time_offset)

    # ------------------------------------------------------------------ a whole recording
    def transcribe(self, audio=None, video=None, *, segmentation: str = "vad", max_segment_seconds: float = 20.0,
                   vad_options: Optional[Dict] = None, nbest: Optional[int] = None, batch_size: int = 8,
                   align: bool = True, sample_rate: Optional[int] = None, **prepare):
        """Transcribe one recording: an :class:`avsr.api.Transcription` with the text, the score,
        timed segments with per-token times, and the n-best list.

        Inputs: ``audio`` and ``video`` as file paths (read by :func:`frontends.pairs.prepare_pair`,
        which takes the other keyword arguments: ``detection``, ``speaker``, ``detector``, ``crop``,
        ...), or as arrays / tensors (audio ``[N]`` at 16 kHz, float at full scale 1.0 or int16 / int32
        PCM, at another rate with ``sample_rate``; video uint8 lip ROIs ``[T, H, W]`` at 25 fps, 96x96 or
        88x88), not mixed.  ``video`` is
        optional (an AV model then runs its audio-only path, with a warning); an audio model ignores it
        (a video file is not even opened, except for its audio track when no audio is given); a video-only model
        needs it.  ``audio=None`` with a video path reads the audio from the video when
        ``prepare_pair`` can.

        ``segmentation``: ``"vad"`` (default) decodes each segment of :func:`frontends.vad.energy_vad`
        (``vad_options`` override :class:`frontends.vad.VadConfig`; segments at most
        ``max_segment_seconds``, split at their quietest frame); ``"fixed"`` cuts windows of
        ``max_segment_seconds`` (a tail under 0.1 s joins the window before; the last window's
        video runs to the end of the video); ``"none"`` decodes the recording as one segment.
        Without audio (a video-only pair) ``"vad"`` falls back to ``"fixed"``.  Segment texts are
        joined without a separator (character models).

        Each segment's hypothesis is aligned to its CTC posteriors (:mod:`avsr.alignment`) for
        token times relative to the recording; an alignment that fails spreads the segment's tokens
        evenly over it, with a warning.  ``nbest`` (default: the decoder's) hypotheses per segment
        and for the recording (:func:`avsr.api.kbest_concat`); the beam is widened to at least
        ``nbest``; CTC greedy gives one.
        """
        import os as _os
        from avsr.alignment import AlignmentError
        from avsr.api import Transcription, TranscriptSegment, kbest_concat
        from frontends.constants import VIDEO_FPS
        from frontends.vad import energy_vad

        if segmentation not in ("vad", "fixed", "none"):
            raise ValueError(f"segmentation must be vad, fixed or none, got {segmentation!r}")
        t_start = time.perf_counter()
        mode = self.model.cfg.mode
        is_path = lambda x: isinstance(x, (str, _os.PathLike))  # noqa: E731
        warnings: List[str] = []
        timings: Dict[str, float] = {}
        if is_path(audio) or is_path(video):
            if not all(x is None or is_path(x) for x in (audio, video)):
                raise TypeError("transcribe: give audio and video both as file paths or both as arrays")
            if sample_rate is not None:
                raise TypeError("transcribe: sample_rate applies to an audio array (a file carries its own rate)")
            import inspect
            from frontends.pairs import prepare_pair
            kw = dict(prepare)
            if mode == "video" and "need_audio" in inspect.signature(prepare_pair).parameters:
                kw.setdefault("need_audio", False)
            a_path = None if audio is None else _os.fspath(audio)
            v_path = None if video is None else _os.fspath(video)
            if mode == "audio" and v_path is not None:   # an audio model never reads the pictures
                a_path, v_path = a_path or v_path, None  # (the audio from the video's own track without a wav)
            prep = prepare_pair(a_path, v_path, **kw)
            a, roi = prep.audio, prep.roi
            warnings += prep.warnings
            timings.update(prep.timings)
        else:
            if prepare:
                raise TypeError(f"transcribe: {sorted(prepare)} apply to file inputs only (frontends.pairs.prepare_pair)")
            a = None if audio is None else _audio_array(audio)
            if a is not None and sample_rate is not None and int(sample_rate) != SAMPLE_RATE:
                from frontends.audio import resample
                a = resample(a, int(sample_rate), SAMPLE_RATE).astype(np.float32)
            roi = None if video is None else _video_array(video)
            if a is not None and a.ndim != 1:
                raise ValueError(f"transcribe: audio must be 1-D [N] at {SAMPLE_RATE} Hz, got shape {a.shape}")
            if roi is not None and roi.ndim != 3:
                raise ValueError(f"transcribe: video must be uint8 lip ROIs [T, H, W], got shape {roi.shape}")
            if a is not None and roi is not None:                    # as prepare_pair warns for files
                from frontends.pairs import length_mismatch
                w = length_mismatch(len(roi), len(a) / SAMPLE_RATE, f" ({len(roi)} frames at {VIDEO_FPS} fps)")
                if w:
                    warnings.append(w)
        if mode == "audio":
            roi = None
        elif mode == "video":
            if roi is None:
                raise ValueError("transcribe: a video-only model needs a video with a mouth to crop")
        elif video is None:
            warnings.append("no video: audio-only decoding")
        if a is None and roi is None:
            raise ValueError("transcribe: nothing to decode (no audio and no video)")
        duration = len(a) / SAMPLE_RATE if a is not None else len(roi) / VIDEO_FPS

        # segments: (first sample, end sample) on the audio clock; video frames follow
        n = len(a) if a is not None else len(roi) * SAMPLES_PER_FRAME
        seg_mode = "fixed" if (segmentation == "vad" and a is None) else segmentation
        t0 = time.perf_counter()
        if seg_mode == "vad":
            opts = {"max_segment_s": float(max_segment_seconds), **(vad_options or {})}
            spans = [(int(round(s * SAMPLE_RATE)), min(int(round(e * SAMPLE_RATE)), n))
                     for s, e in energy_vad(a, **opts)]
        elif seg_mode == "fixed":
            step = int(max_segment_seconds * SAMPLE_RATE)
            spans = []
            for s in range(0, n, step):
                if n - s < SAMPLE_RATE // 10 and spans:
                    spans[-1] = (spans[-1][0], n)
                else:
                    spans.append((s, min(s + step, n)))
        else:
            spans = [(0, n)]
        timings["vad"] = time.perf_counter() - t0
        items, offsets = [], []
        for k, (s, e) in enumerate(spans):
            last = k == len(spans) - 1
            v = None
            if roi is not None:
                f0 = s // SAMPLES_PER_FRAME
                if seg_mode == "vad":
                    f1 = -(-e // SAMPLES_PER_FRAME)
                else:               # fixed windows as fixed_windows cuts them; the last one to the video's end
                    f1 = len(roi) if last else e // SAMPLES_PER_FRAME
                v = roi[f0:f1]
                if not len(v):
                    v = None
            items.append({"utt_id": f"seg{k}", "audio": None if (a is None or mode == "video") else a[s:e],
                          "video": v})
            offsets.append((s / SAMPLE_RATE, (s // SAMPLES_PER_FRAME) / VIDEO_FPS))
        if mode == "video":
            keep = [i for i, it in enumerate(items) if it["video"] is not None]
            items, spans, offsets = [items[i] for i in keep], [spans[i] for i in keep], [offsets[i] for i in keep]

        # decode (posteriors kept for the alignment)
        n_best = int(self.nbest if nbest is None else nbest)
        saved = (self.nbest, self.keep_posteriors)
        self.nbest, self.keep_posteriors = max(n_best, 1), True
        t0 = time.perf_counter()
        try:
            results = self.decode_items(items, batch_size=batch_size) if items else []
        finally:
            self.nbest, self.keep_posteriors = saved
        timings["decode"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        segments: List = []
        toks = self.tokenizer.token_list
        for it, (s, e), (a_off, v_off), r in zip(items, spans, offsets, results):
            start, end = s / SAMPLE_RATE, e / SAMPLE_RATE
            off = v_off if r.modality == "video" else a_off
            tokens: List[Dict] = []
            if r.token_ids and align:
                try:
                    tt = self.time_tokens(r.token_ids, it.get("audio"), r.ctc_logp, r.modality, time_offset=off)
                    tokens = [{"token": toks[x.token_id], "start": x.start, "end": x.end, "conf": x.conf} for x in tt]
                except AlignmentError as err:
                    warnings.append(f"segment {start:.2f}-{end:.2f} s: alignment failed ({err}); "
                                    "token times spread evenly")
                    w = (end - start) / len(r.token_ids)
                    tokens = [{"token": toks[x], "start": round(start + i * w, 3),
                               "end": round(start + (i + 1) * w, 3), "conf": 0.0}
                              for i, x in enumerate(r.token_ids)]
            r.ctc_logp = None
            nb = [{"text": h["text"], "score": h["score"]} for h in r.nbest[:n_best]] or \
                [{"text": r.text, "score": r.score}]
            segments.append(TranscriptSegment(round(start, 3), round(end, 3), r.text, float(r.score), r.modality,
                                              tokens, nb))
        timings["align"] = time.perf_counter() - t0
        mods = sorted({sg.modality for sg in segments})
        tr = Transcription(
            text="".join(sg.text for sg in segments), score=float(sum(sg.score for sg in segments)),
            segments=segments, modality=(mods[0] if len(mods) == 1 else "+".join(mods)) if mods else None,
            duration=round(duration, 3), nbest=kbest_concat([sg.nbest for sg in segments], max(n_best, 1)),
            warnings=warnings, timings=timings)
        tr.timings["total"] = time.perf_counter() - t_start
        return tr

    # ------------------------------------------------------------------ several conditions of a batch
    def materialize(self, batch: Batch, variant: Variant) -> Batch:
        """The plain batch a variant stands for (its audio; its missing frames black)."""
        b = batch
        mode = self.model.cfg.mode
        if variant.audio is not None and self.model.has_audio:
            b = b.replace(audio=variant.audio)
        if mode == "audio":
            return b.replace(video=None, video_lens=None, frame_mask=None)
        if variant.frame_mask is not None and b.video is not None:
            fm = variant.frame_mask
            b = b.replace(video=b.video * fm[:, :b.video.shape[1], None, None].to(b.video.dtype), frame_mask=fm)
        return b

    @torch.no_grad()
    def decode_variants(self, batch: Batch, variants: Sequence[Variant], cache: bool = True
                        ) -> Dict[str, List[Result]]:
        """``{variant name: [Result per utterance]}``: the same utterances under several input
        conditions (frames blacked out, audio replaced).  Cached (default): the front-ends of each
        distinct audio and of the clean video are computed once, the variants sharing the batch's
        audio run as one stacked encoder forward and search, and each distinct model input of an
        utterance is decoded once (on the adapter path only the audio is an input; an audio-only
        model never sees the video; a video-only model never hears the audio; with ``fusion``, the
        audio path runs once per distinct audio and the video path once per distinct video of an
        utterance, and each distinct pair is fused and searched once).  ``cache=False``: every
        variant through :meth:`decode_batch` on its own."""
        if not cache:
            return {v.name: self.decode_batch(self.materialize(batch, v)) for v in variants}
        if self.fusion is not None:
            return self._variants_fused(batch, variants)
        model = self.model
        mode = model.cfg.mode
        use_a, use_v = mode in ("audio", "audiovisual"), mode in ("video", "audiovisual")
        batch = batch.to(self.device)
        B = len(batch)
        # audio sources: 0 = the batch's own, then one per variant that replaces the audio
        sources, src_of = [batch.audio], []
        for v in variants:
            if v.audio is not None and use_a:
                sources.append(v.audio.to(self.device))
                src_of.append(len(sources) - 1)
            else:
                src_of.append(0)
        a_fronts: Dict[int, tuple] = {}

        def a_front(s: int):
            if s not in a_fronts:
                t0 = time.perf_counter()
                a_fronts[s] = model.audio_front(batch.replace(audio=sources[s]))
                self._tick("audio_front", t0)
            return a_fronts[s]

        feats = black = video = vlens = inside = None
        v_feats: Dict[int, torch.Tensor] = {}
        if use_v:
            per_frame = model.cfg.visual_frontend == "light"
            a_lens = a_front(0)[2].cpu() if use_a else None
            t0 = time.perf_counter()
            if use_a:
                video, vlens = reconcile_video(batch.video, batch.video_lens, a_lens)
            else:
                video, vlens = batch.video, batch.video_lens
            if per_frame:
                feats = model.visual_frontend(video.to(self.device), vlens.to(self.device))[0]
                z = torch.zeros((1, 1) + tuple(video.shape[2:]), dtype=video.dtype, device=self.device)
                black = model.visual_frontend(z, torch.ones(1, dtype=torch.long, device=self.device))[0][0, 0]
            self._tick("visual_front", t0)
            Tt = video.shape[1]
            inside = torch.arange(Tt)[None, :] < batch.video_lens.cpu()[:, None]
        # every (variant, utterance) row: its route and its blacked-out frames
        rows_drop, rows_route = [], []
        for v in variants:
            if use_v:
                shown = present_mask(batch, v.frame_mask)
                fm = shown.cpu()
                fm = fm[:, :Tt] if fm.shape[1] >= Tt else torch.cat([fm, fm.new_zeros(B, Tt - fm.shape[1])], 1)
                rows_drop.append((~fm) & inside)      # frames that become black (beyond the video: black already)
                r = self.route(batch, shown)
                rows_route.append(r if r is not None else torch.zeros(B, dtype=torch.bool))
            else:
                rows_drop.append(None)
                rows_route.append(torch.zeros(B, dtype=torch.bool))
        # identical inputs give identical outputs: each distinct input of an utterance is decoded once
        done: Dict[tuple, Result] = {}
        out: Dict[str, List[Result]] = {}
        for s in sorted(set(src_of)):
            vi = [i for i, x in enumerate(src_of) if x == s]
            keys, todo, queued = [], [], set()
            for i in vi:
                packed = None if rows_drop[i] is None else np.packbits(rows_drop[i].numpy(), axis=1)
                for j in range(B):
                    routed = bool(rows_route[i][j])
                    key = (j, s if (use_a or routed) else None,
                           packed[j].tobytes() if (use_v and not routed) else None)
                    keys.append(key)
                    if key not in done and key not in queued:
                        queued.add(key)
                        todo.append((key, (i, j)))
            if todo:
                front: Dict = {}
                rows = [ij for _, ij in todo]
                if use_a:
                    idx = torch.tensor([j for _, j in rows], device=self.device)
                    front["audio"] = _sub_front({"audio": a_front(s)}, idx)["audio"]
                if use_v:
                    t0 = time.perf_counter()
                    fv = []
                    for i, j in rows:
                        d = rows_drop[i][j]
                        if feats is not None:
                            fv.append(torch.where(d[:, None].to(feats.device), black, feats[j]))
                        else:              # a Conv3D front-end: features of the variant's own video
                            if i not in v_feats:
                                keep = (~rows_drop[i])[..., None, None].to(video.dtype)
                                v_feats[i] = model.visual_frontend((video * keep).to(self.device),
                                                                   vlens.to(self.device))[0]
                            fv.append(v_feats[i][j])
                    front["visual"] = torch.stack(fv)
                    self._tick("visual_front", t0)
                route = torch.tensor([bool(rows_route[i][j]) for i, j in rows])
                vl = torch.stack([batch.video_lens[j] for _, j in rows]) if batch.video_lens is not None else None
                res = self._search_front(front, len(rows), mode, route=route if bool(route.any()) else None,
                                         video_lens=vl)
                for (key, _), r in zip(todo, res):
                    done[key] = r
            for n, i in enumerate(vi):
                out[variants[i].name] = [done[k] for k in keys[n * B:(n + 1) * B]]
        return {v.name: out[v.name] for v in variants}

    # ------------------------------------------------------------------ representations
    @torch.no_grad()
    def pooled_representation(self, batch: Batch, tap: str = "fused") -> Dict[str, np.ndarray]:
        """Mean-pooled encoder tap per utterance (bias diagnostics), on the batch's own path (no
        routing, adapters off)."""
        model = self.model
        b = batch.to(self.device)
        if model.cfg.mode == "audio":
            b = b.replace(video=None, video_lens=None, frame_mask=None)
        _, _, taps = model.encode(b)
        x, m = taps[tap], taps["mask"]
        pooled = (x * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp_min(1)
        return {u: pooled[i].cpu().numpy() for i, u in enumerate(batch.utt_ids)}
