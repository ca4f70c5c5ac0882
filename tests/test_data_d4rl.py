"""The D4RL HDF5 reader on files the tests write: episode splitting, dtypes, provenance and every bad-input case."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from test_data_helpers import episode_arrays, write_file

from decision_minrnn.data import read_d4rl_hdf5
from decision_minrnn.errors import DatasetError
from decision_minrnn.tasks import normalized_score


def test_episodes_split_at_terminals_and_timeouts_with_trailing_episode(tmp_path):
    arrays = episode_arrays("hopper-medium", [5, 7, 3], ["terminal", "timeout", "none"], dtype=np.float64)
    extra = {"infos/qpos": np.zeros((15, 6)), "infos/action_log_probs": np.zeros(15), "metadata/algorithm": "SAC"}
    path = write_file(tmp_path / "hopper_medium-v2.hdf5", arrays, next_observations=arrays["observations"], extra=extra)

    ds = read_d4rl_hdf5(path, "hopper-medium")

    assert ds.episode_starts.tolist() == [0, 5, 12, 15]
    assert ds.terminated.tolist() == [True, False, False]
    assert ds.truncated.tolist() == [False, True, True]
    for key in ("observations", "actions", "rewards"):
        got = getattr(ds, key)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, arrays[key].astype(np.float32))
    assert ds.source == "d4rl" and ds.comparable_with_d4rl and ds.score_label == "D4RL-normalized"
    assert ds.provenance["trailing_unfinished_episode"] is True
    assert ds.provenance["timeouts"] == "recorded"
    assert ds.provenance["metadata"]["algorithm"] == "SAC"
    assert ds.task.name == "hopper-medium" and ds.location == str(path)


def test_last_row_ending_an_episode_leaves_no_trailing_episode(tmp_path):
    arrays = episode_arrays("walker-medium", [4, 6], ["timeout", "terminal"])
    ds = read_d4rl_hdf5(write_file(tmp_path / "w.hdf5", arrays), "walker2d-medium")
    assert ds.episode_starts.tolist() == [0, 4, 10]
    assert ds.provenance["trailing_unfinished_episode"] is False


def test_missing_timeouts_split_at_the_1000_step_cap(tmp_path):
    arrays = episode_arrays("hopper-medium", [2500], ["none"])
    arrays["terminals"][1199] = True  # 1000 steps (cap) + 200 steps ending in a terminal, then 1000 + 300
    arrays["timeouts"] = None
    ds = read_d4rl_hdf5(write_file(tmp_path / "old.hdf5", arrays), "hopper-medium")
    assert ds.episode_starts.tolist() == [0, 1000, 1200, 2200, 2500]
    assert ds.terminated.tolist() == [False, True, False, False]
    assert ds.truncated.tolist() == [True, False, True, True]
    assert "inferred" in ds.provenance["timeouts"]


def test_float_flags_and_float16_arrays_are_accepted(tmp_path):
    arrays = episode_arrays("halfcheetah-medium", [3, 4], ["timeout", "timeout"], dtype=np.float16)
    arrays["terminals"] = arrays["terminals"].astype(np.float32)
    arrays["timeouts"] = arrays["timeouts"].astype(np.float64)
    ds = read_d4rl_hdf5(write_file(tmp_path / "hc.hdf5", arrays), "halfcheetah-medium")
    assert ds.episode_starts.tolist() == [0, 3, 7]
    assert ds.observations.dtype == np.float32


def test_statistics_and_summary(tmp_path):
    arrays = episode_arrays("hopper-medium", [5, 7, 3], ["terminal", "timeout", "none"])
    ds = read_d4rl_hdf5(write_file(tmp_path / "h.hdf5", arrays), "hopper-medium")
    st = ds.statistics()
    obs = arrays["observations"].astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(st["state_mean"], obs.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(st["state_std"], obs.std(0) + 1e-6, rtol=1e-5)
    r = arrays["rewards"].astype(np.float32)
    returns = np.array([r[:5].sum(), r[5:12].sum()], dtype=np.float64)  # the trailing partial episode left out
    assert st["returns_exclude_trailing_unfinished_episode"] is True
    assert st["return_raw"]["max"] == pytest.approx(returns.max(), rel=1e-5)
    assert st["return_raw"]["mean"] == pytest.approx(returns.mean(), rel=1e-5)
    assert st["return_normalized"]["min"] == pytest.approx(normalized_score("hopper", returns.min()), rel=1e-5)
    assert (st["episodes"], st["transitions"]) == (3, 15)
    line = ds.summary()
    assert "\n" not in line and "d4rl" in line and str(tmp_path) in line and "comparable" in line


def test_regenerated_file_is_labelled_and_checked(tmp_path):
    arrays = episode_arrays("hopper-medium", [4, 4], ["timeout", "terminal"])
    attrs = {"decision_minrnn_regenerated": True, "data_version": 2, "task": "hopper-medium", "env_id": "Hopper-v5",
             "policy": "actor_130000", "policy_return": 1571.0, "seed": 0, "package_version": "0.1.0"}
    ds = read_d4rl_hdf5(write_file(tmp_path / "regen.hdf5", arrays, attrs=attrs), "hopper-medium")
    assert ds.source == "regenerated" and not ds.comparable_with_d4rl
    assert ds.provenance["policy"] == "actor_130000" and ds.provenance["policy_return"] == 1571.0
    assert "regenerated" in ds.summary()

    other = write_file(tmp_path / "other.hdf5", arrays, attrs={**attrs, "task": "hopper-expert"})
    with pytest.raises(DatasetError, match="hopper-expert"):
        read_d4rl_hdf5(other, "hopper-medium")
    no_task = {k: v for k, v in attrs.items() if k != "task"}
    with pytest.raises(DatasetError, match="task"):
        read_d4rl_hdf5(write_file(tmp_path / "nt.hdf5", arrays, attrs=no_task), "hopper-medium")
    with pytest.raises(DatasetError, match="Walker2d-v5"):
        read_d4rl_hdf5(write_file(tmp_path / "we.hdf5", arrays, attrs={**attrs, "env_id": "Walker2d-v5"}),
                       "hopper-medium")
    old = {k: v for k, v in attrs.items() if k != "data_version"}  # a file of data version 1
    with pytest.raises(DatasetError, match=r"regenerated data of version 1; .* `collect_dataset hopper-medium`"):
        read_d4rl_hdf5(write_file(tmp_path / "v1.hdf5", arrays, attrs=old), "hopper-medium")


def _good():
    return episode_arrays("hopper-medium", [5, 5], ["terminal", "timeout"])


def _bad_cases():
    """(name, function writing a bad file and returning its path, expected words in the message)."""

    def missing(p):
        return p

    def garbage(p):
        p.write_bytes(b"this is not hdf5 at all" * 100)
        return p

    def truncated(p):
        write_file(p, _good())
        data = p.read_bytes()
        p.write_bytes(data[: len(data) // 2])
        return p

    def no_actions(p):
        a = _good()
        with h5py.File(p, "w") as f:
            for k in ("observations", "rewards", "terminals", "timeouts"):
                f[k] = a[k]
        return p

    def mismatched(p):
        a = _good()
        a["actions"] = a["actions"][:-1]
        return write_file(p, a)

    def nan_obs(p):
        a = _good()
        a["observations"][3, 2] = np.nan
        return write_file(p, a)

    def inf_reward(p):
        a = _good()
        a["rewards"][7] = np.inf
        return write_file(p, a)

    def overflow(p):  # finite in float64, inf once cast to float32
        a = _good()
        a["actions"][1, 0] = 1e300
        return write_file(p, a)

    def wrong_obs(p):
        return write_file(p, episode_arrays("walker2d-medium", [5, 5], ["terminal", "timeout"]))

    def empty(p):
        a = episode_arrays("hopper-medium", [0], ["none"])
        return write_file(p, a)

    def obs_1d(p):
        a = _good()
        a["observations"] = a["observations"][:, 0]
        return write_file(p, a)

    return [
        ("missing", missing, "not found"),
        ("garbage", garbage, "corrupt"),
        ("truncated", truncated, "corrupt"),
        ("no_actions", no_actions, "missing key(s) actions"),
        ("mismatched", mismatched, "mismatched lengths"),
        ("nan_obs", nan_obs, "NaN/inf"),
        ("inf_reward", inf_reward, "rewards contain"),
        ("overflow", overflow, "actions contain"),
        ("wrong_obs", wrong_obs, "11-dim"),
        ("empty", empty, "empty"),
        ("obs_1d", obs_1d, "observations have shape"),
    ]


@pytest.mark.parametrize("case", range(11))
def test_bad_files_fail_with_one_line_naming_the_file(tmp_path, case):
    name, make, words = _bad_cases()[case]
    path = make(tmp_path / f"{name}.hdf5")
    with pytest.raises(DatasetError) as info:
        read_d4rl_hdf5(path, "hopper-medium")
    message = str(info.value)
    assert str(path) in message and words in message and "\n" not in message, message
