"""``avsr decode`` for your own files: wav (+ mp4) pairs with a packed model.

    avsr decode --model exp/packed/av6 --wav a.wav --video a.mp4
    avsr decode --model exp/packed/av6 --video a.mp4                      # the audio from the mp4's own track
    avsr decode --model exp/packed/av6 --pairs list.tsv --output hyp.jsonl [--output_format kaldi] [--nbest 5]
    avsr decode --model exp/packed/av6 --wav a.wav --output_format srt --output a.srt

``list.tsv``: one pair per line, ``KEY<TAB>WAV[<TAB>VIDEO[<TAB>DETECTION_JSON]]`` (``-`` = none; a
WAV of ``-`` takes the audio from the video's own track; a line starting with ``#`` is a comment;
paths may hold spaces and ``#``; a key may not hold white space or a path separator, and each key is
used once: a malformed list is refused before anything is decoded, naming its line); ``--pairs -``
reads the list from standard input.  Video: an ROI
video (mouth crop), a full-frame video with a MISP detection JSON (``--detection``), or a
full-frame video searched by an offline detector (``--detector haar|mediapipe``; ``--face-index`` /
``--bbox x1,y1,x2,y2`` pick the target face; by default the largest, with a warning).  No video, or
no face found: audio only (the MS-Adapter path of an AV model), with a warning.  A video-only model
needs no audio at all.  A model packed with ``--decode_fusion entropy`` (MLA) decodes the entropy
fusion of its audio and video paths' CTC posteriors (audio alone without video); ``--decode_fusion
none|entropy`` overrides the pack.

Each recording goes through :meth:`avsr.inference.Speech2Text.transcribe`: it is cut into
voice-activity segments (:func:`frontends.vad.energy_vad`, at most ``--max_segment_seconds`` each;
``--segmentation fixed`` or an explicit ``--chunk_seconds S``: fixed windows of S seconds instead;
``none``: one segment), each segment is decoded, and for the outputs with token times (``jsonl``, ``ctm``)
its tokens are timed by forced alignment (:mod:`avsr.alignment`; on the pack's local aligner when it has one,
``--align_adapt_steps`` its adaptation steps, else on the model's CTC).  Above ``--max_seconds`` a pair is
refused with a clear message.

Output (``--output_format``, to ``--output`` or stdout; :func:`avsr.api.format_transcription`):
``jsonl`` (default): one JSON object per pair with ``key``, ``text``, ``score``, ``segments``
(``start``, ``end``, ``text``, ``score``, ``modality``, ``tokens`` with ``start``/``end``/``conf``),
``modality``, ``warnings``, ``timing``, ``chunks`` (segments), and with ``--nbest N`` (N > 1) an
``nbest`` list (``text``, ``score``) per pair and per segment; ``text``: the text per line;
``kaldi``: ``<key> <text>`` (a single ``--wav``/``--video`` pair's key is its file name without the
extension); ``srt`` / ``vtt``: one cue per segment (with ``--pairs``, ``--output``
is a directory that gets ``<key>.srt`` / ``<key>.vtt``); ``ctm``: ``<key> 1 <start> <dur> <token>
<conf>`` per token.  A bad pair prints one error line naming the file and is skipped; the others
are decoded and written; the exit code is 0 when all pairs succeeded, 3 when some failed, 1 when a
single ``--wav``/``--video`` pair failed.  While a ``--pairs`` batch runs, ``--output`` is written as
``OUTPUT.tmp`` and each decoded pair is kept in ``OUTPUT.progress.jsonl`` (in the directory, for
srt/vtt): started again with the same command after an interruption, the batch decodes only the pairs
not yet done (a failed pair is tried again); another model, list or option starts it over.
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

#: the decoded pairs of an unfinished --pairs batch (``OUTPUT.progress.jsonl``; removed at its end)
PROGRESS = "progress.jsonl"


def build_parser():
    from avsr.api import OUTPUT_FORMATS
    ap = argparse.ArgumentParser(prog="avsr decode", description=__doc__.split("\n\n")[0],
                                 formatter_class=HelpFormatter, epilog=__doc__)
    ap.add_argument("--model", required=True, help="packed model dir (avsr pack)")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--wav", help="one audio file (wav/flac, any rate / channels); without it, --video's own audio")
    src.add_argument("--pairs", help="TSV list of pairs (see above)")
    src.add_argument("--data_dir", help="instead: decode and score a prepared Kaldi-style data dir (its own "
                                        "options: avsr decode --data_dir DIR --help)")
    ap.add_argument("--video", help="the video of --wav (mp4 etc.), or alone: a video with its audio track")
    ap.add_argument("--detection", help="MISP detection JSON for --video")
    ap.add_argument("--speaker", help="speaker id in the detection JSON (default: the only one; with several, --face-index, else the "
                         "first id with a warning)")
    ap.add_argument("--detector", default="haar", choices=["haar", "mediapipe"],
                    help="offline face detector for a full-frame video without a detection JSON (mediapipe: landmarks; "
                         "make install sets it up, else pip install -e '.[landmarks]' && pip install --no-deps "
                         "mediapipe==0.10.21)")
    ap.add_argument("--detect_every", type=int, default=None,
                    help="run the offline detector on every N-th frame and interpolate the mouth boxes between "
                         "(frontends.face_detectors.track_mouth stride; default DEFAULT_STRIDE = 1: every frame, "
                         "searched near the last face, measured in docs/results/bench_detect.json)")
    ap.add_argument("--video_memory", default="stream", choices=["stream", "hold"],
                    help="stream: crop full-frame videos while decoding, no whole frame kept (default); hold: "
                         "decode every frame into memory first (the earlier path: same ROIs, more memory)")
    ap.add_argument("--face-index", "--face_index", dest="face_index", type=int, default=None,
                    help="the talker: an index into the detection JSON's sorted speaker ids, or into the detector's "
                         "faces from left to right (default: the only one; with several, the first id or the largest face, with a warning)")
    ap.add_argument("--bbox", default=None, help="x1,y1,x2,y2 of the target face (pixels)")
    ap.add_argument("--video_type", default="auto", choices=["auto", "roi", "full"],
                    help="roi: the video is a mouth crop; full: a full frame (detection JSON or detector); auto: roi "
                         "when the frame's longer side is at most 160 pixels")
    ap.add_argument("--output", default="-", help="output file (default stdout); a directory for srt/vtt with --pairs")
    ap.add_argument("--output_format", default="jsonl", choices=list(OUTPUT_FORMATS),
                    help="jsonl: a JSON object per pair with segments, token times and scores; text; kaldi: "
                         "<key> <text>; srt/vtt: subtitles; ctm: token times (see below)")
    ap.add_argument("--nbest", type=int, default=1, help="hypotheses per pair and segment with their scores "
                    "(jsonl; the beam is widened to at least N)")
    add_search_options(ap)
    add_decoder_options(ap)
    ap.add_argument("--segmentation", default="vad", choices=["vad", "fixed", "none"],
                    help="vad: energy VAD segments (frontends.vad); fixed: windows of --chunk_seconds; none: whole")
    ap.add_argument("--max_segment_seconds", type=float, default=20.0, help="longest voice-activity segment (seconds); longer speech is cut")
    ap.add_argument("--chunk_seconds", type=float, default=None,
                    help="fixed windows of this length (implies --segmentation fixed; default 30 s there)")
    ap.add_argument("--max_seconds", type=float, default=1800.0,
                    help="longest recording accepted (seconds); a longer pair is refused with a message")
    ap.add_argument("--summary", default=None, help="write a JSON summary (counts, per-step seconds, peak RSS) here")
    return ap


def read_pairs(path: str):
    """Pairs from a TSV list (``-``: standard input).  A line whose first non-blank character is ``#`` is
    a comment; a ``#`` inside a path is part of the path.  A WAV of ``-`` is None (the video's audio)."""
    if path == "-":
        lines = sys.stdin.read().splitlines()
        path = "<stdin>"
    else:
        from frontends.errors import check_file
        check_file(path)
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    out, seen = [], {}
    for i, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        # tab-separated (paths may hold spaces); a line without a tab is split on blanks
        parts = [x.strip() for x in line.split("\t")] if "\t" in line else line.split()
        if len(parts) < 2 or len(parts) > 4:
            raise ValueError(f"{path}:{i}: expected KEY<TAB>WAV[<TAB>VIDEO[<TAB>DETECTION_JSON]] "
                             f"(2 to 4 fields), got {len(parts)}: {line!r}")
        parts += ["-"] * (4 - len(parts))
        key, wav, video, det = parts
        why = key_problem(key)
        if why:
            raise ValueError(f"{path}:{i}: key {key!r} {why}")
        if key in seen:
            raise ValueError(f"{path}:{i}: key {key!r} already used on line {seen[key]} (keys name the outputs)")
        seen[key] = i
        if wav == "-" and video == "-":
            raise ValueError(f"{path}:{i}: {key}: neither a wav nor a video")
        out.append((key, None if wav == "-" else wav, None if video == "-" else video, None if det == "-" else det))
    return out


