"""The package's SAC actor against stable-baselines3's own, and the shipped actors and cards."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from decision_minrnn.behaviour.actor import SampledPolicy, actor_metadata, export_sb3_actor, load_actor
from decision_minrnn.behaviour.layout import expand_stream
from decision_minrnn.behaviour.shipped import (
    ROLES, actor_file, behaviour_dir, load_behaviour_actor, load_card, load_replay_stream,
)
from decision_minrnn.tasks import env_specs, get_env_spec


@pytest.fixture(scope="module")
def sb3_sac():
    """A freshly initialised SB3 SAC on Hopper-v5 (small buffer: nothing is trained)."""
    import gymnasium as gym
    from stable_baselines3 import SAC

    return SAC("MlpPolicy", gym.make("Hopper-v5"), buffer_size=1000, seed=3, device="cpu")


@pytest.fixture(scope="module")
def stored_observations() -> np.ndarray:
    """Observations taken from the shipped hopper medium-replay stream."""
    data = expand_stream(load_replay_stream(get_env_spec("hopper")), rows=20_000)
    return data.observations[::50]


def test_mean_action_matches_sb3_predict(sb3_sac, stored_observations, tmp_path):
    export_sb3_actor(sb3_sac, tmp_path / "actor.safetensors", dtype=torch.float32)
    actor = load_actor(tmp_path / "actor.safetensors")
    ours = SampledPolicy(actor, None, deterministic=True)(stored_observations)
    theirs, _ = sb3_sac.predict(stored_observations, deterministic=True)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5)


def test_sampled_action_matches_sb3_distribution(sb3_sac, stored_observations, tmp_path):
    export_sb3_actor(sb3_sac, tmp_path / "actor.safetensors", dtype=torch.float32)
    actor = load_actor(tmp_path / "actor.safetensors")
    obs = torch.as_tensor(stored_observations)
    noise = torch.randn(len(obs), actor.act_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        mean, log_std, _ = sb3_sac.actor.get_action_dist_params(obs)
        expected = torch.tanh(mean + log_std.exp() * noise)
        np.testing.assert_allclose(actor(obs, noise).numpy(), expected.numpy(), rtol=0, atol=1e-5)


def test_float16_export_stays_close(sb3_sac, stored_observations, tmp_path):
    export_sb3_actor(sb3_sac, tmp_path / "actor16.safetensors")  # the shipping dtype
    actor = load_actor(tmp_path / "actor16.safetensors")
    assert all(p.dtype == torch.float32 for p in actor.parameters())
    theirs, _ = sb3_sac.predict(stored_observations, deterministic=True)
    ours = SampledPolicy(actor, None, deterministic=True)(stored_observations)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=2e-2)


@pytest.mark.parametrize("env_name", sorted(env_specs()))
def test_shipped_behaviour_data(env_name):
    env = get_env_spec(env_name)
    card = load_card(env)
    for role in ROLES:
        actor = load_behaviour_actor(env, role)
        assert (actor.obs_dim, actor.act_dim) == (env.obs_dim, env.act_dim)
        entry = card["policies"][role]
        assert actor_metadata(behaviour_dir(env) / actor_file(role)) == {
            "env": env.name, "role": role, "step": entry["training_steps"]
        }
        for mode in ("sampled", "deterministic"):
            stats = entry[mode]
            assert stats["normalized"] == pytest.approx(env.normalized_score(stats["return_mean"]), abs=0.01)
    stream = load_replay_stream(env)
    medium_steps = card["policies"]["medium"]["training_steps"]
    assert len(stream["rewards"]) == card["medium_replay"]["transitions"] == medium_steps
    assert card["policies"]["expert"]["sampled"]["return_mean"] > card["policies"]["medium"]["sampled"]["return_mean"]
