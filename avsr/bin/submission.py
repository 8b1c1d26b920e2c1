"""Write a challenge submission from a decode: exactly the segment file's ids (``avsr submission``).

    python -m avsr.bin.submission --hyp exp/decode/av6_eval/text --ids data/eval/eval_segment_ids \\
        --out exp/submission/av6_eval.txt

``--ids`` is the list of segment ids of the official segment file (recipe stage 1 writes it as
``eval_segment_ids`` in the set's data dir, one id per line, in the file's order).  The output has one
line ``<segment_id> <text>`` per id, in that order, and nothing else: a hypothesis for an id that is
not in the list is an error (the decode ran on another set), and an id without a hypothesis (its
media could not be read, listed in the decode's ``skipped``) is written with an empty text and
reported, so the file always holds exactly the segment file's ids.  Written atomically.
"""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional, Sequence

from avsr.bin import HelpFormatter
from avsr.utils.io import write_text_atomic


def read_ids(path: str) -> List[str]:
    ids: List[str] = []
    seen = set()
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            s = line.strip()
            if not s:
                continue
            u = s.split()[0]
            if u in seen:
                raise ValueError(f"{path}:{n}: duplicate segment id {u}")
            seen.add(u)
            ids.append(u)
    if not ids:
        raise ValueError(f"{path}: no segment ids")
    return ids


def read_hyps(path: str) -> dict:
    out = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.strip():
                continue
            u, _, text = line.partition(" ")
            out[u] = text.strip()
    return out


def write_submission(hyp_path: str, ids_path: str, out_path: str) -> dict:
    ids = read_ids(ids_path)
    hyps = read_hyps(hyp_path)
    extra = sorted(set(hyps) - set(ids))
    if extra:
        raise ValueError(f"{hyp_path}: {len(extra)} hypothesis id(s) not in {ids_path}, e.g. {extra[0]}")
    missing = [u for u in ids if u not in hyps]
    write_text_atomic(out_path, "".join(f"{u} {hyps.get(u, '')}".rstrip() + "\n" for u in ids))
    return {"ids": len(ids), "written": len(ids), "empty_for_missing_hypothesis": missing}


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="avsr submission", description=__doc__.split("\n\n")[0],
                                 formatter_class=HelpFormatter)
    ap.add_argument("--hyp", required=True, help="hypotheses, Kaldi text format (a decode dir's text)")
    ap.add_argument("--ids", required=True, help="segment ids of the official segment file, one per line")
    ap.add_argument("--out", required=True, help="submission file to write")
    args = ap.parse_args(argv)
    try:
        rep = write_submission(args.hyp, args.ids, args.out)
    except (OSError, ValueError) as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    if rep["empty_for_missing_hypothesis"]:
        print(f"WARNING: {args.hyp}: no hypothesis for {len(rep['empty_for_missing_hypothesis'])} segment(s), "
              f"written with an empty text: {', '.join(rep['empty_for_missing_hypothesis'][:5])}", file=sys.stderr)
    print(f"{args.out}: {rep['written']} segments (exactly the ids of {args.ids})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
