"""Hostile inputs that used to end as a traceback, a NaN printed with exit 0, or an empty run folder (issue 27,
items 6 and 8-13): decompression-bomb images, odd tensor kinds, huge finite weights, ambiguous class names,
duplicate loggers, Trainer options Lightning refuses, overflowing numbers, long names, bad interpolations,
deeply nested JSON, unreadable logs on resume, read-only folders and Ctrl-C.  Each must end as one line
naming the file or key (exit 2; 130 for Ctrl-C) with nothing written.  Shipped checkpoints and the tiny
random dataset only: nothing is trained but two seconds-long fits.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
import torch

from nnzoo.cli import main
from nnzoo.errors import NnzooError
from nnzoo.nets import siren_spec
from nnzoo.nets.functional import params_to_state_dict
from tests.conftest import random_params, tiny_fit_args

NNZOO = str(Path(sys.executable).parent / "nnzoo")
SPEC = siren_spec()
SHIPPED = Path(__file__).resolve().parent.parent / "checkpoints"


def _one_line(capsys) -> str:
    captured = capsys.readouterr()
    err = [line for line in captured.err.strip().splitlines() if line.strip()]
    assert len(err) == 1, err
    assert "Traceback" not in captured.err and "unexpected" not in err[0], err[0]
    return err[0]


def _inr(path: Path, seed: int = 0, **replace: float) -> Path:
    """A random SIREN state dict; ``replace`` sets every value of the named tensors."""
    state = params_to_state_dict(random_params(SPEC, 1, seed=seed, scale=0.2)[0], SPEC)
    for key, value in replace.items():
        state[key] = torch.full_like(state[key], value)
    torch.save(state, path)
    return path


def _png(path: Path, width: int, height: int) -> Path:
    """A valid PNG header claiming ``width x height`` 8-bit gray pixels, with almost no pixel data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * (width + 1) * 4)) + chunk(b"IEND", b""))
    return path


# ------------------------------------------------------------------ item 6: images
@pytest.mark.parametrize("width, height", [(60000, 60000), (5000, 5000)])
def test_an_image_claiming_a_huge_size_is_refused_before_decoding(width, height, tmp_path, capsys):
    image = _png(tmp_path / "bomb.png", width, height)
    assert image.stat().st_size < 10_000
    start = time.perf_counter()
    assert main(["inr", "fit", str(image), "-o", str(tmp_path / "out.pth")]) == 2
    line = _one_line(capsys)
    assert f"{width} x {height}" in line and "bomb.png" in line, line
    assert time.perf_counter() - start < 30, "nothing may be decoded"
    assert not (tmp_path / "out.pth").exists()


def test_every_image_read_goes_through_the_one_reader_with_the_limit():
    """No module but nnzoo/data/images.py opens image files (matplotlib's imread bypassed Pillow's limit)."""
    package = Path(__file__).resolve().parent.parent / "nnzoo"
    readers = ("imread(", "Image.open(", "imageio", "cv2.imread", "decode_image(", "read_image(")
    offenders = [f"{p.relative_to(package)}: {r}" for p in package.rglob("*.py") if p.name != "images.py"
                 for r in readers if r in p.read_text() and not (r == "read_image(" and p.name == "siren_fit.py")]
    assert offenders == []
    assert "read_image_file(" in (package / "data" / "siren_fit.py").read_text()


# ------------------------------------------------------------------ item 11: tensor kinds
def _sparse_coo(t):
    return t.to_sparse()


def _sparse_csr(t):
    return t.to_sparse_csr() if t.dim() == 2 else t


def _meta(t):
    return torch.empty(t.shape, device="meta")


def _nested(t):
    return torch.nested.nested_tensor([t, t])


def _quantized(t):
    return torch.quantize_per_tensor(t, 0.1, 0, torch.qint8)


def _complex(t):
    return t.to(torch.complex64)


