#!/usr/bin/env python
"""Paired differences (CER points) with 95 % intervals between cells of an ``avsr eval`` sweep, over
utterances and over recordings (sessions), written to a JSON with the command.

usage: paired_intervals.py SWEEP.json OUT.json ROW@COND:OTHER@COND [...]
"""
import json
import sys

from avsr.eval.claims import UNITS, Resampler, paired_diff


def main(src, out, specs):
    sw = json.load(open(src, encoding="utf-8"))
    res = {"command": "docs/notebook/tools/paired_intervals.py " + " ".join(sys.argv[1:]), "sweep": src,
           "utterances": len(sw["utt_ref_chars"]), "comparisons": {}}
    for unit in UNITS:
        rs = Resampler(sw, unit=unit)
        res.setdefault("units", {})[unit] = rs.units
        for spec in specs:
            (row, cond), (other, ocond) = (x.split("@", 1) for x in spec.split(":"))
            pd = paired_diff(rs, row, other, cond, ocond)
            lo, hi = pd["ci95"]
            res["comparisons"].setdefault(spec, {})[unit] = {
                "diff": round(pd["diff"], 2), "ci95": [round(lo, 2), round(hi, 2)],
                "half_width": round((hi - lo) / 2, 2), "p": round(pd["p"], 3)}
    json.dump(res, open(out, "w", encoding="utf-8"), indent=1, ensure_ascii=False)
    print(json.dumps(res["comparisons"], indent=1))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
