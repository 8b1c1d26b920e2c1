"""avsr.robust.audio_noise: babble augmentation of the training audio (a training method)."""
from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from avsr.data.batch import Batch  # noqa: E402
from avsr.robust.audio_noise import AudioNoiseMethod, mix_babble  # noqa: E402
from avsr.robust.registry import build_method  # noqa: E402


def batch(lens=(16000, 12000, 7000, 3000), seed=0):
    g = torch.Generator().manual_seed(seed)
    N = max(lens)
    a = torch.zeros(len(lens), N)
    for b, n in enumerate(lens):
        a[b, :n] = 0.1 * (b + 1) * torch.randn(n, generator=g)
    return Batch(utt_ids=[f"u{i}" for i in range(len(lens))], audio=a, audio_lens=torch.tensor(lens),
                 video=torch.full((len(lens), 5, 2, 2), 7, dtype=torch.uint8))


@pytest.mark.parametrize("snr", [-10.0, 0.0, 7.5])
def test_snr_padding_and_sources(snr):
    b = batch()
    out, snrs = mix_babble(b.audio, b.audio_lens, np.random.default_rng(1), 1.0, (snr, snr), talkers=3)
    for i, n in enumerate(b.audio_lens.tolist()):
        x, noise = b.audio[i, :n].double(), (out[i, :n] - b.audio[i, :n]).double()
        assert snrs[i] == snr
        assert 10 * np.log10(float(x.pow(2).mean() / noise.pow(2).mean())) == pytest.approx(snr, abs=1e-3)
        assert (out[i, n:] == 0).all()                                   # padding stays zero
    assert torch.equal(b.audio, batch().audio)                           # input untouched


def test_never_mixes_itself_and_single_utterance_stays_clean():
    # two utterances: each one's noise can only be the other one (a circular shift of it, tiled)
    b = batch(lens=(4000, 4000))
    out, _ = mix_babble(b.audio, b.audio_lens, np.random.default_rng(0), 1.0, (0.0, 0.0), talkers=1)
    noise = out[0] - b.audio[0]
    src = b.audio[1]
    corr = max(float(torch.dot(noise, torch.roll(src, -k))) / float(noise.norm() * src.norm())
               for k in range(0, 4000, 1))
    assert corr > 0.999
    one = batch(lens=(4000,))
    out1, s1 = mix_babble(one.audio, one.audio_lens, np.random.default_rng(0), 1.0, (0.0, 0.0), talkers=3)
    assert torch.equal(out1, one.audio) and np.isnan(s1).all()


def test_method_prob_valid_untouched_and_resume():
    m = build_method('audio_noise:{"prob": 0.5, "snr": [-5, 5], "seed": 3}')
    assert isinstance(m, AudioNoiseMethod)
    b = batch(lens=tuple([8000] * 200))
    assert m.transform_batch(b, train=False) is b                         # validation stays clean
    out = m.transform_batch(b, train=True)
    changed = (out.audio != b.audio).any(1).float().mean().item()
    assert abs(changed - 0.5) < 0.12
    assert torch.equal(out.video, b.video)                               # video not touched
    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    buf.seek(0)
    m2 = AudioNoiseMethod(prob=0.5, snr=(-5, 5), seed=99)
    m2.load_state_dict(torch.load(buf, weights_only=True))
    assert torch.equal(m.transform_batch(b, True).audio, m2.transform_batch(b, True).audio)
    with pytest.raises(ValueError, match="prob"):
        AudioNoiseMethod(prob=1.5)
    with pytest.raises(ValueError, match="snr"):
        AudioNoiseMethod(snr=(5, -5))


def test_recipe_rejects_a_bad_av_noise(tmp_path):
    import subprocess
    run = REPO / "recipes" / "misp2022" / "run.sh"
    r = subprocess.run([str(run), "--av_noise", "0.8 -20", "--exp_dir", str(tmp_path / "exp")],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "--av_noise must be 'PROB SNR_LO SNR_HI'" in r.stderr
    assert not (tmp_path / "exp").exists()
