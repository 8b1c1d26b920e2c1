"""Batched (across-utterance) joint CTC/attention beam search and CTC greedy.

The key check: ``batch_beam_search`` on several padded utterances gives the
same n-best lists (token sequences and scores within 1e-4) as ESPnet's own
``BatchBeamSearch`` run on each utterance separately (unpadded) with scorers
decoder / CTCPrefixScorer / LengthBonus and ``pre_beam_score_key="full"``.
"""

import pytest
import torch

from avsr.decoding import Hypothesis, batch_beam_search, ctc_greedy

pytest.importorskip("espnet")
pytest.importorskip("espnet2")

from espnet.nets.batch_beam_search import BatchBeamSearch  # noqa: E402
from espnet.nets.scorers.ctc import CTCPrefixScorer  # noqa: E402
from espnet.nets.scorers.length_bonus import LengthBonus  # noqa: E402
from espnet2.asr.ctc import CTC  # noqa: E402
from espnet2.asr.decoder.transformer_decoder import TransformerDecoder  # noqa: E402

V, D = 30, 32
EOS = SOS = V - 1


def _models(seed=0, scale=4.0, layers=2):
    """Random but peaky decoder / CTC (output layers scaled up)."""
    torch.manual_seed(seed)
    dec = TransformerDecoder(
        V, D, attention_heads=4, linear_units=64, num_blocks=layers,
        dropout_rate=0.0, positional_dropout_rate=0.0, use_flash_attn=False,
    ).eval()
    ctc = CTC(V, D).eval()
    with torch.no_grad():
        dec.output_layer.weight.mul_(scale)
        ctc.ctc_lo.weight.mul_(scale)
    return dec, ctc


@pytest.fixture(scope="module")
def setup():
    torch.set_num_threads(2)
    dec, ctc = _models()
    torch.manual_seed(1)
    lens = torch.tensor([30, 7, 19, 12, 25, 4])  # different lengths, padded together
    enc = torch.randn(len(lens), int(lens.max()), D)
    with torch.no_grad():
        logp = ctc.log_softmax(enc)
    return dec, ctc, enc, lens, logp


def _strip(yseq):
    """ESPnet yseq -> tokens without <sos> and trailing <eos> (one or two at maxlen)."""
    y = yseq.tolist()[1:]
    while y and y[-1] == EOS:
        y.pop()
    return y


def _espnet(dec, ctc, enc, lens, beam, ctc_weight, lb, maxlenratio=0.0, minlenratio=0.0):
    bs = BatchBeamSearch(
        scorers={"decoder": dec, "ctc": CTCPrefixScorer(ctc, EOS), "length_bonus": LengthBonus(V)},
        weights={"decoder": 1.0 - ctc_weight, "ctc": ctc_weight, "length_bonus": lb},
        beam_size=beam, vocab_size=V, sos=SOS, eos=EOS, token_list=None,
        pre_beam_score_key="full",
    )
    with torch.no_grad():
        return [
            bs(enc[b, : lens[b]], maxlenratio=maxlenratio, minlenratio=minlenratio)
            for b in range(enc.size(0))
        ]


def _assert_same(ours, ref, tol=1e-4):
    assert len(ours) == len(ref)
    for o, r in zip(ours, ref):
        assert len(o) == len(r)
        for ho, hr in zip(o, r):
            assert ho.yseq == _strip(hr.yseq)
            assert abs(ho.score - float(hr.score)) < tol
            assert set(ho.scores) == set(hr.scores)
            for k in ho.scores:
                assert abs(ho.scores[k] - float(hr.scores[k])) < tol


# ----------------------------------------------------------------------------- greedy


def test_ctc_greedy_collapse_and_padding():
    seq = [[0, 3, 3, 0, 3, 5, 5, 0, 0, 7], [2, 2, 0, 2, 4, 4, 4, 1, 1, 1]]
    logp = torch.nn.functional.one_hot(torch.tensor(seq), 8).float().log_softmax(-1)
    assert ctc_greedy(logp, torch.tensor([10, 7])) == [[3, 3, 5, 7], [2, 2, 4]]
    assert ctc_greedy(logp, torch.tensor([0, 1])) == [[], [2]]


