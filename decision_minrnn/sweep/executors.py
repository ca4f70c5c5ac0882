"""Where cells run: `local` (N `train_agent` subprocesses at once) or `ray` (one Ray task per cell on a cluster).

Both run the same function, `execute_job`, which drives one cell through the console scripts and returns the small
JSON files of its folder. The driver alone writes results rows, so the executors never touch `results.jsonl`.
`execute_job` decides what a cell folder needs on the machine that runs it (on a cluster without a shared file
system only that machine sees the folder):

- finished (metrics.json has the final evaluation): nothing, the results are read back;
- weights but no final evaluation (killed during it): `evaluate_agent` with the trainer's protocol;
- a checkpoint: `train_agent ... --resume` (if train_agent refuses it because the folder holds a different run,
  i.e. the spec changed the cell's config or data source, the folder is restarted cleanly and the log says so; any
  other failure keeps the folder as it is);
- a run.json but no checkpoint yet (killed in its first `checkpoint_every` steps): the folder is removed and the
  cell starts again cleanly; so few steps are lost that continuing is not worth a special case;
- nothing: `train_agent`.

A folder whose `.lock` names a live process is in use by another training run and is never removed.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from ..errors import UserInputError
from .cells import console_script, shell_line

LOG_NAME = "sweep.log"
EVAL_JSON = "final-eval.json"
RESULT_FILES = ("metrics.json", "config.json", "run.json", EVAL_JSON)
NOT_STARTED = -1  # Outcome.rc of a cell the executor never started (the sweep was stopped first)


@dataclass
class CellJob:
    """Everything a worker needs to run one cell; plain data, so it pickles for Ray."""

    key: tuple[str, str, int]
    label: str
    cell_dir: str  # absolute
    train_argv: list[str]  # train_agent arguments, without --resume
    eval_argv: list[str]  # evaluate_agent arguments for a folder with weights but no final evaluation
    threads: int = 1


@dataclass
class Outcome:
    """What running a cell gave: exit status, what was done, wall time and the folder's result files."""

    rc: int
    actions: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    files: dict[str, Any] = field(default_factory=dict)
    log_tail: str = ""
    host: str = ""
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.rc == 0


class Hooks:
    """Lets the local executor start no more commands (`stop`) and end the subprocesses it started (`terminate_all`:
    each by its own process handle, never by name)."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self._killing = threading.Event()
        self._procs: set[subprocess.Popen] = set()
        self._lock = threading.Lock()

    def started(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._procs.add(proc)
        if self._killing.is_set():
            proc.terminate()

    def finished(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._procs.discard(proc)

    def terminate_all(self) -> None:
        self.stop.set()
        self._killing.set()
        with self._lock:
            procs = list(self._procs)
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def finished(cell_dir: Path) -> bool:
    """True when the folder holds the final evaluation (metrics.json from train_agent, or our evaluate_agent JSON)."""
    metrics = _read_json(cell_dir / "metrics.json")
    if isinstance(metrics, dict) and metrics.get("evaluation"):
        return True
    return (cell_dir / "model.safetensors").is_file() and isinstance(_read_json(cell_dir / EVAL_JSON), dict)


def cell_state(cell_dir: Path) -> str:
    """finished | evaluate | resume | restart | new: what the folder needs (see the module docstring)."""
    if finished(cell_dir):
        return "finished"
    if (cell_dir / "model.safetensors").is_file():
        return "evaluate"
    if (cell_dir / "checkpoint" / "trainer.json").is_file():
        return "resume"
    if (cell_dir / "run.json").exists():
        return "restart"
    return "new"


def locked_by(cell_dir: Path) -> int | None:
    """Pid of a live process holding the folder's training lock, if any."""
    try:
        pid = int((cell_dir / ".lock").read_text().strip() or 0)
    except (OSError, ValueError):
        return None
    if pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def _run(argv: list[str], log_path: Path, threads: int, hooks: Hooks | None) -> int:
    if hooks is not None and hooks.stop.is_set():
        return NOT_STARTED
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    with open(log_path, "a") as log:
        log.write(f"\n[{time.strftime('%Y-%m-%d %H:%M:%S')}] {shell_line(argv)}\n")
        log.flush()
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        if hooks is not None:
            hooks.started(proc)
        try:
            return proc.wait()
        except BaseException:  # Ray's cancel raises KeyboardInterrupt here: do not leave the child running
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
        finally:
            if hooks is not None:
                hooks.finished(proc)


def _restart(cell_dir: Path, log_path: Path, why: str) -> None:
    """Remove the folder's run (the log stays, as the record of what happened)."""
    log_text = log_path.read_text() if log_path.exists() else ""
    shutil.rmtree(cell_dir)
    cell_dir.mkdir(parents=True)
    log_path.write_text(log_text + f"\n[{time.strftime('%Y-%m-%d %H:%M:%S')}] sweep: restarting cleanly: {why}\n")


def _refused_as_other_run(log_path: Path, offset: int) -> bool:
    """Did the last train_agent refuse --resume because the folder holds a different run (config, data source)?
    Only then is the checkpoint worthless; any other bad-input error (a missing dataset, say) keeps the folder."""
    with open(log_path, errors="replace") as f:
        f.seek(offset)
        text = f.read()
    return "--resume:" in text and "different run" in text


