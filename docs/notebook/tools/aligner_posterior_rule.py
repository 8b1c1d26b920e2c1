#!/usr/bin/env python3
"""The aligner's timing rule on SynthMISP: each token's best-path spike (rule ``split``) against its expected frame
under the path posterior at an acoustic scale (rule ``posterior``, :func:`avsr.alignment.ctc_occupancy`), with the
posterior taken over the best path's span and ``margin`` frames either side.

``dump`` stores, per turn segment of a data dir, both networks' alignment scores (:meth:`LocalAligner.scores` of
:meth:`LocalAligner.log_posteriors`, adapted to the segment's text when the aligner's config adapts) for blank and the
text's tokens, with the truth; ``--pad S`` puts S seconds of digital silence before and after each segment, ``--gap S``
as many inside it, at the true boundary between the characters nearest its middle (a pause inside a phrase).  ``grid``
times the stored scores with :func:`avsr.alignment.token_times` (the library's rule, both directions' midpoints
averaged as :meth:`LocalAligner.times` does) for each acoustic scale and margin; ``paired`` compares one setting with
the split rule on the same scores (95 % bootstrap intervals over sessions, 1,000 resamples).  A midpoint counts when
its error is at most 80 ms (as the bench).

    python docs/notebook/tools/aligner_posterior_rule.py dump --aligner_dir A --corpus C --data_dir D [--pad 1] --out S.pkl
    python docs/notebook/tools/aligner_posterior_rule.py grid --scores dev=S.pkl [--scores ...] --out J
    python docs/notebook/tools/aligner_posterior_rule.py paired --scores eval=S.pkl [...] --scale 0.0833 --margin 8 --out J
"""
import argparse
import json
import os
import pickle
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

SCALES = (1 / 4, 1 / 8, 1 / 10, 1 / 12, 1 / 16, 1 / 24, 1 / 32)
MARGINS = (2, 4, 8, 12, 16, 100000)          # 100000: the whole segment


def dump(a):
    import torch

    from avsr.data.datadir import read_datadir
    from avsr.models.aligner import load_aligner
    from avsr.synthmisp.truth import segment_truths
    from avsr.text.tokens import Tokenizer
    from frontends.audio import load_audio
    from frontends.constants import SAMPLE_RATE
    torch.set_num_threads(a.threads)
    al = load_aligner(a.aligner_dir)
    tok = Tokenizer(os.path.join(a.aligner_dir, "tokens.txt"))
    wav = read_datadir(a.data_dir).wav
    rows = []
    for st in segment_truths(a.corpus, a.data_dir):
        if st.turn is None:
            continue
        audio = np.asarray(load_audio(wav[st.session + "_Far"], start=st.start, end=st.end))
        if a.pad:
            z = np.zeros(int(a.pad * SAMPLE_RATE), dtype=audio.dtype)
            audio = np.concatenate([z, audio, z])
        chars = [(c, s, e) for c, s, e in st.chars]
        if a.gap and len(chars) >= 2:
            # a pause inside the turn: gap seconds of digital silence at the true boundary nearest its middle
            k = len(chars) // 2
            cut = int(round((chars[k][1] - st.start + a.pad) * SAMPLE_RATE))
            audio = np.concatenate([audio[:cut], np.zeros(int(a.gap * SAMPLE_RATE), dtype=audio.dtype), audio[cut:]])
            chars = chars[:k] + [(c, s + a.gap, e + a.gap) for c, s, e in chars[k:]]
        ids = tok.encode(st.text)
        sf = al.scores(al.log_posteriors(audio, token_ids=ids))
        sb = al.scores(al.log_posteriors(audio, backward=True, token_ids=ids[::-1]), backward=True)
        keep = sorted(set(ids))               # blank, then the text's distinct tokens
        rows.append(dict(session=st.session, start=st.start - a.pad, seconds=len(audio) / SAMPLE_RATE,
                         ids=[1 + keep.index(t) for t in ids], chars=chars,
                         overlapped=[bool(x) for x in st.char_overlapped],
                         forward=sf[:, [0] + keep].numpy(), backward=sb[:, [0] + keep].numpy()))
    with open(a.out, "wb") as f:
        pickle.dump({"command": " ".join([sys.executable] + sys.argv), "aligner": a.aligner_dir,
                     "adapt_steps": al.cfg.adapt_steps, "rows": rows}, f)


