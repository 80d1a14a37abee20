"""Speed and memory figures: graph batching vs. training steps, per-model throughput (classification and
editing), SIREN fitting, peak RSS.

    python benchmarks/speed.py                 # everything (~5 min on 2 cores)
    python benchmarks/speed.py --skip-fit      # no SIREN fitting / peak-RSS subprocess (keeps the last ones)
    python benchmarks/speed.py --device cuda   # training steps on a GPU (adds a bf16 autocast row)
    python benchmarks/speed.py --device cuda --batch-size 512 --merge   # add a batch size to the same file
    python benchmarks/speed.py --compiled --reference /work/ref/neural-graphs --ref-site /work/ref/site
                                               # eager vs compiled gnn/transformer/dwsnet vs the reference
    python benchmarks/speed.py --kernels       # only graph batching and PNA's segment reductions vs PyG (prints)
    python benchmarks/speed.py --scaling       # + cost per network at batch 64/128/256 with and without the
                                               #   malloc switch, chunked vs plain path, peak RSS
                                               #   (~10 min with --scaling-models gnn)

Prints a table and writes ``benchmarks/results/speed-<device>.json`` (atomically).
Numbers are medians over timed repetitions after warm-up; nothing here is a
pass/fail test.  Each training step is also counted in FLOPs (``torch.utils.flop_counter``: the matrix
products of forward and backward on the plain autograd path, so recomputation by the chunked CPU kernels is
not counted as work) and divided by the machine's measured float32 matmul rate on the same threads: the
fraction of peak the step reaches.  Beside it, the step's own products replayed alone give its ceiling: thin
products (10^5 rows by 32 channels) are memory-bound and reach about half the square-matmul peak by
themselves, so no schedule of the elementwise work around them can take the step past that.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from rich.table import Table
from torch_geometric.data import Batch

from nnzoo.allocator import keep_large_allocations_on_heap
from nnzoo.config import model_options
from nnzoo.data.weights import DataInfo, WeightBatch, layer_statistics
from nnzoo.graphs import batch_to_graph, network_to_data
from nnzoo.io import write_json, write_text
from nnzoo.models import MODELS, count_parameters, create_model
from nnzoo.models.compiling import compilable
from nnzoo.nets import siren_spec
from nnzoo.nets.functional import siren_init
from nnzoo.progress import console, progress_bar

RESULTS = Path(__file__).resolve().parent / "results"
EPOCH_INRS = 5000  # issue 6 target: one epoch over the 5,000 MNIST INRs in < 60 s on 2 CPU cores


def _median_seconds(fn, repeats: int, warmup: int = 2, sync=lambda: None) -> float:
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_peak_gflops(sizes: tuple[int, ...] = (2048, 4096), repeats: int = 5) -> float:
    """The machine's float32 matmul rate on the current threads: the fastest of a few large square products
    (a peak is a best case: a median would put noise from other tenants of the VM into every fraction)."""
    best = 0.0
    for size in sizes:
        a, b = torch.randn(size, size), torch.randn(size, size)
        a @ b  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            best = max(best, 2 * size ** 3 / (time.perf_counter() - start) / 1e9)
    return best


def fraction_of_peak(gflop_per_step: float, ms_per_step: float, peak_gflops: float) -> float:
    """FLOPs per second of a step as a fraction of the machine's matmul rate."""
    return gflop_per_step / (ms_per_step / 1000) / peak_gflops


