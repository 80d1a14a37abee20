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
    """The run's datamodule, its options checked; a model that cannot do the dataset's task is refused
    first (one line), before any data is built or read."""
    from nnzoo.data import DATASETS
    from nnzoo.models.registry import check_task
    task = DATASETS.entry(cfg.data.name).meta.get("task")
    if task is not None:
        check_task(cfg.model.name, task, cfg.data.name)
    options = to_container(cfg.data)
    return create_datamodule(options.pop("name"), **options)


def _trainer_kwargs(cfg: DictConfig) -> dict[str, Any]:
    kwargs = {k: v for k, v in to_container(cfg.trainer).items() if v is not None}
    return kwargs


def _run_folder(cfg: DictConfig) -> tuple[str, int | None, Path | None]:
    """Name, version and checkpoint to resume from (``resume=true``), checked before any work.

    A resume is checked in full here, before anything is written (:func:`_check_resume`).  A new run
    gets no version yet (None): it claims one with :func:`_claim_version` once its data loaded, so a
    refused dataset leaves no empty folder behind.  The version is passed to DDP worker processes
    through the environment (Lightning re-runs the command for each rank), so every rank writes into
    the same run folder.
    """
    import os
    name = cfg.name or f"{cfg.data.name}-{cfg.model.name}"
    root = Path(cfg.run_dir) / name
    if os.environ.get(_VERSION_ENV):
        version = int(os.environ[_VERSION_ENV])
        last = root / f"version_{version}" / "checkpoints" / "last.ckpt"
        return name, version, last if cfg.resume and last.is_file() else None
    if cfg.resume:
        for v in reversed(_versions(root)):
            last = root / f"version_{v}" / "checkpoints" / "last.ckpt"
            if last.is_file():
                version, resume_from = v, last
                break
        else:
            raise NnzooError(f"resume=true but no {root}/version_*/checkpoints/last.ckpt "
                             "exists; start the run without resume")
        _check_resume(cfg, root / f"version_{version}", resume_from)
        os.environ[_VERSION_ENV] = str(version)
        return name, version, resume_from
    return name, None, None


def _versions(root: Path) -> list[int]:
    """The k of every ``root/version_k``, ascending."""
    return sorted(int(p.name.split("_")[-1]) for p in root.glob("version_*") if p.name.split("_")[-1].isdigit())


def _claim_version(root: Path) -> int:
    """Create ``root/version_k`` exclusively, k one past the newest, retrying the next number when another
    process got there first: two fits started together never share a run folder."""
    import os
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NnzooError(f"cannot create the run folder {root} ({exc.strerror}); choose another run_dir") from None
    versions = _versions(root)
    version = versions[-1] + 1 if versions else 0
    while True:
        try:
            (root / f"version_{version}").mkdir()
            break
        except FileExistsError:
            version += 1
    os.environ[_VERSION_ENV] = str(version)
    return version


RESUME_MUST_MATCH = ("seed", "model", "data", "task")
"""What a resumed run must share with the run it continues (the trainer and optimiser may change, e.g. more
epochs); data options that do not change what is learned are exempt."""
RESUME_MAY_CHANGE = ("data.num_workers", "data.cache_dir", "data.eval_batch_size")


def _check_resume(cfg: DictConfig, version_dir: Path, last: Path) -> None:
    """Refuse, before anything is written, a resume that would rewrite a finished run, continue from an
    unreadable checkpoint, or continue under another model/data config than the run was started with."""
    from nnzoo.config import load_yaml
    from nnzoo.schema import leaves
    if (version_dir / METRICS_FILE).is_file():
        raise NnzooError(f"resume=true: {version_dir} is a finished run ({METRICS_FILE} present) and is left "
                         "as it is; resume continues interrupted runs only, start a new run without resume=true")
    blob = load_tensors(last, "last checkpoint")  # one line for a truncated file or one carrying code
    if not isinstance(blob, dict) or not {"state_dict", "epoch"} <= set(blob):
        raise NnzooError(f"resume=true: {last} is not a Lightning checkpoint (no state_dict/epoch); "
                         "start a new run without resume=true")
    saved_file = version_dir / "config.yaml"
    if not saved_file.is_file():
        raise NnzooError(f"resume=true: {saved_file} is missing, so the run's config cannot be checked; "
                         "start a new run without resume=true")
    saved = leaves(to_container(load_yaml(saved_file)))
    now = leaves(to_container(cfg))
    for key in sorted(set(saved) | set(now)):
        if not key.startswith(RESUME_MUST_MATCH) or key in RESUME_MAY_CHANGE:
            continue
        if saved.get(key) != now.get(key):
            raise NnzooError(f"resume=true: {key} is {now.get(key)!r} here but {saved.get(key)!r} in {saved_file}; "
                             "a resumed run keeps its model, data and task config (drop the override, "
                             "or start a new run without resume=true)")


_VERSION_ENV = "NNZOO_RUN_VERSION"


class StopOnNonFiniteLoss(L.Callback):
    """End the run with one line when the training loss becomes NaN or infinite, instead of training on
    and reporting NaN metrics with exit 0; the run folder keeps its last good checkpoint."""

    def __init__(self, run_dir: Path, lr: float) -> None:
        self.run_dir, self.lr = run_dir, lr

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor) and not bool(torch.isfinite(loss).all()):
            raise NnzooError(f"training loss became {float(loss):g} at epoch {trainer.current_epoch}, step "
                             f"{trainer.global_step} of {self.run_dir}; lower optim.lr (now {self.lr:g}) or check "
                             "the data and statistics files for NaN/Inf")


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
    datamodule = build_datamodule(cfg)  # validates its options; builds nothing yet
    name, version, resume_from = _run_folder(cfg)  # a resume is checked in full here, before any work
    datamodule.prepare_data()
    info = datamodule.info
    task = create_task(to_container(cfg.model), info, to_container(cfg.optim), to_container(cfg.task))
    monitor, mode = task.monitor
    if version is None:
        version = _claim_version(Path(cfg.run_dir) / name)
    logger = TensorBoardLogger(save_dir=cfg.run_dir, name=name, version=version, default_hp_metric=False)
    run_dir = Path(logger.log_dir)
    checkpoints = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor=monitor, mode=mode,
                                  save_last=True, enable_version_counter=False)
    throughput = TrainThroughput()
    callbacks: list[L.Callback] = [checkpoints, throughput, StopOnNonFiniteLoss(run_dir, float(cfg.optim.lr))]
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
    from nnzoo.zoo import check_checkpoint
    hp = check_checkpoint(load_tensors(path, "checkpoint"), path)  # no pickled code, finite weights
    try:
        cls = task_class(hp["data_info"]["task"])
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
