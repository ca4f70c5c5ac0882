"""The in-memory dataset every source (D4RL file, Minari, regenerated) is turned into.

Episodes are stored concatenated (one array per field) with start offsets, which keeps a 1M-transition dataset in a
few contiguous float32 arrays and makes window sampling a matter of index arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class TrajectoryDataset:
    """Concatenated episodes of one task.

    `episode_starts` has one entry per episode plus the total length, so episode `i` is rows
    `episode_starts[i]:episode_starts[i+1]`. `terminated[i]` is true when episode `i` ended in a terminal state,
    `truncated[i]` when it hit the time limit or the data simply stops (a trailing unfinished episode).
    """

    observations: np.ndarray  # (N, obs_dim) float32
    actions: np.ndarray  # (N, act_dim) float32
    rewards: np.ndarray  # (N,) float32
    episode_starts: np.ndarray  # (E + 1,) int64
    terminated: np.ndarray  # (E,) bool
    truncated: np.ndarray  # (E,) bool
    task: str  # canonical task name, e.g. "hopper-medium"
    source: str  # "d4rl" | "minari" | "regenerated"
    location: str  # file path or dataset id it was read from
    comparable_with_d4rl: bool  # may its scores be set next to published D4RL v2 numbers?
    score_label: str = "D4RL-normalized"  # Minari data: "Minari-normalized"
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def num_transitions(self) -> int:
        return int(self.episode_starts[-1])

    @property
    def num_episodes(self) -> int:
        return len(self.episode_starts) - 1

    @property
    def episode_lengths(self) -> np.ndarray:
        return np.diff(self.episode_starts)

    def episode_returns(self) -> np.ndarray:
        """Undiscounted return of every episode."""
        sums = np.add.reduceat(self.rewards.astype(np.float64), self.episode_starts[:-1]) if self.num_episodes else []
        return np.asarray(sums, dtype=np.float64)
