"""The public DWSNets INR format: round trip, path resolution and clear errors on bad files."""

import json
import os

import pytest
import torch

from nnzoo.data.formats.dwsnets import SPLITS, load_dwsnets, read_statistics, write_dwsnets
from nnzoo.data.weights import layer_statistics
from nnzoo.errors import NnzooError
from nnzoo.nets import siren_spec
from tests.conftest import random_params


def _write(tmp_path, spec, sizes=(6, 2, 3)):
    params = {s: random_params(spec, n, seed=i, scale=0.1) for i, (s, n) in enumerate(zip(SPLITS, sizes))}
    labels = {s: torch.arange(n) % 10 for s, n in zip(SPLITS, sizes)}
    ids = {s: torch.arange(n) + 100 * i for i, (s, n) in enumerate(zip(SPLITS, sizes))}
    return write_dwsnets(tmp_path, spec, params, labels, ids), params, labels


def test_files_use_the_public_layout(tmp_path):
    spec = siren_spec()
    splits_path, params, labels = _write(tmp_path, spec)
    blob = json.loads(splits_path.read_text())
    assert set(blob) == {"train", "val", "test"}
    assert blob["train"]["label"][1] == "1"  # MNIST labels are strings in the public splits
    first = blob["train"]["path"][0]
    assert first == "mnist-inrs/mnist_png_training_0_0/checkpoints/model_final.pth"
    assert blob["test"]["path"][0].startswith("mnist-inrs/mnist_png_testing_")
    sd = torch.load(tmp_path / first, weights_only=True)
    assert list(sd) == ["seq.0.weight", "seq.0.bias", "seq.1.weight", "seq.1.bias", "seq.2.weight", "seq.2.bias"]
    assert sd["seq.0.weight"].shape == (32, 2)
    stats = torch.load(tmp_path / "mnist_statistics.pth", weights_only=True)
    assert [t.shape for t in stats["weights"]["mean"]] == [(2, 32, 1), (32, 32, 1), (32, 1, 1)]
    assert [t.shape for t in stats["biases"]["std"]] == [(32, 1), (32, 1), (1, 1)]


def test_round_trip_is_exact(tmp_path):
    spec = siren_spec()
    splits_path, params, labels = _write(tmp_path, spec)
    data = load_dwsnets(splits_path, spec)
    for s in SPLITS:
        assert torch.equal(data.params[s], params[s])
        assert torch.equal(data.labels[s], labels[s])


def test_cache_serves_the_same_tensors(tmp_path):
    spec = siren_spec()
    splits_path, params, _ = _write(tmp_path / "d", spec)
    first = load_dwsnets(splits_path, spec, cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("dwsnets-*.pt"))) == 1
    os.remove(tmp_path / "d" / json.loads(splits_path.read_text())["val"]["path"][0])  # cache must not need files
    second = load_dwsnets(splits_path, spec, cache_dir=tmp_path / "cache")
    assert torch.equal(first.params["val"], second.params["val"])


def test_statistics_file_pools_to_per_layer_statistics(tmp_path):
    spec = siren_spec()
    splits_path, params, _ = _write(tmp_path, spec, sizes=(40, 2, 2))
    pooled = read_statistics(tmp_path / "mnist_statistics.pth", spec)
    direct = layer_statistics([spec], [params["train"]])
    for role in ("weight", "bias"):
        for (m1, s1), (m2, s2) in zip(pooled[role], direct[role]):
            assert m1 == pytest.approx(m2, abs=1e-5)
            assert s1 == pytest.approx(s2, rel=0.05)  # per-entry stds use n-1, pooled uses n


def test_paths_relative_to_another_folder_are_resolved(tmp_path):
    """Published splits hold paths like dataset/mnist-inrs/...; the loader finds the files anyway."""
    spec = siren_spec()
    splits_path, params, _ = _write(tmp_path, spec)
    blob = json.loads(splits_path.read_text())
    for s in SPLITS:
        blob[s]["path"] = ["dataset/" + p for p in blob[s]["path"]]
    splits_path.write_text(json.dumps(blob))
    assert torch.equal(load_dwsnets(splits_path, spec).params["train"], params["train"])


def test_missing_inr_file_is_named(tmp_path):
    spec = siren_spec()
    splits_path, _, _ = _write(tmp_path, spec)
    victim = json.loads(splits_path.read_text())["val"]["path"][1]
    os.remove(tmp_path / victim)
    with pytest.raises(NnzooError, match="model_final.pth"):
        load_dwsnets(splits_path, spec)


def test_corrupt_inr_file_is_named(tmp_path):
    spec = siren_spec()
    splits_path, _, _ = _write(tmp_path, spec)
    victim = tmp_path / json.loads(splits_path.read_text())["train"]["path"][2]
    victim.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(NnzooError) as err:
        load_dwsnets(splits_path, spec)
    assert str(victim) in str(err.value) and "\n" not in str(err.value)


def test_wrong_architecture_is_named(tmp_path):
    spec = siren_spec()
    splits_path, _, _ = _write(tmp_path, spec)
    with pytest.raises(NnzooError, match="wrong architecture"):
        load_dwsnets(splits_path, siren_spec((2, 16, 16, 1)))


def test_nan_weights_are_refused(tmp_path):
    spec = siren_spec()
    splits_path, _, _ = _write(tmp_path, spec)
    victim = tmp_path / json.loads(splits_path.read_text())["test"]["path"][0]
    sd = torch.load(victim, weights_only=True)
    sd["seq.2.bias"][0] = float("nan")
    torch.save(sd, victim)
    with pytest.raises(NnzooError, match="NaN"):
        load_dwsnets(splits_path, spec)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_pickle_with_code_is_refused_not_executed(tmp_path):
    spec = siren_spec()
    splits_path, _, _ = _write(tmp_path, spec)
    victim = tmp_path / json.loads(splits_path.read_text())["train"]["path"][0]
    torch.save({"seq.0.weight": _Evil()}, victim)
    with pytest.raises(NnzooError, match="pickled code"):
        load_dwsnets(splits_path, spec)


def test_missing_or_malformed_splits_file(tmp_path):
    spec = siren_spec()
    with pytest.raises(NnzooError, match="splits file not found"):
        load_dwsnets(tmp_path / "nope.json", spec)
    bad = tmp_path / "bad.json"
    bad.write_text('{"train": {"path": []}}')
    with pytest.raises(NnzooError, match="'train' entry"):
        load_dwsnets(bad, spec)
    bad.write_text("{not json")
    with pytest.raises(NnzooError, match="not valid JSON"):
        load_dwsnets(bad, spec)
