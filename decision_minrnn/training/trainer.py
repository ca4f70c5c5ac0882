"""The training loop: batches from a sampler -> model -> AdamW with warm-up and clipping -> checkpoints.

`Trainer` knows nothing of datasets on disk, agent folders or environments: the workflow above it
(`workflows/train.py`) loads the data, saves the agent and runs the final evaluation. Evaluations during training
(the learning curve) come in through the `evaluate` callable, so this layer never imports the rollout code.
Checkpoints are atomic and hold everything for an exact resume (weights, optimizer, scheduler, RNG, sampler state,
the learning curve so far); a NaN/inf loss stops the run keeping the last good checkpoint; under `torchrun` the model
is wrapped in DistributedDataParallel and rank 0 writes.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from ..errors import RunFailure
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig

NO_DECAY_NAMES = ("A_log", "log_dt", "D", "dt_proj.bias")  # SSM parameters: no weight decay (Mamba, S4 practice)

Evaluate = Callable[[torch.nn.Module, int], dict[str, Any]]  # (model in eval mode, step) -> an evaluation result


@contextmanager
def interrupt_at_step_boundary():
    """Ctrl-C during training stops at the next step boundary (raised there as KeyboardInterrupt), never inside a
    TensorBoard write or a checkpoint rename, whose locks and half-done state could hang or spoil the exit. A second
    Ctrl-C interrupts at once. Off the main thread (Ray workers, threads) signals cannot be caught: a no-op there."""
    requested = {"stop": False}
    if threading.current_thread() is not threading.main_thread():
        yield requested
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        requested["stop"] = True
        signal.signal(signal.SIGINT, signal.default_int_handler)  # the second one is immediate

    signal.signal(signal.SIGINT, handler)
    try:
        yield requested
    finally:
        signal.signal(signal.SIGINT, previous)


@dataclass
class TrainOutcome:
    """What `Trainer.fit` ends with."""

    steps: int
    final_loss: float
    learning_curve: list[dict[str, Any]] = field(default_factory=list)
    timing: dict[str, float | None] = field(default_factory=dict)  # `TrainClock.record()`


@dataclass
class TrainClock:
    """Time in optimisation steps (curve evaluations and checkpoints left out), summed over every session of a
    resumed run, as wall and as process CPU time (all threads). CPU time leaves out waits for a busy core and pauses
    (SIGSTOP), so it compares runs on a shared machine. A figure is None (unknown, never undercounted) when the run
    resumed from a checkpoint that did not record it."""

    wall: float | None = 0.0
    cpu: float | None = 0.0
    _marks: tuple[float, float] = field(default=(0.0, 0.0), repr=False)

    def start(self) -> None:
        self._marks = (time.perf_counter(), time.process_time())

    def stop(self) -> None:
        wall0, cpu0 = self._marks
        if self.wall is not None:
            self.wall += time.perf_counter() - wall0
        if self.cpu is not None:
            self.cpu += time.process_time() - cpu0

    def record(self) -> dict[str, float | None]:
        """The figures as the checkpoint and metrics.json store them."""
        return {"train_seconds": None if self.wall is None else round(self.wall, 3),
                "train_cpu_seconds": None if self.cpu is None else round(self.cpu, 3)}

    @classmethod
    def from_record(cls, info: dict[str, Any]) -> "TrainClock":
        wall, cpu = info.get("train_seconds"), info.get("train_cpu_seconds")
        return cls(None if wall is None else float(wall), None if cpu is None else float(cpu))


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


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared action error over the steps that carry loss."""
    per_step = F.mse_loss(pred, target, reduction="none").mean(-1)
    return (per_step * mask).sum() / mask.sum().clamp_min(1)


def distributed() -> tuple[int, int]:
    """(rank, world size); initialises the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world


def end_distributed() -> None:
    """Leave the process group once training is over (all ranks together): a rank that exits with gloo's threads
    still running can abort ("terminate called without an active exception") and fail the whole torchrun job."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


