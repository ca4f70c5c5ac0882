"""The one backbone interface (docs/architecture.md, The law): parallel `forward`, one-token `step`, typed states,
per-row resets, and each backbone's own options.

A backbone is a stack of pre-norm residual blocks `x + mixer(norm(x))` (plus an optional feed-forward) around a
sequence mixer. Mixers differ (minGRU, minLSTM, attention, S4D, Mamba); everything else, state handling included,
lives here once. A mixer implements:

    forward(x, layer_state | None) -> (y, layer_state)     # x (batch, time, width)
    step(x_t, layer_state) -> (y_t, layer_state)            # x_t (batch, width)
    initial_state(batch, device, dtype) -> layer_state      # a tuple of tensors, batch first
    state_fields: tuple[str, ...]                           # names of those tensors
    state_shapes() -> tuple[tuple[int, ...], ...]           # their shapes without the batch dimension
    reference_init() -> None                                # its reference initialisation, in place (default: none)

A backbone class owns its `name`, its options (a frozen dataclass with its own defaults, `options_cls`) and its state
type (`state_cls`); the registry in `__init__.py` lists the classes, so nothing outside a backbone branches on names.
With `init="reference"` (the default option) a backbone is built as usual and then re-initialised in place by
`reset_parameters_reference()` as its reference implementation does; `init="torch-default"` skips that step.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import torch
from torch import Tensor, nn

_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


@dataclass(frozen=True)
class BackboneState:
    """Base of every backbone's state: each field holds one tensor per layer, batch first.

    Subclasses only declare their fields, so a state of another backbone is a different type and is rejected.
    """

    backbone: ClassVar[str] = "?"

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The state's field names, looked up once per class (`dataclasses.fields` is slow at one call per action)."""
        names = _FIELD_NAMES.get(cls)
        if names is None:
            names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
        return names

    def fields(self) -> dict[str, tuple[Tensor, ...]]:
        return {name: getattr(self, name) for name in self.field_names()}

    @property
    def batch_size(self) -> int:
        return getattr(self, self.field_names()[0])[0].shape[0]

    @property
    def n_layers(self) -> int:
        return len(getattr(self, self.field_names()[0]))

    def layer(self, i: int) -> tuple[Tensor, ...]:
        return tuple(getattr(self, name)[i] for name in self.field_names())

    def map(self, fn) -> "BackboneState":
        """A new state with `fn` applied to every tensor (e.g. `lambda t: t.detach()`)."""
        return type(self)(**{k: tuple(fn(t) for t in v) for k, v in self.fields().items()})

    def detach(self) -> "BackboneState":
        return self.map(lambda t: t.detach())

    def to(self, *args, **kwargs) -> "BackboneState":
        return self.map(lambda t: t.to(*args, **kwargs))


def _layers_to_state(cls: type[BackboneState], names: Sequence[str], layers: Sequence[tuple[Tensor, ...]]):
    return cls(**{name: tuple(layer[j] for layer in layers) for j, name in enumerate(names)})


INITS = ("reference", "torch-default")


@dataclass(frozen=True)
class BackboneOptions:
    """Options every backbone has; each backbone subclasses this with its own fields and defaults."""

    ff_mult: int = 4  # feed-forward width = ff_mult * d_model after each mixer; 0 = no feed-forward
    dropout: float = 0.0
    # reference: re-initialise as the backbone's reference implementation (`Backbone.reset_parameters_reference`);
    # torch-default: keep the parameters as constructed (torch's layer defaults; models trained before `init` existed)
    init: str = "reference"

    @classmethod
    def from_config(cls, cfg: Any) -> BackboneOptions:
        """The options named like fields of a model config (`nn.model.ModelConfig`), read from it."""
        return cls(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cls) if hasattr(cfg, f.name)})

    def check(self) -> None:
        if self.ff_mult < 0:
            raise ValueError(f"ff_mult must be >= 0, got {self.ff_mult}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}; got {self.init!r}")


