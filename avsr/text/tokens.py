"""Token lists (ESPnet layout) and tokenizers: characters, or a sentencepiece model.

Token list file (``tokens.txt``, one token per line, line number = id), ESPnet order:

    <blank>        id 0 (CTC blank)
    <unk>          id 1
    ...            the tokens (see below)
    <sos/eos>      last id

* ``char``: every character seen in the training text, sorted by descending
  frequency, ties by code point (deterministic).  A space would become ``<space>``
  (the MISP2022 text normalisation removes spaces, so it does not occur there).
  Written to ``<output_dir>/tokens.txt`` (the recipe uses ``data/token_list/char``).
* ``bpe``: a sentencepiece model (``unigram`` by default, or ``bpe``/``char``/``word``)
  trained on the training text with ``character_coverage=1.0`` and a soft vocabulary
  limit (a tiny corpus gets fewer pieces instead of an error).  The token list is the
  model's pieces in model-id order, minus sentencepiece's own control pieces
  (``<s>``, ``</s>``) and ``<unk>``, wrapped as above.  Files:
  ``<output_dir>/bpe.model``, ``bpe.vocab``, ``tokens.txt``
  (the recipe uses ``data/token_list/bpe_<mode><size>``).

Encoding and decoding use ESPnet's ``CharTokenizer`` and ``TokenIDConverter``
(imported directly; ``espnet2.text.build_tokenizer`` is not used) and the
``sentencepiece`` processor.  :meth:`Tokenizer.decode` drops ``<blank>`` and
``<sos/eos>``.

CLI::

    python -m avsr.bin.tokens --text data/train/text --output_dir data/token_list/char
    python -m avsr.bin.tokens --text data/train/text --token_type bpe --vocab_size 500 \\
        --output_dir data/token_list/bpe_unigram500

``--text`` is a Kaldi ``text`` file (``<utt> <transcription>``); ``--no_utt_id`` for
plain one-sentence-per-line files.
"""
from __future__ import annotations

import collections
import os
import tempfile
from typing import Iterable, List, Optional, Sequence, Union

BLANK = "<blank>"
UNK = "<unk>"
SOS_EOS = "<sos/eos>"
SPACE = "<space>"
SPECIALS = (BLANK, UNK, SOS_EOS)


def _char_tokenizer(non_linguistic_symbols: Optional[Iterable[str]] = None):
    from espnet2.text.char_tokenizer import CharTokenizer
    return CharTokenizer(non_linguistic_symbols=list(non_linguistic_symbols or []),
                         space_symbol=SPACE)


