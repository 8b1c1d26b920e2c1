"""CER report over decode dirs: a table with 95 % bootstrap intervals and paired-bootstrap comparisons.

    python -m avsr.bin.report --decode_dir exp/decode --models a0 v av0 --sets dev eval \\
        --baseline a0 --out exp/report

Reads ``<decode_dir>/<model>_<set>/result.json`` (avsr.bin.decode); writes ``<out>.json`` and
``<out>.md`` and prints the Markdown table.  Every comparison uses the same utterances for both
systems: relative CER reduction vs ``--baseline`` with its bootstrap interval and the share of
resamples where the model is not better (p-value).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from avsr.eval.metrics import paired_bootstrap


def load(decode_dir, model, split):
    p = os.path.join(decode_dir, f"{model}_{split}", "result.json")
    if not os.path.isfile(p):
        return None
    with open(p, encoding="utf-8") as f:
        return json.load(f)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--decode_dir", required=True)
    ap.add_argument("--models", nargs="+", required=True)
    ap.add_argument("--sets", nargs="+", default=["dev", "eval"])
    ap.add_argument("--baseline", default=None)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--out", required=True, help="output prefix (.json, .md)")
    args = ap.parse_args(argv)
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
    lines = ["| set | model | modality | search | CER % [95 % CI] | utts | rel. vs " + str(args.baseline)
             + " [95 % CI] | p(not better) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        vb = r.get("vs_baseline")
        rel = (f"{100 * vb['rel_reduction']:+.1f} % [{100 * vb['rel_lo']:+.1f}, {100 * vb['rel_hi']:+.1f}]"
               if vb else "")
        p = f"{vb['p_b_not_better']:.3f}" if vb else ""
        lines.append(f"| {r['set']} | {r['model']} | {r['modality']} | {r['search']} | "
                     f"{100 * r['cer']:.2f} [{100 * r['lo']:.2f}, {100 * r['hi']:.2f}] | {r['num_utts']} | {rel} | {p} |")
    md = "\n".join(lines) + "\n"
    if missing:
        md += f"\nmissing decode dirs: {', '.join(missing)}\n"
    with open(args.out + ".md", "w", encoding="utf-8") as f:
        f.write(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
