"""Which data a task trains on: `--data-source {auto,d4rl,minari,regenerated}` (docs/architecture.md, Data).

This choice sits above both `data` (the readers) and `behaviour` (regeneration), so neither imports the other.

`auto` takes the first that exists: the D4RL v2 file in `$D4RL_DATASET_DIR` (downloaded if missing and the network
answers), then a locally installed Minari dataset, then this package's regenerated data. Only absence moves on to the
next source: a file that exists but is corrupt is an error naming it, so a run never trains on other data than the
user put there without saying so.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..behaviour.regenerate import regenerate_dataset, regenerated_dataset_path
from ..behaviour.shipped import behaviour_fingerprint
from ..data.d4rl import DATA_VERSION, read_d4rl_hdf5, regenerated_provenance
from ..data.download import d4rl_file_path, download_d4rl
from ..data.minari_source import minari_available, read_minari
from ..data.trajectories import SOURCES, TrajectoryDataset
from ..errors import DatasetError, RunFailure, UserInputError
from ..tasks import Task, resolve_task

DATA_SOURCES = ("auto", *SOURCES)


def load_dataset(
    task_name: str | Task, data_source: str = "auto", *, verbose: bool = True, download: bool = True
) -> TrajectoryDataset:
    """Resolve the task, pick the source, load and validate the data; print one summary line to stderr if verbose.

    A `-v2` task name means D4RL data only. `download=False` never touches the network.
    """
    task = resolve_task(task_name)
    if data_source not in DATA_SOURCES:
        raise UserInputError(f"unknown data source {data_source!r}; valid: {', '.join(DATA_SOURCES)}")
    if task.strict_d4rl:
        if data_source not in ("auto", "d4rl"):
            raise UserInputError(
                f"task {task.name}-v2 names the D4RL v2 file (the -v2 suffix) but --data-source is {data_source}; "
                f"drop the suffix ({task.name}) or use --data-source d4rl"
            )
        data_source = "d4rl"

    if data_source == "d4rl":
        dataset = _load_d4rl(task, download=download, verbose=verbose)
    elif data_source == "minari":
        dataset = read_minari(task)
    elif data_source == "regenerated":
        dataset = _load_regenerated(task)
    else:
        dataset = _load_auto(task, download=download, verbose=verbose)
    if verbose:
        print(dataset.summary(), file=sys.stderr)
    return dataset


def _load_d4rl(task: Task, *, download: bool, verbose: bool) -> TrajectoryDataset:
    path = d4rl_file_path(task)
    if not path.exists():
        if not download:
            raise DatasetError(f"{path}: file not found (place the D4RL v2 file there, or allow downloading)")
        path = download_d4rl(task, verbose=verbose)
    dataset = read_d4rl_hdf5(path, task)
    if dataset.source != "d4rl":
        raise DatasetError(
            f"{path}: carries the decision_minrnn_regenerated attribute but has a D4RL v2 file name; "
            "regenerated data must not pose as D4RL data (move it out of $D4RL_DATASET_DIR)"
        )
    return dataset


def _load_auto(task: Task, *, download: bool, verbose: bool) -> TrajectoryDataset:
    """The first source that exists; each step passed over is said on stderr (before a possible regeneration)."""

    def note(message: str) -> None:
        if verbose:
            print(f"auto data source: {message}", file=sys.stderr, flush=True)

    path = d4rl_file_path(task)
    if path.exists():
        return _load_d4rl(task, download=False, verbose=verbose)
    if download:
        try:
            return _load_d4rl(task, download=True, verbose=verbose)
        except RunFailure as e:
            note(f"no D4RL file ({e}); trying Minari")
    else:
        note(f"no D4RL file at {path}; trying Minari")
    if minari_available(task):
        return read_minari(task)
    minari_id = task.source.minari_id
    note(
        f"Minari dataset {minari_id} not installed; using regenerated data"
        if minari_id
        else f"Minari has no {task.env.name} {task.quality} dataset; using regenerated data"
    )
    return _load_regenerated(task)


def stale_regenerated(path: Path, task: Task) -> str | None:
    """Why a cached regenerated file must be rebuilt (another data version, or made from behaviour policies other
    than the shipped ones), None when it is current or is not a regenerated file (the reader judges those)."""
    attrs = regenerated_provenance(path)  # None for a missing file too
    if attrs is None:
        return None
    version = int(attrs.get("data_version", 1))
    if version != DATA_VERSION:
        return f"holds regenerated data of version {version}"
    if attrs.get("behaviour_sha256") != behaviour_fingerprint(task.env, task.quality):
        return "was made from other behaviour policies than the shipped ones"
    return None


def _load_regenerated(task: Task) -> TrajectoryDataset:
    """Load this package's regenerated data for the task from the cache, regenerating it first if needed."""
    path = Path(regenerated_dataset_path(task))
    stale = stale_regenerated(path, task)
    if stale is not None:
        print(f"{path} {stale}; rebuilding it (version {DATA_VERSION}, the shipped behaviour policies)",
              file=sys.stderr, flush=True)
        path.unlink()
    if not path.exists():
        path = Path(regenerate_dataset(task, seed=0))
    dataset = read_d4rl_hdf5(path, task)
    if dataset.source != "regenerated":
        raise DatasetError(f"{path}: lacks the decision_minrnn_regenerated provenance attribute; delete and regenerate")
    return dataset
