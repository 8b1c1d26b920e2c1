"""The ``avsr`` command line.

    avsr pack   --exp_dir exp/train_av0 --out exp/packed/av0      make a packed model dir
    avsr decode --model exp/packed/av0 --data_dir data/eval ...    decode + score a data dir
    avsr eval   --models A0=exp/packed/a0 AV0=exp/packed/av0 ...   CER-vs-frame-loss sweep

``avsr <command> --help`` shows each command's options.  Errors are one line naming the file,
exit code != 0, no traceback (set ``AVSR_DEBUG=1`` for tracebacks).
"""
from __future__ import annotations

import argparse
import os
import sys


def _pack(argv) -> int:
    ap = argparse.ArgumentParser(prog="avsr pack", description="Make a packed model dir from a training exp dir.")
    ap.add_argument("--exp_dir", required=True, help="training dir of avsr.bin.train (config.yaml, model.pth)")
    ap.add_argument("--out", required=True, help="packed model dir to write")
    ap.add_argument("--weights", default=None, help="weights to pack (default: <exp_dir>/model.pth)")
    ap.add_argument("--token_list", default=None, help="default: data.token_list of <exp_dir>/config.yaml")
    ap.add_argument("--bpemodel", default=None)
    ap.add_argument("--adapters", default=None, help="adapter weights (.pth) to include")
    ap.add_argument("--beam_size", type=int, default=10, help="decoding default stored in the pack")
    ap.add_argument("--ctc_weight", type=float, default=None, help="decoding default (default: the model's)")
    args = ap.parse_args(argv)
    import json

    import yaml

    from avsr.pack import pack_model
    cfg_path = os.path.join(args.exp_dir, "config.yaml")
    if not os.path.isfile(cfg_path):
        raise FileNotFoundError(f"{cfg_path}: not found (not a training exp dir)")
    with open(cfg_path, encoding="utf-8") as f:
        conf = yaml.safe_load(f) or {}
    weights = args.weights or os.path.join(args.exp_dir, "model.pth")
    if not os.path.isfile(weights):
        raise FileNotFoundError(f"{weights}: not found (training not finished?)")
    tokens = args.token_list or (conf.get("data") or {}).get("token_list")
    extra = {}
    res = os.path.join(args.exp_dir, "train_result.json")
    if os.path.isfile(res):
        with open(res) as f:
            r = json.load(f)
        extra["training"] = {"best": r.get("best"), "epochs": len(r.get("history") or []),
                             "train_utterances": r.get("train_utterances")}
    dec = {"beam_size": args.beam_size}
    if args.ctc_weight is not None:
        dec["ctc_weight"] = args.ctc_weight
    out = pack_model(args.out, model_config=conf["model"], token_list=tokens, weights=weights,
                     bpemodel=args.bpemodel, adapters=args.adapters, decode=dec,
                     extra_meta={**extra, "exp_dir": os.path.abspath(args.exp_dir)})
    print(f"packed {weights} -> {out}")
    return 0


def _decode(argv) -> int:
    if "--data_dir" in argv:                      # a prepared Kaldi-style data dir (recipes)
        from avsr.bin.decode import main as decode_main
        return decode_main(argv)
    from avsr.bin.decode_pairs import main as pairs_main   # wav (+ video) pairs
    return pairs_main(argv)


def _eval(argv) -> int:
    from avsr.bin.eval import main as sweep_main
    return sweep_main(argv)


COMMANDS = {
    "pack": (_pack, "make a packed model dir (config, tokens, stats, averaged weights, version)"),
    "decode": (_decode, "decode wav(+mp4) pairs (--wav/--pairs), or a data dir (--data_dir) with scoring"),
    "eval": (_eval, "CER vs video frame loss / babble noise for several models, with bias diagnostics"),
}


def usage() -> str:
    lines = ["usage: avsr <command> [options]", "", "commands:"]
    lines += [f"  {name:<8} {desc}" for name, (_, desc) in COMMANDS.items()]
    lines += ["", "avsr <command> --help shows the options of a command."]
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd not in COMMANDS:
        print(f"avsr: unknown command {cmd!r}\n\n{usage()}", file=sys.stderr)
        return 2
    try:
        return int(COMMANDS[cmd][0](rest) or 0)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        print("avsr: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - one clear line, no traceback
        if os.environ.get("AVSR_DEBUG"):
            raise
        print(f"avsr {cmd}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
