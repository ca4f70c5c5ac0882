"""Builders shared by the data tests: synthetic episodes in D4RL's array layout, written with the package's writer.

Observation column 0 holds the global row index, so a test can tell which row any sampled token came from.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from decision_minrnn.data import TrajectoryDataset, write_d4rl_hdf5
from decision_minrnn.tasks import resolve_task


def episode_arrays(task: str, lengths: list[int], ends: list[str], *, seed: int = 0, dtype=np.float64) -> dict:
    """D4RL-style arrays for episodes of `lengths`; `ends[i]` is "terminal", "timeout" or "none" (data stops)."""
    env = resolve_task(task).env
    rng = np.random.default_rng(seed)
    n = sum(lengths)
    obs = rng.normal(size=(n, env.obs_dim)).astype(dtype)
    obs[:, 0] = np.arange(n)
    terminals = np.zeros(n, dtype=bool)
    timeouts = np.zeros(n, dtype=bool)
    row = 0
    for length, end in zip(lengths, ends, strict=True):
        row += length
        if end == "terminal":
            terminals[row - 1] = True
        elif end == "timeout":
            timeouts[row - 1] = True
    return {
        "observations": obs,
        "actions": rng.uniform(-1, 1, size=(n, env.act_dim)).astype(dtype),
        "rewards": rng.normal(1.0, 2.0, size=n).astype(dtype),
        "terminals": terminals,
        "timeouts": timeouts,
    }


def write_file(path: Path, arrays: dict, **kwargs) -> Path:
    """Write `arrays` (as from `episode_arrays`) in the D4RL layout; kwargs go to write_d4rl_hdf5."""
    write_d4rl_hdf5(path, **arrays, **kwargs)
    return path


def in_memory_dataset(task: str, lengths: list[int], *, seed: int = 0) -> TrajectoryDataset:
    """A TrajectoryDataset built directly (no file), episodes ending by timeout."""
    a = episode_arrays(task, lengths, ["timeout"] * len(lengths), seed=seed, dtype=np.float32)
    return TrajectoryDataset(
        observations=a["observations"],
        actions=a["actions"],
        rewards=a["rewards"],
        episode_starts=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        terminated=np.zeros(len(lengths), dtype=bool),
        truncated=np.ones(len(lengths), dtype=bool),
        task=resolve_task(task),
        source="d4rl",
        location="<memory>",
        comparable_with_d4rl=True,
    ).validate()
