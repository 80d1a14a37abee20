"""Small image classifiers of four families, written in ordinary PyTorch: what the offline architecture zoos train.

The ``vit_zoo`` and ``mixed_zoo`` datasets (:mod:`nnzoo.data.builders.arch_zoo`) train these modules with a
plain ``torch.optim`` loop and read each architecture's graph with
:func:`nnzoo.nets.spec_from_module` (``graph=True``), so a network in the zoo is exactly a ``state_dict`` of one
of these classes, and users can rebuild, run or extend them:

* :class:`ZooViT`: a convolutional patch embedding, a class token, learned positions, pre-norm
  ``nn.TransformerEncoderLayer`` blocks, a final LayerNorm and a linear head on the class token;
* :class:`ZooResNet`: a conv-BN-ReLU stem and torchvision-style basic blocks (two 3x3 convs with BatchNorm, an
  identity or 1x1-conv-BN shortcut), global average pooling, a linear head;
* :class:`ZooCNN`: strided 3x3 convolutions, global average pooling, a linear head;
* :class:`ZooMLP`: dense layers on the (average-pooled) image.

An architecture is a plain dict (``{"family": "vit", "depth": 2, ...}``, :func:`build_network`): JSON-safe,
so the zoo's index lists it beside the graph spec read off it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from nnzoo.errors import NnzooError

FAMILIES = ("mlp", "cnn", "resnet", "vit")
_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}


class ZooViT(nn.Module):
    """A small vision transformer (Dosovitskiy et al. 2021) for ``image_size`` x ``image_size`` images."""

    def __init__(self, image_size: int = 16, channels: int = 1, classes: int = 10, patch: int = 4, width: int = 32,
                 depth: int = 2, heads: int = 2, mlp_ratio: int = 2, activation: str = "gelu",
                 dropout: float = 0.0) -> None:
        super().__init__()
        tokens = (image_size // patch) ** 2
        self.patch = nn.Conv2d(channels, width, patch, stride=patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, width))
        self.pos = nn.Parameter(torch.randn(1, tokens + 1, width) * 0.02)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(width, heads, mlp_ratio * width, dropout=dropout, activation=activation,
                                       batch_first=True, norm_first=True) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(width, classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2)  # (B, tokens, width)
        x = torch.cat([self.cls.expand(len(x), -1, -1), x], dim=1) + self.pos
        for block in self.blocks:
            x = block(x)
        return self.head(self.drop(self.norm(x)[:, 0]))


class BasicBlock(nn.Module):
    """torchvision's ResNet basic block: conv-BN-ReLU-conv-BN plus an identity or 1x1-conv-BN shortcut, ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                           if stride != 1 or cin != cout else None)

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + (x if self.downsample is None else self.downsample(x)))


class ZooResNet(nn.Module):
    """Stem, ``blocks`` basic blocks (every second one halves the resolution and doubles the width), pooled head."""

    def __init__(self, channels: int = 1, classes: int = 10, width: int = 8, blocks: int = 2,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU())
        layers, c = [], width
        for i in range(blocks):
            out, stride = (2 * c, 2) if i % 2 else (c, 1)
            layers.append(BasicBlock(c, out, stride))
            c = out
        self.layers = nn.Sequential(*layers)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(c, classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.layers(self.stem(x))
        return self.fc(self.drop(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)))


class ZooCNN(nn.Module):
    """``depth`` 3x3 convolutions of stride 2 (padding 1) with an activation, global average pooling, a head."""

    def __init__(self, channels: int = 1, classes: int = 10, width: int = 16, depth: int = 3,
                 activation: str = "relu", dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = channels
        for _ in range(depth):
            layers += [nn.Conv2d(c, width, 3, stride=2, padding=1), _ACTIVATIONS[activation]()]
            c = width
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout))
        self.head = nn.Linear(c, classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class ZooMLP(nn.Module):
    """``depth`` hidden dense layers of ``width`` neurons on the image average-pooled by ``pool``.

    The first dense layer is written as a convolution whose kernel covers the whole pooled image: the same
    function as ``nn.Linear`` on the flattened pixels, but its input neurons are the image's channels, as for
    every other family, so MLPs, CNNs, ResNets and ViTs share input nodes and mix in one graph dataset (their
    edge features are padded to the largest kernel: 8x8 for 16x16 images pooled by 2, a ViT's 8x8 patches).
    """

    def __init__(self, image_size: int = 16, channels: int = 1, classes: int = 10, width: int = 32,
                 depth: int = 2, activation: str = "relu", pool: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        self.pool = pool
        side = image_size // pool
        layers: list[nn.Module] = [nn.Conv2d(channels, width, side), nn.Flatten(), _ACTIVATIONS[activation](),
                                   nn.Dropout(dropout)]
        for _ in range(depth - 1):
            layers += [nn.Linear(width, width), _ACTIVATIONS[activation](), nn.Dropout(dropout)]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, classes)

    def forward(self, x: Tensor) -> Tensor:
        if self.pool > 1:
            x = nn.functional.avg_pool2d(x, self.pool)
        return self.head(self.body(x))


def build_network(arch: dict[str, Any], image_size: int, channels: int = 1, classes: int = 10,
                  dropout: float = 0.0) -> nn.Module:
    """The module of architecture ``arch`` (a dict with ``family`` and that family's sizes)."""
    options = {k: v for k, v in arch.items() if k != "family"}
    family = arch.get("family")
    if family == "vit":
        return ZooViT(image_size, channels, classes, dropout=dropout, **options)
    if family == "resnet":
        return ZooResNet(channels, classes, dropout=dropout, **options)
    if family == "cnn":
        return ZooCNN(channels, classes, dropout=dropout, **options)
    if family == "mlp":
        return ZooMLP(image_size, channels, classes, dropout=dropout, **options)
    raise NnzooError(f"architecture family {family!r} is not one of {', '.join(FAMILIES)}")


def describe(arch: dict[str, Any]) -> str:
    """``vit depth=2 width=32 ...``: one architecture in one short line."""
    return " ".join([str(arch.get("family")), *(f"{k}={v}" for k, v in arch.items() if k != "family")])
