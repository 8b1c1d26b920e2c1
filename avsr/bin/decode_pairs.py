"""``avsr decode`` for your own files: wav (+ mp4) pairs with a packed model.

    avsr decode --model exp/packed/av6 --wav a.wav --video a.mp4
    avsr decode --model exp/packed/av6 --pairs list.tsv --output hyp.jsonl [--output_format kaldi]

``list.tsv``: one pair per line, ``KEY<TAB>WAV[<TAB>VIDEO[<TAB>DETECTION_JSON]]`` (``-`` = none; a
line starting with ``#`` is a comment; paths may hold spaces and ``#``); ``--pairs -`` reads the list
from standard input.  Video: an ROI video (mouth crop), a full-frame video with a MISP
detection JSON (``--detection``), or a full-frame video searched by an offline detector
(``--detector haar|mediapipe``; ``--face-index`` / ``--bbox x1,y1,x2,y2`` pick the target face; by
default the largest, with a warning).  No video, or no face found: audio only (the MS-Adapter path
of an AV model), with a warning.

Recordings longer than ``--chunk_seconds`` are decoded in fixed windows of that length (texts
joined); above ``--max_seconds`` a pair is refused with a clear message.

Output: JSON lines (``key``, ``text``, ``warnings``, ``timing``, ``modality``) or Kaldi ``text``
(``--output_format kaldi``), to ``--output`` or stdout.  A bad pair prints one error line naming the
file and is skipped; the others are decoded and written; the exit code is 0 when all pairs
succeeded, 3 when some failed, 1 when a single ``--wav`` pair failed.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from typing import List


def build_parser():
    ap = argparse.ArgumentParser(prog="avsr decode", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--model", required=True, help="packed model dir (avsr pack)")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--wav", help="one audio file (wav/flac, any rate / channels)")
    src.add_argument("--pairs", help="TSV list of pairs (see above)")
    ap.add_argument("--video", help="the video of --wav (mp4 etc.)")
    ap.add_argument("--detection", help="MISP detection JSON for --video")
    ap.add_argument("--speaker", help="speaker id in the detection JSON")
    ap.add_argument("--detector", default="haar", choices=["haar", "mediapipe"])
    ap.add_argument("--face-index", "--face_index", dest="face_index", type=int, default=None)
    ap.add_argument("--bbox", default=None, help="x1,y1,x2,y2 of the target face (pixels)")
    ap.add_argument("--video_type", default="auto", choices=["auto", "roi", "full"])
    ap.add_argument("--output", default="-", help="output file (default stdout)")
    ap.add_argument("--output_format", default="jsonl", choices=["jsonl", "kaldi"])
    ap.add_argument("--beam_size", type=int, default=10)
    ap.add_argument("--ctc_greedy", action="store_true")
    ap.add_argument("--batch_size", type=int, default=8)
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--adapter_threshold", type=float, default=None,
                    help="MS-Adapter routing: share of present frames at or below which an utterance is decoded "
                         "audio-only with the adapters (default: the packed model's, normally 0)")
    ap.add_argument("--chunk_seconds", type=float, default=30.0)
    ap.add_argument("--max_seconds", type=float, default=1800.0)
    ap.add_argument("--no_progress", action="store_true")
    ap.add_argument("--summary", default=None, help="write a JSON summary (counts, per-step seconds, peak RSS) here")
    return ap


def read_pairs(path: str):
    """Pairs from a TSV list (``-``: standard input).  A line whose first non-blank character is ``#`` is
    a comment; a ``#`` inside a path is part of the path."""
    if path == "-":
        lines = sys.stdin.read().splitlines()
        path = "<stdin>"
    else:
        from frontends.errors import check_file
        check_file(path)
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    out = []
    for i, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        # tab-separated (paths may hold spaces); a line without a tab is split on blanks
        parts = [x.strip() for x in line.split("\t")] if "\t" in line else line.split()
        if len(parts) < 2:
            raise ValueError(f"{path}:{i}: expected KEY WAV [VIDEO [DETECTION]], got {line!r}")
        parts += ["-"] * (4 - len(parts))
        key, wav, video, det = parts[:4]
        out.append((key, wav, None if video == "-" else video, None if det == "-" else det))
    return out


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from tqdm import tqdm

    from avsr.inference import Speech2Text, check_device, fixed_windows
    from frontends.pairs import prepare_pair

    check_device(args.device)
    bbox = None
    if args.bbox:
        try:
            bbox = [float(x) for x in args.bbox.split(",")]
            assert len(bbox) == 4
        except (ValueError, AssertionError):
            raise ValueError(f"--bbox expects x1,y1,x2,y2, got {args.bbox!r}") from None
    pairs = [("utt", args.wav, args.video, args.detection)] if args.wav else read_pairs(args.pairs)
    kw = {} if args.adapter_threshold is None else {"adapter_threshold": args.adapter_threshold}
    s2t = Speech2Text.from_packed(args.model, device=args.device, beam_size=args.beam_size,
                                  ctc_greedy=args.ctc_greedy, **kw)
    sink = sys.stdout if args.output == "-" else open(args.output + ".tmp", "w", encoding="utf-8")
    failed = 0
    bar = tqdm(total=len(pairs), desc="decode", disable=args.no_progress or len(pairs) < 2, file=sys.stderr)
    pending: List = []

    def flush():
        # decode the chunks of the prepared pairs of `pending` (Speech2Text batches them)
        items = [{"utt_id": key, "audio": a, "video": r}
                 for key, prep, chunks, meta in pending for a, r in chunks]
        results = iter(s2t.decode_items(items, batch_size=args.batch_size))
        for key, prep, chunks, meta in pending:
            rs = [next(results) for _ in chunks]
            text = "".join(r.text for r in rs)
            rec = {"key": key, "text": text, "modality": rs[0].modality if rs else None,
                   "warnings": prep.warnings, "chunks": len(chunks), **meta,
                   "timing": {k: round(v, 4) for k, v in prep.timings.items()}}
            if args.output_format == "kaldi":
                sink.write(f"{key} {text}\n")
            else:
                sink.write(json.dumps(rec, ensure_ascii=False) + "\n")
            for w in prep.warnings:
                print(f"avsr decode: warning: {key}: {w}", file=sys.stderr)
        sink.flush()
        pending.clear()

    t_all = time.perf_counter()
    steps = {"audio_load": 0.0, "video_decode": 0.0, "roi": 0.0}
    audio_seconds = 0.0
    for key, wav, video, det in pairs:
        try:
            prep = prepare_pair(wav, video, detection=det or args.detection, speaker=args.speaker,
                                detector=args.detector, face_index=args.face_index, bbox=bbox,
                                video_type=args.video_type, max_seconds=args.max_seconds)
            if video is None:
                prep.warnings.append("no video: audio-only decoding")
            pending.append((key, prep, fixed_windows(prep.audio, prep.roi, args.chunk_seconds), {"wav": wav, "video": video}))
            for k in steps:
                steps[k] += prep.timings.get(k, 0.0)
            audio_seconds += prep.duration
        except Exception as e:  # noqa: BLE001 - one line naming the file, the batch goes on
            if args.wav:
                raise                   # the CLI prints it as one line naming the file, exit 1
            failed += 1
            print(f"avsr decode: error: {key}: {e}", file=sys.stderr)
        bar.update(1)
        if len(pending) >= args.batch_size:
            flush()
    flush()
    bar.close()
    if sink is not sys.stdout:
        sink.close()
        os.replace(args.output + ".tmp", args.output)
    wall = time.perf_counter() - t_all
    if args.summary:
        summ = {"pairs": len(pairs), "decoded": len(pairs) - failed, "failed": failed, "wall_seconds": wall,
                "audio_seconds": audio_seconds, "steps_seconds": {**steps, "encoder": s2t.timings["encode"],
                                                                  "search": s2t.timings["search"]},
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "rtf": wall / audio_seconds if audio_seconds else None,
                "search": s2t.search_name, "device": args.device}
        with open(args.summary, "w") as f:
            json.dump(summ, f, indent=1)
    print(f"avsr decode: {len(pairs) - failed} decoded, {failed} failed, {time.perf_counter() - t_all:.1f} s, "
          f"encoder {s2t.timings['encode']:.2f} s, search {s2t.timings['search']:.2f} s, "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB", file=sys.stderr)
    return 3 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
