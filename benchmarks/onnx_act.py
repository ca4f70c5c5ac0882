"""Per-action latency at batch 1: the exported ONNX step under onnxruntime next to the eager torch Policy, same run.

    python benchmarks/onnx_act.py                                  # agents/hopper-medium/mingru, 2 threads
    python benchmarks/onnx_act.py --agent runs/x --threads 1 --json benchmarks/results/onnx_act.json

Three numbers per action (median over repeats of the mean over `--steps` consecutive actions of one episode):
- `onnxruntime session.run`: the graph alone (the state fed back, nothing else);
- `OnnxPolicy.act`: what a Python caller pays: the graph plus numpy bookkeeping (returns, resets, state dict);
- `torch Policy.act (eager)`: the package's own Policy, recurrent rollout, `torch.set_num_threads(threads)`.
The graph is exported into a temporary folder (the agent folder is not written to).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def per_action_us(act, obs: np.ndarray, steps: int, repeats: int, warmup: int = 20) -> list[float]:
    """Mean microseconds per call of `act(obs_t)` over `steps` calls, once per repeat (after `warmup` calls)."""
    for t in range(warmup):
        act(obs[t % len(obs)], t)
    out = []
    for _ in range(repeats):
        total = 0
        for t in range(steps):
            start = time.perf_counter_ns()
            act(obs[t % len(obs)], t)
            total += time.perf_counter_ns() - start
        out.append(total / steps / 1e3)
    return out


def _shown(path: Path) -> str:
    """The agent's path relative to the repository when it lies inside it (results hold no home folders)."""
    root = Path(__file__).resolve().parents[1]
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--agent", type=Path, default=Path(__file__).resolve().parents[1] / "agents/hopper-medium/mingru")
    p.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads and torch threads (2)")
    p.add_argument("--steps", type=int, default=300, help="actions per repeat (one episode from t = 0)")
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--opset", type=int, default=17, help="ONNX opset of the export (17; 20 has a fused Gelu)")
    p.add_argument("--json", type=Path, help="also write the numbers here")
    args = p.parse_args(argv)

    import onnxruntime as ort
    import torch

    from decision_minrnn.agent.policy import load_policy
    from decision_minrnn.bench.machine import describe, load_average, other_cpus_now, summary_line
    from decision_minrnn.export.onnx import export_onnx
    from decision_minrnn.export.onnx_policy import OnnxPolicy

    torch.set_num_threads(args.threads)
    machine = describe(args.threads, "cpu")  # date, CPU, load average and what else ran, before and after
    machine.update(load_before=load_average(), other_cpus_before=other_cpus_now())
    tmp = Path(tempfile.mkdtemp(prefix="onnx-act-"))
    export = export_onnx(args.agent, tmp / "policy.onnx", opset=args.opset)
    spec = export.spec
    rng = np.random.default_rng(0)
    meta_mean = np.asarray(spec["normalization"]["state_mean"], np.float32)
    meta_std = np.asarray(spec["normalization"]["state_std"], np.float32)
    obs = (meta_mean + meta_std * rng.standard_normal((64, spec["obs_dim"]))).astype(np.float32)

    # 1. the graph alone, state fed back
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(export.model_path), options, providers=["CPUExecutionProvider"])
    outputs = [o["name"] for o in spec["outputs"]]
    feed = {"return_to_go": np.array([spec["target_return"]], np.float32),
            "prev_action": np.zeros((1, spec["act_dim"]), np.float32),
            "has_prev": np.array([True]), "timestep": np.array([5], np.int64),
            **{s["input"]: np.zeros((1, *s["shape"][1:]), np.float32 if s["dtype"] == "float32" else np.int64)
               for s in spec["state"]}}

    def run_graph(o, t):
        feed["observation"] = o[None]
        feed["timestep"][0] = t
        action, *new = session.run(outputs, feed)
        for s, v in zip(spec["state"], new):
            feed[s["input"]] = v

    # 2. OnnxPolicy.act, 3. the eager torch Policy (both restart an episode at every repeat)
    onnx_policy = OnnxPolicy(export.model_path, intra_op_threads=args.threads)
    torch_policy = load_policy(args.agent, device="cpu", rollout="recurrent")

    def stepper(policy):
        def act(o, t):
            if t == 0:
                policy.reset(1)
            policy.act(o)
            policy.observe(1.0, False)
        return act

    results = {}
    for name, fn in (("onnxruntime session.run", run_graph), ("OnnxPolicy.act", stepper(onnx_policy)),
                     ("torch Policy.act (eager)", stepper(torch_policy))):
        times = per_action_us(fn, obs, args.steps, args.repeats)
        results[name] = {"median_us": statistics.median(times), "min_us": min(times), "repeats_us": times}

    machine["load_after"] = load_average()
    eager = results["torch Policy.act (eager)"]["median_us"]
    print(f"{args.agent} ({spec['backbone']}/{spec['layout']}, d_model {spec['agent']['config']['d_model']}, "
          f"{spec['agent']['config']['n_layers']} layers), batch 1, {args.threads} threads, {args.steps} actions x "
          f"{args.repeats} repeats; opset {args.opset}, onnxruntime {ort.__version__}, torch {torch.__version__}")
    print(f"machine: {summary_line(machine)}")
    for name, r in results.items():
        print(f"  {name:26s} median {r['median_us']:8.1f} us/action  (min {r['min_us']:7.1f})  "
              f"{r['median_us'] / eager:5.2f}x eager")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"agent": _shown(args.agent), "machine": machine, "threads": args.threads,
                                         "steps": args.steps, "repeats": args.repeats, "onnxruntime": ort.__version__,
                                         "torch": torch.__version__, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
