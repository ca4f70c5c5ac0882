"""The D4RL v2 HDF5 layout: writing it (regenerated data, tests) and reading it (reader below)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import DatasetError, UserInputError
from ..io import atomic_path
from ..tasks import Task, resolve_task
from .trajectories import TrajectoryDataset, plain_value


def write_d4rl_hdf5(
    path: str | os.PathLike,
    *,
    observations: np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    terminals: np.ndarray,
    timeouts: np.ndarray | None,
    next_observations: np.ndarray | None = None,
    attrs: Mapping[str, Any] | None = None,
    extra: Mapping[str, np.ndarray] | None = None,
) -> None:
    """Write arrays with D4RL's keys, atomically (temporary file, then rename).

    `attrs` become root attributes (provenance of regenerated data); `extra` maps further keys such as
    `infos/qpos` or `metadata/policy` to arrays.
    """
    import h5py

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("observations", data=observations)
            f.create_dataset("actions", data=actions)
            f.create_dataset("rewards", data=rewards)
            f.create_dataset("terminals", data=np.asarray(terminals, dtype=bool))
            if timeouts is not None:
                f.create_dataset("timeouts", data=np.asarray(timeouts, dtype=bool))
            if next_observations is not None:
                f.create_dataset("next_observations", data=next_observations)
            for key, value in (extra or {}).items():
                f.create_dataset(key, data=value)
            for key, value in (attrs or {}).items():
                f.attrs[key] = value


REGENERATED_ATTR = "decision_minrnn_regenerated"
DATA_VERSION = 2  # of regenerated data: 2 = behaviour levels on target, random from a random-init actor (README)
_REQUIRED = ("observations", "actions", "rewards", "terminals")


def _read_metadata(f: Any) -> dict[str, Any]:
    """Scalar entries of D4RL's `metadata/` group (algorithm, policy return, ...); policy weights are skipped."""
    import h5py

    out: dict[str, Any] = {}
    group = f.get("metadata")
    if not isinstance(group, h5py.Group):
        return out

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset) and obj.size <= 1:
            out[name] = plain_value(obj[()])

    group.visititems(visit)
    return out


