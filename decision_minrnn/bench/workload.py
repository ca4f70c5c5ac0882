"""What one benchmark config runs: a `Workload` (the timed call), built by name from a JSON spec.

Builders live in one module per suite and are imported lazily, so a training-step subprocess never imports
gymnasium or MuJoCo, and an environment benchmark never pays for what it does not use.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import torch

if TYPE_CHECKING:
    from .timing import Samples

# workload name -> "module:function"; each function is `build(params: dict, device: torch.device) -> Workload`
BUILDERS = {
    "layer": "decision_minrnn.bench.layers:build_layer",
    "model": "decision_minrnn.bench.model_step:build_model_step",
    "scan": "decision_minrnn.bench.scans:build_scan",
    "act": "decision_minrnn.bench.acting:build_act",
    "eval": "decision_minrnn.bench.env_loop:build_env_loop",
}


class SkipConfig(Exception):
    """A config that cannot run here (a missing optional library, a length a kernel does not support, a step too
    slow for the time cap); `extra` is recorded with the skip (e.g. the one timing that was taken)."""

    def __init__(self, reason: str, **extra: Any):
        super().__init__(reason)
        self.extra = extra


@dataclass
class Workload:
    """`call()` is one timed unit (a training step, an episode of actions, a rollout of N environment steps).

    `summarise(samples)` turns what the calls returned into extra metrics; `info` is recorded as is.
    """

    call: Callable[[], Any]
    summarise: Callable[["Samples"], dict[str, Any]] | None = None
    info: dict[str, Any] = field(default_factory=dict)


def build(name: str, params: dict[str, Any], device: torch.device) -> Workload:
    if name not in BUILDERS:
        raise ValueError(f"unknown workload {name!r}; valid: {', '.join(BUILDERS)}")
    module, func = BUILDERS[name].split(":")
    return getattr(importlib.import_module(module), func)(params, device)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
