"""S4D / Mamba / Transformer training-step speed (issue 11): before/after in one run, on CPU or CUDA.

    python benchmarks/s4_mamba_speed.py --part model       # DecisionModel, `small` config, K = 20, fused layout
    python benchmarks/s4_mamba_speed.py --part layer       # one layer at T = 4096: time and peak memory
    python benchmarks/s4_mamba_speed.py --part attention   # our Transformer vs a plain fused-attention stack
    python benchmarks/s4_mamba_speed.py --part all --device cuda --out gpu_check_out

"before" is the code path S4D and Mamba used before issue 11, still reachable by naming the scan `auto` resolved to
then (`cpu` on a CPU, `log` on a GPU): S4D scans the (batch, T, d * N) recurrence, Mamba materialises dt B x for all
of T. "after" is the default (`auto`: S4D's convolution mode, Mamba's chunked selective scan). For the Transformer,
"before" is the banded blockwise attention (`fused_causal = False`), "after" the fused causal call. The configs of
one part are timed in interleaved rounds (config 1, 2, ..., 1, 2, ...) so that load from other processes spreads
over all of them; medians are reported.
Only torch is needed (no gymnasium): the model is built from `nn.model`, the loss written out here.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from decision_minrnn.nn.backbones import make_backbone, set_scan_impl  # noqa: E402
from decision_minrnn.nn.model import ModelConfig, build_model  # noqa: E402
from decision_minrnn.nn.scan import resolve_impl  # noqa: E402

OBS_DIM, ACT_DIM = 11, 3


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------------------------------- workloads
def model_step(backbone: str, impl: str, device: torch.device, *, d: int = 64, n_layers: int = 3, batch: int = 64,
               length: int = 20, layout: str = "fused", dropout: float = 0.1):
    """Training step (forward, masked MSE, backward) of the DecisionModel of configs/small.json."""
    torch.manual_seed(0)
    cfg = ModelConfig(backbone=backbone, d_model=d, n_layers=n_layers, dropout=dropout, ff_mult=4, layout=layout,
                      context_len=length, scan_impl=impl)
    model = build_model(cfg, OBS_DIM, ACT_DIM).to(device).train()
    returns = torch.randn(batch, length, device=device)
    states = torch.randn(batch, length, OBS_DIM, device=device)
    actions = torch.rand(batch, length, ACT_DIM, device=device) * 2 - 1
    timesteps = torch.arange(length, device=device).expand(batch, length).contiguous()

    def call():
        model.zero_grad(set_to_none=True)
        pred, _ = model(returns, states, actions, timesteps)
        F.mse_loss(pred, actions).backward()

    return call, model


def layer_step(name: str, impl: str, device: torch.device, *, d: int = 128, batch: int = 64, length: int = 4096):
    """One layer (`make_backbone(name, d, 1, ff_mult=0)`), training step with an input that requires grad."""
    torch.manual_seed(0)
    net = make_backbone(name, d, 1, ff_mult=0).to(device).train()
    if impl != "auto":
        set_scan_impl(net, impl)
    x = torch.randn(batch, length, d, device=device, requires_grad=True)
    target = torch.randn(batch, length, d, device=device)

    def call():
        net.zero_grad(set_to_none=True)
        x.grad = None
        F.mse_loss(net(x)[0], target).backward()

    return call, net


class PlainCausalBlock(nn.Module):
    """Reference: pre-norm block with torch's fused causal attention (`is_causal=True`) and a 4x GELU MLP."""

    def __init__(self, d: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.ff = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(approximate="tanh"), nn.Linear(4 * d, d))
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        x = x + self.drop(self.proj(a.transpose(1, 2).reshape(b, t, d)))
        return x + self.drop(self.ff(self.norm2(x)))


