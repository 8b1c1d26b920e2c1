#!/usr/bin/env python
"""The lip knobs on the demo preset: the recipe's report (A0, V, AV0; dev and eval, beam 10) and eval
sweep (CER per condition, paired tests) of a demo-preset run with --gen_args knobs, beside the committed
`make demo` run without them (docs/results/demo).  A0 is the same model in both (the knobs change only
the video), which the script checks.

usage: lip_knobs_demo.py OUT.json KNOB_EXP_DIR "GEN_ARGS" "COMMAND"
"""
import json
import os
import platform
import sys

from avsr.eval import claims as cl

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def summary(report, sweep):
    rep = {f"{r['set']}/{r['model']}": {"cer": round(100 * r["cer"], 2), "ci95": [round(100 * r["lo"], 2),
                                                                                    round(100 * r["hi"], 2)],
                                         "utts": r["num_utts"]} for r in report["rows"]}
    rs = cl.Resampler(sweep)
    pairs = {}
    for label, (b, bc, a, ac) in {"AV0 vs A0, full video": ("AV0", "random@0", "A0", "random@0"),
                                  "AV0 no video vs AV0 full video": ("AV0", "whole", "AV0", "random@0"),
                                  "AV0 no video vs A0 (the bias)": ("AV0", "whole", "A0", "random@0")}.items():
        pd = cl.paired_diff(rs, b, a, bc, ac)
        pairs[label] = {"diff": round(pd["diff"], 2), "ci95": [round(x, 2) for x in pd["ci95"]],
                        "p_not_better": round(pd["p"], 4)}
    conds = {m: {c: round(100 * v["cer"], 2) for c, v in d.items()} for m, d in sweep["cer"].items()}
    return {"report": rep, "eval_sweep_cer": conds, "paired_eval": pairs}


def main(out, exp, gen_args, command):
    base_dir = os.path.join(ROOT, "docs", "results", "demo")
    base = summary(json.load(open(os.path.join(base_dir, "report.json"))),
                   json.load(open(os.path.join(base_dir, "sweep.json"))))
    knob = summary(json.load(open(os.path.join(exp, "report.json"))),
                   json.load(open(os.path.join(exp, "sweep", "eval", "sweep.json"))))
    for k in ("dev/a0", "eval/a0"):
        assert base["report"][k] == knob["report"][k], (k, base["report"][k], knob["report"][k])
    json.dump({"command": command, "summary_command": " ".join(["docs/notebook/tools/lip_knobs_demo.py"] + sys.argv[1:]),
               "machine": {"cpus": os.cpu_count(), "gpu": None, "platform": platform.platform()},
               "preset": "demo", "gen_args": gen_args,
               "note": "A0 is byte-for-byte the same model in both runs (the knobs change only the video); "
                       "beam 10, 95 % bootstrap intervals over utterances",
               "default": base, "knobs": knob}, open(out, "w"), indent=1, ensure_ascii=False)


if __name__ == "__main__":
    main(*sys.argv[1:5])
