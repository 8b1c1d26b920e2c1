"""(Run from the repository root; ALIGN_ROOT, default /tmp/align_probes, holds the probes' dirs.) Replicates tests/test_alignment.py's fixture + test with extra generator args; prints the share.

usage: align_micro_probe.py TAG GEN_ARGS [--set overrides of the training ...]
(align_micro_pad_probe.py uses its training and scoring functions.)"""
import os, subprocess, sys, json
from pathlib import Path
import numpy as np
ROOT = Path(__file__).resolve().parents[3]
py = str(ROOT / ".venv/bin/python")


def run(cmd):
    p = subprocess.run([py, *cmd], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]


def train_micro_a0(train, tokens, stats, exp, extra=()):
    """The test fixture's micro A0 (conf/micro.yaml, 50 epochs, no SpecAug or dropout) on ``train``
    (also its valid set), packed to ``exp/packed``."""
    run(["-m", "avsr.bin.train", "--config", str(ROOT / "conf/micro.yaml"), "--mode", "audio", "--train_data", str(train),
         "--valid_data", str(train), "--token_list", str(tokens), "--stats", str(stats),
         "--exp_dir", str(exp / "a0"), "--set", "trainer.max_epochs=50", "trainer.warmup_steps=60", "trainer.lr=0.004",
         "trainer.batch_size=3", "trainer.progress=false", "trainer.best_n=1", "model.specaug=false", "model.dropout_rate=0.0", *extra])
    run(["-m", "avsr.cli", "pack", "--exp_dir", str(exp / "a0"), "--out", str(exp / "packed")])


def alignment_share(s2t, corpus, train, pad=0.0):
    """Forced alignment of every talker turn's reference against the generator's character times, on the
    segment widened by ``pad`` s on each side: characters within 80 ms, median error, share of non-blank
    argmax frames in the first or last 5 frames."""
    sys.path.insert(0, str(ROOT))
    from avsr.synthmisp.truth import segment_truths
    from frontends.audio import load_audio
    wav = dict(ln.split(" ", 1) for ln in (Path(train) / "wav.scp").read_text().splitlines())
    errs, edges, n = [], 0, 0
    for st in segment_truths(corpus, train):
        if st.turn is None:
            continue
        s, e = max(0.0, st.start - pad), st.end + pad
        lp, mod = s2t.ctc_posteriors(s2t.make_batch([{"audio": load_audio(wav[st.session + "_Far"], start=s, end=e)}]))[0]
        am = np.asarray(lp).argmax(-1); T = len(am); nb = np.nonzero(am != 0)[0]
        edges += int(((nb < 5) | (nb >= T - 5)).sum()); n += len(nb)
        tt = s2t.align(s2t.tokenizer.encode(st.text), lp, mod, time_offset=s)
        errs += [(x.start + x.end) / 2 - (a + b) / 2 for x, (_, a, b) in zip(tt, st.chars)]
    errs = np.abs(np.array(errs))
    return {"chars": len(errs), "within80": round(float((errs <= .08).mean()), 3),
            "median_ms": round(float(np.median(errs)) * 1000), "nonblank_at_edges": round(edges / max(n, 1), 3)}


def main(tag, gen, extra):
    root = Path(os.environ.get("ALIGN_ROOT", "/tmp/align_probes")) / tag
    corpus, data, exp = root / "corpus", root / "data", root / "exp"
    train = data / "train_all"
    if not (exp / "packed").exists():
        p = subprocess.run(["bash", str(ROOT / "recipes/synthmisp/run.sh"), "--preset", "tiny", "--nj", "1",
                            "--gen_args", "--sessions 4 1 1 " + gen, "--corpus_dir", str(corpus), "--exp_dir", str(exp),
                            "--data_dir", str(data), "--stage", "0", "--stop_stage", "1"], capture_output=True, text=True)
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
        run(["-m", "avsr.bin.tokens", "--text", str(train / "text"), "--token_type", "char", "--output_dir", str(data / "tok")])
        run(["-m", "avsr.bin.collect_stats", "--config", str(ROOT / "conf/micro.yaml"), "--data_dir", str(train), "--out", str(exp / "stats.json")])
        train_micro_a0(train, data / "tok/tokens.txt", exp / "stats.json", exp, extra)
    sys.path.insert(0, str(ROOT))
    from avsr.inference import Speech2Text
    s2t = Speech2Text.from_packed(str(exp / "packed"))
    print(json.dumps({"tag": tag, "gen": gen, "extra": extra, **alignment_share(s2t, corpus, train)}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
