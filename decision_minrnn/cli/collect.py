"""`collect_dataset`: regenerate a D4RL-protocol dataset, train a SAC behaviour policy, or ship one; or set a dataset's
figures next to the D4RL v2 file's.

    collect_dataset TASK [--transitions N] [--seed K] [--out PATH] [--num-envs N]
    collect_dataset --train-behaviour ENV --steps N [--learning-starts N] [--snapshot-every K] [--run-dir DIR]
    collect_dataset --import-behaviour RUN_DIR --env ENV [--medium-step S] [--expert-step S|--keep-expert] [--dest DIR]
    collect_dataset --stats TASK [--data-source SOURCE] [--json PATH]
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .common import ArgumentParser, cli_entry, non_negative_int, positive_int, run_main


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="collect_dataset",
        description="Regenerate a D4RL-protocol dataset offline from the shipped SAC behaviour policies "
        "(hopper-medium, walker2d-medium-replay, halfcheetah-medium-expert, ...), or make those policies.",
    )
    p.add_argument("task", nargs="?", help="task to regenerate, e.g. hopper-medium")
    p.add_argument("--transitions", type=positive_int, help="dataset size (default: D4RL's; medium-replay: all)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of env resets and action noise (default 0)")
    p.add_argument("--out", type=Path, help="output file (default: the package cache, see `regenerated_dataset_path`)")
    p.add_argument("--num-envs", type=positive_int, default=16, help="vector env size (default 16)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    t = p.add_argument_group("train a SAC behaviour policy (stable-baselines3 defaults)")
    t.add_argument("--train-behaviour", metavar="ENV", help="environment: halfcheetah, hopper or walker2d")
    t.add_argument("--steps", type=positive_int, help="total environment steps (a rerun resumes)")
    t.add_argument("--learning-starts", type=int, default=10_000, help="random steps before learning (default 10000)")
    t.add_argument("--snapshot-every", type=positive_int, default=10_000, help="steps between snapshots")
    t.add_argument("--eval-episodes", type=positive_int, default=5, help="deterministic episodes per snapshot")
    t.add_argument("--run-dir", type=Path, help="run folder (default: <cache>/behaviour_runs/<Env>-seed<K>)")

    s = p.add_argument_group("ship a SAC run as agents/behaviour/<env>/")
    s.add_argument("--import-behaviour", metavar="RUN_DIR", type=Path, help="SAC run folder to convert")
    s.add_argument("--env", help="environment of the run")
    s.add_argument("--medium-step", type=int, help="force the medium snapshot (default: closest to D4RL's medium)")
    s.add_argument("--expert-step", type=int, help="force the expert snapshot (default: best sampled return)")
    s.add_argument("--keep-expert", action="store_true",
                   help="take medium and medium-replay from this run, keep the expert of the --dest folder")
    s.add_argument("--episodes", type=positive_int, default=20,
                   help="episodes per finalist and card measurement (default 20)")
    s.add_argument("--screen-episodes", type=positive_int, default=10,
                   help="sampled-action episodes per snapshot in the screening (default 10; a bimodal policy such as "
                   "hopper's needs about 100 for a mean within +-2 normalized points)")
    s.add_argument("--dest", type=Path, help="output folder (default: the shipped agents/behaviour/<env>)")

    from ..workflows.datasets import DATA_SOURCES

    st = p.add_argument_group("a dataset's figures next to the D4RL v2 file's (envs/d4rl_v2_statistics.json)")
    st.add_argument("--stats", metavar="TASK", help="print TASK's episodes, transitions, episode returns and time-out "
                    "share next to D4RL v2's, and the targets met or missed")
    st.add_argument("--data-source", choices=DATA_SOURCES, help="data of --stats (default: regenerated; a regenerated "
                    "dataset not in the cache is built first, at its default size: minutes)")
    st.add_argument("--json", type=Path, metavar="PATH", help="also write the --stats figures and targets to PATH")
    return p


@cli_entry
def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    modes = [m for m in (args.task, args.train_behaviour, args.import_behaviour, args.stats) if m is not None]
    if len(modes) != 1:
        parser.error("give exactly one of TASK, --train-behaviour ENV, --import-behaviour RUN_DIR, --stats TASK")
    if args.stats is None and (args.data_source is not None or args.json is not None):
        parser.error("--data-source and --json go with --stats TASK")
    if args.stats is not None:
        return _stats(args.stats, args.data_source or "regenerated", args.json)

    if args.train_behaviour is not None:
        if args.steps is None:
            parser.error("--train-behaviour needs --steps N")
        from ..behaviour.sac_training import train_behaviour
        from ..io import check_writable

        if args.run_dir is not None:
            check_writable(args.run_dir, "--run-dir")
        run = train_behaviour(
            args.train_behaviour, args.steps, seed=args.seed, run_dir=args.run_dir,
            learning_starts=args.learning_starts, snapshot_every=args.snapshot_every, eval_episodes=args.eval_episodes,
        )
        print(run)
        return 0

    if args.import_behaviour is not None:
        if args.env is None:
            parser.error("--import-behaviour needs --env ENV")
        from ..behaviour.shipping import import_behaviour

        dest = import_behaviour(
            args.import_behaviour, args.env, dest=args.dest, medium_step=args.medium_step,
            expert_step=args.expert_step, screen_episodes=args.screen_episodes, card_episodes=args.episodes,
            seed=args.seed, keep_expert=args.keep_expert,
        )
        print(dest)
        return 0

    from ..behaviour.regenerate import regenerate_dataset, regenerated_dataset_path
    from ..io import check_writable_file

    target = args.out if args.out is not None else regenerated_dataset_path(args.task, args.seed, args.transitions)
    check_writable_file(target, "--out" if args.out is not None else "the dataset cache file")
    path = regenerate_dataset(
        args.task, seed=args.seed, transitions=args.transitions, out=args.out, progress=not args.quiet,
        num_envs=args.num_envs,
    )
    print(path)
    return 0


def _stats(task_name: str, data_source: str, json_path: Path | None) -> int:
    """`--stats`: load the task's data, print its figures next to D4RL v2's and the targets; write them with --json."""
    from ..data.statistics import (
        compare,
        d4rl_entry,
        d4rl_figures,
        d4rl_statistics_table,
        dataset_statistics,
        report_lines,
    )
    from ..io import check_writable_file, write_json
    from ..tasks import resolve_task
    from ..workflows.datasets import load_dataset

    task = resolve_task(task_name)
    if json_path is not None:
        check_writable_file(json_path, "--json")
    dataset = load_dataset(task, data_source)
    ours = dataset_statistics(dataset)
    comparison = compare(ours, d4rl_figures(task))
    entry = d4rl_entry(task)
    print(f"{task.name}: {dataset.source} data ({dataset.location}) next to D4RL v2's {entry['d4rl_file']}")
    for line in report_lines(task, ours, comparison):
        print(line)
    if json_path is not None:
        write_json(json_path, {
            "task": task.name, "data_source": dataset.source, "location": dataset.location,
            "d4rl_file": entry["d4rl_file"], "ours": ours, "d4rl": entry["figures"], "comparison": comparison,
            "conventions": d4rl_statistics_table()["conventions"],
        })
    return 0


if __name__ == "__main__":
    run_main(main)
