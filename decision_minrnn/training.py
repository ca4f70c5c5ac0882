"""The training loop behind `train_agent`: data -> sampler -> model -> AdamW with warm-up and clipping -> checkpoints.

A run folder records everything needed to reproduce it (config, data source, versions, seed), checkpoints
atomically every `checkpoint_every` steps, resumes exactly (same weights as an uninterrupted run), stops with a
message on a NaN/inf loss keeping the last good checkpoint, and runs unchanged under `torchrun` (DDP; rank 0 writes).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from .agent_io import AgentMeta, save_agent
from .checkpoint import has_checkpoint, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .errors import RunFailure, UserInputError
from .io import write_json
from .model import build_model
from .policy import resolve_device
from .tasks import resolve_task
from .versions import versions

NO_DECAY_NAMES = ("A_log", "log_dt", "D", "dt_proj.bias")  # SSM parameters: no weight decay (design.md 1)


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    final_loss: float
    evaluation: dict[str, Any] | None


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on the weight matrices of linear/conv layers only; none on biases, norms, embeddings, SSM params."""
    decay, no_decay = [], []
    for module_name, module in model.named_modules():
        for name, param in module.named_parameters(recurse=False):
            full = f"{module_name}.{name}" if module_name else name
            is_matrix = name == "weight" and isinstance(module, (torch.nn.Linear, torch.nn.Conv1d))
            ssm = any(full.endswith(n) for n in NO_DECAY_NAMES)
            (decay if is_matrix and not ssm else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Refuse a folder that another live run is writing to; a lock left by a dead process is taken over."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / ".lock"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            try:
                pid = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and _alive(pid):
                raise UserInputError(f"{run_dir} is in use by another training run (pid {pid}, lock {lock})") from None
            lock.unlink(missing_ok=True)  # stale lock of a killed run
    else:
        raise UserInputError(f"cannot take the lock {lock}")
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared action error over the steps that carry loss."""
    per_step = F.mse_loss(pred, target, reduction="none").mean(-1)
    return (per_step * mask).sum() / mask.sum().clamp_min(1)


def _distributed() -> tuple[int, int]:
    """(rank, world size); initialises the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world


def _check_run_dir(run_dir: Path, resume: bool, record: dict[str, Any]) -> None:
    existing = run_dir / "run.json"
    if resume:
        if not has_checkpoint(run_dir):
            raise UserInputError(f"--resume: {run_dir} holds no checkpoint to resume from")
        old = json.loads(existing.read_text()) if existing.exists() else {}
        for key in ("task", "seed", "config_without_steps", "data_source_requested"):
            if old.get(key) != record.get(key):
                raise UserInputError(f"--resume: {run_dir} holds a different run ({key} differs: "
                                     f"{old.get(key)!r} vs {record.get(key)!r})")
        return
    if existing.exists() or has_checkpoint(run_dir) or (run_dir / "model.safetensors").exists():
        raise UserInputError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --out")


def train(task_name: str, cfg: TrainConfig, *, seed: int = 0, out: str | os.PathLike | None = None,
          device: str = "auto", data_source: str = "auto", resume: bool = False, progress: bool = True,
          command: list[str] | None = None) -> TrainResult:
    """Train one agent and write its run folder; returns where it went and the final evaluation."""
    from .data import load_dataset
    from .data.sampler import WindowSampler

    task = resolve_task(task_name)
    dev = resolve_device(device)
    rank, world = _distributed()
    run_dir = Path(out) if out else Path("runs") / task.name / f"{cfg.backbone}-seed{seed}"
    config_without_steps = {k: v for k, v in cfg.to_dict().items() if k != "steps"}
    record = {"task": task.name, "seed": seed, "config_without_steps": config_without_steps,
              "data_source_requested": data_source}
    if rank == 0:
        _check_run_dir(run_dir, resume, record)

    dataset = load_dataset(task, data_source, verbose=rank == 0)
    if dataset.observations.shape[1] != task.env.obs_dim:
        raise UserInputError(f"{dataset.location}: observation size {dataset.observations.shape[1]} does not match "
                             f"{task.env.gym_id} ({task.env.obs_dim})")
    torch.manual_seed(seed)
    sampler = WindowSampler(dataset, context_len=cfg.context_len, batch_size=cfg.batch_size, context=cfg.context,
                            burn_in=cfg.burn_in, seed=seed + 1000 * rank, return_scale=task.env.return_scale)
    model = build_model(cfg, task.env.obs_dim, task.env.act_dim).to(dev)
    optimizer = torch.optim.AdamW(parameter_groups(model, cfg.weight_decay), lr=cfg.lr)
    warmup = max(1, cfg.warmup_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup))
    stats = dataset.statistics()
    data_record = {
        "source": dataset.source, "location": dataset.location, "comparable_with_d4rl": dataset.comparable_with_d4rl,
        "comparability": dataset.comparability_note(), "score_label": dataset.score_label,
        "provenance": dataset.provenance, "episodes": stats["episodes"], "transitions": stats["transitions"],
        "return_normalized_mean": stats["return_normalized"]["mean"], "return_raw_mean": stats["return_raw"]["mean"],
    }
    meta = AgentMeta(config=cfg, task=task.name, env_id=task.env.gym_id, obs_dim=task.env.obs_dim,
                     act_dim=task.env.act_dim, seed=seed, state_mean=sampler.state_mean, state_std=sampler.state_std,
                     return_scale=sampler.return_scale, data=data_record,
                     extra={"versions": versions(), "command": command or sys.argv, "world_size": world})

    start = 0
    ctx = run_lock(run_dir) if rank == 0 else contextlib.nullcontext()
    with ctx:
        if resume:
            info = load_checkpoint(run_dir, model=model, optimizer=optimizer, scheduler=scheduler)
            start = int(info["step"])
            sampler.load_state_dict(info["sampler"])
            if rank == 0:
                print(f"resuming {run_dir} from step {start}", file=sys.stderr)
        if rank == 0:
            write_json(run_dir / "run.json", {**record, "data": data_record, "versions": meta.extra["versions"],
                                              "command": meta.extra["command"]})
        if start >= cfg.steps:
            raise UserInputError(f"{run_dir} is already at step {start} >= --steps {cfg.steps}")
        net = model
        if world > 1:
            net = torch.nn.parallel.DistributedDataParallel(model)
        result = _loop(net, model, optimizer, scheduler, sampler, cfg, dev, run_dir, start, rank, progress, meta,
                       task)
    return result


