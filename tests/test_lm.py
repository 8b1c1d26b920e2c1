"""LM shallow fusion: the token LM (avsr.lm), its training command, the LM scorer in the batched beam
search, the LM inside a packed model, and the recipe's dev choice of the weight.

Central checks:
* the batched search with an LM gives ESPnet's ``BatchBeamSearch`` n-best lists (scorers decoder /
  CTC / lm / length bonus, ``pre_beam_score_key="full"``) per utterance, for the tensor-cache LM and
  for an LM with only ESPnet's ``batch_score`` (a wrong cache reorder or a missing pre-beam term fails);
* a toy LM that prefers one token changes the hypothesis at a high weight, and weight 0 gives the
  search without the LM bit for bit without calling the LM;
* a pack carries the LM under its checksums with the default weight, a keyword overrides it, 0 never
  loads it;
* ``avsr train_lm`` lowers the dev perplexity and an interrupted run resumes to the same weights.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from avsr.decoding import batch_beam_search
from avsr.lm import LMError, TransformerTokenLM, build_lm, check_tokens, choose_lm_weight, load_lm
from avsr.text.tokens import write_token_list
from avsr.utils.checkpoint import save_checkpoint

pytest.importorskip("espnet2")
from espnet.nets.batch_beam_search import BatchBeamSearch  # noqa: E402
from espnet.nets.scorers.ctc import CTCPrefixScorer  # noqa: E402
from espnet.nets.scorers.length_bonus import LengthBonus  # noqa: E402
from espnet2.asr.ctc import CTC  # noqa: E402
from espnet2.asr.decoder.transformer_decoder import TransformerDecoder  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
V, D = 30, 32
EOS = SOS = V - 1
SMALL_LM = {"embed_unit": 16, "att_unit": 32, "head": 2, "unit": 64, "layer": 2, "dropout_rate": 0.0,
            "positional_dropout_rate": 0.0, "attention_dropout_rate": 0.0}


def _asr(seed=0, scale=4.0):
    torch.manual_seed(seed)
    dec = TransformerDecoder(V, D, attention_heads=4, linear_units=64, num_blocks=2, dropout_rate=0.0,
                             positional_dropout_rate=0.0, use_flash_attn=False).eval()
    ctc = CTC(V, D).eval()
    with torch.no_grad():
        dec.output_layer.weight.mul_(scale)
        ctc.ctc_lo.weight.mul_(scale)
    return dec, ctc


def _lm(seed=3, scale=6.0, vocab=V):
    torch.manual_seed(seed)
    lm = build_lm(SMALL_LM, vocab).eval()
    with torch.no_grad():
        lm.decoder.weight.mul_(scale)      # peaky: the LM really moves the search
    return lm


@pytest.fixture(scope="module")
def setup():
    dec, ctc = _asr()
    torch.manual_seed(1)
    lens = torch.tensor([22, 7, 15, 4])
    enc = torch.randn(len(lens), int(lens.max()), D)
    with torch.no_grad():
        logp = ctc.log_softmax(enc)
    return dec, ctc, enc, lens, logp


def _strip(yseq):
    y = yseq.tolist()[1:]
    while y and y[-1] == EOS:
        y.pop()
    return y


class _ScoreOnly(torch.nn.Module):
    """The same LM seen only through ESPnet's ``batch_score`` (per-hypothesis state lists)."""

    def __init__(self, lm):
        super().__init__()
        self.inner = lm

    def batch_score(self, ys, states, xs):
        return self.inner.batch_score(ys, states, xs)


