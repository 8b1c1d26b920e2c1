"""Validate Kaldi-style data dirs (``avsr datadir validate DIR...``; exit 1 on problems).

    python -m avsr.bin.datadir validate data/train --require_roi

The checks are :func:`avsr.data.datadir.validate_datadir`.
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from avsr.bin import HelpFormatter
from avsr.data.datadir import validate_datadir


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="avsr datadir", formatter_class=HelpFormatter,
                                 description="Validate Kaldi-style data dirs.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("validate", help="check a data dir (exit 1 on problems)", formatter_class=HelpFormatter)
    v.add_argument("dirs", nargs="+", help="Kaldi-style data dirs")
    v.add_argument("--no_media", action="store_true", help="skip file existence/duration checks")
    v.add_argument("--require_video", action="store_true", help="a dir without video.scp is a problem")
    v.add_argument("--require_roi", action="store_true", help="a dir without roi.scp is a problem")
    args = ap.parse_args(argv)
    bad = 0
    for d in args.dirs:
        res = validate_datadir(d, check_media=not args.no_media, require_video=args.require_video,
                               require_roi=args.require_roi)
        if res.ok:
            print(f"{d}: OK")
        else:
            bad += 1
            print(f"{d}: INVALID\n{res.report()}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
