"""What a number was measured on: CPU, threads, load, GPU, library versions, date.

A timing means nothing without the machine and its load next to it (on a shared 2-core box another process can
halve a result), so every table and JSON file carries this record, with the load average before and after.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
from typing import Any


def cpu_model() -> str:
    """The CPU's marketing name (Linux /proc/cpuinfo, else platform)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages (None where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def memory_gb() -> dict[str, float] | None:
    """Total and available RAM in GiB, from /proc/meminfo."""
    try:
        with open("/proc/meminfo") as f:
            info = {line.split(":")[0]: int(line.split()[1]) for line in f if ":" in line}
    except (OSError, ValueError, IndexError):
        return None
    kib = 1024 ** 2
    return {"total": round(info.get("MemTotal", 0) / kib, 1), "available": round(info.get("MemAvailable", 0) / kib, 1)}


def gpu_info() -> dict[str, Any] | None:
    """Name, memory and driver of the first CUDA device torch sees (None without one)."""
    import torch

    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    info: dict[str, Any] = {"name": props.name, "memory_gb": round(props.total_memory / 1024 ** 3, 1),
                            "count": torch.cuda.device_count(), "cuda": torch.version.cuda}
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        info["driver"] = out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.SubprocessError):
        info["driver"] = None
    return info


def describe(threads: int, device: str) -> dict[str, Any]:
    """The machine record written next to every result."""
    import numpy
    import torch

    return {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": platform.node(),
        "os": f"{platform.system()} {platform.release()}",
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": threads,
        "memory_gb": memory_gb(),
        "device": device,
        "gpu": gpu_info() if device == "cuda" else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "load_before": load_average(),
    }


def summary_line(machine: dict[str, Any]) -> str:
    """One line for a table caption."""
    gpu = machine.get("gpu")
    parts = [
        machine["date"],
        f"{machine['cpu']} ({machine['usable_cpus']} usable CPUs, torch threads {machine['torch_threads']})",
        f"device {machine['device']}" + (f" = {gpu['name']}" if gpu else ""),
        f"torch {machine['torch']}",
        f"load avg before {_fmt_load(machine.get('load_before'))}, after {_fmt_load(machine.get('load_after'))}",
    ]
    return "; ".join(parts)


def _fmt_load(load: list[float] | None) -> str:
    return "n/a" if not load else "/".join(f"{x:.2f}" for x in load)
