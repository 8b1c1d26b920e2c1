#!/usr/bin/env python3
"""Decoding speed on a data dir with a packed model, in one run:

* ``batched``: our beam search batched across utterances (``--batch_size`` per forward);
* ``per_utt``: ESPnet's ``BatchBeamSearch`` (beam vectorised, one utterance at a time), the
  standard per-utterance decoder, same scorers/weights/beam;
* ``greedy``: CTC greedy, batched.

Each mode runs in its own subprocess (so peak RSS is per mode) on the same utterances; the encoder
runs batched in ``batched``/``greedy`` and per utterance in ``per_utt``.  Reports utterances/s,
real-time factor (decode seconds / audio seconds), the split into encoder and search seconds,
peak RSS, CER, and whether batched and per-utterance hypotheses are identical.  ``--batch_size``
takes several values (one batched run each; the first is the headline and greedy's).

    python scripts/bench_decode.py --model exp/.../packed/av0 --data_dir data/eval --out docs/results/bench_decode.json
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from frontends.constants import SAMPLE_RATE, VIDEO_FPS  # noqa: E402
from _bench_common import command_line, emit, machine_info  # noqa: E402


def run_mode(args) -> dict:
    import torch
    torch.set_num_threads(args.threads)
    from espnet.nets.batch_beam_search import BatchBeamSearch
    from espnet.nets.scorers.ctc import CTCPrefixScorer
    from espnet.nets.scorers.length_bonus import LengthBonus

    from avsr.data.dataset import AVSRDataset, collate
    from avsr.eval.metrics import score_texts, summarize
    from avsr.inference import Speech2Text

    s2t = Speech2Text.from_packed(args.model, beam_size=args.beam_size, ctc_greedy=args.mode == "greedy")
    model = s2t.model
    modality = model.cfg.mode
    ds = AVSRDataset(args.data_dir, None, modality=modality)
    idx = list(range(len(ds)))[: args.limit or None]
    items = [ds[i] for i in idx]     # media loading is not timed
    audio_sec = sum(len(it["audio"]) / SAMPLE_RATE if it["audio"] is not None else len(it["video"]) / VIDEO_FPS
                    for it in items)
    order = sorted(range(len(items)), key=lambda i: -(len(items[i]["audio"]) if items[i]["audio"] is not None
                                                      else len(items[i]["video"])))
    hyps = {}
    bs_n = args.batch_size[0]
    enc_sec = 0.0
    t0 = time.perf_counter()
    if args.mode in ("batched", "greedy"):
        for s in range(0, len(order), bs_n):
            batch = collate([items[i] for i in order[s:s + bs_n]])
            for u, r in zip(batch.utt_ids, s2t.decode_batch(batch)):
                hyps[u] = (r.text, r.token_ids)
        enc_sec = s2t.timings["encode"]
    else:
        V = model.cfg.vocab_size
        w = s2t.ctc_weight
        bs = BatchBeamSearch(
            scorers={"decoder": model.decoder, "ctc": CTCPrefixScorer(model.ctc, model.eos),
                     "length_bonus": LengthBonus(V)},
            weights={"decoder": 1.0 - w, "ctc": w, "length_bonus": s2t.penalty},
            beam_size=args.beam_size, vocab_size=V, sos=model.sos, eos=model.eos, token_list=None,
            pre_beam_score_key="full")
        import logging
        logging.getLogger().setLevel(logging.WARNING)
        with torch.no_grad():
            for i in order:
                batch = collate([items[i]])
                te = time.perf_counter()
                enc, lens, _ = model.encode(batch, modality=modality)
                enc_sec += time.perf_counter() - te
                nb = bs(enc[0, :int(lens[0])], maxlenratio=0.0, minlenratio=0.0)
                ids = [t for t in nb[0].yseq.tolist()[1:-1]] if nb else []
                hyps[batch.utt_ids[0]] = (s2t.tokenizer.decode(ids), [int(t) for t in ids])
    el = time.perf_counter() - t0
    refs = {ds.utt_ids[i]: ds.dd.text[ds.utt_ids[i]] for i in idx}
    scores, missing = score_texts(refs, {u: h[0] for u, h in hyps.items()})
    cer = summarize(scores, missing=missing)
    return {"mode": args.mode, "batch_size": bs_n if args.mode != "per_utt" else 1,
            "utts": len(items), "seconds": el, "encode_seconds": enc_sec, "search_seconds": el - enc_sec,
            "audio_seconds": audio_sec,
            "utts_per_second": len(items) / el, "rtf": el / audio_sec,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
            "cer": cer["cer"], "cer_lo": cer["lo"], "cer_hi": cer["hi"], "threads": args.threads,
            "hyps": {u: h[1] for u, h in hyps.items()}}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data_dir", required=True)
    ap.add_argument("--beam_size", type=int, default=10)
    ap.add_argument("--batch_size", type=int, nargs="+", default=[16],
                    help="utterances per forward for the batched modes; several values: one batched run each "
                         "(greedy uses the first)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--mode", choices=["batched", "per_utt", "greedy"], default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.mode:
        print(json.dumps(run_mode(args)))
        return
    res = {}
    b0 = args.batch_size[0]
    runs = [("greedy", "greedy", b0)] + [(f"batched@{b}", "batched", b) for b in args.batch_size] \
        + [("per_utt", "per_utt", b0)]
    for key, mode, b in runs:
        cmd = [sys.executable, os.path.abspath(__file__), "--mode", mode, "--model", args.model,
               "--data_dir", args.data_dir, "--beam_size", str(args.beam_size),
               "--batch_size", str(b), "--threads", str(args.threads), "--limit", str(args.limit)]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            raise SystemExit(f"{key} failed:\n{p.stderr[-3000:]}")
        res[key] = json.loads(p.stdout.strip().splitlines()[-1])
        print(f"{key}: {res[key]['utts_per_second']:.2f} utt/s, RTF {res[key]['rtf']:.4f}, "
              f"encode {res[key]['encode_seconds']:.1f} s, search {res[key]['search_seconds']:.1f} s, "
              f"peak {res[key]['peak_rss_mb']:.0f} MB, CER {100 * res[key]['cer']:.2f} %", file=sys.stderr)
    pu = res["per_utt"]
    batched = [k for k, _, _ in runs if k.startswith("batched@")]
    out = {"model": os.path.abspath(args.model), "data_dir": os.path.abspath(args.data_dir),
           "beam_size": args.beam_size, "batch_size": b0, "batch_sizes": list(args.batch_size),
           "modes": {k: {kk: vv for kk, vv in v.items() if kk != "hyps"} for k, v in res.items()},
           # the default (first) batch size is the headline; every batch size has its own entry
           "speedup_batched_vs_per_utt": pu["seconds"] / res[batched[0]]["seconds"],
           "speedup_batched_vs_per_utt_by_batch": {res[k]["batch_size"]: pu["seconds"] / res[k]["seconds"]
                                                    for k in batched},
           "speedup_search_only_batched_vs_per_utt": {res[k]["batch_size"]: pu["search_seconds"] / res[k]["search_seconds"]
                                                      for k in batched},
           "speedup_greedy_vs_per_utt": pu["seconds"] / res["greedy"]["seconds"],
           "identical_hyps_batched_vs_per_utt": {
               res[k]["batch_size"]: f"{sum(res[k]['hyps'][u] == pu['hyps'].get(u) for u in res[k]['hyps'])}"
                                     f"/{len(res[k]['hyps'])}" for k in batched},
           "machine": machine_info(), "command": command_line()}
    emit(out, args.out)


if __name__ == "__main__":
    main()
