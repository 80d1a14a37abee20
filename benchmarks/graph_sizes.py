"""Graph sizes of the architecture zoos and what a training step on their largest network costs.

For each zoo (``vit_zoo``, ``mixed_zoo``, and the Small Transformer Zoo's MNIST architecture), every
architecture of its grid is read into a graph; the table lists the largest one's neurons (nodes), edges and
parameters, NG-T's neuron limit at the zoo's recipe widths (:func:`nnzoo.models.transformer.max_nodes`), and
the median forward+backward time of one training step of each model at batch 8 on copies of that network
(random weights; the zoo's model recipe; NG-T refused beyond its limit is reported as such).

    python benchmarks/graph_sizes.py                   # sizes and step times (a few minutes on 2 cores)
    python benchmarks/graph_sizes.py --no-time         # sizes only (seconds)
    python benchmarks/graph_sizes.py --zoos vit_zoo --models gnn transformer --repeats 3

Writes ``benchmarks/results/graph_sizes.json`` and ``.md`` (atomically).  Nothing here is a pass/fail test.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from nnzoo.config import compose, to_container
from nnzoo.data.builders.arch_zoo import ArchZooBuildConfig, arch_spec
from nnzoo.data.weights import DataInfo, WeightBatch, layer_statistics
from nnzoo.errors import IncompatibleError
from nnzoo.io import write_json, write_text
from nnzoo.models import create_model
from nnzoo.models.transformer import max_nodes
from nnzoo.progress import console, progress_bar

RESULTS = Path(__file__).resolve().parent / "results"
ZOOS = ("vit_zoo", "mixed_zoo", "small_transformer_zoo")
MODELS = ("gnn", "transformer", "statnn")


def grid_architectures(kind: str, config: ArchZooBuildConfig) -> list[dict[str, Any]]:
    """Every architecture of a zoo's grid (ViT widths that heads do not divide are skipped, as the build does)."""
    archs = []
    for family, grid in config.architecture_grid(kind).items():
        keys = sorted(grid)
        for combo in itertools.product(*(grid[k] for k in keys)):
            arch = {"family": family, **dict(zip(keys, combo))}
            if family != "vit" or arch["width"] % arch["heads"] == 0:
                archs.append(arch)
    return archs


def largest_spec(zoo: str, config: ArchZooBuildConfig | None = None):
    """The zoo's largest network by neurons, and how many architectures its grid has."""
    if zoo == "small_transformer_zoo":  # one architecture: vision_task/model.py with the MNIST sweep's sizes
        from nnzoo.data.formats.small_transformer_zoo import zoo_spec
        return zoo_spec(dict(dim=32, layers=2, heads=2, forward_mul=2, classes=10, channels=1, patch=4,
                             image_size=28)), 1
    config = config or ArchZooBuildConfig()
    archs = grid_architectures(zoo, config)
    specs = [arch_spec(a, config.image_size) for a in archs]
    return max(specs, key=lambda s: s.num_nodes), len(specs)


def recipe(model: str, zoo: str) -> dict[str, Any]:
    """The model's options on the zoo: its config with the zoo's recipe merged over it."""
    options = to_container(compose(model, zoo, "default").model)
    options.pop("name", None)
    options.pop("class_path", None)
    return options


def step_ms(model_name: str, options: dict[str, Any], spec, batch: int, repeats: int) -> float:
    """Median milliseconds of forward + backward of one batch of ``batch`` copies of ``spec`` (random weights)."""
    generator = torch.Generator().manual_seed(0)
    params = torch.randn(batch, spec.num_params, generator=generator) * 0.1
    info = DataInfo("graph_sizes", "regression", 1, (spec,), layer_statistics([spec], [params]))
    model = create_model(model_name, info, **options).train()
    data = WeightBatch([spec], [params], torch.zeros(batch, dtype=torch.long))

    def step() -> None:
        model.zero_grad(set_to_none=True)
        model(data).sum().backward()

    step()  # warm-up (graph templates, allocator)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def measure(zoos: list[str], models: list[str], batch: int, repeats: int, timed: bool) -> list[dict[str, Any]]:
    rows = []
    with progress_bar(len(zoos) * (1 + len(models) * timed), "graph sizes and step costs") as advance:
        for zoo in zoos:
            spec, count = largest_spec(zoo)
            advance(1)
            options = recipe("transformer", zoo) if zoo != "small_transformer_zoo" else recipe("transformer",
                                                                                              "cnn_wild_park")
            limit = max_nodes(d_edge=options["d_edge"], d_attn=options["d_attn"],
                              d_edge_hidden=options["d_edge_hidden"], heads=options["heads"],
                              layers=options["layers"], edge_updates=options["edge_updates"])
            row: dict[str, Any] = {"zoo": zoo, "architectures": count, "largest": spec.name,
                                   "nodes": spec.num_nodes, "edges": len(spec.edge_array),
                                   "params": spec.num_params, "ngt_max_nodes": limit, "batch": batch, "step_ms": {}}
            for name in models if timed else ():
                data = zoo if zoo != "small_transformer_zoo" else "cnn_wild_park"  # its recipes: the closest
                try:
                    row["step_ms"][name] = round(step_ms(name, recipe(name, data), spec, batch, repeats), 1)
                except IncompatibleError:  # NG-T beyond its neuron limit (the one line nnzoo fit prints)
                    row["step_ms"][name] = f"refused: {spec.num_nodes} neurons > {limit}"
                advance(1)
            rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]], models: list[str]) -> str:
    head = ["zoo", "architectures", "largest network", "nodes", "edges", "params", "NG-T max nodes",
            *[f"{m} step ms (batch {rows[0]['batch']})" for m in models]]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows:
        steps = [str(r["step_ms"].get(m, "not timed")) for m in models]
        lines.append("| " + " | ".join([r["zoo"], str(r["architectures"]), r["largest"], str(r["nodes"]),
                                        f"{r['edges']:,}", f"{r['params']:,}", str(r["ngt_max_nodes"]), *steps])
                     + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zoos", nargs="*", default=list(ZOOS), choices=ZOOS)
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=MODELS)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--no-time", action="store_true", help="graph sizes only")
    parser.add_argument("--out", default=str(RESULTS / "graph_sizes.json"))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = measure(args.zoos, args.models, args.batch_size, args.repeats, not args.no_time)
    out = Path(args.out)
    report = {"torch_threads": torch.get_num_threads(), "rows": rows}
    write_json(out, report)
    write_text(out.with_suffix(".md"), markdown(rows, args.models))
    console.print(markdown(rows, args.models), markup=False, highlight=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
