"""Backbones behind one interface (design.md 1): `make_backbone(name, d_model, n_layers, ...)`.

Only torch is imported here, so the backbones run on machines without gymnasium or MuJoCo.
"""

from __future__ import annotations

import difflib

from torch import nn

from .base import Backbone, BackboneState
from .mamba import Mamba, MambaState
from .mingru import MinGRU, MinGRUState
from .minlstm import MinLSTM, MinLSTMState
from .s4 import S4, S4State
from .transformer import Transformer, TransformerState

BACKBONES: dict[str, type[Backbone]] = {
    "mingru": MinGRU,
    "minlstm": MinLSTM,
    "transformer": Transformer,
    "s4": S4,
    "mamba": Mamba,
}
RECURRENT_SCAN_BACKBONES = ("mingru", "minlstm", "s4", "mamba")


def make_backbone(name: str, d_model: int, n_layers: int, *, expansion: float = 1.0, ff_mult: int = 4,
                  dropout: float = 0.0, **extra) -> Backbone:
    """Build a backbone by name. `ff_mult=0` disables the feed-forward; `extra` holds backbone-specific options
    (`scan_impl` for the scan backbones; `n_heads`, `window` for the Transformer; `d_state`, `d_conv` for S4/Mamba).
    """
    if not isinstance(name, str) or name.lower() not in BACKBONES:
        close = difflib.get_close_matches(str(name).lower(), list(BACKBONES), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown backbone {name!r}; valid: {', '.join(BACKBONES)}{hint}")
    if not isinstance(d_model, int) or d_model <= 0:
        raise ValueError(f"d_model must be a positive int, got {d_model!r}")
    if not isinstance(n_layers, int) or n_layers <= 0:
        raise ValueError(f"n_layers must be a positive int, got {n_layers!r}")
    if ff_mult < 0:
        raise ValueError(f"ff_mult must be >= 0, got {ff_mult}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    cls = BACKBONES[name.lower()]
    try:
        return cls(d_model, n_layers, expansion=expansion, ff_mult=ff_mult, dropout=dropout, **extra)
    except TypeError as e:
        raise ValueError(f"bad option for backbone {name!r}: {e}") from None


def set_scan_impl(module: nn.Module, impl: str | None) -> None:
    """Force a scan implementation (`sequential`, `cpu`, `log`, or None for auto) on every layer of `module`."""
    from ..scan import resolve_impl

    if impl is not None:
        resolve_impl(impl, next(module.parameters()).device)  # validates the name
    for m in module.modules():
        if hasattr(m, "scan_impl"):
            m.scan_impl = impl


__all__ = ["BACKBONES", "Backbone", "BackboneState", "make_backbone", "set_scan_impl", "MinGRUState",
           "MinLSTMState", "TransformerState", "S4State", "MambaState"]
