"""The public Small CNN Zoo split protocol (NFN / Neural Graphs) and the reference recipes of the CNN configs.

The reference protocol is re-implemented here, independently of nnzoo, the way the reference reads the
files (``NFNZooDataset`` / ``ZooDataset``): pandas reads the index file with ``header=None``, so its first
line (the header "0") is an index too; rows with ``step == 86`` are kept; the last 50% is test; the first 50%
is shuffled with ``random.Random(0)`` and split 80/20.
"""

from __future__ import annotations

import hashlib
import random
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from nnzoo.config import compose, config_root
from nnzoo.data import create_datamodule
from nnzoo.data.formats import small_cnn_zoo
from nnzoo.data.formats.small_cnn_zoo import load_small_cnn_zoo, small_cnn_spec, to_tf_rows, write_small_cnn_zoo
from nnzoo.errors import NnzooError
from nnzoo.models.layers.standardize import Standardize

SPEC = small_cnn_spec("relu")
STEPS = (0, 20, 86)


def _write_public_zoo(folder: Path, nets: int = 40, dataset: str = "cifar10", row0_final: bool = False) -> int:
    """A zoo in the public format: every network's checkpoints on consecutive rows, a unique accuracy per row.

    ``row0_final`` puts network 0's step-86 checkpoint first, so the header quirk duplicates a final row."""
    g = torch.Generator().manual_seed(0)
    rows, metrics = [], []
    for i in range(nets):
        for step in ((86, 0, 20) if row0_final and i == 0 else STEPS):
            rows.append(torch.randn(SPEC.num_params, generator=g) * 0.3)
            metrics.append({"config.activation": "tanh" if i % 3 == 0 else "relu", "config.dataset": dataset,
                            "modeldir": f"m{i}", "step": step, "test_accuracy": (len(metrics) + 1) / 1000})
    write_small_cnn_zoo(folder, SPEC, torch.stack(rows), metrics)
    return len(rows)


def _write_index_file(path: Path, rows: int, seed: int = 1) -> Path:
    """A permutation written as the public files were: pandas ``to_csv(index=False)``, so line 1 is "0"."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(np.random.default_rng(seed).permutation(rows)).to_csv(path, index=False)
    assert path.read_text().startswith("0\n")
    return path


def _reference(folder: Path, idcs_file: Path | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The reference protocol: split -> (TF-layout weight rows, test accuracies), in order."""
    data = np.load(folder / "weights.npy")
    metrics = pd.read_csv(folder / "metrics.csv.gz", compression="gzip")
    shuffled = (pd.read_csv(idcs_file, header=None).values.flatten() if idcs_file is not None
                else np.arange(len(data)))
    data, metrics = data[shuffled], metrics.iloc[shuffled]
    isfinal = metrics["step"] == 86
    metrics, data = metrics[isfinal], data[isfinal.to_numpy()]
    metrics.index = np.arange(len(metrics))
    test_point = int(0.5 * len(data))
    trainval = list(range(test_point))
    val_point = int(0.8 * len(trainval))
    random.Random(0).shuffle(trainval)
    idcs = {"train": trainval[:val_point], "val": trainval[val_point:], "test": list(range(test_point, len(data)))}
    return {k: (data[v], metrics.iloc[v].test_accuracy.to_numpy()) for k, v in idcs.items()}


def _loaded(dm) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """What the datamodule serves: split -> (TF-layout rows, targets), in dataset order."""
    out = {}
    for name in ("train", "val", "test"):
        ds = dm.split(name)
        params = torch.stack([ds.params[g][r] for g, r in zip(ds.group.tolist(), ds.row.tolist())])
        out[name] = (to_tf_rows(params, SPEC).numpy(), ds.targets.numpy())
    return out


def _assert_same(got, expected):
    assert got.keys() == expected.keys()
    for name in expected:
        np.testing.assert_array_equal(got[name][1], expected[name][1].astype(np.float32), err_msg=name)
        np.testing.assert_array_equal(got[name][0], expected[name][0], err_msg=name)


def _datamodule(root: Path, **options):
    return create_datamodule("cnn_zoo", root=str(root), **options)