KINDS = [(_sparse_coo, "sparse"), (_sparse_csr, "sparse"), (_meta, "meta"), (_nested, "nested"),
         (_quantized, "quantized"), (_complex, "complex")]


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("convert, word", KINDS, ids=[w + f.__name__ for f, w in KINDS])
def test_a_network_file_with_an_odd_tensor_kind_is_one_line(convert, word, tmp_path, capsys):
    state = params_to_state_dict(random_params(SPEC, 1)[0], SPEC)
    torch.save({k: convert(v) for k, v in state.items()}, tmp_path / "odd.pth")
    assert main(["predict", "--checkpoint", "gnn-mnist_inr", str(tmp_path / "odd.pth")]) == 2
    line = _one_line(capsys)
    assert "odd.pth" in line and word in line and "seq.0.weight" in line, line
    assert capsys.readouterr().out == ""


def _first_matrix(blob) -> str:
    return next(k for k, v in blob["state_dict"].items() if v.is_floating_point() and v.dim() == 2)


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("damage, words", [
    (lambda b: b["state_dict"].update({(k := _first_matrix(b)): b["state_dict"][k].to_sparse()}), "sparse"),
    (lambda b: b["state_dict"].update({(k := _first_matrix(b)): b["state_dict"][k].to(torch.complex64)}), "complex"),
    (lambda b: b["state_dict"].update({(k := _first_matrix(b)): _quantized(b["state_dict"][k])}), "quantized"),
    (lambda b: b["hyper_parameters"]["data_info"].update(task="regression"), "num_outputs is 10"),
    (lambda b: b.update(state_dict={k: v.long() if v.is_floating_point() else v
                                    for k, v in b["state_dict"].items()}), "stored as int64"),
], ids=["sparse", "complex", "quantized", "task-regression", "cast-to-int64"])
def test_a_crafted_checkpoint_is_one_line_naming_it(damage, words, tmp_path, capsys):
    blob = torch.load(SHIPPED / "gnn-mnist_inr.pt", weights_only=True)
    damage(blob)
    torch.save(blob, tmp_path / "crafted.pt")
    net = _inr(tmp_path / "net.pth")
    assert main(["predict", "--checkpoint", str(tmp_path / "crafted.pt"), str(net)]) == 2
    line = _one_line(capsys)
    assert "crafted.pt" in line and words in line, line


# ------------------------------------------------------------------ item 8: non-finite outputs
def _strict_json_lines(text: str) -> list[dict]:
    return [json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} is not JSON")) for line in text.splitlines()]


def test_huge_finite_weights_are_refused_before_any_prediction(tmp_path, capsys):
    good, huge = _inr(tmp_path / "good.pth"), _inr(tmp_path / "huge.pth", **{k: 1e38 for k in
                                                                              ("seq.0.weight", "seq.2.weight")})
    assert main(["predict", "--checkpoint", "gnn-mnist_inr", str(good), str(huge)]) == 2
    line = _one_line(capsys)
    assert "huge.pth" in line and "inf or NaN" in line, line
    assert main(["predict", "--checkpoint", "gnn-mnist_inr", str(good)]) == 0
    (result,) = _strict_json_lines(capsys.readouterr().out)
    assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)


def test_a_prediction_that_is_not_a_number_is_one_line_and_nothing_is_printed(tmp_path, capsys, monkeypatch):
    """Weights the input checks cannot judge (any activation, any checkpoint) can still make the model answer
    NaN; that answer names the network and is never printed (``NaN`` is not JSON)."""
    from nnzoo.tasks.classification import ClassificationTask
    original = ClassificationTask.forward

    def poisoned(self, batch):
        out = original(self, batch)
        return out * torch.tensor([[1.0]] + [[float("nan")]] * (len(out) - 1))  # every network but the first
    monkeypatch.setattr(ClassificationTask, "forward", poisoned)
    files = [str(_inr(tmp_path / f"net{i}.pth", seed=i)) for i in range(3)]
    assert main(["predict", "--checkpoint", "gnn-mnist_inr", *files]) == 2
    line = _one_line(capsys)
    assert "net1.pth" in line and "NaN" in line, line
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("how", ["huge-input", "nan-edit"])
def test_an_edit_that_is_not_finite_writes_nothing(how, tmp_path, capsys, monkeypatch):
    from nnzoo.tasks.editing import EditingTask
    (tmp_path / "in").mkdir()
    if how == "nan-edit":  # a model answer that is not a number, whatever the cause
        original = EditingTask.edit
        monkeypatch.setattr(EditingTask, "edit", lambda self, batch: [p * float("nan") for p in original(self, batch)])
        net = _inr(tmp_path / "in" / "net.pth")
    else:  # finite weights whose rendering overflows float32
        net = _inr(tmp_path / "in" / "net.pth", **{"seq.2.weight": 1e38})
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", "gnn-mnist_inr_dilate", str(net), "--output", str(out)]) == 2
    line = _one_line(capsys)
    assert "net.pth" in line, line
    assert not out.exists() or not any(out.iterdir()), "no edited network, no picture"
    assert capsys.readouterr().out == ""


