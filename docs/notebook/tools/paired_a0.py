"""Paired comparison of two packed A0 models on a data dir: CTC-greedy CER, difference B - A with a
95 % bootstrap interval over utterances and p = share of resamples where B is not better.

    python docs/notebook/tools/paired_a0.py PACKED_A PACKED_B DATA_DIR OUT.json
"""
import sys, json, numpy as np, torch
from avsr.inference import Speech2Text
from avsr.data.datadir import read_datadir
from avsr.decoding.ctc_greedy import ctc_greedy
from avsr.eval.metrics import utt_errors
from frontends.audio import load_audio
a_path, b_path, data, out = sys.argv[1:5]
dd = read_datadir(data)
res = {}
for name, p in (("A", a_path), ("B", b_path)):
    s2t = Speech2Text.from_packed(p, device="cpu")
    e, n = [], []
    for u in dd.utts:
        s, t = dd.span(u)
        audio = load_audio(dd.wav[dd.recording_of(u)], start=s, end=t)
        lp, _ = s2t.ctc_posteriors(s2t.make_batch([{"audio": audio}]))[0]
        hyp = ctc_greedy(torch.from_numpy(lp)[None], torch.tensor([lp.shape[0]]))[0]
        x, y = utt_errors(dd.text[u], s2t.tokenizer.decode(hyp)); e.append(x); n.append(y)
    res[name] = (np.array(e, float), np.array(n, float))
ea, n = res["A"]; eb, _ = res["B"]
rng = np.random.default_rng(0)
idx = rng.integers(0, len(n), size=(2000, len(n)))
d = 100 * (eb[idx].sum(1) - ea[idx].sum(1)) / n[idx].sum(1)
r = {"A": a_path, "B": b_path, "data": data, "utts": len(n), "cer_A": round(100 * ea.sum() / n.sum(), 2),
     "cer_B": round(100 * eb.sum() / n.sum(), 2), "diff_B_minus_A": round(100 * (eb.sum() - ea.sum()) / n.sum(), 2),
     "ci95": [round(float(np.percentile(d, 2.5)), 2), round(float(np.percentile(d, 97.5)), 2)],
     "p_B_not_better": round(float(np.mean(d >= 0)), 4), "resamples": 2000}
print(r); json.dump(r, open(out, "w"), indent=1)
