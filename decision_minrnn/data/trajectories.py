"""The in-memory dataset every source (D4RL file, Minari, regenerated) is turned into.

Episodes are stored concatenated (one array per field) with start offsets, which keeps a 1M-transition dataset in a
few contiguous float32 arrays and makes window sampling a matter of index arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import DatasetError
from ..tasks import Task

SOURCES = ("d4rl", "minari", "regenerated")
STATE_STD_EPS = 1e-6  # added to the state std (the Decision Transformer convention)


def plain_value(value: Any) -> Any:
    """A provenance value (HDF5 attribute, metadata entry) as plain JSON-friendly Python; big arrays become None."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "SO":
            return [plain_value(v) for v in value.tolist()] if value.size <= 64 else None
        return value.tolist() if value.size <= 64 else None
    if isinstance(value, np.generic):
        return value.item()
    return value


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
    task: Task  # the resolved task (its env spec gives sizes and reference returns)
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

    def normalized_score(self, returns: Any) -> Any:
        """Normalized score x100 under this dataset's `score_label`.

        D4RL and regenerated data use the D4RL v2 references of the task's environment; Minari data uses the dataset's
        own `ref_min_score`/`ref_max_score` (kept in `provenance`), scaled x100 like D4RL so both read 0 = random,
        100 = expert, but labelled "Minari-normalized" because the references differ.
        """
        if self.score_label == "Minari-normalized":
            lo, hi = float(self.provenance["ref_min_score"]), float(self.provenance["ref_max_score"])
            r = np.asarray(returns, dtype=np.float64)
            score = 100.0 * (r - lo) / (hi - lo)
            return float(score) if score.ndim == 0 else score
        return self.task.env.normalized_score(returns)

    def validate(self) -> TrajectoryDataset:
        """Check what every source must satisfy (sizes of the task's env, float32, finite, consistent episodes).

        Raises DatasetError with one line naming `location` and the problem; returns self so readers can chain it.
        """
        env = self.task.env
        where = self.location

        def fail(problem: str) -> None:
            raise DatasetError(f"{where}: {problem}")

        n = len(self.rewards)
        if n == 0:
            fail("the dataset is empty (0 transitions)")
        if self.observations.ndim != 2 or self.observations.shape[1] != env.obs_dim:
            fail(
                f"observations have shape {self.observations.shape} but {env.name} ({env.gym_id}) has "
                f"{env.obs_dim}-dim observations; is this data for another environment?"
            )
        if self.actions.ndim != 2 or self.actions.shape[1] != env.act_dim:
            fail(
                f"actions have shape {self.actions.shape} but {env.name} ({env.gym_id}) has {env.act_dim}-dim "
                "actions; is this data for another environment?"
            )
        if self.rewards.ndim != 1 or len(self.observations) != n or len(self.actions) != n:
            fail(f"mismatched lengths: observations {len(self.observations)}, actions {len(self.actions)}, rewards {n}")
        for name in ("observations", "actions", "rewards"):
            arr = getattr(self, name)
            if arr.dtype != np.float32:
                fail(f"{name} must be float32 in memory, got {arr.dtype}")
            bad = ~np.isfinite(arr)
            if bad.any():
                row = int(np.flatnonzero(bad.reshape(n, -1).any(axis=1))[0])
                fail(f"{name} contain {int(bad.sum())} NaN/inf values or values beyond float32 (first at row {row})")
        starts = self.episode_starts
        if starts[0] != 0 or starts[-1] != n or np.any(np.diff(starts) <= 0):
            fail("episode boundaries are inconsistent (empty episode or offsets outside the data)")
        if len(self.terminated) != self.num_episodes or len(self.truncated) != self.num_episodes:
            fail("terminated/truncated flags do not match the number of episodes")
        return self

    def state_mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-dimension state mean and std (+1e-6), computed in float64, returned as float32."""
        mean = self.observations.mean(axis=0, dtype=np.float64)
        std = self.observations.std(axis=0, dtype=np.float64) + STATE_STD_EPS
        return mean.astype(np.float32), std.astype(np.float32)

    def comparability_note(self) -> str:
        """Why scores on this data can or cannot be set next to published D4RL v2 numbers."""
        if self.comparable_with_d4rl:
            return "yes (D4RL v2 data; evaluation on gymnasium v5 envs is close to, not identical with, v2)"
        if self.source == "minari":
            return f"no (Minari data; scores labelled {self.score_label})"
        if self.source == "regenerated":
            return "no (regenerated with this package's behaviour policies on v5 envs)"
        return "no"

    def statistics(self) -> dict[str, Any]:
        """Sizes, state mean/std and the episode-return distribution (raw and normalized), JSON-serialisable.

        A trailing unfinished episode (the data stops mid-episode) is trained on but left out of the return
        distribution, whose partial return would read as a bad episode; unless it is the only episode.
        """
        returns = self.episode_returns()
        partial = bool(self.provenance.get("trailing_unfinished_episode")) and self.num_episodes > 1
        if partial:
            returns = returns[:-1]
        norm = np.asarray(self.normalized_score(returns), dtype=np.float64)
        lengths = self.episode_lengths
        mean, std = self.state_mean_std()

        def dist(x: np.ndarray) -> dict[str, float]:
            return {"mean": float(x.mean()), "std": float(x.std()), "min": float(x.min()), "max": float(x.max())}

        return {
            "task": self.task.name,
            "source": self.source,
            "location": self.location,
            "episodes": self.num_episodes,
            "transitions": self.num_transitions,
            "episode_length": dist(lengths.astype(np.float64)),
            "terminated_episodes": int(self.terminated.sum()),
            "truncated_episodes": int(self.truncated.sum()),
            "state_mean": mean.tolist(),
            "state_std": std.tolist(),
            "return_raw": dist(returns),
            "returns_exclude_trailing_unfinished_episode": partial,
            "return_normalized": dist(norm),
            "score_label": self.score_label,
            "comparable_with_d4rl": self.comparable_with_d4rl,
        }

    def summary(self) -> str:
        """One line for the log: what was loaded from where, its size, its returns and whether scores compare."""
        st = self.statistics()
        raw, norm = st["return_raw"], st["return_normalized"]
        return (
            f"dataset {self.task.name}: source {self.source} ({self.location}), {st['episodes']:,} episodes, "
            f"{st['transitions']:,} transitions; episode return mean {raw['mean']:.1f} std {raw['std']:.1f} "
            f"min {raw['min']:.1f} max {raw['max']:.1f}, {self.score_label} score mean {norm['mean']:.1f} "
            f"std {norm['std']:.1f} min {norm['min']:.1f} max {norm['max']:.1f}; "
            f"comparable with published D4RL v2 scores: {self.comparability_note()}"
        )
