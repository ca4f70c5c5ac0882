"""sweep_agents: a tiny spec end to end (local executor, resume, dry run, Ray) and the report on known numbers."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import load_benchmark_script
from test_data_helpers import episode_arrays, write_file

from decision_minrnn.cli.sweep import main as sweep_main
from decision_minrnn.sweep.cells import parse_only, plan_cells, select_cells
from decision_minrnn.sweep.report import build_report, curve_panels, interval_text, t_quantile
from decision_minrnn.sweep.runner import expected_data_means, plan, read_results
from decision_minrnn.sweep.spec import load_spec, spec_names
from decision_minrnn.tasks import normalized_score, published_scores, published_source, resolve_task

BIN = Path(sys.executable).parent
TASKS = ["hopper-medium", "walker2d-medium"]
TINY = {"d_model": 16, "n_layers": 1, "batch_size": 4, "context_len": 5, "steps": 6, "dropout": 0.0,
        "log_every": 2, "checkpoint_every": 3, "eval_every": 0}


@pytest.fixture
def tiny_spec(tmp_path):
    """2 tasks x 2 models x 2 seeds, 6 training steps, 2 evaluation episodes; synthetic D4RL files."""
    for i, task in enumerate(TASKS):
        arrays = episode_arrays(task, [40, 25, 60], ["terminal", "timeout", "terminal"], seed=i)
        arrays["observations"][:, 0] = np.sin(np.arange(len(arrays["rewards"])))  # keep the states O(1)
        env = resolve_task(task).env.name
        write_file(Path(os.environ["D4RL_DATASET_DIR"]) / f"{env}_medium-v2.hdf5", arrays)
    spec = {
        "name": "tiny", "tasks": TASKS, "seeds": [0, 1], "data_source": "d4rl", "overrides": TINY,
        "models": [{"name": "mingru", "label": "minGRU", "config": "quick", "backbone": "mingru"},
                   {"name": "bc", "label": "MLP-BC", "config": "quick", "backbone": "mlp-bc"}],
        "order": [["bc"], ["mingru"]],
        "protocol": {"eval_episodes": 2, "eval_num_envs": 2},
        "cost": {"source": "made up for the test", "cpu_minutes": {"mingru": 2, "bc": 1}},
        "report": {"reference": "bc"},
    }
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(spec))
    return path


def rows_by_key(out):
    rows = read_results(out / "results.jsonl")
    return {(r["task"], r["model"], r["seed"]): r for r in rows}, rows


def test_shipped_specs_load_and_order():
    assert {"hopper-medium", "d4rl-nine", "d4rl-nine-dt"} <= set(spec_names())
    nine = load_spec("d4rl-nine")
    assert len(nine.tasks) == 9 and len(nine.models) == 7 and nine.seeds == (0, 1, 2)
    cells = plan_cells(nine)
    assert len(cells) == 189
    # minGRU, DT and BC on every task and seed before any other model; seeds are the outer loop inside a group
    assert {c.model.name for c in cells[:81]} == {"mingru", "dt", "bc"}
    assert {c.model.name for c in cells[81:135]} == {"minlstm", "transformer"}
    assert [c.seed for c in cells[:27]] == [0] * 27
    dt = load_spec("d4rl-nine-dt")
    assert dt.seeds == (0, 1, 2, 3, 4) and dt.model("dt").config == "transformer"
    some = select_cells(cells, parse_only([["model=mingru,dt", "seed=0"], ["task=hopper-medium"]]))
    assert len(some) == 18 + 21 - 2  # the union: hopper-medium mingru/dt seed0 is in both


def test_dry_run_lists_cells_commands_and_estimate(tiny_spec):
    proc = subprocess.run([str(BIN / "sweep_agents"), str(tiny_spec), "--dry-run", "--out", "sw"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    cell_lines = [ln for ln in lines if "train_agent --env" in ln]
    assert len(cell_lines) == 8
    assert cell_lines[0].split()[:4] == ["hopper-medium", "bc", "seed0", "new"]  # BC's group first
    assert "--set eval_episodes=2" in cell_lines[0] and "--out sw/cells/hopper-medium/bc/seed0" in cell_lines[0]
    assert "estimated CPU time for 8 cells: 12 core-minutes" in proc.stdout
    assert "source: made up for the test" in proc.stdout
    bad = subprocess.run([str(BIN / "sweep_agents"), str(tiny_spec), "--dry-run", "--only", "model=gru"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "matches no cell" in bad.stderr


def test_dry_run_estimates_at_the_measured_minutes_of_finished_cells(tiny_spec):
    """The second estimate uses the median wall minutes of the cells that ran in one go (the latest row of a cell,
    resumed cells left out), and the spec's minutes for a model without such a cell."""
    out = Path("sw")
    out.mkdir()
    rows = [{"task": "hopper-medium", "model": "mingru", "seed": 0, "wall_s": 999.0, "actions": ["train"]},
            {"task": "hopper-medium", "model": "mingru", "seed": 0, "wall_s": 300.0, "actions": ["train"]},  # latest
            {"task": "hopper-medium", "model": "mingru", "seed": 1, "wall_s": 500.0, "actions": ["train"]},
            {"task": "walker2d-medium", "model": "mingru", "seed": 0, "wall_s": 9999.0, "actions": ["resume"]}]
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    proc = subprocess.run([str(BIN / "sweep_agents"), str(tiny_spec), "--dry-run", "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "3 done, 5 to run" in proc.stdout
    # to run: mingru walker seed 1 at the measured median (300 + 500) / 2 s = 6.67 min, 4 BC cells at 1 min
    assert "at this sweep's measured minutes: 11 core-minutes" in proc.stdout
    assert "mingru 6.7 (n=2)" in proc.stdout and "the spec's minutes for bc (no such cell yet)" in proc.stdout
    assert "estimated CPU time for 5 cells: 6 core-minutes" in proc.stdout  # the spec's: 2 + 4 x 1


def test_local_sweep_resumes_and_skips_finished_cells(tiny_spec):
    out = Path("sw")
    common = [str(tiny_spec), "--out", str(out), "--no-progress"]
    assert sweep_main([*common, "--only", "task=hopper-medium", "--jobs", "2"]) == 0
    done, rows = rows_by_key(out)
    assert len(rows) == 4 and {k[0] for k in done} == {"hopper-medium"}
    first = {k: (out / r["cell_dir"] / "model.safetensors").stat().st_mtime_ns for k, r in done.items()}

    # An interrupted walker cell: trained to its checkpoint at step 3 of 6, then "killed" (weights, metrics gone).
    spec = load_spec(tiny_spec)
    cell = next(c for c in plan_cells(spec) if c.key == ("walker2d-medium", "mingru", 0))
    argv = next(p.argv for p in plan(spec, out)[0] if p.cell.key == cell.key)
    subprocess.run([str(BIN / "train_agent"), *argv, "--set", "steps=3"], check=True, capture_output=True)
    killed = out / cell.rel_dir
    (killed / "model.safetensors").unlink()
    (killed / "metrics.json").unlink()
    # A cell killed before its first checkpoint: only run.json (train_agent alone would refuse the folder).
    early = out / "cells" / "walker2d-medium" / "bc" / "seed1"
    early.mkdir(parents=True)
    (early / "run.json").write_text("{}")

    assert sweep_main([*common, "--jobs", "2"]) == 0
    done, rows = rows_by_key(out)
    assert len(rows) == 8 and len(done) == 8
    for k, mtime in first.items():  # finished cells were skipped, not retrained
        assert (out / done[k]["cell_dir"] / "model.safetensors").stat().st_mtime_ns == mtime
        assert (out / done[k]["cell_dir"] / "sweep.log").read_text().count("train_agent --env") == 1
    log = (killed / "sweep.log").read_text()
    assert "--resume" in log and "from step 3" in log and done[cell.key]["actions"] == ["resume"]
    assert done[("walker2d-medium", "bc", 1)]["actions"] == ["restart"]
    assert "restarting cleanly" in (early / "sweep.log").read_text()

    for (task, model, seed), r in done.items():
        assert len(r["returns"]) == 2 and len(r["lengths"]) == 2 and r["episodes"] == 2
        assert math.isclose(r["normalized_mean"], float(np.mean(normalized_score(task, r["returns"]))), rel_tol=1e-9)
        assert r["data_source"] == "d4rl" and "data_version" in r and r["rollout"] in ("recurrent", "window")
        assert r["env_seeds"] and r["eval_seed"] is not None and r["dataset_return_normalized_mean"] is not None
        config = json.loads((out / r["cell_dir"] / "config.json").read_text())["config"]
        canonical = json.dumps(config, sort_keys=True, separators=(",", ":"))
        assert r["config_hash"] == hashlib.sha256(canonical.encode()).hexdigest()
        assert config["steps"] == 6 and config["d_model"] == 16 and config["backbone"] == {"mingru": "mingru",
                                                                                               "bc": "mlp-bc"}[model]
        assert r["code_version"]["decision_minrnn"] and r["wall_s"] > 0
        # training time is the optimisation alone (carried over the resume), below the cell's wall time
        assert 0 < r["train_s"] < r["wall_s"] and r["policy_ms_per_action"] > 0 and len(r["load_avg"]) == 3
        assert r["train_cpu_s"] > 0
    # Everything done: a rerun runs nothing, and the report works on the real rows.
    assert sweep_main([*common]) == 0
    assert len(read_results(out / "results.jsonl")) == 8
    assert sweep_main([*common, "--report", "--reps", "20", "--no-plots"]) == 0
    text = (out / "report.md").read_text()
    assert "| hopper-medium |" in text and "| walker2d-medium |" in text
    cost = json.loads((out / "report.json").read_text())["costs"]["mingru"]
    trained = [r for r in rows if r["model"] == "mingru" and r["actions"] == ["train"]]  # not the resumed cell
    assert cost["cells"] == 4 and cost["cell_minutes"]["n"] == len(trained) == 3
    assert cost["cell_minutes"]["median"] == pytest.approx(np.median([r["wall_s"] / 60 for r in trained]))
    assert cost["train_minutes"]["n"] == 4 and "## Cost per model" in text


def _write_hopper_data(seed: int) -> None:
    """The tiny spec's hopper-medium file, as another machine would regenerate it with `seed` (other samples)."""
    arrays = episode_arrays("hopper-medium", [40, 25, 60], ["terminal", "timeout", "terminal"], seed=seed)
    arrays["observations"][:, 0] = np.sin(np.arange(len(arrays["rewards"])))
    write_file(Path(os.environ["D4RL_DATASET_DIR"]) / "hopper_medium-v2.hdf5", arrays)


def test_a_machine_with_other_data_leaves_the_task_for_another(tiny_spec, capsys):
    """A task's new cells must find the dataset its finished cells were trained on; elsewhere they are left, listed."""
    out = Path("sw")
    common = [str(tiny_spec), "--out", str(out), "--no-progress", "--only", "task=hopper-medium", "model=bc"]
    assert sweep_main([*common, "seed=0"]) == 0
    _write_hopper_data(seed=7)
    capsys.readouterr()
    assert sweep_main(common) == 0  # not a failure: the cell waits for a machine with the same data
    err = capsys.readouterr().err
    assert "1 cell not run" in err and "hopper-medium bc seed1" in err and "--allow-mixed-data" in err
    assert "has mean episode return" in err
    done, rows = rows_by_key(out)
    assert list(done) == [("hopper-medium", "bc", 0)]
    left = out / "cells" / "hopper-medium" / "bc" / "seed1"
    assert sorted(p.name for p in left.iterdir()) == ["sweep.log"]  # nothing trained or written but the log
    assert "--expect-data-mean" in (left / "sweep.log").read_text()

    assert sweep_main([*common, "--allow-mixed-data"]) == 0
    done, rows = rows_by_key(out)
    assert len(rows) == 2
    first, second = done[("hopper-medium", "bc", 0)], done[("hopper-medium", "bc", 1)]
    assert first["dataset_return_raw_mean"] != second["dataset_return_raw_mean"]  # the report's "mixed data"


def test_expected_data_mean_is_the_one_most_finished_cells_of_the_task_saw():
    rows = [{"task": "hopper-medium", "model": m, "seed": s, "dataset_return_raw_mean": v}
            for m, s, v in (("bc", 0, 10.5), ("dt", 0, 10.5), ("bc", 1, 12.0), ("dt", 1, 12.0), ("dt", 1, 10.5),
                            ("bc", 2, None))]  # dt seed 1 was rerun: its last row counts
    rows.append({"task": "walker2d-medium", "model": "bc", "seed": 0, "dataset_return_raw_mean": 7.25})
    assert expected_data_means(rows) == {"hopper-medium": 10.5, "walker2d-medium": 7.25}


def test_resume_refuses_a_dataset_other_than_the_checkpoints(tiny_spec):
    """A checkpoint continues only on the data it was trained on (exit 3); the folder is left as it was."""
    out = Path("sw")
    spec = load_spec(tiny_spec)
    argv = next(p.argv for p in plan(spec, out)[0] if p.cell.key == ("hopper-medium", "bc", 0))
    train = [str(BIN / "train_agent"), *argv, "--set", "steps=3"]
    subprocess.run(train, check=True, capture_output=True)
    run_dir = out / "cells" / "hopper-medium" / "bc" / "seed0"
    (run_dir / "metrics.json").unlink()
    (run_dir / "model.safetensors").unlink()
    before = sorted(p.name for p in (run_dir / "checkpoint").iterdir())
    _write_hopper_data(seed=7)
    proc = subprocess.run([str(BIN / "train_agent"), *argv, "--resume"], capture_output=True, text=True)
    assert proc.returncode == 3, proc.stderr
    assert f"the checkpoint in {run_dir} was trained on one with mean" in proc.stderr
    assert "it was not resumed" in proc.stderr
    assert sorted(p.name for p in (run_dir / "checkpoint").iterdir()) == before
    assert not (run_dir / "model.safetensors").exists()


def test_ray_executor_on_a_local_cluster(tiny_spec):
    ray = pytest.importorskip("ray")
    keep = ("HOME", "XDG_CACHE_HOME", "DECISION_MINRNN_CACHE", "D4RL_DATASET_DIR", "MINARI_DATASETS_PATH",
            "DECISION_MINRNN_D4RL_URL", "MUJOCO_GL", "MPLCONFIGDIR", "TORCH_HOME")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=80 * 2**20,
             runtime_env={"env_vars": {k: os.environ[k] for k in keep}})
    try:
        out = Path("sw-ray").resolve()
        assert sweep_main([str(tiny_spec), "--out", str(out), "--executor", "ray", "--only", "seed=0",
                           "task=hopper-medium", "--no-progress"]) == 0
    finally:
        ray.shutdown()
    done, rows = rows_by_key(out)  # written by the driver from what the Ray tasks returned
    assert set(done) == {("hopper-medium", "bc", 0), ("hopper-medium", "mingru", 0)}
    assert all(len(r["returns"]) == 2 and r["actions"] == ["train"] and r["host"] for r in rows)


def _rows(scores: dict, dataset: dict) -> list[dict]:
    """Results rows whose returns have exactly the given normalized scores (per task, model: one list per seed)."""
    rows = []
    for (task, model), per_seed in scores.items():
        env = resolve_task(task).env
        for seed, episode_scores in enumerate(per_seed):
            returns = [env.random_return + s / 100 * (env.expert_return - env.random_return) for s in episode_scores]
            rows.append({"task": task, "model": model, "seed": seed, "returns": returns, "normalized_mean": 999.0,
                         "backbone": {"bc": "mlp-bc"}.get(model, "transformer"), "data_source": "d4rl",
                         "comparable_with_d4rl": True,
                         "dataset_return_raw_mean": env.random_return + dataset[task] / 100 * (
                             env.expert_return - env.random_return)})
    return rows


SCORES = {  # normalized scores of each episode, per (task, model), one list per seed
    ("hopper-medium", "dt"): [[60, 70], [50, 50], [40, 44]],  # seed means 65, 50, 42
    ("hopper-medium", "bc"): [[50], [52], [54]],
    ("walker2d-medium", "dt"): [[70], [72], [74]],
    ("walker2d-medium", "bc"): [[30], [31], [35]],
    ("hopper-medium", "mingru"): [[90], [95], [100]],
    ("walker2d-medium", "mingru"): [[80], [85], [75]],
}
DATA = {"hopper-medium": 45.0, "walker2d-medium": 60.0}


def test_report_per_task_by_hand_without_rliable(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "rliable", None)  # as if not installed (as in CI): the per-task table works,
    monkeypatch.setitem(sys.modules, "scipy", None)  # with the t table when scipy is missing too
    rep = build_report(_rows(SCORES, DATA), tmp_path / "r", model_order=["mingru", "dt", "bc"], reference="dt")
    hop = rep["per_task"]["hopper-medium"]
    assert hop["dataset"] == pytest.approx(45.0)
    dt = hop["models"]["dt"]
    x = np.array([65.0, 50.0, 42.0])  # scores from the raw returns, not the rows' bogus normalized_mean
    half = 4.302652729911275 * x.std(ddof=1) / math.sqrt(3)  # t quantile 0.975 with 2 degrees of freedom
    assert dt["mean"] == pytest.approx(x.mean()) and dt["n"] == 3 and dt["seeds"] == {0: 65.0, 1: 50.0, 2: 42.0}
    assert dt["ci"] == pytest.approx([x.mean() - half, x.mean() + half], rel=1e-4)  # scipy or the table
    assert rep["models"] == ["bc", "mingru", "dt"]  # BC next to the data, then the spec's order
    md = (tmp_path / "r" / "report.md").read_text()
    assert f"| hopper-medium | 45.0 | 52.0 [{52 - 4.3027 * 2 / math.sqrt(3):.1f}, " in md
    assert not rep["aggregate"]["available"] and "install .[sweep]" in md
    assert "Mixed data" not in md and "datasets" not in hop


def test_report_names_the_datasets_of_a_task_with_mixed_data(tmp_path):
    """Cells of one task trained on different samples (regenerated on machines that round floats differently)."""
    rows = _rows(SCORES, DATA)
    env = resolve_task("hopper-medium").env
    for r in rows:
        if r["task"] == "hopper-medium" and r["seed"] == 2:
            r["dataset_return_raw_mean"] = env.random_return + 0.44 * (env.expert_return - env.random_return)
    rep = build_report(rows, tmp_path / "r", model_order=["mingru", "dt", "bc"], reference="dt", plots=False)
    hop = rep["per_task"]["hopper-medium"]
    assert hop["dataset_values_differ"] and "datasets" not in rep["per_task"]["walker2d-medium"]
    assert [g["normalized_mean"] for g in hop["datasets"]] == pytest.approx([45.0, 44.0])
    assert hop["datasets"][1]["cells"] == {"dt": [2], "bc": [2], "mingru": [2]}
    assert hop["dataset"] == pytest.approx((6 * 45.0 + 3 * 44.0) / 9)
    md = (tmp_path / "r" / "report.md").read_text()
    assert "| hopper-medium | 44.7 (mixed data) |" in md
    assert "Mixed data on hopper-medium: its cells were trained on datasets whose own means differ: 45.00 (" in md
    assert "44.00 (dt seed 2, bc seed 2, mingru seed 2)" in md


def test_report_shows_a_finished_cells_table_while_seeds_are_missing(tmp_path):
    """A model with fewer seeds on a task than the sweep's most is '...' in the finished-cells table, not a mean."""
    full = build_report(_rows(SCORES, DATA), tmp_path / "full", model_order=["mingru", "dt", "bc"], plots=False)
    assert "finished cells only" not in full["markdown"]  # every cell has every seed: one table
    rows = [r for r in _rows(SCORES, DATA) if not (r["task"] == "walker2d-medium" and r["model"] == "dt"
                                                   and r["seed"] == 2)]
    md = build_report(rows, tmp_path / "r", model_order=["mingru", "dt", "bc"], plots=False)["markdown"]
    first, finished = md.split("## Per task, finished cells only (all 3 seeds; \N{HORIZONTAL ELLIPSIS} = seeds")
    finished = finished.split("\n## ")[0]
    walker = next(ln for ln in first.splitlines() if ln.startswith("| walker2d-medium |"))
    assert "71.0 [" in walker and "(n=2)" in walker  # the partial mean stays in the first table, marked
    walker_done = next(ln for ln in finished.splitlines() if ln.startswith("| walker2d-medium |"))
    cells = [c.strip() for c in walker_done.strip("|").split("|")]
    assert cells[2].startswith("32.0 [") and cells[3].startswith("80.0 [")  # BC, minGRU: every seed
    assert cells[4] == "\N{HORIZONTAL ELLIPSIS}"  # DT: 2 of 3
    hop_first = next(ln for ln in first.splitlines() if ln.startswith("| hopper-medium |"))
    assert next(ln for ln in finished.splitlines() if ln.startswith("| hopper-medium |")) == hop_first


def test_report_aggregates_by_hand(tmp_path):
    pytest.importorskip("rliable")
    rep = build_report(_rows(SCORES, DATA), tmp_path / "r", model_order=["mingru", "dt", "bc"], reference="dt",
                       reps=200)
    agg = rep["aggregate"]
    assert agg["available"] and agg["reps"] == 200
    # IQM over minGRU's 6 runs x tasks: drop the lowest and highest (25% of 6, rounded down), mean of the rest
    assert agg["models"]["mingru"]["iqm"]["point"] == pytest.approx(np.mean([80, 85, 90, 95]))
    assert agg["models"]["mingru"]["mean"]["point"] == pytest.approx(np.mean([90, 95, 100, 80, 85, 75]))
    assert agg["models"]["bc"]["optimality_gap"]["point"] == pytest.approx(100 - np.mean([50, 52, 54, 30, 31, 35]))
    lo, hi = agg["models"]["mingru"]["iqm"]["ci"]
    assert 75 <= lo <= agg["models"]["mingru"]["iqm"]["point"] <= hi <= 100
    # P(X > DT), averaged over tasks: minGRU beats every DT run; BC vs DT on hopper: 5.5 of 9 pairs (a tie = 1/2)
    assert agg["probability_of_improvement"]["mingru"]["point"] == pytest.approx(1.0)
    assert agg["probability_of_improvement"]["bc"]["point"] == pytest.approx((5.5 / 9 + 0.0) / 2)
    assert {"aggregate_intervals", "performance_profile"} <= set(rep["plots"])
    assert (tmp_path / "r" / "performance_profile.png").stat().st_size > 1000
    assert json.loads((tmp_path / "r" / "report.json").read_text())["aggregate"]["models"]["dt"]["runs"] == 3


def test_report_published_column_costs_and_learning_curves(tmp_path):
    rows = _rows(SCORES, DATA)
    env = resolve_task("hopper-medium").env
    for i, r in enumerate(r for r in rows if r["model"] == "mingru" and r["task"] == "hopper-medium"):
        r.update(wall_s=60.0 * (10 + i), actions=["train"] if i < 2 else ["resume"], train_s=30.0 * (1 + i),
                 train_cpu_s=None if i == 2 else 12.0 * (1 + i),
                 policy_ms_per_action=0.1 * (1 + i), load_avg=[1.0, 1.0, 2.0 + i])
        # curve points at steps 100 and 200, and a third step only seed 0 reached; scores 10 * (seed + 1) * k
        r["learning_curve"] = [{"step": 100 * k, "normalized_mean": 999.0, "returns": [
            env.random_return + 10 * (i + 1) * k / 100 * (env.expert_return - env.random_return)]}
            for k in range(1, 4 if i == 0 else 3)]
    rep = build_report(rows, tmp_path / "r", model_order=["mingru", "dt", "bc"], reference="dt")
    md = (tmp_path / "r" / "report.md").read_text()
    pub = published_scores("hopper-medium")
    assert rep["per_task"]["hopper-medium"]["published"] == pub and set(pub) == {"DT", "BC"}
    assert f"| {pub['DT']['mean']:.1f} / {pub['BC']['mean']:.1f} |" in md and "not comparable" in md
    assert published_source()["commit"][:7] in md
    cost = rep["costs"]["mingru"]
    assert cost["cells"] == 6 and cost["cell_minutes"] == {"median": 10.5, "n": 2}  # the resumed cell left out
    assert cost["train_minutes"] == {"median": 1.0, "n": 3} and cost["load_15min"] == {"median": 3.0, "n": 3}
    assert cost["policy_ms_per_action"]["median"] == pytest.approx(0.2)
    assert cost["train_cpu_minutes"]["median"] == pytest.approx(0.3) and cost["train_cpu_minutes"]["n"] == 2
    assert "| mingru | 6 | 10.5 (n=2) | 1.0 (n=3) | 0.3 (n=2) | 0.200 (n=3) | 3.0 (n=3) |" in md
    assert rep["costs"]["dt"]["cell_minutes"] is None and "| dt | 6 | - | - | - | - | - |" in md
    curve = rep["learning_curves"]["hopper-medium"]["mingru"]  # from the raw returns, steps every seed has
    assert curve["steps"] == [100, 200] and curve["seeds"] == 3
    assert curve["mean"] == pytest.approx([20.0, 40.0])
    assert "walker2d-medium" not in rep["learning_curves"]
    if "learning_curves" in rep["plots"]:  # matplotlib present
        assert (tmp_path / "r" / "learning_curves.png").stat().st_size > 1000 and "learning_curves.png" in md


def test_learning_curve_legend_lists_every_model_and_panels_name_missing_seeds():
    """The figure's legend came from the first panel only: models first seen on a later task were missing, and its
    "(n=3)" was that task's seed count. Now every model is in it, and a panel says which curves average fewer."""
    curves = {"hopper-medium": {"bc": {"seeds": 3}, "dt": {"seeds": 3}},
              "walker2d-medium": {"dt": {"seeds": 2}, "s4": {"seeds": 1}, "bc": {"seeds": 3}}}
    titles, legend, n_max = curve_panels(curves, {"dt": "DT", "s4": "S4"}, ["bc", "mingru", "dt", "s4"])
    assert legend == ["bc", "dt", "s4"] and n_max == 3
    assert titles == {"hopper-medium": "hopper-medium",
                      "walker2d-medium": "walker2d-medium\n(of 3 seeds so far: DT n=2, S4 n=1)"}


def test_an_aggregate_over_one_run_per_task_shows_no_interval():
    """rliable's stratified bootstrap of one run per task is zero-width; the report must not print it as an interval."""
    stat = {"point": 53.14, "ci": [53.14, 53.14]}
    assert interval_text(stat, 1) == "53.1 (1 run: no interval)"
    assert interval_text({"point": 0.333, "ci": [0.2, 0.45]}, 3, 2) == "0.33 [0.20, 0.45]"


def test_aggregate_plots_name_a_one_run_model_as_having_no_interval(tmp_path, monkeypatch):
    """The plots draw rliable's zero-width bars for a model with one run per task; its name there says so."""
    pytest.importorskip("rliable")
    from rliable import plot_utils

    seen = {}
    real_intervals, real_profiles = plot_utils.plot_interval_estimates, plot_utils.plot_performance_profiles

    def intervals(point, ci, **kw):
        seen["intervals"] = list(kw["algorithms"])
        return real_intervals(point, ci, **kw)

    def profiles(profile, taus, **kw):
        seen["profile"] = list(profile)
        return real_profiles(profile, taus, **kw)

    monkeypatch.setattr(plot_utils, "plot_interval_estimates", intervals)
    monkeypatch.setattr(plot_utils, "plot_performance_profiles", profiles)
    scores = {**SCORES, ("hopper-medium", "s4"): [[61]], ("walker2d-medium", "s4"): [[62]]}  # seed 0 only
    build_report(_rows(scores, DATA), tmp_path / "r", model_order=["mingru", "dt", "bc", "s4"],
                 labels={"s4": "S4"}, reps=50)
    assert seen["intervals"] == ["bc", "mingru", "dt", "S4 (1 run: no interval)"]
    assert seen["profile"] == seen["intervals"]


def test_t_quantile_table_matches_scipy(monkeypatch):
    stats = pytest.importorskip("scipy.stats")
    exact = {d: float(stats.t.ppf(0.975, d)) for d in range(1, 31)}
    monkeypatch.setitem(sys.modules, "scipy", None)
    for d, q in exact.items():
        assert t_quantile(d) == pytest.approx(q, abs=1e-3)
    assert t_quantile(45) >= float(stats.t.ppf(0.975, 45))  # rounded down: never narrower


def test_only_a_changed_config_restarts_a_resumable_folder(tmp_path):
    from decision_minrnn.sweep.executors import _refused_as_other_run

    log = tmp_path / "sweep.log"
    log.write_text("error: --resume: x holds a different run: lr 0.1 vs 0.2\n")
    offset = log.stat().st_size
    assert _refused_as_other_run(log, 0)
    log.write_text(log.read_text() + "error: hopper_medium-v2.hdf5 is missing\n")
    assert not _refused_as_other_run(log, offset)  # a missing dataset never costs the checkpoint


def test_target_probe_evaluates_at_the_datasets_best_return(tiny_spec):
    """benchmarks/target_probe.py: the target is the best episode return of the cell's own file (read here with
    h5py), the episodes are the row's (its evaluation seed: evaluate_agent at that target reproduces them), BC (no
    target) is skipped, a rerun adds nothing, and the embedding-size ratio grows with the target as an affine embedding does."""
    import h5py

    from decision_minrnn.agent.folder import load_agent

    probe = load_benchmark_script("target_probe")
    out = Path("sw")
    assert sweep_main([str(tiny_spec), "--out", str(out), "--no-progress", "--only", "task=hopper-medium",
                       "seed=0"]) == 0
    assert probe.main([str(out), "--out", "probe"]) == 0
    (row,) = read_results(Path("probe/target_probe.jsonl"))  # minGRU only
    primary = next(r for r in read_results(out / "results.jsonl") if r["model"] == "mingru")
    with h5py.File(primary["data_location"]) as f:
        rewards, ends = f["rewards"][:], np.flatnonzero(f["terminals"][:] | f["timeouts"][:])
    best = max(rewards[a:b + 1].sum() for a, b in zip(np.r_[0, ends[:-1] + 1], ends))
    assert row["data_max_target"] == pytest.approx(best, rel=1e-6) and row["data_max_target"] != row["protocol_target"]
    layout = json.loads((out / primary["cell_dir"] / "config.json").read_text())["config"]["layout"]
    assert (row["model"], row["layout"], row["eval_seed"]) == ("mingru", layout, primary["eval_seed"])
    again = subprocess.run([str(BIN / "evaluate_agent"), str(out / primary["cell_dir"]), "--episodes", "2",
                            "--seed", str(primary["eval_seed"]), "--target-return", repr(row["data_max_target"]),
                            "--quiet", "--json", "re.json"], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert again.returncode == 0, again.stderr
    assert json.loads(Path("re.json").read_text())["returns"] == row["returns"]
    share = row["target_share"]
    assert share["protocol"] > 0 and share["data_max"] > 0 and share["protocol"] != share["data_max"]
    with h5py.File(primary["data_location"]) as f:  # the return embedding is affine: far out, the size doubles
        far = probe.target_share(*load_agent(out / primary["cell_dir"]), f["observations"][:], [1e7, 2e7])
    assert far[1] / far[0] == pytest.approx(2.0, rel=1e-3)
    assert probe.main([str(out), "--out", "probe"]) == 0  # nothing new to evaluate
    assert len(read_results(Path("probe/target_probe.jsonl"))) == 1
    assert "| hopper-medium | mingru (" in Path("probe/target_probe.md").read_text()


def test_secondary_rollout_scores_the_same_episodes_in_the_other_mode(tiny_spec):
    """benchmarks/secondary_rollout.py: same weights, same evaluation seed, the other mode; BC (one mode) skipped;
    a rerun adds nothing. The primary mode on that seed reproduces the row's returns, so the two columns score the
    same episodes."""
    secondary = load_benchmark_script("secondary_rollout")
    out = Path("sw")
    assert sweep_main([str(tiny_spec), "--out", str(out), "--no-progress", "--only", "task=hopper-medium",
                       "seed=0"]) == 0
    assert secondary.main([str(out), "--out", "sec"]) == 0
    rows = [json.loads(line) for line in Path("sec/secondary.jsonl").read_text().splitlines()]
    (row,) = rows  # minGRU only
    primary = next(r for r in read_results(out / "results.jsonl") if r["model"] == "mingru")
    assert (row["model"], row["primary_rollout"], row["rollout"]) == ("mingru", "recurrent", "window")
    assert row["eval_seed"] == primary["eval_seed"] and len(row["returns"]) == len(primary["returns"]) == 2
    assert row["primary_normalized_mean"] == pytest.approx(np.mean(normalized_score("hopper-medium",
                                                                                    primary["returns"])))
    again = subprocess.run([str(BIN / "evaluate_agent"), str(out / primary["cell_dir"]), "--episodes", "2",
                            "--seed", str(primary["eval_seed"]), "--rollout", "recurrent", "--quiet", "--json",
                            "re.json"], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert again.returncode == 0, again.stderr
    assert json.loads(Path("re.json").read_text())["returns"] == primary["returns"]
    assert secondary.main([str(out), "--out", "sec"]) == 0  # nothing new to evaluate
    assert len(Path("sec/secondary.jsonl").read_text().splitlines()) == 1
    assert "| hopper-medium | mingru | recurrent:" in Path("sec/secondary.md").read_text()
    # a row whose folder is gone (adopted from another sweep, or lost with its machine) is skipped, not fatal
    with open(out / "results.jsonl", "a") as f:
        f.write(json.dumps({**primary, "seed": 1, "cell_dir": "cells/hopper-medium/mingru/seed1"}) + "\n")
    assert secondary.main([str(out), "--out", "sec"]) == 0
    assert len(Path("sec/secondary.jsonl").read_text().splitlines()) == 1


def test_adopt_copies_only_the_same_cells_from_another_sweep(tiny_spec, tmp_path, capsys):
    from decision_minrnn.sweep.cells import config_hash
    from decision_minrnn.sweep.runner import final_evaluation_seed

    spec = load_spec(str(tiny_spec))
    planned = {p.cell.key: p for p in plan(spec, tmp_path / "x")[0]}

    def row(task, model, seed, **changes):
        p = planned.get((task, model, seed))
        base = {"task": task, "model": model, "seed": seed, "sweep": "other", "returns": [10.0, 12.0],
                "data_source": "d4rl", "data_version": None, "eval_seed": final_evaluation_seed(seed),
                "config_hash": config_hash(p.config) if p else "x", "wall_s": 61.5, "actions": ["train"],
                "finished_at": "2026-12-06T16:03:21+00:00"}
        return {**base, **changes}

    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps(r) + "\n" for r in [
        row("hopper-medium", "bc", 0),
        row("hopper-medium", "bc", 1, config_hash="0" * 64),  # trained with other settings
        row("walker2d-medium", "bc", 0, data_source="minari"),
        row("walker2d-medium", "mingru", 1, eval_seed=7),
        row("halfcheetah-medium", "bc", 0),  # not a task of this sweep: ignored
        row("hopper-medium", "mingru", 0),  # this sweep has it already: kept as it is
    ]))
    out = tmp_path / "sw"
    out.mkdir()
    mine = row("hopper-medium", "mingru", 0, sweep="tiny", returns=[1.0, 2.0])
    (out / "results.jsonl").write_text(json.dumps(mine) + "\n")
    assert sweep_main([str(tiny_spec), "--out", str(out), "--adopt", str(other)]) == 0
    log = capsys.readouterr().err
    assert "adopted hopper-medium bc seed0" in log and "kept    hopper-medium mingru seed0" in log
    assert "refused hopper-medium bc seed1: a different config" in log
    assert "refused walker2d-medium bc seed0: data source 'minari'" in log
    assert "refused walker2d-medium mingru seed1: final evaluation seed 7" in log
    by_key, rows = rows_by_key(out)
    assert len(rows) == 2 and by_key[("hopper-medium", "mingru", 0)]["returns"] == [1.0, 2.0]
    got = by_key[("hopper-medium", "bc", 0)]
    assert got["sweep"] == "tiny" and got["adopted_from"]["sweep"] == "other"
    assert got["returns"] == [10.0, 12.0] and got["wall_s"] == 61.5 and got["actions"] == ["train"]
    # a second run adds nothing; the adopted cell counts as done
    assert sweep_main([str(tiny_spec), "--out", str(out), "--adopt", str(other)]) == 0
    assert len(read_results(out / "results.jsonl")) == 2
    proc = subprocess.run([str(BIN / "sweep_agents"), str(tiny_spec), "--dry-run", "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert "2 done, 6 to run" in proc.stdout
    assert sweep_main([str(tiny_spec), "--out", str(out), "--adopt", str(tmp_path / "missing.jsonl")]) != 0
    assert "no such results file" in capsys.readouterr().err


def test_report_intervals_are_the_same_on_every_run(tmp_path):
    """rliable draws its bootstrap from NumPy's global generator (ignoring `random_state`): the report seeds it, so
    the same rows give the same intervals, and the caller's global generator is left as it was."""
    pytest.importorskip("rliable")
    import numpy as np

    from decision_minrnn.sweep.report import aggregates

    rng = np.random.default_rng(3)
    tasks, models = ["a", "b", "c"], ["x", "dt"]
    table = {t: {"models": {m: {"seeds": {s: float(v) for s, v in enumerate(rng.uniform(0, 100, 3))}} for m in models}}
             for t in tasks}
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    runs = [aggregates(table, tasks, models, reference="dt", reps=200, seed=0) for _ in range(2)]
    assert np.array_equal(np.random.get_state()[1], before)
    for key in ("iqm", "mean", "optimality_gap"):
        assert runs[0]["models"]["x"][key]["ci"] == runs[1]["models"]["x"][key]["ci"]
    assert runs[0]["probability_of_improvement"]["x"]["ci"] == runs[1]["probability_of_improvement"]["x"]["ci"]
    other = aggregates(table, tasks, models, reference="dt", reps=200, seed=1)
    assert other["models"]["x"]["mean"]["ci"] != runs[0]["models"]["x"]["mean"]["ci"]