def test_a_dataset_inr_with_huge_finite_weights_is_one_line_naming_its_file(tmp_path):
    from nnzoo.data import create_datamodule
    from nnzoo.data.formats.dwsnets import SPLITS, write_dwsnets
    params = {s: random_params(SPEC, n, seed=i, scale=0.1) for i, (s, n) in enumerate(zip(SPLITS, (4, 2, 2)))}
    params["test"][1, -SPEC.slots[-2].numel - 1:] = 1e38  # the last weights of one test INR
    labels = {s: torch.arange(len(p)) % 10 for s, p in params.items()}
    ids = {s: torch.arange(len(p)) + 100 * i for i, (s, p) in enumerate(params.items())}
    write_dwsnets(tmp_path, SPEC, params, labels, ids, write_statistics=False)
    for name in ("mnist_inr", "mnist_inr_dilate"):
        with pytest.raises(NnzooError) as err:
            create_datamodule(name, root=str(tmp_path), cache_dir=str(tmp_path / "home")).setup()
        assert "testing" in str(err.value) and "inf or NaN" in str(err.value), str(err.value)


# ------------------------------------------------------------------ item 9: class names that are numbers
def _pack_source(tmp_path: Path) -> tuple[Path, Path]:
    folder = tmp_path / "nets"
    folder.mkdir()
    for i in range(12):
        torch.save({"0.weight": torch.randn(4, 3), "0.bias": torch.randn(4), "2.weight": torch.randn(3, 4),
                    "2.bias": torch.randn(3)}, folder / f"n{i}.pth")
    labels = tmp_path / "labels.csv"
    labels.write_text("file,label\n" + "".join(f"n{i}.pth,{i % 3}\n" for i in range(12)))
    return folder, labels


@pytest.mark.parametrize("classes, ok", [("1,0,2", False), ("a,b,0", False), ("0,1,2", True), ("cat,dog,2", True)])
def test_class_names_that_are_other_indices_are_refused(classes, ok, tmp_path, nnzoo_home, capsys):
    folder, labels = _pack_source(tmp_path)
    name = "classes-" + classes.replace(",", "_")
    args = ["pack", str(folder), "--labels", str(labels), "--name", name, "--classes", classes, "--force"]
    if ok:  # labels 0, 1, 2 are indices, and a numeric name is its own index: one reading only
        assert main(args) == 0
        meta = json.loads((nnzoo_home / "packs" / name / "pack.json").read_text())
        assert meta["class_names"] == classes.split(",")
        assert [n["label"] for n in meta["networks"]] == [i % 3 for i in range(12)]
        return
    assert main(args) == 2
    line = _one_line(capsys)
    assert f"--classes {classes}" in line and "its own index" in line, line
    assert not (nnzoo_home / "packs" / name).exists()


def test_the_pack_help_states_how_numeric_class_names_are_read(capsys):
    with pytest.raises(SystemExit):
        main(["pack", "--help"])
    assert "must be its own index" in " ".join(capsys.readouterr().out.split())


