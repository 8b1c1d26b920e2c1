#!/usr/bin/env python
"""Generate a SynthMISP preset, time each part, and run the proxy checks on dev (and eval).

    python scripts/bench_synthmisp.py --preset mini --nj 2 --out docs/results/synthmisp_mini.json

Resumable: an existing corpus dir is completed, not regenerated (timings then cover only the
sessions generated in this run; ``resumed_sessions`` says how many were skipped).
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench_common import command_line, machine_info  # noqa: E402

from avsr.synthmisp import checks, generate  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="mini")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--nj", type=int, default=2)
    p.add_argument("--root", default=None, help="corpus dir [corpora/synthmisp_<preset>]")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    root = a.root or os.path.join("corpora", f"synthmisp_{a.preset}")
    t0 = time.perf_counter()
    summary = generate.generate(root, a.preset, a.seed, a.nj, progress=True)
    gen_wall = time.perf_counter() - t0
    stats = json.load(open(os.path.join(root, "generation_stats.json")))
    res = {"machine": machine_info(), "command": command_line(), "preset": a.preset, "seed": a.seed,
           "nj": a.nj, "splits": summary["splits"], "knobs": summary["knobs"],
           "generation": {"wall_s": round(gen_wall, 1), "cpu_s_by_part": stats["cpu_s_by_part"],
                          "resumed_sessions": stats["resumed_sessions"]},
           "checks": {}}
    for split in ("dev", "eval"):
        t1 = time.perf_counter()
        res["checks"][split] = checks.run_checks(root, split)
        res["checks"][split]["wall_s"] = round(time.perf_counter() - t1, 1)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1, ensure_ascii=False)
    print(json.dumps(res["generation"], indent=1))
    print(json.dumps({s: {"viseme_acc": c["viseme"]["accuracy"], **{k: c["tracking"][k] for k in
                      ("segments", "r_target", "r_interferer")}} for s, c in res["checks"].items()}, indent=1))


if __name__ == "__main__":
    main()
