"""``avsr eval``: CER vs video frame loss (and babble noise) for several packed models, with the
modality-bias diagnostics.

    avsr eval --models A0=exp/packed/a0 AV0=exp/packed/av0 AV6=exp/packed/av6@0 \\
        --data_dir data/eval --out_dir exp/sweep/eval [--ctc_greedy | --beam_size 10] \\
        [--baseline A0 --reference AV0] [--similarity_rates 0 0.5 1.0] [--compare_uncached]

``NAME=DIR[@T]``: a packed model; ``@T`` overrides its MS-Adapter routing threshold (share of present
frames at or below which the audio-only adapter path is used; default: the one stored in the packed
model, 0 = only with no frame; ``@none``: never route).  A model packed with ``--decode_fusion entropy``
(MLA) is decoded by fusing its audio and video paths' CTC posteriors; ``--decode_fusion none|entropy``
sets that for every model instead of each pack's own setting (``sweep.json`` ``models.NAME.fusion``).
Outputs in ``--out_dir``: ``sweep.json`` (CER with 95 % bootstrap interval per model and condition,
over utterances, or with ``--bootstrap_unit recording`` over whole recordings; degradation area over
the paper's rates 0/0.25/0.5/0.75/1,
relative CER against the baseline's output, representation similarity, timing),
``sweep.md`` (tables), ``skipped`` (utterances whose media could not be read: skipped for every model
and condition, scored as empty hypotheses, as ``avsr decode`` does), ``cer_vs_frame_loss.png`` (the paper's Figure 1 style, baseline dashed),
``similarity.png``, ``hyps.json`` (every hypothesis: ``{model: {condition: {utt: text}}}``).  Every
table says which search produced it.  While it runs, finished batches are kept in ``progress.jsonl``: a
sweep interrupted and started again with the same command decodes only the rest (other models, model
files, data or decoding options start it over; ``timing.resumed_utts`` counts what was taken over).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from avsr.bin import HelpFormatter, add_decoder_options, decoder_overrides

from avsr.eval.render import plot_similarity, plot_sweep, sweep_md
from avsr.utils.io import BatchLog, path_stamp

#: finished batches of an unfinished sweep (removed when sweep.json and its renderings are written)
PROGRESS = "progress.jsonl"
#: the options that change what a sweep decodes (its progress log's signature, with the models and data)
DECODE_ARGS = ("rates", "segment_rates", "no_whole", "snrs", "beam_size", "ctc_greedy", "batch_size",
               "similarity_rates", "seed", "limit", "decode_fusion", "lm_weight")


PACKED = "packed"      # no @T: the packed model's own routing threshold


def parse_models(specs):
    out = {}
    for s in specs:
        if "=" not in s:
            raise SystemExit(f"--models expects NAME=DIR[@threshold], got {s!r}")
        name, rest = s.split("=", 1)
        if not name or name in out:
            raise SystemExit(f"--models: {'an empty name' if not name else f'the name {name!r} is given twice'} "
                             f"in {s!r} (each NAME labels one table row)")
        thr = PACKED
        if "@" in rest:
            rest, t = rest.rsplit("@", 1)
            thr = None if t.lower() == "none" else float(t)
        out[name] = (rest, thr)
    return out


def dedupe_specs(specs):
    """``(unique specs, {alias name: name decoded for it})``: names given the same packed model (same
    directory, same adapter threshold) decode identically, so only the first is decoded (e.g. AV6 and
    AV6-tuned when the threshold tuned on dev is 0)."""
    unique, alias, first = {}, {}, {}
    for name, (path, thr) in specs.items():
        key = (os.path.realpath(path), thr)
        if key in first:
            alias[name] = first[key]
        else:
            first[key] = name
            unique[name] = (path, thr)
    return unique, alias


def _expand(res, alias, specs):
    """Give every alias of ``dedupe_specs`` its model's hypotheses and representations, and an empty
    timing (it was not decoded), in the order of ``specs``."""
    for key in ("hyps", "fused"):
        res[key] = {m: res[key][alias.get(m, m)] for m in specs}
    res["timing"] = {m: {} if m in alias else res["timing"][m] for m in specs}


def build_parser():
    ap = argparse.ArgumentParser(prog="avsr eval", description=__doc__.split("\n\n")[0],
                                 formatter_class=HelpFormatter, epilog=__doc__)
    ap.add_argument("--models", nargs="+", required=True, help="NAME=PACKED_DIR[@T] ... (see above)")
    ap.add_argument("--data_dir", required=True, help="a prepared data dir with reference text")
    ap.add_argument("--out_dir", required=True, help="where sweep.json, sweep.md and the plots go")
    ap.add_argument("--rates", type=float, nargs="+", default=[0.0, 0.1, 0.25, 0.3, 0.5, 0.7, 0.75, 1.0],
                    help="random video frame-loss rates (default: %(default)s)")
    ap.add_argument("--segment_rates", type=float, nargs="*", default=[0.5],
                    help="rates of one missing contiguous segment (default: %(default)s)")
    ap.add_argument("--no_whole", action="store_true", help="leave out the 'whole video missing' condition")
    ap.add_argument("--snrs", type=float, nargs="*", default=[0.0, -2.5, -5.0],
                    help="babble SNRs (dB) with full video (default: %(default)s)")
    ap.add_argument("--beam_size", type=int, default=10, help="beam size (default: %(default)s)")
    ap.add_argument("--ctc_greedy", action="store_true", help="CTC greedy search instead of the beam search")
    ap.add_argument("--batch_size", type=int, default=16, help="utterances per batch (default: %(default)s)")
    ap.add_argument("--baseline", default=None, help="audio-only model (relative CER reference; dashed line)")
    ap.add_argument("--reference", default=None, help="model whose rate-0 CER anchors the degradation area (AV0)")
    ap.add_argument("--similarity_rates", type=float, nargs="*", default=[],
                    help="random-loss rates for the A0-vs-AVSR representation similarity")
    ap.add_argument("--compare_uncached", action="store_true",
                    help="also run every condition independently; report the cost ratio and check identity")
    add_decoder_options(ap, adapter_threshold=False, align_adapt=False, lm_default=0.0,
                        lm_help="LM shallow-fusion weight (default 0: robustness tables decode without the packs' LM)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the frame-loss masks and the babble")
    ap.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of every interval")
    ap.add_argument("--bootstrap_unit", choices=("utterance", "recording"), default="utterance",
                    help="what the intervals and paired tests resample: utterances, or whole recordings "
                         "(sessions, from the data dir's segments) with all their utterances")
    ap.add_argument("--limit", type=int, default=0, help="only the first N utterances (0: all)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    return ap


def similarity(a: dict, b: dict):
    """cosine matrix between mean-pooled reps of the same utterances; diagonal dominance."""
    utts = sorted(set(a) & set(b))
    A = np.stack([a[u] for u in utts]).astype(np.float64)
    B = np.stack([b[u] for u in utts]).astype(np.float64)
    A /= np.linalg.norm(A, axis=1, keepdims=True) + 1e-12
    B /= np.linalg.norm(B, axis=1, keepdims=True) + 1e-12
    S = A @ B.T
    n = len(utts)
    off = (S.sum() - np.trace(S)) / max(n * n - n, 1)
    # linear CKA on centred features
    Ac, Bc = A - A.mean(0), B - B.mean(0)
    cka = np.linalg.norm(Ac.T @ Bc) ** 2 / (np.linalg.norm(Ac.T @ Ac) * np.linalg.norm(Bc.T @ Bc) + 1e-12)
    return S, {"diag_mean": float(np.trace(S) / n), "offdiag_mean": float(off),
               "diagonal_dominance": float(np.trace(S) / n - off), "linear_cka": float(cka), "utts": n}


def check_recordings(data_dir: str, limit: int = 0) -> int:
    """How many recordings the (first ``limit``) utterances of ``data_dir`` come from; ``SystemExit``
    naming the dir when there are too few for a bootstrap over recordings."""
    from avsr.data.datadir import read_datadir
    from avsr.eval.claims import MIN_RECORDINGS
    dd = read_datadir(data_dir)
    n = len({dd.recording_of(u) for u in dd.utts[: limit or None]})
    if n < MIN_RECORDINGS:
        raise SystemExit(f"avsr eval: --bootstrap_unit recording needs at least {MIN_RECORDINGS} recordings; the "
                         f"utterances of {data_dir} come from {n} (its segments file; without one, each utterance "
                         "is its own recording)")
    return n


def cell_intervals(out: dict, unit: str, num: int = 1000) -> float:
    """Sets ``lo``/``hi`` of every cell of ``out["cer"]`` (a sweep.json dict with its per-utterance errors)
    to the 95 % interval of a bootstrap over ``unit`` (:class:`avsr.eval.claims.Resampler`, seed 0; over
    utterances it draws what :func:`avsr.eval.metrics.bootstrap_ci` draws; clipped at 0).  Returns the
    resamples' small-sample widening (1 over utterances)."""
    from avsr.eval.claims import Resampler, cell_interval
    rs = Resampler(out, num=num, seed=0, unit=unit)
    for m, row in out["cer"].items():
        for c, cell in row.items():
            lo, hi = cell_interval(rs.boot(m, c) / 100.0)
            cell.update(lo=lo, hi=hi)
    return rs.widen


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    import torch
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    from avsr.data.dataset import AVSRDataset
    from avsr.eval.metrics import bootstrap_ci, utt_errors
    from avsr.eval.sweep import default_conditions, run_sweep, sweep_areas
    from avsr.inference import Speech2Text

    from avsr.inference import check_device
    check_device(args.device)
    if args.bootstrap_unit == "recording":      # fail before loading and decoding, not after
        check_recordings(args.data_dir, args.limit)
    specs = parse_models(args.models)
    for opt in ("baseline", "reference"):      # before any model is loaded
        if getattr(args, opt) and getattr(args, opt) not in specs:
            raise SystemExit(f"avsr eval: --{opt} {getattr(args, opt)!r} is not one of the --models names "
                             f"{list(specs)}")
    unique, alias = dedupe_specs(specs)
    decoders = {}
    for name, (path, thr) in unique.items():
        kw = decoder_overrides(args)
        if thr != PACKED:
            kw["adapter_threshold"] = thr
        decoders[name] = Speech2Text.from_packed(path, device=args.device, beam_size=args.beam_size,
                                               ctc_greedy=args.ctc_greedy, **kw)
    thresholds = {n: decoders[alias.get(n, n)].adapter_threshold for n in specs}
    search = "ctc_greedy" if args.ctc_greedy else f"beam{args.beam_size}"
    ds = AVSRDataset(args.data_dir, None, modality="audiovisual")
    conds = default_conditions(args.rates, args.segment_rates, not args.no_whole, args.snrs)
    os.makedirs(args.out_dir, exist_ok=True)
    # finished batches go to progress.jsonl: the same command, started again after a kill, decodes the rest
    # (the statistics and renderings below do not enter the signature: they are recomputed anyway)
    log = BatchLog(os.path.join(args.out_dir, PROGRESS), {
        **{k: v for k, v in sorted(vars(args).items()) if k in DECODE_ARGS},
        "models": {n: [os.path.abspath(p), path_stamp(p)] for n, (p, _) in unique.items()},
        "thresholds": {n: thr for n, (_, thr) in unique.items()},
        "data_dir": os.path.abspath(args.data_dir), "data_files": path_stamp(args.data_dir, exclude=args.out_dir)})
    if log.restarted:
        print(f"avsr eval: {log.path} is from another command (models, data or options differ): starting over",
              file=sys.stderr)
    elif log.records:
        print(f"avsr eval: resuming {args.out_dir}: {len(log.records)} batches already decoded", file=sys.stderr)
    t0 = time.perf_counter()
    res = run_sweep(decoders, ds, conds, batch_size=args.batch_size, cache=True, seed=args.seed, limit=args.limit,
                    collect_fused=args.similarity_rates, log=log)
    wall = time.perf_counter() - t0
    _expand(res, alias, specs)
    models = list(specs)          # every name given, in order (aliases share their model's output)
    refs = {u: ds.dd.text[u] for u in ds.utt_ids[: args.limit or None]}
    table, utt_err, ref_chars = {}, {}, None
    for m in models:
        table[m], utt_err[m] = {}, {}
        for c in res["conditions"]:
            hy = res["hyps"][m][c]
            ee = [utt_errors(refs[u], hy.get(u, "")) for u in sorted(refs)]
            utt_err[m][c] = [int(e) for e, _ in ee]
            ref_chars = ref_chars or [n for _, n in ee]     # the same for every model and condition
            ci = bootstrap_ci([e for e, _ in ee], [n for _, n in ee], num=args.bootstrap, seed=0)
            row = {k: ci[k] for k in ("cer", "lo", "hi", "errors", "ref_chars")}
            if args.baseline and m != args.baseline:     # relative CER: the A0 output as reference
                base = res["hyps"][args.baseline][c]
                rr = [utt_errors(base.get(u, ""), hy.get(u, "")) for u in sorted(refs)]
                row["relative_cer_vs_baseline"] = sum(e for e, _ in rr) / max(sum(n for _, n in rr), 1)
            table[m][c] = row
    out = {"data_dir": os.path.abspath(args.data_dir), "search": search, "seed": args.seed,
           "models": {n: {"path": os.path.abspath(p), "adapter_threshold": thresholds[n],
                          "fusion": decoders[alias.get(n, n)].fusion}
                      for n, (p, _) in specs.items()},
           "conditions": res["conditions"], "cer": table, "utts": len(refs),
           # per-utterance errors (utterances in sorted order) for paired bootstrap comparisons
           "utt_ids": sorted(refs), "utt_ref_chars": ref_chars, "utt_errors": utt_err,
           # each utterance's recording (segments), for intervals that resample whole sessions
           "utt_recordings": [ds.dd.recording_of(u) for u in sorted(refs)],
           "timing": {"wall_seconds": wall, "load_seconds": res["load_seconds"], "per_model": res["timing"],
                      "resumed_utts": res["resumed_utts"]}}
    out["bootstrap"] = {"unit": args.bootstrap_unit, "resamples": args.bootstrap}
    if args.bootstrap_unit != "utterance":     # every cell's interval from whole recordings instead
        out["bootstrap"]["widen"] = cell_intervals(out, args.bootstrap_unit, num=args.bootstrap)
    if alias:
        out["decoded_as"] = alias
    out["skipped"] = res["skipped"]       # unreadable media: empty hypotheses in every cell
    with open(os.path.join(args.out_dir, "skipped"), "w", encoding="utf-8") as f:
        for u, why in res["skipped"].items():
            f.write(f"{u} {why}\n")
            print(f"skipped {u}: {why}", file=sys.stderr)
    if args.reference and args.reference in table:
        # over the paper's rates 0/0.25/0.5/0.75/1 when the sweep has them (the whole grid otherwise)
        areas = sweep_areas(table, args.reference)
        if areas:
            out["degradation_area"] = {m: areas[m] for m in models}
    if args.similarity_rates and args.baseline:
        sims, mats = {}, {}
        for m in models:
            if m == args.baseline:
                continue
            sims[m] = {}
            for r in args.similarity_rates:
                S, st = similarity(res["fused"][args.baseline][float(r)], res["fused"][m][float(r)])
                sims[m][f"{r:g}"] = st
                mats[(m, r)] = S
        out["similarity"] = sims
        _plot_similarity(mats, args, os.path.join(args.out_dir, "similarity.png"))
    if args.compare_uncached:
        t1 = time.perf_counter()
        unc = run_sweep(decoders, ds, conds, batch_size=args.batch_size, cache=False, seed=args.seed,
                        limit=args.limit)
        _expand(unc, alias, specs)
        wall_u = time.perf_counter() - t1
        out["uncached"] = {"wall_seconds": wall_u, "per_model": unc["timing"],
                           "identical_hyps": unc["hyps"] == res["hyps"],
                           # (a resumed run's cached wall time covers only part of the set: no ratio)
                           "cost_ratio_cached_vs_uncached": None if res["resumed_utts"] else
                           (wall - res["load_seconds"]) / max(wall_u - unc["load_seconds"], 1e-9)}
    with open(os.path.join(args.out_dir, "hyps.json"), "w", encoding="utf-8") as f:
        json.dump(res["hyps"], f, indent=0, ensure_ascii=False, sort_keys=True)
    with open(os.path.join(args.out_dir, "sweep.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
    md = render_md(out, args)
    with open(os.path.join(args.out_dir, "sweep.md"), "w", encoding="utf-8") as f:
        f.write(md)
    _plot(out, args, os.path.join(args.out_dir, "cer_vs_frame_loss.png"))
    log.finish()
    print(md)
    print(f"plot: {os.path.join(args.out_dir, 'cer_vs_frame_loss.png')}")
    return 0


def render_md(out, args) -> str:
    """sweep.md (the renderer: :func:`avsr.eval.render.sweep_md`)."""
    return sweep_md(out, reference=args.reference, baseline=args.baseline)


def _plot(out, args, path):
    plot_sweep(out, args.rates, args.baseline, path)


def _plot_similarity(mats, args, path):
    plot_similarity(mats, path)


if __name__ == "__main__":
    sys.exit(main())