def _batch_to(batch: dict[str, np.ndarray], dev: torch.device) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v).to(dev, non_blocking=True) for k, v in batch.items()}


def _loop(net, model, optimizer, scheduler, sampler, cfg: TrainConfig, dev, run_dir: Path, start: int, rank: int,
          progress: bool, meta: AgentMeta, task) -> TrainResult:
    from tqdm.auto import tqdm

    writer = None
    if rank == 0:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run_dir))
    bar = tqdm(total=cfg.steps, initial=start, disable=not progress or rank != 0, desc=f"train {cfg.backbone}",
               unit="step", dynamic_ncols=True)
    last_ckpt = start
    loss_value = float("nan")
    evaluation = None
    t_log, tokens = time.perf_counter(), 0
    model.train()
    try:
        for step in range(start, cfg.steps):
            batch = _batch_to(sampler.sample(), dev)
            pred, _ = net(batch["returns_to_go"], batch["states"], batch["actions"], batch["timesteps"],
                          batch["prev_actions"])
            loss = masked_mse(pred, batch["actions"], batch["loss_mask"].to(pred.dtype))
            if not torch.isfinite(loss):
                raise RunFailure(f"loss became {loss.item()} at step {step}; stopped. The last good checkpoint "
                                 f"(step {last_ckpt}) is kept in {run_dir / 'checkpoint'}; lower lr or check the data")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            tokens += int(batch["mask"].sum()) * cfg.tokens_per_step
            done = step + 1
            if rank == 0 and (done % cfg.log_every == 0 or done == cfg.steps):
                loss_value = loss.item()
                elapsed = time.perf_counter() - t_log
                writer.add_scalar("train/loss", loss_value, done)
                writer.add_scalar("train/lr", scheduler.get_last_lr()[0], done)
                writer.add_scalar("train/grad_norm", float(grad_norm), done)
                writer.add_scalar("perf/tokens_per_s", tokens / max(elapsed, 1e-9), done)
                t_log, tokens = time.perf_counter(), 0
                bar.set_postfix(loss=f"{loss_value:.4f}")
            bar.update(1)
            if rank == 0 and (done % cfg.checkpoint_every == 0 or done == cfg.steps):
                save_checkpoint(run_dir, model=model, optimizer=optimizer, scheduler=scheduler, step=done,
                                sampler_state=sampler.state_dict(), config=cfg.to_dict())
                last_ckpt = done
            if rank == 0 and cfg.eval_every and done % cfg.eval_every == 0 and done != cfg.steps:
                ev = _evaluate(model, meta, cfg, seed=meta.seed)
                writer.add_scalar("eval/normalized_score_mean", ev["normalized_mean"], done)
                writer.add_scalar("eval/return_mean", ev["return_mean"], done)
                model.train()
        loss_value = loss.item()
    finally:
        bar.close()
        if writer is not None:
            writer.flush()
    if rank == 0:
        save_agent(run_dir, model, meta)
        if cfg.eval_episodes > 0:
            evaluation = _evaluate(model, meta, cfg, seed=meta.seed)
            writer.add_scalar("eval/normalized_score_mean", evaluation["normalized_mean"], cfg.steps)
        writer.close()
        metrics = {"task": task.name, "backbone": cfg.backbone, "steps": cfg.steps, "final_loss": loss_value,
                   "dataset_return_normalized_mean": meta.data["return_normalized_mean"],
                   "data_source": meta.data["source"], "comparable_with_d4rl": meta.data["comparable_with_d4rl"],
                   "evaluation": evaluation}
        write_json(run_dir / "metrics.json", metrics)
        if evaluation is not None:
            print(f"{task.name} {cfg.backbone}: {meta.data['score_label']} score "
                  f"{evaluation['normalized_mean']:.1f} +- {evaluation['normalized_std']:.1f} over "
                  f"{len(evaluation['returns'])} episodes (dataset mean {meta.data['return_normalized_mean']:.1f}); "
                  f"agent in {run_dir}", file=sys.stderr)
        else:
            print(f"agent written to {run_dir}", file=sys.stderr)
    return TrainResult(run_dir, cfg.steps, loss_value, evaluation)


def _evaluate(model, meta: AgentMeta, cfg: TrainConfig, seed: int) -> dict[str, Any]:
    """The one evaluator (evaluation.evaluate) on the in-memory model, with the config's rollout mode."""
    from .evaluation import evaluate
    from .policy import Policy

    model.eval()
    policy = Policy(model, meta)
    return evaluate(policy, episodes=cfg.eval_episodes, num_envs=min(cfg.eval_num_envs, cfg.eval_episodes),
                    seed=seed + 10_000, progress=False)
