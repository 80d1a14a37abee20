"""Models from other packages and Lightning objects from Python and YAML (issue 28, items 2 and 3).

A tiny plugin package is written into a temporary folder (a module and a ``*.dist-info`` with its entry
points) and put on ``PYTHONPATH`` or ``sys.path``: nothing is installed into the virtual environment.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins import TorchCheckpointIO
from lightning.pytorch.plugins.precision import Precision
from omegaconf import OmegaConf

from nnzoo.cli import main
from nnzoo.config import compose
from nnzoo.errors import NnzooError
from tests.conftest import tiny_fit_args

PLUGIN = "nnzoo_test_plugin"

PLUGIN_MODEL = '''
from torch import nn

from nnzoo.models.layers.standardize import Standardize


class TinyNet(nn.Module):
    """A flat-weights model that lives outside nnzoo (entry point 'tiny')."""

    nnzoo_meta = {"summary": "tiny plugin model", "conv": False, "heterogeneous": False}

    def __init__(self, info, hidden: int = 8, depth: int = 1):
        super().__init__()
        self.standardize = Standardize(info.stats)
        layers = [nn.Linear(info.specs[0].num_params, hidden), nn.ReLU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(hidden, hidden), nn.ReLU()]
        self.net = nn.Sequential(*layers, nn.Linear(hidden, info.num_outputs))

    def forward(self, batch):
        return self.net(self.standardize(batch.spec, batch.flat))


class OtherNet(TinyNet):
    """Reached only through model.class_path (no entry point)."""

    nnzoo_meta = {"name": "other", "tasks": ["classification"], "conv": False, "heterogeneous": False}


class BadMeta(TinyNet):
    nnzoo_meta = {"conv": False, "invariant_to": "everything"}


def not_a_model(info):
    return None
'''


def write_plugin(folder: Path) -> Path:
    """The plugin package and its distribution metadata, as ``pip install`` would leave them."""
    (folder / PLUGIN).mkdir(parents=True)
    (folder / PLUGIN / "__init__.py").write_text("")
    (folder / PLUGIN / "model.py").write_text(PLUGIN_MODEL)
    dist = folder / f"{PLUGIN}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {PLUGIN}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[nnzoo.models]\ntiny = {PLUGIN}.model:TinyNet\n"
                                           f"broken = {PLUGIN}.missing:Nope\n")
    return folder


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory) -> Path:
    return write_plugin(tmp_path_factory.mktemp("plugin"))


@pytest.fixture
def plugin_on_path(plugin_dir, monkeypatch):
    """The plugin importable in this process, with nnzoo's model registry restored afterwards (a model the
    test registers must not leak into other tests' listings)."""
    from nnzoo.models import MODELS
    monkeypatch.syspath_prepend(str(plugin_dir))
    monkeypatch.setattr(MODELS, "_entries", dict(MODELS._entries))
    monkeypatch.setattr(MODELS, "_loaded", set(MODELS._loaded))
    monkeypatch.setattr(MODELS, "broken", dict(MODELS.broken))
    return MODELS


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


# ------------------------------------------------------------------ 2. models from other packages
def test_entry_point_model_is_found_and_a_broken_plugin_is_one_line(plugin_on_path):
    models = plugin_on_path
    assert "tiny" not in models  # lazily: nothing loaded until asked
    entry = models.entry("tiny")
    assert entry.factory.__module__ == f"{PLUGIN}.model" and entry.summary == "tiny plugin model"
    assert entry.meta["conv"] is False and entry.meta["tasks"] == ("classification", "regression")
    assert entry.meta["invariant"] is False, "a plugin claims no invariance it did not declare"
    with pytest.raises(NnzooError) as info:
        models.entry("broken")
    line = str(info.value)
    assert "\n" not in line and "'broken'" in line and f"{PLUGIN}.missing:Nope" in line and "ModuleNotFound" in line
    names = models.names()  # the broken plugin is left out, every other model stays
    assert {"gnn", "mlp", "tiny"} <= set(names) and "broken" not in names
    assert list(models.broken) == ["broken"]


