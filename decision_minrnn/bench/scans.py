"""The scan alone, forward + backward: tells the recurrence's cost apart from the projections around it.

Entries (`params["entry"]`):
- `scan_log`: positive recurrence from log a, log b (what minGRU/minLSTM feed the log implementation);
- `scan`: values a in (0, 1), b of any sign (what S4D/Mamba feed it; the log implementation runs two scans);
- `gated_scan`: the minGRU recurrence from gate logits and candidates (the path the layers take), where the scan
  module has it.
`accelerated` (CUDA only, `scan` entry): `accelerated_scan.warp.scan` on the same values, where it imports.
"""

from __future__ import annotations

from typing import Any

import torch

from .. import scan as scan_module
from .workload import SkipConfig, Workload

ENTRIES = ("scan_log", "scan", "gated_scan")


def available_entries() -> tuple[str, ...]:
    return tuple(e for e in ENTRIES if hasattr(scan_module, e))


def build_scan(params: dict[str, Any], device: torch.device) -> Workload:
    torch.manual_seed(0)
    batch, length, d = int(params["batch"]), int(params["T"]), int(params["d"])
    entry, impl = params["entry"], params["impl"]
    shape = (batch, length, d)
    u = torch.randn(shape, device=device)
    v = torch.randn(shape, device=device)
    grad_out = torch.randn(shape, device=device)
    if entry == "scan_log":
        inputs = [torch.nn.functional.logsigmoid(u).requires_grad_(), (0.5 * v).requires_grad_()]
        fn = lambda: scan_module.scan_log(*inputs, impl=impl)  # noqa: E731
    elif entry == "scan":
        inputs = [torch.sigmoid(u).requires_grad_(), v.requires_grad_()]
        if impl == "accelerated":
            fn = _accelerated(inputs, device, length)
        else:
            fn = lambda: scan_module.scan(*inputs, impl=impl)  # noqa: E731
    elif entry == "gated_scan":
        if not hasattr(scan_module, "gated_scan"):
            raise SkipConfig("this version of decision_minrnn.scan has no gated_scan")
        inputs = [u.requires_grad_(), v.requires_grad_()]
        fn = lambda: scan_module.gated_scan(*inputs, impl=impl)  # noqa: E731
    else:
        raise ValueError(f"unknown scan entry {entry!r}; valid: {', '.join(ENTRIES)}")

    def call() -> None:
        for t in inputs:
            t.grad = None
        fn().backward(grad_out)

    return Workload(call, info={"elements": batch * length * d})


def _accelerated(inputs: list[torch.Tensor], device: torch.device, length: int):
    if device.type != "cuda":
        raise SkipConfig("accelerated-scan is a CUDA kernel")
    if length < 32 or length & (length - 1):
        raise SkipConfig(f"accelerated-scan needs a power-of-2 length >= 32, got T={length}")
    try:
        from accelerated_scan.warp import scan as warp_scan  # type: ignore[import-not-found]
    except Exception as e:  # noqa: BLE001
        raise SkipConfig(f"accelerated-scan is not importable here ({type(e).__name__}: {e})") from None
    a, b = inputs
    return lambda: warp_scan(a.transpose(1, 2).contiguous(), b.transpose(1, 2).contiguous()).transpose(1, 2)
