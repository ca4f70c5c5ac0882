"""Sweep specs: which tasks x models x seeds to run, how each cell is evaluated and where it may run.

A spec is a JSON file in `configs/sweeps/` (shipped with the package) or any path. It is read once, checked
completely (unknown keys, task names, duplicate names, value types) and turned into a frozen `SweepSpec`, so a typo
fails in a second instead of after hours of training.

    {
      "name": "hopper-medium",
      "description": "...",
      "tasks": ["hopper-medium"],
      "seeds": [0, 1, 2],
      "data_source": "regenerated",
      "overrides": {},                                   # --set fields for every cell
      "models": [{"name": "mingru", "label": "minGRU", "config": "small", "backbone": "mingru", "overrides": {}}],
      "order": [["mingru", "dt", "bc"], ["minlstm", "transformer"], ["s4", "mamba"]],
      "protocol": {"eval_episodes": 100, "eval_num_envs": 10, "eval_every": 2000, "eval_curve_episodes": 10},
      "executor": {"cpus": 1, "gpus": 0},
      "report": {"reference": "dt"},
      "cost": {"source": "...", "cpu_minutes": {"mingru": 16}}
    }
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.trajectories import SOURCES
from ..errors import UserInputError
from ..resources import read_named_json, resource_dir

# `protocol` keys are TrainConfig fields about evaluation only; everything else belongs in `overrides`.
PROTOCOL_FIELDS = ("eval_episodes", "eval_num_envs", "eval_every", "eval_curve_episodes")
DATA_SOURCES = ("auto", *SOURCES)  # train_agent --data-source
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # model names become folder names
_SPEC_KEYS = {"name", "description", "tasks", "seeds", "data_source", "overrides", "models", "order", "protocol",
              "executor", "report", "cost"}
_MODEL_KEYS = {"name", "label", "config", "backbone", "overrides", "description"}


@dataclass(frozen=True)
class ModelSpec:
    """One row of the comparison: a config name, a backbone and `--set` overrides on top of it."""

    name: str
    config: str
    backbone: str
    overrides: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    @property
    def display(self) -> str:
        return self.label or self.name


@dataclass(frozen=True)
class ExecutorHints:
    """Resources one cell asks for: CPU threads (also its torch threads) and GPUs (Ray only; may be fractional)."""

    cpus: float = 1.0
    gpus: float = 0.0
    device: str = "auto"  # train_agent --device

    @property
    def threads(self) -> int:
        return max(1, int(self.cpus))


@dataclass(frozen=True)
class CostTable:
    """Minutes of one CPU core per cell (training + evaluation) by model name, and where the numbers come from."""

    source: str = ""
    cpu_minutes: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class SweepSpec:
    """A checked sweep spec; `path` is the file it came from."""

    name: str
    tasks: tuple[str, ...]
    models: tuple[ModelSpec, ...]
    seeds: tuple[int, ...]
    data_source: str = "auto"
    overrides: dict[str, Any] = field(default_factory=dict)
    protocol: dict[str, int] = field(default_factory=dict)
    order: tuple[tuple[str, ...], ...] = ()
    executor: ExecutorHints = field(default_factory=ExecutorHints)
    reference: str | None = None  # model the report compares the others against (probability of improvement)
    cost: CostTable = field(default_factory=CostTable)
    description: str = ""
    path: Path | None = None

    def model(self, name: str) -> ModelSpec:
        for m in self.models:
            if m.name == name:
                return m
        raise UserInputError(f"sweep {self.name!r} has no model {name!r}; models: "
                             f"{', '.join(m.name for m in self.models)}")

    def groups(self) -> list[list[ModelSpec]]:
        """Models in run order: the `order` groups first, then any model they leave out, as one last group."""
        listed = [name for group in self.order for name in group]
        out = [[self.model(name) for name in group] for group in self.order]
        rest = [m for m in self.models if m.name not in listed]
        if rest:
            out.append(rest)
        return [g for g in out if g]


def sweeps_dir() -> Path:
    """Folder of the shipped sweep specs (`configs/sweeps/`)."""
    return resource_dir("configs") / "sweeps"


def spec_names() -> list[str]:
    """Names of the shipped sweep specs."""
    return sorted(p.stem for p in sweeps_dir().glob("*.json"))


def load_spec(name_or_path: str | Path) -> SweepSpec:
    """Read and check a spec by shipped name (`d4rl-nine`) or by path to a JSON file."""
    path, data = read_named_json(sweeps_dir(), name_or_path, "sweep")
    return parse_spec(data, path=path)


def _fail(path: Path | None, message: str) -> UserInputError:
    return UserInputError(f"sweep spec {path or '<dict>'}: {message}")


def _overrides(value: Any, where: str, path: Path | None) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail(path, f"{where} must be an object of config fields, got {type(value).__name__}")
    for k, v in value.items():
        if not isinstance(v, (int, float, str, bool)):
            raise _fail(path, f"{where}.{k} must be a number, string or boolean, got {v!r}")
    return dict(value)


def parse_spec(data: dict[str, Any], *, path: Path | None = None) -> SweepSpec:
    """Check a spec given as a dict (as read from JSON) and build the `SweepSpec`."""
    from ..tasks import resolve_task

    if not isinstance(data, dict):
        raise _fail(path, "must hold a JSON object")
    unknown = set(data) - _SPEC_KEYS
    if unknown:
        raise _fail(path, f"unknown keys {sorted(unknown)}; known: {sorted(_SPEC_KEYS)}")
    for key in ("tasks", "models", "seeds"):
        if not data.get(key):
            raise _fail(path, f"needs a non-empty {key!r} list")
    name = str(data.get("name") or (path.stem if path else "sweep"))
    if not _NAME.match(name):
        raise _fail(path, f"name {name!r} must be letters, digits, '.', '_' or '-'")

    tasks = []
    for t in data["tasks"]:
        task = resolve_task(str(t))
        canonical = task.name + ("-v2" if task.strict_d4rl else "")
        if canonical in tasks:
            raise _fail(path, f"task {canonical!r} is listed twice")
        tasks.append(canonical)

    models = []
    for i, m in enumerate(data["models"]):
        if not isinstance(m, dict) or "name" not in m or "config" not in m:
            raise _fail(path, f"models[{i}] needs at least 'name' and 'config'")
        unknown = set(m) - _MODEL_KEYS
        if unknown:
            raise _fail(path, f"models[{i}] has unknown keys {sorted(unknown)}; known: {sorted(_MODEL_KEYS)}")
        mname = str(m["name"])
        if not _NAME.match(mname):
            raise _fail(path, f"model name {mname!r} must be letters, digits, '.', '_' or '-' (it names folders)")
        if any(x.name == mname for x in models):
            raise _fail(path, f"model name {mname!r} is used twice")
        overrides = _overrides(m.get("overrides"), f"models[{i}].overrides", path)
        backbone = str(m.get("backbone") or overrides.pop("backbone", "") or "")
        models.append(ModelSpec(name=mname, config=str(m["config"]), backbone=backbone, overrides=overrides,
                                label=str(m.get("label", ""))))

    seeds = data["seeds"]
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise _fail(path, f"seeds must be integers >= 0, got {seeds}")
    if len(set(seeds)) != len(seeds):
        raise _fail(path, f"seeds are listed twice: {seeds}")

    source = str(data.get("data_source", "auto"))
    if source not in DATA_SOURCES:
        raise _fail(path, f"data_source must be one of {', '.join(DATA_SOURCES)}, got {source!r}")

    protocol = data.get("protocol") or {}
    if not isinstance(protocol, dict) or set(protocol) - set(PROTOCOL_FIELDS):
        raise _fail(path, f"protocol may only set {', '.join(PROTOCOL_FIELDS)}; got {protocol!r}")
    for k, v in protocol.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise _fail(path, f"protocol.{k} must be an integer >= 0, got {v!r}")
    if protocol.get("eval_episodes", 1) <= 0:
        raise _fail(path, "protocol.eval_episodes must be > 0: a cell's result is its final evaluation")

    names = [m.name for m in models]
    order = data.get("order") or []
    if not isinstance(order, list) or not all(isinstance(g, list) for g in order):
        raise _fail(path, "order must be a list of lists of model names")
    flat = [str(n) for g in order for n in g]
    bad = [n for n in flat if n not in names]
    if bad or len(set(flat)) != len(flat):
        raise _fail(path, f"order names unknown or repeated models: {bad or flat}; models: {', '.join(names)}")

    ex = data.get("executor") or {}
    if not isinstance(ex, dict) or set(ex) - {"cpus", "gpus", "device"}:
        raise _fail(path, f"executor may only hold cpus, gpus, device; got {ex!r}")
    try:
        hints = ExecutorHints(cpus=float(ex.get("cpus", 1)), gpus=float(ex.get("gpus", 0)),
                              device=str(ex.get("device", "auto")))
    except (TypeError, ValueError):
        raise _fail(path, f"executor cpus and gpus must be numbers, got {ex!r}") from None
    if hints.cpus <= 0 or hints.gpus < 0 or hints.device not in ("auto", "cpu", "cuda"):
        raise _fail(path, f"executor needs cpus > 0, gpus >= 0, device auto/cpu/cuda; got {ex!r}")

    report = data.get("report") or {}
    reference = report.get("reference") if isinstance(report, dict) else None
    if reference is not None and reference not in names:
        raise _fail(path, f"report.reference {reference!r} is not a model; models: {', '.join(names)}")

    cost = data.get("cost") or {}
    minutes = cost.get("cpu_minutes", {}) if isinstance(cost, dict) else {}
    if not isinstance(minutes, dict) or not all(isinstance(v, (int, float)) for v in minutes.values()):
        raise _fail(path, "cost.cpu_minutes must map model names to minutes")

    return SweepSpec(
        name=name, tasks=tuple(tasks), models=tuple(models), seeds=tuple(seeds), data_source=source,
        overrides=_overrides(data.get("overrides"), "overrides", path), protocol=dict(protocol),
        order=tuple(tuple(str(n) for n in g) for g in order), executor=hints, reference=reference,
        cost=CostTable(source=str(cost.get("source", "")) if isinstance(cost, dict) else "",
                       cpu_minutes={str(k): float(v) for k, v in minutes.items()}),
        description=str(data.get("description", "")), path=path,
    )
