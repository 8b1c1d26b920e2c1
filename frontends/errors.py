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
