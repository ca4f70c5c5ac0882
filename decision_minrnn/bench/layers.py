"""One-layer training step (forward, masked MSE, backward) for every sequence layer a user might pick.

Variants (`params["model"]`, `params["impl"]`):
- `mingru` / `minlstm` / `s4` / `mamba` with a scan implementation forced by name (`cpu`, `log`, `sequential`), or
  `loop`: the same module, the same weights, stepped token by token with its `step` (the paper's sequential
  baseline: backpropagation through time over a Python loop), or `accelerated`: the minGRU/minLSTM gates fed to
  the `accelerated-scan` CUDA kernel (optional; skipped where it does not import).
- `transformer`: one sliding-window attention layer (`window` tokens).
- `gru` / `lstm`: `torch.nn.GRU` / `torch.nn.LSTM` (d -> d, batch_first), torch's fused kernels (cuDNN on GPU).
All our layers are `make_backbone(name, d, 1, ff_mult=0)`: pre-norm residual block plus the final norm. The input
requires grad, as for a layer inside a network, so every variant also computes dL/dx.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor, nn

from ..backbones import make_backbone, set_scan_impl
from ..backbones.base import Backbone
from ..training import masked_mse
from .workload import SkipConfig, Workload, n_params


def stepwise_forward(backbone: Backbone, x: Tensor) -> Tensor:
    """`backbone(x)[0]` computed one token at a time through every block's `step` (autograd over the loop).

    The blocks are called directly, so the loop pays for the cell and nothing else (no per-step state checks).
    `unbind` gives each step its own view; indexing `x[:, t]` inside the loop would make backward O(T^2).
    """
    batch = x.shape[0]
    states = [blk.mixer.initial_state(batch, x.device, x.dtype) for blk in backbone.layers]
    outputs = []
    for x_t in x.unbind(1):
        for i, blk in enumerate(backbone.layers):
            x_t, states[i] = blk.step(x_t, states[i])
        outputs.append(x_t)
    return backbone.norm_out(torch.stack(outputs, dim=1))


def accelerated_forward(backbone: Backbone) -> Callable[[Tensor], Tensor]:
    """One minGRU/minLSTM block whose recurrence runs in `accelerated_scan.warp.scan` (CUDA, power-of-2 lengths)."""
    try:
        from accelerated_scan.warp import scan as warp_scan  # type: ignore[import-not-found]
    except Exception as e:  # noqa: BLE001 - any import failure (missing package, no toolchain) means "not here"
        raise SkipConfig(f"accelerated-scan is not importable here ({type(e).__name__}: {e})") from None
    from .. import scan as scan_module

    g = getattr(scan_module, "g", None)
    if g is None:  # older layout: the candidate activation lives with the minGRU mixer
        from ..backbones.mingru import g  # type: ignore[attr-defined,no-redef]
    if len(backbone.layers) != 1 or backbone.layers[0].ff is not None:
        raise ValueError("accelerated_forward expects one block without feed-forward")
    block = backbone.layers[0]
    mixer = block.mixer

    def forward(x: Tensor) -> Tensor:
        k, c = mixer._split(block.norm(x))
        a = torch.sigmoid(-k).transpose(1, 2).contiguous()
        b = (torch.sigmoid(k) * g(c)).transpose(1, 2).contiguous()
        h = warp_scan(a, b).transpose(1, 2)
        return backbone.norm_out(x + block.dropout(mixer.out_proj(h)))

    return forward


def layer_module(params: dict[str, Any], device: torch.device) -> tuple[nn.Module, Callable[[Tensor], Tensor]]:
    """The module of a variant and the function that maps x (batch, T, d) to y (batch, T, d)."""
    name, impl, d = params["model"], params.get("impl"), int(params["d"])
    if name in ("gru", "lstm"):
        rnn = (nn.GRU if name == "gru" else nn.LSTM)(d, d, batch_first=True).to(device)
        return rnn, lambda x: rnn(x)[0]
    extra: dict[str, Any] = {"window": int(params["window"])} if name == "transformer" else {}
    backbone = make_backbone(name, d, 1, ff_mult=0, **extra).to(device)
    if impl in ("cpu", "log", "sequential"):
        set_scan_impl(backbone, impl)
    if impl == "loop":
        return backbone, lambda x: stepwise_forward(backbone, x)
    if impl == "accelerated":
        if device.type != "cuda":
            raise SkipConfig("accelerated-scan is a CUDA kernel")
        length = int(params["T"])
        if length < 32 or length & (length - 1):
            raise SkipConfig(f"accelerated-scan needs a power-of-2 length >= 32, got T={length}")
        return backbone, accelerated_forward(backbone)
    return backbone, lambda x: backbone(x)[0]


def build_layer(params: dict[str, Any], device: torch.device) -> Workload:
    """Training step of one layer at batch `batch`, length `T`, width `d`."""
    torch.manual_seed(0)
    batch, length, d = int(params["batch"]), int(params["T"]), int(params["d"])
    module, forward = layer_module(params, device)
    module.train()
    x = torch.randn(batch, length, d, device=device, requires_grad=True)
    target = torch.randn(batch, length, d, device=device)
    mask = torch.ones(batch, length, device=device)

    def call() -> None:
        module.zero_grad(set_to_none=True)
        x.grad = None
        loss = masked_mse(forward(x), target, mask)
        loss.backward()

    return Workload(call, info={"params": n_params(module), "tokens": batch * length})
