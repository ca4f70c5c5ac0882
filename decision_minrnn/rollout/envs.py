"""The one rollout loop: vector env factory, per-env seeds, stable-baselines3's episode quota, batched acting.

Evaluation (`evaluation.py`), dataset regeneration (`behaviour/vector.py`) and the benchmarks all act through
`rollout`. Vector envs use same-step autoreset (docs/architecture.md, Acting): when an episode ends, `step` already
returns the next episode's first observation and the final one is in `infos["final_obs"]`, so no step is wasted on a
dummy action and no reward-0 transition is seen. Episodes are counted per env against a quota fixed in advance
(env i runs (N + i) // num_envs of them, as SB3's `evaluate_policy`): taking whichever episodes finish first would
over-sample short, usually bad, episodes.
"""

from __future__ import annotations

import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol

import numpy as np


class Actor(Protocol):
    """What the loop acts with: `act(obs) -> actions` for the whole batch, then `observe(rewards, done)`."""

    def act(self, observation: np.ndarray) -> np.ndarray: ...

    def observe(self, reward: np.ndarray, done: np.ndarray) -> None: ...


class FunctionActor:
    """An `Actor` around a plain function of the observations (behaviour policies, zero actions)."""

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray]):
        self.fn = fn

    def act(self, observation: np.ndarray) -> np.ndarray:
        return self.fn(observation)

    def observe(self, reward: np.ndarray, done: np.ndarray) -> None:
        pass


class MujocoWarning(UserWarning):
    """A warning MuJoCo raised while a model compiled, passed on through Python's `warnings`."""


# Deprecations in gymnasium's own assets, not ours to fix: half_cheetah.xml sets <compiler settotalmass>, which
# recent MuJoCo deprecates (4.0.1 here), so every HalfCheetah env built printed it (110 lines per sweep cell log).
KNOWN_ASSET_WARNINGS = ("compiler attribute 'settotalmass' is deprecated",)


def route_mujoco_warning(message: str) -> None:
    """MuJoCo's warning handler while envs are built: known asset deprecations dropped, anything else a
    `MujocoWarning` (shown once per message by Python's default filter, and visible to pytest)."""
    if not message.startswith(KNOWN_ASSET_WARNINGS):
        warnings.warn(f"MuJoCo: {message}", MujocoWarning, stacklevel=2)


@contextmanager
def mujoco_build_warnings() -> Iterator[None]:
    """Route MuJoCo's warnings through `route_mujoco_warning` while envs are built, then restore the handler.

    Why: MuJoCo's default handler prints each warning and appends it to MUJOCO_LOG.TXT in the working directory,
    so building envs left a growing log file in the user's folder. Only construction is covered: warnings raised
    while stepping (unstable simulation) keep MuJoCo's own handling.
    """
    try:
        import mujoco
    except ImportError:  # a non-MuJoCo env on a machine without it
        yield
        return
    previous = mujoco.get_mju_user_warning()
    mujoco.set_mju_user_warning(route_mujoco_warning)
    try:
        yield
    finally:
        mujoco.set_mju_user_warning(previous)


def make_env(gym_id: str, **kwargs: Any) -> Any:
    """`gymnasium.make`, with MuJoCo's build warnings routed (`mujoco_build_warnings`)."""
    import gymnasium as gym

    with mujoco_build_warnings():
        return gym.make(gym_id, **kwargs)


def make_vector_env(gym_id: str, num_envs: int, max_steps: int | None = None) -> Any:
    """A synchronous vector env with same-step autoreset; `max_steps` shortens the time limit (quick checks)."""
    import gymnasium as gym

    kwargs = {} if max_steps is None else {"max_episode_steps": int(max_steps)}
    with mujoco_build_warnings():
        return gym.make_vec(gym_id, num_envs=num_envs, vectorization_mode="sync",
                            vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}, **kwargs)


def env_seeds(seed: int | np.random.SeedSequence, num_envs: int) -> list[int]:
    """Independent reset seeds, one per env, from one seed (later episodes follow each env's own generator)."""
    sequence = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(int(seed))
    return [int(s) for s in sequence.generate_state(num_envs)]


