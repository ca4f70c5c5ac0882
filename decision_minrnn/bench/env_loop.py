"""Evaluation throughput: a fixed number of environment steps driven by a policy, against the same steps driven by
a zero-cost policy (all-zero actions). The ratio of the two is what the policy adds to evaluation.

The environments are the evaluator's own (`evaluation.make_eval_env`: synchronous vector env, same-step autoreset,
seeds from `evaluation.env_seeds`); the policy is `Policy.act` / `Policy.observe` on a random-weight model (the
cost of acting does not depend on the weights; episode lengths do, so resets are counted and reported).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from .timing import Samples
from .workload import Workload

WARMUP_VECTOR_STEPS = 20


class ZeroPolicy:
    """The cheapest possible policy: zeros, nothing to observe. Driving the envs with it measures the simulation.

    `random=True` draws uniform actions in [-1, 1] instead (still ~free): the simulation's cost under actions that
    move the robot, since contacts and falls make MuJoCo's step and the resets cost more than standing still.
    """

    def __init__(self, act_dim: int, random: bool = False):
        self.act_dim = act_dim
        self.num_envs = 1
        self.rng = np.random.default_rng(0) if random else None

    def reset(self, num_envs: int, env: Any = None) -> "ZeroPolicy":
        self.num_envs = num_envs
        return self

    def act(self, observation: np.ndarray) -> np.ndarray:
        if self.rng is not None:
            return self.rng.uniform(-1.0, 1.0, (self.num_envs, self.act_dim)).astype(np.float32)
        return np.zeros((self.num_envs, self.act_dim), dtype=np.float32)

    def observe(self, reward: Any, done: Any = False) -> None:
        pass


def build_env_loop(params: dict[str, Any], device: torch.device) -> Workload:
    from ..evaluation import env_seeds, make_eval_env
    from .acting import benchmark_policy
    from .model_step import ACT_DIM

    num_envs = int(params["num_envs"])
    vector_steps = max(1, int(params["env_steps"]) // num_envs)
    env = make_eval_env(params.get("env_id", "Hopper-v5"), num_envs)
    kind = params["policy"]
    policy = ZeroPolicy(ACT_DIM, random=kind == "random") if kind in ("zeros", "random") else \
        benchmark_policy(params, device)
    seeds = env_seeds(int(params.get("seed", 0)), num_envs)

    def rollout(n: int) -> dict[str, float]:
        policy.reset(num_envs, env=env)
        obs, _ = env.reset(seed=seeds)
        policy_s = env_s = 0.0
        episodes_done = 0
        start = time.perf_counter()
        for _ in range(n):
            t0 = time.perf_counter()
            actions = policy.act(obs)
            t1 = time.perf_counter()
            obs, rewards, terminated, truncated, _ = env.step(actions)
            t2 = time.perf_counter()
            done = np.logical_or(terminated, truncated)
            policy.observe(rewards, done)
            policy_s += (t1 - t0) + (time.perf_counter() - t2)
            env_s += t2 - t1
            episodes_done += int(done.sum())
        return {"loop_s": time.perf_counter() - start, "policy_s": policy_s, "env_s": env_s,
                "episodes_done": episodes_done}

    rollout(WARMUP_VECTOR_STEPS)

    def summarise(samples: Samples) -> dict[str, Any]:
        runs = samples.outputs
        env_steps = vector_steps * num_envs
        loop = float(np.median([r["loop_s"] for r in runs]))
        pol = float(np.median([r["policy_s"] for r in runs]))
        sim = float(np.median([r["env_s"] for r in runs]))
        return {"env_steps": env_steps, "vector_steps": vector_steps, "num_envs": num_envs,
                "us_per_env_step": 1e6 * loop / env_steps, "policy_us_per_env_step": 1e6 * pol / env_steps,
                "sim_us_per_env_step": 1e6 * sim / env_steps, "policy_over_sim": pol / sim if sim else None,
                "episodes_done": [r["episodes_done"] for r in runs]}

    return Workload(lambda: rollout(vector_steps), summarise,
                    info={"env_id": params.get("env_id", "Hopper-v5"), "policy": params["policy"],
                          "weights": {"zeros": "zero actions", "random": "uniform random actions"}.get(
                              kind, "random (untrained) model weights")})
