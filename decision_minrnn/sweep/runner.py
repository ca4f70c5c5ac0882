"""Run a sweep: plan its cells, skip the finished ones, run the rest on an executor, write one results row per cell.

`OUT/results.jsonl` is the sweep's record: one JSON object per finished cell, appended (and flushed to disk) by the
driver as each cell finishes, so an interrupted sweep loses no finished cell and a rerun skips them. A row is only
ever added, never rewritten; when a cell appears twice (rows merged from two machines) the last row counts.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..errors import DataMismatchError, UserInputError
from .cells import (Cell, config_hash, expected_config, plan_cells, protocol_sets, select_cells, shell_line,
                    train_argv)
from .executors import EVAL_JSON, NOT_STARTED, CellJob, Outcome, cell_state, run_local, run_ray
from .spec import SweepSpec

RESULTS = "results.jsonl"
FAIL_FAST = 3  # this many failed cells and no success: start no more


def default_out(spec: SweepSpec) -> Path:
    """`runs/sweeps/<spec name>` under the current directory."""
    return Path("runs") / "sweeps" / spec.name


def read_results(path: Path) -> list[dict[str, Any]]:
    """Rows of a results file; a line that is not JSON (a driver killed mid-write) is skipped with a warning."""
    if not path.exists():
        return []
    rows = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            print(f"warning: {path}:{i} is not a JSON row (an interrupted write?); ignored", file=sys.stderr)
            continue
        if isinstance(row, dict) and all(k in row for k in ("task", "model", "seed")):
            rows.append(row)
    return rows


def latest_rows(rows: Sequence[dict[str, Any]]) -> dict[tuple[str, str, int], dict[str, Any]]:
    """The last row of each (task, model, seed)."""
    return {(r["task"], r["model"], int(r["seed"])): r for r in rows}


def append_result(path: Path, row: dict[str, Any]) -> None:
    """Append one row as a single write and fsync it: a crash leaves at most one unreadable last line."""
    line = json.dumps(row, sort_keys=False, allow_nan=True) + "\n"
    with open(path, "a") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


@contextlib.contextmanager
def sweep_lock(out: Path) -> Iterator[None]:
    """One driver per output folder: two would run the same cells into the same folders."""
    import fcntl

    out.mkdir(parents=True, exist_ok=True)
    f = open(out / ".sweep.lock", "a+")
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            raise UserInputError(f"{out} is in use by another sweep_agents ({f.read().strip() or 'pid unknown'})")
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {os.uname().nodename}\n")
        f.flush()
        yield
    finally:
        f.close()


def code_version() -> dict[str, Any]:
    """Package version, plus the git commit (and whether tracked files differ from it) in a source checkout."""
    from .. import __version__

    out: dict[str, Any] = {"decision_minrnn": __version__}
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file() and (root / ".git").exists():
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                    timeout=10)
            if commit.returncode == 0:
                out["git_commit"] = commit.stdout.strip()
                dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                       capture_output=True, text=True, timeout=30)
                if dirty.returncode == 0:
                    out["git_dirty"] = bool(dirty.stdout.strip())
    return out


def final_evaluation_seed(run_seed: int) -> int:
    """The seed of train_agent's own final evaluation, so the `evaluate_agent` fallback plays the same episodes."""
    try:
        from ..rollout.envs import evaluation_seed
    except ImportError:  # before the evaluation-seed streams: the trainer used run seed + 10000
        return run_seed + 10_000
    return evaluation_seed(run_seed, "final")


