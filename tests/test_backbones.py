"""The law (docs/architecture.md) for every backbone and scan implementation, resets, stability and bad input."""

from __future__ import annotations

import pytest
import torch

from decision_minrnn.nn.backbones import BACKBONES, backbone_class, make_backbone, scans_over_time, set_scan_impl
from decision_minrnn.nn.scan import SCAN_IMPLS
from device_params import DEVICES

# (backbone, scan implementation): the Transformer has no scan; every scan backbone is run with every implementation.
SCAN_BACKBONES = [name for name in BACKBONES if scans_over_time(name)]
CASES = [(name, impl) for name in SCAN_BACKBONES for impl in SCAN_IMPLS] + [("transformer", "auto")]
# S4D and Mamba's default (`auto`) forward is no scan but their own parallel form (S4D's convolution, Mamba's chunked
# selective scan): the law is checked for it too.
CASES += [("s4", "auto"), ("mamba", "auto")]
D = 16


def build(name, impl="auto", *, d_model=D, n_layers=2, dtype=torch.float64, seed=0, **extra):
    torch.manual_seed(seed)
    if name == "transformer":
        extra.setdefault("window", 5)
        extra.setdefault("n_heads", 2)
    if name == "mamba":
        extra.setdefault("d_state", 4)
    if name == "s4":
        extra.setdefault("d_state", 4)
    model = make_backbone(name, d_model, n_layers, **extra).to(dtype).eval()
    if scans_over_time(name):
        set_scan_impl(model, impl)
    return model


def max_rel(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def state_error(s1, s2):
    pairs = [(x, y) for k in s1.fields() for x, y in zip(s1.fields()[k], s2.fields()[k])]
    return max((x.double() - y.double()).abs().max().item() for x, y in pairs)


def split_run(model, x, state, k):
    """`forward` on the first k tokens, then `step` on the rest."""
    y, state = model(x[:, :k], state)
    outs = [y]
    for t in range(k, x.shape[1]):
        y_t, state = model.step(x[:, t], state)
        outs.append(y_t[:, None])
    return torch.cat(outs, dim=1), state


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name,impl", CASES)
@torch.no_grad()
def test_parallel_equals_step_float64(name, impl, device):
    model = build(name, impl).to(device)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, 23, D, generator=gen, dtype=torch.float64).to(device)  # odd, batch > 1, T > 2W (Transformer)
    _, produced = model(torch.randn(3, 11, D, generator=gen, dtype=torch.float64).to(device))
    for start in (None, produced):  # from the initial state and from a state the backbone produced
        y_par, s_par = model(x, start)
        for k in (0, 1, 7, 22):
            y, s = split_run(model, x, start, k)
            assert (y - y_par).abs().max().item() <= 1e-9, (k, start is None)
            assert state_error(s, s_par) <= 1e-9
    # prefix + parallel rest also equals one parallel pass (state returned by forward is exact)
    y1, s1 = model(x[:, :9], produced)
    y2, s2 = model(x[:, 9:], s1)
    y_par, s_par = model(x, produced)
    assert (torch.cat([y1, y2], 1) - y_par).abs().max().item() <= 1e-9


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name,impl", CASES)
@torch.no_grad()
def test_parallel_equals_step_float32_at_episode_length(name, impl, device):
    model = build(name, impl, n_layers=1, dtype=torch.float32, d_model=8).to(device)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3000, 8, generator=gen).to(device)
    _, produced = model(torch.randn(2, 50, 8, generator=gen).to(device))
    y_par, s_par = model(x, produced)
    y, s = split_run(model, x, produced, 1501)
    assert torch.isfinite(y_par).all()
    assert max_rel(y, y_par) <= 1e-4
    scale = max(t.abs().max().item() for v in s_par.fields().values() for t in v if t.is_floating_point())
    assert state_error(s, s_par) <= 1e-4 * scale


@pytest.mark.parametrize("impl", [*SCAN_IMPLS, "auto"])
@torch.no_grad()
def test_mamba_prefix_splitting_the_conv_window(impl):
    model = build("mamba", impl, d_conv=4)
    x = torch.randn(2, 9, D, dtype=torch.float64)
    y_par, _ = model(x)
    for k in (1, 2, 3, 4, 5):
        y1, s = model(x[:, :k])
        y2, _ = model(x[:, k:], s)  # parallel continuation from a state whose conv window is only partly filled
        assert (torch.cat([y1, y2], 1) - y_par).abs().max().item() <= 1e-9
        y, _ = split_run(model, x, None, k)
        assert (y - y_par).abs().max().item() <= 1e-9


