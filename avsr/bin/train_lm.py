"""Train the token LM for shallow fusion (``avsr train_lm``) on training transcripts.

    python -m avsr.bin.train_lm --text data/train/text --token_list data/token_list/char/tokens.txt \\
        --out_dir exp/lm [--config conf/lm.yaml] [--valid_text data/dev/text] [--bpemodel bpe.model]

The transcripts (Kaldi ``text``: ``<utt> <text>``) are tokenised with the ASR token list (characters,
or the sentencepiece model with ``--bpemodel``), so the LM's vocabulary is the ASR model's; unknown
characters become ``<unk>``.  The model is :class:`avsr.lm.TransformerTokenLM` (ESPnet's
``TransformerLM``) with the ``lm:`` section of ``--config``; the ``train:`` section sets Adam
(``lr`` after a linear warm-up of ``warmup_steps``), ``batch_size`` (sentences), ``max_epochs``,
``patience`` (epochs without a better dev perplexity before stopping), ``grad_clip``, ``seed``.

After every epoch the dev perplexity (``exp(summed NLL / predicted tokens)``, ``<eos>`` included) of
``--valid_text`` (default: ``dev/text`` next to the training text's dir) is computed; the best
epoch's weights are ``lm.pth``.  Every file is written atomically; ``checkpoint.pth`` (weights,
optimiser, RNG, epoch, history; loaded weights-only) lets an interrupted run resume where it
stopped, and a finished run is not redone (``--force`` starts over).

Outputs in ``--out_dir``: ``lm.pth``, ``lm_config.yaml`` (``lm:``, ``vocab_size``, ``train:``),
``tokens.txt`` (the token list), ``train_result.json`` (``dev_perplexity``, ``best_epoch``, per-epoch
``history``, ``wall_seconds``, sizes and the command), ``checkpoint.pth``, ``train.log``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from typing import Dict, List

from avsr.bin import HelpFormatter
from avsr.utils.io import write_text_atomic

TRAIN_DEFAULTS = {"lr": 0.001, "warmup_steps": 100, "batch_size": 32, "max_epochs": 30, "patience": 5,
                  "grad_clip": 5.0, "weight_decay": 0.0, "seed": 0}


def build_parser():
    ap = argparse.ArgumentParser(prog="avsr train_lm", description=__doc__.split("\n\n")[0],
                                 formatter_class=HelpFormatter, epilog=__doc__)
    ap.add_argument("--text", required=True, help="training transcripts (Kaldi text)")
    ap.add_argument("--token_list", required=True, help="the ASR model's token list")
    ap.add_argument("--out_dir", required=True, help="LM dir to write (lm.pth, lm_config.yaml, tokens.txt)")
    ap.add_argument("--config", default=None, help="YAML with lm: and train: sections (e.g. conf/lm.yaml)")
    ap.add_argument("--valid_text", default=None, help="dev transcripts (default: <text dir>/../dev/text)")
    ap.add_argument("--bpemodel", default=None, help="sentencepiece model of a bpe token list")
    ap.add_argument("--set", nargs="*", default=[], metavar="SECTION.KEY=VALUE",
                    help="override config values, e.g. train.max_epochs=5 lm.layer=1")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--force", action="store_true", help="start over even when finished or interrupted")
    return ap


def _load_config(path, sets) -> Dict:
    import yaml
    conf = {}
    if path:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: LM config not found")
        with open(path, encoding="utf-8") as f:
            conf = yaml.safe_load(f) or {}
    unknown = set(conf) - {"lm", "train"}
    if unknown:
        raise ValueError(f"{path}: unknown sections {sorted(unknown)} (lm, train)")
    conf = {"lm": dict(conf.get("lm") or {}), "train": dict(conf.get("train") or {})}
    for s in sets:
        key, _, val = s.partition("=")
        sec, _, k = key.partition(".")
        if sec not in conf or not k or not _:
            raise ValueError(f"--set expects lm.KEY=VALUE or train.KEY=VALUE, got {s!r}")
        conf[sec][k] = yaml.safe_load(val)
    unknown = set(conf["train"]) - set(TRAIN_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown train options {sorted(unknown)} (known: {sorted(TRAIN_DEFAULTS)})")
    conf["train"] = {**TRAIN_DEFAULTS, **conf["train"]}
    return conf


def _encode(path: str, tok) -> List[List[int]]:
    from avsr.text.tokens import read_text
    from frontends.errors import check_file
    check_file(path)
    seqs = [tok.encode(t) for t in read_text(path, utt_id=True)]
    seqs = [s for s in seqs if s]
    if not seqs:
        raise ValueError(f"{path}: no non-empty transcript")
    return seqs


def _batches(seqs, order, batch_size):
    import torch
    for s in range(0, len(order), batch_size):
        part = [seqs[i] for i in order[s:s + batch_size]]
        lens = torch.tensor([len(x) for x in part])
        x = torch.zeros(len(part), int(lens.max()), dtype=torch.long)
        for j, y in enumerate(part):
            x[j, :len(y)] = torch.tensor(y)
        yield x, lens


def perplexity(lm, seqs, batch_size: int = 64, device="cpu") -> float:
    """``exp(summed NLL / predicted tokens)`` of token sequences (``<eos>`` included)."""
    import torch
    lm.eval()
    tot, n = 0.0, 0
    with torch.no_grad():
        for x, lens in _batches(seqs, list(range(len(seqs))), batch_size):
            loss, k = lm.nll(x.to(device), lens.to(device))
            tot += float(loss)
            n += k
    return math.exp(tot / max(n, 1))


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    import torch
    import yaml
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    from avsr.lm import build_lm, lm_config
    from avsr.text.tokens import Tokenizer
    from avsr.trainer.rng import rng_state, set_rng_state
    from avsr.utils.checkpoint import load_checkpoint, save_checkpoint

    conf = _load_config(args.config, args.set)
    conf["lm"] = lm_config(conf["lm"])
    tc = conf["train"]
    valid = args.valid_text or os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(args.text))),
                                            "dev", "text")
    if not os.path.isfile(valid):
        raise FileNotFoundError(f"{valid}: dev text not found (give --valid_text)")
    tok = Tokenizer(args.token_list, token_type="bpe" if args.bpemodel else "char", bpemodel=args.bpemodel)
    V = tok.vocab_size
    out = args.out_dir
    if args.force and os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out, exist_ok=True)
    res_path, ck_path = os.path.join(out, "train_result.json"), os.path.join(out, "checkpoint.pth")
    saved_conf = {"lm": conf["lm"], "vocab_size": V, "train": tc,
                  "text": os.path.abspath(args.text), "valid_text": os.path.abspath(valid),
                  "token_list": os.path.abspath(args.token_list), "bpemodel": args.bpemodel}
    cfg_path = os.path.join(out, "lm_config.yaml")
    if os.path.isfile(cfg_path):
        with open(cfg_path, encoding="utf-8") as f:
            old = yaml.safe_load(f) or {}
        if {k: old.get(k) for k in ("lm", "vocab_size", "train")} != \
                {k: saved_conf[k] for k in ("lm", "vocab_size", "train")}:
            raise ValueError(f"{cfg_path}: {out} holds an LM trained with other settings (use --force to start over)")
        if os.path.isfile(res_path) and os.path.isfile(os.path.join(out, "lm.pth")):
            with open(res_path) as f:
                r = json.load(f)
            if r.get("finished"):
                print(f"{out}: already trained (dev perplexity {r['dev_perplexity']:.3f}); --force to redo")
                return 0
    write_text_atomic(cfg_path, yaml.safe_dump(saved_conf, allow_unicode=True, sort_keys=False))
    tok_copy = os.path.join(out, "tokens.txt")
    shutil.copyfile(args.token_list, tok_copy + ".tmp")
    os.replace(tok_copy + ".tmp", tok_copy)

    train_seqs, dev_seqs = _encode(args.text, tok), _encode(valid, tok)
    torch.manual_seed(int(tc["seed"]))
    device = torch.device(args.device)
    lm = build_lm(conf["lm"], V).to(device)
    opt = torch.optim.Adam(lm.parameters(), lr=float(tc["lr"]), weight_decay=float(tc["weight_decay"]))
    warm = max(int(tc["warmup_steps"]), 1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warm, 1.0))
    state = {"epoch": 0, "step": 0, "best": math.inf, "best_epoch": 0, "bad": 0, "history": [], "wall": 0.0}
    if os.path.isfile(ck_path):
        ck = load_checkpoint(ck_path, map_location=device)
        lm.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optim"])
        sched.load_state_dict(ck["sched"])
        set_rng_state(ck["rng"])
        state = dict(ck["state"])
        print(f"{ck_path}: resuming after epoch {state['epoch']}")
    log = open(os.path.join(out, "train.log"), "a", encoding="utf-8")
    n_par = sum(p.numel() for p in lm.parameters())
    t_run = time.perf_counter()
    wall0 = float(state["wall"])
    stop = False
    while state["epoch"] < int(tc["max_epochs"]) and not stop:
        ep = state["epoch"] + 1
        t0 = time.perf_counter()
        lm.train()
        g = torch.Generator().manual_seed(int(tc["seed"]) * 100003 + ep)
        order = torch.randperm(len(train_seqs), generator=g).tolist()
        tot, n = 0.0, 0
        for x, lens in _batches(train_seqs, order, int(tc["batch_size"])):
            loss, k = lm.nll(x.to(device), lens.to(device))
            opt.zero_grad()
            (loss / max(k, 1)).backward()
            if tc["grad_clip"]:
                torch.nn.utils.clip_grad_norm_(lm.parameters(), float(tc["grad_clip"]))
            opt.step()
            sched.step()
            state["step"] += 1
            tot += float(loss.detach())
            n += k
        dev_ppl = perplexity(lm, dev_seqs, device=device)
        rec = {"epoch": ep, "train_perplexity": math.exp(tot / max(n, 1)), "dev_perplexity": dev_ppl,
               "seconds": round(time.perf_counter() - t0, 3), "lr": opt.param_groups[0]["lr"]}
        state["history"] = list(state["history"]) + [rec]
        state["epoch"] = ep
        if dev_ppl < state["best"]:
            state["best"], state["best_epoch"], state["bad"] = dev_ppl, ep, 0
            save_checkpoint({k: v.detach().cpu() for k, v in lm.state_dict().items()}, os.path.join(out, "lm.pth"))
        else:
            state["bad"] += 1
            stop = int(tc["patience"]) > 0 and state["bad"] >= int(tc["patience"])
        state["wall"] = wall0 + time.perf_counter() - t_run
        save_checkpoint({"model": lm.state_dict(), "optim": opt.state_dict(), "sched": sched.state_dict(),
                         "rng": rng_state(), "state": state}, ck_path)
        line = (f"epoch {ep}: train ppl {rec['train_perplexity']:.3f}, dev ppl {dev_ppl:.3f}"
                f"{' (best)' if state['best_epoch'] == ep else ''}, {rec['seconds']:.1f} s")
        print(line)
        log.write(line + "\n")
        log.flush()
    log.close()
    result = {"dev_perplexity": state["best"], "best_epoch": state["best_epoch"], "epochs": state["epoch"],
              "early_stopped": bool(stop), "finished": True, "wall_seconds": round(float(state["wall"]), 3),
              "steps": state["step"], "num_parameters": n_par, "vocab_size": V,
              "train_sentences": len(train_seqs), "train_tokens": sum(len(s) for s in train_seqs),
              "dev_sentences": len(dev_seqs), "dev_tokens": sum(len(s) for s in dev_seqs),
              "threads": torch.get_num_threads(), "device": str(device),
              "command": "python -m avsr.bin.train_lm " + " ".join(sys.argv[1:] if argv is None else argv),
              "history": state["history"]}
    write_text_atomic(res_path, json.dumps(result, indent=1) + "\n")
    print(f"{out}: dev perplexity {state['best']:.3f} (epoch {state['best_epoch']}), "
          f"{result['wall_seconds']:.1f} s, {n_par / 1e6:.2f} M parameters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
