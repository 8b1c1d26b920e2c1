"""The LM shallow-fusion result of a recipe run with ``--use_lm true``, as one JSON.

    python scripts/lm_gain.py --exp_dir recipes/synthmisp/exp/synthmisp_demo \\
        --data_dir recipes/synthmisp/data/synthmisp_demo --models av0 a0 --out docs/results/lm_demo.json

Reads the LM's ``train_result.json`` (dev perplexity, wall time), the dev grid of stage 11 lm_weight
(``lm/lm_weight_dev.json``) and stage 12's decodes of ``--set`` with the packed models (their default
LM weight); decodes the same set once more per model with ``--lm_weight 0`` (into
``decode/<model>_<set>_nolm``, reused when there) and reports the CER change with the LM against
without it: ``100 * (CER_lm - CER_nolm)`` points with its paired 95 % bootstrap interval, the relative
reduction and ``p_b_not_better`` (:func:`avsr.bin.select_lm_weight.paired_change`, 1000 resamples).
``--info_weights W ...`` also decodes the set at those fixed weights (``decode/<model>_<set>_lm<W>``) and
reports each against no LM under ``at_fixed_weights``: for information only, never a choice.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _bench_common import command_line, emit, machine_info  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--exp_dir", required=True)
    ap.add_argument("--data_dir", required=True)
    ap.add_argument("--models", nargs="+", default=["av0"])
    ap.add_argument("--set", default="eval")
    ap.add_argument("--batch_size", type=int, default=16)
    ap.add_argument("--recipe_command", default=None, help="the recipe command that made the exp dir (recorded)")
    ap.add_argument("--info_weights", nargs="*", type=float, default=[],
                    help="also decode at these fixed weights (information only)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    from avsr.bin.decode import main as decode_main
    from avsr.bin.select_lm_weight import paired_change, read_result

    lm_dir = os.path.join(args.exp_dir, "lm")
    with open(os.path.join(lm_dir, "train_result.json")) as f:
        tr = json.load(f)
    with open(os.path.join(lm_dir, "lm_config.yaml")) as f:
        lm_conf = f.read()
    with open(os.path.join(lm_dir, "lm_weight_dev.json")) as f:
        dev = json.load(f)
    out = {"what": "LM shallow fusion: dev choice of the LM weight and the CER change with the LM on "
                   f"{args.set} (paired bootstrap, 1000 resamples)",
           "machine": {**machine_info(), "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()]},
           "command": command_line(), "recipe_command": args.recipe_command,
           "lm": {"dev_perplexity": tr["dev_perplexity"], "best_epoch": tr["best_epoch"], "epochs": tr["epochs"],
                  "train_wall_seconds": tr["wall_seconds"], "num_parameters": tr["num_parameters"],
                  "train_sentences": tr["train_sentences"], "train_tokens": tr["train_tokens"],
                  "threads": tr.get("threads"), "config": lm_conf},
           "dev_grid": {"model": dev["model"], "cer_by_weight": dev["cer"], "ci95_by_weight": dev["ci95"],
                        "chosen": dev["chosen"], "chosen_vs_0": dev.get("chosen_vs_0"), "num_utts": dev["num_utts"],
                        "file": os.path.relpath(os.path.join(lm_dir, "lm_weight_dev.json"))},
           "test": {}}
    for m in args.models:
        with_lm = os.path.join(args.exp_dir, "decode", f"{m}_{args.set}")
        r_lm = read_result(with_lm)
        nolm = with_lm + "_nolm"
        t0 = time.perf_counter()
        if not os.path.isfile(os.path.join(nolm, "result.json")):
            decode_main(["--model", os.path.join(args.exp_dir, "packed", m), "--data_dir",
                         os.path.join(args.data_dir, args.set), "--out_dir", nolm, "--lm_weight", "0",
                         "--beam_size", str(int(r_lm["search"].replace("beam", ""))),
                         "--batch_size", str(args.batch_size)])
        r_no = read_result(nolm)
        utts = sorted(set(r_lm["per_utt"]) & set(r_no["per_utt"]))
        ch = paired_change([r_no["per_utt"][u][0] for u in utts], [r_lm["per_utt"][u][0] for u in utts],
                           [r_no["per_utt"][u][1] for u in utts])
        out["test"][m] = {"set": args.set, "lm_weight": r_lm.get("lm_weight"), "search": r_lm["search"],
                          "num_utts": len(utts),
                          "cer_without_lm": r_no["cer"], "ci95_without_lm": [r_no["lo"], r_no["hi"]],
                          "cer_with_lm": r_lm["cer"], "ci95_with_lm": [r_lm["lo"], r_lm["hi"]],
                          "change_points": ch["diff_points"], "change_ci95_points": ch["diff_ci95"],
                          "rel_reduction": ch["rel_reduction"], "rel_ci95": [ch["rel_lo"], ch["rel_hi"]],
                          "p_lm_not_better": ch["p_b_not_better"],
                          "search_seconds_with_lm": r_lm["timing"]["search"],
                          "search_seconds_without_lm": r_no["timing"]["search"],
                          "decode_dirs": [os.path.relpath(nolm), os.path.relpath(with_lm)],
                          "nolm_decode_wall_seconds": round(time.perf_counter() - t0, 1)}
        fixed = {}
        for w in args.info_weights:
            d = os.path.join(args.exp_dir, "decode", f"{m}_{args.set}_lm{w:g}")
            if not os.path.isfile(os.path.join(d, "result.json")):
                decode_main(["--model", os.path.join(args.exp_dir, "packed", m), "--data_dir",
                             os.path.join(args.data_dir, args.set), "--out_dir", d, "--lm_weight", f"{w:g}",
                             "--beam_size", str(int(r_lm["search"].replace("beam", ""))),
                             "--batch_size", str(args.batch_size)])
            r = read_result(d)
            c = paired_change([r_no["per_utt"][u][0] for u in utts], [r["per_utt"][u][0] for u in utts],
                              [r_no["per_utt"][u][1] for u in utts])
            fixed[f"{w:g}"] = {"cer": r["cer"], "ci95": [r["lo"], r["hi"]], "change_points": c["diff_points"],
                               "change_ci95_points": c["diff_ci95"], "p_lm_not_better": c["p_b_not_better"],
                               "search_seconds": r["timing"]["search"]}
        if fixed:
            out["test"][m]["at_fixed_weights"] = {"note": "information only: the weight is chosen on dev",
                                                  **fixed}
    emit(out, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
