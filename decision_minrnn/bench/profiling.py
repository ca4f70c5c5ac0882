"""`--profile`: one config under torch.profiler, its top operators printed, to explain where the time goes when a
target is missed (e.g. `benchmark_agent --suite train --only 'minGRU \\(scan cpu\\)' --x 512 --profile`)."""

from __future__ import annotations

import time
from typing import Any

import torch

from .runner import _threads
from .timing import sync
from .workload import build


def profile_spec(spec: dict[str, Any], *, calls: int = 3, row_limit: int = 25) -> str:
    """Run `spec` in this process: one warm-up call, then `calls` profiled calls; the operator table as text."""
    from torch.profiler import ProfilerActivity, profile

    _threads(int(spec["threads"]))
    device = torch.device(spec["device"])
    workload = build(spec["workload"], spec["params"], device)
    workload.call()
    sync(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    start = time.perf_counter()
    with profile(activities=activities) as prof:
        for _ in range(calls):
            workload.call()
        sync(device)
    wall_ms = 1e3 * (time.perf_counter() - start) / calls
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    head = (f"profile of {spec['part']} / {spec['group'] or '-'} / {spec['row']} x={spec['x']} on {device}, "
            f"torch threads {spec['threads']}: {wall_ms:.2f} ms per call under the profiler ({calls} calls), "
            f"sorted by {sort}")
    return head + "\n" + prof.key_averages().table(sort_by=sort, row_limit=row_limit)
