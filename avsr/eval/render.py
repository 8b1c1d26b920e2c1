"""Every Markdown / PNG report of the toolkit, rendered from result dicts (the JSONs the commands write).

* :func:`report_md`: the recipe's CER table (``avsr.bin.report``, stage 14);
* :func:`sweep_md`, :func:`plot_sweep`, :func:`plot_similarity`: ``avsr eval``'s ``sweep.md`` and PNGs;
* ``sec_*``: the sections of the benchmark page and of the robustness tables (from ``docs/results/*.json``);
* :func:`benchmarks_md`, :func:`synthmisp_results_md`, :func:`misp2022_results_md`: ``docs/BENCHMARKS.md``
  and the recipes' ``RESULTS.md``;
* :func:`leaderboard_md`: the leaderboard section of ``recipes/synthmisp/RESULTS.md`` (from
  ``docs/results/leaderboard.json``, :mod:`avsr.eval.leaderboard`; absent while that file does not exist);
* :func:`render_docs`: every committed report from the committed JSONs (``python -m avsr.bin.report --docs``);
  a test checks that this gives the committed files byte for byte.
"""
from __future__ import annotations

import json
import os
from typing import Dict, Optional

NOTES_DIR: Optional[str] = None     # lab notes appended to sections (docs/notebook); None on the user pages


def machine(r):
    m = r.get("machine", {})
    return f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores, {m.get('memory', '?')}, Python {m.get('python', '?')}"


def header(r):
    return [f"- command: `{r.get('command', '?')}`", f"- machine: {machine(r)}", ""]


def sec_roi(r):
    out = ["## Lip-ROI throughput (one core)", ""] + header(r)
    out += ["| step | frames/s (median) | runs |", "|---|---|---|"]
    for k, v in r["results"].items():
        out.append(f"| {k} | {v['frames_per_s']} | {', '.join(str(x) for x in v['runs'])} |")
    out += ["", f"Video: {r['video']['width']}x{r['video']['height']} {r['video']['codec']}, "
            f"{r['video']['num_frames']} frames; ROI {r['roi']['size']}x{r['roi']['size']}.", ""]
    return out


def sec_roi_speed(r):
    """``scripts/bench_roi.py --before_after``: the earlier and the current decode(+crop) path in one run."""
    res, ra, same = r["results"], r["ratios"], r["identical"]
    out = ["## Lip-ROI decode + crop, earlier vs current path (one core, one run, alternating)", ""] + header(r)
    out += ["| stage | what | frames/s (median) | runs |", "|---|---|---|---|"]
    for k, v in res.items():
        out.append(f"| {k} | {r.get('stages', {}).get(k, '')} | {v['frames_per_s']} | "
                   f"{', '.join(str(x) for x in v['runs'])} |")
    out += ["", "| ratio (medians) | value |", "|---|---|"]
    out += [f"| {k} | {v:.3f} |" for k, v in ra.items()]
    out += ["", f"ROIs identical between the two paths: official {same['official']}, toolkit {same['toolkit']}; "
            f"gray frames identical: {same['decode_gray']}. Video: {r['video']['width']}x{r['video']['height']} "
            f"{r['video']['codec']}, {r['video']['num_frames']} frames; ROI {r['roi']['size']}x{r['roi']['size']}.", ""]
    return out


def _batch(r) -> str:
    """``, batch N`` of a CLI benchmark JSON that records ``avsr decode --batch_size``."""
    return f", batch {r['batch_size']} segments" if r.get("batch_size") else ""


def sec_cli_memory(r):
    """``scripts/bench_cli.py --before_after``: peak RSS of ``avsr decode`` holding vs streaming the videos."""
    out = ["## `avsr decode` memory: whole videos held vs cropped while decoding", ""] + header(r)
    out += [f"Model `{r['model']}`, {r['pairs']} pairs ({r['pairs_kind']}) from `{r['corpus']}` "
            f"({r['split']}), search {r['search']}{_batch(r)}, {r['rounds']} round(s) alternating before/after, each run "
            "its own process.", "",
            "| path | peak RSS MB (median) | wall s | video decode + ROI s |", "|---|---|---|---|"]
    for tag in ("before", "after"):
        m = r["median"][tag]
        out.append(f"| {tag}: {r[tag]} | {m['peak_rss_mb']:.0f} | {m['wall_seconds']:.1f} | "
                   f"{m['video_decode_plus_roi_seconds']:.1f} |")
    out += ["", f"Transcripts identical (JSON lines' texts, {r['texts_compared']} pairs): **{r['texts_identical']}**"
            + (f"; differing: {', '.join(r['differing_keys'])}" if r["differing_keys"] else "") + ".", ""]
    return out


