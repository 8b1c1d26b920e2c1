"""Decode a Kaldi-style data dir with a packed model and score it (CER, 95 % bootstrap interval).

    python -m avsr.bin.decode --model exp/packed/av0 --data_dir data/eval --out_dir exp/decode/av0_eval \\
        [--beam_size 10 | --ctc_greedy] [--batch_size 16] [--modality audio] \\
        [--frame_loss_rate 0.5 --frame_loss_pattern random]

Utterances are sorted by length and decoded ``--batch_size`` at a time: one encoder forward and
one beam search over all utterances of the batch.  Simulated frame loss (``--frame_loss_rate``; old name ``--missing_rate``) is
seeded per utterance and rate (:func:`avsr.robust.frame_loss.apply_missing_video`), so a test
condition is reproducible.  An utterance whose media cannot be read is skipped and listed in
``skipped`` with the reason (it then counts as an empty hypothesis in the CER, reported as
``missing_hyps``); the job goes on.

Outputs: ``text`` (hypotheses, Kaldi format), ``result.json`` (CER with bootstrap interval,
per-utterance errors, timings, utterances/s, real-time factor, peak memory, how many utterances
each path decoded), ``skipped``.  Finished batches are kept in ``progress.jsonl`` while the run lasts:
an interrupted run started again with the same command decodes only the rest (another model, data dir
or option starts it over; ``result.json`` counts the ``resumed_utts``).

A data dir without ``text`` (an evaluation release) is decoded the same way: ``text`` holds the
hypotheses and ``result.json`` has no CER (``"references": "none"``).  Utterances without lip ROI
(listed in the data dir's ``utt2audio_only``, written by ``avsr prepare_rois --keep_all``) come
with an all-absent video (:mod:`avsr.data.dataset`); :meth:`avsr.inference.Speech2Text.route` sends
them to the audio-only path (with the MS-Adapters of an adapter model), a model without adapters
gets their black frames as its missing-video input.  A model packed with ``--decode_fusion entropy``
(MLA) fuses its audio and video paths' CTC posteriors (:class:`avsr.inference.Speech2Text`,
``fusion``; black frames, the audio-only utterances' too, go through the video path and the entropy
weights decide; no frame mask is read); ``--decode_fusion
none|entropy`` overrides the pack, a forced ``--modality`` bypasses the fusion.  ``result.json`` counts them
(``audio_only_utts``) and the results per path (``decoded_by_modality``).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

from avsr.bin import HelpFormatter, add_decoder_options, add_search_options, decoder_overrides, search_overrides
from avsr.utils.io import BatchLog, path_stamp

#: finished batches of an unfinished run (removed when the run's outputs are written)
PROGRESS = "progress.jsonl"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def build_parser():
    ap = argparse.ArgumentParser(prog="avsr decode --data_dir", description=__doc__.split("\n\n")[0],
                                 formatter_class=HelpFormatter, epilog=__doc__)
    ap.add_argument("--model", required=True, help="packed model dir (avsr pack)")
    ap.add_argument("--data_dir", required=True, help="a prepared Kaldi-style data dir (wav.scp, segments, text, "
                    "roi.scp, ...; a set without text is decoded and not scored)")
    ap.add_argument("--out_dir", required=True, help="where text, result.json and the progress log go")
    add_search_options(ap)
    ap.add_argument("--modality", choices=["audio", "video", "audiovisual"], default=None,
                    help="force a modality (default: the model's; audio for an AV model when the data has no video)")
    ap.add_argument("--frame_loss_rate", "--missing_rate", dest="frame_loss_rate", type=float, default=0.0,
                    help="simulated video frame loss: share of each utterance's frames blacked out")
    ap.add_argument("--frame_loss_pattern", "--missing_pattern", dest="frame_loss_pattern", default="random",
                    choices=["random", "segment", "whole", "head", "tail"], help="which frames are lost")
    ap.add_argument("--seed", type=int, default=0, help="seed of the simulated frame loss")
    ap.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of the CER interval")
    add_decoder_options(ap)
    ap.add_argument("--limit", type=int, default=0, help="decode only the first N utterances (sorted ids; 0: all)")
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    import torch
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    from tqdm import tqdm

    from avsr.data.dataset import AUDIO_ONLY_TABLE, AVSRDataset, collate, load_items
    from avsr.eval.metrics import score_texts, summarize
    from avsr.inference import Speech2Text, check_device
    from avsr.robust.frame_loss import apply_missing_video
    from frontends.constants import SAMPLE_RATE, VIDEO_FPS

    t_start = time.perf_counter()
    check_device(args.device)
    s2t = Speech2Text.from_packed(args.model, device=args.device, **search_overrides(args), **decoder_overrides(args))
    mode = s2t.model.cfg.mode
    has_roi = any(os.path.isfile(os.path.join(args.data_dir, f)) for f in ("roi.scp", AUDIO_ONLY_TABLE))
    modality = args.modality or (mode if (mode == "audio" or has_roi) else "audio")
    ds = AVSRDataset(args.data_dir, None, modality=modality, train=False)
    idx = list(range(len(ds)))
    if args.limit:
        idx = idx[:args.limit]
    order = sorted(idx, key=lambda i: -ds.durations[i])
    os.makedirs(args.out_dir, exist_ok=True)
    hyps, skipped, timing = {}, [], {"load": 0.0, "encode": 0.0, "search": 0.0}
    by_modality: dict = {}
    audio_sec = 0.0
    # finished batches go to progress.jsonl as they end: a killed run, started again with the same
    # command, decodes only what is left (the file is removed once text and result.json are written)
    log = BatchLog(os.path.join(args.out_dir, PROGRESS), {
        **{k: v for k, v in sorted(vars(args).items()) if k not in ("out_dir", "threads", "bootstrap", "device",
                                                                          "no_progress")},
        "model": os.path.abspath(args.model), "model_files": path_stamp(args.model),
        "data_dir": os.path.abspath(args.data_dir), "data_files": path_stamp(args.data_dir, exclude=args.out_dir)})
    if log.restarted:
        print(f"avsr decode: {log.path} is from another command (model, data or options differ): starting over",
              file=sys.stderr)
    for rec in log.records:
        hyps.update(rec["hyps"])
        skipped += [tuple(x) for x in rec["skipped"]]
        audio_sec += rec["audio_seconds"]
        for m in rec["modality"].values():
            by_modality[m] = by_modality.get(m, 0) + 1
    resumed = set(hyps) | {u for u, _ in skipped}
    audio_resumed, n_resumed = audio_sec, len(hyps)      # this run's speed counts only what it decodes
    if resumed:
        print(f"avsr decode: resuming {args.out_dir}: {len(resumed)} utterances already decoded", file=sys.stderr)
    bar = tqdm(total=len(order), desc=f"decode {os.path.basename(args.data_dir.rstrip('/'))}", leave=False,
               disable=args.no_progress)
    for s in range(0, len(order), args.batch_size):
        if all(ds.utt_ids[i] in resumed for i in order[s:s + args.batch_size]):
            bar.update(len(order[s:s + args.batch_size]))
            continue
        t0 = time.perf_counter()
        items, bad = load_items(ds, order[s:s + args.batch_size])
        skipped += bad
        timing["load"] += time.perf_counter() - t0
        bar.update(len(order[s:s + args.batch_size]))
        rec = {"hyps": {}, "modality": {}, "skipped": [list(x) for x in bad], "audio_seconds": 0.0}
        if not items:
            log.append(rec)
            continue
        batch = collate(items)
        if batch.audio is not None:
            rec["audio_seconds"] = float(batch.audio_lens.sum()) / SAMPLE_RATE
        else:
            rec["audio_seconds"] = float(batch.video_lens.sum()) / VIDEO_FPS
        audio_sec += rec["audio_seconds"]
        if batch.video is not None and args.frame_loss_rate > 0:
            batch = apply_missing_video(batch, args.frame_loss_rate, args.frame_loss_pattern, seed=args.seed)
        # the modality is passed on only when forced: otherwise Speech2Text.route may send an utterance
        # with too few present frames (no lip ROI, simulated frame loss) to the audio-only adapter path
        for u, r in zip(batch.utt_ids, s2t.decode_batch(batch, modality=args.modality)):
            hyps[u] = rec["hyps"][u] = r.text
            rec["modality"][u] = r.modality
            by_modality[r.modality] = by_modality.get(r.modality, 0) + 1
        log.append(rec)
    bar.close()
    timing["encode"], timing["search"] = s2t.timings["encode"], s2t.timings["search"]
    total = time.perf_counter() - t_start
    with open(os.path.join(args.out_dir, "text.tmp"), "w", encoding="utf-8") as f:
        for u in sorted(hyps):
            f.write(f"{u} {hyps[u]}\n")
    os.replace(os.path.join(args.out_dir, "text.tmp"), os.path.join(args.out_dir, "text"))
    with open(os.path.join(args.out_dir, "skipped"), "w", encoding="utf-8") as f:
        for u, why in skipped:
            f.write(f"{u} {why}\n")
    refs = {ds.utt_ids[i]: ds.dd.text[ds.utt_ids[i]] for i in idx if ds.utt_ids[i] in ds.dd.text}
    res = {"model": os.path.abspath(args.model), "data_dir": os.path.abspath(args.data_dir),
           "modality": modality, "search": s2t.search_name,
           "ctc_weight": s2t.ctc_weight, "lm_weight": 0.0 if s2t.use_greedy else s2t.lm_weight,
           "fusion": s2t.fusion if args.modality is None else None,
           "batch_size": args.batch_size,
           "frame_loss_rate": args.frame_loss_rate, "frame_loss_pattern": args.frame_loss_pattern, "seed": args.seed,
           "num_utts": len(idx), "skipped": len(skipped), "resumed_utts": len(resumed),
           "audio_only_utts": sum(1 for i in idx if ds.utt_ids[i] in ds.audio_only),
           "decoded_by_modality": dict(sorted(by_modality.items()))}
    if not ds.dd.text:
        res["references"] = "none"      # an evaluation release: hypotheses only, no CER
    if refs:
        scores, missing = score_texts(refs, hyps)
        res.update(summarize(scores, num=args.bootstrap, seed=0, missing=missing))
        res["per_utt"] = {s.utt_id: [s.errors, s.ref_len] for s in scores}
    decode_s = timing["encode"] + timing["search"]
    res["timing"] = {**{k: round(v, 3) for k, v in timing.items()}, "total": round(total, 3),
                     "audio_seconds": round(audio_sec, 2),
                     "utts_per_second": (len(hyps) - n_resumed) / decode_s if decode_s > 0 else None,
                     "rtf": decode_s / (audio_sec - audio_resumed) if audio_sec > audio_resumed else None,
                     "peak_rss_mb": round(peak_rss_mb(), 1), "threads": torch.get_num_threads()}
    with open(os.path.join(args.out_dir, "result.json.tmp"), "w") as f:
        json.dump(res, f, indent=1, ensure_ascii=False)
    os.replace(os.path.join(args.out_dir, "result.json.tmp"), os.path.join(args.out_dir, "result.json"))
    log.finish()
    cer = res.get("cer")
    print(f"{args.out_dir}: {len(hyps)} utts" + (f", CER {100 * cer:.2f} % [{100 * res['lo']:.2f}, "
                                                  f"{100 * res['hi']:.2f}]" if cer is not None else
                                                  ", no references (no CER)" if not refs else "")
          + f", {len(skipped)} skipped, {total:.1f} s")
    for u, why in skipped:
        print(f"skipped {u}: {why}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
