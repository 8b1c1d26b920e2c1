"""Forced alignment with a label-prior correction (Huang et al. 2024, "Less peaky and more accurate CTC
forced alignment by label priors"): align on log p(k|x_t) - alpha * log P(k), with P(k) the mean CTC
posterior over every frame of the set, and score character midpoints against SynthMISP's truth.

    python docs/notebook/tools/ctc_prior_probe.py PACKED CORPUS DATA_DIR OUT.json [MAX_SEGMENTS] [ALPHAS...]
"""
import json, sys
import numpy as np
from avsr.inference import Speech2Text
from avsr.alignment import token_times, AlignmentError
from avsr.data.datadir import read_datadir
from avsr.synthmisp.truth import segment_truths
from frontends.audio import load_audio

model, corpus, data_dir, out = sys.argv[1:5]
n_max = int(sys.argv[5]) if len(sys.argv) > 5 else 150
alphas = [float(a) for a in sys.argv[6:]] or [0.0, 0.3, 0.6, 1.0]
s2t = Speech2Text.from_packed(model, device="cpu")
off, stride = s2t.frame_times()
wav = read_datadir(data_dir).wav
truths = [t for t in segment_truths(corpus, data_dir) if t.turn is not None][:n_max]
segs = []
for st in truths:
    audio = load_audio(wav[st.session + "_Far"], start=st.start, end=st.end)
    lp, _ = s2t.ctc_posteriors(s2t.make_batch([{"audio": audio}]))[0]
    segs.append((st, lp, s2t.tokenizer.encode(st.text)))
allp = np.concatenate([np.exp(lp) for _, lp, _ in segs])
log_prior = np.log(np.clip(allp.mean(0), 1e-10, None))
res = {"command": "docs/notebook/tools/ctc_prior_probe.py " + " ".join(sys.argv[1:]), "segments": len(segs),
       "blank_prior": round(float(np.exp(log_prior[0])), 4), "alphas": {}}
for a in alphas:
    err, edge, fails = [], [], 0
    for st, lp, ids in segs:
        T = lp.shape[0]
        try:
            tt = token_times(lp - a * log_prior[None], ids, offset=off, stride=stride, time_offset=st.start)
        except AlignmentError:
            fails += 1
            continue
        for x, (_, c0, c1) in zip(tt, st.chars):
            err.append((x.start + x.end) / 2 - (c0 + c1) / 2)
            edge.append(x.first_frame < 5 or x.last_frame >= T - 5)
    e = np.abs(np.array(err))
    r = {"characters": len(err), "failures": fails, "within_80ms": round(float((e <= 0.08).mean()), 4),
         "within_160ms": round(float((e <= 0.16).mean()), 4), "median_abs_ms": round(float(np.median(e)) * 1000, 1),
         "spikes_at_edges": round(float(np.mean(edge)), 4)}
    res["alphas"][str(a)] = r
    print(a, r, flush=True)
json.dump(res, open(out, "w"), indent=1)
