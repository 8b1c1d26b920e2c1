"""Every command-line entry point of the toolkit, one module each with ``main(argv)``:
``avsr <command>`` (:mod:`avsr.cli`, ``avsr --help`` lists them) or ``python -m avsr.bin.<module>``.
Library modules elsewhere in ``avsr`` have no ``main``."""
import argparse

#: help of ``--lm_weight`` where the pack's own weight is the default
LM_HELP = "shallow-fusion weight of the packed model's LM (default: the pack's; 0: no LM; CTC greedy ignores it)"


def has_default(action) -> bool:
    """Whether an option has a default worth printing: not None, False (a flag), SUPPRESS or an empty list.
    By identity and type, so that 0 and 0.0 (equal to False) count as defaults."""
    d = action.default
    return not (d is None or d is False or d is argparse.SUPPRESS or (isinstance(d, (list, tuple)) and not d))


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help that keeps the epilog's layout and ends each option's help with its default
    (``(default: X)``) unless the help already says what the default is, or there is none (:func:`has_default`)."""

    def _get_help_string(self, action):
        h = action.help or ""
        if action.option_strings and has_default(action) and "default" not in h:
            h = (h + " " if h else "") + "(default: %(default)s)"
        return h


def add_search_options(ap) -> None:
    """The search and batching options every ``avsr decode`` mode shares (one name, one default, one help):
    ``--beam_size``, ``--ctc_greedy``, ``--ctc_weight``, ``--penalty`` (each left out: the packed model's
    stored default), ``--batch_size``, ``--device``, ``--threads``, ``--no_progress``; read back with :func:`search_overrides`."""
    ap.add_argument("--beam_size", type=int, default=None,
                    help="beam size; 0 or less: CTC greedy (default: the packed model's, normally 10)")
    ap.add_argument("--ctc_greedy", action="store_true", help="CTC greedy search instead of the beam search")
    ap.add_argument("--ctc_weight", type=float, default=None,
                    help="CTC weight of the joint CTC/attention beam search (default: the packed model's, "
                         "else the model config's ctc_weight; 1.0 for a model without a decoder or an entropy-fusion "
                         "decode)")
    ap.add_argument("--penalty", type=float, default=None,
                    help="length bonus per output token in the beam search (default: the packed model's, else 0)")
    ap.add_argument("--batch_size", type=int, default=16,
                    help="utterances (--data_dir), or segments of one recording (files: voice-activity "
                         "segments or fixed windows), decoded together")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--no_progress", action="store_true", help="no progress bar on standard error")


def search_overrides(args) -> dict:
    """Keyword overrides of ``Speech2Text.from_packed`` from :func:`add_search_options`'s options: only
    those given (a left-out one keeps the pack's setting)."""
    kw = {k: getattr(args, k) for k in ("beam_size", "ctc_weight", "penalty") if getattr(args, k) is not None}
    if args.ctc_greedy:
        kw["ctc_greedy"] = True
    return kw


def add_decoder_options(ap, *, adapter_threshold: bool = True, lm_default=None, lm_help: str = LM_HELP,
                        align_adapt: bool = True) -> None:
    """The options every decode command passes to :meth:`avsr.inference.Speech2Text.from_packed`:
    ``--adapter_threshold`` (unless the command routes per model), ``--lm_weight``, ``--align_adapt_steps``
    (unless the command times no tokens), ``--decode_fusion``; read back with :func:`decoder_overrides`."""
    if adapter_threshold:
        ap.add_argument("--adapter_threshold", type=float, default=None,
                        help="MS-Adapter routing: share of present frames at or below which an utterance is decoded "
                             "audio-only with the adapters (default: the packed model's, normally 0)")
    ap.add_argument("--lm_weight", type=float, default=lm_default, help=lm_help)
    if align_adapt:
        ap.add_argument("--align_adapt_steps", type=int, default=None,
                        help="token times by the pack's local aligner: adaptation steps per segment and direction "
                             "(0: none, several times faster; default: the aligner's, normally 30)")
    ap.add_argument("--decode_fusion", default=None, choices=["none", "entropy"],
                    help="entropy: fuse the audio and the video path's CTC posteriors by entropy weights and "
                         "decode CTC-only (MLA models); none: the model's own path (default: the packed "
                         "model's setting, avsr pack --decode_fusion)")


def decoder_overrides(args) -> dict:
    """Keyword overrides of ``Speech2Text.from_packed`` from :func:`add_decoder_options`'s options: only
    those given (None keeps the pack's setting)."""
    kw = {}
    if getattr(args, "adapter_threshold", None) is not None:
        kw["adapter_threshold"] = args.adapter_threshold
    if args.lm_weight is not None:
        kw["lm_weight"] = args.lm_weight
    if args.decode_fusion is not None:
        kw["fusion"] = None if args.decode_fusion == "none" else args.decode_fusion
    if getattr(args, "align_adapt_steps", None) is not None:
        if args.align_adapt_steps < 0:
            raise SystemExit(f"error: --align_adapt_steps must be >= 0, got {args.align_adapt_steps}")
        kw["align_adapt_steps"] = args.align_adapt_steps
    return kw
