"""Benchmark suites: models x datasets x seeds under one budget, one comparison table per dataset.

A suite is a YAML file in ``benchmarks/`` (see ``benchmarks/quick.yaml``).  Each
cell is an ordinary ``nnzoo fit`` run; its metrics are saved atomically to
``<out>/cells/<data>-<model>-s<seed>.json`` together with the cell's composed
config and its hash (:func:`config_hash`).  A rerun skips every cell whose file
holds the config the suite composes now, so an interrupted suite resumes where
it stopped; a cell whose config changed since (``trainer.max_epochs=3`` after a
1-epoch run) is stale: it is run again, and its file replaced once the new run
finishes.  A cell killed mid-run (kill -9, a stopped machine) resumes from its run's ``last.ckpt`` with
its validation history, clock and random generators, and ends where an uninterrupted cell would.
Tables are written as Markdown, CSV and JSON per dataset, with a PNG of test metric vs. size.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from rich.markup import escape

from nnzoo.config import compose, load_yaml
from nnzoo.errors import IncompatibleError, NnzooError
from nnzoo.io import cache_home, finite_or_none, load_tensors, read_json, shipped_folder, write_json, write_text
from nnzoo.progress import console, progress_bar

# Test metric reported per task, and whether higher is better.
TASK_METRIC = {"classification": ("test/acc", "accuracy"), "regression": ("test/kendall_tau", "Kendall tau"),
               "editing": ("test/mse", "MSE of the edited INR's rendering, lower is better")}


@dataclass
class Suite:
    """A grid of runs.  ``datasets`` is a list of data config names, or a mapping from a table
    label to a data config name (one config, several public datasets: ``cifar10_gs: cnn_zoo``)."""

    name: str
    models: list[str]
    datasets: list[str] | dict[str, str]
    seeds: list[int] = field(default_factory=lambda: [0])
    model_seeds: dict[str, list[int]] = field(default_factory=dict)  # model -> its own seeds (fewer for slow ones)
    trainer: str = "default"
    overrides: list[str] = field(default_factory=list)
    model_overrides: dict[str, list[str]] = field(default_factory=dict)
    data_overrides: dict[str, list[str]] = field(default_factory=dict)
    data_model_overrides: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # data -> model -> [...]
    published: dict[str, dict[str, str]] = field(default_factory=dict)  # dataset -> model -> "value (source)"
    description: str = ""

    def __post_init__(self) -> None:
        self._check()
        if not isinstance(self.datasets, dict):
            self.datasets = {name: name for name in self.datasets}

    def _check(self) -> None:
        """Every field's shape, in one line naming the field (``models: mlp`` is a string, not a list)."""
        def fail(key: str, wanted: str, value: Any) -> None:
            raise NnzooError(f"benchmark suite '{self.name}': '{key}' must be {wanted}, got {value!r:.80}")

        def texts(value: Any) -> bool:
            return isinstance(value, list) and all(isinstance(v, str) for v in value)

        if not texts(self.models) or not self.models:
            fail("models", "a non-empty list of model names, e.g. [gnn, mlp]", self.models)
        if not (texts(self.datasets) and self.datasets) and not (
                isinstance(self.datasets, dict) and self.datasets
                and all(isinstance(k, str) and isinstance(v, str) for k, v in self.datasets.items())):
            fail("datasets", "a non-empty list of data config names (or a mapping label: name)", self.datasets)
        if not isinstance(self.seeds, list) or not self.seeds or not all(
                isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in self.seeds):
            fail("seeds", "a non-empty list of integers >= 0, e.g. [0, 1]", self.seeds)
        if not isinstance(self.model_seeds, dict) or not all(
                m in self.models and isinstance(v, list) and v and all(
                    isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in v)
                for m, v in self.model_seeds.items()):
            fail("model_seeds", "a mapping model: [seeds] over models of the suite, e.g. {transformer: [0]}",
                 self.model_seeds)
        if not isinstance(self.trainer, str):
            fail("trainer", "a trainer config name", self.trainer)
        if not texts(self.overrides):
            fail("overrides", "a list of key=value strings", self.overrides)
        for key in ("model_overrides", "data_overrides"):
            value = getattr(self, key)
            if not isinstance(value, dict) or not all(texts(v) for v in value.values()):
                fail(key, "a mapping name: [key=value, ...]", value)
        if not isinstance(self.data_model_overrides, dict) or not all(
                isinstance(m, dict) and all(texts(v) for v in m.values()) for m in self.data_model_overrides.values()):
            fail("data_model_overrides", "a mapping data: {model: [key=value, ...]}", self.data_model_overrides)
        if not isinstance(self.published, dict) or not all(isinstance(m, dict) for m in self.published.values()):
            fail("published", "a mapping data: {model: text}", self.published)
        if not isinstance(self.description, str):
            fail("description", "text", self.description)

    def data_config(self, label: str) -> str:
        assert isinstance(self.datasets, dict)
        return self.datasets[label]

    def seeds_of(self, model: str) -> list[int]:
        return self.model_seeds.get(model, self.seeds)

    def cells(self) -> list[tuple[str, str, int]]:
        return [(d, m, s) for d in self.datasets for m in self.models for s in self.seeds_of(m)]


