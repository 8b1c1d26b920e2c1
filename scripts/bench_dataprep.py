#!/usr/bin/env python
"""Time the misp2022 data-preparation stages on a corpus with --nj 1 and --nj 2.

    python scripts/bench_dataprep.py --misp_root corpora/synthmisp_mini --out docs/results/dataprep_mini.json

Runs recipes/misp2022/run.sh stage by stage (1 data, 2 rois, 3 tokens, 4 summary) into a
scratch dir per nj, and reports wall time per stage, the speed-up, ROI storage (bytes per
frame) and the data summary.  Outputs of the two runs are compared byte for byte.
"""
import argparse
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _bench_common import command_line, machine_info  # noqa: E402

RECIPE = os.path.join(HERE, "..", "recipes", "misp2022")
STAGES = [(1, "data"), (2, "rois"), (3, "tokens"), (4, "summary")]


def digest(d):
    """One hash of every output file under ``d`` (logs, stage markers and JSON reports aside), with ``d``'s
    own path in the tables (``roi.scp`` lists absolute paths) replaced, so two runs into different scratch
    dirs compare equal when their outputs are."""
    h = hashlib.sha256()
    me = os.path.abspath(d).encode()
    for p in sorted(glob.glob(os.path.join(d, "**", "*"), recursive=True)):
        if os.path.isfile(p) and "/logs/" not in p and not p.endswith((".done", ".json")):
            h.update(os.path.relpath(p, d).encode())
            with open(p, "rb") as f:
                h.update(f.read().replace(me, b"<DATA>"))
    return h.hexdigest()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--misp_root", required=True)
    p.add_argument("--nj", type=int, nargs="+", default=[1, 2])
    p.add_argument("--out", required=True)
    a = p.parse_args()
    root = os.path.abspath(a.misp_root)
    scratch = tempfile.mkdtemp(prefix="bench_dataprep_")
    res = {"machine": machine_info(), "command": command_line(), "misp_root": a.misp_root, "runs": {}}
    try:
        for nj in a.nj:
            exp, data = os.path.join(scratch, f"exp{nj}"), os.path.join(scratch, f"data{nj}")
            times = {}
            for n, name in STAGES:
                t0 = time.perf_counter()
                subprocess.run(["./run.sh", "--misp_root", root, "--exp_dir", exp, "--data_dir", data,
                                "--nj", str(nj), "--stage", str(n), "--stop_stage", str(n)],
                               cwd=RECIPE, check=True, stdout=subprocess.DEVNULL)
                times[name] = round(time.perf_counter() - t0, 1)
            rois = glob.glob(os.path.join(data, "dump", "roi", "**", "*.npz"), recursive=True)  # <split>/<rec>/<utt>.npz
            summary = json.load(open(os.path.join(exp, "data_summary.json")))
            frames = sum(s.get("roi_frames", 0) for s in summary.get("splits", {}).values()) \
                if isinstance(summary.get("splits"), dict) else None
            nbytes = sum(os.path.getsize(r) for r in rois)
            res["runs"][str(nj)] = {"stage_wall_s": times, "total_s": round(sum(times.values()), 1),
                                    "roi_files": len(rois), "roi_bytes": nbytes,
                                    "roi_bytes_per_frame": round(nbytes / frames, 1) if frames else None,
                                    "digest": digest(data)}
            res["summary"] = summary
        runs = res["runs"]
        if "1" in runs and "2" in runs:
            res["speedup_nj2"] = {k: round(runs["1"]["stage_wall_s"][k] / max(runs["2"]["stage_wall_s"][k], 1e-9), 2)
                                  for k in runs["1"]["stage_wall_s"]}
            res["speedup_nj2"]["total"] = round(runs["1"]["total_s"] / runs["2"]["total_s"], 2)
            res["identical_outputs"] = runs["1"]["digest"] == runs["2"]["digest"]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1, ensure_ascii=False)
    print(json.dumps({k: v for k, v in res.items() if k not in ("summary", "machine")}, indent=1))


if __name__ == "__main__":
    main()
