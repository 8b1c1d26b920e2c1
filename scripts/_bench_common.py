"""Machine description shared by the benchmark scripts (written into every result JSON)."""
from __future__ import annotations

import json
import os
import shlex
import sys

from avsr.utils.machine import machine_info  # noqa: F401  (re-exported for the scripts)


def command_line() -> str:
    return " ".join([os.path.relpath(sys.executable) if sys.executable.startswith(os.getcwd())
                     else "python"] + [shlex.quote(a) for a in sys.argv])


def emit(out: dict, path=None) -> None:
    """Print ``out`` as JSON and write it to ``path`` (when given)."""
    text = json.dumps(out, indent=1)
    print(text)
    if path:
        with open(path, "w") as f:
            f.write(text + "\n")
