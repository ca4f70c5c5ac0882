"""Test isolation: every test gets its own HOME, caches, dataset folders and working directory.

Nothing the suite does can touch the user's real caches or datasets, or read `../shared`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(1)

@pytest.fixture(autouse=True)
def isolated_environment(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.setenv("DECISION_MINRNN_CACHE", str(home / ".cache" / "decision_minrnn"))
    monkeypatch.setenv("D4RL_DATASET_DIR", str(home / "d4rl"))
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(home / "minari"))
    # Never reach the real D4RL server from a test: downloads go to a closed local port unless a test says otherwise.
    monkeypatch.setenv("DECISION_MINRNN_D4RL_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("TORCH_HOME", str(home / "torch"))
    monkeypatch.setenv("MPLCONFIGDIR", str(home / "mpl"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MKL_NUM_THREADS", "1")
    monkeypatch.setenv("MUJOCO_GL", "disable")
    monkeypatch.chdir(work)
    yield


@pytest.fixture
def hopper_file(isolated_environment):
    """A small synthetic hopper-medium D4RL file in $D4RL_DATASET_DIR (for end-to-end training tests)."""
    from test_data_helpers import episode_arrays, write_file

    arrays = episode_arrays("hopper-medium", [40, 25, 60, 33], ["terminal", "timeout", "terminal", "none"], seed=1)
    arrays["observations"][:, 0] = np.sin(np.arange(len(arrays["rewards"])))  # keep the states O(1)
    path = Path(os.environ["D4RL_DATASET_DIR"]) / "hopper_medium-v2.hdf5"
    return write_file(path, arrays)