def _flags(arr: np.ndarray, name: str, fail: Any) -> np.ndarray:
    """Terminals/timeouts as a (n,) bool array; D4RL stores bools, some files store 0/1 floats."""
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        fail(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        fail(f"{name} has non-numeric dtype {arr.dtype}")
    return arr.astype(bool) if arr.dtype != bool else arr


def _cap_timeouts(terminals: np.ndarray, max_steps: int) -> np.ndarray:
    """Timeouts for files without them: an episode not ended by a terminal ends after `max_steps` steps."""
    n = len(terminals)
    rows = np.arange(n)
    begins = np.zeros(n, dtype=bool)
    begins[0] = True
    begins[1:] = terminals[:-1]
    segment_start = np.maximum.accumulate(np.where(begins, rows, 0))
    return ((rows - segment_start + 1) % max_steps == 0) & ~terminals


def regenerated_provenance(path: str | os.PathLike) -> dict[str, Any] | None:
    """The root attributes of a regenerated file (see `behaviour.regenerate`), None for other or unreadable files."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if not bool(f.attrs.get(REGENERATED_ATTR, False)):
                return None
            return {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
    except OSError:
        return None


def read_d4rl_hdf5(path: str | os.PathLike, task: str | Task) -> TrajectoryDataset:
    """Read a D4RL v2 HDF5 file (or a regenerated one in the same layout) into episodes for `task`.

    Episodes end at `terminals | timeouts`; without `timeouts` (old files) at the env's 1000-step cap. Rows after the
    last end form a trailing unfinished episode, kept and marked truncated. `next_observations`, `infos/` and the
    policy weights in `metadata/` are not read: they are large and the sampler does not need them. Every problem
    raises DatasetError with one line naming the file.
    """
    import h5py

    task = resolve_task(task)
    env = task.env
    path = Path(path)

    def fail(problem: str) -> None:
        raise DatasetError(f"{path}: {problem}")

    if not path.exists():
        fail("file not found")
    if not path.is_file():
        fail("not a file")
    try:
        with h5py.File(path, "r") as f:
            attrs = {k: plain_value(v) for k, v in f.attrs.items()}
            missing = [k for k in _REQUIRED if not isinstance(f.get(k), h5py.Dataset)]
            if missing:
                fail(f"not a D4RL dataset: missing key(s) {', '.join(missing)} (found: {', '.join(sorted(f.keys()))})")
            raw = {k: f[k][()] for k in _REQUIRED}
            has_timeouts = isinstance(f.get("timeouts"), h5py.Dataset)
            if has_timeouts:
                raw["timeouts"] = f["timeouts"][()]
            metadata = _read_metadata(f)
    except OSError as e:
        fail(f"cannot read HDF5 (truncated or corrupt file): {' '.join(str(e).split())}")

    lengths = {k: (v.shape[0] if v.ndim else 0) for k, v in raw.items()}
    if len(set(lengths.values())) != 1:
        fail("mismatched lengths: " + ", ".join(f"{k} {n}" for k, n in lengths.items()))
    n = lengths["observations"]
    if n == 0:
        fail("the dataset is empty (0 transitions)")
    arrays = {}
    for key in ("observations", "actions", "rewards"):
        arr = raw[key]
        if arr.dtype.kind not in "biuf":
            fail(f"{key} has non-numeric dtype {arr.dtype}")
        if key == "rewards" and arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if key == "rewards" and arr.ndim != 1:
            fail(f"rewards must be 1-D, got shape {arr.shape}")
        with np.errstate(over="ignore"):  # values beyond float32 become inf and are reported by validate()
            arrays[key] = np.ascontiguousarray(arr, dtype=np.float32)
    terminals = _flags(raw["terminals"], "terminals", fail)
    if has_timeouts:
        timeouts = _flags(raw["timeouts"], "timeouts", fail)
    else:
        timeouts = _cap_timeouts(terminals, env.max_episode_steps)

    end_rows = np.flatnonzero(terminals | timeouts)
    trailing = len(end_rows) == 0 or end_rows[-1] != n - 1
    bounds = end_rows + 1
    if trailing:
        bounds = np.append(bounds, n)
    episode_starts = np.concatenate([[0], bounds]).astype(np.int64)
    terminated = np.append(terminals[end_rows], False) if trailing else terminals[end_rows]
    truncated = np.append(timeouts[end_rows], True) if trailing else timeouts[end_rows]

    regenerated = bool(attrs.get(REGENERATED_ATTR, False))
    if regenerated:
        claimed = attrs.get("task")
        if claimed is None:
            fail(f"regenerated file without a 'task' provenance attribute; regenerate it for {task.name}")
        try:
            claimed_name = resolve_task(str(claimed)).name
        except UserInputError:
            claimed_name = str(claimed)
        if claimed_name != task.name:
            fail(f"regenerated for task {claimed!r}, not for {task.name!r}")
        version = int(attrs.get("data_version", 1))
        if version != DATA_VERSION:
            fail(f"regenerated data of version {version}; this package reads version {DATA_VERSION}: delete the file "
                 f"and rebuild it with `collect_dataset {task.name}` (train_agent also rebuilds a cached one)")
        claimed_env = attrs.get("env_id")
        if claimed_env is not None and str(claimed_env) != env.gym_id:
            fail(f"regenerated on {claimed_env!r}, but {task.name} uses {env.gym_id!r}")
        provenance = dict(attrs)
    else:
        provenance = {"attrs": attrs, "metadata": metadata}
    provenance.update(
        file=str(path),
        file_bytes=path.stat().st_size,
        timeouts="recorded" if has_timeouts else f"inferred at the {env.max_episode_steps}-step cap",
        trailing_unfinished_episode=bool(trailing),
    )
    return TrajectoryDataset(
        observations=arrays["observations"],
        actions=arrays["actions"],
        rewards=arrays["rewards"],
        episode_starts=episode_starts,
        terminated=np.asarray(terminated, dtype=bool),
        truncated=np.asarray(truncated, dtype=bool),
        task=task,
        source="regenerated" if regenerated else "d4rl",
        location=str(path),
        comparable_with_d4rl=not regenerated,
        provenance=provenance,
    ).validate()
