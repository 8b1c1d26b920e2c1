"""Extract per-utterance lip-ROI files for a data dir (``avsr prepare_rois``).

    python -m avsr.bin.prepare_rois --data_dir data/train_all --detection_dir <root>/detection/train/far \\
        --out_dir dump/roi/train --filtered_dir data/train --nj 2 --spk_prefix S

    # an evaluation set: every segment stays, those without lip ROIs are decoded audio-only
    python -m avsr.bin.prepare_rois --data_dir data/eval_all --detection_dir <root>/detection/eval/far \
        --out_dir dump/roi/eval --filtered_dir data/eval --spk_prefix S --keep_all

``--crop official`` (default): the MISP2022 baseline's lip crop (side max(w, h, 96) native pixels
around the box, clipped to the frame, shrunk to 96x96 only when larger; cut from the RGB frame and
converted with the baseline's gray weights); ``--crop toolkit``: the toolkit's earlier 1.6x square
on the gray frame (:mod:`frontends.roi`).  ``--keep_all``: the filtered dir keeps every utterance;
those without ROI are listed in ``<filtered_dir>/utt2audio_only`` (``<utt> <reason>``) and have no
``roi.scp`` entry.  What is extracted and how: :mod:`avsr.data.roi_dump`
(:func:`~avsr.data.roi_dump.extract_rois`).
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from avsr.bin import HelpFormatter
from avsr.data.datadir import DataDirError
from avsr.data.roi_dump import extract_rois
from frontends.roi import CROP_MODES, DEFAULT_CROP


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="avsr prepare_rois", formatter_class=HelpFormatter,
                                 description="Extract 96x96 lip ROIs for a data dir (see module doc).")
    ap.add_argument("--data_dir", required=True, help="input data dir (segments, utt2spk, video.scp)")
    ap.add_argument("--detection_dir", required=True,
                    help="folder with <recording>.json lip-box files (any form frontends.lip_boxes reads, "
                         "e.g. the release's roi_coordinates/<set>/far/lip)")
    ap.add_argument("--out_dir", required=True, help="where ROI files, roi.scp and reports go")
    ap.add_argument("--filtered_dir", default=None,
                    help="also write the data dir restricted to utterances with ROIs here")
    ap.add_argument("--nj", type=int, default=1, help="parallel worker processes (sessions)")
    ap.add_argument("--spk_prefix", default="",
                    help="prefix of data-dir speaker ids not used in detection files (MISP: S)")
    ap.add_argument("--crop", choices=CROP_MODES, default=DEFAULT_CROP,
                    help="lip crop: official = the MISP2022 baseline's (default), toolkit = the 1.6x square")
    ap.add_argument("--keep_all", action="store_true",
                    help="keep every utterance in --filtered_dir; those without ROI are listed in "
                         "utt2audio_only and decoded audio-only (evaluation sets)")
    ap.add_argument("--no_progress", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    if args.nj < 1:
        ap.error("--nj must be >= 1")
    if args.keep_all and not args.filtered_dir:
        ap.error("--keep_all needs --filtered_dir (the data dir that keeps every utterance)")
    try:
        rep = extract_rois(args.data_dir, args.detection_dir, args.out_dir, nj=args.nj,
                           spk_prefix=args.spk_prefix, filtered_dir=args.filtered_dir,
                           progress=not args.no_progress, crop=args.crop, keep_all=args.keep_all)
    except DataDirError as e:  # names the file already
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"ERROR: {args.data_dir}: {e}", file=sys.stderr)
        return 1
    print(f"{args.data_dir}: {rep['sessions']} sessions ({rep['sessions_failed']} failed), "
          f"{rep['utterances']} utterances, {rep['with_roi']} with ROIs, {rep['skipped']} skipped"
          + ("" if not rep["skipped_by_reason"] else " (" + ", ".join(
              f"{n} {k}" for k, n in rep["skipped_by_reason"].items()) + ")")
          + (f", {rep['audio_only']} kept audio-only" if args.keep_all else "")
          + f", {rep['roi_frames']} ROI frames, {rep['wall_seconds']:.1f} s with nj={rep['nj']}",
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
