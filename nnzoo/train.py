"""Fit and test one (model, dataset) run from a composed config.

Used by ``nnzoo fit`` and by the benchmark runner.  A run folder holds the
TensorBoard logs, ``config.yaml``, ``checkpoints/{best,last}.ckpt`` and
``metrics.json`` (written atomically, last, so its presence means "finished").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from omegaconf import DictConfig, ListConfig, OmegaConf

from nnzoo import __version__
from nnzoo.allocator import keep_large_allocations_on_heap
from nnzoo.callbacks import (FitClock, ParameterLine, PlainProgress, RngState, StopOnNonFiniteLoss, TrainThroughput,
                             ValidationHistory, as_float)
from nnzoo.checkpoint_files import METRICS_FILE
from nnzoo.checkpoint_io import AtomicCheckpointIO
from nnzoo.config import to_container
from nnzoo.data import create_datamodule
from nnzoo.data.datamodule import WeightDataModule
from nnzoo.errors import NnzooError
from nnzoo.io import load_tensors, write_json, write_text
from nnzoo.models.compiling import require_compilable
from nnzoo.models.registry import resolve_model
from nnzoo.pretrained import load_checkpoint
from nnzoo.progress import console, quiet_lightning
from nnzoo.schema import check_run_start, check_trainer_extras, check_trainer_options, trainer_kwargs
from nnzoo.tasks import WeightSpaceTask, create_task


@dataclass
class RunResult:
    run_dir: Path | None  # None for a dry run (trainer.fast_dev_run), which writes nothing
    metrics: dict[str, Any]


def build_datamodule(cfg: DictConfig) -> WeightDataModule:
    """The run's datamodule, its options checked; a model that cannot do the dataset's task is refused
    first (one line), before any data is built or read."""
    from nnzoo.data import DATASETS
    from nnzoo.models.registry import check_kinds, check_task, resolve_model
    resolve_model(cfg.model.name, cfg.model.get("class_path"))  # a plugin's or class_path model: imported now
    meta = DATASETS.entry(cfg.data.name).meta
    if meta.get("task") is not None:
        check_task(cfg.model.name, meta["task"], cfg.data.name)
    check_kinds(cfg.model.name, cfg.data.name, conv=meta.get("conv", False),
                heterogeneous=meta.get("heterogeneous", False), graphs=meta.get("graphs", False))
    options = to_container(cfg.data)
    return create_datamodule(options.pop("name"), **options)


def _run_folder(cfg: DictConfig) -> tuple[str, int | None, Path | None]:
    """Name, version and checkpoint to resume from (``resume=true``), checked before any work.

    A resume is checked in full here, before anything is written (:func:`_check_resume`).  A new run
    gets no version yet (None): it claims one with :func:`_claim_version` once its data loaded, so a
    refused dataset leaves no empty folder behind.  The version is passed to DDP worker processes
    through the environment (Lightning re-runs the command for each rank), so every rank writes into
    the same run folder.
    """
    import os
    name = cfg.name or f"{cfg.data.get('pack') or cfg.data.name}-{cfg.model.name}"  # a pack: its own name
    root = Path(cfg.run_dir) / name
    if _ddp_worker() and os.environ.get(_VERSION_ENV, "").isdigit():  # rank 0 claimed and checked the folder
        version = int(os.environ[_VERSION_ENV])
        last = root / f"version_{version}" / "checkpoints" / "last.ckpt"
        if (root / f"version_{version}" / METRICS_FILE).is_file():
            raise NnzooError(f"{root / f'version_{version}'} is a finished run; a worker never writes into it")
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
    from nnzoo.checks import check_resumed_logs
    check_resumed_logs(version_dir)  # a metrics.csv the CSV logger could not read back (not UTF-8, a folder)
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


def _ddp_worker() -> bool:
    """True in a process Lightning started for another rank (it sets ``LOCAL_RANK`` >= 1 for them); only there
    is the run folder handed over through ``NNZOO_RUN_VERSION`` instead of being claimed."""
    import os
    return os.environ.get("LOCAL_RANK", "0") not in ("", "0")


def fit(cfg: DictConfig, callbacks: list[L.Callback] | tuple[L.Callback, ...] = (),
        loggers: list[Logger] | tuple[Logger, ...] = (), plugins: list[Any] | tuple[Any, ...] = ()) -> RunResult:
    """Train ``cfg.model`` on ``cfg.data``, keep the best checkpoint by the validation metric, test it.

    ``callbacks``, ``loggers`` and ``plugins`` (Lightning objects, from Python) are added to nnzoo's own and
    to those the config names with ``class_path`` (``trainer.callbacks``, ``trainer.logger``); all are checked
    with the trainer options before any data is built or any run folder is claimed.  nnzoo's atomic
    checkpoint writer stays: a ``CheckpointIO`` plugin is refused."""
    import os
    owns_version = not _ddp_worker()
    if owns_version and _VERSION_ENV in os.environ:
        raise NnzooError(f"{_VERSION_ENV} is set, but it is nnzoo's own hand-over to DDP worker processes; unset it "
                         "(choose a run with name=..., continue one with resume=true)")
    try:
        return _fit(cfg, _objects(callbacks, L.Callback, "callbacks"), _objects(loggers, Logger, "loggers"),
                    _plugins(plugins))
    finally:
        if owns_version:
            os.environ.pop(_VERSION_ENV, None)


def _objects(given: Any, base: type, name: str) -> list[Any]:
    """``fit``'s extra Lightning objects as a list, each checked to be a ``base``: one line, not a traceback
    from inside the Trainer."""
    items = [given] if isinstance(given, base) else list(given or ())
    bad = next((i for i, x in enumerate(items) if not isinstance(x, base)), None)
    if bad is not None:
        raise NnzooError(f"fit({name}=...): item {bad} is a {type(items[bad]).__name__}, not a "
                         f"{base.__module__}.{base.__qualname__}; pass instances of it")
    return items


def _plugins(given: Any) -> list[Any]:
    """``fit``'s extra Trainer plugins; a checkpoint writer is refused (nnzoo's own writes atomically)."""
    from lightning.fabric.plugins import CheckpointIO
    items = [given] if not isinstance(given, (list, tuple)) else list(given)
    if any(isinstance(p, CheckpointIO) for p in items):
        raise NnzooError("fit(plugins=...): a CheckpointIO plugin would replace nnzoo's atomic checkpoint writer "
                         "(nnzoo.checkpoint_io.AtomicCheckpointIO), which resume and export rely on; drop it")
    return items


DEFAULT_PRECISIONS = ("32-true", "32", 32)


def _trainer_kwargs(cfg: DictConfig, plugins: list[Any]) -> dict[str, Any]:
    """The Trainer arguments of the config; a ``Precision`` plugin given to ``fit`` sets the precision itself
    (Lightning takes one or the other), so ``trainer.precision`` must then keep its default."""
    from lightning.pytorch.plugins.precision import Precision
    kwargs = trainer_kwargs(cfg)
    if any(isinstance(p, Precision) for p in plugins):
        if kwargs.get("precision") not in (None, *DEFAULT_PRECISIONS):
            raise NnzooError(f"trainer.precision={kwargs['precision']} and the Precision plugin given to fit both "
                             "set the precision; drop the override (trainer.precision=32-true) or the plugin")
        kwargs.pop("precision", None)
    return kwargs


def _container(value: Any) -> Any:
    """A config value as plain, resolved Python (lists and mappings included)."""
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, (DictConfig, ListConfig)) else value


def config_callbacks(cfg: DictConfig) -> list[L.Callback]:
    """The callbacks ``trainer.callbacks`` names (``[{class_path, init_args}, ...]``, LightningCLI's form),
    built now: a wrong class or argument is one line naming its key, before any work."""
    from nnzoo.registry import instantiate
    specs = _container(cfg.trainer.get("callbacks")) or []
    specs = [specs] if isinstance(specs, dict) else specs
    return [instantiate(spec, f"trainer.callbacks[{i}]", L.Callback) for i, spec in enumerate(specs)]


def config_loggers(cfg: DictConfig) -> list[Logger]:
    """The loggers ``trainer.logger`` gives as ``{class_path, init_args}`` entries, built now with exactly their
    ``init_args`` (nnzoo's named loggers, ``tensorboard``/``csv``/..., are made into the run folder later)."""
    from nnzoo.registry import instantiate
    chosen = _container(cfg.trainer.get("logger"))
    if isinstance(chosen, dict):
        return [instantiate(chosen, "trainer.logger", Logger)]
    if not isinstance(chosen, list):
        return []
    return [instantiate(spec, f"trainer.logger[{i}]", Logger) for i, spec in enumerate(chosen)
            if isinstance(spec, dict)]


def _check_compile(cfg: DictConfig) -> None:
    """``compile=true`` for a model without a compiled path: one line before any work."""
    if cfg.get("compile") is True:
        entry = resolve_model(cfg.model.name, cfg.model.get("class_path"))
        require_compilable(entry.factory, f"model '{cfg.model.name}'")


def _fit(cfg: DictConfig, extra_callbacks: list[L.Callback], extra_loggers: list[Logger],
         plugins: list[Any]) -> RunResult:
    check_run_start(cfg)  # interpolations resolve, lightning.Trainer takes the options: before any work or folder
    _check_compile(cfg)
    extra_callbacks = config_callbacks(cfg) + extra_callbacks  # class_path entries built now, one line if wrong
    extra_loggers = config_loggers(cfg) + extra_loggers
    check_trainer_extras(_trainer_kwargs(cfg, plugins), extra_callbacks, plugins,
                         "trainer.callbacks and the callbacks/plugins given to fit")
    keep_large_allocations_on_heap()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    datamodule = build_datamodule(cfg)  # validates its options; builds nothing yet
    name, version, resume_from = _run_folder(cfg)  # a resume is checked in full here, before any work
    initial = load_checkpoint(cfg.init_from) if cfg.get("init_from") else None  # checked before any build
    if initial is not None:
        _check_same_family(initial, cfg.model.name, cfg.init_from)
    datamodule.prepare_data()
    info = datamodule.info
    task = create_task(to_container(cfg.model), info, to_container(cfg.optim), to_container(cfg.task))
    task.run_config = to_container(cfg)  # stored in every .ckpt, so `nnzoo test` needs no run folder
    task.compile_setting = cfg.get("compile", "auto")  # decided at fit start, when device and planned steps are known
    if initial is not None:
        init_weights_from(task, initial, cfg.init_from)
    monitor, mode = task.monitor
    dry = is_dry_run(cfg)
    if version is None and not dry:
        version = _claim_version(Path(cfg.run_dir) / name)
    run_dir = Path(cfg.run_dir) / name / f"version_{version}"
    resumed = load_tensors(resume_from, "last checkpoint") if resume_from is not None else None  # read once
    resume_step = int(resumed.get("global_step", 0)) if resumed is not None else None
    loggers = [] if dry else make_loggers(cfg, name, version, resume_step) + extra_loggers
    checkpoints = None
    callbacks: list[L.Callback] = []
    if cfg.trainer.get("enable_checkpointing") is not False and not dry:
        checkpoints = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor=monitor, mode=mode,
                                      enable_version_counter=False)
        # Lightning's save_last rewrites last.ckpt only when the best improved; a resume must start from the
        # latest validation instead, so last.ckpt is its own checkpoint, written after best.ckpt at every check
        callbacks += [checkpoints, ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="last", monitor=None,
                                                   save_top_k=1, enable_version_counter=False)]
    throughput, clock = TrainThroughput(), FitClock()
    history = ValidationHistory(monitor, throughput)
    callbacks += [throughput, history, clock, RngState(), StopOnNonFiniteLoss(run_dir, float(cfg.optim.lr)),
                  *extra_callbacks]
    if loggers and cfg.callbacks.lr_monitor:
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    if cfg.callbacks.early_stopping_patience is not None:
        callbacks.append(EarlyStopping(monitor=monitor, mode=mode, patience=int(cfg.callbacks.early_stopping_patience),
                                       min_delta=float(cfg.callbacks.early_stopping_min_delta)))
    kwargs = _trainer_kwargs(cfg, plugins)
    show = bool(kwargs.get("enable_progress_bar", True))  # on a terminal a Rich bar, elsewhere plain lines
    kwargs["enable_progress_bar"] = show and console.is_terminal
    if show:
        callbacks.append(RichProgressBar(leave=True) if console.is_terminal else PlainProgress(monitor))
    if "enable_model_summary" not in kwargs:  # the size in one line, with the progress display
        kwargs["enable_model_summary"] = False
        if show:
            callbacks.append(ParameterLine())
    quiet_lightning()
    trainer = L.Trainer(**kwargs, logger=loggers or False, callbacks=callbacks,
                        plugins=[AtomicCheckpointIO(), *plugins])
    if trainer.is_global_zero and not dry:
        write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))

    if resumed is not None:
        console.print(f"resuming {run_dir} from {resume_from.name}: step {resume_step}, "
                      f"{len(resumed.get('callbacks', {}).get('ValidationHistory', {}).get('rows', []))} validation "
                      "points kept", markup=False, highlight=False, soft_wrap=True)
    trainer.fit(task, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
    train_seconds = clock.seconds

    best_path = checkpoints.best_model_path if checkpoints is not None else ""
    metrics: dict[str, Any] = {
        "model": cfg.model.name, "data": cfg.data.name, "seed": cfg.seed, "nnzoo_version": __version__,
        "num_parameters": task.num_parameters, "epochs": trainer.current_epoch, "steps": trainer.global_step,
        "train_seconds": round(train_seconds, 2), "train_networks_per_s": as_float(throughput.per_second),
        "dataset": datamodule.describe(), "init_from": cfg.get("init_from"),
        "best_checkpoint": best_path,
        f"best_{monitor}": as_float(checkpoints.best_model_score) if checkpoints is not None else None,
        "history": history.rows,
    }
    if cfg.test:
        results = trainer.test(task, datamodule=datamodule, ckpt_path=best_path or None, weights_only=True,
                               verbose=False)
        metrics.update({k: as_float(v) for k, v in (results[0] if results else {}).items()})
    if dry:
        return RunResult(None, {**metrics, "dry_run": True, "run_dir": None})
    metrics["run_dir"] = str(run_dir)
    if trainer.is_global_zero:
        log_hparams(loggers, cfg, metrics)
        write_json(run_dir / METRICS_FILE, metrics)
    return RunResult(run_dir, metrics)


def is_dry_run(cfg: DictConfig) -> bool:
    """``trainer.fast_dev_run``: a few batches to check that the code runs.  Such a run writes nothing (no run
    folder, checkpoint, log or metrics), so it can never be mistaken for, or resumed as, a finished run."""
    return bool(cfg.trainer.get("fast_dev_run"))


def make_loggers(cfg: DictConfig, name: str, version: int, resume_step: int | None) -> list[Logger]:
    """The loggers ``trainer.logger`` names, all writing into the run folder (TensorBoard by default).

    On a resume, what was logged after the checkpoint's step is dropped (TensorBoard's ``purge_step``; the
    CSV keeps its earlier rows), so no step is logged twice."""
    import os
    chosen = cfg.trainer.get("logger", "tensorboard")
    if chosen in (False, None):
        return []
    kinds = ["tensorboard"] if chosen is True else [chosen] if isinstance(chosen, str) else \
        [k for k in chosen if isinstance(k, str)] if isinstance(chosen, (list, ListConfig)) else []  # class_path: elsewhere
    folder = Path(cfg.run_dir) / name / f"version_{version}"
    loggers: list[Logger] = []
    for kind in kinds:
        if kind == "tensorboard":
            extra = {"purge_step": resume_step} if resume_step is not None else {}
            loggers.append(TensorBoardLogger(save_dir=cfg.run_dir, name=name, version=version,
                                             default_hp_metric=False, **extra))
        elif kind == "csv":
            import warnings  # the run folder exists already (config.yaml); no metrics.csv is deleted but a resumed one
            warnings.filterwarnings("ignore", message="Experiment logs directory .* exists and is not empty")
            loggers.append(ResumableCSVLogger(save_dir=cfg.run_dir, name=name, version=version,
                                              resume_step=resume_step))
        elif kind == "wandb":
            from lightning.pytorch.loggers import WandbLogger
            loggers.append(WandbLogger(save_dir=str(folder), name=f"{name}/version_{version}",
                                       project=os.environ.get("WANDB_PROJECT", "nnzoo"),
                                       id=f"{name}-version_{version}".replace("/", "-"), resume="allow"))
        elif kind == "mlflow":
            from lightning.pytorch.loggers import MLFlowLogger
            loggers.append(MLFlowLogger(experiment_name=name, run_name=f"version_{version}",
                                        save_dir=str(Path(cfg.run_dir) / "mlruns")))
    return loggers


class ResumableCSVLogger(CSVLogger):
    """Lightning's CSV logger, writing through :class:`AtomicCSVWriter`; a resumed run keeps the rows logged
    before the resumed step and drops the later ones, logged again now."""

    def __init__(self, *args: Any, resume_step: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._resume_step = resume_step

    @property
    def experiment(self) -> "AtomicCSVWriter":  # type: ignore[override]
        if self._experiment is None:
            import csv
            path = Path(self.log_dir) / "metrics.csv"
            kept = []
            if self._resume_step is not None and path.is_file():
                with path.open(newline="") as file:
                    kept = [{k: v for k, v in row.items() if v != ""} for row in csv.DictReader(file)
                            if row.get("step", "").isdigit() and int(row["step"]) < self._resume_step]
            Path(self.root_dir).mkdir(parents=True, exist_ok=True)
            self._experiment = AtomicCSVWriter(self.log_dir, kept)
        return self._experiment


class AtomicCSVWriter(ExperimentWriter):
    """Lightning's CSV writer deletes an existing ``metrics.csv``, appends to it, and rewrites it in place when
    a column appears, so a kill can lose rows already written.  This one keeps every row and replaces the
    file atomically (:func:`nnzoo.io.write_text`) on each save."""

    def __init__(self, log_dir: str, kept: list[dict[str, Any]] | None = None) -> None:
        super().__init__(log_dir=log_dir)
        self.rows: list[dict[str, Any]] = list(kept or [])

    def _check_log_dir_exists(self) -> None:  # never delete: the file is replaced whole at the next save
        pass

    def save(self) -> None:
        import csv
        import io
        if not self.metrics and not self.rows:
            return
        self.rows += self.metrics
        self.metrics = []
        self.metrics_keys = sorted(set().union(*self.rows))
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=self.metrics_keys)
        writer.writeheader()
        writer.writerows(self.rows)
        write_text(self.metrics_file_path, text.getvalue())


def log_hparams(loggers: list[Logger], cfg: DictConfig, metrics: dict[str, Any]) -> None:
    """The run config and its results in TensorBoard's HPARAMS tab (one row per run, comparable across runs)."""
    from nnzoo.schema import leaves
    params = {k: (v if isinstance(v, (int, float, str, bool)) else str(v))
              for k, v in leaves(to_container(cfg)).items()}
    scores = {f"hp/{k}": v for k, v in metrics.items()
              if isinstance(v, float) and (k.startswith(("test/", "best_")))}
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger) and scores:
            logger.log_hyperparams(params, metrics=scores)
            logger.finalize("success")


