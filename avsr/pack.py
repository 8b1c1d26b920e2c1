"""Packed model dirs: the unit users share and ``avsr decode`` / :class:`avsr.inference.Speech2Text` load.

Layout of a packed dir::

    config.yaml      model: (the ModelConfig, vocab_size and mode included), decode: defaults
                     (beam_size, ctc_weight, adapter_threshold, lm_weight, fusion: "entropy" for an
                     MLA model decoded by fusing its audio and video paths' CTC posteriors, stored
                     with ctc_weight 1.0; absent: the model's own path)
    tokens.txt       token list (index = id; <blank> first, <sos/eos> last)
    bpe.model        sentencepiece model (only for token_type bpe)
    model.pth        averaged weights (a plain state dict, weights-only; the global fbank
                     mean/std live in it as ``audio_frontend.feat_mean/feat_std``)
    feats_stats.json the same normalisation statistics, human-readable
    adapters.pth     MS-Adapter weights, if the model has adapters
    lm.pth           token LM weights for shallow fusion, if packed with one (``lm_dir``: an
    lm_config.yaml   ``avsr train_lm`` dir, whose token list must equal the model's); the default
                     weight is ``decode.lm_weight`` in config.yaml (0: the LM is carried but unused)
    aligner.pth      the local CTC aligner that times tokens (``avsr train_aligner``), if packed with one
    aligner_config.yaml  (``aligner_dir``; its token list must equal the model's)
    meta.json        toolkit / torch versions, source checkpoint, training summary, sha256 of files
                     (the LM's files included), ``lm`` (the LM's source dir, dev perplexity, size)

Loading never unpickles code: every ``.pth`` goes through
:func:`avsr.utils.checkpoint.load_checkpoint` (``weights_only=True``).
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import tempfile
from typing import Any, Dict, Optional, Tuple, Union

import torch
import yaml

from avsr.utils.checkpoint import CheckpointError, load_checkpoint, model_state, save_checkpoint

__all__ = ["pack_model", "load_packed", "load_packed_lm", "load_packed_aligner", "PackError", "is_packed"]

PathLike = Union[str, os.PathLike]
FILES = ("config.yaml", "tokens.txt", "model.pth", "meta.json")
LM_PACK_FILES = ("lm.pth", "lm_config.yaml")
ALIGNER_PACK_FILES = ("aligner.pth", "aligner_config.yaml")


class PackError(RuntimeError):
    def __init__(self, path: PathLike, reason: str):
        self.path = os.fspath(path)
        super().__init__(f"{self.path}: {reason}")


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("avsr")
    except Exception:  # noqa: BLE001 - not installed (source tree)
        return "unknown"


def is_packed(path: PathLike) -> bool:
    return all(os.path.isfile(os.path.join(path, f)) for f in FILES)


def _check_fusion(dec: Dict[str, Any], cfg, out_dir: str) -> None:
    """``decode["fusion"]`` (None, or one of :data:`avsr.decoding.entropy_fusion.FUSIONS`): a fusion
    decodes the fused CTC posteriors of an audio-visual model without MS-Adapters, so it goes with
    ``ctc_weight`` 1.0 (stored when absent)."""
    from avsr.decoding.entropy_fusion import FUSIONS
    f = dec.get("fusion")
    if f is None or str(f).lower() in ("", "none"):
        dec.pop("fusion", None)
        return
    if f not in FUSIONS:
        raise PackError(out_dir, f"decode default fusion must be one of {FUSIONS} or none, got {f!r}")
    if cfg.mode != "audiovisual":
        raise PackError(out_dir, f"decode default fusion {f!r} fuses the audio and the video path of an "
                                 f"audio-visual model; this model is {cfg.mode!r}")
    if getattr(cfg, "adapter_rank", 0):
        raise PackError(out_dir, f"decode default fusion {f!r} and MS-Adapters (adapter_rank "
                                 f"{cfg.adapter_rank}) cannot be combined")
    if float(dec.setdefault("ctc_weight", 1.0)) != 1.0:
        raise PackError(out_dir, f"decode default fusion {f!r} decodes CTC only: ctc_weight must be 1.0, "
                                 f"got {dec['ctc_weight']}")


def pack_model(out_dir: PathLike, *, model_config: Any, token_list: PathLike,
               weights: Union[PathLike, Dict[str, torch.Tensor]], bpemodel: Optional[PathLike] = None,
               adapters: Optional[Union[PathLike, Dict[str, torch.Tensor]]] = None,
               decode: Optional[Dict[str, Any]] = None, extra_meta: Optional[Dict[str, Any]] = None,
               lm_dir: Optional[PathLike] = None, aligner_dir: Optional[PathLike] = None) -> str:
    """Write a packed model dir (atomically: a temp dir renamed into place).

    ``model_config``: anything :func:`avsr.models.load_model_config` takes (the ``model:``
    section, a parsed YAML with one, a YAML path such as a training exp dir's ``config.yaml``,
    or a ``ModelConfig``).  ``lm_dir``: an LM dir (:mod:`avsr.lm`) to carry; its token list must
    equal ``token_list`` and its weights must fit its config (:class:`PackError` otherwise);
    ``decode["lm_weight"] > 0`` needs one.  ``decode["fusion"]`` (``"entropy"``) needs an
    audio-visual model without adapters and ``ctc_weight`` 1.0 (stored when absent).  ``aligner_dir``: an
    ``avsr train_aligner`` dir to carry (:mod:`avsr.models.aligner`; same token list)."""
    from avsr.models import AVSRModel, load_model_config
    out_dir = os.fspath(out_dir)
    cfg = load_model_config(model_config)
    src = os.fspath(weights) if isinstance(weights, (str, os.PathLike)) else None
    sd = dict(model_state(load_checkpoint(weights) if src else weights))
    # validate: the weights must load into the model the config describes
    model = AVSRModel(cfg)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise PackError(src or out_dir, f"weights do not match the config (missing {list(missing)[:5]}, "
                                        f"unexpected {list(unexpected)[:5]})")
    dec = dict(decode or {})
    _check_fusion(dec, cfg, out_dir)
    lm_meta = None
    if lm_dir is not None:
        from avsr.lm import LMError, check_tokens, load_lm
        try:
            check_tokens(lm_dir, token_list)
            lm, lm_conf = load_lm(lm_dir)
        except LMError as e:
            raise PackError(e.path, str(e)[len(e.path) + 2:]) from None
        lm_meta = {"source": os.path.abspath(os.fspath(lm_dir)),
                   "num_parameters": sum(p.numel() for p in lm.parameters()), "config": lm_conf["lm"]}
        res = os.path.join(os.fspath(lm_dir), "train_result.json")
        if os.path.isfile(res):
            with open(res) as f:
                r = json.load(f)
            lm_meta["dev_perplexity"] = r.get("dev_perplexity")
        dec.setdefault("lm_weight", 0.0)
    elif float(dec.get("lm_weight") or 0.0) != 0:
        raise PackError(out_dir, f"decode default lm_weight {dec['lm_weight']} needs an LM (lm_dir)")
    aligner_meta = None
    if aligner_dir is not None:
        aligner_meta = _check_aligner(aligner_dir, token_list)
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".pack.", dir=parent)
    try:
        with open(os.path.join(tmp, "config.yaml"), "w", encoding="utf-8") as f:
            yaml.safe_dump({"model": cfg.to_dict(), "decode": dec,
                            "token_type": "bpe" if bpemodel else "char"}, f, allow_unicode=True, sort_keys=False)
        shutil.copyfile(os.fspath(token_list), os.path.join(tmp, "tokens.txt"))
        n_tok = sum(1 for line in open(os.path.join(tmp, "tokens.txt"), encoding="utf-8") if line.strip())
        if n_tok != cfg.vocab_size:
            raise PackError(token_list, f"{n_tok} tokens, the model has vocab_size {cfg.vocab_size}")
        if bpemodel:
            shutil.copyfile(os.fspath(bpemodel), os.path.join(tmp, "bpe.model"))
        save_checkpoint({k: v.detach().cpu() for k, v in sd.items()}, os.path.join(tmp, "model.pth"))
        if model.has_audio:
            fr = model.audio_frontend
            with open(os.path.join(tmp, "feats_stats.json"), "w") as f:
                json.dump({"mean": fr.feat_mean.tolist(), "std": fr.feat_std.tolist()}, f)
        if adapters is not None:
            ad = load_checkpoint(adapters) if isinstance(adapters, (str, os.PathLike)) else adapters
            save_checkpoint(dict(ad), os.path.join(tmp, "adapters.pth"))
        if lm_dir is not None:
            for f in ("lm.pth", "lm_config.yaml"):
                shutil.copyfile(os.path.join(os.fspath(lm_dir), f), os.path.join(tmp, f))
        if aligner_dir is not None:
            for f in ALIGNER_PACK_FILES:
                shutil.copyfile(os.path.join(os.fspath(aligner_dir), f), os.path.join(tmp, f))
        meta = {"avsr_version": _version(), "torch_version": torch.__version__,
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "source_weights": os.path.abspath(src) if src else None,
                "num_parameters": sum(p.numel() for p in model.parameters()),
                **({"lm": lm_meta} if lm_meta else {}), **({"aligner": aligner_meta} if aligner_meta else {}),
                **(extra_meta or {})}
        meta["sha256"] = {f: _sha256(os.path.join(tmp, f)) for f in sorted(os.listdir(tmp))}
        with open(os.path.join(tmp, "meta.json"), "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=2, ensure_ascii=False)
        if os.path.isdir(out_dir):
            old = out_dir + ".old"
            shutil.rmtree(old, ignore_errors=True)
            os.rename(out_dir, old)
            os.rename(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def load_packed(path: PathLike, device: Union[str, torch.device] = "cpu", verify: bool = True
                ) -> Tuple[torch.nn.Module, Any, Dict[str, Any]]:
    """``(model in eval mode, Tokenizer, info)`` from a packed dir.

    ``info``: the parsed ``config.yaml`` plus ``meta``, ``path`` and ``has_lm`` (the pack carries
    an LM; it is not loaded here: :func:`load_packed_lm`).  Raises :class:`PackError` naming the
    file for a missing/corrupt part, a checksum mismatch (``verify``, the LM's files included) or
    weights that do not fit the config; a ``.pth`` with pickled code is refused (``CheckpointError``)."""
    from avsr.models import AVSRModel, load_model_config
    from avsr.text.tokens import Tokenizer
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise PackError(path, "packed model dir not found")
    for f in FILES:
        if not os.path.isfile(os.path.join(path, f)):
            raise PackError(os.path.join(path, f), "missing (not a packed model dir; make one with `avsr pack`)")
    try:
        with open(os.path.join(path, "config.yaml"), encoding="utf-8") as f:
            conf = yaml.safe_load(f) or {}
        with open(os.path.join(path, "meta.json"), encoding="utf-8") as f:
            meta = json.load(f)
    except (yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PackError(path, f"unreadable config.yaml/meta.json ({type(e).__name__}: {e})") from None
    if verify:
        for f, digest in (meta.get("sha256") or {}).items():
            p = os.path.join(path, f)
            if f != "meta.json" and os.path.isfile(p) and _sha256(p) != digest:
                raise PackError(p, "checksum mismatch (file changed or corrupt since packing)")
            if f != "meta.json" and not os.path.isfile(p) and f in LM_PACK_FILES:
                raise PackError(p, "missing (the pack was made with an LM)")
            if f != "meta.json" and not os.path.isfile(p) and f in ALIGNER_PACK_FILES:
                raise PackError(p, "missing (the pack was made with an aligner)")
    cfg = load_model_config(dict(conf.get("model") or {}))
    model = AVSRModel(cfg)
    sd = load_checkpoint(os.path.join(path, "model.pth"))
    try:
        model.load_state_dict(model_state(sd), strict=True)
    except RuntimeError as e:
        raise PackError(os.path.join(path, "model.pth"), f"weights do not fit config.yaml: {str(e).splitlines()[0]}") from None
    if os.path.isfile(os.path.join(path, "adapters.pth")):
        ad = load_checkpoint(os.path.join(path, "adapters.pth"))
        loader = getattr(model, "load_adapters", None)
        if loader is None:
            raise PackError(os.path.join(path, "adapters.pth"), "this model class has no adapters")
        loader(ad)
    bpe = os.path.join(path, "bpe.model")
    tok = Tokenizer(os.path.join(path, "tokens.txt"), token_type=conf.get("token_type", "char"),
                    bpemodel=bpe if os.path.isfile(bpe) else None)
    if tok.vocab_size != cfg.vocab_size:
        raise PackError(os.path.join(path, "tokens.txt"), f"{tok.vocab_size} tokens, model vocab {cfg.vocab_size}")
    model.to(device).eval()
    has_lm = all(os.path.isfile(os.path.join(path, f)) for f in LM_PACK_FILES)
    has_aligner = all(os.path.isfile(os.path.join(path, f)) for f in ALIGNER_PACK_FILES)
    return model, tok, {**conf, "meta": meta, "path": path, "has_lm": has_lm, "has_aligner": has_aligner}


def _check_aligner(aligner_dir: PathLike, token_list: PathLike) -> Dict[str, Any]:
    """The pack's meta for an aligner dir, after checking that it loads and has the model's token list."""
    from avsr.models.aligner import load_aligner
    d = os.fspath(aligner_dir)
    for f in ALIGNER_PACK_FILES + ("tokens.txt",):
        if not os.path.isfile(os.path.join(d, f)):
            raise PackError(os.path.join(d, f), "missing (not an avsr train_aligner dir)")
    with open(os.path.join(d, "tokens.txt"), encoding="utf-8") as a, open(os.fspath(token_list), encoding="utf-8") as b:
        if a.read().split() != b.read().split():
            raise PackError(os.path.join(d, "tokens.txt"), f"differs from the model's token list {os.fspath(token_list)}")
    try:
        al = load_aligner(d)
    except (CheckpointError, RuntimeError, ValueError, TypeError) as e:
        raise PackError(os.path.join(d, "aligner.pth"), f"does not load ({type(e).__name__}: {e})") from None
    meta = {"source": os.path.abspath(d), "num_parameters": sum(p.numel() for p in al.parameters()),
            "receptive_field_s": al.receptive_field()}
    res = os.path.join(d, "train_result.json")
    if os.path.isfile(res):
        with open(res) as f:
            meta["train_seconds"] = json.load(f).get("wall_seconds_this_call")
    return meta


def _check_carried(path: str, files, checked, what: str, option: str) -> None:
    """A carried part of a packed dir (the LM, the aligner): ``files`` must exist and ``checked`` must match the
    pack's checksums; :class:`PackError` naming the file otherwise."""
    for f in files:
        if not os.path.isfile(os.path.join(path, f)):
            raise PackError(os.path.join(path, f), f"missing: this packed model has no {what} (avsr pack {option})")
    try:
        with open(os.path.join(path, "meta.json"), encoding="utf-8") as f:
            sums = json.load(f).get("sha256") or {}
    except (OSError, json.JSONDecodeError) as e:
        raise PackError(os.path.join(path, "meta.json"), f"unreadable ({e})") from None
    for f in checked:
        p = os.path.join(path, f)
        if f not in sums:
            raise PackError(p, f"no checksum in meta.json (not packed by avsr pack {option})")
        if _sha256(p) != sums[f]:
            raise PackError(p, "checksum mismatch (file changed or corrupt since packing)")


def load_packed_aligner(path: PathLike, device: Union[str, torch.device] = "cpu") -> torch.nn.Module:
    """The local CTC aligner a packed dir carries (eval mode), after checking its files against the pack's
    checksums; :class:`PackError` naming the file when there is none or it does not fit."""
    from avsr.models.aligner import load_aligner
    path = os.fspath(path)
    _check_carried(path, ALIGNER_PACK_FILES, ALIGNER_PACK_FILES, "aligner", "--aligner_dir")
    try:
        return load_aligner(path, map_location=device).to(device)
    except (RuntimeError, ValueError, TypeError) as e:
        raise PackError(os.path.join(path, "aligner.pth"), f"does not load ({type(e).__name__}: {e})") from None


def load_packed_lm(path: PathLike, device: Union[str, torch.device] = "cpu") -> torch.nn.Module:
    """The token LM a packed dir carries (eval mode), after checking its files against the pack's
    checksums; :class:`PackError` naming the file when there is none or it does not fit."""
    from avsr.lm import LMError, load_lm
    path = os.fspath(path)
    _check_carried(path, LM_PACK_FILES, LM_PACK_FILES + ("tokens.txt",), "LM", "--lm_dir")
    try:
        return load_lm(path, device=device)[0]
    except LMError as e:
        raise PackError(e.path, str(e)[len(e.path) + 2:]) from None


__all__ += ["CheckpointError"]
