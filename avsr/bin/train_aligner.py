"""Train the local CTC aligner (``avsr train_aligner``) that times a known text for ``transcribe``.

    python -m avsr.bin.train_aligner --train_data data/train --valid_data data/dev \\
        --token_list data/token_list/char/tokens.txt --stats exp/stats/feats_stats.json \\
        --exp_dir exp/aligner [--config conf/aligner.yaml] [--set trainer.max_epochs=4 aligner.layers=2]

The aligner (:class:`avsr.models.aligner.LocalAligner`) reads only the audio of the data dirs (the
recipe's training segments with their transcripts) and uses the recognisers' token list, so it can time
any hypothesis they decode.  It trains with :class:`avsr.trainer.Trainer` (Adam-W, warm-up, the best
``best_n`` epochs by dev CTC loss averaged, early stopping, resumable ``checkpoint.pth``); ``--stats``
is the recipe's global fbank mean and variance (computed from ``--train_data`` when not given).

A finished run with the same configuration is kept (nothing is done); an interrupted one resumes; a run
with another configuration (``aligner:`` or ``trainer:``, less the device, progress and logging settings) is
moved aside to ``<exp_dir>.stale-<time>``.

Outputs in ``--exp_dir``: ``aligner.pth`` (weights, running label prior included), ``aligner_config.yaml``
(``aligner:`` with ``vocab_size``, ``trainer:``), ``tokens.txt``, ``train_result.json``, the trainer's
``checkpoint.pth``, ``epoch<N>.pth`` and ``train.log``.  ``avsr pack --aligner DIR`` puts it in a packed
model; ``transcribe`` and ``avsr decode`` then time tokens with it.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time

import torch
import yaml

from avsr.bin import HelpFormatter
from avsr.bin.train import parse_set

# trainer settings that do not make another run (a run with other values is kept or resumed)
NOT_THE_RUN = ("device", "progress", "log_interval", "tensorboard", "num_workers", "pin_memory")
# aligner settings read only when aligning: a finished run with other values is kept, its aligner_config.yaml
# takes the new ones
ALIGNMENT_ONLY = ("adapt_steps", "adapt_lr", "rule", "posterior_scale", "posterior_margin")
DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                              "conf", "aligner.yaml")


def build_parser():
    ap = argparse.ArgumentParser(prog="avsr train_aligner", description=__doc__.split("\n\n")[0],
                                 formatter_class=HelpFormatter, epilog=__doc__)
    ap.add_argument("--train_data", required=True, help="training data dir (audio and text are read)")
    ap.add_argument("--valid_data", required=True, help="dev data dir (epoch selection by CTC loss)")
    ap.add_argument("--token_list", required=True, help="the recognisers' tokens.txt")
    ap.add_argument("--bpemodel", default=None, help="sentencepiece model of a bpe token list")
    ap.add_argument("--exp_dir", required=True, help="output dir (a re-run resumes, a finished run is kept)")
    ap.add_argument("--config", default=DEFAULT_CONFIG, help="YAML with aligner: and trainer: sections")
    ap.add_argument("--init", default=None,
                    help="start from the weights (label prior included) of another aligner: its dir or its .pth; "
                         "same size and token list")
    ap.add_argument("--stats", default=None, help="feats_stats.json (default: computed from --train_data)")
    ap.add_argument("--set", nargs="*", default=[], action="extend", dest="overrides",
                    help="section.key=value overrides, e.g. trainer.max_epochs=4 aligner.layers=2")
    ap.add_argument("--device", default=None, help="cpu | cuda | cuda:N | auto (default: trainer.device)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    return ap


def _fit_info(r) -> dict:
    """What train_result.json keeps of a Trainer run's result."""
    return {"best": r.best, "averaged": r.averaged, "epochs_run_this_call": r.epochs_run,
            "stopped_early": r.stopped_early, "history": r.history}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    from avsr.data.dataset import AVSRDataset, collate
    from avsr.models.aligner import AlignerConfig, LocalAligner
    from avsr.models.front_nets import compute_feature_stats
    from avsr.text.tokens import Tokenizer
    from avsr.trainer import Trainer, TrainerConfig
    from avsr.utils.checkpoint import load_checkpoint, model_state
    from avsr.utils.io import write_text_atomic

    with open(args.config, encoding="utf-8") as f:
        conf = parse_set(args.overrides, yaml.safe_load(f) or {})
    unknown = set(conf) - {"aligner", "trainer"}
    if unknown:
        raise SystemExit(f"error: {args.config}: unknown sections {sorted(unknown)} (aligner:, trainer:)")
    tok = Tokenizer(args.token_list, token_type="bpe" if args.bpemodel else "char", bpemodel=args.bpemodel)
    try:
        cfg = AlignerConfig.from_dict({**(conf.get("aligner") or {}), "vocab_size": tok.vocab_size})
    except (TypeError, ValueError) as e:
        raise SystemExit(f"error: {args.config}: aligner: {e}")
    tconf = dict(conf.get("trainer") or {})
    tconf.setdefault("metric", "loss")
    if args.device:
        tconf["device"] = args.device
    tcfg = TrainerConfig.from_dict(tconf)
    wanted = {"aligner": cfg.to_dict(), "trainer": tcfg.to_dict(),
              "init": os.path.abspath(args.init) if args.init else None}
    old_cfg = os.path.join(args.exp_dir, "aligner_config.yaml")
    old = None               # the config the exp dir's run was written with
    if os.path.isfile(old_cfg):
        with open(old_cfg, encoding="utf-8") as f:
            old = yaml.safe_load(f) or {}

        def same(a):         # as written (tuples become lists), less what does not change the result
            a = yaml.safe_load(yaml.safe_dump({k: a.get(k) for k in wanted}))
            try:             # settings added since the old run was written take their defaults
                a["aligner"] = AlignerConfig.from_dict(a.get("aligner") or {}).to_dict()
                a["trainer"] = TrainerConfig.from_dict(a.get("trainer") or {}).to_dict()
                a = yaml.safe_load(yaml.safe_dump(a))
            except (TypeError, ValueError):
                pass         # unreadable: compared as written (and so another run)
            for k in NOT_THE_RUN:
                (a.get("trainer") or {}).pop(k, None)
            for k in ALIGNMENT_ONLY:
                (a.get("aligner") or {}).pop(k, None)
            return a
        if same(old) != same(wanted):
            # another configuration: the old run (finished or not) is kept aside, not resumed or reused
            base = aside = f"{os.path.abspath(args.exp_dir)}.stale-{time.strftime('%Y%m%dT%H%M%S')}"
            n = 1
            while os.path.exists(aside):            # another run moved aside within the same second
                n += 1
                aside = f"{base}-{n}"
            os.rename(args.exp_dir, aside)
            print(f"{args.exp_dir}: holds a run with another configuration; moved to {aside}")
    os.makedirs(args.exp_dir, exist_ok=True)
    final = os.path.join(args.exp_dir, "aligner.pth")
    if os.path.isfile(final) and os.path.isfile(os.path.join(args.exp_dir, "train_result.json")):
        print(f"{final}: trained (delete the dir to train again)")
        kept = (old or {}).get("aligner") or {}
        defaults = {f.name: f.default for f in dataclasses.fields(AlignerConfig)}    # of a run written before them
        if any(kept.get(k, defaults[k]) != getattr(cfg, k) for k in ALIGNMENT_ONLY):
            write_text_atomic(old_cfg, yaml.safe_dump(wanted, sort_keys=False))
            print(f"{old_cfg}: alignment settings {', '.join(f'{k}={getattr(cfg, k)}' for k in ALIGNMENT_ONLY)}")
        return 0
    write_text_atomic(os.path.join(args.exp_dir, "aligner_config.yaml"),
                      yaml.safe_dump(wanted, sort_keys=False))
    shutil.copyfile(args.token_list, os.path.join(args.exp_dir, "tokens.txt"))

    train_set = AVSRDataset(args.train_data, tok, modality="audio", train=True, seed=tcfg.seed)
    valid_set = AVSRDataset(args.valid_data, tok, modality="audio", train=False)
    torch.manual_seed(tcfg.seed)
    model = LocalAligner(cfg)
    half_init = False       # a one-direction --init of a "both" run: its forward network; the backward one starts fresh
    if args.init:
        src = os.path.join(args.init, "aligner.pth") if os.path.isdir(args.init) else args.init
        state = model_state(load_checkpoint(src))
        half_init = model.back is not None and not any(k.startswith("back.") for k in state)
        try:
            res_init = model.load_state_dict(state, strict=not half_init)
            if half_init and (res_init.unexpected_keys or any(not k.startswith("back.") for k in res_init.missing_keys)):
                raise RuntimeError(f"missing {res_init.missing_keys}, unexpected {res_init.unexpected_keys}")
        except RuntimeError as e:
            raise SystemExit(f"error: --init {src}: not an aligner of this size and token list ({e})")
    if args.stats:
        with open(args.stats) as f:
            st = json.load(f)
        model.front.set_normalization(torch.tensor(st["mean"]), torch.tensor(st["std"]))
    else:
        loader = torch.utils.data.DataLoader(AVSRDataset(args.train_data, None, modality="audio"),
                                             batch_size=16, collate_fn=collate)
        model.front.set_normalization(*compute_feature_stats(model.front, loader))
    t0 = time.time()
    if cfg.directions == "both":
        # one direction after the other, each trained as a one-direction run would be (its own gradient clip,
        # early stop and checkpoint average; the backward network starts from the draws a one-direction run of this
        # seed starts from), in exp_dir/forward and exp_dir/backward; the second run's average holds both networks
        runs = {}
        for d in ("forward", "backward"):
            if d == "backward" and (not args.init or half_init):
                torch.manual_seed(tcfg.seed)
                fresh = LocalAligner(dataclasses.replace(cfg, directions="forward")).state_dict()
                model.back.load_state_dict({k: v for k, v in fresh.items() if not k.startswith("front.")})
            model.train_only = d
            runs[d] = Trainer(model, train_set, valid_set, tcfg, exp_dir=os.path.join(args.exp_dir, d)).fit()
            src = runs[d].averaged or runs[d].best_path
            if src:
                model.load_state_dict(model_state(load_checkpoint(src)))
        model.train_only = None
        res = runs["backward"]
        res_info = {k: {d: _fit_info(r)[k] for d, r in runs.items()} for k in _fit_info(res)}
    else:
        res = Trainer(model, train_set, valid_set, tcfg, exp_dir=args.exp_dir).fit()
        res_info = _fit_info(res)
    if int(os.environ.get("RANK", "0")) == 0:
        src = res.averaged or res.best_path
        if src:
            shutil.copyfile(src, final + ".tmp")
            os.replace(final + ".tmp", final)
        out = {"parameters": sum(p.numel() for p in model.parameters()), "receptive_field_s": model.receptive_field(),
               **res_info,
               "wall_seconds_this_call": time.time() - t0, "train_utterances": len(train_set),
               "valid_utterances": len(valid_set), "command": " ".join([sys.executable, "-m",
                                                                         "avsr.bin.train_aligner"] + sys.argv[1:])}
        write_text_atomic(os.path.join(args.exp_dir, "train_result.json"), json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
