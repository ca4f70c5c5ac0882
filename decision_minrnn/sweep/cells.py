"""Cells of a sweep: one (task, model, seed) each, in run order, with the exact `train_agent` command that makes it.

Order: the spec's `order` groups one after the other (e.g. minGRU, DT and BC first); inside a group the seeds are
the outer loop, then tasks, then models. So after a third of a group every task x model of that group has one seed:
the per-task tables and the across-task aggregates (which need every task) cover the whole group early, and all its
models have the same seeds at any time, which keeps comparisons fair; later seeds only tighten the intervals.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..errors import UserInputError
from .spec import ModelSpec, SweepSpec

CELL_KEYS = ("task", "model", "seed")


@dataclass(frozen=True)
class Cell:
    """One training run of the sweep."""

    task: str
    model: ModelSpec
    seed: int

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.task, self.model.name, self.seed)

    @property
    def rel_dir(self) -> Path:
        """Folder of the cell under the sweep's output folder."""
        return Path("cells") / self.task / self.model.name / f"seed{self.seed}"

    def label(self) -> str:
        return f"{self.task} {self.model.name} seed{self.seed}"


def plan_cells(spec: SweepSpec) -> list[Cell]:
    """Every cell of the spec, in run order (see the module docstring for why seeds are the outer loop)."""
    return [Cell(task, model, seed)
            for group in spec.groups() for seed in spec.seeds for task in spec.tasks for model in group]


def parse_only(groups: Sequence[Sequence[str]] | None) -> list[dict[str, set[str]]]:
    """`--only task=hopper-medium model=mingru,dt seed=0`: KEY=VALUE terms; one `--only` ANDs its keys, a key given
    twice (or with commas) matches any of its values, and several `--only` flags are ORed."""
    filters = []
    for group in groups or []:
        f: dict[str, set[str]] = {}
        for term in group:
            key, sep, value = term.partition("=")
            key = key.strip()
            if not sep or key not in CELL_KEYS or not value.strip():
                raise UserInputError(f"--only expects KEY=VALUE with KEY one of {', '.join(CELL_KEYS)}; got {term!r}")
            values = {v.strip() for v in value.split(",") if v.strip()}
            if key == "seed":
                values = {v[4:] if v.startswith("seed") else v for v in values}
            f.setdefault(key, set()).update(values)
        filters.append(f)
    return filters


def select_cells(cells: Iterable[Cell], filters: list[dict[str, set[str]]]) -> list[Cell]:
    """The cells that match any of the filters (all cells without filters); unknown values are an error."""
    cells = list(cells)
    if not filters:
        return cells
    known = {"task": {c.task for c in cells}, "model": {c.model.name for c in cells},
             "seed": {str(c.seed) for c in cells}}
    for f in filters:
        for key, values in f.items():
            bad = sorted(values - known[key])
            if bad:
                raise UserInputError(f"--only {key}={','.join(bad)} matches no cell; {key}s: "
                                     f"{', '.join(sorted(known[key]))}")

    def match(c: Cell) -> bool:
        fields = {"task": c.task, "model": c.model.name, "seed": str(c.seed)}
        return any(all(fields[k] in v for k, v in f.items()) for f in filters)

    return [c for c in cells if match(c)]


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def known_config_fields() -> set[str]:
    """Fields of the installed TrainConfig (the protocol may name a field an older train_agent lacks)."""
    from ..training.config import TrainConfig

    return {f.name for f in dataclasses.fields(TrainConfig)}


def protocol_sets(spec: SweepSpec) -> tuple[list[str], list[str]]:
    """`--set` items for the evaluation protocol, and warnings about fields this train_agent does not know.

    Without `eval_curve_episodes` a learning-curve evaluation would run the full final episode count every
    `eval_every` steps, so the curve is switched off instead (and said so) rather than multiplying the cost.
    """
    fields = known_config_fields()
    protocol = dict(spec.protocol)
    warnings = []
    if "eval_curve_episodes" in protocol and "eval_curve_episodes" not in fields:
        protocol.pop("eval_curve_episodes")
        if protocol.get("eval_every"):
            protocol["eval_every"] = 0
            warnings.append("this train_agent has no config field eval_curve_episodes: learning curves are off "
                            "(eval_every=0), so they do not run the final evaluation's episode count every time")
    return [f"{k}={_text(v)}" for k, v in protocol.items()], warnings


def cell_sets(cell: Cell, spec: SweepSpec, protocol: list[str]) -> list[str]:
    """`--set` items of a cell: the spec's overrides, then the model's, then the evaluation protocol (last wins)."""
    sets = [f"{k}={_text(v)}" for k, v in spec.overrides.items()]
    sets += [f"{k}={_text(v)}" for k, v in cell.model.overrides.items()]
    return sets + list(protocol)


def train_argv(cell: Cell, spec: SweepSpec, cell_dir: Path, *, data_source: str, protocol: list[str]) -> list[str]:
    """Arguments of `train_agent` for the cell (without `--resume`; the executor adds it when it resumes)."""
    argv = ["--env", cell.task, "--config", cell.model.config]
    if cell.model.backbone:
        argv += ["--backbone", cell.model.backbone]
    for item in cell_sets(cell, spec, protocol):
        argv += ["--set", item]
    argv += ["--seed", str(cell.seed), "--out", str(cell_dir), "--data-source", data_source, "--no-progress"]
    if spec.executor.device != "auto":
        argv += ["--device", spec.executor.device]
    return argv


def expected_config(cell: Cell, spec: SweepSpec, protocol: list[str]) -> dict[str, Any]:
    """The TrainConfig the cell's command will build (checked now, so a bad spec fails before anything runs)."""
    from ..training.config import load_config

    overrides = {"backbone": cell.model.backbone} if cell.model.backbone else {}
    try:
        return load_config(cell.model.config, overrides, cell_sets(cell, spec, protocol)).to_dict()
    except UserInputError as e:
        raise UserInputError(f"sweep {spec.name}, model {cell.model.name}: {e}") from None


def config_hash(config: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a config (sorted keys, no spaces): equal configs, equal hashes."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def shell_line(argv: Sequence[str]) -> str:
    """A command as one copy-pasteable shell line."""
    import shlex

    return " ".join(shlex.quote(a) for a in argv)


def console_script(name: str) -> list[str]:
    """How to run a console script from this interpreter: the script beside it, else `python -m` its module."""
    script = Path(sys.executable).parent / name
    if script.is_file():
        return [str(script)]
    module = {"train_agent": "decision_minrnn.cli.train", "evaluate_agent": "decision_minrnn.cli.evaluate"}[name]
    return [sys.executable, "-m", module]