@dataclass
class PlannedCell:
    """A cell with its folder, command and expected config."""

    cell: Cell
    cell_dir: Path
    argv: list[str]  # train_agent arguments
    config: dict[str, Any]

    def job(self, threads: int = 1, data_mean: float | None = None) -> CellJob:
        """The executor's job: train_agent's arguments (with `--expect-data-mean` when `data_mean` is given), and
        evaluate_agent's for a folder killed while scoring."""
        cfg = self.config
        episodes = int(cfg["eval_episodes"])
        eval_argv = [str(self.cell_dir), "--episodes", str(episodes),
                     "--num-envs", str(min(int(cfg["eval_num_envs"]), episodes)),
                     "--seed", str(final_evaluation_seed(self.cell.seed)), "--json", str(self.cell_dir / EVAL_JSON),
                     "--quiet"]
        return CellJob(key=self.cell.key, label=self.cell.label(), cell_dir=str(self.cell_dir.resolve()),
                       train_argv=self.argv + ([] if data_mean is None else ["--expect-data-mean", repr(data_mean)]),
                       eval_argv=eval_argv, threads=threads)


def plan(spec: SweepSpec, out: Path, *, only: list[dict[str, set[str]]] | None = None,
         data_source: str | None = None) -> tuple[list[PlannedCell], list[str]]:
    """The selected cells with their commands (configs checked now) and warnings about the protocol."""
    protocol, warnings = protocol_sets(spec)
    source = data_source or spec.data_source
    planned = []
    checked: dict[str, dict[str, Any]] = {}
    for cell in select_cells(plan_cells(spec), only or []):
        cell_dir = out / cell.rel_dir
        if cell.model.name not in checked:
            checked[cell.model.name] = expected_config(cell, spec, protocol)
            if checked[cell.model.name]["eval_episodes"] <= 0:
                raise UserInputError(f"sweep {spec.name}, model {cell.model.name}: eval_episodes is 0, so a cell "
                                     f"would have no result; set protocol.eval_episodes")
        planned.append(PlannedCell(cell, cell_dir, train_argv(cell, spec, cell_dir, data_source=source,
                                                                protocol=protocol), checked[cell.model.name]))
    return planned, warnings


