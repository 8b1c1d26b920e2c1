"""avsr.robust.frame_loss (patterns, black frames, masks, stable seeding) and
avsr.robust.frame_dropout.FrameDropout."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from avsr.data.batch import Batch  # noqa: E402
from avsr.robust.frame_dropout import FrameDropout  # noqa: E402
from avsr.robust.frame_loss import (PATTERNS, SEGMENT_MAX, SEGMENT_MIN, apply_missing_video,  # noqa: E402
                                    drop_frames, drop_mask, num_dropped, stable_seed)

RATES = (0.0, 0.05, 0.1, 0.25, 0.3, 0.5, 0.7, 0.9, 1.0)


def runs(mask: np.ndarray):
    """(start, length) of the True runs of a bool vector."""
    m = np.concatenate([[False], mask, [False]]).astype(np.int8)
    d = np.diff(m)
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    return list(zip(starts.tolist(), (ends - starts).tolist()))


def test_num_dropped_rounds_half_up():
    assert num_dropped(10, 0.25) == 3  # 2.5 -> 3 (banker's round would give 2)
    assert num_dropped(100, 0.3) == 30
    assert num_dropped(7, 0.0) == 0 and num_dropped(7, 1.0) == 7
    assert num_dropped(7, 0.1, "whole") == 7
    with pytest.raises(ValueError):
        num_dropped(10, 1.5)
    with pytest.raises(ValueError):
        drop_mask(10, 0.5, "middle", utt_id="u")


@pytest.mark.parametrize("pattern", PATTERNS)
def test_exact_counts(pattern):
    for T in (0, 1, 4, 9, 37, 100, 250):
        for r in RATES:
            m = drop_mask(T, r, pattern, utt_id=f"utt{T}", seed=3)
            assert m.dtype == bool and m.shape == (T,)
            assert m.sum() == (T if pattern == "whole" else int(np.floor(r * T + 0.5))), (T, r)


def test_head_tail_whole_positions():
    T = 40
    m = drop_mask(T, 0.25, "head", utt_id="a")
    assert m[:10].all() and not m[10:].any()
    m = drop_mask(T, 0.25, "tail", utt_id="a")
    assert m[30:].all() and not m[:30].any()
    assert drop_mask(T, 0.1, "whole", utt_id="a").all()


def test_segment_blocks_contiguous_5_to_25():
    for i in range(60):
        T = 30 + 7 * i
        for r in (0.05, 0.2, 0.5, 0.8):
            m = drop_mask(T, r, "segment", utt_id=f"s{i}", seed=i)
            k = num_dropped(T, r)
            rr = runs(m)
            assert sum(n for _, n in rr) == k
            if k >= SEGMENT_MIN:
                # blocks are separated by >= 1 kept frame, so each run is one block
                assert all(SEGMENT_MIN <= n <= SEGMENT_MAX for _, n in rr), (T, r, rr)
            else:
                assert len(rr) == (1 if k else 0)


def test_segment_high_rate_is_exact():
    for T in (20, 50, 101):
        for r in (0.95, 0.99):
            assert drop_mask(T, r, "segment", utt_id="x").sum() == num_dropped(T, r)


def test_random_nested_and_uniformish():
    for utt in ("u1", "u2", "u3"):
        prev = np.zeros(120, bool)
        for r in RATES:
            m = drop_mask(120, r, "random", utt_id=utt, seed=5)
            assert not (prev & ~m).any(), "a frame dropped at a lower rate must stay dropped"
            prev = m
    # positions are spread over the utterance: every frame dropped at 50 % by some utt
    hits = sum(drop_mask(50, 0.5, "random", utt_id=f"v{i}").astype(int) for i in range(200))
    assert hits.min() > 60 and hits.max() < 140


def test_reproducible_and_keyed():
    a = drop_mask(80, 0.4, "segment", utt_id="u", seed=1)
    assert np.array_equal(a, drop_mask(80, 0.4, "segment", utt_id="u", seed=1))
    others = [drop_mask(80, 0.4, "segment", utt_id="w", seed=1),
              drop_mask(80, 0.4, "segment", utt_id="u", seed=2)]
    assert any(not np.array_equal(a, o) for o in others)
    assert stable_seed(0, "u", "random") == stable_seed("0", "u", "random")


def test_reproducible_across_processes():
    code = ("import numpy as np;from avsr.robust.frame_loss import drop_mask;"
            "print(''.join('1' if x else '0' for x in np.concatenate("
            "[drop_mask(60, 0.3, p, utt_id='spk_utt', seed=7) for p in ('random','segment')])))")
    outs = set()
    for hs in ("12345",):  # another str-hash salt than this process (random by default)
        env = {"PYTHONHASHSEED": hs, "PATH": "/usr/bin:/bin"}
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                           cwd=str(REPO), check=True)
        outs.add(r.stdout.strip())
    here = "".join("1" if x else "0" for x in np.concatenate(
        [drop_mask(60, 0.3, p, utt_id="spk_utt", seed=7) for p in ("random", "segment")]))
    assert outs == {here}


def test_drop_frames_black_frames_and_mask_torch_and_numpy():
    rng = np.random.default_rng(0)
    v = rng.integers(1, 256, size=(3, 20, 4, 4), dtype=np.uint8)  # no zero pixel anywhere
    lens = [20, 12, 5]
    ids = ["a", "b", "c"]
    fm_in = np.ones((3, 20), bool)
    fm_in[0, 1] = False  # an "undetected" frame stays False
    for video in (v, torch.from_numpy(v)):
        out, mask = drop_frames(video, lens, 0.5, "random", ids, seed=0, frame_mask=fm_in)
        assert type(out) is type(video) and type(mask) is type(video)
        out, mask = np.asarray(out), np.asarray(mask)
        assert out.dtype == np.uint8 and out.shape == v.shape
        assert np.array_equal(v, np.asarray(video))  # input untouched
        for b, n in enumerate(lens):
            dropped = np.flatnonzero((out[b, :n] == 0).all(axis=(1, 2)))
            assert len(dropped) == num_dropped(n, 0.5)
            assert not mask[b, dropped].any()
            kept = np.setdiff1d(np.arange(n), dropped)
            assert np.array_equal(out[b, kept], v[b, kept])
            assert np.array_equal(out[b, n:], v[b, n:])  # padding untouched
            assert not mask[b, n:].any()
            assert np.array_equal(mask[b, kept], fm_in[b, kept])
            assert np.array_equal(dropped, np.flatnonzero(drop_mask(n, 0.5, "random", utt_id=ids[b])))
    assert not mask[0, 1]
    # unbatched form
    o1, m1 = drop_frames(torch.from_numpy(v[1]), 12, 0.5, "random", "b")
    assert torch.equal(o1, torch.from_numpy(out[1])) and m1.shape == (20,)
    o2, m2 = drop_frames(v[0], None, 1.0, "whole", "a")
    assert (o2 == 0).all() and not m2.any()


def _batch(B=4, T=30, lens=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    video = torch.randint(1, 256, (B, T, 4, 4), generator=g, dtype=torch.uint8)
    lens = torch.tensor(lens if lens is not None else [T] * B)
    mask = torch.arange(T)[None] < lens[:, None]
    return Batch(utt_ids=[f"u{i}" for i in range(B)], video=video, video_lens=lens, frame_mask=mask)


def test_apply_missing_video_batch():
    b = _batch(lens=[30, 20, 10, 5])
    out = apply_missing_video(b, 0.4, "tail", seed=1)
    for i, n in enumerate([30, 20, 10, 5]):
        k = num_dropped(n, 0.4)
        assert (out.video[i, n - k:n] == 0).all() and not out.frame_mask[i, n - k:n].any()
        assert out.frame_mask[i, :n - k].all()
    assert out.extras["missing_video"]["pattern"] == "tail"


def test_framedropout_d_prob_and_rates():
    fd = FrameDropout(rate=(0.0, 1.0), d_prob=0.3, pattern="random", seed=0)
    n_drop = 0
    rates = []
    n = 0
    for s in range(50):
        b = _batch(B=20, T=40, seed=s)
        out = fd(b)
        r = out.extras["frame_loss_rate"]
        n += len(r)
        n_drop += int((r > 0).sum())
        rates += r[r > 0].tolist()
        for i in range(20):
            k = int((~out.frame_mask[i]).sum())
            assert k == num_dropped(40, float(r[i]))
            assert ((out.video[i] == 0).all(dim=(1, 2)) == ~out.frame_mask[i]).all()
        assert not torch.equal(out.video, b.video) or n_drop == 0
    share = n_drop / n  # 1000 samples, sd ~0.0145
    assert abs(share - 0.3) < 0.06, share
    assert 0.0 < min(rates) and max(rates) <= 1.0 and abs(np.mean(rates) - 0.5) < 0.06


def test_framedropout_padding_and_existing_mask():
    b = _batch(B=3, T=20, lens=[20, 8, 3])
    b.frame_mask[0, 0] = False
    out = FrameDropout(rate=1.0, d_prob=1.0, pattern="whole", seed=0)(b)
    assert torch.equal(out.video[1, 8:], b.video[1, 8:]) and torch.equal(out.video[2, 3:], b.video[2, 3:])
    assert (out.video[1, :8] == 0).all() and not out.frame_mask.any()
    # fixed rate, segment pattern, frame_mask None -> made from lens
    b2 = _batch(B=2, T=60, lens=[60, 40]).replace(frame_mask=None)
    out2 = FrameDropout(rate=0.5, d_prob=1.0, pattern="segment", seed=1)(b2)
    assert int((~out2.frame_mask[0]).sum()) == 30 and int((~out2.frame_mask[1]).sum()) == 20 + 20


def test_framedropout_resume_exact():
    fd = FrameDropout(rate=(0.1, 0.9), d_prob=0.5, pattern=["random", "segment"], seed=11)
    fd(_batch(seed=0))
    state = fd.state_dict()
    import pickle
    state = pickle.loads(pickle.dumps(state))
    a = [fd(_batch(seed=s)) for s in (1, 2, 3)]
    fd2 = FrameDropout(rate=(0.1, 0.9), d_prob=0.5, pattern=["random", "segment"], seed=999)
    fd2.load_state_dict(state)
    c = [fd2(_batch(seed=s)) for s in (1, 2, 3)]
    for x, y in zip(a, c):
        assert torch.equal(x.video, y.video) and torch.equal(x.frame_mask, y.frame_mask)
    # a fresh object with the same seed repeats the whole stream
    f3, f4 = FrameDropout(seed=4), FrameDropout(seed=4)
    assert torch.equal(f3(_batch()).frame_mask, f4(_batch()).frame_mask)
