"""Training step of the full DecisionModel (embeddings, backbone, action head, masked MSE, backward).

`T` counts timesteps (tokens = 3T interleaved, T fused), Hopper-sized inputs (11-dim states, 3-dim actions), the
model `build_model` makes from a TrainConfig with the given backbone and layout, dropout 0. The Transformer attends
over a band of `window_steps` timesteps (DT's K = 20 by default): at T = 20 that is DT's full context, at longer T
the sliding band the same Transformer acts with.
"""

from __future__ import annotations

from typing import Any

import torch

from ..config import TrainConfig
from ..model import build_model
from ..training import masked_mse
from .workload import Workload, n_params

OBS_DIM, ACT_DIM = 11, 3  # Hopper


def model_config(params: dict[str, Any]) -> TrainConfig:
    """The TrainConfig a benchmark row stands for."""
    layout = params["layout"]
    tokens_per_step = 3 if layout == "interleaved" else 1
    return TrainConfig(backbone=params["backbone"], layout=layout, d_model=int(params["d"]),
                       n_layers=int(params["n_layers"]), dropout=0.0, context_len=int(params["T"]),
                       batch_size=int(params["batch"]), scan_impl=params.get("scan_impl", "auto"),
                       attention_window=tokens_per_step * int(params.get("window_steps", 20)))


def build_model_step(params: dict[str, Any], device: torch.device) -> Workload:
    torch.manual_seed(0)
    cfg = model_config(params)
    model = build_model(cfg, OBS_DIM, ACT_DIM).to(device).train()
    batch, length = cfg.batch_size, cfg.context_len
    returns = torch.randn(batch, length, device=device)
    states = torch.randn(batch, length, OBS_DIM, device=device)
    actions = torch.rand(batch, length, ACT_DIM, device=device) * 2 - 1
    timesteps = torch.arange(length, device=device).expand(batch, length).contiguous()
    mask = torch.ones(batch, length, device=device)

    def call() -> None:
        model.zero_grad(set_to_none=True)
        pred, _ = model(returns, states, actions, timesteps)
        masked_mse(pred, actions, mask).backward()

    return Workload(call, info={"params": n_params(model), "tokens": batch * length * cfg.tokens_per_step,
                                "config": {k: v for k, v in cfg.to_dict().items()
                                           if k in ("backbone", "layout", "d_model", "n_layers", "ff_mult",
                                                    "expansion", "attention_window", "d_state", "scan_impl",
                                                    "n_heads")}})