def single_key(wav, video) -> str:
    """The key of a single ``--wav``/``--video`` pair in the outputs: the file name without its extension
    (the wav's, else the video's; white space as ``_``), ``utt`` for standard input."""
    src = wav if wav not in (None, "-") else video
    if src in (None, "-"):
        return "utt"
    stem = os.path.splitext(os.path.basename(os.fspath(src)))[0] or "utt"
    return "_".join(stem.split())


def key_problem(key: str):
    """Why ``key`` cannot name a pair's outputs (a Kaldi/CTM field, an srt/vtt file name), or None."""
    if any(c.isspace() for c in key):
        return "holds white space (it is one field of the kaldi and ctm outputs)"
    if "/" in key or "\\" in key or key in (".", "..") or "\0" in key:
        return "holds a path separator or is '.' / '..' (with srt/vtt it names a file in --output)"
    return None


def main(argv=None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.data_dir:                    # (avsr.cli routes --data_dir to avsr.bin.decode itself)
        from avsr.bin.decode import main as decode_main
        return decode_main(argv)
    if not (args.wav or args.video or args.pairs):
        ap.error("one of --wav, --video or --pairs is required")
    if args.pairs and args.video:
        ap.error("--video goes with --wav (or alone); --pairs lists the videos itself")
    if args.nbest < 1:
        ap.error("--nbest must be >= 1")
    for opt in ("chunk_seconds", "max_segment_seconds"):
        if getattr(args, opt) is not None and not getattr(args, opt) > 0:
            ap.error(f"--{opt} must be > 0, got {getattr(args, opt)}")
    from tqdm import tqdm

    from avsr.api import TIMED_FORMATS, format_transcription, load_model
    if args.threads > 0:
        import torch
        torch.set_num_threads(args.threads)

    bbox = None
    if args.bbox:
        try:
            bbox = [float(x) for x in args.bbox.split(",")]
            assert len(bbox) == 4
        except (ValueError, AssertionError):
            raise ValueError(f"--bbox expects x1,y1,x2,y2, got {args.bbox!r}") from None
    from frontends.face_detectors import DEFAULT_STRIDE
    detect_every = DEFAULT_STRIDE if args.detect_every is None else args.detect_every
    if detect_every < 1:
        ap.error("--detect_every must be >= 1")
    single = args.pairs is None
    pairs = [(single_key(args.wav, args.video), args.wav, args.video, args.detection)] if single \
        else read_pairs(args.pairs)
    s2t = load_model(args.model, device=args.device, nbest=args.nbest, **search_overrides(args),
                     **decoder_overrides(args))
    if args.nbest > 1 and s2t.use_greedy:        # asked for, or the pack's default (a beam-0 pack)
        print(f"avsr decode: warning: --nbest {args.nbest} with CTC greedy search: one hypothesis per segment",
              file=sys.stderr)
    seg_mode = "fixed" if args.chunk_seconds is not None else args.segmentation
    seg_len = args.chunk_seconds if args.chunk_seconds is not None else (
        30.0 if seg_mode == "fixed" else args.max_segment_seconds)
    per_file = args.output_format in ("srt", "vtt") and not single
    if per_file:
        if args.output == "-":
            ap.error(f"--output_format {args.output_format} with --pairs writes one file per pair: give --output DIR")
        os.makedirs(args.output, exist_ok=True)
        sink = None
    else:
        sink = sys.stdout if args.output == "-" else open(args.output + ".tmp", "w", encoding="utf-8")
    log, done = None, {}
    if not single and args.output != "-":
        # every decoded pair goes to a progress log as it ends: the same command, started again after a
        # kill, writes the finished pairs' records as they were and decodes only the rest (failed pairs again)
        log = BatchLog(os.path.join(args.output, PROGRESS) if per_file else args.output + "." + PROGRESS, {
            **{k: v for k, v in sorted(vars(args).items()) if k not in ("output", "no_progress", "summary", "device", "threads")},
            # every listed file by its absolute path and stamp: a changed or re-detected file starts over
            "pairs": [[k] + [[os.path.abspath(f), path_stamp(f)] if f and f != "-" else f for f in files]
                      for k, *files in pairs],
            "detection": args.detection and [os.path.abspath(args.detection), path_stamp(args.detection)],
            "model_files": path_stamp(args.model)})
        if log.restarted:
            print(f"avsr decode: {log.path} is from another command (model, pairs or options differ): starting over",
                  file=sys.stderr)
        done = {r["key"]: r["out"] for r in log.records}
        if done:
            print(f"avsr decode: resuming: {len(done)} of {len(pairs)} pairs already decoded ({log.path})",
                  file=sys.stderr)
    failed = 0
    bar = tqdm(total=len(pairs), desc="decode", disable=args.no_progress or len(pairs) < 2, file=sys.stderr)
    t_all = time.perf_counter()
    steps = {"audio_load": 0.0, "video_decode": 0.0, "roi": 0.0, "vad": 0.0, "decode": 0.0, "align": 0.0}
    audio_seconds = 0.0
    for key, wav, video, det in pairs:
        if key in done:
            if sink is not None:
                sink.write(done[key])
                sink.flush()
            bar.update(1)
            continue
        try:
            tr = s2t.transcribe(wav, video, segmentation=seg_mode, max_segment_seconds=seg_len,
                                batch_size=args.batch_size, detection=det or args.detection, speaker=args.speaker,
                                detector=args.detector, face_index=args.face_index, bbox=bbox,
                                video_type=args.video_type, max_seconds=args.max_seconds,
                                detect_every=detect_every, stream=args.video_memory == "stream",
                                align=args.output_format in TIMED_FORMATS)
        except Exception as e:  # noqa: BLE001 - one line naming the file, the batch goes on
            if single:
                raise                   # the CLI prints it as one line naming the file, exit 1
            failed += 1
            bar.write(f"avsr decode: error: {key}: {e}", file=sys.stderr)    # above the progress bar
            bar.update(1)
            continue
        for k in steps:
            steps[k] += tr.timings.get(k, 0.0)
        audio_seconds += tr.duration
        extra = {"wav": wav, "video": video, "chunks": len(tr.segments)}
        out = format_transcription(tr, args.output_format, key=key, extra=extra, nbest=args.nbest > 1)
        if args.output_format == "jsonl":      # the record's per-step seconds keep their name "timing"
            rec = json.loads(out)
            rec["timing"] = rec.pop("timings")
            out = json.dumps(rec, ensure_ascii=False) + "\n"
        if per_file:
            path = os.path.join(args.output, f"{key}.{args.output_format}")
            try:
                with open(path + ".tmp", "w", encoding="utf-8") as f:
                    f.write(out)
                os.replace(path + ".tmp", path)
            except OSError as e:          # this pair's file only; the batch goes on
                failed += 1
                bar.write(f"avsr decode: error: {key}: cannot write {path}: {e.strerror or e}", file=sys.stderr)
                bar.update(1)
                continue
        else:
            sink.write(out)
            sink.flush()
        if log is not None:
            log.append({"key": key, "out": None if per_file else out})
        for w in tr.warnings:
            bar.write(f"avsr decode: warning: {key}: {w}", file=sys.stderr)
        bar.update(1)
    bar.close()
    if sink is not None and sink is not sys.stdout:
        sink.close()
        os.replace(args.output + ".tmp", args.output)
    if log is not None:
        log.finish()
    wall = time.perf_counter() - t_all
    if args.summary:
        summ = {"pairs": len(pairs), "decoded": len(pairs) - failed, "failed": failed, "wall_seconds": wall,
                "audio_seconds": audio_seconds, "steps_seconds": {**steps, "encoder": s2t.timings["encode"],
                                                                  "search": s2t.timings["search"]},
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "rtf": wall / audio_seconds if audio_seconds else None,
                "search": s2t.search_name, "device": args.device, "segmentation": seg_mode}
        with open(args.summary, "w") as f:
            json.dump(summ, f, indent=1)
    print(f"avsr decode: {len(pairs) - failed} decoded, {failed} failed, {time.perf_counter() - t_all:.1f} s, "
          f"encoder {s2t.timings['encode']:.2f} s, search {s2t.timings['search']:.2f} s, "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB", file=sys.stderr)
    return 3 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
