"""Training batches cut from a TrajectoryDataset: DT windows, whole episodes from t = 0, or windows with a burn-in.

Everything per row (normalised state, return-to-go, step index) is computed once for the whole dataset, so a batch is
a single fancy-indexing gather. Windows are RIGHT-padded (valid tokens first, zeros after; docs/architecture.md, The law): in a causal
model trailing padding cannot change earlier outputs, so recurrent backbones need no padding mask in their scans.

Modes (`context`):
- `window` (Decision Transformer): an episode drawn with probability proportional to its length, a start drawn
  uniformly within it, `context_len` steps; a window running past the episode's end is padded.
- `episode`: the first `context_len` steps of an episode, from t = 0 (context_len = 1000 gives whole episodes), so a
  recurrent policy trains on exactly what it sees when it acts for a whole episode from a fresh state. Episodes are
  drawn with probability proportional to min(length, context_len), the number of steps a draw can train on, so every
  trainable step is equally likely to be seen.
- `burn_in`: like `window`, with up to `burn_in` earlier steps prepended (fewer near t = 0) whose tokens warm up the
  recurrent state but carry no loss (`loss_mask` False). Sequence length context_len + burn_in.

Too-short data: in `window`/`burn_in` mode a window longer than every episode could never be filled (every sample
would be mostly padding: the user almost certainly meant `episode` mode or a shorter context), so that fails with a
DatasetError. In `episode` mode a context longer than the episodes is the point (whole episodes), so it is allowed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import DatasetError, UserInputError
from .trajectories import TrajectoryDataset

CONTEXTS = ("window", "episode", "burn_in")
_STATE_VERSION = 1


def returns_to_go(rewards: np.ndarray, episode_starts: np.ndarray) -> np.ndarray:
    """Undiscounted suffix sum of rewards from each row to the end of its episode (float64), vectorised."""
    r = np.asarray(rewards, dtype=np.float64)
    total = np.cumsum(r)
    lengths = np.diff(episode_starts)
    last_row = np.repeat(episode_starts[1:] - 1, lengths)
    return total[last_row] - total + r


class WindowSampler:
    """Draws training batches; the same seed gives the same batches, and `state_dict` resumes the stream exactly.

    `sample()` returns float32 `states` (B, L, obs) normalised as (s - mean) / std, float32 `actions` (B, L, act),
    float32 `prev_actions` (B, L, act) (a_{t-1}, zero at t = 0, for the fused token layout),
    float32 `returns_to_go` (B, L) divided by `return_scale`, int64 `timesteps` (B, L) (step within the episode),
    bool `mask` (B, L) for valid tokens and bool `loss_mask` (B, L) for valid tokens outside the burn-in. Padding is
    zero in every array. L = context_len (+ burn_in in `burn_in` mode).
    """

    def __init__(
        self,
        dataset: TrajectoryDataset,
        *,
        context_len: int,
        batch_size: int,
        context: str = "window",
        burn_in: int = 0,
        seed: int = 0,
        state_mean: np.ndarray | None = None,
        state_std: np.ndarray | None = None,
        return_scale: float | None = None,
    ) -> None:
        if context not in CONTEXTS:
            raise UserInputError(f"unknown training context {context!r}; valid: {', '.join(CONTEXTS)}")
        if int(context_len) < 1 or int(batch_size) < 1:
            raise UserInputError(f"context_len and batch_size must be >= 1, got {context_len} and {batch_size}")
        if context == "burn_in" and int(burn_in) < 1:
            raise UserInputError(f"context 'burn_in' needs burn_in >= 1, got {burn_in}")
        if context != "burn_in" and int(burn_in) != 0:
            raise UserInputError(f"burn_in={burn_in} only applies to context 'burn_in' (context is {context!r})")
        lengths = dataset.episode_lengths.astype(np.int64)
        if len(lengths) == 0:
            raise DatasetError(f"{dataset.location}: the dataset has no episodes")
        if context != "episode" and lengths.max() < context_len:
            raise DatasetError(
                f"{dataset.location}: every episode is shorter than the window (longest {int(lengths.max())} steps < "
                f"context_len {context_len}); use a shorter context_len, or context 'episode' for whole episodes"
            )

        self.context, self.context_len, self.burn_in = context, int(context_len), int(burn_in)
        self.batch_size, self.seed = int(batch_size), int(seed)
        self.seq_len = self.context_len + self.burn_in
        self.return_scale = float(return_scale or dataset.task.env.return_scale)
        if state_mean is None or state_std is None:
            mean, std = dataset.state_mean_std()
            state_mean = mean if state_mean is None else state_mean
            state_std = std if state_std is None else state_std
        self.state_mean = np.asarray(state_mean, dtype=np.float32)
        self.state_std = np.asarray(state_std, dtype=np.float32)
        obs_dim = dataset.observations.shape[1]
        if self.state_mean.shape != (obs_dim,) or self.state_std.shape != (obs_dim,) or np.any(self.state_std <= 0):
            raise UserInputError(f"state_mean/state_std must have shape ({obs_dim},) with std > 0")

        self._states = (dataset.observations - self.state_mean) / self.state_std
        self._actions = dataset.actions
        self._rtg = (returns_to_go(dataset.rewards, dataset.episode_starts) / self.return_scale).astype(np.float32)
        self._ep_first = dataset.episode_starts[:-1].astype(np.int64)
        self._ep_len = lengths
        weights = np.minimum(lengths, self.context_len) if context == "episode" else lengths
        self._cum_weights = np.cumsum(weights)
        self._positions = np.arange(self.seq_len, dtype=np.int64)
        self._rng = np.random.Generator(np.random.PCG64(self.seed))

    def _draw(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Episode, first step and burn-in length of each batch row."""
        rng, b = self._rng, self.batch_size
        episode = np.searchsorted(self._cum_weights, rng.integers(0, self._cum_weights[-1], size=b), side="right")
        length = self._ep_len[episode]
        if self.context == "episode":
            zero = np.zeros(b, dtype=np.int64)
            return episode, zero, zero
        start = rng.integers(0, length)  # uniform in [0, length - 1]
        prefix = np.minimum(start, self.burn_in)
        return episode, start - prefix, prefix

    def sample(self) -> dict[str, np.ndarray]:
        """One batch (see the class docstring for keys, shapes and padding)."""
        episode, first, prefix = self._draw()
        n_valid = np.minimum(self._ep_len[episode] - first, prefix + self.context_len)
        pos = self._positions[None, :]
        mask = pos < n_valid[:, None]
        steps = first[:, None] + pos
        rows = np.where(mask, self._ep_first[episode][:, None] + steps, 0)
        states = self._states[rows]
        actions = self._actions[rows]
        rtg = self._rtg[rows]
        # a_{t-1} for the fused token layout: the previous row's action, zero at t = 0 (as when acting).
        prev_actions = self._actions[np.maximum(rows - 1, 0)]
        pad = ~mask
        states[pad] = 0.0
        actions[pad] = 0.0
        rtg[pad] = 0.0
        prev_actions[pad | (steps == 0)] = 0.0
        return {
            "states": states,
            "actions": actions,
            "prev_actions": prev_actions,
            "returns_to_go": rtg,
            "timesteps": np.where(mask, steps, 0),
            "mask": mask,
            "loss_mask": mask & (pos >= prefix[:, None]),
        }

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable sampler state (settings and the RNG position) for checkpoints."""
        return {
            "version": _STATE_VERSION,
            "context": self.context,
            "context_len": self.context_len,
            "burn_in": self.burn_in,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "rng": self._rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the batch stream of a saved sampler; its settings must match this one's."""
        for key in ("context", "context_len", "burn_in", "batch_size"):
            if state.get(key) != getattr(self, key):
                raise UserInputError(
                    f"sampler state is for {key}={state.get(key)!r}, this run has {key}={getattr(self, key)!r}"
                )
        self._rng.bit_generator.state = state["rng"]
