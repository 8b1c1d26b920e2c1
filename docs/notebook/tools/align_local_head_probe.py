"""(ALIGN_ROOT/TAG holds align_micro_probe.py's corpus, data and packed micro A0.) Probe: a local alignment CTC head (convs over the audio front-end's subsampled output, label priors)
on the micro A0 of TAG; variant 'frozen' (trained model frozen, head alone) or 'joint' (from scratch)."""
import os, sys, json, math, numpy as np, torch, torch.nn as nn
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
torch.manual_seed(0)
from avsr.inference import Speech2Text
from avsr.data.dataset import AVSRDataset, collate
from avsr.synthmisp.truth import segment_truths
from avsr.alignment import token_times
from frontends.audio import load_audio
from espnet.nets.pytorch_backend.nets_utils import make_pad_mask
tag, variant, K, L, alpha, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
root = Path(os.environ.get("ALIGN_ROOT", "/tmp/align_probes")) / tag
train = root / "data/train_all"
s2t = Speech2Text.from_packed(str(root / "exp/packed"))
model = s2t.model
d, V = model.cfg.d_model, model.cfg.vocab_size
if variant == "joint":
    for m in model.modules():
        if hasattr(m, "reset_parameters") and m is not model:
            m.reset_parameters()
layers = []
for i in range(L):
    layers += [nn.Conv1d(d, d, K, padding=K // 2), nn.SiLU()]
head = nn.ModuleDict({"conv": nn.Sequential(*layers), "out": nn.Linear(d, V)})
log_prior = torch.full((V,), -math.log(V))
def scores(a, lens, train_mode):
    global log_prior
    x = head["conv"](a.transpose(1, 2)).transpose(1, 2)
    lp = head["out"](x).log_softmax(-1)
    if train_mode:
        valid = ~make_pad_mask(lens, maxlen=lp.size(1))
        with torch.no_grad():
            mean = lp.exp()[valid].mean(0)
            log_prior = torch.log(0.99 * log_prior.exp() + 0.01 * mean).clamp_min(-30.0)
    return lp - alpha * log_prior
ds = AVSRDataset(str(train), str(root / "data/tok/tokens.txt"), modality="audio", train=True)
loader = torch.utils.data.DataLoader(ds, batch_size=3, shuffle=True, collate_fn=collate)
params = list(head.parameters()) + (list(model.parameters()) if variant == "joint" else [])
if variant != "joint":
    for p in model.parameters(): p.requires_grad_(False)
opt = torch.optim.Adam(params, lr=0.002)
model.train(variant == "joint")
if variant == "joint":
    model.cfg = model.cfg.replace(specaug=False) if hasattr(model.cfg, "replace") else model.cfg
for ep in range(epochs):
    tot = 0
    for b in loader:
        a, pos, lens, mask = model.audio_front(b)
        sc = scores(a, lens, True)
        tgt = torch.cat([b.tokens[i, :int(n)] for i, n in enumerate(b.token_lens)])
        loss = nn.functional.ctc_loss(sc.transpose(0, 1), tgt, lens, b.token_lens, blank=0, reduction="sum", zero_infinity=True) / len(b)
        if variant == "joint":
            loss = loss + model(b).loss
        opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(params, 5.0); opt.step(); tot += float(loss)
    if ep % 10 == 9: print("epoch", ep + 1, round(tot, 2), flush=True)
model.eval()
wav = dict(ln.split(" ", 1) for ln in (train / "wav.scp").read_text().splitlines())
errs, edges, n = [], 0, 0
off, stride = s2t.frame_times("audio")
with torch.no_grad():
    for st in segment_truths(root / "corpus", train):
        if st.turn is None: continue
        bt = s2t.make_batch([{"audio": load_audio(wav[st.session + "_Far"], start=st.start, end=st.end)}])
        a, pos, lens, mask = model.audio_front(bt)
        sc = scores(a, lens, False)[0, :int(lens[0])].numpy()
        am = sc.argmax(-1); T = len(am); nb = np.nonzero(am != 0)[0]
        edges += int(((nb < 5) | (nb >= T - 5)).sum()); n += len(nb)
        tt = token_times(sc, s2t.tokenizer.encode(st.text), offset=off, stride=stride, time_offset=st.start)
        errs += [(x.start + x.end) / 2 - (p + q) / 2 for x, (_, p, q) in zip(tt, st.chars)]
errs = np.abs(np.array(errs))
print(json.dumps({"tag": tag, "variant": variant, "K": K, "L": L, "alpha": alpha, "epochs": epochs, "chars": len(errs),
                  "within80": round(float((errs <= .08).mean()), 3), "median_ms": round(float(np.median(errs)) * 1000),
                  "nonblank_at_edges": round(edges / max(n, 1), 3)}))