def sec_detect(r):
    """``scripts/bench_detect.py``: per-frame whole-frame detection (the reference) against every N-th frame
    and searches near the last face."""
    c = r["clip"]
    names = {"frame": "whole frame", "near": "cascade search near the last face",
             "window": "whole-frame search evaluated near the last face"}
    out = ["## Face/mouth detection: speed against per-frame detection (one core)", ""] + header(r)
    out += [f"Clip: {c['source']}, {c['width']}x{c['height']}, {c['fps']:g} fps, {c['frames']} frames; detector "
            f"{r['detector']}; reference: {r['reference']}; {r['runs']} runs, settings alternating. "
            "IoU: of the mouth boxes with the reference's, over frames where both have one; the target is at "
            "least 5x real time with every frame's IoU >= 0.9 (the minimum).", "",
            "| stride | search | role | ms/frame | x real time | IoU mean | IoU 5th pct | IoU min | "
            "frames equal to the reference | frames with a box |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for x in r["results"]:
        out.append(f"| {x['stride']} | {names.get(x['search'], x['search'])} | {x['role']} | {x['ms_per_frame']} | "
                   f"{x['x_real_time']} | {x['iou_mean']} | {x['iou_p5']} | {x['iou_min']} | "
                   f"{x['frames_equal_to_reference']} | {x['frames_with_box']} |")
    j = r["reference_jitter"]
    a, t, b = (j["iou_with_previous_frame"], j["iou_with_previous_frame_moving_with_the_face"],
               j["iou_one_pixel_shift"])
    out += ["", "How much the reference box moves: IoU of each frame's box with the previous frame's "
            f"{a['mean']} mean, {a['min']} min (a box moving exactly with the face: {t['mean']} mean, {t['min']} "
            f"min); IoU of the box found on the same frame shifted by one pixel (mapped back) with the unshifted "
            f"one {b['mean']} mean, {b['min']} min. The cascade's box is not a smooth function of the image, so "
            "boxes interpolated between every N-th frame miss it on some frames. `track_mouth`'s default: "
            f"stride {r['defaults']['stride']}, search `{r['defaults']['search']}` (`window`: the whole-frame "
            "search's own windows near the last face, `HaarDetector.detect_around`; the whole frame when nothing "
            "is found there)."]
    return out + [""]


def sec_alignment(r):
    """``scripts/bench_alignment.py``: CTC forced-alignment times against SynthMISP's character times."""
    sets = r["sets"]
    out = ["## CTC forced alignment: character times against SynthMISP's truth", ""] + header(r)
    desc = r.get("model_description") or f"`{r['model']['path']}`"
    out += [f"Model: {desc}. The reference text of every segment is aligned on the model's CTC posteriors "
            "(`Speech2Text.ctc_posteriors`, `Speech2Text.align`) and each character's interval is compared with "
            "the one the generator wrote (its sounds, `truth/<split>/<session>.json`). Errors are aligned minus "
            "true; the target is the character midpoint within 80 ms. Oracle: the same timing rule on posteriors "
            "with one spike per character at the encoder frame nearest its true midpoint (what the 40 ms frame "
            "grid and the rule cost by themselves).", "",
            "| set | segments aligned | characters | CTC greedy CER % | midpoint within 40 / 80 / 160 ms | median / p90 "
            "abs. error ms | mean signed ms | start within 80 ms | end within 80 ms | oracle: midpoint within 80 ms "
            "(median ms) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, x in sets.items():
        m, o = x["midpoint"], x["oracle_spikes"]["midpoint"]
        out.append(f"| {name} | {x['segments'] - x['segments_without_turn']} | {x['characters']} | "
                   f"{100 * x['ctc_greedy_cer']:.1f} | {100 * m['within_40ms']:.1f} / **{100 * m['within_80ms']:.1f}** "
                   f"/ {100 * m['within_160ms']:.1f} % | {m['median_abs_ms']:.0f} / {m['p90_abs_ms']:.0f} | "
                   f"{m['mean_signed_ms']:+.0f} | {100 * x['start']['within_80ms']:.1f} % | "
                   f"{100 * x['end']['within_80ms']:.1f} % | "
                   f"{100 * o['within_80ms']:.1f} % ({o['median_abs_ms']:.0f}) |")
    out += ["", "Midpoint within 80 ms by overlap, characters in brackets (the truth is the segment talker's; an "
            "overlapped segment's audio also holds another talker):", "",
            "| set | segments not overlapped | segments overlapped | characters while another talker speaks | "
            "characters alone |", "|---|---|---|---|---|"]
    for name, x in sets.items():
        b = x["by_overlap"]
        out.append(f"| {name} | " + " | ".join(
            f"{100 * b[k]['within_80ms']:.1f} % ({b[k]['n']})" if b[k]["n"] else "-"
            for k in ("segment_not_overlapped", "segment_overlapped", "char_during_other_talker", "char_alone")) + " |")
    ef = next(iter(sets.values()))["edge_frames"]
    out += ["", f"Where the CTC spikes are: share of aligned characters whose spike lies in the first or last {ef} "
            f"encoder frames ({ef * r['frame_times']['stride_s'] * 1000:.0f} ms) of the segment, against the share of "
            "true midpoints there; and the same segments aligned again with digital silence added before and after "
            "them (a CTC that follows the speech keeps its times):", "",
            "| set | spikes at the edges | true midpoints at the edges | with silence added: spikes at the edges | "
            "with silence added: midpoint within 80 ms |", "|---|---|---|---|---|"]
    for name, x in sets.items():
        e, p = x["share_at_edges"], x.get("padded_probe")
        out.append(f"| {name} | {100 * e['aligned_spikes']:.1f} % | {100 * e['true_midpoints']:.1f} % | "
                   + (f"{100 * e['aligned_spikes_padded']:.1f} % ({p['pad_seconds']:g} s each side) | "
                      f"{100 * p['midpoint']['within_80ms']:.1f} % |" if p else "- | - |"))
    edge_bound = all(x["share_at_edges"]["aligned_spikes"] > 2 * x["share_at_edges"]["true_midpoints"]
                     and x.get("padded_probe") and x["share_at_edges"]["aligned_spikes_padded"] > 0.5
                     for x in sets.values())
    oracle_ok = all(x["oracle_spikes"]["midpoint"]["within_80ms"] >= 0.9 for x in sets.values())
    if edge_bound and oracle_ok:
        tr = sets.get("train")
        fit = (f", and it does so on its training segments too, where its CTC greedy output is mostly right "
               f"(CER {100 * tr['ctc_greedy_cer']:.0f} %): it tells which characters were said, not when"
               if tr and tr["ctc_greedy_cer"] < 0.5 else "")
        out += ["", "This model's CTC head places most characters in the first and last frames of its input, also "
                f"when those frames are added silence{fit}. The timing rule and the frame times are not the limit "
                "(oracle column). Times from such a model are not word times; a model whose CTC spikes follow the "
                "speech is needed for them."]
    al = {name: x["aligner"] for name, x in sets.items() if x.get("aligner")}
    if al:
        out += ["", "The local CTC aligner (`avsr train_aligner`; what `transcribe` and `avsr decode` use when the packed "
                "model carries it): the same references aligned on its scores (`Speech2Text.time_tokens`):", ""]
        out += _aligner_table(al)
    return out + [""]


def _aligner_table(al):
    """Rows of the local aligner's timing errors, one per set (``{set: aligner section}``)."""
    out = ["| set | midpoint within 40 / 80 / 160 ms | median / p90 abs. error ms | start within 80 ms | "
           "end within 80 ms | segments not overlapped / overlapped: midpoint within 80 ms | with silence added: "
           "midpoint within 80 ms |", "|---|---|---|---|---|---|---|"]
    for name, a in al.items():
        m, b = a["midpoint"], a["by_overlap"]
        pad = a.get("midpoint_padded")
        out.append(f"| {name} | {100 * m['within_40ms']:.1f} / **{100 * m['within_80ms']:.1f}** / "
                   f"{100 * m['within_160ms']:.1f} % | {m['median_abs_ms']:.0f} / {m['p90_abs_ms']:.0f} | "
                   f"{100 * a['start']['within_80ms']:.1f} % | {100 * a['end']['within_80ms']:.1f} % | "
                   + " / ".join(f"{100 * b[k]['within_80ms']:.1f} %" if b[k]["n"] else "-"
                                for k in ("segment_not_overlapped", "segment_overlapped"))
                   + (f" | {100 * pad['within_80ms']:.1f} % |" if pad else " | - |"))
    return out


def sec_aligner(r):
    """``scripts/bench_alignment.py --aligner_dir`` alone: the local CTC aligner against SynthMISP's truth."""
    sets = r["sets"]
    al = {name: x["aligner"] for name, x in sets.items()}
    rf = next(iter(al.values())).get("receptive_field_s")
    t = r.get("aligner_training") or {}
    out = ["## Local CTC aligner: character times against SynthMISP's truth", ""] + header(r)
    desc = r.get("model_description") or f"`{r.get('aligner')}`"
    out += [f"Aligner: {desc} ({t.get('parameters', '?')} parameters, receptive field ±{rf:g} s, trained on "
            f"{t.get('train_utterances', '?')} segments in {float(t.get('wall_seconds_this_call') or 0) / 60:.0f} min). "
            "The reference text of every segment is aligned on its scores with the timing rule of `avsr/alignment.py` "
            "and each character's interval is compared with the one the generator wrote; errors are aligned minus true, "
            "the target is the midpoint within 80 ms.", ""]
    out += _aligner_table(al) + [""]
    speed = [f"{name} {x['audio_seconds'] / x['align_seconds']:.1f}x" for name, x in sets.items()
             if x.get("align_seconds")]
    if speed:
        a = next(iter(al.values()))
        nets = "two directions" if a.get("directions") == "both" else "one direction"
        rule = (f"; rule posterior at acoustic scale {a['posterior_scale']:g}, margin {a['posterior_margin']} frames"
                if a.get("rule") == "posterior" else "")
        out += [f"Alignment speed (the aligner's `times` alone, seconds of audio aligned per second, on the machine "
                f"above; {nets}, {a.get('adapt_steps', 0)} adaptation steps per segment and direction{rule}): "
                + ", ".join(speed) + " real time.", ""]
    return out


def sec_text(r):
    out = ["## SynthMISP text and speech", ""] + header(r)
    out += ["| quantity | value |", "|---|---|",
            f"| vocabulary (characters) | {r['vocab_size']} |",
            f"| toned syllables | {r['num_toned_syllables']} (base syllables {r['num_base_syllables']}) |",
            f"| homophone CER floor | {r['homophone_floor']} |",
            f"| held-out char-bigram perplexity (KN; {r['n_train']} train / {r['n_test']} test sentences) | "
            f"{r['heldout_char_bigram_perplexity_kn']:.1f} |",
            f"| mean sentence length | {r['mean_sentence_length']:.1f} chars |"]
    s = r.get("synthesis")
    if s:
        out += [f"| espeak-ng synthesis | {s['utterances_per_second']:.1f} utt/s, RTF {s['real_time_factor']:.4f} "
                f"({s['n_utterances']} utterances, {s['num_voices']} voices) |"]
    return out + [""]


def sec_mini(r):
    out = [f"## SynthMISP `{r['preset']}` preset: size, generation time, proxy checks", ""] + header(r)
    out += ["| split | sessions | segments | speech h | session h | segments overlapped >= 40 % | mostly undetected |",
            "|---|---|---|---|---|---|---|"]
    for s, v in r["splits"].items():
        out.append(f"| {s} | {v['sessions']} | {v['segments']} | {v['speech_hours']:.2f} | {v['session_hours']:.2f} | "
                   f"{v['segments_overlap_ge_40pct']} | {v['segments_mostly_undetected']} |")
    g = r["generation"]
    out += ["", f"Generation wall time: **{g['wall_s'] / 60:.1f} min** with --nj {r['nj']} "
            f"(resumed sessions: {g['resumed_sessions']}). CPU seconds by part (summed over sessions):", "",
            "| part | CPU s |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in g["cpu_s_by_part"].items()]
    out += ["", "Proxy checks (see docs/SYNTHMISP.md):", "",
            "| split | viseme nearest-centroid acc. (6 classes) | overlapped segments | r_target | r_interferer | r_target - r_interferer |",
            "|---|---|---|---|---|---|"]
    for s, c in r["checks"].items():
        t = c["tracking"]
        out.append(f"| {s} | {c['viseme']['accuracy']:.3f} | {t['segments']} | {t['r_target']:.3f} | "
                   f"{t['r_interferer']:.3f} | {t['r_diff']:.3f} |")
    for s, c in r["checks"].items():
        v = c["viseme"]
        out += ["", f"Viseme confusion matrix, {s} (rows true, columns predicted; test part of a seeded 70/30 split):", "",
                "| | " + " | ".join(v["classes"]) + " |", "|---" * (len(v["classes"]) + 1) + "|"]
        for name, row in zip(v["classes"], v["confusion"]):
            out.append(f"| {name} | " + " | ".join(str(x) for x in row) + " |")
    return out + [""]


def sec_prep(r):
    out = ["## MISP2022 data preparation on SynthMISP", ""] + header(r)
    out += ["| --nj | data | rois | tokens | summary | total s | ROI bytes/frame |", "|---|---|---|---|---|---|---|"]
    for nj, v in r["runs"].items():
        t = v["stage_wall_s"]
        out.append(f"| {nj} | {t['data']} | {t['rois']} | {t['tokens']} | {t['summary']} | {v['total_s']} | "
                   f"{v['roi_bytes_per_frame']} |")
    if "speedup_nj2" in r:
        out += ["", f"Speed-up --nj 1 -> 2: {r['speedup_nj2']}; outputs identical: {r['identical_outputs']}."]
    sp = r.get("summary", {}).get("splits", {})
    if sp:
        out += ["", "| split | utterances kept | hours | ROI frames | mean detected fraction |", "|---|---|---|---|---|"]
        for s, v in sp.items():
            out.append(f"| {s} | {v.get('utterances')} | {v.get('hours')} | {v.get('roi_frames')} | "
                       f"{v.get('mean_detected_fraction')} |")
    return out + [""]


def notes_md(name):
    """A hand-written diagnosis (``NOTES_DIR/<name>``) that goes with a section's numbers (lines; none if
    absent or when ``NOTES_DIR`` is None: the user pages carry no lab notes)."""
    if NOTES_DIR is None or not name:
        return []
    path = os.path.join(NOTES_DIR, name)
    return ["", open(path, encoding="utf-8").read().strip()] if os.path.isfile(path) else []


def sec_calib(r):
    out = ["## Training calibration on SynthMISP mini (A0, V, AV0)", ""] + header(r)
    out += [f"Config: `{r.get('config')}`; exp dir `{r.get('exp_dir')}`.", "",
            "| model | mode | parameters | epochs | s/epoch (median) | train s total | best dev CER (greedy) |",
            "|---|---|---|---|---|---|---|"]
    for m, v in r["models"].items():
        best = v["best"][0] if v.get("best") else None
        p = v.get("parameters") or {}
        total = f"{p['total']:,}" if "total" in p else "?"
        out.append(f"| {m} | {v['mode']} | {total} | {v['epochs']} | "
                   f"{v['epoch_train_seconds_median'] or 0:.0f} | {v['train_seconds_total'] or 0:.0f} | "
                   + (f"{100 * best[0]:.2f} % (epoch {best[1]})" if best else "-") + " |")
    rows = r.get("report") or []
    if rows:
        out += ["", "| set | model | search | CER % [95 % CI] | utts | rel. vs A0 [95 % CI] | p(not better) |",
                "|---|---|---|---|---|---|---|"]
        for x in rows:
            vb = x.get("vs_baseline")
            rel = (f"{100 * vb['rel_reduction']:+.1f} % [{100 * vb['rel_lo']:+.1f}, {100 * vb['rel_hi']:+.1f}]"
                   if vb else "")
            out.append(f"| {x['set']} | {x['model']} | {x['search']} | {100 * x['cer']:.2f} "
                       f"[{100 * x['lo']:.2f}, {100 * x['hi']:.2f}] | {x['num_utts']} | {rel} | "
                       f"{vb['p_b_not_better']:.3f} |" if vb else
                       f"| {x['set']} | {x['model']} | {x['search']} | {100 * x['cer']:.2f} "
                       f"[{100 * x['lo']:.2f}, {100 * x['hi']:.2f}] | {x['num_utts']} | | |")
    # (the notes diagnose the run made before the official preparation; it is kept in
    # docs/notebook/results/calibration_mini_earlier.json)
    out += [] if _official_rules(r) else notes_md("calibration_notes.md")
    return out + [""]


def sec_decode(r):
    out = ["## Decoding speed (eval set)", ""] + header(r)
    out += [f"Model `{r['model']}`, beam {r['beam_size']}, batch {', '.join(map(str, r['batch_sizes']))} utterances; "
            "media loading not timed; each mode in its own process; encode = model forward, search = the rest.", "",
            "| mode | batch | utt/s | RTF | encode s | search s | peak RSS MB | CER % | threads |",
            "|---|---|---|---|---|---|---|---|---|"]
    names = {"batched": "beam, batched across utterances (ours)", "per_utt": "beam, per utterance (ESPnet BatchBeamSearch)",
             "greedy": "CTC greedy, batched"}
    for v in r["modes"].values():
        out.append(f"| {names[v['mode']]} | {v['batch_size']} | {v['utts_per_second']:.2f} | {v['rtf']:.4f} | "
                   f"{v['encode_seconds']:.1f} | {v['search_seconds']:.1f} | {v['peak_rss_mb']:.0f} | "
                   f"{100 * v['cer']:.2f} | {v['threads']} |")
    so, ident = r["speedup_search_only_batched_vs_per_utt"], r["identical_hyps_batched_vs_per_utt"]
    out += ["", "Batched vs per-utterance beam, end to end (search only in brackets): " + "; ".join(
        f"batch {b}: **{x:.2f}x** ({so[b]:.1f}x), identical hypotheses {ident[b]}"
        for b, x in r["speedup_batched_vs_per_utt_by_batch"].items())
        + f". Greedy vs per-utterance beam: {r['speedup_greedy_vs_per_utt']:.1f}x."]
    return out + notes_md("bench_decode_notes.md") + [""]


def sec_sweep(r, notes="bench_sweep_notes.md", models="SynthMISP mini models"):
    out = [f"## Evaluation sweep: shared front-ends vs independent decodes ({models})", ""] + header(r)
    first = r["runs"][0]
    out += [f"Models {', '.join(first['models'])} ({r['note']}); {first['utts']} utterances, "
            f"{len(first['conditions'])} conditions, batch {r['batch_size']}, {r['threads']} threads; media loading "
            f"not timed. Cached = `avsr eval` (audio front-end and per-frame visual features once per batch, the "
            "frame-loss conditions of a batch in one stacked encoder forward and one search, each distinct input of "
            "an utterance decoded once, an audio-only model once for every frame-loss condition); uncached = every condition decoded on its own by `Speech2Text.decode_batch`. "
            f"{first['repeats']} runs per search; the run with the median ratio is shown.", "",
            "| search | cached s | uncached s | ratio (all runs) | identical hypotheses |", "|---|---|---|---|---|"]
    for x in r["runs"]:
        out.append(f"| {x['search']} | {x['cached_seconds']:.1f} | {x['uncached_seconds']:.1f} | **{x['ratio']:.2f}** "
                   f"({', '.join(f'{v:.2f}' for v in x['ratios'])}) | {x['identical_hyps']} |")
    out += ["", "Per stage, seconds summed over the models (cached / uncached):", "",
            "| search | audio front-end | visual front-end | encoder | search |", "|---|---|---|---|---|"]
    for x in r["runs"]:
        c, u = x["stage_totals_cached"], x["stage_totals_uncached"]
        out.append(f"| {x['search']} | " + " | ".join(f"{c[k]:.1f} / {u[k]:.1f}"
                                                      for k in ("audio_front", "visual_front", "encoder", "search"))
                   + " |")
    return out + notes_md(notes) + [""]


def sec_cli(r):
    out = ["## `avsr decode` on wav+mp4 pairs", ""] + header(r)
    st = r["steps_seconds"]
    out += [f"{r['decoded']} of {r['pairs']} pairs ({r['pairs_kind']}), {r['audio_seconds']:.0f} s of audio, "
            f"search {r['search']}{_batch(r)}, device {r['device']}: wall {r['wall_seconds']:.1f} s, RTF {r['rtf']:.3f}, "
            f"peak RSS {r['peak_rss_mb']:.0f} MB.", "", "| step | seconds |", "|---|---|"]
    out += [f"| {k} | {v:.2f} |" for k, v in st.items()]
    return out + notes_md("bench_cli_notes.md") + [""]


def sec_robust(r, notes=True):
    """A robustness table (``python -m avsr.bin.rows table``): eval sweep, dev choices, claims, time;
    ``notes``: append ``robust_<table>_notes.md`` (True), the named notes file (a str) or nothing (False)."""
    ev = r["eval"]
    conds = ev["conditions"]
    frozen = r.get("finetune_frozen") or []
    kind = "" if frozen else ", all-parameter fine-tunes"
    out = [f"## Robustness to missing video on SynthMISP mini eval ({r['table']} table{kind})", ""] + header(r)
    out += [f"Every fine-tune: {r['epochs_per_finetune']} epochs from its init, lr {r['lr']}, warm-up "
            f"{r['warmup_steps']} steps, model = average of its epochs"
            + ("; the fine-tunes from AV0 (AV3, AV5, S.x) train only what is not frozen: "
               + ", ".join(f"`{x}`" for x in frozen) + " frozen" if frozen else "")
            + ("; " + ", ".join(r["schedule_av0_rows"]) + " start where AV0 started and train on AV0's own "
               "schedule instead" if r.get("schedule_av0_rows") else "")
            + f". Search: **{r['search']}**. "
            f"{ev.get('utts')} eval utterances; CER % [95 % bootstrap CI].", "",
            "| model | " + " | ".join(conds) + " | area |", "|---|" + "---|" * (len(conds) + 1)]
    da = _areas(ev)      # over the paper's rates 0/0.25/0.5/0.75/1
    for m, row in ev["cer"].items():
        out.append(f"| {m} | " + " | ".join(f"{100 * row[c]['cer']:.1f} [{100 * row[c]['lo']:.1f}, "
                                              f"{100 * row[c]['hi']:.1f}]" for c in conds)
                   + (f" | {100 * da[m]:.2f} |" if m in da else " | |"))
    kd, ad = r["kd"], r["adapter"]
    out += ["", "Area: trapezoid of CER(r) − CER_AV0(0) over the random-loss rates (%·rate; lower is more robust).", "",
            (f"**Dev choices.** MDA-KD distance (tap `{kd['tap']}`, weight {kd['weight']}), mean dev CER over random "
             "loss 0 / 0.5 / 1 (CTC greedy): " + ", ".join(f"{k} {100 * v:.2f} %" for k, v in kd["dev_mean_cer_0_.5_1"].items())
             + f" → **{kd['chosen_distance']}**." if kd.get("dev_mean_cer_0_.5_1") else
             "**Dev choices.**" if kd.get("grid_dev_mean_cer_0_.5_1") else
             f"**Dev choices.** MDA-KD: the recipe's default, **{kd['chosen_distance']}**, λ_KD **{kd['weight']:g}**, "
             f"tap `{kd['tap']}` (AV5 = {kd['chosen_row']}), which the full table's distance and λ ablation chose "
             "on dev (`docs/ROBUSTNESS.md`); this table does not repeat it.")
            + ("" if not kd.get("grid_dev_mean_cer_0_.5_1") else
               f" Distance × λ_KD grid (tap `{kd['tap']}`), mean dev CER over random loss 0 / 0.5 / 1 (CTC greedy), "
               "one joint minimum: " + "; ".join(f"{g['distance']} λ {g['weight']:g} {100 * g['cer']:.2f} %"
                                                 for g in kd["grid_dev_mean_cer_0_.5_1"])
               + f" → **{kd['chosen_distance']}, λ_KD {kd['chosen_weight']:g}** (AV5 = {kd['chosen_row']}).")
            + ("" if len(kd.get("weight_dev_mean_cer_0_.5_1") or {}) < 2 else
               f" λ_KD for {kd['chosen_distance']}, same criterion: "
               + ", ".join(f"{w}: {100 * v:.2f} %" for w, v in kd["weight_dev_mean_cer_0_.5_1"].items())
               + f" → **{kd['chosen_weight']:g}** (AV5 = {kd['chosen_row']}).")
            + ("" if len(kd.get("tap_dev_mean_cer_0_.5_1") or {}) < 2 else
               f" Taps, tried on dev only with {kd['chosen_distance']}, λ_KD {kd['chosen_weight']:g} "
               f"(same criterion; AV5 keeps `{kd['tap']}`, the default): "
               + ", ".join(f"`{t}`: {100 * v:.2f} %" for t, v in kd["tap_dev_mean_cer_0_.5_1"].items())
               + f" (lowest: `{kd['dev_lowest_tap']}`).")
            + ("" if len(ad.get("epochs_dev_cer_random@1") or {}) < 2 else
               " MS-Adapter epochs, dev CER with no video (CTC greedy, threshold 0): "
               + ", ".join(f"{e}: {100 * v:.2f} %" for e, v in ad["epochs_dev_cer_random@1"].items())
               + f" → **{ad['epochs']}** (AV6 = {ad['row']}).")
            + " MS-Adapter threshold, mean dev CER over the random grid: "
            + ", ".join(f"{k}: {100 * v:.2f} %" for k, v in ad["dev_mean_cer_random_grid"].items())
            + f" → **{ad['tuned_threshold']}**. Adapter parameters: {ad['parameters'].get('adapter', 0):,} of "
            f"{ad['parameters']['total']:,} ({100 * ad['adapter_share']:.2f} %), rank {ad['rank']}. "
            f"Best dropout-only row on dev: {r['best_dropout_only_row_dev']}.", ""]
    sims = ev.get("similarity") or {}
    if sims:
        out += ["| model | rate | similarity to A0: diag. dominance | linear CKA |", "|---|---|---|---|"]
        for m, d in sims.items():
            for rate, st in d.items():
                out.append(f"| {m} | {rate} | {st['diagonal_dominance']:.4f} | {st['linear_cka']:.4f} |")
        out.append("")
    ci = r.get("claims_by_interval") or {}
    if ci:
        out += [f"**Claims by interval** (paired 95 % intervals, {r.get('bootstrap_unit', 'utterance')} bootstrap; "
                "\"not worse by more than m\": upper bound ≤ m; \"better\": one-sided p < 0.05; \"not resolved\" "
                "where the interval straddles the margin; `avsr/eval/claims.py`):", ""]
        out += _claims_list(ci) + [""]
    pc = r.get("precision")
    if pc:
        out += [f"**Can this eval set separate methods?** {pc['row']} − {pc['other']} at {pc['condition']}: "
                f"{pc['diff']:+.2f} points, 95 % CI [{pc['ci95'][0]:+.2f}, {pc['ci95'][1]:+.2f}], half-width "
                f"{pc['half_width']:.2f} points (target ≤ {pc['max_half_width']:g}) → **{_holds(pc['holds'])}**.", ""]
    cl = r["claims"]
    b = cl["1_bias_reproduced"]
    out += [("**Point estimates of the same claims** (for comparison with earlier tables; the decisions are the "
             "intervals above; " if ci else "**Claims** (")
            + "paired bootstrap, 1000 resamples; p = share of resamples where B is not better):", "",
            f"1. Bias reproduced: AV0 vs A0 at rate 0: {100 * b['AV0_vs_A0_rate0']['cer_b']:.2f} vs "
            f"{100 * b['AV0_vs_A0_rate0']['cer_a']:.2f} (p {b['AV0_vs_A0_rate0']['p_b_not_better']:.3f}); at rate 1: "
            f"AV0 {100 * b['A0_vs_AV0_rate1']['cer_a']:.2f} vs A0 {100 * b['A0_vs_AV0_rate1']['cer_b']:.2f} "
            f"(p {b['A0_vs_AV0_rate1']['p_b_not_better']:.3f}) → **{'holds' if b['holds'] else 'fails'}**."]
    n = cl["2_non_inferiority"]
    worst = max(n["AV6_vs_A0_every_condition"].items(), key=lambda kv: kv[1]["AV6"] - kv[1]["A0"])
    half = lambda ok: "holds" if ok else "fails"  # noqa: E731
    a0_ok = n.get("AV6_vs_A0_every_rate_holds")      # JSONs written before the claims wrote the A0 half
    if a0_ok is None:
        a0_ok = all(v["holds"] for c, v in n["AV6_vs_A0_every_condition"].items() if c.startswith("random@"))
    out.append(f"2. Non-inferiority (margin {100 * n['margin_abs']:.1f} % abs.): AV6 {100 * n['AV6_vs_AV0_rate0']['AV6']:.2f} "
               f"vs AV0 {100 * n['AV6_vs_AV0_rate0']['AV0']:.2f} at rate 0 ({half(n['AV6_vs_AV0_rate0']['holds'])}); "
               f"AV6 − A0 worst at {worst[0]}: {100 * (worst[1]['AV6'] - worst[1]['A0']):+.2f} ({half(a0_ok)}) "
               f"→ **{'holds' if n['holds'] else 'fails'}**.")
    sp = cl["3_superiority"]      # its reduction from the areas above (the paper's rates; tables written
    # before the areas were over those rates stored the whole grid's reduction)
    best = sp["best_dropout_only_row"]
    red = (1 - da["AV6"] / da[best] if "AV6" in da and da.get(best, 0) > 0
           else sp.get("area_reduction_vs_best_dropout"))
    ps = ", ".join(f"{c} p {v['p_b_not_better']:.3f}" for c, v in sp["AV6_vs_AV0_rates_ge_0.5"].items())
    sup_ok = (red is not None and red >= 0.20
              and all(v["p_b_not_better"] < 0.05 for v in sp["AV6_vs_AV0_rates_ge_0.5"].values()))
    out.append(f"3. Superiority: AV6 area vs {sp['best_dropout_only_row']}: "
               + (f"{100 * red:+.1f} % reduction" if red is not None else "n/a")
               + f" (goal ≥ 20 %); AV6 better than AV0 at rates ≥ 0.5: {ps} → **{'holds' if sup_ok else 'fails'}**.")
    st = cl.get("4_study_trend")
    if st:
        out.append(f"4. Study trend over {', '.join(st['rows'])}: mean relative CER vs A0's output "
                   + ", ".join(f"{100 * v:.1f}" for v in st["relative_cer_mean"])
                   + f" % (Kendall τ {st['kendall_tau']['relative_cer']:+.2f}); diagonal dominance at rate 0 "
                   + ", ".join(f"{v:.4f}" for v in st["diagonal_dominance_rate0"])
                   + f" (τ {st['kendall_tau']['diagonal_dominance']:+.2f})"
                   + ("" if "linear_cka_rate0" not in st else "; linear CKA at rate 0 "
                      + ", ".join(f"{v:.3f}" for v in st["linear_cka_rate0"])
                      + f" (τ {st['kendall_tau']['linear_cka']:+.2f})")
                   + f" → **{'holds' if st['holds'] else 'fails'}** (criterion: τ < 0 for relative CER, τ > 0 for "
                   "diagonal dominance). Strictly monotone: " + ", ".join(
                       f"{name} {'yes' if st['kendall_tau'][key] == sign else 'no'}"
                       for name, key, sign in (("relative CER", "relative_cer", -1),
                                               ("diagonal dominance", "diagonal_dominance", 1),
                                               ("linear CKA", "linear_cka", 1)) if key in st["kendall_tau"]) + ".")
    secs = r["seconds"]
    run = ("this run of the script" if "seconds_from_command" not in r else
           f"the run of the same script that did the work, `{r['seconds_from_command']}`; the JSON's own command "
           "then found every row and sweep done")
    out += ["", f"Wall time ({run}; rows trained earlier are not re-timed): " +
            ", ".join(f"{k} {v:.0f} s" for k, v in secs.items()) + ". Row training (from their logs): " +
            ", ".join(f"{k} {v:.0f} s" for k, v in r.get("row_train_seconds", {}).items()) + "."]
    if r.get("recipe_stage_seconds"):
        st = r["recipe_stage_seconds"]
        out.append("Recipe stages of this table (wall time, from the stage markers): "
                   + ", ".join(f"{k} {v:,} s" for k, v in st.items()) + f"; {sum(st.values()) / 60:.0f} min in all.")
    for e in r.get("seconds_earlier_runs") or []:
        out.append(f"Earlier run of the same table (options of the script in the recorded command: {e['why']}; its rows and sweeps were reused): "
                   + ", ".join(f"{k} {v:.0f} s" for k, v in e["seconds"].items()) + ".")
    if notes is True:
        notes = f"robust_{r['table']}_notes.md"
    return out + (notes_md(notes) if notes else []) + [""]


def sec_parts(r, title="Dev probes: which parts of the robust fine-tune matter"):
    """Dev probes (sweeps gathered against a reference model, docs/notebook/probe_*.json); by default those of
    which parameter groups carry the fine-tune's rate-0 loss and robustness."""
    conds = [c for c in next(iter(r["cer"].values())) if c != "mean"]
    out = [f"## {title}", "", f"- machine: {machine(r)}",
           f"- command: `{r['command']}`", "", r["what"] + ".", "",
           "| variant | " + " | ".join(conds) + " | mean | vs " + r["reference"] + " at random@0 [95 % CI], p |",
           "|---|" + "---|" * (len(conds) + 2)]
    for k, v in r["cer"].items():
        p = r["paired_vs_reference"].get(k, {}).get("random@0")
        cmp = (f"{100 * p['rel_reduction']:+.1f} % [{100 * p['rel_lo']:+.1f}, {100 * p['rel_hi']:+.1f}], "
               f"{p['p_b_not_better']:.3f}" if p else "reference")
        out.append(f"| {k} | " + " | ".join(f"{100 * v[c]:.2f}" for c in conds) + f" | {100 * v['mean']:.2f} | {cmp} |")
    return out + ["", f"Dev CER %, {r['search']}; relative reduction against {r['reference']} (negative: worse), "
                      "paired bootstrap over utterances.", ""]


def sec_probe(r):
    out = ["## Dev probes of AV5's rate-0 loss", "", f"- machine: {machine(r)}", "",
           r["what"] + ".", "", "Commands: " + r["command"], "",
           "| variant | " + " | ".join(c for c in next(iter(r["dev_greedy_cer"].values()))) + " |",
           "|---|" + "---|" * len(next(iter(r["dev_greedy_cer"].values())))]
    for k, v in r["dev_greedy_cer"].items():
        out.append(f"| {k} | " + " | ".join(f"{100 * x:.2f}" for x in v.values()) + " |")
    out += ["", "Dev CER %, CTC greedy. Training seconds: "
            + ", ".join(f"{k} {v:.0f} s" for k, v in r["train_seconds"].items()) + ".", ""]
    pd = r.get("paired_dev")
    if pd:
        out += [pd["what"] + ": " + "; ".join(
            f"{c}: {100 * v['cer_b']:.2f} vs {100 * v['cer_a']:.2f} %, relative reduction {100 * v['rel_reduction']:+.1f} % "
            f"[{100 * v['rel_lo']:+.1f}, {100 * v['rel_hi']:+.1f}], p(B not better) {v['p_b_not_better']:.3f}"
            for c, v in pd.items() if c != "what") + ".", ""]
    return out


# ------------------------------------------------------------------------------------ avsr.bin.report
def report_md(rows, baseline=None, missing=(), no_reference=(), stage_seconds=None) -> str:
    """The CER table of ``avsr.bin.report`` (``rows`` as in its ``report.json``).

    When a row has ``cpcer`` (:mod:`avsr.eval.cpcer`), the table gains a ``cpCER %`` column (overall,
    Σ edits / Σ reference characters) after the CER, and :func:`cpcer_sessions_md` follows it;
    ``no_reference``: decodes skipped for lack of references, named under the table;
    ``stage_seconds`` (the report's ``stage_seconds``): the line of :func:`stage_seconds_md` at the end."""
    if baseline is None:
        baseline = next((r["vs_baseline"]["baseline"] for r in rows if r.get("vs_baseline")), None)
    cp = any(r.get("cpcer") for r in rows)
    lines = ["| set | model | modality | search | CER % [95 % CI] | " + ("cpCER % | " if cp else "")
             + "utts | rel. vs " + str(baseline) + " [95 % CI] | p(not better) |",
             "|---|---|---|---|---|---|---|---|" + ("---|" if cp else "")]
    for r in rows:
        vb = r.get("vs_baseline")
        rel = (f"{100 * vb['rel_reduction']:+.1f} % [{100 * vb['rel_lo']:+.1f}, {100 * vb['rel_hi']:+.1f}]"
               if vb else "")
        p = f"{vb['p_b_not_better']:.3f}" if vb else ""
        c = f"{_pct(r['cpcer']['overall'])} | " if r.get("cpcer") else ("| " if cp else "")
        lines.append(f"| {r['set']} | {r['model']} | {r['modality']} | {r['search']} | "
                     f"{100 * r['cer']:.2f} [{100 * r['lo']:.2f}, {100 * r['hi']:.2f}] | {c}{r['num_utts']} | "
                     f"{rel} | {p} |")
    md = "\n".join(lines) + "\n"
    if cp:
        md += "\n" + cpcer_sessions_md(rows)
    if missing:
        md += f"\nmissing decode dirs: {', '.join(missing)}\n"
    if no_reference:
        md += f"\nno reference text (not scored): {', '.join(no_reference)}\n"
    if stage_seconds:
        md += "\n" + stage_seconds_md(stage_seconds)
    return md


def stage_seconds_md(secs: dict) -> str:
    """The line ``avsr.bin.report --stages_dir`` adds under its table (``secs``: its ``stage_seconds``)."""
    if not secs:
        return ""
    total = sum(secs.values())
    return ("Wall time by stage: " + ", ".join(f"{k} {v} s" for k, v in secs.items())
            + f"; total {total} s ({total / 60:.1f} min).\n")


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def cpcer_sessions_md(rows) -> str:
    """Per-session cpCER % of ``avsr.bin.report``: one table per set, a row per session (with its
    reference characters), a column per model."""
    out = []
    for split in dict.fromkeys(r["set"] for r in rows if r.get("cpcer")):
        rs = [r for r in rows if r["set"] == split and r.get("cpcer")]
        sessions = sorted({s for r in rs for s in r["cpcer"]["per_session"]})
        out += [f"cpCER % per session ({split}):", "",
                "| session | ref chars | " + " | ".join(r["model"] for r in rs) + " |",
                "|---|---|" + "---|" * len(rs)]
        for s in sessions:
            per = [r["cpcer"]["per_session"].get(s) for r in rs]
            n = next((p["ref_chars"] for p in per if p), 0)
            out.append(f"| {s} | {n} | " + " | ".join(_pct(p["cpcer"]) if p else "" for p in per) + " |")
        out.append("")
    return "\n".join(out)


# ------------------------------------------------------------------------------------ avsr eval
def _short_dir(path: str) -> str:
    """A data dir as a table names it: from its ``recipes/`` or ``data/`` part on when it has one (the
    machine's checkout is not part of the result), else as given."""
    parts = str(path).split(os.sep)
    for anchor in ("recipes", "data"):
        if anchor in parts[:-1]:
            return os.sep.join(parts[parts.index(anchor):])
    return str(path)


def _sweep_unit(out) -> str:
    """What a sweep's intervals resample (``avsr eval --bootstrap_unit``; older sweeps: utterances)."""
    return (out.get("bootstrap") or {}).get("unit", "utterance")


def _areas(sw, reference="AV0"):
    """Each model's degradation area in the sweep dict ``sw``, over the paper's rates when it has them
    (:func:`avsr.eval.sweep.sweep_areas`; sweeps written before that stored the whole grid's area, so it is
    recomputed from their CERs); the stored areas when ``reference`` is not in the sweep."""
    from avsr.eval.sweep import sweep_areas
    return (sweep_areas(sw["cer"], reference) if reference else {}) or sw.get("degradation_area", {})


def _area_grid(sw):
    """The rates the areas of :func:`_areas` span, as ``0/0.25/0.5/0.75/1``."""
    from avsr.eval.sweep import area_rates
    rates = area_rates(float(c.split("@", 1)[1]) for c in sw["conditions"] if c.startswith("random@"))
    return "/".join(f"{r:g}" for r in rates)


def sweep_md(out, reference=None, baseline=None) -> str:
    """``sweep.md`` of ``avsr eval`` (``out``: its sweep.json dict; ``reference``/``baseline``: its options)."""
    conds = out["conditions"]
    unit = _sweep_unit(out)
    widened, w = "", (out.get("bootstrap") or {}).get("widen", 1.0)
    if unit == "recording" and w != 1.0:      # as avsr eval recorded it (older sweeps: not widened)
        g = len(set(out.get("utt_recordings") or ()))
        widened = f"; the {g} recordings' resamples widened x{w:.2f} (few recordings)"
    lines = [f"CER % [95 % CI, bootstrap over {unit}s{widened}] on `{_short_dir(out['data_dir'])}` "
             f"({out['utts']} utterances), search: **{out['search']}**", "",
             "| model | " + " | ".join(conds) + " |", "|---|" + "---|" * len(conds)]
    for m, row in out["cer"].items():
        lines.append(f"| {m} | " + " | ".join(f"{100 * row[c]['cer']:.1f} [{100 * row[c]['lo']:.1f}, "
                                               f"{100 * row[c]['hi']:.1f}]" for c in conds) + " |")
    if "degradation_area" in out:
        da = _areas(out, reference)
        lines += ["", f"Degradation area (trapezoid of CER(r) - CER_{reference}(0) over the random-loss rates "
                      f"{_area_grid(out)}, CER in %·rate):", "", "| model | area |", "|---|---|"]
        lines += [f"| {m} | {100 * a:.2f} |" for m, a in da.items()]
    if baseline:
        rel = [(m, row) for m, row in out["cer"].items() if m != baseline]
        if rel:
            rc = [c for c in conds if c.startswith("random@")]
            lines += ["", f"Relative CER % (hypotheses scored against {baseline}'s output):", "",
                      "| model | " + " | ".join(rc) + " |", "|---|" + "---|" * len(rc)]
            lines += [f"| {m} | " + " | ".join(f"{100 * row[c]['relative_cer_vs_baseline']:.1f}" for c in rc) + " |"
                      for m, row in rel]
    lines += _paired_md(out, baseline)
    if "similarity" in out:
        lines += ["", f"Representation similarity to {baseline} (mean-pooled `fused`, cosine; "
                      "diagonal dominance = mean diagonal - mean off-diagonal; linear CKA):", "",
                  "| model | rate | diag. dominance | CKA |", "|---|---|---|---|"]
        for m, d in out["similarity"].items():
            for r, st in d.items():
                lines.append(f"| {m} | {r} | {st['diagonal_dominance']:.4f} | {st['linear_cka']:.4f} |")
    if out.get("skipped"):
        lines += ["", f"{len(out['skipped'])} utterance(s) skipped (media unreadable; scored as empty hypotheses, "
                      "listed in `skipped`)."]
    t = out["timing"]
    lines += ["", f"Sweep wall time {t['wall_seconds']:.1f} s (media loading {t['load_seconds']:.1f} s)."]
    if "uncached" in out:
        u = out["uncached"]
        lines += [f"Independent decodes: {u['wall_seconds']:.1f} s; cost ratio cached/uncached "
                  f"**{u['cost_ratio_cached_vs_uncached']:.2f}**; identical hypotheses: {u['identical_hyps']}."]
    return "\n".join(lines) + "\n"


def _paired_md(out, baseline=None) -> list:
    """Paired bootstrap tests over the sweep's utterances (:func:`avsr.eval.claims.paired_diff`, verdict by
    :func:`avsr.eval.claims.better`): every model against ``baseline`` with full video; every model that
    reads video with no video (``whole``, else ``random@1``) against full; and ``baseline`` against each
    such model with no video (the modality bias when ``baseline`` is better)."""
    from avsr.eval import claims as cl
    ue = out.get("utt_errors")
    conds = out["conditions"]
    if not ue or not out.get("utt_ref_chars") or "random@0" not in conds:
        return []
    unit = _sweep_unit(out)
    rs = cl.Resampler(out, unit=unit, widen=(out.get("bootstrap") or {}).get("widen", 1.0) != 1.0)
    none = "whole" if "whole" in conds else ("random@1" if "random@1" in conds else None)
    full = "random@0"
    rows = []

    def fmt(label, b, b_cond, a, a_cond):
        pd = cl.paired_diff(rs, b, a, b_cond, a_cond)
        v = cl.better(pd)
        verdict = "better" if v is True else "not better" if v is False else cl.NOT_RESOLVED
        lo, hi = pd["ci95"]
        rows.append(f"| {label} | {pd['cer_other']:.1f} | {pd['cer_row']:.1f} | {pd['diff']:+.1f} [{lo:+.1f}, {hi:+.1f}] | "
                    f"{pd['p']:.3f} | {verdict} |")

    for m in out["cer"]:
        if baseline and m != baseline and baseline in ue:
            fmt(f"{m} vs {baseline}, full video", m, full, baseline, full)
    for m in out["cer"]:
        if none and ue[m][full] != ue[m][none]:
            fmt(f"{m}: full video vs {none} (no video)", m, full, m, none)
            if baseline and m != baseline and baseline in ue:   # the modality bias: audio-only beats no video
                fmt(f"{baseline} vs {m} with {none} (no video)", baseline, full, m, none)
    if not rows:
        return []
    widened = "" if rs.widen == 1.0 else f", widened x{rs.widen:.2f} for {rs.units} recordings"
    return ["", f"Paired tests (bootstrap over {unit}s, {rs.num} resamples{widened}; B better than A when p < 0.05, "
                "not better when the whole interval is on the not-better side, else not resolved; p is "
                "one-sided, the share of resamples in which B is not better, so 'better' at 0.025 <= p < 0.05 "
                "comes with a two-sided 95 % interval that reaches 0):", "",
            "| comparison (B vs A) | CER A % | CER B % | B − A points [95 % CI] | p(B not better) | B is |",
            "|---|---|---|---|---|---|"] + rows


def plot_sweep(out, rates, baseline, path):
    """The paper's Figure-1-style plot: CER vs random frame-loss rate per model, the baseline dashed,
    each line with a band of its points' 95 % bootstrap intervals."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    rates = sorted(rates)
    for m, row in out["cer"].items():
        cells = [row[f"random@{r:g}"] for r in rates]
        ys = [100 * c["cer"] for c in cells]
        line, = ax.plot(rates, ys, "--" if m == baseline else "-o", label=m, markersize=3)
        if all("lo" in c and "hi" in c for c in cells):   # the 95 % bootstrap interval of each point
            ax.fill_between(rates, [100 * c["lo"] for c in cells], [100 * c["hi"] for c in cells],
                            color=line.get_color(), alpha=0.15, linewidth=0)
    ax.set_xlabel("test video frame loss rate (random)")
    ax.set_ylabel("CER (%)")
    ax.set_title(f"CER vs frame loss ({out['search']})")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_similarity(mats, path):
    """Cosine-similarity matrices ``{(model, rate): S}`` (first 50 utterances) as a grid of images."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    models = sorted({m for m, _ in mats})
    rates = sorted({r for _, r in mats})
    fig, axes = plt.subplots(len(models), len(rates), figsize=(2.6 * len(rates), 2.6 * len(models)), squeeze=False)
    for i, m in enumerate(models):
        for j, r in enumerate(rates):
            S = mats[(m, r)][:50, :50]
            axes[i][j].imshow(S, vmin=-1, vmax=1, cmap="viridis")
            axes[i][j].set_title(f"{m} @ {r:g}", fontsize=8)
            axes[i][j].set_xticks([])
            axes[i][j].set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ------------------------------------------------------------------------------------ pages
def _load(res_dir, name):
    p = os.path.join(res_dir, name)
    if not os.path.exists(p):
        return None
    with open(p, encoding="utf-8") as f:
        return json.load(f)


def benchmarks_md(res_dir) -> str:
    """docs/BENCHMARKS.md: speed and size measurements (results: the recipes' RESULTS.md)."""
    lines = ["# Benchmarks", "",
             "Speed and size measurements, rendered by `python -m avsr.bin.report --docs` from `docs/results/*.json` "
             "(`make bench` measures everything again). Each section names its command and machine. CER results "
             "are in `recipes/synthmisp/RESULTS.md`. Machines are noisy: numbers are medians or totals of one run.", ""]
    for name, fn in [("bench_roi.json", sec_roi), ("synthmisp_text.json", sec_text),
                     ("synthmisp_mini.json", sec_mini), ("dataprep_mini.json", sec_prep),
                     ("calibration_mini.json", sec_calib), ("bench_decode.json", sec_decode),
                     ("bench_sweep.json", lambda r: sec_sweep(r, None, "a smaller mini preset's models")),
                     ("bench_sweep_demo.json", lambda r: sec_sweep(r, None, "demo-size models")),
                     ("bench_cli.json", sec_cli), ("bench_roi_speed.json", sec_roi_speed),
                     ("bench_cli_memory.json", sec_cli_memory), ("bench_detect.json", sec_detect),
                     ("bench_alignment.json", sec_alignment), ("bench_aligner.json", sec_aligner)]:
        r = _load(res_dir, name)
        lines += fn(r) if r else [f"## {name}: not run yet", ""]
    return "\n".join(lines) + "\n"


MINI_RUN = ("cd recipes/synthmisp && ./run.sh --preset mini --nj 2 --stage 1 --corpus_dir ../../corpora/synthmisp_mini \\\n"
            "    --models \"a0 v av0\" --v_args \"--set trainer.max_epochs=15\" \\\n"
            "    --av0_args \"--set trainer.max_epochs=8 trainer.lr=0.001 trainer.warmup_steps=60\"")
ROWS_RUN = ("cd recipes/synthmisp && ./run.sh --preset mini --corpus_dir ../../corpora/synthmisp_mini \\\n"
            "    --stage 15 --stop_stage 18 --rows ../../conf/rows/dai2024.yaml --rows_table {table} \\\n"
            "    --rows_dir \"$PWD/exp/synthmisp_mini/rows\" --rows_out \"$PWD/../../docs/results/robust_{table}.json\"")
_SHOWN = ("random@0", "random@0.25", "random@0.5", "random@0.75", "random@1", "segment@0.5", "babble-5dB")


def _row_table(r, trained_by):
    ev = r["eval"]
    conds = [c for c in _SHOWN if c in ev["conditions"]]
    da = _areas(ev)
    out = ["| model | set | " + " | ".join(conds) + " | area | trained by |", "|---|---|" + "---|" * (len(conds) + 2)]
    for m, row in ev["cer"].items():
        out.append(f"| {m} | eval | " + " | ".join(f"{100 * row[c]['cer']:.1f}" for c in conds)
                   + (f" | {100 * da[m]:.2f}" if m in da else " | ") + f" | {trained_by(m)} |")
    return out


#: Results committed before the recipe followed the official MISP2022 preparation carry this note until remade.
OLD_RULES_NOTE = ("**Made with the earlier data rules.** These numbers come from an earlier version of the recipe and "
                  "of SynthMISP: the earlier mini preset (120/26/26 sessions, speakers 24/8/8, all 430 characters, clean lips, "
                  "`conf/mini.yaml` models, the recipe's default babble, no speed perturbation), the toolkit's own text rules and 10 ms utterance ids (now `--text_norm toolkit`), "
                  "the toolkit lip crop (now `--crop toolkit`), two far channels and the toolkit's lip-box files. "
                  "The recipe now defaults to the official preparation, crop and layout "
                  "(`docs/MISP2022_FORMATS.md`), so a fresh run gives other numbers; they stand here until remade.")


def _holds(v) -> str:
    return "holds" if v is True else "fails" if v is False else "not resolved"


def _claims_list(claims) -> list:
    """Claims by interval (``{name: {"holds", "evidence"}}``) as one bullet each, verdict first."""
    return [f"- `{name}`: **{_holds(v['holds'])}**. {v['evidence']}." for name, v in claims.items()]


def _grid_md(grid) -> str:
    """A leaderboard row's dev grid in one cell: each setting (``axis=value``, or its run name) with its dev
    score, the chosen one in bold; empty for no grid."""
    cells = []
    for g in grid or []:
        name = ", ".join(f"{a}={v:g}" if isinstance(v, float) else f"{a}={v}" for a, v in g["setting"].items()) \
            or g["run"]
        txt = name + ("" if g["dev"] is None else f" ({g['dev']:.3g})")
        cells.append(f"**{txt}**" if g["chosen"] else txt)
    return "; ".join(cells)


def leaderboard_md(lb) -> list:
    """The leaderboard section (lines) of a ``leaderboard.json`` dict (schema: :mod:`avsr.eval.leaderboard`):
    rows x conditions with 95 % intervals, area, training seconds and parameters beyond AV0, then every
    claim with its verdict and evidence."""
    c = lb["corpus"]
    conds = list(next(iter(lb["rows"].values()))["cer"])
    b = lb.get("bootstrap") or {"unit": "utterance"}
    over = ("utterances" if b["unit"] == "utterance" else
            f"the {b['units']} eval recordings (sessions), each drawn with all its utterances"
            + (f", the resamples widened x{b['widen']:.2f} for that few recordings" if b.get("widen", 1.0) != 1.0 else ""))
    out = ["## Leaderboard", "",
           f"Corpus: SynthMISP `{c['preset']}`, seed {c['seed']}; {c['eval_segments']} eval segments from "
           f"{c['eval_speakers']} speakers; {c['train_hours']:.2f} h of training segments. Search: **{lb['search']}**. "
           f"CER % [95 % bootstrap CI over {over}] per condition: random frame loss at rates 0 to 1, segment "
           "loss at 0.5, the whole video missing, babble at 0 and -5 dB with full video. Area: trapezoid of "
           "CER(r) − CER_AV0(0) over the rates 0 / 0.25 / 0.5 / 0.75 / 1 (points x rate; lower is more robust). "
           "Train s: the row's own training (not its init's); params added: parameters beyond AV0; steps: optimiser "
           "steps from the row's recipe model (its init row's run included); dev grid: the settings tried, the one "
           "dev chose in bold. Rows sorted by area. "
           "`docs/results/leaderboard.json` also holds every row's paired differences against A0 and AV0; "
           "`docs/results/leaderboard.png` plots every row's CER against frame loss with its 95 % band.", "",
           "| row | " + " | ".join(conds) + " | area | train s | params added | steps | dev grid |",
           "|---|" + "---|" * (len(conds) + 5)]
    for m, r in sorted(lb["rows"].items(), key=lambda kv: kv[1]["area"]):
        steps = "" if r.get("steps") is None else f"{r['steps']:,}"
        out.append(f"| {m} | " + " | ".join(f"{r['cer'][k]:.1f} [{r['ci95'][k][0]:.1f}, {r['ci95'][k][1]:.1f}]"
                                            for k in conds)
                   + f" | {r['area']:.2f} | {r['train_s']:.0f} | {r['params_added']:,} | {steps} | {_grid_md(r.get('grid'))} |")
    out += ["", "**Claims** (decided on paired 95 % intervals; `avsr/eval/claims.py` defines each verdict):", ""]
    out += _claims_list(lb["claims"])
    return out + [""] + _goal_md(lb) + _errors_md(lb)


def _goal_md(lb) -> list:
    """The goal's table (``goal`` of the leaderboard): per candidate row, eligibility with the upper bounds
    that decide it, the area's reduction against the best dropout-only row and how far it is from the goal."""
    from avsr.eval.claims import GOAL_CLAIM
    g = lb.get("goal")
    if not g or not g["rows"]:
        return []
    pct = 100 * g["reduction"]
    out = [f"**The goal**: among rows not worse than AV0 at rate 0 and not worse than A0 at any rate by more than "
           f"0.5 points (upper bounds of the paired 95 % intervals), the best degradation area at least {pct:.0f} % "
           f"below the best dropout-only row's ({g['best_dropout']}, area {g.get('area_best_dropout', float('nan')):.2f}); "
           f"**{_holds(lb['claims'].get(GOAL_CLAIM, {}).get('holds'))}**. Per row, "
           "sorted by area (upper bounds in points; eligible: both upper bounds at most +0.5; short by: points of "
           f"area reduction missing to {pct:.0f} %):", "",
           "| row | upper bound vs AV0 at 0 | worst upper bound vs A0 (rate) | eligible | area | reduction | short by | "
           "goal |", "|---|---|---|---|---|---|---|---|"]
    for m, v in g["rows"].items():
        out.append(f"| {m} | {v['upper_vs_ref_at_0']:+.2f} | {v['upper_vs_audio_worst']:+.2f} ({v['worst_audio_rate']:g}) | "
                   f"{_holds(v['eligible'])} | {v['area']:.2f} | {v['reduction_pct']:+.1f} % | {v['short_by']:.1f} | "
                   f"{_holds(v['verdict'])} |")
    return out + [""]


def _errors_md(lb) -> list:
    """The leaderboard's error breakdown (:mod:`avsr.eval.breakdown`): substitutions / deletions /
    insertions at a few conditions, and CER by SNR and overlap bin with full and with no video."""
    rows = {m: r["errors"] for m, r in sorted(lb["rows"].items(), key=lambda kv: kv[1]["area"]) if "errors" in r}
    if not rows:
        return []
    conds = [k for k in ("0", "0.5", "whole", "babble-5") if all(k in e["split"] for e in rows.values())]
    out = ["### Where the errors are", "",
           "Substitutions / deletions / insertions in % of the reference characters (they add up to the CER):", "",
           "| row | " + " | ".join(conds) + " |", "|---|" + "---|" * len(conds)]
    for m, e in rows.items():
        out.append(f"| {m} | " + " | ".join("{sub:.1f} / {del:.1f} / {ins:.1f}".format(**e["split"][k]) for k in conds)
                   + " |")
    bins = lb.get("bins") or {}
    what = {"snr": "the session's talkers-to-TV-noise SNR (tertiles of the eval utterances)",
            "overlap": "the share of the utterance's turn overlapped by another talker"}
    for kind in ("snr", "overlap"):
        if kind not in bins:
            continue
        labs = list(bins[kind])
        out += ["", f"CER % by {what[kind]}, full video / no video (utterances per bin: "
                    + ", ".join(f"{lab}: {n}" for lab, n in bins[kind].items()) + "):", "",
                "| row | " + " | ".join(labs) + " |", "|---|" + "---|" * len(labs)]
        for m, e in rows.items():
            b = e.get(f"by_{kind}") or {}
            out.append(f"| {m} | " + " | ".join(f"{b[lab]['0']:.1f} / {b[lab]['whole']:.1f}" if lab in b else ""
                                                for lab in labs) + " |")
    return out + [""]


def _train_summary(cal) -> dict:
    """The training split's entry of a ``collect_training`` JSON's data summary ({} when absent)."""
    return ((cal.get("data_summary") or {}).get("splits") or {}).get("train") or {}


def _official_rules(cal) -> bool:
    """Whether a ``collect_training`` JSON comes from a recipe run with the official MISP2022 preparation (its data
    summary records ``text_norm: official``; runs made before the recipe followed it record none)."""
    return (_train_summary(cal).get("prep") or {}).get("text_norm") == "official"


def _train_hours(cal) -> str:
    h = _train_summary(cal).get("hours")
    return f"{h:.1f}" if h else "?"


def _run_section(res_dir, sub, title, command, training=None):
    """RESULTS.md's table of one recipe run copied to ``docs/results/<sub>/`` (report.json, sweep.json and the
    plot): A0, V, AV0 per set with the paired relative reduction against A0, AV0 with no video from the sweep, and
    (``training``: its ``collect_training`` JSON) each model's training time."""
    rep = _load(res_dir, os.path.join(sub, "report.json"))
    if not rep:
        return []
    sw = _load(res_dir, os.path.join(sub, "sweep.json"))
    out = [title, "", "| model | set | search | CER % [95 % CI] | rel. reduction vs A0 [95 % CI], p | command |",
           "|---|---|---|---|---|---|"]
    for x in rep["rows"]:
        vb = x.get("vs_baseline")
        rel = (f"{100 * vb['rel_reduction']:+.1f} % [{100 * vb['rel_lo']:+.1f}, {100 * vb['rel_hi']:+.1f}], "
               f"{vb['p_b_not_better']:.3f}" if vb else "")
        out.append(f"| {x['model']} | {x['set']} | {x['search']} | {100 * x['cer']:.2f} "
                   f"[{100 * x['lo']:.2f}, {100 * x['hi']:.2f}] | {rel} | `{command}` |")
    if sw:
        c = sw["cer"]["AV0"]
        none = "whole" if "whole" in c else "random@1"
        out.append(f"| AV0, no video ({none}) | eval | {sw['search']} | {100 * c[none]['cer']:.2f} "
                   f"[{100 * c[none]['lo']:.2f}, {100 * c[none]['hi']:.2f}] | | `{command}` (stage 13) |")
    secs = rep.get("stage_seconds") or {}
    out += ["", f"`{rep.get('command', command)}`. Paired tests and the CER-vs-frame-loss plot: "
            f"`docs/results/{sub}/sweep.md`, `cer_vs_frame_loss.png`."
            + (f" Stage wall times: {', '.join(f'{k} {v} s' for k, v in secs.items() if v)}." if secs else "")]
    if training:
        out.append("Training (" + ", ".join(
            f"{m.upper()} {v['epochs']} epochs in {v['train_seconds_total'] or 0:,.0f} s"
            for m, v in training.get("models", {}).items() if "/" not in m)
            + f"): `docs/BENCHMARKS.md`; `{training.get('command', '')}`.")
    return out + [""]


def synthmisp_results_md(res_dir) -> str:
    """recipes/synthmisp/RESULTS.md: per model, CER per condition and the command, from docs/results."""
    out = ["# SynthMISP recipe: results", "",
           "CER % on SynthMISP: `make demo`'s preset, then the `mini` preset (2 CPU cores), rendered by "
           "`python -m avsr.bin.report --docs` from `docs/results/*.json`. Bootstrap intervals, dev choices and "
           "paired tests are in the JSONs and in the details below.", "",
           "## Commands", "", "```bash",
           "make bench-train    # corpus, then A0, V and AV0 (stages 1-14):",
           "# " + MINI_RUN.replace("\n", "\n# "),
           "make bench-robust   # the core rows (AV3, AV5, AV6): stages 15-18 with the row spec, beam 10:",
           "# " + ROWS_RUN.format(table="core").replace("\n", "\n# "),
           "make bench-full     # every row (AV1-AV6, S.1-S.7, the MDA-KD grid), CTC greedy (--rows_table full)",
           "make bench-leaderboard  # every method on AV5's step budget, ranked: --rows_table leaderboard "
           "--rows_leaderboard docs/results/leaderboard.json",
           "```", ""]
    out += _run_section(res_dir, "demo", "## `make demo` (the `demo` preset: 0.4 h, 150 characters; "
                        "`conf/demo.yaml`, 2 CPU cores)", "make demo")
    cal = _load(res_dir, "calibration_mini.json")
    current = bool(cal) and _official_rules(cal)
    if current:
        out += _run_section(res_dir, "mini", "## `make bench-train` (the `mini` preset: "
                            f"{_train_hours(cal)} h, 150 characters; `conf/demo.yaml`, 2 CPU cores)", "make bench-train",
                            training=cal)
    if cal and not current:       # (a current run's table is its own section above; earlier runs: docs/notebook)
        out += ["## The `mini` preset", "", "The `make demo` section above is made with the current recipe; what "
                "follows is not. " + OLD_RULES_NOTE, ""]
        stage = {"a0": "stage 6", "v": "stage 7", "av0": "stage 8"}
        out += ["## A0, V, AV0 (recipe stages 6-8, decoded by stage 12)", "",
                "| model | set | search | CER % [95 % CI] | rel. reduction vs A0 | trained by |", "|---|---|---|---|---|---|"]
        for x in cal.get("report") or []:
            vb = x.get("vs_baseline")
            rel = f"{100 * vb['rel_reduction']:+.1f} %" if vb else ""
            out.append(f"| {x['model']} | {x['set']} | {x['search']} | {100 * x['cer']:.2f} "
                       f"[{100 * x['lo']:.2f}, {100 * x['hi']:.2f}] | {rel} | {stage.get(x['model'], '')} |")
        out += ["", f"Made by (recorded in the JSON): `{cal.get('command', '')}`, after the recipe run of that "
                "version; `make bench-train` (above) makes them again with the current recipe.", ""]
    lb = _load(res_dir, "leaderboard.json")
    if lb:
        from avsr.eval.leaderboard import validate_leaderboard
        validate_leaderboard(lb, os.path.join(res_dir, "leaderboard.json"))
        out += leaderboard_md(lb)
    for name, table in (("robust_core.json", "core"), ("robust_full.json", "full")):
        r = _load(res_dir, name)
        if not r:
            continue
        kd, ad = r.get("kd", {}), r.get("adapter", {})

        def trained_by(m, kd=kd, ad=ad):
            if m in ("A0", "V", "AV0"):
                return "stage " + {"A0": "6", "V": "7", "AV0": "8"}[m]
            if m == "AV6-tuned":
                return (f"row AV6 ({ad.get('row')}), decoded at the routing threshold tuned on dev "
                        f"({ad.get('tuned_threshold')})")
            if m.startswith("AV6"):
                return f"row AV6 ({ad.get('row')})"
            if m == "AV5":
                return f"row AV5 ({kd.get('chosen_row')})"
            return f"row {m.split('-')[0] if m.startswith('AV5-') else m}" + (f" ({m})" if m.startswith("AV5-") else "")
        out += [f"## Robustness rows, {table} table ({r['search']})", "",
                f"Rows of `conf/rows/dai2024.yaml`, table `{table}`; CER % per test condition (random / segment "
                "frame loss at the rate given, babble at -5 dB with full video); area: degradation area "
                "(lower is more robust). `docs/results/" + name + "` holds the intervals.", ""]
        out += _row_table(r, trained_by)
        out += ["", f"Made by (recorded in the JSON): `{r.get('command', '')}`. To make it again with the current "
                "recipe (`make bench-" + ("robust" if table == "core" else "full") + "`):", "",
                "```bash", ROWS_RUN.format(table=table), "```", ""]
    out += ["## Details", ""]
    for name in ("robust_core.json", "robust_full.json"):
        r = _load(res_dir, name)
        if r:
            sec = sec_robust(r, notes=False)
            sec[0] = sec[0].replace("## ", "### ", 1)
            out += [x for x in sec if not x.startswith("- command: ")]
    return "\n".join(out).rstrip("\n") + "\n"


def misp2022_results_md() -> str:
    """recipes/misp2022/RESULTS.md: no real-data result yet, and the commands that make one."""
    return "\n".join([
        "# MISP2022 recipe: results", "",
        "No result on the real MISP2022 corpus exists yet: the corpus is licensed and cannot be redistributed, "
        "and the toolkit has not been run on it. Every measured number is on SynthMISP "
        "(`recipes/synthmisp/RESULTS.md`), which has the same layout and runs through this recipe.", "",
        "## Commands", "",
        "With the release at `/path/to/MISP2022` (audio/, video/, transcription/, roi_coordinates/; "
        "`docs/MISP2022_FORMATS.md`):", "",
        "```bash",
        "cd recipes/misp2022",
        "./run.sh --misp_root /path/to/MISP2022 --nj 8 --ngpu 4 --stop_stage 14   # A0, V, AV0, AV5, AV6; decode, sweep, report",
        "./run.sh --misp_root /path/to/MISP2022 --stage 1 --stop_stage 14 --eval_segments /path/to/eval_segments.txt"
        "   # evaluation release: submission files",
        "./run.sh --misp_root /path/to/MISP2022 --ngpu 4 --stage 15 --stop_stage 18 \\",
        "    --rows ../../conf/rows/dai2024.yaml --rows_table full --rows_out exp/rows_full.json   # the Dai et al. rows",
        "python -m avsr.bin.report --decode_dir exp/decode --models a0 v av0 av5 av6 --sets dev eval \\",
        "    --baseline a0 --out exp/report",
        "```", "",
        "Outputs: `exp/report.md` (CER with 95 % bootstrap intervals, paired comparisons against A0, cpCER per "
        "session and overall), `exp/submission/<model>_eval.txt` (with `--eval_segments`), "
        "`exp/sweep/eval/sweep.md` (CER vs frame loss) and the rows table JSON. Add a table here in the style of "
        "`recipes/synthmisp/RESULTS.md` when a run exists.", ""])


# (relative path of the page, how to render it); ``res_dir`` is docs/results
RECIPE_SWEEP = "docs/results/recipe_sweep_mini"
DEMO_RESULTS = "docs/results/demo"       # make demo's report and sweep (their JSONs copied from the run)
MINI_RESULTS = "docs/results/mini"       # make bench-train's (copied there by the Makefile)


def render_docs(root, out_root=None, notes_dir=None) -> Dict[str, str]:
    """Render every committed report under ``root`` (the repository) from its committed JSON into
    ``out_root`` (default ``root``); returns ``{relative path: text}``."""
    global NOTES_DIR
    old, NOTES_DIR = NOTES_DIR, notes_dir
    try:
        res = os.path.join(root, "docs", "results")
        pages = {"docs/BENCHMARKS.md": benchmarks_md(res),
                 "recipes/synthmisp/RESULTS.md": synthmisp_results_md(res),
                 "recipes/misp2022/RESULTS.md": misp2022_results_md()}
        for sub in (DEMO_RESULTS, MINI_RESULTS):
            d = os.path.join(root, sub)
            sw = _load(d, "sweep.json")
            if sw:
                pages[f"{sub}/sweep.md"] = sweep_md(sw, reference="AV0", baseline="A0")
            r = _load(d, "report.json")
            if r:
                pages[f"{sub}/report.md"] = report_md(r["rows"], missing=r.get("missing") or (),
                                                     no_reference=r.get("no_reference") or (),
                                                     stage_seconds=r.get("stage_seconds"))
        sw = _load(os.path.join(root, RECIPE_SWEEP), "sweep.json")
        if sw:
            pages[f"{RECIPE_SWEEP}/sweep.md"] = OLD_RULES_NOTE + "\n\n" + sweep_md(sw, reference="AV0", baseline="A0")
        for name in ("report", "control_a0n"):
            r = _load(os.path.join(root, RECIPE_SWEEP), f"{name}.json")
            if r:
                pages[f"{RECIPE_SWEEP}/{name}.md"] = (OLD_RULES_NOTE + "\n\n"
                                                      + report_md(r["rows"], missing=r.get("missing") or ()))
    finally:
        NOTES_DIR = old
    for rel, text in pages.items():
        p = os.path.join(out_root or root, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w", encoding="utf-8") as f:
            f.write(text)
    return pages
