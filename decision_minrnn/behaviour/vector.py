"""Acting through a gymnasium vector env: collecting D4RL-layout transitions and measuring policy returns.

Vector envs are created with same-step autoreset (design.md 2): when an episode ends, `step` already returns the next
episode's first observation and puts the final one in `infos["final_obs"]`, so no step is wasted on a dummy action and
no reward-0 transition is recorded. Each env keeps its episode in a small buffer until it ends; finished episodes are
appended in the order they finish, so the output is D4RL's layout: contiguous episodes, only the last one cut.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .layout import D4RLArrays

Policy = Callable[[np.ndarray], np.ndarray]  # (num_envs, obs_dim) float32 -> (num_envs, act_dim) in [-1, 1]


def make_vector_env(gym_id: str, num_envs: int):
    """A synchronous vector env with same-step autoreset (one process: the policy batches over the envs)."""
    import gymnasium as gym

    return gym.make_vec(
        gym_id,
        num_envs=num_envs,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
    )


def env_seeds(seed_sequence: np.random.SeedSequence, num_envs: int) -> list[int]:
    """Independent reset seeds for each env; later episodes follow from each env's own seeded generator."""
    return [int(s) for s in seed_sequence.generate_state(num_envs)]


def _step(env, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One vector step: (obs to act on, next obs with final observations in place, reward, terminated, truncated)."""
    obs, rewards, terminated, truncated, infos = env.step(actions)
    next_obs = np.array(obs, dtype=np.float32)
    ended = np.flatnonzero(terminated | truncated)
    for i in ended:
        next_obs[i] = infos["final_obs"][i]
    return obs, next_obs, rewards, terminated, truncated


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
    obs, _ = env.reset(seed=env_seeds(seed_sequence, num_envs))
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
    try:
        while filled < transitions:
            obs32 = np.asarray(obs, dtype=np.float32)
            actions = np.asarray(policy(obs32), dtype=np.float32)
            if np.any(length >= max_episode_steps):
                raise RuntimeError(f"{gym_id}: an episode ran past {max_episode_steps} steps without a time limit")
            buf_obs[rows, length] = obs32
            buf_act[rows, length] = actions
            obs, next_obs, rewards, terminated, truncated = _step(env, actions)
            buf_next[rows, length] = next_obs
            buf_rew[rows, length] = rewards
            length += 1
            for i in np.flatnonzero(terminated | truncated):
                n = int(length[i])
                k = min(n, transitions - filled)
                sl = slice(filled, filled + k)
                out.observations[sl] = buf_obs[i, :k]
                out.actions[sl] = buf_act[i, :k]
                out.rewards[sl] = buf_rew[i, :k]
                out.next_observations[sl] = buf_next[i, :k]
                if k == n:  # a whole episode; otherwise it is the cut, unfinished last one
                    out.terminals[filled + k - 1] = terminated[i]
                    out.timeouts[filled + k - 1] = truncated[i] and not terminated[i]
                filled += k
                length[i] = 0
                bar.update(k)
                if filled == transitions:
                    break
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
    quota = np.array([(episodes + i) // num_envs for i in range(num_envs)])
    env = make_vector_env(gym_id, num_envs)
    obs, _ = env.reset(seed=env_seeds(seed_sequence, num_envs))
    ret = np.zeros(num_envs)
    steps = np.zeros(num_envs, np.int64)
    done_count = np.zeros(num_envs, np.int64)
    returns: list[float] = []
    lengths: list[int] = []
    try:
        while np.any(done_count < quota):
            obs, _, rewards, terminated, truncated = _step(env, policy(np.asarray(obs, dtype=np.float32)))
            ret += rewards
            steps += 1
            for i in np.flatnonzero(terminated | truncated):
                if done_count[i] < quota[i]:
                    returns.append(float(ret[i]))
                    lengths.append(int(steps[i]))
                    done_count[i] += 1
                ret[i], steps[i] = 0.0, 0
    finally:
        env.close()
    return ReturnStats(np.asarray(returns), np.asarray(lengths))

