"""CTC-greedy CER of a packed A0 on a train subset and on dev (same decoding): the generalisation gap.

    python docs/notebook/tools/train_dev_gap.py PACKED_MODEL OUT.json train:DATA/train:200 dev:DATA/dev:200
"""
import sys, json, torch
from avsr.inference import Speech2Text
from avsr.data.datadir import read_datadir
from avsr.decoding.ctc_greedy import ctc_greedy
from avsr.eval.metrics import utt_errors
from frontends.audio import load_audio
model, out = sys.argv[1], sys.argv[2]
s2t = Speech2Text.from_packed(model, device="cpu")
res = {"model": model}
for spec in sys.argv[3:]:
    name, d, n = spec.split(":")
    dd = read_datadir(d)
    utts = dd.utts[::max(1, len(dd.utts) // int(n))][:int(n)]
    E = N = 0
    for u in utts:
        a, b = dd.span(u)
        audio = load_audio(dd.wav[dd.recording_of(u)], start=a, end=b)
        lp, _ = s2t.ctc_posteriors(s2t.make_batch([{"audio": audio}]))[0]
        hyp = ctc_greedy(torch.from_numpy(lp)[None], torch.tensor([lp.shape[0]]))[0]
        e, n_ = utt_errors(dd.text[u], s2t.tokenizer.decode(hyp)); E += e; N += n_
    res[name] = {"utts": len(utts), "chars": N, "ctc_greedy_cer": round(100 * E / N, 2)}
    print(name, res[name], flush=True)
json.dump(res, open(out, "w"), indent=1)
