"""Evaluation sets keep every segment: ``avsr prepare_rois --keep_all`` lists the segments without
lip ROI in ``utt2audio_only``; the dataset gives them an all-absent video; ``avsr decode`` writes a
hypothesis for every segment, routing those through the MS-Adapter (audio-only) path of an adapter
model and black frames into a model without adapters; a data dir without ``text`` decodes with no
CER and no error."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import torch

from avsr.bin import decode as decode_bin
from avsr.bin import prepare_rois as prepare_bin
from avsr.data.datadir import read_datadir, read_table
from avsr.data.dataset import AVSRDataset, collate
from avsr.data.roi_dump import segment_frames
from avsr.inference import Speech2Text
from avsr.models import AVSRModel, load_config
from avsr.pack import pack_model
from avsr.text.tokens import write_token_list

ROOT = Path(__file__).resolve().parents[1]
TOKENS = ["<blank>", "<unk>"] + list("我们今天去北京上海吃饭") + ["<sos/eos>"]
SR, FPS, W, H = 16000, 25, 160, 120
REC_A, REC_B = "R01_S001002003_C01_I0_Far", "R02_S001_C01_I0_Far"
U_OK = "S001_R01_S001002003_C01_I0_000000-000100"      # every frame detected -> ROI
U_LOW = "S002_R01_S001002003_C01_I0_000100-000200"     # 5 of 25 frames detected -> audio only
U_NEVER = "S003_R01_S001002003_C01_I0_000202-000298"   # speaker never detected -> audio only
U_NOFILE = "S001_R02_S001_C01_I0_000000-000100"        # no detection file for the session
SEGS = {U_OK: (REC_A, 0.0, 1.0), U_LOW: (REC_A, 1.0, 2.0), U_NEVER: (REC_A, 2.02, 2.98),
        U_NOFILE: (REC_B, 0.0, 1.0)}


def _mp4(path: Path, n: int) -> None:
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=FPS)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        for t in range(n):
            img = np.full((H, W, 3), 90, np.uint8)
            img[50:70, 60:100] = (30 + 5 * t) % 256
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Two sessions (3 s, 2 s) with far audio and video; lip boxes for session A only."""
    d = tmp_path_factory.mktemp("evalset")
    rng = np.random.default_rng(0)
    for rec, secs in ((REC_A, 3.0), (REC_B, 2.0)):
        sf.write(d / f"{rec}.wav", (0.1 * rng.standard_normal(int(secs * SR))).astype(np.float32), SR)
        _mp4(d / f"{rec}.mp4", int(secs * FPS))
    lips = {}
    for t in range(75):
        ents = [{"id": 1, "x1": 0, "y1": 0, "x2": 10, "y2": 10, "lip": [60, 50, 100, 70]}]
        if 25 <= t < 30:                                      # speaker 2: 5 of its 25 frames
            ents.append({"id": 2, "x1": 0, "y1": 0, "x2": 10, "y2": 10, "lip": [62, 52, 98, 68]})
        lips[str(t)] = ents
    (d / "det").mkdir()
    (d / "det" / f"{REC_A}.json").write_text(json.dumps(lips))
    dd = d / "eval_all"                                      # an evaluation release: no text
    dd.mkdir()
    (dd / "wav.scp").write_text("".join(f"{r} {d / f'{r}.wav'}\n" for r in (REC_A, REC_B)))
    (dd / "video.scp").write_text("".join(f"{r} {d / f'{r}.mp4'}\n" for r in (REC_A, REC_B)))
    (dd / "segments").write_text("".join(f"{u} {r} {s:.2f} {e:.2f}\n" for u, (r, s, e) in sorted(SEGS.items())))
    (dd / "utt2spk").write_text("".join(f"{u} {u[:4]}\n" for u in sorted(SEGS)))
    spk = {}
    for u in sorted(SEGS):
        spk.setdefault(u[:4], []).append(u)
    (dd / "spk2utt").write_text("".join(f"{s} {' '.join(us)}\n" for s, us in sorted(spk.items())))
    return d


