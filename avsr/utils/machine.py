"""The machine a measurement ran on, as every result JSON records it (the rows tables, the benchmarks)."""
from __future__ import annotations

import os
import platform
import sys

__all__ = ["machine_info"]


def machine_info() -> dict:
    """``{"platform", "cpu", "cores", "memory", "python"}``: the CPU model and total memory from /proc
    (empty where it cannot be read), the logical core count and the Python version."""
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            mem = f.readline().split(":", 1)[1].strip()
    except OSError:
        pass
    return {"platform": platform.platform(), "cpu": cpu or platform.machine(), "cores": os.cpu_count(),
            "memory": mem, "python": sys.version.split()[0]}
