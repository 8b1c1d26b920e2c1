"""copy a data dir with every segment extended by a random 0..P s on each side (clipped to [0, dur])"""
import sys, shutil, numpy as np, soundfile as sf
from pathlib import Path
src, dst, P = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
shutil.copytree(src, dst, dirs_exist_ok=True)
wav = dict(l.split(" ", 1) for l in (src / "wav.scp").read_text().splitlines())
rng = np.random.default_rng(0)
out = []
for l in (src / "segments").read_text().splitlines():
    u, r, s, e = l.split(); s, e = float(s), float(e)
    d = sf.info(wav[r].strip()).duration
    s2, e2 = max(0.0, s - rng.uniform(0, P)), min(d, e + rng.uniform(0, P))
    out.append(f"{u} {r} {s2:.2f} {e2:.2f}")
(dst / "segments").write_text("\n".join(out) + "\n")