def _prepare(corpus, name, *extra):
    rc = prepare_bin.main(["--data_dir", str(corpus / "eval_all"), "--detection_dir", str(corpus / "det"),
                           "--out_dir", str(corpus / f"roi_{name}"), "--filtered_dir", str(corpus / name),
                           "--spk_prefix", "S", "--no_progress", *extra])
    assert rc == 0
    return corpus / name


@pytest.fixture(scope="module")
def eval_dir(corpus):
    return _prepare(corpus, "eval", "--keep_all")


def test_keep_all_lists_audio_only_utterances(corpus, eval_dir):
    dd = read_datadir(eval_dir)
    assert sorted(dd.utts) == sorted(SEGS)                   # every segment stays
    assert sorted(dd.roi) == [U_OK]                          # ROI only where there are lip boxes
    rows = dict(read_table(eval_dir / "utt2audio_only"))
    assert rows == {U_LOW: "< 50% frames detected", U_NEVER: "speaker has no detections",
                    U_NOFILE: "session failed: detection file"}
    assert not (eval_dir / "text").exists()                  # no references in, none out
    skipped = (eval_dir / "skipped").read_text()
    assert "only 20.0% of 25 frames" in skipped and REC_B in skipped and U_NEVER in skipped
    rep = json.loads((corpus / "roi_eval" / "roi_report.json").read_text())
    assert rep["audio_only"] == 3 and rep["with_roi"] == 1 and rep["crop"] == "official" and rep["keep_all"]
    # without --keep_all the old rule: the segments without ROI leave the data dir
    plain = read_datadir(_prepare(corpus, "plain", "--crop", "toolkit"))
    assert sorted(plain.utts) == [U_OK] and "utt2audio_only" not in plain.extra
    assert json.loads((corpus / "roi_plain" / "roi_report.json").read_text())["crop"] == "toolkit"


def test_keep_all_needs_filtered_dir(corpus, capsys):
    with pytest.raises(SystemExit) as e:
        prepare_bin.main(["--data_dir", str(corpus / "eval_all"), "--detection_dir", str(corpus / "det"),
                          "--out_dir", str(corpus / "roi_x"), "--keep_all"])
    assert e.value.code == 2 and "--filtered_dir" in capsys.readouterr().err


def test_dataset_gives_audio_only_utterances_an_absent_video(eval_dir):
    ds = AVSRDataset(eval_dir, None, modality="audiovisual")
    assert ds.audio_only == {U_LOW, U_NEVER, U_NOFILE}
    items = [ds[i] for i in range(len(ds))]
    by = {it["utt_id"]: it for it in items}
    for u in (U_LOW, U_NEVER, U_NOFILE):
        f0, f1 = segment_frames(*SEGS[u][1:])
        v = by[u]["video"]
        assert v.shape == (f1 - f0, 88, 88) and v.dtype == torch.uint8 and not v.any()   # black frames
        assert not by[u]["detected"].any() and not by[u]["present"].any()
    assert by[U_NEVER]["video"].shape[0] == 24               # 2.02 s -> 51 (half up), 2.98 s -> 75
    assert by[U_OK]["video"].shape[0] == 25 and by[U_OK]["video"].any() and by[U_OK]["detected"].all()
    b = collate(items)
    fm = {u: b.frame_mask[i, :int(b.video_lens[i])] for i, u in enumerate(b.utt_ids)}
    assert fm[U_OK].all() and not any(fm[u].any() for u in (U_LOW, U_NEVER, U_NOFILE))
    assert not b.extras["detected"][b.utt_ids.index(U_LOW)].any()


def _pack(path: Path, adapters: bool) -> Path:
    write_token_list(TOKENS, str(path / "tokens.txt"))
    torch.manual_seed(0)
    kw = {"adapter_rank": 2} if adapters else {}
    m = AVSRModel(load_config(ROOT / "conf" / "micro.yaml", vocab_size=len(TOKENS), **kw))
    with torch.no_grad():
        m.ctc.ctc_lo.weight.mul_(8.0)
        if adapters:
            for p in m.adapters.parameters():
                p.normal_(0, 1.0)
    pack_model(path / "packed", model_config=m.cfg.to_dict(), token_list=path / "tokens.txt",
               weights=m.state_dict(), decode={"beam_size": 2, "adapter_threshold": 0.0})
    return path / "packed"