@pytest.mark.parametrize("beam,ctc_weight,lm_weight,lb", [(4, 0.3, 0.5, 0.0), (3, 0.5, 1.0, 0.5), (5, 0.3, 0.2, 0.0)])
def test_lm_fusion_matches_espnet(setup, beam, ctc_weight, lm_weight, lb):
    dec, ctc, enc, lens, logp = setup
    lm = _lm()
    bs = BatchBeamSearch(
        scorers={"decoder": dec, "ctc": CTCPrefixScorer(ctc, EOS), "lm": lm, "length_bonus": LengthBonus(V)},
        weights={"decoder": 1.0 - ctc_weight, "ctc": ctc_weight, "lm": lm_weight, "length_bonus": lb},
        beam_size=beam, vocab_size=V, sos=SOS, eos=EOS, token_list=None, pre_beam_score_key="full")
    with torch.no_grad():
        ref = [bs(enc[b, :lens[b]], maxlenratio=0.0, minlenratio=0.0) for b in range(len(lens))]
    for the_lm in (lm, _ScoreOnly(lm)):
        ours = batch_beam_search(dec, logp, enc, lens, beam_size=beam, sos=SOS, eos=EOS, ctc_weight=ctc_weight,
                                 length_bonus=lb, lm=the_lm, lm_weight=lm_weight)
        for o, r in zip(ours, ref):
            assert len(o) == len(r)
            for ho, hr in zip(o, r):
                if float(hr.score) < -1e8:     # forced <eos> at maxlen with CTC's logzero: ties in any order
                    assert ho.score < -1e8
                    continue
                assert ho.yseq == _strip(hr.yseq)
                assert abs(ho.score - float(hr.score)) < 1e-4
                assert set(ho.scores) == set(hr.scores) and "lm" in ho.scores
                assert abs(ho.scores["lm"] - float(hr.scores["lm"])) < 1e-4


class _Prefers(torch.nn.Module):
    """A toy LM: log-probability 0 for ``token`` and ``<eos>`` after ``n`` tokens, -20 for the rest;
    its cache records the prefixes it saw, so a wrong reorder shows up as a wrong prefix."""

    def __init__(self, token, n=2):
        super().__init__()
        self.token, self.n, self.calls = token, n, 0

    def batch_step(self, yseq, cache):
        self.calls += 1
        if cache is not None:   # the cache must belong to the same prefixes minus the last token
            assert torch.equal(cache[0][:, :, 0].long(), yseq[:, :-1])
        out = torch.full((yseq.size(0), V), -20.0)
        long_enough = (yseq.size(1) - 1) >= self.n
        out[:, EOS if long_enough else self.token] = 0.0
        return out, [yseq.unsqueeze(-1).float()]


def test_toy_lm_changes_the_hypothesis_and_weight_0_is_bit_for_bit(setup):
    dec, ctc, enc, lens, logp = setup
    kw = dict(beam_size=4, sos=SOS, eos=EOS, ctc_weight=0.3)
    base = batch_beam_search(dec, logp, enc, lens, **kw)
    tok = 7
    assert all(tok not in hs[0].yseq for hs in base)    # the ASR alone never says it
    toy = _Prefers(tok)
    same = batch_beam_search(dec, logp, enc, lens, lm=toy, lm_weight=0.0, **kw)
    assert toy.calls == 0                              # weight 0: the LM is never called
    for a, b in zip(base, same):
        assert [(h.yseq, h.score, h.scores) for h in a] == [(h.yseq, h.score, h.scores) for h in b]
    fused = batch_beam_search(dec, logp, enc, lens, lm=toy, lm_weight=5.0, **kw)
    assert toy.calls > 0
    for b, hs in enumerate(fused):
        assert hs[0].yseq == [tok] * 2, (b, hs[0].yseq)   # the LM's sentence wins at a high weight
        assert hs[0].scores["lm"] == 0.0
    with pytest.raises(ValueError, match="needs an lm"):
        batch_beam_search(dec, logp, enc, lens, lm=None, lm_weight=0.5, **kw)


def test_lm_step_equals_the_full_forward_and_nll():
    lm = _lm(scale=1.0)
    ys = torch.tensor([[SOS, 3, 4, 5, 6], [SOS, 8, 2, 2, 9]])
    full = lm(ys, None)[0].log_softmax(-1)
    cache = None
    for i in range(1, ys.size(1) + 1):
        lp, cache = lm.batch_step(ys[:, :i], cache)
        assert torch.allclose(lp, full[:, i - 1], atol=1e-5)
    # nll: <sos> y -> y <eos>, padding ignored
    x = torch.tensor([[3, 4, 5, 6], [8, 2, 0, 0]])
    with torch.no_grad():
        loss, n = lm.nll(x, torch.tensor([4, 2]))
    assert n == 5 + 3
    ref = -(full[0, torch.arange(4), torch.tensor([3, 4, 5, 6])].sum() + lm(ys[:1], None)[0].log_softmax(-1)[0, 4, EOS])
    short = torch.tensor([[SOS, 8, 2]])
    fs = lm(short, None)[0].log_softmax(-1)[0]
    ref = ref - (fs[0, 8] + fs[1, 2] + fs[2, EOS])
    assert abs(float(loss) - float(ref.detach())) < 1e-3


