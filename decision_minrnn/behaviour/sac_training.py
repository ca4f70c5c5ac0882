"""Training a SAC behaviour policy with stable-baselines3, resumable, keeping what the D4RL recipe needs.

The run folder (`run_folder.py`) holds actor snapshots with deterministic evaluations, the ordered training stream
(the medium-replay data) and SB3's model with its optimizers, which `shipping.import_behaviour` turns into shipped
behaviour data. SB3's replay buffer keeps every transition in order while the run is shorter than the buffer (1M), so
the stream *is* the buffer: it is saved in the compact stream form (no pickle) and loaded back into the buffer on
resume. Learning runs in chunks between snapshots; each checkpoint writes actor, stream, model, then progress, each
atomically, so a kill leaves a consistent run that the next call continues from (the episode running at the kill is
marked as truncated).
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..errors import RunFailure, UserInputError
from ..io import atomic_path, write_json
from ..paths import behaviour_run_dir
from ..tasks import EnvSpec, get_env_spec
from .actor import SACActor, SampledPolicy, actor_state_dict, save_actor
from .layout import D4RLArrays, compact_stream, expand_stream
from .run_folder import (
    MODEL,
    PROGRESS,
    SETUP,
    STREAM,
    actor_path,
    read_progress,
    read_stream,
)
from .vector import measure_returns

EVAL_SEED = 10_000


def default_run_dir(env: EnvSpec, seed: int) -> Path:
    return behaviour_run_dir() / f"{env.gym_id}-seed{seed}"


def _buffer_arrays(model: Any) -> D4RLArrays:
    """The replay buffer's transitions in collection order (single env, buffer never wrapped past its end).

    A buffer filled exactly (a run of `buffer_size` steps) has `pos` back at 0 and `full` set: all of it is the stream.
    """
    rb = model.replay_buffer
    if rb.full and rb.pos != 0:
        raise RunFailure(f"the replay buffer wrapped ({rb.buffer_size} rows): the ordered stream was overwritten")
    n = rb.buffer_size if rb.full else rb.pos
    dones = rb.dones[:n, 0] > 0.5
    timeouts = dones & (rb.timeouts[:n, 0] > 0.5)
    return D4RLArrays(
        observations=rb.observations[:n, 0].astype(np.float32),
        actions=rb.actions[:n, 0].astype(np.float32),
        rewards=rb.rewards[:n, 0].astype(np.float32),
        terminals=dones & ~timeouts,
        timeouts=timeouts,
        next_observations=rb.next_observations[:n, 0].astype(np.float32),
    )


def _restore_buffer(model: Any, stream: dict[str, np.ndarray]) -> None:
    """Refill SB3's replay buffer from the saved stream up to the model's step; the cut episode is a truncation."""
    n = int(model.num_timesteps)
    if len(stream["rewards"]) < n:
        raise RunFailure(f"the saved stream has {len(stream['rewards'])} rows but the model is at step {n}")
    data = expand_stream(stream).head(n)
    rb = model.replay_buffer
    rb.observations[:n, 0] = data.observations
    rb.next_observations[:n, 0] = data.next_observations
    rb.actions[:n, 0] = data.actions
    rb.rewards[:n, 0] = data.rewards
    rb.dones[:n, 0] = data.terminals | data.timeouts
    rb.timeouts[:n, 0] = data.timeouts
    if n and not data.terminals[-1]:  # the episode running at the save ends here, as a truncation
        rb.dones[n - 1, 0] = rb.timeouts[n - 1, 0] = 1.0
    rb.pos, rb.full = n % rb.buffer_size, n == rb.buffer_size


def _checkpoint(
    model: Any, run: Path, env: EnvSpec, eval_episodes: int, rows: list[dict[str, Any]], wall: float
) -> None:
    """Snapshot, evaluate and save; progress last, so it only lists steps whose model and stream are on disk."""
    step = int(model.num_timesteps)
    actor = SACActor.from_state_dict(actor_state_dict(model.actor, dtype=torch.float32))
    save_actor(actor, actor_path(run, step), dtype=torch.float32,
               metadata={"env": env.name, "step": step})
    evals = measure_returns(env.gym_id, SampledPolicy(actor, None, deterministic=True), eval_episodes,
                            seed_sequence=np.random.SeedSequence(EVAL_SEED), num_envs=eval_episodes)
    with atomic_path(run / STREAM) as tmp:
        np.savez(tmp, **compact_stream(_buffer_arrays(model), np.float32))
    with atomic_path(run / MODEL) as tmp:
        model.save(tmp)
    rows.append({
        "step": step,
        "eval_return_mean": evals.mean,
        "eval_return_std": evals.std,
        "eval_len": float(np.mean(evals.lengths)),
        "normalized": round(float(env.normalized_score(evals.mean)), 2),
        "wall_s": round(wall, 1),
    })
    with atomic_path(run / PROGRESS) as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"[{env.gym_id}] step {step}: deterministic eval {evals.mean:.1f} ({rows[-1]['normalized']:.1f}), "
          f"{wall:.0f} s", file=sys.stderr, flush=True)


def train_behaviour(
    env_name: str,
    steps: int,
    *,
    seed: int = 0,
    run_dir: str | Path | None = None,
    learning_starts: int = 10_000,
    snapshot_every: int = 10_000,
    eval_episodes: int = 5,
    buffer_size: int = 1_000_000,
) -> Path:
    """Train (or continue) SAC with SB3 defaults up to `steps` environment steps; returns the run folder.

    `buffer_size` is SB3's default replay size; the stream is the buffer, so `steps` may not exceed it (a smaller one
    only serves tests of a run that fills it exactly).
    """
    import gymnasium as gym
    import stable_baselines3
    from stable_baselines3 import SAC

    from ..rollout.envs import make_env

    env = get_env_spec(env_name)
    run = Path(run_dir) if run_dir is not None else default_run_dir(env, seed)
    model_path = run / MODEL
    if model_path.is_file():
        model = SAC.load(model_path, env=make_env(env.gym_id), device="cpu")
        model.set_random_seed(seed + int(model.num_timesteps))  # fresh, reproducible env and noise streams
        _restore_buffer(model, read_stream(run))
        print(f"[{env.gym_id}] resuming {run} at step {model.num_timesteps}", file=sys.stderr, flush=True)
    else:
        model = SAC("MlpPolicy", make_env(env.gym_id), learning_starts=learning_starts, buffer_size=buffer_size,
                    seed=seed, device="cpu")
    if steps > model.replay_buffer.buffer_size:
        raise UserInputError(f"--steps {steps} exceeds the replay buffer ({model.replay_buffer.buffer_size}): "
                             "the ordered training stream would be overwritten")
    if not (run / SETUP).is_file():
        write_json(run / SETUP, {
            "env": env.gym_id, "steps": steps, "seed": seed,
            "algo": f"SAC (stable-baselines3 defaults, learning_starts={learning_starts})",
            "sb3": stable_baselines3.__version__, "gymnasium": gym.__version__,
            "torch": torch.__version__, "python": platform.python_version(),
            "decision_minrnn": __version__,
        })
    rows = [row for row in read_progress(run) if row["step"] <= model.num_timesteps]  # drop rows of a lost save
    wall0, started = (rows[-1]["wall_s"] if rows else 0.0), time.perf_counter()
    while model.num_timesteps < steps:
        done = int(model.num_timesteps)
        chunk = min(snapshot_every - done % snapshot_every, steps - done)
        model.learn(total_timesteps=chunk, reset_num_timesteps=False, progress_bar=False)
        _checkpoint(model, run, env, eval_episodes, rows, wall0 + time.perf_counter() - started)
    return run
