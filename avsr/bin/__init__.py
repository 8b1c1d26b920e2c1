"""Every command-line entry point of the toolkit, one module each with ``main(argv)``:
``avsr <command>`` (:mod:`avsr.cli`, ``avsr --help`` lists them) or ``python -m avsr.bin.<module>``.
Library modules elsewhere in ``avsr`` have no ``main``."""

#: help of ``--lm_weight`` where the pack's own weight is the default
LM_HELP = "shallow-fusion weight of the packed model's LM (default: the pack's; 0: no LM; CTC greedy ignores it)"


def add_decoder_options(ap, *, adapter_threshold: bool = True, lm_default=None, lm_help: str = LM_HELP) -> None:
    """The options every decode command passes to :meth:`avsr.inference.Speech2Text.from_packed`:
    ``--adapter_threshold`` (unless the command routes per model), ``--lm_weight``, ``--decode_fusion``;
    read back with :func:`decoder_overrides`."""
    if adapter_threshold:
        ap.add_argument("--adapter_threshold", type=float, default=None,
                        help="MS-Adapter routing: share of present frames at or below which an utterance is decoded "
                             "audio-only with the adapters (default: the packed model's, normally 0)")
    ap.add_argument("--lm_weight", type=float, default=lm_default, help=lm_help)
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
    return kw