def test_choose_lm_weight():
    assert choose_lm_weight({0.0: 0.30, 0.1: 0.25, 0.2: 0.22, 0.3: 0.24}) == 0.2
    assert choose_lm_weight({0.0: 0.30, 0.2: 0.30, 0.1: 0.31}) == 0.0        # a tie goes to the smaller
    with pytest.raises(ValueError):
        choose_lm_weight({})


# ------------------------------------------------------------------------ LM dirs and packs
TOKENS = ["<blank>", "<unk>"] + list("我们今天去北京上海吃饭") + ["<sos/eos>"]


def _lm_dir(d: Path, tokens=TOKENS, seed=0, scale=1.0):
    d.mkdir(parents=True, exist_ok=True)
    write_token_list(tokens, str(d / "tokens.txt"))
    lm = _lm(seed=seed, scale=scale, vocab=len(tokens))
    save_checkpoint(lm.state_dict(), d / "lm.pth")
    with open(d / "lm_config.yaml", "w") as f:
        yaml.safe_dump({"lm": SMALL_LM, "vocab_size": len(tokens)}, f)
    return d, lm


def test_load_lm_and_errors(tmp_path):
    d, lm = _lm_dir(tmp_path / "lm")
    got, conf = load_lm(d)
    assert isinstance(got, TransformerTokenLM) and not got.training and conf["vocab_size"] == len(TOKENS)
    assert all(torch.equal(a, b) for a, b in zip(got.state_dict().values(), lm.state_dict().values()))
    check_tokens(d, TOKENS)
    with pytest.raises(LMError, match="tokens.txt.*differs"):
        check_tokens(d, TOKENS[:-2] + ["鱼", "<sos/eos>"])
    os.remove(d / "lm.pth")
    with pytest.raises(LMError, match="lm.pth.*missing"):
        load_lm(d)


@pytest.fixture(scope="module")
def packed_lm(tmp_path_factory):
    from avsr.models import AVSRModel, load_config
    from avsr.pack import pack_model
    d = tmp_path_factory.mktemp("packlm")
    write_token_list(TOKENS, str(d / "tokens.txt"))
    torch.manual_seed(0)
    m = AVSRModel(load_config(ROOT / "conf" / "micro.yaml", vocab_size=len(TOKENS), mode="audio"))
    with torch.no_grad():
        m.ctc.ctc_lo.weight.mul_(8.0)
        m.decoder.output_layer.weight.mul_(8.0)
    lm_d, _ = _lm_dir(d / "lm", scale=8.0)
    with open(lm_d / "train_result.json", "w") as f:
        json.dump({"dev_perplexity": 3.5}, f)
    pack_model(d / "packed", model_config=m.cfg.to_dict(), token_list=d / "tokens.txt", weights=m.state_dict(),
               decode={"beam_size": 3, "lm_weight": 0.7}, lm_dir=lm_d)
    return d, m


