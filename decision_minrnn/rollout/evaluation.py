"""The one evaluator (training, `evaluate_agent`, the benchmarks): batched rollouts, normalized scores, timing.

Protocol: the one rollout loop (`envs.rollout`: a synchronous vector env with same-step autoreset, one Policy batched
over its envs, per-env reset seeds derived from one seed, exactly `episodes` episodes split across the envs as
stable-baselines3 does). The score is D4RL-normalized (x100) with the environment's D4RL
references, or Minari-normalized with the dataset's own references when the agent was trained on Minari data.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..agent.policy import Policy
from ..errors import UserInputError
from ..versions import versions
from .envs import env_seeds, episode_quota, make_vector_env, rollout


def score_returns(meta: Any, returns: Any) -> tuple[str, np.ndarray]:
    """(label, normalized scores x100) of raw returns, under the score label of the agent's training data."""
    data = meta.data or {}
    label = data.get("score_label", "D4RL-normalized")
    r = np.asarray(returns, dtype=np.float64)
    if label == "Minari-normalized":
        refs = {**data, **(data.get("provenance") or {})}
        lo, hi = refs.get("ref_min_score"), refs.get("ref_max_score")
        if lo is None or hi is None:
            raise UserInputError("the agent was trained on Minari data but its config.json records no "
                                 "ref_min_score/ref_max_score to normalize with")
        return label, 100.0 * (r - float(lo)) / (float(hi) - float(lo))
    spec = meta.env
    return label, np.asarray(spec.normalized_score(r), dtype=np.float64).reshape(r.shape)


def comparability(meta: Any) -> str:
    """Whether the score may be set next to published D4RL v2 numbers, and why."""
    data = meta.data or {}
    if data.get("comparability"):
        return str(data["comparability"])
    source = data.get("source", "unknown")
    if data.get("comparable_with_d4rl"):
        return (f"yes, with care: trained on D4RL v2 data, evaluated on {meta.env_id} (gymnasium v5 dynamics and "
                "rewards are close to, not identical with, the v2 environments)")
    if source == "minari":
        return "no: Minari data, scored on the dataset's own references (labelled Minari-normalized)"
    if source == "regenerated":
        return "no: data regenerated with this package's behaviour policies on v5 environments"
    return f"no: data source {source!r}"


def _dist(x: np.ndarray) -> dict[str, float]:
    if len(x) == 0:
        return {"mean": float("nan"), "std": float("nan"), "min": float("nan"), "max": float("nan")}
    return {"mean": float(x.mean()), "std": float(x.std()), "min": float(x.min()), "max": float(x.max())}


def evaluate(policy: Policy, *, episodes: int, num_envs: int, seed: int, progress: bool = True,
             max_steps: int | None = None) -> dict[str, Any]:
    """Run exactly `episodes` episodes of `policy` and return a JSON-serialisable result.

    `num_envs` is capped at `episodes`. `max_steps` shortens the env's time limit (quick checks; the result then says
    so and scores are not comparable with full episodes). The policy's own state is reset; a model in training mode
    acts in eval mode and is returned to training mode.
    """
    from tqdm import tqdm

    if int(episodes) <= 0:
        raise UserInputError(f"episodes must be positive, got {episodes}")
    if int(num_envs) <= 0:
        raise UserInputError(f"num_envs must be positive, got {num_envs}")
    if max_steps is not None and int(max_steps) <= 0:
        raise UserInputError(f"max_steps must be positive, got {max_steps}")
    episodes, num_envs = int(episodes), min(int(num_envs), int(episodes))
    meta = policy.meta
    seeds = env_seeds(seed, num_envs)

    env = make_vector_env(meta.env_id, num_envs, max_steps)
    try:
        if env.single_observation_space.shape != (policy.obs_dim,):
            raise UserInputError(f"{meta.env_id} has observations of shape {env.single_observation_space.shape}, the "
                                 f"agent expects ({policy.obs_dim},)")
        policy.reset(num_envs, env=env)
        with tqdm(total=episodes, desc=f"evaluating {meta.config.backbone} on {meta.env_id}", unit="ep",
                  disable=not progress, leave=False) as bar:
            log = rollout(env, policy, seeds=seeds, quota=episode_quota(episodes, num_envs),
                          on_episode=lambda _: bar.update(1))
    finally:
        env.close()
    returns, lengths = log.returns, log.lengths

    raw = np.asarray(returns, dtype=np.float64)
    label, scores = score_returns(meta, raw)
    actions_taken = log.vector_steps * num_envs
    data = meta.data or {}
    return {
        "task": meta.task,
        "env_id": meta.env_id,
        "backbone": meta.config.backbone,
        "layout": meta.config.layout,
        "rollout": policy.rollout,
        "context_len": policy.context_len,
        "target_return": policy.target_return,
        "return_scale": policy.return_scale,
        "device": str(policy.device),
        "episodes": episodes,
        "num_envs": num_envs,
        "seed": int(seed),
        "env_seeds": seeds,
        "max_steps": None if max_steps is None else int(max_steps),
        "returns": returns,
        "lengths": lengths,
        "episode_env": log.episode_env,
        "return": _dist(raw),
        "length": _dist(np.asarray(lengths, dtype=np.float64)),
        "score_label": label,
        "normalized_scores": [float(s) for s in scores],
        "normalized_mean": float(scores.mean()),
        "normalized_std": float(scores.std()),
        "timing": {
            "wall_time_s": log.wall_s,
            "vector_steps": log.vector_steps,
            "actions": actions_taken,
            "policy_ms_per_call": 1e3 * log.policy_s / max(log.vector_steps, 1),
            "policy_ms_per_action": 1e3 * log.policy_s / max(actions_taken, 1),
            "env_step_ms_per_call": 1e3 * log.env_s / max(log.vector_steps, 1),
            "env_step_ms_per_action": 1e3 * log.env_s / max(actions_taken, 1),
            "note": "a call acts for all num_envs envs at once; wasted steps of envs past their quota are included",
        },
        "data": {
            "source": data.get("source", "unknown"),
            "location": data.get("location"),
            "comparable_with_d4rl": bool(data.get("comparable_with_d4rl", False)) and max_steps is None,
            "comparability": comparability(meta) if max_steps is None else
            f"no: episodes cut at max_steps={max_steps}",
        },
        "versions": versions(),
    }


def summary(result: dict[str, Any]) -> str:
    """A few human lines about an evaluation result."""
    r, t = result["return"], result["timing"]
    lines = [
        f"{result['task']} ({result['env_id']}), {result['backbone']}/{result['layout']}, rollout {result['rollout']}, "
        f"target return {result['target_return']:g}: {result['episodes']} episodes on {result['num_envs']} envs, "
        f"seed {result['seed']}",
        f"  {result['score_label']} score {result['normalized_mean']:.1f} +- {result['normalized_std']:.1f}   "
        f"return {r['mean']:.1f} +- {r['std']:.1f} (min {r['min']:.1f}, max {r['max']:.1f})   "
        f"length {result['length']['mean']:.0f}",
        f"  time per action: policy {t['policy_ms_per_action']:.3f} ms ({t['policy_ms_per_call']:.3f} ms per batched "
        f"call), env.step {t['env_step_ms_per_action']:.3f} ms; total {t['wall_time_s']:.1f} s on {result['device']}",
        f"  data: {result['data']['source']}; comparable with published D4RL v2 scores: "
        f"{result['data']['comparability']}",
    ]
    return "\n".join(lines)
