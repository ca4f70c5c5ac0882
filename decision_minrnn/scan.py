"""The one scan module: `h_t = a_t * h_{t-1} + b_t` over time, for every recurrent backbone.

Implementations, selectable by name (the law of design.md 1 is tested for each one, forced by name):

- ``sequential``: a plain loop over ``unbind``; obviously right, the reference the others are tested against.
- ``cpu``: one autograd function with a sequential forward (``addcmul`` into a preallocated output) and the
  reverse recurrence ``g_t = dL/dh_t + a_{t+1} g_{t+1}`` as backward. On a CPU a scan cannot run in parallel over
  time, so the win is doing the least work: two passes over memory, no autograd graph per step.
- ``log``: the log-space (Heinsen) scan, chunked. Inside a chunk of ``chunk_size`` steps every output is
  ``exp(A_t + logcumsumexp(log b - A)_t)`` with ``A = cumsum(log a)`` (parallel over time, what a GPU wants);
  chunks are then joined by carrying the state between them. Chunking bounds ``|A|``, which keeps float32 accurate
  at episode length (an unchunked float32 log-space scan drifts to ~5e-4 relative at 3,000 steps). The initial
  state and the carry between chunks enter in value space, so a zero (or negative) state never meets ``log 0``.
  Values ``b`` of any sign (S4D, Mamba) use two log-space scans, over the positive and negative parts.

``impl=None`` (or ``"auto"``) picks ``cpu`` on a CPU and ``log`` elsewhere.
"""

from __future__ import annotations

import torch
from torch import Tensor

SCAN_IMPLS = ("sequential", "cpu", "log")
DEFAULT_CHUNK_SIZE = 64


def resolve_impl(impl: str | None, device: torch.device) -> str:
    """Name of the implementation to use on `device` (`None`/`"auto"`: cpu on a CPU, log elsewhere)."""
    if impl is None or impl == "auto":
        return "cpu" if device.type == "cpu" else "log"
    if impl not in SCAN_IMPLS:
        raise ValueError(f"unknown scan implementation {impl!r}; valid: auto, {', '.join(SCAN_IMPLS)}")
    return impl


def uses_log_space(impl: str | None, device: torch.device) -> bool:
    """Whether `impl` on `device` consumes log-space inputs (so callers can compute `log a`, `log b` directly)."""
    return resolve_impl(impl, device) == "log"


def _check(a: Tensor, b: Tensor, h0: Tensor | None) -> None:
    if b.dim() != 3:
        raise ValueError(f"scan expects b of shape (batch, time, dim), got {tuple(b.shape)}")
    if a.dim() != 3:
        raise ValueError(f"scan expects a of shape (batch, time, dim), got {tuple(a.shape)}")
    if h0 is not None and (h0.dim() != 2 or h0.shape[0] != b.shape[0] or h0.shape[1] != b.shape[2]):
        raise ValueError(f"initial state must be (batch, dim) = ({b.shape[0]}, {b.shape[2]}), got {tuple(h0.shape)}")


