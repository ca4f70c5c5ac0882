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


def cpu_busy_seconds() -> float | None:
    """CPU seconds all processes have spent busy since boot (/proc/stat: user, nice, system, irq, softirq, steal).

    The difference over a config, minus the config's own CPU time, is what other processes took meanwhile: a
    direct measure of interference, unlike the load average, which also counts the benchmark itself.
    """
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = [int(x) for x in fields[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


BUSY_OTHER_CPUS = 0.25  # a config during which other processes used more CPUs than this is flagged


def other_cpus_now(seconds: float = 1.0) -> float | None:
    """CPUs used by other processes over the next `seconds` (this process sleeps meanwhile; its children are done).

    Unlike the load average, this excludes the benchmark's own earlier configs.
    """
    import resource
    import time

    def own() -> float:
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime

    busy0, own0, t0 = cpu_busy_seconds(), own(), time.perf_counter()
    time.sleep(seconds)
    busy1, own1, wall = cpu_busy_seconds(), own(), time.perf_counter() - t0
    if busy0 is None or busy1 is None:
        return None
    return round(max(0.0, (busy1 - busy0) - (own1 - own0)) / wall, 2)


def busy_warning(other_cpus: float | None, threads: int) -> str | None:
    """A warning when other processes were using the CPU just before the run."""
    if other_cpus is None or other_cpus <= BUSY_OTHER_CPUS:
        return None
    return (f"WARNING: other processes used {other_cpus:.2f} CPUs just before the run, so timings will be inflated "
            f"(with {threads} torch thread(s) on a busy core, OpenMP waits can make a step 10-40x slower). Run when "
            f"the machine is quiet; each config records `other_cpus`, the CPUs other processes used while it ran.")


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
        "gpu": gpu_info(),
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
        f"device {machine['device']}" + (f" ({gpu['name']} present)" if gpu else ""),
        f"torch {machine['torch']}",
        f"load avg before {_fmt_load(machine.get('load_before'))}, after {_fmt_load(machine.get('load_after'))}",
    ]
    if machine.get("other_cpus_before") is not None:
        parts.append(f"other processes used {machine['other_cpus_before']:.2f} CPUs just before the run")
    return "; ".join(parts)


def _fmt_load(load: list[float] | None) -> str:
    return "n/a" if not load else "/".join(f"{x:.2f}" for x in load)
