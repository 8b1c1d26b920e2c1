"""The proxy checks (avsr/synthmisp/checks.py: viseme classes from ROI pixels; mouth opening against
the speech envelope) on small corpora that differ only in the articulation knobs.

    python docs/notebook/tools/lip_knob_checks.py OUT.json WORKDIR
"""
import json, os, sys, time
from avsr.synthmisp import checks, generate

out, work = sys.argv[1], sys.argv[2]
base = dict(sessions=(1, 12, 1), speaker_pool=(4, 12, 4), n_chars=150, width=320, height=180)
settings = {"default": {}, "activity_0.4-1.0": dict(lip_activity=(0.4, 1.0)),
            "jitter_0.15": dict(articulation_jitter=0.15),
            "activity_0.4-1.0+jitter_0.15": dict(lip_activity=(0.4, 1.0), articulation_jitter=0.15)}
res = {"command": "docs/notebook/tools/lip_knob_checks.py " + " ".join(sys.argv[1:]),
       "corpus": {"preset": "demo", "seed": 5, **{k: list(v) if isinstance(v, tuple) else v for k, v in base.items()}},
       "split": "dev", "results": {}}
for name, kn in settings.items():
    root = os.path.join(work, name)
    t0 = time.time()
    generate.generate(root, "demo", seed=5, nj=2, progress=False, **base, **kn)
    r = checks.run_checks(root, "dev")
    res["results"][name] = {"knobs": {k: list(v) if isinstance(v, tuple) else v for k, v in kn.items()},
                            "checks": r, "seconds": round(time.time() - t0, 1)}
    print(name, json.dumps(r)[:400], flush=True)
    json.dump(res, open(out, "w"), indent=1)