def suites_folder() -> Path:
    """``$NNZOO_BENCHMARKS``, the repository's ``benchmarks/``, or the copy installed with the package."""
    return shipped_folder("benchmarks", "NNZOO_BENCHMARKS")


def default_results_dir(suite: Suite) -> Path:
    """``benchmarks/results/<suite>`` in a checkout; ``./benchmark-results/<suite>`` for an installed wheel."""
    folder = suites_folder()
    if folder.parent.name == "nnzoo" and folder.parent.joinpath("__init__.py").is_file():
        return Path.cwd() / "benchmark-results" / suite.name
    return folder / "results" / suite.name


def load_suite(name_or_path: str) -> Suite:
    """A suite by name (``benchmarks/<name>.yaml``) or by path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = suites_folder() / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in suites_folder().glob("*.yaml"))
        raise NnzooError(f"benchmark suite '{name_or_path}' not found ({path}); known suites: {', '.join(known)}")
    raw = _suite_yaml(path)
    known = {f.name for f in fields(Suite)} - {"name"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise NnzooError(f"benchmark suite {path}: unknown key '{unknown[0]}'; the keys are {', '.join(sorted(known))}")
    try:
        return Suite(name=path.stem, **raw)
    except TypeError as exc:
        raise NnzooError(f"bad benchmark suite {path}: {exc}") from None


def _suite_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A suite file's keys; ``extends: <suite>`` starts from another suite's keys, each key given here
    replacing the other's whole (so a full-size variant restates only its budget)."""
    raw = OmegaConf.to_container(load_yaml(path), resolve=False)  # ${oc.env:...} resolve per cell, later
    if not isinstance(raw, dict) or "extends" not in raw:
        return raw
    parent = raw.pop("extends")
    parent_path = path.parent / f"{parent}.yaml" if isinstance(parent, str) and "/" not in parent else None
    if parent_path is None or not parent_path.is_file() or parent_path.resolve() in seen:
        raise NnzooError(f"benchmark suite {path}: 'extends: {parent}' must name another suite in {path.parent} "
                         f"(without a cycle)")
    return {**_suite_yaml(parent_path, (*seen, path.resolve())), **raw}


def cell_overrides(suite: Suite, data: str, model: str, seed: int, out: Path) -> list[str]:
    return [*suite.overrides, *suite.data_overrides.get(data, []), *suite.model_overrides.get(model, []),
            *suite.data_model_overrides.get(data, {}).get(model, []), f"seed={seed}", f"run_dir={out / 'runs'}", f"name={data}-{model}-s{seed}"]


def run_suite(suite: Suite, out: Path, extra_overrides: list[str] | tuple[str, ...] = (),
              only_models: list[str] | None = None) -> dict[str, Path]:
    """Run every unfinished cell (of ``only_models``, if given), then write the tables; returns
    ``{dataset: markdown path}``."""
    unknown = sorted(set(only_models or ()) - set(suite.models))
    if unknown:
        raise NnzooError(f"--models {unknown[0]}: not a model of suite '{suite.name}' ({', '.join(suite.models)})")
    cells_dir = out / "cells"
    # validate every cell's config, and every finished cell's file, before spending hours on the first ones
    configs = {cell: _cell_config(suite, cell, out, extra_overrides) for cell in suite.cells()}
    listed_at = time.time()
    stale = {}
    for cell in suite.cells():
        if (cells_dir / _cell_name(*cell)).is_file():
            why = stale_reason(read_cell(cells_dir / _cell_name(*cell)), OmegaConf.to_container(configs[cell]),
                               _cell_defaults(suite, cell))
            if why:
                stale[cell] = why
    todo = [c for c in suite.cells() if (c in stale or not (cells_dir / _cell_name(*c)).is_file())
            and (only_models is None or c[1] in only_models)]
    console.print(f"[bold]benchmark {suite.name}[/]: {len(suite.cells())} cells, {len(todo)} to run"
                  f"{f' ({len(stale)} stale)' if stale else ''} -> {out}")
    for (data, model, seed), why in stale.items():
        console.print(f"[yellow]stale[/] {data}-{model}-s{seed}: {escape(why)}", highlight=False)
    cells_dir.mkdir(parents=True, exist_ok=True)
    link_runs(out)
    print_status(suite, out, configs)
    with progress_bar(len(todo), f"suite {suite.name}") as advance:
        for data, model, seed in todo:
            with claim(cells_dir / _cell_name(data, model, seed), listed_at) as mine:
                if not mine:  # another `nnzoo benchmark` of this folder runs it or has just run it
                    console.print(f"[dim]cell {data} / {model} / seed {seed}: taken by another worker[/]")
                else:
                    with _running_marker(cells_dir / _cell_name(data, model, seed)):
                        _run_cell(configs[(data, model, seed)], cells_dir, data, model, seed)
                    print_status(suite, out, configs)
            advance(1)
    return write_tables(suite, out, configs)


