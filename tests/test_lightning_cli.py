"""Lightning habits of the CLI: any Trainer argument, --config files, overrides anywhere, loggers and
callbacks, test/validate on any checkpoint form, fine-tuning with init_from (issue 14, items 1-5)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from tests.conftest import tiny_fit_args
from nnzoo.cli import build_parser, main
from nnzoo.config import compose


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def _fit(root: Path, run_dir: Path, *extra: str) -> tuple[Path, dict]:
    assert main(tiny_fit_args(root, run_dir, *extra)) == 0
    metrics_file = max(run_dir.glob("*/version_*/metrics.json"), key=lambda p: p.stat().st_mtime)
    return metrics_file.parent, json.loads(metrics_file.read_text())


@pytest.fixture(scope="module")
def finished_run(tiny_inr_root, tmp_path_factory):
    """One finished tiny run (TensorBoard + CSV, the learning rate logged every step)."""
    runs = tmp_path_factory.mktemp("runs")
    return _fit(tiny_inr_root, runs, "trainer.logger=[tensorboard,csv]", "trainer.log_every_n_steps=1")


# ------------------------------------------------------------------ 1. every Trainer argument
def test_any_trainer_argument_can_be_set_and_reaches_lightning(tiny_inr_root, tmp_path):
    cfg = compose("gnn", "mnist_inr", overrides=[
        "trainer.max_steps=5", "trainer.fast_dev_run=true", "trainer.val_check_interval=0.5",
        "trainer.limit_test_batches=2", "trainer.max_time=00:00:10:00", "trainer.logger=false"])
    assert cfg.trainer.max_steps == 5 and cfg.trainer.fast_dev_run is True and cfg.trainer.max_time == "00:00:10:00"
    _, metrics = _fit(tiny_inr_root, tmp_path, "trainer.max_steps=4", "trainer.accumulate_grad_batches=2",
                      "trainer.limit_test_batches=1", "trainer.max_epochs=50")
    assert metrics["steps"] == 4  # max_steps stopped the 50-epoch run; 2 batches per step


@pytest.mark.parametrize("override, words", [
    ("trainer.max_step=5", "did you mean trainer.max_steps"),
    ("max_steps=5", "did you mean trainer.max_steps"),
    ("trainer.max_steps=abc", "trainer.max_steps must be an integer"),
    ("trainer.max_time=3", "trainer.max_time must be"),
    ("trainer.callbacks=x", "callbacks.*"),
    ("trainer.logger=foo", "trainer.logger must be"),
])
def test_trainer_arguments_are_checked_against_the_signature(override, words, capsys):
    assert main(["config", "--model", "gnn", "--data", "mnist_inr", override]) == 2
    assert words in _one_line(capsys)


def test_fast_dev_run_is_a_dry_run_that_writes_nothing(tiny_inr_root, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main(tiny_fit_args(tiny_inr_root, runs, "trainer.fast_dev_run=true")) == 0
    out = capsys.readouterr().out
    assert "dry run (trainer.fast_dev_run): nothing was written" in out and "test/acc" in out
    assert not runs.exists() or not list(runs.rglob("*")), "no run folder, checkpoint, log or metrics"


def test_no_logger_writes_no_events(tiny_inr_root, tmp_path):
    run, metrics = _fit(tiny_inr_root, tmp_path, "trainer.max_steps=1", "trainer.logger=false")
    assert metrics["steps"] == 1 and "test/acc" in metrics
    assert not list(run.rglob("events.out.tfevents*")), "logger=false writes no TensorBoard events"


# ------------------------------------------------------------------ 2. config files
def test_a_runs_config_file_reproduces_the_run(finished_run, tmp_path):
    run, metrics = finished_run
    assert main(["fit", "--config", str(run / "config.yaml"), f"run_dir={tmp_path}"]) == 0
    (again,) = tmp_path.glob("*/version_*/metrics.json")
    repeated = json.loads(again.read_text())
    assert repeated["test/loss"] == pytest.approx(metrics["test/loss"], rel=1e-6)
    assert repeated["steps"] == metrics["steps"]


def test_config_files_merge_in_order_before_overrides(tmp_path, capsys):
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("trainer: {max_epochs: 3, max_steps: 7}\nseed: 1\n")
    second.write_text("seed: 2\nmodel: {hidden: 16}\n")
    args = ["config", "--model", "gnn", "--data", "mnist_inr", "--config", str(first), "--config", str(second)]
    assert main([*args, "seed=5"]) == 0
    cfg = OmegaConf.create(capsys.readouterr().out)
    assert (cfg.seed, cfg.trainer.max_epochs, cfg.trainer.max_steps, cfg.model.hidden) == (5, 3, 7, 16)
    (tmp_path / "bad.yaml").write_text("model: {hiden: 16}\n")
    assert main([*args[:5], "--config", str(tmp_path / "bad.yaml")]) == 2
    line = _one_line(capsys)
    assert "bad.yaml" in line and "model.hidden" in line


def test_a_model_yaml_outside_the_package(tmp_path, capsys):
    mine = tmp_path / "my_gnn.yaml"
    mine.write_text("model:\n  name: gnn\n  hidden: 8\n  layers: 2\n")
    assert main(["config", "--model", str(mine), "--data", "mnist_inr"]) == 0
    cfg = OmegaConf.create(capsys.readouterr().out)
    assert (cfg.model.name, cfg.model.hidden, cfg.model.layers, cfg.model.probes) == ("gnn", 8, 2, 64)
    assert main(["config", "--model", str(tmp_path / "missing.yaml"), "--data", "mnist_inr"]) == 2
    assert "missing.yaml" in _one_line(capsys)


def test_print_config(capsys):
    assert main(["fit", "--model", "mlp", "--data", "mnist_inr", "--print_config", "trainer.max_steps=3"]) == 0
    cfg = OmegaConf.create(capsys.readouterr().out)
    assert cfg.model.name == "mlp" and cfg.trainer.max_steps == 3


# ------------------------------------------------------------------ 3. overrides anywhere
def test_overrides_may_stand_anywhere(capsys):
    argv = ["config", "--trainer", "default", "trainer.max_epochs=1", "--model", "mlp", "seed=3", "--data",
            "mnist_inr", "data.batch_size=8"]
    assert main(argv) == 0
    cfg = OmegaConf.create(capsys.readouterr().out)
    assert (cfg.trainer.max_epochs, cfg.seed, cfg.model.name, cfg.data.batch_size) == (1, 3, "mlp", 8)
    from nnzoo.cli import _intermixed
    words, overrides = _intermixed(build_parser(), ["benchmark", "quick", "--out", "D", "trainer.max_epochs=1"])
    assert words == ["benchmark", "quick", "--out", "D"] and overrides == ["trainer.max_epochs=1"]
    words, overrides = _intermixed(build_parser(), ["predict", "--checkpoint", "x", "lr=0.1.pth"])
    assert overrides == [] and "lr=0.1.pth" in words  # predict takes files, not overrides


def test_version(capsys):
    from nnzoo import __version__
    with pytest.raises(SystemExit):
        main(["--version"])
    assert __version__ in capsys.readouterr().out


# ------------------------------------------------------------------ 4. loggers and callbacks
def test_csv_logger_learning_rate_and_hparams(finished_run):
    run, _ = finished_run
    with (run / "metrics.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    lrs = [float(r["lr-AdamW"]) for r in rows if r.get("lr-AdamW")]
    assert len(lrs) >= 3 and lrs[0] < lrs[-1], "warm-up rates logged each step"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(run))
    events.Reload()
    assert "_hparams_/experiment" in events.PluginTagToContent("hparams")
    assert "hp/test/acc" in events.Tags()["scalars"]


@pytest.mark.parametrize("logger", ["wandb", "mlflow"])
def test_optional_loggers_missing_is_one_line(logger, capsys):
    import importlib.util
    if importlib.util.find_spec(logger):
        pytest.skip(f"{logger} is installed")
    assert main(["config", "--model", "gnn", "--data", "mnist_inr", f"trainer.logger={logger}"]) == 2
    assert f"pip install 'nnzoo[{logger}]'" in _one_line(capsys)


def test_early_stopping_by_config(tiny_inr_root, tmp_path):
    _, metrics = _fit(tiny_inr_root, tmp_path, "trainer.max_epochs=30", "callbacks.early_stopping_patience=1",
                      "callbacks.early_stopping_min_delta=10.0")  # nothing improves by 10: stop after 2 checks
    assert metrics["epochs"] <= 3


def test_resume_logs_no_step_twice(tiny_inr_root, tmp_path):
    from torch.utils.tensorboard import SummaryWriter
    run, metrics = _fit(tiny_inr_root, tmp_path, "trainer.logger=[tensorboard,csv]", "trainer.log_every_n_steps=1")
    steps = metrics["steps"]
    (run / "metrics.json").unlink()  # as if the run had been interrupted after its last checkpoint ...
    with (run / "metrics.csv").open("a", newline="") as file:  # ... having logged two more steps
        file.write(f"0,{steps + 1},,,,,123.0,\n")
    writer = SummaryWriter(str(run))
    writer.add_scalar("val/acc", 123.0, steps + 1)
    writer.close()
    assert main(tiny_fit_args(tiny_inr_root, tmp_path, "trainer.logger=[tensorboard,csv]",
                              "trainer.log_every_n_steps=1", "trainer.max_epochs=3", "resume=true")) == 0
    with (run / "metrics.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert not any(v == "123.0" for r in rows for v in r.values() if v), "the crashed run's steps were dropped"
    assert min(int(r["step"]) for r in rows) < steps, "rows before the resume are kept"
    train = [int(r["step"]) for r in rows if r.get("lr-AdamW")]
    assert len(train) == len(set(train)), "each training step logged once"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(run))
    events.Reload()
    values = events.Scalars("val/acc")
    assert all(v.value != 123.0 for v in values)
    assert len({v.step for v in values}) == len(values)


# ------------------------------------------------------------------ 5. test / validate / init_from
def test_test_and_validate_any_checkpoint_form(finished_run, tmp_path, capsys):
    run, metrics = finished_run
    alone = tmp_path / "alone.ckpt"  # a .ckpt away from its run folder: it carries its run config
    shutil.copy(run / "checkpoints" / "best.ckpt", alone)
    out = tmp_path / "test.json"
    assert main(["test", "--checkpoint", str(alone), "--output", str(out)]) == 0
    tested = json.loads(out.read_text())
    assert tested["test/acc"] == pytest.approx(metrics["test/acc"]) and tested["test/loss"] == pytest.approx(
        metrics["test/loss"], rel=1e-5)
    assert main(["validate", "--checkpoint", str(alone), "--output", str(tmp_path / "val.json")]) == 0
    assert json.loads((tmp_path / "val.json").read_text())["val/acc"] == pytest.approx(metrics["best_val/acc"])
    assert main(["test", "--checkpoint", str(alone), "--split", "train", "--output", str(tmp_path / "t.json")]) == 0
    assert "train/acc" in json.loads((tmp_path / "t.json").read_text())
    assert main(["export", str(run), "--name", "tiny", "--folder", str(tmp_path / "zoo")]) == 0
    assert main(["test", "--checkpoint", str(tmp_path / "zoo" / "tiny.pt"), "--output", str(tmp_path / "e.json")]) == 0
    assert json.loads((tmp_path / "e.json").read_text())["test/loss"] == pytest.approx(metrics["test/loss"], rel=1e-5)
    capsys.readouterr()
    assert main(["test", "--checkpoint", str(alone), "--output", str(out)]) == 2  # no silent overwrite
    assert "--force" in _one_line(capsys)


def test_a_checkpoint_without_its_config_takes_config(finished_run, tmp_path, capsys):
    run, metrics = finished_run
    blob = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)
    del blob["nnzoo_config"]  # as a checkpoint made before configs were stored in it
    bare = tmp_path / "bare.ckpt"
    torch.save(blob, bare)
    assert main(["test", "--checkpoint", str(bare)]) == 2
    assert "--config" in _one_line(capsys)
    out = tmp_path / "test.json"
    assert main(["test", "--checkpoint", str(bare), "--config", str(run / "config.yaml"), "--output", str(out)]) == 0
    assert json.loads(out.read_text())["test/loss"] == pytest.approx(metrics["test/loss"], rel=1e-5)


@pytest.mark.parametrize("override", ["data.build.size=200", "data.normalize=none", "data.widths=[2,16,1]"])
def test_test_never_reads_other_networks_silently(finished_run, override, capsys):
    run, _ = finished_run
    assert main(["test", "--checkpoint", str(run / "checkpoints" / "best.ckpt"), override]) == 2
    line = _one_line(capsys)
    assert override.split("=")[0] in line and "nnzoo predict" in line
    assert main(["test", "--checkpoint", "gnn-mnist_inr", override]) == 2  # a pretrained name: its manifest config
    assert override.split("=")[0] in _one_line(capsys)


def test_incompatible_model_is_refused_before_building(tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    monkeypatch.setenv("NNZOO_HOME", str(home))
    assert main(["fit", "--model", "dwsnet", "--data", "cnn_zoo", f"run_dir={tmp_path / 'runs'}"]) == 2
    assert "convolutional" in _one_line(capsys)
    assert not home.exists() or not any(home.rglob("*")), "nothing was built"
    assert not (tmp_path / "runs").exists()


def test_init_from_starts_from_the_checkpoints_weights(finished_run, tiny_inr_root, tmp_path, capsys):
    run, metrics = finished_run
    best = run / "checkpoints" / "best.ckpt"
    _, tuned = _fit(tiny_inr_root, tmp_path, f"init_from={best}", "trainer.max_steps=0")
    assert tuned["init_from"] == str(best)
    capsys.readouterr()
    assert tuned["test/loss"] == pytest.approx(metrics["test/loss"], rel=1e-5), "zero steps: the same weights"
    args = ["fit", "--model", "mlp", "--data", "mnist_inr", f"data.root={tiny_inr_root}", f"run_dir={tmp_path}",
            f"init_from={best}", "trainer.enable_progress_bar=false"]
    assert main(args) == 2
    assert "'gnn' model" in _one_line(capsys)
    assert torch.load(best, weights_only=True)["nnzoo_config"]["model"]["name"] == "gnn"


# ------------------------------------------------------------------ warm-up fitted to the planned run
@pytest.mark.parametrize("scaling", ["auto", "fixed"])
def test_warmup_longer_than_the_run_is_scaled_or_warned(tiny_inr_root, tmp_path, capsys, scaling):
    """The recipe's 1,000 warm-up steps in a 6-step run: ``auto`` (the default) cuts them to the planned run
    and says so, so the rate reaches the recipe's 1e-3; ``fixed`` keeps them and warns (the rate stays ~6e-6)."""
    run, _ = _fit(tiny_inr_root, tmp_path, "optim.warmup_steps=1000", f"optim.warmup_scaling={scaling}",
                  "trainer.logger=csv", "trainer.log_every_n_steps=1")
    err = capsys.readouterr().err
    with (run / "metrics.csv").open(newline="") as file:
        lrs = [float(r["lr-AdamW"]) for r in csv.DictReader(file) if r.get("lr-AdamW")]
    if scaling == "auto":
        assert "warm-up: 1 steps, the recipe's 1000 scaled to 10% of the 6 planned steps" in err
        assert lrs[-1] == pytest.approx(1e-3)
    else:
        assert "warning: the warm-up (1000 steps) fills 100% of the 6 planned steps" in err
        assert lrs[-1] == pytest.approx(6e-6)
