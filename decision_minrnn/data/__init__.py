"""Offline datasets: D4RL v2 files, Minari datasets and regenerated data, all turned into one TrajectoryDataset,
and the sampler that cuts training batches from it."""

from .d4rl import read_d4rl_hdf5, write_d4rl_hdf5
from .download import d4rl_file_path, d4rl_url, download_d4rl
from .minari_source import minari_available, read_minari
from .sampler import CONTEXTS, WindowSampler, returns_to_go
from .sources import DATA_SOURCES, load_dataset
from .trajectories import TrajectoryDataset

__all__ = [
    "CONTEXTS",
    "DATA_SOURCES",
    "TrajectoryDataset",
    "WindowSampler",
    "d4rl_file_path",
    "d4rl_url",
    "download_d4rl",
    "load_dataset",
    "minari_available",
    "read_d4rl_hdf5",
    "read_minari",
    "returns_to_go",
    "write_d4rl_hdf5",
]
