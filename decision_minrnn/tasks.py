"""The one place that maps a task name to its environment, datasets and reference scores.

A task is `<env>-<quality>` (`hopper-medium`, `halfcheetah-medium-replay`, `walker-medium-expert`); a `-v2` suffix
(`hopper-medium-v2`) means strictly the D4RL v2 file. Specs are the JSON files in `envs/`.
"""

from __future__ import annotations

import difflib
import functools
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import UserInputError
from .resources import resource_dir

QUALITIES = ("medium", "medium-replay", "medium-expert", "expert", "random")
PUBLISHED_SCORES_FILE = "published_scores.json"  # CORL's D4RL v2 "last" scores of DT and BC, for orientation only
NOT_ENV_SPECS = frozenset({"d4rl_v2_statistics.json", PUBLISHED_SCORES_FILE})  # in envs/ but not environment specs


@dataclass(frozen=True)
class DatasetSource:
    """Where one quality of an environment's data can come from."""

    d4rl_file: str
    d4rl_url: str
    minari_id: str | None


@dataclass(frozen=True)
class EnvSpec:
    """One locomotion environment: ids, sizes, D4RL references, DT evaluation targets, dataset sources."""

    name: str
    aliases: tuple[str, ...]
    gym_id: str
    obs_dim: int
    act_dim: int
    max_episode_steps: int
    random_return: float
    expert_return: float
    eval_target_returns: tuple[float, ...]
    return_scale: float
    sources: dict[str, DatasetSource]

    def normalized_score(self, returns: Any) -> Any:
        """D4RL-normalized score x100: 0 = random policy, 100 = expert (D4RL v2 references)."""
        r = np.asarray(returns, dtype=np.float64)
        score = 100.0 * (r - self.random_return) / (self.expert_return - self.random_return)
        return float(score) if score.ndim == 0 else score


@dataclass(frozen=True)
class Task:
    """A resolved task name."""

    env: EnvSpec
    quality: str
    strict_d4rl: bool  # the name carried a -v2 suffix

    @property
    def name(self) -> str:
        return f"{self.env.name}-{self.quality}"

    @property
    def source(self) -> DatasetSource:
        return self.env.sources[self.quality]


@functools.lru_cache(maxsize=None)
def env_specs() -> dict[str, EnvSpec]:
    """All shipped environment specs by canonical name."""
    specs = {}
    for path in sorted(resource_dir("envs").glob("*.json")):
        if path.name in NOT_ENV_SPECS:
            continue
        d = json.loads(path.read_text())
        specs[d["name"]] = EnvSpec(
            name=d["name"],
            aliases=tuple(d.get("aliases", ())),
            gym_id=d["gym_id"],
            obs_dim=int(d["obs_dim"]),
            act_dim=int(d["act_dim"]),
            max_episode_steps=int(d["max_episode_steps"]),
            random_return=float(d["d4rl_reference_returns"]["random"]),
            expert_return=float(d["d4rl_reference_returns"]["expert"]),
            eval_target_returns=tuple(float(x) for x in d["eval_target_returns"]),
            return_scale=float(d["return_scale"]),
            sources={q: DatasetSource(**s) for q, s in d["sources"].items()},
        )
    return specs


def _env_names() -> dict[str, str]:
    names = {}
    for spec in env_specs().values():
        names[spec.name] = spec.name
        names[spec.gym_id.lower()] = spec.name
        for a in spec.aliases:
            names[a] = spec.name
    return names


def task_names() -> list[str]:
    """Every valid canonical task name."""
    return [f"{e}-{q}" for e in env_specs() for q in QUALITIES]


def _suggest(name: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else ""


def get_env_spec(name: str) -> EnvSpec:
    """Spec for an environment name, alias or gymnasium id (`hopper`, `walker`, `Hopper-v5`)."""
    names = _env_names()
    key = name.strip().lower()
    if key not in names:
        valid = sorted(env_specs())
        raise UserInputError(f"unknown environment {name!r}; valid: {', '.join(valid)}{_suggest(key, list(names))}")
    return env_specs()[names[key]]


def resolve_task(name: str | Task) -> Task:
    """Parse `<env>-<quality>[-v2]`; unknown names fail with the valid names and the closest suggestion.

    A `Task` is returned as it is, so functions can take either a name or a resolved task.
    """
    if isinstance(name, Task):
        return name
    key = name.strip().lower()
    strict = key.endswith("-v2")
    if strict:
        key = key[: -len("-v2")]
    names = _env_names()
    for env_key in sorted(names, key=len, reverse=True):
        prefix = env_key + "-"
        if key.startswith(prefix) and key[len(prefix):] in QUALITIES:
            return Task(env_specs()[names[env_key]], key[len(prefix):], strict)
    valid = task_names()
    raise UserInputError(
        f"unknown task {name!r}; valid tasks: {', '.join(valid)} (a -v2 suffix means the D4RL v2 file only)"
        + _suggest(key, valid)
    )


@functools.lru_cache(maxsize=None)
def _published() -> dict[str, Any]:
    return json.loads((resource_dir("envs") / PUBLISHED_SCORES_FILE).read_text())


def published_scores(task: str | Task) -> dict[str, dict[str, float]]:
    """Published D4RL v2 scores for a task, `{"DT": {"mean", "std"}, "BC": {...}}` ({} when none is recorded).

    From CORL's README ("last" scores on the D4RL v2 files; `published_source()` names the commit). They were
    trained on D4RL's own data and environments, so they are NOT comparable with scores on regenerated or Minari data:
    a report shows them in a separate column that says so.
    """
    return dict(_published()["scores"].get(resolve_task(task).name, {}))


def published_source() -> dict[str, Any]:
    """Where `published_scores` come from (project, repository, file, section, commit, scale)."""
    return dict(_published()["source"])


def normalized_score(task_or_env: str | Task | EnvSpec, returns: Any) -> Any:
    """D4RL-normalized score (x100; 0 = random, 100 = expert) for a task or env name, on scalars or arrays."""
    if isinstance(task_or_env, Task):
        spec = task_or_env.env
    elif isinstance(task_or_env, EnvSpec):
        spec = task_or_env
    else:
        try:
            spec = resolve_task(task_or_env).env
        except UserInputError:
            spec = get_env_spec(task_or_env)
    return spec.normalized_score(returns)
