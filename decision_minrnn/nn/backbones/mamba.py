"""Mamba (Gu & Dao, 2023) in pure torch: selective SSM plus a causal depthwise convolution.

Input-dependent `dt`, `B`, `C`; `A = -exp(A_log)`; discretisation `a = exp(dt A)`, `b = dt B x` (as in Mamba), the
same in `forward` and `step`. `forward` runs the chunked selective scan (`scan.selective_scan`, with `scan_impl=
"auto"`, the default, on any device): nothing (batch, T, d_inner, d_state) is held for all of T. A scan named
explicitly (`sequential`, `cpu`, `log`) materialises `a` and `b` for all of T and runs that scan instead: the path
before issue 11, kept as the reference the chunked scan is tested against. The convolution's last `d_conv - 1`
inputs are part of the state, so a sequence split anywhere (inside the conv window too) continues exactly. Parameter
names follow mamba-ssm's `Mamba` module (in_proj, conv1d, x_proj, dt_proj, A_log, D, out_proj) so its CUDA kernels
could load the same weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..scan import scan, selective_scan
from .base import Backbone, BackboneOptions, BackboneState, Mixer


class MambaMixer(Mixer):
    state_fields = ("ssm", "conv")

    def __init__(self, d_model: int, expansion: float = 2.0, d_state: int = 16, d_conv: int = 4,
                 dt_rank: int | None = None, dt_min: float = 1e-3, dt_max: float = 1e-1,
                 scan_impl: str = "auto"):
        super().__init__()
        if d_conv < 1:
            raise ValueError(f"d_conv must be >= 1, got {d_conv}")
        self.d_inner = max(1, int(round(d_model * expansion)))
        self.d_state, self.d_conv = d_state, d_conv
        self.dt_rank = dt_rank or math.ceil(d_model / 16)
        self.dt_min, self.dt_max = dt_min, dt_max
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

    @torch.no_grad()
    def reference_init(self, dt_scale: float = 1.0, dt_init_floor: float = 1e-4) -> None:
        """mamba_ssm's `Mamba` initialisation of the SSM parameters, in place (mamba_ssm's defaults).

        Source: state-spaces/mamba, mamba_ssm/modules/mamba_simple.py, `Mamba.__init__` (dt_init="random"):
        dt_proj.weight uniform(-s, s) with s = dt_rank**-0.5 * dt_scale; dt_proj.bias = softplus^-1(dt), dt
        log-uniform in [dt_min, dt_max] = [1e-3, 1e-1] clamped below at dt_init_floor = 1e-4; A_log = log(1..N) per
        channel (S4D-Real); D = 1. in_proj, conv1d and x_proj keep torch's default, as there. The out_proj
        rescaling of mamba_ssm's `MixerModel` is applied by `Mamba.reset_parameters_reference` (it needs the depth).
        """
        std = self.dt_rank ** -0.5 * dt_scale
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        lo, hi = math.log(self.dt_min), math.log(self.dt_max)
        dt = torch.exp(torch.rand_like(self.dt_proj.bias) * (hi - lo) + lo).clamp(min=dt_init_floor)
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus: softplus(bias) = dt
        self.A_log.copy_(torch.log(torch.arange(1, self.d_state + 1, dtype=self.A_log.dtype,
                                                device=self.A_log.device)).expand_as(self.A_log))
        self.D.fill_(1.0)

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
        if state is None:
            state = self.initial_state(batch, x.device, x.dtype)
        ssm0, conv0 = state
        if self.scan_impl == "auto":
            return self._forward_chunked(x, ssm0, conv0)
        xz = self.in_proj(x)
        xs, z = xz.chunk(2, dim=-1)
        conv_in = torch.cat([conv0, xs.transpose(1, 2)], dim=2)  # (batch, d_inner, K - 1 + T)
        xc = F.silu(F.conv1d(conv_in, self.conv1d.weight, self.conv1d.bias, groups=self.d_inner)).transpose(1, 2)
        dtA, dBx, C = self._ssm_inputs(xc)
        h = scan(None, dBx.reshape(batch, length, -1), ssm0.reshape(batch, -1), log_a=dtA.reshape(batch, length, -1),
                 impl=self.scan_impl).reshape(batch, length, self.d_inner, self.d_state)
        y = torch.einsum("btcn,btn->btc", h, C) + self.D * xc
        y = y * F.silu(z)
        new_conv = conv_in[:, :, conv_in.shape[2] - (self.d_conv - 1):]
        return self.out_proj(y), (h[:, -1], new_conv)

    def _forward_chunked(self, x: Tensor, ssm0: Tensor, conv0: Tensor):
        """The default forward: the selective scan chunk by chunk (`scan.selective_scan`), on any device.

        dt's projection and softplus, the D skip and the gate (silu of in_proj's z half, projected from x) run
        inside the scan's chunks, so neither dt nor z is kept for backward at full width, and nothing (batch, T,
        d_inner, d_state) is ever formed for all of T. in_proj's x half is applied alone and freed once the
        convolution has consumed it.
        """
        d = self.d_inner
        w = self.in_proj.weight
        xs = F.linear(x, w[:d])
        conv_in = torch.cat([conv0, xs.transpose(1, 2)], dim=2)  # (batch, d_inner, K - 1 + T)
        conv = F.conv1d(conv_in, self.conv1d.weight, self.conv1d.bias, groups=d)
        xc = F.silu(conv.transpose(1, 2).contiguous())  # (batch, T, d_inner), time-major for the scan's chunks
        dt_in, B, C = self.x_proj(xc).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        y, h_last = selective_scan(xc, dt_in, -torch.exp(self.A_log), B, C, self.D, x, ssm0, delta_softplus=True,
                                   delta_weight=self.dt_proj.weight, delta_bias=self.dt_proj.bias, z_weight=w[d:])
        new_conv = conv_in[:, :, conv_in.shape[2] - (self.d_conv - 1):]
        return self.out_proj(y), (h_last, new_conv)

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


@dataclass(frozen=True)
class MambaOptions(BackboneOptions):
    """Mamba block options with Mamba's own defaults: expansion 2, no separate feed-forward, conv width 4."""

    ff_mult: int = 0
    expansion: float = 2.0
    d_state: int = 16
    d_conv: int = 4
    dt_rank: int = 0  # 0 = ceil(d_model / 16), as mamba_ssm's "auto"
    scan_impl: str = "auto"  # auto = chunked selective scan; sequential / cpu / log = materialised, through that scan


