#!/usr/bin/env python3
"""Cost of the CER-vs-frame-loss sweep against independent decodes (goal: ≤ 0.5×).

For each search (``--searches``, e.g. ``greedy beam10``) one ``avsr eval --compare_uncached`` run
decodes the same models, utterances and conditions twice: the cached sweep (audio front-end and
per-frame visual features once per batch, every frame-loss condition of a batch in one stacked
encoder forward and one search, an audio-only model decoded once) and every condition on its own
through ``Speech2Text.decode_batch``.  Reported: the wall time of each (media loading excluded),
their ratio, whether the hypotheses are identical, and the split into audio front-end, visual
front-end, encoder and search, per model and summed.  Each search runs ``--repeats`` times (the
machine is noisy); the run with the median ratio is reported in full, with every run's ratio.

    python scripts/bench_sweep.py --models A0=exp/packed/a0 AV0=exp/packed/av0 \\
        --data_dir data/eval --searches greedy beam10 --limit 96 --out docs/results/bench_sweep.json
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench_common import command_line, emit, machine_info  # noqa: E402

STAGES = ("audio_front", "visual_front", "encoder", "search")


def summarize(sweep: dict) -> dict:
    """The cost numbers of one ``avsr eval --compare_uncached`` sweep.json."""
    t, u = sweep["timing"], sweep["uncached"]
    cached = t["wall_seconds"] - t["load_seconds"]
    uncached = cached / u["cost_ratio_cached_vs_uncached"]

    def stages(per_model):
        return {m: {k: round(v.get(k, 0.0), 2) for k in STAGES} for m, v in per_model.items()}

    cs, us = stages(t["per_model"]), stages(u["per_model"])
    return {"search": sweep["search"], "utts": sweep["utts"], "conditions": sweep["conditions"],
            "models": list(sweep["models"]), "cached_seconds": round(cached, 2),
            "uncached_seconds": round(uncached, 2), "ratio": u["cost_ratio_cached_vs_uncached"],
            "identical_hyps": u["identical_hyps"],
            "stages_cached": cs, "stages_uncached": us,
            "stage_totals_cached": {k: round(sum(m[k] for m in cs.values()), 2) for k in STAGES},
            "stage_totals_uncached": {k: round(sum(m[k] for m in us.values()), 2) for k in STAGES}}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--models", nargs="+", required=True, help="NAME=PACKED_DIR[@threshold], as avsr eval")
    ap.add_argument("--data_dir", required=True)
    ap.add_argument("--searches", nargs="+", default=["greedy", "beam10"], help="greedy | beam<N>")
    ap.add_argument("--limit", type=int, default=0, help="first N utterances (0: all)")
    ap.add_argument("--batch_size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5, help="runs per search; the median ratio is the headline")
    ap.add_argument("--note", default="", help="what the models and data are (written into the result)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for search in args.searches:
            if search == "greedy":
                opt = ["--ctc_greedy"]
            elif search.startswith("beam") and search[4:].isdigit():
                opt = ["--beam_size", search[4:]]
            else:
                raise SystemExit(f"--searches: {search!r} is neither greedy nor beam<N>")
            reps = []
            for i in range(args.repeats):
                out_dir = os.path.join(tmp, f"{search}.{i}")
                cmd = [sys.executable, "-m", "avsr.cli", "eval", "--models", *args.models, "--data_dir",
                       args.data_dir, "--out_dir", out_dir, "--batch_size", str(args.batch_size), "--threads",
                       str(args.threads), "--limit", str(args.limit), "--bootstrap", "10", "--compare_uncached", *opt]
                print("+ " + " ".join(cmd), flush=True)
                r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                if r.returncode != 0:
                    raise SystemExit(f"avsr eval failed (rc {r.returncode}):\n{r.stdout[-3000:]}")
                with open(os.path.join(out_dir, "sweep.json"), encoding="utf-8") as f:
                    reps.append(summarize(json.load(f)))
                print(f"{search} #{i + 1}: cached {reps[-1]['cached_seconds']} s, uncached "
                      f"{reps[-1]['uncached_seconds']} s, ratio {reps[-1]['ratio']:.3f}, "
                      f"identical {reps[-1]['identical_hyps']}", flush=True)
            med = sorted(reps, key=lambda x: x["ratio"])[(len(reps) - 1) // 2]
            runs.append({**med, "ratios": [x["ratio"] for x in reps],
                         "identical_hyps": all(x["identical_hyps"] for x in reps), "repeats": len(reps)})
    emit({"machine": machine_info(), "command": command_line(), "note": args.note, "threads": args.threads,
          "batch_size": args.batch_size, "data_dir": args.data_dir, "runs": runs}, args.out)


if __name__ == "__main__":
    main()
