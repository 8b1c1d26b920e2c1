"""Machine description shared by the benchmark scripts (written into every result JSON)."""
from __future__ import annotations

import json
import os
import platform
import shlex
import sys


def machine_info() -> dict:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            mem = f.readline().split(":", 1)[1].strip()
    except OSError:
        pass
    return {"platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count(), "memory": mem,
            "python": sys.version.split()[0]}


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