def scan(a: Tensor | None, b: Tensor, h0: Tensor | None = None, *, log_a: Tensor | None = None,
         impl: str | None = None, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Tensor:
    """All states of `h_t = a_t * h_{t-1} + b_t`, shape (batch, time, dim); `h0=None` means a zero state.

    `a` is a decay, positive (required by the log implementation); `b` may have any sign. Give `log_a` instead of
    `a` (`a=None`) when it is at hand (S4D, Mamba: `dt * A`): the log implementation then never takes `log` of an
    `a` that underflowed to 0. `a` may be a broadcast (expanded) view, e.g. S4D's time-invariant decay.
    """
    if (a is None) == (log_a is None):
        raise ValueError("scan needs exactly one of a and log_a")
    _check(a if a is not None else log_a, b, h0)
    impl = resolve_impl(impl, b.device)
    if b.shape[1] == 0:
        return b.new_zeros(b.shape)
    if impl != "log":
        a = a if a is not None else log_a.exp()
        return _scan_sequential(a, b, h0) if impl == "sequential" else _scan_cpu(a, b, h0)
    log_a = log_a if log_a is not None else torch.log(a)
    tiny = torch.finfo(b.dtype).tiny
    # Two log-space scans: positive and negative parts of b. Clamping at `tiny` keeps log finite (no NaN gradients
    # through logcumsumexp of an all -inf prefix); its contribution is below tiny * T, far under any tolerance.
    pos = _log_chunked(log_a, torch.log(b.clamp_min(tiny)), h0, chunk_size)
    neg = _log_chunked(log_a, torch.log((-b).clamp_min(tiny)), None, chunk_size)
    return pos - neg


def scan_log(log_a: Tensor, log_b: Tensor, h0: Tensor | None = None, *, impl: str | None = None,
             chunk_size: int = DEFAULT_CHUNK_SIZE) -> Tensor:
    """Same recurrence for positive `b`, given `log a` and `log b` (minGRU/minLSTM compute these stably).

    The log implementation uses them directly (one log-space scan); the others exponentiate first.
    """
    _check(log_a, log_b, h0)
    impl = resolve_impl(impl, log_b.device)
    if log_b.shape[1] == 0:
        return log_b.new_zeros(log_b.shape)
    if impl == "log":
        return _log_chunked(log_a, log_b, h0, chunk_size)
    return scan(log_a.exp(), log_b.exp(), h0, impl=impl)


# --------------------------------------------------------------------------------------------------- sequential
def _scan_sequential(a: Tensor, b: Tensor, h0: Tensor | None) -> Tensor:
    h = torch.zeros_like(b[:, 0]) if h0 is None else h0
    out = []
    for a_t, b_t in zip(a.unbind(1), b.unbind(1)):
        h = a_t * h + b_t
        out.append(h)
    return torch.stack(out, dim=1)


# ---------------------------------------------------------------------------------------------------------- cpu
class _SequentialScan(torch.autograd.Function):
    """Sequential forward, reverse-recurrence backward; saves only `a`, `h` and `h0`."""

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, h0: Tensor) -> Tensor:  # type: ignore[override]
        h = torch.empty(b.shape, dtype=b.dtype, device=b.device)
        prev = h0
        for t in range(b.shape[1]):
            torch.addcmul(b[:, t], a[:, t], prev, out=h[:, t])
            prev = h[:, t]
        ctx.save_for_backward(a, h, h0)
        return h

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_h: Tensor):  # type: ignore[override]
        a, h, h0 = ctx.saved_tensors
        g = grad_h.clone(memory_format=torch.contiguous_format)
        for t in range(g.shape[1] - 2, -1, -1):
            g[:, t].addcmul_(a[:, t + 1], g[:, t + 1])
        grad_a = grad_h0 = None
        if ctx.needs_input_grad[0]:
            grad_a = torch.empty_like(g)
            torch.mul(g[:, 1:], h[:, :-1], out=grad_a[:, 1:])
            torch.mul(g[:, 0], h0, out=grad_a[:, 0])
        if ctx.needs_input_grad[2]:
            grad_h0 = a[:, 0] * g[:, 0]
        return grad_a, g, grad_h0


def _scan_cpu(a: Tensor, b: Tensor, h0: Tensor | None) -> Tensor:
    if h0 is None:
        h0 = b.new_zeros(b.shape[0], b.shape[2])
    a, b = torch.broadcast_tensors(a, b)
    return _SequentialScan.apply(a, b.contiguous(), h0)


