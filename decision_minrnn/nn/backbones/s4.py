"""S4D with a real diagonal state matrix (Gu et al., 2022): convolution mode for `forward`, the recurrence for `step`.

Per channel c and state n: `x_t = exp(dt_c A_cn) x_{t-1} + (exp(dt_c A_cn) - 1) / A_cn * B_cn u_t` (zero-order hold),
`y_t = sum_n C_cn x_t + D_c u_t`. The system is time-invariant, so `forward` (with `scan_impl="auto"`, the default)
computes the kernel `K_j = C exp(dt A)^j B_bar` once and applies it as a causal convolution (a Toeplitz matmul for
short sequences, FFT for long ones); a carried initial state adds its own decaying term and the final state comes in
closed form, so the law holds from any state. A scan named explicitly (`sequential`, `cpu`, `log`) runs the
(batch, T, d_inner * d_state) recurrence through that scan instead: the reference the convolution is tested against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..scan import scan
from .base import Backbone, BackboneOptions, BackboneState, Mixer


DIRECT_MAX_T = 192  # causal convolutions up to this length as one Toeplitz matmul, longer ones by FFT (measured)


def causal_conv(u: Tensor, kernel: Tensor) -> Tensor:
    """`y[:, t, c] = sum_{s<=t} kernel[c, t - s] u[:, s, c]` for u (batch, T, c), kernel (c, T).

    Short sequences (DT's K = 20 steps, 60 tokens) as one batched matmul with the (c, T, T) Toeplitz matrix: a few
    fast ops where FFTs cost more in overhead than they save. Long ones by FFT, zero-padded to 2T (no wrap-around),
    O(T log T) per channel.
    """
    length = u.shape[1]
    if length <= DIRECT_MAX_T:
        # toeplitz[c, t, s] = kernel[c, t - s] (0 for s > t): windows of the left-padded kernel, reversed.
        # An explicit bmm over channels: einsum's choice of layout for this contraction is several times slower.
        toeplitz = F.pad(kernel, (length - 1, 0)).unfold(1, length, 1).flip(-1)
        return torch.bmm(u.permute(2, 0, 1).contiguous(), toeplitz.transpose(1, 2)).permute(1, 2, 0)
    n = 2 * length  # FFTs along the last dimension: ~1.4x faster on the CPU than along the time dimension of u
    spectrum = torch.fft.rfft(u.transpose(1, 2), n=n) * torch.fft.rfft(kernel, n=n)
    return torch.fft.irfft(spectrum, n=n)[..., :length].transpose(1, 2)


POWER_FLOOR = -60.0  # kernel exponents are clamped here: e^-60 ~ 1e-26, far under any tolerance


def _decay_powers(dtA: Tensor, length: int) -> Tensor:
    """`exp(dt A)^k = exp(k dt A)` for k = 0 .. length, (d_inner, d_state, length + 1).

    Long kernels would decay through the subnormal range (below e^-87 in float32), where every CPU op on them is
    several times slower; the exponent is floored at -60 instead (a change below 1e-26 of the kernel's scale).
    """
    x = dtA[..., None] * torch.arange(length + 1, device=dtA.device, dtype=dtA.dtype)
    return torch.exp(x.clamp(min=POWER_FLOOR))


class S4DMixer(Mixer):
    state_fields = ("h",)

    def __init__(self, d_model: int, expansion: float = 1.0, d_state: int = 16, dt_min: float = 1e-3,
                 dt_max: float = 1e-1, scan_impl: str = "auto"):
        super().__init__()
        self.d_inner = max(1, int(round(d_model * expansion)))
        self.d_state = d_state
        self.dt_min, self.dt_max = dt_min, dt_max
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

    @torch.no_grad()
    def reference_init(self) -> None:
        """S4D's initialisation with the S4D-Real A, in place.

        Source: state-spaces/s4, models/s4/s4d.py, `S4DKernel.__init__` and `S4D.__init__` (dt log-uniform in
        [dt_min, dt_max] = [1e-3, 1e-1]; C standard normal; D standard normal, `torch.randn`), with A and B from
        src/models/sequence/kernels/dplr.py, `dplr(init="real", B_init="constant")`: the S4D-Real A = diag(-1, -2,
        ..., -N), i.e. A_n = -(n + 1) (not -(n + 1/2): -1/2 is the real part of S4D-Lin / S4D-Inv), and B = 1.
        s4d.py's C is complex, CN(0, 1) over N/2 conjugate pairs read as 2 Re(.); real states with C ~ N(0, 1) give
        the kernel the same variance, as the repository's real kernel does (kernels/ssm.py, `init_ssm_real`:
        `torch.randn`). The input and output projections keep torch's default, as s4d.py's `output_linear` (a
        kernel-1 Conv1d, the same init as a Linear).
        """
        self.A_log.copy_(torch.log(torch.arange(1, self.d_state + 1, dtype=self.A_log.dtype,
                                                device=self.A_log.device)).expand_as(self.A_log))
        lo, hi = math.log(self.dt_min), math.log(self.dt_max)
        self.log_dt.copy_(torch.rand_like(self.log_dt) * (hi - lo) + lo)
        self.B.fill_(1.0)
        self.C.normal_(0.0, 1.0)
        self.D.normal_(0.0, 1.0)

    def _discretise(self) -> tuple[Tensor, Tensor]:
        """(dt * A, B_bar), both (d_inner, d_state)."""
        A = -torch.exp(self.A_log)
        dtA = torch.exp(self.log_dt)[:, None] * A
        return dtA, torch.expm1(dtA) / A * self.B

    def forward(self, x: Tensor, state):
        u = self.in_proj(x)  # (batch, time, d_inner)
        h0 = None if state is None else state[0]
        if self.scan_impl == "auto":
            y, h_last = self._convolve(u, h0)
        else:
            y, h_last = self._scan(u, h0)
        return self.out_proj(F.gelu(y, approximate="tanh")), (h_last,)

    def _convolve(self, u: Tensor, h0: Tensor | None) -> tuple[Tensor, Tensor]:
        """Convolution mode: `y = K * u + D u` plus the initial state's term, and the final state in closed form.

        With `a = exp(dt A)` the recurrence unrolls to `h_t = sum_{s<=t} a^(t-s) B_bar u_s + a^(t+1) h0`, so
        `y_t = sum_s K_(t-s) u_s + C a^(t+1) h0 + D u_t` with `K_j = sum_n C_n a_n^j B_bar_n`, and the state after
        the last step is `sum_s a^(T-1-s) B_bar u_s + a^T h0`. Nothing of size (batch, T, d_inner, d_state) is
        formed: the work is a (d_inner, T) kernel, one causal convolution and two small contractions over time.
        """
        length = u.shape[1]
        dtA, B_bar = self._discretise()
        powers = _decay_powers(dtA, length)  # (d_inner, d_state, T + 1): a^0 .. a^T
        head = powers[..., :length]
        kernel = torch.matmul((self.C * B_bar)[:, None, :], head).squeeze(1)  # (d_inner, T)
        y = causal_conv(u, kernel) + self.D * u
        h_last = torch.einsum("btc,cnt->bcn", u, head.flip(-1) * B_bar[..., None])
        if h0 is not None:
            y = y + torch.einsum("bcn,cnt->btc", h0 * self.C, powers[..., 1:])
            h_last = h_last + h0 * powers[..., length]
        return y, h_last

    def _scan(self, u: Tensor, h0: Tensor | None) -> tuple[Tensor, Tensor]:
        """Recurrent mode: the (batch, T, d_inner * d_state) recurrence through the scan `scan_impl` names."""
        batch, length, _ = u.shape
        dtA, B_bar = self._discretise()
        b = (u[..., None] * B_bar).reshape(batch, length, -1)
        log_a = dtA.reshape(1, 1, -1).expand(batch, length, -1)
        h0 = None if h0 is None else h0.reshape(batch, -1)
        h = scan(None, b, h0, log_a=log_a, impl=self.scan_impl).reshape(batch, length, self.d_inner, self.d_state)
        return torch.einsum("btcn,cn->btc", h, self.C) + self.D * u, h[:, -1]

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


@dataclass(frozen=True)
class S4Options(BackboneOptions):
    """S4D options: inner width = expansion * d_model, state size per channel, scan implementation."""

    expansion: float = 1.0
    d_state: int = 16
    scan_impl: str = "auto"  # auto = convolution mode; sequential / cpu / log = the recurrence through that scan


class S4(Backbone):
    """Stack of S4D (real diagonal) blocks."""

    name = "s4"
    state_cls = S4State
    options_cls = S4Options

    def make_mixer(self, d_model: int, options: S4Options) -> S4DMixer:
        return S4DMixer(d_model, options.expansion, options.d_state, scan_impl=options.scan_impl)