def recorded_step(name: str, batch_size: int) -> tuple[float, list[tuple]]:
    """One training step on the plain autograd path (recomputation by the chunked CPU kernels is not work):
    its GFLOP as ``FlopCounterMode`` counts them (forward + backward products and convolutions), and every op
    it counts, in order, as ``(op, args, kwargs)`` with each tensor replaced by ``("tensor", shape, stride,
    dtype)`` (what :func:`product_ceiling` replays)."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import FlopCounterMode, flop_registry

    from nnzoo.models.layers.fused import fused_kernels

    def describe(a):
        if isinstance(a, torch.Tensor):
            return ("tensor", tuple(a.shape), a.stride(), a.dtype)
        return tuple(describe(b) for b in a) if isinstance(a, (list, tuple)) else a

    class Recorder(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.calls: list[tuple] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.overloadpacket in flop_registry:
                self.calls.append((func, describe(args), describe(tuple(sorted((kwargs or {}).items())))))
            return func(*args, **(kwargs or {}))

    _, step = training_setup(name, batch_size, "cpu")
    with fused_kernels(False), FlopCounterMode(display=False) as counter, Recorder() as recorder:
        step()
    return counter.get_total_flops() / 1e9, recorder.calls


def step_gflop(name: str, batch_size: int) -> float:
    """FLOPs of one training step (forward + backward matrix products) on the plain autograd path."""
    return recorded_step(name, batch_size)[0]


def _operand(a):
    """A fresh tensor for a recorded ``("tensor", shape, stride, dtype)``; broadcast (stride-0) layouts kept."""
    if isinstance(a, tuple) and a[:1] == ("tensor",):
        _, shape, stride, dtype = a
        size = 1 + sum((n - 1) * abs(d) for n, d in zip(shape, stride))
        return torch.randn(size).to(dtype).as_strided(shape, stride)
    return type(a)(_operand(b) for b in a) if isinstance(a, (list, tuple)) else a


def product_ceiling(calls: list[tuple], repeats: int = 3) -> dict[str, float]:
    """A step's own matrix products (and convolutions; ``calls`` of :func:`recorded_step`), replayed alone:
    same shapes and memory layouts, fresh
    operands, no elementwise work between them.  Their time is a lower bound on the step, and their FLOP rate
    the highest fraction of peak any schedule of these products can reach on this machine.  Thin products
    (32 or 64 channels against 10^5 rows) are memory-bound, so this ceiling sits well below the square-matmul
    peak."""
    from torch.utils.flop_counter import FlopCounterMode
    counts: dict[tuple, int] = {}
    for call in calls:
        counts[call] = counts.get(call, 0) + 1
    seconds = flop = 0.0
    for (func, args, kwargs), count in counts.items():
        operands, options = _operand(args), dict(_operand(kwargs))
        seconds += count * _median_seconds(lambda: func(*operands, **options), repeats, warmup=1)
        with FlopCounterMode(display=False) as counter:
            func(*operands, **options)
        flop += count * counter.get_total_flops()
    return {"products_ms": 1000 * seconds, "products_gflop": flop / 1e9}


def gradient_agreement(name: str, batch_size: int = 16) -> float:
    """Largest relative difference (per parameter, to its largest entry) between the gradients of one step
    on the chunked CPU path and on the plain autograd path, same weights and batch, float32, no dropout."""
    from nnzoo.models.layers.fused import fused_kernels
    info, batch = _siren_batch(batch_size)
    model = create_model(name, info, **model_options(name)).eval()
    grads = []
    for enabled in (False, True):
        model.zero_grad()
        with fused_kernels(enabled):
            torch.nn.functional.cross_entropy(model(batch), batch.y).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    return max(((grads[1][n] - g).abs().max() / g.abs().max().clamp_min(1e-30)).item() for n, g in grads[0].items())


def one_cell(name: str, batch_size: int, chunked: bool, repeats: int) -> dict:
    """Training-step time and this process's peak RSS for one model/batch/path (run in a fresh process)."""
    from nnzoo.models.layers.fused import fused_kernels
    with fused_kernels(chunked):
        row = training_step(name, batch_size, "cpu", repeats=repeats)
    peak_rss = _high_water_mib()  # before the FLOP count's extra step
    return {**row, "ms_per_network": row["ms_per_step"] / batch_size, "peak_rss_mib": peak_rss,
            "gflop_per_step": step_gflop(name, batch_size)}


def _high_water_mib() -> float:
    """This process's peak resident memory. ``/proc``'s VmHWM starts afresh at exec; ``ru_maxrss`` would carry
    the peak of the parent that started this process (Linux keeps it across exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: maxrss (may be inherited)


def scaling(models: list[str], batches: dict[str, list[int]], repeats: int) -> list[dict]:
    """Cost per network at several batch sizes, with and without ``keep_large_allocations_on_heap`` (the
    process-wide malloc switch ``nnzoo fit`` applies), on the chunked and the plain path: one fresh process per
    cell, so no cell inherits another's allocator state or memory peak."""
    rows = []
    cells = [(name, batch_size, switch, chunked) for name in models
             for batch_size in batches.get(name, batches["default"]) for switch in (True, False)
             for chunked in (True, False)]
    with progress_bar(len(cells), "scaling cells") as advance:
        for name, batch_size, switch, chunked in cells:
            env = {**os.environ, "NNZOO_MALLOC_TUNING": "1" if switch else "0"}
            cmd = [sys.executable, __file__, "--one-cell", name, str(batch_size),
                   "chunked" if chunked else "plain", "--repeats", str(repeats)]
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
            cell = {"model": name, "batch_size": batch_size, "malloc_switch": switch, "chunked": chunked}
            if done.returncode != 0:
                tail = (done.stderr.strip().splitlines() or ["killed"])[-1][:200]
                rows.append({**cell, "error": f"exit {done.returncode}: {tail}"})
            else:
                rows.append({**cell, **json.loads(done.stdout.strip().splitlines()[-1])})
            r = rows[-1]
            console.print(f"{name} batch {batch_size} switch={'on' if switch else 'off'} "
                          f"{'chunked' if chunked else 'plain'}: " + (r["error"] if "error" in r else
                          f"{r['ms_per_network']:.2f} ms/network, peak RSS {r['peak_rss_mib']:,.0f} MiB"))
            advance(1)
    return rows