def resolve_checkpoint(source: str) -> tuple[WeightSpaceTask, dict[str, Any] | None]:
    """The module (:func:`nnzoo.pretrained.load_checkpoint`) and, when known, the run config of a checkpoint: the
    one stored in it, else its run folder's ``config.yaml``, else its manifest entry's (checkpoints exported
    before configs were stored in them)."""
    from nnzoo.checkpoint_files import neutral_locations
    from nnzoo.io import sha256_file
    from nnzoo.pretrained import entry, list_pretrained
    module = load_checkpoint(source)
    if module.run_config is not None:
        return module, module.run_config
    path = Path(source).expanduser()
    if not path.is_file():
        return module, neutral_locations(entry(source).config)
    beside = path.parent.parent / "config.yaml"
    if path.suffix == ".ckpt" and beside.is_file():  # a file's locations are data, never where nnzoo writes
        from nnzoo.config import load_yaml
        return module, neutral_locations(to_container(load_yaml(beside)))
    digest = sha256_file(path)
    return module, neutral_locations(next((e.config for e in list_pretrained() if e.sha256 == digest), None))


def _check_same_family(module: WeightSpaceTask, mine: str, source: str) -> None:
    theirs = module.hparams["model"]["name"]
    if theirs != mine:
        raise NnzooError(f"init_from={source} holds a '{theirs}' model but this run trains '{mine}'; start from "
                         f"a {mine} checkpoint or drop init_from")


