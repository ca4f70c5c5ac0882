"""The pretrained decision agents shipped in agents/<task>/<backbone>/ load and act from an installed package."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from decision_minrnn.agent.folder import load_agent
from decision_minrnn.resources import resource_dir
from decision_minrnn.sweep.cells import Cell, expected_config, protocol_sets
from decision_minrnn.sweep.spec import load_spec

SHIPPED = sorted(p for p in resource_dir("agents").glob("*/*") if (p / "model.safetensors").is_file())


def test_an_agent_ships_and_each_task_ships_mingru_and_dt():
    tasks = {p.parent.name for p in SHIPPED}
    assert "hopper-medium" in tasks
    for task in tasks:  # the README compares the two: a task ships both or neither
        assert {p.name for p in SHIPPED if p.parent.name == task} >= {"mingru", "dt"}, task


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_agent_loads_and_evaluates(folder):
    """A shipped agent is a seed-0 cell of the nine-task sweep (hopper-medium's own study ran the same cells): the
    folder is named after the sweep's model (`dt` is the Transformer in DT's layout), and its backbone, layout and
    rollout are that model's."""
    model, meta = load_agent(folder)
    sweep = load_spec("d4rl-nine")
    assert folder.parent.name in sweep.tasks
    cell = Cell(folder.parent.name, sweep.model(folder.name), 0)
    expected = expected_config(cell, sweep, protocol_sets(sweep)[0])
    assert meta.task == folder.parent.name
    for name in ("backbone", "layout", "rollout", "d_model", "n_layers", "init"):
        assert getattr(meta.config, name) == expected[name], name
    recorded = json.loads((folder / "eval.json").read_text())
    assert recorded["episodes"] == len(recorded["returns"]) >= 10
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "evaluate_agent"), str(folder), "--episodes", "2", "--num-envs", "2",
         "--max-steps", "50", "--json", "ev.json", "--quiet"],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(Path("ev.json").read_text())
    assert len(result["returns"]) == 2 and all(length <= 50 for length in result["lengths"])