def test_ctc_greedy_matches_loop():
    torch.manual_seed(0)
    logp = torch.randn(5, 40, 6).mul(3).log_softmax(-1)
    lens = torch.tensor([40, 1, 17, 33, 0])
    out = ctc_greedy(logp, lens, blank=0)
    for b in range(5):
        ids, prev, ref = logp[b, : lens[b]].argmax(-1).tolist(), None, []
        for t in ids:
            if t != prev and t != 0:
                ref.append(t)
            prev = t
        assert out[b] == ref


# ------------------------------------------------------------------------ beam search


@pytest.mark.parametrize(
    "beam,ctc_weight,lb,maxlenratio,minlenratio",
    [
        (4, 0.3, 0.0, 0.0, 0.0),  # default: end-detect, pre-beam partial CTC
        (3, 0.5, 1.0, 0.0, 0.0),  # length bonus
        (5, 0.3, 0.5, 0.5, 0.2),  # maxlen / minlen, <eos> forced at maxlen
        (25, 0.4, 0.0, 0.0, 0.0),  # int(1.5*25) >= V: full-vocabulary CTC scoring
        (3, 0.3, 0.0, 0.2, 0.5),  # minlen > maxlen: nothing ends -> minlenratio back-off
    ],
)
def test_equals_espnet_batch_beam_search(setup, beam, ctc_weight, lb, maxlenratio, minlenratio):
    dec, ctc, enc, lens, logp = setup
    if beam == 25:  # keep the big-beam case small
        idx = torch.tensor([2, 1, 3])
        enc, logp, lens = enc[idx, :19], logp[idx, :19], lens[idx]
    ours = batch_beam_search(
        dec, logp, enc, lens, beam_size=beam, sos=SOS, eos=EOS, ctc_weight=ctc_weight,
        length_bonus=lb, maxlenratio=maxlenratio, minlenratio=minlenratio,
    )
    ref = _espnet(dec, ctc, enc, lens, beam, ctc_weight, lb, maxlenratio, minlenratio)
    _assert_same(ours, ref)
    assert all(isinstance(h, Hypothesis) for o in ours for h in o)
    assert any(len(o[0].yseq) > 2 for o in ours)  # non-trivial outputs


def test_pure_decoder_and_pure_ctc_equal_espnet(setup):
    dec, ctc, enc, lens, logp = setup
    enc, lens, logp = enc[1:4], lens[1:4], logp[1:4]
    ours = batch_beam_search(dec, None, enc, lens, beam_size=3, sos=SOS, eos=EOS, ctc_weight=0.0, length_bonus=0.5)
    _assert_same(ours, _espnet(dec, ctc, enc, lens, 3, 0.0, 0.5))
    assert set(ours[0][0].scores) == {"decoder", "length_bonus"}
    ours = batch_beam_search(None, logp, enc, lens, beam_size=3, sos=SOS, eos=EOS, ctc_weight=1.0)
    _assert_same(ours, _espnet(dec, ctc, enc, lens, 3, 1.0, 0.0))
    assert set(ours[0][0].scores) == {"ctc"}


def test_padding_batch_composition_and_memory_sharing_invariance(setup):
    dec, ctc, enc, lens, logp = setup
    kw = dict(beam_size=4, sos=SOS, eos=EOS, ctc_weight=0.3, length_bonus=0.2)
    base = batch_beam_search(dec, logp, enc, lens, **kw)
    # extra garbage padding frames must not change anything
    pad = torch.randn(enc.size(0), 9, D) * 100
    enc_p = torch.cat([enc, pad], 1)
    with torch.no_grad():
        logp_p = ctc.log_softmax(enc_p)
    padded = batch_beam_search(dec, logp_p, enc_p, lens, **kw)
    # the B=1 per-utterance calls, and the memory-repeating decoder path
    single = [batch_beam_search(dec, logp[b : b + 1, : lens[b]], enc[b : b + 1, : lens[b]], lens[b : b + 1], **kw)[0] for b in range(len(lens))]
    repeated = batch_beam_search(dec, logp, enc, lens, share_memory=False, **kw)
    for other in (padded, single, repeated):
        for o, r in zip(base, other):
            assert [h.yseq for h in o] == [h.yseq for h in r]
            assert all(abs(a.score - b.score) < 1e-4 for a, b in zip(o, r))
    assert batch_beam_search(dec, logp, enc, lens, nbest=2, **kw) == [o[:2] for o in base]


