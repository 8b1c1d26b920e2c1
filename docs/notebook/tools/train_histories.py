#!/usr/bin/env python
"""Per-epoch dev CER (the trainer's CTC greedy), steps and seconds of training dirs, from their
``train_result.json`` (a finished run) or ``train.log`` (a run in progress), to a JSON with the command.

usage: train_histories.py OUT.json NAME=TRAIN_DIR [...]
"""
import json
import os
import re
import sys


def history(d):
    p = os.path.join(d, "train_result.json")
    if os.path.isfile(p):
        h = json.load(open(p)).get("history") or []
        return {"finished": True, "dev_cer_pct": [round(100 * x["valid"]["cer"], 2) for x in h],
                "steps": h[-1].get("step") if h else None,
                "seconds": round(sum((x.get("train_seconds") or 0) + (x.get("valid_seconds") or 0) for x in h))}
    cer = [round(100 * float(m.group(1)), 2) for m in
           re.finditer(r"epoch \d+ valid: .*?cer=([0-9.]+)", open(os.path.join(d, "train.log")).read())]
    return {"finished": False, "dev_cer_pct": cer}


def main(argv):
    out = {"command": "docs/notebook/tools/train_histories.py " + " ".join(argv), "runs": {}}
    for spec in argv[1:]:
        name, d = spec.split("=", 1)
        out["runs"][name] = history(d)
    json.dump(out, open(argv[0], "w"), indent=1)
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
