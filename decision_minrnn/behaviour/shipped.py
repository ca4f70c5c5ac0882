"""Reading the behaviour data shipped in `agents/behaviour/<env>/` (in a checkout and in an installed wheel).

Per environment: `card.json` (what each policy scores and how it was made), `actor_medium.safetensors` and
`actor_expert.safetensors` (SAC actors, float16), `medium_replay.npz` (SAC's training stream up to the medium
snapshot, in the compact stream form of `layout.py`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError
from ..resources import resource_dir
from ..tasks import EnvSpec
from .actor import SACActor, load_actor

ROLES = ("medium", "expert")
CARD = "card.json"
REPLAY = "medium_replay.npz"


def actor_file(role: str) -> str:
    return f"actor_{role}.safetensors"


def behaviour_dir(env: EnvSpec) -> Path:
    """The shipped folder of one environment (it may not exist)."""
    return resource_dir("agents") / "behaviour" / env.name


def _require(path: Path, env: EnvSpec) -> Path:
    if not path.is_file():
        raise DatasetError(
            f"{path}: missing shipped behaviour data for {env.name}; "
            f"create it with `collect_dataset --import-behaviour RUN_DIR --env {env.name}`"
        )
    return path


def read_card(path: Path) -> dict[str, Any]:
    """A behaviour folder's `card.json` at `path` (the shipped one or any other), with a clear error when corrupt."""
    try:
        card = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}: corrupt card ({e})") from None
    if not isinstance(card, dict):
        raise DatasetError(f"{path}: corrupt card (a JSON object expected, got {type(card).__name__})")
    return card


def load_card(env: EnvSpec) -> dict[str, Any]:
    """The environment's shipped `card.json`."""
    return read_card(_require(behaviour_dir(env) / CARD, env))


def load_behaviour_actor(env: EnvSpec, role: str) -> SACActor:
    """The shipped `medium` or `expert` actor of an environment."""
    if role not in ROLES:
        raise ValueError(f"unknown behaviour role {role!r}; expected one of {ROLES}")
    path = _require(behaviour_dir(env) / actor_file(role), env)
    try:
        actor = load_actor(path)
    except Exception as e:  # noqa: BLE001 - safetensors raises several types for a damaged file
        raise DatasetError(f"{path}: cannot read the actor ({e})") from None
    if (actor.obs_dim, actor.act_dim) != (env.obs_dim, env.act_dim):
        raise DatasetError(
            f"{path}: actor maps {actor.obs_dim}->{actor.act_dim}, {env.name} needs {env.obs_dim}->{env.act_dim}"
        )
    return actor


def load_replay_stream(env: EnvSpec) -> dict[str, np.ndarray]:
    """The shipped medium-replay stream (compact form, see `layout.expand_stream`)."""
    path = _require(behaviour_dir(env) / REPLAY, env)
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as e:  # noqa: BLE001 - zip and format errors of a damaged file
        raise DatasetError(f"{path}: cannot read the stream ({e})") from None


def behaviour_files(quality: str) -> tuple[str, ...]:
    """The shipped files a quality's regenerated data is made from (`random` uses none: its actor is seeded)."""
    return {"random": (), "medium": (actor_file("medium"),), "expert": (actor_file("expert"),),
            "medium-expert": (actor_file("medium"), actor_file("expert")), "medium-replay": (REPLAY,)}[quality]


def behaviour_fingerprint(env: EnvSpec, quality: str) -> str:
    """sha256 over the shipped files behind one task's data: a cached regenerated file made from other behaviour
    policies (an older checkout, a re-shipped actor) differs in it and is rebuilt instead of silently reused."""
    digest = hashlib.sha256(quality.encode())
    for name in behaviour_files(quality):
        digest.update(_require(behaviour_dir(env) / name, env).read_bytes())
    return digest.hexdigest()