# ------------------------------------------------------------------ items 10, 12, 13: options refused up front
REFUSED_BEFORE_ANY_FOLDER = [
    ("trainer.logger=[csv,csv]", "trainer.logger"),
    ("trainer.logger=[tensorboard,tensorboard]", "trainer.logger"),
    ("trainer.max_steps=-5", "trainer.max_steps"),
    ("trainer.val_check_interval=nan", "trainer.val_check_interval"),
    ("trainer.strategy=foo", "trainer.strategy"),
    ("trainer.accelerator=tpu", "trainer.accelerator"),
    ("trainer.fast_dev_run=-1", "trainer.fast_dev_run"),
    ("trainer.overfit_batches=1.5", "trainer.overfit_batches"),
    ("trainer.max_time=abc", "trainer.max_time"),
    ("trainer.max_time=00:00:00:-5", "trainer.max_time"),
    ("trainer.max_time=00:00:00:00", "trainer.max_time"),
    ("trainer.max_time={hours: -1}", "trainer.max_time"),
    ("trainer.max_time={fortnights: 1}", "trainer.max_time"),
    ("trainer.profiler=nope", "trainer.profiler"),
    ("data.widths=[2,100000,100000,1]", "data.widths"),
    (f"data.batch_size={2**70}", "data.batch_size"),
    (f"model.hidden={2**70}", "model.hidden"),
]


@pytest.mark.parametrize("override, key", REFUSED_BEFORE_ANY_FOLDER, ids=[o[:40] for o, _ in REFUSED_BEFORE_ANY_FOLDER])
def test_an_option_that_cannot_start_a_run_is_one_line_and_claims_no_folder(override, key, tiny_inr_root, tmp_path,
                                                                           capsys):
    runs = tmp_path / "runs"
    assert main(tiny_fit_args(tiny_inr_root, runs, override)) == 2
    line = _one_line(capsys)
    assert key in line, line
    assert not runs.exists() or not any(runs.rglob("version_*")), "no run folder for a run that cannot start"


def test_a_network_too_large_for_memory_is_refused_when_its_spec_is_made():
    from nnzoo.nets.spec import MAX_NETWORK_PARAMS, NetworkSpec
    with pytest.raises(NnzooError, match="10,000,500,001 parameters"):
        siren_spec((2, 100000, 100000, 1))
    spec = siren_spec((2, 32, 32, 1)).to_dict()
    spec["layers"][1]["in_features"] = spec["layers"][0]["out_features"] = 10**6
    spec["layers"][1]["out_features"] = spec["layers"][2]["in_features"] = 10**6
    with pytest.raises(NnzooError, match=f"{MAX_NETWORK_PARAMS:,}"):
        NetworkSpec.from_dict(spec)  # a crafted --spec file or checkpoint data_info


@pytest.mark.parametrize("key", ["run_dir", "name"])
def test_a_folder_name_too_long_for_the_filesystem_is_one_line_before_any_work(key, tiny_inr_root, tmp_path, capsys):
    runs = tmp_path / ("r" * 300) / "runs" if key == "run_dir" else tmp_path / "runs"
    assert main(tiny_fit_args(tiny_inr_root, runs, *([f"name={'n' * 300}"] if key == "name" else []))) == 2
    line = _one_line(capsys)
    assert f"shorter {key}" in line and "300 bytes" in line, line
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("text, key", [("seed: ${seed}\n", "seed"),
                                       ("model:\n  dropout: ${model.dropout}\n", "model.dropout"),
                                       ("model:\n  dropout: ${oc.env:NNZOO_TEST_UNSET_VARIABLE}\n", "model.dropout"),
                                       ("optim:\n  lr: ${optim.nope}\n", "optim.lr")])
def test_an_interpolation_that_cannot_resolve_is_one_line_naming_the_key(text, key, tiny_inr_root, tmp_path, capsys,
                                                                         monkeypatch):
    monkeypatch.delenv("NNZOO_TEST_UNSET_VARIABLE", raising=False)
    config = tmp_path / "mine.yaml"
    config.write_text(text)
    runs = tmp_path / "runs"
    assert main([*tiny_fit_args(tiny_inr_root, runs), "--config", str(config)]) == 2
    line = _one_line(capsys)
    assert line.startswith(f"nnzoo: error: {key} cannot be resolved"), line
    assert not runs.exists()