@pytest.fixture
def spy(monkeypatch):
    """Every search: its utterance count, modality and whether the adapters were on."""
    calls = []
    orig = Speech2Text.decode_encoded

    def rec(self, enc, lens, modality):
        ad = self.model.adapters
        calls.append((int(enc.shape[0]), modality, bool(ad is not None and ad.active)))
        return orig(self, enc, lens, modality)

    monkeypatch.setattr(Speech2Text, "decode_encoded", rec)
    return calls


def _decode(model, data_dir, out):
    rc = decode_bin.main(["--model", str(model), "--data_dir", str(data_dir), "--out_dir", str(out),
                          "--batch_size", "8", "--beam_size", "2"])
    assert rc == 0
    hyps = dict(read_table(out / "text")) if (out / "text").stat().st_size else {}
    return hyps, json.loads((out / "result.json").read_text())


def test_decode_adapter_model_routes_audio_only_segments(eval_dir, tmp_path, spy):
    model = _pack(tmp_path, adapters=True)
    hyps, res = _decode(model, eval_dir, tmp_path / "out")
    assert set(hyps) == set(SEGS)                            # a hypothesis line for every segment
    assert (tmp_path / "out" / "skipped").read_text() == ""
    assert res["references"] == "none" and "cer" not in res and "per_utt" not in res
    assert res["modality"] == "audiovisual" and res["audio_only_utts"] == 3
    assert res["decoded_by_modality"] == {"audio": 3, "audiovisual": 1}
    assert sorted(spy) == [(1, "audiovisual", False), (3, "audio", True)]   # adapters on the routed part
    # a routed segment is decoded exactly as its audio alone (adapter path)
    s2t = Speech2Text.from_packed(model, beam_size=2)
    ds = AVSRDataset(eval_dir, None, modality="audio")
    i = ds.utt_ids.index(U_NOFILE)
    assert s2t(ds[i]["audio"]).text == hyps.get(U_NOFILE, "")


def test_decode_model_without_adapters_gets_black_frames(eval_dir, tmp_path, spy):
    model = _pack(tmp_path, adapters=False)
    hyps, res = _decode(model, eval_dir, tmp_path / "out")
    assert set(hyps) == set(SEGS)
    assert res["decoded_by_modality"] == {"audiovisual": 4} and "cer" not in res
    assert all(m == "audiovisual" and not on for _, m, on in spy)
    # the audio-only segment saw black frames: same as decoding it with an all-black video
    s2t = Speech2Text.from_packed(model, beam_size=2)
    ds = AVSRDataset(eval_dir, None)
    it = ds[ds.utt_ids.index(U_LOW)]
    assert s2t(it["audio"], torch.zeros_like(it["video"])).text == hyps.get(U_LOW, "")


def test_decode_with_references_scores_every_segment(corpus, eval_dir, tmp_path, spy):
    import shutil
    d = tmp_path / "dev"
    shutil.copytree(eval_dir, d)
    (d / "text").write_text("".join(f"{u} 我们去北京\n" for u in sorted(SEGS)))
    _, res = _decode(_pack(tmp_path, adapters=True), d, tmp_path / "out")
    assert "references" not in res and res["cer"] is not None and len(res["per_utt"]) == 4


