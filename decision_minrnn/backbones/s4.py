"""S4D with a real diagonal state matrix (Gu et al., 2022), computed through the scan.

Per channel c and state n: `x_t = exp(dt_c A_cn) x_{t-1} + (exp(dt_c A_cn) - 1) / A_cn * B_cn u_t` (zero-order hold),
`y_t = sum_n C_cn x_t + D_c u_t`. The decay is time-invariant, so the scan receives it as a broadcast view.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..scan import scan
from .base import Backbone, BackboneState, Mixer


class S4DMixer(Mixer):
    state_fields = ("h",)

    def __init__(self, d_model: int, expansion: float = 1.0, d_state: int = 16, dt_min: float = 1e-3,
                 dt_max: float = 1e-1, scan_impl: str | None = None):
        super().__init__()
        self.d_inner = max(1, int(round(d_model * expansion)))
        self.d_state = d_state
        self.scan_impl = scan_impl
        self.in_proj = nn.Linear(d_model, self.d_inner)
        # S4D-Real initialisation: A_n = -(n + 1); dt log-uniform in [dt_min, dt_max].
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(self.d_inner, 1))
        self.log_dt = nn.Parameter(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        self.B = nn.Parameter(torch.ones(self.d_inner, d_state))
        self.C = nn.Parameter(torch.randn(self.d_inner, d_state) / math.sqrt(d_state))
        self.D = nn.Parameter(torch.ones(self.d_inner))
        self.out_proj = nn.Linear(self.d_inner, d_model)

    def state_shapes(self):
        return ((self.d_inner, self.d_state),)

    def initial_state(self, batch_size: int, device, dtype):
        return (torch.zeros(batch_size, self.d_inner, self.d_state, device=device, dtype=dtype),)

    def _discretise(self) -> tuple[Tensor, Tensor]:
        """(dt * A, B_bar), both (d_inner, d_state)."""
        A = -torch.exp(self.A_log)
        dtA = torch.exp(self.log_dt)[:, None] * A
        return dtA, torch.expm1(dtA) / A * self.B

    def forward(self, x: Tensor, state):
        u = self.in_proj(x)  # (batch, time, d_inner)
        batch, length, _ = u.shape
        dtA, B_bar = self._discretise()
        b = (u[..., None] * B_bar).reshape(batch, length, -1)
        log_a = dtA.reshape(1, 1, -1).expand(batch, length, -1)
        h0 = None if state is None else state[0].reshape(batch, -1)
        h = scan(None, b, h0, log_a=log_a, impl=self.scan_impl).reshape(batch, length, self.d_inner, self.d_state)
        y = torch.einsum("btcn,cn->btc", h, self.C) + self.D * u
        return self.out_proj(F.gelu(y, approximate="tanh")), (h[:, -1],)

    def step(self, x_t: Tensor, state):
        u = self.in_proj(x_t)
        dtA, B_bar = self._discretise()
        h = torch.exp(dtA) * state[0] + u[..., None] * B_bar
        y = torch.einsum("bcn,cn->bc", h, self.C) + self.D * u
        return self.out_proj(F.gelu(y, approximate="tanh")), (h,)


@dataclass(frozen=True)
class S4State(BackboneState):
    backbone = "s4"
    h: tuple[Tensor, ...]


class S4(Backbone):
    """Stack of S4D (real diagonal) blocks."""

    name = "s4"
    state_cls = S4State

    def __init__(self, d_model: int, n_layers: int, *, expansion: float = 1.0, ff_mult: int = 4,
                 dropout: float = 0.0, d_state: int = 16, scan_impl: str | None = None):
        super().__init__(d_model, [S4DMixer(d_model, expansion, d_state, scan_impl=scan_impl)
                                   for _ in range(n_layers)], ff_mult=ff_mult, dropout=dropout)
