"""Generate a SynthMISP corpus in the MISP2022 release layout as the official baselines read it (``avsr synthmisp``).

    python -m avsr.bin.synthmisp --out corpus/synthmisp_tiny --preset tiny --seed 1 --nj 2

Presets, knobs and the layout: :mod:`avsr.synthmisp.generate` (its docstring is the ``--help`` text).
"""
from __future__ import annotations

import argparse
import dataclasses
import json

from avsr.bin import HelpFormatter
from avsr.synthmisp.generate import PRESETS, Knobs, generate, knobs_for
from avsr.synthmisp.generate import __doc__ as _generate_doc


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="avsr synthmisp", description=_generate_doc,
                                formatter_class=HelpFormatter)
    p.add_argument("--out", required=True, help="corpus root to write (MISP2022 release layout; differences: docs/SYNTHMISP.md)")
    p.add_argument("--preset", default="tiny", choices=sorted(PRESETS), help="corpus size and knobs (docs/SYNTHMISP.md)")
    p.add_argument("--seed", type=int, default=1, help="generator seed: the same seed and knobs give the same bytes")
    p.add_argument("--nj", type=int, default=1, help="parallel sessions (output bytes do not depend on it)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    for f in dataclasses.fields(Knobs):
        default = f.default
        if isinstance(default, tuple):
            p.add_argument(f"--{f.name}", type=type(default[0]), nargs=len(default), default=None,
                           help=f"(preset value; base default {' '.join(map(str, default))})")
        else:
            p.add_argument(f"--{f.name}", type=type(default), default=None,
                           help=f"(preset value; base default {default})")
    return p


def main(argv=None) -> None:
    p = _parser()
    a = p.parse_args(argv)
    over = {f.name: (tuple(getattr(a, f.name)) if isinstance(getattr(a, f.name), list) else getattr(a, f.name))
            for f in dataclasses.fields(Knobs)}
    try:
        knobs_for(a.preset, **over)
    except ValueError as e:
        p.error(str(e))
    summary = generate(a.out, a.preset, a.seed, a.nj, progress=not a.quiet, **over)
    print(json.dumps({k: summary[k] for k in ("preset", "seed", "splits", "wall_s", "cpu_s_by_part")},
                     indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
