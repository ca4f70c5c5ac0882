"""Source resolution (`--data-source`): the auto order, strict sources, corrupt files never falling back, the
regenerated-data hook (a stand-in module here; the real one belongs to the behaviour work)."""

from __future__ import annotations

import socket
import types
from pathlib import Path

import pytest
from test_data_helpers import episode_arrays, write_file
from test_data_minari import create_minari

from decision_minrnn.behaviour.shipped import behaviour_fingerprint
from decision_minrnn.data import d4rl_file_path
from decision_minrnn.errors import DatasetError, RunFailure, UserInputError
from decision_minrnn.paths import regenerated_dataset_dir
from decision_minrnn.tasks import resolve_task
from decision_minrnn.workflows.datasets import load_dataset


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Point downloads at a closed local port: these tests never reach the internet."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("DECISION_MINRNN_D4RL_URL", f"http://127.0.0.1:{port}")


@pytest.fixture
def fake_regenerate(monkeypatch):
    """A stand-in for regeneration: writes a small regenerated file and counts the calls."""
    from decision_minrnn.workflows import datasets

    calls = []

    def regenerated_dataset_path(task) -> Path:
        return regenerated_dataset_dir() / f"{task.name}-regenerated-seed0.hdf5"

    def regenerate_dataset(task, *, seed: int = 0, transitions: int | None = None) -> Path:
        calls.append(task.name)
        path = regenerated_dataset_path(task)
        attrs = {"decision_minrnn_regenerated": True, "data_version": 2, "task": task.name, "env_id": "Hopper-v5",
                 "seed": seed, "behaviour_sha256": behaviour_fingerprint(task.env, task.quality)}
        return write_file(path, episode_arrays(task.name, [9, 3], ["terminal", "timeout"]), attrs=attrs)

    monkeypatch.setattr(datasets, "regenerated_dataset_path", regenerated_dataset_path)
    monkeypatch.setattr(datasets, "regenerate_dataset", regenerate_dataset)
    return types.SimpleNamespace(calls=calls, regenerated_dataset_path=regenerated_dataset_path)


def _d4rl_file(task: str, lengths=(6, 4)) -> Path:
    return write_file(d4rl_file_path(task), episode_arrays(task, list(lengths), ["terminal", "timeout"]))


def test_auto_prefers_the_d4rl_file_and_prints_one_summary_line(capsys):
    path = _d4rl_file("hopper-medium")
    create_minari("mujoco/hopper/medium-v0", episode_arrays("hopper-medium", [3], ["terminal"]), [3])
    ds = load_dataset("hopper-medium")
    assert ds.source == "d4rl" and ds.location == str(path)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0] == ds.summary()


def test_auto_falls_back_to_minari_then_regenerated(fake_regenerate, capsys):
    create_minari("mujoco/hopper/medium-v0", episode_arrays("hopper-medium", [3, 2], ["terminal", "timeout"]), [3, 2])
    assert load_dataset("hopper-medium").source == "minari"
    err = capsys.readouterr().err
    assert "trying Minari" in err and "could not download" in err

    ds = load_dataset("hopper-medium-replay")  # Minari has no medium-replay
    assert ds.source == "regenerated" and not ds.comparable_with_d4rl
    assert fake_regenerate.calls == ["hopper-medium-replay"]
    again = load_dataset("hopper-medium-replay", verbose=False)  # now cached: not regenerated twice
    assert fake_regenerate.calls == ["hopper-medium-replay"] and again.num_transitions == 12


def test_corrupt_d4rl_file_is_an_error_not_a_fallback(fake_regenerate):
    path = d4rl_file_path("hopper-medium")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not hdf5")
    create_minari("mujoco/hopper/medium-v0", episode_arrays("hopper-medium", [3], ["terminal"]), [3])
    with pytest.raises(DatasetError, match=str(path)):
        load_dataset("hopper-medium")
    assert fake_regenerate.calls == []


def test_corrupt_minari_dataset_is_an_error_not_a_fallback(fake_regenerate):
    from minari.storage import get_dataset_path

    create_minari("mujoco/hopper/medium-v0", episode_arrays("hopper-medium", [3], ["terminal"]), [3])
    (get_dataset_path("mujoco/hopper/medium-v0") / "data" / "main_data.hdf5").write_bytes(b"x")
    with pytest.raises(DatasetError, match="cannot read"):
        load_dataset("hopper-medium", verbose=False)
    assert fake_regenerate.calls == []