def attention_step(kind: str, device: torch.device, *, d: int = 64, n_layers: int = 3, batch: int = 64,
                   tokens: int = 60, dropout: float = 0.1):
    """Our Transformer backbone (window = tokens; `ours` fused causal, `banded` the blockwise band as before issue
    11) or the plain stack, training step on `tokens` tokens."""
    torch.manual_seed(0)
    if kind in ("ours", "banded"):
        net = make_backbone("transformer", d, n_layers, window=tokens, n_heads=1, ff_mult=4, dropout=dropout)
        for blk in net.layers:
            blk.mixer.fused_causal = kind == "ours"
        fwd = lambda x: net(x)[0]  # noqa: E731
    else:
        blocks = nn.ModuleList(PlainCausalBlock(d, 1, dropout) for _ in range(n_layers))
        norm = nn.LayerNorm(d)
        net = nn.ModuleList([blocks, norm])

        def fwd(x):
            for blk in blocks:
                x = blk(x)
            return norm(x)
    net = net.to(device).train()
    x = torch.randn(batch, tokens, d, device=device, requires_grad=True)
    target = torch.randn(batch, tokens, d, device=device)

    def call():
        net.zero_grad(set_to_none=True)
        x.grad = None
        F.mse_loss(fwd(x), target).backward()

    return call, net


