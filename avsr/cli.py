"""The ``avsr`` command line: one command per entry point in :mod:`avsr.bin` (``avsr --help`` lists them).

    avsr synthmisp --out corpus/synthmisp_tiny --preset tiny      generate a SynthMISP corpus
    avsr prepare_rois --data_dir data/train_all ...                lip ROIs of a data dir
    avsr detect_lips --data_dir data/eval_all --out_dir DIR        lip boxes when a set has none
    avsr tokens --text data/train/text --output_dir ...            token list
    avsr train  --config conf/mini.yaml --mode audio ...           train a model
    avsr train_lm --text data/train/text --token_list ... --out_dir exp/lm   token LM (shallow fusion)
    avsr train_aligner --train_data data/train --valid_data data/dev --token_list ... --exp_dir exp/aligner
    avsr pack   --exp_dir exp/train_av0 --out exp/packed/av0      make a packed model dir
    avsr decode --model exp/packed/av0 --data_dir data/eval ...    decode + score a data dir
    avsr eval   --models A0=exp/packed/a0 AV0=exp/packed/av0 ...   CER-vs-frame-loss sweep

Each command runs ``avsr.bin.<module>.main``; ``python -m avsr.bin.<module>`` is the same.
``avsr <command> --help`` shows each command's options.  Errors are one line naming the file,
exit code != 0, no traceback (set ``AVSR_DEBUG=1`` for tracebacks).
"""
from __future__ import annotations

import importlib
import os
import sys


def _decode(argv) -> int:
    if any(a == "--data_dir" or a.startswith("--data_dir=") for a in argv):   # a prepared data dir (recipes)
        from avsr.bin.decode import main as decode_main
        return decode_main(argv)
    from avsr.bin.decode_pairs import main as pairs_main   # wav (+ video) pairs
    return pairs_main(argv)


def _run(module: str):
    """A command that runs ``module.main(argv)`` (imported only when the command is used)."""
    def run(argv) -> int:
        return importlib.import_module(module).main(argv)
    return run


def _bin(module: str, desc: str):
    """The entry of a command that runs ``avsr.bin.<module>.main``."""
    return _run(f"avsr.bin.{module}"), desc, (f"avsr.bin.{module}",)


#: command -> (function, one-line description, the avsr.bin modules it runs); the order is the
#: order of a recipe: data, training, packing, decoding and evaluation.
COMMANDS = {
    "synthmisp": _bin("synthmisp", "generate a SynthMISP corpus in the MISP2022 layout"),
    "synthmisp_checks": _bin("synthmisp_checks", "proxy checks (visemes, speaker tracking) on a SynthMISP corpus"),
    "datadir": _bin("datadir", "validate Kaldi-style data dirs (datadir validate DIR...)"),
    "prepare_rois": _bin("prepare_rois", "extract per-utterance lip-ROI files for a data dir"),
    "submission": _bin("submission", "write a submission file with exactly the segment file's ids"),
    "far_frontend": _bin("far_frontend", "far-array front-end (ch0, mean, WPE) for a data dir's wav.scp"),
    "detect_lips": _bin("detect_lips", "lip boxes of a data dir's far videos from an offline face detector"),
    "tokens": _bin("tokens", "build a token list (char) or sentencepiece model (bpe)"),
    "collect_stats": _bin("collect_stats", "global fbank mean/std of a training data dir"),
    "train": _bin("train", "train an A0 / V / AV model or a robust student (DDP: torchrun -m avsr.bin.train)"),
    "train_lm": _bin("train_lm", "train the token LM for shallow fusion on training transcripts"),
    "train_aligner": _bin("train_aligner", "train the local CTC aligner that times tokens (packed with --aligner_dir)"),
    "select_lm_weight": _bin("select_lm_weight", "choose the LM weight on dev from avsr decode results"),
    "pack": _bin("pack", "make a packed model dir (config, tokens, stats, averaged weights, version)"),
    "decode": (_decode, "decode wav(+mp4) pairs (--wav/--pairs), or a data dir (--data_dir) with scoring",
               ("avsr.bin.decode", "avsr.bin.decode_pairs")),
    "eval": _bin("eval", "CER vs video frame loss / babble noise for several models, with bias diagnostics"),
    "rows": _bin("rows", "train, choose on dev, sweep and tabulate the rows of a row spec (conf/rows/*.yaml)"),
    "report": _bin("report", "CER report over decode dirs (bootstrap intervals, paired comparisons)"),
}


LOG_LEVELS = ("debug", "info", "warning", "error")


def usage() -> str:
    lines = ["usage: avsr [--version] [--log_level LEVEL] <command> [options]", "", "commands:"]
    lines += [f"  {name:<16} {desc}" for name, (_, desc, _) in COMMANDS.items()]
    lines += ["", "options:", "  --version          print the avsr version and exit",
              f"  --log_level LEVEL  logging level of every avsr module: {', '.join(LOG_LEVELS)} (default: info)",
              "", "avsr <command> --help shows the options of a command."]
    return "\n".join(lines)


def _global_options(argv):
    """Strip ``--version`` / ``--log_level LEVEL`` before the command; returns (argv, exit code or None)."""
    import logging
    while argv and argv[0].startswith("--") and argv[0].split("=", 1)[0] in ("--version", "--log_level"):
        opt = argv.pop(0)
        if opt == "--version":
            from avsr import __version__
            print(f"avsr {__version__}")
            return argv, 0
        level = opt.split("=", 1)[1] if "=" in opt else (argv.pop(0) if argv else "")
        if level.lower() not in LOG_LEVELS:
            print(f"avsr: --log_level must be one of {', '.join(LOG_LEVELS)}, got {level!r}", file=sys.stderr)
            return argv, 2
        logging.basicConfig(level=getattr(logging, level.upper()), format="%(levelname)s:%(name)s:%(message)s")
        logging.getLogger("avsr").setLevel(getattr(logging, level.upper()))
    return argv, None


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    argv, rc = _global_options(argv)
    if rc is not None:
        return rc
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
