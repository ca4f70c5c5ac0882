"""Measuring inside the benchmark subprocess: wall time with device sync, adaptive repeats, peak memory.

Why adaptive repeats: a training step at T = 64 takes milliseconds and at T = 4096 seconds; a fixed count either
wastes minutes or gives one noisy sample. Every config gets `warmup` untimed calls, then as many timed calls as fit a
time budget, at least `min_repeats` and at most `repeats`, and reports the median.

Peak memory: on CPU the process's resident high-water mark (VmHWM, reset after the model and inputs are built where
Linux allows it) minus the resident size at that point, so the number is what the step itself needs; the absolute
peak RSS is kept too. On CUDA torch's max_memory_allocated, same split.
"""

from __future__ import annotations

import resource
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from .workload import SkipConfig

MB = 1024 ** 2


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so a wall-clock interval covers the kernels it launched."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _proc_status_kib(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def rss_mb() -> float:
    """Current resident set size of this process (Linux), else the high-water mark."""
    kib = _proc_status_kib("VmRSS")
    if kib is None:
        return peak_rss_mb()
    return kib / 1024


def peak_rss_mb() -> float:
    """Resident high-water mark of this process (VmHWM; getrusage where /proc is missing)."""
    kib = _proc_status_kib("VmHWM")
    if kib is None:  # ru_maxrss is KiB on Linux, bytes on macOS
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / MB if peak > 1 << 32 else peak / 1024
    return kib / 1024


def _reset_rss_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0, writing 5 to clear_refs); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class MemoryProbe:
    """Peak memory of what runs between `start()` and `stop()`."""

    def __init__(self, device: torch.device):
        self.device = device
        self.base_mb = 0.0
        self.peak_reset = False

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base_mb = torch.cuda.memory_allocated(self.device) / MB
            self.peak_reset = True
        else:
            self.peak_reset = _reset_rss_peak()
            self.base_mb = rss_mb()

    def stop(self) -> dict[str, Any]:
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device) / MB
            kind = "cuda max_memory_allocated"
        else:
            peak = peak_rss_mb()
            kind = "process RSS (VmHWM)" + ("" if self.peak_reset else ", peak not reset after setup")
        return {"peak_mb": round(peak, 1), "base_mb": round(self.base_mb, 1),
                "working_mb": round(max(peak - self.base_mb, 0.0), 1), "memory_kind": kind}


@dataclass
class Samples:
    """Timed calls of one config: wall seconds of each, and what each call returned."""

    times_s: list[float] = field(default_factory=list)
    outputs: list[Any] = field(default_factory=list)
    warmup_s: list[float] = field(default_factory=list)

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)

    def summary(self) -> dict[str, Any]:
        t = sorted(self.times_s)
        q1, q3 = (t[len(t) // 4], t[(3 * len(t)) // 4]) if len(t) >= 4 else (t[0], t[-1])
        return {"median_ms": 1e3 * self.median_s, "min_ms": 1e3 * t[0], "q1_ms": 1e3 * q1, "q3_ms": 1e3 * q3,
                "repeats": len(t), "times_ms": [round(1e3 * x, 4) for x in self.times_s],
                "warmup_ms": [round(1e3 * x, 4) for x in self.warmup_s]}


def measure(call: Callable[[], Any], device: torch.device, *, warmup: int, repeats: int, min_repeats: int,
            budget_s: float, deadline: float | None = None) -> Samples:
    """Time `call` after `warmup` untimed calls; repeat while within `budget_s` (between min and max repeats).

    `deadline` (time.time()) is the config's time cap: if `min_repeats` calls cannot finish before it, judged by
    the calls so far, the config is skipped with that estimate instead of being killed half way.
    """
    samples = Samples()
    last = 0.0

    def timed() -> tuple[float, Any]:
        sync(device)
        t0 = time.perf_counter()
        out = call()
        sync(device)
        return time.perf_counter() - t0, out

    def check_deadline(calls_left: int) -> None:
        if deadline is not None and time.time() + calls_left * last > deadline:
            raise SkipConfig(f"one call takes {last:.2f} s: {calls_left} more would pass the time cap",
                             estimate_ms=1e3 * last)

    for i in range(warmup):
        if i:
            check_deadline(warmup - i + min_repeats)
        last, _ = timed()
        samples.warmup_s.append(last)
    spent = 0.0
    while len(samples.times_s) < repeats:
        n = len(samples.times_s)
        if n >= min_repeats and spent + statistics.median(samples.times_s) > budget_s:
            break
        if n < min_repeats:
            check_deadline(min_repeats - n)
        elif deadline is not None and time.time() + last > deadline:
            break
        last, out = timed()
        spent += last
        samples.times_s.append(last)
        samples.outputs.append(out)
    return samples
