"""Checkpoint I/O: atomic writes, weights-only loads, partial init (``--init``), averaging.

A neutral module (it imports nothing from ``avsr``): the trainer, the models, packing and
inference all use it, so none of them depends on the trainer (ESPnet keeps the same role in
``espnet2/torch_utils/load_pretrained_model.py``).  The trainer's RNG-state helpers live in
:mod:`avsr.trainer.rng`.

Documented behaviours
---------------------
* **Atomic save** (:func:`save_checkpoint`): the object is written with ``torch.save`` to a
  temporary file in the destination directory (``.<name>.tmp.<pid>``), flushed and
  ``fsync``-ed, then moved over the destination with ``os.replace`` (atomic on POSIX), and
  the directory is ``fsync``-ed.  A process killed at any moment leaves either the old
  file or the new one, never a truncated one.
* **Weights-only load** (:func:`load_checkpoint`): always ``torch.load(path,
  weights_only=True, map_location=...)``.  Anything else than tensors and plain Python
  types (dict/list/tuple/str/int/float/bool/None) is refused with a
  :class:`CheckpointError` whose message starts with the file path; no code in the file is
  executed.  Everything the trainer stores is therefore plain: RNG states are converted
  by :func:`avsr.trainer.rng.rng_state` / :func:`avsr.trainer.rng.set_rng_state`.
* **Partial init** (:func:`load_partial`): copies tensors whose names *and* shapes match;
  returns ``PartialLoad(loaded, missing, unexpected, shape_mismatch)`` and logs a summary
  (to ``log``; the trainer passes its ``avsr.trainer`` logger, so the summary is in ``train.log``).
* **Averaging** (:func:`average_checkpoints`): element-wise mean (in float64, cast back)
  of the floating-point tensors of the model state dicts in ``paths``; non-floating
  tensors (e.g. ``num_batches_tracked``) are taken from the first file.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import torch

__all__ = ["CheckpointError", "PartialLoad", "save_checkpoint", "load_checkpoint", "load_partial",
           "average_checkpoints", "model_state", "init_specs"]

logger = logging.getLogger("avsr.checkpoint")

PathLike = Union[str, os.PathLike]


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or is refused; ``str()`` starts with the file path."""

    def __init__(self, path: PathLike, reason: str):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


