"""The one exception type for bad media, always naming the file."""
from __future__ import annotations

import os


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