@pytest.mark.parametrize("argv, words", [
    (["--steps", "-1"], "--steps"), (["--steps", "0"], "--steps"), (["--steps", str(10**23)], "--steps"),
    (["--steps", "1e23"], "--steps"), (["--seed", str(2**64)], "--seed"), (["--psnr-target", "nan"], "--psnr-target")])
def test_inr_fit_options_that_cannot_fit_are_one_line(argv, words, tmp_path, capsys):
    import numpy as np
    from PIL import Image
    image = np.zeros((28, 28), np.uint8)
    image[8:20, 12:16] = 255
    Image.fromarray(image).save(tmp_path / "digit.png")
    try:
        code = main(["inr", "fit", str(tmp_path / "digit.png"), "-o", str(tmp_path / "out.pth"), *argv])
    except SystemExit as exc:  # argparse's own refusals (not an integer) exit from parse_args
        code = exc.code
    assert code == 2
    assert words in _one_line(capsys)
    assert not (tmp_path / "out.pth").exists(), "an unfitted INR is never written"


def test_pack_seed_beyond_64_bits_is_one_line(tmp_path, nnzoo_home, capsys):
    folder, labels = _pack_source(tmp_path)
    assert main(["pack", str(folder), "--labels", str(labels), "--name", "seedy", "--classes", "3",
                 "--seed", str(2**64)]) == 2
    assert "--seed" in _one_line(capsys)
    assert not (nnzoo_home / "packs" / "seedy").exists()


# ------------------------------------------------------------------ item 13: files
def _deep(path: Path, depth: int = 100_000) -> Path:
    path.write_text("[" * depth + "]" * depth)
    return path


def test_a_deeply_nested_manifest_breaks_no_lookup_of_another_folder(tmp_path, capsys, monkeypatch):
    bad = tmp_path / "bad"
    bad.mkdir()
    _deep(bad / "manifest.json")
    monkeypatch.setenv("NNZOO_CHECKPOINTS", str(bad))
    net = _inr(tmp_path / "net.pth")
    assert main(["predict", "--checkpoint", "gnn-mnist_inr", str(net)]) == 0
    captured = capsys.readouterr()
    assert _strict_json_lines(captured.out)[0]["file"] == str(net)
    assert "warning" in captured.err and str(bad / "manifest.json") in captured.err
    assert main(["list", "checkpoints"]) == 2  # listing them all still says which manifest is broken
    assert "manifest.json" in _one_line(capsys)
    assert main(["predict", "--checkpoint", "not-listed-anywhere", str(net)]) == 2
    assert "nested too deeply" in _one_line(capsys)


def test_deeply_nested_splits_and_spec_files_are_one_line(tmp_path, capsys):
    from nnzoo.data import create_datamodule
    splits = _deep(tmp_path / "mnist_splits.json")
    with pytest.raises(NnzooError, match="nested too deeply"):
        create_datamodule("mnist_inr", root=str(tmp_path), cache_dir=str(tmp_path / "home")).setup()
    folder, labels = _pack_source(tmp_path)
    assert main(["pack", str(folder), "--labels", str(labels), "--name", "deep", "--classes", "3",
                 "--spec", str(_deep(tmp_path / "spec.json"))]) == 2
    assert "spec.json" in _one_line(capsys)
    assert splits.exists()


@pytest.mark.parametrize("metric, ok", [("high", False), (True, False), ([0.9], False), (None, True)])
def test_manifest_metrics_must_be_numbers(metric, ok, tmp_path, capsys, monkeypatch):
    folder = tmp_path / "mine"
    folder.mkdir()
    shipped = json.loads((SHIPPED / "manifest.json").read_text())
    entry = next(e for e in shipped["checkpoints"] if e["name"] == "gnn-mnist_inr")
    shutil.copy(SHIPPED / entry["file"], folder / entry["file"])
    entry = dict(entry, name="mine", metrics={**entry["metrics"], "test/acc": metric})
    (folder / "manifest.json").write_text(json.dumps({"checkpoints": [entry]}))
    monkeypatch.setenv("NNZOO_CHECKPOINTS", str(folder))
    if ok:  # a NaN the run wrote as null: shown as nan
        assert main(["list", "checkpoints"]) == 0
        assert "test/acc nan" in capsys.readouterr().out
        return
    assert main(["list", "checkpoints"]) == 2
    line = _one_line(capsys)
    assert "metric 'test/acc'" in line and "manifest" in line, line


