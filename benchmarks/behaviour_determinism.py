"""Do regenerated datasets depend on the CPU's math-library code path? A diagnostic for the next data version.

Datasets regenerated on two machines (an AMD EPYC and an Intel Xeon VM) from the same behaviour policy, seed and size
came out as different samples (the nine-task report's "mixed data"). The rollouts are chaotic, so one differing bit
in an action is enough. This script collects the first `--transitions` rows of a task's behaviour part, exactly as
the regenerator does (its `policy_part`, with `SampledPolicy` and the regenerator's seeds), in child processes
whose only difference is an environment variable that moves MKL or ATen onto another code path (`MKL_CBWR`,
`MKL_ENABLE_INSTRUCTIONS`, `ATEN_CPU_CAPABILITY`), and hashes what each collected, twice:

- `float32`: the actor as the regenerator runs it today (float32 weights, float32 matmuls);
- `float64 -> float32`: the same actor and noise computed in float64, the action rounded to float32 afterwards, a
  candidate for the next data version: float64's rounding differences (~1e-16) are absorbed by the float32 rounding
  except within ~1e-16 of a rounding boundary.

Equal hashes across settings mean the rows do not depend on that code path on this machine (a different CPU can
still differ: run it there too).

    python benchmarks/behaviour_determinism.py --task halfcheetah-medium --transitions 20000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys

SETTINGS = ("", "MKL_CBWR=COMPATIBLE", "MKL_CBWR=AVX2", "MKL_ENABLE_INSTRUCTIONS=AVX2", "ATEN_CPU_CAPABILITY=default")


def collect(task_name: str, role: str, transitions: int, seed: int, precision: str) -> str:
    """sha1 of the observations, actions and rewards of the first `transitions` rows of the `role` part."""
    return rows_hash(collect_rows(task_name, role, transitions, seed, precision))


def rows_hash(data) -> str:
    """sha1 (12 hex digits) of a collection's observations, actions and rewards."""
    import numpy as np

    digest = hashlib.sha1()
    for a in (data.observations, data.actions, data.rewards):
        digest.update(np.ascontiguousarray(a).tobytes())
    return digest.hexdigest()[:12]


class Float64Policy:
    """`SampledPolicy`'s actor and noise stream computed in float64, the action rounded to float32 at the end."""

    def __init__(self, actor, rng):
        import copy

        self.actor, self.rng = copy.deepcopy(actor).double(), rng

    def __call__(self, obs):
        import numpy as np
        import torch

        with torch.no_grad():
            x = torch.as_tensor(np.asarray(obs, dtype=np.float32)).double()
            noise = self.rng.standard_normal((x.shape[0], self.actor.act_dim), dtype=np.float32)
            return self.actor(x, torch.from_numpy(noise).double()).numpy().astype(np.float32)


def collect_rows(task_name: str, role: str, transitions: int, seed: int, precision: str):
    """The first `transitions` rows of the `role` part, collected by the regenerator's own part function."""
    from decision_minrnn.behaviour.actor import SampledPolicy
    from decision_minrnn.behaviour.regenerate import policy_part
    from decision_minrnn.tasks import resolve_task

    policy_type = SampledPolicy if precision == "float32" else Float64Policy
    data, _ = policy_part(resolve_task(task_name).env, role, transitions, seed, policy_type=policy_type)
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="halfcheetah-medium")
    parser.add_argument("--role", default="medium", choices=("medium", "expert"))
    parser.add_argument("--transitions", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", choices=("float32", "float64"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        import torch

        torch.set_num_threads(1)
        print(json.dumps(collect(args.task, args.role, args.transitions, args.seed, args.child)))
        return 0
    print(f"{args.task} {args.role}, first {args.transitions} rows, seed {args.seed}: sha1 of obs/actions/rewards")
    print("| setting | float32 (today) | float64 -> float32 |")
    print("|---|---|---|")
    for setting in SETTINGS:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        if setting:
            key, value = setting.split("=", 1)
            env[key] = value
        hashes = []
        for precision in ("float32", "float64"):
            cmd = [sys.executable, __file__, "--task", args.task, "--role", args.role, "--transitions",
                   str(args.transitions), "--seed", str(args.seed), "--child", precision]
            out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
            hashes.append(json.loads(out.strip().splitlines()[-1]))
        print(f"| {setting or '(none)'} | {hashes[0]} | {hashes[1]} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
