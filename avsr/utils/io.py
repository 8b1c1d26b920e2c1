"""Atomic writes of small text files (reports, lists, JSON): a temporary file in the same folder, then
``os.replace``, so a reader never sees half a file and an interrupted run leaves the old file."""
from __future__ import annotations

import os

__all__ = ["write_text_atomic"]


def write_text_atomic(path: str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically; the folder is created when missing."""
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
