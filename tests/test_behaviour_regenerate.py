"""Regenerating D4RL-protocol datasets from the shipped behaviour data: layout, provenance, seeds, recipe."""

from __future__ import annotations

import hashlib
import re

import h5py
import numpy as np
import pytest

from decision_minrnn.behaviour.layout import expand_stream
from decision_minrnn.behaviour.regenerate import regenerate_dataset, regenerated_dataset_path
from decision_minrnn.data.d4rl import DATA_VERSION
from decision_minrnn.behaviour.shipped import load_card, load_replay_stream
from decision_minrnn.errors import UserInputError
from decision_minrnn.paths import regenerated_dataset_dir
from decision_minrnn.tasks import get_env_spec

D4RL_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations")
PROVENANCE = ("task", "env_id", "quality", "policy", "policy_return", "policy_normalized_score", "seed", "transitions",
              "package_version", "recipe")


def _read(path) -> tuple[dict[str, np.ndarray], dict]:
    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in D4RL_KEYS}, dict(f.attrs)


def _check_layout(arrays: dict[str, np.ndarray], obs_dim: int, act_dim: int, n: int) -> None:
    assert arrays["observations"].shape == arrays["next_observations"].shape == (n, obs_dim)
    assert arrays["actions"].shape == (n, act_dim)
    assert arrays["rewards"].shape == arrays["terminals"].shape == arrays["timeouts"].shape == (n,)
    assert arrays["observations"].dtype == np.float32 and arrays["terminals"].dtype == bool
    assert np.abs(arrays["actions"]).max() <= 1.0
    ends = np.flatnonzero(arrays["terminals"] | arrays["timeouts"])
    assert not (arrays["terminals"] & arrays["timeouts"]).any()
    inside = np.setdiff1d(np.arange(n - 1), ends)
    np.testing.assert_array_equal(arrays["next_observations"][inside], arrays["observations"][inside + 1])
    assert np.diff(np.concatenate([[-1], ends])).max() <= 1000


def test_regenerated_medium_has_d4rl_layout_and_provenance():
    path = regenerate_dataset("hopper-medium", transitions=2000, progress=False)
    assert path == regenerated_dataset_path("hopper-medium", 0, 2000)
    assert path.parent == regenerated_dataset_dir()
    assert not re.fullmatch(r"[a-z0-9]+_[a-z_]+-v\d\.hdf5", path.name)  # never a D4RL v2 name
    arrays, attrs = _read(path)
    _check_layout(arrays, 11, 3, 2000)
    assert attrs["decision_minrnn_regenerated"]
    assert set(PROVENANCE) <= set(attrs)
    card = load_card(get_env_spec("hopper"))["policies"]["medium"]
    assert (attrs["task"], attrs["env_id"], attrs["quality"]) == ("hopper-medium", "Hopper-v5", "medium")
    assert attrs["seed"] == 0 and attrs["transitions"] == 2000
    assert attrs["policy_return"] == pytest.approx(card["sampled"]["return_mean"])
    assert "actor_medium" in attrs["policy"] and str(card["training_steps"]) in attrs["policy"]
    assert not list(path.parent.glob(".tmp-*"))  # written atomically, nothing left behind


