"""Agent folders (docs/architecture.md, Files): what a trained agent is on disk, written atomically and loaded without unpickling.

    <dir>/model.safetensors      weights (the DecisionModel or the BC baseline)
    <dir>/config.json            everything needed to rebuild: training config, task, sizes, data source, versions
    <dir>/normalization.json     state mean/std and return scale used in training
    <dir>/metrics.json           training and evaluation results (written by training / evaluate_agent)
    <dir>/checkpoint/            training state for --resume (optimizer, scheduler, RNG, sampler)
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import UserInputError
from ..io import load_weights, save_tensors
from ..tasks import EnvSpec, get_env_spec, resolve_task
from ..training.config import TrainConfig, config_from_dict

AGENT_FORMAT = "decision_minrnn-agent"
AGENT_FORMAT_VERSION = 1
AGENT_FILES = ("model.safetensors", "config.json", "normalization.json")


@dataclass
class AgentMeta:
    """The non-weight part of an agent folder."""

    config: TrainConfig
    task: str
    env_id: str
    obs_dim: int
    act_dim: int
    seed: int
    state_mean: np.ndarray
    state_std: np.ndarray
    return_scale: float
    data: dict[str, Any]  # source, location, comparable_with_d4rl, score_label, provenance, references
    extra: dict[str, Any]  # versions and anything else recorded with the run

    @property
    def env(self) -> EnvSpec:
        """The environment spec of the agent's task (by its env id when the task name is not a known one)."""
        try:
            return resolve_task(self.task).env
        except UserInputError:
            return get_env_spec(self.env_id)

    def config_json(self) -> dict[str, Any]:
        return {
            "format": AGENT_FORMAT,
            "format_version": AGENT_FORMAT_VERSION,
            "task": self.task,
            "env_id": self.env_id,
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "seed": self.seed,
            "config": self.config.to_dict(),
            "data": self.data,
            **self.extra,
        }

    def normalization_json(self) -> dict[str, Any]:
        return {"state_mean": self.state_mean.tolist(), "state_std": self.state_std.tolist(),
                "return_scale": self.return_scale}


def write_agent_files(folder: Path, model: torch.nn.Module, meta: AgentMeta) -> None:
    """Write weights, config and normalisation into `folder` (which the caller makes atomic)."""
    folder.mkdir(parents=True, exist_ok=True)
    save_tensors(model.state_dict(), folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps(meta.config_json(), indent=2) + "\n")
    (folder / "normalization.json").write_text(json.dumps(meta.normalization_json(), indent=2) + "\n")


def save_agent(folder: str | os.PathLike, model: torch.nn.Module, meta: AgentMeta) -> None:
    """Write the agent's files into `folder`, each one atomically."""
    folder = Path(folder)
    # Staged in a temporary folder, then each file renamed into place: metrics, TensorBoard events and the
    # checkpoint folder beside them stay untouched, and no file is ever half written.
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-agent-", dir=folder))
    try:
        write_agent_files(tmp, model, meta)
        for name in AGENT_FILES:
            os.replace(tmp / name, folder / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_meta(folder: str | os.PathLike) -> AgentMeta:
    """Read and check config.json + normalization.json of an agent folder."""
    folder = Path(folder)
    if not folder.exists():
        raise UserInputError(f"agent folder {folder} does not exist")
    if not folder.is_dir():
        raise UserInputError(f"{folder} is a file, not an agent folder (give the folder that holds config.json and "
                             "model.safetensors)")
    missing = [n for n in AGENT_FILES if not (folder / n).is_file()]
    if missing:
        raise UserInputError(f"agent folder {folder} is missing {', '.join(missing)} (not a trained agent, or an "
                             f"interrupted run: its checkpoint/ may still resume with train_agent --resume)")
    try:
        cfg_json = json.loads((folder / "config.json").read_text())
        norm = json.loads((folder / "normalization.json").read_text())
    except json.JSONDecodeError as e:
        raise UserInputError(f"agent folder {folder}: unreadable JSON ({e})") from None
    if cfg_json.get("format") != AGENT_FORMAT:
        raise UserInputError(f"{folder / 'config.json'} is not a decision_minrnn agent config")
    if cfg_json.get("format_version", 0) > AGENT_FORMAT_VERSION:
        raise UserInputError(f"{folder} was written by a newer decision_minrnn (format {cfg_json['format_version']})")
    known = {"format", "format_version", "task", "env_id", "obs_dim", "act_dim", "seed", "config", "data"}
    try:
        meta = AgentMeta(
            config=config_from_dict(cfg_json["config"]),
            task=cfg_json["task"], env_id=cfg_json["env_id"], obs_dim=int(cfg_json["obs_dim"]),
            act_dim=int(cfg_json["act_dim"]), seed=int(cfg_json.get("seed", 0)),
            state_mean=np.asarray(norm["state_mean"], dtype=np.float32),
            state_std=np.asarray(norm["state_std"], dtype=np.float32),
            return_scale=float(norm["return_scale"]),
            data=cfg_json.get("data", {}),
            extra={k: v for k, v in cfg_json.items() if k not in known},
        )
    except KeyError as e:
        raise UserInputError(f"agent folder {folder}: config or normalization lacks {e}") from None
    if meta.state_mean.shape != (meta.obs_dim,) or meta.state_std.shape != (meta.obs_dim,):
        raise UserInputError(f"agent folder {folder}: normalization stats do not match obs_dim {meta.obs_dim}")
    return meta


def load_agent(folder: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, AgentMeta]:
    """Rebuild the model of an agent folder and load its weights (eval mode)."""
    from ..nn.model import build_model

    folder = Path(folder)
    meta = read_meta(folder)
    model = build_model(meta.config.model_config(), meta.obs_dim, meta.act_dim)
    load_weights(model, folder / "model.safetensors")
    return model.to(device).eval(), meta
