"""The Minari reader on datasets the tests create under the temporary MINARI_DATASETS_PATH (no jax, no download)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from test_data_helpers import episode_arrays, write_file

from decision_minrnn.data import minari_available, read_d4rl_hdf5, read_minari
from decision_minrnn.errors import DatasetError

REF_MIN, REF_MAX = -20.0, 3000.0


def create_minari(dataset_id: str, arrays: dict, lengths: list[int], *, refs: bool = True) -> None:
    """Write `arrays` (D4RL layout, episodes ending by terminal or timeout) as a Minari dataset.

    Minari keeps one more observation per episode than rewards: the final observation is appended (any value).
    """
    import minari
    from minari.data_collector import EpisodeBuffer

    buffers, row = [], 0
    for i, n in enumerate(lengths):
        sl = slice(row, row + n)
        final_obs = arrays["observations"][row + n - 1] + 0.5
        buffers.append(EpisodeBuffer(
            id=i,
            observations=np.concatenate([arrays["observations"][sl], final_obs[None]]),
            actions=arrays["actions"][sl],
            rewards=arrays["rewards"][sl],
            terminations=arrays["terminals"][sl],
            truncations=arrays["timeouts"][sl],
            infos={},
        ))
        row += n
    kwargs = {"ref_min_score": REF_MIN, "ref_max_score": REF_MAX} if refs else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # minari warns about missing author/description/code link
        minari.create_dataset_from_buffers(dataset_id, buffers, env="Hopper-v5", algorithm_name="test", **kwargs)


def test_minari_and_d4rl_give_the_same_trajectories(tmp_path):
    lengths = [5, 8, 3]
    arrays = episode_arrays("hopper-medium", lengths, ["terminal", "timeout", "terminal"])
    create_minari("mujoco/hopper/medium-v0", arrays, lengths)
    assert minari_available("hopper-medium")

    m = read_minari("hopper-medium")
    d = read_d4rl_hdf5(write_file(tmp_path / "h.hdf5", arrays), "hopper-medium")

    for key in ("observations", "actions", "rewards", "episode_starts", "terminated", "truncated"):
        np.testing.assert_array_equal(getattr(m, key), getattr(d, key), err_msg=key)
    sm, sd = m.statistics(), d.statistics()
    for key in ("episodes", "transitions", "state_mean", "state_std", "return_raw", "episode_length"):
        assert sm[key] == sd[key], key
    assert m.source == "minari" and not m.comparable_with_d4rl and m.score_label == "Minari-normalized"
    assert m.provenance["ref_min_score"] == REF_MIN and m.provenance["ref_max_score"] == REF_MAX
    returns = d.episode_returns()
    np.testing.assert_allclose(m.normalized_score(returns), 100 * (returns - REF_MIN) / (REF_MAX - REF_MIN))
    assert "Minari-normalized" in m.summary() and "no (Minari" in m.summary()


def test_minari_without_references_is_not_comparable():
    lengths = [4, 4]
    arrays = episode_arrays("hopper-expert", lengths, ["terminal", "timeout"])
    create_minari("mujoco/hopper/expert-v0", arrays, lengths, refs=False)
    m = read_minari("hopper-expert")
    assert m.score_label == "D4RL-normalized" and not m.comparable_with_d4rl
    assert "none in the dataset" in m.provenance["references"]


def test_minari_missing_or_absent_quality():
    with pytest.raises(DatasetError, match="minari download mujoco/hopper/medium-v0"):
        read_minari("hopper-medium")
    with pytest.raises(DatasetError, match="Minari has no dataset for hopper-medium-replay"):
        read_minari("hopper-medium-replay")
    assert not minari_available("hopper-medium-replay")


def test_minari_wrong_env_and_corrupt_dataset():
    lengths = [4, 4]
    arrays = episode_arrays("walker2d-medium", lengths, ["terminal", "timeout"])  # 17-dim observations
    create_minari("mujoco/hopper/medium-v0", arrays, lengths)
    with pytest.raises(DatasetError, match="11-dim"):
        read_minari("hopper-medium")

    from minari.storage import get_dataset_path

    main = get_dataset_path("mujoco/hopper/medium-v0") / "data" / "main_data.hdf5"
    main.write_bytes(b"garbage" * 50)
    with pytest.raises(DatasetError) as info:
        read_minari("hopper-medium")
    assert "cannot read" in str(info.value) and "mujoco/hopper/medium-v0" in str(info.value)
    assert "\n" not in str(info.value)