def test_plugin_and_class_path_models_get_a_strict_config(plugin_on_path, tmp_path):
    cfg = compose("tiny", "mnist_inr", overrides=["model.hidden=4"])
    assert OmegaConf.to_container(cfg.model) == {"name": "tiny", "class_path": f"{PLUGIN}.model:TinyNet",
                                                 "hidden": 4, "depth": 1}
    mine = tmp_path / "mine.yaml"  # the LightningCLI form, recorded as nnzoo's flat options
    mine.write_text(f"model:\n  class_path: {PLUGIN}.model.OtherNet\n  init_args: {{hidden: 6, depth: 2}}\n"
                    "optim: {lr: 0.01}\n")
    cfg = compose(str(mine), "mnist_inr")
    assert OmegaConf.to_container(cfg.model) == {"name": "other", "class_path": f"{PLUGIN}.model:OtherNet",
                                                 "hidden": 6, "depth": 2}
    assert cfg.optim.lr == 0.01
    cfg = compose(f"{PLUGIN}.model:TinyNet", "mnist_inr")  # a class path given to --model directly
    assert (cfg.model.name, cfg.model.hidden) == ("tinynet", 8)
    named = tmp_path / "named.yaml"  # a YAML naming a plugin's model holds only what differs
    named.write_text("model:\n  name: tiny\n  depth: 3\n")
    assert (compose(str(named), "mnist_inr").model.depth, compose(str(named), "mnist_inr").model.hidden) == (3, 8)


@pytest.mark.parametrize("model, words", [
    (f"{PLUGIN}.model:Nope", "has no Nope"),
    ("no_such_package.model:Net", "cannot import it (ModuleNotFoundError"),
    (f"{PLUGIN}.model:not_a_model", "is not a torch.nn.Module class"),
    (f"{PLUGIN}.model:BadMeta", "nnzoo_meta has unknown key 'invariant_to'"),
])
def test_bad_class_path_model_is_one_line(plugin_on_path, tmp_path, model, words, capsys):
    args = ["fit", "--model", model, "--data", "mnist_inr", f"run_dir={tmp_path / 'runs'}"]
    assert main(args) == 2
    assert words in _one_line(capsys)
    assert not (tmp_path / "runs").exists()


def test_class_path_options_and_names_are_checked(plugin_on_path, tmp_path, capsys):
    from nnzoo.models.registry import resolve_model
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"model:\n  class_path: {PLUGIN}.model.TinyNet\n  init_args: {{hiden: 6}}\n")
    assert main(["config", "--model", str(bad), "--data", "mnist_inr"]) == 2
    line = _one_line(capsys)
    assert "bad.yaml" in line and "hiden" in line and "init_args" in line
    assert main(["config", "--model", f"{PLUGIN}.model:TinyNet", "--data", "mnist_inr", "model.depth=abc"]) == 2
    assert "model.depth must be an integer" in _one_line(capsys)
    with pytest.raises(NnzooError, match="model.name 'mlp' is already the model nnzoo.models.mlp"):
        resolve_model("mlp", f"{PLUGIN}.model:TinyNet")  # a built-in name is never taken over
    with pytest.raises(NnzooError, match="names the standard library"):
        resolve_model("evil", "os:system")  # what a crafted checkpoint could name: refused before import


