"""The SynthMISP proxy checks on a generated corpus (``avsr synthmisp_checks``), as JSON.

    python -m avsr.bin.synthmisp_checks --root corpus/synthmisp_mini --split dev --out checks.json

What the checks measure: :mod:`avsr.synthmisp.checks`.
"""
from __future__ import annotations

import argparse
import json
import os

from avsr.synthmisp.checks import __doc__ as _checks_doc
from avsr.synthmisp.checks import run_checks


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="avsr synthmisp_checks", description=_checks_doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", required=True)
    p.add_argument("--split", default="dev")
    p.add_argument("--per_class", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max_sessions", type=int, default=None)
    p.add_argument("--out", default=None)
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
