"""minLSTM (Feng et al., 2024) with normalised gates `f' = f / (f + i)`, `i' = i / (f + i)`.

`f' = sigmoid(-d)` and `i' = sigmoid(d)` with `d = softplus(-k_f) - softplus(-k_i)`, so minLSTM is the minGRU
recurrence with gate logit `d`: one formula serves the parallel and the step path, from any state (the public
implementation that applies `g` to the previous state in one path and not the other cannot happen here).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from .base import Backbone, BackboneState
from .mingru import PositiveRecurrentMixer


class MinLSTMMixer(PositiveRecurrentMixer):
    """Projects to (candidate, forget logit, input logit); the scan forms the normalised gate."""

    n_gates = 2


@dataclass(frozen=True)
class MinLSTMState(BackboneState):
    backbone = "minlstm"
    h: tuple[Tensor, ...]


class MinLSTM(Backbone):
    """Stack of minLSTM blocks."""

    name = "minlstm"
    state_cls = MinLSTMState

    def __init__(self, d_model: int, n_layers: int, *, expansion: float = 1.0, ff_mult: int = 4,
                 dropout: float = 0.0, scan_impl: str | None = None):
        super().__init__(d_model, [MinLSTMMixer(d_model, expansion, scan_impl) for _ in range(n_layers)],
                         ff_mult=ff_mult, dropout=dropout)
