"""minGRU (Feng et al., 2024): gates from the input alone, so `h_t = (1 - z_t) h_{t-1} + z_t g(k_h)` is a scan.

The positive-recurrence machinery here is shared with minLSTM, which is the same recurrence with another gate logit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..scan import gated_scan, gated_step
from .base import Backbone, BackboneOptions, BackboneState, Mixer


class PositiveRecurrentMixer(Mixer):
    """Shared body of minGRU / minLSTM: input projection -> gated positive scan -> output projection."""

    state_fields = ("h",)
    n_gates = 1

    def __init__(self, d_model: int, expansion: float = 1.0, scan_impl: str = "auto"):
        super().__init__()
        self.d_inner = max(1, int(round(d_model * expansion)))
        self.scan_impl = scan_impl
        self.in_proj = nn.Linear(d_model, (1 + self.n_gates) * self.d_inner, bias=False)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False) if self.d_inner != d_model else nn.Identity()

    def state_shapes(self):
        return ((self.d_inner,),)

    def check_state_values(self, state):
        (h,) = state
        if bool((h < 0).any()):
            raise ValueError(f"{type(self).__name__} state must be >= 0 (h_t is a convex mix of positive values "
                             f"starting from 0); got a negative entry: is this a state of another model?")

    def initial_state(self, batch_size: int, device, dtype):
        return (torch.zeros(batch_size, self.d_inner, device=device, dtype=dtype),)

    def reference_init(self) -> None:
        """The reference initialisation of minGRU / minLSTM is torch's default: nothing is re-drawn.

        Source: lucidrains/minGRU-pytorch, minGRU_pytorch/minGRU.py `minGRU.__init__` and minGRU_pytorch/minLSTM.py
        `minLSTM.__init__`: bias-free `Linear` input and output projections at torch's default init (kaiming-uniform,
        bound 1/sqrt(fan_in)), the layout used here. The paper's code, BorealisAI/minRNNs, models/minRNNs.py
        `minGRU.__init__` / `minLSTM.__init__`, also leaves its `Linear` layers at torch's default (it adds biases, and
        an optional forget-gate bias offset `forget_bias_init_scale`, which has no counterpart in bias-free layers).
        So `init="reference"` and `init="torch-default"` give the same minGRU / minLSTM backbone, bit for bit.
        """

    def _split(self, x: Tensor) -> tuple[Tensor, ...]:
        """(candidate, gate logit) for minGRU, (candidate, forget logit, input logit) for minLSTM."""
        # split (not slicing): its backward concatenates the gradients instead of zero-filling and copying
        return self.in_proj(x).split(self.d_inner, dim=-1)

    def forward(self, x: Tensor, state):
        c, k, *k_i = self._split(x)
        h = gated_scan(k, c, None if state is None else state[0], impl=self.scan_impl, input_logit=(k_i or [None])[0])
        return self.out_proj(h), (h[:, -1],)

    def step(self, x_t: Tensor, state):
        c, k, *k_i = self._split(x_t)
        h = gated_step(k, c, state[0], input_logit=(k_i or [None])[0])
        return self.out_proj(h), (h,)


class MinGRUMixer(PositiveRecurrentMixer):
    n_gates = 1


@dataclass(frozen=True)
class MinGRUState(BackboneState):
    backbone = "mingru"
    h: tuple[Tensor, ...]


@dataclass(frozen=True)
class MinRNNOptions(BackboneOptions):
    """minGRU / minLSTM options: inner width = expansion * d_model; the scan implementation (`auto`: by device)."""

    expansion: float = 1.0
    scan_impl: str = "auto"


class MinGRU(Backbone):
    """Stack of minGRU blocks."""

    name = "mingru"
    state_cls = MinGRUState
    options_cls = MinRNNOptions

    def make_mixer(self, d_model: int, options: MinRNNOptions) -> MinGRUMixer:
        return MinGRUMixer(d_model, options.expansion, options.scan_impl)
