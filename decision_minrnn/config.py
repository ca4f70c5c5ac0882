"""The one config system: a dataclass of every training setting, JSON files in `configs/`, and `--set key=value`.

A config file holds only the fields it changes; files may name a `base` config they extend (`quick` extends
nothing, `mingru` extends nothing, ...). Field names and types are checked, with a suggestion for a typo.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UserInputError
from .resources import resource_dir

LAYOUTS = ("interleaved", "fused")
CONTEXTS = ("window", "episode", "burn_in")
ROLLOUTS = ("recurrent", "window")


@dataclass
class TrainConfig:
    """Everything a run needs besides the task and the seed; saved with every agent as `config.json`."""

    # model
    backbone: str = "mingru"
    d_model: int = 128
    n_layers: int = 3
    expansion: float = 1.0
    ff_mult: int = 4
    dropout: float = 0.1
    n_heads: int = 1  # Transformer only
    attention_window: int = 0  # Transformer band in tokens; 0 = the whole training context
    d_state: int = 16  # S4 / Mamba
    scan_impl: str = "auto"  # scan backbones: auto | sequential | cpu | log
    layout: str = "interleaved"  # interleaved (R, s, a tokens, as DT) | fused (one token per step)
    max_timestep: int = 1000  # size of the timestep embedding; later steps are clamped
    # data and context
    context: str = "window"  # window (DT's K-step windows) | episode (from t = 0) | burn_in
    context_len: int = 20  # timesteps per training sequence
    burn_in: int = 0  # extra earlier steps with no loss, for context = burn_in
    batch_size: int = 64
    # optimisation (Decision Transformer defaults)
    steps: int = 100_000
    lr: float = 1e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 10_000
    grad_clip: float = 0.25
    # evaluation, logging, checkpoints
    rollout: str = "recurrent"  # how evaluate_agent acts by default: recurrent (carried state) | window
    target_return: float = 0.0  # 0 = the environment's first DT target
    eval_every: int = 0  # steps between evaluations during training (0 = only at the end)
    eval_episodes: int = 10  # at the end of training (0 = no evaluation)
    eval_num_envs: int = 5
    log_every: int = 100
    checkpoint_every: int = 1000

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        from .model import MODEL_NAMES

        _choice("backbone", self.backbone, MODEL_NAMES)
        _choice("layout", self.layout, LAYOUTS)
        _choice("context", self.context, CONTEXTS)
        _choice("rollout", self.rollout, ROLLOUTS)
        _choice("scan_impl", self.scan_impl, ("auto", "sequential", "cpu", "log"))
        for name in ("d_model", "n_layers", "context_len", "batch_size", "steps", "max_timestep", "n_heads",
                     "eval_num_envs", "log_every", "checkpoint_every", "d_state"):
            if getattr(self, name) <= 0:
                raise UserInputError(f"config field {name!r} must be > 0, got {getattr(self, name)}")
        for name in ("burn_in", "warmup_steps", "eval_every", "eval_episodes", "ff_mult", "attention_window"):
            if getattr(self, name) < 0:
                raise UserInputError(f"config field {name!r} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.dropout < 1:
            raise UserInputError(f"config field 'dropout' must be in [0, 1), got {self.dropout}")
        if self.lr <= 0 or self.grad_clip <= 0 or self.weight_decay < 0:
            raise UserInputError("config fields lr and grad_clip must be > 0 and weight_decay >= 0")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def tokens_per_step(self) -> int:
        return 3 if self.layout == "interleaved" else 1


def _choice(name: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        close = difflib.get_close_matches(str(value), valid, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UserInputError(f"config field {name!r} must be one of {', '.join(valid)}; got {value!r}{hint}")


_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
_TYPES = typing.get_type_hints(TrainConfig)


def _coerce(name: str, value: Any, *, from_text: bool) -> Any:
    """Check (and, for `--set` text, convert) one value against the field's type."""
    if name not in _FIELDS:
        close = difflib.get_close_matches(name, list(_FIELDS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UserInputError(f"unknown config field {name!r}{hint}")
    kind = _TYPES[name]
    if from_text:
        try:
            if kind is bool:
                if value.lower() not in ("true", "false", "1", "0"):
                    raise ValueError
                return value.lower() in ("true", "1")
            if kind is int:
                return int(value.replace("_", ""))
            if kind is float:
                return float(value)
            return value
        except ValueError:
            raise UserInputError(f"config field {name!r} expects {kind.__name__}, got {value!r}") from None
    ok = (isinstance(value, kind) and not (kind is int and isinstance(value, bool))) or (
        kind is float and isinstance(value, int) and not isinstance(value, bool))
    if not ok:
        raise UserInputError(f"config field {name!r} expects {kind.__name__}, got {value!r} ({type(value).__name__})")
    return float(value) if kind is float else value


def config_names() -> list[str]:
    return sorted(p.stem for p in resource_dir("configs").glob("*.json"))


def _read_config_file(name_or_file: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    path = Path(name_or_file)
    if not (path.suffix == ".json" and path.exists()):
        path = resource_dir("configs") / f"{name_or_file}.json"
        if not path.exists():
            raise UserInputError(f"unknown config {name_or_file!r}: not a file, and not one of "
                                 f"{', '.join(config_names())}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserInputError(f"config file {path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise UserInputError(f"config file {path} must hold a JSON object")
    data.pop("description", None)
    base = data.pop("base", None)
    if base:
        if base in seen:
            raise UserInputError(f"config {path} has a cyclic base {base!r}")
        merged = _read_config_file(base, seen + (base,))
        merged.update(data)
        data = merged
    return data


def load_config(name_or_file: str | None = None, overrides: dict[str, Any] | None = None,
                sets: list[str] | None = None) -> TrainConfig:
    """Defaults <- config file (by name in configs/ or path) <- `overrides` (typed) <- `--set key=value` strings."""
    values: dict[str, Any] = {}
    if name_or_file:
        for k, v in _read_config_file(name_or_file).items():
            values[k] = _coerce(k, v, from_text=False)
    for k, v in (overrides or {}).items():
        values[k] = _coerce(k, v, from_text=False)
    for item in sets or []:
        if "=" not in item:
            raise UserInputError(f"--set expects key=value, got {item!r}")
        k, v = item.split("=", 1)
        values[k.strip()] = _coerce(k.strip(), v.strip(), from_text=True)
    return TrainConfig(**values)


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Rebuild a saved config exactly (unknown or mistyped fields are an error: the file is from another version)."""
    return TrainConfig(**{k: _coerce(k, v, from_text=False) for k, v in data.items()})
