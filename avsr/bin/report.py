"""CER report over decode dirs: a table with 95 % bootstrap intervals and paired-bootstrap comparisons.

    python -m avsr.bin.report --decode_dir exp/decode --models a0 v av0 --sets dev eval \\
        --baseline a0 --out exp/report

Reads ``<decode_dir>/<model>_<set>/result.json`` (avsr.bin.decode); writes ``<out>.json`` and
``<out>.md`` and prints the Markdown table.  Every comparison uses the same utterances for both
systems: relative CER reduction vs ``--baseline`` with its bootstrap interval and the share of
resamples where the model is not better (p-value).

    python -m avsr.bin.report --docs [--root .] [--out_root DIR]

renders every committed report (docs/BENCHMARKS.md, recipes/*/RESULTS.md, the committed recipe sweep's
Markdown) from the committed JSONs (:func:`avsr.eval.render.render_docs`); ``make test`` checks that this
changes nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from avsr.eval.metrics import paired_bootstrap
from avsr.eval.render import render_docs, report_md


def load(decode_dir, model, split):
    p = os.path.join(decode_dir, f"{model}_{split}", "result.json")
    if not os.path.isfile(p):
        return None
    with open(p, encoding="utf-8") as f:
        return json.load(f)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", action="store_true", help="render the committed reports from the committed JSONs")
    ap.add_argument("--root", default=".", help="repository root (--docs)")
    ap.add_argument("--out_root", default=None, help="where --docs writes (default --root)")
    ap.add_argument("--decode_dir")
    ap.add_argument("--models", nargs="+")
    ap.add_argument("--sets", nargs="+", default=["dev", "eval"])
    ap.add_argument("--baseline", default=None)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--out", help="output prefix (.json, .md)")
    args = ap.parse_args(argv)
    if args.docs:
        for rel in render_docs(args.root, args.out_root):
            print(f"wrote {os.path.join(args.out_root or args.root, rel)}")
        return 0
    if not (args.decode_dir and args.models and args.out):
        ap.error("--decode_dir, --models and --out are required (or --docs)")
    rows, missing = [], []
    for split in args.sets:
        base = load(args.decode_dir, args.baseline, split) if args.baseline else None
        for m in args.models:
            r = load(args.decode_dir, m, split)
            if r is None:
                missing.append(f"{m}_{split}")
                continue
            row = {"model": m, "set": split, "cer": r["cer"], "lo": r["lo"], "hi": r["hi"],
                   "num_utts": r["num_utts"], "errors": r["errors"], "ref_chars": r["ref_chars"],
                   "search": r["search"], "modality": r["modality"], "skipped": r["skipped"],
                   "utts_per_second": r["timing"].get("utts_per_second"), "rtf": r["timing"].get("rtf")}
            if base is not None and m != args.baseline:
                common = sorted(set(base["per_utt"]) & set(r["per_utt"]))
                pb = paired_bootstrap([base["per_utt"][u][0] for u in common], [r["per_utt"][u][0] for u in common],
                                      [base["per_utt"][u][1] for u in common], num=args.bootstrap, seed=0)
                row["vs_baseline"] = {"baseline": args.baseline, "utts": len(common), **pb}
            rows.append(row)
    out = {"decode_dir": os.path.abspath(args.decode_dir), "rows": rows, "missing": missing}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)) or ".", exist_ok=True)
    with open(args.out + ".json", "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
    md = report_md(rows, args.baseline, missing)
    with open(args.out + ".md", "w", encoding="utf-8") as f:
        f.write(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
