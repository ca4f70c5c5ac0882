"""The backbone registry: `make_backbone(name, d_model, n_layers, **options)` and what each backbone is.

Each backbone class owns its name, its options (a frozen dataclass with its own defaults) and its state type, so
`make_backbone("mamba", 64, 2)` is `Mamba(64, 2)`, and callers (the model, the benchmarks, the sweeps) ask this
registry instead of branching on names. Only torch is imported here: the backbones run without gymnasium or MuJoCo.
"""

from __future__ import annotations

import difflib
from typing import Any

from torch import nn

from .base import Backbone, BackboneOptions, BackboneState
from .mamba import Mamba, MambaOptions, MambaState
from .mingru import MinGRU, MinGRUState, MinRNNOptions
from .minlstm import MinLSTM, MinLSTMState
from .s4 import S4, S4Options, S4State
from .transformer import Transformer, TransformerOptions, TransformerState

BACKBONES: dict[str, type[Backbone]] = {cls.name: cls for cls in (MinGRU, MinLSTM, Transformer, S4, Mamba)}


def backbone_class(name: str) -> type[Backbone]:
    """The class registered under `name` (case-insensitive); unknown names list the valid ones."""
    key = name.lower() if isinstance(name, str) else name
    if key not in BACKBONES:
        close = difflib.get_close_matches(str(key), list(BACKBONES), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown backbone {name!r}; valid: {', '.join(BACKBONES)}{hint}")
    return BACKBONES[key]


def scans_over_time(name: str) -> bool:
    """Whether the backbone's parallel forward runs a scan (so `scan_impl` applies to it)."""
    return "scan_impl" in backbone_class(name).options_cls.__dataclass_fields__


def make_backbone(name: str, d_model: int, n_layers: int, options: BackboneOptions | None = None,
                  **overrides: Any) -> Backbone:
    """Build a backbone by name at its own defaults, with `options` and/or `overrides` by field name
    (`ff_mult=0` disables the feed-forward; `scan_impl`, `n_heads`, `window`, `d_state`, ... per backbone)."""
    return backbone_class(name)(d_model, n_layers, options, **overrides)


def set_scan_impl(module: nn.Module, impl: str) -> None:
    """Force a scan implementation (`auto`, `sequential`, `cpu` or `log`) on every scanning layer of `module`."""
    from ..scan import resolve_impl

    resolve_impl(impl, next(module.parameters()).device)  # validates the name
    for m in module.modules():
        if hasattr(m, "scan_impl"):
            m.scan_impl = impl


__all__ = ["BACKBONES", "Backbone", "BackboneOptions", "BackboneState", "backbone_class", "make_backbone",
           "scans_over_time", "set_scan_impl", "MinGRUState", "MinLSTMState", "TransformerState", "S4State",
           "MambaState", "MinRNNOptions", "TransformerOptions", "S4Options", "MambaOptions"]