def init_weights_from(task: WeightSpaceTask, module: WeightSpaceTask, source: str) -> None:
    """Fine-tuning: copy every tensor of ``module`` whose name and shape match into ``task`` (a new head for
    another class count stays freshly initialised); refuse another model family or nothing in common."""
    mine = task.hparams["model"]["name"]
    _check_same_family(module, mine, source)
    own = task.state_dict()
    loaded = {k: v for k, v in module.state_dict().items() if k in own and own[k].shape == v.shape}
    if not loaded:
        raise NnzooError(f"init_from={source}: no tensor matches this run's {mine} model in name and shape "
                         "(other model options?); use the checkpoint's model options or drop init_from")
    task.load_state_dict(loaded, strict=False)
    fresh = sorted(set(own) - set(loaded))
    console.print(f"init_from {source}: {len(loaded)}/{len(own)} tensors loaded"
                  + (f"; newly initialised: {', '.join(fresh[:4])}{' ...' if len(fresh) > 4 else ''}" if fresh else ""),
                  markup=False, highlight=False, soft_wrap=True)


DATA_MAY_CHANGE = (*RESUME_MAY_CHANGE, "data.root", "data.splits", "data.split_file", "data.statistics",
                   "data.batch_size")
"""Data options ``nnzoo test`` may change: where the same files are and how they are read, not which networks."""


