"""The offline MNIST-INR builder makes real SIRENs of real digits, and the datamodule serves them."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from nnzoo.data.builders.inr import read_build_info, stratified_split
from nnzoo.data.images import mnist_images
from nnzoo.data.siren_fit import grid_coordinates, psnr_from_mse
from nnzoo.nets import mlp_forward
from tests.conftest import SMALL_INR_BUILD


def test_split_is_stratified_disjoint_and_fixed_by_seed():
    labels = torch.arange(1000) % 10
    a = stratified_split(labels, 300, 0.1, 0.2, seed=3)
    b = stratified_split(labels, 300, 0.1, 0.2, seed=3)
    c = stratified_split(labels, 300, 0.1, 0.2, seed=4)
    assert all(torch.equal(a[s], b[s]) for s in a)
    assert not torch.equal(a["train"], c["train"])
    assert [len(a[s]) for s in ("train", "val", "test")] == [210, 30, 60]
    joined = torch.cat(list(a.values()))
    assert len(joined.unique()) == 300
    assert torch.bincount(labels[a["test"]]).tolist() == [6] * 10


def test_built_inrs_reproduce_their_mnist_images(small_inr_datamodule):
    dm = small_inr_datamodule
    info = dm.info
    assert [len(dm.split(s)) for s in ("train", "val", "test")] == [480, 60, 60]
    assert info.num_outputs == 10 and info.specs[0].widths == (2, 32, 32, 1)
    splits_file = Path(info.extra["splits_file"])
    build = read_build_info(splits_file.parent)
    assert build["psnr_db"]["min"] >= SMALL_INR_BUILD["psnr_target"] - 1e-3
    # re-render some test INRs and compare with the source images named in their file paths
    images, labels = mnist_images()
    paths = json.loads(splits_file.read_text())["test"]["path"][:10]
    test = dm.split("test")
    rendered = mlp_forward(test.params[0][test.row[:10]], info.specs[0], grid_coordinates(28, 28))
    for path, image, label in zip(paths, rendered, test.targets[:10]):
        image_id = int(Path(path).parts[1].split("_")[-1])
        assert labels[image_id] == label
        psnr = psnr_from_mse((image.view(28, 28) - images[image_id]).pow(2).mean())
        assert psnr >= SMALL_INR_BUILD["psnr_target"] - 0.5


def public_grid(size: int = 28) -> torch.Tensor:
    """The DWSNets / Neural Graphs ``make_coordinates``, written out independently of nnzoo:
    ``np.meshgrid(x, y)`` (xy indexing), flattened row-major, stacked as (x, y)."""
    x, y = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size))
    return torch.from_numpy(np.stack([x.flatten(), y.flatten()]).T).float()


def test_built_inrs_follow_the_public_coordinate_convention(small_inr_datamodule):
    """Input 0 is the column (x), input 1 the row (y): rendered on the public grid the INRs are their
    images; on the transposed grid they are not (a transposed build fails this test)."""
    dm = small_inr_datamodule
    spec = dm.info.specs[0]
    test = dm.split("test")
    paths = json.loads(Path(dm.info.extra["splits_file"]).read_text())["test"]["path"][:20]
    ids = [int(Path(p).parts[1].split("_")[-1]) for p in paths]
    images = mnist_images()[0][ids].reshape(len(ids), -1)
    params = test.params[0][test.row[:20]]
    grid = public_grid()
    right = psnr_from_mse((mlp_forward(params, spec, grid).squeeze(-1) - images).pow(2).mean(1))
    transposed = psnr_from_mse((mlp_forward(params, spec, grid.flip(-1)).squeeze(-1) - images).pow(2).mean(1))
    assert right.min() >= SMALL_INR_BUILD["psnr_target"] - 0.5
    assert transposed.max() < 20.0
    # the output convention: rendering + offset is an intensity in [0, 1] (background ~0, strokes ~1)
    rendered = mlp_forward(params, spec, grid)
    assert -0.1 < rendered.min() and rendered.max() < 1.1 and rendered.mean() < 0.3


def test_second_datamodule_reuses_the_cached_build(small_inr_datamodule, nnzoo_home):
    from nnzoo.data import create_datamodule
    folder = Path(small_inr_datamodule.info.extra["splits_file"]).parent
    stamp = (folder / "build_info.json").stat().st_mtime_ns
    dm = create_datamodule("mnist_inr", build=SMALL_INR_BUILD)
    dm.prepare_data()
    assert (folder / "build_info.json").stat().st_mtime_ns == stamp
    assert torch.equal(dm.split("train").params[0], small_inr_datamodule.split("train").params[0])


def test_loaders_serve_whole_batches(small_inr_datamodule):
    loader = small_inr_datamodule.train_dataloader()
    batch = next(iter(loader))
    assert batch.flat.shape == (32, 1185) and batch.y.shape == (32,)


def test_normalize_modes(small_inr_datamodule, nnzoo_home):
    """layer: one (mean, std) per role and layer; entry: per entry, as the DWSNets trainer; none: raw."""
    from nnzoo.data import create_datamodule
    from nnzoo.errors import NnzooError
    from nnzoo.models.layers.standardize import Standardize
    spec = small_inr_datamodule.info.specs[0]
    train = small_inr_datamodule.split("train").params[0]
    entry = create_datamodule("mnist_inr", build=SMALL_INR_BUILD, normalize="entry").info
    assert len(entry.stats["entry"]["mean"]) == spec.num_params
    standardized = Standardize(entry.stats)(spec, train)
    torch.testing.assert_close(standardized.mean(0), torch.zeros(spec.num_params), atol=1e-4, rtol=0)
    torch.testing.assert_close(standardized.std(0), torch.ones(spec.num_params), atol=1e-3, rtol=0)
    layer = small_inr_datamodule.info.stats
    assert set(layer) == {"weight", "bias"} and len(layer["weight"]) == spec.num_layers
    assert create_datamodule("mnist_inr", build=SMALL_INR_BUILD, normalize="none").info.stats == {}
    with pytest.raises(NnzooError, match="data.normalize must be one of"):
        create_datamodule("mnist_inr", build=SMALL_INR_BUILD, normalize="perentry")


# ------------------------------------------------------------------------------------ build_once
def test_concurrent_builders_of_one_folder_build_once_and_the_others_wait(tmp_path):
    """Four threads (each its own lock handle, as separate processes have) ask for the same folder."""
    import threading
    import time

    from filelock import FileLock

    from nnzoo.data.builders.cache import BUILD_INFO, build_once
    from nnzoo.errors import NnzooError

    calls = []

    def build(folder: Path) -> None:
        calls.append(folder)
        folder.mkdir()
        time.sleep(0.3)  # long enough for every other thread to reach the lock
        (folder / BUILD_INFO).write_text("{}")

    final = tmp_path / "datasets" / "thing"
    results = []
    threads = [threading.Thread(target=lambda: results.append(build_once(final, build))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and results == [final] * 4 and (final / BUILD_INFO).is_file()
    assert sorted(p.name for p in final.parent.iterdir()) == [".thing.lock", "thing"]  # no partial folder left

    # a failed build leaves nothing that looks complete; the next caller builds
    other = tmp_path / "datasets" / "other"
    with pytest.raises(RuntimeError):
        build_once(other, lambda folder: (folder.mkdir(), (_ for _ in ()).throw(RuntimeError("killed"))))
    assert not other.exists() and not list(other.parent.glob(".other.partial-*"))
    assert build_once(other, build) == other and len(calls) == 2

    # a builder that holds the lock too long: one line naming the lock file and the way out
    with FileLock(tmp_path / "datasets" / ".late.lock"):
        with pytest.raises(NnzooError, match=r"\.late\.lock: another process .* NNZOO_LOCK_TIMEOUT") as err:
            build_once(tmp_path / "datasets" / "late", build, timeout=0.2)
    assert "\n" not in str(err.value) and len(calls) == 2
