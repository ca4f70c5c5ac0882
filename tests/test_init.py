"""Reference initialisation (config field `init`): each backbone's initial parameters against its reference, the
DecisionModel's DT init of embeddings and head, `torch-default` = today's construction bit for bit, the config field.

The statistics are checked at sizes where torch's default init is far outside the tolerance (e.g. a Linear at
fan-in 128 has std 1/sqrt(3 * 128) = 0.051 by default, 0.02 under GPT-2's init), so none can pass by accident.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from agent_factory import make_agent
from test_training import TINY, run_cli
from decision_minrnn.agent.folder import load_agent, read_meta
from decision_minrnn.errors import UserInputError
from decision_minrnn.nn.backbones import BACKBONES, make_backbone
from decision_minrnn.nn.backbones.base import Backbone
from decision_minrnn.nn.model import BC_MODEL, DecisionModel, ModelConfig, build_model
from decision_minrnn.training.config import TrainConfig, config_from_dict, load_config

D = 128
OBS, ACT = 17, 6


def backbone(name, *, init="reference", seed=0, d_model=D, n_layers=3, **extra):
    torch.manual_seed(seed)
    return make_backbone(name, d_model, n_layers, init=init, **extra)


def model(name, *, init="reference", seed=0, **fields):
    fields = {"d_model": D, "n_layers": 2, "dropout": 0.0, "d_state": 16, "backbone": name, "init": init, **fields}
    torch.manual_seed(seed)
    return build_model(ModelConfig(**fields), OBS, ACT)


def same_parameters(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


def assert_gpt2_linear(linear: nn.Linear, where: str):
    w = linear.weight.detach()
    assert abs(w.std().item() - 0.02) <= 0.1 * 0.02, (where, w.std().item())
    assert abs(w.mean().item()) <= 0.002, where
    # normal, not uniform: 68.3% of a normal lies within one std of the mean (57.7% of a uniform)
    if w.numel() >= 4000:
        assert abs((w.abs() <= 0.02).float().mean().item() - 0.6827) <= 0.02, where
    if linear.bias is not None:
        assert torch.count_nonzero(linear.bias) == 0, where


def assert_unit_layernorm(norm: nn.LayerNorm, where: str):
    assert torch.equal(norm.weight, torch.ones_like(norm.weight)), where
    assert torch.count_nonzero(norm.bias) == 0, where


def assert_torch_default_linear(linear: nn.Linear, where: str, scale: float = 1.0):
    """kaiming-uniform(a = sqrt(5)): uniform(-b, b) with b = 1 / sqrt(fan_in), times `scale`."""
    w = linear.weight.detach()
    bound = scale / math.sqrt(w.shape[1])
    assert w.abs().max().item() <= bound, where
    assert abs(w.std().item() - bound / math.sqrt(3)) <= 0.1 * bound / math.sqrt(3), (where, w.std().item())


def assert_log_uniform(dt: torch.Tensor, lo: float = 1e-3, hi: float = 1e-1):
    """dt within [lo, hi] (up to float rounding) and log-uniformly spread over it."""
    dt = dt.detach().double().flatten()
    assert dt.min().item() >= lo * (1 - 1e-4) and dt.max().item() <= hi * (1 + 1e-4)
    u = ((dt.log() - math.log(lo)) / (math.log(hi) - math.log(lo))).clamp(0, 1).sort().values
    n = u.numel()
    assert abs(u.median().item() - 0.5) <= 2.0 / math.sqrt(n)  # the log-median is near the log-midpoint (1e-2)
    ecdf = torch.arange(1, n + 1, dtype=torch.float64) / n
    assert (ecdf - u).abs().max().item() <= 2.0 / math.sqrt(n)  # Kolmogorov-Smirnov against uniform, far past 0.1%


# ------------------------------------------------------------------------------------------------- backbones
def test_transformer_reference_is_dt_gpt2_init_without_residual_rescaling():
    net = backbone("transformer", n_heads=1, window=60)
    for i, block in enumerate(net.layers):
        assert_gpt2_linear(block.mixer.qkv, f"layer {i} qkv")
        assert_gpt2_linear(block.mixer.out_proj, f"layer {i} out_proj")  # 0.02, not 0.02 / sqrt(2 * 3)
        assert_gpt2_linear(block.ff.net[0], f"layer {i} ff up")
        assert_gpt2_linear(block.ff.net[2], f"layer {i} ff down")
        assert_unit_layernorm(block.norm, f"layer {i} norm")
        assert_unit_layernorm(block.ff.norm, f"layer {i} ff norm")
    assert_unit_layernorm(net.norm_out, "norm_out")


def test_torch_default_linear_would_fail_the_gpt2_check():
    """The GPT-2 check is not loose enough to accept torch's default at these sizes."""
    net = backbone("transformer", init="torch-default")
    with pytest.raises(AssertionError):
        assert_gpt2_linear(net.layers[0].mixer.qkv, "qkv")
    with pytest.raises(AssertionError):
        assert_gpt2_linear(net.layers[0].ff.net[2], "ff down")  # fan-in 512: default std 0.0255


