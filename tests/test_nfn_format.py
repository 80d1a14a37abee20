"""The NFN SIREN format (index splits, augmented copies, clear errors) and the public-file INR datamodules."""

import pytest
import torch

from nnzoo.config import config_path, load_yaml, to_container
from nnzoo.data import create_datamodule
from nnzoo.data.formats.dwsnets import SPLITS, write_dwsnets
from nnzoo.data.formats.nfn_siren import load_nfn_sirens, nfn_state_dict, split_of, write_nfn_sirens
from nnzoo.errors import NnzooError
from nnzoo.nets import siren_spec
from tests.conftest import random_params

INDICES = [*range(6), *range(44998, 45003), *range(49999, 50004)]  # across both split boundaries
EXPECTED = {"train": [0, 1, 2, 3, 4, 5, 44998, 44999], "val": [45000, 45001, 45002, 49999],
            "test": [50000, 50001, 50002, 50003]}


def nfn_spec(out=3):
    return siren_spec((2, 32, 32, out), w0=30.0, output_offset=0.0)


def _dataset(root, spec, aug=2):
    """Random SIRENs at INDICES, labels 3 and 7 alternating, plus ``aug`` explicit augmented copies."""
    flat = random_params(spec, len(INDICES), seed=1, scale=0.1)
    params = {((3, 7)[i % 2], idx): flat[i] for i, idx in enumerate(INDICES)}
    copies = [{k: v + 10.0 * (c + 1) for k, v in params.items()} for c in range(aug)]  # recognisable copies
    write_nfn_sirens(root, spec, params, aug_copies=copies)
    return params, copies


def test_files_use_the_nfn_layout(tmp_path):
    spec = nfn_spec()
    _dataset(tmp_path, spec)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "randinit_smaller_3s", "randinit_smaller_7s", "randinit_smaller_aug0_3s", "randinit_smaller_aug0_7s",
        "randinit_smaller_aug1_3s", "randinit_smaller_aug1_7s"]
    sd = torch.load(tmp_path / "randinit_smaller_7s" / "net44999.pth", weights_only=True)
    assert list(sd) == ["net.0.linear.weight", "net.0.linear.bias", "net.1.linear.weight", "net.1.linear.bias",
                        "net.2.weight", "net.2.bias"]
    assert sd["net.0.linear.weight"].shape == (32, 2) and sd["net.2.weight"].shape == (3, 32)
    assert spec.num_params == 1251 and nfn_spec(1).num_params == 1185


def test_round_trip_and_index_splits(tmp_path):
    spec = nfn_spec()
    params, _ = _dataset(tmp_path, spec)
    data = load_nfn_sirens(tmp_path, spec)
    by_index = {idx: (label, flat) for (label, idx), flat in params.items()}
    for split in SPLITS:
        ids = data.ids[split].tolist()
        assert ids == EXPECTED[split] and all(split_of(i) == split for i in ids)
        assert data.labels[split].tolist() == [by_index[i][0] for i in ids]
        assert torch.equal(data.params[split], torch.stack([by_index[i][1] for i in ids]))


def test_augmented_copies_only_when_asked_and_only_for_train(tmp_path):
    spec = nfn_spec()
    params, copies = _dataset(tmp_path, spec)
    base = load_nfn_sirens(tmp_path, spec)
    assert len(base.params["train"]) == 8  # the base glob does not pick up randinit_smaller_aug*_
    one = load_nfn_sirens(tmp_path, spec, include_aug=1)
    assert one.ids["train"].tolist() == EXPECTED["train"] * 2
    assert torch.equal(one.params["train"][:8], base.params["train"])
    assert torch.equal(one.params["train"][8:], base.params["train"] + 10.0)  # copy 0, training images only
    assert torch.equal(one.labels["train"][8:], base.labels["train"])
    for split in ("val", "test"):
        assert torch.equal(one.params[split], base.params[split])
    two = load_nfn_sirens(tmp_path, spec, include_aug=2)
    assert len(two.params["train"]) == 24 and torch.equal(two.params["train"][16:], base.params["train"] + 20.0)
    with pytest.raises(NnzooError, match="aug2"):
        load_nfn_sirens(tmp_path, spec, include_aug=3)


def test_writer_makes_noisy_copies_of_training_nets(tmp_path):
    spec = nfn_spec(1)
    params = {(i % 2, idx): p for i, (idx, p) in enumerate(zip((1, 2, 46000), random_params(spec, 3)))}
    write_nfn_sirens(tmp_path, spec, params, aug_copies=1)
    assert sorted(p.name for p in (tmp_path / "randinit_smaller_aug0_0s").iterdir()) == ["net1.pth"]  # no val
    data = load_nfn_sirens(tmp_path, spec, include_aug=1)
    train = data.params["train"]
    assert len(train) == 4 and not torch.equal(train[2:], train[:2])
    assert torch.allclose(train[2:], train[:2], atol=0.01)


def test_cache_serves_the_same_tensors(tmp_path):
    spec = nfn_spec()
    _dataset(tmp_path / "d", spec, aug=1)
    first = load_nfn_sirens(tmp_path / "d", spec, include_aug=1, cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("nfn-*.pt"))) == 1
    second = load_nfn_sirens(tmp_path / "d", spec, include_aug=1, cache_dir=tmp_path / "cache")
    for split in SPLITS:
        assert torch.equal(first.params[split], second.params[split])
        assert torch.equal(first.ids[split], second.ids[split])
    victim = tmp_path / "d" / "randinit_smaller_3s" / "net0.pth"
    victim.write_bytes(b"garbage")  # rewritten in place: the cache must not serve the old tensors
    with pytest.raises(NnzooError, match="net0.pth"):
        load_nfn_sirens(tmp_path / "d", spec, include_aug=1, cache_dir=tmp_path / "cache")
    victim.unlink()  # a removed file invalidates the cache
    assert len(load_nfn_sirens(tmp_path / "d", spec, cache_dir=tmp_path / "cache").params["train"]) == 7


