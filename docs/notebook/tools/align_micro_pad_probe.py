"""(Run from the repository root; ALIGN_ROOT, default /tmp/align_probes, holds the probes' dirs.) train a micro A0 on a padded copy of TAG's train_all (pad P s) and align TAG's original segments

usage: align_micro_pad_probe.py TAG P NAME [--set overrides of the training ...] (after align_micro_probe.py TAG ...)"""
import os, subprocess, sys, json
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from align_micro_probe import ROOT, alignment_share, py, train_micro_a0  # noqa: E402

tag, P, name = sys.argv[1], sys.argv[2], sys.argv[3]
extra = sys.argv[4:]
root = Path(os.environ.get("ALIGN_ROOT", "/tmp/align_probes")) / tag
train = root / "data/train_all"; padded = root / f"data/train_pad{P}"
exp = root / f"exp_{name}"
if not (exp / "packed").exists():
    if float(P) > 0:
        subprocess.run([py, str(ROOT / "docs/notebook/tools/align_pad_segments.py"), str(train), str(padded), P], check=True)
    else:
        padded = train
    train_micro_a0(padded, root / "data/tok/tokens.txt", root / "exp/stats.json", exp, extra)
sys.path.insert(0, str(ROOT))
from avsr.inference import Speech2Text  # noqa: E402
s2t = Speech2Text.from_packed(str(exp / "packed"))
res = {mode: alignment_share(s2t, root / "corpus", train, pad=0.0 if mode == "exact" else 0.3)
       for mode in ("exact", "pad0.3")}
print(json.dumps({"tag": tag, "pad": P, "name": name, "extra": extra, **res}))
