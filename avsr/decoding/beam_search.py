"""Joint CTC/attention beam search batched ACROSS utterances.

ESPnet's ``BatchBeamSearch`` vectorises the beam of one utterance.  Here the
running hypotheses of *all* utterances of a padded batch live in one
``[B_active * beam]`` tensor layout, so every search step is

* one ``decoder.forward_one_step`` call on all hypotheses (encoder memory
  repeated per beam slot, padded encoder frames masked out), and
* one ``CTCPrefixScoreTH`` call (ESPnet's batch x beam CTC prefix scorer, with
  per-utterance lengths).

The search semantics follow ``espnet.nets.batch_beam_search.BatchBeamSearch``
(with scorers ``decoder``/``ctc``/``lm``/``length_bonus`` and ``pre_beam_score_key=
"full"``) step by step: pre-beam on the weighted full scores, partial CTC
scoring of the top ``int(pre_beam_ratio * beam)`` tokens (+ ``<eos>``), top-``beam``
over (running hypotheses x vocabulary) per utterance, ended hypotheses moved to
a per-utterance finished list, ``<eos>`` forced at ``maxlen``, ``minlen``
filtering, ESPnet's ``end_detect`` when ``maxlenratio == 0`` and the
``minlenratio`` back-off when nothing ended.  Utterances that are done are
dropped from the batch (and the tensors trimmed to the longest remaining
utterance) so that short utterances do not cost anything afterwards.

Shallow fusion: a token language model (``lm``, weight ``lm_weight``) is one more full scorer, as
ESPnet's ``lm`` scorer: its log-probabilities of the next token, times ``lm_weight``, are added to the
weighted scores before the pre-beam (so they steer which tokens CTC scores) and to the ranking.  It
is called once per step on all running hypotheses of all utterances; an ``lm`` with a
``batch_step(yseq, cache)`` method (:class:`avsr.lm.TransformerTokenLM`) keeps its cache as
batch-first tensors, any other ESPnet batch scorer (``batch_score(ys, states, xs)``, e.g.
``espnet2.lm.seq_rnn_lm.SequentialRNNLM``) keeps ESPnet's per-hypothesis state list.  With
``lm_weight == 0`` (the default) the LM is never called and the search is the one without it, bit
for bit.

Utterances that have fewer than ``beam`` running hypotheses keep "dead" slots
(score ``-inf``) so that the layout stays rectangular, as CTCPrefixScoreTH
requires the same number of hypotheses per utterance.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch
from espnet.nets.ctc_prefix_score import CTCPrefixScoreTH
from espnet.nets.e2e_asr_common import end_detect
from espnet.nets.pytorch_backend.transformer.attention import MultiHeadedAttention
from espnet.nets.pytorch_backend.transformer.mask import subsequent_mask


@dataclass
class Hypothesis:
    """A finished hypothesis.

    ``yseq``: token ids without ``<sos>`` and the final ``<eos>``;
    ``score``: total weighted score; ``scores``: unweighted per-scorer sums
    (keys among ``"decoder"``, ``"ctc"``, ``"lm"``, ``"length_bonus"``; a scorer with
    weight 0 is not used and has no key, as in ESPnet).
    """

    yseq: List[int]
    score: float
    scores: Dict[str, float] = field(default_factory=dict)


def _maxlen(maxlenratio: float, T: int) -> int:
    if maxlenratio == 0:
        return T
    if maxlenratio < 0:
        return -1 * int(maxlenratio)
    return max(1, int(maxlenratio * T))


def _minlen(minlenratio: float, T: int) -> int:
    if minlenratio < 0:
        return -1 * int(minlenratio)
    return int(minlenratio * T)


class _BeamSrcAttn(torch.nn.Module):
    """Source attention of ``W`` beam slots per utterance over ONE copy of its memory.

    Stand-in for an ESPnet ``MultiHeadedAttention`` used as ``src_attn`` of a
    decoder layer (same parameters, same math as its default path): the
    queries come as ``[A*W, 1, D]`` while key/value (the encoder memory) come
    un-repeated as ``[A, T, D]`` with mask ``[A, 1, T]``.  The key/value
    projections are computed once per utterance and cached while the memory
    tensor stays the same object, instead of once per hypothesis and step.
    """

    def __init__(self, mha: MultiHeadedAttention):
        super().__init__()
        self.mha = mha
        self._key = None
        self._kv = None

    def forward(self, query, key, value, mask, expand_kv=False):
        m = self.mha
        A, N = key.size(0), query.size(0)
        if query.size(1) != 1 or N % A != 0:  # generic fallback: repeat the memory
            W = N // A
            rep = None if mask is None else mask.repeat_interleave(W, dim=0)
            return m(query, key.repeat_interleave(W, 0), value.repeat_interleave(W, 0), rep)
        W = N // A
        if self._key is not key:
            k = m.linear_k(key).view(A, -1, m.h, m.d_k).transpose(1, 2)
            v = m.linear_v(value).view(A, -1, m.h, m.d_k).transpose(1, 2)
            self._key, self._kv = key, (m.k_norm(k), v)
        k, v = self._kv
        q = m.q_norm(m.linear_q(query).view(N, 1, m.h, m.d_k).transpose(1, 2))
        q = q.reshape(A, W, m.h, m.d_k).transpose(1, 2)  # (A, h, W, d_k)
        scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(m.d_k)
        if mask is not None:
            pad = mask.unsqueeze(1).eq(0)  # (A, 1, 1, T)
            scores = scores.masked_fill(pad, torch.finfo(scores.dtype).min)
            attn = torch.softmax(scores, dim=-1).masked_fill(pad, 0.0)
        else:
            attn = torch.softmax(scores, dim=-1)
        x = torch.matmul(attn, v)  # (A, h, W, d_k)
        x = x.transpose(1, 2).reshape(N, 1, m.h * m.d_k)
        return m.linear_out(x)


@contextlib.contextmanager
def _shared_memory_decoder(decoder, enable: bool):
    """Temporarily swap each layer's ``src_attn`` for :class:`_BeamSrcAttn`.

    Yields True if the swap was done (then the decoder must be given the
    un-repeated memory), False if the decoder is not supported (plain
    ESPnet ``MultiHeadedAttention`` source attention is required).
    """
    layers = getattr(decoder, "decoders", None) if enable else None
    ok = (
        layers is not None
        and len(layers) > 0
        and all(
            type(getattr(l, "src_attn", None)) is MultiHeadedAttention
            and getattr(l, "sequential_attn", None) is None
            for l in layers
        )
    )
    if not ok:
        yield False
        return
    originals = [l.src_attn for l in layers]
    try:
        for l in layers:
            l.src_attn = _BeamSrcAttn(l.src_attn)
        yield True
    finally:
        for l, o in zip(layers, originals):
            l.src_attn = o


def _ctc_scorer(ctc_logp, lens, act, T, blank, eos):
    # CTCPrefixScoreTH overwrites the padded frames of its input in place.
    x = ctc_logp.index_select(0, act.to(ctc_logp.device))[:, :T].contiguous()
    return CTCPrefixScoreTH(x, lens[act], blank, eos)


def batch_beam_search(
    decoder: Optional[torch.nn.Module],
    ctc_logp: Optional[torch.Tensor],
    enc_out: torch.Tensor,
    enc_lens: torch.Tensor,
    *,
    beam_size: int,
    sos: int,
    eos: int,
    ctc_weight: float = 0.3,
    decoder_weight: Optional[float] = None,
    length_bonus: float = 0.0,
    maxlenratio: float = 0.0,
    minlenratio: float = 0.0,
    pre_beam_ratio: float = 1.5,
    blank: int = 0,
    nbest: Optional[int] = None,
    vocab_size: Optional[int] = None,
    share_memory: bool = True,
    lm: Optional[torch.nn.Module] = None,
    lm_weight: float = 0.0,
) -> List[List[Hypothesis]]:
    """Joint CTC/attention beam search over a padded batch of utterances.

    Args:
        decoder: ESPnet ``TransformerDecoder``-like module with
            ``forward_one_step(tgt, tgt_mask, memory, memory_mask, cache=...)``
            (put it in ``eval()`` mode first); may be ``None`` if
            ``decoder_weight == 0``.
        ctc_logp: ``[B, T, V]`` CTC log-posteriors (``model.ctc.log_softmax(enc_out)``);
            may be ``None`` if ``ctc_weight == 0``.
        enc_out: ``[B, T, D]`` encoder output (padded).
        enc_lens: ``[B]`` valid encoder frames per utterance.
        beam_size: beam width per utterance.
        sos, eos: start/end symbol ids (ESPnet: both ``V - 1``).
        ctc_weight: CTC prefix score weight.
        decoder_weight: attention decoder weight (default ``1 - ctc_weight``).
        length_bonus: per-token bonus (ESPnet's ``penalty``).
        maxlenratio: 0 -> ``maxlen = T_b`` with end detection; ``> 0`` ->
            ``max(1, int(maxlenratio * T_b))``; ``< 0`` -> constant ``-maxlenratio``.
        minlenratio: ``minlen = int(minlenratio * T_b)`` (``< 0``: constant).
        pre_beam_ratio: CTC is scored only on the top ``int(pre_beam_ratio*beam)``
            tokens of the weighted full scores (+ ``<eos>``), as in ESPnet.
        blank: CTC blank id.
        nbest: keep at most this many hypotheses per utterance (default: all
            ended hypotheses, best first, as ESPnet returns them).
        vocab_size: defaults to ``ctc_logp.size(-1)`` or the decoder output size.
        share_memory: compute the decoder's source-attention keys/values once
            per utterance instead of once per hypothesis (temporarily swaps the
            ``src_attn`` modules of an ESPnet ``TransformerDecoder`` during the
            call; falls back to repeating the memory per beam slot if the
            decoder layers are not plain ``MultiHeadedAttention``).  Same
            results up to float rounding.
        lm: token language model for shallow fusion (``eval()`` mode, same vocabulary,
            ``<sos>``/``<eos>`` = ``sos``/``eos``); used only when ``lm_weight != 0``.
        lm_weight: weight of the LM log-probabilities (ESPnet's ``lm_weight``; 0: no LM).

    Returns:
        For each utterance, its ended hypotheses sorted by score (best first), each token
        sequence once and only finite scores (the n-best list; ``nbest`` cuts it); empty if
        nothing ended (as ESPnet with ``minlenratio < 0.1``).  It holds at most as many
        hypotheses as ended: ask for a beam at least as wide as the n-best list.
    """
    use = decoder is not None and (
        (1.0 - ctc_weight) if decoder_weight is None else float(decoder_weight)
    ) != 0
    with torch.no_grad(), _shared_memory_decoder(decoder, share_memory and use) as shared:
        out = _search(
            decoder, ctc_logp, enc_out, enc_lens, beam_size=beam_size, sos=sos, eos=eos,
            ctc_weight=ctc_weight, decoder_weight=decoder_weight,
            length_bonus=length_bonus, maxlenratio=maxlenratio,
            pre_beam_ratio=pre_beam_ratio, blank=blank, vocab_size=vocab_size,
            minlen_fn=lambda T: _minlen(minlenratio, T), shared=shared, lm=lm, lm_weight=lm_weight,
        )
    retry = []
    for b, hyps in enumerate(out):
        if not hyps and minlenratio >= 0.1:
            retry.append(b)
    if retry:  # ESPnet: "perform recognition again with smaller minlenratio"
        idx = torch.tensor(retry)
        sub = batch_beam_search(
            decoder,
            None if ctc_logp is None else ctc_logp[idx.to(ctc_logp.device)],
            enc_out[idx.to(enc_out.device)],
            torch.as_tensor(enc_lens).cpu()[idx],
            beam_size=beam_size, sos=sos, eos=eos, ctc_weight=ctc_weight,
            decoder_weight=decoder_weight, length_bonus=length_bonus,
            maxlenratio=maxlenratio, minlenratio=max(0.0, minlenratio - 0.1),
            pre_beam_ratio=pre_beam_ratio, blank=blank, nbest=nbest,
            vocab_size=vocab_size, share_memory=share_memory, lm=lm, lm_weight=lm_weight,
        )
        for b, hyps in zip(retry, sub):
            out[b] = hyps
    if nbest is not None:
        out = [h[:nbest] for h in out]
    return out


def _search(
    decoder, ctc_logp, enc_out, enc_lens, *, beam_size, sos, eos, ctc_weight,
    decoder_weight, length_bonus, maxlenratio, pre_beam_ratio, blank, vocab_size,
    minlen_fn, shared, lm=None, lm_weight=0.0,
) -> List[List[Hypothesis]]:
    device, dtype = enc_out.device, enc_out.dtype
    B = enc_out.size(0)
    lens = torch.as_tensor(enc_lens).detach().long().cpu().view(-1)
    if lens.numel() != B:
        raise ValueError("enc_lens must have one entry per utterance")
    w_dec = (1.0 - ctc_weight) if decoder_weight is None else float(decoder_weight)
    use_dec = decoder is not None and w_dec != 0
    use_ctc = ctc_logp is not None and ctc_weight != 0
    use_lb = length_bonus != 0
    use_lm = lm is not None and float(lm_weight) != 0
    if float(lm_weight) != 0 and lm is None:
        raise ValueError("lm_weight != 0 needs an lm")
    if not (use_dec or use_ctc):
        raise ValueError("need a decoder (decoder_weight != 0) or CTC (ctc_weight != 0)")
    if vocab_size is None:
        vocab_size = ctc_logp.size(-1) if ctc_logp is not None else decoder.output_layer.out_features
    V = int(vocab_size)
    pre_beam_size = int(pre_beam_ratio * beam_size)
    do_pre_beam = use_ctc and pre_beam_size < V
    if use_ctc:
        ctc_logp = ctc_logp.detach()
    keys = [k for k, u in (("decoder", use_dec), ("ctc", use_ctc), ("lm", use_lm), ("length_bonus", use_lb)) if u]
    lm_step = _LMStep(lm) if use_lm else None

    maxlens = torch.tensor([_maxlen(maxlenratio, int(t)) for t in lens])
    minlens = torch.tensor([minlen_fn(int(t)) for t in lens])
    ended: List[list] = [[] for _ in range(B)]  # (Hypothesis, espnet yseq length)

    # original indices of the still-decoding utterances (maxlen 0: nothing to do, as ESPnet)
    act = (maxlens > 0).nonzero().view(-1)
    if act.numel() == 0:
        return [[] for _ in range(B)]
    A0 = act.numel()
    W = 1  # hypothesis slots per utterance (1 at the first step, then beam)
    yseq = torch.full((A0, 1), sos, dtype=torch.long, device=device)
    score = torch.zeros(A0, dtype=dtype, device=device)
    sc = {k: torch.zeros(A0, dtype=dtype, device=device) for k in keys}
    cache = None
    lm_state = None
    ctc_r = ctc_s = None
    impl = None
    mem = mem_mask = None
    rebuild = True
    lb_t = torch.ones(1, dtype=dtype, device=device)
    i = 0
    while True:
        A = act.numel()
        N = A * W
        if rebuild:
            Tm = int(lens[act].max())
            if use_dec:
                mem = enc_out.index_select(0, act.to(device))[:, :Tm]
                mem_mask = torch.arange(Tm, device=device).unsqueeze(0) < lens[act].to(device).unsqueeze(1)
                mem_mask = mem_mask.unsqueeze(1)  # (A, 1, Tm)
                if not shared:  # one copy of the memory per hypothesis slot
                    mem = mem.repeat_interleave(W, dim=0)
                    mem_mask = mem_mask.repeat_interleave(W, dim=0)
            if use_ctc and (impl is None or impl.batch != A):
                impl = _ctc_scorer(ctc_logp, lens, act, Tm, blank, eos)
                if ctc_r is not None:
                    ctc_r = ctc_r[:Tm]
            rebuild = False

        # ---- scoring: weighted = w_dec*dec + w_lb*1 (+ w_ctc*ctc) + running score
        weighted = torch.zeros(N, V, dtype=dtype, device=device)
        if use_dec:
            ys_mask = subsequent_mask(i + 1, device=device).unsqueeze(0)
            dec_logp, new_cache = decoder.forward_one_step(yseq, ys_mask, mem, mem_mask, cache=cache)
            weighted += w_dec * dec_logp
        if use_lm:
            lm_logp, new_lm_state = lm_step(yseq, lm_state)
            weighted += lm_weight * lm_logp.to(dtype)
        if use_lb:
            weighted += length_bonus * lb_t
        if use_ctc:
            part_ids = torch.topk(weighted, pre_beam_size, dim=-1)[1] if do_pre_beam else None
            state = None if ctc_r is None else (ctc_r, ctc_s, 0, 0)
            ctc_sc, (r, log_psi, _, _, idmap) = impl(yseq, state, part_ids)
            weighted += ctc_weight * ctc_sc
        weighted += score.unsqueeze(1)

        # ---- per-utterance top-beam over (slots x vocab)
        top_val, top_idx = weighted.view(A, W * V).topk(beam_size, dim=1)
        prev = torch.div(top_idx, V, rounding_mode="trunc")
        prev = (prev + (torch.arange(A, device=device) * W).unsqueeze(1)).view(-1)
        tok = (top_idx % V).view(-1)
        new_score = top_val.view(-1)
        new_sc = {}
        if use_dec:
            new_sc["decoder"] = sc["decoder"][prev] + dec_logp[prev, tok]
        if use_ctc:
            new_sc["ctc"] = sc["ctc"][prev] + ctc_sc[prev, tok]
        if use_lm:
            new_sc["lm"] = sc["lm"][prev] + lm_logp[prev, tok].to(dtype)
        if use_lb:
            new_sc["length_bonus"] = sc["length_bonus"][prev] + lb_t
        new_yseq = torch.cat([yseq[prev], tok.unsqueeze(1)], dim=1)

        # ---- post-process: force <eos> at maxlen, move ended hyps out
        is_eos = (tok == eos).view(A, beam_size)
        forced = (maxlens[act] - 1 == i).to(device)
        ended_mask = is_eos | forced.unsqueeze(1)
        if bool(ended_mask.any()):
            em_cpu = ended_mask.cpu()
            rows = em_cpu.view(-1).nonzero().view(-1).tolist()
            ys_l = new_yseq[rows].tolist()
            sc_l = new_score[rows].tolist()
            scs_l = {k: v[rows].tolist() for k, v in new_sc.items()}
            for n, row in enumerate(rows):
                a = row // beam_size
                b = int(act[a])
                if i < int(minlens[b]):
                    continue
                toks = ys_l[n][1:]
                esp_len = len(ys_l[n]) + (1 if bool(forced[a]) else 0)
                if toks and toks[-1] == eos:
                    toks = toks[:-1]
                hyp = Hypothesis(toks, sc_l[n], {k: scs_l[k][n] for k in keys})
                ended[b].append((hyp, esp_len))
        finished = forced.cpu() | (~ended_mask).sum(1).cpu().eq(0)
        if maxlenratio == 0.0:
            for a in range(A):
                b = int(act[a])
                if not finished[a] and ended[b]:
                    recs = [{"yseq": range(n_), "score": h.score} for h, n_ in ended[b]]
                    if end_detect(recs, i):
                        finished[a] = True
        keep = (~finished).nonzero().view(-1)
        if keep.numel() == 0:
            break

        # ---- new running set: per utterance, running hyps first (topk order), dead slots after
        em = ended_mask[keep.to(device)]
        order = torch.argsort(em.to(torch.int8), dim=1, stable=True)
        alive = ~torch.gather(em, 1, order)
        sel = ((keep.to(device) * beam_size).unsqueeze(1) + order).view(-1)
        yseq = new_yseq[sel]
        score = new_score[sel].masked_fill(~alive.view(-1), float("-inf"))
        sc = {k: v[sel] for k, v in new_sc.items()}
        if use_dec:
            cache = [c[prev[sel]] for c in new_cache]
        if use_lm:
            lm_state = lm_step.select(new_lm_state, prev[sel])
        if use_ctc:
            p, t = prev[sel], tok[sel]
            if idmap is not None:
                col = idmap[p, t]
                col = torch.where(col < 0, col + r.size(-1), col)
            else:
                col = t
            ctc_r = r[:, :, p, col]
            ctc_s = log_psi[p, t].unsqueeze(1)
        if keep.numel() != A or W != beam_size:
            rebuild = True
        act = act[keep]
        W = beam_size
        i += 1

    return [_distinct(sorted((h for h, _ in ended[b]), key=lambda h: h.score, reverse=True))
            for b in range(B)]


class _LMStep:
    """One LM step on all running hypotheses and the reordering of its state (see the module doc)."""

    def __init__(self, lm):
        self.lm = lm
        self.tensor_cache = hasattr(lm, "batch_step")

    def __call__(self, yseq, state):
        if self.tensor_cache:
            return self.lm.batch_step(yseq, state)
        states = [None] * yseq.size(0) if state is None else state
        return self.lm.batch_score(yseq, states, None)

    def select(self, state, idx):
        if self.tensor_cache:
            return [c[idx] for c in state]
        return [state[j] for j in idx.tolist()]


def _distinct(hyps: List[Hypothesis]) -> List[Hypothesis]:
    """The n-best list as returned: finite scores only (a "dead" slot that ends carries ``-inf``),
    each token sequence once (its best score), best first."""
    seen, out = set(), []
    for h in hyps:
        key = tuple(h.yseq)
        if math.isfinite(h.score) and key not in seen:
            seen.add(key)
            out.append(h)
    return out
