"""Fit and test one (model, dataset) run from a composed config.

Used by ``nnzoo fit`` and by the benchmark runner.  A run folder holds the
TensorBoard logs, ``config.yaml``, ``checkpoints/{best,last}.ckpt`` and
``metrics.json`` (written atomically, last, so its presence means "finished").
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from nnzoo import __version__
from nnzoo.allocator import keep_large_allocations_on_heap
from nnzoo.config import to_container
from nnzoo.data import create_datamodule
from nnzoo.data.datamodule import WeightDataModule
from nnzoo.errors import NnzooError
from nnzoo.io import load_tensors, write_json, write_text
from nnzoo.tasks import WeightSpaceTask, create_task, task_class

METRICS_FILE = "metrics.json"


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict[str, Any]


class TrainThroughput(L.Callback):
    """Networks per second over training steps only (forward, backward, optimiser; no validation)."""

    def __init__(self) -> None:
        self.samples, self.seconds, self._start = 0, 0.0, 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.seconds += time.perf_counter() - self._start
        self.samples += len(batch)

    @property
    def per_second(self) -> float | None:
        return self.samples / self.seconds if self.seconds > 0 else None


def build_datamodule(cfg: DictConfig) -> WeightDataModule:
    options = to_container(cfg.data)
    return create_datamodule(options.pop("name"), **options)


def _trainer_kwargs(cfg: DictConfig) -> dict[str, Any]:
    kwargs = {k: v for k, v in to_container(cfg.trainer).items() if v is not None}
    return kwargs


def _run_folder(cfg: DictConfig) -> tuple[str, int, Path | None]:
    """Name, version and checkpoint to resume from (``resume=true``).

    The version is fixed once and passed to DDP worker processes through the
    environment (Lightning re-runs the command for each rank), so that every
    rank writes into the same run folder.
    """
    import os
    name = cfg.name or f"{cfg.data.name}-{cfg.model.name}"
    if os.environ.get(_VERSION_ENV):
        version = int(os.environ[_VERSION_ENV])
        last = Path(cfg.run_dir) / name / f"version_{version}" / "checkpoints" / "last.ckpt"
        return name, version, last if cfg.resume and last.is_file() else None
    versions = sorted(int(p.name.split("_")[-1]) for p in (Path(cfg.run_dir) / name).glob("version_*")
                      if p.name.split("_")[-1].isdigit())
    resume_from = None
    if cfg.resume:
        for v in reversed(versions):
            last = Path(cfg.run_dir) / name / f"version_{v}" / "checkpoints" / "last.ckpt"
            if last.is_file():
                version, resume_from = v, last
                break
        else:
            raise NnzooError(f"resume=true but no {Path(cfg.run_dir) / name}/version_*/checkpoints/last.ckpt "
                             "exists; start the run without resume")
    else:
        version = versions[-1] + 1 if versions else 0
    os.environ[_VERSION_ENV] = str(version)
    return name, version, resume_from


_VERSION_ENV = "NNZOO_RUN_VERSION"


def fit(cfg: DictConfig) -> RunResult:
    """Train ``cfg.model`` on ``cfg.data``, keep the best checkpoint by the validation metric, test it."""
    import os
    owns_version = _VERSION_ENV not in os.environ  # False inside a DDP worker started by Lightning
    try:
        return _fit(cfg)
    finally:
        if owns_version:
            os.environ.pop(_VERSION_ENV, None)


def _fit(cfg: DictConfig) -> RunResult:
    keep_large_allocations_on_heap()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    datamodule = build_datamodule(cfg)
    datamodule.prepare_data()
    info = datamodule.info
    task = create_task(to_container(cfg.model), info, to_container(cfg.optim), to_container(cfg.task))
    monitor, mode = task.monitor

    name, version, resume_from = _run_folder(cfg)
    logger = TensorBoardLogger(save_dir=cfg.run_dir, name=name, version=version, default_hp_metric=False)
    run_dir = Path(logger.log_dir)
    checkpoints = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor=monitor, mode=mode,
                                  save_last=True, enable_version_counter=False)
    throughput = TrainThroughput()
    callbacks: list[L.Callback] = [checkpoints, throughput]
    if cfg.trainer.get("enable_progress_bar", True):
        callbacks.append(RichProgressBar(leave=True))
    trainer = L.Trainer(**_trainer_kwargs(cfg), logger=logger, callbacks=callbacks)
    if trainer.is_global_zero:
        write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))

    start = time.perf_counter()
    trainer.fit(task, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
    train_seconds = time.perf_counter() - start

    metrics: dict[str, Any] = {
        "model": cfg.model.name, "data": cfg.data.name, "seed": cfg.seed, "nnzoo_version": __version__,
        "num_parameters": task.num_parameters, "epochs": trainer.current_epoch, "steps": trainer.global_step,
        "train_seconds": round(train_seconds, 2), "train_networks_per_s": _float(throughput.per_second),
        "dataset": datamodule.describe(),
        "best_checkpoint": checkpoints.best_model_path, f"best_{monitor}": _float(checkpoints.best_model_score),
    }
    if cfg.test:
        best = checkpoints.best_model_path or None
        results = trainer.test(task, datamodule=datamodule, ckpt_path=best, weights_only=True, verbose=False)
        metrics.update({k: _float(v) for k, v in (results[0] if results else {}).items()})
    metrics["run_dir"] = str(run_dir)
    if trainer.is_global_zero:
        write_json(run_dir / METRICS_FILE, metrics)
    return RunResult(run_dir, metrics)


def load_task(checkpoint: str | Path) -> WeightSpaceTask:
    """A trained LightningModule from a ``.ckpt``, loaded with ``weights_only=True`` (no pickled code)."""
    path = Path(checkpoint)
    if not path.is_file():
        raise NnzooError(f"checkpoint not found: {path}")
    blob = load_tensors(path, "checkpoint")  # refuses pickled code with a one-line error
    try:
        cls = task_class(blob["hyper_parameters"]["data_info"]["task"])
        return cls.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    except NnzooError:
        raise
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise NnzooError(f"cannot load checkpoint {path}: {first[:200]}; is it an nnzoo Lightning checkpoint?") from None


def _float(value: Any) -> float | None:
    if value is None:
        return None
    return float(value.item() if isinstance(value, torch.Tensor) else value)