def _nnzoo(args: list[str], env: dict[str, str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "nnzoo"
    done = subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, cwd=cwd)
    if check:
        assert done.returncode == 0, done.stderr[-2000:]
    return done


def _predictions(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def test_plugin_models_round_trip_fit_export_predict_in_fresh_processes(plugin_dir, plugin_on_path, tiny_inr_root,
                                                                       tmp_path):
    """fit, export, test and predict each in a new process: the model is rebuilt from the class path that the
    run config and checkpoint record, never from a script that registered it."""
    import nnzoo
    env = {**os.environ, "PYTHONPATH": str(plugin_dir), "NNZOO_HOME": str(tmp_path / "home")}
    fit = ["--data", "mnist_inr", f"data.root={tiny_inr_root}", f"run_dir={tmp_path / 'runs'}", "data.batch_size=16",
           "trainer.max_epochs=1", "trainer.enable_progress_bar=false", "optim.warmup_steps=1"]
    _nnzoo(["fit", "--model", "tiny", *fit, "model.hidden=4"], env, tmp_path)
    run = tmp_path / "runs" / "mnist_inr-tiny" / "version_0"
    saved = OmegaConf.load(run / "config.yaml")
    assert (saved.model.name, saved.model.class_path, saved.model.hidden) == ("tiny", f"{PLUGIN}.model:TinyNet", 4)
    best = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)
    assert best["hyper_parameters"]["model"]["class_path"] == f"{PLUGIN}.model:TinyNet"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["model"] == "tiny" and metrics["num_parameters"] == 1185 * 4 + 4 + 4 * 10 + 10  # 2-32-32-1 SIREN: 1185
    _nnzoo(["export", str(run), "--name", "tiny-plugin", "--folder", str(tmp_path / "zoo")], env, tmp_path)
    exported = tmp_path / "zoo" / "tiny-plugin.pt"
    inr = sorted(tiny_inr_root.rglob("model_final.pth"))[0]
    (row,) = _predictions(_nnzoo(["predict", "--checkpoint", str(exported), str(inr)], env, tmp_path).stdout)
    assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    (here,) = nnzoo.predict_files(nnzoo.load_checkpoint(exported), [inr])  # the exported weights, read here
    assert row["prediction"] == here["prediction"] and row["probabilities"] == pytest.approx(here["probabilities"])
    # the class path route: a YAML in LightningCLI's form, its run's .ckpt re-tested in a new process
    mine = tmp_path / "mine.yaml"
    mine.write_text(f"model:\n  class_path: {PLUGIN}.model.OtherNet\n  init_args: {{hidden: 5, depth: 2}}\n")
    _nnzoo(["fit", "--model", str(mine), *fit], env, tmp_path)
    other = tmp_path / "runs" / "mnist_inr-other" / "version_0"
    assert OmegaConf.load(other / "config.yaml").model.class_path == f"{PLUGIN}.model:OtherNet"
    ckpt, out = other / "checkpoints" / "best.ckpt", tmp_path / "test.json"
    _nnzoo(["test", "--checkpoint", str(ckpt), "--output", str(out)], env, tmp_path)
    tested, trained = json.loads(out.read_text()), json.loads((other / "metrics.json").read_text())
    assert tested["test/loss"] == pytest.approx(trained["test/loss"], rel=1e-5)
    # without the plugin the checkpoint cannot be rebuilt: one line saying what to install, no traceback
    bare = {**env, "PYTHONPATH": ""}
    done = _nnzoo(["predict", "--checkpoint", str(exported), str(inr)], bare, tmp_path, check=False)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert f"model.class_path={PLUGIN}.model:TinyNet" in done.stderr and "install the package" in done.stderr


# ------------------------------------------------------------------ 3. callbacks, loggers and plugins
class EpochRecorder(L.Callback):
    """Records the epochs it saw; the instances made from a config are kept so the test can read them."""

    made: list["EpochRecorder"] = []

    def __init__(self, tag: str = "") -> None:
        self.tag = tag
        self.epochs: list[int] = []
        EpochRecorder.made.append(self)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.epochs.append(trainer.current_epoch)


class CountingPrecision(Precision):
    """Lightning's 32-bit precision, counting the backward passes it saw."""

    def __init__(self) -> None:
        super().__init__()
        self.backwards = 0

    def pre_backward(self, tensor, module):
        self.backwards += 1
        return super().pre_backward(tensor, module)


def _tiny_cfg(root: Path, run_dir: Path, *extra: str):
    args = tiny_fit_args(root, run_dir, *extra)
    return compose("gnn", "mnist_inr", overrides=[a for a in args if "=" in a])


def test_fit_takes_callbacks_loggers_and_plugins_from_python(tiny_inr_root, tmp_path):
    import nnzoo
    recorder, precision = EpochRecorder("python"), CountingPrecision()
    extra = CSVLogger(save_dir=str(tmp_path / "extra"), name="mine")
    result = nnzoo.fit(_tiny_cfg(tiny_inr_root, tmp_path / "runs"), callbacks=[recorder], loggers=[extra],
                       plugins=[precision])
    assert recorder.epochs == [0, 1], "called at the end of each of the 2 epochs"
    assert precision.backwards == result.metrics["steps"] == 6  # 48 networks, batches of 16, 2 epochs
    with open(extra.log_dir + "/metrics.csv", newline="") as file:
        logged = [row for row in csv.DictReader(file) if row.get("val/acc")]
    assert len(logged) == 2, "the extra logger got both validations"
    assert list((result.run_dir).glob("events.out.tfevents.*")), "nnzoo's own logger still writes"


@pytest.mark.parametrize("kwargs, words", [
    ({"callbacks": [object()]}, "fit(callbacks=...): item 0 is a object"),
    ({"loggers": ["csv"]}, "fit(loggers=...): item 0 is a str"),
    ({"plugins": [TorchCheckpointIO()]}, "nnzoo's atomic checkpoint writer"),
    ({"callbacks": [L.pytorch.callbacks.EarlyStopping("val/acc"), L.pytorch.callbacks.EarlyStopping("val/acc")]},
     "more than one stateful callback"),
])
def test_fit_refuses_wrong_objects_before_any_folder(tiny_inr_root, tmp_path, kwargs, words):
    from nnzoo.train import fit
    with pytest.raises(NnzooError, match=re.escape(words)):
        fit(_tiny_cfg(tiny_inr_root, tmp_path / "runs"), **kwargs)
    assert not (tmp_path / "runs").exists()


def test_class_path_callbacks_and_loggers_from_yaml_survive_a_resume(tiny_inr_root, tmp_path):
    extra = tmp_path / "extra_csv"
    config = tmp_path / "callbacks.yaml"
    config.write_text(f"""trainer:
  callbacks:
    - class_path: tests.test_plugins.EpochRecorder
      init_args: {{tag: yaml}}
    - class_path: lightning.pytorch.callbacks.Timer
      init_args: {{duration: "00:01:00:00"}}
  logger:
    - tensorboard
    - class_path: lightning.pytorch.loggers.CSVLogger
      init_args: {{save_dir: {extra}, name: extra}}
""")
    EpochRecorder.made.clear()
    runs = tmp_path / "runs"
    assert main([*tiny_fit_args(tiny_inr_root, runs), "--config", str(config)]) == 0
    (recorder,) = EpochRecorder.made
    assert (recorder.tag, recorder.epochs) == ("yaml", [0, 1])
    (run,) = runs.glob("*/version_0")
    saved = OmegaConf.to_container(OmegaConf.load(run / "config.yaml").trainer)
    assert saved["callbacks"][0] == {"class_path": "tests.test_plugins.EpochRecorder", "init_args": {"tag": "yaml"}}
    assert saved["logger"][1]["class_path"] == "lightning.pytorch.loggers.CSVLogger"
    assert (extra / "extra" / "version_0" / "metrics.csv").is_file()
    timer = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["callbacks"]["Timer"]
    assert timer["time_elapsed"]["train"] > 0, "Lightning's Timer ran and its state is in last.ckpt"
    (run / "metrics.json").unlink()  # as if killed after the last checkpoint: resume with the same callbacks
    EpochRecorder.made.clear()
    assert main([*tiny_fit_args(tiny_inr_root, runs, "trainer.max_epochs=3", "resume=true"),
                 "--config", str(config)]) == 0
    (resumed,) = EpochRecorder.made
    assert resumed.epochs == [2], "the resumed run trained only the epoch that was left"
    assert (run / "metrics.json").is_file() and not (runs / run.parent.name / "version_1").exists()


@pytest.mark.parametrize("override, words", [
    ("trainer.callbacks=[{class_path: tests.test_plugins.NoSuchCallback}]",
     "trainer.callbacks[0].class_path=tests.test_plugins.NoSuchCallback: module tests.test_plugins has no"),
    ("trainer.callbacks=[{class_path: no_such_package.Callback}]", "trainer.callbacks[0].class_path="),
    ("trainer.callbacks=[{class_path: tests.test_plugins.EpochRecorder, init_args: {tagg: 1}}]",
     "trainer.callbacks[0].init_args are refused by tests.test_plugins.EpochRecorder (TypeError"),
    ("trainer.callbacks=[{class_path: torch.nn.Linear}]", "is not a subclass of lightning"),
    ("trainer.callbacks=[{classpath: x}]", "trainer.callbacks must be"),
    ("trainer.logger=[csv, {class_path: lightning.pytorch.loggers.CSVLogger}]",
     "trainer.logger[1].init_args are refused"),
    ("trainer.plugins=[1]", "nnzoo.train.fit(cfg, plugins=[...])"),
])
def test_bad_class_path_callback_is_one_line_before_any_folder(tiny_inr_root, tmp_path, override, words, capsys):
    runs = tmp_path / "runs"
    assert main([*tiny_fit_args(tiny_inr_root, runs), override]) == 2
    assert words in _one_line(capsys)
    assert not runs.exists(), "refused before a run folder was claimed"
