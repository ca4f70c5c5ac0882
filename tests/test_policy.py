"""Policy: acting step by step equals the model's parallel forward (recurrent) or manual re-encoding (window), for every
backbone and layout; batching, resets and SB3-style predict behave like independent fresh episodes."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch

from agent_factory import make_agent, make_meta, make_model
from decision_minrnn.errors import UserInputError
from decision_minrnn.nn.model import MODEL_NAMES
from decision_minrnn.agent.policy import Policy, PolicyState, load_policy

LAYOUTS = ("interleaved", "fused")
OBS_DIM, ACT_DIM = 11, 3


def recorded_episode(seed: int = 0, steps: int = 23) -> tuple[np.ndarray, np.ndarray]:
    """Observations and rewards of a Hopper-v5 episode under random actions, padded with later episodes to `steps`."""
    env = gym.make("Hopper-v5")
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    observations, rewards = [], []
    while len(rewards) < steps:
        observations.append(obs)
        obs, r, term, trunc, _ = env.step(env.action_space.sample())
        rewards.append(r)
        if term or trunc:
            obs, _ = env.reset()
    env.close()
    return np.asarray(observations, np.float32), np.asarray(rewards, np.float64)


def make_policy(backbone="mingru", layout="interleaved", rollout="recurrent", seed=0, **cfg) -> Policy:
    meta = make_meta(backbone, layout, seed=seed, **cfg)
    return Policy(make_model(meta, seed), meta, rollout=rollout)


def play(policy: Policy, observations: np.ndarray, rewards: np.ndarray) -> np.ndarray:
    """Feed a recorded episode step by step (act, then observe the recorded reward); the actions taken."""
    policy.reset(1, autoreset="same-step")
    actions = []
    for obs, r in zip(observations, rewards):
        actions.append(policy.act(obs))
        policy.observe(r, False)
    return np.asarray(actions)


def tokens_of(policy: Policy, observations, rewards, actions):
    """The per-step inputs of the episode as the model sees them: normalised states, R_t, t, a_t, a_{t-1}."""
    meta = policy.meta
    states = torch.as_tensor((observations - meta.state_mean) / meta.state_std, dtype=torch.float32)
    received = np.concatenate([[0.0], np.cumsum(rewards)[:-1]])  # rewards before each step
    rtg = (policy.target_return - received) / meta.return_scale
    acts = torch.as_tensor(actions, dtype=torch.float32)
    prev = torch.cat([torch.zeros(1, acts.shape[1]), acts[:-1]])
    steps = torch.arange(len(observations))
    return torch.as_tensor(rtg, dtype=torch.float32), states, acts, steps, prev


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("backbone", MODEL_NAMES)
def test_recurrent_acting_equals_parallel_forward(backbone, layout):
    policy = make_policy(backbone, layout, "recurrent")
    observations, rewards = recorded_episode()
    actions = play(policy, observations, rewards)
    rtg, states, acts, steps, prev = tokens_of(policy, observations, rewards, actions)
    with torch.no_grad():
        pred, _ = policy.model(rtg[None], states[None], acts[None], steps[None], prev_actions=prev[None])
    np.testing.assert_allclose(actions, pred[0].numpy(), atol=2e-5, rtol=1e-4)
    assert np.abs(actions).max() > 0  # the check is not vacuous


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("backbone", MODEL_NAMES)
def test_window_acting_equals_reencoding_last_k_steps(backbone, layout):
    policy = make_policy(backbone, layout, "window", context_len=4)
    k = policy.context_len
    observations, rewards = recorded_episode(seed=1)
    actions = play(policy, observations, rewards)
    rtg, states, acts, steps, prev = tokens_of(policy, observations, rewards, actions)
    expected = []
    with torch.no_grad():
        for t in range(len(observations)):
            lo = max(0, t - k + 1)
            window = [x[lo:t + 1][None] for x in (rtg, states, acts, steps, prev)]
            window[2] = window[2].clone()
            window[2][0, -1] = 0.0  # a_t is not known yet when a_t is chosen
            pred, _ = policy.model(*window[:4], prev_actions=window[4])
            expected.append(pred[0, -1].numpy())
    np.testing.assert_allclose(actions, np.asarray(expected), atol=2e-5, rtol=1e-4)


def test_window_mode_differs_from_recurrent_after_k_steps():
    # Sanity: the two modes agree while the history fits in the window, and differ once it does not.
    observations, rewards = recorded_episode(seed=2, steps=12)
    rec = play(make_policy("mingru", "fused", "recurrent", context_len=4), observations, rewards)
    win = play(make_policy("mingru", "fused", "window", context_len=4), observations, rewards)
    np.testing.assert_allclose(rec[:4], win[:4], atol=2e-5)
    assert not np.allclose(rec[4:], win[4:], atol=1e-4)


@pytest.mark.parametrize("rollout", ["recurrent", "window"])
def test_timesteps_past_the_embedding_are_clamped(rollout):
    policy = make_policy("mingru", "interleaved", rollout, max_timestep=6, context_len=4)
    observations, rewards = recorded_episode(steps=15)
    actions = play(policy, observations, rewards)
    assert actions.shape == (15, ACT_DIM) and np.isfinite(actions).all()
    if rollout == "recurrent":
        rtg, states, acts, steps, prev = tokens_of(policy, observations, rewards, actions)
        with torch.no_grad():
            pred, _ = policy.model(rtg[None], states[None], acts[None], steps[None], prev_actions=prev[None])
        np.testing.assert_allclose(actions, pred[0].numpy(), atol=2e-5, rtol=1e-4)


def streams(n_rows: int, steps: int) -> list[tuple[np.ndarray, np.ndarray]]:
    return [recorded_episode(seed=10 + i, steps=steps) for i in range(n_rows)]


@pytest.mark.parametrize("rollout", ["recurrent", "window"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_single_and_batched_act_agree(layout, rollout):
    data = streams(3, 9)
    batched = make_policy("minlstm", layout, rollout, context_len=4).reset(3, autoreset="same-step")
    singles = [make_policy("minlstm", layout, rollout, context_len=4).reset(1, autoreset="same-step") for _ in data]
    for t in range(9):
        obs = np.stack([o[t] for o, _ in data])
        a = batched.act(obs)
        assert a.shape == (3, ACT_DIM) and a.dtype == np.float32
        for i, p in enumerate(singles):
            single = p.act(data[i][0][t])
            assert single.shape == (ACT_DIM,)
            np.testing.assert_allclose(a[i], single, atol=1e-5)
            p.observe(data[i][1][t], False)
        batched.observe(np.array([r[t] for _, r in data]), np.zeros(3, bool))


@pytest.mark.parametrize("rollout", ["recurrent", "window"])
@pytest.mark.parametrize("backbone", ["mingru", "transformer", "mamba", "mlp-bc"])
def test_done_row_restarts_like_a_fresh_policy_others_untouched(backbone, rollout):
    (a_obs, a_rew), (b_obs, b_rew), (c_obs, c_rew) = streams(3, 14)
    policy = make_policy(backbone, "interleaved", rollout, context_len=4).reset(2, autoreset="same-step")
    got = []
    for t in range(14):
        # row 0 plays stream a throughout; row 1 plays b for 6 steps, ends, then plays c from a fresh episode
        second = b_obs[t] if t < 6 else c_obs[t - 6]
        got.append(policy.act(np.stack([a_obs[t], second])))
        reward = np.array([a_rew[t], b_rew[t] if t < 6 else c_rew[t - 6]])
        policy.observe(reward, np.array([False, t == 5]))
    got = np.asarray(got)
    ref_a = play(make_policy(backbone, "interleaved", rollout, context_len=4), a_obs, a_rew)
    ref_b = play(make_policy(backbone, "interleaved", rollout, context_len=4), b_obs[:6], b_rew[:6])
    ref_c = play(make_policy(backbone, "interleaved", rollout, context_len=4), c_obs[:8], c_rew[:8])
    np.testing.assert_allclose(got[:, 0], ref_a, atol=1e-5)
    np.testing.assert_allclose(got[:6, 1], ref_b, atol=1e-5)
    np.testing.assert_allclose(got[6:, 1], ref_c, atol=1e-5)


@pytest.mark.parametrize("rollout", ["recurrent", "window"])
def test_predict_with_episode_start_matches_act_observe(rollout):
    data = streams(2, 10)
    p1 = make_policy("s4", "fused", rollout, context_len=3).reset(2, autoreset="same-step")
    p2 = make_policy("s4", "fused", rollout, context_len=3)
    state = None
    start = np.ones(2, bool)
    for t in range(10):
        obs = np.stack([o[t] for o, _ in data])
        rew = np.array([r[t] for _, r in data])
        done = np.array([t == 3, t == 6])
        a1 = p1.act(obs)
        p1.observe(rew, done)
        a2, new_state = p2.predict(obs, state=state, episode_start=start, deterministic=True)
        assert isinstance(new_state, PolicyState) and new_state.num_envs == 2
        # predict does not modify the state it was given: asking again gives the same action
        again, _ = p2.predict(obs, state=state, episode_start=start)
        np.testing.assert_array_equal(a2, again)
        np.testing.assert_allclose(a1, a2, atol=1e-6)
        new_state.add_reward(rew)  # what the SB3 wrapper does
        state, start = new_state, done


def test_predict_fresh_state_and_restart_equal_first_action():
    obs = recorded_episode(steps=3)[0]
    policy = make_policy("mingru", "interleaved")
    first, state = policy.predict(obs[0])
    assert first.shape == (ACT_DIM,) and state.num_envs == 1
    _, state = policy.predict(obs[1], state)
    restarted, state = policy.predict(obs[0], state, episode_start=[True])
    np.testing.assert_allclose(first, restarted, atol=1e-6)
    assert state.timesteps.tolist() == [1]


def test_returns_to_go_follow_target_and_rewards():
    policy = make_policy("mingru", "fused", target_return=1800.0)
    assert policy.target_return == 1800.0  # from the config
    assert make_policy("mingru", "fused").target_return == 3600.0  # 0 in the config: hopper's first DT target
    assert Policy(policy.model, policy.meta, target_return=1000.0).target_return == 1000.0
    policy.reset(2, autoreset="same-step")
    policy.act(np.zeros((2, OBS_DIM)))
    policy.observe([100.0, 50.0], [False, False])
    policy.act(np.zeros((2, OBS_DIM)))
    np.testing.assert_allclose(policy.last_state.returns_to_go, [1.7, 1.75])
    assert policy.last_state.timesteps.tolist() == [2, 2]


def test_policy_restores_training_mode_and_ignores_dropout():
    meta = make_meta("mingru", "interleaved", dropout=0.5)
    model = make_model(meta).train()
    policy = Policy(model, meta)
    obs = recorded_episode(steps=2)[0]
    a1 = policy.reset(1, autoreset="same-step").act(obs[0])
    a2 = policy.reset(1, autoreset="same-step").act(obs[0])
    np.testing.assert_array_equal(a1, a2)  # no dropout while acting
    assert model.training


def test_wrong_observation_size_or_batch_is_a_clear_error():
    policy = make_policy().reset(2, autoreset="same-step")
    with pytest.raises(ValueError, match=r"observation must have shape \(11,\)"):
        policy.act(np.zeros((2, 17)))
    with pytest.raises(ValueError, match="observation must have shape"):
        policy.act(np.zeros(5))
    with pytest.raises(ValueError, match="batch has 3 rows but the policy state has 2"):
        policy.act(np.zeros((3, OBS_DIM)))
    with pytest.raises(ValueError, match="episode_start"):
        policy.predict(np.zeros((2, OBS_DIM)), episode_start=[True])
    policy.act(np.zeros((2, OBS_DIM)))
    with pytest.raises(ValueError, match="one flag per env"):
        policy.observe([1.0, 2.0], [True, False, True])
    with pytest.raises(ValueError, match="one value per env"):
        policy.observe([1.0, 2.0, 3.0], False)


def test_next_step_autoreset_vector_env_is_refused():
    policy = make_policy()
    env = gym.make_vec("Hopper-v5", 2, vectorization_mode="sync")  # gymnasium's default: NEXT_STEP
    with pytest.raises(ValueError, match="SAME_STEP"):
        policy.reset(env=env)
    env.close()
    for mode in (gym.vector.AutoresetMode.SAME_STEP, gym.vector.AutoresetMode.DISABLED):
        env = gym.make_vec("Hopper-v5", 2, vectorization_mode="sync", vector_kwargs={"autoreset_mode": mode})
        policy.reset(env=env)
        assert policy.last_state.num_envs == 2
        with pytest.raises(ValueError, match="num_envs=3"):
            policy.reset(3, env=env)
        env.close()
    policy.reset(env=gym.make("Hopper-v5"))  # a single env is fine
    assert policy.last_state.num_envs == 1


def test_gymnasium_vector_loop_with_different_episode_ends(tmp_path):
    """The README's loop: 2 envs whose episodes end at different steps; finished rows restart on their own."""
    policy = load_policy(make_agent(tmp_path / "agent"), device="cpu")
    env = gym.make_vec("Hopper-v5", 2, vectorization_mode="sync",
                       vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP})
    policy.reset(env=env)
    obs, _ = env.reset(seed=[3, 4])
    ends = [[], []]
    for t in range(60):
        obs, reward, terminated, truncated, _ = env.step(policy.act(obs))
        done = terminated | truncated
        policy.observe(reward, done)
        for i in np.flatnonzero(done):
            ends[i].append(t)
    env.close()
    assert ends[0] and ends[1] and ends[0][0] != ends[1][0]
    # a row's timestep counts steps since its own episode began
    for i in range(2):
        assert policy.last_state.timesteps[i] == 60 - (ends[i][-1] + 1)


