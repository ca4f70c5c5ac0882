"""A finished sweep cell evaluated again with one setting changed (rollout mode, target return), nothing else.

Diagnostics beside the protocol's score (`benchmarks/secondary_rollout.py`, `benchmarks/target_probe.py`) run
`evaluate_agent` on the cell's final weights with the row's own episode count and evaluation seed, so the new
numbers score the same episodes (same reset seeds) as the row, and only the named flag differs. They are shown
beside the primary score, never swapped in.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

from .cells import console_script
from .runner import append_result, read_results


def cell_weights(row: dict[str, Any], sweep_dir: Path) -> Path | None:
    """The row's cell folder when it still holds the final weights (adopted or lost cells have none)."""
    cell_dir = Path(sweep_dir) / row["cell_dir"]  # rows name it relative to the sweep's folder
    return cell_dir if (cell_dir / "model.safetensors").is_file() else None


def evaluate_cell(row: dict[str, Any], cell_dir: Path, *flags: str) -> dict[str, Any]:
    """`evaluate_agent` on a cell with the row's episodes and evaluation seed plus `flags`; its JSON result."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "eval.json"
        argv = [*console_script("evaluate_agent"), str(cell_dir), "--episodes", str(row["episodes"]),
                "--seed", str(row["eval_seed"]), *flags, "--quiet", "--json", str(out)]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        done = subprocess.run(argv, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
        return json.loads(out.read_text())


def reevaluate_sweep(sweep_dir: Path, path: Path, make_row: Callable[[dict[str, Any], Path], dict[str, Any] | None],
                     wanted: Callable[[dict[str, Any]], bool]) -> Iterator[dict[str, Any]]:
    """Append `make_row(row, cell_dir)` to `path` for each `wanted` row of the sweep not in `path` yet; yield each.

    Rows whose cell has no weights here (adopted from another sweep, or lost with a machine) are skipped with a
    message, so the diagnostic fills in as folders come; `make_row` may return None to skip a cell too.
    """
    done = {(r["task"], r["model"], r["seed"]) for r in read_results(path)}
    for row in read_results(Path(sweep_dir) / "results.jsonl"):
        key = (row["task"], row["model"], row["seed"])
        if key in done or not wanted(row):
            continue
        cell_dir = cell_weights(row, sweep_dir)
        if cell_dir is None:
            print(f"{key}: no weights in {Path(sweep_dir) / row['cell_dir']}; skipped", file=sys.stderr)
            continue
        new = make_row(row, cell_dir)
        if new is None:
            continue
        append_result(path, new)
        done.add(key)
        yield new


def reevaluate_to_files(sweep_dir: Path, out: Path, name: str,
                        make_row: Callable[[dict[str, Any], Path], dict[str, Any] | None],
                        wanted: Callable[[dict[str, Any]], bool], summary: Callable[[dict[str, Any]], str],
                        table: Callable[[list[dict[str, Any]]], str]) -> Path:
    """A diagnostic's whole run: `reevaluate_sweep` into `out/<name>.jsonl` (one `summary` line per new row on
    stderr), then `out/<name>.md` as `table` of every row there; returns the JSONL path."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.jsonl"
    for new in reevaluate_sweep(sweep_dir, path, make_row, wanted):
        print(f"{(new['task'], new['model'], new['seed'])}: {summary(new)}", file=sys.stderr, flush=True)
    (out / f"{name}.md").write_text(table(read_results(path)))
    print(f"wrote {path} and {out / f'{name}.md'}", file=sys.stderr)
    return path
