"""CER and cpCER report over decode dirs: a table with 95 % bootstrap intervals and paired-bootstrap comparisons.

    python -m avsr.bin.report --decode_dir exp/decode --models a0 v av0 --sets dev eval \\
        --baseline a0 --out exp/report [--data_root data]

Reads ``<decode_dir>/<model>_<set>/result.json`` and ``text`` (avsr.bin.decode); writes ``<out>.json`` and
``<out>.md`` and prints the Markdown.  Every comparison uses the same utterances for both
systems: relative CER reduction vs ``--baseline`` with its bootstrap interval and the share of
resamples where the model is not better (p-value).

cpCER (the MISP2022 AVSR metric, :mod:`avsr.eval.cpcer`) is computed per session and overall on the
utterances the decode scored, with oracle speakers: each hypothesis takes the speaker (``utt2spk``),
session (recording without ``_Far``) and start time (``segments``) of its segment in the data dir.
The data dir is the one ``result.json`` records (``data_dir``), or ``<data_root>/<set>`` with
``--data_root`` (for decodes moved from where they were made).  Each row of ``<out>.json`` gains
``cpcer``: ``{"overall", "edits", "ref_chars", "per_session": {session: {"cpcer", "edits", "ref_chars"}}}``;
``<out>.md`` gains a cpCER column and a per-session cpCER table per set.  A set whose data dir has no
``text`` (an evaluation release without references) is skipped with a printed message and listed in
``no_reference``; a row whose data dir or hypothesis ``text`` cannot be found keeps its CER, gets no
``cpcer`` and the reason is printed and listed in ``cpcer_skipped``.

With ``--stages_dir <exp_dir>/stages`` the report also states each finished stage's wall time
(``stage_seconds`` in the JSON, a line under the table), from the recipe's done markers.

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

from avsr.bin import HelpFormatter
from avsr.data.datadir import read_datadir, read_table, table_to_dict
from avsr.eval.cpcer import datadir_cpcer
from avsr.eval.metrics import paired_bootstrap
from avsr.eval.render import render_docs, report_md


def load(decode_dir, model, split):
    p = os.path.join(decode_dir, f"{model}_{split}", "result.json")
    if not os.path.isfile(p):
        return None
    with open(p, encoding="utf-8") as f:
        return json.load(f)


def data_dir_of(result, split, data_root=None):
    """The data dir a decode scored: ``<data_root>/<split>`` when given, else ``result["data_dir"]``."""
    return os.path.join(data_root, split) if data_root else result.get("data_dir")


def row_cpcer(decode_dir, model, split, result, data_dir):
    """``(cpcer dict, None)`` for one decode, or ``(None, reason)`` when it cannot be computed."""
    hyp_path = os.path.join(decode_dir, f"{model}_{split}", "text")
    if not data_dir or not os.path.isdir(data_dir):
        return None, f"data dir {data_dir!r} not found (pass --data_root)"
    if not os.path.isfile(hyp_path):
        return None, f"{hyp_path}: no hypotheses"
    hyps = table_to_dict(hyp_path, read_table(hyp_path))
    dd = read_datadir(data_dir)
    utts = [u for u in result.get("per_utt") or dd.text if u in dd.text]
    c = datadir_cpcer(dd, hyps, utts, name=data_dir)
    return {"overall": c["cpcer"], "edits": c["edits"], "ref_chars": c["ref_chars"],
            "per_session": c["per_session"]}, None


def stage_seconds(stages_dir) -> dict:
    """Wall seconds of each finished recipe stage, ``{"<N>_<name>": seconds}`` in stage order, from the
    done markers of ``stages_dir`` (``seconds:`` lines, written by scripts/stage_utils.sh) and
    SynthMISP's ``0_generate.seconds``; stages without a time (done before times were kept) are left out."""
    out = []
    if not stages_dir or not os.path.isdir(stages_dir):
        return {}
    for name in os.listdir(stages_dir):
        path = os.path.join(stages_dir, name)
        key = name.rsplit(".", 1)[0]
        num = key.split("_", 1)[0]
        if not num.isdigit():
            continue
        secs = None
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        if name.endswith(".seconds") and text.strip().isdigit():
            secs = int(text.strip())
        elif name.endswith(".done"):
            for line in text.splitlines():
                if line.startswith("seconds:") and line.split(":", 1)[1].strip().isdigit():
                    secs = int(line.split(":", 1)[1])
        if secs is not None:
            out.append((int(num), key, secs))
    return {k: v for _, k, v in sorted(out)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="avsr report", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    ap.add_argument("--docs", action="store_true", help="render the committed reports from the committed JSONs")
    ap.add_argument("--root", default=".", help="repository root (--docs)")
    ap.add_argument("--out_root", default=None, help="where --docs writes (default --root)")
    ap.add_argument("--decode_dir", help="the recipe's decode dir (<model>_<set>/result.json)")
    ap.add_argument("--models", nargs="+", help="model names to report")
    ap.add_argument("--sets", nargs="+", default=["dev", "eval"], help="data sets to report")
    ap.add_argument("--baseline", default=None, help="model the others are compared with (paired tests)")
    ap.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of the paired comparisons with --baseline (the per-model "
                    "intervals come from each decode's result.json)")
    ap.add_argument("--out", help="output prefix (.json, .md)")
    ap.add_argument("--stages_dir", default=None,
                    help="a recipe's <exp_dir>/stages: add each finished stage's wall time to the report")
    ap.add_argument("--data_root", default=None,
                    help="data dirs are <data_root>/<set> (default: the data_dir each result.json records)")
    args = ap.parse_args(argv)
    if args.docs:
        for rel in render_docs(args.root, args.out_root):
            print(f"wrote {os.path.join(args.out_root or args.root, rel)}")
        return 0
    if not (args.decode_dir and args.models and args.out):
        ap.error("--decode_dir, --models and --out are required (or --docs)")
    rows, missing, no_ref, cp_skipped = [], [], [], []
    for split in args.sets:
        base = load(args.decode_dir, args.baseline, split) if args.baseline else None
        for m in args.models:
            r = load(args.decode_dir, m, split)
            if r is None:
                missing.append(f"{m}_{split}")
                continue
            dd = data_dir_of(r, split, args.data_root)
            no_text = bool(dd) and os.path.isdir(dd) and not os.path.isfile(os.path.join(dd, "text"))
            if no_text or "cer" not in r:
                print(f"skipping {m}_{split}: " + (f"data dir {dd} has no text (no references to score)"
                                                   if no_text else "result.json has no CER (no references)"))
                no_ref.append(f"{m}_{split}")
                continue
            row = {"model": m, "set": split, "cer": r["cer"], "lo": r["lo"], "hi": r["hi"],
                   "num_utts": r["num_utts"], "errors": r["errors"], "ref_chars": r["ref_chars"],
                   "search": r["search"], "modality": r["modality"], "skipped": r["skipped"],
                   "utts_per_second": r["timing"].get("utts_per_second"), "rtf": r["timing"].get("rtf")}
            if base is not None and "per_utt" in base and m != args.baseline:
                common = sorted(set(base["per_utt"]) & set(r["per_utt"]))
                pb = paired_bootstrap([base["per_utt"][u][0] for u in common], [r["per_utt"][u][0] for u in common],
                                      [base["per_utt"][u][1] for u in common], num=args.bootstrap, seed=0)
                row["vs_baseline"] = {"baseline": args.baseline, "utts": len(common), **pb}
            cp, why = row_cpcer(args.decode_dir, m, split, r, dd)
            if cp is None:
                print(f"no cpCER for {m}_{split}: {why}")
                cp_skipped.append(f"{m}_{split}: {why}")
            else:
                row["cpcer"] = cp
            rows.append(row)
    out = {"decode_dir": os.path.abspath(args.decode_dir), "rows": rows, "missing": missing,
           "no_reference": no_ref, "cpcer_skipped": cp_skipped}
    secs = stage_seconds(args.stages_dir)
    if secs:
        out["stage_seconds"] = secs
    os.makedirs(os.path.dirname(os.path.abspath(args.out)) or ".", exist_ok=True)
    with open(args.out + ".json", "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
    md = report_md(rows, args.baseline, missing, no_reference=no_ref, stage_seconds=secs)
    with open(args.out + ".md", "w", encoding="utf-8") as f:
        f.write(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
