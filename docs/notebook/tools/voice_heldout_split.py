#!/usr/bin/env python3
"""Split a SynthMISP training data dir by base voice, so that a probe can be chosen on voices that training
never hears (SynthMISP's dev speakers share the training voices; its eval voices are never heard in training).

Speakers whose base voice (avsr.synthmisp.generate.voice_index) is in ``--voices`` go to ``OUT/heldout``, the
others to ``OUT/train``.  Overlapped speech is not removed: a kept speaker's segment may carry a held-out voice
in the background, and the other way round.

    python docs/notebook/tools/voice_heldout_split.py --corpus C --data_dir D --voices 4,9,14,19,24 --out OUT
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--data_dir", required=True)
    ap.add_argument("--voices", required=True, help="comma-separated indices into avsr.synthmisp.speech.VOICES")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    from avsr.data.datadir import read_datadir, write_datadir
    from avsr.synthmisp import speech
    from avsr.synthmisp.generate import voice_index
    with open(os.path.join(a.corpus, "synthmisp.json")) as f:
        pools = tuple(json.load(f)["knobs"]["speaker_pool"])

    class K:
        speaker_pool = pools
    held = {int(v) for v in a.voices.split(",")}
    dd = read_datadir(a.data_dir)
    spk_voice = {s: voice_index(s.lstrip("S"), K, len(speech.VOICES)) for s in set(dd.utt2spk.values())}
    out_utts = sorted(u for u, s in dd.utt2spk.items() if spk_voice[s] in held)
    in_utts = sorted(u for u, s in dd.utt2spk.items() if spk_voice[s] not in held)
    for name, utts in (("heldout", out_utts), ("train", in_utts)):
        write_datadir(dd.subset(utts), os.path.join(a.out, name))
    info = {"command": " ".join([sys.executable] + sys.argv),
            "heldout_voices": sorted(speech.VOICES[v].name for v in held),
            "heldout_speakers": sorted(s for s, v in spk_voice.items() if v in held),
            "segments": {"heldout": len(out_utts), "train": len(in_utts)}}
    with open(os.path.join(a.out, "split.json"), "w") as f:
        json.dump(info, f, indent=1)
    print(json.dumps(info, indent=1))


if __name__ == "__main__":
    main()
