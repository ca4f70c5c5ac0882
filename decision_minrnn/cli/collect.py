"""`collect_dataset`: regenerate a D4RL-protocol dataset, train a SAC behaviour policy, or ship one.

    collect_dataset TASK [--transitions N] [--seed K] [--out PATH] [--num-envs N]
    collect_dataset --train-behaviour ENV --steps N [--learning-starts N] [--snapshot-every K] [--run-dir DIR]
    collect_dataset --import-behaviour RUN_DIR --env ENV [--medium-step S] [--expert-step S] [--dest DIR]
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .common import ArgumentParser, cli_entry, positive_int, run_main


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="collect_dataset",
        description="Regenerate a D4RL-protocol dataset offline from the shipped SAC behaviour policies "
        "(hopper-medium, walker2d-medium-replay, halfcheetah-medium-expert, ...), or make those policies.",
    )
    p.add_argument("task", nargs="?", help="task to regenerate, e.g. hopper-medium")
    p.add_argument("--transitions", type=positive_int, help="dataset size (default: D4RL's; medium-replay: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of env resets and action noise (default 0)")
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
    s.add_argument("--episodes", type=positive_int, default=20, help="episodes per card measurement (default 20)")
    s.add_argument("--dest", type=Path, help="output folder (default: the shipped agents/behaviour/<env>)")
    return p


@cli_entry
def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    modes = [m for m in (args.task, args.train_behaviour, args.import_behaviour) if m is not None]
    if len(modes) != 1:
        parser.error("give exactly one of TASK, --train-behaviour ENV, --import-behaviour RUN_DIR")

    if args.train_behaviour is not None:
        if args.steps is None:
            parser.error("--train-behaviour needs --steps N")
        from ..behaviour.sac_training import train_behaviour

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
            expert_step=args.expert_step, card_episodes=args.episodes, seed=args.seed,
        )
        print(dest)
        return 0

    from ..behaviour.regenerate import regenerate_dataset

    path = regenerate_dataset(
        args.task, seed=args.seed, transitions=args.transitions, out=args.out, progress=not args.quiet,
        num_envs=args.num_envs,
    )
    print(path)
    return 0


if __name__ == "__main__":
    run_main(main)
