"""Locate the shipped data folders (`envs/`, `configs/`, `agents/`).

They live at the repository root in a source checkout and are mapped into the wheel as the packages
`decision_minrnn.envs`, `decision_minrnn.configs` and `decision_minrnn.agents`, so a non-editable install
works offline.
"""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path
from typing import Any

from .errors import UserInputError

_KINDS = ("envs", "configs", "agents")


def resource_dir(kind: str) -> Path:
    """Folder holding the shipped `kind` files (one of envs, configs, agents)."""
    if kind not in _KINDS:
        raise ValueError(f"unknown resource kind {kind!r}; expected one of {_KINDS}")
    try:
        return Path(str(importlib.resources.files(f"decision_minrnn.{kind}")))
    except ModuleNotFoundError:  # running from a source tree without an install
        return Path(__file__).resolve().parent.parent / kind


def read_named_json(folder: Path, name_or_file: str | Path, what: str) -> tuple[Path, Any]:
    """A JSON file given by path, or by name among the shipped `folder/*.json`; one-line errors name the choices."""
    path = Path(name_or_file)
    if not (path.suffix == ".json" and path.is_file()):
        path = folder / f"{name_or_file}.json"
        if not path.is_file():
            names = ", ".join(sorted(p.stem for p in folder.glob("*.json"))) or "(none shipped)"
            raise UserInputError(f"unknown {what} {str(name_or_file)!r}: not a JSON file, and not one of {names}")
    try:
        return path, json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserInputError(f"{what} file {path} is not valid JSON: {e}") from None
