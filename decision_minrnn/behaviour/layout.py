"""Flat D4RL transition arrays, and the compact stream form that ships SAC's training stream in a few MB.

A stream stores each observation once: the next observation of row `t` is row `t + 1`, except at episode ends (and at
the last row), whose next observation is stored separately in `final_observations` at rows `final_indices`. That is
the form of the SAC runs' `train_stream.npz` and of the shipped `medium_replay.npz`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Mapping

import numpy as np


@dataclass
class D4RLArrays:
    """One dataset in D4RL's flat layout; episodes end at `terminals | timeouts`, a trailing one may be unfinished."""

    observations: np.ndarray  # (N, obs_dim) float32
    actions: np.ndarray  # (N, act_dim) float32
    rewards: np.ndarray  # (N,) float32
    terminals: np.ndarray  # (N,) bool: true termination
    timeouts: np.ndarray  # (N,) bool: truncation (1000-step limit, or an interrupted episode)
    next_observations: np.ndarray  # (N, obs_dim) float32

    def __len__(self) -> int:
        return len(self.rewards)

    def as_dict(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def head(self, n: int) -> "D4RLArrays":
        """The first `n` rows (views); a cut episode becomes the trailing unfinished one."""
        return D4RLArrays(**{k: v[:n] for k, v in self.as_dict().items()})

    @classmethod
    def concatenate(cls, parts: list["D4RLArrays"]) -> "D4RLArrays":
        """Rows of `parts` one after another; an unfinished last episode of a part is marked as a timeout so it
        never runs into the next part's first episode."""
        arrays = {k: np.concatenate([getattr(p, k) for p in parts]) for k in parts[0].as_dict()}
        ends = np.cumsum([len(p) for p in parts])[:-1] - 1
        arrays["timeouts"][ends] |= ~arrays["terminals"][ends]
        return cls(**arrays)

    def episode_ends(self) -> np.ndarray:
        """Index of the last row of every finished episode."""
        return np.flatnonzero(self.terminals | self.timeouts)

    def episode_returns(self) -> np.ndarray:
        """Undiscounted returns of the finished episodes (a trailing unfinished episode is left out)."""
        ends = self.episode_ends()
        if len(ends) == 0:
            return np.zeros(0)
        csum = np.cumsum(self.rewards, dtype=np.float64)[ends]
        return np.diff(csum, prepend=0.0)


def compact_stream(arrays: D4RLArrays, dtype: np.dtype | type = np.float16) -> dict[str, np.ndarray]:
    """The stream form of `arrays`: observations and actions in `dtype`, rewards float32, next observations only
    where they do not follow from the next row (episode ends and the last row)."""
    final = np.union1d(arrays.episode_ends(), [len(arrays) - 1]).astype(np.int64)
    follows = np.ones(len(arrays), bool)
    follows[final] = False
    mismatch = follows[:-1] & np.any(arrays.next_observations[:-1] != arrays.observations[1:], axis=1)
    if mismatch.any():
        raise ValueError(f"row {int(np.flatnonzero(mismatch)[0])}: next observation is not the next row's observation")
    return {
        "observations": arrays.observations.astype(dtype),
        "actions": arrays.actions.astype(dtype),
        "rewards": arrays.rewards.astype(np.float32),
        "terminals": arrays.terminals.astype(bool),
        "timeouts": arrays.timeouts.astype(bool),
        "final_indices": final,
        "final_observations": arrays.next_observations[final].astype(dtype),
    }


def expand_stream(stream: Mapping[str, np.ndarray], rows: int | None = None) -> D4RLArrays:
    """D4RL arrays (float32) from the first `rows` rows of a stream.

    A row past the end of its episode whose next observation was not stored (a stream cut mid-episode, like the SAC
    runs' `train_stream.npz`) takes the next row's observation, so `rows` must leave one row beyond the cut.
    """
    obs = np.asarray(stream["observations"], dtype=np.float32)
    total = len(obs)
    n = total if rows is None else int(rows)
    final_idx = np.asarray(stream["final_indices"], dtype=np.int64)
    if n > total or (n == total and (len(final_idx) == 0 or final_idx[-1] != total - 1)):
        raise ValueError(f"the stream has {total} rows and no stored next observation for row {n - 1}")
    nxt = np.empty((n, obs.shape[1]), np.float32)
    nxt[: n - 1] = obs[1:n]
    if n < total:
        nxt[n - 1] = obs[n]
    keep = final_idx < n
    nxt[final_idx[keep]] = np.asarray(stream["final_observations"], dtype=np.float32)[keep]
    return D4RLArrays(
        observations=obs[:n],
        actions=np.asarray(stream["actions"][:n], dtype=np.float32),
        rewards=np.asarray(stream["rewards"][:n], dtype=np.float32),
        terminals=np.asarray(stream["terminals"][:n], dtype=bool),
        timeouts=np.asarray(stream["timeouts"][:n], dtype=bool),
        next_observations=nxt,
    )