@torch.no_grad()
def test_transformer_band_longer_than_twice_the_window():
    model = build("transformer", window=4, n_layers=1)  # one layer: the receptive field is exactly the band
    x = torch.randn(2, 19, D, dtype=torch.float64)
    y_par, _ = model(x)
    # Brute force: every token sees exactly itself and the 3 tokens before it.
    for t in (0, 3, 10, 18):
        lo = max(0, t - 3)
        y_win, _ = model(x[:, lo: t + 1])
        assert (y_win[:, -1] - y_par[:, t]).abs().max().item() <= 1e-9


@pytest.mark.parametrize("length", [1, 9, 12])
@torch.no_grad()
def test_transformer_fused_causal_path_equals_steps(length):
    """A window covering the whole sequence from an empty cache takes the fused causal attention: outputs and the
    returned cache equal stepping token by token, from `None` and from an explicit initial state."""
    model = build("transformer", window=12)
    x = torch.randn(3, length, D, dtype=torch.float64)
    for start in (None, model.initial_state(3)):
        y_par, s_par = model(x, start)
        y, s = split_run(model, x, start, 0)
        assert (y - y_par).abs().max().item() <= 1e-9 and state_error(s, s_par) <= 1e-9
        assert torch.equal(s.count[0], s_par.count[0])
        more = torch.randn(3, 4, D, dtype=torch.float64)  # the banded path continues from the cache it returned
        y_more, _ = model(more, s_par)
        assert (split_run(model, more, s_par, 0)[0] - y_more).abs().max().item() <= 1e-9
    banded = build("transformer", window=12)
    for blk in banded.layers:
        blk.mixer.fused_causal = False
    y_band, s_band = banded(x)
    y_par, s_par = model(x)
    assert (y_band - y_par).abs().max().item() <= 1e-9 and state_error(s_band, s_par) <= 1e-9
    drop = build("transformer", window=12, dropout=0.5).train()  # attention dropout on the fused path
    assert torch.isfinite(drop(x)[0]).all()


@pytest.mark.parametrize("length", [1, 3, 11])
@torch.no_grad()
def test_transformer_short_path_after_a_cache_equals_the_banded_path(length):
    """T < W tokens after a cache (acting) attend it directly; outputs and cache equal the banded path and stepping,
    for rows whose cache is full, partly filled and empty (a reset row)."""
    model = build("transformer", window=12)
    banded = build("transformer", window=12)
    banded.load_state_dict(model.state_dict())
    for blk in banded.layers:
        blk.mixer.short_path = False
    _, full = model(torch.randn(3, 20, D, dtype=torch.float64))
    _, partial = model(torch.randn(3, 5, D, dtype=torch.float64))
    mixed = model.select_rows(torch.tensor([False, True, False]), partial, full)  # rows: full, 5 tokens, ...
    mixed = model.reset_state(mixed, torch.tensor([False, False, True]))  # ... and empty (a reset row)
    x = torch.randn(3, length, D, dtype=torch.float64)
    for start in (mixed, partial):
        y, s = model(x, start)
        y_band, s_band = banded(x, start)
        assert (y - y_band).abs().max().item() <= 1e-9 and state_error(s, s_band) <= 1e-9
        y_step, s_step = split_run(model, x, start, 0)
        assert (y - y_step).abs().max().item() <= 1e-9 and state_error(s, s_step) <= 1e-9


@pytest.mark.parametrize("name,impl", [(n, "auto") for n in BACKBONES])
@torch.no_grad()
def test_reset_state_rows(name, impl):
    model = build(name, impl)
    x = torch.randn(3, 8, D, dtype=torch.float64)
    _, state = model(torch.randn(3, 6, D, dtype=torch.float64))
    mask = torch.tensor([True, False, True])
    reset = model.reset_state(state, mask)
    y_reset, _ = split_run(model, x, reset, 3)
    y_fresh, _ = model(x[mask])
    y_kept, _ = model(x[~mask], type(state)(**{k: tuple(t[~mask] for t in v) for k, v in state.fields().items()}))
    assert (y_reset[mask] - y_fresh).abs().max().item() <= 1e-9
    assert torch.equal(y_reset[~mask], y_kept) or (y_reset[~mask] - y_kept).abs().max().item() <= 1e-12
    for k, v in state.fields().items():  # the untouched row is bit-for-bit the same tensor content
        for old, new in zip(v, reset.fields()[k]):
            assert torch.equal(old[~mask], new[~mask])