def read_text(path: str, *, utt_id: bool = True) -> List[str]:
    """Sentences of a Kaldi ``text`` file (or plain lines with ``utt_id=False``)."""
    out = []
    with open(path, "r", encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n").rstrip("\r")
            if utt_id:
                parts = line.split(maxsplit=1)
                line = parts[1] if len(parts) > 1 else ""
            if line.strip():
                out.append(line)
    return out


def build_char_token_list(texts: Iterable[str], *, min_count: int = 1,
                          non_linguistic_symbols: Optional[Iterable[str]] = None) -> List[str]:
    """``[<blank>, <unk>, chars by (-count, code point)..., <sos/eos>]``."""
    tok = _char_tokenizer(non_linguistic_symbols)
    counts: collections.Counter = collections.Counter()
    for t in texts:
        counts.update(tok.text2tokens(t))
    for s in SPECIALS:
        counts.pop(s, None)
    chars = sorted((c for c, n in counts.items() if n >= min_count), key=lambda c: (-counts[c], c))
    if not chars:
        raise ValueError("no tokens: the training text is empty")
    return [BLANK, UNK, *chars, SOS_EOS]


def write_token_list(tokens: Sequence[str], path: str) -> None:
    """Write one token per line (atomically)."""
    if len(set(tokens)) != len(tokens):
        raise ValueError("duplicate tokens in token list")
    d = os.path.dirname(path) or "."
    os.makedirs(d, exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        for t in tokens:
            if not t or "\n" in t or t != t.strip():
                raise ValueError(f"invalid token {t!r}")
            f.write(t + "\n")
    os.replace(tmp, path)


def read_token_list(path: str) -> List[str]:
    with open(path, "r", encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.rstrip("\n")]


def train_sentencepiece(texts: Iterable[str], output_dir: str, *, vocab_size: int = 500,
                        model_type: str = "unigram", character_coverage: float = 1.0,
                        prefix: str = "bpe", seed_sentencepiece_size: int = 1000000) -> List[str]:
    """Train ``<output_dir>/<prefix>.model`` and return the ESPnet token list for it."""
    import sentencepiece as spm

    os.makedirs(output_dir, exist_ok=True)
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise ValueError("no training text for sentencepiece")
    n_chars = len(set("".join(t.replace(" ", "") for t in texts)))
    if model_type in ("unigram", "bpe") and character_coverage >= 1.0 and vocab_size < n_chars + 4:
        raise ValueError(f"vocab_size {vocab_size} is too small: the text has {n_chars} distinct "
                         f"characters and every one needs a piece (plus <unk>, <s>, </s> and the "
                         f"word-boundary piece); use a vocabulary of at least {n_chars + 4}")
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".txt", delete=False,
                                     dir=output_dir) as f:
        f.write("\n".join(texts) + "\n")
        train_txt = f.name
    model_prefix = os.path.join(output_dir, prefix)
    try:
        spm.SentencePieceTrainer.train(
            input=train_txt, model_prefix=model_prefix, vocab_size=int(vocab_size),
            model_type=model_type, character_coverage=character_coverage,
            hard_vocab_limit=False, input_sentence_size=100000000, shuffle_input_sentence=False,
            seed_sentencepiece_size=seed_sentencepiece_size, num_threads=1,
            unk_piece=UNK, bos_piece="<s>", eos_piece="</s>", minloglevel=2)
    finally:
        os.unlink(train_txt)
    sp = spm.SentencePieceProcessor(model_file=model_prefix + ".model")
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())
              if not (sp.is_control(i) or sp.is_unknown(i))]
    pieces = [p for p in pieces if p not in SPECIALS]
    return [BLANK, UNK, *pieces, SOS_EOS]


class Tokenizer:
    """Text <-> token ids for a token list, with characters or a sentencepiece model."""

    def __init__(self, token_list: Union[str, Sequence[str]], token_type: str = "char",
                 bpemodel: Optional[str] = None,
                 non_linguistic_symbols: Optional[Iterable[str]] = None):
        from espnet2.text.token_id_converter import TokenIDConverter

        if isinstance(token_list, (str, os.PathLike)):
            token_list = read_token_list(os.fspath(token_list))
        self.token_list = list(token_list)
        self.converter = TokenIDConverter(self.token_list, unk_symbol=UNK)
        self.token_type = token_type
        if token_type == "char":
            self._char = _char_tokenizer(non_linguistic_symbols)
            self._sp = None
        elif token_type == "bpe":
            import sentencepiece as spm
            if not bpemodel:
                raise ValueError("token_type 'bpe' needs bpemodel")
            self._sp = spm.SentencePieceProcessor(model_file=os.fspath(bpemodel))
            self._char = None
        else:
            raise ValueError(f"unknown token_type {token_type!r} (char or bpe)")
        self._drop = {self.converter.token2id[s] for s in (BLANK, SOS_EOS)
                      if s in self.converter.token2id}

    @property
    def vocab_size(self) -> int:
        return len(self.token_list)

    @property
    def sos_eos_id(self) -> int:
        return self.converter.token2id[SOS_EOS]

    @property
    def unk_id(self) -> int:
        return self.converter.unk_id

    def text2tokens(self, text: str) -> List[str]:
        if self._sp is not None:
            return list(self._sp.encode(text, out_type=str))
        return self._char.text2tokens(text)

    def tokens2text(self, tokens: Iterable[str]) -> str:
        tokens = list(tokens)
        if self._sp is not None:
            return self._sp.decode_pieces(tokens)
        return self._char.tokens2text(tokens)

    def encode(self, text: str) -> List[int]:
        return self.converter.tokens2ids(self.text2tokens(text))

    def decode(self, ids: Iterable[int]) -> str:
        ids = [int(i) for i in ids if int(i) not in self._drop]
        return self.tokens2text(self.converter.ids2tokens(ids))
