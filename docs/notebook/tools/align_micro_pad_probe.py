"""(Run from the repository root; ALIGN_ROOT, default /tmp/align_probes, holds the probes' dirs.) train a micro A0 on a padded copy of TAG's train_all (pad P s) and align TAG's original segments"""
import os, subprocess, sys, json
from pathlib import Path
import numpy as np
ROOT = Path(__file__).resolve().parents[3]; py = str(ROOT / ".venv/bin/python")
tag, P, name = sys.argv[1], sys.argv[2], sys.argv[3]
extra = sys.argv[4:]
root = Path(os.environ.get("ALIGN_ROOT", "/tmp/align_probes")) / tag
train = root / "data/train_all"; padded = root / f"data/train_pad{P}"
exp = root / f"exp_{name}"
def run(cmd):
    p = subprocess.run([py, *cmd], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
if not (exp / "packed").exists():
    if float(P) > 0:
        subprocess.run([py, str(ROOT / "docs/notebook/tools/align_pad_segments.py"), str(train), str(padded), P], check=True)
    else:
        padded = train
    run(["-m", "avsr.bin.train", "--config", str(ROOT / "conf/micro.yaml"), "--mode", "audio", "--train_data", str(padded),
         "--valid_data", str(padded), "--token_list", str(root / "data/tok/tokens.txt"), "--stats", str(root / "exp/stats.json"),
         "--exp_dir", str(exp / "a0"), "--set", "trainer.max_epochs=50", "trainer.warmup_steps=60", "trainer.lr=0.004",
         "trainer.batch_size=3", "trainer.progress=false", "trainer.best_n=1", "model.specaug=false", "model.dropout_rate=0.0", *extra])
    run(["-m", "avsr.cli", "pack", "--exp_dir", str(exp / "a0"), "--out", str(exp / "packed")])
sys.path.insert(0, str(ROOT))
from avsr.inference import Speech2Text
from avsr.synthmisp.truth import segment_truths
from frontends.audio import load_audio
s2t = Speech2Text.from_packed(str(exp / "packed"))
wav = dict(ln.split(" ", 1) for ln in (train / "wav.scp").read_text().splitlines())
res = {}
for mode in ("exact", "pad0.3"):
    errs, edges, n = [], 0, 0
    rng = np.random.default_rng(1)
    for st in segment_truths(root / "corpus", train):
        if st.turn is None: continue
        s, e = st.start, st.end
        if mode != "exact":
            s, e = max(0.0, s - 0.3), e + 0.3
        lp, mod = s2t.ctc_posteriors(s2t.make_batch([{"audio": load_audio(wav[st.session + "_Far"], start=s, end=e)}]))[0]
        am = np.asarray(lp).argmax(-1); T = len(am); nb = np.nonzero(am != 0)[0]
        edges += int(((nb < 5) | (nb >= T - 5)).sum()); n += len(nb)
        tt = s2t.align(s2t.tokenizer.encode(st.text), lp, mod, time_offset=s)
        errs += [(x.start + x.end) / 2 - (a + b) / 2 for x, (_, a, b) in zip(tt, st.chars)]
    errs = np.abs(np.array(errs))
    res[mode] = {"chars": len(errs), "within80": round(float((errs <= .08).mean()), 3),
                 "median_ms": round(float(np.median(errs)) * 1000), "nonblank_at_edges": round(edges / max(n, 1), 3)}
print(json.dumps({"tag": tag, "pad": P, "name": name, "extra": extra, **res}))
