"""Dataset figures next to D4RL v2's (issue 12): the figures on hand-computed data, the target rules, the shipped
table of D4RL figures, and `collect_dataset --stats`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from test_data_helpers import episode_arrays, in_memory_dataset, write_file

from decision_minrnn.behaviour.regenerate import regenerated_dataset_path
from decision_minrnn.behaviour.shipped import behaviour_fingerprint
from decision_minrnn.cli.collect import main
from decision_minrnn.data import TrajectoryDataset, d4rl_file_path, read_d4rl_hdf5
from decision_minrnn.data.d4rl import DATA_VERSION
from decision_minrnn.data.statistics import (
    FIGURES,
    MET,
    MISSED,
    NOT_APPLICABLE,
    UNKNOWN,
    compare,
    d4rl_figures,
    d4rl_statistics_table,
    dataset_statistics,
)
from decision_minrnn.resources import resource_dir
from decision_minrnn.tasks import env_specs, resolve_task, task_names

HOPPER_RANDOM, HOPPER_EXPERT = -20.272305, 3234.3  # D4RL's reference returns of hopper


def hopper_norm(r: float) -> float:
    return 100.0 * (r - HOPPER_RANDOM) / (HOPPER_EXPERT - HOPPER_RANDOM)


def hand_file(tmp_path, attrs=None):
    """hopper data: a terminal episode (3 rows, return 6), two time-outs (4 rows, 10; 2 rows, -2), an unfinished
    tail (5 rows, 500)."""
    arrays = episode_arrays("hopper-medium", [3, 4, 2, 5], ["terminal", "timeout", "timeout", "none"])
    arrays["rewards"] = np.array([1, 2, 3, 2.5, 2.5, 2.5, 2.5, -1, -1, 100, 100, 100, 100, 100], dtype=np.float64)
    return write_file(tmp_path / "hopper_medium-v2.hdf5", arrays, attrs=attrs)


def test_figures_by_hand(tmp_path):
    ours = dataset_statistics(read_d4rl_hdf5(hand_file(tmp_path), "hopper-medium"))

    assert list(ours) == list(FIGURES)
    assert (ours["episodes"], ours["transitions"]) == (4, 14)  # the unfinished tail is an episode and its rows count
    mean = (6 + 10 - 2) / 3  # returns of the finished episodes only
    std = math.sqrt(((6 - mean) ** 2 + (10 - mean) ** 2 + (-2 - mean) ** 2) / 3)  # population std
    assert ours["return_raw_mean"] == pytest.approx(mean)
    assert ours["return_raw_std"] == pytest.approx(std)
    assert (ours["return_raw_min"], ours["return_raw_max"]) == pytest.approx((-2, 10))
    assert ours["return_normalized_mean"] == pytest.approx(hopper_norm(mean))
    assert ours["return_normalized_std"] == pytest.approx(100 * std / (HOPPER_EXPERT - HOPPER_RANDOM))
    assert ours["return_normalized_min"] == pytest.approx(hopper_norm(-2))
    assert ours["return_normalized_max"] == pytest.approx(hopper_norm(10))
    assert ours["timeout_share"] == pytest.approx(2 / 3)  # of the 3 finished episodes; the tail is not counted
    assert ours["timeouts_present"] is True
    json.dumps(ours)  # plain JSON values


def test_terminal_wins_over_timeout_and_no_finished_episode(tmp_path):
    arrays = episode_arrays("hopper-medium", [3, 2], ["terminal", "terminal"])
    arrays["timeouts"][2] = True  # the first episode is both terminal and timed out at its last row: a terminal end
    ours = dataset_statistics(read_d4rl_hdf5(write_file(tmp_path / "a.hdf5", arrays), "hopper-medium"))
    assert ours["timeout_share"] == 0.0 and ours["timeouts_present"] is False

    only_tail = episode_arrays("hopper-medium", [4], ["none"])
    ours = dataset_statistics(read_d4rl_hdf5(write_file(tmp_path / "b.hdf5", only_tail), "hopper-medium"))
    assert ours["episodes"] == 1 and ours["timeout_share"] is None and ours["timeouts_present"] is False
    assert ours["return_raw_mean"] == pytest.approx(only_tail["rewards"].sum())  # the only episode is kept

    ours = dataset_statistics(in_memory_dataset("hopper-medium", [5, 7]))  # no provenance: both episodes finished
    assert ours["episodes"] == 2 and ours["timeout_share"] == 1.0


def test_minari_scores_are_rescaled_to_d4rl_references():
    base = in_memory_dataset("hopper-medium", [5, 7])
    ds = TrajectoryDataset(
        observations=base.observations, actions=base.actions, rewards=base.rewards, episode_starts=base.episode_starts,
        terminated=base.terminated, truncated=base.truncated, task=base.task, source="minari", location="<memory>",
        comparable_with_d4rl=False, score_label="Minari-normalized",
        provenance={"ref_min_score": -100.0, "ref_max_score": 900.0},
    )
    returns = ds.episode_returns()
    ours = dataset_statistics(ds)
    assert ours["return_normalized_mean"] == pytest.approx(hopper_norm(returns.mean()))
    assert ours["return_normalized_min"] == pytest.approx(hopper_norm(returns.min()))
    assert ours["return_normalized_std"] == pytest.approx(100 * returns.std() / (HOPPER_EXPERT - HOPPER_RANDOM))


def figures(**values):
    base = {k: None for k in FIGURES}
    return {**base, **values}


@pytest.mark.parametrize(
    "quality, ours, d4rl, target, status",
    [
        ("medium", {"return_normalized_mean": 49.9}, {"return_normalized_mean": 45.0}, "mean_within_5_points", MET),
        ("medium-expert", {"return_normalized_mean": 39.9}, {"return_normalized_mean": 45.0}, "mean_within_5_points",
         MISSED),
        ("medium", {"return_normalized_mean": 45.0}, {}, "mean_within_5_points", UNKNOWN),
        ("expert", {"return_normalized_mean": 10.0}, {"return_normalized_mean": 90.0}, "mean_within_5_points",
         NOT_APPLICABLE),
        ("random", {"return_raw_std": 60.0}, {"return_raw_std": 100.0}, "std_at_least_60pct", MET),
        ("medium", {"return_raw_std": 59.0}, {"return_raw_std": 100.0}, "std_at_least_60pct", MISSED),
        ("expert", {"return_raw_std": 59.0}, {}, "std_at_least_60pct", UNKNOWN),
        ("medium-replay", {"transitions": 130_000}, {"transitions": 100_000}, "medium_replay_transitions_within_30pct",
         MET),
        ("medium-replay", {"transitions": 69_000}, {"transitions": 100_000}, "medium_replay_transitions_within_30pct",
         MISSED),
        ("medium-replay", {"transitions": 100_000}, {}, "medium_replay_transitions_within_30pct", UNKNOWN),
        ("medium", {"transitions": 10}, {"transitions": 100_000}, "medium_replay_transitions_within_30pct",
         NOT_APPLICABLE),
        ("medium", {"timeouts_present": True}, {"timeouts_present": True}, "timeouts_present", MET),
        ("medium", {"timeouts_present": False}, {"timeouts_present": True}, "timeouts_present", MISSED),
        ("medium", {"timeouts_present": False}, {}, "timeouts_present", UNKNOWN),
        ("medium", {"timeouts_present": False}, {"timeouts_present": False}, "timeouts_present", NOT_APPLICABLE),
    ],
)
def test_compare_rules(quality, ours, d4rl, target, status):
    result = compare(figures(**ours), {"quality": quality, **figures(**d4rl)})
    assert set(result) == {"mean_within_5_points", "std_at_least_60pct", "medium_replay_transitions_within_30pct",
                           "timeouts_present"}
    assert result[target]["status"] == status
    assert result[target]["figure"] in FIGURES and result[target]["target"]


def test_compare_rejects_unknown_quality():
    with pytest.raises(ValueError, match="quality"):
        compare(figures(), {"quality": "medium-rare", **figures()})


def test_d4rl_table_covers_the_15_tasks_with_sources():
    table = d4rl_statistics_table()
    assert (resource_dir("envs") / "d4rl_v2_statistics.json").is_file()
    assert sorted(env_specs()) == ["halfcheetah", "hopper", "walker2d"]  # the table is not taken for an env spec
    assert sorted(table["tasks"]) == sorted(task_names()) and len(table["tasks"]) == 15
    assert table["figures"] == list(FIGURES)
    for name, entry in table["tasks"].items():
        task = resolve_task(name)
        assert entry["quality"] == task.quality and entry["d4rl_file"] == task.source.d4rl_file
        assert list(entry["figures"]) == list(FIGURES), name
        for fig_name, fig in entry["figures"].items():
            where = f"{name} {fig_name}"
            assert isinstance(fig["derived"], bool), where
            if fig["value"] is None:
                assert fig["note"].startswith("not found"), where
            else:
                assert isinstance(fig["source"], str) and fig["source"].strip(), where
                if fig["derived"]:
                    assert fig.get("note") or fig["source"] != "derived", where
        values = d4rl_figures(name)
        for k in ("mean", "min", "max"):  # normalized figures agree with the raw ones under D4RL's references
            raw, norm = values[f"return_raw_{k}"], values[f"return_normalized_{k}"]
            if raw is not None:
                assert norm == pytest.approx(task.env.normalized_score(raw), abs=1e-3), name

    hm = d4rl_figures("hopper-medium")  # the anchors
    assert round(hm["return_raw_std"]) == 379 and round(hm["return_raw_max"]) == 3222 and hm["timeouts_present"]
    sizes = [d4rl_figures(f"{env}-medium-replay")["transitions"] for env in ("halfcheetah", "hopper", "walker2d")]
    assert sizes == [202_000, 402_000, 302_000]


def test_collect_stats_on_regenerated_file(capsys):
    attrs = {"decision_minrnn_regenerated": True, "data_version": DATA_VERSION, "task": "hopper-medium",
             "env_id": "Hopper-v5", "policy": "actor_130000", "seed": 0, "package_version": "0.1.0",
             "behaviour_sha256": behaviour_fingerprint(resolve_task("hopper-medium").env, "medium")}  # current
    path = regenerated_dataset_path("hopper-medium")
    path.parent.mkdir(parents=True, exist_ok=True)
    hand_file(path.parent, attrs=attrs).rename(path)

    assert main(["--stats", "hopper-medium", "--json", "stats.json"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("hopper-medium: regenerated data (") and "hopper_medium-v2.hdf5" in out[0]
    rows = {line.split()[0]: line.split() for line in out[2:2 + len(FIGURES)]}
    assert list(rows) == list(FIGURES)
    assert rows["episodes"][1:3] == ["4", "2,187"] and rows["transitions"][1:3] == ["14", "1,000,000"]
    assert rows["return_raw_mean"][1] == f"{14 / 3:.1f}" and rows["timeout_share"][1] == "0.667"
    assert rows["timeout_share"][2:] == ["-", "not", "found"]
    targets = [line for line in out if line.startswith("target ")]
    assert len(targets) == 4 and any(line.startswith("target timeouts_present: met") for line in targets)

    saved = json.loads(Path("stats.json").read_text())
    assert saved["task"] == "hopper-medium" and saved["data_source"] == "regenerated"
    assert saved["ours"]["episodes"] == 4 and saved["d4rl"]["episodes"]["value"] == 2187
    assert saved["comparison"]["mean_within_5_points"]["status"] == MISSED


def test_collect_stats_on_d4rl_layout_file(capsys):
    path = d4rl_file_path(resolve_task("hopper-medium"))
    path.parent.mkdir(parents=True, exist_ok=True)
    hand_file(path.parent)
    assert main(["--stats", "hopper-medium", "--data-source", "d4rl"]) == 0
    out = capsys.readouterr().out
    assert "hopper-medium: d4rl data (" in out and "return_normalized_mean" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--stats", "hopper-medum"], "unknown task"),
        (["--stats", "hopper-medium", "--data-source", "elsewhere"], "invalid choice"),
        (["--stats", "hopper-medium", "hopper-medium"], "exactly one of"),
        (["hopper-medium", "--json", "x.json"], "go with --stats"),
        (["--stats", "hopper-medium-v2", "--data-source", "regenerated"], "D4RL v2 file"),
    ],
)
def test_stats_bad_input_exits_2_with_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:  # argparse exits itself; the rest returns the code
        raise SystemExit(main(argv))
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
