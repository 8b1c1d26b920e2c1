"""Build a token list (char) or a sentencepiece model (bpe) from a Kaldi text file (``avsr tokens``).

    python -m avsr.bin.tokens --text data/train/text --output_dir data/token_list/char
    python -m avsr.bin.tokens --text data/train/text --token_type bpe --vocab_size 500 \\
        --output_dir data/token_list/bpe500

Token list conventions: :mod:`avsr.text.tokens`.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from avsr.bin import HelpFormatter
from avsr.text.tokens import build_char_token_list, read_text, train_sentencepiece, write_token_list


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="avsr tokens", formatter_class=HelpFormatter,
                                 description="Build a token list (char) or sentencepiece model (bpe).")
    ap.add_argument("--text", required=True, help="Kaldi text file (utt text) of the training set")
    ap.add_argument("--output_dir", required=True, help="where tokens.txt (and bpe.model) go")
    ap.add_argument("--token_type", choices=["char", "bpe"], default="char", help="char: one token per character; bpe: a sentencepiece model too")
    ap.add_argument("--vocab_size", type=int, default=500, help="bpe: sentencepiece vocabulary size")
    ap.add_argument("--bpemode", default="unigram", choices=["unigram", "bpe", "char", "word"], help="sentencepiece model type (--token_type bpe)")
    ap.add_argument("--min_count", type=int, default=1, help="char: drop rarer characters")
    ap.add_argument("--no_utt_id", action="store_true", help="text file has no utterance ids")
    args = ap.parse_args(argv)

    texts = read_text(args.text, utt_id=not args.no_utt_id)
    if args.token_type == "char":
        tokens = build_char_token_list(texts, min_count=args.min_count)
    else:
        try:
            tokens = train_sentencepiece(texts, args.output_dir, vocab_size=args.vocab_size,
                                         model_type=args.bpemode)
        except ValueError as e:
            print(f"ERROR: {args.text}: {e}", file=sys.stderr)
            return 1
        if len(tokens) < args.vocab_size:
            print(f"note: sentencepiece made a vocabulary of {len(tokens)} "
                  f"(asked for {args.vocab_size}; the training text is small)")
    out = os.path.join(args.output_dir, "tokens.txt")
    write_token_list(tokens, out)
    print(f"{out}: {len(tokens)} tokens ({args.token_type}) from {len(texts)} sentences")
    return 0


if __name__ == "__main__":
    sys.exit(main())