def link_runs(out: Path) -> Path:
    """``<out>/runs``, the cells' run folders (checkpoints, logs), as a link into ``$NNZOO_HOME/benchmark-runs/``
    when it does not exist yet.  The results (``cells/``, tables) belong to the repository; the runs are large
    and ignored by git, and a fresh checkout on the same machine finds its interrupted cells again through the
    link under the same path (checkpoints record their folder by its path).  An existing folder is kept."""
    runs = out / "runs"
    if runs.exists() or runs.is_symlink():
        return runs
    key = hashlib.sha256(str(out.resolve()).encode()).hexdigest()[:12]
    target = cache_home() / "benchmark-runs" / f"{out.name}-{key}"
    target.mkdir(parents=True, exist_ok=True)
    try:
        runs.symlink_to(target, target_is_directory=True)
    except OSError:  # no symlinks here (some filesystems): a plain folder
        runs.mkdir(exist_ok=True)
    return runs


def suite_configs(suite: Suite, out: Path, extra_overrides: list[str] | tuple[str, ...] = ()) -> dict[tuple, Any]:
    """Every cell's composed config (``nnzoo benchmark SUITE --status`` reads them without running)."""
    return {cell: _cell_config(suite, cell, out, extra_overrides) for cell in suite.cells()}


@dataclass
class CellState:
    """Where one cell stands: ``done``, ``running`` (a live worker holds it), ``partial`` (an interrupted run
    that the next ``nnzoo benchmark`` resumes) or ``todo``; ``seconds`` and ``epochs`` so far, and its cap."""

    cell: tuple[str, str, int]
    state: str
    seconds: float = 0.0
    epochs: int = 0
    max_epochs: int | None = None


def cell_states(suite: Suite, out: Path, configs: dict[tuple, Any]) -> list[CellState]:
    """The state of every cell of the suite, read from the cell files, running markers and run folders."""
    states = []
    for cell in suite.cells():
        path = out / "cells" / _cell_name(*cell)
        plain = OmegaConf.to_container(configs[cell])
        cap = plain.get("trainer", {}).get("max_epochs")
        if path.is_file() and not stale_reason(read_cell(path), plain, _cell_defaults(suite, cell)):
            done = read_cell(path)
            states.append(CellState(cell, "done", float(done.get("train_seconds") or 0.0),
                                    int(done.get("epochs") or 0), cap))
            continue
        seconds, epochs = _partial_progress(out / "runs" / Path(plain["name"]), plain)
        running = _marker_alive(path)
        states.append(CellState(cell, "running" if running else "partial" if epochs else "todo", seconds, epochs, cap))
    return states


def print_status(suite: Suite, out: Path, configs: dict[tuple, Any]) -> None:
    """One line: cells done / running / interrupted / to do, and the time left (:func:`time_left`)."""
    states = cell_states(suite, out, configs)
    count = {k: sum(s.state == k for s in states) for k in ("done", "running", "partial", "todo")}
    left, bounded, unknown = time_left(states)
    workers = max(count["running"], 1)
    eta = "" if left == 0 and unknown else f"; about {_duration(left / workers)} left" + (
        " at most (epoch caps)" if bounded else "") + f" with {workers} worker{'s' * (workers > 1)}"
    console.print(f"[bold]{suite.name}[/]: {count['done']} done, {count['running']} running, {count['partial']} "
                  f"interrupted (resume next), {count['todo']} to do{eta}"
                  + (f" ({unknown} cells of models with no measured speed yet)" if unknown else ""), highlight=False)


def time_left(states: list[CellState]) -> tuple[float, bool, int]:
    """Seconds of training left for the unfinished cells, from the measured speed of this suite's cells: the
    mean time of the finished cells of the same model, less what the cell already ran; else the seconds per
    epoch of the model's partial runs up to the epoch cap (``bounded``: an upper bound under early stopping).
    Also the number of cells whose model has no measurement yet."""
    left, bounded, unknown = 0.0, False, 0
    for s in (s for s in states if s.state != "done"):
        model = s.cell[1]
        finished = [d.seconds for d in states if d.state == "done" and d.cell[1] == model and d.seconds]
        per_epoch = [d.seconds / d.epochs for d in states if d.cell[1] == model and d.epochs and d.seconds]
        if finished:
            left += max(statistics.mean(finished) - s.seconds, 0.0)
        elif per_epoch and s.max_epochs:
            left += statistics.mean(per_epoch) * max(s.max_epochs - s.epochs, 0)
            bounded = True
        else:
            unknown += 1
    return left, bounded, unknown


