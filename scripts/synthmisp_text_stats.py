#!/usr/bin/env python
"""Statistics of the SynthMISP text generator and speech synthesiser.

Prints (and with --out writes) JSON with: vocabulary size, number of toned
syllables, homophone floor, sentence-length histogram, held-out character
bigram perplexity (interpolated Kneser-Ney, fixed seed), and synthesis speed
(utterances per second and real-time factor) over --n-synth utterances cycling
through all voices.

    python scripts/synthmisp_text_stats.py [--seed 0] [--n-train 1500] [--n-test 300]
                                           [--n-synth 100] [--out stats.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from avsr.synthmisp import text as T  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench_common import command_line, machine_info  # noqa: E402


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-train", type=int, default=1500)
    ap.add_argument("--n-test", type=int, default=300)
    ap.add_argument("--n-synth", type=int, default=100, help="0 skips the synthesis benchmark")
    ap.add_argument("--out", help="also write the JSON here")
    args = ap.parse_args(argv)

    gen = T.TextGenerator(args.seed)
    rng = np.random.default_rng(args.seed)
    sents = [gen.sentence(rng) for _ in range(args.n_train + args.n_test)]
    train, test = sents[: args.n_train], sents[args.n_train :]
    hist = Counter(len(s) for s in sents)
    used = set("".join(sents))
    stats = {
        "vocab_size": len(T.VOCAB),
        "num_toned_syllables": len(T.SYL2CHAR),
        "num_base_syllables": len({s.rstrip("012345") for s in T.SYL2CHAR}),
        "homophone_floor": T.homophone_floor(T.VOCAB),
        "num_words": {pos: len(ws) for pos, ws in T.WORDS.items()},
        "num_templates": len(T.TextGenerator.TEMPLATES),
        "seed": args.seed,
        "n_train": len(train),
        "n_test": len(test),
        "distinct_sentences": len(set(sents)),
        "chars_used_in_sample": len(used),
        "sentence_length_hist": {str(k): hist[k] for k in sorted(hist)},
        "mean_sentence_length": float(np.mean([len(s) for s in sents])),
        "heldout_char_bigram_perplexity_kn": T.bigram_perplexity(train, test),
        "examples": sents[:5],
    }

    if args.n_synth > 0:
        from avsr.synthmisp import speech as S

        S.synthesize(sents[0], S.VOICES[0])  # start the espeak-ng server outside the timing
        audio = 0.0
        t0 = time.perf_counter()
        for i in range(args.n_synth):
            u = S.synthesize(sents[i % len(sents)], S.VOICES[i % len(S.VOICES)])
            audio += u.duration
        el = time.perf_counter() - t0
        stats["synthesis"] = {
            "n_utterances": args.n_synth,
            "num_voices": len(S.VOICES),
            "seconds": el,
            "utterances_per_second": args.n_synth / el,
            "audio_seconds": audio,
            "mean_utterance_seconds": audio / args.n_synth,
            "real_time_factor": el / audio,
        }

    stats["machine"] = machine_info()
    stats["command"] = command_line()
    text = json.dumps(stats, ensure_ascii=False, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    return stats


if __name__ == "__main__":
    main()