def episode_quota(episodes: int, num_envs: int) -> np.ndarray:
    """Episodes each env contributes (stable-baselines3's split): fixed in advance, summing to `episodes`."""
    return np.array([(episodes + i) // num_envs for i in range(num_envs)], dtype=np.int64)


@dataclass
class Step:
    """One vector step as the loop saw it; `next_observations` hold the final observation where an episode ended."""

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    next_observations: np.ndarray


@dataclass
class RolloutLog:
    """Finished episodes (in the order they finished, within the quota) and where the time went."""

    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    episode_env: list[int] = field(default_factory=list)
    vector_steps: int = 0
    episodes_done: int = 0  # every finished episode, also those past an env's quota
    policy_s: float = 0.0  # act + observe
    env_s: float = 0.0
    wall_s: float = 0.0


def rollout(env: Any, actor: Actor, *, seeds: list[int] | None, quota: np.ndarray | None = None,
            vector_steps: int | None = None, on_step: Callable[[Step], bool] | None = None,
            on_episode: Callable[[int], None] | None = None, final_observations: bool = False) -> RolloutLog:
    """Act in `env` until every env met its `quota` of episodes, `vector_steps` steps were taken, or `on_step`
    returns True. `seeds` None continues from the env's current episodes (the caller reset it).

    `final_observations=True` fills `Step.next_observations` (costs a copy; only collection needs it).
    `on_episode(env_index)` is called for each episode counted under the quota.
    """
    if quota is None and vector_steps is None and on_step is None:
        raise ValueError("rollout needs a quota, a number of vector steps or an on_step stop condition")
    start = time.perf_counter()
    log = RolloutLog()
    num_envs = env.num_envs
    obs = env.reset(seed=seeds)[0] if seeds is not None else None
    if obs is None:
        raise ValueError("rollout without seeds needs an env it can reset; pass seeds")
    counts = np.zeros(num_envs, dtype=np.int64)
    ep_return = np.zeros(num_envs, dtype=np.float64)
    ep_length = np.zeros(num_envs, dtype=np.int64)
    while True:
        if quota is not None and not (counts < quota).any():
            break
        if vector_steps is not None and log.vector_steps >= vector_steps:
            break
        t0 = time.perf_counter()
        actions = actor.act(obs)
        t1 = time.perf_counter()
        next_obs, rewards, terminated, truncated, infos = env.step(actions)
        t2 = time.perf_counter()
        done = np.logical_or(terminated, truncated)
        actor.observe(rewards, done)
        log.policy_s += (t1 - t0) + (time.perf_counter() - t2)
        log.env_s += t2 - t1
        log.vector_steps += 1
        ep_return += rewards
        ep_length += 1
        ended = np.flatnonzero(done)
        stop = False
        if on_step is not None:
            final = next_obs
            if final_observations:
                final = np.array(next_obs, dtype=np.float32)
                for i in ended:
                    final[i] = infos["final_obs"][i]
            stop = bool(on_step(Step(obs, actions, rewards, terminated, truncated, final)))
        for i in ended:
            log.episodes_done += 1
            if quota is None or counts[i] < quota[i]:
                log.returns.append(float(ep_return[i]))
                log.lengths.append(int(ep_length[i]))
                log.episode_env.append(int(i))
                counts[i] += 1
                if on_episode is not None:
                    on_episode(int(i))
            ep_return[i] = 0.0
            ep_length[i] = 0
        obs = next_obs
        if stop:
            break
    log.wall_s = time.perf_counter() - start
    return log


EVALUATION_STREAMS = {"final": 1, "curve": 2}
_EVALUATION_ENTROPY = 0x5EED_E7A1  # keeps evaluation seeds apart from the data's (regeneration seeds its envs from
# SeedSequence([seed, part]), so its streams and these never share a SeedSequence, and their reset seeds differ)


def evaluation_seed(run_seed: int, stream: str) -> int:
    """The evaluation seed of a run: one stream for the final evaluation, another for the learning curve.

    Derived from the run seed, so every run is scored on its own episodes (not all on one shared seed), and the
    same run seed always gives the same episodes.
    """
    if stream not in EVALUATION_STREAMS:
        raise ValueError(f"unknown evaluation stream {stream!r}; valid: {', '.join(EVALUATION_STREAMS)}")
    sequence = np.random.SeedSequence([_EVALUATION_ENTROPY, int(run_seed), EVALUATION_STREAMS[stream]])
    return int(sequence.generate_state(1, dtype=np.uint32)[0])
