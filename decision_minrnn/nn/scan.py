"""The one scan module: `h_t = a_t * h_{t-1} + b_t` over time, for every recurrent backbone.

Implementations, selectable by name (the law of docs/architecture.md is tested for each one, forced by name):

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

``impl="auto"`` (the default) picks ``cpu`` on a CPU and ``log`` elsewhere.

``selective_scan`` is Mamba's input-dependent recurrence with its discretisation and output contraction fused in,
chunk by chunk over time (any device), so its (batch, T, dim, N) intermediates never exist for all of T at once.
"""

from __future__ import annotations

import threading

import torch
from torch import Tensor

SCAN_IMPLS = ("sequential", "cpu", "log")
DEFAULT_CHUNK_SIZE = 64


def resolve_impl(impl: str, device: torch.device) -> str:
    """Name of the implementation to use on `device` (`"auto"`: cpu on a CPU, log elsewhere)."""
    if impl == "auto":
        return "cpu" if device.type == "cpu" else "log"
    if impl not in SCAN_IMPLS:
        raise ValueError(f"unknown scan implementation {impl!r}; valid: auto, {', '.join(SCAN_IMPLS)}")
    return impl


def _check(a: Tensor, b: Tensor, h0: Tensor | None) -> None:
    if b.dim() != 3:
        raise ValueError(f"scan expects b of shape (batch, time, dim), got {tuple(b.shape)}")
    if a.dim() != 3:
        raise ValueError(f"scan expects a of shape (batch, time, dim), got {tuple(a.shape)}")
    if h0 is not None and (h0.dim() != 2 or h0.shape[0] != b.shape[0] or h0.shape[1] != b.shape[2]):
        raise ValueError(f"initial state must be (batch, dim) = ({b.shape[0]}, {b.shape[2]}), got {tuple(h0.shape)}")


def scan(a: Tensor | None, b: Tensor, h0: Tensor | None = None, *, log_a: Tensor | None = None,
         impl: str = "auto", chunk_size: int = DEFAULT_CHUNK_SIZE) -> Tensor:
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


