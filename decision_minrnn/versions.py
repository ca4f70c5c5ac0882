"""Versions of the package and of what it runs on, recorded with every run and every evaluation."""

from __future__ import annotations

import contextlib
import platform


def versions() -> dict[str, str]:
    """Python, torch, numpy and, where installed, gymnasium, mujoco, minari, stable-baselines3 and h5py."""
    import numpy as np
    import torch

    from . import __version__

    out = {"decision_minrnn": __version__, "python": platform.python_version(), "torch": torch.__version__,
           "numpy": np.__version__}
    for name in ("gymnasium", "mujoco", "minari", "stable_baselines3", "h5py"):
        with contextlib.suppress(Exception):
            out[name] = __import__(name).__version__
    return out