def _siren_batch(n: int, seed: int = 0) -> tuple[DataInfo, WeightBatch]:
    spec = siren_spec()
    params = siren_init(n, spec, torch.Generator().manual_seed(seed))
    info = DataInfo("mnist_inr", "classification", 10, (spec,), stats=layer_statistics([spec], [params]))
    return info, WeightBatch([spec], [params], torch.randint(0, 10, (n,)))


def batching(batch_size: int) -> dict[str, float]:
    """Graphs/s of the index-arithmetic batcher vs. PyG's Batch.from_data_list of per-network Data."""
    _, batch = _siren_batch(batch_size)
    spec, params = batch.specs[0], batch.params[0]
    fast = _median_seconds(lambda: batch_to_graph([spec], [params], reverse_edges=True), 20)
    slow = _median_seconds(lambda: Batch.from_data_list([network_to_data(spec, p) for p in params]), 5)
    return {"index_arithmetic_graphs_per_s": batch_size / fast, "pyg_data_list_graphs_per_s": batch_size / slow,
            "speedup": slow / fast}


def segment_reductions(batch_size: int, width: int = 32) -> dict[str, float]:
    """PNA's aggregation (mean, min, max, std; forward + backward) over the messages of ``batch_size`` MNIST
    SIRENs with reversed edges: ``torch.segment_reduce`` on target-sorted messages (``layers/pna.py``) vs.
    PyG's ``scatter`` and ``Tensor.scatter_reduce`` on the target index."""
    from torch_geometric.utils import scatter

    from nnzoo.models.layers.pna import aggregate
    _, batch = _siren_batch(batch_size)
    graph = batch_to_graph(batch.specs, batch.params, reverse_edges=True)
    target, n = graph.edge_index[1], graph.num_nodes
    messages = torch.randn(target.numel(), width, generator=torch.Generator().manual_seed(0))

    def run(reduce) -> None:
        m = messages.clone().requires_grad_()
        mean, low, high, mean_sq = reduce(m, "mean"), reduce(m, "min"), reduce(m, "max"), reduce(m * m, "mean")
        torch.cat([mean, low, high, (mean_sq - mean.pow(2)).clamp_min(1e-5).sqrt()], 1).sum().backward()

    def segment() -> None:
        m = messages.clone().requires_grad_()
        aggregate(m, graph.in_degree, ("mean", "min", "max", "std")).sum().backward()

    index = target.unsqueeze(-1).expand_as(messages)
    names = {"mean": "mean", "min": "amin", "max": "amax"}
    times = {"segment_reduce_ms": _median_seconds(segment, 10),
             "pyg_scatter_ms": _median_seconds(lambda: run(lambda m, how: scatter(m, target, 0, n, how)), 10),
             "scatter_reduce_ms": _median_seconds(lambda: run(lambda m, how: m.new_zeros(n, width).scatter_reduce(
                 0, index, m, names[how], include_self=False)), 10)}
    return {"messages": target.numel(), **{k: 1e3 * v for k, v in times.items()}}


def training_setup(name: str, batch_size: int, device: str, bf16: bool = False):
    """The default-config model and one training step of it (forward + backward + AdamW) on a batch of SIRENs:
    what this table times and ``profile_step.py`` profiles."""
    info, batch = _siren_batch(batch_size)
    model = create_model(name, info, **model_options(name)).to(device).train()
    batch = batch.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(model(batch).float(), batch.y)
        loss.backward()
        optimizer.step()
    return model, step


def training_step(name: str, batch_size: int, device: str, bf16: bool = False,
                  repeats: int | None = None) -> dict[str, float]:
    """Forward + backward + AdamW step of the default-config model on a batch of SIRENs."""
    model, step = training_setup(name, batch_size, device, bf16)
    sync = (lambda: torch.cuda.synchronize()) if device.startswith("cuda") else (lambda: None)
    seconds = _median_seconds(step, repeats=repeats or (10 if device == "cpu" else 50), sync=sync)
    return {"params": count_parameters(model), "ms_per_step": 1000 * seconds,
            "networks_per_s": batch_size / seconds, "epoch_5000_s": EPOCH_INRS / (batch_size / seconds)}


