"""Regenerating D4RL-protocol datasets offline from the shipped behaviour data.

The recipe, per quality: `medium` / `expert` = the medium / best SAC snapshot acting with sampled actions (1M
transitions), `medium-expert` = both of those concatenated (2M), `medium-replay` = SAC's training stream up to the
medium snapshot (shipped, so no simulation), `random` = a randomly initialised SAC actor (SB3's layout and default
init, drawn from the seed) acting with sampled actions, as D4RL's random datasets (1M). Collection runs through a
same-step-autoreset vector env with the actor batched (`vector.py`). Each part draws its env seeds and action noise
from `SeedSequence([seed, part])`, so a seed fixes the data, and the halves of `medium-expert` equal the `medium` and
`expert` datasets of the same seed and size.
"""

from __future__ import annotations

import importlib.metadata
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .. import __version__
from ..data.d4rl import DATA_VERSION, write_d4rl_hdf5
from ..errors import UserInputError
from ..paths import regenerated_dataset_dir
from ..tasks import EnvSpec, Task, resolve_task
from .actor import SACActor, SampledPolicy, random_actor
from .layout import D4RLArrays, expand_stream
from .shipped import actor_file, behaviour_fingerprint, load_behaviour_actor, load_card, load_replay_stream
from .vector import collect_transitions

DEFAULT_TRANSITIONS = {"medium": 1_000_000, "expert": 1_000_000, "medium-expert": 2_000_000, "random": 1_000_000}
_PART_STREAM = {"random": 0, "medium": 1, "expert": 2}  # SeedSequence spawn key of each collected part
DEFAULT_NUM_ENVS = 16


def _regenerable(task_name: str) -> Task:
    task = resolve_task(task_name)
    if task.strict_d4rl:
        raise UserInputError(f"{task_name!r} names the D4RL v2 file only; regenerated data is {task.name!r}")
    return task


def regenerated_dataset_path(task_name: str, seed: int = 0, transitions: int | None = None) -> Path:
    """Cache path of a regenerated dataset: `hopper-medium.regenerated-v5.seed0[.n2000].hdf5`.

    The `.regenerated-` infix and the dots keep it from ever matching a D4RL name (`hopper_medium-v2.hdf5`).
    """
    task = _regenerable(task_name)
    version = task.env.gym_id.rsplit("-", 1)[-1]
    size = "" if transitions is None else f".n{int(transitions)}"
    return regenerated_dataset_dir() / f"{task.name}.regenerated-{version}.seed{int(seed)}{size}.hdf5"


def policy_part(
    env: EnvSpec,
    role: str,
    n: int,
    seed: int,
    num_envs: int = DEFAULT_NUM_ENVS,
    progress: bool = False,
    policy_type: Callable[[SACActor, np.random.Generator], Callable[[np.ndarray], np.ndarray]] = SampledPolicy,
) -> tuple[D4RLArrays, dict[str, Any]]:
    """`n` transitions of one behaviour policy (`random`, `medium` or `expert`) and what describes it.

    `policy_type(actor, rng)` makes the acting policy (the recipe's is `SampledPolicy`); another one lets a diagnostic
    (`benchmarks/behaviour_determinism.py`) collect with the recipe's seeds and actor but another arithmetic.
    """
    noise_seq, env_seq = np.random.SeedSequence([seed, _PART_STREAM[role]]).spawn(2)
    rng = np.random.default_rng(noise_seq)
    card = load_card(env)["policies"]
    if role == "random":
        actor = random_actor(env.obs_dim, env.act_dim, int(noise_seq.spawn(1)[0].generate_state(1)[0]))
        name = "random: a randomly initialised SAC actor (torch default init of SB3's MlpPolicy layout), sampled actions"
    else:
        actor = load_behaviour_actor(env, role)
        name = f"{role}: {actor_file(role)} (SAC, {card[role]['training_steps']} training steps, sampled actions)"
    policy = policy_type(actor, rng)
    data = collect_transitions(
        env.gym_id, policy, n, seed_sequence=env_seq, num_envs=num_envs, max_episode_steps=env.max_episode_steps,
        progress=progress, desc=f"{env.name} {role}",
    )
    returns = data.episode_returns()
    policy_return = (float(returns.mean()) if len(returns) else float("nan")) if role == "random" else \
        float(card[role]["sampled"]["return_mean"])
    return data, {"policy": name, "return": policy_return, "transitions": n}


def check_request(task: Task, transitions: int | None, seed: int = 0) -> None:
    """Reject what the recipe cannot give before any work (medium-replay is bounded by the shipped stream)."""
    if seed < 0:
        raise UserInputError(f"seed must be non-negative, got {seed}")
    if transitions is None:
        return
    if transitions <= 0:
        raise UserInputError(f"transitions must be positive, got {transitions}")
    if task.quality == "medium-expert" and transitions < 2:
        raise UserInputError("medium-expert needs at least 2 transitions (half medium, half expert)")
    if task.quality == "medium-replay":
        shipped = int(load_card(task.env)["medium_replay"]["transitions"])
        if transitions > shipped:
            raise UserInputError(f"{task.name} has {shipped} transitions; --transitions {transitions} is larger")


