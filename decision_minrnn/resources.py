"""Locate the shipped data folders (`envs/`, `configs/`, `agents/`).

They live at the repository root in a source checkout and are mapped into the wheel as the packages
`decision_minrnn.envs`, `decision_minrnn.configs` and `decision_minrnn.agents`, so a non-editable install
works offline.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

_KINDS = ("envs", "configs", "agents")


def resource_dir(kind: str) -> Path:
    """Folder holding the shipped `kind` files (one of envs, configs, agents)."""
    if kind not in _KINDS:
        raise ValueError(f"unknown resource kind {kind!r}; expected one of {_KINDS}")
    try:
        return Path(str(importlib.resources.files(f"decision_minrnn.{kind}")))
    except ModuleNotFoundError:  # running from a source tree without an install
        return Path(__file__).resolve().parent.parent / kind