def editing_step(name: str, batch_size: int, device: str, bf16: bool = False,
                 repeats: int | None = None) -> dict[str, float]:
    """Forward + backward + AdamW step of the reference editing model (``mnist_inr_dilate`` recipe): predict
    a change per weight, render the edited SIRENs on the 28x28 grid, MSE against target images (``bf16``: the
    model under bfloat16 autocast, the rendering in float32, as ``EditingTask`` does)."""
    from omegaconf import OmegaConf

    from nnzoo.config import compose
    from nnzoo.data.siren_fit import render_inrs
    _, batch = _siren_batch(batch_size)
    spec, params = batch.specs[0], batch.params[0]
    info = DataInfo("mnist_inr_dilate", "editing", 1, (spec,), stats=layer_statistics([spec], [params]),
                    extra={"image_size": [28, 28]})
    options = {k: v for k, v in OmegaConf.to_container(compose(name, "mnist_inr_dilate").model).items() if k != "name"}
    model = create_model(name, info, **options).to(device).train()
    batch, target = batch.to(device), torch.rand(batch_size, 28, 28, device=device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sync = (lambda: torch.cuda.synchronize()) if device.startswith("cuda") else (lambda: None)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=bf16):
            edited = batch.params[0] + model(batch)[0]
        loss = (render_inrs(edited.float(), spec, 28, 28) - target).pow(2).mean()
        loss.backward()
        optimizer.step()

    seconds = _median_seconds(step, repeats=repeats or (5 if device == "cpu" else 50), sync=sync)
    return {"params": count_parameters(model), "ms_per_step": 1000 * seconds, "networks_per_s": batch_size / seconds}


def siren_fitting(num: int, compile: bool = False) -> dict[str, float]:
    """SIRENs/s of the offline builder's batched fitting to the 40 dB target on real MNIST images
    (compilation time included when ``compile``)."""
    from nnzoo.data.images import mnist_images
    from nnzoo.data.siren_fit import fit_sirens
    images, _ = mnist_images()
    start = time.perf_counter()
    result = fit_sirens(images[:num], siren_spec(), steps=2000, lr=3e-3, psnr_target=40.0, chunk_size=100,
                        compile=compile)
    seconds = time.perf_counter() - start
    return {"sirens": num, "seconds": seconds, "sirens_per_s": num / seconds,
            "mean_psnr_db": result.psnr.mean().item(), "reached_40db": (result.psnr >= 40).float().mean().item()}


def fit_peak_rss(epochs: int) -> dict[str, float]:
    """Peak resident memory of a real ``nnzoo fit --model gnn --data mnist_inr`` (default dataset), read from
    the fit process's own VmHWM (``ru_maxrss`` of a child would include this process's earlier peak)."""
    probe = (f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r}); "
             "from speed import _high_water_mib; from nnzoo.cli import main; rc = main(sys.argv[1:]); "
             "print(_high_water_mib()); sys.exit(rc)")
    with tempfile.TemporaryDirectory() as runs:
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", probe, "fit", "--model", "gnn", "--data", "mnist_inr",
                               f"run_dir={runs}", f"trainer.max_epochs={epochs}", "trainer.enable_progress_bar=false"],
                              check=True, capture_output=True, text=True)
        seconds = time.perf_counter() - start
    return {"epochs": epochs, "seconds": seconds, "peak_rss_mib": float(done.stdout.split()[-1])}


COMPILED_MODELS = tuple(n for n in MODELS.names() if compilable(MODELS.entry(n).factory))  # gnn, dwsnet, transformer
REFERENCE_NAMES = {"gnn": "NG-GNN", "transformer": "NG-T"}


def _reference_setup(name: str, batch_size: int, reference: Path, site: Path | None, device: str = "cpu"):
    """The reference model (mkofinas/neural-graphs, built from its own code and configs as
    ``learning_parity.py`` builds it) and one training step of it on the same SIRENs as nnzoo's rows."""
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    from learning_parity import build_reference, reference_inputs, reference_stats, setup_reference
    setup_reference(reference, site, "2.3")
    info, batch = _siren_batch(batch_size)
    torch.manual_seed(0)
    model = build_reference(reference, name, reference_stats(info.stats)).to(device).train()
    weights, biases = reference_inputs(batch.specs[0], batch.params[0].to(device))
    inputs, labels = (tuple(w.contiguous() for w in weights), tuple(b.contiguous() for b in biases)), batch.y.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(inputs), labels).backward()
        optimizer.step()
    return model, step