def direction_midpoints(r, **kw):
    """Each character's midpoint (seconds from the segment's start) by the forward and by the backward network
    (token_times with ``kw``); LocalAligner.times gives their mean."""
    from avsr.alignment import token_times
    from avsr.models.aligner import LocalAligner
    off, stride = LocalAligner.frame_times()
    ids = r["ids"]
    fw = token_times(r["forward"], ids, offset=off, stride=stride, **kw)
    bw = token_times(r["backward"], ids[::-1], offset=off, stride=stride, **kw)[::-1]
    return (np.array([(x.start + x.end) / 2 for x in fw]),
            r["seconds"] - np.array([(x.start + x.end) / 2 for x in bw]))


def midpoints(r, **kw):
    """Each character's midpoint (recording seconds): the mean of the two directions' (LocalAligner.times)."""
    f, b = direction_midpoints(r, **kw)
    return r["start"] + (f + b) / 2


def per_segment(rows, **kw):
    out = []
    for r in rows:
        ok = np.abs(midpoints(r, **kw) - np.array([(s + e) / 2 for _, s, e in r["chars"]])) <= 0.08
        ov = np.array(r["overlapped"], dtype=bool)
        out.append((r["session"], int(ok.sum()), len(ok), int(ok[ov].sum()), int(ov.sum())))
    return out


def summary(seg):
    n, k = sum(x[2] for x in seg), sum(x[1] for x in seg)
    no, ko = sum(x[4] for x in seg), sum(x[3] for x in seg)
    return {"within_80ms": round(k / n * 100, 2), "overlapped_within_80ms": round(ko / no * 100, 2),
            "others_within_80ms": round((k - ko) / (n - no) * 100, 2), "characters": n}


def load(specs):
    out = {}
    for s in specs:
        name, path = s.split("=", 1)
        with open(path, "rb") as f:
            out[name] = pickle.load(f)
    return out


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dump")
    d.add_argument("--aligner_dir", required=True)
    d.add_argument("--corpus", required=True)
    d.add_argument("--data_dir", required=True)
    d.add_argument("--pad", type=float, default=0.0)
    d.add_argument("--gap", type=float, default=0.0, help="seconds of silence put inside each turn")
    d.add_argument("--threads", type=int, default=1)
    d.add_argument("--out", required=True)
    for name in ("grid", "paired"):
        p = sub.add_parser(name)
        p.add_argument("--scores", action="append", required=True, help="NAME=PKL of dump")
        p.add_argument("--out", required=True)
        if name == "paired":
            p.add_argument("--scale", type=float, required=True)
            p.add_argument("--margin", type=int, required=True)
    a = ap.parse_args()
    from aligner_paired import paired
    if a.cmd == "dump":
        return dump(a)
    res = {"command": " ".join([sys.executable] + sys.argv), "sets": {}}
    for name, dumped in load(a.scores).items():
        rows = dumped["rows"]
        split = per_segment(rows)
        s = {"scores": dumped["command"], "adapt_steps": dumped["adapt_steps"], "split": summary(split)}
        if a.cmd == "grid":
            for m in MARGINS:
                for sc in SCALES:
                    s[f"posterior scale 1/{round(1 / sc)} margin {m}"] = summary(
                        per_segment(rows, rule="posterior", posterior_scale=sc, posterior_margin=m))
                    print(name, m, round(1 / sc), s[f"posterior scale 1/{round(1 / sc)} margin {m}"], flush=True)
        else:
            post = per_segment(rows, rule="posterior", posterior_scale=a.scale, posterior_margin=a.margin)
            s["posterior"] = summary(post)
            s["posterior_scale"], s["posterior_margin"] = a.scale, a.margin
            s["posterior_vs_split"] = paired(split, post, "session")   # tools/aligner_paired.py
            print(name, s, flush=True)
        res["sets"][name] = s
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
