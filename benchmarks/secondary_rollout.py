"""The secondary rollout column of a sweep: every finished cell evaluated again in the rollout mode it was not scored in.

The protocol fixes each model's rollout before scoring (window for DT and the Transformer, recurrent for minGRU,
minLSTM, S4 and Mamba); the other mode may be shown beside it, never swapped in. This script gives that column:
for each row of a sweep's `results.jsonl` whose model has two modes (MLP-BC has none), `evaluate_agent` on the
cell's final weights with the other `--rollout`, the same episodes count and the row's own evaluation seed, so both
columns score the same episodes (same reset seeds) with the same weights. Rows go to `<out>/secondary.jsonl` as
they finish (a rerun skips those already there) and a markdown table, primary next to secondary per model, to
`<out>/secondary.md`.

    python benchmarks/secondary_rollout.py runs/sweeps/hopper-medium --out benchmarks/results/sweeps/hopper-medium
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from decision_minrnn.sweep.reevaluate import evaluate_cell, reevaluate_to_files
from decision_minrnn.sweep.report import cell_score, t_interval

OTHER = {"recurrent": "window", "window": "recurrent"}


def has_two_modes(row: dict[str, Any]) -> bool:
    """MLP-BC acts on the current observation alone: its two modes are the same policy."""
    return row.get("backbone") != "mlp-bc"


def secondary_row(row: dict[str, Any], cell_dir: Path) -> dict[str, Any] | None:
    """Evaluate one finished cell (its folder with weights) in its other rollout mode; None for a one-mode model."""
    mode = OTHER.get(row.get("rollout"))
    if mode is None or not has_two_modes(row):
        return None
    result = evaluate_cell(row, cell_dir, "--rollout", mode)
    return {"task": row["task"], "model": row["model"], "backbone": row.get("backbone"), "seed": row["seed"],
            "eval_seed": row["eval_seed"],
            "primary_rollout": row["rollout"], "rollout": mode, "returns": result["returns"],
            "lengths": result["lengths"], "primary_normalized_mean": cell_score(row),
            "normalized_mean": cell_score({"task": row["task"], "returns": result["returns"]})}


def _fmt(values: list[float]) -> str:
    stat = t_interval(values)
    ci = "" if stat["ci"] is None else f" [{stat['ci'][0]:.1f}, {stat['ci'][1]:.1f}]"
    return f"{stat['mean']:.1f}{ci}"


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| task | model | primary rollout: score [95% CI] | secondary rollout: score [95% CI] | per seed, "
             "primary -> secondary |", "|---|---|---|---|---|"]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["task"], r["model"]), []).append(r)
    for (task, model), rs in groups.items():
        rs = sorted(rs, key=lambda r: r["seed"])
        seeds = " / ".join(f"{r['primary_normalized_mean']:.1f} -> {r['normalized_mean']:.1f}" for r in rs)
        lines.append(f"| {task} | {model} | {rs[0]['primary_rollout']}: {_fmt([r['primary_normalized_mean'] for r in rs])} "
                     f"| {rs[0]['rollout']}: {_fmt([r['normalized_mean'] for r in rs])} | {seeds} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="a sweep's output folder (results.jsonl and cells/)")
    parser.add_argument("--out", type=Path, help="where secondary.jsonl and secondary.md go (default: sweep_dir)")
    args = parser.parse_args(argv)
    reevaluate_to_files(args.sweep_dir, args.out or args.sweep_dir, "secondary", secondary_row,
                        lambda row: row.get("rollout") in OTHER and has_two_modes(row),
                        lambda new: f"{new['primary_rollout']} {new['primary_normalized_mean']:.1f}, "
                                    f"{new['rollout']} {new['normalized_mean']:.1f}",
                        lambda rows: markdown([r for r in rows if has_two_modes(r)]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