def _one_line(err, *parts):
    text = str(err.value)
    assert "\n" not in text, text
    for part in parts:
        assert str(part) in text, text


def test_missing_folder_and_no_files(tmp_path):
    spec = nfn_spec()
    with pytest.raises(NnzooError) as err:
        load_nfn_sirens(tmp_path / "nope", spec)
    _one_line(err, tmp_path / "nope", "does not exist")
    (tmp_path / "randinit_smaller_aug0_3s").mkdir()
    (tmp_path / "randinit_smaller_aug0_3s" / "net1.pth").write_bytes(b"x")
    with pytest.raises(NnzooError) as err:
        load_nfn_sirens(tmp_path, spec)  # only aug folders: not matched by the base pattern
    _one_line(err, tmp_path, "randinit_smaller_{0..9}s")
    (tmp_path / "randinit_smaller_3s").mkdir()
    with pytest.raises(NnzooError) as err:
        load_nfn_sirens(tmp_path, spec)
    _one_line(err, "no net{idx}.pth files")


def test_corrupt_wrong_shape_nan_and_duplicate_files_are_named(tmp_path):
    spec = nfn_spec()
    _dataset(tmp_path, spec, aug=0)
    victim = tmp_path / "randinit_smaller_3s" / "net45000.pth"
    good = victim.read_bytes()
    victim.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(NnzooError) as err:
        load_nfn_sirens(tmp_path, spec)
    _one_line(err, victim)
    victim.write_bytes(good)
    with pytest.raises(NnzooError) as err:
        load_nfn_sirens(tmp_path, nfn_spec(1))  # a CIFAR file read as an MNIST SIREN
    _one_line(err, "wrong architecture", "net0.pth")
    sd = torch.load(victim, weights_only=True)
    sd["net.1.linear.bias"][3] = float("nan")
    torch.save(sd, victim)
    with pytest.raises(NnzooError) as err:
        load_nfn_sirens(tmp_path, spec)
    _one_line(err, victim, "NaN")
    victim.write_bytes(good)
    torch.save(nfn_state_dict(torch.zeros(spec.num_params), spec), tmp_path / "randinit_smaller_7s" / "net45000.pth")
    with pytest.raises(NnzooError) as err:
        load_nfn_sirens(tmp_path, spec)
    _one_line(err, "index 45000 appears twice", "randinit_smaller_7s")


@pytest.mark.parametrize("name, hint", [("fmnist_inr", "fmnist_inrs.zip"), ("cifar10_inr", "siren_cifar_wts"),
                                        ("nfn_mnist_inr", "siren_mnist_wts"),
                                        ("nfn_fmnist_inr", "siren_fashion_wts")])
def test_datamodules_without_files_say_where_to_get_them(tmp_path, name, hint):
    for kwargs in ({}, {"root": str(tmp_path / "missing")}):
        dm = create_datamodule(name, cache_dir=str(tmp_path / "cache"), **kwargs)
        with pytest.raises(NnzooError) as err:
            dm.setup()
        _one_line(err, hint, "data.root")


def _config(name, **overrides):
    data = to_container(load_yaml(config_path("data", name)).data)
    data.pop("name")
    return {**data, **overrides}


def test_cifar10_inr_loads_through_its_config(tmp_path):
    _dataset(tmp_path / "siren_cifar_wts", nfn_spec(), aug=1)
    dm = create_datamodule("cifar10_inr", **_config("cifar10_inr", root=str(tmp_path), include_aug=1,
                                                    cache_dir=str(tmp_path / "cache")))
    info = dm.info
    assert info.name == "cifar10_inr" and info.num_outputs == 10 and info.class_names[0] == "airplane"
    assert info.specs == (nfn_spec(),) and info.specs[0].output_offset == 0.0
    assert {k: len(dm.split(k)) for k in SPLITS} == {"train": 16, "val": 4, "test": 4}
    batch = next(iter(dm.train_dataloader()))
    assert len(batch) == 16 and set(batch.y.tolist()) == {3, 7}


def test_nfn_mnist_inr_rejects_cifar_files(tmp_path):
    _dataset(tmp_path, nfn_spec(), aug=0)
    with pytest.raises(NnzooError, match="wrong architecture"):
        create_datamodule("nfn_mnist_inr", root=str(tmp_path), cache_dir=str(tmp_path / "cache")).setup()


def test_fmnist_inr_loads_dwsnets_files_through_its_config(tmp_path):
    spec = siren_spec()
    sizes = dict(zip(SPLITS, (6, 2, 3)))
    params = {s: random_params(spec, n, seed=i, scale=0.1) for i, (s, n) in enumerate(sizes.items())}
    labels = {s: torch.arange(n) % 10 for s, n in sizes.items()}
    write_dwsnets(tmp_path, spec, params, labels, {s: torch.arange(n) for s, n in sizes.items()},
                  prefix="fmnist", write_statistics=False)
    dm = create_datamodule("fmnist_inr", **_config("fmnist_inr", root=str(tmp_path),
                                                   cache_dir=str(tmp_path / "cache")))
    info = dm.info
    assert info.name == "fmnist_inr" and info.num_outputs == 10 and info.class_names[-1] == "Ankle boot"
    assert info.specs == (spec,) and info.specs[0].output_offset == 0.5
    assert torch.equal(dm.split("test").params[0], params["test"])
    assert dm.split("train").targets.tolist() == labels["train"].tolist()
    assert [len(dm.split(s)) for s in SPLITS] == [6, 2, 3]
