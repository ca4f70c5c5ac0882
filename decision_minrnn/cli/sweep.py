"""`sweep_agents SPEC`: train and score every task x model x seed cell of a sweep spec; `--report` summarises.

    sweep_agents hopper-medium --jobs 2                      # the README's study, 2 cells at a time
    sweep_agents d4rl-nine --dry-run                         # the cells, their commands and the CPU-time estimate
    sweep_agents d4rl-nine --only model=mingru,dt,bc seed=0  # a part of it
    sweep_agents d4rl-nine --ray                             # on the Ray cluster of $RAY_ADDRESS (or this machine)
    sweep_agents d4rl-nine --adopt runs/sweeps/hopper-medium/results.jsonl  # shared cells, trained once
    sweep_agents d4rl-nine --report                          # OUT/report.md, report.json, plots
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Sequence

from .common import ArgumentParser, cli_entry, positive_int, run_main


def build_parser() -> ArgumentParser:
    from ..sweep.spec import DATA_SOURCES

    p = ArgumentParser(
        prog="sweep_agents",
        description="Run a sweep (tasks x models x seeds, each cell a train_agent run with a final evaluation) into "
        "OUT/cells/<task>/<model>/seed<k>/, one row per finished cell in OUT/results.jsonl. Rerunning the same command "
        "skips finished cells and resumes interrupted ones from their checkpoint.")
    p.add_argument("spec", metavar="SPEC", help="a sweep in configs/sweeps (hopper-medium, d4rl-nine, d4rl-nine-dt) "
                   "or a JSON file")
    p.add_argument("--out", type=Path, help="output folder (default runs/sweeps/<spec name>)")
    p.add_argument("--only", nargs="+", action="append", metavar="KEY=VALUE",
                   help="run only matching cells: task=, model=, seed= (commas for several values); the terms of "
                   "one --only must all match, any of several --only may")
    p.add_argument("--jobs", type=positive_int, default=1, help="cells at once, local executor (1)")
    p.add_argument("--ray", action="store_true",
                   help="run each cell as a Ray task on an existing cluster: --ray-address, else $RAY_ADDRESS, else "
                   "the cluster `ray start --head` made on this machine (needs .[sweep])")
    p.add_argument("--ray-address", metavar="ADDRESS", help="Ray cluster address (implies --ray)")
    p.add_argument("--executor", choices=("local", "ray"), default=None,
                   help="force an executor (default: ray with --ray, --ray-address or $RAY_ADDRESS, else local)")
    p.add_argument("--data-source", choices=DATA_SOURCES, default=None, help="override the spec's data source")
    p.add_argument("--dry-run", action="store_true", help="list the cells and commands and estimate CPU time")
    p.add_argument("--report", action="store_true", help="write OUT/report.md, report.json and plots from "
                   "OUT/results.jsonl (nothing is run)")
    p.add_argument("--adopt", type=Path, action="append", metavar="RESULTS_JSONL",
                   help="copy the finished cells of another sweep's results.jsonl that are cells of this one (same "
                   "task, model, seed, config hash, data source and version) into OUT/results.jsonl; nothing is run")
    p.add_argument("--reps", type=positive_int, default=2000, help="bootstrap resamples of the report (2000)")
    p.add_argument("--no-plots", action="store_true", help="report without the PNG plots")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--allow-mixed-data", action="store_true",
                   help="train new cells on this machine's dataset even where it differs from the one the task's "
                        "finished cells were trained on (by default such cells are left for another machine)")
    return p


@cli_entry
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..errors import UserInputError
    from ..sweep.cells import parse_only
    from ..sweep.runner import (RESULTS, default_out, dry_run, latest_rows, measured_cell_minutes, plan, read_results,
                                 run_sweep)
    from ..sweep.spec import load_spec

    spec = load_spec(args.spec)
    out = args.out or default_out(spec)
    if args.report:
        from ..sweep.report import build_report

        results = out / RESULTS
        if not results.exists():
            raise UserInputError(f"no results to report: {results} does not exist (run the sweep first)")
        report = build_report(read_results(results), out, title=f"Sweep {spec.name}",
                              model_order=[m.name for m in spec.models], task_order=list(spec.tasks),
                              labels={m.name: m.display for m in spec.models}, reference=spec.reference,
                              reps=args.reps, plots=not args.no_plots)
        print(report["markdown"])
        print(f"report: {out / 'report.md'}, {out / 'report.json'}"
              + "".join(f", {out / f}" for f in report["plots"].values()), file=sys.stderr)
        return 0
    if args.adopt:
        from ..sweep.runner import adopt_results

        for source in args.adopt:
            lines = adopt_results(spec, out, source, data_source=args.data_source)
            print("\n".join(lines) or f"{source}: no cells of sweep {spec.name}", file=sys.stderr)
        return 0
    only = parse_only(args.only)
    wants_ray = args.ray or args.ray_address or os.environ.get("RAY_ADDRESS")
    executor = args.executor or ("ray" if wants_ray else "local")
    if args.dry_run:
        planned, warnings = plan(spec, out, only=only, data_source=args.data_source)
        for w in warnings:
            print(f"warning: {w}", file=sys.stderr)
        rows = read_results(out / RESULTS)
        done = set(latest_rows(rows))
        print(dry_run(spec, out, planned, done, args.jobs, measured_cell_minutes(rows)))
        return 0
    _terminate_as_interrupt()
    failed = run_sweep(spec, out, only=only, jobs=args.jobs, executor=executor,
                       ray_address=args.ray_address,
                       data_source=args.data_source, progress=not args.no_progress,
                       allow_mixed_data=args.allow_mixed_data)
    return 1 if failed else 0


def _terminate_as_interrupt() -> None:
    """SIGTERM (kill, a batch scheduler) ends the sweep like Ctrl-C: running cells are stopped, their checkpoints
    kept for the next run, instead of leaving train_agent children running on their own."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


if __name__ == "__main__":
    run_main(main)
