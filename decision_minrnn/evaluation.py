"""The one evaluator (training, `evaluate_agent`, the benchmarks): batched rollouts, normalized scores, timing.

Protocol: a synchronous gymnasium vector env with SAME_STEP autoreset (design.md 2), one Policy batched over its envs,
per-env reset seeds derived from one seed, and exactly `episodes` episodes split across the envs as stable-baselines3
does (env i contributes (episodes + i) // num_envs episodes, fixed in advance): taking whichever episodes finish first
would over-sample short (usually bad) episodes. The score is D4RL-normalized (x100) with the environment's D4RL
references, or Minari-normalized with the dataset's own references when the agent was trained on Minari data.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .errors import UserInputError
from .policy import Policy
from .versions import versions


def make_eval_env(env_id: str, num_envs: int, max_steps: int | None = None):
    """Synchronous vector env with same-step autoreset; `max_steps` shortens the episode time limit."""
    import gymnasium as gym

    kwargs = {} if max_steps is None else {"max_episode_steps": int(max_steps)}
    return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}, **kwargs)


def env_seeds(seed: int, num_envs: int) -> list[int]:
    """Independent reset seeds, one per env, from one evaluation seed (later episodes follow each env's own RNG)."""
    return [int(s) for s in np.random.SeedSequence(int(seed)).generate_state(num_envs)]


def episode_targets(episodes: int, num_envs: int) -> np.ndarray:
    """Episodes each env contributes (stable-baselines3's split): fixed in advance, summing to `episodes`."""
    return np.array([(episodes + i) // num_envs for i in range(num_envs)], dtype=np.int64)


def score_returns(meta: Any, returns: Any) -> tuple[str, np.ndarray]:
    """(label, normalized scores x100) of raw returns, under the score label of the agent's training data."""
    from .tasks import get_env_spec, resolve_task

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
    try:
        spec = resolve_task(meta.task).env
    except UserInputError:
        spec = get_env_spec(meta.env_id)
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
    targets = episode_targets(episodes, num_envs)

    start = time.perf_counter()
    env = make_eval_env(meta.env_id, num_envs, max_steps)
    returns: list[float] = []
    lengths: list[int] = []
    finished_env: list[int] = []
    policy_s = env_s = 0.0
    vector_steps = 0
    try:
        if env.single_observation_space.shape != (policy.obs_dim,):
            raise UserInputError(f"{meta.env_id} has observations of shape {env.single_observation_space.shape}, the "
                                 f"agent expects ({policy.obs_dim},)")
        policy.reset(num_envs, env=env)
        obs, _ = env.reset(seed=seeds)
        counts = np.zeros(num_envs, dtype=np.int64)
        ep_return = np.zeros(num_envs, dtype=np.float64)
        ep_length = np.zeros(num_envs, dtype=np.int64)
        with tqdm(total=episodes, desc=f"evaluating {meta.config.backbone} on {meta.env_id}", unit="ep",
                  disable=not progress, leave=False) as bar:
            while (counts < targets).any():
                t0 = time.perf_counter()
                actions = policy.act(obs)
                t1 = time.perf_counter()
                obs, rewards, terminated, truncated, _ = env.step(actions)
                t2 = time.perf_counter()
                policy_s += t1 - t0
                env_s += t2 - t1
                vector_steps += 1
                done = np.logical_or(terminated, truncated)
                policy.observe(rewards, done)
                ep_return += rewards
                ep_length += 1
                for i in np.flatnonzero(done):
                    if counts[i] < targets[i]:
                        returns.append(float(ep_return[i]))
                        lengths.append(int(ep_length[i]))
                        finished_env.append(int(i))
                        counts[i] += 1
                        bar.update(1)
                    ep_return[i] = 0.0
                    ep_length[i] = 0
    finally:
        env.close()
    wall = time.perf_counter() - start

    raw = np.asarray(returns, dtype=np.float64)
    label, scores = score_returns(meta, raw)
    actions_taken = vector_steps * num_envs
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
        "episode_env": finished_env,
        "return": _dist(raw),
        "length": _dist(np.asarray(lengths, dtype=np.float64)),
        "score_label": label,
        "normalized_scores": [float(s) for s in scores],
        "normalized_mean": float(scores.mean()),
        "normalized_std": float(scores.std()),
        "timing": {
            "wall_time_s": wall,
            "vector_steps": vector_steps,
            "actions": actions_taken,
            "policy_ms_per_call": 1e3 * policy_s / max(vector_steps, 1),
            "policy_ms_per_action": 1e3 * policy_s / max(actions_taken, 1),
            "env_step_ms_per_call": 1e3 * env_s / max(vector_steps, 1),
            "env_step_ms_per_action": 1e3 * env_s / max(actions_taken, 1),
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
