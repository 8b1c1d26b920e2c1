"""The misp2022 recipe (through the synthmisp wrapper) on a small generated corpus, every stage,
with the micro config; then a tiny model that overfits ~20 SynthMISP segments to < 5 % CER."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "recipes" / "synthmisp" / "run.sh"
STAGES = ["0_generate", "1_data", "2_rois", "3_tokens", "4_summary", "5_stats", "6_train_a0",
          "7_train_v", "8_train_av0", "9_train_av5", "10_train_av6", "11_pack", "12_decode", "13_sweep",
          "14_report"]
MODELS = ("a0", "v", "av0", "av5", "av6")

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/bin/espeak-ng") and not os.environ.get("ESPEAK"),
                                reason="espeak-ng not installed")


def _run(root: Path, *extra):
    cmd = ["bash", str(RUN), "--preset", "tiny", "--nj", "2", "--gen_args", "--sessions 4 1 1",
           "--corpus_dir", str(root / "corpus"), "--exp_dir", str(root / "exp"),
           "--data_dir", str(root / "data"), "--train_args", "--set trainer.max_epochs=1 trainer.progress=false",
           "--decode_sets", "dev", "--beam_size", "2", "--sweep_set", "dev",
           "--sweep_args", "--snrs -5 --rates 0 0.5 1.0", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=1200)


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipe")
    p = _run(root)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return root, p


def test_all_stages_and_artifacts(recipe):
    root, p = recipe
    exp = root / "exp"
    for s in STAGES:
        assert (exp / "stages" / f"{s}.done").is_file(), s
    # the command as given, every argument quoted (a shell can run it again)
    assert shlex.split((exp / "synthmisp_cmd.sh").read_text()) == [str(RUN)] + p.args[2:]
    for m in MODELS:
        t = exp / f"train_{m}"
        for f in ("cmd.sh", "config.yaml", "checkpoint.pth", "model.pth", "train_result.json", "train.log"):
            assert (t / f).is_file(), (m, f)
        assert "avsr.bin.train" in (t / "cmd.sh").read_text()
        for f in ("config.yaml", "tokens.txt", "model.pth", "meta.json"):
            assert (exp / "packed" / m / f).is_file()
        res = json.loads((exp / "decode" / f"{m}_dev" / "result.json").read_text())
        assert res["num_utts"] > 0 and res["skipped"] == 0 and res["lo"] <= res["cer"] <= res["hi"]
        assert res["modality"] == {"a0": "audio", "v": "video"}.get(m, "audiovisual")
    # AV0 was initialised from A0 (visual branch from V), AV5 from AV0 with dropout + MDA-KD, AV6
    # from AV5 with adapters only
    log = (exp / "train_av0" / "train.log").read_text()
    assert "init from" in log and "train_a0/model.pth" in log and "train_v/model.pth::visual_" in log
    av5 = json.loads((exp / "train_av5" / "train_result.json").read_text())
    assert any("MDAKD" in x for x in av5["methods"]) and any("FrameDropout" in x for x in av5["methods"])
    assert "loss_kd" in av5["history"][-1]["train"]
    # ... training every part, as the paper fine-tunes from AV0 (--robust_freeze none, the default):
    # the audio side and the visual side both moved
    import torch
    sd5 = torch.load(exp / "train_av5" / "model.pth", weights_only=True)
    sd0 = torch.load(exp / "train_av0" / "model.pth", weights_only=True)
    sd5, sd0 = sd5.get("model", sd5), sd0.get("model", sd0)
    for part in ("audio_encoder.", "visual_", "merge_ffn.", "decoder."):
        assert any(not torch.equal(sd5[k], sd0[k]) for k in sd0 if k.startswith(part)), part
    assert "merge: bundle" in (exp / "train_av0" / "config.yaml").read_text()
    av6 = json.loads((exp / "train_av6" / "train_result.json").read_text())
    assert 0 < av6["parameters"]["adapter"] < 0.1 * av6["parameters"]["total"]
    rep = json.loads((exp / "report.json").read_text())
    assert {r["model"] for r in rep["rows"]} == set(MODELS)
    sw = json.loads((exp / "sweep" / "dev" / "sweep.json").read_text())
    assert set(sw["cer"]) == {"A0", "AV0", "AV5", "AV6"} and "degradation_area" in sw and "similarity" in sw
    assert set(sw["conditions"]) == {"random@0", "random@0.5", "random@1", "segment@0.5", "whole", "babble-5dB"}
    # per-utterance errors (for paired bootstraps) add up to the corpus CER of every cell
    for m, by_cond in sw["utt_errors"].items():
        for c, errs in by_cond.items():
            assert len(errs) == len(sw["utt_ids"]) == len(sw["utt_ref_chars"])
            assert abs(sum(errs) / sum(sw["utt_ref_chars"]) - sw["cer"][m][c]["cer"]) < 1e-9
    # each utterance's recording (the data dir's segments), for intervals that resample sessions
    segs = dict(line.split()[:2] for line in open(sw["data_dir"] + "/segments", encoding="utf-8"))
    assert sw["utt_recordings"] == [segs[u] for u in sw["utt_ids"]]
    assert (exp / "sweep" / "dev" / "cer_vs_frame_loss.png").stat().st_size > 1000
    assert "CER-vs-frame-loss plot:" in p.stdout + p.stderr
    assert "vs_baseline" in [r for r in rep["rows"] if r["model"] == "av0"][0]
    assert "| dev | av0 |" in p.stdout + p.stderr
    assert (exp / "data_summary.json").is_file()


def test_rerun_skips_done_stages(recipe):
    root, _ = recipe
    ck = root / "exp" / "train_a0" / "model.pth"
    before = ck.stat().st_mtime_ns
    p = _run(root)
    assert p.returncode == 0, p.stderr[-2000:]
    out = p.stdout + p.stderr
    assert out.count("already done") >= len(STAGES) - 1 and ck.stat().st_mtime_ns == before


def test_tiny_model_overfits_20_segments(recipe, tmp_path):
    """~20 train segments, micro A0 (no SpecAug, no dropout), 50 epochs of batch 3: beam-search CER < 5 %."""
    root, _ = recipe
    data, exp = root / "data", root / "exp"
    n = len((data / "train" / "text").read_text().splitlines())
    assert 15 <= n <= 30
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    tr = subprocess.run([sys.executable, "-m", "avsr.bin.train", "--config", str(ROOT / "conf" / "micro.yaml"),
                         "--mode", "audio", "--train_data", str(data / "train"), "--valid_data", str(data / "train"),
                         "--token_list", str(data / "token_list" / "char" / "tokens.txt"),
                         "--stats", str(exp / "stats" / "feats_stats.json"), "--exp_dir", str(tmp_path / "a0"),
                         "--set", "trainer.max_epochs=50", "trainer.warmup_steps=60", "trainer.lr=0.004",
                         "trainer.batch_size=3", "trainer.progress=false", "trainer.best_n=1",
                         "model.specaug=false", "model.dropout_rate=0.0"],
                        capture_output=True, text=True, env=env, timeout=1200)
    assert tr.returncode == 0, tr.stderr[-3000:]
    for cmd in (["pack", "--exp_dir", str(tmp_path / "a0"), "--out", str(tmp_path / "packed")],
                ["decode", "--model", str(tmp_path / "packed"), "--data_dir", str(data / "train"),
                 "--out_dir", str(tmp_path / "dec"), "--beam_size", "4"]):
        p = subprocess.run([sys.executable, "-m", "avsr.cli", *cmd], capture_output=True, text=True, env=env)
        assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads((tmp_path / "dec" / "result.json").read_text())
    assert res["num_utts"] == n and res["cer"] < 0.05, res["cer"]


def test_sigkill_during_training_resumes(recipe, tmp_path):
    """Kill the recipe (the whole process group) while stage 6 trains; the same command continues
    from the checkpoint and finishes."""
    import signal
    import time
    root, _ = recipe
    exp = tmp_path / "exp"
    cmd = ["bash", str(RUN), "--preset", "tiny", "--stage", "5", "--stop_stage", "6", "--nj", "1",
           "--corpus_dir", str(root / "corpus"), "--exp_dir", str(exp), "--data_dir", str(root / "data"),
           "--train_args", "--set trainer.max_epochs=4 trainer.save_every_steps=1 trainer.batch_size=2 "
                           "trainer.progress=false"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    ck = exp / "train_a0" / "checkpoint.pth"
    t0 = time.time()
    while time.time() - t0 < 300 and p.poll() is None:
        if ck.exists() and "epoch 2" in (exp / "train_a0" / "train.log").read_text(errors="ignore"):
            break
        time.sleep(0.5)
    assert p.poll() is None, "training finished before it could be killed"
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    assert ck.exists() and not (exp / "stages" / "6_train_a0.done").exists()
    q = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert q.returncode == 0, q.stderr[-2000:]
    log = (exp / "train_a0" / "train.log").read_text()
    assert "resumed from" in log
    assert (exp / "stages" / "6_train_a0.done").exists() and (exp / "train_a0" / "model.pth").exists()
    res = json.loads((exp / "train_a0" / "train_result.json").read_text())
    assert [h["epoch"] for h in res["history"]] == [1, 2, 3, 4]


def test_eval_decodes_a_repeated_model_once(recipe, tmp_path):
    """``avsr eval`` with the same packed model and threshold under two names (AV6 and AV6-tuned when the
    dev threshold is 0) decodes it once and gives both names its results; another threshold is decoded."""
    root, _ = recipe
    av6 = root / "exp" / "packed" / "av6"
    out = tmp_path / "sw"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "avsr.cli", "eval", "--models", f"AV6={av6}@0", f"AV6-tuned={av6}@0",
                        f"AV6-half={av6}@0.5", "--data_dir", str(root / "data" / "dev"), "--out_dir", str(out),
                        "--ctc_greedy", "--rates", "0", "0.5", "1.0", "--snrs", "--bootstrap", "10",
                        "--compare_uncached"], capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    sw = json.loads((out / "sweep.json").read_text())
    assert sw["decoded_as"] == {"AV6-tuned": "AV6"}
    assert list(sw["cer"]) == list(sw["models"]) == ["AV6", "AV6-tuned", "AV6-half"]
    assert sw["cer"]["AV6-tuned"] == sw["cer"]["AV6"] and sw["utt_errors"]["AV6-tuned"] == sw["utt_errors"]["AV6"]
    assert sw["timing"]["per_model"]["AV6-tuned"] == {} and sw["timing"]["per_model"]["AV6-half"]
    assert sw["uncached"]["identical_hyps"] is True and sw["skipped"] == {}


def test_golden_outputs(recipe):
    """Every hypothesis of the tiny recipe's models -- the recipe's decode stage, ``avsr decode`` of a
    data dir with frame loss and of wav+mp4 pairs, the sweep cached and uncached -- equals the one
    recorded before the decode paths were merged into Speech2Text (tests/golden/collect.py)."""
    sys.path.insert(0, str(ROOT / "tests" / "golden"))
    from collect import collect
    root, _ = recipe
    want = json.loads((ROOT / "tests" / "golden" / "tiny_recipe.json").read_text(encoding="utf-8"))
    got = collect(str(root))
    for part in ("datadir", "pairs", "sweep"):
        assert set(got[part]) == set(want[part]), part
        for k in want[part]:
            assert got[part][k] == want[part][k], (part, k)


def test_decode_stages_pass_the_device_through(recipe, tmp_path):
    """--ngpu 1 makes the decode stage ask for cuda, --decode_device cuda:1 for that device: on a CPU-only
    machine the stage then fails with the device named (the string reaches avsr decode)."""
    import shutil
    root, _ = recipe
    exp = tmp_path / "exp"
    shutil.copytree(root / "exp", exp)
    for extra, want in ((["--ngpu", "1"], "--device cuda:"), (["--decode_device", "cuda:1"], "--device cuda:1:")):
        p = _run(root, "--exp_dir", str(exp), "--stage", "12", "--stop_stage", "12", "--force", *extra)
        import torch
        if torch.cuda.is_available():   # a machine with a GPU: the stage may run on it
            continue
        assert p.returncode != 0, "the decode stage ran on the CPU although a CUDA device was asked for"
        log = (exp / "logs" / "stage12_decode.log").read_text()
        assert want in log and "CUDA device" in log, log[-2000:]
    p = subprocess.run(["bash", str(RUN), "--help"], capture_output=True, text=True)
    assert p.returncode == 0 and not any(l.startswith(("set -", "here=", "preset=")) for l in p.stdout.splitlines())


def test_evaluation_release_through_submission(recipe, tmp_path):
    """An evaluation release in the real layout: far audio (6 channels), far video, lip boxes in the
    frame-keyed JSON with one speaker never detected, an official segment file and NO eval
    transcriptions.  Stages 1-2 build the eval set from the segment file (every segment kept: the
    undetected speaker's segments decoded audio-only), stages 3-4 run on it, stage 12 decodes it and writes a submission
    with exactly the file's ids, stage 14 scores dev (CER and cpCER) and skips eval with a message."""
    import shutil
    root, _ = recipe
    corpus = root / "corpus"
    rel = tmp_path / "release"
    rel.mkdir()
    for sub in ("audio", "video"):
        (rel / sub).symlink_to(corpus / sub)
    (rel / "transcription").mkdir(parents=True)
    (rel / "transcription" / "dev").symlink_to(corpus / "transcription" / "dev")   # eval: none
    seg_file = corpus / "segments" / "eval.txt"
    ids = [l.split()[0] for l in seg_file.read_text().splitlines() if l.strip()]
    assert ids
    for split in ("dev", "eval"):
        src = corpus / "roi_coordinates" / split / "far" / "lip"
        dst = rel / "roi_coordinates" / split / "far" / "lip"
        dst.mkdir(parents=True)
        for f in src.glob("*.json"):
            shutil.copy(f, dst / f.name)
    # the eval session's first speaker is never detected
    eval_json = sorted((rel / "roi_coordinates" / "eval" / "far" / "lip").glob("*.json"))[0]
    boxes = json.loads(eval_json.read_text())
    gone = min(e["id"] for es in boxes.values() for e in es)
    boxes = {k: [e for e in es if e["id"] != gone] for k, es in boxes.items()}
    eval_json.write_text(json.dumps({k: v for k, v in boxes.items() if v}))
    exp, data = tmp_path / "exp", tmp_path / "data"
    (exp / "packed").mkdir(parents=True)
    for m in ("a0", "av6"):
        shutil.copytree(root / "exp" / "packed" / m, exp / "packed" / m)
    base = ["bash", str(ROOT / "recipes" / "misp2022" / "run.sh"), "--misp_root", str(rel), "--splits", "dev eval",
            "--exp_dir", str(exp), "--data_dir", str(data), "--nj", "2", "--models", "a0 av6"]
    p = subprocess.run(base + ["--stage", "1", "--stop_stage", "4", "--eval_segments", str(seg_file), "--train_set", "dev"],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    summ = json.loads((exp / "data_summary.json").read_text())
    assert summ["splits"]["eval"]["utterances_all"] == len(ids) and "from the segment file" in p.stdout
    assert not (data / "eval_all" / "text").exists() and (data / "dev" / "text").exists()
    assert (data / "eval_all" / "eval_segment_ids").read_text().split() == ids
    audio_only = dict(l.split(" ", 1) for l in (data / "eval" / "utt2audio_only").read_text().splitlines())
    assert audio_only and all(u.startswith(f"S{gone:03d}_") for u in audio_only)
    p = subprocess.run(base + ["--stage", "12", "--stop_stage", "14", "--decode_sets", "dev eval", "--beam_size", "2"],
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    for m in ("a0", "av6"):
        sub = (exp / "submission" / f"{m}_eval.txt").read_text().splitlines()
        assert [l.split()[0] for l in sub] == ids                        # exactly the segment file's ids
        res = json.loads((exp / "decode" / f"{m}_eval" / "result.json").read_text())
        assert res["references"] == "none" and "cer" not in res
    res = json.loads((exp / "decode" / "av6_eval" / "result.json").read_text())
    assert res["audio_only_utts"] == len(audio_only)
    rep = json.loads((exp / "report.json").read_text())
    dev_rows = [r for r in rep["rows"] if r["set"] == "dev"]
    assert dev_rows and all(r["cpcer"]["overall"] is not None and r["cpcer"]["per_session"] for r in dev_rows)
    assert any("eval" in x for x in rep["no_reference"])
    assert "cpCER" in (exp / "report.md").read_text()
    assert "sweep skipped" in (exp / "logs" / "stage13_sweep.log").read_text()


# the leaderboard table cut to one dev setting per method and a 2-step budget from AV0 (MLA: AV0's own
# steps), so that stages 15-18 run in minutes on the tiny recipe's models; every row of the table is kept
LEADERBOARD_ROWS = ("AV1", "AV2", "AV3", "AV3-frozen", "S.1", "S.3", "S.5", "S.7", "AV5", "AV5-fusedtap", "AV6",
                    "AV6-noadapter", "AV6-alllinear", "AV6-ontop", "AV0-bundle", "AV0-lastmerge", "MLA", "MLA-noproj",
                    "CKD", "TFR", "CKD+MS-Adapter", "TFR+MS-Adapter")


def _tiny_leaderboard_spec(path: Path) -> Path:
    import yaml
    spec = yaml.safe_load((ROOT / "conf" / "rows" / "dai2024.yaml").read_text())
    spec["defaults"]["budget"] = {"epochs": 1, "steps": 2}
    t = spec["tables"]["leaderboard"]
    assert tuple(t["rows"]) == LEADERBOARD_ROWS, t["rows"]
    t["grid"] = {"AV5": {"methods.mda_kd.distance": ["mse"], "methods.mda_kd.weight": [100.0]},
                 "MLA": {"methods.mla.head": ["encoder"]}, "CKD": {"methods.ckd.beta": [0.1]},
                 "TFR": {"methods.tfr.weight": [10.0]}, "AV6-ontop": {"budget.epochs": [1]}}
    # the paper's AV6 on the whole AV5 is over the step budget by design: epochs only
    t["override"]["AV6-ontop"] = {"budget": {"epochs": 1}}
    for r in ("AV6", "AV6-alllinear", "CKD+MS-Adapter", "TFR+MS-Adapter"):
        t["override"][r] = {**t["override"][r], "grid": {"budget.init_share": {"values": [0.5], "name": "-i{:g}"}}}
    t["search"] = "greedy"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_leaderboard_stages_end_to_end(recipe, tmp_path):
    """Recipe stages 15-18 with the leaderboard table (one dev setting per method) on the tiny recipe's A0,
    V and AV0: every row is trained on the equal step budget, chosen on dev, swept on eval under the
    leaderboard's conditions, and written to a valid leaderboard.json beside its plot."""
    import shutil
    import time

    from avsr.eval.leaderboard import CONDITIONS, validate_leaderboard
    root, _ = recipe
    exp = tmp_path / "exp"
    shutil.copytree(root / "exp", exp, ignore=shutil.ignore_patterns("train_av5", "train_av6", "rows"))
    spec = _tiny_leaderboard_spec(tmp_path / "rows.yaml")
    out = tmp_path / "lb" / "leaderboard.json"
    t0 = time.perf_counter()
    p = _run(root, "--exp_dir", str(exp), "--stage", "15", "--stop_stage", "18", "--rows", str(spec),
             "--rows_table", "leaderboard", "--rows_out", str(tmp_path / "rows_table.json"),
             "--rows_leaderboard", str(out))
    seconds = time.perf_counter() - t0
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    print(f"leaderboard stages 15-18 on the tiny recipe: {seconds:.0f} s")
    for n, name in ((15, "rows_train"), (16, "rows_select"), (17, "rows_sweep"), (18, "rows_table")):
        assert (exp / "stages" / f"{n}_{name}_leaderboard.done").is_file()
    lb = json.loads(out.read_text())
    validate_leaderboard(lb, str(out))
    assert {"A0", "V", "AV0", *LEADERBOARD_ROWS} <= set(lb["rows"])
    assert lb["corpus"]["preset"] == "tiny" and lb["search"] == "greedy"
    rows = lb["rows"]
    for r in rows.values():
        assert set(r["cer"]) == set(CONDITIONS)
    # equal budgets in optimiser steps: AV5's for every method from AV0 (the adapter rows' split included),
    # AV0's own training for MLA (from A0 and V)
    av5 = rows["AV5"]["steps"]
    assert av5 > 0 and all(rows[r]["steps"] == av5 for r in ("AV6", "AV6-alllinear", "CKD", "TFR",
                                                               "CKD+MS-Adapter", "TFR+MS-Adapter"))
    assert rows["MLA"]["steps"] == rows["MLA-noproj"]["steps"] == rows["AV0"]["steps"]
    assert rows["AV6-ontop"]["steps"] > av5                 # the paper's adapters on top of the whole AV5
    # only the adapter rows add trainable parameters beyond AV0; V has no audio side
    assert all(rows[r]["params_added"] > 0 for r in ("AV6", "AV6-alllinear", "AV6-ontop", "CKD+MS-Adapter",
                                                     "TFR+MS-Adapter"))
    assert all(rows[r]["params_added"] == 0 for r in ("AV1", "AV2", "AV3", "AV3-frozen", "S.5", "AV5",
                                                      "AV5-fusedtap", "AV0-bundle", "MLA", "MLA-noproj", "CKD",
                                                      "TFR"))
    assert rows["V"]["params_added"] < 0 and rows["A0"]["params_added"] < 0
    # the goal ranks methods: not V, the dropout rows, the study's rows or the ablations of dropout and merge
    if "goal" in lb:
        assert not set(lb["goal"]["rows"]) & {"V", "AV1", "AV2", "AV3", "S.1", "S.3", "S.5", "S.7", "AV3-frozen",
                                              "AV0-bundle", "AV0-lastmerge", "AV6-noadapter", "AV6-ontop"}
        assert {"AV6", "CKD", "TFR", "MLA"} <= set(lb["goal"]["rows"])
    # the combinations sit on the chosen CKD / TFR run, not on AV5
    table = json.loads((tmp_path / "rows_table.json").read_text())
    assert table["row_steps"]["CKD+MS-Adapter"]["init_run"].startswith("CKD-")
    assert table["row_steps"]["TFR+MS-Adapter"]["init_run"].startswith("TFR-")
    assert (out.parent / "leaderboard.png").stat().st_size > 1000
    # where the errors are: the split adds up to each CER; SNR and overlap bins from the corpus's truth
    assert set(lb["bins"]) == {"snr", "overlap"} and sum(lb["bins"]["snr"].values()) == lb["corpus"]["eval_segments"]
    for m, r in rows.items():
        for k, e in r["errors"]["split"].items():
            assert abs(e["sub"] + e["del"] + e["ins"] - r["cer"][k]) < 1e-2, (m, k, e, r["cer"][k])
        assert set(r["errors"]["by_overlap"]) == set(lb["bins"]["overlap"])
