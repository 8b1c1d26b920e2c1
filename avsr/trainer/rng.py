"""RNG states of a training run as tensors and plain types (checkpoints are loaded
``weights_only=True``, see :mod:`avsr.utils.checkpoint`), for exact resume."""
from __future__ import annotations

import logging
import random
from typing import Any, Dict, Mapping

import numpy as np
import torch

__all__ = ["rng_state", "set_rng_state"]

logger = logging.getLogger("avsr.trainer")


def rng_state() -> Dict[str, Any]:
    """python / numpy (legacy global) / torch (CPU and CUDA) RNG states as tensors and plain types."""
    ver, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    st: Dict[str, Any] = {
        "python": {"version": int(ver), "state": torch.tensor(internal, dtype=torch.int64),
                   "gauss": gauss},
        "numpy": {"name": str(name), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        st["cuda"] = [s for s in torch.cuda.get_rng_state_all()]
    return st


def set_rng_state(st: Mapping[str, Any]) -> None:
    py = st["python"]
    random.setstate((int(py["version"]), tuple(int(x) for x in py["state"].cpu().tolist()), py["gauss"]))
    n = st["numpy"]
    np.random.set_state((n["name"], n["keys"].cpu().numpy().astype(np.uint32), int(n["pos"]),
                         int(n["has_gauss"]), float(n["cached_gaussian"])))
    torch.set_rng_state(st["torch"].cpu())
    if "cuda" in st and torch.cuda.is_available():
        cuda = list(st["cuda"])
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda])
        else:
            logger.warning("checkpoint has %d CUDA RNG states, this machine %d devices: not restored",
                           len(cuda), torch.cuda.device_count())
