"""Sweeps: tasks x models x seeds from one spec, each cell a `train_agent` run, one results row per cell, a report.

Layered above `workflows/` and below `cli/`: cells are driven through the console scripts (a stable interface), so
this package imports nothing of training beyond the config checker. Ray and rliable are optional (`.[sweep]`) and
imported only inside the Ray executor and the report's aggregates.
"""

from .spec import ModelSpec, SweepSpec, load_spec, spec_names

__all__ = ["ModelSpec", "SweepSpec", "load_spec", "spec_names"]
