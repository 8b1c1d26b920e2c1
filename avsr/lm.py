"""Token language model for shallow fusion in the beam search.

The model is ESPnet's ``espnet2.lm.transformer_lm.TransformerLM`` (a causal Transformer encoder over
token embeddings, one linear output layer; importable without torchaudio) over the ASR token list,
so its ``<sos/eos>`` (the last id) and its vocabulary are the ASR model's.  :class:`TransformerTokenLM`
subclasses it and adds

* :meth:`TransformerTokenLM.nll`: the training loss on padded token sequences (input ``<sos> y``,
  target ``y <eos>``, ESPnet's ``ESPnetLanguageModel.nll`` convention), and
* :meth:`TransformerTokenLM.batch_step`: one decoding step for a ``[N, L]`` batch of prefixes with
  the cache as a list of per-layer tensors ``[N, L-1, d]`` (batch first), so the batched beam search
  reorders it with one index per layer, like the attention decoder's cache.

ESPnet's own scorer interface (``score``, ``batch_score``) is inherited unchanged; the state dict
keys are ESPnet's ``TransformerLM`` keys (``embed.``, ``encoder.``, ``decoder.``).

An LM dir (``avsr train_lm``, and a packed model dir that carries an LM) holds::

    lm.pth           weights (a plain state dict; loaded weights-only)
    lm_config.yaml   lm: (type and the TransformerLM arguments), vocab_size
    tokens.txt       the token list it was trained with

:func:`load_lm` reads either.  The token list of an LM must equal the ASR model's
(:func:`check_tokens`, checked when packing).
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import yaml

from avsr._espnet import quiet_import

quiet_import()

from espnet2.lm.transformer_lm import TransformerLM  # noqa: E402

from avsr.utils.checkpoint import load_checkpoint  # noqa: E402

__all__ = ["LM_FILES", "LMError", "DEFAULT_LM", "TransformerTokenLM", "build_lm", "load_lm", "lm_config",
           "check_tokens", "choose_lm_weight"]

PathLike = Union[str, os.PathLike]
LM_FILES = ("lm.pth", "lm_config.yaml", "tokens.txt")

#: the ``lm:`` section defaults (conf/lm.yaml sets the size used by the recipe)
DEFAULT_LM: Dict[str, Any] = {"type": "transformer", "pos_enc": None, "embed_unit": 128, "att_unit": 256,
                              "head": 4, "unit": 1024, "layer": 2, "dropout_rate": 0.1,
                              "positional_dropout_rate": 0.1, "attention_dropout_rate": 0.1}


class LMError(RuntimeError):
    """A bad LM dir or config; ``str()`` starts with the path."""

    def __init__(self, path: PathLike, reason: str):
        self.path = os.fspath(path)
        super().__init__(f"{self.path}: {reason}")


class TransformerTokenLM(TransformerLM):
    """ESPnet's ``TransformerLM`` with a training loss and a tensor-cache decoding step."""

    def __init__(self, vocab_size: int, **kw):
        super().__init__(vocab_size, **kw)
        self.vocab_size = int(vocab_size)
        self.sos = self.eos = self.vocab_size - 1

    def nll(self, tokens: torch.Tensor, lens: torch.Tensor) -> Tuple[torch.Tensor, int]:
        """``(summed negative log-likelihood, number of predicted tokens)`` of a padded batch
        ``tokens`` ``[B, L]`` (valid lengths ``lens``; each sequence also predicts ``<eos>``)."""
        B = tokens.size(0)
        lens = lens.to(tokens.device)
        L = int(lens.max()) if B else 0
        x = torch.zeros(B, L + 1, dtype=torch.long, device=tokens.device)   # pad 0: masked by _target_mask
        x[:, 0] = self.sos
        x[:, 1:] = tokens[:, :L]
        t = torch.full((B, L + 1), -1, dtype=torch.long, device=tokens.device)
        pos = torch.arange(L + 1, device=tokens.device)[None, :]
        t[:, :L] = torch.where(pos[:, :L] < lens[:, None], tokens[:, :L], torch.full_like(tokens[:, :L], -1))
        t[torch.arange(B, device=tokens.device), lens] = self.eos
        x = torch.where(pos <= lens[:, None], x, torch.zeros_like(x))
        y, _ = self(x, None)
        loss = torch.nn.functional.cross_entropy(y.reshape(-1, y.size(-1)), t.reshape(-1), ignore_index=-1,
                                                 reduction="sum")
        return loss, int((t >= 0).sum())

    def batch_step(self, yseq: torch.Tensor, cache: Optional[List[torch.Tensor]]
                   ) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """Log-probabilities ``[N, V]`` of the next token after each prefix ``yseq`` ``[N, L]``
        (starting with ``<sos>``) and the new cache (per layer ``[N, L, d]``); ``cache`` is the one
        returned for the prefixes without their last token (``None`` at the first step)."""
        h, _, new_cache = self.encoder.forward_one_step(self.embed(yseq), self._target_mask(yseq), cache=cache)
        return self.decoder(h[:, -1]).log_softmax(dim=-1), new_cache


