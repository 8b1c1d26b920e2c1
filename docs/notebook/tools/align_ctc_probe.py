"""Timing of forced alignment on a packed model's recognising CTC and, when it has one, its alignment CTC
(``model.align_scores``), against SynthMISP's truth; plus the recognising CTC's greedy CER.  Each later
model's last head is compared with the first model's CTC: the difference in the share of midpoints within
80 ms, with a 95 % bootstrap interval over segments (paired: the same segments).

    python docs/notebook/tools/align_ctc_probe.py CORPUS DATA_DIR OUT.json N_SEGMENTS NAME=PACKED ...
"""
import json, sys
import numpy as np
import torch
from avsr.inference import Speech2Text
from avsr.alignment import token_times
from avsr.data.datadir import read_datadir
from avsr.decoding.ctc_greedy import ctc_greedy
from avsr.eval.metrics import utt_errors
from avsr.synthmisp.truth import segment_truths
from frontends.audio import load_audio

corpus, data_dir, out, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
wav = read_datadir(data_dir).wav
truths = [t for t in segment_truths(corpus, data_dir) if t.turn is not None][:n]
res = {"command": "docs/notebook/tools/align_ctc_probe.py " + " ".join(sys.argv[1:]), "segments": len(truths),
       "models": {}}
for spec in sys.argv[5:]:
    name, path = spec.split("=", 1)
    s2t = Speech2Text.from_packed(path, device="cpu")
    off, stride = s2t.frame_times()
    heads = {"ctc": lambda e: s2t.model.ctc.log_softmax(e)}
    if hasattr(s2t.model, "align_ctc"):
        heads["align_ctc"] = lambda e: s2t.model.align_scores(e)
    acc = {h: ([], []) for h in heads}
    seg_hits = {h: [] for h in heads}
    E = N = 0
    with torch.no_grad():
        for st in truths:
            audio = load_audio(wav[st.session + "_Far"], start=st.start, end=st.end)
            enc, lens, _ = s2t.encode(s2t.make_batch([{"audio": audio}]))
            enc = enc[:, :int(lens[0])]
            ids = s2t.tokenizer.encode(st.text)
            hyp = ctc_greedy(s2t.model.ctc.log_softmax(enc), lens)[0]
            e, m = utt_errors(st.text, s2t.tokenizer.decode(hyp)); E += e; N += m
            for h, f in heads.items():
                sc = f(enc)[0].float().numpy()
                T = sc.shape[0]
                hits = 0
                for x, (_, c0, c1) in zip(token_times(sc, ids, offset=off, stride=stride, time_offset=st.start),
                                          st.chars):
                    acc[h][0].append((x.start + x.end) / 2 - (c0 + c1) / 2)
                    acc[h][1].append(x.first_frame < 5 or x.last_frame >= T - 5)
                    hits += abs(acc[h][0][-1]) <= 0.08
                seg_hits[h].append((hits, len(st.chars)))
    r = {"ctc_greedy_cer": round(100 * E / N, 2)}
    for h, (err, edge) in acc.items():
        a = np.abs(np.array(err))
        r[h] = {"characters": len(err), "within_80ms": round(float((a <= 0.08).mean()), 4),
                "within_160ms": round(float((a <= 0.16).mean()), 4),
                "median_abs_ms": round(float(np.median(a)) * 1000, 1), "spikes_at_edges": round(float(np.mean(edge)), 4)}
    last = list(heads)[-1]
    if "_first" not in res:
        res["_first"] = np.array(seg_hits["ctc"], dtype=np.float64)
    else:
        a, b = res["_first"], np.array(seg_hits[last], dtype=np.float64)
        rng = np.random.default_rng(0)
        idx = rng.integers(0, len(a), size=(2000, len(a)))
        d = b[idx, 0].sum(1) / b[idx, 1].sum(1) - a[idx, 0].sum(1) / a[idx, 1].sum(1)
        r["within_80ms_vs_first_ctc"] = {"head": last, "difference": round(float(b[:, 0].sum() / b[:, 1].sum()
                                         - a[:, 0].sum() / a[:, 1].sum()), 4),
                                         "ci95": [round(float(np.percentile(d, 2.5)), 4), round(float(np.percentile(d, 97.5)), 4)],
                                         "p_not_better": round(float((d <= 0).mean()), 4)}
    res["models"][name] = r
    print(name, r, flush=True)
    json.dump({k: v for k, v in res.items() if k != "_first"}, open(out, "w"), indent=1)
