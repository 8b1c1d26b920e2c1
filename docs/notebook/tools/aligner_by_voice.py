#!/usr/bin/env python3
"""Share of an aligner's character midpoints within 80 ms of SynthMISP's truth, by the speaker's base voice
(avsr.synthmisp.generate.voice_index: dev speakers share the training voices, eval speakers have voices never
heard in training), by session SNR and by talker distance.

    python docs/notebook/tools/aligner_by_voice.py --aligner_dir A --corpus C --data_dir D [--data_dir D2] --out J
"""
import argparse
import glob
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))


def aligned_segments(aligner_dir, corpus, data_dir):
    """Each turn segment of a SynthMISP data dir with the aligner's times for its reference text:
    ``(SegmentTruth, [TokenTime])``."""
    from avsr.data.datadir import read_datadir
    from avsr.models.aligner import load_aligner
    from avsr.synthmisp.truth import segment_truths
    from avsr.text.tokens import Tokenizer
    from frontends.audio import load_audio
    al = load_aligner(aligner_dir)
    tok = Tokenizer(os.path.join(aligner_dir, "tokens.txt"))
    wav = read_datadir(data_dir).wav
    for st in segment_truths(corpus, data_dir):
        if st.turn is None:
            continue
        audio = load_audio(wav[st.session + "_Far"], start=st.start, end=st.end)
        yield st, al.times(audio, tok.encode(st.text), time_offset=st.start)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--aligner_dir", required=True)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--data_dir", action="append", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(1)
    from avsr.synthmisp import speech
    from avsr.synthmisp.generate import voice_index
    with open(os.path.join(a.corpus, "synthmisp.json")) as f:
        knobs = json.load(f)["knobs"]
    pools = tuple(knobs["speaker_pool"])

    class K:
        speaker_pool = pools
    out = {"command": " ".join([sys.executable] + sys.argv), "aligner": a.aligner_dir, "sets": {}}
    for d in a.data_dir:
        s = os.path.basename(d.rstrip("/"))
        meta = {}
        for f in glob.glob(os.path.join(a.corpus, "truth", s, "*.json")):
            with open(f) as fh:
                j = json.load(fh)
            meta[j["session"]] = j
        rows = []
        for st, tt in aligned_segments(a.aligner_dir, a.corpus, d):
            j = meta[st.session]
            v = speech.VOICES[voice_index(st.speaker, K, len(speech.VOICES))].name
            for x, (_, s0, s1), ov in zip(tt, st.chars, st.char_overlapped):
                rows.append((abs((x.start + x.end) / 2 - (s0 + s1) / 2) <= 0.08, v, st.speaker, j["snr_db"], bool(ov)))
        ok = np.array([r[0] for r in rows])

        def by(key, values):
            return {str(k): {"within_80ms": round(float(ok[values == k].mean()), 4), "n": int((values == k).sum())}
                    for k in sorted(set(values.tolist()))}
        voices = np.array([r[1] for r in rows])
        snr = np.array([r[3] for r in rows])
        snr_bin = np.where(snr < 3, "0-3 dB", np.where(snr < 6, "3-6 dB", "6-10 dB"))
        per_voice = by("voice", voices)
        shares = sorted(v["within_80ms"] for v in per_voice.values())
        out["sets"][s] = {"characters": len(rows), "within_80ms": round(float(ok.mean()), 4),
                          "voices": len(per_voice), "voice_within_80ms_min_median_max":
                              [shares[0], shares[len(shares) // 2], shares[-1]],
                          "by_voice": per_voice, "by_snr": by("snr", snr_bin),
                          "by_char_during_other_talker": by("ov", np.array([str(r[4]) for r in rows]))}
        print(s, out["sets"][s]["within_80ms"], out["sets"][s]["voice_within_80ms_min_median_max"])
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