def _medium_replay(env: EnvSpec, n: int | None) -> tuple[D4RLArrays, dict[str, Any]]:
    stream = load_replay_stream(env)
    card = load_card(env)
    shipped = len(stream["rewards"])
    data = expand_stream(stream, rows=n)
    steps = card["policies"]["medium"]["training_steps"]
    name = f"SAC training stream, steps 0-{len(data)} of {shipped} (cut at the medium snapshot, step {steps})"
    return data, {"policy": name, "return": float(card["medium_replay"]["return_mean"]), "transitions": len(data)}


def build_dataset(
    task: Task,
    *,
    seed: int = 0,
    transitions: int | None = None,
    num_envs: int = DEFAULT_NUM_ENVS,
    progress: bool = True,
) -> tuple[D4RLArrays, list[dict[str, Any]]]:
    """The arrays of one task following the recipe, and a description of each part (policy, return, size)."""
    check_request(task, transitions, seed)
    env, quality = task.env, task.quality
    if quality == "medium-replay":
        data, part = _medium_replay(env, transitions)
        return data, [part]
    n = DEFAULT_TRANSITIONS[quality] if transitions is None else int(transitions)
    if quality != "medium-expert":
        data, part = policy_part(env, quality, n, seed, num_envs, progress)
        return data, [part]
    halves = (("medium", n // 2), ("expert", n - n // 2))
    parts = [policy_part(env, role, k, seed, num_envs, progress) for role, k in halves]
    return D4RLArrays.concatenate([p[0] for p in parts]), [p[1] for p in parts]


def _recipe(task: Task, num_envs: int) -> str:
    if task.quality == "medium-replay":
        how = "the shipped SAC training stream up to the medium snapshot (float16 observations/actions)"
    else:
        how = (f"{task.quality} behaviour acting in a {num_envs}-env sync vector env (same-step autoreset); SAC "
               "actions sampled a=tanh(mu+exp(clamp(log_std,-20,2))*eps)")
    return (f"D4RL protocol on {task.env.gym_id}: {how}; terminals=termination, timeouts=truncation at "
            f"{task.env.max_episode_steps} steps, next_observations at episode ends = final observations")


def _provenance(task: Task, data: D4RLArrays, parts: list[dict[str, Any]], seed: int, num_envs: int) -> dict[str, Any]:
    """Root attributes of a regenerated file: where it came from, and what its data scores."""
    policy_return = sum(p["return"] * p["transitions"] for p in parts) / sum(p["transitions"] for p in parts)
    returns = data.episode_returns()
    data_return = float(returns.mean()) if len(returns) else float("nan")
    attrs = {
        "decision_minrnn_regenerated": True,
        "data_version": DATA_VERSION,
        "behaviour_sha256": behaviour_fingerprint(task.env, task.quality),
        "task": task.name,
        "env_id": task.env.gym_id,
        "quality": task.quality,
        "policy": " + ".join(p["policy"] for p in parts),
        "policy_return": float(policy_return),
        "policy_normalized_score": float(task.env.normalized_score(policy_return)),
        "seed": int(seed),
        "transitions": len(data),
        "package_version": __version__,
        "recipe": _recipe(task, num_envs),
        "episodes": len(returns),
        "data_return_mean": data_return,
        "data_normalized_score": float(task.env.normalized_score(data_return)),
        "gymnasium_version": importlib.metadata.version("gymnasium"),
        "mujoco_version": importlib.metadata.version("mujoco"),
    }
    if task.quality != "medium-replay":
        attrs["num_envs"] = int(num_envs)  # the interleaving of episodes depends on it
    return attrs


def regenerate_dataset(
    task_name: str,
    *,
    seed: int = 0,
    transitions: int | None = None,
    out: Path | None = None,
    progress: bool = True,
    num_envs: int = DEFAULT_NUM_ENVS,
) -> Path:
    """Build a task's dataset from the shipped behaviour data and write it atomically in D4RL's layout.

    Root attributes record the provenance the loader checks: `decision_minrnn_regenerated`, `task`, `env_id`,
    `quality`, `policy`, `policy_return` (measured with sampled actions, from card.json; transition-weighted for
    medium-expert; the stream's mean episode return for medium-replay), `policy_normalized_score`, `seed`,
    `transitions`, `package_version`, `recipe`, plus the data's own return statistics; nothing timed or dated, so
    the same seed gives the same bytes.
    """
    task = _regenerable(task_name)
    path = Path(out) if out is not None else regenerated_dataset_path(task.name, seed, transitions)
    check_request(task, transitions, seed)
    size = "default size" if transitions is None else f"{transitions:,} transitions"
    print(f"regenerating {task.name} ({size}, seed {seed}) from the shipped behaviour data -> {path}",
          file=sys.stderr, flush=True)
    started = time.perf_counter()
    data, parts = build_dataset(task, seed=seed, transitions=transitions, num_envs=num_envs, progress=progress)
    seconds = time.perf_counter() - started
    attrs = _provenance(task, data, parts, seed, num_envs)  # no timing in the file: same seed, same bytes
    write_d4rl_hdf5(path, **data.as_dict(), attrs=attrs)
    rate = "" if task.quality == "medium-replay" else f", {len(data) / max(seconds, 1e-9):,.0f} transitions/s collected"
    print(f"regenerated {task.name}: {len(data):,} transitions, {attrs['episodes']} episodes, data return "
          f"{attrs['data_return_mean']:.1f} ({attrs['data_normalized_score']:.1f} normalized) in "
          f"{time.perf_counter() - started:.1f} s{rate}", file=sys.stderr, flush=True)
    return path
