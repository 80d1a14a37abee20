"""Fuzzing the file readers with random bytes: they may accept or refuse, but only with a one-line NnzooError."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from nnzoo.data.formats.dwsnets import read_splits, read_statistics
from nnzoo.errors import NnzooError
from nnzoo.io import load_tensors, read_json
from nnzoo.nets import siren_spec

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _valid_torch_file_bytes() -> bytes:
    with tempfile.TemporaryDirectory() as d:
        torch.save({"seq.0.weight": torch.ones(2, 2)}, Path(d) / "x.pth")
        return (Path(d) / "x.pth").read_bytes()


VALID = _valid_torch_file_bytes()
# random bytes, and a real torch file with random bytes spliced in (a zip with damaged members)
blobs = st.one_of(st.binary(max_size=2048),
                  st.tuples(st.integers(0, len(VALID) - 1), st.binary(min_size=1, max_size=64)).map(
                      lambda t: VALID[:t[0]] + t[1] + VALID[t[0] + len(t[1]):]))


def _only_clean_errors(reader, data: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "fuzzed.bin"
        path.write_bytes(data)
        try:
            reader(path)
        except NnzooError as exc:
            assert "\n" not in str(exc)
            assert "fuzzed.bin" in str(exc), str(exc)


@FUZZ
@given(blobs)
def test_torch_file_reader(data):
    _only_clean_errors(load_tensors, data)


@FUZZ
@given(blobs)
def test_statistics_reader(data):
    _only_clean_errors(lambda p: read_statistics(p, siren_spec()), data)


@FUZZ
@given(st.one_of(st.binary(max_size=512), st.text(max_size=512).map(str.encode),
                 st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                              lambda c: st.lists(c, max_size=4) | st.dictionaries(st.sampled_from(
                                  ["train", "val", "test", "path", "label"]), c, max_size=4),
                              max_leaves=12).map(lambda v: __import__("json").dumps(v).encode())))
@example(b'{"train": {"path": null, "label": null}}')  # once found by the fuzzer: len(None) deep in the reader
def test_json_and_splits_readers(data):
    _only_clean_errors(read_json, data)
    _only_clean_errors(read_splits, data)


_ENTRY = {"name": "gnn-x", "file": "gnn-x.pt", "model": "gnn", "data": "mnist_inr", "task": "classification",
          "metrics": {"test/acc": 0.5}, "num_parameters": 10, "sha256": "0" * 64, "nnzoo_version": "0.1.0",
          "config": {}, "input_convention": None}
_json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                            lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
                            max_leaves=8)


def _manifest_reader(path: Path) -> None:
    from nnzoo.pretrained import manifest, MANIFEST
    (path.parent / MANIFEST).write_bytes(path.read_bytes())
    try:
        manifest(path.parent)
    except NnzooError as exc:  # the harness looks for the fuzzed file's name: the manifest's is its own
        raise NnzooError(str(exc).replace(MANIFEST, "fuzzed.bin")) from None


@FUZZ
@given(st.one_of(
    st.binary(max_size=256),
    _json_values.map(lambda v: json.dumps({"checkpoints": v}).encode()),  # a damaged list
    st.tuples(st.sampled_from(sorted(_ENTRY) + ["extra"]), _json_values, st.booleans()).map(  # one field edited
        lambda t: json.dumps({"checkpoints": [{k: v for k, v in {**_ENTRY, t[0]: t[1]}.items()
                                               if not (t[2] and k == t[0])}]}).encode())))
@example(json.dumps({"checkpoints": [{**_ENTRY, "num_parameters": True}]}).encode())
def test_manifest_reader(data):
    _only_clean_errors(_manifest_reader, data)


def _renamed(reader, path: Path, name: str) -> None:
    """Run ``reader`` on the fuzzed bytes copied to ``name`` beside them; its errors name ``name``, which the
    harness expects as the fuzzed file's."""
    (path.parent / name).write_bytes(path.read_bytes())
    try:
        reader(path.parent)
    except NnzooError as exc:
        raise NnzooError(str(exc).replace(name, "fuzzed.bin")) from None


def _arch_zoo_index(path: Path) -> None:
    from nnzoo.data.formats.arch_zoo import INDEX, load_arch_zoo
    _renamed(load_arch_zoo, path, INDEX)


def _arch_zoo_file(path: Path) -> None:
    """A valid index whose one architecture file holds the fuzzed bytes."""
    from nnzoo.data.formats.arch_zoo import INDEX, load_arch_zoo
    from nnzoo.nets.graph_spec import spec_from_dict
    spec = spec_from_dict(_TINY_GRAPH)
    (path.parent / INDEX).write_text(json.dumps({"format": "nnzoo-arch-zoo", "version": 1, "architectures": [
        {"file": path.name, "arch": {}, "spec": spec.to_dict()}]}))
    load_arch_zoo(path.parent)


def _small_transformer_zoo_csv(path: Path) -> None:
    from nnzoo.data.formats.small_transformer_zoo import load_small_transformer_zoo
    (path.parent / "metadata").mkdir(exist_ok=True)
    _renamed(lambda d: load_small_transformer_zoo(d, "mnist"), path, "metadata/mnist.csv")


def _tiny_graph() -> dict:
    from torch import nn

    from nnzoo.nets import spec_from_module
    return spec_from_module(nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)), input_shape=(2,),
                            graph=True).to_dict()


_TINY_GRAPH = _tiny_graph()
_CSV_HEADER = b"run,ckpt_epoch,ckpt_file,test_top1_accuracy,n_attention_heads\n"


_INDEX_KEYS = ["format", "version", "architectures", "file", "spec", "arch", "runs"]
_index_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2, 3) | st.sampled_from(["nnzoo-arch-zoo", "fuzzed.bin", "..", ""]),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.sampled_from(_INDEX_KEYS), c, max_size=4), max_leaves=10)


@FUZZ
@given(st.one_of(blobs, st.binary(max_size=512).map(lambda b: _CSV_HEADER + b),
                 st.text(max_size=300).map(lambda t: (_CSV_HEADER.decode() + t).encode()),
                 _index_values.map(lambda v: json.dumps(v).encode()),
                 _index_values.map(lambda v: json.dumps({"format": "nnzoo-arch-zoo", "version": 1,
                                                         "architectures": v}).encode())))
@example(_CSV_HEADER + b"a,75,mnist/../x.pt,0.5,2\n")
@example(json.dumps({"format": "nnzoo-arch-zoo", "version": 1, "architectures": [{"file": None}]}).encode())
def test_architecture_zoo_readers(data):
    _only_clean_errors(_arch_zoo_index, data)
    _only_clean_errors(_arch_zoo_file, data)
    _only_clean_errors(_small_transformer_zoo_csv, data)


def test_the_fuzzers_can_fail():
    """A reader leaking a raw exception is caught by the harness (so the tests above mean something)."""
    with pytest.raises(ZeroDivisionError):
        _only_clean_errors(lambda p: 1 / 0, b"")
