"""A dataset's figures next to the D4RL v2 files' (issue 12): what they are, D4RL's own, and the issue's targets.

`dataset_statistics(dataset)` gives the figures of any loaded dataset; `d4rl_figures(task)` gives D4RL v2's for the
same task from the shipped table `envs/d4rl_v2_statistics.json` (each figure there carries its public source; a
figure that was not found is null, never estimated); `compare(ours, d4rl)` applies the issue's targets.

The figures, under D4RL's episode conventions (the same ones the table's sources use):

- `episodes`: episodes in the data, cut at terminals | timeouts; rows after the last end count as one more
  (unfinished) episode, as TensorFlow Datasets counts D4RL's files.
- `transitions`: rows.
- `return_raw_*` / `return_normalized_*`: mean, std (population), min, max of the undiscounted episode return over
  the *finished* episodes: a trailing unfinished episode is left out (unless it is the only episode), as
  `TrajectoryDataset.statistics()` does and as the Decision Transformer script that produced D4RL's figures does.
  Normalized = 100 * (R - random) / (expert - random) with D4RL's reference returns (for Minari data too, so the
  figures compare with D4RL's).
- `timeout_share`: fraction of the finished episodes that end by time-out (truncated and not terminated); the
  trailing unfinished episode ends by neither and is not counted. None when no episode finished.
- `timeouts_present`: whether any finished episode ends by time-out.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import numpy as np

from ..resources import resource_dir
from ..tasks import QUALITIES, Task, resolve_task
from .trajectories import TrajectoryDataset

FIGURES = (
    "episodes",
    "transitions",
    "return_raw_mean",
    "return_raw_std",
    "return_raw_min",
    "return_raw_max",
    "return_normalized_mean",
    "return_normalized_std",
    "return_normalized_min",
    "return_normalized_max",
    "timeout_share",
    "timeouts_present",
)
D4RL_STATISTICS_FILE = "d4rl_v2_statistics.json"  # in envs/ (shipped as decision_minrnn.envs)

MET, MISSED, UNKNOWN, NOT_APPLICABLE = "met", "missed", "unknown", "n/a"

# The targets: name -> what it asks (the qualities it applies to are in `compare`).
TARGETS = {
    "mean_within_5_points": "data mean within +-5 normalized points of D4RL's (medium, medium-expert)",
    "std_at_least_60pct": "episode-return std at least 60% of D4RL's",
    "medium_replay_transitions_within_30pct": "medium-replay transitions within +-30% of D4RL's",
    "timeouts_present": "time-out episodes present where D4RL's data has them",
}
MEAN_TOLERANCE = 5.0  # normalized points
STD_FRACTION = 0.6
TRANSITIONS_TOLERANCE = 0.3


def dataset_statistics(dataset: TrajectoryDataset) -> dict[str, Any]:
    """The figures of `dataset` (keys `FIGURES`, plain JSON values), built on `TrajectoryDataset.statistics()`."""
    st = dataset.statistics()
    raw = st["return_raw"]
    norm = st["return_normalized"]
    if st["score_label"] != "D4RL-normalized":  # Minari references: rescale the raw figures with D4RL's instead
        norm = _d4rl_normalized(dataset.task, raw)
    trailing = bool(dataset.provenance.get("trailing_unfinished_episode"))
    finished = dataset.num_episodes - 1 if trailing else dataset.num_episodes
    terminated, truncated = dataset.terminated[:finished], dataset.truncated[:finished]
    timeouts = int(np.count_nonzero(truncated & ~terminated))
    return {
        "episodes": st["episodes"],
        "transitions": st["transitions"],
        **{f"return_raw_{k}": raw[k] for k in ("mean", "std", "min", "max")},
        **{f"return_normalized_{k}": norm[k] for k in ("mean", "std", "min", "max")},
        "timeout_share": timeouts / finished if finished > 0 else None,
        "timeouts_present": timeouts > 0,
    }


def _d4rl_normalized(task: Task, raw: dict[str, float]) -> dict[str, float]:
    """D4RL-normalized mean/std/min/max from the raw ones (a linear map; the std only scales)."""
    env = task.env
    scale = 100.0 / (env.expert_return - env.random_return)
    return {
        "mean": float(env.normalized_score(raw["mean"])),
        "std": float(raw["std"] * scale),
        "min": float(env.normalized_score(raw["min"])),
        "max": float(env.normalized_score(raw["max"])),
    }


@functools.cache
def d4rl_statistics_table() -> dict[str, Any]:
    """The shipped table of D4RL v2 figures (the whole JSON: description, conventions, tasks)."""
    return json.loads((resource_dir("envs") / D4RL_STATISTICS_FILE).read_text())


def d4rl_entry(task: str | Task) -> dict[str, Any]:
    """D4RL's entry of a task in the table: `d4rl_file`, `quality`, `figures` (each {value, source, derived, note})."""
    name = resolve_task(task).name
    return d4rl_statistics_table()["tasks"][name]