@pytest.mark.parametrize("name", ["mingru", "minlstm"])
@torch.no_grad()
def test_long_run_stability(name):
    model = build(name, "auto", n_layers=1, d_model=8, dtype=torch.float32, ff_mult=0)
    gen = torch.Generator().manual_seed(3)
    steps = 100_000
    x = torch.randn(2, steps, 8, generator=gen)
    state = model.initial_state(2)
    outs = []
    for t in range(steps):
        y, state = model.step(x[:, t], state)
        if t % 1000 == 999:
            outs.append(y)
    assert all(torch.isfinite(o).all() for o in outs) and torch.isfinite(state.h[0]).all()
    ref = build(name, "sequential", n_layers=1, d_model=8, ff_mult=0)  # float64 reference, same weights
    y_ref, s_ref = ref(x.double())
    assert max_rel(torch.stack(outs, 1).double(), y_ref[:, 999::1000]) <= 1e-4
    assert max_rel(state.h[0].double(), s_ref.h[0]) <= 1e-4
    y_fwd, _ = model(x[:, :10_000])  # a 10,000-step parallel forward in float32
    assert torch.isfinite(y_fwd).all() and max_rel(y_fwd.double(), y_ref[:, :10_000]) <= 1e-4


def test_parameter_names_do_not_depend_on_scan_impl():
    for name in SCAN_BACKBONES:
        keys = {impl: list(make_backbone(name, 8, 2, scan_impl=impl).state_dict()) for impl in SCAN_IMPLS}
        assert keys["sequential"] == keys["cpu"] == keys["log"]


def test_registry_backbones_own_their_defaults():
    """make_backbone(name, d, n) is the class at its own defaults (Mamba: expansion 2, no feed-forward)."""
    for name, cls in BACKBONES.items():
        assert backbone_class(name.upper()) is cls and cls.name == name
        torch.manual_seed(0)
        a = make_backbone(name, 8, 2)
        torch.manual_seed(0)
        b = cls(8, 2)
        assert a.options == b.options == cls.options_cls()
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
        assert type(a.initial_state(1)) is cls.state_cls
    mamba = make_backbone("mamba", 8, 1)
    assert mamba.options.expansion == 2.0 and mamba.layers[0].ff is None


def test_mamba_uses_mamba_ssm_parameter_names():
    names = {k.split(".", 3)[-1] for k in make_backbone("mamba", 8, 1).state_dict() if ".mixer." in k}
    assert {"in_proj.weight", "conv1d.weight", "conv1d.bias", "x_proj.weight", "dt_proj.weight", "dt_proj.bias",
            "A_log", "D", "out_proj.weight"} <= names


def test_bad_input_errors():
    with pytest.raises(ValueError, match="unknown backbone 'mingr'.*mingru, minlstm, transformer, s4, mamba.*'mingru'"):
        make_backbone("mingr", 8, 1)
    with pytest.raises(ValueError, match="n_layers"):
        make_backbone("mingru", 8, 0)
    with pytest.raises(ValueError, match="unknown option 'window' for backbone 'mingru'; valid: .*expansion"):
        make_backbone("mingru", 8, 1, window=3)
    model = make_backbone("mingru", 8, 2)
    with pytest.raises(ValueError, match="rank 2"):
        model(torch.randn(4, 8))
    with pytest.raises(ValueError, match="width 7 != d_model 8"):
        model(torch.randn(4, 3, 7))
    with pytest.raises(ValueError, match=r"\(batch, d_model\)"):
        model.step(torch.randn(4, 3, 8), None)
    with pytest.raises(TypeError, match="floating-point"):
        model(torch.ones(4, 3, 8, dtype=torch.int64))
    _, state = model(torch.randn(4, 3, 8))
    with pytest.raises(ValueError, match="batch size 4, the input has 2"):
        model.step(torch.randn(2, 8), state)
    other = make_backbone("s4", 8, 2)
    _, s4_state = other(torch.randn(4, 3, 8))
    with pytest.raises(TypeError, match="expects a MinGRUState, got a state of 's4'"):
        model.step(torch.randn(4, 8), s4_state)
    negative = state.map(lambda t: -t.abs() - 1)
    with pytest.raises(ValueError, match="must be >= 0"):
        model(torch.randn(4, 3, 8), negative)
    deeper = make_backbone("mingru", 8, 3)
    with pytest.raises(ValueError, match="3 layers|2 layers"):
        deeper.step(torch.randn(4, 8), state)
    with pytest.raises(ValueError, match="reset mask"):
        model.reset_state(state, torch.tensor([True, False]))
