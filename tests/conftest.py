"""Shared fixtures: small real datasets built once per test session, random networks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(min(2, torch.get_num_threads()))


def _check_tests_package() -> None:
    """``from tests.conftest import ...`` must reach this folder.  An installed distribution with a top-level
    ``tests`` package (nfn 0.1.2, a dependency, ships one) wins over it unless ``tests/__init__.py`` exists."""
    import importlib.util
    spec = importlib.util.find_spec("tests")
    found = Path(spec.origin).resolve() if spec is not None and spec.origin else None
    if found != Path(__file__).resolve().parent / "__init__.py":
        raise pytest.UsageError(f"'import tests' finds {found or 'no regular package'}, not this folder's "
                                f"__init__.py: restore {Path(__file__).resolve().parent / '__init__.py'}")


_check_tests_package()


@pytest.fixture(scope="session")
def nnzoo_home(tmp_path_factory) -> Path:
    """A private cache folder so tests never touch the user's ~/.cache/nnzoo."""
    home = tmp_path_factory.mktemp("nnzoo_home")
    os.environ["NNZOO_HOME"] = str(home)
    return home


SMALL_INR_BUILD = {"size": 600, "seed": 0, "lr": 5e-3, "psnr_target": 35.0}
"""A 600-INR MNIST dataset (480/60/60), fitted to 35 dB: ~15 s to build on 2 cores."""


@pytest.fixture(scope="session")
def small_inr_datamodule(nnzoo_home):
    from nnzoo.data import create_datamodule
    dm = create_datamodule("mnist_inr", build=SMALL_INR_BUILD, batch_size=32)
    dm.prepare_data()
    return dm


SMALL_BUILD_OVERRIDES = [f"data.build.{k}={v}" for k, v in SMALL_INR_BUILD.items()]


def fit_small(run_dir: Path, model: str, data: str, *overrides: str) -> tuple[Path, dict]:
    """``nnzoo fit`` on the small built INR dataset, through the CLI; returns the run folder and its metrics."""
    import json

    from nnzoo.cli import main
    code = main(["fit", "--model", model, "--data", data, f"run_dir={run_dir}", *SMALL_BUILD_OVERRIDES,
                 "data.batch_size=32", "trainer.enable_progress_bar=false", *overrides])
    assert code == 0
    (metrics_file,) = run_dir.glob("*/version_*/metrics.json")
    return metrics_file.parent, json.loads(metrics_file.read_text())


def random_params(spec, n: int, seed: int = 0, scale: float = 0.5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, spec.num_params, generator=g) * scale


@pytest.fixture(scope="session")
def tiny_inr_root(tmp_path_factory) -> Path:
    """A tiny DWSNets-format dataset of random SIRENs (48/16/16, random labels): for plumbing tests
    (resume, DDP, determinism, errors) where learning is not the point and building would be slow."""
    from nnzoo.data.formats.dwsnets import SPLITS, write_dwsnets
    from nnzoo.nets import siren_spec
    root = tmp_path_factory.mktemp("tiny_inr")
    spec = siren_spec()
    sizes = dict(zip(SPLITS, (48, 16, 16)))
    params = {s: random_params(spec, n, seed=i, scale=0.2) for i, (s, n) in enumerate(sizes.items())}
    labels = {s: torch.arange(n) % 10 for s, n in sizes.items()}
    ids = {s: torch.arange(n) + 1000 * i for i, (s, n) in enumerate(sizes.items())}
    write_dwsnets(root, spec, params, labels, ids)
    return root


def tiny_fit_args(root: Path, run_dir: Path, *extra: str) -> list[str]:
    """CLI arguments of a seconds-long fit of a small GNN on :func:`tiny_inr_root`."""
    return ["fit", "--model", "gnn", "--data", "mnist_inr", f"data.root={root}", f"run_dir={run_dir}",
            "data.batch_size=16", "model.hidden=8", "model.layers=2", "model.probes=0",
            "model.fourier_features=16", "optim.warmup_steps=2", "trainer.max_epochs=2",
            "trainer.enable_progress_bar=false", *extra]


def training_losses(model, batch, labels, optimizer, steps: int) -> list[float]:
    """Cross-entropy after each of ``steps`` optimiser steps on one batch (the overfitting tests' loop)."""
    import torch.nn.functional as F
    losses = []
    for _ in range(steps):
        loss = F.cross_entropy(model(batch), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses
