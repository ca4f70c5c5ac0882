"""The D4RL v2 HDF5 layout: writing it (regenerated data, tests) and reading it (reader below)."""

from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np

from ..io import atomic_path


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