def execute_job(job: CellJob, hooks: Hooks | None = None) -> Outcome:
    """Bring one cell to its final evaluation (train, resume, restart or evaluate as its folder needs) and return
    the folder's result files. Runs on the driver's machine (local) or on a Ray worker."""
    if hooks is not None and hooks.stop.is_set():
        return Outcome(rc=NOT_STARTED, error="not started")
    started = time.time()
    cell_dir = Path(job.cell_dir)
    cell_dir.mkdir(parents=True, exist_ok=True)
    log_path = cell_dir / LOG_NAME
    out = Outcome(rc=0, host=socket.gethostname())
    train = console_script("train_agent")
    state = cell_state(cell_dir)
    pid = locked_by(cell_dir)
    if state in ("resume", "restart") and pid:
        out.rc, out.error = 2, f"{cell_dir} is in use by another training run (pid {pid}); not touched"
    elif state == "resume":
        out.actions.append("resume")
        before = log_path.stat().st_size if log_path.exists() else 0
        out.rc = _run([*train, *job.train_argv, "--resume"], log_path, job.threads, hooks)
        if out.rc == 2 and _refused_as_other_run(log_path, before) and not locked_by(cell_dir):
            _restart(cell_dir, log_path, "its checkpoint belongs to another config (the spec changed)")
            out.actions.append("restart")
            out.rc = _run([*train, *job.train_argv], log_path, job.threads, hooks)
    elif state in ("restart", "new"):
        if state == "restart":
            _restart(cell_dir, log_path, "the folder holds a run with no checkpoint yet")
        out.actions.append(state if state == "restart" else "train")
        out.rc = _run([*train, *job.train_argv], log_path, job.threads, hooks)
    if out.rc == 0 and not finished(cell_dir) and (cell_dir / "model.safetensors").is_file():
        out.actions.append("evaluate")
        out.rc = _run([*console_script("evaluate_agent"), *job.eval_argv], log_path, job.threads, hooks)
    if out.rc == NOT_STARTED:
        return Outcome(rc=NOT_STARTED, error="not started")
    if out.rc == 0 and not finished(cell_dir):
        out.rc, out.error = 1, "train_agent exited 0 but the folder holds no final evaluation"
    out.files = {name: _read_json(cell_dir / name) for name in RESULT_FILES}
    out.wall_s = time.time() - started
    if log_path.exists():
        tail = log_path.read_text(errors="replace").splitlines()[-8:]
        out.log_tail = "\n".join(tail)
        if out.rc != 0 and not out.error:
            said = [ln for ln in tail if ln.startswith("error:")]
            out.error = f"exit code {out.rc}" + (f": {said[-1][len('error:'):].strip()}" if said else "")
    return out


OnDone = Callable[[CellJob, Outcome], bool]  # returns False to start no more cells


def _failed(exc: BaseException) -> Outcome:
    return Outcome(rc=1, error=f"{type(exc).__name__}: {exc}")


def run_local(jobs: Iterable[CellJob], *, workers: int, on_done: OnDone) -> None:
    """Run jobs `workers` at a time in this machine's subprocesses; Ctrl-C stops them and leaves checkpoints."""
    hooks = Hooks()
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="sweep-cell")
    futures = {pool.submit(execute_job, job, hooks): job for job in jobs}
    try:
        for fut in as_completed(futures):
            try:
                outcome = fut.result()
            except Exception as e:  # noqa: BLE001 - one broken cell must not end the sweep
                outcome = _failed(e)
            if not on_done(futures[fut], outcome):
                hooks.stop.set()  # queued cells return "not started"; running ones finish
    except BaseException:
        hooks.terminate_all()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def run_ray(jobs: Iterable[CellJob], *, address: str | None, cpus: float, gpus: float, on_done: OnDone) -> None:
    """One Ray task per cell with `cpus` CPUs and `gpus` GPUs; uses the Ray session already started in this process,
    else connects to `address` (`auto` = the cluster `ray start` made on this machine, or $RAY_ADDRESS)."""
    try:
        import ray
    except ImportError:
        raise UserInputError("the ray executor needs ray: pip install 'decision_minrnn[sweep]'") from None
    if not ray.is_initialized():
        ray.init(address=address or os.environ.get("RAY_ADDRESS") or "auto", log_to_driver=False)
    remote = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=2)(execute_job)
    refs = {}
    for job in jobs:
        refs[remote.options(name=f"sweep {job.label}").remote(job)] = job
    pending = list(refs)
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                try:
                    outcome = ray.get(ref)
                except Exception as e:  # noqa: BLE001 - a lost worker or task error is one failed cell
                    outcome = _failed(e)
                if not on_done(refs[ref], outcome):
                    raise _Stop
    except BaseException as e:
        for ref in pending:
            try:
                ray.cancel(ref)  # not force: the task's KeyboardInterrupt stops its train_agent child
            except Exception:  # noqa: BLE001
                pass
        if not isinstance(e, _Stop):
            raise


class _Stop(Exception):
    """The driver asked for no more cells (Ray: the pending tasks are cancelled and resume on the next run)."""