def _first_call_seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def compiled_rows(models: list[str], batch_size: int, repeats: int, reference: Path | None,
                  site: Path | None, device: str = "cpu", peak: float | None = None,
                  mode: str | None = None) -> dict[str, dict]:
    """Eager vs compiled (``compile=true``) training steps of each model, and the reference's, on one batch of
    SIRENs in this process.  Compilation is timed as a run meets it: the first training step, the first
    evaluation forward (eval mode and no gradients are a second graph) and the first step of a second batch
    size (the last, short batch of an epoch: dynamo then compiles one graph for every size).  ``pays back
    after`` is that time over the saving per step, the figure ``compile=auto`` reads."""
    from nnzoo.models.compiling import compile_counters, compile_model
    sync = (lambda: torch.cuda.synchronize()) if device.startswith("cuda") else (lambda: None)
    rows: dict[str, dict] = {}
    for name in models:
        torch.manual_seed(0)
        model, step = training_setup(name, batch_size, device)
        eager_s = _median_seconds(step, repeats, sync=sync)
        row = {"params": count_parameters(model), "eager_ms": 1000 * eager_s}
        torch._dynamo.reset()
        torch._dynamo.utils.counters.clear()
        torch.manual_seed(0)
        model, step = training_setup(name, batch_size, device)
        compile_model(model, mode=mode)
        first_train = _first_call_seconds(lambda: (step(), sync()))
        compiled_s = _median_seconds(step, repeats, sync=sync)
        _, eval_batch = _siren_batch(batch_size, seed=1)
        eval_batch = eval_batch.to(device)
        model.eval()
        with torch.no_grad():
            first_eval = _first_call_seconds(lambda: (model(eval_batch), sync()))
            eval_s = _median_seconds(lambda: model(eval_batch), 3, warmup=0, sync=sync)
        model.train()
        _, short = _siren_batch(max(1, batch_size // 2 + 3), seed=2)
        short = short.to(device)

        def short_step() -> None:
            torch.nn.functional.cross_entropy(model(short), short.y).backward()
        first_short = _first_call_seconds(lambda: (short_step(), sync()))
        short_s = _median_seconds(short_step, 2, warmup=0, sync=sync)
        compile_s = (first_train - compiled_s) + (first_eval - eval_s) + (first_short - short_s)
        saving = eager_s - compiled_s
        row.update({"compiled_ms": 1000 * compiled_s, "speedup": eager_s / compiled_s, "compile_s": compile_s,
                    "pays_back_after_steps": (compile_s / saving) if saving > 0 else None,
                    **compile_counters()})
        if peak and device == "cpu":
            gflop = step_gflop(name, batch_size)
            row.update({"gflop_per_step": gflop, "eager_of_peak": fraction_of_peak(gflop, row["eager_ms"], peak),
                        "compiled_of_peak": fraction_of_peak(gflop, row["compiled_ms"], peak)})
        if reference is not None and name in REFERENCE_NAMES:
            ref_model, ref_step = _reference_setup(name, batch_size, reference, site, device)
            row["reference_params"] = count_parameters(ref_model)
            row["reference_ms"] = 1000 * _median_seconds(ref_step, repeats, sync=sync)
        rows[name] = row
        console.print(f"{name}: eager {row['eager_ms']:.0f} ms, compiled {row['compiled_ms']:.0f} ms/step "
                      f"({row['speedup']:.2f}x; compiling {compile_s:.0f} s)"
                      + (f", reference {row['reference_ms']:.0f} ms" if "reference_ms" in row else ""))
    return rows


def _header(*columns: str) -> list[str]:
    """A markdown table's header row and separator."""
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]


def compiled_markdown(report: dict) -> str:
    """The "Compiled path" table of docs/results.md, from ``report['compiled']``."""
    c = report["compiled"]
    threads = f"{c['threads']} thread{'s' if c['threads'] != 1 else ''}"
    lines = [f"Batch {c['batch_size']}, {threads}, {c['device']}"
             + (f", float32 matmul peak {c['matmul_peak_gflops']:.1f} GFLOP/s" if c.get("matmul_peak_gflops") else "")
             + (", TF32 matmuls" if c.get("tf32") else "")
             + (f", torch.compile mode {c['compile_mode']}" if c.get("compile_mode") else "")
             + ". Reference: mkofinas/neural-graphs' own model and graph constructor, same SIRENs, same process.",
             "", *_header("model", "eager ms/step", "compiled ms/step", "speed-up", "of peak (eager → compiled)",
                          "compiling (s)", "pays back after (steps)", "graph breaks", "reference ms/step",
                          "compiled vs reference")]
    for name, r in c["rows"].items():
        peak = (f"{100 * r['eager_of_peak']:.0f}% → {100 * r['compiled_of_peak']:.0f}%" if "eager_of_peak" in r
                else "")
        pays = f"{r['pays_back_after_steps']:,.0f}" if r.get("pays_back_after_steps") else "never"
        ref = (f"{r['reference_ms']:,.0f} | {r['reference_ms'] / r['compiled_ms']:.2f}x" if "reference_ms" in r
               else "– | –")
        lines.append(f"| {name} | {r['eager_ms']:,.0f} | {r['compiled_ms']:,.0f} | {r['speedup']:.2f}x | {peak} | "
                     f"{r['compile_s']:,.0f} | {pays} | {r['graph_breaks']} | {ref} |")
    return "\n".join(lines) + "\n"


def markdown_tables(report: dict) -> str:
    """The CPU tables of docs/results.md, from the report: step cost and fraction of peak; per-network scaling."""
    peak = report.get("matmul_peak_gflops")
    lines = [f"Batch {report['batch_size']}, {report['threads']} threads, float32 matmul peak "
             f"{peak:.1f} GFLOP/s (fastest 2048 or 4096 square product). *Its products alone*: the step's "
             "matrix products replayed by themselves (same shapes and layouts); *their ceiling*: their FLOP rate "
             "as a fraction of peak, the most any schedule of these products can reach here." if peak else "",
             "", *_header("model", "params", "ms/step (fwd+bwd)", "networks/s", "epoch of 5,000 INRs (s)",
                          "GFLOP/step", "of peak", "its products alone (ms)", "their ceiling")]
    for name, r in report["models"].items():
        flops = (f"{r['gflop_per_step']:.2f} | {100 * r['fraction_of_peak']:.0f}%" if "gflop_per_step" in r
                 else " | ")
        flops += (f" | {r['products_ms']:,.1f} | {100 * r['ceiling_of_peak']:.0f}%" if "products_ms" in r
                  else " | | ")
        lines.append(f"| {name} | {r['params']:,} | {r['ms_per_step']:,.1f} | {r['networks_per_s']:,.0f} | "
                     f"{r['epoch_5000_s']:,.1f} | {flops} |")
    if report.get("scaling"):
        lines += ["", "| model | batch | malloc switch | path | ms/step | ms/network | of peak | peak RSS (MiB) |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in report["scaling"]:
            head = (f"| {r['model']} | {r['batch_size']} | {'on' if r['malloc_switch'] else 'off'} | "
                    f"{'chunked' if r['chunked'] else 'plain'} |")
            if "error" in r:
                lines.append(f"{head} {r['error']} | | | |")
                continue
            share = f"{100 * fraction_of_peak(r['gflop_per_step'], r['ms_per_step'], peak):.0f}%" if peak else ""
            lines.append(f"{head} {r['ms_per_step']:,.0f} | {r['ms_per_network']:.2f} | {share} | "
                         f"{r['peak_rss_mib']:,.0f} |")
    return "\n".join(lines).strip() + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--models", nargs="*", default=None, help="default: every registered model")
    parser.add_argument("--skip-fit", action="store_true", help="skip SIREN fitting and the peak-RSS fit")
    parser.add_argument("--sirens", type=int, default=300, help="SIRENs to fit for the fitting rate")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed steps per model (default: 10 training / 5 editing on cpu, 50 on a GPU)")
    parser.add_argument("--bf16", action="store_true", help="add bf16 autocast rows on cpu too (always on cuda)")
    parser.add_argument("--out", default=None, help="JSON to write (default: benchmarks/results/speed-<device>.json)")
    parser.add_argument("--merge", action="store_true",
                        help="keep the rows of other batch sizes already in the JSON, under by_batch_size")
    parser.add_argument("--kernels", action="store_true",
                        help="only graph batching and segment reductions against PyG's; print, write nothing")
    parser.add_argument("--scaling", action="store_true",
                        help="add per-network cost at --scaling-batches, malloc switch on/off, chunked/plain")
    parser.add_argument("--keep-scaling", action="store_true",
                        help="without --scaling: keep the scaling rows of the last run (same code only)")
    parser.add_argument("--scaling-batches", type=int, nargs="*", default=[64, 128, 256])
    parser.add_argument("--scaling-models", nargs="*", default=["gnn", "transformer"])
    parser.add_argument("--compiled", action="store_true",
                        help="only eager vs compiled steps of gnn, transformer and dwsnet (and the reference's with "
                             "--reference): stored under 'compiled' in the JSON (speed-<device>.json), table beside "
                             "it (speed-compiled-<device>.md)")
    parser.add_argument("--tf32", action="store_true", help="TF32 matrix products for float32 (CUDA)")
    parser.add_argument("--compile-mode", default=None,
                        help="torch.compile mode for --compiled (reduce-overhead: CUDA graphs)")
    parser.add_argument("--reference", type=Path, default=None,
                        help="a mkofinas/neural-graphs checkout kept outside the repository (reference rows)")
    parser.add_argument("--ref-site", type=Path, default=None,
                        help="folder with the reference's extra packages (see learning_parity.py)")
    parser.add_argument("--one-cell", nargs=3, metavar=("MODEL", "BATCH", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    unknown = sorted((set(args.models or []) | set(args.scaling_models)) - set(MODELS.names()))
    if unknown:  # before any timing
        parser.error(f"unknown model(s) {', '.join(unknown)} in --models/--scaling-models; "
                     f"known: {', '.join(MODELS.names())}")
    if args.compiled and set(args.models or []) - set(COMPILED_MODELS):
        parser.error(f"--compiled times {', '.join(COMPILED_MODELS)} (the models with a compiled path); "
                     f"drop {', '.join(sorted(set(args.models) - set(COMPILED_MODELS)))} from --models")
    if args.device == "cpu" and os.environ.get("NNZOO_BENCH_THREADS"):
        torch.set_num_threads(int(os.environ["NNZOO_BENCH_THREADS"]))
    keep_large_allocations_on_heap()  # as nnzoo fit does (NNZOO_MALLOC_TUNING=0: not)
    if args.one_cell:
        name, batch_size, path = args.one_cell
        print(json.dumps(one_cell(name, int(batch_size), path == "chunked", args.repeats or 5)))
        return

    if args.tf32:
        torch.set_float32_matmul_precision("high")
    if args.compiled:
        out = Path(args.out) if args.out else RESULTS / f"speed-{args.device.split(':')[0]}.json"
        peak = matmul_peak_gflops() if args.device == "cpu" else None
        rows = compiled_rows(args.models or list(COMPILED_MODELS), args.batch_size, args.repeats or 5, args.reference,
                             args.ref_site, args.device, peak, args.compile_mode)
        report = json.loads(out.read_text()) if out.is_file() else {"device": args.device}
        report["compiled"] = {"device": torch.cuda.get_device_name() if args.device.startswith("cuda") else
                              (platform.processor() or platform.machine()), "torch": torch.__version__,
                              "threads": torch.get_num_threads(), "batch_size": args.batch_size,
                              "tf32": args.tf32, "compile_mode": args.compile_mode, "matmul_peak_gflops": peak,
                              "rows": rows}
        write_json(out, report)
        table = out.parent / (out.stem.replace("speed-", "speed-compiled-", 1) + ".md")  # -> speed-compiled-cpu.md
        write_text(table, compiled_markdown(report))
        console.print(compiled_markdown(report))
        console.print(f"written {out} and {table} (the compiled-path table of docs/results.md: paste it there)")
        return
    report: dict = {"device": args.device, "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "cpu": platform.processor() or platform.machine(), "batch_size": args.batch_size}
    if args.device.startswith("cuda"):
        report["gpu"] = torch.cuda.get_device_name()
    report["batching"] = batching(args.batch_size)
    report["reductions"] = segment_reductions(args.batch_size)
    if args.kernels:
        console.print_json(data={k: report[k] for k in ("threads", "batch_size", "batching", "reductions")})
        return
    report["models"] = {}
    bf16 = args.bf16 or args.device.startswith("cuda")
    if args.device == "cpu":
        report["matmul_peak_gflops"] = matmul_peak_gflops()
        console.print(f"float32 matmul peak: {report['matmul_peak_gflops']:.1f} GFLOP/s "
                      f"({report['threads']} threads)")
    for name in args.models or MODELS.names():
        report["models"][name] = training_step(name, args.batch_size, args.device, repeats=args.repeats)
        if args.device == "cpu":
            row = report["models"][name]
            row["gflop_per_step"], calls = recorded_step(name, args.batch_size)
            row["fraction_of_peak"] = fraction_of_peak(row["gflop_per_step"], row["ms_per_step"],
                                                       report["matmul_peak_gflops"])
            row.update(product_ceiling(calls))
            row["ceiling_of_peak"] = fraction_of_peak(row["products_gflop"], row["products_ms"],
                                                      report["matmul_peak_gflops"])
        if bf16:
            report["models"][f"{name} (bf16)"] = training_step(name, args.batch_size, args.device, bf16=True,
                                                                repeats=args.repeats)
        console.print(f"{name}: {report['models'][name]['ms_per_step']:.0f} ms/step")
    report["editing"] = {}
    for name in [n for n in args.models or MODELS.names() if "editing" in MODELS.entry(n).meta["tasks"]]:
        report["editing"][name] = editing_step(name, args.batch_size, args.device, repeats=args.repeats)
        if bf16:
            report["editing"][f"{name} (bf16)"] = editing_step(name, args.batch_size, args.device, bf16=True,
                                                               repeats=args.repeats)
        console.print(f"{name} (editing): {report['editing'][name]['ms_per_step']:.0f} ms/step")
    if args.scaling and args.device == "cpu":
        report["gradient_agreement"] = {name: gradient_agreement(name) for name in args.scaling_models}
        batches = {"default": args.scaling_batches,  # NG-T's dense edges: ~13 GB at 128, batch 256 does not fit
                   "transformer": [b for b in args.scaling_batches if b <= 128]}
        report["scaling"] = scaling(args.scaling_models, batches, args.repeats or 5)
    out = Path(args.out) if args.out else RESULTS / f"speed-{args.device.split(':')[0]}.json"
    # figures this run does not measure, kept from the last one: SIREN fitting (model-independent) with
    # --skip-fit, the scaling rows with --keep-scaling
    kept = ((("siren_fitting", "siren_fitting_compiled") if args.skip_fit else ())
            + (("scaling", "gradient_agreement") if args.keep_scaling and not args.scaling else ()))
    if kept and out.is_file():
        previous = json.loads(out.read_text())
        report.update({k: previous[k] for k in kept if k in previous})
    if not args.skip_fit:
        report["siren_fitting"] = siren_fitting(args.sirens)
        try:
            report["siren_fitting_compiled"] = siren_fitting(args.sirens, compile=True)
        except Exception as exc:  # no C++ compiler, unsupported platform: report, don't fail
            report["siren_fitting_compiled"] = {"error": str(exc).splitlines()[0][:200]}
        report["fit_memory"] = fit_peak_rss(epochs=1)

    table = Table(title=f"nnzoo speed on {args.device} ({report['threads']} threads), batch {args.batch_size}")
    for col in ("model", "params", "ms/step (fwd+bwd)", "networks/s", "epoch of 5,000 INRs (s)",
                "GFLOP/step", "of matmul peak", "products alone (ms)", "ceiling", "batching / step time"):
        table.add_column(col, justify="right")
    graphs_per_s = report["batching"]["index_arithmetic_graphs_per_s"]
    for name, r in report["models"].items():
        flops = (f"{r['gflop_per_step']:.2f}", f"{100 * r['fraction_of_peak']:.0f}%") if "gflop_per_step" in r \
            else ("", "")
        flops += ((f"{r['products_ms']:.1f}", f"{100 * r['ceiling_of_peak']:.0f}%") if "products_ms" in r
                  else ("", ""))
        table.add_row(name, f"{r['params']:,}", f"{r['ms_per_step']:.1f}", f"{r['networks_per_s']:.0f}",
                      f"{r['epoch_5000_s']:.1f}", *flops, f"{r['networks_per_s'] / graphs_per_s:.3f}")
    console.print(table)
    table = Table(title="editing (mnist_inr_dilate reference models: change per weight, render 28x28, MSE) "
                        "beside classification (mnist_inr)")
    for col in ("model", "editing params", "editing networks/s", "classification networks/s", "ratio"):
        table.add_column(col, justify="right")
    for name, r in report["editing"].items():
        cls = report["models"][name]["networks_per_s"]
        table.add_row(name, f"{r['params']:,}", f"{r['networks_per_s']:.0f}", f"{cls:.0f}",
                      f"{r['networks_per_s'] / cls:.2f}")
    console.print(table)
    b = report["batching"]
    console.print(f"graph batching: {b['index_arithmetic_graphs_per_s']:,.0f} graphs/s (index arithmetic) vs "
                  f"{b['pyg_data_list_graphs_per_s']:,.0f} graphs/s (PyG Batch.from_data_list): "
                  f"{b['speedup']:.0f}x")
    if "siren_fitting" in report:
        f = report["siren_fitting"]
        console.print(f"SIREN fitting: {f['sirens_per_s']:.1f} SIRENs/s to mean {f['mean_psnr_db']:.1f} dB "
                      f"({100 * f['reached_40db']:.0f}% >= 40 dB)")
        c = report["siren_fitting_compiled"]
        if "error" not in c:
            console.print(f"SIREN fitting with torch.compile: {c['sirens_per_s']:.1f} SIRENs/s "
                          f"(mean {c['mean_psnr_db']:.1f} dB)")
    if "fit_memory" in report:
        m = report["fit_memory"]
        console.print(f"peak RSS of `nnzoo fit --model gnn --data mnist_inr` (1 epoch): {m['peak_rss_mib']:.0f} MiB")
    if args.merge:  # one set of rows per batch size: the runs of several batch sizes share one file
        previous = json.loads(out.read_text()) if out.is_file() else {}
        rows = previous.get("by_batch_size", {}) if previous.get("device") == args.device else {}
        rows[str(args.batch_size)] = {k: report[k] for k in ("batching", "reductions", "models", "editing")
                                      if k in report}
        report["by_batch_size"] = dict(sorted(rows.items(), key=lambda row: int(row[0])))
    write_json(out, report)
    console.print(f"written {out}")
    if args.device == "cpu" and not args.out:
        tables = RESULTS / "speed-cpu.md"
        write_text(tables, markdown_tables(report))
        console.print(f"written {tables} (the CPU speed tables of docs/results.md: paste them there)")


if __name__ == "__main__":
    main()
