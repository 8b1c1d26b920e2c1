"""Media front-ends: files on disk -> arrays the models eat.

Direction is one-way: media -> frontends -> models -> decoding/eval.
Nothing in here imports from ``avsr.models`` or the trainer.
"""
from frontends.errors import MediaError

__all__ = ["MediaError"]
