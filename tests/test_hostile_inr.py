"""Hostile input to the INR datasets: labels, splits, paths, stale caches and build recipes.

Every case is written in the exact public format (through the modules' own writers) and must be
refused up front with one NnzooError line that names the file or config key and the fix.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch

import nnzoo.data.builders.inr as inr_builder
import nnzoo.data.formats.dwsnets as dwsnets
from nnzoo.cli import main
from nnzoo.data import create_datamodule
from nnzoo.data.builders.inr import (PSNR_REFUSE_DB, InrBuildConfig, build_inr_dataset, check_fit_quality,
                                     split_sizes)
from nnzoo.data.datamodule import WeightDataModule
from nnzoo.data.formats.dwsnets import SPLITS, load_dwsnets, write_dwsnets
from nnzoo.data.formats.nfn_siren import write_nfn_sirens
from nnzoo.data.weights import DataInfo, WeightDataset
from nnzoo.errors import NnzooError
from nnzoo.nets import siren_spec
from tests.conftest import random_params, tiny_fit_args

SPEC = siren_spec()


def _dataset(root: Path, sizes=(4, 2, 2), prefix: str = "mnist") -> Path:
    """A small DWSNets-format dataset (distinct image ids, so no file is listed twice); its splits file."""
    params = {s: random_params(SPEC, n, seed=i, scale=0.1) for i, (s, n) in enumerate(zip(SPLITS, sizes))}
    labels = {s: torch.arange(n) % 10 for s, n in zip(SPLITS, sizes)}
    ids = {s: torch.arange(n) + 100 * i for i, (s, n) in enumerate(zip(SPLITS, sizes))}
    return write_dwsnets(root, SPEC, params, labels, ids, prefix=prefix, write_statistics=False)


def _edit(splits_path: Path, change) -> dict:
    blob = json.loads(splits_path.read_text())
    change(blob)
    splits_path.write_text(json.dumps(blob))
    return blob


def _refused(call, *parts) -> str:
    """``call()`` raises one NnzooError line containing every part, advising no deletion."""
    with pytest.raises(NnzooError) as err:
        call()
    text = str(err.value)
    assert "\n" not in text, text
    for part in parts:
        assert str(part) in text, text
    assert "delete" not in text.lower(), text
    return text


def _mnist(root: Path, tmp_path: Path, **options) -> WeightDataModule:
    return create_datamodule("mnist_inr", root=str(root), cache_dir=str(tmp_path / "home"), **options)


# ------------------------------------------------------------------------------------ labels
@pytest.mark.parametrize("label", ["99", "10", 10, "-1", -1, 3.7, 3.0, True, False, 10**30, "3.7", " 3", "", None,
                                   [3], "²"])
def test_labels_outside_the_declared_classes_or_not_integers_are_refused(tmp_path, label):
    splits = _dataset(tmp_path)
    _edit(splits, lambda b: b["val"]["label"].__setitem__(1, label))
    _refused(lambda: _mnist(tmp_path, tmp_path).setup(), splits, "'val' label #1", "0..9",
             "fix or replace the splits file")


def test_huge_integer_label_beyond_json_limits_is_one_line(tmp_path):
    splits = _dataset(tmp_path)
    _edit(splits, lambda b: b["train"]["label"].__setitem__(0, "HUGE"))
    splits.write_text(splits.read_text().replace('"HUGE"', "9" * 5000))  # json refuses > 4,300 digits
    _refused(lambda: _mnist(tmp_path, tmp_path).setup(), splits, "not valid JSON")


def test_string_and_integer_labels_of_the_public_files_load_and_classes_are_declared(tmp_path):
    """MNIST splits store labels as strings, fmnist_splits.json as ints: both load.  The class count
    is the dataset's (10), not the largest label's: here labels only reach 3."""
    splits = _dataset(tmp_path, sizes=(4, 2, 2))
    assert json.loads(splits.read_text())["train"]["label"] == ["0", "1", "2", "3"]
    dm = _mnist(tmp_path, tmp_path)
    assert dm.info.num_outputs == 10 and dm.info.class_names == [str(i) for i in range(10)]
    assert dm.split("train").targets.tolist() == [0, 1, 2, 3]
    _edit(splits, lambda b: [b[s].__setitem__("label", [int(v) for v in b[s]["label"]]) for s in SPLITS])
    assert _mnist(tmp_path, tmp_path).split("val").targets.tolist() == [0, 1]


def test_fmnist_labels_are_checked_against_its_class_names(tmp_path):
    splits = _dataset(tmp_path, prefix="fmnist")
    _edit(splits, lambda b: b["test"]["label"].__setitem__(0, 9))
    dm = create_datamodule("fmnist_inr", root=str(tmp_path), cache_dir=str(tmp_path / "home"),
                           class_names=["a", "b", "c", "d"])
    _refused(dm.setup, splits, "'test' label #0", "0..3")
    _refused(lambda: create_datamodule("fmnist_inr", root=str(tmp_path), class_names=["only"]), "data.class_names")


def test_cli_refuses_a_bad_label_in_one_line(tmp_path, capsys):
    splits = _dataset(tmp_path)
    _edit(splits, lambda b: b["train"]["label"].__setitem__(2, "99"))
    assert main(tiny_fit_args(tmp_path, tmp_path / "runs", f"data.cache_dir={tmp_path / 'home'}")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(splits) in err[0] and "'99'" in err[0], err
    assert not list((tmp_path / "runs").glob("*/version_*/checkpoints/*.ckpt"))


# ------------------------------------------------------------------------------------ splits
@pytest.mark.parametrize("split", SPLITS)
def test_empty_split_is_refused_naming_file_and_split(tmp_path, split):
    splits = _dataset(tmp_path)
    _edit(splits, lambda b: b.__setitem__(split, {"path": [], "label": []}))
    _refused(lambda: _mnist(tmp_path, tmp_path).setup(), splits, f"the '{split}' split is empty")


@pytest.mark.parametrize("spelling", [lambda p: p, lambda p: "./" + p, lambda p: "mnist-inrs/../" + p])
def test_a_file_in_train_and_test_is_refused(tmp_path, spelling):
    splits = _dataset(tmp_path)
    blob = json.loads(splits.read_text())
    _edit(splits, lambda b: b["test"]["path"].__setitem__(1, spelling(blob["train"]["path"][2])))
    _refused(lambda: load_dwsnets(splits, SPEC, num_classes=10), splits, "in both 'train' and 'test'")


class _Fixed(WeightDataModule):
    """A datamodule serving given splits: the generic checks apply to every dataset, CNN zoos too."""

    def __init__(self, sizes: dict[str, int], task: str = "regression", targets=None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.sizes, self.task, self.targets = sizes, task, targets

    def load(self):
        data = {}
        for i, (name, n) in enumerate(self.sizes.items()):
            y = torch.rand(n) if self.targets is None else self.targets[:n]
            data[name] = WeightDataset.homogeneous(SPEC, random_params(SPEC, n, seed=i), y)
        outputs = 1 if self.task == "regression" else 10
        return data, DataInfo("some_zoo", self.task, outputs, (SPEC,), extra={"folder": "/data/zoo"})


@pytest.mark.parametrize("sizes, split", [({"train": 0, "val": 2, "test": 2}, "train"),
                                          ({"train": 4, "val": 0, "test": 2}, "val"),
                                          ({"train": 4, "val": 2, "test": 0}, "test"),
                                          ({"train": 4, "val": 2}, "test")])
def test_every_datamodule_refuses_empty_splits_up_front(tmp_path, sizes, split):
    dm = _Fixed(sizes, cache_dir=str(tmp_path))
    _refused(dm.setup, "dataset 'some_zoo' (/data/zoo)", f"the {split} split is empty")
    _refused(dm.train_dataloader, f"the {split} split is empty")


def test_every_classification_datamodule_refuses_undeclared_classes(tmp_path):
    dm = _Fixed({"train": 4, "val": 2, "test": 2}, task="classification", targets=torch.tensor([0, 1, 12, 3]),
                cache_dir=str(tmp_path))
    _refused(dm.setup, "dataset 'some_zoo'", "train labels span 0..12", "declares 10 classes")


def test_nfn_folder_without_validation_images_is_refused(tmp_path):
    spec = siren_spec((2, 32, 32, 1), w0=30.0, output_offset=0.0)
    write_nfn_sirens(tmp_path, spec, {(i % 10, idx): p for i, (idx, p) in
                                      enumerate(zip([0, 1, 2, 50000, 50001], random_params(spec, 5)))})
    dm = create_datamodule("nfn_mnist_inr", root=str(tmp_path), cache_dir=str(tmp_path / "home"))
    _refused(dm.setup, str(tmp_path), "the val split is empty")


# ------------------------------------------------------------------------------------ paths
def _never_open(monkeypatch, forbidden: str) -> None:
    real = dwsnets.read_state_dict

    def guarded(file):
        assert forbidden not in os.path.realpath(file), f"opened {file}"
        return real(file)

    monkeypatch.setattr(dwsnets, "read_state_dict", guarded)


@pytest.mark.parametrize("where", [("train", 0), ("val", 1), ("test", 0)])
def test_dot_dot_entries_escaping_the_root_are_refused(tmp_path, monkeypatch, where):
    root = tmp_path / "a" / "b"
    splits = _dataset(root)
    _edit(splits, lambda b: b[where[0]]["path"].__setitem__(where[1], "../../../../../../../../etc/passwd"))
    _never_open(monkeypatch, "/etc/")
    text = _refused(lambda: _mnist(root, tmp_path).setup(), "../etc/passwd", splits, "resolves outside the dataset "
                    f"root {root}", f"keep dataset files inside {root}")
    assert "cannot read" not in text


@pytest.mark.parametrize("target", ["/etc/shadow", "outside"])
def test_symlinks_leading_out_of_the_root_are_refused(tmp_path, monkeypatch, target):
    """A link to /etc/shadow, or to a perfectly valid INR kept outside the dataset root."""
    root = tmp_path / "root"
    splits = _dataset(root)
    if target == "outside":
        _dataset(tmp_path / "elsewhere")
        target = str(next((tmp_path / "elsewhere").rglob("model_final.pth")))
    victim = root / json.loads(splits.read_text())["val"]["path"][0]
    victim.unlink()
    victim.symlink_to(target)
    _never_open(monkeypatch, os.path.realpath(target))
    _refused(lambda: _mnist(root, tmp_path).setup(), splits, "resolves outside the dataset root",
             os.path.realpath(target))


def test_absolute_entries_must_stay_inside_the_root(tmp_path):
    root = tmp_path / "root"
    splits = _dataset(root)
    _edit(splits, lambda b: [b[s].__setitem__("path", [str(root / p) for p in b[s]["path"]]) for s in SPLITS])
    assert len(_mnist(root, tmp_path).split("train")) == 4  # absolute paths inside the root: fine
    _dataset(tmp_path / "other")
    stray = str(next((tmp_path / "other").rglob("model_final.pth")))
    _edit(splits, lambda b: b["test"]["path"].__setitem__(0, stray))
    _refused(lambda: _mnist(root, tmp_path).setup(), "resolves outside the dataset root", os.path.realpath(stray))


def test_public_relative_layouts_and_a_symlinked_root_still_load(tmp_path):
    root = tmp_path / "real"
    splits = _dataset(root)
    _edit(splits, lambda b: [b[s].__setitem__("path", ["dataset/" + p for p in b[s]["path"]]) for s in SPLITS])
    (tmp_path / "link").symlink_to(root)
    for folder in (root, tmp_path / "link"):
        assert len(_mnist(folder, tmp_path).split("test")) == 2
    data = load_dwsnets(tmp_path / "link" / splits.name, SPEC, num_classes=10)  # root = the splits file's folder
    assert len(data.params["val"]) == 2


def test_nfn_symlinked_file_leading_out_is_refused(tmp_path):
    spec = siren_spec((2, 32, 32, 1), w0=30.0, output_offset=0.0)
    write_nfn_sirens(tmp_path / "root", spec, {(i % 10, idx): p for i, (idx, p) in
                                               enumerate(zip([0, 1, 45000, 50000], random_params(spec, 4)))})
    link = tmp_path / "root" / "randinit_smaller_1s" / "net7.pth"
    link.symlink_to("/etc/shadow")
    dm = create_datamodule("nfn_mnist_inr", root=str(tmp_path / "root"), cache_dir=str(tmp_path / "home"))
    _refused(dm.setup, link, "resolves outside the dataset root", "/etc/shadow")


# ------------------------------------------------------------------------------------ stale cache
def _replace_with_nan(file: Path) -> None:
    """Swap an INR for a NaN one of the same size, as a later download or a bad copy would."""
    st = file.stat()
    sd = torch.load(file, weights_only=True)
    sd["seq.1.weight"][0, 0] = float("nan")
    torch.save(sd, file)
    os.utime(file, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))  # "later": robust to coarse clocks


def test_a_replaced_inr_file_invalidates_the_dataset_cache(tmp_path, monkeypatch):
    splits = _dataset(tmp_path / "d")
    first = _mnist(tmp_path / "d", tmp_path)
    first.setup()
    assert len(list((tmp_path / "home" / "cache").glob("dwsnets-*.pt"))) == 1

    def no_reads(file):
        raise AssertionError(f"read {file} although the cache is valid")

    with monkeypatch.context() as m:  # unchanged files: served from the cache, no INR is read
        m.setattr(dwsnets, "read_state_dict", no_reads)
        assert torch.equal(_mnist(tmp_path / "d", tmp_path).split("train").params[0], first.split("train").params[0])
    victim = tmp_path / "d" / json.loads(splits.read_text())["test"]["path"][1]
    _replace_with_nan(victim)
    _refused(lambda: _mnist(tmp_path / "d", tmp_path).setup(), victim, "NaN")


# ------------------------------------------------------------------------------------ build recipe
@pytest.fixture
def no_fitting(monkeypatch):
    """Any attempt to load images or fit SIRENs fails the test: validation must come first."""
    def forbidden(*args, **kwargs):
        raise AssertionError("the build started before the recipe was validated")

    monkeypatch.setattr(inr_builder, "fit_sirens", forbidden)
    monkeypatch.setattr(inr_builder, "load_images", forbidden)


BAD_RECIPES = [
    ({"size": -5}, "data.build.size"), ({"size": 0}, "data.build.size"), ({"size": "abc"}, "data.build.size"),
    ({"size": 2.5}, "data.build.size"), ({"size": True}, "data.build.size"), ({"size": 5001}, "data.build.size"),
    ({"size": 3}, "data.build.size=3"), ({"size": 30}, "data.build.size=30"),
    ({"val_fraction": 2}, "data.build.val_fraction"), ({"val_fraction": 0}, "data.build.val_fraction"),
    ({"val_fraction": "x"}, "data.build.val_fraction"), ({"test_fraction": math.nan}, "data.build.test_fraction"),
    ({"val_fraction": 0.5, "test_fraction": 0.5}, "data.build.val_fraction + data.build.test_fraction"),
    ({"steps": 0}, "data.build.steps"), ({"steps": -1}, "data.build.steps"), ({"steps": "100"}, "data.build.steps"),
    ({"lr": 0}, "data.build.lr"), ({"lr": math.inf}, "data.build.lr"),
    ({"psnr_target": -3}, "data.build.psnr_target"), ({"psnr_target": None}, "data.build.psnr_target"),
    ({"chunk_size": 0}, "data.build.chunk_size"), ({"seed": -1}, "data.build.seed"),
    ({"init": "xavier"}, "data.build.init"), ({"compile": "yes"}, "data.build.compile"),
    ({"source": "cifar"}, "data.source"),
]


@pytest.mark.parametrize("recipe, key", BAD_RECIPES)
def test_bad_build_recipes_are_refused_before_any_fitting(tmp_path, no_fitting, recipe, key):
    _refused(lambda: create_datamodule("mnist_inr", build=recipe, cache_dir=str(tmp_path)), key)
    config = InrBuildConfig(**recipe)
    _refused(lambda: build_inr_dataset(tmp_path / "datasets", config), key)
    assert not (tmp_path / "datasets").exists()  # no cache folder, no lock file


def test_recipe_is_only_checked_when_the_build_is_used(tmp_path, no_fitting):
    splits = _dataset(tmp_path)
    assert len(create_datamodule("mnist_inr", splits=str(splits), build={"size": -5},
                                 cache_dir=str(tmp_path / "home")).split("val")) == 2


def test_split_sizes_match_the_stratified_split():
    labels = torch.arange(5000) % 10
    for size, vf, tf in [(300, 0.1, 0.2), (57, 0.15, 0.1), (60, 0.1, 0.1), (2000, 0.1, 0.1)]:
        split = inr_builder.stratified_split(labels, size, vf, tf, seed=0)
        assert split_sizes(size, 10, vf, tf) == {s: len(split[s]) for s in SPLITS}


def test_fit_quality_rule():
    """Refused: a mean PSNR more than 20 dB below the target.  The published DWSNets recipe (dws init,
    lr 5e-4, 1,000 steps) reaches ~23 dB against its 40 dB target and must pass."""
    assert PSNR_REFUSE_DB == 20.0
    config = InrBuildConfig(psnr_target=40.0)
    for psnr in (23.0, 20.5, 40.0, 45.0):
        check_fit_quality(torch.full((5,), psnr), config)
    for psnr in (19.5, 6.3, math.nan):
        _refused(lambda: check_fit_quality(torch.full((5,), psnr), config), "data.build.psnr_target=40",
                 "raise data.build.steps")


def test_a_build_far_below_its_psnr_target_is_refused_and_not_cached(tmp_path):
    """One Adam step on 60 tiny digits: real fitting, far below 40 dB; nothing may be cached."""
    recipe = {"size": 60, "steps": 1, "chunk_size": 60}
    dm = create_datamodule("mnist_inr", source="digits", build=recipe, cache_dir=str(tmp_path))
    _refused(dm.setup, "mean PSNR", "data.build.psnr_target=40", "raise data.build.steps (now 1)",
             "nothing was cached")
    datasets = tmp_path / "datasets"
    assert not list(datasets.glob("*/build_info.json")) and not [p for p in datasets.iterdir() if p.is_dir()]


# ------------------------------------------------------------------------------------ statistics file
def test_nan_in_the_statistics_file_is_refused_naming_it(tmp_path):
    params = {s: random_params(SPEC, n, seed=i, scale=0.1) for i, (s, n) in enumerate(zip(SPLITS, (4, 2, 2)))}
    splits = write_dwsnets(tmp_path, SPEC, params, {s: torch.arange(len(p)) for s, p in params.items()},
                           {s: torch.arange(len(p)) + 100 * i for i, (s, p) in enumerate(params.items())})
    stats_file = tmp_path / "mnist_statistics.pth"
    stats = torch.load(stats_file, weights_only=True)
    stats["biases"]["std"][1][0] = float("nan")
    torch.save(stats, stats_file)
    _refused(lambda: load_dwsnets(splits, SPEC, statistics_path=stats_file), stats_file.name, "NaN")
