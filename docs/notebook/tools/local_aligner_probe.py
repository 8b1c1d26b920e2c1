"""Probe: a stand-alone *local* CTC aligner (log-mel -> two stride-2 1-D convs -> L residual convs of
kernel K -> linear, trained from scratch with CTC on label-prior-adjusted scores), used only to time a
known transcript.  Its receptive field is a few hundred ms, so it cannot place a character by the
segment's edges or by its position in the sentence, only by its sound.

usage: local_aligner_probe.py CORPUS TRAIN_DIR DEV_DIR TOKENS OUT.json [--epochs N] [--K 5] [--L 3]
       [--alpha 0.3] [--dim 256] [--max_train N] [--threads 1]
Writes, per epoch, the share of dev character midpoints within 80 ms of the generator's truth, the
median error, and the share of non-blank argmax frames in the first/last 5 frames."""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from avsr.alignment import token_times  # noqa: E402
from avsr.data.dataset import AVSRDataset, collate  # noqa: E402
from avsr.data.sampler import LengthBatchSampler  # noqa: E402
from avsr.models.front_nets import AudioFrontend, compute_feature_stats  # noqa: E402
from avsr.synthmisp.truth import segment_truths  # noqa: E402
from avsr.text.tokens import Tokenizer  # noqa: E402

p = argparse.ArgumentParser()
for a in ("corpus", "train", "dev", "tokens", "out"):
    p.add_argument(a)
p.add_argument("--epochs", type=int, default=8)
p.add_argument("--K", type=int, default=5)
p.add_argument("--L", type=int, default=3)
p.add_argument("--alpha", type=float, default=0.3)
p.add_argument("--dim", type=int, default=256)
p.add_argument("--max_train", type=int, default=0)
p.add_argument("--threads", type=int, default=1)
p.add_argument("--lr", type=float, default=2e-3)
p.add_argument("--batch_seconds", type=float, default=60.0)
args = p.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(0)

tok = Tokenizer(args.tokens)
V = len(tok.token_list)


from avsr.models.aligner import AlignerConfig, LocalAligner  # noqa: E402

OFFSET, STRIDE = LocalAligner.frame_times()

ds = AVSRDataset(args.train, args.tokens, modality="audio", train=True)
idx = list(range(len(ds)))
if args.max_train:
    idx = idx[:args.max_train]
lengths = [ds.durations[i] for i in idx]
sampler = LengthBatchSampler(lengths, batch_bins=args.batch_seconds, shuffle=True, seed=0)
sub = torch.utils.data.Subset(ds, idx)
loader = torch.utils.data.DataLoader(sub, batch_sampler=sampler, collate_fn=collate, num_workers=0)
model = LocalAligner(AlignerConfig(vocab_size=V, d=args.dim, kernel=args.K, layers=args.L, prior_weight=args.alpha))
with torch.no_grad():
    stats_loader = torch.utils.data.DataLoader(torch.utils.data.Subset(ds, idx[:400]), batch_size=16, collate_fn=collate)
    mean, std = compute_feature_stats(model.front, stats_loader)
    model.front.set_normalization(mean, std)
opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-2)
steps_per_epoch = len(sampler)
sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch, pct_start=0.1)

dev_truth = [st for st in segment_truths(args.corpus, args.dev) if st.turn is not None]
dev_ds = AVSRDataset(args.dev, args.tokens, modality="audio")
dev_pos = {u: i for i, u in enumerate(dev_ds.utt_ids)}


def evaluate():
    model.eval()
    errs, own, bounds, edges, n = [], [], [], 0, 0
    with torch.no_grad():
        for st in dev_truth:
            it = dev_ds[dev_pos[st.utt]]
            w = torch.as_tensor(it["audio"])[None]
            sc = model.align_scores(w[0]).numpy()
            am = sc.argmax(-1)
            T = len(am)
            nb = np.nonzero(am != 0)[0]
            edges += int(((nb < 5) | (nb >= T - 5)).sum())
            n += len(nb)
            ids = tok.encode(st.text)
            tt = token_times(sc, ids, offset=OFFSET, stride=STRIDE, time_offset=st.start)
            errs += [(x.start + x.end) / 2 - (a + b) / 2 for x, (_, a, b) in zip(tt, st.chars)]
            # each token's own frames (first_frame..last_frame) as its interval
            ow = [(st.start + OFFSET + x.first_frame * STRIDE, st.start + OFFSET + (x.last_frame + 1) * STRIDE) for x in tt]
            own += [(s + e) / 2 - (a + b) / 2 for (s, e), (_, a, b) in zip(ow, st.chars)]
            bounds += [s - a for (s, _), (_, a, b) in zip(ow, st.chars)] + [e - b for (_, e), (_, a, b) in zip(ow, st.chars)]
    model.train()
    e, o, bd = np.abs(np.array(errs)), np.abs(np.array(own)), np.abs(np.array(bounds))
    return {"chars": len(e), "within80": round(float((e <= .08).mean()), 4), "median_ms": round(float(np.median(e)) * 1000),
            "own_within80": round(float((o <= .08).mean()), 4), "own_median_ms": round(float(np.median(o)) * 1000),
            "own_bounds_within80": round(float((bd <= .08).mean()), 4),
            "nonblank_at_edges": round(edges / max(n, 1), 3)}


hist = []
t0 = time.time()
for ep in range(args.epochs):
    sampler.set_epoch(ep)
    ds.set_epoch(ep)
    tot, nb = 0.0, 0
    for b in loader:
        loss = model.loss(b.audio, b.audio_lens, b.tokens, b.token_lens)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        sched.step()
        tot += float(loss.detach())
        nb += 1
    r = {"epoch": ep + 1, "loss": round(tot / max(nb, 1), 3), "seconds": round(time.time() - t0), **evaluate()}
    hist.append(r)
    print(json.dumps(r), flush=True)
    Path(args.out).write_text(json.dumps({"command": " ".join(sys.argv), "args": vars(args), "history": hist}, indent=1))