# ---------------------------------------------------------------------------- save / load
def _fsync_dir(d: str) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(obj: Any, path: PathLike) -> str:
    """Write ``obj`` with ``torch.save`` atomically (tmp file + fsync + ``os.replace``)."""
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = os.path.join(d, f".{os.path.basename(path)}.tmp.{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(d)
    return path


def load_checkpoint(path: PathLike, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``; :class:`CheckpointError` naming ``path`` otherwise."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(path, "checkpoint file not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # UnpicklingError (pickled code / classes), RuntimeError (corrupt zip)
        msg = str(e)
        if "weights_only" in msg.lower() or "Weights only load failed" in msg \
                or type(e).__name__ == "UnpicklingError":
            first = next((ln.strip() for ln in msg.splitlines()
                          if "GLOBAL" in ln or "Unsupported" in ln), "")
            raise CheckpointError(
                path, "refused: not a weights-only checkpoint (it stores pickled Python objects or "
                      "code, which are never loaded)" + (f"; {first}" if first else "")) from None
        raise CheckpointError(path, f"unreadable checkpoint ({type(e).__name__}: {msg.splitlines()[0] if msg else ''})") from None


def model_state(obj: Mapping[str, Any]) -> Mapping[str, torch.Tensor]:
    """The model state dict inside a trainer checkpoint (``obj["model"]``) or ``obj`` itself."""
    if isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
        return obj["model"]
    return obj


# ---------------------------------------------------------------------------- partial init
@dataclass
class PartialLoad:
    loaded: List[str] = field(default_factory=list)          # copied (name and shape match)
    missing: List[str] = field(default_factory=list)         # in the model, not in the state dict
    unexpected: List[str] = field(default_factory=list)      # in the state dict, not in the model
    shape_mismatch: List[str] = field(default_factory=list)  # same name, another shape (not copied)

    def __iter__(self):  # ``loaded, missing, unexpected, mismatch = load_partial(...)``
        return iter((self.loaded, self.missing, self.unexpected, self.shape_mismatch))

    @property
    def mismatched(self) -> List[str]:
        return self.shape_mismatch

    def merge(self, later: "PartialLoad") -> "PartialLoad":
        """The combined result of this load followed by ``later`` on the same model."""
        loaded = list(dict.fromkeys(self.loaded + later.loaded))
        done = set(loaded)
        return PartialLoad(
            loaded=loaded,
            missing=[k for k in self.missing if k in set(later.missing) and k not in done],
            unexpected=list(dict.fromkeys(self.unexpected + later.unexpected)),
            shape_mismatch=[k for k in dict.fromkeys(self.shape_mismatch + later.shape_mismatch)
                            if k not in done])


def init_specs(init: Union[None, str, Sequence[str]]) -> List[Tuple[str, Optional[Tuple[str, ...]]]]:
    """Parse ``--init`` specs: ``"PATH"`` or ``"PATH::PREFIX[,PREFIX...]"`` (include prefixes).

    >>> init_specs(["a0/model.pth", "v/model.pth::visual_"])
    [('a0/model.pth', None), ('v/model.pth', ('visual_',))]
    """
    if not init:
        return []
    out = []
    for spec in ([init] if isinstance(init, str) else list(init)):
        path, sep, pref = str(spec).partition("::")
        include = tuple(p for p in pref.split(",") if p) if sep else None
        if sep and not include:
            raise ValueError(f"--init {spec!r}: empty prefix list after '::'")
        out.append((path, include))
    return out


def load_partial(model: torch.nn.Module, state_dict: Union[Mapping[str, torch.Tensor], PathLike],
                 ignore: Sequence[str] = (), *, include: Optional[Sequence[str]] = None,
                 log: Optional[logging.Logger] = None) -> PartialLoad:
    """``--init`` with partial matching.

    ``state_dict``: a mapping (a trainer checkpoint with a ``"model"`` entry is accepted) or a
    path (loaded weights-only).  ``ignore``: name prefixes of ``model`` tensors that are never
    filled (they count as ``missing``; matching entries of the state dict are not
    ``unexpected``).  ``include``: if given, only ``model`` tensors with one of these name
    prefixes may be filled (e.g. ``("visual_",)`` to take the visual branch of a V model).
    Tensors not filled keep their values; shape mismatches are listed in ``shape_mismatch``
    (alias ``mismatched``) and not in ``missing``.  This is the one implementation of ``--init``
    (``avsr.models.load_partial`` is the same function).  The summary is logged to ``log``
    (default: the ``avsr.checkpoint`` logger).
    """
    if isinstance(state_dict, (str, os.PathLike)):
        state_dict = load_checkpoint(state_dict)
    sd = model_state(state_dict)
    ignore = tuple(ignore)
    own = model.state_dict()
    res = PartialLoad()
    with torch.no_grad():
        for k, t in own.items():
            skip = (ignore and k.startswith(ignore)) or (include is not None and not k.startswith(tuple(include)))
            src = None if skip else sd.get(k)
            if src is None:
                res.missing.append(k)
            elif tuple(src.shape) != tuple(t.shape):
                res.shape_mismatch.append(k)
            else:
                t.copy_(src.to(device=t.device, dtype=t.dtype))
                res.loaded.append(k)
    res.unexpected = [k for k in sd if k not in own and not (ignore and k.startswith(ignore))]
    lg = log or logger
    lg.info("init: loaded %d tensors, %d missing, %d unexpected, %d shape mismatch",
            len(res.loaded), len(res.missing), len(res.unexpected), len(res.shape_mismatch))
    for what in ("missing", "unexpected", "shape_mismatch"):
        names = getattr(res, what)
        if names:
            lg.info("init %s: %s", what, ", ".join(names[:50]) + (" ..." if len(names) > 50 else ""))
    return res


# ---------------------------------------------------------------------------- averaging
def average_checkpoints(paths: Iterable[PathLike]) -> Dict[str, torch.Tensor]:
    """Average the model weights of ``paths`` (see the module docstring)."""
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise ValueError("average_checkpoints: no paths")
    acc: Dict[str, torch.Tensor] = {}
    first: Dict[str, torch.Tensor] = {}
    for i, p in enumerate(paths):
        sd = model_state(load_checkpoint(p))
        if i == 0:
            first = dict(sd)
            for k, v in sd.items():
                if v.is_floating_point():
                    acc[k] = v.detach().to(torch.float64).clone()
        else:
            if set(sd) != set(first):
                raise CheckpointError(p, f"keys differ from {paths[0]}")
            for k in acc:
                acc[k] += sd[k].detach().to(torch.float64)
    out: Dict[str, torch.Tensor] = {}
    for k, v in first.items():
        out[k] = (acc[k] / len(paths)).to(v.dtype) if k in acc else v.clone()
    return out