# -------------------------------------------------------------------------------------------- chunked log-space
def _log_chunked(log_a: Tensor, log_b: Tensor, h0: Tensor | None, chunk_size: int) -> Tensor:
    batch, length, dim = log_b.shape
    log_a = log_a.expand(batch, length, dim)
    chunk = min(chunk_size, length)
    n_chunks = -(-length // chunk)
    pad = n_chunks * chunk - length
    if pad:  # trailing padding (a = b = 1) only produces outputs that are cut off again
        log_a = torch.nn.functional.pad(log_a, (0, 0, 0, pad))
        log_b = torch.nn.functional.pad(log_b, (0, 0, 0, pad))
    log_a = log_a.reshape(batch, n_chunks, chunk, dim)
    log_b = log_b.reshape(batch, n_chunks, chunk, dim)
    cum = torch.cumsum(log_a, dim=2)  # A_t within each chunk
    from_zero = torch.exp(cum + torch.logcumsumexp(log_b - cum, dim=2))  # every chunk started from h = 0
    decay = torch.exp(cum)  # prod of a from the chunk start to t
    # Carry the state across chunks (a short sequential scan over n_chunks), then add its decayed contribution.
    starts = []
    carry = h0
    for k in range(n_chunks):
        starts.append(carry)
        end = from_zero[:, k, -1]
        carry = end if carry is None else end + decay[:, k, -1] * carry
    if h0 is None:
        if n_chunks == 1:
            return from_zero.reshape(batch, chunk, dim)[:, :length]
        starts[0] = torch.zeros_like(from_zero[:, 0, 0])
    start = torch.stack(starts, dim=1).unsqueeze(2)  # (batch, n_chunks, 1, dim)
    h = from_zero + decay * start
    return h.reshape(batch, n_chunks * chunk, dim)[:, :length]


# --------------------------------------------------------------------------------- gated positive recurrence
def g(x: Tensor) -> Tensor:
    """`x + 0.5` for x >= 0, `sigmoid(x)` otherwise: continuous, strictly positive (minGRU's candidate activation).

    Written as `sigmoid(min(x, 0)) + max(x, 0)`: the same function without `torch.where`, which is several times
    slower than clamps on the CPU.
    """
    return _g_parts(x)[1]


def log_g(x: Tensor) -> Tensor:
    """`log g(x)`, computed without forming g for negative x."""
    return torch.where(x >= 0, torch.log(torch.relu(x) + 0.5), -torch.nn.functional.softplus(-x))


def normalized_gate_logit(forget_logit: Tensor, input_logit: Tensor) -> Tensor:
    """minLSTM's normalised gates as one logit: `f / (f + i) = sigmoid(-d)`, `d = softplus(-k_f) - softplus(-k_i)`."""
    F = torch.nn.functional
    return F.softplus(-forget_logit) - F.softplus(-input_logit)


def gated_scan(gate_logit: Tensor, candidate: Tensor, h0: Tensor | None = None, *, impl: str | None = None,
               input_logit: Tensor | None = None, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Tensor:
    """`h_t = sigmoid(-k_t) h_{t-1} + sigmoid(k_t) g(c_t)`: the minGRU recurrence, all steps at once.

    With `input_logit`, `gate_logit` is minLSTM's forget logit and `k = normalized_gate_logit(k_f, k_i)`: minLSTM is
    the same recurrence with another gate.
    - ``log``: `log a = -softplus(k)`, `log b = -softplus(-k) + log g(c)` into the chunked log-space scan.
    - ``cpu``: one fused autograd function that walks time in cache-sized chunks, computing the gates, the scan and,
      backward, the gate gradients chunk by chunk while the chunk is in cache; it saves only the output.
    - ``sequential``: the gate values through the plain reference loop (autograd does the rest).
    """
    _check(gate_logit, candidate, h0)
    impl = resolve_impl(impl, candidate.device)
    if candidate.shape[1] == 0:
        return candidate.new_zeros(candidate.shape)
    if impl == "cpu":
        if h0 is None:
            h0 = candidate.new_zeros(candidate.shape[0], candidate.shape[2])
        inputs = (gate_logit, candidate, h0, input_logit)
        if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs):
            return _GatedScan.apply(*inputs)
        return _gated_forward(*inputs)  # nothing to differentiate (acting): skip the autograd function
    k = gate_logit if input_logit is None else normalized_gate_logit(gate_logit, input_logit)
    if impl == "log":
        F = torch.nn.functional
        return _log_chunked(-F.softplus(k), -F.softplus(-k) + log_g(candidate), h0, chunk_size)
    return _scan_sequential(torch.sigmoid(-k), torch.sigmoid(k) * g(candidate), h0)


def gated_step(gate_logit: Tensor, candidate: Tensor, h: Tensor, input_logit: Tensor | None = None) -> Tensor:
    """One step of `gated_scan` (the same formula, one token)."""
    k = gate_logit if input_logit is None else normalized_gate_logit(gate_logit, input_logit)
    return torch.addcmul(torch.sigmoid(k) * g(candidate), torch.sigmoid(-k), h)


_TIME_CHUNK = 16  # steps per cache-resident chunk of the fused CPU path (64 x 16 x 128 floats = 0.5 MB per tensor)


def _g_parts(c: Tensor) -> tuple[Tensor, Tensor]:
    """(sigmoid(min(c, 0)), g(c)) in three cheap passes."""
    s0 = c.clamp(max=0).sigmoid_()
    return s0, s0 + c.clamp(min=0)


def _gated_forward(k: Tensor, c: Tensor, h0: Tensor, k_i: Tensor | None) -> Tensor:
    """The fused kernel's forward: gates per cache-sized chunk, then `addcmul` into a preallocated output."""
    batch, length, dim = c.shape
    h = torch.empty(batch, length, dim, dtype=c.dtype, device=c.device)
    prev = h0
    for t0 in range(0, length, _TIME_CHUNK):
        t1 = min(t0 + _TIME_CHUNK, length)
        kk = k[:, t0:t1] if k_i is None else normalized_gate_logit(k[:, t0:t1], k_i[:, t0:t1])
        z = torch.sigmoid(kk)
        b = _g_parts(c[:, t0:t1])[1].mul_(z)
        a = z.neg_().add_(1.0)
        for i in range(t1 - t0):
            torch.addcmul(b[:, i], a[:, i], prev, out=h[:, t0 + i])
            prev = h[:, t0 + i]
    return h


class _GatedScan(torch.autograd.Function):
    """Fused minGRU/minLSTM recurrence for the CPU: gates, scan and gate gradients chunk by chunk over time.

    `k` is the gate logit, or with `k_i` given minLSTM's forget logit (the normalised gate is formed per chunk).
    """

    @staticmethod
    def forward(ctx, k: Tensor, c: Tensor, h0: Tensor, k_i: Tensor | None) -> Tensor:  # type: ignore[override]
        h = _gated_forward(k, c, h0, k_i)
        ctx.save_for_backward(k, c, h, h0, k_i)
        return h

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_h: Tensor):  # type: ignore[override]
        k, c, h, h0, k_i = ctx.saved_tensors
        batch, length, dim = c.shape
        grad_k = torch.empty(batch, length, dim, dtype=c.dtype, device=c.device)
        grad_c = torch.empty_like(grad_k)
        grad_ki = None if k_i is None else torch.empty_like(grad_k)
        g_next = a_next = None  # dL/dh and decay of the step after the current chunk
        for t0 in reversed(range(0, length, _TIME_CHUNK)):
            t1 = min(t0 + _TIME_CHUNK, length)
            cc = c[:, t0:t1]
            kk = k[:, t0:t1] if k_i is None else normalized_gate_logit(k[:, t0:t1], k_i[:, t0:t1])
            z = torch.sigmoid(kk)
            a = 1.0 - z
            s0, gc = _g_parts(cc)
            gh = grad_h[:, t0:t1].clone(memory_format=torch.contiguous_format)  # becomes dL/dh_t
            for i in reversed(range(t1 - t0)):
                if g_next is not None:
                    gh[:, i].addcmul_(a_next, g_next)
                g_next, a_next = gh[:, i], a[:, i]
            h_prev = torch.cat([(h0 if t0 == 0 else h[:, t0 - 1]).unsqueeze(1), h[:, t0:t1 - 1]], dim=1)
            # dh/dk = z (1 - z) (g(c) - h_prev);  dh/dc = z g'(c), g' = 1 for c >= 0 else g (1 - g)
            torch.mul(gh, z, out=grad_c[:, t0:t1])
            grad_kk = (gc - h_prev).mul_(a).mul_(grad_c[:, t0:t1])
            if k_i is None:
                grad_k[:, t0:t1] = grad_kk
            else:  # d = softplus(-k_f) - softplus(-k_i): dd/dk_f = -sigmoid(-k_f), dd/dk_i = sigmoid(-k_i)
                torch.mul(grad_kk, torch.sigmoid(k[:, t0:t1].neg()).neg_(), out=grad_k[:, t0:t1])
                torch.mul(grad_kk, torch.sigmoid(k_i[:, t0:t1].neg()), out=grad_ki[:, t0:t1])
            # g'(c) = s0 (1 - s0) + 0.75 [c >= 0], with the indicator as floor(clamp(c, -1, 0)) + 1 (no torch.where)
            slope = torch.floor_(cc.clamp(-1.0, 0.0)).add_(1.0).mul_(0.75).addcmul_(s0, 1.0 - s0)
            grad_c[:, t0:t1].mul_(slope)
        grad_h0 = a_next * g_next if ctx.needs_input_grad[2] else None
        return grad_k, grad_c, grad_h0, grad_ki
