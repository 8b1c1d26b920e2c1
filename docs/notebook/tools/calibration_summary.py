#!/usr/bin/env python
"""Collect SynthMISP calibration runs (recipe exp dirs) into one JSON: per run the corpus knobs, training
hours, characters, tokens per character, the trainer's best dev CER (CTC greedy) and the train stage's
wall time; with --decoded, the recipe's decode results (beam) too.

    python docs/notebook/tools/calibration_summary.py --out docs/notebook/results/calibration_inventory.json \
        NAME=EXP_DIR:DATA_DIR:CORPUS_DIR ...
"""
import argparse
import glob
import json
import os
import platform
import re
import sys


def one(name, exp, data, corpus):
    meta = json.load(open(os.path.join(corpus, "synthmisp.json"), encoding="utf-8"))
    summ = json.load(open(os.path.join(exp, "data_summary.json"), encoding="utf-8"))["splits"]
    text = [l.split(maxsplit=1) for l in open(os.path.join(data, "train", "text"), encoding="utf-8")]
    chars = "".join(t[1].replace(" ", "") for t in text if len(t) > 1)
    types = len(set(chars))
    row = {"name": name, "n_chars_knob": meta["knobs"].get("n_chars", 0), "sessions": meta["knobs"]["sessions"],
           "speaker_pool": meta["knobs"]["speaker_pool"], "size": [meta["knobs"]["width"], meta["knobs"]["height"]],
           "train_hours": summ["train"]["hours"], "train_utts": summ["train"]["utterances"],
           "train_speakers": summ["train"]["speakers"], "char_tokens": len(chars), "char_types": types,
           "tokens_per_char": round(len(chars) / types, 1),
           "dev_utts": summ["dev"]["utterances"], "eval_utts": summ["eval"]["utterances"]}
    for m, stage in (("a0", 6), ("v", 7), ("av0", 8)):
        res = os.path.join(exp, f"train_{m}", "train_result.json")
        log = os.path.join(exp, "logs", f"stage{stage}_train_{m}.log")
        if not os.path.exists(res) and os.path.exists(log):   # stopped before the end: its epochs so far
            cers = [(float(x.group(2)), int(x.group(1))) for x in
                    re.finditer(r"epoch (\d+) valid: acc=\S+ cer=([0-9.]+)", open(log, encoding="utf-8").read())]
            if cers:
                row[f"{m}_best_dev_cer_greedy"] = round(100 * min(cers)[0], 2)
                row[f"{m}_best_epochs"] = [min(cers)[1]]
                row[f"{m}_epochs_run"] = len(cers)
                row[f"{m}_stopped_early_by_hand"] = True
        if os.path.exists(res):
            r = json.load(open(res, encoding="utf-8"))
            row[f"{m}_best_dev_cer_greedy"] = round(100 * r["best"][0][0], 2)
            row[f"{m}_best_epochs"] = [e for _, e in r["best"]]
            hist = r.get("history") or []
            row[f"{m}_epochs_run"] = len(hist) if hist else None
    secs = {}   # from the run's console log, <dir of EXP>/<NAME without _exp>.log
    for f in sorted(glob.glob(os.path.join(os.path.dirname(exp.rstrip("/")), os.path.basename(exp.rstrip("/")).replace("_exp", "") + ".log"))):
        for l in open(f, encoding="utf-8", errors="replace"):
            m = re.search(r"stage (\d+) \((\w+)\): done in (\d+) s", l)
            if m:
                secs[f"{m.group(1)}_{m.group(2)}"] = int(m.group(3))
    row["stage_seconds"] = secs
    for d in sorted(glob.glob(os.path.join(exp, "decode", "*", "result.json"))):
        r = json.load(open(d, encoding="utf-8"))
        row.setdefault("decode", {})[os.path.basename(os.path.dirname(d))] = {
            k: r[k] for k in ("cer", "lo", "hi", "search") if k in r}
    return row


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--what", default="")
    p.add_argument("runs", nargs="+", help="NAME=EXP_DIR:DATA_DIR:CORPUS_DIR")
    a = p.parse_args()
    rows = []
    for spec in a.runs:
        name, paths = spec.split("=", 1)
        rows.append(one(name, *paths.split(":")))
    out = {"what": a.what, "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                       "python": sys.version.split()[0]},
           "command": " ".join(sys.argv), "runs": rows}
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
    for r in rows:
        print(r["name"], r["train_hours"], r["char_types"], r["tokens_per_char"], r.get("a0_best_dev_cer_greedy"),
              r.get("v_best_dev_cer_greedy"), r.get("av0_best_dev_cer_greedy"), r.get("stage_seconds"))


if __name__ == "__main__":
    main()
