"""Tiny random-weight agent folders for tests: any backbone and layout, written with `save_agent`, no training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from decision_minrnn.agent.folder import AgentMeta, save_agent
from decision_minrnn.training.config import TrainConfig
from decision_minrnn.nn.model import build_model

HOPPER_OBS, HOPPER_ACT = 11, 3


def make_meta(backbone: str = "mingru", layout: str = "interleaved", *, seed: int = 0, data: dict | None = None,
              task: str = "hopper-medium", env_id: str = "Hopper-v5", obs_dim: int = HOPPER_OBS,
              act_dim: int = HOPPER_ACT, **config: Any) -> AgentMeta:
    """Metadata of a small hopper agent; `config` overrides TrainConfig fields (d 16, 2 layers, K 5, no dropout).

    Random-weight agents use torch's default init (`init="torch-default"`): the weights the behaviour tests were
    written with, whose actions are large and varied enough to end episodes at different steps (the reference init's
    action head, normal(0, 0.02), gives near-zero actions).
    """
    fields = dict(backbone=backbone, layout=layout, d_model=16, n_layers=2, context_len=5, dropout=0.0, d_state=4,
                  n_heads=2, init="torch-default")
    fields.update(config)
    rng = np.random.default_rng(seed)
    return AgentMeta(
        config=TrainConfig(**fields),
        task=task,
        env_id=env_id,
        obs_dim=obs_dim,
        act_dim=act_dim,
        seed=seed,
        state_mean=rng.normal(0.0, 0.1, obs_dim).astype(np.float32),
        state_std=rng.uniform(0.5, 1.5, obs_dim).astype(np.float32),
        return_scale=1000.0,
        data=data if data is not None else {
            "source": "regenerated", "location": "tests/agent_factory.py", "comparable_with_d4rl": False,
            "score_label": "D4RL-normalized",
        },
        extra={"versions": {"test": True}},
    )


def make_model(meta: AgentMeta, seed: int = 0) -> torch.nn.Module:
    """The model a meta describes, with seeded random weights (float32, eval mode)."""
    torch.manual_seed(seed)
    return build_model(meta.config.model_config(), meta.obs_dim, meta.act_dim).eval()


def make_agent(folder: str | Path, backbone: str = "mingru", layout: str = "interleaved", *, seed: int = 0,
               **kwargs: Any) -> Path:
    """Write a random-weight agent folder and return its path."""
    meta = make_meta(backbone, layout, seed=seed, **kwargs)
    save_agent(folder, make_model(meta, seed), meta)
    return Path(folder)
