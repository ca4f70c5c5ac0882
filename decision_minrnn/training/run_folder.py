"""A training run's folder: the lock that keeps two runs out of it, what state it is in, and repairs after a kill.

    <run>/run.json        what the run is (task, seed, config, data source): written before the first step
    <run>/.lock           pid of the live run using the folder
    <run>/checkpoint/     the last checkpoint (`checkpoint.py`), written to `.tmp-checkpoint-*` and renamed
    <run>/model.safetensors, config.json, normalization.json   the finished agent (`agent/folder.py`)
    <run>/metrics.json    the final evaluation and the learning curve: its presence means "finished"

A kill can leave: a folder with `run.json` but no checkpoint (killed before the first one: it restarts from step 0),
`.tmp-*` folders of an interrupted write (removed at the next start), or only `.old-checkpoint-*` (killed between the
two renames of a checkpoint write: it is moved back), or an agent without `metrics.json` (killed during the final
evaluation: `--resume` runs it again).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..errors import UserInputError
from .checkpoint import CHECKPOINT_DIR, has_checkpoint, read_checkpoint_step

RUN_RECORD = "run.json"
METRICS = "metrics.json"
MODEL_FILE = "model.safetensors"


@dataclass(frozen=True)
class RunFolderState:
    """What a run folder holds, after repairs."""

    exists: bool
    record: dict[str, Any] | None  # run.json
    checkpoint_step: int | None
    has_model: bool
    finished: bool  # metrics.json written


def repair(run_dir: Path) -> list[str]:
    """Undo what a kill can leave behind; returns one line per repair made (for the user)."""
    notes: list[str] = []
    if not run_dir.is_dir():
        return notes
    target = run_dir / CHECKPOINT_DIR
    old = sorted(run_dir.glob(f".old-{CHECKPOINT_DIR}-*"))
    if not has_checkpoint(run_dir):
        complete = [p for p in old if (p / "trainer.json").is_file()]
        if complete:
            if target.exists():
                shutil.rmtree(target)
            os.replace(complete[-1], target)
            notes.append(f"recovered the previous checkpoint (step {read_checkpoint_step(run_dir)}) from an "
                         "interrupted checkpoint write")
    for leftover in [*run_dir.glob(".tmp-*"), *run_dir.glob(f".old-{CHECKPOINT_DIR}-*")]:
        shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink(missing_ok=True)
        notes.append(f"removed {leftover.name} (an interrupted write)")
    return notes


def inspect(run_dir: Path) -> RunFolderState:
    """The folder's state (call `repair` first)."""
    if not run_dir.exists():
        return RunFolderState(False, None, None, False, False)
    record_path = run_dir / RUN_RECORD
    record = None
    if record_path.is_file():
        try:
            record = json.loads(record_path.read_text())
        except json.JSONDecodeError:
            record = None
    return RunFolderState(
        exists=True,
        record=record,
        checkpoint_step=read_checkpoint_step(run_dir) if has_checkpoint(run_dir) else None,
        has_model=(run_dir / MODEL_FILE).is_file(),
        finished=(run_dir / METRICS).is_file(),
    )


def differing_fields(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """`name: old -> new` for every key whose value differs (one level deep into dicts)."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{key}.{d}" for d in differing_fields(a, b)]
        else:
            out.append(f"{key}: {a!r} -> {b!r}")
    return out


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
