"""Text processing: token lists and tokenizers (:mod:`avsr.text.tokens`).

Names are imported lazily, so importing the package stays cheap (the command line is
``avsr tokens``, :mod:`avsr.bin.tokens`).
"""
import importlib

_EXPORTS = {n: "avsr.text.tokens" for n in (
    "BLANK", "SOS_EOS", "UNK", "Tokenizer", "build_char_token_list", "read_token_list",
    "train_sentencepiece", "write_token_list")}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
