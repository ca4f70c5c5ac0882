"""Causal self-attention over a sliding window of W tokens: the same band in `forward` and in `step`.

Every token attends to itself and the W - 1 tokens before it. The state is a key/value cache of the last W tokens
in time order (oldest first, newest last) with a per-row count of tokens seen, so rows can be reset on their own.
`forward` prepends the cache to the new keys/values and computes the band blockwise (queries in blocks of W attend
two key blocks), O(T * W) memory at any length; `step` shifts the cache by one token. There is no positional encoding
inside the backbone: the model adds timestep embeddings, and the causal band gives order.

Design note: the first design asked for a ring buffer. A time-ordered cache shifted by one token per step costs the same
O(W * d) copy as a ring buffer's bookkeeping at these sizes, and it lets `forward` use the cache without any gather.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from typing import Any

from .base import Backbone, BackboneOptions, BackboneState, Mixer, gpt2_init_


class WindowAttention(Mixer):
    state_fields = ("keys", "values", "count")
    # From an empty cache with T <= W, one fused causal attention call instead of the band's blocks (same result);
    # False forces the banded path (the reference in tests, the "before" in benchmarks/s4_mamba_speed.py).
    fused_causal = True
    # After a cache, T < W tokens attend it directly (no W-row padded block); False forces the banded path (tests).
    short_path = True

    def __init__(self, d_model: int, n_heads: int, window: int, dropout: float):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not divisible by n_heads {n_heads}")
        if window < 1:
            raise ValueError(f"attention window must be >= 1, got {window}")
        self.n_heads, self.head_dim, self.window = n_heads, d_model // n_heads, window
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.attn_dropout = dropout

    def state_shapes(self):
        return ((self.window, self.n_heads, self.head_dim), (self.window, self.n_heads, self.head_dim), ())

    def check_state_values(self, state):
        count = state[2]
        if count.dtype != torch.int64 or bool((count < 0).any()):
            raise ValueError("transformer state count must be a non-negative int64 tensor")

    def initial_state(self, batch_size: int, device, dtype):
        kv = torch.zeros(batch_size, self.window, self.n_heads, self.head_dim, device=device, dtype=dtype)
        return kv, kv.clone(), torch.zeros(batch_size, dtype=torch.int64, device=device)

    def _qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        shape = (*x.shape[:-1], self.n_heads, self.head_dim)
        return q.reshape(shape), k.reshape(shape), v.reshape(shape)

    def forward(self, x: Tensor, state):
        batch, length, _ = x.shape
        w = self.window
        if self.fused_causal and length <= w and (state is None or not bool(state[2].any())):
            return self._forward_causal(x, state)
        if state is None:
            state = self.initial_state(batch, x.device, x.dtype)
        if self.short_path and length < w:
            return self._forward_short(x, state)
        cache_k, cache_v, count = state
        q, k, v = self._qkv(x)  # (batch, time, heads, head_dim)
        keys = torch.cat([cache_k, k], dim=1)  # (batch, W + T, ...): cache right-aligned before the new tokens
        values = torch.cat([cache_v, v], dim=1)
        n_blocks = -(-length // w)
        pad = n_blocks * w - length
        if pad:
            q = F.pad(q, (0, 0, 0, 0, 0, pad))
            keys = F.pad(keys, (0, 0, 0, 0, 0, pad))
            values = F.pad(values, (0, 0, 0, 0, 0, pad))
        # Query block m (absolute positions W + mW ..) attends key blocks m and m + 1 of the padded key sequence.
        kb = keys.reshape(batch, n_blocks + 1, w, self.n_heads, self.head_dim)
        vb = values.reshape(batch, n_blocks + 1, w, self.n_heads, self.head_dim)
        kb = torch.cat([kb[:, :-1], kb[:, 1:]], dim=2)  # (batch, blocks, 2W, heads, hd)
        vb = torch.cat([vb[:, :-1], vb[:, 1:]], dim=2)
        qb = q.reshape(batch, n_blocks, w, self.n_heads, self.head_dim)
        i = torch.arange(w, device=x.device)
        j = torch.arange(2 * w, device=x.device)
        band = (j[None, :] >= i[:, None] + 1) & (j[None, :] <= i[:, None] + w)  # (W, 2W)
        # Cache slots hold valid tokens only in their last `count` positions; the new tokens are always valid.
        pos = torch.arange(w * (n_blocks + 1), device=x.device).reshape(n_blocks + 1, w)
        pos = torch.cat([pos[:-1], pos[1:]], dim=1)  # absolute key index of each (block, slot)
        valid = pos[None] >= (w - count.clamp(max=w))[:, None, None]  # (batch, blocks, 2W)
        mask = band[None, None] & valid[:, :, None, :]  # (batch, blocks, W, 2W)
        out = F.scaled_dot_product_attention(
            qb.permute(0, 1, 3, 2, 4), kb.permute(0, 1, 3, 2, 4), vb.permute(0, 1, 3, 2, 4),
            attn_mask=mask[:, :, None], dropout_p=self.attn_dropout if self.training else 0.0,
        )  # (batch, blocks, heads, W, hd)
        out = out.permute(0, 1, 3, 2, 4).reshape(batch, n_blocks * w, -1)[:, :length]
        keys = keys[:, : w + length]
        values = values[:, : w + length]
        new_state = (keys[:, -w:], values[:, -w:], count + length)
        return self.out_proj(out), new_state

    def _forward_short(self, x: Tensor, state):
        """T < W tokens after a cache (acting: the interleaved layout's 3 tokens per step): the T queries attend the
        W cached and T new keys directly, instead of padding them to a W-row block of the banded path (20x the work
        at T = 3, W = 60). Query i (absolute position W + i) sees keys i + 1 .. W + i that hold tokens."""
        batch, length, _ = x.shape
        w = self.window
        cache_k, cache_v, count = state
        q, k, v = self._qkv(x)
        keys = torch.cat([cache_k, k], dim=1)  # (batch, W + T, heads, hd)
        values = torch.cat([cache_v, v], dim=1)
        i = torch.arange(length, device=x.device)[:, None]
        j = torch.arange(w + length, device=x.device)[None, :]
        band = (j >= i + 1) & (j <= i + w)  # (T, W + T)
        valid = j >= (w - count.clamp(max=w))[:, None]  # (batch, W + T): cache slots that hold tokens, and the new
        mask = band[None] & valid[:, None, :]
        out = F.scaled_dot_product_attention(
            q.transpose(1, 2), keys.transpose(1, 2), values.transpose(1, 2), attn_mask=mask[:, None],
            dropout_p=self.attn_dropout if self.training else 0.0,
        )  # (batch, heads, T, hd)
        new_state = (keys[:, -w:], values[:, -w:], count + length)
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, -1)), new_state

    def _forward_causal(self, x: Tensor, state):
        """From an empty cache with T <= W the band is plain causal attention: one fused causal SDPA call (no mask
        tensor, no blocks), the training case (a K-step window fits the band). The cache it returns is the one the
        banded path would: the new keys/values right-aligned after zeros."""
        batch, length, _ = x.shape
        q, k, v = self._qkv(x)  # (batch, time, heads, head_dim)
        out = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True,
            dropout_p=self.attn_dropout if self.training else 0.0,
        )  # (batch, heads, T, hd)
        pad = (0, 0, 0, 0, self.window - length, 0)
        if state is None:  # a window-long sequence (the training case) is its own cache: no copy
            count = torch.full((batch,), length, dtype=torch.int64, device=x.device)
            new_state = (k, v, count) if length == self.window else (F.pad(k, pad), F.pad(v, pad), count)
        else:  # an empty cache given explicitly: keep its (zero) slots, whatever their dtype
            cache_k, cache_v, count = state
            new_state = (torch.cat([cache_k[:, length:], k], dim=1), torch.cat([cache_v[:, length:], v], dim=1),
                         count + length)
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, -1)), new_state

    def step(self, x_t: Tensor, state):
        cache_k, cache_v, count = state
        q, k, v = self._qkv(x_t)  # (batch, heads, hd)
        keys = torch.cat([cache_k[:, 1:], k[:, None]], dim=1)  # drop the oldest, append the newest
        values = torch.cat([cache_v[:, 1:], v[:, None]], dim=1)
        count = count + 1
        first_valid = self.window - count.clamp(max=self.window)  # the last `count` slots hold tokens
        valid = torch.arange(self.window, device=x_t.device)[None] >= first_valid[:, None]
        out = F.scaled_dot_product_attention(
            q[:, :, None], keys.transpose(1, 2), values.transpose(1, 2), attn_mask=valid[:, None, None, :]
        )  # (batch, heads, 1, hd)
        return self.out_proj(out.reshape(x_t.shape[0], -1)), (keys, values, count)


@dataclass(frozen=True)
class TransformerState(BackboneState):
    backbone = "transformer"
    keys: tuple[Tensor, ...]
    values: tuple[Tensor, ...]
    count: tuple[Tensor, ...]


@dataclass(frozen=True)
class TransformerOptions(BackboneOptions):
    """Attention heads and the causal band in tokens (`window`)."""

    n_heads: int = 1
    window: int = 60

    @classmethod
    def from_config(cls, cfg: Any) -> TransformerOptions:
        """The band is the config's `attention_window`, or else the whole training context in tokens."""
        return cls(ff_mult=cfg.ff_mult, dropout=cfg.dropout, n_heads=cfg.n_heads,
                   window=cfg.attention_window or cfg.context_tokens, init=getattr(cfg, "init", cls.init))


class Transformer(Backbone):
    """Stack of sliding-window causal attention blocks (`window` tokens, `n_heads` heads)."""

    name = "transformer"
    state_cls = TransformerState
    options_cls = TransformerOptions

    def make_mixer(self, d_model: int, options: TransformerOptions) -> WindowAttention:
        return WindowAttention(d_model, options.n_heads, options.window, options.dropout)

    @torch.no_grad()
    def reset_parameters_reference(self) -> None:
        """The Decision Transformer's GPT-2 initialisation of every layer here (`gpt2_init_`): Linear weights
        normal(0, 0.02) (attention qkv and out_proj, both feed-forward layers), biases 0, LayerNorms 1 / 0.

        Source: kzl/decision-transformer, gym/decision_transformer/models/trajectory_gpt2.py,
        `GPT2PreTrainedModel._init_weights`; tinkoff-ai/CORL, algorithms/offline/dt.py,
        `DecisionTransformer._init_weights`, does the same. The residual output projections (attention out_proj,
        the feed-forward's second Linear) are not scaled by 1/sqrt(2 n_layers): trajectory_gpt2's `_init_weights` has
        no such step (huggingface's current GPT-2 `_init_weights` has; DT's copy of the code does not), nor has
        CORL's, and DT's results are the ones this backbone is compared with.
        """
        gpt2_init_(self)

    @property
    def window(self) -> int:
        return self.options.window
