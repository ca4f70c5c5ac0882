"""The act / observe loop every policy shares, and the autoreset check that refuses envs a policy cannot act in.

Imports no torch (and no numpy-heavy code), so the torch `Policy` and the torch-free ONNX runner
(`export/onnx_policy.py`) share it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

AUTORESET_MODES = ("same-step", "disabled")  # what a caller may declare with `Policy.reset(autoreset=...)`


def check_autoreset_mode(env: Any) -> None:
    """Refuse a gymnasium vector env that autoresets on the NEXT step (gymnasium >= 1.0's default).

    In NEXT_STEP mode the step after `done` ignores the action and returns the reset observation with reward 0, so a
    policy that treats every step as a real transition would act once on a dead episode. SAME_STEP (the reset
    observation comes with the final step, as stable-baselines3 does) and DISABLED are fine.
    """
    try:
        import gymnasium as gym
    except ImportError:  # no gymnasium, so no gymnasium vector env
        return
    if not isinstance(getattr(env, "unwrapped", env), gym.vector.VectorEnv):
        return  # a single gymnasium env or an SB3 VecEnv (which resets in the same step)
    mode = (getattr(env, "metadata", None) or {}).get("autoreset_mode")
    if mode is None:
        raise ValueError(f"vector env {env} has no metadata['autoreset_mode']; create it with autoreset_mode "
                         "SAME_STEP or DISABLED so that the policy can tell how episodes restart")
    value = mode.value if isinstance(mode, gym.vector.AutoresetMode) else str(mode)
    if value == gym.vector.AutoresetMode.NEXT_STEP.value:
        raise ValueError(
            "this vector env autoresets on the NEXT step (gymnasium's default): the step after an episode ends "
            "ignores the action and returns the reset observation with reward 0, which a return-conditioned policy "
            "would count as a real step. Create it with gym.make_vec(..., vector_kwargs={'autoreset_mode': "
            "gym.vector.AutoresetMode.SAME_STEP}) (the reset observation comes with the final step, as in "
            "stable-baselines3) or AutoresetMode.DISABLED (you reset finished envs yourself)")


class RowState:
    """What every policy state shares: one row per env, `returns_to_go` (N,) and `pending_reward` (N,) fields."""

    returns_to_go: np.ndarray
    pending_reward: np.ndarray

    @property
    def num_envs(self) -> int:
        return len(self.returns_to_go)

    def add_reward(self, reward: Any) -> None:
        """Record rewards received since the last action (in place)."""
        r = np.asarray(reward, dtype=np.float64).reshape(-1)
        if r.shape != (self.num_envs,):
            raise ValueError(f"reward must have one value per env ({self.num_envs}), got shape {np.shape(reward)}")
        if not np.isfinite(r).all():
            raise ValueError(f"reward of row(s) {np.flatnonzero(~np.isfinite(r)).tolist()[:8]} is NaN or inf: "
                             "refused, since it would poison the return-to-go of that env until its next reset")
        self.pending_reward += r


class ActObserveLoop:
    """`reset` / `act` / `observe` for a user's loop, over the subclass's `initial_state(n)` and
    `predict(obs, state, episode_start) -> (action, state)` (which sets `last_state`)."""

    last_state: Any = None  # what `predict` returned last
    _episode_start: np.ndarray | None = None  # rows `observe` saw finish, restarted at the next `act`
    _autoreset: str | None = None  # how the caller's envs restart episodes (see `reset`)
    _batched = False

    def _inputs(self, observation: Any, state: Any, episode_start: Any,
                state_type: type) -> tuple[np.ndarray, bool, Any, np.ndarray]:
        """`predict`'s checked inputs: (observations (N, obs_dim) float32, single?, state, restart flags (N,))."""
        obs, single = self._check_obs(observation)
        n = obs.shape[0]
        if state is None:
            state = self.initial_state(n)
        elif not isinstance(state, state_type):
            raise TypeError(f"state must be a {state_type.__name__} from this policy's predict, got "
                            f"{type(state).__name__}")
        elif state.num_envs != n:
            raise ValueError(f"observation batch has {n} rows but the policy state has {state.num_envs} "
                             f"(call reset(num_envs={n}) or pass state=None)")
        if episode_start is None:
            start = np.zeros(n, dtype=bool)
        else:
            start = np.asarray(episode_start, dtype=bool).reshape(-1)
            if start.shape != (n,):
                raise ValueError(f"episode_start must have one flag per row ({n}), got shape {np.shape(episode_start)}")
        return obs, single, state, start

    def _check_obs(self, observation: Any) -> tuple[np.ndarray, bool]:
        """(N, obs_dim) float32 observations and whether one (obs_dim,) observation was given; NaN/inf refused."""
        if isinstance(observation, dict):
            raise ValueError("dict observations are not supported: the policy expects a flat (obs_dim,) array")
        obs = np.asarray(observation, dtype=np.float32)
        single = obs.ndim == 1
        if single:
            obs = obs[None]
        if obs.ndim != 2 or obs.shape[1] != self.obs_dim or obs.shape[0] == 0:
            raise ValueError(f"observation must have shape ({self.obs_dim},) or (num_envs, {self.obs_dim}) for "
                             f"{self.meta.env_id}, got {np.shape(observation)}")
        if not np.isfinite(obs).all():
            rows = np.flatnonzero(~np.isfinite(obs).all(axis=1)).tolist()
            raise ValueError(f"observation row(s) {rows[:8]} hold NaN or inf: refused, since acting on it would "
                             "poison that env's carried state until its next reset (check the environment)")
        return np.ascontiguousarray(obs), single

    def reset(self, num_envs: int | None = None, env: Any = None, autoreset: str | None = None) -> ActObserveLoop:
        """Start `num_envs` fresh episodes (default: env.num_envs for a vector env, else 1).

        How finished episodes restart must be known before a batch of envs reports one finished: pass the `env`
        (a gymnasium vector env in NEXT_STEP mode is refused, see `check_autoreset_mode`), or say
        `autoreset="same-step"` (the env returns the next episode's first observation with the final step, as
        stable-baselines3's VecEnvs do) or `autoreset="disabled"` (you reset finished envs yourself).
        """
        if env is not None:
            check_autoreset_mode(env)
            env_n = getattr(env, "num_envs", 1)
            if num_envs is not None and int(num_envs) != env_n:
                raise ValueError(f"num_envs={num_envs} but the env has {env_n} environments")
            num_envs = env_n
            autoreset = autoreset or "checked"
        elif autoreset is not None and autoreset not in AUTORESET_MODES:
            raise ValueError(f"autoreset must be one of {', '.join(AUTORESET_MODES)}, got {autoreset!r}")
        num_envs = 1 if num_envs is None else int(num_envs)
        self.last_state = self.initial_state(num_envs)
        self._episode_start = np.zeros(num_envs, dtype=bool)
        self._autoreset = autoreset
        return self

    def act(self, observation: Any) -> np.ndarray:
        """Actions for the current observations (N, obs_dim) or one observation (obs_dim,); carries the state.

        Without a `reset`, the first call starts as many episodes as it has rows.
        """
        if self.last_state is None:
            self.reset(1 if np.ndim(observation) == 1 else np.shape(observation)[0])
        self._batched = np.ndim(observation) == 2
        action, _ = self.predict(observation, self.last_state, episode_start=self._episode_start)
        self._episode_start = np.zeros(self.last_state.num_envs, dtype=bool)
        return action

    def observe(self, reward: Any, done: Any = False) -> None:
        """After `env.step`: R -= reward / return_scale; rows with `done` start a new episode at the next `act`."""
        if self.last_state is None:
            raise RuntimeError("observe() before act(): call reset() and act() first")
        self.last_state.add_reward(reward)
        d = np.asarray(done, dtype=bool).reshape(-1)
        if d.shape == (1,) and self.last_state.num_envs > 1:
            d = np.repeat(d, self.last_state.num_envs)
        if d.shape != (self.last_state.num_envs,):
            raise ValueError(f"done must have one flag per env ({self.last_state.num_envs}), "
                             f"got shape {np.shape(done)}")
        if d.any() and self._batched and self._autoreset is None:
            raise ValueError(
                "an episode ended in a batch of envs, but the policy does not know how your vector env restarts "
                "episodes: gymnasium's default (NEXT_STEP) would feed it one dead step per episode. Call "
                "policy.reset(env=env) so the env's autoreset mode is checked, or policy.reset(num_envs, "
                "autoreset='same-step') / autoreset='disabled' if you know it")
        self._episode_start = self._episode_start | d


