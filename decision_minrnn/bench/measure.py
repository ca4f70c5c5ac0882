"""Measuring inside a config's process: wall time with device sync, adaptive repeats, peak memory.

Adaptive repeats, because a training step takes milliseconds at T = 64 and seconds at T = 4096: after `warmup`
untimed calls, as many timed calls as fit the budget (between `min_repeats` and `repeats`); the median is reported.
Calls that could not finish before the time cap, judged from those so far, skip the config with that estimate.
Peak memory on CPU: the high-water mark (VmHWM, reset after setup) minus the anonymous resident size after setup and
the file-backed pages (library code the calls fault in); on CUDA max_memory_allocated minus the allocation after setup.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from .machine import proc_status_mb


class SkipConfig(Exception):
    """A config that cannot run here (a missing optional library, an unsupported length, calls too slow for the time
    cap); `extra` is recorded with the skip."""

    def __init__(self, reason: str, **extra: Any):
        super().__init__(reason)
        self.extra = extra


@dataclass
class Workload:
    """`call()` is the timed unit (a training step, an episode of actions, N environment steps); `summarise(outputs)`
    turns what the timed calls returned into metrics; `info` is recorded as is."""

    call: Callable[[], Any]
    summarise: Callable[[list[Any]], dict[str, Any]] | None = None
    info: dict[str, Any] = field(default_factory=dict)


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so that a wall-clock interval covers the kernels it launched."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class MemoryProbe:
    """Peak memory of what runs between construction and `stop()` (see the module docstring)."""

    def __init__(self, device: torch.device):
        self.device = device
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            self.base = torch.cuda.memory_allocated(device) / 1024 ** 2
            return
        try:  # Linux: resets VmHWM to the current resident size
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass
        self.base = proc_status_mb("RssAnon") or 0.0

    def stop(self) -> dict[str, Any]:
        if self.device.type == "cuda":
            peak, files = torch.cuda.max_memory_allocated(self.device) / 1024 ** 2, 0.0
        else:
            peak = proc_status_mb("VmHWM") or 0.0
            files = (proc_status_mb("RssFile") or 0.0) + (proc_status_mb("RssShmem") or 0.0)
        return {"peak_mb": round(peak, 1), "base_mb": round(self.base, 1),
                "working_mb": round(max(peak - files - self.base, 0.0), 1)}


def measure(call: Callable[[], Any], device: torch.device, *, warmup: int, repeats: int, min_repeats: int,
            budget_s: float, deadline: float) -> tuple[list[float], list[Any], list[float]]:
    """Seconds of each timed call, what each returned, and the warm-up seconds; SkipConfig when the calls still
    needed would pass `deadline` (a `time.time()`: the config's time cap)."""
    times: list[float] = []
    outputs: list[Any] = []
    warm: list[float] = []

    def timed() -> Any:
        sync(device)
        t0 = time.perf_counter()
        out = call()
        sync(device)
        (times if len(warm) == warmup else warm).append(time.perf_counter() - t0)
        return out

    def check(calls: int) -> None:
        last = (times or warm or [0.0])[-1]
        if time.time() + calls * last > deadline:
            raise SkipConfig(f"one call takes {last:.2f} s: {calls} more would pass the time cap",
                             estimate_ms=1e3 * last)

    for i in range(warmup):
        check(warmup - i + min_repeats)
        timed()
    while len(times) < repeats:
        if len(times) >= min_repeats and (sum(times) + statistics.median(times) > budget_s
                                          or time.time() + times[-1] > deadline):
            break
        check(max(min_repeats - len(times), 0))
        outputs.append(timed())
    return times, outputs, warm


def summary(times: list[float], warm: list[float]) -> dict[str, Any]:
    """Median, spread and every sample, in milliseconds."""
    t = sorted(times)
    q1, q3 = (t[len(t) // 4], t[(3 * len(t)) // 4]) if len(t) >= 4 else (t[0], t[-1])
    return {"median_ms": 1e3 * statistics.median(t), "min_ms": 1e3 * t[0], "q1_ms": 1e3 * q1, "q3_ms": 1e3 * q3,
            "repeats": len(t), "times_ms": [round(1e3 * x, 4) for x in times],
            "warmup_ms": [round(1e3 * x, 4) for x in warm]}