@pytest.mark.parametrize("name", ["mingru", "minlstm"])
def test_min_rnn_reference_is_torch_default(name):
    """minGRU / minLSTM's reference code (lucidrains/minGRU-pytorch, BorealisAI/minRNNs) keeps torch's default init,
    so `reference` re-draws nothing: the backbone is bit for bit the torch-default one."""
    ref = backbone(name, expansion=1.5)
    assert same_parameters(ref, backbone(name, init="torch-default", expansion=1.5))
    for i, block in enumerate(ref.layers):
        assert block.mixer.in_proj.bias is None
        assert_torch_default_linear(block.mixer.in_proj, f"layer {i} in_proj")
        assert_torch_default_linear(block.mixer.out_proj, f"layer {i} out_proj")
        assert_torch_default_linear(block.ff.net[2], f"layer {i} ff down")
        assert_unit_layernorm(block.norm, f"layer {i} norm")


def test_s4d_reference():
    ref = backbone("s4", n_layers=2, d_state=16)
    default = backbone("s4", init="torch-default", n_layers=2, d_state=16)
    n = torch.arange(16, dtype=torch.float32)
    for i, (block, old) in enumerate(zip(ref.layers, default.layers)):
        m = block.mixer
        # S4D-Real: A_n = -(n + 1), n = 0 .. N - 1, in every channel
        assert torch.equal(m.A_log, torch.log(n + 1).expand(m.d_inner, 16))
        assert torch.allclose(-torch.exp(m.A_log), -(n + 1), rtol=1e-6, atol=0)
        assert_log_uniform(torch.exp(m.log_dt))
        assert torch.equal(m.B, torch.ones_like(m.B))
        assert abs(m.C.std().item() - 1.0) <= 0.1 and abs(m.C.mean().item()) <= 0.1  # N(0, 1), no 1/sqrt(N)
        assert abs(m.D.std().item() - 1.0) <= 0.2 and abs(m.D.mean().item()) <= 0.25  # randn, as s4d.py
        assert not torch.equal(m.D, torch.ones_like(m.D))
        # the projections keep torch's default (the very values construction drew)
        assert torch.equal(m.in_proj.weight, old.mixer.in_proj.weight)
        assert torch.equal(m.out_proj.weight, old.mixer.out_proj.weight)
    all_dt = torch.cat([torch.exp(b.mixer.log_dt) for b in ref.layers])
    assert_log_uniform(all_dt)