# ------------------------------------------------------------------------------------------------------ timing
def interleaved(calls: dict[str, callable], device: torch.device, rounds: int, per_round: int) -> dict[str, dict]:
    """Median wall ms and median process-CPU ms of each call, timed in interleaved rounds (after a warm-up each).

    On a shared CPU the process CPU time (user + system, all threads of this process) is the steadier number: it
    leaves out the time the step waited for a core while other processes ran; with one torch thread it is the
    step's own cost. Wall time is what a user waits for; both are reported.
    """
    times: dict[str, list[float]] = {k: [] for k in calls}
    cpu: dict[str, list[float]] = {k: [] for k in calls}
    for c in calls.values():
        c()
        c()
    sync(device)
    for _ in range(rounds):
        for k, c in calls.items():
            for _ in range(per_round):
                sync(device)
                t0, c0 = time.perf_counter(), time.process_time()
                c()
                sync(device)
                times[k].append(1e3 * (time.perf_counter() - t0))
                cpu[k].append(1e3 * (time.process_time() - c0))
    return {k: {"median_ms": statistics.median(v), "q1_ms": sorted(v)[len(v) // 4],
                "q3_ms": sorted(v)[(3 * len(v)) // 4], "cpu_median_ms": statistics.median(cpu[k]), "n": len(v)}
            for k, v in times.items()}


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def one_layer_child(name: str, impl: str, device: str, length: int, repeats: int) -> dict:
    """In a fresh process: warm-up, peak memory of one step above the resident size after setup, median time."""
    dev = torch.device(device)
    if dev.type == "cpu":  # the suite's 8 GB cap, as a data-segment limit: past it an allocation fails (OOM)
        import resource

        cap = 8 * 2 ** 30
        resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))
    call, _ = layer_step(name, impl, dev, length=length)
    if dev.type == "cuda":
        sync(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev) / 2 ** 20
    else:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass
        base = _status_mb("VmRSS")
    t0 = time.perf_counter()
    call()
    sync(dev)
    first = 1e3 * (time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated(dev) / 2 ** 20 if dev.type == "cuda" else _status_mb("VmHWM")
    times = [first]
    for _ in range(repeats - 1):
        t0 = time.perf_counter()
        call()
        sync(dev)
        times.append(1e3 * (time.perf_counter() - t0))
    return {"median_ms": statistics.median(times[1:] or times), "first_ms": first, "working_mb": peak - base,
            "n": len(times)}


def run_child(name: str, impl: str, args, length: int) -> dict:
    cmd = [sys.executable, __file__, "--child", json.dumps([name, impl, length]), "--device", args.device,
           "--threads", str(args.threads), "--repeats", str(args.layer_repeats)]
    env = dict(os.environ)
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.layer_timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"status": f"skipped (over {args.layer_timeout} s)"}
    if out.returncode != 0:
        tail = (out.stderr or "").strip().splitlines()[-1:] or ["?"]
        oom = "memory" in tail[0].lower() or out.returncode in (-9, 137)
        return {"status": ("OOM: " if oom else "failed: ") + tail[0][:200]}
    return {"status": "ok", **json.loads(out.stdout.strip().splitlines()[-1])}


# --------------------------------------------------------------------------------------------------- profiling
def profile(call, rows: int = 12, steps: int = 5) -> str:
    """Top operators of `steps` calls under torch.profiler: self time per call (ms), share, calls per step."""
    from torch.profiler import ProfilerActivity, profile as tprofile

    call()
    cuda = torch.cuda.is_available()
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with tprofile(activities=acts) as prof:
        for _ in range(steps):
            call()
    events = prof.key_averages()
    attr = "self_device_time_total" if cuda else "self_cpu_time_total"
    total = sum(getattr(e, attr, 0) for e in events) or 1
    lines = [f"| op | self {'GPU' if cuda else 'CPU'} ms / step | share | calls / step |", "|---|---:|---:|---:|"]
    for e in sorted(events, key=lambda e: -getattr(e, attr, 0))[:rows]:
        t = getattr(e, attr, 0)
        lines.append(f"| `{e.key}` | {t / steps / 1e3:.2f} | {100 * t / total:.1f}% | {e.count // steps} |")
    lines.append(f"| total (profiled) | {total / steps / 1e3:.2f} | 100% | |")
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------------------- plot
def plot(paths: list[Path], png: Path) -> None:
    """Bar charts of the JSON results of earlier runs (model part: CPU ms per step; layer part: time and peak MB)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    docs = [json.loads(p.read_text()) for p in paths]
    model = next((d for d in docs if "model" in d), None)
    attention = next((d for d in docs if "attention" in d), None)
    layers = [d for d in docs if "layer" in d]
    n = (model is not None) + (attention is not None) + 2 * len(layers)
    cols = min(3, n)
    rows_ = -(-n // cols)
    fig, grid = plt.subplots(rows_, cols, figsize=(4.3 * cols, 3.4 * rows_), squeeze=False)
    axes = [ax for row in grid for ax in row]
    for ax in axes[n:]:
        ax.axis("off")

    def bars(ax, rows: dict, key: str, title: str, unit: str):
        names = [k for k, v in rows.items() if isinstance(v, dict) and key in v]
        vals = [rows[k][key] for k in names]
        colors = ["tab:gray" if "before" in k else "tab:blue" if ("after" in k or "ours" in k) else "tab:green"
                  for k in names]
        ax.barh(range(len(names)), vals, color=colors)
        ax.set_yticks(range(len(names)), [n.replace(" (", "\n(") for n in names], fontsize=7)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(unit, fontsize=8)
        for i, v in enumerate(vals):
            ax.text(v, i, f" {v:.0f}", va="center", fontsize=7)

    if model is not None:
        bars(axes.pop(0), model["model"], "cpu_median_ms",
             f"DecisionModel small, K=20\n(train step, {model['threads']} thread)", "process CPU ms / step")
    if attention is not None:
        bars(axes.pop(0), attention["attention"], "cpu_median_ms", "Transformer d64 x3, 60 tokens\n(train step)",
             "process CPU ms / step")
    for layer in layers:
        rows = {k: dict(v) for k, v in layer["layer"].items() if isinstance(v, dict)}
        for k, v in rows.items():
            if v.get("status") != "ok":
                v["median_ms"] = v["working_mb"] = 0.0  # OOM / skipped: an empty bar, named in the label
        rows = {(k if v.get("status") == "ok" else f"{k} [{v['status'][:3]}]"): v for k, v in rows.items()}
        T = layer["layer"]["T"]
        bars(axes.pop(0), rows, "median_ms", f"one layer d128, T={T}\n(train step)", "wall ms / step")
        bars(axes.pop(0), rows, "working_mb", f"one layer d128, T={T}\n(peak memory)", "MB above setup")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)


# -------------------------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--part", choices=("model", "layer", "attention", "all"), default="all")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--per-round", type=int, default=4)
    p.add_argument("--layer-T", type=int, default=4096)
    p.add_argument("--layer-repeats", type=int, default=3)
    p.add_argument("--layer-timeout", type=float, default=300.0)
    p.add_argument("--no-before", action="store_true", help="skip the old (before) paths")
    p.add_argument("--profile", action="store_true", help="print torch.profiler top ops of the model configs")
    p.add_argument("--out", type=Path, help="write <out>/s4_mamba_speed_<device>.json")
    p.add_argument("--plot", nargs="+", type=Path, metavar="JSON", help="plot these result files into --png, exit")
    p.add_argument("--png", type=Path, default=Path("benchmarks/results/s4_mamba_speed.png"))
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--repeats", type=int, default=3, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.plot:
        plot(args.plot, args.png)
        print(f"wrote {args.png}")
        return 0
    if args.child:
        name, impl, length = json.loads(args.child)
        print(json.dumps(one_layer_child(name, impl, args.device, int(length), args.repeats)))
        return 0
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: torch sees no CUDA device here")
    before = not args.no_before
    old = resolve_impl("auto", dev)  # what `auto` meant for S4D and Mamba before issue 11: cpu here, log on a GPU
    load = os.getloadavg()
    result: dict = {"device": str(dev), "threads": args.threads, "torch": torch.__version__,
                    "load_before": [round(x, 2) for x in load]}
    print(f"device {dev}, torch threads {args.threads}, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if args.part in ("model", "all"):
        configs = {"minGRU": ("mingru", "auto"), "Transformer": ("transformer", "auto"),
                   "S4D (after: auto)": ("s4", "auto"), "Mamba (after: auto)": ("mamba", "auto")}
        if before:
            configs.update({f"S4D (before: scan {old})": ("s4", old), f"Mamba (before: scan {old})": ("mamba", old)})
        calls = {k: model_step(b, i, dev)[0] for k, (b, i) in configs.items()}
        res = interleaved(calls, dev, args.rounds, args.per_round)
        ref = res["minGRU"]["median_ms"]
        print("\nDecisionModel small (d 64, 3 layers, fused, K 20, batch 64): training step, median ms")
        cref = res["minGRU"]["cpu_median_ms"]
        for k, v in res.items():
            print(f"  {k:28s} wall {v['median_ms']:8.2f} ms ({v['median_ms'] / ref:.2f}x minGRU)   "
                  f"cpu {v['cpu_median_ms']:8.2f} ms ({v['cpu_median_ms'] / cref:.2f}x minGRU)")
        result["model"] = res
        if args.profile:
            for k in ("S4D (after: auto)", "Mamba (after: auto)", "minGRU"):
                print(f"\n--- profile: {k}\n{profile(calls[k])}")
    if args.part in ("attention", "all"):
        calls = {"ours, after (fused causal)": attention_step("ours", dev)[0],
                 "ours, before (banded blocks)": attention_step("banded", dev)[0],
                 "plain fused causal stack": attention_step("plain", dev)[0]}
        res = interleaved(calls, dev, args.rounds, args.per_round)
        print("\nTransformer d 64, 3 layers, batch 64, 60 tokens: training step, median ms")
        for k, v in res.items():
            print(f"  {k:40s} wall {v['median_ms']:8.2f} ms   cpu {v['cpu_median_ms']:8.2f} ms")
        result["attention"] = res
    if args.part in ("layer", "all"):
        rows = {"minGRU": ("mingru", "auto"), "S4D (after: auto)": ("s4", "auto"),
                "Mamba (after: auto)": ("mamba", "auto")}
        if before:
            rows.update({f"S4D (before: scan {old})": ("s4", old), f"Mamba (before: scan {old})": ("mamba", old)})
        res = {}
        print(f"\nOne layer, d 128, batch 64, T {args.layer_T}: training step (own process each)")
        for k, (name, impl) in rows.items():
            res[k] = run_child(name, impl, args, args.layer_T)
            v = res[k]
            if v["status"] == "ok":
                print(f"  {k:28s} {v['median_ms']:10.1f} ms  peak +{v['working_mb']:.0f} MB")
            else:
                print(f"  {k:28s} {v['status']}")
        result["layer"] = {"T": args.layer_T, **res}
    result["load_after"] = [round(x, 2) for x in os.getloadavg()]
    print(f"\nload average after: {result['load_after']}")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / f"s4_mamba_speed_{dev.type}.json"
        path.write_text(json.dumps(result, indent=1))
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
