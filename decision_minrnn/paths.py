"""Where caches and datasets live on disk (docs/architecture.md, Files), read from the environment at call time."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """`$DECISION_MINRNN_CACHE`, else `$XDG_CACHE_HOME/decision_minrnn`, else `~/.cache/decision_minrnn`."""
    if os.environ.get("DECISION_MINRNN_CACHE"):
        return Path(os.environ["DECISION_MINRNN_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "decision_minrnn"


def d4rl_dataset_dir() -> Path:
    """`$D4RL_DATASET_DIR`, default `~/.d4rl/datasets` (the d4rl package's own default)."""
    return Path(os.environ.get("D4RL_DATASET_DIR", "~/.d4rl/datasets")).expanduser()


def regenerated_dataset_dir() -> Path:
    """This package's own D4RL-protocol datasets (never named like a D4RL v2 file)."""
    return cache_dir() / "regenerated"


def behaviour_run_dir() -> Path:
    """SAC behaviour-training runs (replay buffers, snapshots): machine-local, never in git."""
    return cache_dir() / "behaviour_runs"