@pytest.fixture(scope="module")
def csv_run(tiny_inr_root, nnzoo_home, tmp_path_factory) -> Path:
    """A finished tiny run with a CSV log, its metrics.json removed: what a killed run leaves."""
    runs = tmp_path_factory.mktemp("csv_run")
    assert main(tiny_fit_args(tiny_inr_root, runs, "trainer.logger=[csv]")) == 0
    (runs / "mnist_inr-gnn" / "version_0" / "metrics.json").unlink()
    return runs


def _bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("damage", ["not-utf8", "folder"])
def test_resume_with_an_unreadable_metrics_csv_is_one_line_before_anything_is_written(damage, csv_run, tiny_inr_root,
                                                                                      tmp_path, capsys):
    runs = tmp_path / "runs"
    shutil.copytree(csv_run, runs)
    log = runs / "mnist_inr-gnn" / "version_0" / "metrics.csv"
    log.unlink()
    if damage == "folder":
        log.mkdir()
    else:
        log.write_bytes(b"\xff\xfe\xfa,step\n1,2\n")
    before = _bytes(runs)
    capsys.readouterr()
    assert main(tiny_fit_args(tiny_inr_root, runs, "trainer.logger=[csv]", "resume=true", "trainer.max_epochs=3")) == 2
    line = _one_line(capsys)
    assert "metrics.csv" in line and "resume" in line, line
    assert _bytes(runs) == before


def test_a_read_only_run_folder_is_one_line(tiny_inr_root, tmp_path, capsys, monkeypatch):
    """Tests run as root, where chmod does not bite: the read-only filesystem is simulated at mkdir."""
    runs = tmp_path / "runs"
    (runs / "mnist_inr-gnn").mkdir(parents=True)  # made before the filesystem turned read-only
    real_mkdir = os.mkdir

    def read_only(path, *args, **kwargs):
        if str(path).startswith(str(runs)):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_mkdir(path, *args, **kwargs)
    monkeypatch.setattr(os, "mkdir", read_only)
    assert main(tiny_fit_args(tiny_inr_root, runs)) == 2
    line = _one_line(capsys)
    assert "read-only file system" in line and str(runs / "mnist_inr-gnn" / "version_0") in line, line


def test_permission_denied_on_a_write_is_one_line(monkeypatch, capsys):
    import nnzoo.cli as cli

    def denied(args):
        raise PermissionError(errno.EACCES, "Permission denied", "/somewhere/nnzoo_home/list")
    monkeypatch.setattr(cli, "cmd_list", denied)
    assert main(["list"]) == 2
    line = _one_line(capsys)
    assert "/somewhere/nnzoo_home/list" in line and "permission denied" in line, line


# ------------------------------------------------------------------ Ctrl-C
def test_ctrl_c_during_fit_exits_130_and_leaves_a_resumable_run(tiny_inr_root, nnzoo_home, tmp_path):
    runs = tmp_path / "runs"
    env = {**os.environ, "NNZOO_HOME": str(nnzoo_home), "OMP_NUM_THREADS": "1"}
    env.pop("NNZOO_RUN_VERSION", None)
    # compile=false: at one thread and 10,000 planned epochs, compile=auto would compile the GNN, and a
    # compile (re)started under a busy machine can hold the interrupt past the wait below
    args = tiny_fit_args(tiny_inr_root, runs, "trainer.max_epochs=10000", "compile=false")
    proc = subprocess.Popen([NNZOO, *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    last = runs / "mnist_inr-gnn" / "version_0" / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 240
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert last.exists(), proc.stderr.read()[-2000:] if proc.poll() is not None else "no checkpoint in time"
    proc.send_signal(signal.SIGINT)
    code = proc.wait(timeout=120)
    err = proc.stderr.read()
    assert code == 130, err[-2000:]
    assert err.strip().splitlines()[-1] == "nnzoo: interrupted"
    assert last.is_file() and not (last.parent.parent / "metrics.json").exists()