def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def make_row(spec: SweepSpec, p: PlannedCell, outcome: Outcome, code: dict[str, Any],
             data_source: str) -> dict[str, Any]:
    """The results row of a finished cell, from its folder's files (optional fields may be missing: then None)."""
    files = outcome.files
    metrics, run, cfg_file = files.get("metrics.json") or {}, files.get("run.json") or {}, files.get("config.json")
    ev = metrics.get("evaluation") or files.get(EVAL_JSON) or {}
    data = run.get("data") or {}
    config = _get(cfg_file, "config") or p.config
    data_version = (metrics.get("data_version") or _get(ev, "data", "version") or data.get("version")
                    or data.get("data_version"))
    return {
        "task": p.cell.task, "model": p.cell.model.name, "seed": p.cell.seed,
        "label": p.cell.model.display, "backbone": config.get("backbone"), "config": p.cell.model.config,
        "sweep": spec.name,
        "returns": ev.get("returns"),
        "normalized_mean": ev.get("normalized_mean"),
        "lengths": ev.get("lengths"),
        "episodes": ev.get("episodes", len(ev.get("returns") or [])),
        "eval_seed": ev.get("seed"), "env_seeds": ev.get("env_seeds"),
        "rollout": ev.get("rollout") or config.get("rollout"),
        "target_return": ev.get("target_return"),
        "score_label": ev.get("score_label") or data.get("score_label"),
        "data_source": metrics.get("data_source") or data.get("source") or _get(ev, "data", "source"),
        "data_source_requested": run.get("data_source_requested", data_source),
        "data_location": data.get("location") or _get(ev, "data", "location"),
        "comparable_with_d4rl": metrics.get("comparable_with_d4rl", data.get("comparable_with_d4rl")),
        "data_version": data_version,
        "dataset_return_normalized_mean": metrics.get("dataset_return_normalized_mean",
                                                      data.get("return_normalized_mean")),
        "dataset_return_raw_mean": data.get("return_raw_mean"),
        "protocol": metrics.get("protocol"),
        "learning_curve": metrics.get("learning_curve"),
        "steps": metrics.get("steps", config.get("steps")), "final_loss": metrics.get("final_loss"),
        "config_hash": config_hash(config),
        "code_version": code, "versions": run.get("versions"),
        "wall_s": round(outcome.wall_s, 3), "actions": outcome.actions, "host": outcome.host,
        "train_s": metrics.get("train_seconds"),  # optimisation only (no evaluations); None if not recorded
        "train_cpu_s": metrics.get("train_cpu_seconds"),  # the same in process CPU time (no waits, no pauses)
        "policy_ms_per_action": _get(ev, "timing", "policy_ms_per_action"),  # final evaluation, batched envs
        "load_avg": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "cell_dir": str(p.cell.rel_dir),
        "finished_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def adopt_results(spec: SweepSpec, out: Path, source: Path, *, data_source: str | None = None) -> list[str]:
    """Copy into OUT/results.jsonl the rows of `source` (another sweep's results) that are cells of this spec: the
    same task, model and seed, the same config hash (so the same protocol), data source and data version, and the
    same final-evaluation seed. A cell shared by two sweeps is then trained once, even after its folder is gone.
    Cells this sweep already has are left as they are. Each copied row keeps its measurements (returns, wall time,
    actions, code version) and gains `adopted_from`. Returns one line per copied or refused row."""
    from ..data.d4rl import DATA_VERSION

    if not source.is_file():
        raise UserInputError(f"--adopt {source}: no such results file")
    src = source.resolve()
    if src == (out / RESULTS).resolve():
        raise UserInputError(f"--adopt {source} is this sweep's own results file")
    wanted_source = data_source or spec.data_source
    planned, _ = plan(spec, out, data_source=wanted_source)
    by_key = {p.cell.key: p for p in planned}
    lines: list[str] = []
    with sweep_lock(out):
        results = out / RESULTS
        have = set(latest_rows(read_results(results)))
        for key, row in latest_rows(read_results(source)).items():
            p = by_key.get(key)
            if p is None:
                continue
            label = p.cell.label()
            if key in have:
                lines.append(f"kept    {label}: this sweep has it already")
                continue
            why = []
            if row.get("config_hash") != config_hash(p.config):
                why.append("a different config (config_hash)")
            if row.get("data_source") != wanted_source:
                why.append(f"data source {row.get('data_source')!r}, this sweep's is {wanted_source!r}")
            if wanted_source == "regenerated" and row.get("data_version") != DATA_VERSION:
                why.append(f"data version {row.get('data_version')}, this package's is {DATA_VERSION}")
            if row.get("eval_seed") != final_evaluation_seed(p.cell.seed):
                why.append(f"final evaluation seed {row.get('eval_seed')}")
            if not row.get("returns"):
                why.append("no returns")
            if why:
                lines.append(f"refused {label}: " + "; ".join(why))
                continue
            adopted = dict(row, sweep=spec.name,
                           adopted_from={"sweep": row.get("sweep"), "results": str(src),
                                         "finished_at": row.get("finished_at")})
            append_result(results, adopted)
            have.add(key)
            lines.append(f"adopted {label} from sweep {row.get('sweep')}")
    return lines


def expected_data_means(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Per task, the mean episode return of the dataset most of its finished cells were trained on: what a new cell
    of the task must find on its machine (`train_agent --expect-data-mean`), so that no task mixes more data."""
    counts: dict[str, Counter] = {}
    for r in latest_rows(rows).values():
        raw = r.get("dataset_return_raw_mean")
        if isinstance(raw, (int, float)) and math.isfinite(raw):
            counts.setdefault(r["task"], Counter())[float(raw)] += 1
    return {task: c.most_common(1)[0][0] for task, c in counts.items()}


def measured_cell_minutes(rows: Sequence[dict[str, Any]]) -> dict[str, tuple[float, int]]:
    """Per model: median wall minutes of its finished cells that ran start to end in one go, and how many there were.

    The report's cost table's "cell minutes" (`report.costs`); read-back and resumed cells say nothing about a cell.
    """
    from .report import costs

    latest = list(latest_rows(rows).values())
    out = {}
    for model, cost in costs(latest, sorted({r["model"] for r in latest})).items():
        if cost["cell_minutes"]:
            out[model] = (cost["cell_minutes"]["median"], cost["cell_minutes"]["n"])
    return out


def _core_minutes(cells: Sequence[PlannedCell], minutes: dict[str, float]) -> tuple[float, set[str]]:
    """Sum of the cells' per-model minutes, and the models that have no number."""
    total, missing = 0.0, set()
    for p in cells:
        m = minutes.get(p.cell.model.name)
        if m is None:
            missing.add(p.cell.model.name)
        else:
            total += m
    return total, missing


def estimate(spec: SweepSpec, cells: Sequence[PlannedCell], jobs: int,
             measured: dict[str, tuple[float, int]] | None = None) -> str:
    """CPU time of `cells` from the spec's cost table, with its source; models without a number are named.

    With `measured` (`measured_cell_minutes` of the finished rows), a second line estimates the same cells at the
    minutes this sweep's own cells took, falling back to the spec's number for a model with no such cell yet.
    """
    minutes, unknown = _core_minutes(cells, spec.cost.cpu_minutes)
    text = (f"estimated CPU time for {len(cells)} cells: {minutes:.0f} core-minutes = {minutes / 60:.1f} core-hours "
            f"(about {minutes / 60 / max(1, jobs):.1f} h of wall time at --jobs {jobs} on {jobs} free cores)")
    if unknown:
        text += f"; no cost for {', '.join(sorted(unknown))} (not counted)"
    text += f"\n  per-cell minutes: {', '.join(f'{k} {v:g}' for k, v in spec.cost.cpu_minutes.items()) or 'none'}"
    text += f"\n  source: {spec.cost.source or 'the spec gives no source for its cost table'}"
    if measured and cells:
        total, _ = _core_minutes(cells, {**spec.cost.cpu_minutes, **{k: v for k, (v, _) in measured.items()}})
        models = list(dict.fromkeys(p.cell.model.name for p in cells))
        used = [m for m in models if m in measured]
        fallback = sorted(m for m in models if m not in measured and m in spec.cost.cpu_minutes)
        text += (f"\nat this sweep's measured minutes: {total:.0f} core-minutes = {total / 60:.1f} core-hours (about "
                 f"{total / 60 / max(1, jobs):.1f} h at --jobs {jobs})")
        text += "\n  median wall minutes of the finished cells run in one go: " + (
            ", ".join(f"{m} {measured[m][0]:.1f} (n={measured[m][1]})" for m in used) or "none")
        if fallback:
            text += f"; the spec's minutes for {', '.join(fallback)} (no such cell yet)"
    return text


def dry_run(spec: SweepSpec, out: Path, planned: Sequence[PlannedCell], done: set[tuple[str, str, int]],
            jobs: int, measured: dict[str, tuple[float, int]] | None = None) -> str:
    """One line per selected cell (task, model, seed, state, train_agent command), then the CPU-time estimate."""
    lines = [f"sweep {spec.name}: {len(planned)} cells, results in {out / RESULTS}"]
    pending = []
    for p in planned:
        state = "done" if p.cell.key in done else cell_state(p.cell_dir)
        if state != "done":
            pending.append(p)
        resume = " --resume" if state == "resume" else ""
        lines.append(f"{p.cell.task:<28} {p.cell.model.name:<12} seed{p.cell.seed:<3} {state:<8} "
                     f"{shell_line(['train_agent', *p.argv])}{resume}")
    lines.append(f"{len(planned) - len(pending)} done, {len(pending)} to run")
    lines.append(estimate(spec, pending, jobs, measured))
    return "\n".join(lines)


def run_sweep(spec: SweepSpec, out: Path, *, only: list[dict[str, set[str]]] | None = None, jobs: int = 1,
              executor: str = "local", ray_address: str | None = None, data_source: str | None = None,
              progress: bool = True, allow_mixed_data: bool = False) -> int:
    """Run every selected cell that has no results row; returns the number of cells that failed.

    A cell whose task has finished cells is started with the mean of their dataset (`expected_data_means`) and
    stops before training where this machine's dataset differs (regenerated elsewhere: other samples); such cells
    are listed, not counted as failed, and stay for a machine with the same data. `allow_mixed_data` skips that.
    """
    from tqdm.auto import tqdm

    source = data_source or spec.data_source
    planned, warnings = plan(spec, out, only=only, data_source=source)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    with sweep_lock(out):
        results = out / RESULTS
        rows = read_results(results)
        done = set(latest_rows(rows))
        todo = [p for p in planned if p.cell.key not in done]
        expected = {} if allow_mixed_data else expected_data_means(rows)
        by_key = {p.cell.key: p for p in todo}
        code = code_version()
        failures: list[str] = []
        other_data: list[str] = []
        print(f"sweep {spec.name}: {len(planned)} cells selected, {len(planned) - len(todo)} already done, "
              f"{len(todo)} to run ({executor}); results: {results}", file=sys.stderr)
        bar = tqdm(total=len(planned), initial=len(planned) - len(todo), unit="cell", desc=f"sweep {spec.name}",
                   disable=not progress, dynamic_ncols=True, file=sys.stderr)

        succeeded = 0

        def on_done(job: CellJob, outcome: Outcome) -> bool:
            nonlocal succeeded
            p = by_key[job.key]
            if outcome.rc == NOT_STARTED:
                return False
            if outcome.ok:
                append_result(results, make_row(spec, p, outcome, code, source))
                succeeded += 1
            elif outcome.rc == DataMismatchError.exit_code:
                other_data.append(p.cell.label())
                bar.write(f"cell not run: {p.cell.label()}: {outcome.error}", file=sys.stderr)
            else:
                why = outcome.error or f"exit code {outcome.rc}"
                failures.append(f"{p.cell.label()}: {why}")
                bar.write(f"cell failed: {p.cell.label()} ({why}); log: {p.cell_dir / 'sweep.log'}"
                          + (f"\n{outcome.log_tail}" if outcome.log_tail else ""), file=sys.stderr)
            bar.update(1)
            if failures:
                bar.set_postfix(failed=len(failures))
            # The first cells all failing is nearly always systematic (no dataset, a bad install): stop early
            # instead of failing every cell of the sweep one by one.
            return succeeded > 0 or len(failures) < FAIL_FAST

        try:
            jobs_list = [p.job(threads=spec.executor.threads, data_mean=expected.get(p.cell.task)) for p in todo]
            if executor == "ray":
                run_ray(jobs_list, address=ray_address, cpus=spec.executor.cpus, gpus=spec.executor.gpus,
                        on_done=on_done)
            else:
                run_local(jobs_list, workers=jobs, on_done=on_done)
        finally:
            bar.close()
        if other_data:
            print(f"{len(other_data)} cell{'s' * (len(other_data) != 1)} not run: this machine's dataset of their "
                  f"task differs from the one the task's finished cells were trained on (other samples; README, Datasets without D4RL): "
                  + ", ".join(other_data) + ". Run them on a machine that regenerates the same data, or pass "
                  "--allow-mixed-data to train them on this one's.", file=sys.stderr)
        if failures:
            print(f"{len(failures)} of {len(todo)} cells failed (rerun the same command to retry them):\n  "
                  + "\n  ".join(failures), file=sys.stderr)
            if not succeeded and len(failures) >= FAIL_FAST:
                print(f"stopped early: the first {len(failures)} cells failed and none succeeded; the remaining "
                      f"cells were not started (see the logs above)", file=sys.stderr)
        elif not other_data:
            print(f"sweep {spec.name}: all {len(planned)} selected cells done; report: sweep_agents "
                  f"{_spec_arg(spec)} --out {out} --report", file=sys.stderr)
        return len(failures)


def _spec_arg(spec: SweepSpec) -> str:
    """How to name the spec on the command line again: its shipped name, else its path."""
    from .spec import sweeps_dir

    if spec.path is not None and spec.path.resolve().parent != sweeps_dir().resolve():
        return str(spec.path)
    return spec.name
