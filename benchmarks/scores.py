"""Score runs on one task: train several agents (backbone x training context x seed) and evaluate each with both
rollout modes. Each run is a `train_agent` subprocess (one torch thread); results are appended to a JSONL file as they
come, so the sweep can be interrupted and rerun (finished runs are skipped).

    python benchmarks/scores.py --task hopper-medium --out benchmarks/results/scores --seeds 0 --parallel 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# (name, train_agent arguments): the same token budget (steps x batch x sequence length) for every run
RUNS = {
    "mingru-window": ["--backbone", "mingru"],
    "minlstm-window": ["--backbone", "minlstm"],
    "transformer-window": ["--backbone", "transformer"],
    "mlp-bc": ["--backbone", "mlp-bc"],
    "mingru-episode": ["--backbone", "mingru", "--set", "context=episode", "--set", "context_len=1000",
                       "--set", "batch_size=2", "--steps", "12800"],
    "mingru-burnin": ["--backbone", "mingru", "--set", "context=burn_in", "--set", "burn_in=60",
                      "--set", "batch_size=16"],
}


def run_one(name: str, extra: list[str], task: str, seed: int, out: Path, config: str, data_source: str) -> dict:
    run_dir = out / f"{name}-seed{seed}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    started = time.time()
    if not (run_dir / "model.safetensors").exists():
        resume = ["--resume"] if (run_dir / "checkpoint").exists() else []
        cmd = ["train_agent", "--env", task, "--config", config, *extra, "--seed", str(seed), "--out", str(run_dir),
               "--data-source", data_source, "--no-progress", "--set", "eval_episodes=0", *resume]
        with open(out / f"{name}-seed{seed}.log", "a") as log:
            subprocess.run(cmd, stdout=log, stderr=log, env=env, check=True)
    train_s = time.time() - started
    result = {"name": name, "seed": seed, "task": task, "train_wall_s": train_s}
    for rollout in ("recurrent", "window"):
        json_path = run_dir / f"eval-{rollout}.json"
        cmd = ["evaluate_agent", str(run_dir), "--episodes", "10", "--num-envs", "5", "--seed", "100",
               "--rollout", rollout, "--json", str(json_path), "--quiet"]
        with open(out / f"{name}-seed{seed}.log", "a") as log:
            subprocess.run(cmd, stdout=log, stderr=log, env=env, check=True)
        ev = json.loads(json_path.read_text())
        result[rollout] = {"normalized_mean": ev["normalized_mean"], "normalized_std": ev["normalized_std"],
                           "timing": ev["timing"]}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    result["dataset_normalized_mean"] = metrics["dataset_return_normalized_mean"]
    result["data_source"] = metrics["data_source"]
    with open(out / "scores.jsonl", "a") as f:
        f.write(json.dumps(result) + "\n")
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--task", default="hopper-medium")
    p.add_argument("--config", default="small")
    p.add_argument("--data-source", default="regenerated")
    p.add_argument("--runs", nargs="*", default=list(RUNS))
    p.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    p.add_argument("--parallel", type=int, default=2)
    p.add_argument("--out", default="benchmarks/results/scores")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    done = set()
    if (out / "scores.jsonl").exists():
        done = {(r["name"], r["seed"]) for r in map(json.loads, (out / "scores.jsonl").read_text().splitlines())}
    jobs = [(n, s) for s in args.seeds for n in args.runs if (n, s) not in done]
    print(f"{len(jobs)} runs on {args.task} ({args.config}, {args.data_source}), {args.parallel} at a time",
          file=sys.stderr)
    with ThreadPoolExecutor(args.parallel) as pool:
        for f in [pool.submit(run_one, n, RUNS[n], args.task, s, out, args.config, args.data_source) for n, s in jobs]:
            try:
                f.result()
            except subprocess.CalledProcessError as e:
                print(f"run failed: {e}", file=sys.stderr)


if __name__ == "__main__":
    main()
