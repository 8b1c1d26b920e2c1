"""Does a trained encoder carry each character where it sounds?  A linear CTC head is trained on the
frozen encoder output of a packed A0 (training segments), plainly or with label priors (Huang et al.
2024: CTC on log p - alpha log P, P the running mean posterior), and the reference of dev segments is
force-aligned on it; midpoints are scored against SynthMISP's truth (and the model's own CTC head as
the baseline).

    python docs/notebook/tools/align_head_probe.py PACKED CORPUS TRAIN_DIR DEV_DIR OUT.json N_TRAIN N_DEV [ALPHAS...]
"""
import json, sys, time
import numpy as np
import torch
from avsr.inference import Speech2Text
from avsr.alignment import token_times
from avsr.data.datadir import read_datadir
from avsr.synthmisp.truth import segment_truths
from frontends.audio import load_audio

model, corpus, train_dir, dev_dir, out = sys.argv[1:6]
n_train, n_dev = int(sys.argv[6]), int(sys.argv[7])
alphas = [float(a) for a in sys.argv[8:]] or [0.0, 0.3]
torch.manual_seed(0)
s2t = Speech2Text.from_packed(model, device="cpu")
off, stride = s2t.frame_times()


@torch.no_grad()
def features(dd, utts, wav_of):
    feats = []
    for u, (wav, a, b) in zip(utts, wav_of):
        audio = load_audio(wav, start=a, end=b)
        enc, lens, _ = s2t.encode(s2t.make_batch([{"audio": audio}]))
        feats.append(enc[0, :int(lens[0])].clone())
    return feats


t0 = time.time()
tr = read_datadir(train_dir)
tutts = tr.utts[::max(1, len(tr.utts) // n_train)][:n_train]
tfeat = features(tr, tutts, [(tr.wav[tr.recording_of(u)], *tr.span(u)) for u in tutts])
ttok = [torch.tensor(s2t.tokenizer.encode(tr.text[u])) for u in tutts]
dwav = read_datadir(dev_dir).wav
truths = [t for t in segment_truths(corpus, dev_dir) if t.turn is not None][:n_dev]
dfeat = features(None, truths, [(dwav[t.session + "_Far"], t.start, t.end) for t in truths])
dtok = [s2t.tokenizer.encode(t.text) for t in truths]
res = {"command": "docs/notebook/tools/align_head_probe.py " + " ".join(sys.argv[1:]),
       "train_segments": len(tutts), "dev_segments": len(truths), "feature_seconds": round(time.time() - t0, 1),
       "heads": {}}


def score(name, scores_of):
    err, edge = [], []
    for st, f, ids in zip(truths, dfeat, dtok):
        sc = scores_of(f)
        T = sc.shape[0]
        for x, (_, c0, c1) in zip(token_times(sc, ids, offset=off, stride=stride, time_offset=st.start), st.chars):
            err.append((x.start + x.end) / 2 - (c0 + c1) / 2)
            edge.append(x.first_frame < 5 or x.last_frame >= T - 5)
    e = np.abs(np.array(err))
    r = {"characters": len(err), "within_80ms": round(float((e <= 0.08).mean()), 4),
         "within_160ms": round(float((e <= 0.16).mean()), 4), "median_abs_ms": round(float(np.median(e)) * 1000, 1),
         "spikes_at_edges": round(float(np.mean(edge)), 4)}
    res["heads"][name] = r
    print(name, r, flush=True)


with torch.no_grad():
    score("model_ctc", lambda f: s2t.model.ctc_scores(f[None])[0].numpy() if hasattr(s2t.model, "ctc_scores")
          else s2t.model.ctc.log_softmax(f[None])[0].numpy())
V = s2t.model.ctc.ctc_lo.out_features
for alpha in alphas:
    head = torch.nn.Linear(tfeat[0].shape[1], V)
    opt = torch.optim.Adam(head.parameters(), lr=1e-3)
    log_prior = torch.full((V,), -float(np.log(V)))
    order = np.arange(len(tfeat))
    for ep in range(8):
        np.random.default_rng(ep).shuffle(order)
        tot = 0.0
        for i0 in range(0, len(order), 16):
            idx = order[i0:i0 + 16]
            lp = [head(tfeat[i]).log_softmax(-1) for i in idx]
            with torch.no_grad():
                mean = torch.cat([x.exp() for x in lp]).mean(0)
                log_prior = torch.log(0.99 * log_prior.exp() + 0.01 * mean)
            loss = 0.0
            for x, i in zip(lp, idx):
                sc = x - alpha * log_prior
                loss = loss + torch.nn.functional.ctc_loss(sc[:, None], ttok[i][None], torch.tensor([len(sc)]),
                                                           torch.tensor([len(ttok[i])]), zero_infinity=True,
                                                           reduction="sum")
            opt.zero_grad()
            (loss / len(idx)).backward()
            opt.step()
            tot += float(loss.detach())
        print(f"alpha {alpha} epoch {ep} loss {tot / len(order):.2f}", flush=True)
    with torch.no_grad():
        score(f"linear_head_alpha_{alpha}", lambda f: (head(f).log_softmax(-1) - alpha * log_prior).numpy())
    json.dump(res, open(out, "w"), indent=1)
json.dump(res, open(out, "w"), indent=1)