@pytest.mark.parametrize("ff_mult", [0, 2])
def test_mamba_reference(ff_mult):
    n_layers = 3
    ref = backbone("mamba", n_layers=n_layers, ff_mult=ff_mult)
    default = backbone("mamba", init="torch-default", n_layers=n_layers, ff_mult=ff_mult)
    n_residuals = 1 if ff_mult == 0 else 2
    dts = []
    for i, (block, old) in enumerate(zip(ref.layers, default.layers)):
        m = block.mixer
        assert m.d_inner == 2 * D and m.dt_rank == math.ceil(D / 16)
        assert torch.equal(m.A_log, torch.log(torch.arange(1, 17, dtype=torch.float32)).expand(m.d_inner, 16))
        assert torch.equal(m.D, torch.ones_like(m.D))
        bound = m.dt_rank ** -0.5
        w = m.dt_proj.weight
        assert w.abs().max().item() <= bound  # uniform(-dt_rank**-0.5, dt_rank**-0.5)
        assert abs(w.std().item() - bound / math.sqrt(3)) <= 0.1 * bound / math.sqrt(3)
        dts.append(F.softplus(m.dt_proj.bias.detach()))
        # out_proj: torch's default divided by sqrt(n_residuals_per_layer * n_layers) (mamba_ssm's MixerModel)
        assert_torch_default_linear(m.out_proj, f"layer {i} out_proj", scale=1 / math.sqrt(n_residuals * n_layers))
        if ff_mult:
            assert_torch_default_linear(block.ff.net[2], f"layer {i} fc2", scale=1 / math.sqrt(n_residuals * n_layers))
            assert torch.count_nonzero(block.ff.net[0].bias) == 0 and torch.count_nonzero(block.ff.net[2].bias) == 0
            assert torch.equal(block.ff.net[0].weight, old.ff.net[0].weight)
        # in_proj, conv1d and x_proj keep torch's default: the values construction drew
        for name in ("in_proj", "conv1d", "x_proj"):
            assert same_parameters(getattr(m, name), getattr(old.mixer, name)), name
    assert_log_uniform(torch.cat(dts))


# ------------------------------------------------------------------------------------------------- the model
@pytest.mark.parametrize("name", list(BACKBONES))
def test_decision_model_embeddings_and_head_get_dt_init_for_every_backbone(name):
    net = model(name)
    linears = [net.embed_return, net.embed_state, net.embed_action, net.action_head[0]]
    weights = torch.cat([m.weight.detach().flatten() for m in linears])  # 128 * (1 + 17 + 6) + 6 * 128 entries
    assert abs(weights.std().item() - 0.02) <= 0.1 * 0.02 and abs(weights.mean().item()) <= 0.002
    for m in linears:
        assert torch.count_nonzero(m.bias) == 0
        assert m.weight.abs().max().item() <= 0.02 * 6  # a (1, 128) torch-default embed_return reaches 1
    t = net.embed_timestep.weight.detach()
    assert abs(t.std().item() - 0.02) <= 0.05 * 0.02  # torch's Embedding default is N(0, 1)
    assert_unit_layernorm(net.embed_norm, "embed_norm")
    # the backbone keeps its own reference init: equal to the standalone reference backbone built from the same
    # random state (the backbone is constructed after the embeddings, so replay their draws first)
    cfg = net.cfg
    torch.manual_seed(0)
    nn.Embedding(cfg.max_timestep, D), nn.Linear(1, D), nn.Linear(OBS, D), nn.Linear(ACT, D), nn.LayerNorm(D)
    cls = type(net.backbone)
    assert same_parameters(net.backbone, cls(D, cfg.n_layers, cls.options_cls.from_config(cfg)))
    assert net.backbone.options.init == "reference"


def test_decision_model_does_not_overwrite_a_recurrent_backbone_with_gpt2_init():
    net = model("mingru")
    assert_torch_default_linear(net.backbone.layers[0].mixer.in_proj, "in_proj")
    assert_torch_default_linear(net.backbone.layers[0].ff.net[0], "ff up")


def test_mlp_bc_is_torch_default_for_both_inits():
    assert same_parameters(model(BC_MODEL), model(BC_MODEL, init="torch-default"))


