"""Offline datasets: D4RL v2 files, Minari datasets and regenerated data, each turned into one TrajectoryDataset,
and the sampler that cuts training batches from it."""

from .d4rl import read_d4rl_hdf5, write_d4rl_hdf5
from .download import d4rl_file_path, d4rl_url, download_d4rl
from .minari_source import minari_available, read_minari
from .sampler import CONTEXTS, WindowSampler, returns_to_go
from .trajectories import TrajectoryDataset

__all__ = [
    "CONTEXTS",
    "TrajectoryDataset",
    "WindowSampler",
    "d4rl_file_path",
    "d4rl_url",
    "download_d4rl",
    "minari_available",
    "read_d4rl_hdf5",
    "read_minari",
    "returns_to_go",
    "write_d4rl_hdf5",
]
