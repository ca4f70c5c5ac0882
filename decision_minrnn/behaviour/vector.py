"""Collecting D4RL-layout transitions and measuring behaviour-policy returns, through the one rollout loop.

Each env keeps its episode in a small buffer until it ends (the loop runs with same-step autoreset, so the final
observation of an episode is real and no reward-0 transition is recorded); finished episodes are appended in the order
they finish, so the output is D4RL's layout: contiguous episodes, only the last one cut.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..rollout.envs import (
    FunctionActor,
    Step,
    env_seeds,
    episode_quota,
    make_vector_env,
    rollout,
)
from .layout import D4RLArrays

Policy = Callable[[np.ndarray], np.ndarray]  # (num_envs, obs_dim) float32 -> (num_envs, act_dim) in [-1, 1]


def _float32_actor(policy: Policy) -> FunctionActor:
    return FunctionActor(lambda obs: np.asarray(policy(np.asarray(obs, dtype=np.float32)), dtype=np.float32))


def collect_transitions(
    gym_id: str,
    policy: Policy,
    transitions: int,
    *,
    seed_sequence: np.random.SeedSequence,
    num_envs: int = 16,
    max_episode_steps: int = 1000,
    progress: bool = True,
    desc: str = "collecting",
) -> D4RLArrays:
    """Exactly `transitions` rows of whole episodes in the order they finish; the last episode is cut to fit.

    terminals = true termination, timeouts = time-limit truncation (a step that is both counts as terminal);
    `next_observations` at episode ends are the final observations. Episodes still running when the quota is full
    are dropped (at most `num_envs - 1` of them), which keeps every row but the last inside a finished episode.
    """
    from tqdm import tqdm

    if transitions <= 0:
        raise ValueError("transitions must be positive")
    env = make_vector_env(gym_id, num_envs)
    obs_dim, act_dim = env.single_observation_space.shape[0], env.single_action_space.shape[0]
    out = D4RLArrays(
        observations=np.empty((transitions, obs_dim), np.float32),
        actions=np.empty((transitions, act_dim), np.float32),
        rewards=np.empty(transitions, np.float32),
        terminals=np.zeros(transitions, bool),
        timeouts=np.zeros(transitions, bool),
        next_observations=np.empty((transitions, obs_dim), np.float32),
    )
    # Per-env episode buffers, written for all envs at once with fancy indexing.
    buf_obs = np.empty((num_envs, max_episode_steps, obs_dim), np.float32)
    buf_next = np.empty_like(buf_obs)
    buf_act = np.empty((num_envs, max_episode_steps, act_dim), np.float32)
    buf_rew = np.empty((num_envs, max_episode_steps), np.float32)
    length = np.zeros(num_envs, np.int64)
    rows = np.arange(num_envs)
    filled = 0
    bar = tqdm(total=transitions, desc=desc, unit="tr", disable=not progress, file=sys.stderr, mininterval=2.0)

    def record(step: Step) -> bool:
        nonlocal filled
        if np.any(length >= max_episode_steps):
            raise RuntimeError(f"{gym_id}: an episode ran past {max_episode_steps} steps without a time limit")
        buf_obs[rows, length] = step.observations
        buf_act[rows, length] = step.actions
        buf_next[rows, length] = step.next_observations
        buf_rew[rows, length] = step.rewards
        length[:] += 1
        for i in np.flatnonzero(step.terminated | step.truncated):
            n = int(length[i])
            k = min(n, transitions - filled)
            sl = slice(filled, filled + k)
            out.observations[sl] = buf_obs[i, :k]
            out.actions[sl] = buf_act[i, :k]
            out.rewards[sl] = buf_rew[i, :k]
            out.next_observations[sl] = buf_next[i, :k]
            if k == n:  # a whole episode; otherwise it is the cut, unfinished last one
                out.terminals[filled + k - 1] = step.terminated[i]
                out.timeouts[filled + k - 1] = step.truncated[i] and not step.terminated[i]
            filled += k
            length[i] = 0
            bar.update(k)
            if filled == transitions:
                return True
        return False

    try:
        rollout(env, _float32_actor(policy), seeds=env_seeds(seed_sequence, num_envs), on_step=record,
                final_observations=True)
    finally:
        bar.close()
        env.close()
    return out


@dataclass
class ReturnStats:
    """Undiscounted episode returns of a policy."""

    returns: np.ndarray
    lengths: np.ndarray

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        return float(np.std(self.returns))


def measure_returns(
    gym_id: str,
    policy: Policy,
    episodes: int,
    *,
    seed_sequence: np.random.SeedSequence,
    num_envs: int = 10,
) -> ReturnStats:
    """Returns of `episodes` full episodes, split evenly over the envs like SB3's `evaluate_policy`.

    Each env runs its own fixed number of episodes, so short episodes are not over-represented the way "the first
    N episodes to finish" would be.
    """
    num_envs = max(1, min(num_envs, episodes))
    env = make_vector_env(gym_id, num_envs)
    try:
        log = rollout(env, _float32_actor(policy), seeds=env_seeds(seed_sequence, num_envs),
                      quota=episode_quota(episodes, num_envs))
    finally:
        env.close()
    return ReturnStats(np.asarray(log.returns), np.asarray(log.lengths))
