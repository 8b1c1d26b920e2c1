"""Summary JSON of a device_calibration.sh run from its results.tgz (unpacked in DIR):
per-epoch CTC-greedy dev CER of each trained model, the data summary and the stage times.

    python docs/notebook/tools/device_run_summary.py DIR OUT.json "WHAT" "COMMAND" "MACHINE"
"""
import glob, json, os, re, sys

d, out, what, command, machine = sys.argv[1:6]
exp = os.path.join(d, "exp", "cal")
ds = json.load(open(os.path.join(exp, "data_summary.json")))
res = {"what": what, "command": command, "machine": machine,
       "summary_command": "docs/notebook/tools/device_run_summary.py " + " ".join(sys.argv[1:3]),
       "splits": {s: {k: v[k] for k in ("utterances", "hours", "speakers", "sessions", "characters")}
                  for s, v in ds["splits"].items()},
       "stage_seconds": {}, "models": {}}
for f in sorted(glob.glob(os.path.join(exp, "stages", "*.done"))):
    m = re.search(r"^seconds: (\d+)", open(f).read(), re.M)
    res["stage_seconds"][os.path.basename(f)[:-5]] = int(m.group(1)) if m else None
for f in sorted(glob.glob(os.path.join(exp, "train_*", "train_result.json"))):
    r = json.load(open(f))
    name = os.path.basename(os.path.dirname(f))[len("train_"):]
    hist = [(h["epoch"], round(100 * h["valid"]["cer"], 2)) for h in r["history"] if "cer" in h.get("valid", {})]
    res["models"][name] = {"mode": r["mode"], "parameters": r["parameters"]["total"],
                           "dev_cer_greedy_by_epoch": dict(hist),
                           "best_dev_cer_greedy": round(100 * min(v for v, _ in r["best"]), 2),
                           "epochs": len(hist), "averaged_best": [e for _, e in r["best"]]}
json.dump(res, open(out, "w"), indent=1)
print(json.dumps(res["models"], indent=1))