def scan_log(log_a: Tensor, log_b: Tensor, h0: Tensor | None = None, *, impl: str = "auto",
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


def gated_scan(gate_logit: Tensor, candidate: Tensor, h0: Tensor | None = None, *, impl: str = "auto",
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


# ----------------------------------------------------------------------------------- selective scan (Mamba)
SELECTIVE_CHUNK_ELEMENTS = 1 << 23  # default chunk: at most this many elements per (batch, chunk, N, dim) buffer
SELECTIVE_CHUNK_RANGE = (8, 64)  # ... and this many steps


def selective_chunk_size(batch: int, dim: int, n_state: int) -> int:
    """Default steps per chunk: buffers of at most 2^23 elements (32 MB in float32), 8 to 64 steps.

    DT's K = 20 steps at width 64 is one chunk (no recomputation in backward); Mamba's width 256 at batch 64 takes
    32 steps per chunk: the buffers stay bounded at any length while the Python loop over chunks stays short.
    """
    lo, hi = SELECTIVE_CHUNK_RANGE
    return max(lo, min(hi, SELECTIVE_CHUNK_ELEMENTS // max(1, batch * dim * n_state)))


def selective_scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None,
                   z: Tensor | None = None, h0: Tensor | None = None, *, delta_softplus: bool = False,
                   delta_weight: Tensor | None = None, delta_bias: Tensor | None = None,
                   z_weight: Tensor | None = None, chunk_size: int | None = None) -> tuple[Tensor, Tensor]:
    """Mamba's selective SSM over all of time, chunk by chunk: `(y, h_T)`.

    Per channel d and state n: `h_t = exp(dt_t A) h_{t-1} + dt_t B_t u_t`, `y_t = C_t . h_t + D u_t`, then
    `y_t * silu(z_t)` when `z` is given; `dt = softplus(delta)` with `delta_softplus`, else `delta`. With
    `delta_weight` (dim, r) (and optionally `delta_bias` (dim,)), `delta` is the low-rank input (batch, T, r) of
    Mamba's dt projection and `delta_t = delta_weight @ delta_t + delta_bias` is formed chunk by chunk, so the
    full-width `delta` is never stored for backward; likewise with `z_weight` (dim, k), `z` is the input (batch, T,
    k) of the gate's projection and `z_t = z_weight @ z_t` (Mamba's in_proj, whose input is kept anyway).
    Shapes: u (batch, T, dim); delta (batch, T, dim) or (batch, T, r); z (batch, T, dim) or (batch, T, k); A (dim,
    N); B, C (batch, T, N); D (dim,); h0 and h_T (batch, dim, N).

    Why chunks: the discretised inputs and the states are (batch, T, dim, N), N times the activations; here they
    exist for one chunk of `chunk_size` steps at a time (formed, scanned, contracted with C, dropped; default
    `selective_chunk_size`), and only the state at each chunk start is kept. The backward walks the chunks in
    reverse with the reverse recurrence `g_t = dL/dh_t + exp(dt_{t+1} A) g_{t+1}`, recomputing each chunk's states
    from its start state (the last chunk's are kept from the forward, so a sequence of one chunk is never
    recomputed). Sequential inside a chunk, so it runs on any device; the state is laid out (batch, N, dim) inside,
    which keeps every broadcast on a contiguous last dimension.
    """
    if u.dim() != 3:
        raise ValueError(f"selective_scan expects u of shape (batch, time, dim), got {tuple(u.shape)}")
    batch, length, dim = u.shape
    if z_weight is not None and (z is None or z_weight.dim() != 2 or z_weight.shape[0] != dim):
        raise ValueError(f"z_weight must be (dim, k) = ({dim}, k), with z given, got "
                         f"{None if z_weight is None else tuple(z_weight.shape)}")
    z_width = dim if z_weight is None else z_weight.shape[1]
    if z is not None and z.shape != (batch, length, z_width):
        raise ValueError(f"z must be (batch, time, {'dim' if z_weight is None else 'k'}) = "
                         f"{(batch, length, z_width)}, got {tuple(z.shape)}")
    if delta_weight is None and delta_bias is not None:
        raise ValueError("delta_bias needs delta_weight")
    if delta_weight is not None and (delta_weight.dim() != 2 or delta_weight.shape[0] != dim):
        raise ValueError(f"delta_weight must be (dim, rank) = ({dim}, r), got {tuple(delta_weight.shape)}")
    width = dim if delta_weight is None else delta_weight.shape[1]
    if delta.shape != (batch, length, width):
        raise ValueError(f"delta must be (batch, time, {'dim' if delta_weight is None else 'rank'}) = "
                         f"{(batch, length, width)}, got {tuple(delta.shape)}")
    if delta_bias is not None and delta_bias.shape != (dim,):
        raise ValueError(f"delta_bias must be (dim,) = ({dim},), got {tuple(delta_bias.shape)}")
    if A.dim() != 2 or A.shape[0] != dim:
        raise ValueError(f"A must be (dim, N) = ({dim}, N), got {tuple(A.shape)}")
    n_state = A.shape[1]
    for name, t in (("B", B), ("C", C)):
        if t.shape != (batch, length, n_state):
            raise ValueError(f"{name} must be (batch, time, N) = {(batch, length, n_state)}, got {tuple(t.shape)}")
    if h0 is not None and h0.shape != (batch, dim, n_state):
        raise ValueError(f"initial state must be (batch, dim, N) = {(batch, dim, n_state)}, got {tuple(h0.shape)}")
    if chunk_size is None:
        chunk_size = selective_chunk_size(batch, dim, n_state)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if length == 0:
        h_last = u.new_zeros(batch, dim, n_state) if h0 is None else h0
        return u.new_zeros(u.shape), h_last
    inputs = (u, delta, A, B, C, D, z, h0, delta_weight, delta_bias, z_weight)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs):
        return _SelectiveScan.apply(*inputs, delta_softplus, chunk_size)
    y, h_last, _, buffers = _selective_forward(*inputs, delta_softplus, chunk_size, save=False)
    _SCRATCH.give(*buffers)
    return y, h_last


class _Scratch(threading.local):
    """Released chunk buffers of the selective scan, kept per thread for the next call (CPU only).

    Why: a training step needs a few multi-megabyte buffers in every Mamba layer. glibc returns blocks that large
    to the kernel when they are freed, so each call faults its buffers' pages in afresh; on the (virtualised)
    benchmark machine those faults cost about as much as all the arithmetic of a K = 20 step window. Keeping up to
    `limit` bytes of released buffers makes them warm memory. CUDA's caching allocator does this already there.
    """

    limit = 64 * 2 ** 20

    def __init__(self) -> None:
        self.free: list[Tensor] = []

    def take(self, numel: int, like: Tensor) -> Tensor:
        if like.device.type == "cpu":
            inference = torch.is_inference_mode_enabled()  # inference tensors cannot be written outside that mode
            for i, t in enumerate(self.free):
                if t.numel() == numel and t.dtype == like.dtype and t.is_inference() == inference:
                    return self.free.pop(i)
        return like.new_empty(numel)

    def give(self, *buffers: Tensor) -> None:
        self.free.extend(t for t in buffers if t.device.type == "cpu")
        while sum(t.numel() * t.element_size() for t in self.free) > self.limit:
            self.free.pop(0)


_SCRATCH = _Scratch()


def _selective_chunk(u: Tensor, delta: Tensor, A_t: Tensor, B: Tensor, h_start: Tensor, softplus: bool,
                     dA: Tensor, H: Tensor) -> tuple[Tensor, Tensor]:
    """One chunk's `dt` and `dt u`, with `exp(dt A)` written into `dA` and the states into `H` (both (batch, L, N,
    dim) views of buffers reused chunk after chunk). `h_i = dA_i h_{i-1} + dt_i B_i u_i`, one addcmul per step."""
    dt = torch.nn.functional.softplus(delta) if softplus else delta
    du = dt * u
    torch.mul(dt[:, :, None, :], A_t, out=dA).exp_()
    torch.mul(B[..., None], du[:, :, None, :], out=H)
    prev = h_start
    for i in range(dA.shape[1]):
        H[:, i].addcmul_(dA[:, i], prev)
        prev = H[:, i]
    return dt, du


def _chunk_views(buffer: Tensor, batch: int, chunk: int, n_state: int, dim: int, steps: int) -> Tensor:
    """The (batch, steps, N, dim) part of a flat (batch * chunk * N * dim) buffer."""
    return buffer.view(batch, chunk, n_state, dim)[:, :steps]


def _delta_chunk(delta: Tensor, weight: Tensor | None, bias: Tensor | None, t0: int, t1: int) -> Tensor:
    """Steps t0..t1 of `delta` (or of `z`), through its projection when one is given."""
    d = delta[:, t0:t1]
    return d if weight is None else torch.nn.functional.linear(d, weight, bias)


def _selective_forward(u, delta, A, B, C, D, z, h0, delta_weight, delta_bias, z_weight, softplus, chunk, save):
    batch, length, dim = u.shape
    n_state = A.shape[1]
    chunk = min(chunk, length)
    A_t = A.t().contiguous()  # (N, dim)
    h = u.new_zeros(batch, n_state, dim) if h0 is None else h0.transpose(1, 2)
    numel = batch * chunk * n_state * dim
    buffers = (_SCRATCH.take(numel, u), _SCRATCH.take(numel, u))
    starts, ys = [], []
    for t0 in range(0, length, chunk):
        t1 = min(t0 + chunk, length)
        if save:
            starts.append(h)
        dA, H = (_chunk_views(b, batch, chunk, n_state, dim, t1 - t0) for b in buffers)
        delta_c = _delta_chunk(delta, delta_weight, delta_bias, t0, t1)
        _selective_chunk(u[:, t0:t1], delta_c, A_t, B[:, t0:t1], h, softplus, dA, H)
        h = H[:, -1].clone()  # the buffer is overwritten by the next chunk
        y_c = torch.matmul(C[:, t0:t1, None, :], H).squeeze(2)  # (batch, L, dim)
        if D is not None:
            y_c.addcmul_(u[:, t0:t1], D)
        if z is not None:
            y_c.mul_(torch.nn.functional.silu(_delta_chunk(z, z_weight, None, t0, t1)))
        ys.append(y_c)
    y = ys[0] if len(ys) == 1 else torch.cat(ys, dim=1)
    h_last = h.transpose(1, 2).contiguous()
    # The buffers hold the last chunk: the backward starts there without recomputing it.
    return y, h_last, starts, buffers


class _SelectiveScan(torch.autograd.Function):
    """Chunked selective scan: saves the inputs and one state per chunk; backward recomputes chunk by chunk."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, h0, delta_weight, delta_bias, z_weight, softplus, chunk):  # type: ignore
        y, h_last, starts, buffers = _selective_forward(u, delta, A, B, C, D, z, h0, delta_weight, delta_bias,
                                                        z_weight, softplus, chunk, save=True)
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_weight, delta_bias, z_weight)
        ctx.starts, ctx.buffers, ctx.softplus, ctx.chunk = starts, buffers, softplus, min(chunk, u.shape[1])
        ctx.has_h0 = h0 is not None
        return y, h_last

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y, grad_h):  # type: ignore[override]
        F = torch.nn.functional
        u, delta, A, B, C, D, z, weight, bias, z_weight = ctx.saved_tensors
        starts, softplus, chunk = ctx.starts, ctx.softplus, ctx.chunk
        batch, length, dim = u.shape
        n_state = A.shape[1]
        numel = batch * chunk * n_state * dim
        # The forward's buffers hold its last chunk; they go back to the scratch pool at the end, so a second
        # backward through a retained graph takes fresh ones and recomputes every chunk.
        cached = ctx.buffers is not None
        dA_buf, H_buf = ctx.buffers if cached else (_SCRATCH.take(numel, u), _SCRATCH.take(numel, u))
        ctx.buffers = None
        G_buf = _SCRATCH.take(numel, u)
        A_t = A.t().contiguous()
        grad_u = torch.empty_like(u, memory_format=torch.contiguous_format)
        grad_delta = torch.empty(delta.shape, dtype=delta.dtype, device=delta.device)
        grad_B = torch.empty(B.shape, dtype=B.dtype, device=B.device)
        grad_C = torch.empty_like(grad_B)
        grad_z = None if z is None else torch.empty(z.shape, dtype=z.dtype, device=z.device)
        grad_z_weight = None if z_weight is None else torch.zeros_like(z_weight)
        grad_At = torch.zeros_like(A_t)
        grad_D = None if D is None else torch.zeros_like(D)
        grad_weight = None if weight is None else torch.zeros_like(weight)
        grad_bias = None if bias is None else torch.zeros_like(bias)
        carry = None if grad_h is None else grad_h.transpose(1, 2)  # dL/dh at the end of the current chunk
        for k in reversed(range(len(starts))):
            t0 = k * chunk
            t1 = min(t0 + chunk, length)
            L = t1 - t0
            h_start, u_c, B_c, C_c = starts[k], u[:, t0:t1], B[:, t0:t1], C[:, t0:t1]
            dA, H, G = (_chunk_views(b, batch, chunk, n_state, dim, L) for b in (dA_buf, H_buf, G_buf))
            delta_c = _delta_chunk(delta, weight, bias, t0, t1)
            if cached:
                dt = F.softplus(delta_c) if softplus else delta_c
                du = dt * u_c
                cached = False
            else:
                dt, du = _selective_chunk(u_c, delta_c, A_t, B_c, h_start, softplus, dA, H)
            gy = grad_y[:, t0:t1]
            if z is not None:
                z_c = _delta_chunk(z, z_weight, None, t0, t1)
                y_c = torch.matmul(C_c[:, :, None, :], H).squeeze(2)
                if D is not None:
                    y_c.addcmul_(u_c, D)
                grad_zc = torch.ops.aten.silu_backward(gy * y_c, z_c)
                if z_weight is None:
                    grad_z[:, t0:t1] = grad_zc
                else:  # z_c = z[:, t0:t1] @ z_weight.T
                    grad_z[:, t0:t1] = torch.matmul(grad_zc, z_weight)
                    grad_z_weight.addmm_(grad_zc.reshape(-1, dim).t(), z[:, t0:t1].reshape(-1, z.shape[-1]))
                gy = gy * F.silu(z_c)
            if D is not None:
                grad_D += (gy * u_c).sum((0, 1))
            grad_C[:, t0:t1] = torch.matmul(gy[:, :, None, :], H.transpose(-1, -2)).squeeze(2)
            torch.mul(C_c[..., None], gy[:, :, None, :], out=G)  # direct dL/dh_t; becomes g_t below
            if carry is not None:
                G[:, -1] += carry
            for i in range(L - 2, -1, -1):
                G[:, i].addcmul_(dA[:, i + 1], G[:, i + 1])
            carry = dA[:, 0] * G[:, 0]
            gB = torch.matmul(B_c[:, :, None, :], G).squeeze(2)  # sum_n B_n g_n, (batch, L, dim)
            grad_B[:, t0:t1] = torch.matmul(du[:, :, None, :], G.transpose(-1, -2)).squeeze(2)
            # G becomes X = dL/d(dt A) = g_t h_{t-1} exp(dt_t A) in place; H (used up) holds its products with dt, A.
            G[:, 1:].mul_(H[:, :-1])
            G[:, 0].mul_(h_start)
            G.mul_(dA)
            grad_At += torch.mul(G, dt[:, :, None, :], out=H).sum((0, 1))
            grad_dt = torch.mul(G, A_t, out=H).sum(2).addcmul_(u_c, gB)
            gu = grad_u[:, t0:t1]
            torch.mul(dt, gB, out=gu)
            if D is not None:
                gu.addcmul_(gy, D)
            if softplus:
                grad_dt = torch.ops.aten.softplus_backward(grad_dt, delta_c, 1.0, 20.0)
            if weight is None:
                grad_delta[:, t0:t1] = grad_dt
            else:  # delta_c = delta[:, t0:t1] @ weight.T + bias
                grad_delta[:, t0:t1] = torch.matmul(grad_dt, weight)
                grad_weight.addmm_(grad_dt.reshape(-1, dim).t(), delta[:, t0:t1].reshape(-1, weight.shape[1]))
                if bias is not None:
                    grad_bias += grad_dt.sum((0, 1))
        _SCRATCH.give(dA_buf, H_buf, G_buf)
        grad_h0 = carry.transpose(1, 2) if ctx.has_h0 and carry is not None else None
        return (grad_u, grad_delta, grad_At.t(), grad_B, grad_C, grad_D, grad_z, grad_h0, grad_weight, grad_bias,
                grad_z_weight, None, None)