def lm_config(conf: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """The ``lm:`` section with defaults filled in (``conf``: the section, or a parsed YAML with one);
    unknown keys are an error."""
    conf = dict(conf or {})
    if "lm" in conf and isinstance(conf["lm"], Mapping):
        conf = dict(conf["lm"])
    unknown = set(conf) - set(DEFAULT_LM)
    if unknown:
        raise ValueError(f"unknown lm options {sorted(unknown)} (known: {sorted(DEFAULT_LM)})")
    out = {**DEFAULT_LM, **conf}
    if out["type"] != "transformer":
        raise ValueError(f"lm type must be 'transformer', got {out['type']!r}")
    return out


def build_lm(conf: Optional[Mapping[str, Any]], vocab_size: int) -> TransformerTokenLM:
    """A :class:`TransformerTokenLM` for ``vocab_size`` tokens from an ``lm:`` section."""
    kw = {k: v for k, v in lm_config(conf).items() if k != "type"}
    return TransformerTokenLM(int(vocab_size), **kw)


def _read_tokens(path: str) -> List[str]:
    with open(path, encoding="utf-8") as f:
        return [ln.rstrip("\n") for ln in f if ln.strip()]


def check_tokens(lm_dir: PathLike, token_list: Union[PathLike, Sequence[str]]) -> None:
    """Raise :class:`LMError` unless ``lm_dir``'s token list equals ``token_list`` (path or list)."""
    p = os.path.join(os.fspath(lm_dir), "tokens.txt")
    if not os.path.isfile(p):
        raise LMError(p, "missing (an LM dir holds lm.pth, lm_config.yaml and tokens.txt)")
    mine = _read_tokens(p)
    other = _read_tokens(os.fspath(token_list)) if isinstance(token_list, (str, os.PathLike)) else list(token_list)
    if mine != other:
        diff = next((i for i, (a, b) in enumerate(zip(mine, other)) if a != b), min(len(mine), len(other)))
        raise LMError(p, f"the LM's token list differs from the model's ({len(mine)} vs {len(other)} tokens, "
                         f"first difference at id {diff}); train the LM with the model's token list")


def load_lm(path: PathLike, device: Union[str, torch.device] = "cpu") -> Tuple[TransformerTokenLM, Dict[str, Any]]:
    """``(LM in eval mode, its lm_config.yaml)`` from an LM dir or a packed model dir that carries one.
    Raises :class:`LMError` naming the file for a missing or mismatching part; the weights are loaded
    weights-only (:func:`avsr.utils.checkpoint.load_checkpoint`)."""
    path = os.fspath(path)
    for f in LM_FILES:
        if not os.path.isfile(os.path.join(path, f)):
            raise LMError(os.path.join(path, f), "missing (not an LM dir; train one with `avsr train_lm`)")
    cp = os.path.join(path, "lm_config.yaml")
    try:
        with open(cp, encoding="utf-8") as f:
            conf = yaml.safe_load(f) or {}
        cfg = lm_config(conf.get("lm"))
    except (yaml.YAMLError, ValueError, AttributeError) as e:
        raise LMError(cp, f"unreadable LM config ({e})") from None
    n_tok = len(_read_tokens(os.path.join(path, "tokens.txt")))
    V = int(conf.get("vocab_size", n_tok))
    if V != n_tok:
        raise LMError(os.path.join(path, "tokens.txt"), f"{n_tok} tokens, lm_config.yaml says vocab_size {V}")
    lm = build_lm(cfg, V)
    sd = load_checkpoint(os.path.join(path, "lm.pth"))
    if isinstance(sd, Mapping) and "model" in sd and isinstance(sd["model"], Mapping):
        sd = sd["model"]
    try:
        lm.load_state_dict(dict(sd), strict=True)
    except RuntimeError as e:
        raise LMError(os.path.join(path, "lm.pth"), f"weights do not fit lm_config.yaml: {str(e).splitlines()[0]}") from None
    return lm.to(device).eval(), {**conf, "lm": cfg, "vocab_size": V}


def choose_lm_weight(cer_by_weight: Mapping[float, float]) -> float:
    """The weight with the lowest dev CER; a tie goes to the smaller weight (0 wins a tie with any LM)."""
    if not cer_by_weight:
        raise ValueError("no LM weight to choose from")
    return float(min(cer_by_weight, key=lambda w: (float(cer_by_weight[w]), float(w))))
