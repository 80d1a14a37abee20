"""Multi-view INR sets (``data.build.views=k``): k SIRENs per training image, one per val/test image."""

import json
from pathlib import Path

import pytest
import torch

from nnzoo.data.builders.inr import InrBuildConfig, build_inr_dataset, read_build_info
from nnzoo.data.formats.dwsnets import load_dwsnets
from nnzoo.data.images import mnist_images
from nnzoo.data.siren_fit import grid_coordinates, psnr_from_mse
from nnzoo.errors import NnzooError
from nnzoo.nets import mlp_forward
from nnzoo.nets.spec import siren_spec

RECIPE = {"size": 100, "seed": 0, "lr": 5e-3, "psnr_target": 30.0, "steps": 300}
"""100 MNIST images (80/10/10) fitted to 30 dB: a few seconds a view."""


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("multiview")
    one = build_inr_dataset(root, InrBuildConfig(**RECIPE))
    three = build_inr_dataset(root, InrBuildConfig(**RECIPE, views=3, view_lr_spread=1.0))
    spec = siren_spec((2, 32, 32, 1), w0=30.0)
    read = {name: load_dwsnets(folder / "mnist_splits.json", spec, cache_dir=root / "cache", num_classes=10)
            for name, folder in (("one", one), ("three", three))}
    return one, three, read


def test_one_view_recipes_keep_their_cache_key():
    """Caches built before views existed stay valid: the key of the default recipe is the one it had then."""
    assert InrBuildConfig().key() == "0298e7699c4f"
    assert InrBuildConfig(views=2).key() != InrBuildConfig().key()
    assert InrBuildConfig(views=2, view_lr_spread=0.5).key() != InrBuildConfig(views=2).key()


def test_views_multiply_training_inrs_only_and_never_leak_images(built):
    _, three, read = built
    one_data, data = read["one"], read["three"]
    sizes = {s: len(data.params[s]) for s in ("train", "val", "test")}
    assert sizes == {"train": 3 * 80, "val": 10, "test": 10}
    assert read_build_info(three)["sizes"] == sizes and read_build_info(three)["images"]["train"] == 80
    train_ids = set(data.ids["train"].tolist())
    assert len(train_ids) == 80 and torch.bincount(data.ids["train"]).max() == 3
    for split in ("val", "test"):
        assert not train_ids & set(data.ids[split].tolist())
        assert torch.equal(data.ids[split], one_data.ids[split])
    # every file keeps the public name; extra views live in sibling trees
    paths = json.loads((three / "mnist_splits.json").read_text())["train"]["path"]
    trees = {Path(p).parts[0] for p in paths}
    assert trees == {"mnist-inrs", "mnist-inrs-view1", "mnist-inrs-view2"}
    assert all(Path(p).parts[1].startswith("mnist_png_training_") for p in paths)


def test_view_zero_is_the_one_view_build_and_extra_views_are_other_sirens_of_the_same_images(built):
    _, _, read = built
    one, three = read["one"], read["three"]
    n = len(one.params["train"])
    assert torch.equal(three.params["train"][:n], one.params["train"])
    assert torch.equal(three.params["test"], one.params["test"])
    images, labels = mnist_images()
    coords = grid_coordinates(28, 28)
    spec = three.spec
    for view in (1, 2):
        rows = slice(view * n, (view + 1) * n)
        ids = three.ids["train"][rows]
        assert torch.equal(ids, one.ids["train"]) and torch.equal(three.labels["train"][rows], labels[ids])
        weights = three.params["train"][rows]
        assert (weights - one.params["train"]).abs().mean() > 0.25 * weights.abs().mean()  # not a copy
        rendered = mlp_forward(weights[:8], spec, coords).view(8, 28, 28)
        psnr = psnr_from_mse((rendered - images[ids[:8]]).pow(2).mean(dim=(1, 2)))
        assert psnr.min() >= RECIPE["psnr_target"] - 1.0


def test_view_learning_rates_spread_as_asked(built):
    _, three, _ = built
    assert read_build_info(three)["view_learning_rates"] == pytest.approx([5e-3, 2.5e-3, 1e-2])


@pytest.mark.parametrize("key, value", [("views", 0), ("views", 2.5), ("views", True), ("views", 21),
                                        ("view_lr_spread", -1.0), ("view_lr_spread", "wide")])
def test_bad_view_options_are_refused_in_one_line(key, value):
    with pytest.raises(NnzooError, match=f"data.build.{key}"):
        InrBuildConfig(**{key: value}).validate()


def test_the_datamodule_passes_views_to_the_build_and_checks_them_first(nnzoo_home):
    """``nnzoo fit ... data.build.views=k`` reaches the recipe; a bad value fails before anything is built."""
    from nnzoo.data import create_datamodule
    dm = create_datamodule("mnist_inr", build={**RECIPE, "views": 4})
    assert dm.build_config.views == 4 and dm.build_config.key() != InrBuildConfig(**RECIPE).key()
    with pytest.raises(NnzooError, match="data.build.views must be a whole number from 1 to 20"):
        create_datamodule("mnist_inr", build={**RECIPE, "views": 0})
