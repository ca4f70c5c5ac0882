"""Training checkpoints for `--resume`: weights, optimizer, scheduler, RNG and sampler state, written atomically.

    <run>/checkpoint/model.safetensors
    <run>/checkpoint/trainer.safetensors   optimizer tensors and the torch RNG state
    <run>/checkpoint/trainer.json          step, optimizer scalars and groups, scheduler, sampler, config

The folder is written under a temporary name and renamed, so a kill leaves the previous checkpoint intact.
Nothing is pickled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..errors import UserInputError
from ..io import atomic_path, load_weights, save_tensors

CHECKPOINT_DIR = "checkpoint"


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for pid, entries in state["state"].items():
        for key, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = value
    for name, value in meta["scalars"].items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(run_dir: Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, step: int, sampler_state: dict[str, Any], config: dict[str, Any],
                    extra: dict[str, Any] | None = None) -> None:
    """Write the checkpoint folder atomically; `extra` (JSON) comes back in `load_checkpoint`'s result."""
    tensors, opt_meta = _flatten_optimizer(optimizer.state_dict())
    tensors["rng.torch"] = torch.get_rng_state()
    with atomic_path(run_dir / CHECKPOINT_DIR, is_dir=True) as tmp:
        tmp.mkdir(parents=True, exist_ok=True)
        save_tensors(model.state_dict(), tmp / "model.safetensors")
        save_tensors(tensors, tmp / "trainer.safetensors")
        info = {"step": step, "optimizer": opt_meta, "scheduler": scheduler.state_dict(), "sampler": sampler_state,
                "config": config, **(extra or {})}
        (tmp / "trainer.json").write_text(json.dumps(info, indent=1) + "\n")


def has_checkpoint(run_dir: Path) -> bool:
    return (run_dir / CHECKPOINT_DIR / "trainer.json").is_file()


def read_checkpoint_step(run_dir: Path) -> int:
    """The step of the checkpoint in `run_dir` (a clear error if it is unreadable)."""
    path = run_dir / CHECKPOINT_DIR / "trainer.json"
    try:
        return int(json.loads(path.read_text())["step"])
    except (OSError, ValueError, KeyError) as e:
        raise UserInputError(f"checkpoint {path} is unreadable ({e}); remove {path.parent} to restart the run") from None


def load_checkpoint(run_dir: Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any) -> dict[str, Any]:
    """Restore model, optimizer, scheduler and torch RNG; return trainer.json (step, sampler state, config)."""
    from safetensors.torch import load_file


    folder = run_dir / CHECKPOINT_DIR
    try:
        info = json.loads((folder / "trainer.json").read_text())
        tensors = load_file(str(folder / "trainer.safetensors"))
    except (OSError, json.JSONDecodeError, Exception) as e:  # noqa: B014 - safetensors raises its own types
        raise UserInputError(f"checkpoint in {folder} is unreadable ({e})") from None
    load_weights(model, folder / "model.safetensors")
    optimizer.load_state_dict(_unflatten_optimizer(tensors, info["optimizer"]))
    scheduler.load_state_dict(info["scheduler"])
    torch.set_rng_state(tensors["rng.torch"])
    return info
