#!/usr/bin/env python3
"""Gather dev-probe sweeps (``avsr eval`` sweep.json files) into one JSON, each probe compared with a
reference model by paired bootstrap at every condition.

    python scripts/collect_probes.py --reference AV0=DIR/sweep.json:AV0 \\
        --probe "frozen audio=DIR2/sweep.json:av5_fzv" ... --what "..." --out docs/results/probe_X.json

A probe is ``LABEL=SWEEP_JSON:MODEL``.  Every sweep must have decoded the same utterances (same data
dir and seed), which is checked.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _bench_common import command_line, emit, machine_info  # noqa: E402
from avsr.eval.metrics import paired_bootstrap  # noqa: E402


def parse(spec):
    label, rest = spec.split("=", 1)
    path, model = rest.rsplit(":", 1)
    return label, path, model


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reference", required=True, help="LABEL=SWEEP_JSON:MODEL")
    ap.add_argument("--probe", action="append", required=True, help="LABEL=SWEEP_JSON:MODEL (repeat)")
    ap.add_argument("--what", required=True, help="what the probes are, in words")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    cache = {}

    def load(path):
        if path not in cache:
            with open(path, encoding="utf-8") as f:
                cache[path] = json.load(f)
        return cache[path]
    rl, rp, rm = parse(a.reference)
    ref = load(rp)
    out = {"what": a.what, "reference": rl, "data_dir": ref["data_dir"], "search": ref["search"],
           "cer": {}, "paired_vs_reference": {}, "sweeps": {}}
    for spec in [a.reference] + a.probe:
        label, path, model = parse(spec)
        sw = load(path)
        if sw["utt_ids"] != ref["utt_ids"] or sw["data_dir"] != ref["data_dir"]:
            raise SystemExit(f"{path}: other utterances than {rp}; probes must be decoded on the same data")
        if model not in sw["cer"]:
            raise SystemExit(f"{path}: no model {model!r} (has {sorted(sw['cer'])})")
        conds = [c for c in sw["conditions"] if c in ref["conditions"]]
        out["sweeps"][label] = {"sweep": os.path.relpath(path), "model": model}
        out["cer"][label] = {c: sw["cer"][model][c]["cer"] for c in conds}
        out["cer"][label]["mean"] = sum(out["cer"][label][c] for c in conds) / len(conds)
        if label != rl:
            out["paired_vs_reference"][label] = {
                c: paired_bootstrap(ref["utt_errors"][rm][c], sw["utt_errors"][model][c], ref["utt_ref_chars"],
                                    num=1000, seed=0) for c in conds}
    out["machine"], out["command"] = machine_info(), command_line()
    emit(out, a.out)


if __name__ == "__main__":
    main()
