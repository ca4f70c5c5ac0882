"""DecisionModel (design.md 2): return-conditioned action prediction on any backbone, plus the MLP BC baseline.

Token layouts:
- `interleaved` (Decision Transformer): per step the tokens R_t, s_t, a_t; the action is read at the s_t token.
- `fused`: one token per step built from (R_t, s_t, a_{t-1}); the action is read at that token. A third of the
  tokens, so a third of the backbone work per step, at the price of a different conditioning.
Every token gets the timestep embedding (clamped to `max_timestep - 1`), then a LayerNorm.

Acting token by token (`step_tokens`) runs the same embeddings and the backbone's `step`, so a recorded episode fed
one step at a time gives the actions of the parallel forward over it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .backbones import BACKBONES, Backbone, BackboneState, make_backbone
from .config import TrainConfig

BC_MODEL = "mlp-bc"
MODEL_NAMES = (*BACKBONES, BC_MODEL)


def build_model(cfg: TrainConfig, obs_dim: int, act_dim: int) -> nn.Module:
    """The model a config describes: a DecisionModel on its backbone, or the BC baseline."""
    if cfg.backbone == BC_MODEL:
        return MLPBehaviourCloning(obs_dim, act_dim, hidden=cfg.d_model * 2, n_layers=cfg.n_layers,
                                   dropout=cfg.dropout)
    return DecisionModel(cfg, obs_dim, act_dim)


def backbone_options(cfg: TrainConfig) -> dict[str, Any]:
    """Backbone-specific keyword arguments implied by a config."""
    if cfg.backbone == "transformer":
        window = cfg.attention_window or cfg.tokens_per_step * (cfg.context_len + cfg.burn_in)
        return {"n_heads": cfg.n_heads, "window": window}
    options: dict[str, Any] = {"scan_impl": None if cfg.scan_impl == "auto" else cfg.scan_impl}
    if cfg.backbone in ("s4", "mamba"):
        options["d_state"] = cfg.d_state
    return options


class DecisionModel(nn.Module):
    """Embeddings -> backbone -> tanh action head, for either token layout."""

    def __init__(self, cfg: TrainConfig, obs_dim: int, act_dim: int):
        super().__init__()
        self.cfg, self.obs_dim, self.act_dim = cfg, obs_dim, act_dim
        d = cfg.d_model
        self.embed_timestep = nn.Embedding(cfg.max_timestep, d)
        self.embed_return = nn.Linear(1, d)
        self.embed_state = nn.Linear(obs_dim, d)
        self.embed_action = nn.Linear(act_dim, d)
        self.embed_norm = nn.LayerNorm(d)
        self.embed_dropout = nn.Dropout(cfg.dropout)
        self.backbone: Backbone = make_backbone(cfg.backbone, d, cfg.n_layers, expansion=cfg.expansion,
                                                ff_mult=cfg.ff_mult, dropout=cfg.dropout, **backbone_options(cfg))
        self.action_head = nn.Sequential(nn.Linear(d, act_dim), nn.Tanh())

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
