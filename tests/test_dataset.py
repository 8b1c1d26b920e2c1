"""avsr.data.dataset (AVSRDataset, collate, dataset_video_mean) and avsr.data.sampler."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from avsr.data.batch import IGNORE_ID, Batch  # noqa: E402
from avsr.data.datadir import DataDirError  # noqa: E402
from avsr.data.dataset import AVSRDataset, collate, dataset_video_mean  # noqa: E402
from avsr.data.roi_dump import save_roi  # noqa: E402
from avsr.data.sampler import LengthBatchSampler, make_batches  # noqa: E402
from frontends.errors import MediaError  # noqa: E402

SR = 16000
# utt -> (recording, start, end, text)
UTTS = {
    "S001_R01_A_000010-000090": ("R01_A_Far", 0.10, 0.90, "你好世界"),
    "S001_R01_A_000100-000152": ("R01_A_Far", 1.00, 1.52, "好的"),
    "S002_R01_A_000020-000140": ("R01_A_Far", 0.20, 1.40, "世界你好好"),
    "S002_R02_B_000000-000060": ("R02_B_Far", 0.00, 0.60, "你"),
}


def _frames(start, end):
    return int(np.floor(end * 25 + 0.5)) - int(np.floor(start * 25 + 0.5))


def _write_tab(path: Path, rows):
    path.write_text("".join(f"{k} {v}\n" for k, v in sorted(rows.items())), encoding="utf-8")


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory):
    import soundfile as sf
    root = tmp_path_factory.mktemp("avds")
    d = root / "data" / "train"
    d.mkdir(parents=True)
    wavs = {}
    for i, rec in enumerate(("R01_A_Far", "R02_B_Far")):
        n = int(2.0 * SR)
        x = ((np.arange(n) % 400) - 200 + 50 * i).astype(np.int16)  # sample value encodes position
        p = root / "wav" / f"{rec}_0.wav"
        p.parent.mkdir(exist_ok=True)
        sf.write(str(p), x, SR, subtype="PCM_16")
        wavs[rec] = str(p)
    rois, nroi = {}, {}
    rng = np.random.default_rng(0)
    for u, (rec, s, e, _) in UTTS.items():
        T = _frames(s, e)
        roi = rng.integers(1, 256, size=(T, 96, 96), dtype=np.uint8)
        det = np.ones(T, bool)
        det[::3] = False
        p = root / "roi" / rec / f"{u}.npz"
        p.parent.mkdir(parents=True, exist_ok=True)
        save_roi(str(p), roi, det)
        rois[u], nroi[u] = str(p), T
    _write_tab(d / "wav.scp", wavs)
    _write_tab(d / "segments", {u: f"{r} {s:.2f} {e:.2f}" for u, (r, s, e, _) in UTTS.items()})
    _write_tab(d / "text", {u: t for u, (_, _, _, t) in UTTS.items()})
    _write_tab(d / "utt2spk", {u: u[:4] for u in UTTS})
    spk = {}
    for u in sorted(UTTS):
        spk.setdefault(u[:4], []).append(u)
    _write_tab(d / "spk2utt", {s: " ".join(v) for s, v in spk.items()})
    _write_tab(d / "roi.scp", rois)
    _write_tab(d / "utt2num_roi_frames", nroi)
    tok = root / "data" / "token_list" / "char" / "tokens.txt"
    tok.parent.mkdir(parents=True)
    tok.write_text("<blank>\n<unk>\n好\n你\n世\n界\n的\n<sos/eos>\n", encoding="utf-8")
    return d, tok


def test_items_and_collate(fixture_dir):
    d, tok = fixture_dir
    ds = AVSRDataset(d, tok)
    assert ds.utt_ids == sorted(UTTS) and len(ds) == 4
    items = [ds[i] for i in range(4)]
    for it in items:
        rec, s, e, text = UTTS[it["utt_id"]]
        assert it["audio"].dtype == torch.float32 and it["audio"].shape[0] == round((e - s) * SR)
        assert it["video"].dtype == torch.uint8 and it["video"].shape == (_frames(s, e), 88, 88)
        assert it["text"] == text and it["tokens"].dtype == torch.int64
        assert ds.tokenizer.decode(it["tokens"].tolist()) == text
    # audio segment = the file's samples start..end
    import soundfile as sf
    u0 = ds.utt_ids[0]
    full, _ = sf.read(ds.dd.wav[UTTS[u0][0]], dtype="float32")
    assert np.allclose(items[0]["audio"].numpy(), full[int(0.1 * SR):int(0.9 * SR)])
    # eval crop = centre crop of the stored ROI
    raw = np.load(ds.dd.roi[u0])["roi"]
    assert np.array_equal(items[0]["video"].numpy(), raw[:, 4:92, 4:92])

    b = collate(items)
    assert isinstance(b, Batch) and b.utt_ids == ds.utt_ids
    L = [round((UTTS[u][2] - UTTS[u][1]) * SR) for u in ds.utt_ids]
    T = [_frames(UTTS[u][1], UTTS[u][2]) for u in ds.utt_ids]
    assert b.audio.shape == (4, max(L)) and b.audio_lens.tolist() == L
    assert b.video.shape == (4, max(T), 88, 88) and b.video_lens.tolist() == T
    assert b.frame_mask.dtype == torch.bool and b.frame_mask.shape == (4, max(T))
    tl = [len(UTTS[u][3]) for u in ds.utt_ids]
    assert b.tokens.shape == (4, max(tl)) and b.token_lens.tolist() == tl
    for i in range(4):
        assert (b.audio[i, L[i]:] == 0).all() and (b.video[i, T[i]:] == 0).all()
        assert (b.tokens[i, tl[i]:] == IGNORE_ID).all()
        assert b.frame_mask[i, :T[i]].all() and not b.frame_mask[i, T[i]:].any()  # all real frames True
        det = b.extras["detected"][i]
        assert torch.equal(det[:T[i]], torch.from_numpy(np.load(ds.dd.roi[ds.utt_ids[i]])["detected"]))
        assert not det[T[i]:].any()
    assert b.extras["text"] == [UTTS[u][3] for u in ds.utt_ids]


def test_modalities_and_max_duration(fixture_dir):
    d, tok = fixture_dir
    a = AVSRDataset(d, tok, modality="audio")
    it = a[0]
    assert it["video"] is None and it["audio"] is not None
    b = collate([a[0], a[1]])
    assert b.video is None and b.frame_mask is None and b.audio is not None
    v = AVSRDataset(d, None, modality="video")
    it = v[1]
    assert it["audio"] is None and it["tokens"] is None and it["video"].shape[1:] == (88, 88)
    short = AVSRDataset(d, tok, max_duration=0.7)
    assert len(short) == 2 and short.num_filtered == 2
    assert all(x <= 0.7 for x in short.durations)
    with pytest.raises(ValueError):
        AVSRDataset(d, tok, modality="lips")


def test_train_augmentation_deterministic(fixture_dir):
    d, tok = fixture_dir
    ds = AVSRDataset(d, tok, train=True, seed=3, modality="video")
    raw = np.load(ds.dd.roi[ds.utt_ids[2]])["roi"]
    x1 = ds[2]["video"]
    assert torch.equal(x1, ds[2]["video"])  # same (seed, epoch, index) -> same crop
    ds2 = AVSRDataset(d, tok, train=True, seed=3, modality="video")
    assert torch.equal(x1, ds2[2]["video"])
    # every draw is a 88x88 window of the 96x96 ROI, possibly flipped
    seen = set()
    for ep in range(12):
        ds.set_epoch(ep)
        x = ds[2]["video"].numpy()
        assert x.shape == (raw.shape[0], 88, 88)
        found = None
        for y in range(9):
            for xo in range(9):
                w = raw[:, y:y + 88, xo:xo + 88]
                if np.array_equal(x, w):
                    found = (y, xo, False)
                elif np.array_equal(x, w[:, :, ::-1]):
                    found = (y, xo, True)
        assert found is not None
        seen.add(found)
    assert len(seen) > 3 and any(f[2] for f in seen) and not all(f[2] for f in seen)
    noflip = AVSRDataset(d, tok, train=True, modality="video", flip_prob=0.0)
    for ep in range(5):
        noflip.set_epoch(ep)
        assert noflip[2]["video"].shape == (raw.shape[0], 88, 88)
    small = AVSRDataset(d, tok, modality="video", crop=64)
    assert small[0]["video"].shape[1:] == (64, 64)


def test_clear_errors(fixture_dir, tmp_path):
    import shutil
    d, tok = fixture_dir
    d2 = tmp_path / "copy"
    shutil.copytree(d, d2)
    roi_scp = (d2 / "roi.scp").read_text().splitlines()
    bad_roi = str(tmp_path / "nowhere" / "x.npz")
    roi_scp[1] = roi_scp[1].split()[0] + " " + bad_roi
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"not a zip file at all")
    roi_scp[2] = roi_scp[2].split()[0] + " " + str(corrupt)
    (d2 / "roi.scp").write_text("\n".join(roi_scp) + "\n")
    ds = AVSRDataset(d2, tok)
    ds[0]
    with pytest.raises(MediaError) as e:
        ds[1]
    assert str(e.value).startswith(bad_roi) and "not found" in str(e.value) and ds.utt_ids[1] in str(e.value)
    with pytest.raises(MediaError) as e:
        ds[2]
    assert str(e.value).startswith(str(corrupt))
    # missing wav
    wav = (d2 / "wav.scp").read_text().splitlines()
    missing_wav = str(tmp_path / "gone.wav")
    wav[1] = wav[1].split()[0] + " " + missing_wav
    (d2 / "wav.scp").write_text("\n".join(wav) + "\n")
    ds = AVSRDataset(d2, tok, modality="audio")
    with pytest.raises(MediaError) as e:
        ds[3]
    assert str(e.value).startswith(missing_wav)
    # no roi.scp for a video modality
    os.unlink(d2 / "roi.scp")
    with pytest.raises(DataDirError, match="roi.scp"):
        AVSRDataset(d2, tok, modality="video")


def test_video_mean(fixture_dir):
    d, tok = fixture_dir
    ds = AVSRDataset(d, tok, train=True)
    m = dataset_video_mean(ds)
    assert m.shape == (88, 88) and m.dtype == torch.float32
    allf = np.concatenate([np.load(ds.dd.roi[u])["roi"][:, 4:92, 4:92] for u in ds.utt_ids])
    assert np.allclose(m.numpy(), allf.astype(np.float64).mean(0), atol=1e-3)


def test_dataloader_with_sampler(fixture_dir):
    d, tok = fixture_dir
    ds = AVSRDataset(d, tok)
    sampler = LengthBatchSampler.from_dataset(ds, batch_bins=60, seed=0)
    loader = torch.utils.data.DataLoader(ds, batch_sampler=sampler, collate_fn=collate)
    seen = []
    for b in loader:
        assert b.video.shape[0] * b.video.shape[1] <= 60 or len(b) == 1
        seen += b.utt_ids
    assert sorted(seen) == ds.utt_ids


# --------------------------------------------------------------------------- sampler

LENS = [int(x) for x in np.random.default_rng(1).integers(10, 300, size=157)] + [900]


@pytest.mark.parametrize("bins,size", [(1000, None), (None, 7), (1500, 5)])
def test_sampler_cover_and_bounds(bins, size):
    s = LengthBatchSampler(LENS, batch_bins=bins, batch_size=size, seed=0)
    for ep in range(2):
        s.set_epoch(ep)
        batches = list(s)
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(len(LENS)))  # every item exactly once
        for b in batches:
            if size:
                assert len(b) <= size
            if bins and len(b) > 1:
                assert len(b) * max(LENS[i] for i in b) <= bins
    assert s.epoch_batches(0) != s.epoch_batches(1)  # shuffled per epoch
    assert s.epoch_batches(1) == LengthBatchSampler(LENS, batch_bins=bins, batch_size=size,
                                                    seed=0).epoch_batches(1)
    if bins == 1000:
        assert [900 in [LENS[i] for i in b] for b in make_batches(LENS, batch_bins=1000)].count(True) == 1
        assert any(len(b) == 1 and LENS[b[0]] == 900 for b in s.batches)  # too long: alone
    with pytest.raises(ValueError):
        LengthBatchSampler(LENS)


def test_sampler_resume_mid_epoch():
    s = LengthBatchSampler(LENS, batch_bins=1200, seed=5)
    s.set_epoch(3)
    full = s.epoch_batches()
    it = iter(s)
    first = [next(it) for _ in range(4)]
    assert first == full[:4]
    state = s.state_dict()
    assert state == {"epoch": 3, "position": 4}
    s2 = LengthBatchSampler(LENS, batch_bins=1200, seed=5)
    s2.load_state_dict(state)
    s2.set_epoch(3)  # the trainer's loop calls set_epoch with the same epoch: keeps the position
    assert list(s2) == full[4:]
    assert list(s2) == full  # the next iteration (same epoch) starts again from 0
    s2.set_epoch(4)
    assert list(s2) == s.epoch_batches(4)
    # a trainer that consumed fewer batches than were prefetched passes its own count
    s3 = LengthBatchSampler(LENS, batch_bins=1200, seed=5)
    s3.load_state_dict(s.state_dict(position=2))
    assert list(s3) == full[2:]


@pytest.mark.parametrize("R", [2, 3, 5])
def test_sampler_ddp_shards(R):
    ref = LengthBatchSampler(LENS, batch_size=9, seed=2)
    n = len(ref.batches)
    ranks = [LengthBatchSampler(LENS, batch_size=9, seed=2, num_replicas=R, rank=r) for r in range(R)]
    for ep in (0, 1):
        per = []
        for s in ranks:
            s.set_epoch(ep)
            per.append([tuple(b) for b in s])
        assert len({len(p) for p in per}) == 1 and len(per[0]) == -(-n // R) == len(ranks[0])
        allb = [b for p in per for b in p]
        # the union covers every item; beyond the padding (< R repeats) no batch is shared
        assert sorted({i for b in allb for i in b}) == list(range(len(LENS)))
        assert len(allb) - len(set(allb)) == len(allb) - n < R
        if n % R == 0:
            assert all(not (set(per[a]) & set(per[c])) for a in range(R) for c in range(a + 1, R))
    # with exactly divisible batches, the ranks are disjoint
    s = [LengthBatchSampler(list(range(1, 61)), batch_size=5, seed=0, num_replicas=3, rank=r)
         for r in range(3)]
    sets = [set(i for b in x for i in b) for x in s]
    assert not (sets[0] & sets[1]) and not (sets[1] & sets[2]) and len(set.union(*sets)) == 60


def test_kaldi_pipes_and_ark_entries_in_wav_scp(fixture_dir, tmp_path):
    """ESPnet/Kaldi data dirs as they are: a wav.scp value may be a pipe (``cmd |``) or an ark entry
    (``file.ark:offset``); both are read with kaldiio and give the same samples as the wav file."""
    import shutil

    import kaldiio
    import soundfile as sf

    from frontends.audio import is_kaldi_entry, load_kaldi_audio
    d, tok = fixture_dir
    d2 = tmp_path / "kaldi"
    shutil.copytree(d, d2)
    rows = [l.split(maxsplit=1) for l in (d2 / "wav.scp").read_text().splitlines()]
    ref = AVSRDataset(d, tok, modality="audio")
    ark = tmp_path / "wav.ark"
    scp = {}
    with kaldiio.WriteHelper(f"ark,scp:{ark},{tmp_path / 'ark.scp'}") as w:
        for rec, path in rows:
            x, sr = sf.read(path, dtype="int16")
            w(rec, (sr, x))
    for line in (tmp_path / "ark.scp").read_text().splitlines():
        rec, entry = line.split(maxsplit=1)
        scp[rec] = entry
    new = [f"{rec} cat {path} |" if i % 2 == 0 else f"{rec} {scp[rec]}" for i, (rec, path) in enumerate(rows)]
    (d2 / "wav.scp").write_text("\n".join(new) + "\n")
    assert is_kaldi_entry(new[0].split(maxsplit=1)[1]) and is_kaldi_entry(new[1].split(maxsplit=1)[1])
    assert not is_kaldi_entry(rows[0][1]) and not is_kaldi_entry("/data/a.ark.wav")
    ds = AVSRDataset(d2, tok, modality="audio")
    assert ds.utt_ids == ref.utt_ids and np.allclose(ds.durations, ref.durations)
    for i in range(len(ds)):
        a, b = ds.load_audio(i), ref.load_audio(i)
        assert a.shape == b.shape and np.abs(a - b).max() < 1e-4, i
    with pytest.raises(MediaError) as e:
        load_kaldi_audio("cat /no/such/file.wav |")
    assert str(e.value).startswith("cat /no/such/file.wav |")
