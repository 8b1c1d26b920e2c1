"""Train an A0 / V / AV model (or a robust student) from a YAML config and Kaldi-style data dirs.

    python -m avsr.bin.train --config conf/mini.yaml --mode audio \\
        --train_data data/train --valid_data data/dev --token_list data/token_list/char/tokens.txt \\
        --stats exp/stats/feats_stats.json --exp_dir exp/a0 [--init exp/a0/model.pth] \\
        [--frame_dropout_prob 0.5 --frame_loss_rate 0 1 --frame_loss_pattern random] \\
        [--set trainer.max_epochs=5 model.d_model=64]

The YAML has a ``model:`` section (:class:`avsr.models.ModelConfig`) and a ``trainer:`` section
(:class:`avsr.trainer.TrainerConfig`); ``--set section.key=value`` overrides either (values are
YAML-parsed).  Selection uses the dev set only (``--valid_data``; default metric: CTC-greedy CER).

Outputs in ``--exp_dir``: ``config.yaml`` (resolved), ``cmd.sh`` (the exact command), ``train.log``,
``checkpoint.pth`` (resume state; a re-run of the same command continues from it),
``epoch<N>.pth`` for the best N, ``valid.<metric>.ave_<N>best.pth``, ``model.pth`` (= the
averaged weights) and ``train_result.json`` (best epochs, per-epoch stats and wall times).
Under ``torchrun --nproc_per_node G`` the same command runs DDP.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import time

import torch
import yaml

from avsr.bin import HelpFormatter


def parse_set(pairs, conf: dict) -> dict:
    for p in pairs or []:
        if "=" not in p or "." not in p.split("=", 1)[0]:
            raise SystemExit(f"--set expects section.key=value, got {p!r}")
        k, v = p.split("=", 1)
        sec, key = k.split(".", 1)
        conf.setdefault(sec, {})[key] = yaml.safe_load(v)
    return conf


def make_cer_fn(tokenizer):
    from avsr.decoding import ctc_greedy
    from avsr.eval.metrics import utt_errors

    def cer_fn(model, batch, out):
        m = model.module if hasattr(model, "module") else model
        logits = m.ctc_logits(out.enc_out)
        hyps = ctc_greedy(logits, out.enc_lens)
        e = n = 0
        for ids, ref in zip(hyps, batch.extras.get("text") or []):
            ee, nn = utt_errors(ref or "", tokenizer.decode(ids))
            e += ee
            n += nn
        return e, n
    return cer_fn


def build_parser():
    ap = argparse.ArgumentParser(prog="avsr train", description=__doc__.split("\n\n")[0],
                                 formatter_class=HelpFormatter, epilog=__doc__)
    ap.add_argument("--config", required=True, help="model + trainer YAML (conf/{micro,demo,mini,full}.yaml)")
    ap.add_argument("--train_data", required=True, help="training data dir")
    ap.add_argument("--valid_data", required=True, help="dev data dir (selection); never eval")
    ap.add_argument("--token_list", required=True, help="tokens.txt of avsr tokens")
    ap.add_argument("--bpemodel", default=None, help="sentencepiece model for a bpe token list")
    ap.add_argument("--exp_dir", required=True, help="where checkpoints, logs and model.pth go (a re-run resumes)")
    ap.add_argument("--mode", choices=["audio", "video", "audiovisual"], default=None,
                    help="model mode (default: the config's)")
    ap.add_argument("--stats", default=None, help="feats_stats.json of avsr.bin.collect_stats "
                    "(default: computed from --train_data)")
    ap.add_argument("--init", nargs="+", default=None, metavar="SPEC",
                    help="partial init (names and shapes) from checkpoint(s) / model.pth: each SPEC is PATH "
                         "or PATH::PREFIX[,PREFIX] (only tensors with those name prefixes); later SPECs "
                         "overwrite earlier ones, e.g. --init a0/model.pth v/model.pth::visual_")
    ap.add_argument("--init_ignore", nargs="*", default=[], help="parameter name prefixes not to init")
    ap.add_argument("--freeze_param", nargs="*", default=None, metavar="PREFIX",
                    help="parameter name prefixes not to train (ESPnet's --freeze_param), e.g. "
                         "audio_encoder shared_encoder; default: trainer.freeze_param of the config")
    # frame dropout: --frame_dropout_prob is the share of training samples that lose frames (the
    # paper's D_prob), --frame_loss_rate the share of an utterance's frames they lose (the same
    # quantity as avsr decode's / avsr eval's frame-loss rate); the old names stay as aliases
    ap.add_argument("--frame_dropout_prob", "--d_prob", dest="d_prob", type=float, default=0.0, metavar="P",
                    help="frame dropout: share of samples that get it (0: off; alias --d_prob)")
    ap.add_argument("--frame_loss_rate", "--drop_rate", dest="drop_rate", type=float, nargs="+", default=[0.0, 1.0],
                    metavar="RATE",
                    help="frame dropout: share of a sample's frames lost, one value (fixed) or lo hi "
                         "(uniform in (lo, hi]) (alias --drop_rate)")
    ap.add_argument("--frame_loss_pattern", "--drop_pattern", dest="drop_pattern", default="random", metavar="PATTERN",
                    help="frame dropout pattern (avsr.robust.frame_loss.PATTERNS; alias --drop_pattern)")
    ap.add_argument("--method", action="append", default=[],
                    help="extra training method spec NAME[:json-kwargs] (see avsr.robust.registry)")
    ap.add_argument("--max_duration", type=float, default=None, help="skip training utterances longer than this (s)")
    ap.add_argument("--train_subset", type=int, default=0, help="use only the first N training utterances")
    ap.add_argument("--set", nargs="*", default=[], action="extend", dest="overrides",
                    help="section.key=value overrides (may be repeated; later wins)")
    ap.add_argument("--seed", type=int, default=None, help="trainer seed (default: the config's trainer.seed)")
    ap.add_argument("--device", default=None, help="cpu | cuda | auto (default: trainer.device)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    from avsr.data.dataset import AVSRDataset
    from avsr.models import AVSRModel, count_parameters, load_model_config, read_config
    from avsr.text.tokens import Tokenizer
    from avsr.trainer import Trainer, TrainerConfig

    conf = parse_set(args.overrides, read_config(args.config))
    tok = Tokenizer(args.token_list, token_type="bpe" if args.bpemodel else "char", bpemodel=args.bpemodel)
    cfg = load_model_config(dict(conf.get("model") or {}), vocab_size=tok.vocab_size,
                            **({"mode": args.mode} if args.mode else {}))
    tconf = dict(conf.get("trainer") or {})
    tconf.setdefault("metric", "cer")
    if args.seed is not None:
        tconf["seed"] = args.seed
    if args.device:
        tconf["device"] = args.device
    if args.init:
        tconf["init"] = args.init
        tconf["init_ignore"] = list(args.init_ignore)
    if args.freeze_param is not None:
        tconf["freeze_param"] = list(args.freeze_param)
    tcfg = TrainerConfig.from_dict(tconf)
    os.makedirs(args.exp_dir, exist_ok=True)
    rank = int(os.environ.get("RANK", "0"))
    if rank == 0:
        with open(os.path.join(args.exp_dir, "cmd.sh"), "w") as f:
            f.write("#!/usr/bin/env bash\n# re-run (resumes from checkpoint.pth when present)\n")
            f.write(f"cd {shlex.quote(os.getcwd())}\n")
            f.write(" ".join(shlex.quote(x) for x in [sys.executable, "-m", "avsr.bin.train"] + sys.argv[1:]) + "\n")
        with open(os.path.join(args.exp_dir, "config.yaml"), "w", encoding="utf-8") as f:
            yaml.safe_dump({"model": cfg.to_dict(), "trainer": tcfg.to_dict(),
                            "data": {"train": os.path.abspath(args.train_data),
                                     "valid": os.path.abspath(args.valid_data),
                                     "token_list": os.path.abspath(args.token_list)},
                            "frame_dropout": {"d_prob": args.d_prob, "rate": args.drop_rate,
                                              "pattern": args.drop_pattern},
                            "methods": args.method}, f, allow_unicode=True, sort_keys=False)

    modality = cfg.mode
    train_set = AVSRDataset(args.train_data, tok, modality=modality, train=True, seed=tcfg.seed,
                            max_duration=args.max_duration)
    if args.train_subset:
        train_set.utt_ids = train_set.utt_ids[:args.train_subset]
        train_set.durations = train_set.durations[:args.train_subset]
    valid_set = AVSRDataset(args.valid_data, tok, modality=modality, train=False)

    torch.manual_seed(tcfg.seed)
    model = AVSRModel(cfg)
    if model.has_audio:
        if args.stats:
            with open(args.stats) as f:
                st = json.load(f)
            model.set_normalization(torch.tensor(st["mean"]), torch.tensor(st["std"]))
        elif not args.init:
            from avsr.data.dataset import collate
            loader = torch.utils.data.DataLoader(AVSRDataset(args.train_data, None, modality="audio"),
                                                 batch_size=16, collate_fn=collate)
            model.compute_stats(loader)

    # --method ones first: a method that needs the clean inputs (MDA-KD) sees them before the
    # frame dropout (always last) replaces frames with black
    methods = []
    if args.method:
        from avsr.robust.registry import build_method
        methods += [build_method(spec) for spec in args.method]
    if args.d_prob > 0:
        from avsr.robust.frame_dropout import FrameDropoutMethod
        rate = args.drop_rate[0] if len(args.drop_rate) == 1 else tuple(args.drop_rate[:2])
        methods.append(FrameDropoutMethod(rate=rate, d_prob=args.d_prob, pattern=args.drop_pattern,
                                          seed=tcfg.seed))

    trainer = Trainer(model, train_set, valid_set, tcfg, methods=methods, exp_dir=args.exp_dir,
                      cer_fn=make_cer_fn(tok))
    if args.stats and args.init and model.has_audio:
        # --init may carry other statistics; the stats of this training set win
        with open(args.stats) as f:
            st = json.load(f)
        model.set_normalization(torch.tensor(st["mean"]), torch.tensor(st["std"]))
    t0 = time.time()
    res = trainer.fit()
    if rank == 0:
        final = os.path.join(args.exp_dir, "model.pth")
        src = res.averaged or res.best_path
        if src:
            shutil.copyfile(src, final + ".tmp")
            os.replace(final + ".tmp", final)
        out = {"mode": cfg.mode, "parameters": count_parameters(model), "best": res.best,
               "averaged": res.averaged, "epochs_run_this_call": res.epochs_run,
               "stopped_early": res.stopped_early, "history": res.history,
               "wall_seconds_this_call": time.time() - t0,
               "train_utterances": len(train_set), "valid_utterances": len(valid_set),
               "methods": [repr(m) for m in methods]}
        with open(os.path.join(args.exp_dir, "train_result.json"), "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