def test_load_policy_options_and_errors(tmp_path):
    agent = make_agent(tmp_path / "a", "transformer", "fused", rollout="window", target_return=1234.0)
    policy = load_policy(agent, device="cpu")
    assert policy.rollout == "window" and policy.target_return == 1234.0
    policy = load_policy(agent, target_return=99.0, rollout="recurrent", device="cpu")
    assert policy.rollout == "recurrent" and policy.target_return == 99.0
    assert "transformer" in repr(policy)
    with pytest.raises(UserInputError, match="rollout"):
        load_policy(agent, rollout="sideways", device="cpu")
    with pytest.raises(UserInputError, match="does not exist"):
        load_policy(tmp_path / "nothing")
    if not torch.cuda.is_available():
        with pytest.raises(UserInputError, match="no CUDA GPU"):
            load_policy(agent, device="cuda")
    odd = make_agent(tmp_path / "b", obs_dim=17, act_dim=6)
    with pytest.raises(UserInputError, match="obs/action sizes 17/6"):
        load_policy(odd, device="cpu")


def test_compiled_policy_acts_like_the_eager_one():
    """`compile=True` (torch.compile of the acting step) changes speed, not actions; a compile failure falls back."""
    obs, rew = recorded_episode(seed=3, steps=6)
    eager = play(make_policy("mingru", "fused", d_model=16, n_layers=1), obs, rew)
    meta = make_meta("mingru", "fused", d_model=16, n_layers=1)
    compiled = Policy(make_model(meta), meta, compile=True)
    assert "compiled" in repr(compiled)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        actions = play(compiled, obs, rew)
    np.testing.assert_allclose(actions, eager, atol=1e-5)
    if compiled._step_tokens.failed is not None:  # no working compiler here: the warning said so
        assert any("acting in eager mode" in str(w.message) for w in caught)


def test_compile_failure_falls_back_to_eager_with_a_warning():
    from decision_minrnn.agent.policy import CompiledCall

    def broken_compiled(*args):
        raise RuntimeError("no C++ compiler\nmore detail")

    call = CompiledCall(lambda x: x + 1)
    call.compiled = broken_compiled
    with pytest.warns(RuntimeWarning, match="RuntimeError: no C\\+\\+ compiler.*acting in eager mode"):
        assert call(1) == 2
    assert call(2) == 3 and call.failed == "RuntimeError: no C++ compiler"
