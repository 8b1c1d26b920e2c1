"""Make a packed model dir (``avsr pack``) from a training exp dir of ``avsr.bin.train``.

    python -m avsr.bin.pack --exp_dir exp/train_av0 --out exp/packed/av0 [--lm_dir exp/lm --lm_weight 0.2]

With ``--lm_dir`` the pack carries a token LM (``avsr train_lm``; its token list must be the model's)
and ``--lm_weight`` is the shallow-fusion weight stored as the decoding default (0: carried, unused
unless a decode asks for a weight).

With ``--aligner_dir`` the pack carries the local CTC aligner of ``avsr train_aligner`` (same token list):
``transcribe`` and ``avsr decode`` then time the tokens of the audio paths with it
(:mod:`avsr.models.aligner`).

``--decode_fusion entropy`` stores the decoding default of a model trained with the ``mla`` method: its audio
and video paths' CTC posteriors fused by entropy weights, decoded CTC-only (``ctc_weight`` 1.0 is
stored with it; :class:`avsr.inference.Speech2Text`, ``fusion``).  It needs an audio-visual model
without MS-Adapters.

The layout of a packed dir is documented in :mod:`avsr.pack`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from avsr.bin import HelpFormatter


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="avsr pack", description="Make a packed model dir from a training exp dir.",
                                 formatter_class=HelpFormatter)
    ap.add_argument("--exp_dir", required=True, help="training dir of avsr.bin.train (config.yaml, model.pth)")
    ap.add_argument("--out", required=True, help="packed model dir to write")
    ap.add_argument("--weights", default=None, help="weights to pack (default: <exp_dir>/model.pth)")
    ap.add_argument("--token_list", default=None, help="default: data.token_list of <exp_dir>/config.yaml")
    ap.add_argument("--bpemodel", default=None, help="sentencepiece model of a bpe token list")
    ap.add_argument("--adapters", default=None, help="adapter weights (.pth) to include")
    ap.add_argument("--beam_size", type=int, default=10, help="decoding default stored in the pack")
    ap.add_argument("--ctc_weight", type=float, default=None, help="decoding default (default: the model's)")
    ap.add_argument("--adapter_threshold", default="0",
                    help="routing default stored in the pack: an AV model with MS-Adapters decodes an utterance "
                         "audio-only (adapters on) when its share of present frames is at or below this (0: only "
                         "with no frame, the paper's switch; 'none': never by the frames)")
    ap.add_argument("--lm_dir", default=None, help="LM dir of avsr train_lm (lm.pth, lm_config.yaml, tokens.txt) "
                    "to carry in the pack")
    ap.add_argument("--lm_weight", type=float, default=None,
                    help="shallow-fusion LM weight stored as the decoding default (needs --lm_dir; default 0)")
    ap.add_argument("--aligner_dir", default=None,
                    help="aligner dir of avsr train_aligner (aligner.pth, aligner_config.yaml, tokens.txt) to carry: "
                         "token times then come from it")
    ap.add_argument("--decode_fusion", default="none", choices=["none", "entropy"],
                    help="decoding default: entropy = fuse the audio and the video path's CTC posteriors "
                         "(MLA models; stores ctc_weight 1.0, the attention decoder is not used); none = the "
                         "model's own path")
    args = ap.parse_args(argv)
    if args.decode_fusion != "none" and args.ctc_weight is not None and args.ctc_weight != 1.0:
        ap.error(f"--decode_fusion {args.decode_fusion} decodes CTC only: --ctc_weight must be 1.0 (or left out)")
    if args.lm_weight is not None and args.lm_weight < 0:
        ap.error("--lm_weight must be >= 0")
    if args.lm_weight and not args.lm_dir:
        ap.error("--lm_weight > 0 needs --lm_dir (the LM to carry)")

    from avsr.models.config import read_config
    from avsr.pack import pack_model
    cfg_path = os.path.join(args.exp_dir, "config.yaml")
    if not os.path.isfile(cfg_path):
        raise FileNotFoundError(f"{cfg_path}: not found (not a training exp dir)")
    conf = read_config(cfg_path)
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
    if args.lm_dir:
        dec["lm_weight"] = float(args.lm_weight or 0.0)
    if args.decode_fusion != "none":
        if (conf["model"] or {}).get("adapter_rank", 0):
            ap.error(f"--decode_fusion {args.decode_fusion}: {cfg_path} has MS-Adapters (adapter_rank); a fusion "
                     "model has none")
        dec["fusion"] = args.decode_fusion
        dec["ctc_weight"] = 1.0
    elif (conf["model"] or {}).get("adapter_rank", 0):
        t = str(args.adapter_threshold).lower()
        try:
            dec["adapter_threshold"] = None if t == "none" else float(t)
        except ValueError:
            raise ValueError(f"--adapter_threshold expects a number or none, got {args.adapter_threshold!r}") from None
    out = pack_model(args.out, model_config=conf["model"], token_list=tokens, weights=weights,
                     bpemodel=args.bpemodel, adapters=args.adapters, decode=dec, lm_dir=args.lm_dir,
                     aligner_dir=args.aligner_dir, extra_meta={**extra, "exp_dir": os.path.abspath(args.exp_dir)})
    print(f"packed {weights} -> {out}" + (f" (LM {args.lm_dir}, weight {dec['lm_weight']:g})" if args.lm_dir else "")
          + (f" (decode fusion {dec['fusion']})" if dec.get("fusion") else "")
          + (f" (aligner {args.aligner_dir})" if args.aligner_dir else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
