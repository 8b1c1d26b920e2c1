"""Training methods by name, for command lines and recipes: ``NAME[:JSON kwargs]``.

    build_method('mda_kd:{"teacher": "exp/train_av0/model.pth", "distance": "gauss_kl"}')
    build_method('frame_dropout:{"d_prob": 0.5, "rate": [0, 1]}')
"""
from __future__ import annotations

import importlib
import json

from avsr.method import TrainingMethod

METHODS = {
    "audio_noise": "avsr.robust.audio_noise:AudioNoiseMethod",
    "ckd": "avsr.robust.ckd:CKDMethod",
    "frame_dropout": "avsr.robust.frame_dropout:FrameDropoutMethod",
    "mda_kd": "avsr.robust.mda_kd:MDAKDMethod",
    "mla": "avsr.robust.mla:MLAMethod",
    "ms_adapter": "avsr.robust.ms_adapter:MSAdapterMethod",
    "speed_perturb": "avsr.robust.speed_perturb:SpeedPerturbMethod",
    "tfr": "avsr.robust.tfr:TFRMethod",
}


def build_method(spec: str) -> TrainingMethod:
    name, _, kw = spec.partition(":")
    if name not in METHODS:
        raise ValueError(f"unknown training method {name!r}; known: {', '.join(sorted(METHODS))}")
    try:
        kwargs = json.loads(kw) if kw.strip() else {}
    except json.JSONDecodeError as e:
        raise ValueError(f"method {name!r}: arguments must be a JSON object, got {kw!r} ({e})") from None
    if not isinstance(kwargs, dict):
        raise ValueError(f"method {name!r}: arguments must be a JSON object, got {kw!r}")
    if name == "frame_dropout" and isinstance(kwargs.get("rate"), list):
        kwargs["rate"] = tuple(kwargs["rate"])
    mod, cls = METHODS[name].split(":")
    return getattr(importlib.import_module(mod), cls)(**kwargs)