class Mamba(Backbone):
    """Stack of Mamba blocks (pure torch)."""

    name = "mamba"
    state_cls = MambaState
    options_cls = MambaOptions

    def make_mixer(self, d_model: int, options: MambaOptions) -> MambaMixer:
        return MambaMixer(d_model, options.expansion, options.d_state, options.d_conv, options.dt_rank,
                          scan_impl=options.scan_impl)

    @torch.no_grad()
    def reset_parameters_reference(self) -> None:
        """mamba_ssm's initialisation: each mixer's `reference_init`, then `MixerModel`'s `_init_weights`.

        Source: state-spaces/mamba, mamba_ssm/models/mixer_seq_simple.py, `_init_weights` as `MixerModel.__init__`
        applies it (defaults: rescale_prenorm_residual=True, n_residuals_per_layer = 1, or 2 with an MLP): every
        Linear bias is zeroed except dt_proj's; each residual output projection (the mixer's `out_proj`, and the
        MLP's second layer, `fc2` there, when `ff_mult` > 0) is re-drawn at torch's default (kaiming-uniform, a =
        sqrt(5)) and divided by sqrt(n_residuals_per_layer * n_layers). LayerNorms and conv1d keep torch's default.
        """
        super().reset_parameters_reference()
        n_residuals = 1 if self.options.ff_mult == 0 else 2
        scale = math.sqrt(n_residuals * len(self.layers))
        for block in self.layers:
            out_projs = [block.mixer.out_proj]
            linears = [m for m in block.modules() if isinstance(m, nn.Linear) and m is not block.mixer.dt_proj]
            if block.ff is not None:
                out_projs.append(block.ff.net[2])
            for m in linears:
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            for m in out_projs:
                nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5))
                m.weight.div_(scale)
