"""Minari datasets (the maintained successor of D4RL) read through the `minari` API into a TrajectoryDataset.

Minari's MuJoCo datasets were recorded on gymnasium v5 with other policies than D4RL's and carry their own reference
returns, so their scores are labelled "Minari-normalized" and never reported as comparable with D4RL v2 numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError
from ..tasks import Task, resolve_task
from .trajectories import TrajectoryDataset, plain_value


def minari_dataset_id(task: str | Task) -> str | None:
    """The task's Minari id (`mujoco/hopper/medium-v0`), or None where Minari has no such quality."""
    return resolve_task(task).source.minari_id


def minari_local_path(dataset_id: str) -> Path:
    """Where minari keeps `dataset_id` under `$MINARI_DATASETS_PATH` (the folder holding `data/`)."""
    from minari.storage import get_dataset_path

    return Path(get_dataset_path(dataset_id))


def minari_available(task: str | Task) -> bool:
    """Whether the task's Minari dataset is installed locally (minari's own test: its `data/` folder exists)."""
    dataset_id = minari_dataset_id(task)
    return dataset_id is not None and (minari_local_path(dataset_id) / "data").exists()


def read_minari(task: str | Task) -> TrajectoryDataset:
    """Load the task's locally installed Minari dataset (never downloads).

    Minari stores one more observation than rewards per episode (the reset observation first, the final one last);
    the final observation is dropped so rows are (s_t, a_t, r_t) like D4RL.
    """
    import minari

    task = resolve_task(task)
    dataset_id = task.source.minari_id
    if dataset_id is None:
        raise DatasetError(
            f"Minari has no dataset for {task.name}; use --data-source d4rl or regenerated for this quality"
        )
    where = str(minari_local_path(dataset_id))
    if not minari_available(task):
        raise DatasetError(
            f"Minari dataset {dataset_id} is not installed in {where} ($MINARI_DATASETS_PATH); "
            f"get it with `minari download {dataset_id}`"
        )

    def fail(problem: str) -> None:
        raise DatasetError(f"{where}: Minari dataset {dataset_id}: {problem}")

    obs, acts, rews, terminated, truncated, starts = [], [], [], [], [], [0]
    try:
        dataset = minari.load_dataset(dataset_id, download=False)
        metadata = dict(dataset.storage.metadata)
        for episode in dataset.iterate_episodes():
            n = len(episode.rewards)
            if n == 0:
                continue
            o, a = episode.observations, episode.actions
            if not isinstance(o, np.ndarray) or not isinstance(a, np.ndarray):
                fail("observations/actions are not plain arrays (dict or tuple spaces are not supported)")
            if len(o) != n + 1 or len(a) != n:
                fail(f"episode {episode.id}: {len(o)} observations and {len(a)} actions for {n} rewards")
            obs.append(o[:-1].reshape(n, -1))
            acts.append(a.reshape(n, -1))
            rews.append(np.asarray(episode.rewards).reshape(n))
            terminated.append(bool(episode.terminations[-1]))
            truncated.append(bool(episode.truncations[-1]))
            starts.append(starts[-1] + n)
    except DatasetError:
        raise
    except Exception as e:  # noqa: BLE001 - minari/h5py raise many types for a damaged dataset; name it in one line
        fail(f"cannot read ({type(e).__name__}: {' '.join(str(e).split())})")
    if not rews:
        fail("the dataset has no transitions")

    ref_min, ref_max = metadata.get("ref_min_score"), metadata.get("ref_max_score")
    has_refs = ref_min is not None and ref_max is not None
    provenance: dict[str, Any] = {
        "dataset_id": dataset_id,
        "ref_min_score": plain_value(ref_min),
        "ref_max_score": plain_value(ref_max),
        "minari_version": plain_value(metadata.get("minari_version")),
        "algorithm_name": plain_value(metadata.get("algorithm_name")),
        "env_spec": plain_value(metadata.get("env_spec")),
        "references": "the dataset's own ref_min_score/ref_max_score" if has_refs
        else "none in the dataset: D4RL v2 references applied to Minari data",
    }
    return TrajectoryDataset(
        observations=np.concatenate(obs).astype(np.float32, copy=False),
        actions=np.concatenate(acts).astype(np.float32, copy=False),
        rewards=np.concatenate(rews).astype(np.float32, copy=False),
        episode_starts=np.asarray(starts, dtype=np.int64),
        terminated=np.asarray(terminated, dtype=bool),
        truncated=np.asarray(truncated, dtype=bool),
        task=task,
        source="minari",
        location=where,
        comparable_with_d4rl=False,
        score_label="Minari-normalized" if has_refs else "D4RL-normalized",
        provenance=provenance,
    ).validate()

