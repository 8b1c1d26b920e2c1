#!/usr/bin/env python3
"""Probe: forward aligner A and a separately trained reversed aligner R (trained on reversed utterances, audio and
tokens, by a probe build of avsr train_aligner whose config had ``reverse: true``; ``directions: both`` now trains
such a network together with the forward one): R's times mapped back to forward time, and the mean of A's and
R's midpoints; share of character midpoints within 80 ms and signed median on the mini's dev and eval, and the
mean minus A with a 95 % interval over sessions.

    python aligner_reversed_probe.py A_DIR R_DIR OUT.json   (run with the probe build first on sys.path)"""
import os, sys, json, numpy as np
sys.path.insert(0, os.environ.get('AVSR_ROOT', '/work/main'))
from avsr.data.datadir import read_datadir
from avsr.models.aligner import load_aligner
from avsr.synthmisp.truth import segment_truths
from avsr.text.tokens import Tokenizer
from frontends.audio import load_audio
A, R = sys.argv[1], sys.argv[2]
C='/work/lb/corpora/synthmisp_mini'; D='/work/lb/recipes/synthmisp/data/synthmisp_mini/'
a = load_aligner(A); r = load_aligner(R)
r.cfg.reverse = False
tok = Tokenizer(os.path.join(A, "tokens.txt"))
out = {}
for s in ['dev', 'eval']:
    wav = read_datadir(D + s).wav
    E = {'fwd': [], 'rev': [], 'mean': []}
    seg = []
    for st in segment_truths(C, D + s):
        if st.turn is None:
            continue
        audio = load_audio(wav[st.session + "_Far"], start=st.start, end=st.end)
        ids = tok.encode(st.text)
        tf = a.token_times(a.align_scores(audio), ids, time_offset=st.start)
        dur = len(audio) / 16000.0
        tr = r.token_times(r.align_scores(audio[::-1].copy()), ids[::-1], time_offset=0.0)[::-1]
        mids_f = np.array([(x.start + x.end) / 2 for x in tf])
        mids_r = np.array([st.start + dur - (x.start + x.end) / 2 for x in tr])
        truth = np.array([(a_ + b_) / 2 for (_, a_, b_) in st.chars])
        for k, m in (('fwd', mids_f), ('rev', mids_r), ('mean', (mids_f + mids_r) / 2)):
            E[k].append(m - truth)
        seg.append(st.session)
    res = {}
    for k, v in E.items():
        e = np.concatenate(v)
        res[k] = {'within80': round(float((abs(e) < 0.08).mean()), 4), 'median_ms': round(float(np.median(e)) * 1000, 1)}
    # paired over sessions: mean vs fwd
    sess = sorted(set(seg)); gi = {g: i for i, g in enumerate(sess)}
    ok_f = np.zeros(len(sess)); ok_m = np.zeros(len(sess)); n = np.zeros(len(sess))
    for ss, ef, em in zip(seg, E['fwd'], E['mean']):
        ok_f[gi[ss]] += (abs(ef) < 0.08).sum(); ok_m[gi[ss]] += (abs(em) < 0.08).sum(); n[gi[ss]] += len(ef)
    idx = np.random.default_rng(0).integers(0, len(sess), size=(1000, len(sess)))
    d = (ok_m[idx].sum(1) - ok_f[idx].sum(1)) / n[idx].sum(1) * 100
    res['mean_minus_fwd_points'] = {'diff': round(float((ok_m.sum() - ok_f.sum()) / n.sum() * 100), 2),
                                    'ci95_sessions': [round(float(x), 2) for x in np.percentile(d, [2.5, 97.5])],
                                    'p_not_better': round(float(np.mean(d <= 0)), 4), 'sessions': len(sess)}
    out[s] = res
    print(s, json.dumps(res))
json.dump({'command': 'python ' + ' '.join(sys.argv), 'sets': out}, open(sys.argv[3], 'w'), indent=1)