class Trainer:
    """One run's optimisation: `restore()` from a checkpoint if resuming, then `fit()`."""

    def __init__(self, model: torch.nn.Module, cfg: TrainConfig, sampler: Any, *, device: torch.device,
                 run_dir: Path, rank: int = 0, world: int = 1, progress: bool = True,
                 evaluate: Evaluate | None = None):
        self.model, self.cfg, self.sampler, self.device = model, cfg, sampler, device
        self.run_dir, self.rank, self.world, self.progress = Path(run_dir), rank, world, progress
        self.evaluate = evaluate
        self.optimizer = torch.optim.AdamW(parameter_groups(model, cfg.weight_decay), lr=cfg.lr)
        warmup = max(1, cfg.warmup_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: min(1.0, (s + 1) / warmup))
        self.net = model if world <= 1 else torch.nn.parallel.DistributedDataParallel(model)
        self.step = 0
        self.last_checkpoint = 0
        self.learning_curve: list[dict[str, Any]] = []
        self.clock = TrainClock()  # in the checkpoint: a resumed run reports its whole training time

    # ------------------------------------------------------------------------------------------------ state
    def restore(self) -> int:
        """Continue from the run folder's checkpoint; returns its step."""
        info = load_checkpoint(self.run_dir, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler)
        self.step = self.last_checkpoint = int(info["step"])
        self.sampler.load_state_dict(info["sampler"])
        self.learning_curve = list(info.get("learning_curve", []))
        self.clock = TrainClock.from_record(info)
        return self.step

    def _save_checkpoint(self) -> None:
        save_checkpoint(self.run_dir, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler,
                        step=self.step, sampler_state=self.sampler.state_dict(), config=self.cfg.to_dict(),
                        extra={"learning_curve": self.learning_curve, **self.clock.record()})
        self.last_checkpoint = self.step

    # ------------------------------------------------------------------------------------------------ loop
    def _train_step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        pred, _ = self.net(batch["returns_to_go"], batch["states"], batch["actions"], batch["timesteps"],
                           batch["prev_actions"])
        loss = masked_mse(pred, batch["actions"], batch["loss_mask"].to(pred.dtype))
        if not torch.isfinite(loss):
            raise RunFailure(f"loss became {loss.item()} at step {self.step}; stopped. The last good checkpoint "
                             f"(step {self.last_checkpoint}) is kept in {self.run_dir / 'checkpoint'}; lower lr or "
                             "check the data")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        return loss, grad_norm

    def _curve_point(self, writer: Any) -> None:
        self.model.eval()
        try:
            ev = self.evaluate(self.model, self.step)
        finally:
            self.model.train()
        point = {"step": self.step, "normalized_mean": ev["normalized_mean"], "normalized_std": ev["normalized_std"],
                 "return_mean": ev["return"]["mean"], "returns": ev["returns"], "lengths": ev["lengths"],
                 "seed": ev["seed"], "rollout": ev["rollout"]}
        self.learning_curve.append(point)
        writer.add_scalar("eval/normalized_score_mean", point["normalized_mean"], self.step)
        writer.add_scalar("eval/return_mean", point["return_mean"], self.step)

    def fit(self) -> TrainOutcome:
        """Train from `self.step` to `cfg.steps`, logging, checkpointing and evaluating on the way."""
        from tqdm.auto import tqdm

        cfg, lead = self.cfg, self.rank == 0
        writer = None
        if lead:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(self.run_dir))
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not self.progress or not lead,
                   desc=f"train_agent {cfg.backbone}", unit="step", dynamic_ncols=True)
        loss_value = float("nan")
        loss = None
        t_log, tokens = time.perf_counter(), 0
        self.clock.start()
        self.model.train()
        with interrupt_at_step_boundary() as interrupt:
            try:
                while self.step < cfg.steps:
                    batch = {k: torch.from_numpy(v).to(self.device, non_blocking=True)
                             for k, v in self.sampler.sample().items()}
                    loss, grad_norm = self._train_step(batch)
                    tokens += int(batch["mask"].sum()) * cfg.tokens_per_step
                    self.step += 1
                    done = self.step
                    if lead and (done % cfg.log_every == 0 or done == cfg.steps):
                        loss_value = loss.item()
                        elapsed = time.perf_counter() - t_log
                        writer.add_scalar("train/loss", loss_value, done)
                        writer.add_scalar("train/lr", self.scheduler.get_last_lr()[0], done)
                        writer.add_scalar("train/grad_norm", float(grad_norm), done)
                        writer.add_scalar("perf/tokens_per_s", tokens / max(elapsed, 1e-9), done)
                        t_log, tokens = time.perf_counter(), 0
                        bar.set_postfix(loss=f"{loss_value:.4f}")
                    bar.update(1)
                    self.clock.stop()  # curve points and checkpoints below are not training time
                    if lead and self.evaluate is not None and cfg.eval_every and done % cfg.eval_every == 0:
                        self._curve_point(writer)
                    if lead and (done % cfg.checkpoint_every == 0 or done == cfg.steps):
                        self._save_checkpoint()
                    if interrupt["stop"]:
                        raise KeyboardInterrupt
                    self.clock.start()
                if loss is not None:
                    loss_value = loss.item()
            finally:
                bar.close()
                if writer is not None:
                    writer.close()
        return TrainOutcome(self.step, loss_value, self.learning_curve, self.clock.record())
