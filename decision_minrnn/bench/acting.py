"""Cost per action along an episode: `Policy.act` + `Policy.observe` timed one environment step at a time.

This is all the work a user's loop pays per action (normalising the observation, embedding, the backbone, the
head, bookkeeping, the numpy round trip), with random weights and random observations (cost does not depend on
them). Rollouts (`params["rollout"]`): `recurrent` carries the backbone state (`DecisionModel.step_tokens`; for the
Transformer that is its sliding key/value cache); `window` re-encodes the last K = `context_len` steps with
`model.forward` at every action (Decision Transformer's protocol).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..agent_io import AgentMeta
from ..config import TrainConfig
from ..model import build_model
from ..policy import Policy
from .model_step import ACT_DIM, OBS_DIM
from .timing import Samples
from .workload import Workload, n_params

CHECKPOINTS = (1, 10, 100, 1000)  # episode steps at which the table reports the cost
SPAN = 10  # the cost "at t" is the median over steps (t - SPAN, t] of every timed episode


def benchmark_meta(cfg: TrainConfig) -> AgentMeta:
    """Metadata of a random-weight Hopper agent (identity normalisation), enough to build a Policy."""
    return AgentMeta(config=cfg, task="hopper-medium", env_id="Hopper-v5", obs_dim=OBS_DIM, act_dim=ACT_DIM, seed=0,
                     state_mean=np.zeros(OBS_DIM, dtype=np.float32), state_std=np.ones(OBS_DIM, dtype=np.float32),
                     return_scale=1000.0,
                     data={"source": "none (benchmark, random weights)", "comparable_with_d4rl": False},
                     extra={})


def benchmark_policy(params: dict[str, Any], device: torch.device) -> Policy:
    """A Policy on a random-weight DecisionModel (d, n_layers, layout, K = context_len), dropout 0; `compile`."""
    torch.manual_seed(0)
    cfg = TrainConfig(backbone=params["backbone"], layout=params["layout"], d_model=int(params["d"]),
                      n_layers=int(params["n_layers"]), context_len=int(params.get("context_len", 20)),
                      dropout=0.0, rollout=params["rollout"])
    meta = benchmark_meta(cfg)
    model = build_model(cfg, OBS_DIM, ACT_DIM).to(device).eval()
    return Policy(model, meta, rollout=params["rollout"], compile=bool(params.get("compile", False)))


def build_act(params: dict[str, Any], device: torch.device) -> Workload:
    policy = benchmark_policy(params, device)
    batch, steps = int(params["batch"]), int(params["steps"])
    rng = np.random.default_rng(0)
    observations = rng.standard_normal((steps, batch, OBS_DIM)).astype(np.float32)
    rewards = np.ones(batch)
    not_done = np.zeros(batch, dtype=bool)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    import time

    def episode() -> np.ndarray:
        """Per-action seconds of one fresh episode of `steps` actions."""
        policy.reset(num_envs=batch)
        times = np.empty(steps)
        for t in range(steps):
            t0 = time.perf_counter()
            policy.act(observations[t])  # returns numpy, so GPU work has finished
            policy.observe(rewards, not_done)
            sync()
            times[t] = time.perf_counter() - t0
        return times

    def summarise(samples: Samples) -> dict[str, Any]:
        per_step = np.stack(samples.outputs)  # (episodes, steps)
        us = 1e6 * per_step
        at = {str(t): float(np.median(us[:, max(0, t - SPAN):t])) for t in CHECKPOINTS if t <= steps}
        return {"us_per_call_at": at, "us_per_call": float(np.median(us)),
                "us_per_action": float(np.median(us)) / batch,
                "curve_us": [round(float(x), 2) for x in np.median(us, axis=0)]}

    return Workload(episode, summarise, info={"params": n_params(policy.model), "rollout": policy.rollout,
                                              "context_len": policy.context_len})