def _construct_without_reinit(monkeypatch, name, **fields):
    """Today's model: everything constructed, nothing re-initialised (both re-init methods made no-ops)."""
    with monkeypatch.context() as m:
        m.setattr(Backbone, "reset_parameters_reference", lambda self: None)
        for cls in BACKBONES.values():
            if "reset_parameters_reference" in vars(cls):
                m.setattr(cls, "reset_parameters_reference", lambda self: None)
        m.setattr(DecisionModel, "reset_parameters_reference", lambda self, backbone=True: None)
        return model(name, init="reference", **fields)


@pytest.mark.parametrize("name", [*BACKBONES, BC_MODEL])
@pytest.mark.parametrize("layout", ["interleaved", "fused"])
def test_torch_default_is_the_construction_without_reinitialisation(monkeypatch, name, layout):
    old = _construct_without_reinit(monkeypatch, name, layout=layout, seed=3)
    new = model(name, init="torch-default", layout=layout, seed=3)
    assert same_parameters(old, new)
    if name != BC_MODEL:
        assert not same_parameters(model(name, layout=layout, seed=3), new)  # reference does change the model
        assert new.backbone.options.init == "torch-default"


def test_reset_parameters_reference_can_be_called_again():
    net = model("mamba", ff_mult=0)
    net.reset_parameters_reference()
    assert_gpt2_linear(net.embed_state, "embed_state")
    m = net.backbone.layers[0].mixer
    assert torch.equal(m.D, torch.ones_like(m.D))
    assert_torch_default_linear(m.out_proj, "out_proj", scale=1 / math.sqrt(2))  # not divided twice


# ------------------------------------------------------------------------------------------------- the config
def test_config_field_and_validation():
    assert TrainConfig().init == "reference" and ModelConfig().init == "reference"
    assert TrainConfig(init="torch-default").model_config().init == "torch-default"
    assert load_config("quick", sets=["init=torch-default"]).init == "torch-default"
    with pytest.raises(UserInputError, match=r"'init' must be one of reference, torch-default; got 'xavier'"):
        TrainConfig(init="xavier")
    with pytest.raises(UserInputError, match="did you mean 'torch-default'"):
        load_config(sets=["init=torch_default"])
    with pytest.raises(ValueError, match="init must be one of reference, torch-default"):
        make_backbone("mingru", 8, 1, init="normal")
    with pytest.raises(ValueError, match="init must be one of"):
        build_model(ModelConfig(init="normal"), OBS, ACT)


def test_saved_config_without_init_loads_as_torch_default(tmp_path):
    data = TrainConfig().to_dict()
    assert config_from_dict(data).init == "reference"  # a saved value is kept
    del data["init"]
    assert config_from_dict(data).init == "torch-default"  # saved before the field existed: trained from defaults
    folder = make_agent(tmp_path / "agent", "transformer", init="reference")
    path = folder / "config.json"
    saved = json.loads(path.read_text())
    assert saved["config"]["init"] == "reference"
    del saved["config"]["init"]
    path.write_text(json.dumps(saved))
    assert read_meta(folder).config.init == "torch-default"
    net, meta = load_agent(folder)
    assert meta.config.init == "torch-default" and net.backbone.options.init == "torch-default"


def test_resuming_a_run_from_before_init_needs_torch_default(hopper_file):
    """A run folder whose run.json predates `init` was started from torch's default init: it resumes with
    `--set init=torch-default`, and a resume at the new default names the field."""
    train = ["train_agent", "--env", "hopper-medium", *TINY, "--set", "eval_episodes=0", "--set", "checkpoint_every=2",
             "--out", "run"]
    run_cli(*train, "--steps", "2", "--set", "init=torch-default")
    record = json.loads(open("run/run.json").read())
    del record["config_without_steps"]["init"]
    with open("run/run.json", "w") as f:
        json.dump(record, f)
    proc = run_cli(*train, "--steps", "4", "--resume", check=False)
    assert proc.returncode == 2 and "config_without_steps.init: 'torch-default' -> 'reference'" in proc.stderr
    run_cli(*train, "--steps", "4", "--set", "init=torch-default", "--resume")