def _duration(seconds: float) -> str:
    hours, minutes = divmod(int(round(seconds / 60)), 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


def _partial_progress(runs: Path, config: dict[str, Any]) -> tuple[float, int]:
    """Seconds and epochs of the cell's interrupted run that :func:`_resume_point` would continue."""
    kind, where = _resume_point(runs, config)
    if kind != "resume":
        return 0.0, 0
    blob = load_tensors(where, "last checkpoint")
    clock = blob.get("callbacks", {}).get("FitClock", {}) if isinstance(blob, dict) else {}
    return float(clock.get("seconds", 0.0)), int(blob.get("epoch", -1)) + 1 if isinstance(blob, dict) else 0


def _resume_point(runs: Path, config: dict[str, Any]) -> tuple[str, Path | None]:
    """What the cell's run folder ``runs`` (``<out>/runs/<cell>``) holds for ``config``: ``("finished",
    version)`` for a finished run of the same config whose cell file was never written (killed in between),
    ``("resume", last.ckpt)`` for an interrupted one, ``("new", None)`` otherwise.  Only the newest version
    with a checkpoint counts, as for ``resume=true``; a different config starts a new version."""
    from nnzoo.config import load_yaml
    versions = sorted((int(v.name.split("_")[-1]), v) for v in runs.glob("version_*") if v.name.split("_")[-1].isdigit())
    for _, version in reversed(versions):
        last = version / "checkpoints" / "last.ckpt"
        if not last.is_file():
            continue
        try:
            saved = OmegaConf.to_container(load_yaml(version / "config.yaml"), resolve=True)
        except Exception:  # a missing or damaged config.yaml: not a run this cell can continue
            return "new", None
        if not isinstance(saved, dict) or config_hash(saved) != config_hash(config):
            return "new", None
        return ("finished", version) if (version / "metrics.json").is_file() else ("resume", last)
    return "new", None


@contextmanager
def _running_marker(cell_file: Path) -> Iterator[None]:
    """``.<cell>.running`` beside the cell file while this process runs it (its pid), for the status line;
    a marker whose process is gone counts as not running."""
    marker = cell_file.parent / f".{cell_file.stem}.running"
    write_text(marker, f"{os.getpid()}\n")
    try:
        yield
    finally:
        marker.unlink(missing_ok=True)


def _marker_alive(cell_file: Path) -> bool:
    marker = cell_file.parent / f".{cell_file.stem}.running"
    try:
        pid = int(marker.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return pid != os.getpid()


@contextmanager
def claim(cell_file: Path, listed_at: float) -> Iterator[bool]:
    """Hold a cell's lock while it runs; yields ``False`` when another process holds it, or finished the cell
    after this one listed the cells (at ``listed_at``).  So several ``nnzoo benchmark`` processes on one output folder share the cells
    (e.g. two one-thread workers on two cores: ``threads=1``) and each cell runs once."""
    from filelock import FileLock, Timeout
    lock = FileLock(cell_file.parent / f".{cell_file.name}.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        yield False
        return
    try:
        yield not (cell_file.is_file() and cell_file.stat().st_mtime > listed_at)
    finally:
        lock.release()


def _run_cell(config: Any, cells_dir: Path, data: str, model: str, seed: int) -> None:
    """Fit one cell and write its file atomically (a stale cell keeps its old result until then)."""
    from nnzoo.checkpoint_files import METRICS_FILE
    from nnzoo.train import fit  # lazy: keeps `nnzoo list` fast
    console.print(f"[bold]cell[/] {data} / {model} / seed {seed}")
    plain = OmegaConf.to_container(config)
    stamp = {"config_hash": config_hash(plain), "config": plain}
    kind, where = _resume_point(Path(plain["run_dir"]) / plain["name"], plain)
    if kind == "finished":  # killed after the run finished, before its cell file was written
        console.print(f"cell {data} / {model} / seed {seed}: finished in {where}, recording it")
        write_json(cells_dir / _cell_name(data, model, seed), {**read_json(where / METRICS_FILE), **stamp})
        return
    if kind == "resume":
        config = OmegaConf.merge(config, {"resume": True})
    try:
        result = fit(config)
    except IncompatibleError as exc:  # e.g. dwsnet on CNNs: a table entry, not a failure
        console.print(f"[yellow]n/a[/]: {exc}")
        write_json(cells_dir / _cell_name(data, model, seed),
                   {"model": model, "data": data, "seed": seed, "not_applicable": str(exc), **stamp})
    else:
        write_json(cells_dir / _cell_name(data, model, seed), {**result.metrics, **stamp})


def _cell_config(suite: Suite, cell: tuple[str, str, int], out: Path, extra: list[str] | tuple[str, ...]):
    """The cell's composed config, resolved now so a missing ``${oc.env:...}`` fails before any training."""
    data, model, seed = cell
    cfg = compose(model, suite.data_config(data), suite.trainer, [*cell_overrides(suite, *cell, out), *extra])
    try:
        OmegaConf.resolve(cfg)
    except Exception as exc:  # omegaconf interpolation errors
        raise NnzooError(f"suite {suite.name}, cell {data}/{model}: {str(exc).splitlines()[0]} "
                         "(set the environment variable or override the key)") from None
    return cfg


def _cell_defaults(suite: Suite, cell: tuple[str, str, int]) -> dict[str, Any] | None:
    """The cell's config before any suite or command-line override (recipes included), for
    :func:`stale_reason`; ``None`` if it does not resolve on its own (then every key counts)."""
    try:
        return OmegaConf.to_container(compose(cell[1], suite.data_config(cell[0]), suite.trainer), resolve=True)
    except Exception:  # an ${oc.env:...} that only an override fills
        return None


def _cell_name(data: str, model: str, seed: int) -> str:
    return f"{data}-{model}-s{seed}.json"


CONFIG_HASH_EXCLUDED = ("run_dir", "name", "resume", "threads", "compile", "data.num_workers", "data.cache_dir",
                        "trainer.enable_progress_bar", "trainer.log_every_n_steps")
"""Config keys left out of a cell's hash: where the run is written (``run_dir``, ``name``), where built
data is cached (``data.cache_dir``: builds are keyed by their recipe), and how the run is executed or
displayed (``threads``; ``compile``, whose outputs equal eager ones up to float rounding, ``tests/test_compiled.py``;
``data.num_workers``, the progress bar, the logging interval, ``resume``: a cell resumed after an interruption
measures what an uninterrupted one does).  None of them changes
what a cell measures, except its wall-clock time, which depends on the machine anyway; every other key
(``data.root`` included) is hashed, so changing it makes the cell stale."""


def _hashed(config: Any, prefix: str = "") -> Any:
    """``config`` without :data:`CONFIG_HASH_EXCLUDED`, numbers normalised (``10.0`` and ``10`` hash alike)."""
    if isinstance(config, dict):
        return {k: _hashed(v, f"{prefix}{k}.") for k, v in config.items() if f"{prefix}{k}" not in CONFIG_HASH_EXCLUDED}
    if isinstance(config, (list, tuple)):
        return [_hashed(v, prefix) for v in config]
    if isinstance(config, float) and config.is_integer():
        return int(config)
    return config


def config_hash(config: dict[str, Any]) -> str:
    """sha256 of a cell's composed, resolved config (a plain dict) without :data:`CONFIG_HASH_EXCLUDED`:
    equal for equal configs, whatever the key order, and for the config read back from the cell's JSON."""
    text = json.dumps(_hashed(finite_or_none(config)), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _flat(config: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(config, dict):
        return {prefix[:-1]: config}
    return {k: v for key, value in config.items() for k, v in _flat(value, f"{prefix}{key}.").items()}


def _without_new_defaults(config: dict[str, Any], old: dict[str, Any], default: Any) -> dict[str, Any]:
    """``config`` without the keys that ``old`` lacks and whose value is still ``default``'s."""
    kept = {}
    for key, value in config.items():
        below = default.get(key) if isinstance(default, dict) else None
        if isinstance(value, dict) and value:
            value = _without_new_defaults(value, old.get(key) if isinstance(old.get(key), dict) else {}, below)
            if not value and key not in old:
                continue
        elif key not in old and isinstance(default, dict) and key in default and _hashed(below) == _hashed(value):
            continue
        kept[key] = value
    return kept


def stale_reason(cell: dict[str, Any], config: dict[str, Any], defaults: dict[str, Any] | None = None) -> str:
    """Why a finished cell no longer matches the cell's current config (``""`` if it does).

    The cell's hash is recomputed from the config it holds, so that a change of
    :data:`CONFIG_HASH_EXCLUDED` does not make every cell stale; its ``config_hash`` is read only when it
    holds no config.  A cell with neither (none that nnzoo wrote) cannot be checked and is stale.
    An option added to the configs after the cell ran (absent from its config) counts only where the
    suite sets it away from its default (``defaults``: the cell's config before overrides), since a new
    option's default keeps the old behaviour; every key the cell's config holds counts, always."""
    old = cell.get("config")
    if isinstance(old, dict) and defaults is not None:
        config = _without_new_defaults(config, old, defaults)
    old_hash = config_hash(old) if isinstance(old, dict) else cell.get("config_hash")
    if old_hash == config_hash(config):
        return ""
    if not isinstance(old, dict):
        return "no config recorded" if old_hash is None else "config changed (hash differs; no config recorded)"
    before, after = _flat(_hashed(finite_or_none(old))), _flat(_hashed(finite_or_none(config)))
    shown_before, shown_after = _flat(old), _flat(config)  # as written: 0.0, not the hashed 0
    changed = [f"{k} {shown_before.get(k, '(absent)')} -> {shown_after.get(k, '(absent)')}"
               for k in sorted(set(before) | set(after)) if before.get(k, "(absent)") != after.get(k, "(absent)")]
    more = f", and {len(changed) - 3} more" if len(changed) > 3 else ""
    return f"config changed ({', '.join(changed[:3])}{more})"


CELL_KEYS = ("model", "data", "seed", "num_parameters", "train_seconds", "epochs", "dataset")
"""What the tables read from a finished cell's file (besides its test metric)."""


def read_cell(path: Path) -> dict[str, Any]:
    """A finished cell's metrics, checked: one line naming the file if it is damaged or incomplete."""
    cell = read_json(path, "benchmark cell")
    fix = "nnzoo wrote it: remove it to run that cell again"
    if not isinstance(cell, dict):
        raise NnzooError(f"benchmark cell {path} is not a JSON object; {fix}")
    if "config" in cell and not isinstance(cell["config"], dict) or (
            "config_hash" in cell and not isinstance(cell["config_hash"], str)):
        raise NnzooError(f"benchmark cell {path} has a damaged 'config' or 'config_hash'; {fix}")
    if "not_applicable" in cell:
        return cell
    missing = [k for k in CELL_KEYS if k not in cell]
    if missing:
        raise NnzooError(f"benchmark cell {path} has no '{missing[0]}'; {fix}")
    if not isinstance(cell["dataset"], dict) or not any(k in cell for k, _ in TASK_METRIC.values()):
        raise NnzooError(f"benchmark cell {path} has no test metric or dataset summary; {fix}")
    return cell


def finished_cells(suite: Suite, out: Path, data: str) -> list[tuple[str, int, dict[str, Any]]]:
    """``(model, seed, cell)`` of every finished cell of ``data``, in the suite's order, each checked by
    :func:`read_cell`: what the tables, and scripts that score the cells' checkpoints further, read."""
    return [(model, seed, read_cell(path)) for model in suite.models for seed in suite.seeds_of(model)
            if (path := out / "cells" / _cell_name(data, model, seed)).is_file()]


def summarize(suite: Suite, out: Path) -> dict[str, list[dict[str, Any]]]:
    """Rows per dataset: one per model with the mean and sample std (0 for one seed) over finished seeds."""
    import pandas as pd  # lazy: keeps `nnzoo list` fast
    columns = ["model", "note", "metric", "value", "test/r2", "test/identity_mse", "num_parameters", "train_seconds",
               "networks_per_s", "epochs", "num_train", "best_epoch", "best_networks"]
    tables: dict[str, list[dict[str, Any]]] = {}
    for data in suite.datasets:
        frame = pd.DataFrame([_cell_row(model, cell) for model, _, cell in finished_cells(suite, out, data)],
                             columns=columns, dtype=object)  # object: sizes and counts stay Python ints
        floats = ["value", "test/r2", "test/identity_mse", "train_seconds", "networks_per_s", "best_epoch",
                  "best_networks"]
        frame[floats] = frame[floats].astype(float)  # None -> NaN, skipped by mean() and std()
        applicable = frame[frame["note"].isna()]
        per_model = applicable.groupby("model", sort=False)
        firsts = per_model.nth(0).set_index("model")  # the first seed's size, budget and metric name
        means = per_model[["train_seconds", "networks_per_s", "best_epoch", "best_networks"]].mean()
        rows = []
        for model in (m for m in suite.models if m in set(frame["model"])):
            published = suite.published.get(data, {}).get(model, "")
            if model not in firsts.index:  # every seed n/a
                rows.append({"model": model, "metric": "", "mean": math.nan, "std": math.nan, "seeds": 0,
                             "params": 0, "train_seconds": 0.0, "networks_per_s": 0.0, "epochs": 0,
                             "num_train": 0, "published": published,
                             "note": frame.loc[frame["model"] == model, "note"].iloc[0]})
                continue
            first = firsts.loc[model]
            key = first["metric"]  # a seed with another metric (none that one suite writes) is not averaged in
            group = per_model.get_group(model)
            values = group.loc[group["metric"] == key, "value"].dropna()
            r2 = group.loc[group["metric"] == key, "test/r2"].dropna()  # regression: R² beside Kendall tau
            rows.append({
                "model": model, "metric": key, "mean": float(values.mean()) if len(values) else math.nan,
                "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                "seeds": len(group), "params": first["num_parameters"],
                "train_seconds": float(means.loc[model, "train_seconds"]),
                "networks_per_s": float(means.loc[model, "networks_per_s"]),
                "epochs": first["epochs"], "num_train": first["num_train"], "published": published, "note": "",
                **({"r2": float(r2.mean()), "r2_std": float(r2.std(ddof=1)) if len(r2) > 1 else 0.0,
                    "r2_seeds": len(r2)} if len(r2) else {}),
                **({"best_epoch": float(means.loc[model, "best_epoch"]),
                    "best_networks": float(means.loc[model, "best_networks"])}
                   if not math.isnan(means.loc[model, "best_epoch"]) else {}),
            })
        identity = frame["test/identity_mse"].dropna()
        if len(identity):  # editing: the unedited input is the floor every editor must beat (same for every cell)
            rows.append({"model": IDENTITY_EDIT, "metric": "test/mse", "mean": float(identity.mean()),
                         "std": 0.0, "seeds": 0, "params": 0, "train_seconds": 0.0, "networks_per_s": 0.0,
                         "epochs": 0, "num_train": None, "published": "", "note": ""})
        tables[data] = rows
    return tables


def _cell_row(model: str, cell: dict[str, Any]) -> dict[str, Any]:
    """What the tables read from one cell (:func:`read_cell`), as a row of :func:`summarize`'s frame."""
    if "not_applicable" in cell:
        return {"model": model, "note": cell["not_applicable"]}
    key = _metric_key(cell)
    best = best_point(cell.get("history"))
    return {"model": model, "note": None, "metric": key, "value": cell[key], "test/r2": cell.get("test/r2"),
            "best_epoch": best["epoch"] + 1 if best else None, "best_networks": best["networks"] if best else None,
            "test/identity_mse": cell.get("test/identity_mse"), "num_parameters": cell["num_parameters"],
            "train_seconds": cell["train_seconds"], "networks_per_s": cell.get("train_networks_per_s") or 0.0,
            "epochs": cell["epochs"], "num_train": cell["dataset"].get("num_train")}


def best_point(history: Any) -> dict[str, Any] | None:
    """The validation row the best checkpoint was saved at: the first best one (a checkpoint is replaced only
    on strict improvement), highest for accuracy and Kendall tau, lowest for losses and MSEs; ``None`` for a
    history without epochs (cells that ran before they were recorded)."""
    if not isinstance(history, list) or not history or not all(isinstance(r, dict) and "epoch" in r for r in history):
        return None
    key = next(k for k in history[0] if k not in ("step", "epoch", "networks"))
    lower = key.endswith(("loss", "mse"))
    scored = [r for r in history if isinstance(r.get(key), (int, float))]
    if not scored:
        return None
    return (min if lower else max)(scored, key=lambda r: r[key])


def _metric_key(run: dict[str, Any]) -> str:
    for key, _ in TASK_METRIC.values():
        if key in run:
            return key
    raise NnzooError(f"cell of {run.get('model')} on {run.get('data')} has no test metric; was test=false?")


IDENTITY_EDIT = "identity edit (input unchanged)"
"""Row of an editing table that scores the unedited input INRs."""


def markdown_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(no finished cells)\n"
    label = next((r["metric"] for r in rows if r["metric"]), "metric")
    scale = 100 if label == "test/mse" else 1  # editing MSEs are quoted x 10^-2, as in the papers
    shown = f"{label} x 10^-2" if scale == 100 else label
    lines = [f"| model | {shown} (mean ± std) | seeds | params | train time per cell (s) | train networks/s | epochs "
             "| published (other data, see note) |",
             "|---|---|---|---|---|---|---|---|"]
    digits = 2 if scale == 100 else 3
    with_best = any(r.get("best_epoch") is not None for r in rows)  # cells that record their epochs
    with_r2 = any(r.get("r2") is not None for r in rows)  # regression cells: R² beside Kendall tau
    if with_r2:
        lines[0] = lines[0].replace("(mean ± std) |", "(mean ± std) | test/r2 (mean ± std) |")
        lines[1] += "---|"
    if with_best:
        lines[0] = lines[0].replace("| epochs |", "| epochs | best epoch | networks seen at best |")
        lines[1] += "---|---|"
    for r in rows:
        if r["note"]:
            lines.append(f"| {r['model']} | n/a: {r['note']} |{' |' * with_r2} | | | | |{' | |' * with_best} "
                         f"{r['published']} |")
            continue
        if r["model"] == IDENTITY_EDIT:
            lines.append(f"| {r['model']} | {scale * r['mean']:.{digits}f} |{' |' * with_r2} | | | | |"
                         f"{' | |' * with_best} |")
            continue
        spread = f"{scale * r['std']:.{digits}f}" if r["seeds"] > 1 else "— (1 seed)"
        best = (f" {r['best_epoch']:.0f} | {r['best_networks'] / 1e6:.2f} M |" if r.get("best_epoch") is not None
                else " | |") if with_best else ""
        r2 = ("" if not with_r2 else " |" if r.get("r2") is None else
              f" {r['r2']:.3f} ± {r['r2_std']:.3f} |" if r["r2_seeds"] > 1 else f" {r['r2']:.3f} |")
        lines.append(f"| {r['model']} | {scale * r['mean']:.{digits}f} ± {spread} |{r2} {r['seeds']} "
                     f"| {r['params']:,} | {r['train_seconds']:.0f} | {r['networks_per_s']:.0f} | {r['epochs']} |{best}"
                     f" {r['published']} |")
    return "\n".join(lines) + "\n"


def write_tables(suite: Suite, out: Path, configs: dict[tuple, Any] | None = None) -> dict[str, Path]:
    """Markdown, CSV, JSON and plots per dataset from the finished cells.  ``configs`` (the cells' composed
    configs; default: the suite's own) tell which cells ran with another config: they are named above the
    table, so a table that mixes budgets says so."""
    written = {}
    configs = configs if configs is not None else suite_configs(suite, out)
    tables = summarize(suite, out)
    for data, rows in tables.items():
        base = out / f"{suite.name}-{data}"
        md = f"# {suite.name}: {data}\n\n{suite.description.strip()}\n\n{unfinished_line(suite, out, data)}{_mixed(suite, out, data, configs)}{markdown_table(rows)}"
        write_text(base.with_suffix(".md"), md)
        write_json(base.with_suffix(".json"), rows)
        buffer = io.StringIO()
        if rows:
            writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        write_text(base.with_suffix(".csv"), buffer.getvalue())
        if rows:
            _plot(rows, base.with_suffix(".png"), f"{suite.name}: {data}")
        curves = learning_curves(suite, out, data)
        if curves:
            _plot_curves(curves, out / f"{suite.name}-{data}-curves.png", f"{suite.name}: {data}, validation")
        console.print(md, markup=False, highlight=False)
        written[data] = base.with_suffix(".md")
    if len(set(suite.datasets.values())) == 1 and len(suite.datasets) > 1:  # one dataset at several sizes
        _plot_sizes(suite, tables, out)
    return written


def mean_std_text(values: list[float]) -> str:
    """``mean ± sample std`` to 3 decimals, as the suite tables write a metric over seeds; the mean alone for
    one seed.  Scripts that score a suite's cells further (``benchmarks/foreign_inrs.py``,
    ``benchmarks/unseen_architectures.py``) write their tables with it too."""
    mean = statistics.mean(values)
    return f"{mean:.3f} ± {statistics.stdev(values):.3f}" if len(values) > 1 else f"{mean:.3f}"


def unfinished_line(suite: Suite, out: Path, data: str) -> str:
    """A line saying which cells the table still lacks (none: empty), so a partial table never reads as whole."""
    missing = {m: sum(not (out / "cells" / _cell_name(data, m, s)).is_file() for s in suite.seeds_of(m))
               for m in suite.models}
    if not any(missing.values()):
        return ""
    parts = [f"{m} {len(suite.seeds_of(m)) - k}/{len(suite.seeds_of(m))}" for m, k in missing.items()]
    return f"Partial table: finished seeds per model: {', '.join(parts)}.\n\n"


def _mixed(suite: Suite, out: Path, data: str, configs: dict[tuple, Any]) -> str:
    """A line naming the finished cells whose config differs from the one composed now (``--models statnn
    trainer.max_epochs=3`` after a 2-epoch suite), and how; empty when every cell matches."""
    notes = []
    for model in suite.models:
        for seed in suite.seeds_of(model):
            path, cell = out / "cells" / _cell_name(data, model, seed), (data, model, seed)
            if path.is_file() and cell in configs:
                why = stale_reason(read_cell(path), OmegaConf.to_container(configs[cell]), _cell_defaults(suite, cell))
                if why:
                    notes.append(f"{model} seed {seed} ({why})")
    if not notes:
        return ""
    return (f"Mixed configs: {len(notes)} cells ran with another config than the suite's now, so rows do not compare "
            f"like for like: {'; '.join(notes)}.\n\n")


def learning_curves(suite: Suite, out: Path, data: str) -> dict[str, list[tuple[float, float, float]]]:
    """Per model, ``(training networks seen, mean, std)`` of the validation metric at each validation point,
    over the seeds whose cells reached it (seeds stopped early by patience end their part of the band there;
    cells run before histories existed have none and are left out)."""
    curves = {}
    for model in suite.models:
        runs = [cell["history"] for s in suite.seeds_of(model) if (p := out / "cells" / _cell_name(data, model, s)).is_file()
                and isinstance((cell := read_cell(p)).get("history"), list) and cell["history"]]
        if not runs:
            continue
        key = next(k for k in runs[0][0] if k not in ("step", "epoch", "networks"))
        curve = []
        for i in range(max(len(r) for r in runs)):
            reached = [r[i] for r in runs if i < len(r)]
            values = [row[key] for row in reached if row.get(key) is not None]
            if values:
                std = statistics.stdev(values) if len(values) > 1 else 0.0
                curve.append((float(reached[0]["networks"]), statistics.mean(values), std))
        curves[model] = curve
    return curves


def _figure(path: Path, draw, title: str, xlabel: str, ylabel: str, log_x: bool = False) -> None:
    """One small PNG, written atomically."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nnzoo.io import atomic_path
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    draw(ax)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def _plot_curves(curves: dict[str, list[tuple[float, float, float]]], path: Path, title: str) -> None:
    def draw(ax) -> None:
        for model, curve in curves.items():
            if not curve:  # every validation value undefined (e.g. Kendall tau of tied targets): nothing to draw
                continue
            x, mean, std = (list(c) for c in zip(*curve))
            ax.plot(x, mean, marker=".", label=model)
            ax.fill_between(x, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)], alpha=0.15)
        if any(curves.values()):
            ax.legend(fontsize=7)
        else:  # say why the axes are empty rather than leave a blank plot (and matplotlib's empty-legend warning)
            ax.text(0.5, 0.5, "no defined validation value yet", transform=ax.transAxes, ha="center", va="center")
    _figure(path, draw, title, "training networks seen", "validation metric (mean ± std over seeds)")


def _plot_sizes(suite: Suite, tables: dict[str, list[dict[str, Any]]], out: Path) -> None:
    """Test metric against training-set size, one line per model: a suite of one dataset at several sizes
    (``tables``: :func:`summarize`'s rows per dataset label)."""

    def draw(ax) -> None:
        for model in suite.models:
            points = sorted((r["num_train"], r["mean"], r["std"], label) for label, rows in tables.items()
                            for r in rows if r["model"] == model and not r["note"] and r["num_train"])
            if points:
                x, mean, std, labels = zip(*points)
                ax.errorbar(x, mean, yerr=std, marker="o", capsize=3, label=model)
                for xi, yi, label in zip(x, mean, labels):
                    ax.annotate(label, (xi, yi), textcoords="offset points", xytext=(4, -12), fontsize=7)
        ax.legend(fontsize=7)
    metric = next((r["metric"] for rows in tables.values() for r in rows if r["metric"]), "")
    _figure(out / f"{suite.name}-sizes.png", draw, f"{suite.name}: test metric vs. training networks",
            "training networks (log)", f"{metric} (mean ± std over seeds)", log_x=True)


def _plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    def draw(ax) -> None:
        for r in (r for r in rows if not r["note"] and r["params"]):
            ax.errorbar(r["params"], r["mean"], yerr=r["std"], fmt="o", capsize=3)
            ax.annotate(r["model"], (r["params"], r["mean"]), textcoords="offset points", xytext=(5, 5))
        for r in (r for r in rows if r["model"] == IDENTITY_EDIT):
            ax.axhline(r["mean"], color="grey", linestyle="--", label=r["model"])
            ax.legend(fontsize=7)
    _figure(path, draw, title, "parameters", next((r["metric"] for r in rows if r["metric"]), ""), log_x=True)