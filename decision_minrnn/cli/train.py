"""`train_agent --env TASK`: train a return-conditioned policy on any backbone, then score it (workflows/train.py)."""

from __future__ import annotations

import sys
from typing import Sequence

from .common import ArgumentParser, cli_entry, non_negative_int, run_main


def build_parser() -> ArgumentParser:
    from ..nn.model import MODEL_NAMES
    from ..workflows.datasets import DATA_SOURCES

    p = ArgumentParser(prog="train_agent", description="Train a Decision-Transformer-style policy offline.")
    p.add_argument("--env", required=True, metavar="TASK",
                   help="task, e.g. hopper-medium (a -v2 suffix: D4RL file only)")
    p.add_argument("--backbone", choices=MODEL_NAMES, default=None,
                   help="sequence backbone (default: the config's, else mingru); mlp-bc is the BC baseline")
    p.add_argument("--config", default=None, metavar="NAME_OR_FILE",
                   help="config name in configs/ (quick, dt, mingru, ...) or a JSON file; default: the backbone's")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    p.add_argument("--steps", type=int, default=None, help="gradient steps (overrides the config)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of weights, sampler and evaluation (>= 0)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--data-source", choices=DATA_SOURCES, default="auto")
    p.add_argument("--out", default=None, help="run folder (default runs/<task>/<backbone>-seed<k>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--expect-data-mean", type=float, default=None, metavar="RETURN",
                   help="stop (exit 3) before training unless the dataset's mean episode return is RETURN (sweeps "
                        "pass the one their finished cells of the task were trained on)")
    return p


@cli_entry
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..errors import UserInputError
    from ..tasks import resolve_task
    from ..training.config import load_config
    from ..workflows.train import train_agent

    task = resolve_task(args.env)  # fail on a bad name before anything slow
    if args.steps is not None and args.steps <= 0:
        raise UserInputError(f"--steps must be > 0, got {args.steps}")
    overrides = {}
    if args.backbone:
        overrides["backbone"] = args.backbone
    if args.steps is not None:
        overrides["steps"] = args.steps
    config = args.config or (args.backbone or "mingru")  # default: the backbone's own config file
    cfg = load_config(config, overrides, args.set)
    train_agent(task, cfg, seed=args.seed, out=args.out, device=args.device, data_source=args.data_source,
          resume=args.resume, progress=not args.no_progress, command=["train_agent", *(argv or sys.argv[1:])],
          expect_data_mean=args.expect_data_mean)
    return 0


if __name__ == "__main__":
    run_main(main)
