"""`evaluate_agent DIR`: score a trained agent on its environment (D4RL-normalized), print a summary, write JSON.

    evaluate_agent agents/hopper-medium/mingru --episodes 10 --num-envs 5 --seed 0
    evaluate_agent runs/hopper-medium/mingru-seed0 --rollout window --target-return 1800 --json eval-1800.json
    evaluate_agent agents/hopper-medium/mingru --episodes 1 --video hopper.gif
    evaluate_agent agents/hopper-medium/mingru --runtime onnx       # the exported step graph under onnxruntime
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from ..training.config import ROLLOUTS
from .common import ArgumentParser, cli_entry, positive_int, run_main


def _finite_float(text: str) -> float:
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="evaluate_agent",
        description="Roll out a trained agent in its gymnasium environment (sync vector env, batched policy, per-env "
        "seeds) and report raw returns, the D4RL-normalized score (mean +- std over episodes), episode lengths and "
        "time per action. Writes JSON to DIR/eval.json unless --json says otherwise.",
    )
    p.add_argument("agent", type=Path, metavar="DIR", help="agent folder (model.safetensors, config.json, ...)")
    p.add_argument("--episodes", type=positive_int, help="episodes to run (default: the agent's eval_episodes)")
    p.add_argument("--num-envs", type=positive_int, help="parallel envs (default: the agent's eval_num_envs)")
    p.add_argument("--seed", type=int, default=0, help="evaluation seed; per-env reset seeds derive from it (0)")
    p.add_argument("--target-return", type=_finite_float,
                   help="return to condition on (default: the agent's target_return, else the env's first DT target)")
    p.add_argument("--rollout", choices=ROLLOUTS,
                   help="recurrent: carry the backbone state, O(1) per action; window: re-encode the last K steps "
                   "(DT's protocol). Default: the agent's config")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu",
                   help="where the policy runs (default cpu: small-batch acting is latency-bound)")
    p.add_argument("--max-steps", type=positive_int,
                   help="cut episodes at this many steps (quick checks only: scores are then not comparable)")
    p.add_argument("--json", type=Path, metavar="PATH", help="result file (default DIR/eval.json)")
    p.add_argument("--video", type=Path, metavar="PATH", help="also render one episode to PATH (.gif or .mp4)")
    p.add_argument("--compile", action="store_true",
                   help="run each action's model work through torch.compile: 1.5-1.8x cheaper actions after a "
                        "10-20 s compile on a CPU, so worth it only for long evaluations (falls back to eager, with "
                        "a warning, where compiling fails)")
    p.add_argument("--runtime", choices=("torch", "onnx"), default="torch",
                   help="torch: the Policy (default); onnx: the exported step graph under onnxruntime, exported "
                   "first to DIR/policy.onnx when missing or older than model.safetensors (recurrent rollout only)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


DEFAULT_EPISODES = 10  # when neither --episodes nor the agent's eval_episodes says


@cli_entry
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    from ..agent.policy import load_policy
    from ..devices import resolve_device
    from ..errors import RunFailure, UserInputError
    from ..io import check_writable_file, write_json
    from ..rollout.envs import env_seeds
    from ..rollout.evaluation import evaluate, summary

    device = resolve_device(args.device)
    out = args.json if args.json is not None else args.agent / "eval.json"
    if args.agent.is_dir():  # (a missing or wrong folder is reported by the loader, below)
        check_writable_file(out, "--json" if args.json is not None else "the result file (choose one with --json)")
    if args.video is not None:
        from ..rollout.video import check_video_path

        check_video_path(args.video)
    if args.runtime == "onnx":
        from ..export.onnx import onnx_policy_for_evaluation

        policy = onnx_policy_for_evaluation(args.agent, target_return=args.target_return, rollout=args.rollout,
                                            device=args.device, compile=args.compile, video=args.video)
    else:
        policy = load_policy(args.agent, target_return=args.target_return, device=device, rollout=args.rollout,
                             compile=args.compile)
    cfg = policy.meta.config
    try:
        result = evaluate(policy, episodes=args.episodes or cfg.eval_episodes or DEFAULT_EPISODES,
                          num_envs=args.num_envs or cfg.eval_num_envs, seed=args.seed, progress=not args.quiet,
                          max_steps=args.max_steps)
    except UserInputError:
        raise
    except Exception as e:  # a failure while running (env, model): exit code 1 with one line
        raise RunFailure(f"evaluation of {args.agent} failed: {type(e).__name__}: {e}") from e
    result["agent_dir"] = str(args.agent)
    result["runtime"] = args.runtime

    if args.video is not None:
        from ..rollout.video import render_video

        # The first episode of env 0 of the evaluation (same reset seed).
        result["video"] = render_video(args.agent, args.video, seed=env_seeds(args.seed, 1)[0],
                                       target_return=policy.target_return,
                                       rollout=policy.rollout, max_steps=args.max_steps)

    print(summary(result))
    write_json(out, result)
    video = result.get("video")
    if video is not None:
        if video["written"]:
            print(f"  video: {video['path']} ({video['frames']} frames, {video['backend']} rendering, episode return "
                  f"{video['return']:.1f})")
        else:
            print(f"  video: not written: {video['reason']}")
    print(f"  wrote {out}")
    return 0


if __name__ == "__main__":
    run_main(main)
