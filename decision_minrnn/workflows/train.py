"""`train_agent` end to end: run folder -> data -> Trainer -> agent folder -> final evaluation -> metrics.json.

The evaluation protocol is fixed here, before any run is scored (README, Evaluation protocol):
- the rollout mode is the config's `rollout` (never chosen by score);
- the final evaluation runs `eval_episodes` (100) episodes with the LAST weights (no best-checkpoint picking), on
  evaluation seeds derived from the run seed (`rollout.envs.evaluation_seed(seed, "final")`);
- the learning curve takes `eval_curve_episodes` (10) episodes every `eval_every` (2,000) steps on another seed
  stream (`"curve"`), into TensorBoard and `metrics.json`.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..agent.folder import AgentMeta, save_agent
from ..agent.policy import Policy
from ..data.sampler import WindowSampler
from ..devices import resolve_device
from ..errors import DataMismatchError, UserInputError
from ..io import check_writable, write_json
from ..nn.model import build_model
from ..rollout.envs import evaluation_seed
from ..rollout.evaluation import evaluate
from ..tasks import Task, resolve_task
from ..training import run_folder
from ..training.config import TrainConfig, with_legacy_defaults
from ..training.trainer import Trainer, TrainOutcome, distributed, end_distributed
from ..versions import versions
from .datasets import load_dataset


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    final_loss: float
    evaluation: dict[str, Any] | None


def evaluate_model(model: torch.nn.Module, meta: AgentMeta, *, episodes: int, num_envs: int,
                   seed: int) -> dict[str, Any]:
    """The one evaluator on an in-memory model, acting in the config's rollout mode."""
    return evaluate(Policy(model, meta), episodes=episodes, num_envs=min(num_envs, episodes), seed=seed,
                    progress=False)


def _plan(run_dir: Path, record: dict[str, Any], resume: bool, steps: int) -> str:
    """What to do with the folder: "fresh", "resume" (from its checkpoint) or "finish" (only the final evaluation).

    Call under the run lock, after `run_folder.repair`.
    """
    state = run_folder.inspect(run_dir)
    if resume:
        if state.checkpoint_step is None:
            if state.record is None:
                raise UserInputError(f"--resume: {run_dir} holds no checkpoint to resume from")
            print(f"--resume: {run_dir} stopped before its first checkpoint; starting it from step 0",
                  file=sys.stderr)
            return "fresh"
        old = state.record or {}
        if isinstance(old.get("config_without_steps"), dict):  # a run from before a config field: as it was then
            old = {**old, "config_without_steps": with_legacy_defaults(old["config_without_steps"])}
        keys = ("task", "seed", "config_without_steps", "data_source_requested")
        diff = run_folder.differing_fields({k: old.get(k) for k in keys}, {k: record.get(k) for k in keys})
        if diff:
            raise UserInputError(f"--resume: {run_dir} holds a different run: " + "; ".join(diff[:6])
                                 + (f" (and {len(diff) - 6} more)" if len(diff) > 6 else ""))
        if state.checkpoint_step >= steps:
            if state.finished:
                raise UserInputError(f"--resume: {run_dir} is finished (step {state.checkpoint_step}, metrics.json "
                                     "written); pass a larger --steps to train on")
            return "finish"
        return "resume"
    if state.checkpoint_step is not None or state.has_model or state.finished:
        raise UserInputError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --out")
    if state.record is not None:
        print(f"{run_dir}: the run there stopped before its first checkpoint; starting afresh", file=sys.stderr)
    return "fresh"


