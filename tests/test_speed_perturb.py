"""speed_perturb (avsr.robust.speed_perturb): Kaldi-style speed perturbation of audio and video together."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from avsr.data.batch import Batch
from avsr.robust.registry import build_method
from avsr.robust.speed_perturb import SpeedPerturbMethod, speed_audio, speed_frames

SR, FPS = 16000, 25


def test_audio_is_resampled_tempo_and_pitch_together():
    t = np.arange(SR) / SR
    x = np.sin(2 * np.pi * 440 * t)
    for f in (0.9, 1.1):
        y = speed_audio(x, f)
        assert y.size == int(np.ceil(SR / f))
        spec = np.abs(np.fft.rfft(y * np.hanning(y.size)))
        peak = np.argmax(spec) * SR / y.size
        assert abs(peak - 440 * f) < 3, (f, peak)            # pitch moves with the speed (sox speed)
    assert np.array_equal(speed_audio(x, 1.0), x)


def test_frames_repeat_or_skip():
    assert speed_frames(10, 1.0).tolist() == list(range(10))
    assert speed_frames(10, 0.9).tolist() == [0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9]
    assert speed_frames(20, 1.25).tolist() == [0, 1, 2, 3, 5, 6, 7, 8, 10, 11, 12, 13, 15, 16, 17, 18]
    assert speed_frames(0, 1.1).tolist() == []


def _av_batch(events=(0.8, 1.7), dur=(2.4, 2.0)):
    """Silence with a 20 ms click at each event time and a white video frame at the same time."""
    B = len(dur)
    n = [int(d * SR) for d in dur]
    T = [int(d * FPS) for d in dur]
    audio = torch.zeros(B, max(n))
    video = torch.zeros(B, max(T), 8, 8, dtype=torch.uint8)
    for b in range(B):
        s = int(events[b] * SR)
        audio[b, s:s + 320] = 1.0
        video[b, int(events[b] * FPS)] = 255
    return Batch(utt_ids=["a", "b"][:B], audio=audio, audio_lens=torch.tensor(n), video=video,
                 video_lens=torch.tensor(T), frame_mask=torch.ones(B, max(T), dtype=torch.bool),
                 tokens=torch.tensor([[3, 4], [5, -1]]), token_lens=torch.tensor([2, 1]))


def test_batch_keeps_lips_and_sound_in_step():
    m = SpeedPerturbMethod(factors=[0.9, 1.1], seed=3)
    seen = set()
    for _ in range(6):
        b = _av_batch()
        out = m.transform_batch(b, train=True)
        assert torch.equal(out.tokens, b.tokens) and torch.equal(out.token_lens, b.token_lens)
        for i in range(2):
            f = b.audio_lens[i].item() / out.audio_lens[i].item()
            f = min((0.9, 1.1), key=lambda c: abs(c - f))
            seen.add(f)
            assert out.audio_lens[i] == int(np.ceil(b.audio_lens[i].item() / f))
            assert out.video_lens[i] == len(speed_frames(int(b.video_lens[i]), f))
            assert abs(out.audio_lens[i] / SR - out.video_lens[i] / FPS) <= 1 / FPS + 1e-9
            a = out.audio[i, :out.audio_lens[i]].abs().numpy()
            t_sound = np.argmax(a > 0.5) / SR
            t_flash = int(np.argmax(out.video[i, :out.video_lens[i], 0, 0].numpy())) / FPS
            assert abs(t_sound - t_flash) <= 1 / FPS, (f, t_sound, t_flash)   # the click and the flash together
            assert out.frame_mask[i, :out.video_lens[i]].all() and not out.frame_mask[i, out.video_lens[i]:].any()
            assert not out.audio[i, out.audio_lens[i]:].any()                   # padding stays zero
    assert seen == {0.9, 1.1}
    b = _av_batch()
    assert m.transform_batch(b, train=False) is b                               # validation untouched


def test_state_round_trip_and_registry():
    m = build_method('speed_perturb:{"factors": [0.9, 1.0, 1.1], "seed": 1}')
    assert isinstance(m, SpeedPerturbMethod)
    st = m.state_dict()
    first = m.transform_batch(_av_batch(), train=True)
    m2 = SpeedPerturbMethod(seed=1)
    m2.load_state_dict(st)
    again = m2.transform_batch(_av_batch(), train=True)
    assert torch.equal(first.audio_lens, again.audio_lens) and torch.equal(first.audio, again.audio)
    with pytest.raises(ValueError, match="speed_perturb: factors"):
        SpeedPerturbMethod(factors=[3.0])


def test_recipe_rejects_a_bad_speed_perturb(tmp_path):
    import subprocess
    from pathlib import Path
    run = Path(__file__).resolve().parents[1] / "recipes" / "misp2022" / "run.sh"
    r = subprocess.run([str(run), "--speed_perturb", "0.9 fast", "--exp_dir", str(tmp_path / "exp")],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "--speed_perturb must be factors" in r.stderr
    assert not (tmp_path / "exp").exists()
