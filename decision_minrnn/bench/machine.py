"""What a number was measured on, and how busy the machine was: every result file carries this record, because on
a shared 2-core box another process can halve a result."""

from __future__ import annotations

import datetime
import os
import platform
import resource
import time
from typing import Any

from ..versions import cpu_model

BUSY_OTHER_CPUS = 0.25  # a config during which other processes used more CPUs than this is flagged


def proc_status_mb(field: str, pid: int | str = "self") -> float | None:
    """A size of /proc/<pid>/status (VmRSS, VmHWM, RssAnon, ...) in MB; None without /proc."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((int(line.split()[1]) / 1024 for line in f if line.startswith(field + ":")), None)
    except (OSError, ValueError, IndexError):
        return None


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def cpu_busy_seconds() -> float | None:
    """CPU seconds all processes spent busy since boot (/proc/stat). Over a config, minus the config's own CPU time,
    this is what others took meanwhile: unlike the load average, it leaves the benchmark itself out."""
    try:
        with open("/proc/stat") as f:
            user, nice, system, _, _, irq, softirq, steal = (int(x) for x in f.readline().split()[1:9])
    except (OSError, ValueError):
        return None
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def other_cpus(busy0: float | None, own_s: float, wall_s: float) -> float | None:
    """CPUs other processes used since `busy0 = cpu_busy_seconds()`, given the CPU seconds we used (`own_s`)."""
    busy1 = cpu_busy_seconds()
    if busy0 is None or busy1 is None:
        return None
    return round(max(0.0, busy1 - busy0 - own_s) / max(wall_s, 1e-9), 3)


def other_cpus_now(seconds: float = 1.0) -> float | None:
    """CPUs other processes use over the next `seconds` (this process sleeps meanwhile)."""
    busy0, own0 = cpu_busy_seconds(), own_cpu_seconds()
    time.sleep(seconds)
    return other_cpus(busy0, own_cpu_seconds() - own0, seconds)


def busy_warning(others: float | None, threads: int) -> str | None:
    if others is None or others <= BUSY_OTHER_CPUS:
        return None
    return (f"WARNING: other processes used {others:.2f} CPUs just before the run, so timings will be inflated (with "
            f"{threads} torch thread(s) on a busy core, OpenMP waits can make a step 10-40x slower). Run when the "
            "machine is quiet; each config records `other_cpus`, the CPUs other processes used while it ran.")


def memory_gb() -> dict[str, float]:
    """Total and available RAM in GiB (/proc/meminfo; empty without it)."""
    try:
        with open("/proc/meminfo") as f:
            info = {line.split(":")[0]: int(line.split()[1]) for line in f}
        return {"total": round(info["MemTotal"] / 1024 ** 2, 1),
                "available": round(info["MemAvailable"] / 1024 ** 2, 1)}
    except (OSError, ValueError, IndexError, KeyError):
        return {}


def describe(threads: int, device: str) -> dict[str, Any]:
    """The machine record written next to every result (the run adds its load before and after)."""
    import numpy
    import torch

    cpu = cpu_model()
    gpu = None
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        gpu = {"name": props.name, "memory_gb": round(props.total_memory / 1024 ** 3, 1), "cuda": torch.version.cuda}
    return {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "host": platform.node(),
            "os": f"{platform.system()} {platform.release()}", "cpu": cpu, "logical_cpus": os.cpu_count(),
            "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "torch_threads": threads, "memory_gb": memory_gb(), "device": device, "gpu": gpu,
            "python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__}


def summary_line(m: dict[str, Any]) -> str:
    """The machine in one line, for table and plot captions."""
    def load(v: list[float] | None) -> str:
        return "/".join(f"{x:.2f}" for x in v) if v else "n/a"

    line = (f"{m['date']}; {m['cpu']} ({m['usable_cpus']} usable CPUs, torch threads {m['torch_threads']}); device "
            f"{m['device']}{' (' + m['gpu']['name'] + ')' if m.get('gpu') else ''}; torch {m['torch']}; load avg "
            f"before {load(m.get('load_before'))}, after {load(m.get('load_after'))}")
    if m.get("other_cpus_before") is not None:
        line += f"; other processes used {m['other_cpus_before']:.2f} CPUs just before the run"
    return line
