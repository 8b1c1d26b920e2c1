"""The SynthMISP proxy checks on a generated corpus (``avsr synthmisp_checks``), as JSON.

    python -m avsr.bin.synthmisp_checks --root corpus/synthmisp_mini --split dev --out checks.json

What the checks measure: :mod:`avsr.synthmisp.checks`.
"""
from __future__ import annotations

import argparse
import json
import os

from avsr.bin import HelpFormatter
from avsr.synthmisp.checks import __doc__ as _checks_doc
from avsr.synthmisp.checks import run_checks


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="avsr synthmisp_checks", description=_checks_doc, formatter_class=HelpFormatter)
    p.add_argument("--root", required=True, help="a generated SynthMISP corpus root")
    p.add_argument("--split", default="dev", help="train, dev or eval")
    p.add_argument("--per_class", type=int, default=300, help="at most this many lip crops per viseme class in the viseme check")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampled crops")
    p.add_argument("--max_sessions", type=int, default=None, help="use at most this many sessions (default: all)")
    p.add_argument("--out", default=None, help="also write the JSON here (it is always printed)")
    a = p.parse_args(argv)
    res = run_checks(a.root, a.split, a.per_class, a.seed, a.max_sessions)
    txt = json.dumps(res, indent=1)
    print(txt)
    if a.out:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        with open(a.out, "w") as f:
            f.write(txt)


if __name__ == "__main__":
    main()
