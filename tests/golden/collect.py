"""Golden decode outputs of a recipe's models: data-dir decodes, wav+mp4 pair decodes and the sweep.

``collect(root)`` takes a recipe run with the layout of ``tests/test_recipe_train.py`` (``root/corpus``,
``root/exp``, ``root/data``) and returns every hypothesis of:

* the recipe's own decode stage (``exp/decode/<model>_dev/text``, beam 2);
* ``avsr decode --data_dir`` of eval with CTC greedy and random frame loss 0.5 (a0, av0, av6);
* ``avsr decode --pairs`` (a full-frame mp4 with its detection JSON, and two audio-only pairs), beam 2
  and greedy (av0, av6), 8 s chunks;
* the sweep (A0, AV0, AV5, AV6 at threshold 0; random 0 / 0.5 / 1, segment 0.5, whole, babble -5 dB;
  beam 2), cached and uncached.

``tiny_recipe.json`` was first recorded before the decode paths were merged into ``Speech2Text``
(commit b561a7a), and re-recorded when the recipe moved to the official MISP2022 preparation (ids,
boundaries, lip crop, release layout of SynthMISP); ``test_recipe_train.py::test_golden_outputs``
checks that they are unchanged.  Re-record (only for an intended change of results) with
``python tests/golden/collect.py ROOT tests/golden/tiny_recipe.json``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys


def _text(path):
    out = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition(" ")
            out[k] = v
    return out


def collect(root: str) -> dict:
    py = sys.executable
    exp = os.path.join(root, "exp")
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    g = {"datadir": {}, "pairs": {}, "sweep": {}}
    for d in sorted(os.listdir(os.path.join(exp, "decode"))):
        g["datadir"][d + "@beam2"] = _text(os.path.join(exp, "decode", d, "text"))
    for m in ("a0", "av0", "av6"):
        od = os.path.join(root, "golden_decode", m)
        subprocess.run([py, "-m", "avsr.cli", "decode", "--model", os.path.join(exp, "packed", m), "--data_dir",
                        os.path.join(root, "data", "eval"), "--out_dir", od, "--ctc_greedy", "--batch_size", "4",
                        "--missing_rate", "0.5"], check=True, env=env, capture_output=True)
        g["datadir"][m + "_eval@greedy@random0.5"] = _text(os.path.join(od, "text"))
    c = os.path.join(root, "corpus")
    pairs = os.path.join(root, "golden_pairs.tsv")
    with open(pairs, "w") as f:
        s = "R04_S005006_C06_I0"
        f.write(f"{s}\t{c}/audio/dev/far/{s}_Far_0.wav\t{c}/video/dev/far/{s}_Far.mp4\t"
                f"{c}/roi_coordinates/dev/far/lip/{s}_Far.json\n")
        f.write(f"{s}-a\t{c}/audio/dev/far/{s}_Far_0.wav\t-\n")
        s = "R09_S007008_C04_I0"
        f.write(f"{s}-a\t{c}/audio/eval/far/{s}_Far_0.wav\t-\n")
    for m in ("av0", "av6"):
        for search in (["--beam_size", "2"], ["--ctc_greedy"]):
            o = os.path.join(root, f"golden_pairs_{m}{search[0]}.jsonl")
            subprocess.run([py, "-m", "avsr.cli", "decode", "--model", os.path.join(exp, "packed", m), "--pairs",
                            pairs, "--speaker", "005", "--output", o, "--chunk_seconds", "8", "--no_progress"] + search,
                           check=True, env=env, capture_output=True)
            with open(o, encoding="utf-8") as f:
                g["pairs"][f"{m}{search[0]}"] = {r["key"]: r["text"] for r in map(json.loads, f)}
    from avsr.data.dataset import AVSRDataset
    from avsr.eval.sweep import default_conditions, run_sweep
    from avsr.inference import Speech2Text
    ds = AVSRDataset(os.path.join(root, "data", "dev"), None, modality="audiovisual")
    dec = {n: Speech2Text.from_packed(os.path.join(exp, "packed", m), beam_size=2, adapter_threshold=0.0)
           for n, m in (("A0", "a0"), ("AV0", "av0"), ("AV5", "av5"), ("AV6", "av6"))}
    conds = default_conditions([0.0, 0.5, 1.0], [0.5], True, [-5.0])
    for cache in (True, False):
        r = run_sweep(dec, ds, conds, batch_size=4, cache=cache, progress=False)
        g["sweep"]["cached" if cache else "uncached"] = r["hyps"]
    return g


if __name__ == "__main__":
    res = collect(sys.argv[1])
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        json.dump(res, f, indent=1, ensure_ascii=False, sort_keys=True)
    print("wrote", sys.argv[2])