def evaluate(source: str, split: str = "test", overrides: list[str] | tuple[str, ...] = (),
             files: list[str] | tuple[str, ...] = (), accelerator: str | None = None) -> dict[str, Any]:
    """Metrics of a checkpoint on one split of the dataset it was trained on (``nnzoo test``/``validate``).

    The dataset is the checkpoint's own (its stored run config); an override that would build or read other
    networks is refused, and the data read must match the checkpoint's architectures and classes."""
    from nnzoo.config import apply_overrides, load_yaml
    from nnzoo.data.datamodule import REQUIRED_SPLITS
    from nnzoo.schema import leaves
    if split not in REQUIRED_SPLITS:
        raise NnzooError(f"--split must be one of {', '.join(REQUIRED_SPLITS)}, got {split!r}")
    module, config = resolve_checkpoint(source)
    if config is None and not files:
        raise NnzooError(f"checkpoint {source} carries no run config and has no config.yaml beside it; pass the "
                         "run's config with --config FILE")
    if config is None:  # the first --config file is the run's config, the others are merged over it
        stored, files = load_yaml(Path(files[0])), list(files[1:])
    else:
        stored = OmegaConf.create(config)
    cfg = apply_overrides(stored, overrides, files=files)
    before, after = leaves(to_container(stored.data)), leaves(to_container(cfg.data))
    for key in sorted(set(before) | set(after)):
        if f"data.{key}" not in DATA_MAY_CHANGE and before.get(key) != after.get(key):
            raise NnzooError(f"data.{key} is {after.get(key)!r} here but {before.get(key)!r} in the checkpoint's run; "
                             f"test evaluates a checkpoint on its own dataset (only {', '.join(DATA_MAY_CHANGE)} "
                             "may change); for other networks use `nnzoo predict`")
    datamodule = build_datamodule(cfg)
    datamodule.prepare_data()
    _check_same_data(datamodule.info, module.info, source)
    kwargs = {**trainer_kwargs(cfg), "devices": 1, "num_nodes": 1, "strategy": "auto"}
    if accelerator:
        kwargs["accelerator"] = accelerator
    check_trainer_options(kwargs)  # one line naming the key, before the data is built
    kwargs["logger"] = False
    quiet_lightning()
    trainer = L.Trainer(**kwargs)
    loader = datamodule.eval_dataloader(split)
    if split == "val":
        results = trainer.validate(module, dataloaders=loader, verbose=False)[0]
    else:
        results = trainer.test(module, dataloaders=loader, verbose=False)[0]
    return {f"{split}/{k.split('/', 1)[1]}" if "/" in k else k: float(v) for k, v in results.items()}


def _check_same_data(info, trained, source: str) -> None:
    """The data read now must be what the checkpoint was trained on: name, task, outputs, architectures."""
    mine = (info.name, info.task, info.num_outputs, [s.describe() for s in info.specs])
    theirs = (trained.name, trained.task, trained.num_outputs, [s.describe() for s in trained.specs])
    if mine != theirs:
        what = next(w for w, a, b in zip(("name", "task", "outputs", "architectures"), mine, theirs) if a != b)
        raise NnzooError(f"the data read for {source} differs from what it was trained on ({what}: "
                         f"{_short(mine)} vs {_short(theirs)}); point data.root at the checkpoint's own files")


def _short(value: Any) -> str:
    return str(value)[:120]