def test_same_seed_identical_other_seed_differs(tmp_path):
    paths = [regenerate_dataset("walker2d-expert", seed=s, transitions=600, out=tmp_path / f"{i}.hdf5",
                                progress=False, num_envs=4) for i, s in enumerate((5, 5, 6))]
    (a, _), (b, _), (c, _) = (_read(p) for p in paths)
    for key in D4RL_KEYS:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    digest = [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    assert digest[0] == digest[1] != digest[2]  # the whole file, attributes included: nothing timed or dated
    assert not np.array_equal(a["observations"], c["observations"])
    assert not np.array_equal(a["actions"], c["actions"])


def test_medium_expert_is_medium_then_expert(tmp_path):
    kw = dict(seed=2, progress=False, num_envs=4)
    mixed, _ = _read(regenerate_dataset("hopper-medium-expert", transitions=1200, out=tmp_path / "me.hdf5", **kw))
    medium, _ = _read(regenerate_dataset("hopper-medium", transitions=600, out=tmp_path / "m.hdf5", **kw))
    expert, attrs = _read(regenerate_dataset("hopper-expert", transitions=600, out=tmp_path / "e.hdf5", **kw))
    _check_layout(mixed, 11, 3, 1200)
    for key in ("observations", "actions", "rewards", "terminals", "next_observations"):
        np.testing.assert_array_equal(mixed[key], np.concatenate([medium[key], expert[key]]), err_msg=key)
    assert mixed["terminals"][599] or mixed["timeouts"][599]  # the medium half's last episode is closed
    assert attrs["quality"] == "expert"


def test_medium_replay_is_the_shipped_stream(tmp_path):
    env = get_env_spec("halfcheetah")
    stream = load_replay_stream(env)
    path = regenerate_dataset("halfcheetah-medium-replay", transitions=5000, out=tmp_path / "mr.hdf5", progress=False)
    arrays, attrs = _read(path)
    _check_layout(arrays, 17, 6, 5000)
    np.testing.assert_array_equal(arrays["observations"], stream["observations"][:5000].astype(np.float32))
    ends = stream["final_indices"][stream["final_indices"] < 5000]
    assert len(ends) == 5  # 1000-step halfcheetah episodes
    finals = stream["final_observations"][:5].astype(np.float32)
    np.testing.assert_array_equal(arrays["next_observations"][ends], finals)
    np.testing.assert_array_equal(arrays["timeouts"][ends], True)
    assert attrs["quality"] == "medium-replay" and "training stream" in attrs["policy"]
    shipped = len(stream["rewards"])
    with pytest.raises(UserInputError, match=str(shipped)):
        regenerate_dataset("halfcheetah-medium-replay", transitions=shipped + 1, out=tmp_path / "x.hdf5")
    whole = expand_stream(stream)
    assert whole.timeouts.sum() >= 1 and len(whole) == load_card(env)["medium_replay"]["transitions"]


def test_random_quality_is_a_random_init_actor_and_files_carry_the_data_version(tmp_path):
    """D4RL's random data comes from a randomly initialised policy: actions correlate with the state (a fixed random
    network), unlike uniform noise; a different seed draws a different actor."""
    arrays, attrs = _read(regenerate_dataset("hopper-random", transitions=500, out=tmp_path / "r.hdf5", progress=False))
    _check_layout(arrays, 11, 3, 500)
    assert attrs["policy"].startswith("random: a randomly initialised SAC actor") and arrays["terminals"].sum() > 5
    assert attrs["data_version"] == DATA_VERSION == 2
    other, _ = _read(regenerate_dataset("hopper-random", transitions=500, seed=1, out=tmp_path / "r1.hdf5",
                                        progress=False))
    assert not np.array_equal(arrays["actions"], other["actions"])
    assert np.abs(arrays["actions"]).max() < 1.0  # tanh-squashed, never exactly uniform's bounds


@pytest.mark.parametrize("bad", ["hopper-medium-v2", "hopper-median", "cartpole-medium"])
def test_bad_task_names(bad):
    with pytest.raises(UserInputError):
        regenerated_dataset_path(bad)


def test_determinism_probe_collects_what_the_regenerator_collects():
    """benchmarks/behaviour_determinism.py hashes its own collection: that must be the regenerator's rows, bit for
    bit (so its verdict is about the real datasets); its float64 variant is the same policy to float32 precision."""
    from cli_helpers import load_benchmark_script

    from decision_minrnn.behaviour.regenerate import build_dataset
    from decision_minrnn.tasks import resolve_task

    probe = load_benchmark_script("behaviour_determinism")
    (data, _) = build_dataset(resolve_task("hopper-medium"), transitions=300, progress=False)
    rows = probe.collect_rows("hopper-medium", "medium", 300, 0, "float32")
    assert probe.rows_hash(rows) == probe.rows_hash(data)
    from decision_minrnn.behaviour.actor import SampledPolicy
    from decision_minrnn.behaviour.shipped import load_behaviour_actor

    actor = load_behaviour_actor(resolve_task("hopper-medium").env, "medium")
    obs = data.observations[:64]
    a32 = SampledPolicy(actor, np.random.default_rng(1))(obs)
    a64 = probe.Float64Policy(actor, np.random.default_rng(1))(obs)
    assert a64.dtype == np.float32 and not np.array_equal(a32, a64)  # not the float32 computation ...
    np.testing.assert_allclose(a64, a32, atol=1e-4)  # ... but the same policy and noise
    assert probe.rows_hash(probe.collect_rows("hopper-medium", "medium", 300, 0, "float64")) != probe.rows_hash(data)