@torch.no_grad()
def gpt2_init_(module: nn.Module, std: float = 0.02) -> None:
    """GPT-2's initialisation, in place, on every Linear, Embedding and LayerNorm in `module`: weights normal(0, std),
    Linear biases 0, LayerNorm weight 1 and bias 0. No 1/sqrt(2 n_layers) scaling of the residual projections.

    Source: kzl/decision-transformer, gym/decision_transformer/models/trajectory_gpt2.py,
    `GPT2PreTrainedModel._init_weights` (the Decision Transformer's GPT-2, `initializer_range` 0.02), and the same
    rule in tinkoff-ai/CORL, algorithms/offline/dt.py, `DecisionTransformer._init_weights`. Neither rescales the
    residual output projections (huggingface's current GPT-2 `_init_weights` does; DT's copy of it does not).
    """
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, mean=0.0, std=std)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            if m.weight is not None:
                nn.init.ones_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class FeedForward(nn.Module):
    """Pre-norm position-wise MLP (mult x width, GELU in GPT-2's tanh form: 4x cheaper than exact GELU on a CPU)."""

    def __init__(self, d_model: int, mult: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.net = nn.Sequential(
            nn.Linear(d_model, mult * d_model), nn.GELU(approximate="tanh"), nn.Linear(mult * d_model, d_model),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        up, act, down, drop = self.net  # called one by one: dropout is skipped when it is a no-op (acting)
        y = down(act(up(self.norm(x))))
        return x + (drop(y) if self.training else y)


class Block(nn.Module):
    """`x + dropout(mixer(norm(x)))`, then the optional feed-forward."""

    def __init__(self, d_model: int, mixer: nn.Module, ff_mult: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.mixer = mixer
        self.dropout = nn.Dropout(dropout)
        self.ff = FeedForward(d_model, ff_mult, dropout) if ff_mult > 0 else None

    def forward(self, x: Tensor, state: tuple[Tensor, ...] | None):
        y, state = self.mixer(self.norm(x), state)
        x = x + (self.dropout(y) if self.training else y)
        return (self.ff(x) if self.ff is not None else x), state

    def step(self, x: Tensor, state: tuple[Tensor, ...]):
        y, state = self.mixer.step(self.norm(x), state)
        x = x + (self.dropout(y) if self.training else y)
        return (self.ff(x) if self.ff is not None else x), state


class Backbone(nn.Module):
    """A stack of blocks around one kind of mixer, with the one backbone interface (docs/architecture.md, The law)."""

    name: ClassVar[str] = "?"
    state_cls: ClassVar[type[BackboneState]] = BackboneState
    options_cls: ClassVar[type[BackboneOptions]] = BackboneOptions

    def __init__(self, d_model: int, n_layers: int, options: BackboneOptions | None = None, **overrides: Any):
        """`options` (default: the backbone's own defaults) with `overrides` by field name (`expansion=2.0`)."""
        super().__init__()
        if not isinstance(d_model, int) or d_model <= 0:
            raise ValueError(f"d_model must be a positive int, got {d_model!r}")
        if not isinstance(n_layers, int) or n_layers <= 0:
            raise ValueError(f"n_layers must be a positive int, got {n_layers!r} (a backbone needs at least one layer)")
        options = self.options_cls() if options is None else options
        if type(options) is not self.options_cls:
            raise TypeError(f"{self.name} takes {self.options_cls.__name__}, got {type(options).__name__}")
        valid = [f.name for f in dataclasses.fields(options)]
        unknown = sorted(set(overrides) - set(valid))
        if unknown:
            raise ValueError(f"unknown option {unknown[0]!r} for backbone {self.name!r}; valid: {', '.join(valid)}")
        self.options = dataclasses.replace(options, **overrides)
        self.options.check()
        self.d_model = d_model
        mixers = [self.make_mixer(d_model, self.options) for _ in range(n_layers)]
        self.layers = nn.ModuleList(Block(d_model, m, self.options.ff_mult, self.options.dropout) for m in mixers)
        self.norm_out = nn.LayerNorm(d_model)
        # Each layer's state shapes without the batch dimension: fixed by the mixers, checked at every step.
        self._state_shapes = [tuple(torch.Size(s) for s in m.state_shapes()) for m in mixers]
        # Everything above is constructed exactly as before `init` existed (torch defaults, same random draws), so
        # init="torch-default" gives the same parameters for the same seed; the reference init re-draws in place.
        if self.options.init == "reference":
            self.reset_parameters_reference()

    def make_mixer(self, d_model: int, options: BackboneOptions) -> Mixer:
        """One layer's sequence mixer (each backbone defines it)."""
        raise NotImplementedError

    @torch.no_grad()
    def reset_parameters_reference(self) -> None:
        """Re-initialise every parameter in place as the backbone's reference implementation does.

        Default: each mixer's `reference_init()`; the blocks' LayerNorms and feed-forwards keep torch's defaults
        (LayerNorm 1/0, Linear kaiming-uniform), which is what the reference implementations of the recurrent
        backbones use. Backbones whose reference says otherwise (Transformer: GPT-2; Mamba: mamba_ssm's residual
        rescaling) override this and name their source.
        """
        for block in self.layers:
            block.mixer.reference_init()

    # ------------------------------------------------------------------------------------------------ interface
    def forward(self, x: Tensor, state: BackboneState | None = None) -> tuple[Tensor, BackboneState]:
        """All of time at once: x (batch, time, d_model) -> y (batch, time, d_model) and the final state."""
        self._check_input(x, 3, "forward")
        if state is not None:
            self._check_state(state, x.shape[0])
        if x.shape[1] == 0:
            if state is None:
                state = self.initial_state(x.shape[0], device=x.device, dtype=x.dtype)
            return x.new_zeros(x.shape), state
        layer_states = []
        for i, block in enumerate(self.layers):
            x, s = block(x, None if state is None else state.layer(i))
            layer_states.append(s)
        return self.norm_out(x), _layers_to_state(self.state_cls, self._fields, layer_states)

    def step(self, x_t: Tensor, state: BackboneState | None = None) -> tuple[Tensor, BackboneState]:
        """One token: x_t (batch, d_model) -> y_t (batch, d_model); cost independent of the past length.

        The state's type, layers, batch and shapes are checked; its values only in `forward` (a per-step value check
        is a reduction per layer, a large share of a single action's cost).
        """
        self._check_input(x_t, 2, "step")
        if state is None:
            state = self.initial_state(x_t.shape[0], device=x_t.device, dtype=x_t.dtype)
        else:
            self._check_state(state, x_t.shape[0], values=False)
        layer_states = []
        for i, block in enumerate(self.layers):
            x_t, s = block.step(x_t, state.layer(i))
            layer_states.append(s)
        return self.norm_out(x_t), _layers_to_state(self.state_cls, self._fields, layer_states)

    def initial_state(self, batch_size: int, device: torch.device | str | None = None,
                      dtype: torch.dtype | None = None) -> BackboneState:
        """The state before any token (zeros, empty caches)."""
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        p = next(self.parameters())
        device = p.device if device is None else torch.device(device)
        dtype = p.dtype if dtype is None else dtype
        layers = [block.mixer.initial_state(batch_size, device, dtype) for block in self.layers]
        return _layers_to_state(self.state_cls, self._fields, layers)

    def reset_state(self, state: BackboneState, mask: Tensor) -> BackboneState:
        """Rows where `mask` (batch,) is true start afresh; the other rows are returned untouched."""
        self._check_state(state, state.batch_size)
        mask = torch.as_tensor(mask, device=next(iter(state.fields().values()))[0].device)
        if mask.dim() != 1 or mask.shape[0] != state.batch_size:
            raise ValueError(f"reset mask must be (batch,) = ({state.batch_size},), got {tuple(mask.shape)}")
        fresh = self.initial_state(state.batch_size, device=mask.device,
                                   dtype=next(iter(state.fields().values()))[0].dtype)
        return self.select_rows(mask, fresh, state)

    def select_rows(self, mask: Tensor, if_true: BackboneState, if_false: BackboneState) -> BackboneState:
        """Row-wise choice between two states of this backbone: `if_true` where `mask` (batch,) is set."""
        mask = mask.bool()

        def pick(new: Tensor, old: Tensor) -> Tensor:
            return torch.where(mask.view(-1, *([1] * (old.dim() - 1))), new.to(old.dtype), old)

        return type(if_false)(**{k: tuple(pick(n, o) for n, o in zip(if_true.fields()[k], v))
                                 for k, v in if_false.fields().items()})

    # ------------------------------------------------------------------------------------------------- checking
    @property
    def _fields(self) -> tuple[str, ...]:
        return self.state_cls.field_names()

    def _check_input(self, x: Tensor, rank: int, where: str) -> None:
        if not isinstance(x, Tensor):
            raise TypeError(f"{self.name}.{where} expects a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"{self.name}.{where} expects a floating-point tensor, got {x.dtype}")
        if x.dim() != rank:
            shape = "(batch, time, d_model)" if rank == 3 else "(batch, d_model)"
            raise ValueError(f"{self.name}.{where} expects x of shape {shape}, got rank {x.dim()} {tuple(x.shape)}")
        if x.shape[-1] != self.d_model:
            raise ValueError(f"{self.name}.{where}: input width {x.shape[-1]} != d_model {self.d_model}")

    def _check_state(self, state: BackboneState, batch_size: int, values: bool = True) -> None:
        if not isinstance(state, self.state_cls):
            got = getattr(type(state), "backbone", type(state).__name__)
            raise TypeError(f"{self.name} backbone expects a {self.state_cls.__name__}, got a state of {got!r} "
                            f"({type(state).__name__})")
        if state.n_layers != len(self.layers):
            raise ValueError(f"{self.name} state has {state.n_layers} layers, the backbone has {len(self.layers)}")
        if state.batch_size != batch_size:
            raise ValueError(f"{self.name} state has batch size {state.batch_size}, the input has {batch_size}")
        for i, (block, shapes) in enumerate(zip(self.layers, self._state_shapes)):
            layer = state.layer(i)
            for name, tensor, shape in zip(self._fields, layer, shapes):
                if tensor.shape[1:] != shape:
                    raise ValueError(f"{self.name} state field {name!r} of layer {i} has shape "
                                     f"{tuple(tensor.shape)}, expected (batch, {', '.join(map(str, shape))})")
            if values:
                block.mixer.check_state_values(layer)


class Mixer(nn.Module):
    """Base for sequence mixers; see the module docstring for the contract."""

    state_fields: ClassVar[tuple[str, ...]] = ()

    def state_shapes(self) -> tuple[tuple[int, ...], ...]:
        raise NotImplementedError

    def check_state_values(self, state: tuple[Tensor, ...]) -> None:
        """Reject states no run of this mixer can produce (e.g. a negative minGRU state). Default: accept."""

    def reference_init(self) -> None:
        """Re-initialise this mixer's parameters in place as its reference implementation does.

        Default: nothing (the reference uses torch's layer defaults, which construction already drew).
        """
