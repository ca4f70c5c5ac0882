"""minLSTM (Feng et al., 2024) with normalised gates `f' = f / (f + i)`, `i' = i / (f + i)`.

`f' = sigmoid(-d)` and `i' = sigmoid(d)` with `d = softplus(-k_f) - softplus(-k_i)`, so minLSTM is the minGRU
recurrence with gate logit `d`: one formula serves the parallel and the step path, from any state (the public
implementation that applies `g` to the previous state in one path and not the other cannot happen here).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from .base import Backbone, BackboneState
from .mingru import MinRNNOptions, PositiveRecurrentMixer


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
    options_cls = MinRNNOptions

    def make_mixer(self, d_model: int, options: MinRNNOptions) -> MinLSTMMixer:
        return MinLSTMMixer(d_model, options.expansion, options.scan_impl)
