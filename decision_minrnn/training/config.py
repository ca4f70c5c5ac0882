"""The one config system: a dataclass of every training setting, JSON files in `configs/`, and `--set key=value`.

A config file holds only the fields it changes; files may name a `base` config they extend (`quick` extends
nothing, `mingru` extends nothing, ...). Field names and types are checked, with a suggestion for a typo.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from dataclasses import dataclass
from typing import Any

from ..errors import UserInputError
from ..nn.model import INITS, LAYOUTS, MODEL_NAMES, ModelConfig
from ..resources import read_named_json, resource_dir

CONTEXTS = ("window", "episode", "burn_in")
ROLLOUTS = ("recurrent", "window")


@dataclass
class TrainConfig(ModelConfig):
    """Everything a run needs besides the task and the seed; saved with every agent as `config.json`.

    The model's fields (backbone, sizes, layout, init, context_len, burn_in, ...) come from `ModelConfig`."""

    # data and context (context_len and burn_in are ModelConfig fields)
    context: str = "window"  # window (DT's K-step windows) | episode (from t = 0) | burn_in
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
    eval_every: int = 2000  # steps between learning-curve evaluations (0 = none)
    eval_curve_episodes: int = 10  # episodes per learning-curve point
    eval_episodes: int = 100  # the final evaluation, at the last step (0 = none)
    eval_num_envs: int = 10
    log_every: int = 100
    checkpoint_every: int = 1000

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        _choice("backbone", self.backbone, MODEL_NAMES)
        _choice("layout", self.layout, LAYOUTS)
        _choice("context", self.context, CONTEXTS)
        _choice("rollout", self.rollout, ROLLOUTS)
        _choice("scan_impl", self.scan_impl, ("auto", "sequential", "cpu", "log"))
        _choice("init", self.init, INITS)
        for name in ("d_model", "n_layers", "context_len", "batch_size", "steps", "max_timestep", "n_heads",
                     "eval_num_envs", "log_every", "checkpoint_every", "d_state"):
            if getattr(self, name) <= 0:
                raise UserInputError(f"config field {name!r} must be > 0, got {getattr(self, name)}")
        for name in ("burn_in", "warmup_steps", "eval_every", "eval_episodes", "ff_mult", "attention_window"):
            if getattr(self, name) < 0:
                raise UserInputError(f"config field {name!r} must be >= 0, got {getattr(self, name)}")
        for name in ("lr", "weight_decay", "grad_clip", "dropout", "expansion", "target_return"):
            if not math.isfinite(getattr(self, name)):
                raise UserInputError(f"config field {name!r} must be a finite number, got {getattr(self, name)}")
        if not 0 <= self.dropout < 1:
            raise UserInputError(f"config field 'dropout' must be in [0, 1), got {self.dropout}")
        for name in ("lr", "grad_clip", "expansion"):
            if getattr(self, name) <= 0:
                raise UserInputError(f"config field {name!r} must be > 0, got {getattr(self, name)}")
        if self.weight_decay < 0:
            raise UserInputError(f"config field 'weight_decay' must be >= 0, got {self.weight_decay}")
        if self.backbone == "transformer" and self.d_model % self.n_heads:
            raise UserInputError(f"config field 'n_heads' ({self.n_heads}) must divide 'd_model' ({self.d_model})")
        if self.eval_every and self.eval_curve_episodes <= 0:
            raise UserInputError("config field 'eval_curve_episodes' must be > 0 when 'eval_every' is set, got "
                                 f"{self.eval_curve_episodes}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def model_config(self) -> ModelConfig:
        """The fields the model is built from (a plain ModelConfig, so the model never sees training fields)."""
        return ModelConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(ModelConfig)})


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
    path, data = read_named_json(resource_dir("configs"), name_or_file, "config")
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


# Fields added after agents were first saved, with the value that reproduces how those agents were built (not the
# field's default for new runs): a saved config that lacks one was trained before it existed.
_LEGACY_DEFAULTS = {"init": "torch-default"}


def with_legacy_defaults(data: dict[str, Any]) -> dict[str, Any]:
    """A saved config's fields, with the fields it predates filled as they were then (a missing `init`:
    "torch-default", since agents saved before the option were trained from torch's default init)."""
    return {**_LEGACY_DEFAULTS, **data}


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Rebuild a saved config exactly (unknown or mistyped fields are an error: the file is from another version).

    A missing `init` means the agent predates the option and was trained from torch's default init.
    """
    return TrainConfig(**{k: _coerce(k, v, from_text=False) for k, v in with_legacy_defaults(data).items()})
