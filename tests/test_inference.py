"""CER metrics and bootstrap, packed model dirs, Speech2Text batched vs per-utterance, the CLI shell."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from avsr.eval.metrics import bootstrap_ci, paired_bootstrap, score_texts, utt_errors
from avsr.inference import Speech2Text
from avsr.models import AVSRModel, load_config
from avsr.pack import PackError, load_packed, pack_model
from avsr.text.tokens import write_token_list
from avsr.utils.checkpoint import CheckpointError

ROOT = Path(__file__).resolve().parents[1]
TOKENS = ["<blank>", "<unk>"] + list("我们今天去北京上海吃饭") + ["<sos/eos>"]


def test_utt_errors_and_scoring():
    assert utt_errors("今天去北京", "今天去北京") == (0, 5)
    assert utt_errors("今天去北京", "今天北京") == (1, 5)         # deletion
    assert utt_errors("今天 去北京", "今天去上海北京") == (2, 5)   # spaces ignored, 2 insertions
    assert utt_errors("今天", "") == (2, 2)
    assert utt_errors("", "我们") == (2, 0)
    scores, missing = score_texts({"a": "我们", "b": "吃饭"}, {"a": "我"})
    assert missing == ["b"] and [(s.errors, s.ref_len) for s in scores] == [(1, 2), (2, 2)]


def test_bootstrap_and_paired():
    rng = np.random.default_rng(0)
    n = rng.integers(5, 15, size=200)
    e = rng.binomial(n, 0.2)
    ci = bootstrap_ci(e, n, num=1000, seed=3)
    assert ci["lo"] < ci["cer"] < ci["hi"] and abs(ci["cer"] - e.sum() / n.sum()) < 1e-12
    assert ci == bootstrap_ci(e, n, num=1000, seed=3)              # seeded
    assert ci["hi"] - ci["lo"] < 0.1
    same = paired_bootstrap(e, e, n)
    assert same["p_b_not_better"] == 1.0 and same["rel_reduction"] == 0.0
    better = paired_bootstrap(e, e // 2, n)
    assert better["p_b_not_better"] == 0.0 and 0.3 < better["rel_reduction"] < 0.7
    assert better["rel_lo"] <= better["rel_reduction"] <= better["rel_hi"]
    noisy = paired_bootstrap(e, np.maximum(e + rng.integers(-1, 2, size=200), 0), n)
    assert 0.0 < noisy["p_b_not_better"] < 1.0
    with pytest.raises(ValueError):
        bootstrap_ci([], [])


def _micro(mode="audiovisual", seed=0, **kw):
    torch.manual_seed(seed)
    m = AVSRModel(load_config(ROOT / "conf" / "micro.yaml", vocab_size=len(TOKENS), mode=mode, **kw))
    with torch.no_grad():   # peaky, non-trivial outputs so that searches differ from pure noise
        m.ctc.ctc_lo.weight.mul_(8.0)
        m.decoder.output_layer.weight.mul_(8.0)
    return m.eval()


def _items(n=4, seed=0, video=True):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        dur = 0.6 + 0.3 * i
        a = 0.1 * torch.randn(int(dur * 16000), generator=g)
        v = torch.randint(0, 256, (int(dur * 25), 96, 96), generator=g, dtype=torch.uint8) if video else None
        out.append({"utt_id": f"u{i}", "audio": a, "video": v})
    return out


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    d = tmp_path_factory.mktemp("pack")
    write_token_list(TOKENS, str(d / "tokens.txt"))
    m = _micro()
    pack_model(d / "packed", model_config=m.cfg.to_dict(), token_list=d / "tokens.txt",
               weights=m.state_dict(), decode={"beam_size": 3})
    return d / "packed", m


def test_pack_round_trip(packed):
    path, m = packed
    model, tok, info = load_packed(path)
    assert tok.vocab_size == len(TOKENS) and info["decode"] == {"beam_size": 3}
    assert info["meta"]["torch_version"] == torch.__version__ and "avsr_version" in info["meta"]
    sd, sd0 = model.state_dict(), m.state_dict()
    assert sd.keys() == sd0.keys() and all(torch.equal(sd[k], sd0[k]) for k in sd)
    assert "audio_frontend.feat_mean" in sd  # normalisation stats travel with the weights
    assert os.path.isfile(path / "feats_stats.json")


def test_pack_refuses_bad_files(packed, tmp_path):
    path, m = packed
    import shutil
    bad = tmp_path / "bad"
    shutil.copytree(path, bad)
    with open(bad / "model.pth", "r+b") as f:   # flip bytes: checksum mismatch, named file
        f.seek(100)
        f.write(b"\x00\x01\x02")
    with pytest.raises(PackError, match="model.pth.*checksum"):
        load_packed(bad)
    evil = tmp_path / "evil"
    shutil.copytree(path, evil)
    torch.save({"x": Path("/etc")}, evil / "model.pth")            # a pickled object, not tensors
    with pytest.raises(CheckpointError, match="refused"):
        load_packed(evil, verify=False)
    with pytest.raises(PackError, match="not found"):
        load_packed(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PackError, match="config.yaml"):
        load_packed(tmp_path / "empty")


@pytest.mark.parametrize("video", [True, False])
def test_speech2text_batched_equals_single(packed, video):
    path, _ = packed
    s2t = Speech2Text.from_packed(path, beam_size=3, nbest=3)
    items = _items(4, video=video)
    batched = s2t.decode_batch(s2t.make_batch(items))
    assert [r.modality for r in batched] == ["audiovisual" if video else "audio"] * 4
    for it, rb in zip(items, batched):
        r1 = s2t(it["audio"], it["video"])
        assert r1.token_ids == rb.token_ids and r1.text == rb.text
        assert abs(r1.score - rb.score) < 1e-3
        assert [h["token_ids"] for h in r1.nbest] == [h["token_ids"] for h in rb.nbest]
    assert any(r.token_ids for r in batched)
    greedy = Speech2Text.from_packed(path, ctc_greedy=True)
    g = greedy.decode_batch(greedy.make_batch(items))
    for it, rb in zip(items, g):
        assert greedy(it["audio"], it["video"]).token_ids == rb.token_ids


def test_routing_default_lives_in_the_pack_and_a_call_overrides_it(tmp_path):
    """The adapter threshold is a decoding default of the packed model (no state on the nn.Module);
    a keyword overrides it; routing decides per utterance, by its present frames."""
    write_token_list(TOKENS, str(tmp_path / "tokens.txt"))
    m = _micro(adapter_rank=2)
    with torch.no_grad():
        for p in m.adapters.parameters():
            p.normal_(0, 1.0)
    pack_model(tmp_path / "p", model_config=m.cfg.to_dict(), token_list=tmp_path / "tokens.txt",
               weights=m.state_dict(), decode={"beam_size": 2, "adapter_threshold": 0.5})
    s = Speech2Text.from_packed(tmp_path / "p", ctc_greedy=True)
    assert s.adapter_threshold == 0.5 and not hasattr(s.model, "adapter_policy")
    assert Speech2Text.from_packed(tmp_path / "p", adapter_threshold=None).adapter_threshold is None
    items = _items(2)
    b = s.make_batch(items)
    fm = torch.ones(b.video.shape[:2], dtype=torch.bool)
    fm[0, : int(0.6 * b.video_lens[0])] = False          # utterance 0 keeps 40 % of its frames
    assert s.route(b, fm).tolist() == [True, False]
    assert Speech2Text.from_packed(tmp_path / "p", adapter_threshold=0.3).route(b, fm).tolist() == [False, False]
    # the routed utterance is decoded exactly like the same audio with no video (adapters on)
    res = s.decode_batch(b.replace(frame_mask=fm))
    alone = s.decode_batch(s.make_batch([{"utt_id": "u0", "audio": items[0]["audio"]}]))[0]
    assert res[0].modality == "audio" and res[0].token_ids == alone.token_ids and res[1].modality == "audiovisual"
    with pytest.raises(ValueError, match="adapters must be"):
        Speech2Text(m, None, adapters="sometimes")


def test_decode_items_keeps_order_and_batches_by_video(packed):
    path, _ = packed
    s = Speech2Text.from_packed(path, ctc_greedy=True)
    items = _items(3) + _items(2, seed=1, video=False)
    items = [items[3], items[0], items[4], items[1], items[2]]
    out = s.decode_items(items, batch_size=2)
    assert [r.modality for r in out] == ["audio", "audiovisual", "audio", "audiovisual", "audiovisual"]
    for it, r in zip(items, out):
        assert s(it["audio"], it["video"]).token_ids == r.token_ids
    with pytest.raises(TypeError, match="prepare_pair"):
        s("a.wav")


def _cli(*args, check_rc=None):
    p = subprocess.run([sys.executable, "-m", "avsr.cli", *args], capture_output=True, text=True,
                       cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if check_rc is not None:
        assert p.returncode == check_rc, p.stderr
    return p


def test_cli_usage_and_errors(tmp_path):
    p = _cli()
    assert p.returncode == 2 and "usage: avsr" in p.stdout and "pack" in p.stdout
    for cmd in ("pack", "decode"):
        assert "--help" in _cli(cmd, "--help", check_rc=0).stdout or "usage" in _cli(cmd, "--help").stdout
    p = _cli("pack", "--exp_dir", str(tmp_path / "nothing"), "--out", str(tmp_path / "o"), check_rc=1)
    assert "nothing/config.yaml" in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    p = _cli("frobnicate", check_rc=2)
    assert "unknown command" in p.stderr


def test_alignment_reads_the_alignment_ctc(tmp_path):
    # a model with an alignment CTC (label priors): the pack carries its head and prior, decoding still
    # reads the recognising CTC, forced alignment (kept posteriors, ctc_posteriors(for_alignment=True),
    # transcribe's times) reads align_scores
    write_token_list(TOKENS, str(tmp_path / "tokens.txt"))
    m = _micro("audio", align_ctc_weight=0.5)
    with torch.no_grad():
        m.align_ctc.weight.mul_(8.0)
        m.align_log_prior.copy_(torch.log_softmax(torch.randn(len(TOKENS)), -1))
    pack_model(tmp_path / "packed", model_config=m.cfg.to_dict(), token_list=tmp_path / "tokens.txt",
               weights=m.state_dict(), decode={"beam_size": 0})
    s2t = Speech2Text.from_packed(tmp_path / "packed", ctc_greedy=True)
    torch.testing.assert_close(s2t.model.align_log_prior, m.align_log_prior)
    items = _items(2, video=False)
    b = s2t.make_batch(items)
    with torch.no_grad():
        enc, lens, _ = s2t.encode(b)
        want_align = s2t.model.align_scores(enc)
        want_ctc = s2t.model.ctc.log_softmax(enc)
    assert not torch.allclose(want_align, want_ctc)
    for j, (lp, _) in enumerate(s2t.ctc_posteriors(b, for_alignment=True)):
        np.testing.assert_allclose(lp, want_align[j, :int(lens[j])].numpy(), rtol=1e-5, atol=1e-5)
    for j, (lp, _) in enumerate(s2t.ctc_posteriors(b)):
        np.testing.assert_allclose(lp, want_ctc[j, :int(lens[j])].numpy(), rtol=1e-5, atol=1e-5)
    s2t.keep_posteriors = True
    res = s2t.decode_batch(b)
    for j, r in enumerate(res):
        np.testing.assert_allclose(r.ctc_logp, want_align[j, :int(lens[j])].numpy(), rtol=1e-5, atol=1e-5)
        assert r.token_ids == [int(t) for t in torch.unique_consecutive(want_ctc[j, :int(lens[j])].argmax(-1))
                               if int(t) != 0]