# ------------------------------------------------------------------ the protocol, exactly
@pytest.mark.parametrize("row0_final", [False, True])
def test_splits_equal_the_reference_protocol(tmp_path, row0_final):
    rows = _write_public_zoo(tmp_path / "cifar10", row0_final=row0_final)
    index = _write_index_file(tmp_path / "perm.csv", rows)
    expected = _reference(tmp_path / "cifar10", index)
    got = _loaded(_datamodule(tmp_path / "cifar10", split_file=str(index)))
    _assert_same(got, expected)
    # the header quirk: with a final row 0 the reference keeps network 0 twice (41 networks, not 40)
    accuracies = np.concatenate([acc for _, acc in got.values()])
    assert len(accuracies) == 40 + row0_final
    assert (accuracies == np.float32(1 / 1000)).sum() == (2 if row0_final else 0)


def test_auto_finds_the_index_file_next_to_the_data(tmp_path):
    root = tmp_path / "zoos" / "cifar10"
    rows = _write_public_zoo(root)
    with pytest.raises(NnzooError):  # nothing there yet
        _datamodule(root).setup()
    for i, path in enumerate([tmp_path / "zoos" / "cifar10_split.csv", root / "cifar10_split.csv",
                              root / "nfn_cifar10_split.csv"]):  # later ones take precedence
        _write_index_file(path, rows, seed=10 + i)
        dm = _datamodule(root)
        assert dm.info.extra["split_file"] == str(path)
        assert dm.info.extra["split_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        _assert_same(_loaded(dm), _reference(root, path))
    # the dataset name comes from metrics' config.dataset: an SVHN zoo ignores CIFAR10 files
    svhn = tmp_path / "zoos" / "other"
    _write_public_zoo(svhn, dataset="svhn_cropped")
    _write_index_file(svhn / "cifar10_split.csv", rows)
    with pytest.raises(NnzooError, match="svhn_split.csv"):
        _datamodule(svhn).setup()
    _write_index_file(svhn / "svhn_split.csv", rows)
    assert _datamodule(svhn).info.extra["split_file"] == str(svhn / "svhn_split.csv")


@pytest.mark.parametrize("name, size", [("cifar10", 270_000), ("svhn", 269_892), ("mnist", 269_973),
                                        ("fashion_mnist", 270_000)])
def test_shipped_index_files_are_the_public_ones(name, size):
    """nnzoo ships NFN's four index files (gzipped): decompressed, each has the public file's sha256 and is a
    permutation of its zoo's rows after the header line, as the reference reads it."""
    from nnzoo.data.formats.small_cnn_zoo import PUBLIC_SPLIT_FILES, read_split_file, shipped_split_file
    order, digest = read_split_file(shipped_split_file(name), size, name)
    assert PUBLIC_SPLIT_FILES[digest] == (name, size)
    assert len(order) == size + 1 and order[0] == 0 and sorted(order[1:].tolist()) == list(range(size))


def test_auto_falls_back_to_the_shipped_index_file(tmp_path, monkeypatch):
    """With no index file next to a public zoo, auto uses the shipped copy: for the complete zoo that is the
    published split; for an incomplete one (as here), a one-line refusal naming the sizes and the opt-out."""
    import nnzoo.data.formats.small_cnn_zoo as zoo
    _write_public_zoo(tmp_path / "cifar10")
    with pytest.raises(NnzooError) as info:
        _datamodule(tmp_path / "cifar10").setup()
    msg = str(info.value)
    assert "\n" not in msg
    for part in (str(zoo.shipped_split_file("cifar10")), "270,000 rows", "data.split_file=none"):
        assert part in msg, (part, msg)
    # without the shipped copies (e.g. a trimmed install) the error names where to look and where to get it
    monkeypatch.setattr(zoo, "SHIPPED_SPLITS", tmp_path / "nowhere")
    with pytest.raises(NnzooError) as info:
        _datamodule(tmp_path / "cifar10").setup()
    msg = str(info.value)
    assert "\n" not in msg
    for part in ("cifar10_split.csv", "nfn_cifar10_split.csv", "AllanYangZhou/nfn", "mkofinas/neural-graphs",
                 "data.split_file=none", str(tmp_path / "cifar10")):
        assert part in msg, (part, msg)
    # a zoo whose dataset cannot be told: the error still offers the path and the opt-out
    _write_public_zoo(tmp_path / "mine", dataset="")
    with pytest.raises(NnzooError, match="data.split_file=none") as info:
        _datamodule(tmp_path / "mine").setup()
    assert "\n" not in str(info.value)


def test_split_file_none_is_file_order_with_a_warning(tmp_path, capsys):
    _write_public_zoo(tmp_path / "cifar10", row0_final=True)
    dm = _datamodule(tmp_path / "cifar10", split_file="none")
    _assert_same(_loaded(dm), _reference(tmp_path / "cifar10", None))
    assert dm.info.extra["split_file"] is None
    assert "not the NFN/Neural Graphs split" in capsys.readouterr().err


def test_a_zoo_built_offline_keeps_its_own_order(tmp_path):
    _write_public_zoo(tmp_path / "built", dataset="mnist")
    (tmp_path / "built" / "build_info.json").write_text("{}")
    dm = _datamodule(tmp_path / "built")  # auto: no index file needed, none looked for
    _assert_same(_loaded(dm), _reference(tmp_path / "built", None))


# ------------------------------------------------------------------ verifying index files
def test_known_and_unknown_index_files(tmp_path, monkeypatch, capsys):
    rows = _write_public_zoo(tmp_path / "cifar10")
    index = _write_index_file(tmp_path / "cifar10" / "cifar10_split.csv", rows)
    digest = hashlib.sha256(index.read_bytes()).hexdigest()
    _datamodule(tmp_path / "cifar10").setup()  # unknown hash: used, with a warning line
    assert f"sha256 {digest[:16]}" in capsys.readouterr().err
    monkeypatch.setitem(small_cnn_zoo.PUBLIC_SPLIT_FILES, digest, ("cifar10", rows))
    _datamodule(tmp_path / "cifar10").setup()  # known: silent
    assert "sha256" not in capsys.readouterr().err  # (a tiny zoo still warns of its few val networks)
    # a known file of another size or another dataset is refused, naming the file
    monkeypatch.setitem(small_cnn_zoo.PUBLIC_SPLIT_FILES, digest, ("cifar10", rows + 3))
    with pytest.raises(NnzooError, match=f"{re.escape(str(index))}.*{rows + 3}"):
        _datamodule(tmp_path / "cifar10").setup()
    monkeypatch.setitem(small_cnn_zoo.PUBLIC_SPLIT_FILES, digest, ("fashion_mnist", rows))
    with pytest.raises(NnzooError, match="fashion_mnist index file but the zoo is cifar10"):
        _datamodule(tmp_path / "cifar10").setup()


def test_the_real_public_hashes_are_recorded():
    assert {v for v in small_cnn_zoo.PUBLIC_SPLIT_FILES.values()} == {
        ("cifar10", 270_000), ("svhn", 269_892), ("mnist", 269_973), ("fashion_mnist", 270_000)}
    assert "04fb71937dc796fc64f6306457de9d95f0d2d8a343db856213b965a4953a4f67" in small_cnn_zoo.PUBLIC_SPLIT_FILES


@pytest.mark.parametrize("content, message", [
    (lambda r: "0\n" + "\n".join(map(str, range(r - 2))) + "\n", "holds"),  # too short
    (lambda r: "\n".join(map(str, range(r + 2))) + "\n", "holds"),  # too long
    (lambda r: "0\n" + "\n".join(map(str, [0] * r)) + "\n", "not a permutation"),
    (lambda r: "0\n" + "\n".join(map(str, range(1, r + 1))) + "\n", "not a permutation"),  # index r
    (lambda r: "index\n" + "\n".join(map(str, range(r))) + "\n", "one integer"),
])
def test_bad_index_files_are_one_line_errors_naming_the_file(tmp_path, content, message):
    rows = _write_public_zoo(tmp_path / "cifar10", nets=4)
    bad = tmp_path / "bad.csv"
    bad.write_text(content(rows))
    with pytest.raises(NnzooError, match=message) as info:
        _datamodule(tmp_path / "cifar10", split_file=str(bad)).setup()
    assert str(bad) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("seed", range(4))
def test_random_bytes_as_index_file_are_one_line_errors(tmp_path, seed):
    rows = _write_public_zoo(tmp_path / "cifar10", nets=2)
    rng = np.random.default_rng(seed)
    bad = tmp_path / "bad.csv"
    bad.write_bytes(rng.bytes(300) if seed % 2 else "\n".join(map(str, rng.integers(-5, 2 * rows, rows + 1))).encode())
    with pytest.raises(NnzooError) as info:
        load_small_cnn_zoo(tmp_path / "cifar10", split_file=bad)
    assert str(bad) in str(info.value) and "\n" not in str(info.value)


def test_a_plain_permutation_without_header_is_read_as_is(tmp_path):
    rows = _write_public_zoo(tmp_path / "cifar10")
    plain = tmp_path / "plain.csv"
    plain.write_text("\n".join(map(str, np.random.default_rng(3).permutation(rows))) + "\n")
    zoo = load_small_cnn_zoo(tmp_path / "cifar10", split_file=plain)
    expected = _reference(tmp_path / "cifar10", plain)
    assert len(zoo.params) == 40
    np.testing.assert_array_equal(zoo.accuracy[zoo.splits["test"]].numpy(), expected["test"][1].astype(np.float32))


# ------------------------------------------------------------------ weights fed raw, as the reference
def test_normalize_none_means_no_statistics_and_identity(tmp_path):
    _write_public_zoo(tmp_path / "cifar10")
    raw = _datamodule(tmp_path / "cifar10", split_file="none", normalize="none").info
    assert raw.stats == {}
    params = torch.randn(3, SPEC.num_params) * 5
    assert torch.equal(Standardize(raw.stats)(SPEC, params), params)
    standardized = _datamodule(tmp_path / "cifar10", split_file="none", normalize="layer").info
    assert standardized.stats and not torch.equal(Standardize(standardized.stats)(SPEC, params), params)


# ------------------------------------------------------------------ reference recipes
def test_recipes_land_in_the_composed_config():
    gnn = compose("gnn", "cnn_zoo")
    assert (gnn.model.hidden, gnn.model.dropout, gnn.model.linear_as_conv, gnn.model.probes) == (256, 0.0, False, 0)
    assert (gnn.data.batch_size, gnn.task.regression_loss) == (128, "mse")
    rt = compose("transformer", "cnn_zoo")
    assert (rt.model.d_node, rt.model.d_attn, rt.model.head_hidden, rt.model.head_layers) == (128, 256, 256, 2)
    assert (rt.data.batch_size, rt.task.regression_loss) == (192, "bce")
    for cfg in (gnn, rt, compose("statnn", "cnn_zoo")):
        optim = cfg.optim
        assert (optim.warmup_steps, optim.lr, optim.weight_decay, optim.amsgrad) == (0, 1e-3, 5e-4, True)
        assert cfg.trainer.gradient_clip_val == 10.0
        assert cfg.data.normalize == "none" and cfg.data.split_file == "auto"
        assert (cfg.data.augment.noise, cfg.data.augment.dropout) == (0.1, 0.01)
    assert compose("gnn", "cnn_zoo", overrides=["data.batch_size=7"]).data.batch_size == 7  # overrides win
    park = compose("transformer", "cnn_wild_park")
    model = park.model
    assert (model.d_node, model.heads, model.dropout, model.activation_embedding) == (32, 4, 0.2, True)
    assert compose("mlp", "cnn_zoo").data.batch_size == 64  # no recipe: the data default


def test_a_recipe_with_an_unknown_key_is_a_one_line_error(tmp_path, monkeypatch):
    configs = tmp_path / "configs"
    for kind in ("model", "data", "trainer"):
        (configs / kind).mkdir(parents=True)
        for path in (config_root() / kind).glob("*.yaml"):
            (configs / kind / path.name).write_text(path.read_text())
    data = yaml.safe_load((configs / "data" / "cnn_zoo.yaml").read_text())
    data["recipes"]["gnn"]["model"]["hiden"] = 256
    (configs / "data" / "cnn_zoo.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.setenv("NNZOO_CONFIGS", str(configs))
    with pytest.raises(NnzooError, match="recipes.gnn") as info:
        compose("gnn", "cnn_zoo")
    assert "hiden" in str(info.value) and "cnn_zoo.yaml" in str(info.value) and "\n" not in str(info.value)
    compose("transformer", "cnn_zoo")  # the other recipes are unaffected