def test_decode_interrupted_resumes_where_it_stopped(eval_dir, tmp_path, spy, monkeypatch, capsys):
    """A data-dir decode killed after its first batch keeps that batch in progress.jsonl; the same
    command decodes only the rest and writes what one uninterrupted run writes; another option
    starts over; a cut-short last line is decoded again."""
    model = _pack(tmp_path, adapters=True)
    argv = ["--model", str(model), "--data_dir", str(eval_dir), "--batch_size", "1", "--beam_size", "2"]
    full = tmp_path / "full"
    assert decode_bin.main(argv + ["--out_dir", str(full)]) == 0
    assert not (full / decode_bin.PROGRESS).exists()
    want = (full / "text").read_text()
    assert len(spy) == 4
    out = tmp_path / "out"
    orig, calls = Speech2Text.decode_batch, []

    def dies_second(self, batch, **kw):
        calls.append(batch.utt_ids)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return orig(self, batch, **kw)

    monkeypatch.setattr(Speech2Text, "decode_batch", dies_second)
    with pytest.raises(KeyboardInterrupt):
        decode_bin.main(argv + ["--out_dir", str(out)])
    monkeypatch.setattr(Speech2Text, "decode_batch", orig)
    log = (out / decode_bin.PROGRESS).read_text().splitlines()
    assert len(log) == 2 and not (out / "text").exists()          # the signature, one finished batch
    spy.clear()
    assert decode_bin.main(argv + ["--out_dir", str(out)]) == 0
    assert len(spy) == 3                                           # only what was left
    assert (out / "text").read_text() == want
    res = json.loads((out / "result.json").read_text())
    assert res["resumed_utts"] == 1 and res["decoded_by_modality"] == {"audio": 3, "audiovisual": 1}
    assert not (out / decode_bin.PROGRESS).exists()
    assert "resuming" in capsys.readouterr().err
    # a cut-short last line: that batch is decoded again
    (out / decode_bin.PROGRESS).write_text("\n".join(log) + '\n{"hyps": {"S0')
    spy.clear()
    assert decode_bin.main(argv + ["--out_dir", str(out)]) == 0
    assert len(spy) == 3 and (out / "text").read_text() == want
    # another option: the log is from another command and is not used
    (out / decode_bin.PROGRESS).write_text("\n".join(log) + "\n")
    spy.clear()
    assert decode_bin.main(argv[:-1] + ["3", "--out_dir", str(out)]) == 0
    assert len(spy) == 4 and json.loads((out / "result.json").read_text())["resumed_utts"] == 0
    assert "starting over" in capsys.readouterr().err


def test_eval_interrupted_resumes_with_the_same_command(eval_dir, tmp_path, monkeypatch):
    import shutil

    from avsr.bin import eval as eval_bin
    d = tmp_path / "dev"
    shutil.copytree(eval_dir, d)
    (d / "text").write_text("".join(f"{u} 我们去北京\n" for u in sorted(SEGS)))
    model = _pack(tmp_path, adapters=True)
    argv = ["--models", f"A={model}", f"B={model}@none", "--data_dir", str(d), "--batch_size", "1", "--beam_size",
            "2", "--rates", "0", "1", "--segment_rates", "--no_whole", "--snrs", "--bootstrap", "50"]
    assert eval_bin.main(argv + ["--out_dir", str(tmp_path / "full")]) == 0
    want = json.loads((tmp_path / "full" / "hyps.json").read_text())
    out = tmp_path / "out"
    orig, calls = Speech2Text.decode_variants, []

    def dies_third(self, batch, variants, cache=True):
        calls.append(1)
        if len(calls) == 3:               # two models a batch: the second batch's first model
            raise KeyboardInterrupt
        return orig(self, batch, variants, cache=cache)

    monkeypatch.setattr(Speech2Text, "decode_variants", dies_third)
    with pytest.raises(KeyboardInterrupt):
        eval_bin.main(argv + ["--out_dir", str(out)])
    monkeypatch.setattr(Speech2Text, "decode_variants", orig)
    assert (out / eval_bin.PROGRESS).exists() and not (out / "sweep.json").exists()
    assert eval_bin.main(argv + ["--out_dir", str(out)]) == 0
    assert json.loads((out / "hyps.json").read_text()) == want
    sw = json.loads((out / "sweep.json").read_text())
    assert sw["timing"]["resumed_utts"] == 1 and not (out / eval_bin.PROGRESS).exists()
    assert sw["cer"] == json.loads((tmp_path / "full" / "sweep.json").read_text())["cer"]
