#!/usr/bin/env python
"""Paired CER differences between decode dirs of the same data dir (``avsr decode --data_dir``: each has
``text``), with 95 % intervals over utterances and over recordings (sessions), to a JSON with the command.

usage: decode_dirs_paired.py DATA_DIR OUT.json NAME=DECODE_DIR [...] -- ROW:OTHER [...]
"""
import json
import sys

from avsr.data.datadir import read_datadir
from avsr.eval.claims import UNITS, Resampler, paired_diff
from avsr.eval.metrics import read_text_file, utt_errors


def main(argv):
    data, out = argv[0], argv[1]
    k = argv.index("--")
    dirs = dict(x.split("=", 1) for x in argv[2:k])
    specs = argv[k + 1:]
    dd = read_datadir(data)
    utts = sorted(dd.text)
    sw = {"utt_ids": utts, "utt_recordings": [dd.recording_of(u) for u in utts], "utt_errors": {}}
    for name, d in dirs.items():
        hyp = read_text_file(f"{d}/text")
        ee = [utt_errors(dd.text[u], hyp.get(u, "")) for u in utts]
        sw["utt_errors"][name] = {"c": [e for e, _ in ee]}
        sw["utt_ref_chars"] = [n for _, n in ee]
    res = {"command": "docs/notebook/tools/decode_dirs_paired.py " + " ".join(argv), "data_dir": data,
           "utterances": len(utts), "cer": {}, "comparisons": {}}
    for unit in UNITS:
        rs = Resampler(sw, unit=unit)
        res.setdefault("units", {})[unit] = rs.units
        for name in dirs:
            res["cer"][name] = round(rs.point(name, "c"), 2)
        for spec in specs:
            row, other = spec.split(":")
            pd = paired_diff(rs, row, other, "c")
            res["comparisons"].setdefault(spec, {})[unit] = {
                "diff": round(pd["diff"], 2), "ci95": [round(x, 2) for x in pd["ci95"]], "p": round(pd["p"], 3)}
    json.dump(res, open(out, "w", encoding="utf-8"), indent=1, ensure_ascii=False)
    print(json.dumps(res, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main(sys.argv[1:])
