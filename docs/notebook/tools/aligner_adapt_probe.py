#!/usr/bin/env python3
"""Probe (written before ``LocalAligner.adapt``; kept for the grid it measured): per-segment adaptation at alignment
time by the CTC loss of the segment's reference text, for every ``--steps`` count in one run (the times after
each count of Adam steps), on every ``EVERY``-th segment of a SynthMISP data dir.  MODE ``affine``: a scale and
shift per mel bin (what ``LocalAligner.adapt`` does); ``lin``: a full 80x80 input matrix plus a shift; ``lhuc``:
``affine`` plus a per-channel scale of each residual block's output (LHUC, Swietojanski and Renals 2014).
Prints the share of character midpoints within 80 ms.

    python docs/notebook/tools/aligner_adapt_probe.py ALIGNER_DIR CORPUS DATA_DIR STEPS LR [EVERY [MODE]]
"""
import os, sys, time
import numpy as np, torch, torch.nn.functional as F
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
from avsr.data.datadir import read_datadir
from avsr.models.aligner import load_aligner, _conv_len
from avsr.synthmisp.truth import segment_truths
from avsr.text.tokens import Tokenizer
from frontends.audio import load_audio
from frontends.constants import SAMPLE_RATE
import dataclasses
torch.set_num_threads(1)
al_dir, corpus, data_dir = sys.argv[1], sys.argv[2], sys.argv[3]
steps = [int(x) for x in sys.argv[4].split(',')]; lr = float(sys.argv[5]); every = int(sys.argv[6]) if len(sys.argv) > 6 else 1
mode = sys.argv[7] if len(sys.argv) > 7 else 'affine'
al = load_aligner(al_dir); al.eval()
for p in al.parameters(): p.requires_grad_(False)
tok = Tokenizer(os.path.join(al_dir, 'tokens.txt'))
wavs = read_datadir(data_dir).wav

def run_net(net, feats, olens, lhuc=None):
    x = feats.transpose(1, 2)
    for conv in net.sub:
        x = F.silu(conv(x)); olens = _conv_len(olens).clamp(max=x.size(2))
        valid = (torch.arange(x.size(2))[None] < olens[:, None])[:, None, :]; x = x * valid
    for i, b in enumerate(net.blocks):
        x = (x + b(x)) * valid
        if lhuc is not None:
            x = x * 2 * torch.sigmoid(lhuc[i])[None, :, None]
    return net.out(x.transpose(1, 2)).float().log_softmax(-1), olens

def times_dir(w, ids, backward, K):
    net = al._net(backward)
    ww = torch.as_tensor(w, dtype=torch.float32)[None]
    if backward: ww = ww.flip(1); ids = ids[::-1]
    lens = torch.tensor([ww.size(1)])
    with torch.no_grad():
        feats, fl = al.front(ww, lens)
    out = {}
    D = feats.size(2)
    a = torch.zeros(1, 1, D, requires_grad=True); b = torch.zeros(1, 1, D, requires_grad=True)
    Wd = torch.zeros(D, D, requires_grad=True)
    lh = torch.zeros(len(net.blocks), net.out.in_features, requires_grad=True)
    opt = torch.optim.Adam([a, b] + ([Wd] if mode == 'lin' else []) + ([lh] if mode == 'lhuc' else []), lr=lr)
    tf = (lambda x: x * torch.exp(a) + b) if mode in ('affine', 'lhuc') else (lambda x: x + x @ Wd + b)
    tgt = torch.tensor(ids)
    done = 0
    for K_ in sorted(steps):
        while done < K_:
            lp, ol = run_net(net, tf(feats), fl, lh if mode == 'lhuc' else None)
            sc = al.scores(lp, backward)
            loss = F.ctc_loss(sc.transpose(0, 1), tgt, ol, torch.tensor([len(ids)]), blank=0, reduction='sum', zero_infinity=True)
            opt.zero_grad(); loss.backward(); opt.step(); done += 1
        with torch.no_grad():
            lp, ol = run_net(net, tf(feats), fl, lh if mode == 'lhuc' else None)
            tt = al.token_times(al.scores(lp[0, :int(ol[0])], backward), ids)
        if backward:
            n = int(ol[0]); end = len(w) / SAMPLE_RATE
            tt = [dataclasses.replace(x, start=end - x.end, end=end - x.start) for x in tt[::-1]]
        out[K_] = tt
    return out

sts = [st for st in segment_truths(corpus, data_dir) if st.turn is not None][::every]
hits = {k: 0 for k in steps}; n = 0; t0 = time.time()
for st in sts:
    w = load_audio(wavs[st.session + '_Far'], start=st.start, end=st.end)
    ids = tok.encode(st.text)
    f = times_dir(w, ids, False, steps)
    bb = times_dir(w, ids, True, steps) if al.back is not None else None
    for k in steps:
        tt = f[k] if bb is None else [dataclasses.replace(x, start=(x.start + y.start) / 2, end=(x.end + y.end) / 2) for x, y in zip(f[k], bb[k])]
        hits[k] += sum(abs((x.start + x.end) / 2 + st.start - (s + e) / 2) <= 0.08 for x, (_, s, e) in zip(tt, st.chars))
    n += len(st.chars)
print(al_dir, data_dir, 'segments', len(sts), 'chars', n, {k: round(hits[k] / n, 4) for k in steps}, f'{time.time()-t0:.0f}s', flush=True)