def d4rl_figures(task: str | Task) -> dict[str, Any]:
    """D4RL v2's figures of a task as `compare` takes them: figure -> value (None: not found), plus `quality`."""
    entry = d4rl_entry(task)
    return {"quality": entry["quality"], **{k: entry["figures"][k]["value"] for k in FIGURES}}


def compare(ours: dict[str, Any], d4rl: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Apply the issue's targets to our figures against D4RL's (`d4rl` as `d4rl_figures` gives it, with `quality`).

    Each target -> {status, target, figure, ours, d4rl} (`figure` names the figure it judges). Status is "met",
    "missed", "unknown" (a figure it needs is not known: on D4RL's side, for lack of a source) or "n/a" (the target
    does not apply to this quality, or D4RL's data has no time-outs).
    """
    quality = d4rl["quality"]
    if quality not in QUALITIES:
        raise ValueError(f"unknown quality {quality!r}; expected one of {QUALITIES}")
    result = {}

    def put(name: str, status: str, key: str) -> None:
        result[name] = {"status": status, "target": TARGETS[name], "figure": key, "ours": ours.get(key),
                        "d4rl": d4rl.get(key)}

    def judge(key: str, ok: Any) -> str:
        if ours.get(key) is None or d4rl.get(key) is None:
            return UNKNOWN
        return MET if ok(ours[key], d4rl[key]) else MISSED

    key = "return_normalized_mean"
    if quality in ("medium", "medium-expert"):
        put("mean_within_5_points", judge(key, lambda a, b: abs(a - b) <= MEAN_TOLERANCE), key)
    else:
        put("mean_within_5_points", NOT_APPLICABLE, key)

    key = "return_raw_std"
    put("std_at_least_60pct", judge(key, lambda a, b: a >= STD_FRACTION * b), key)

    key = "transitions"
    if quality == "medium-replay":
        put("medium_replay_transitions_within_30pct", judge(key, lambda a, b: abs(a - b) <= TRANSITIONS_TOLERANCE * b),
            key)
    else:
        put("medium_replay_transitions_within_30pct", NOT_APPLICABLE, key)

    key = "timeouts_present"
    if d4rl.get(key) is False:
        put("timeouts_present", NOT_APPLICABLE, key)
    else:
        put("timeouts_present", judge(key, lambda a, b: bool(a)), key)
    return result


def format_figure(value: Any, name: str) -> str:
    """One figure as text: counts with thousands separators, returns with one decimal, shares with three."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if name in ("episodes", "transitions"):
        return f"{int(value):,}"
    if name == "timeout_share":
        return f"{value:.3f}"
    return f"{value:.1f}"


def report_lines(task: str | Task, ours: dict[str, Any], comparison: dict[str, dict[str, Any]]) -> list[str]:
    """The figures (one line each: ours, D4RL's, how D4RL's is known) and then one line per target."""
    entry = d4rl_entry(task)
    lines = [f"{'figure':<24} {'ours':>12} {'D4RL v2':>12}  D4RL figure"]
    for name in FIGURES:
        fig = entry["figures"][name]
        how = "not found" if fig["value"] is None else ("derived" if fig["derived"] else "from its source")
        lines.append(f"{name:<24} {format_figure(ours[name], name):>12} {format_figure(fig['value'], name):>12}  {how}")
    for name, c in comparison.items():
        fig = c["figure"]
        lines.append(f"target {name}: {c['status']} ({c['target']}; {fig}: ours {format_figure(c['ours'], fig)}, "
                     f"D4RL {format_figure(c['d4rl'], fig)})")
    return lines
