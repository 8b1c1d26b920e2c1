"""Visual homophenes of SynthMISP's character inventory: characters whose syllables give the same
viseme sequence (repeats merged, silence dropped) when synthesised alone with one voice.

    python docs/notebook/tools/homophenes.py N_CHARS OUT.json
"""
import collections, itertools, json, sys
from avsr.synthmisp import speech
from avsr.synthmisp.text import restrict_words

n, out = int(sys.argv[1]), sys.argv[2]
_, chars = restrict_words(n)
voice = speech.VOICES[0]
groups = collections.defaultdict(list)
for c in chars:
    seq = [e.viseme for e in speech.synthesize(c, voice).events if e.viseme != "sil"]
    groups[" ".join(k for k, _ in itertools.groupby(seq))].append(c)
sizes = sorted((len(g) for g in groups.values()), reverse=True)
res = {"command": "docs/notebook/tools/homophenes.py " + " ".join(sys.argv[1:]), "n_chars": len(chars),
       "viseme_sequence_classes": len(groups), "chars_per_class_mean": round(len(chars) / len(groups), 2),
       "largest_classes": sizes[:10], "chars_alone_in_their_class": sum(1 for g in groups.values() if len(g) == 1),
       "classes": {k: "".join(v) for k, v in sorted(groups.items(), key=lambda x: -len(x[1]))}}
json.dump(res, open(out, "w"), indent=1, ensure_ascii=False)
print({k: v for k, v in res.items() if k != "classes"})
