"""avsr: robust audio-visual speech recognition when lip video is unreliable.

    from avsr import load_model
    model = load_model("exp/packed/av0")
    result = model.transcribe("a.wav", "a.mp4")     # .text, .segments (timed), .score, .nbest

``import avsr`` stays light: torch is imported by :func:`load_model` (:mod:`avsr.api`).
"""
from avsr.api import load_model

__version__ = "0.1.0"
__all__ = ["load_model", "__version__"]