def _audio(n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [{"utt_id": f"u{i}", "audio": 0.1 * torch.randn(int((0.6 + 0.3 * i) * 16000), generator=g)}
            for i in range(n)]


def test_pack_round_trip_with_lm(packed_lm, tmp_path):
    from avsr.inference import Speech2Text
    from avsr.pack import PackError, load_packed, pack_model
    d, m = packed_lm
    p = d / "packed"
    _, _, info = load_packed(p)
    assert info["has_lm"] and info["decode"]["lm_weight"] == 0.7
    assert {"lm.pth", "lm_config.yaml"} <= set(info["meta"]["sha256"])
    assert info["meta"]["lm"]["dev_perplexity"] == 3.5
    s = Speech2Text.from_packed(p)
    assert s.lm is not None and s.lm_weight == 0.7                 # the pack's default
    off = Speech2Text.from_packed(p, lm_weight=0)
    assert off.lm is None and off.lm_weight == 0.0                 # never loaded at 0
    hi = Speech2Text.from_packed(p, lm_weight=3.0)
    assert hi.lm_weight == 3.0
    items = _audio()
    r_off = off.decode_items(items)
    r_hi = hi.decode_items(items)
    assert [r.token_ids for r in r_off] != [r.token_ids for r in r_hi]   # the LM is used
    with pytest.warns(UserWarning, match="CTC greedy"):
        g = Speech2Text.from_packed(p, ctc_greedy=True)
    assert g.lm is None
    # corrupt LM: checksum names the file; missing LM file named too
    bad = tmp_path / "bad"
    shutil.copytree(p, bad)
    with open(bad / "lm.pth", "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01\x02")
    with pytest.raises(PackError, match="lm.pth.*checksum"):
        load_packed(bad)
    os.remove(bad / "lm.pth")
    with pytest.raises(PackError, match="lm.pth.*missing"):
        load_packed(bad)
    # a pack without an LM: asking for one is an error naming the pack; lm_weight 0 needs none
    plain = tmp_path / "plain"
    pack_model(plain, model_config=m.cfg.to_dict(), token_list=d / "tokens.txt", weights=m.state_dict(),
               decode={"beam_size": 3})
    assert not load_packed(plain)[2]["has_lm"]
    assert Speech2Text.from_packed(plain).lm is None
    with pytest.raises(PackError, match="no LM"):
        Speech2Text.from_packed(plain, lm_weight=0.3)
    with pytest.raises(PackError, match="needs an LM"):
        pack_model(tmp_path / "x", model_config=m.cfg.to_dict(), token_list=d / "tokens.txt",
                   weights=m.state_dict(), decode={"lm_weight": 0.3})
    other, _ = _lm_dir(tmp_path / "other_lm", tokens=TOKENS[:-2] + ["鱼", "<sos/eos>"])
    with pytest.raises(PackError, match="differs"):
        pack_model(tmp_path / "y", model_config=m.cfg.to_dict(), token_list=d / "tokens.txt",
                   weights=m.state_dict(), lm_dir=other)


def test_pack_cli_stores_the_weight(packed_lm, tmp_path):
    from avsr.bin.pack import main as pack_main
    from avsr.pack import load_packed
    d, m = packed_lm
    exp = tmp_path / "exp"
    exp.mkdir()
    save_checkpoint(m.state_dict(), exp / "model.pth")
    with open(exp / "config.yaml", "w") as f:
        yaml.safe_dump({"model": m.cfg.to_dict(), "data": {"token_list": str(d / "tokens.txt")}}, f,
                       allow_unicode=True)
    assert pack_main(["--exp_dir", str(exp), "--out", str(tmp_path / "p"), "--lm_dir", str(d / "lm"),
                      "--lm_weight", "0.25", "--beam_size", "4"]) == 0
    info = load_packed(tmp_path / "p")[2]
    assert info["has_lm"] and info["decode"] == {"beam_size": 4, "lm_weight": 0.25}
    with pytest.raises(SystemExit):
        pack_main(["--exp_dir", str(exp), "--out", str(tmp_path / "q"), "--lm_weight", "0.2"])


# ------------------------------------------------------------------------ avsr train_lm
def _texts(d: Path, n, seed):
    import random
    rng = random.Random(seed)
    words = ["我们", "今天", "去北京", "去上海", "吃饭"]
    lines = [f"u{i:03d} " + "".join(rng.choice(words) for _ in range(rng.randint(2, 4))) for i in range(n)]
    d.mkdir(parents=True, exist_ok=True)
    (d / "text").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return d / "text"


def _train(tmp_path, out, extra_sets=()):
    from avsr.bin.train_lm import main
    write_token_list(TOKENS, str(tmp_path / "tokens.txt"))
    tr = _texts(tmp_path / "train", 60, 0)
    dv = _texts(tmp_path / "dev", 15, 1)
    sets = ["lm.embed_unit=16", "lm.att_unit=32", "lm.head=2", "lm.unit=64", "lm.layer=1",
            "train.max_epochs=4", "train.batch_size=8", "train.warmup_steps=5", "train.lr=0.005",
            "train.patience=0", *extra_sets]
    return main(["--text", str(tr), "--valid_text", str(dv), "--token_list", str(tmp_path / "tokens.txt"),
                 "--out_dir", str(out), "--set", *sets])


def test_train_lm_lowers_dev_perplexity_and_resumes(tmp_path, monkeypatch):
    import avsr.bin.train_lm as tl
    out = tmp_path / "lm"
    assert _train(tmp_path, out) == 0
    res = json.loads((out / "train_result.json").read_text())
    hist = [h["dev_perplexity"] for h in res["history"]]
    assert len(hist) == 4 and res["finished"] and res["wall_seconds"] > 0
    assert res["dev_perplexity"] == min(hist) < 0.5 * len(TOKENS)   # far below a uniform guess
    assert hist[-1] < hist[0]
    lm, conf = load_lm(out)
    assert conf["vocab_size"] == len(TOKENS)
    from avsr.text.tokens import Tokenizer
    dev = tl._encode(str(tmp_path / "dev" / "text"), Tokenizer(str(tmp_path / "tokens.txt")))
    assert abs(tl.perplexity(lm, dev) - res["dev_perplexity"]) < 1e-3        # lm.pth is the best epoch
    assert _train(tmp_path, out) == 0                              # finished: not redone
    assert json.loads((out / "train_result.json").read_text())["wall_seconds"] == res["wall_seconds"]
    with pytest.raises(ValueError, match="other settings"):
        _train(tmp_path, out, ["train.seed=5"])

    # interrupted after epoch 2, resumed: the same weights as the uninterrupted run
    out2 = tmp_path / "lm2"
    real, calls = tl.perplexity, {"n": 0}

    def dies(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*a, **k)
    monkeypatch.setattr(tl, "perplexity", dies)
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path, out2)
    monkeypatch.setattr(tl, "perplexity", real)
    assert not (out2 / "train_result.json").exists()
    assert _train(tmp_path, out2) == 0
    a = torch.load(out / "lm.pth", weights_only=True)
    b = torch.load(out2 / "lm.pth", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((out2 / "train_result.json").read_text())["dev_perplexity"] == res["dev_perplexity"]


# ------------------------------------------------------------------------ the recipe's dev choice
def _decode_dir(d: Path, per_utt):
    d.mkdir(parents=True)
    e = sum(v[0] for v in per_utt.values())
    n = sum(v[1] for v in per_utt.values())
    (d / "result.json").write_text(json.dumps({"cer": e / n, "lo": 0.0, "hi": 1.0, "per_utt": per_utt}))


def test_select_lm_weight(tmp_path):
    from avsr.bin.select_lm_weight import main
    utts = [f"u{i}" for i in range(20)]
    _decode_dir(tmp_path / "w0", {u: [3, 10] for u in utts})
    _decode_dir(tmp_path / "w1", {u: [2, 10] for u in utts})
    _decode_dir(tmp_path / "w2", {u: [1 + (i % 2), 10] for i, u in enumerate(utts)})   # the best
    _decode_dir(tmp_path / "w3", {u: [1 + (i % 2), 10] for i, u in enumerate(utts)})   # tie: larger weight loses
    out = tmp_path / "sel.json"
    assert main(["--decode_dirs", f"0={tmp_path / 'w0'}", f"0.1={tmp_path / 'w1'}", f"0.2={tmp_path / 'w2'}",
                 f"0.3={tmp_path / 'w3'}", "--out", str(out), "--model", "av0"]) == 0
    r = json.loads(out.read_text())
    assert r["chosen"] == 0.2 and r["cer"]["0.2"] == 0.15 and r["model"] == "av0"
    c = r["chosen_vs_0"]
    assert abs(c["diff_points"] - (-15.0)) < 1e-9 and c["diff_ci95"][1] < 0 and c["p_b_not_better"] == 0.0
    _decode_dir(tmp_path / "short", {u: [3, 10] for u in utts[:5]})
    with pytest.raises(ValueError, match="other utterances"):
        main(["--decode_dirs", f"0={tmp_path / 'w0'}", f"0.1={tmp_path / 'short'}", "--out", str(out)])


def test_commands_are_registered():
    out = subprocess.run([sys.executable, "-m", "avsr.cli", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert "train_lm" in out.stdout and "select_lm_weight" in out.stdout
    h = subprocess.run([sys.executable, "-m", "avsr.bin.decode", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert "--lm_weight" in h.stdout
    h = subprocess.run([sys.executable, "-m", "avsr.bin.decode_pairs", "--help"], capture_output=True, text=True,
                       cwd=ROOT)
    assert "--lm_weight" in h.stdout
