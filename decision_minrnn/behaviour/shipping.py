"""Turning a SAC run folder into the shipped `agents/behaviour/<env>/` (a maintainer's tool, not used at run time).

A run folder (the SAC runs the project was given, or `collect_dataset --train-behaviour`) holds `setup.json`,
`progress.jsonl`, `actors/actor_<step>.safetensors` and `train_stream.npz`. Its `progress.jsonl` evaluates the
*mean* action; the data is collected with *sampled* actions, which score lower, so every snapshot is re-measured here
with sampled actions and the medium snapshot is the one closest to D4RL's medium level on that measure. The chosen
policies are then measured again on fresh episodes for the card, so the card's numbers are not the ones that won the
selection.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..errors import UserInputError
from ..io import atomic_path, write_json
from ..tasks import EnvSpec, get_env_spec
from .actor import SACActor, SampledPolicy, UniformPolicy, actor_state_dict, load_actor, save_actor
from .layout import compact_stream, expand_stream
from .shipped import CARD, REPLAY, actor_file, behaviour_dir
from .vector import Policy, measure_returns

# D4RL's medium level for each environment, as D4RL-normalized score of the behaviour policy's sampled actions.
MEDIUM_TARGETS = {"halfcheetah": 40.0, "hopper": 45.0, "walker2d": 60.0}
_ACTOR_NAME = re.compile(r"^actor_(\d+)\.safetensors$")


def snapshot_steps(run_dir: Path) -> dict[int, Path]:
    """Actor snapshots of a run folder by training step."""
    found = {}
    for p in sorted((run_dir / "actors").glob("actor_*.safetensors")):
        if m := _ACTOR_NAME.match(p.name):
            found[int(m.group(1))] = p
    return found


def _shipped_precision(path: Path) -> SACActor:
    """The actor as it will ship (float16 weights, float32 compute), so what is measured is what regenerates."""
    return SACActor.from_state_dict(actor_state_dict(load_actor(path)))


def _stats(env: EnvSpec, policy: Policy, episodes: int, seed: int | list[int]) -> dict[str, Any]:
    r = measure_returns(env.gym_id, policy, episodes, seed_sequence=np.random.SeedSequence(seed))
    return {
        "episodes": episodes,
        "return_mean": round(r.mean, 2),
        "return_std": round(r.std, 2),
        "normalized": round(float(env.normalized_score(r.mean)), 2),
        "length_mean": round(float(np.mean(r.lengths)), 1),
    }


def _read_progress(run_dir: Path) -> dict[int, dict[str, Any]]:
    path = run_dir / "progress.jsonl"
    if not path.is_file():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {int(row["step"]): row for row in rows}


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def import_behaviour(
    run_dir: str | Path,
    env_name: str,
    *,
    dest: str | Path | None = None,
    medium_step: int | None = None,
    expert_step: int | None = None,
    screen_episodes: int = 10,
    card_episodes: int = 20,
    seed: int = 0,
) -> Path:
    """Measure the run's snapshots, pick medium and expert, write actors, medium-replay stream and card to `dest`.

    medium = the snapshot (within the kept training stream) whose sampled-action score is closest to
    `MEDIUM_TARGETS`; expert = the snapshot with the best sampled-action return. Either can be forced by step.
    """
    run_dir = Path(run_dir)
    env = get_env_spec(env_name)
    dest = Path(dest) if dest is not None else behaviour_dir(env)
    snaps = snapshot_steps(run_dir)
    stream_path = run_dir / "train_stream.npz"
    if not snaps or not stream_path.is_file():
        raise UserInputError(f"{run_dir}: not a SAC run folder (needs actors/actor_<step>.safetensors and train_stream.npz)")
    with np.load(stream_path, allow_pickle=False) as z:
        stream = {k: z[k] for k in z.files}
    stream_rows = len(stream["rewards"])
    for step, forced in (("medium", medium_step), ("expert", expert_step)):
        if forced is not None and forced not in snaps:
            raise UserInputError(f"{run_dir}: no {step} snapshot at step {forced}; snapshots: {sorted(snaps)}")
    started = time.perf_counter()

    def sampled_stats(step: int, episodes: int, stage: int) -> dict[str, Any]:
        stage_seed = [seed, stage, step]
        policy = SampledPolicy(_shipped_precision(snaps[step]), np.random.default_rng(stage_seed))
        return _stats(env, policy, episodes, seed=stage_seed)

    # Stage 1: every snapshot, a few episodes. Stage 2: the three best candidates for each role, more episodes.
    screening = []
    for i, step in enumerate(sorted(snaps)):
        screening.append({"step": step, **sampled_stats(step, screen_episodes, stage=1)})
        _log(f"[{env.name}] screen {i + 1}/{len(snaps)} step {step}: sampled return "
             f"{screening[-1]['return_mean']:.0f} ({screening[-1]['normalized']:.1f})")
    target = MEDIUM_TARGETS[env.name]
    replayable = [s for s in screening if s["step"] < stream_rows]  # the stream must reach the cut
    if medium_step is None and not replayable:
        raise UserInputError(f"{run_dir}: no snapshot lies within the {stream_rows}-row training stream")
    shortlists = {
        "medium": sorted(replayable, key=lambda s: abs(s["normalized"] - target))[:3] if medium_step is None else [],
        "expert": sorted(screening, key=lambda s: -s["return_mean"])[:3] if expert_step is None else [],
    }
    for role, shortlist in shortlists.items():
        for s in shortlist:
            s.setdefault("finalist", sampled_stats(s["step"], card_episodes, stage=2))
            _log(f"[{env.name}] {role} finalist step {s['step']}: sampled {s['finalist']['normalized']:.1f}")
    if medium_step is None:
        medium_step = min(shortlists["medium"], key=lambda s: abs(s["finalist"]["normalized"] - target))["step"]
    if expert_step is None:
        expert_step = max(shortlists["expert"], key=lambda s: s["finalist"]["return_mean"])["step"]
    if medium_step >= stream_rows:
        raise UserInputError(f"{run_dir}: medium step {medium_step} is past the training stream ({stream_rows} rows)")

    progress = _read_progress(run_dir)
    setup = json.loads((run_dir / "setup.json").read_text()) if (run_dir / "setup.json").is_file() else {}
    policies: dict[str, Any] = {}
    with atomic_path(dest, is_dir=True) as tmp:
        for role, step in (("medium", medium_step), ("expert", expert_step)):
            actor = _shipped_precision(snaps[step])
            card_seed = [seed, 3, step]  # fresh episodes, not the ones that won the selection
            policies[role] = {
                "file": actor_file(role),
                "training_steps": step,
                "source_snapshot": snaps[step].name,
                "sampled": _stats(env, SampledPolicy(actor, np.random.default_rng(card_seed)), card_episodes, card_seed),
                "deterministic": _stats(env, SampledPolicy(actor, None, deterministic=True), card_episodes, card_seed),
                "run_eval_deterministic": progress.get(step),
            }
            save_actor(actor, tmp / actor_file(role), metadata={"env": env.name, "role": role, "step": step})
            _log(f"[{env.name}] {role}: step {step}, sampled {policies[role]['sampled']['normalized']:.1f}, "
                 f"deterministic {policies[role]['deterministic']['normalized']:.1f}")
        policies["medium"]["target_normalized"] = MEDIUM_TARGETS[env.name]
        policies["random"] = {
            "actions": "uniform in [-1, 1]",
            "sampled": _stats(env, UniformPolicy(env.act_dim, np.random.default_rng([seed, 4])), card_episodes, [seed, 4]),
        }
        replay = expand_stream(stream, rows=medium_step)
        np.savez_compressed(tmp / REPLAY, **compact_stream(replay, np.float16))
        returns = replay.episode_returns()
        card = {
            "env": env.name,
            "gym_id": env.gym_id,
            "made_by": f"decision_minrnn {__version__}: collect_dataset --import-behaviour RUN_DIR --env {env.name}",
            "source_run": {
                "name": run_dir.name,
                "setup": setup,
                "steps_reached": max(max(snaps), max(progress, default=0)),
                "stream_rows": stream_rows,
            },
            "how": (
                "SAC (stable-baselines3 defaults) trained online on the v5 env; every snapshot screened with "
                f"{screen_episodes} episodes of sampled actions, the 3 best candidates per role re-measured on "
                f"{card_episodes}; medium = the snapshot within the training stream closest to the target "
                "D4RL-normalized score, expert = best sampled return; both measured again on "
                f"{card_episodes} fresh episodes (sampled and deterministic) with the float16 weights that ship"
            ),
            "normalized_score": "D4RL-normalized x100 with D4RL v2 reference returns (v5 env: close to, not equal to, v2)",
            "policies": policies,
            "medium_replay": {
                "file": REPLAY,
                "what": "SAC training stream from step 0 to the medium snapshot (first 10k steps uniform random)",
                "transitions": len(replay),
                "episodes": int(len(returns)),
                "return_mean": round(float(returns.mean()), 2) if len(returns) else None,
                "normalized": round(float(env.normalized_score(returns.mean())), 2) if len(returns) else None,
                "storage": "observations and actions float16, rewards float32; next observations only at episode ends",
            },
            "screening": screening,
            "measure_seconds": round(time.perf_counter() - started, 1),
        }
        write_json(tmp / CARD, card)
    _log(f"[{env.name}] wrote {dest}")
    return dest
