"""Share of non-blank CTC argmax frames in the first/last 5 encoder frames of a data dir's first 150
segments that match a SynthMISP turn, against the share of true character midpoints there.

    python docs/notebook/tools/ctc_edge_share.py OUT.json CORPUS DATA_DIR NAME=PACKED_MODEL ...
"""
import sys, json, numpy as np
from avsr.inference import Speech2Text
from avsr.data.datadir import read_datadir
from avsr.synthmisp.truth import segment_truths
from frontends.audio import load_audio
out_path, corpus, data = sys.argv[1:4]
wav = read_datadir(data).wav
truths = [st for st in segment_truths(corpus, data) if st.turn is not None][:150]
out = {}
for spec in sys.argv[4:]:
    name, path = spec.split("=")
    s2t = Speech2Text.from_packed(path, device="cpu")
    off, stride = s2t.frame_times()
    edge = tot = 0; true_edge = true_tot = 0
    for st in truths:
        audio = load_audio(wav[st.session + "_Far"], start=st.start, end=st.end)
        lp, _ = s2t.ctc_posteriors(s2t.make_batch([{"audio": audio}]))[0]
        am = lp.argmax(-1); T = len(am)
        nz = np.nonzero(am)[0]
        edge += int(((nz < 5) | (nz >= T - 5)).sum()); tot += len(nz)
        for c, a, b in st.chars:
            f = ((a + b) / 2 - st.start - off) / stride
            true_edge += int(f < 5 or f >= T - 5); true_tot += 1
    out[name] = {"nonblank_frames": tot, "share_in_first_last_5": round(edge / max(tot, 1), 3),
                 "true_char_midpoints_in_first_last_5": round(true_edge / true_tot, 3), "segments": len(truths)}
    print(name, out[name], flush=True)
json.dump(out, open(out_path, "w"), indent=1)
