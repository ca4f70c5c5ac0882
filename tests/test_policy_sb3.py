"""stable-baselines3's evaluate_policy with the RewardToPolicy wrapper gives the returns of the plain gymnasium loop."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

from agent_factory import make_agent
from decision_minrnn.agent.policy import load_policy
from decision_minrnn.agent.sb3 import RewardToPolicy

SEED = 5
EPISODES_PER_ENV = 2


def gymnasium_loop(policy, seeds, episodes_per_env):
    """First `episodes_per_env` episodes of each env: (returns, lengths) per env."""
    env = gym.make_vec("Hopper-v5", len(seeds), vectorization_mode="sync",
                       vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP})
    policy.reset(env=env)
    obs, _ = env.reset(seed=seeds)
    returns = [[] for _ in seeds]
    lengths = [[] for _ in seeds]
    ep_ret, ep_len = np.zeros(len(seeds)), np.zeros(len(seeds), int)
    while min(len(r) for r in returns) < episodes_per_env:
        obs, reward, terminated, truncated, _ = env.step(policy.act(obs))
        done = terminated | truncated
        policy.observe(reward, done)
        ep_ret += reward
        ep_len += 1
        for i in np.flatnonzero(done):
            returns[i].append(ep_ret[i])
            lengths[i].append(ep_len[i])
            ep_ret[i], ep_len[i] = 0.0, 0
    env.close()
    return [r[:episodes_per_env] for r in returns], [n[:episodes_per_env] for n in lengths]


def sb3_venv(n_envs: int, seed: int) -> DummyVecEnv:
    venv = DummyVecEnv([lambda: Monitor(gym.make("Hopper-v5")) for _ in range(n_envs)])
    venv.seed(seed)  # env i resets with seed + i at the first reset, then continues its own RNG
    return venv


@pytest.mark.parametrize("rollout", ["recurrent", "window"])
def test_evaluate_policy_matches_gymnasium_loop(tmp_path, rollout):
    policy = load_policy(make_agent(tmp_path / "agent", "mingru", "interleaved"), device="cpu", rollout=rollout)
    returns, lengths = gymnasium_loop(policy, [SEED, SEED + 1], EPISODES_PER_ENV)
    assert lengths[0] != lengths[1], "the two envs' episodes should end at different steps"

    venv = RewardToPolicy(sb3_venv(2, SEED), policy)
    sb3_returns, sb3_lengths = evaluate_policy(policy, venv, n_eval_episodes=2 * EPISODES_PER_ENV,
                                               return_episode_rewards=True)
    # SB3 stores rewards as float32 and Monitor rounds returns to 6 decimals: equal up to that.
    np.testing.assert_allclose(sorted(sb3_returns), sorted(returns[0] + returns[1]), rtol=1e-5, atol=1e-5)
    assert sorted(sb3_lengths) == sorted(lengths[0] + lengths[1])


def test_without_the_wrapper_rewards_are_lost(tmp_path):
    # Why the wrapper exists: evaluate_policy never passes rewards, so R would stay at the target.
    policy = load_policy(make_agent(tmp_path / "agent", "mingru", "interleaved"), device="cpu")
    returns, _ = gymnasium_loop(policy, [SEED, SEED + 1], EPISODES_PER_ENV)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain, _ = evaluate_policy(policy, sb3_venv(2, SEED), n_eval_episodes=4, return_episode_rewards=True)
    assert not np.allclose(sorted(plain), sorted(returns[0] + returns[1]), rtol=1e-5, atol=1e-5)
    assert np.all(policy.last_state.returns_to_go == policy.target_return / 1000.0)


def test_wrapper_checks_the_env_and_batch(tmp_path):
    policy = load_policy(make_agent(tmp_path / "agent"), device="cpu")
    with pytest.raises(ValueError, match=r"shape \(17,\)"):
        RewardToPolicy(DummyVecEnv([lambda: gym.make("Walker2d-v5")]), policy)
    venv = RewardToPolicy(sb3_venv(2, 0), policy)
    obs = venv.reset()
    policy.predict(obs[:1])  # a predict for another batch size
    with pytest.raises(ValueError, match="one policy per loop"):
        venv.step(np.zeros((2, 3), np.float32))