def train_agent(task_name: str | Task, cfg: TrainConfig, *, seed: int = 0, out: str | os.PathLike | None = None,
                device: str = "auto", data_source: str = "auto", resume: bool = False, progress: bool = True,
                command: list[str] | None = None, expect_data_mean: float | None = None) -> TrainResult:
    """Train one agent into its run folder, then score it under the protocol; returns where it went.

    `expect_data_mean`: the dataset's mean episode return must be this one (else `DataMismatchError`, before
    anything is trained or written); a resumed run's dataset must be the one its checkpoint was trained on.
    """
    task = resolve_task(task_name)
    dev = resolve_device(device)
    if seed < 0:
        raise UserInputError(f"--seed must be >= 0, got {seed}")
    rank, world = distributed()
    lead = rank == 0
    run_dir = Path(out) if out else Path("runs") / task.name / f"{cfg.backbone}-seed{seed}"
    record = {"task": task.name, "seed": seed,
              "config_without_steps": {k: v for k, v in cfg.to_dict().items() if k != "steps"},
              "data_source_requested": data_source}
    if lead:
        check_writable(run_dir)
    lock = run_folder.run_lock(run_dir) if lead else _no_lock()
    with lock:
        mode = "resume" if resume else "fresh"
        if lead:
            for note in run_folder.repair(run_dir):
                print(f"{run_dir}: {note}", file=sys.stderr)
            mode = _plan(run_dir, record, resume, cfg.steps)

        dataset = load_dataset(task, data_source, verbose=lead)
        if dataset.observations.shape[1] != task.env.obs_dim:
            raise UserInputError(f"{dataset.location}: observation size {dataset.observations.shape[1]} does not "
                                 f"match {task.env.gym_id} ({task.env.obs_dim})")
        data_record = _data_record(dataset)
        _check_same_data(task, data_record, run_dir, expect_data_mean, resumed=mode == "resume")
        torch.manual_seed(seed)
        sampler = WindowSampler(dataset, context_len=cfg.context_len, batch_size=cfg.batch_size,
                                context=cfg.context, burn_in=cfg.burn_in, seed=seed + 1000 * rank,
                                return_scale=task.env.return_scale)
        model = build_model(cfg.model_config(), task.env.obs_dim, task.env.act_dim).to(dev)
        meta = AgentMeta(config=cfg, task=task.name, env_id=task.env.gym_id, obs_dim=task.env.obs_dim,
                         act_dim=task.env.act_dim, seed=seed, state_mean=sampler.state_mean,
                         state_std=sampler.state_std, return_scale=sampler.return_scale,
                         data=data_record,
                         extra={"versions": versions(), "command": command or sys.argv, "world_size": world})
        curve_seed, final_seed = evaluation_seed(seed, "curve"), evaluation_seed(seed, "final")

        def curve_point(m: torch.nn.Module, step: int) -> dict[str, Any]:
            return evaluate_model(m, meta, episodes=cfg.eval_curve_episodes, num_envs=cfg.eval_num_envs,
                                  seed=curve_seed)

        trainer = Trainer(model, cfg, sampler, device=dev, run_dir=run_dir, rank=rank, world=world,
                          progress=progress, evaluate=curve_point if cfg.eval_curve_episodes > 0 else None)
        if mode in ("resume", "finish"):
            start = trainer.restore()
            if lead:
                print(f"resuming {run_dir} from step {start}" if mode == "resume" else
                      f"{run_dir}: training finished at step {start}; running the missing final evaluation",
                      file=sys.stderr)
        if lead:
            write_json(run_dir / run_folder.RUN_RECORD, {**record, "data": meta.data, "versions": meta.extra["versions"],
                                                         "command": meta.extra["command"]})
        if mode == "finish":  # `restore` loaded the last checkpoint's weights
            outcome = TrainOutcome(trainer.step, float("nan"), trainer.learning_curve, trainer.clock.record())
        else:
            outcome = trainer.fit()
        end_distributed()  # no collective calls after this; rank 0 goes on to save and evaluate alone
        if not lead:
            return TrainResult(run_dir, outcome.steps, outcome.final_loss, None)
        save_agent(run_dir, model, meta)
        evaluation = None
        if cfg.eval_episodes > 0:
            model.eval()
            evaluation = evaluate_model(model, meta, episodes=cfg.eval_episodes, num_envs=cfg.eval_num_envs,
                                        seed=final_seed)
        write_json(run_dir / run_folder.METRICS, _metrics(task, cfg, meta, outcome, evaluation, curve_seed,
                                                          final_seed))
    if evaluation is not None:
        print(f"{task.name} {cfg.backbone}: {meta.data['score_label']} score {evaluation['normalized_mean']:.1f} +- "
              f"{evaluation['normalized_std']:.1f} over {len(evaluation['returns'])} episodes (dataset mean "
              f"{meta.data['return_normalized_mean']:.1f}); agent in {run_dir}", file=sys.stderr)
    else:
        print(f"agent written to {run_dir}", file=sys.stderr)
    return TrainResult(run_dir, outcome.steps, outcome.final_loss, evaluation)


def _check_same_data(task: Task, data: dict[str, Any], run_dir: Path, expected: float | None, resumed: bool) -> None:
    """Refuse a dataset (its `_data_record`) other than the expected one, told apart by its mean episode return as the
    sweep report's "mixed data" is: the same task regenerated elsewhere can be other samples (README, Datasets
    without D4RL)."""
    mean = float(data["return_raw_mean"])
    wanted = []
    if expected is not None:
        wanted.append((float(expected), "--expect-data-mean names", "nothing was trained"))
    if resumed:
        old = ((run_folder.inspect(run_dir).record or {}).get("data") or {}).get("return_raw_mean")
        if old is not None:
            wanted.append((float(old), f"the checkpoint in {run_dir} was trained on",
                           "it was not resumed; remove the folder to train it afresh on this dataset"))
    for value, what, action in wanted:
        if not math.isclose(mean, value, rel_tol=1e-9, abs_tol=1e-9):
            raise DataMismatchError(
                f"{task.name}: this dataset ({data['location']}) has mean episode return {mean:.6f}, but {what} one "
                f"with mean {value:.6f}: other samples of the task (regenerated on a machine whose floating-point "
                f"code path differs?); {action}")


def _no_lock():
    import contextlib

    return contextlib.nullcontext()


def _data_record(dataset: Any) -> dict[str, Any]:
    stats = dataset.statistics()
    return {
        "source": dataset.source, "location": dataset.location, "comparable_with_d4rl": dataset.comparable_with_d4rl,
        "comparability": dataset.comparability_note(), "score_label": dataset.score_label,
        "provenance": dataset.provenance, "data_version": (dataset.provenance or {}).get("data_version"),
        "episodes": stats["episodes"], "transitions": stats["transitions"],
        "return_normalized_mean": stats["return_normalized"]["mean"], "return_raw_mean": stats["return_raw"]["mean"],
    }


def _metrics(task: Task, cfg: TrainConfig, meta: AgentMeta, outcome: TrainOutcome, evaluation: dict[str, Any] | None,
             curve_seed: int, final_seed: int) -> dict[str, Any]:
    return {
        "task": task.name, "backbone": cfg.backbone, "layout": cfg.layout, "steps": cfg.steps,
        "final_loss": outcome.final_loss,
        **outcome.timing,  # train_seconds, train_cpu_seconds
        "dataset_return_normalized_mean": meta.data["return_normalized_mean"],
        "data_source": meta.data["source"], "data_version": meta.data.get("data_version"),
        "comparable_with_d4rl": meta.data["comparable_with_d4rl"],
        "protocol": {"rollout": cfg.rollout, "weights": "last", "final_episodes": cfg.eval_episodes,
                     "final_seed": final_seed, "curve_every": cfg.eval_every,
                     "curve_episodes": cfg.eval_curve_episodes, "curve_seed": curve_seed},
        "learning_curve": outcome.learning_curve,
        "evaluation": evaluation,
    }