def test_decoder_modules_restored(setup):
    dec, ctc, enc, lens, logp = setup
    before = [layer.src_attn for layer in dec.decoders]
    with pytest.raises(RuntimeError):  # wrong memory width -> error inside the search
        batch_beam_search(dec, logp, enc[..., :5], lens, beam_size=2, sos=SOS, eos=EOS)
    assert [layer.src_attn for layer in dec.decoders] == before
    batch_beam_search(dec, logp, enc, lens, beam_size=2, sos=SOS, eos=EOS)
    assert [layer.src_attn for layer in dec.decoders] == before


def test_empty_and_zero_length(setup):
    dec, ctc, enc, lens, logp = setup
    lens0 = lens.clone()
    lens0[1] = 0
    out = batch_beam_search(dec, logp, enc, lens0, beam_size=3, sos=SOS, eos=EOS)
    ref = batch_beam_search(dec, logp, enc, lens, beam_size=3, sos=SOS, eos=EOS)
    assert out[1] == [] and ctc_greedy(logp, lens0)[1] == []
    assert [o[0].yseq for i, o in enumerate(out) if i != 1] == [o[0].yseq for i, o in enumerate(ref) if i != 1]
    assert batch_beam_search(dec, logp[:0], enc[:0], lens[:0], beam_size=3, sos=SOS, eos=EOS) == []


@pytest.mark.slow
def test_benchmark_batched_vs_per_utterance():
    """B=16, T=100, V=400, d=144, 2-layer decoder, beam 5, 2 threads (issue: >= 3x)."""
    import time

    torch.set_num_threads(2)
    B, T, V2, D2, beam = 16, 100, 400, 144, 5
    torch.manual_seed(0)
    dec = TransformerDecoder(
        V2, D2, attention_heads=4, linear_units=4 * D2, num_blocks=2, dropout_rate=0.0,
        positional_dropout_rate=0.0, use_flash_attn=False,
    ).eval()
    ctc = CTC(V2, D2).eval()
    with torch.no_grad():
        dec.output_layer.weight.mul_(4.0)
        ctc.ctc_lo.weight.mul_(4.0)
        ctc.ctc_lo.bias[0] += 9.0  # mostly-blank CTC -> realistic output lengths
    torch.manual_seed(1)
    lens = torch.randint(60, T + 1, (B,))
    lens[0] = T
    enc = torch.randn(B, T, D2)
    bs = BatchBeamSearch(
        scorers={"decoder": dec, "ctc": CTCPrefixScorer(ctc, V2 - 1), "length_bonus": LengthBonus(V2)},
        weights={"decoder": 0.7, "ctc": 0.3, "length_bonus": 0.0}, beam_size=beam,
        vocab_size=V2, sos=V2 - 1, eos=V2 - 1, pre_beam_score_key="full",
    )
    with torch.no_grad():
        t0 = time.perf_counter()
        logp = ctc.log_softmax(enc)
        ctc_greedy(logp, lens)
        t1 = time.perf_counter()
        logp = ctc.log_softmax(enc)
        ours = batch_beam_search(dec, logp, enc, lens, beam_size=beam, sos=V2 - 1, eos=V2 - 1)
        t2 = time.perf_counter()
        ref = [bs(enc[b, : lens[b]]) for b in range(B)]
        t3 = time.perf_counter()
    print(f"\nctc greedy {t1 - t0:.3f}s | batched beam {t2 - t1:.3f}s | espnet per-utterance {t3 - t2:.3f}s "
          f"| speedup {(t3 - t2) / (t2 - t1):.1f}x")
    for o, r in zip(ours, ref):
        y = r[0].yseq.tolist()[1:]
        while y and y[-1] == V2 - 1:
            y.pop()
        assert o[0].yseq == y
    assert (t3 - t2) / (t2 - t1) >= 3.0