def test_strict_sources(fake_regenerate):
    with pytest.raises(RunFailure, match="could not download"):  # d4rl only: no fallback
        load_dataset("hopper-medium", "d4rl")
    with pytest.raises(DatasetError, match="file not found"):
        load_dataset("hopper-medium", "d4rl", download=False)
    with pytest.raises(DatasetError, match="not installed"):
        load_dataset("hopper-medium", "minari")
    assert load_dataset("hopper-medium", "regenerated", verbose=False).source == "regenerated"
    _d4rl_file("hopper-medium")
    assert load_dataset("hopper-medium", "regenerated", verbose=False).source == "regenerated"
    assert load_dataset("hopper-medium", "d4rl", verbose=False).source == "d4rl"


def test_v2_suffix_means_d4rl_only(fake_regenerate):
    create_minari("mujoco/hopper/medium-v0", episode_arrays("hopper-medium", [3], ["terminal"]), [3])
    with pytest.raises(RunFailure):  # no D4RL file, no network: must not fall back to Minari
        load_dataset("hopper-medium-v2")
    with pytest.raises(UserInputError, match="-v2"):
        load_dataset("hopper-medium-v2", "minari")
    _d4rl_file("hopper-medium")
    assert load_dataset("hopper-medium-v2", verbose=False).source == "d4rl"


def test_regenerated_file_at_a_d4rl_name_is_refused():
    path = d4rl_file_path("hopper-medium")
    attrs = {"decision_minrnn_regenerated": True, "data_version": 2, "task": "hopper-medium"}
    write_file(path, episode_arrays("hopper-medium", [4], ["terminal"]), attrs=attrs)
    with pytest.raises(DatasetError, match="D4RL v2 file name"):
        load_dataset("hopper-medium", verbose=False)


def test_regenerated_cache_without_provenance_is_refused(fake_regenerate):
    path = fake_regenerate.regenerated_dataset_path(resolve_task("hopper-medium"))
    write_file(path, episode_arrays("hopper-medium", [4], ["terminal"]))
    with pytest.raises(DatasetError, match="decision_minrnn_regenerated"):
        load_dataset("hopper-medium", "regenerated", verbose=False)


def test_bad_source_and_task_names():
    with pytest.raises(UserInputError, match="unknown data source 'd4rl2'"):
        load_dataset("hopper-medium", "d4rl2")
    with pytest.raises(UserInputError, match="did you mean 'hopper-medium'"):
        load_dataset("hoper-medium")


def test_a_cached_file_of_an_older_data_version_is_rebuilt(fake_regenerate, capsys):
    path = fake_regenerate.regenerated_dataset_path(resolve_task("hopper-medium"))
    write_file(path, episode_arrays("hopper-medium", [4], ["terminal"]),
               attrs={"decision_minrnn_regenerated": True, "task": "hopper-medium", "env_id": "Hopper-v5"})
    ds = load_dataset("hopper-medium", "regenerated", verbose=False)
    assert fake_regenerate.calls == ["hopper-medium"] and ds.num_episodes == 2
    assert "regenerated data of version 1; rebuilding it" in capsys.readouterr().err


def test_a_cached_file_from_other_behaviour_policies_is_rebuilt_and_a_current_one_reused(fake_regenerate, capsys):
    task = resolve_task("hopper-medium")
    path = fake_regenerate.regenerated_dataset_path(task)
    attrs = {"decision_minrnn_regenerated": True, "data_version": 2, "task": task.name, "env_id": "Hopper-v5",
             "behaviour_sha256": "0" * 64}
    write_file(path, episode_arrays("hopper-medium", [4], ["terminal"]), attrs=attrs)
    ds = load_dataset("hopper-medium", "regenerated", verbose=False)
    assert fake_regenerate.calls == ["hopper-medium"] and ds.num_episodes == 2
    assert "other behaviour policies than the shipped ones; rebuilding it" in capsys.readouterr().err
    load_dataset("hopper-medium", "regenerated", verbose=False)  # now current: read from the cache
    assert fake_regenerate.calls == ["hopper-medium"]


def test_the_fingerprint_follows_the_shipped_files_of_each_quality(tmp_path, monkeypatch):
    from decision_minrnn.behaviour import shipped

    env = resolve_task("hopper-medium").env
    before = {q: behaviour_fingerprint(env, q) for q in ("random", "medium", "expert", "medium-expert", "medium-replay")}
    assert len(set(before.values())) == 5
    copy = tmp_path / "hopper"
    copy.mkdir()
    for f in shipped.behaviour_dir(env).iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    (copy / "actor_expert.safetensors").write_bytes(b"re-shipped")
    monkeypatch.setattr(shipped, "behaviour_dir", lambda e: copy)
    after = {q: behaviour_fingerprint(env, q) for q in before}
    assert [q for q in before if before[q] != after[q]] == ["expert", "medium-expert"]
