"""Turning a SAC run folder into the shipped `agents/behaviour/<env>/` (a maintainer's tool, not used at run time).

A run folder (`run_folder.py`: the SAC runs the project was given, or `collect_dataset --train-behaviour`) evaluates
each snapshot's *mean* action; the data is collected with *sampled* actions, which score lower. So every snapshot is
re-measured here with sampled actions (a screening over a few episodes, then the three best candidates per role over
more), medium = the snapshot closest to D4RL's medium level that the kept training stream reaches, expert = the best.
The chosen policies are then measured once more on fresh episodes for the card, so the card's numbers are not the
ones that won the selection, and always with the float16 weights that ship.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..errors import UserInputError
from ..io import atomic_path, write_json
from ..tasks import EnvSpec, get_env_spec
from .actor import (
    SACActor,
    SampledPolicy,
    actor_state_dict,
    load_actor,
    random_actor,
    save_actor,
)
from .layout import compact_stream, expand_stream
from .run_folder import STREAM, read_progress, read_setup, read_stream, snapshot_steps
from .shipped import CARD, REPLAY, ROLES, actor_file, behaviour_dir, read_card
from .vector import Policy, measure_returns

# D4RL's medium level per environment: D4RL-normalized score of the behaviour policy's sampled actions.
MEDIUM_TARGETS = {"halfcheetah": 40.0, "hopper": 45.0, "walker2d": 60.0}
FINALISTS = 3
MEDIUM_TOLERANCE = 5.0  # normalized points: the data-v2 target for a medium set's mean


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _shipped_precision(path: Path) -> SACActor:
    """The actor as it will ship (float16 weights, float32 compute), so what is measured is what regenerates."""
    return SACActor.from_state_dict(actor_state_dict(load_actor(path)))


def _stats(env: EnvSpec, policy: Policy, episodes: int, seed: list[int]) -> dict[str, Any]:
    r = measure_returns(env.gym_id, policy, episodes, seed_sequence=np.random.SeedSequence(seed))
    return {
        "episodes": episodes,
        "return_mean": round(r.mean, 2),
        "return_std": round(r.std, 2),
        "normalized": round(float(env.normalized_score(r.mean)), 2),
        "length_mean": round(float(np.mean(r.lengths)), 1),
    }


def _sampled(env: EnvSpec, actor: SACActor, episodes: int, seed: list[int]) -> dict[str, Any]:
    """Returns with sampled actions; env resets and action noise come from distinct streams of `seed`."""
    return _stats(env, SampledPolicy(actor, np.random.default_rng([*seed, 1])), episodes, seed)


def medium_rank(stats: dict[str, Any], target: float) -> tuple[float, ...]:
    """Sort key of a medium candidate: within MEDIUM_TOLERANCE of the target, the widest spread of returns first
    (D4RL's medium sets are wide: a narrow one is won by a policy that merely stays up); otherwise the closest mean."""
    miss = abs(stats["normalized"] - target)
    return (0.0, -stats["return_std"]) if miss <= MEDIUM_TOLERANCE else (1.0, miss)


def select_snapshots(
    env: EnvSpec, snaps: dict[int, Path], stream_rows: int, *, screen_episodes: int, finalist_episodes: int, seed: int,
    roles: tuple[str, ...] = ROLES,
) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """The steps of `roles` chosen by sampled-action returns, and the screening record behind the choice."""
    target = MEDIUM_TARGETS[env.name]
    screening = []
    for i, step in enumerate(sorted(snaps)):
        stats = _sampled(env, _shipped_precision(snaps[step]), screen_episodes, [seed, 1, step])
        screening.append({"step": step, **stats})
        _log(f"[{env.name}] screen {i + 1}/{len(snaps)} step {step}: sampled {screening[-1]['normalized']:.1f}")
    replayable = [s for s in screening if s["step"] < stream_rows]  # medium-replay must be cut at medium's step
    if not replayable:
        raise UserInputError(f"no snapshot lies within the {stream_rows}-row training stream")
    distance = {"medium": lambda st: medium_rank(st, target), "expert": lambda st: (-st["return_mean"],)}
    pools = {"medium": replayable, "expert": screening}
    chosen = {}
    for role in roles:
        finalists = sorted(pools[role], key=distance[role])[:FINALISTS]
        for s in finalists:
            if "finalist" not in s:
                actor = _shipped_precision(snaps[s["step"]])
                s["finalist"] = _sampled(env, actor, finalist_episodes, [seed, 2, s["step"]])
            _log(f"[{env.name}] {role} finalist step {s['step']}: sampled {s['finalist']['normalized']:.1f}")
        chosen[role] = min(finalists, key=lambda s: distance[role](s["finalist"]))["step"]
    return chosen, screening


def _shortfall_notes(
    env: EnvSpec, medium: dict[str, Any], screening: list[dict[str, Any]], stream_rows: int
) -> list[str]:
    """Say plainly when the medium policy misses its target, and what the neighbouring snapshots scored."""
    target, got, step = MEDIUM_TARGETS[env.name], medium["sampled"]["normalized"], medium["training_steps"]
    if abs(got - target) <= MEDIUM_TOLERANCE or not screening:
        return []
    around = [s for s in screening if s["step"] < step][-1:] + [s for s in screening if s["step"] > step][:1]
    finalist = next((s["finalist"]["normalized"] for s in screening if s["step"] == step and "finalist" in s), None)
    chosen_on = f" on its finalist episodes it scored {finalist:.1f};" if finalist is not None else ""
    return [f"medium scores {got:.1f} (sampled actions, the card's fresh episodes) against a target of {target:.0f}:"
            f"{chosen_on} it was the best candidate within the {stream_rows}-row training stream by the medium rule "
            "(widest spread within the tolerance, else closest mean); its neighbours screened at "
            + ", ".join(f"{s['normalized']:.1f} (step {s['step']})" for s in around)]


def _current_expert(dest: Path, env: EnvSpec) -> tuple[dict[str, Any], bytes]:
    """The expert card entry (with the run it came from) and actor bytes of an existing behaviour folder."""
    card_path, actor_path = dest / CARD, dest / actor_file("expert")
    if not card_path.is_file() or not actor_path.is_file():
        raise UserInputError(f"--keep-expert: {dest} has no {CARD} and {actor_file('expert')} to keep")
    card = read_card(card_path)
    if card.get("env") != env.name:
        raise UserInputError(f"--keep-expert: {card_path} is for {card.get('env')!r}, not {env.name}")
    entry = dict(card["policies"]["expert"])
    entry.setdefault("source_run", card["source_run"])  # the run of the folder's card, when it made the expert
    return entry, actor_path.read_bytes()


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
    keep_expert: bool = False,
) -> Path:
    """Pick medium and expert snapshots of a run, measure them, and write actors, medium-replay stream and card.

    `medium_step` / `expert_step` force a choice (no screening then); `dest` defaults to the shipped folder.
    `keep_expert` takes only medium (and medium-replay) from this run and carries the expert actor and its card
    entry over from `dest` (a short run made for a better medium must not replace a longer run's expert).
    """
    run, env = Path(run_dir), get_env_spec(env_name)
    dest = Path(dest) if dest is not None else behaviour_dir(env)
    snaps = snapshot_steps(run)
    if not snaps or not (run / STREAM).is_file():
        raise UserInputError(f"{run}: not a SAC run folder (needs actors/actor_<step>.safetensors and {STREAM})")
    stream = read_stream(run)
    stream_rows = len(stream["rewards"])
    for role, forced in (("medium", medium_step), ("expert", expert_step)):
        if forced is not None and forced not in snaps:
            raise UserInputError(f"{run}: no {role} snapshot at step {forced}; snapshots: {sorted(snaps)}")
    if medium_step is not None and medium_step >= stream_rows:
        raise UserInputError(f"{run}: medium step {medium_step} is past the training stream ({stream_rows} rows)")
    kept_expert = _current_expert(dest, env) if keep_expert else None
    if keep_expert and expert_step is not None:
        raise UserInputError("--keep-expert and --expert-step exclude each other")
    started = time.perf_counter()

    screening: list[dict[str, Any]] = []
    steps = {"medium": medium_step} if keep_expert else {"medium": medium_step, "expert": expert_step}
    to_choose = tuple(role for role, step in steps.items() if step is None)
    if to_choose:
        chosen, screening = select_snapshots(env, snaps, stream_rows, screen_episodes=screen_episodes,
                                             finalist_episodes=card_episodes, seed=seed, roles=to_choose)
        steps = {role: step if step is not None else chosen[role] for role, step in steps.items()}
    progress = {row["step"]: row for row in read_progress(run)}
    policies: dict[str, Any] = {}
    with atomic_path(dest, is_dir=True) as tmp:
        for role, step in steps.items():
            actor = _shipped_precision(snaps[step])
            fresh = [seed, 3, step]  # not the episodes that won the selection
            policies[role] = {
                "file": actor_file(role),
                "training_steps": step,
                "source_snapshot": snaps[step].name,
                "sampled": _sampled(env, actor, card_episodes, fresh),
                "deterministic": _stats(env, SampledPolicy(actor, None, deterministic=True), card_episodes, fresh),
                "run_eval_deterministic": progress.get(step),
            }
            save_actor(actor, tmp / actor_file(role), metadata={"env": env.name, "role": role, "step": step})
            _log(f"[{env.name}] {role}: step {step}, sampled {policies[role]['sampled']['normalized']:.1f}, "
                 f"deterministic {policies[role]['deterministic']['normalized']:.1f}")
        if kept_expert is not None:
            entry, weights = kept_expert
            (tmp / actor_file("expert")).write_bytes(weights)
            policies["expert"] = entry
        policies["medium"]["target_normalized"] = MEDIUM_TARGETS[env.name]
        rand = SampledPolicy(random_actor(env.obs_dim, env.act_dim, seed), np.random.default_rng([seed, 4, 1]))
        policies["random"] = {
            "actions": f"a randomly initialised SAC actor (seed {seed}), sampled actions; regeneration draws its own "
                       "random actor from the dataset seed",
            "sampled": _stats(env, rand, card_episodes, [seed, 4]),
        }

        replay = expand_stream(stream, rows=steps["medium"])
        np.savez_compressed(tmp / REPLAY, **compact_stream(replay, np.float16))
        returns = replay.episode_returns()
        card = {
            "env": env.name,
            "gym_id": env.gym_id,
            "made_by": f"decision_minrnn {__version__}: collect_dataset --import-behaviour RUN_DIR --env {env.name}",
            "source_run": {
                "name": run.name,
                "setup": read_setup(run),
                "steps_reached": max(max(snaps), max(progress, default=0)),
                "stream_rows": stream_rows,
            },
            "how": (
                "SAC (stable-baselines3 defaults) trained online on the v5 env. Every snapshot screened with "
                f"{screen_episodes} episodes of sampled actions, the {FINALISTS} best candidates per role re-measured "
                f"on {card_episodes}; medium = among the snapshots the training stream reaches, the widest spread of "
                f"returns within {MEDIUM_TOLERANCE:g} points of the target D4RL-normalized score (the closest mean "
                "if none is within), expert = best sampled return"
                + (" (here: kept from an earlier run, see policies.expert.source_run)" if keep_expert else "")
                + ". The chosen ones measured again on "
                f"{card_episodes} fresh episodes (sampled and deterministic actions) with the float16 weights "
                "that ship."
            ),
            "normalized_score": "D4RL-normalized x100, D4RL v2 reference returns (v5 envs: close to, not equal to, v2)",
            "policies": policies,
            "medium_replay": {
                "file": REPLAY,
                "what": "SAC training stream from step 0 to the medium snapshot (its first 10k steps uniform random)",
                "transitions": len(replay),
                "episodes": int(len(returns)),
                "return_mean": round(float(returns.mean()), 2) if len(returns) else None,
                "normalized": round(float(env.normalized_score(returns.mean())), 2) if len(returns) else None,
                "storage": "observations and actions float16, rewards float32; next observations only at episode ends",
            },
            "notes": _shortfall_notes(env, policies["medium"], screening, stream_rows),
            "screening": screening,
            "measure_seconds": round(time.perf_counter() - started, 1),
        }
        write_json(tmp / CARD, card)
        for path in (tmp, *tmp.iterdir()):  # shipped data is read by everyone (temporary folders are private)
            path.chmod(0o755 if path.is_dir() else 0o644)
    _log(f"[{env.name}] wrote {dest}")
    return dest
