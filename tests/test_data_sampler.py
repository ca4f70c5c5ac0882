"""The training window sampler, checked token by token against brute force on the raw episodes.

The test data's observation column 0 is the global row index; with state_mean 0 and state_std 1 each sampled token
tells which row it came from.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_data_helpers import in_memory_dataset

from decision_minrnn.data import WindowSampler
from decision_minrnn.errors import DatasetError, UserInputError

LENGTHS = [3, 25, 7, 40, 1]


def _identity_sampler(ds, **kwargs):
    obs_dim = ds.observations.shape[1]
    return WindowSampler(ds, state_mean=np.zeros(obs_dim), state_std=np.ones(obs_dim), **kwargs)


def _check_batch(ds, batch, *, context, context_len, burn_in=0):
    """Every row against a brute-force reading of the episodes."""
    starts = ds.episode_starts
    seq_len = context_len + burn_in
    b = len(batch["mask"])
    assert batch["states"].shape == (b, seq_len, ds.observations.shape[1]) and batch["states"].dtype == np.float32
    assert batch["actions"].shape == (b, seq_len, ds.actions.shape[1]) and batch["actions"].dtype == np.float32
    assert batch["returns_to_go"].shape == (b, seq_len) and batch["returns_to_go"].dtype == np.float32
    assert batch["timesteps"].dtype == np.int64 and batch["mask"].dtype == bool and batch["loss_mask"].dtype == bool
    for i in range(b):
        mask = batch["mask"][i]
        n = int(mask.sum())
        assert n >= 1 and mask[:n].all() and not mask[n:].any()  # right padding
        rows = np.rint(batch["states"][i, :n, 0]).astype(int)
        first = rows[0]
        np.testing.assert_array_equal(rows, np.arange(first, first + n))
        ep = np.searchsorted(starts, first, side="right") - 1
        ep_start, ep_end = starts[ep], starts[ep + 1]
        assert rows[-1] < ep_end  # never crosses into the next episode
        t_first = first - ep_start
        np.testing.assert_array_equal(batch["timesteps"][i, :n], np.arange(t_first, t_first + n))
        np.testing.assert_array_equal(batch["states"][i, :n], ds.observations[rows])
        np.testing.assert_array_equal(batch["actions"][i, :n], ds.actions[rows])
        prev = [ds.actions[r - 1] if r > ep_start else np.zeros_like(ds.actions[r]) for r in rows]
        np.testing.assert_array_equal(batch["prev_actions"][i, :n], np.asarray(prev))
        rtg = [ds.rewards[r:ep_end].astype(np.float64).sum() / 1000.0 for r in rows]
        np.testing.assert_allclose(batch["returns_to_go"][i, :n], rtg, rtol=1e-5, atol=1e-6)
        for key in ("states", "actions", "prev_actions", "returns_to_go", "timesteps"):
            assert not batch[key][i, n:].any(), key  # padding is zero
        loss = batch["loss_mask"][i]
        prefix = int(np.argmax(loss)) if loss.any() else n
        assert loss[prefix:n].all() and not loss[:prefix].any() and not loss[n:].any()
        if context == "episode":
            assert t_first == 0 and n == min(ep_end - ep_start, context_len) and prefix == 0
        elif context == "window":
            assert prefix == 0 and n == min(ep_end - first, context_len)
        else:
            t0 = t_first + prefix  # first step that carries loss
            assert prefix == min(burn_in, t0)
            assert n == prefix + min(ep_end - ep_start - t0, context_len)


@pytest.mark.parametrize(
    "context, context_len, burn_in",
    [("window", 20, 0), ("window", 1, 0), ("episode", 30, 0), ("episode", 1000, 0), ("burn_in", 10, 6)],
)
def test_batches_match_brute_force(context, context_len, burn_in):
    ds = in_memory_dataset("hopper-medium", LENGTHS)
    sampler = _identity_sampler(ds, context=context, context_len=context_len, burn_in=burn_in, batch_size=64, seed=3)
    for _ in range(5):
        _check_batch(ds, sampler.sample(), context=context, context_len=context_len, burn_in=burn_in)


def test_window_mode_reaches_padding_and_full_windows():
    ds = in_memory_dataset("hopper-medium", LENGTHS)
    batch = _identity_sampler(ds, context_len=20, batch_size=512, seed=0).sample()
    counts = batch["mask"].sum(1)
    assert (counts == 20).any() and (counts < 20).any()
    burn = _identity_sampler(ds, context="burn_in", context_len=5, burn_in=4, batch_size=512, seed=0).sample()
    prefixes = (burn["mask"] & ~burn["loss_mask"]).sum(1)
    assert set(prefixes.tolist()) == {0, 1, 2, 3, 4}  # clipped at t = 0 for early starts


def test_states_are_normalised_with_dataset_statistics():
    ds = in_memory_dataset("walker2d-medium", LENGTHS, seed=1)
    sampler = WindowSampler(ds, context_len=5, batch_size=8, context="episode")
    obs = ds.observations.astype(np.float64)
    mean, std = obs.mean(0), obs.std(0) + 1e-6
    np.testing.assert_allclose(sampler.state_mean, mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sampler.state_std, std, rtol=1e-5)
    batch = sampler.sample()
    # episode mode starts at t = 0: each row's first token is an episode's first observation
    firsts = (ds.observations[ds.episode_starts[:-1]] - mean) / std
    for row in batch["states"][:, 0]:
        assert np.abs(firsts - row).max(axis=1).min() < 1e-4


def test_same_seed_same_batches_and_resume_from_state_dict():
    ds = in_memory_dataset("hopper-medium", LENGTHS)
    kwargs = dict(context_len=8, batch_size=16, context="burn_in", burn_in=3)
    a, b = WindowSampler(ds, seed=7, **kwargs), WindowSampler(ds, seed=7, **kwargs)
    for _ in range(3):
        x, y = a.sample(), b.sample()
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])
    saved = json.loads(json.dumps(a.state_dict()))
    expected = [a.sample() for _ in range(2)]
    resumed = WindowSampler(ds, seed=123, **kwargs)
    resumed.load_state_dict(saved)
    for want in expected:
        got = resumed.sample()
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])
    other = WindowSampler(ds, seed=8, **kwargs).sample()
    assert not np.array_equal(other["timesteps"], expected[0]["timesteps"])
    with pytest.raises(UserInputError, match="context_len"):
        WindowSampler(ds, seed=7, **{**kwargs, "context_len": 9}).load_state_dict(saved)


def test_episodes_are_drawn_in_proportion_to_length():
    lengths = [10, 30, 60]
    ds = in_memory_dataset("hopper-medium", lengths)
    window = _identity_sampler(ds, context_len=5, batch_size=20000, seed=0).sample()
    rows = np.rint(window["states"][:, 0, 0]).astype(int)  # the first row of each window
    share = np.bincount(np.searchsorted(ds.episode_starts, rows, side="right") - 1, minlength=3) / len(rows)
    np.testing.assert_allclose(share, [0.1, 0.3, 0.6], atol=0.02)
    # a uniform start within the episode (also in its last steps, padded): every row is equally likely to start
    np.testing.assert_allclose(np.bincount(rows, minlength=100) / len(rows), 0.01, atol=0.004)

    # episode mode with context 20: weight min(length, 20) = 10, 20, 20
    episode = _identity_sampler(ds, context="episode", context_len=20, batch_size=20000, seed=0).sample()
    first = np.rint(episode["states"][:, 0, 0]).astype(int)
    share = np.array([(first == s).mean() for s in ds.episode_starts[:-1]])
    np.testing.assert_allclose(share, [0.2, 0.4, 0.4], atol=0.02)


def test_bad_settings_and_too_short_data():
    ds = in_memory_dataset("hopper-medium", [5, 8])
    with pytest.raises(DatasetError, match="every episode is shorter than the window") as info:
        WindowSampler(ds, context_len=9, batch_size=4)
    assert "<memory>" in str(info.value)
    with pytest.raises(DatasetError, match="shorter than the window"):
        WindowSampler(ds, context="burn_in", context_len=9, burn_in=2, batch_size=4)
    assert WindowSampler(ds, context="episode", context_len=1000, batch_size=4).sample()["mask"].shape == (4, 1000)
    with pytest.raises(UserInputError, match="unknown training context"):
        WindowSampler(ds, context="windows", context_len=4, batch_size=4)
    with pytest.raises(UserInputError, match="burn_in"):
        WindowSampler(ds, context="window", burn_in=2, context_len=4, batch_size=4)
    with pytest.raises(UserInputError, match="burn_in >= 1"):
        WindowSampler(ds, context="burn_in", context_len=4, batch_size=4)
    with pytest.raises(UserInputError, match=">= 1"):
        WindowSampler(ds, context_len=0, batch_size=4)
    with pytest.raises(UserInputError, match="shape"):
        WindowSampler(ds, context_len=4, batch_size=4, state_mean=np.zeros(3), state_std=np.ones(3))
