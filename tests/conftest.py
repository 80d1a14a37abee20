"""Shared fixtures: small real datasets built once per test session, random networks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(min(2, torch.get_num_threads()))


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


def random_params(spec, n: int, seed: int = 0, scale: float = 0.5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, spec.num_params, generator=g) * scale
