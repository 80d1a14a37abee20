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
    from nnzoo.zoo import manifest, MANIFEST
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


def test_the_fuzzers_can_fail():
    """A reader leaking a raw exception is caught by the harness (so the tests above mean something)."""
    with pytest.raises(ZeroDivisionError):
        _only_clean_errors(lambda p: 1 / 0, b"")
