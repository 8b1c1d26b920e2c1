#!/usr/bin/env python3
"""Collect a recipe exp dir's training and scoring results into one JSON for docs/results.

    python scripts/collect_training.py --exp_dir recipes/synthmisp/exp/synthmisp_mini \\
        --config conf/mini.yaml --out docs/results/calibration_mini.json

Per trained model (``train_*``): parameters, epochs, per-epoch wall time (median / total, from
``train_result.json`` history), best dev CER (CTC greedy) per epoch; plus the recipe's
``report.json`` (eval/dev CER with 95 % bootstrap intervals and paired bootstrap vs A0).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench_common import command_line, machine_info  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--exp_dir", required=True)
    ap.add_argument("--config", default=None)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    out = {"exp_dir": os.path.relpath(args.exp_dir), "config": args.config, "models": {}}
    dirs = sorted(glob.glob(os.path.join(args.exp_dir, "train_*")) + glob.glob(os.path.join(args.exp_dir, "proxy", "*")))
    for d in dirs:
        p = os.path.join(d, "train_result.json")
        ck = os.path.join(d, "checkpoint.pth")
        if os.path.isfile(p) and (not os.path.isfile(ck) or os.path.getmtime(p) >= os.path.getmtime(ck)):
            r = json.load(open(p))
        elif os.path.isfile(ck):      # interrupted / still running: the history in the resume checkpoint
            sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
            from avsr.utils.checkpoint import load_checkpoint
            c = load_checkpoint(ck)
            r = {"history": c["history"], "best": c["best"], "stopped_early": c["stopped_early"],
                 "unfinished": not (c["epoch_done"] and c["epoch"] >= c["config"]["max_epochs"])}
            cfg_p = os.path.join(d, "config.yaml")
            if os.path.isfile(cfg_p):
                import yaml
                r["mode"] = (yaml.safe_load(open(cfg_p)).get("model") or {}).get("mode")
        else:
            continue
        hist = r.get("history") or []
        ts = [h.get("train_seconds") for h in hist if h.get("train_seconds") == h.get("train_seconds")]
        vs = [h.get("valid_seconds") for h in hist if h.get("valid_seconds") is not None]
        name = os.path.basename(d)
        name = name[len("train_"):] if name.startswith("train_") else "proxy/" + name
        out["models"][name] = {
            "mode": r.get("mode"), "parameters": r.get("parameters"), "epochs": len(hist),
            "stopped_early": r.get("stopped_early"), "best": r.get("best"),
            "epoch_train_seconds_median": statistics.median(ts) if ts else None,
            "train_seconds_total": sum(ts) if ts else None,
            "valid_seconds_total": sum(vs) if vs else None,
            "dev_cer_greedy_by_epoch": [round(h["valid"].get("cer", float("nan")), 4) for h in hist],
            "train_utterances": r.get("train_utterances"), "methods": r.get("methods"),
            "unfinished": r.get("unfinished", False),
            "train_acc_by_epoch": [round(h["train"].get("acc", float("nan")), 4) for h in hist]}
    rp = os.path.join(args.exp_dir, "report.json")
    if os.path.isfile(rp):
        out["report"] = json.load(open(rp))["rows"]
    sp = os.path.join(args.exp_dir, "data_summary.json")
    if os.path.isfile(sp):
        out["data_summary"] = json.load(open(sp))
    out["machine"] = machine_info()
    out["command"] = command_line()
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
