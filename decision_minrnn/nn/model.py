"""DecisionModel: return-conditioned action prediction on any backbone, plus the MLP BC baseline.

Token layouts:
- `interleaved` (Decision Transformer): per step the tokens R_t, s_t, a_t; the action is read at the s_t token.
- `fused`: one token per step built from (R_t, s_t, a_{t-1}); the action is read at that token. A third of the
  tokens, so a third of the backbone work per step, at the price of a different conditioning.
Every token gets the timestep embedding (clamped to `max_timestep - 1`), then a LayerNorm.

Acting token by token (`step_tokens`) runs the same embeddings and the backbone's `step`, so a recorded episode fed
one step at a time gives the actions of the parallel forward over it.

Initialisation (`init`): "reference" gives the embeddings and the action head the Decision Transformer's GPT-2 init
and each backbone its own reference init; "torch-default" keeps torch's layer defaults (models trained before the
option existed). The MLP BC baseline is at torch's default either way, as DT's `MLPBCModel` is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .backbones import BACKBONES, Backbone, BackboneState, backbone_class
from .backbones.base import INITS, gpt2_init_

BC_MODEL = "mlp-bc"
MODEL_NAMES = (*BACKBONES, BC_MODEL)
LAYOUTS = ("interleaved", "fused")


@dataclass
class ModelConfig:
    """What the model is built from; `TrainConfig` extends it with the data, optimisation and evaluation fields."""

    backbone: str = "mingru"
    d_model: int = 128
    n_layers: int = 3
    expansion: float = 1.0
    ff_mult: int = 4
    dropout: float = 0.1
    n_heads: int = 1  # Transformer only
    attention_window: int = 0  # Transformer band in tokens; 0 = the whole training context
    d_state: int = 16  # S4 / Mamba
    scan_impl: str = "auto"  # scan backbones: auto | sequential | cpu | log
    layout: str = "interleaved"  # interleaved (R, s, a tokens, as DT) | fused (one token per step)
    max_timestep: int = 1000  # size of the timestep embedding; later steps are clamped
    context_len: int = 20  # timesteps per training sequence
    burn_in: int = 0  # extra earlier steps of a training sequence
    init: str = "reference"  # reference (DT's GPT-2 init + each backbone's reference) | torch-default (older runs)

    @property
    def tokens_per_step(self) -> int:
        return 3 if self.layout == "interleaved" else 1

    @property
    def context_tokens(self) -> int:
        """Tokens of one training sequence (the Transformer's default attention band)."""
        return self.tokens_per_step * (self.context_len + self.burn_in)


def build_model(cfg: ModelConfig, obs_dim: int, act_dim: int) -> nn.Module:
    """The model a config describes: a DecisionModel on its backbone, or the BC baseline.

    The BC baseline has torch's default init for either `init`: that is its reference, kzl/decision-transformer,
    gym/decision_transformer/models/mlp_bc.py, `MLPBCModel.__init__` (plain `nn.Linear` layers, no re-initialisation).
    """
    if cfg.init not in INITS:
        raise ValueError(f"init must be one of {', '.join(INITS)}; got {cfg.init!r}")
    if cfg.backbone == BC_MODEL:
        return MLPBehaviourCloning(obs_dim, act_dim, hidden=cfg.d_model * 2, n_layers=cfg.n_layers,
                                   dropout=cfg.dropout)
    return DecisionModel(cfg, obs_dim, act_dim)


class DecisionModel(nn.Module):
    """Embeddings -> backbone -> tanh action head, for either token layout.

    Everything is constructed as before `init` existed (the same random draws in the same order), so
    `init="torch-default"` reproduces older models for the same seed. With `init="reference"` the backbone has
    re-initialised itself (its own reference, `Backbone.reset_parameters_reference`), and then the embeddings, their
    LayerNorm and the action head get the Decision Transformer's init (`reset_parameters_reference`).
    """

    def __init__(self, cfg: ModelConfig, obs_dim: int, act_dim: int):
        super().__init__()
        self.cfg, self.obs_dim, self.act_dim = cfg, obs_dim, act_dim
        d = cfg.d_model
        self.embed_timestep = nn.Embedding(cfg.max_timestep, d)
        self.embed_return = nn.Linear(1, d)
        self.embed_state = nn.Linear(obs_dim, d)
        self.embed_action = nn.Linear(act_dim, d)
        self.embed_norm = nn.LayerNorm(d)
        self.embed_dropout = nn.Dropout(cfg.dropout)
        cls = backbone_class(cfg.backbone)
        self.backbone: Backbone = cls(d, cfg.n_layers, cls.options_cls.from_config(cfg))
        self.action_head = nn.Sequential(nn.Linear(d, act_dim), nn.Tanh())
        if cfg.init == "reference":
            self.reset_parameters_reference(backbone=False)  # the backbone did its own when it was built

    @torch.no_grad()
    def reset_parameters_reference(self, backbone: bool = True) -> None:
        """The reference init in place: DT's on the embeddings, embedding LayerNorm and action head (the same for
        every backbone: they are DT's layers), then, with `backbone`, the backbone's own reference init.

        Source: tinkoff-ai/CORL, algorithms/offline/dt.py, `DecisionTransformer._init_weights`, which its
        `self.apply` runs over the whole model, embeddings and action head included: Linear and Embedding weights
        normal(0, 0.02), Linear biases 0, LayerNorm 1 / 0 (`gpt2_init_`; the GPT-2 rule of kzl/decision-transformer,
        trajectory_gpt2.py, `GPT2PreTrainedModel._init_weights`, which kzl applies to the GPT-2 layers only, its own
        embeddings keeping torch's defaults). The backbone's parameters are not overwritten with this GPT-2 rule
        unless the backbone is the Transformer, whose own reference it is.
        """
        for module in (self.embed_timestep, self.embed_return, self.embed_state, self.embed_action, self.embed_norm,
                       self.action_head):
            gpt2_init_(module)
        if backbone:
            self.backbone.reset_parameters_reference()

    @property
    def layout(self) -> str:
        return self.cfg.layout

    def _time(self, timesteps: Tensor) -> Tensor:
        return self.embed_timestep(timesteps.clamp(0, self.cfg.max_timestep - 1))

    def _finish(self, tokens: Tensor) -> Tensor:
        tokens = self.embed_norm(tokens)
        return self.embed_dropout(tokens) if self.training else tokens

    def embed(self, returns_to_go: Tensor, states: Tensor, actions: Tensor, timesteps: Tensor,
              prev_actions: Tensor | None = None) -> Tensor:
        """Token sequence (batch, tokens_per_step * L, d) for steps (batch, L, ...)."""
        time = self._time(timesteps)
        r = self.embed_return(returns_to_go.unsqueeze(-1))
        s = self.embed_state(states)
        if self.layout == "fused":
            if prev_actions is None:  # a_{t-1}: the window's own actions shifted right, zero before the first
                prev_actions = torch.cat([torch.zeros_like(actions[:, :1]), actions[:, :-1]], dim=1)
            return self._finish(r + s + self.embed_action(prev_actions) + time)
        a = self.embed_action(actions)
        batch, length, d = s.shape
        return self._finish(torch.stack([r + time, s + time, a + time], dim=2).reshape(batch, 3 * length, d))

    def forward(self, returns_to_go: Tensor, states: Tensor, actions: Tensor, timesteps: Tensor,
                prev_actions: Tensor | None = None, state: BackboneState | None = None,
                ) -> tuple[Tensor, BackboneState]:
        """Predicted actions (batch, L, act_dim) for every step, all of time at once, and the backbone state."""
        tokens = self.embed(returns_to_go, states, actions, timesteps, prev_actions)
        out, state = self.backbone(tokens, state)
        if self.layout == "interleaved":
            out = out[:, 1::3]  # the s_t tokens
        return self.action_head(out), state

    # ------------------------------------------------------------------------------------------------ acting
    def initial_state(self, batch_size: int, device=None) -> BackboneState:
        p = next(self.parameters())
        return self.backbone.initial_state(batch_size, device=device or p.device, dtype=p.dtype)

    def step_tokens(self, returns_to_go: Tensor, states: Tensor, timesteps: Tensor, prev_actions: Tensor,
                    has_prev: Tensor, state: BackboneState) -> tuple[Tensor, BackboneState]:
        """One environment step for a batch of rows: feed the tokens of step t, return a_t and the new state.

        Interleaved: a_{t-1} (only for rows with `has_prev`), then R_t, then s_t, fed as one short parallel `forward`
        from the carried state (equal to stepping them one by one, and about a third of the per-op overhead). Fused:
        the one (R_t, s_t, a_{t-1}) token, with a_{t-1} = 0 where `has_prev` is false (as in training, where the
        first step sees zeros).
        """
        time = self._time(timesteps)
        if self.layout == "fused":
            prev = prev_actions * has_prev[:, None].to(prev_actions.dtype)
            token = self._finish(self.embed_return(returns_to_go[:, None]) + self.embed_state(states)
                                 + self.embed_action(prev) + time)
            out, state = self.backbone.step(token, state)
            return self.action_head(out), state
        r_token = self.embed_return(returns_to_go[:, None]) + time
        s_token = self.embed_state(states) + time
        with_prev = int(has_prev.sum())
        if with_prev < has_prev.shape[0]:  # rows that start an episode see only R_t, s_t
            out_first, new_first = self.backbone(self._finish(torch.stack([r_token, s_token], dim=1)), state)
            if with_prev == 0:
                return self.action_head(out_first[:, -1]), new_first
        a_token = self.embed_action(prev_actions) + self._time(timesteps - 1)  # a_{t-1} belongs to step t - 1
        out, new = self.backbone(self._finish(torch.stack([a_token, r_token, s_token], dim=1)), state)
        out = out[:, -1]
        if with_prev < has_prev.shape[0]:
            out = torch.where(has_prev[:, None], out, out_first[:, -1])
            new = self.backbone.select_rows(has_prev, new, new_first)
        return self.action_head(out), new


class MLPBehaviourCloning(nn.Module):
    """The floor every sequence model must beat: an MLP from the current (normalised) state to the action.

    It has the DecisionModel's call signature and ignores returns, past actions and time.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 256, n_layers: int = 3, dropout: float = 0.1):
        super().__init__()
        layers: list[nn.Module] = []
        width = obs_dim
        for _ in range(n_layers):
            layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
            width = hidden
        self.net = nn.Sequential(*layers, nn.Linear(width, act_dim), nn.Tanh())
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.layout = "fused"

    def forward(self, returns_to_go: Tensor, states: Tensor, actions: Tensor, timesteps: Tensor,
                prev_actions: Tensor | None = None, state: Any = None) -> tuple[Tensor, Any]:
        return self.net(states), None

    def initial_state(self, batch_size: int, device=None) -> None:
        return None

    def step_tokens(self, returns_to_go, states, timesteps, prev_actions, has_prev, state):
        return self.net(states), None
