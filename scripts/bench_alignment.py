#!/usr/bin/env python3
"""Timing accuracy of CTC forced alignment against SynthMISP's ground-truth character times.

For every segment of a data dir made from a SynthMISP corpus, the reference text is force-aligned
on the packed model's CTC posteriors (``Speech2Text.ctc_posteriors`` of the segment's audio, then
``Speech2Text.align`` with the segment's start as time offset: the calls of
``tests/test_alignment.py::test_forced_alignment_matches_synthmisp_truth``), and each character's
aligned interval is compared with the generator's (:func:`avsr.synthmisp.truth.segment_truths`).

Reported per set (``--data_dir`` may be given several times; each becomes a key of ``sets``):

* ``midpoint`` / ``start`` / ``end``: errors of the interval midpoints and boundaries (aligned minus
  true, seconds): share within 40 / 80 / 160 ms, median and 90th percentile of the absolute error,
  mean signed error;
* ``spike_centre``: the same for the centre of the token's CTC spike frames (what the model places;
  the interval rule of :mod:`avsr.alignment` then extends it over the blanks);
* ``by_overlap``: midpoint errors of segments with and without another talker speaking during the
  turn (the truth is the segment talker's; the audio holds both), and of characters that sound
  while another talker speaks;
* ``oracle_spikes``: the same timing rule on posteriors with one spike per character at the encoder
  frame nearest its true midpoint: the error the frame grid and the rule add by themselves;
* ``share_at_edges``: share of aligned CTC spikes in the first or last ``edge_frames`` encoder frames
  of a segment, and of true midpoints there; ``padded_probe``: the alignment again with
  ``--pad_probe`` seconds of digital silence before and after each segment (a CTC that follows the
  speech keeps its times; one that places tokens by their distance to the input's edges moves them
  into the silence);
* ``ctc_greedy_cer``: CER of the CTC head's greedy output (the posteriors aligned on);
* ``aligner`` (a packed model with the local CTC aligner of ``avsr train_aligner``, or ``--aligner_dir``):
  the same errors for the times :meth:`Speech2Text.time_tokens` gives from the aligner (what
  ``transcribe`` uses; each token's own frames), by overlap, and with the silence of ``--pad_probe``;
* counts: segments, segments without a turn (filler intervals), alignment failures, characters.

    python scripts/bench_alignment.py --model exp/.../packed/a0 --corpus corpora/synthmisp \\
        --data_dir data/eval --data_dir data/dev --out docs/results/bench_alignment.json

With ``--aligner_dir`` and no ``--model``, only the aligner is measured (its ``aligner`` section per set).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench_common import command_line, emit, machine_info  # noqa: E402

TOLERANCES_MS = (40, 80, 160)


def error_stats(err) -> dict:
    """Summary of signed errors (seconds)."""
    e = np.asarray(err, dtype=np.float64)
    if not len(e):
        return {"n": 0}
    a = np.abs(e)
    out = {"n": int(len(e))}
    out.update({f"within_{t}ms": round(float((a <= t / 1000 + 1e-9).mean()), 4) for t in TOLERANCES_MS})
    out.update({"median_abs_ms": round(float(np.median(a)) * 1000, 1),
                "p90_abs_ms": round(float(np.percentile(a, 90)) * 1000, 1),
                "mean_signed_ms": round(float(e.mean()) * 1000, 1)})
    return out


def oracle_logp(T: int, vocab: int, ids, mids, offset: float, stride: float, seg_start: float):
    """Posteriors ``[T, V]`` with one spike per character at the encoder frame whose centre is nearest
    the true midpoint (blank elsewhere): what a perfectly placed CTC would give; ``None`` when the
    spikes do not fit in ``T`` frames."""
    lp = np.full((T, vocab), np.log(1e-4), dtype=np.float32)
    lp[:, 0] = np.log(1 - 1e-4 * (vocab - 1))
    prev, prev_id = -1, None
    for tok, m in zip(ids, mids):
        f = max(int(round((m - seg_start - offset) / stride - 0.5)), prev + (2 if tok == prev_id else 1))
        if f >= T:
            return None
        lp[f] = np.log(1e-4)
        lp[f, tok] = np.log(1 - 1e-4 * (vocab - 1))
        prev, prev_id = f, tok
    return lp


def measure(s2t, corpus: str, data_dir: str, pad_probe: float = 1.0, edge_frames: int = 5) -> dict:
    import torch

    from avsr.alignment import AlignmentError
    from avsr.decoding.ctc_greedy import ctc_greedy
    from avsr.data.datadir import read_datadir
    from avsr.eval.metrics import utt_errors
    from avsr.synthmisp.truth import segment_truths
    from frontends.audio import load_audio
    from frontends.constants import SAMPLE_RATE

    wav = read_datadir(data_dir).wav
    truths = segment_truths(corpus, data_dir)
    has_align_head = getattr(s2t.model, "align_ctc", None) is not None
    off, stride = s2t.frame_times()
    rows = {k: [] for k in ("midpoint", "start", "end", "spike_centre")}
    oracle = {k: [] for k in ("midpoint", "start", "end")}
    padded = []
    seg_ov, char_ov = [], []
    edge = {"aligned_spikes": [], "true_midpoints": [], "aligned_spikes_padded": []}
    failed, no_turn, audio_s, oracle_skipped = [], 0, 0.0, 0
    al = {k: [] for k in ("midpoint", "start", "end", "midpoint_padded")}
    al_failed = 0
    greedy_err = greedy_len = 0
    t0 = time.perf_counter()
    for st in truths:
        if st.turn is None:
            no_turn += 1
            continue
        audio = load_audio(wav[st.session + "_Far"], start=st.start, end=st.end)
        audio_s += len(audio) / SAMPLE_RATE
        lp, mod = s2t.ctc_posteriors(s2t.make_batch([{"audio": audio}]))[0]
        alp = (s2t.ctc_posteriors(s2t.make_batch([{"audio": audio}]), for_alignment=True)[0][0]
               if has_align_head else lp)           # a model's alignment CTC, when it has one
        ids = s2t.tokenizer.encode(st.text)
        hyp = ctc_greedy(torch.from_numpy(lp)[None], torch.tensor([lp.shape[0]]))[0]
        e, n = utt_errors(st.text, s2t.tokenizer.decode(hyp))
        greedy_err, greedy_len = greedy_err + e, greedy_len + n
        try:
            tt = s2t.align(ids, alp, mod, time_offset=st.start)
        except AlignmentError as e:
            failed.append(f"{st.utt}: {e}")
            continue
        if len(tt) != len(st.chars):
            raise SystemExit(f"{st.utt}: {len(tt)} tokens aligned for {len(st.chars)} characters "
                             "(the token list does not split the text into characters)")
        T = lp.shape[0]
        mids = [(a + b) / 2 for _, a, b in st.chars]
        for x, (_, a, b), m in zip(tt, st.chars, mids):
            rows["midpoint"].append((x.start + x.end) / 2 - m)
            rows["start"].append(x.start - a)
            rows["end"].append(x.end - b)
            spike = st.start + off + (x.first_frame + x.last_frame + 1) / 2 * stride
            rows["spike_centre"].append(spike - m)
            seg_ov.append(st.overlap > 0)
            edge["aligned_spikes"].append(x.first_frame < edge_frames or x.last_frame >= T - edge_frames)
            edge["true_midpoints"].append(m - st.start < off + edge_frames * stride
                                          or m - st.start >= off + (T - edge_frames) * stride)
        char_ov += st.char_overlapped
        if s2t.aligner is not None:
            try:
                att = s2t.time_tokens(ids, audio, None, mod, time_offset=st.start)
            except AlignmentError:
                al_failed += 1
                att = [None] * len(ids)
            for x, (_, a, b), m in zip(att, st.chars, mids):
                al["midpoint"].append(np.nan if x is None else (x.start + x.end) / 2 - m)
                al["start"].append(np.nan if x is None else x.start - a)
                al["end"].append(np.nan if x is None else x.end - b)
            if pad_probe > 0:
                z = np.zeros(int(round(pad_probe * SAMPLE_RATE)), np.float32)
                try:
                    ptt = s2t.time_tokens(ids, np.concatenate([z, audio, z]), None, mod,
                                          time_offset=st.start - len(z) / SAMPLE_RATE)
                    al["midpoint_padded"] += [(x.start + x.end) / 2 - m for x, m in zip(ptt, mids)]
                except AlignmentError:
                    pass
        olp = oracle_logp(T, lp.shape[1], ids, mids, off, stride, st.start)
        if olp is None:
            oracle_skipped += 1
        else:
            for x, (_, a, b), m in zip(s2t.align(ids, olp, mod, time_offset=st.start), st.chars, mids):
                oracle["midpoint"].append((x.start + x.end) / 2 - m)
                oracle["start"].append(x.start - a)
                oracle["end"].append(x.end - b)
        if pad_probe > 0:                  # the same audio between two stretches of digital silence
            z = np.zeros(int(round(pad_probe * SAMPLE_RATE)), np.float32)
            plp, pmod = s2t.ctc_posteriors(s2t.make_batch([{"audio": np.concatenate([z, audio, z])}]), for_alignment=True)[0]
            ptt = s2t.align(ids, plp, pmod, time_offset=st.start - len(z) / SAMPLE_RATE)
            P = plp.shape[0]
            for x, m in zip(ptt, mids):
                padded.append((x.start + x.end) / 2 - m)
                edge["aligned_spikes_padded"].append(x.first_frame < edge_frames or x.last_frame >= P - edge_frames)
    wall = time.perf_counter() - t0
    mid = np.array(rows["midpoint"])
    seg_ov, char_ov = np.array(seg_ov, bool), np.array(char_ov, bool)
    out = {"segments": len(truths), "segments_without_turn": no_turn,
           "segments_overlapped": int(sum(1 for st in truths if st.turn is not None and st.overlap > 0)),
           "alignment_failures": len(failed), "failures": failed[:10], "characters": int(len(mid)),
           "ctc_greedy_cer": round(greedy_err / max(greedy_len, 1), 4),
           "audio_seconds": round(audio_s, 1), "wall_seconds": round(wall, 1)}
    out.update({k: error_stats(v) for k, v in rows.items()})
    out["by_overlap"] = {
        "segment_not_overlapped": error_stats(mid[~seg_ov]),
        "segment_overlapped": error_stats(mid[seg_ov]),
        "char_during_other_talker": error_stats(mid[char_ov]),
        "char_alone": error_stats(mid[~char_ov]),
    }
    out["oracle_spikes"] = {**{k: error_stats(v) for k, v in oracle.items()}, "segments_skipped": oracle_skipped}
    out["edge_frames"] = edge_frames
    out["share_at_edges"] = {k: round(float(np.mean(v)), 4) for k, v in edge.items() if v}
    if pad_probe > 0:
        out["padded_probe"] = {"pad_seconds": pad_probe, "midpoint": error_stats(padded)}
    if s2t.aligner is not None:
        out["aligner"] = aligner_section(al, seg_ov, char_ov, al_failed, s2t.aligner)
    return out


def aligner_section(rows, seg_ov, char_ov, failures: int, aligner) -> dict:
    """The ``aligner`` section: error stats of ``rows`` (signed errors per key; NaN = not aligned), the midpoints
    by overlap (``seg_ov`` / ``char_ov``: per character, aligned with ``rows["midpoint"]``)."""
    mid = np.array(rows["midpoint"], dtype=np.float64)
    ok = ~np.isnan(mid)
    return {"failures": failures,
            **{k: error_stats(np.array(v)[~np.isnan(np.array(v))]) for k, v in rows.items() if v},
            "by_overlap": {"segment_not_overlapped": error_stats(mid[ok & ~seg_ov]),
                           "segment_overlapped": error_stats(mid[ok & seg_ov]),
                           "char_during_other_talker": error_stats(mid[ok & char_ov]),
                           "char_alone": error_stats(mid[ok & ~char_ov])},
            "receptive_field_s": round(aligner.receptive_field(), 3), "directions": aligner.cfg.directions,
            "adapt_steps": aligner.cfg.adapt_steps, "rule": aligner.cfg.rule,
            **({"posterior_scale": aligner.cfg.posterior_scale, "posterior_margin": aligner.cfg.posterior_margin}
               if aligner.cfg.rule == "posterior" else {})}


def measure_aligner(aligner, tokenizer, corpus: str, data_dir: str, pad_probe: float = 1.0) -> dict:
    """The ``aligner`` section of :func:`measure` for an aligner alone (no recognition model)."""
    from avsr.alignment import AlignmentError
    from avsr.data.datadir import read_datadir
    from avsr.synthmisp.truth import segment_truths
    from frontends.audio import load_audio
    from frontends.constants import SAMPLE_RATE

    wav = read_datadir(data_dir).wav
    truths = segment_truths(corpus, data_dir)
    rows = {k: [] for k in ("midpoint", "start", "end", "midpoint_padded")}
    seg_ov, char_ov, failed, no_turn = [], [], 0, 0
    align_s = audio_s = 0.0
    t0 = time.perf_counter()
    for st in truths:
        if st.turn is None:
            no_turn += 1
            continue
        audio = load_audio(wav[st.session + "_Far"], start=st.start, end=st.end)
        ids = tokenizer.encode(st.text)
        mids = [(a + b) / 2 for _, a, b in st.chars]
        t1 = time.perf_counter()
        try:
            tt = aligner.times(audio, ids, time_offset=st.start)
        except AlignmentError:
            failed += 1
            continue
        finally:
            align_s += time.perf_counter() - t1
            audio_s += len(audio) / SAMPLE_RATE
        if len(tt) != len(st.chars):
            raise SystemExit(f"{st.utt}: {len(tt)} tokens aligned for {len(st.chars)} characters")
        for x, (_, a, b), m in zip(tt, st.chars, mids):
            rows["midpoint"].append((x.start + x.end) / 2 - m)
            rows["start"].append(x.start - a)
            rows["end"].append(x.end - b)
            seg_ov.append(st.overlap > 0)
        char_ov += st.char_overlapped
        if pad_probe > 0:
            z = np.zeros(int(round(pad_probe * SAMPLE_RATE)), np.float32)
            ptt = aligner.times(np.concatenate([z, audio, z]), ids, time_offset=st.start - len(z) / SAMPLE_RATE)
            rows["midpoint_padded"] += [(x.start + x.end) / 2 - m for x, m in zip(ptt, mids)]
    return {"segments": len(truths), "segments_without_turn": no_turn, "characters": len(rows["midpoint"]),
            "wall_seconds": round(time.perf_counter() - t0, 1),
            "align_seconds": round(align_s, 1), "audio_seconds": round(audio_s, 1),
            "aligner": aligner_section(rows, np.array(seg_ov, bool), np.array(char_ov, bool), failed, aligner)}


def model_info(path: str) -> dict:
    info = {"path": path}
    meta = os.path.join(path, "meta.json")
    if os.path.isfile(meta):
        with open(meta) as f:
            m = json.load(f)
        best = (m.get("training") or {}).get("best")
        if best:
            info["valid_cer_best"] = round(float(best[0][0]), 4)
        for k in ("num_parameters", "source_weights"):
            if k in m:
                info[k] = m[k]
    return info


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--model", default=None, help="packed model dir (avsr pack); without it, --aligner_dir alone")
    ap.add_argument("--corpus", required=True, help="the SynthMISP corpus the data dirs were made from")
    ap.add_argument("--data_dir", action="append", required=True,
                    help="data dir (several: --data_dir A --data_dir B); its base name is the key in 'sets'")
    ap.add_argument("--model_description", default="", help="words naming the model in the rendered docs")
    ap.add_argument("--pad_probe", type=float, default=1.0,
                    help="also align each segment with this many seconds of digital silence added before and "
                         "after it (a model whose CTC follows the speech keeps its times; 0: skip)")
    ap.add_argument("--aligner_dir", default=None,
                    help="an avsr train_aligner dir to measure with the model (default: the pack's aligner, if any)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--out", default=None, help="JSON result file")
    args = ap.parse_args(argv)

    import torch
    torch.set_num_threads(args.threads)
    if not args.model:
        if not args.aligner_dir:
            ap.error("give --model, --aligner_dir or both")
        from avsr.models.aligner import load_aligner
        from avsr.text.tokens import Tokenizer
        aligner = load_aligner(args.aligner_dir)
        tok = Tokenizer(os.path.join(args.aligner_dir, "tokens.txt"))
        res = {"command": command_line(), "machine": machine_info(), "model": None, "aligner": args.aligner_dir,
               "model_description": args.model_description, "corpus": args.corpus,
               "tolerances_ms": list(TOLERANCES_MS), "sets": {}}
        tr = os.path.join(args.aligner_dir, "train_result.json")
        if os.path.isfile(tr):
            with open(tr) as f:
                t = json.load(f)
            res["aligner_training"] = {k: t.get(k) for k in ("parameters", "receptive_field_s", "train_utterances",
                                                             "wall_seconds_this_call", "best", "command")}
        for d in args.data_dir:
            name = os.path.basename(os.path.normpath(d))
            res["sets"][name] = {"data_dir": d, **measure_aligner(aligner, tok, args.corpus, d, args.pad_probe)}
        emit(res, args.out)
        return
    from avsr.inference import Speech2Text
    s2t = Speech2Text.from_packed(args.model)
    if args.aligner_dir:
        from avsr.models.aligner import load_aligner
        s2t.aligner = load_aligner(args.aligner_dir)
    if s2t.model.cfg.mode == "video":
        raise SystemExit("bench_alignment: needs a model with an audio path")
    off, stride = s2t.frame_times()
    res = {"command": command_line(), "machine": machine_info(), "model": model_info(args.model),
           "aligner": args.aligner_dir or (os.path.join(args.model, "aligner.pth") if s2t.aligner is not None else None),
           "model_description": args.model_description, "corpus": args.corpus,
           "frame_times": {"offset_s": round(off, 4), "stride_s": round(stride, 4)},
           "tolerances_ms": list(TOLERANCES_MS), "sets": {}}
    for d in args.data_dir:
        name = os.path.basename(os.path.normpath(d))
        res["sets"][name] = {"data_dir": d, **measure(s2t, args.corpus, d, args.pad_probe)}
    emit(res, args.out)


if __name__ == "__main__":
    main()
