"""The statistics table of the regenerated datasets next to the D4RL v2 files' (issue 12).

For each task: the regenerated dataset from the cache (built first with `collect_dataset TASK` where it is missing or
of an older data version), its figures (`decision_minrnn.data.statistics.dataset_statistics`), D4RL v2's figures
from `envs/d4rl_v2_statistics.json`, and the issue's targets met or missed. Writes `<out>/dataset_stats.json` and
the markdown table `<out>/dataset_stats.md`. A run over some tasks replaces their rows and keeps the others' (each row
says when it was made and from which behaviour files), so one re-shipped environment is re-measured alone.

    python benchmarks/dataset_stats.py                      # all 15 tasks at default sizes (regenerating: hours)
    python benchmarks/dataset_stats.py --tasks hopper-medium --transitions 20000 --out /tmp/trial

Regeneration runs `collect_dataset` in a subprocess with one torch/OpenMP thread; a cached file of the current data
version is read as it is.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from decision_minrnn import __version__
from decision_minrnn.behaviour.regenerate import regenerated_dataset_path
from decision_minrnn.data.d4rl import DATA_VERSION, read_d4rl_hdf5
from decision_minrnn.data.statistics import (
    TARGETS,
    compare,
    d4rl_entry,
    d4rl_figures,
    d4rl_statistics_table,
    dataset_statistics,
    format_figure,
)
from decision_minrnn.io import write_json
from decision_minrnn.tasks import resolve_task, task_names
from decision_minrnn.workflows.datasets import stale_regenerated

SHORT = {  # target -> column label in the markdown table
    "mean_within_5_points": "mean",
    "std_at_least_60pct": "std",
    "medium_replay_transitions_within_30pct": "size",
    "timeouts_present": "time-outs",
}


def ensure_regenerated(task: str, seed: int, transitions: int | None) -> Path:
    """The cached regenerated file of `task`, built with `collect_dataset` if missing or stale (`stale_regenerated`)."""
    path = regenerated_dataset_path(task, seed, transitions)
    if path.exists() and stale_regenerated(path, resolve_task(task)) is None:
        return path
    cmd = [sys.executable, "-m", "decision_minrnn.cli.collect", task, "--seed", str(seed), "--quiet"]
    if transitions is not None:
        cmd += ["--transitions", str(transitions)]
    print(f"{task}: regenerating ({' '.join(cmd[1:])})", file=sys.stderr, flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    subprocess.run(cmd, check=True, env=env)
    return path


def task_row(task: str, seed: int, transitions: int | None) -> dict[str, Any]:
    path = ensure_regenerated(task, seed, transitions)
    dataset = read_d4rl_hdf5(path, task)
    if dataset.source != "regenerated":
        raise SystemExit(f"{path}: not a regenerated file")
    ours = dataset_statistics(dataset)
    prov = dataset.provenance
    return {
        "task": task,
        "file": str(path),
        "seed": seed,
        "transitions_requested": transitions,
        "data_version": prov.get("data_version"),
        "policy": prov.get("policy"),
        "package_version": prov.get("package_version"),
        "behaviour_sha256": prov.get("behaviour_sha256"),
        "made": time.strftime("%Y-%m-%d"),
        "ours": ours,
        "d4rl": d4rl_entry(task)["figures"],
        "comparison": compare(ours, d4rl_figures(task)),
    }


def _kept_rows(path: Path, seed: int, transitions: int | None, exclude: list[str]) -> dict[str, dict[str, Any]]:
    """Rows of an earlier run at the same seed and size, for the tasks not re-measured now."""
    if not path.is_file():
        return {}
    rows = json.loads(path.read_text()).get("rows", [])
    return {r["task"]: r for r in rows if r["task"] not in exclude and r.get("seed") == seed
            and r.get("transitions_requested") == transitions and r.get("data_version") == DATA_VERSION}


def d4rl_cell(fig: dict[str, Any], name: str) -> str:
    """D4RL's figure for the table: '*' marks a derived one, 'n.f.' one not found."""
    if fig["value"] is None:
        return "n.f."
    return format_figure(fig["value"], name) + ("*" if fig["derived"] else "")


def pair(row: dict[str, Any], name: str) -> str:
    return f"{format_figure(row['ours'][name], name)} / {d4rl_cell(row['d4rl'][name], name)}"


def markdown(rows: list[dict[str, Any]], header: str) -> str:
    lines = [
        "# Regenerated datasets next to the D4RL v2 files",
        "",
        header,
        "",
        ("Each cell: ours / D4RL v2. `*`: D4RL figure derived from other recorded figures; `n.f.`: not found in public "
         "sources (`envs/d4rl_v2_statistics.json` gives every figure's source). Returns are over finished episodes; "
         "normalized = 100 * (R - random) / (expert - random) with D4RL's reference returns."),
        "",
        ("| task | episodes | transitions | return mean (normalized) | return std (normalized) | "
         "return min .. max (normalized) | time-out share | targets |"),
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        mn, mx = "return_normalized_min", "return_normalized_max"
        span = (f"{format_figure(row['ours'][mn], mn)} .. {format_figure(row['ours'][mx], mx)} / "
                f"{d4rl_cell(row['d4rl'][mn], mn)} .. {d4rl_cell(row['d4rl'][mx], mx)}")
        targets = ", ".join(f"{SHORT[k]}: {c['status']}" for k, c in row["comparison"].items())
        lines.append(
            f"| {row['task']} | {pair(row, 'episodes')} | {pair(row, 'transitions')} | "
            f"{pair(row, 'return_normalized_mean')} | {pair(row, 'return_normalized_std')} | {span} | "
            f"{pair(row, 'timeout_share')} | {targets} |"
        )
    lines += ["", "Targets (issue 12):", ""]
    lines += [f"- {SHORT[k]}: {text}" for k, text in TARGETS.items()]
    lines += ["", "met / missed; unknown: D4RL's figure not found; n/a: the target does not apply to this task."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", nargs="+", default=None, help="tasks (default: all 15)")
    p.add_argument("--transitions", type=int, default=None,
                   help="regenerated size per task (default: D4RL's; medium-replay: the whole shipped stream)")
    p.add_argument("--seed", type=int, default=0, help="regeneration seed (default 0)")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results",
                   help="output folder (default benchmarks/results)")
    args = p.parse_args(argv)
    tasks = [resolve_task(t).name for t in args.tasks] if args.tasks else task_names()

    started = time.time()
    kept = _kept_rows(args.out / "dataset_stats.json", args.seed, args.transitions, exclude=tasks)
    fresh = {t: task_row(t, args.seed, args.transitions) for t in tasks}
    rows = [fresh.get(t) or kept[t] for t in task_names() if t in fresh or t in kept]
    size = "default sizes" if args.transitions is None else f"{args.transitions:,} transitions per task"
    header = (f"Regenerated data: seed {args.seed}, {size}, data version {DATA_VERSION}, decision_minrnn {__version__}; "
              "made by `python benchmarks/dataset_stats.py` (rows made on "
              + ", ".join(sorted({r.get("made", "?") for r in rows})) + ").")
    result = {
        "header": header,
        "conventions": d4rl_statistics_table()["conventions"],
        "targets": TARGETS,
        "seconds": round(time.time() - started, 1),
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "dataset_stats.json", result)
    (args.out / "dataset_stats.md").write_text(markdown(rows, header))
    print(json.dumps({r["task"]: {k: c["status"] for k, c in r["comparison"].items()} for r in rows}, indent=1))
    print(f"wrote {args.out / 'dataset_stats.json'} and {args.out / 'dataset_stats.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
