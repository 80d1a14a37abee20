"""Hostile input at the command line: wrong-typed options, names that are paths, racing and resumed runs,
damaged checkpoints, manifests and benchmark files.  Each case must end as one line on stderr that names
the key or file (exit 2), with nothing overwritten and nothing written outside its folder.

(Data files, labels, splits and build recipes: tests/test_hostile_inr.py and tests/test_hostile_cnn.py.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nnzoo.cli import main
from nnzoo.errors import NnzooError
from nnzoo.io import write_json
from nnzoo.nets import siren_spec
from nnzoo.nets.functional import params_to_state_dict
from nnzoo.train import StopOnNonFiniteLoss, _claim_version
from tests.conftest import random_params, tiny_fit_args

NNZOO = str(Path(sys.executable).parent / "nnzoo")


def _one_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.strip()]
    assert len(err) == 1, err
    return err[0]


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------ wrong-typed or out-of-range options
BAD_OVERRIDES = [
    ("trainer.max_epochs=abc", "trainer.max_epochs"), ("trainer.max_epochs=-3", "trainer.max_epochs"),
    ("trainer.devices=0", "trainer.devices"), ("trainer.precision=banana", "trainer.precision"),
    ("data.batch_size=0", "data.batch_size"), ("data.batch_size=-1", "data.batch_size"),
    ("data.batch_size=abc", "data.batch_size"), ("data.num_workers=-1", "data.num_workers"),
    ("seed=abc", "seed"), ("seed=-1", "seed"), ("seed=[1,2", "seed=[1,2"), ("threads=abc", "threads"),
    ("optim.lr=abc", "optim.lr"), ("optim.lr=-1", "optim.lr"), ("optim.lr=1e30", "optim.lr"),
    ("resume=maybe", "resume"), ("optim.schedule=bogus", "optim.schedule"), ("model.hidden=abc", "model.hidden"),
    ("model.hidden=-4", "model.hidden"), ("model.reverse_edges=3", "model.reverse_edges"),
    ("data.augment.dropout=1.5", "data.augment.dropout"), ("sed=3", "sed"),
    ("name=../../escape_run", "name"), ("name=a/b", "name"),
]


@pytest.mark.parametrize("override, key", BAD_OVERRIDES, ids=[o for o, _ in BAD_OVERRIDES])
def test_bad_override_is_one_line_naming_the_key_before_any_work(override, key, tiny_inr_root, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main(tiny_fit_args(tiny_inr_root, runs, override)) == 2
    assert key in _one_line(capsys)
    assert not runs.exists(), "a refused config writes nothing"
    assert not (tmp_path.parent / "escape_run").exists()


def test_gpu_asked_for_on_a_machine_without_one_is_one_line(tiny_inr_root, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(tiny_fit_args(tiny_inr_root, tmp_path, "trainer.accelerator=gpu")) == 2
    assert "trainer.accelerator" in _one_line(capsys)


def test_every_shipped_config_passes_the_checks():
    from nnzoo.config import available, compose
    for model in available("model"):
        for data in available("data"):
            for trainer in available("trainer"):
                compose(model, data, trainer)


@pytest.mark.parametrize("argv, key", [
    (["--model", "/etc/passwd"], "--model"), (["--data", "../data/mnist_inr"], "--data"),
    (["--trainer", "../data/cnn_zoo"], "--trainer"), (["trainer=../data/cnn_zoo"], "--trainer")])
def test_config_names_are_names_not_paths(argv, key, capsys):
    base = {"--model": "gnn", "--data": "mnist_inr"}
    for flag, value in zip(argv[::2], argv[1::2]):
        base[flag] = value
    args = ["config", *[x for kv in base.items() for x in kv], *[a for a in argv if "=" in a]]
    assert main(args) == 2
    assert key in _one_line(capsys)


def test_run_dir_and_cache_home_that_are_files(tiny_inr_root, tmp_path, capsys, monkeypatch):
    a_file = tmp_path / "a_file"
    a_file.write_text("mine")
    assert main(tiny_fit_args(tiny_inr_root, a_file)) == 2
    assert "run_dir" in _one_line(capsys)
    monkeypatch.setenv("NNZOO_HOME", str(a_file))
    assert main(tiny_fit_args(tiny_inr_root, tmp_path / "runs")) == 2
    assert "NNZOO_HOME" in _one_line(capsys)
    assert a_file.read_text() == "mine"


# ------------------------------------------------------------------ the CLI boundary
def test_an_unexpected_failure_is_one_line_and_debug_shows_the_traceback(monkeypatch, capsys):
    import nnzoo.cli as cli

    def broken(args):
        raise RuntimeError("deep inside torch\nsecond line")
    monkeypatch.setattr(cli, "cmd_list", broken)
    assert main(["list"]) == 1
    line = _one_line(capsys)
    assert "RuntimeError: deep inside torch" in line and "--debug" in line
    with pytest.raises(RuntimeError):
        main(["list", "--debug"])


# ------------------------------------------------------------------ run folders: racing and resuming
def test_a_claim_never_takes_a_folder_another_run_created_after_the_listing(tmp_path, monkeypatch):
    """The race, made deterministic: another run creates version_0 between our listing and our mkdir."""
    run = tmp_path / "run"
    (run / "version_0").mkdir(parents=True)
    (run / "version_0" / "config.yaml").write_text("seed: 1\n")
    monkeypatch.setattr(Path, "glob", lambda self, pattern: iter([]))  # the listing that missed it
    try:
        assert _claim_version(run) == 1
    finally:
        os.environ.pop("NNZOO_RUN_VERSION", None)
    assert (run / "version_0" / "config.yaml").read_text() == "seed: 1\n"


def test_two_fits_racing_for_one_name_land_in_two_folders(tiny_inr_root, nnzoo_home, tmp_path):
    runs = tmp_path / "runs"
    env = {**os.environ, "NNZOO_HOME": str(nnzoo_home)}
    env.pop("NNZOO_RUN_VERSION", None)
    procs = [subprocess.Popen([NNZOO, *tiny_fit_args(tiny_inr_root, runs, f"seed={seed}", "name=race")], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for seed in (1, 2)]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()[-2000:]
    folders = sorted((runs / "race").glob("version_*"))
    assert [f.name for f in folders] == ["version_0", "version_1"]
    seeds = set()
    for folder in folders:
        metrics = json.loads((folder / "metrics.json").read_text())
        assert f"seed: {metrics['seed']}\n" in (folder / "config.yaml").read_text(), "one run's record per folder"
        assert metrics["run_dir"].endswith(folder.name)
        seeds.add(metrics["seed"])
    assert seeds == {1, 2}


@pytest.fixture(scope="module")
def finished_run(tiny_inr_root, nnzoo_home, tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("finished")
    assert main(tiny_fit_args(tiny_inr_root, runs)) == 0
    return runs


def _interrupted_copy(finished_run: Path, tmp_path: Path) -> Path:
    """A copy of the finished run without its metrics.json: what a killed run leaves."""
    import shutil
    runs = tmp_path / "runs"
    shutil.copytree(finished_run, runs)
    (runs / "mnist_inr-gnn" / "version_0" / "metrics.json").unlink()
    return runs


def test_resume_of_a_finished_run_leaves_it_as_it_is(finished_run, tiny_inr_root, capsys):
    before = _files(finished_run)
    assert main(tiny_fit_args(tiny_inr_root, finished_run, "resume=true", "trainer.max_epochs=4")) == 2
    assert "finished run" in _one_line(capsys)
    assert _files(finished_run) == before


@pytest.mark.parametrize("override, key", [("model.hidden=16", "model.hidden"), ("seed=5", "seed"),
                                           ("data.normalize=none", "data.normalize")])
def test_resume_with_a_changed_config_is_refused_before_touching_anything(override, key, finished_run,
                                                                          tiny_inr_root, tmp_path, capsys):
    runs = _interrupted_copy(finished_run, tmp_path)
    before = _files(runs)
    assert main(tiny_fit_args(tiny_inr_root, runs, "resume=true", override)) == 2
    line = _one_line(capsys)
    assert key in line and "config.yaml" in line, line
    assert _files(runs) == before


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch /tmp/nnzoo_pwned_resume",))


@pytest.mark.parametrize("damage, words", [
    (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "corrupt"),
    (lambda p: torch.save({"state_dict": {}, "epoch": _Payload()}, p), "pickled code")])
def test_resume_from_a_damaged_last_checkpoint_is_one_line(damage, words, finished_run, tiny_inr_root, tmp_path,
                                                           capsys):
    runs = _interrupted_copy(finished_run, tmp_path)
    damage(runs / "mnist_inr-gnn" / "version_0" / "checkpoints" / "last.ckpt")
    before = _files(runs)
    assert main(tiny_fit_args(tiny_inr_root, runs, "resume=true")) == 2
    assert words in _one_line(capsys)
    assert _files(runs) == before
    assert not Path("/tmp/nnzoo_pwned_resume").exists()


# ------------------------------------------------------------------ non-finite numbers
def test_a_loss_that_becomes_nan_stops_the_run_in_one_line(tiny_inr_root, nnzoo_home, tmp_path, capsys,
                                                           monkeypatch):
    from nnzoo.tasks.classification import ClassificationTask
    original = ClassificationTask.training_step

    def poisoned(self, batch, batch_idx):
        loss = original(self, batch, batch_idx)
        return loss * float("nan") if self.global_step >= 2 else loss
    monkeypatch.setattr(ClassificationTask, "training_step", poisoned)
    runs = tmp_path / "runs"
    assert main(tiny_fit_args(tiny_inr_root, runs)) == 2
    line = _one_line(capsys)
    assert "nan" in line and "optim.lr" in line and "step 3" in line, line  # the third step
    (run,) = runs.glob("*/version_0")
    assert not (run / "metrics.json").exists(), "a diverged run must not look finished"


def test_the_non_finite_loss_check_passes_finite_losses():
    check = StopOnNonFiniteLoss(Path("run"), 1e-3)

    class Trainer:
        current_epoch, global_step = 0, 7
    check.on_train_batch_end(Trainer(), None, {"loss": torch.tensor(0.5)}, None, 0)
    with pytest.raises(NnzooError, match="inf"):
        check.on_train_batch_end(Trainer(), None, {"loss": torch.tensor(float("inf"))}, None, 0)


def test_metrics_files_are_always_valid_json(tmp_path):
    def strict(text: str):
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
    write_json(tmp_path / "m.json", {"test/loss": float("nan"), "rows": [float("inf"), 1.5]})
    assert strict((tmp_path / "m.json").read_text()) == {"test/loss": None, "rows": [None, 1.5]}


# ------------------------------------------------------------------ checkpoints given by path
def _checkpoint_blob(finished_run: Path) -> dict:
    return torch.load(finished_run / "mnist_inr-gnn" / "version_0" / "checkpoints" / "best.ckpt",
                      weights_only=True)


def _nan_weight(blob):
    key = next(k for k, v in blob["state_dict"].items() if v.is_floating_point() and v.numel() > 1)
    blob["state_dict"][key][0] = float("nan")


@pytest.mark.parametrize("damage, words", [
    (lambda b: torch.zeros(3), "not an nnzoo checkpoint"),
    (lambda b: b["state_dict"].update({0: torch.zeros(1)}), "state_dict entry 0"),
    (_nan_weight, "NaN"),
    (lambda b: b["hyper_parameters"]["data_info"].update(num_outputs=0), "num_outputs"),
    (lambda b: b["hyper_parameters"]["data_info"].update(class_names=["zero", "one"]), "class_names"),
], ids=["bare-tensor", "non-string-key", "nan-weight", "no-outputs", "too-few-class-names"])
def test_damaged_checkpoint_is_one_line_in_predict_and_test(damage, words, finished_run, tmp_path, capsys):
    blob = _checkpoint_blob(finished_run)
    replaced = damage(blob)
    bad = tmp_path / "checkpoints" / "bad.ckpt"
    bad.parent.mkdir()
    torch.save(replaced if replaced is not None else blob, bad)
    spec = siren_spec()
    net = tmp_path / "net.pth"
    torch.save(params_to_state_dict(random_params(spec, 1)[0], spec), net)
    assert main(["predict", "--checkpoint", str(bad), str(net)]) == 2
    assert words in _one_line(capsys)
    (tmp_path / "config.yaml").write_text((finished_run / "mnist_inr-gnn" / "version_0" / "config.yaml").read_text())
    assert main(["test", "--checkpoint", str(bad)]) == 2
    assert words in _one_line(capsys)


def test_test_command_checks_its_overrides_and_output_like_fit(finished_run, tmp_path, capsys):
    best = finished_run / "mnist_inr-gnn" / "version_0" / "checkpoints" / "best.ckpt"
    assert main(["test", "--checkpoint", str(best), "sed=3"]) == 2
    assert "sed" in _one_line(capsys)
    assert main(["test", "--checkpoint", str(best), "--output", str(tmp_path)]) == 2
    assert "--output" in _one_line(capsys)


@pytest.mark.parametrize("key", [0, "weights"])
def test_a_network_file_that_is_not_a_state_dict_is_one_line(key, finished_run, tmp_path, capsys):
    net = tmp_path / "net.pth"
    torch.save({key: [1, 2]}, net)
    best = finished_run / "mnist_inr-gnn" / "version_0" / "checkpoints" / "best.ckpt"
    assert main(["predict", "--checkpoint", str(best), str(net)]) == 2
    assert "state dict" in _one_line(capsys)


# ------------------------------------------------------------------ export and the manifest
def test_export_refuses_paths_and_existing_names_without_force(finished_run, tmp_path, capsys):
    run = str(finished_run / "mnist_inr-gnn" / "version_0")
    folder = tmp_path / "ck"
    assert main(["export", run, "--name", "../../x", "--folder", str(folder)]) == 2
    assert "--name" in _one_line(capsys)
    assert not (tmp_path / "x.pt").exists() and not folder.exists()
    assert main(["export", run, "--name", "mine", "--folder", str(folder)]) == 0
    capsys.readouterr()
    before = _files(folder)
    assert main(["export", run, "--name", "mine", "--folder", str(folder)]) == 2
    assert "--force" in _one_line(capsys)
    assert _files(folder) == before
    assert main(["export", run, "--name", "mine", "--folder", str(folder), "--force"]) == 0


@pytest.mark.parametrize("edit, words", [
    (lambda m: m.update(checkpoints={"a": 1}), "list 'checkpoints'"),
    (lambda m: m["checkpoints"][0].update(colour="red"), "unknown field 'colour'"),
    (lambda m: m["checkpoints"][0].pop("sha256"), "no field 'sha256'"),
    (lambda m: m["checkpoints"][0].update(num_parameters="many"), "num_parameters"),
    (lambda m: m["checkpoints"][0].update(file="../../../etc/passwd"), "file"),
], ids=["not-a-list", "extra-field", "missing-field", "wrong-type", "file-path"])
def test_a_hand_edited_manifest_is_one_line(edit, words, finished_run, tmp_path, capsys, monkeypatch):
    folder = tmp_path / "ck"
    assert main(["export", str(finished_run / "mnist_inr-gnn" / "version_0"), "--name", "mine",
                 "--folder", str(folder)]) == 0
    raw = json.loads((folder / "manifest.json").read_text())
    edit(raw)
    (folder / "manifest.json").write_text(json.dumps(raw))
    monkeypatch.setenv("NNZOO_CHECKPOINTS", str(folder))
    capsys.readouterr()
    assert main(["list", "checkpoints"]) == 2
    line = _one_line(capsys)
    assert words in line and "manifest" in line, line


# ------------------------------------------------------------------ benchmark suites and cells
def _suite_file(tmp_path: Path, root: Path, *lines: str) -> str:
    path = tmp_path / "hostile.yaml"
    path.write_text("\n".join(["models: [mlp]", "datasets: [mnist_inr]", "seeds: [0]",
                               f"overrides: [trainer.max_epochs=1, data.root={root}, trainer.enable_progress_bar=false]",
                               *lines]) + "\n")
    return str(path)


@pytest.mark.parametrize("line, words", [("models: mlp", "'models'"), ("seeds: abc", "'seeds'"),
                                         ("seeds: [-1]", "'seeds'"), ("colour: red", "unknown key 'colour'"),
                                         ("overrides: trainer.max_epochs=1", "'overrides'")])
def test_a_bad_suite_is_one_line_naming_the_field(line, words, tiny_inr_root, tmp_path, capsys):
    text = _suite_file(tmp_path, tiny_inr_root)
    key = line.split(":")[0]
    kept = [ln for ln in Path(text).read_text().splitlines() if not ln.startswith(f"{key}:")]
    Path(text).write_text("\n".join([*kept, line]) + "\n")
    assert main(["benchmark", text, "--out", str(tmp_path / "out")]) == 2
    assert words in _one_line(capsys)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content, words", [("[1, 2]", "not a JSON object"), ('{"model": "mlp"}', "has no")])
def test_a_damaged_cell_file_is_one_line_before_any_training(content, words, tiny_inr_root, tmp_path, capsys):
    out = tmp_path / "out"
    (out / "cells").mkdir(parents=True)
    (out / "cells" / "mnist_inr-mlp-s0.json").write_text(content)
    assert main(["benchmark", _suite_file(tmp_path, tiny_inr_root), "--out", str(out)]) == 2
    assert words in _one_line(capsys)
    assert not (out / "runs").exists()


def test_overrides_after_a_flag_are_still_overrides(capsys):
    assert main(["config", "--model", "gnn", "seed=3", "--data", "mnist_inr", "threads=1"]) == 0
    out = capsys.readouterr().out
    assert "seed: 3" in out and "threads: 1" in out
    with pytest.raises(SystemExit):
        main(["config", "--model", "gnn", "--data", "mnist_inr", "--bogus"])


def test_a_raw_pickle_is_named_as_one_not_as_an_opcode(finished_run, tmp_path, capsys):
    import pickle
    net = tmp_path / "net.pkl"
    net.write_bytes(pickle.dumps({"seq.0.weight": [1.0]}, protocol=4))
    best = finished_run / "mnist_inr-gnn" / "version_0" / "checkpoints" / "best.ckpt"
    assert main(["predict", "--checkpoint", str(best), str(net)]) == 2
    line = _one_line(capsys)
    assert "plain pickle" in line and "operand" not in line, line


def test_a_network_file_is_read_by_name_whatever_the_order_of_its_tensors(finished_run, tmp_path, capsys):
    spec = siren_spec()
    state = params_to_state_dict(random_params(spec, 1, seed=3)[0], spec)
    biases_first = {k: state[k] for k in sorted(state, key=lambda k: not k.endswith("bias"))}
    best = finished_run / "mnist_inr-gnn" / "version_0" / "checkpoints" / "best.ckpt"
    answers = []
    for i, sd in enumerate((state, biases_first)):
        torch.save(sd, tmp_path / f"{i}.pth")
        assert main(["predict", "--checkpoint", str(best), str(tmp_path / f"{i}.pth")]) == 0
        answers.append(json.loads(capsys.readouterr().out)["probabilities"])
    assert answers[0] == answers[1]
    short = dict(state, **{"seq.1.bias": state["seq.1.bias"][:-1]})
    torch.save(short, tmp_path / "short.pth")
    assert main(["predict", "--checkpoint", str(best), str(tmp_path / "short.pth")]) == 2
    line = _one_line(capsys)
    assert "seq.1.bias" in line and "(31,)" in line and "(32,)" in line, line
