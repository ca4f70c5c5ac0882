"""Mamba (Gu & Dao, 2023) in pure torch: selective SSM plus a causal depthwise convolution, through the scan.

Input-dependent `dt`, `B`, `C`; `A = -exp(A_log)`; discretisation `a = exp(dt A)`, `b = dt B x` (as in Mamba), the
same in `forward` and `step`. The convolution's last `d_conv - 1` inputs are part of the state, so a sequence split
anywhere (inside the conv window too) continues exactly. Parameter names follow mamba-ssm's `Mamba` module
(in_proj, conv1d, x_proj, dt_proj, A_log, D, out_proj) so its CUDA kernels could load the same weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..scan import scan
from .base import Backbone, BackboneState, Mixer


class MambaMixer(Mixer):
    state_fields = ("ssm", "conv")

    def __init__(self, d_model: int, expansion: float = 2.0, d_state: int = 16, d_conv: int = 4,
                 dt_rank: int | None = None, dt_min: float = 1e-3, dt_max: float = 1e-1,
                 scan_impl: str | None = None):
        super().__init__()
        if d_conv < 1:
            raise ValueError(f"d_conv must be >= 1, got {d_conv}")
        self.d_inner = max(1, int(round(d_model * expansion)))
        self.d_state, self.d_conv = d_state, d_conv
        self.dt_rank = dt_rank or math.ceil(d_model / 16)
        self.scan_impl = scan_impl
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=False)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, d_conv, groups=self.d_inner)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner)
        dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        with torch.no_grad():  # softplus(bias) = dt at initialisation
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(self.d_inner, 1))
        self.D = nn.Parameter(torch.ones(self.d_inner))
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)

    def state_shapes(self):
        return ((self.d_inner, self.d_state), (self.d_inner, self.d_conv - 1))

    def initial_state(self, batch_size: int, device, dtype):
        return (torch.zeros(batch_size, self.d_inner, self.d_state, device=device, dtype=dtype),
                torch.zeros(batch_size, self.d_inner, self.d_conv - 1, device=device, dtype=dtype))

    def _ssm_inputs(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(dt * A, dt * B * x, C) for conv outputs x (..., d_inner)."""
        dt_in, B, C = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.softplus(self.dt_proj(dt_in))  # (..., d_inner)
        A = -torch.exp(self.A_log)  # (d_inner, d_state)
        dtA = dt[..., None] * A
        dBx = (dt * x)[..., None] * B[..., None, :]
        return dtA, dBx, C

    def forward(self, x: Tensor, state):
        batch, length, _ = x.shape
        xz = self.in_proj(x)
        xs, z = xz.chunk(2, dim=-1)
        if state is None:
            state = self.initial_state(batch, x.device, x.dtype)
        ssm0, conv0 = state
        conv_in = torch.cat([conv0, xs.transpose(1, 2)], dim=2)  # (batch, d_inner, K - 1 + T)
        xc = F.silu(F.conv1d(conv_in, self.conv1d.weight, self.conv1d.bias, groups=self.d_inner)).transpose(1, 2)
        dtA, dBx, C = self._ssm_inputs(xc)
        h = scan(None, dBx.reshape(batch, length, -1), ssm0.reshape(batch, -1), log_a=dtA.reshape(batch, length, -1),
                 impl=self.scan_impl).reshape(batch, length, self.d_inner, self.d_state)
        y = torch.einsum("btcn,btn->btc", h, C) + self.D * xc
        y = y * F.silu(z)
        new_conv = conv_in[:, :, conv_in.shape[2] - (self.d_conv - 1):]
        return self.out_proj(y), (h[:, -1], new_conv)

    def step(self, x_t: Tensor, state):
        ssm, conv = state
        xs, z = self.in_proj(x_t).chunk(2, dim=-1)
        window = torch.cat([conv, xs[..., None]], dim=2)  # (batch, d_inner, K)
        xc = F.silu((window * self.conv1d.weight[:, 0]).sum(-1) + self.conv1d.bias)
        dtA, dBx, C = self._ssm_inputs(xc)
        h = torch.exp(dtA) * ssm + dBx
        y = torch.einsum("bcn,bn->bc", h, C) + self.D * xc
        y = y * F.silu(z)
        return self.out_proj(y), (h, window[:, :, 1:])


@dataclass(frozen=True)
class MambaState(BackboneState):
    backbone = "mamba"
    ssm: tuple[Tensor, ...]
    conv: tuple[Tensor, ...]


class Mamba(Backbone):
    """Stack of Mamba blocks (pure torch)."""

    name = "mamba"
    state_cls = MambaState

    def __init__(self, d_model: int, n_layers: int, *, expansion: float = 2.0, ff_mult: int = 0,
                 dropout: float = 0.0, d_state: int = 16, d_conv: int = 4, dt_rank: int | None = None,
                 scan_impl: str | None = None):
        super().__init__(d_model, [MambaMixer(d_model, expansion, d_state, d_conv, dt_rank, scan_impl=scan_impl)
                                   for _ in range(n_layers)], ff_mult=ff_mult, dropout=dropout)
