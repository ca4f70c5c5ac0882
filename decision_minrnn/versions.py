"""Versions of the package and of what it runs on, recorded with every run and every evaluation."""

from __future__ import annotations

import contextlib
import platform


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo; the platform's processor string elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def versions() -> dict[str, str]:
    """Python, torch, numpy and, where installed, gymnasium, mujoco, minari, stable-baselines3 and h5py; and the CPU
    model, since regenerated datasets and float results can differ in the last bits between CPUs."""
    import numpy as np
    import torch

    from . import __version__

    out = {"decision_minrnn": __version__, "python": platform.python_version(), "torch": torch.__version__,
           "numpy": np.__version__, "cpu": cpu_model()}
    for name in ("gymnasium", "mujoco", "minari", "stable_baselines3", "h5py"):
        with contextlib.suppress(Exception):
            out[name] = __import__(name).__version__
    return out
