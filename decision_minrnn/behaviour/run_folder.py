"""The layout of a SAC behaviour-run folder, written by `sac_training` and read by `shipping`.

It is the layout of the SAC runs the project started from, so both kinds of run ship the same way:
`setup.json`, `progress.jsonl` (one row per snapshot: `step`, deterministic `eval_return_mean` ...),
`actors/actor_<step:07d>.safetensors`, `train_stream.npz` (compact stream, see `layout.py`), `sac_latest.zip` (SB3).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

SETUP = "setup.json"
PROGRESS = "progress.jsonl"
STREAM = "train_stream.npz"
MODEL = "sac_latest.zip"
ACTORS = "actors"
_ACTOR_NAME = re.compile(r"^actor_(\d+)\.safetensors$")


def actor_path(run: Path, step: int) -> Path:
    return run / ACTORS / f"actor_{step:07d}.safetensors"


def snapshot_steps(run: Path) -> dict[int, Path]:
    """Actor snapshots by training step."""
    found = {}
    for p in sorted((run / ACTORS).glob("actor_*.safetensors")):
        if m := _ACTOR_NAME.match(p.name):
            found[int(m.group(1))] = p
    return found


def read_progress(run: Path) -> list[dict[str, Any]]:
    """The progress rows in order (empty when there are none yet)."""
    path = run / PROGRESS
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_setup(run: Path) -> dict[str, Any]:
    path = run / SETUP
    return json.loads(path.read_text()) if path.is_file() else {}


def read_stream(run: Path) -> dict[str, np.ndarray]:
    """The training stream's arrays (compact form)."""
    with np.load(run / STREAM, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}
