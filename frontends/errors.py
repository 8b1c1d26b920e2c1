"""The one exception type for bad media, always naming the file."""
from __future__ import annotations

import math
import os
from typing import Optional, Tuple


class MediaError(RuntimeError):
    """Raised for unreadable / truncated / empty / wrong-format media.

    ``str(err)`` always starts with the offending path, so a batch job can
    print one clear line per bad file.
    """

    def __init__(self, path: "str | os.PathLike[str]", reason: str):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def check_file(path: "str | os.PathLike[str]") -> None:
    """Raise :class:`MediaError` unless ``path`` is an existing, non-empty regular file."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise MediaError(path, "file not found")
    if not os.path.isfile(path):
        raise MediaError(path, "not a regular file")
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise MediaError(path, f"cannot stat file ({e.strerror or e})") from None
    if size == 0:
        raise MediaError(path, "empty file (0 bytes)")


def check_time_range(start: float, end: Optional[float]) -> Tuple[float, Optional[float]]:
    """``(start, end)`` as floats; ``ValueError`` unless ``0 <= start < end`` (``end`` may be None)."""
    start = float(start)
    if not math.isfinite(start) or start < 0:
        raise ValueError(f"start must be >= 0 seconds, got {start!r}")
    if end is not None:
        end = float(end)
        if not math.isfinite(end) or end <= start:
            raise ValueError(f"end must be > start ({start}), got {end!r}")
    return start, end
