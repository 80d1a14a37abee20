"""Your own networks as a dataset: ``nnzoo pack`` and the ``packed`` datamodule.

``nnzoo pack DIR --labels labels.csv --name mynets --classes 3`` reads the state dicts listed in
``labels.csv`` (columns ``file`` and ``label`` for classification or ``target`` for regression, and
optionally ``split``), checks every one against one architecture (the ``--spec`` JSON, or the one read
off the first file) and the labels against the declared classes, and writes a *pack*:
``$NNZOO_HOME/packs/<name>/`` holding ``networks.pt`` (the flat parameters, targets and split of every
network) and ``pack.json`` (task, classes, architecture, split, and one row per network), written last.

``nnzoo fit --model gnn --data packed data.pack=mynets`` trains on it: the number of classes is the
declared one, never the largest label seen.  A run's checkpoint then scores networks of that
architecture with ``nnzoo predict --checkpoint runs/.../best.ckpt net.pth``.

Splits: the CSV's ``split`` column (``train``/``val``/``test``) when it has one, else a random split
seeded by ``--seed`` with :data:`VAL_FRACTION` and :data:`TEST_FRACTION` of the networks (at least one
each) in validation and test.
"""

from __future__ import annotations

import csv
import math
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from nnzoo import __version__
from nnzoo.data.datamodule import DATASETS, WeightDataModule
from nnzoo.data.weights import DataInfo, WeightDataset, check_normalize, layer_statistics
from nnzoo.errors import NnzooError
from nnzoo.io import cache_home, load_tensors, read_json, save_tensors, write_json
from nnzoo.nets.spec import NetworkSpec

PACK_FILE = "pack.json"
"""Written last: its presence marks a complete pack."""
TENSORS_FILE = "networks.pt"
PACK_FORMAT = 1
SPLITS = ("train", "val", "test")
VAL_FRACTION = 0.1
TEST_FRACTION = 0.1
"""Fractions of a random split (used when the CSV has no ``split`` column); at least one network each."""
TASKS = ("classification", "regression")
TARGET_COLUMNS = {"classification": "label", "regression": "target"}
MAX_CLASSES = 100_000
"""Most classes ``--classes`` may declare: ``--classes 99999999999`` would otherwise build a list of 10^11
names (and a model head as wide) before reading anything."""


def packs_folder(home: str | os.PathLike | None = None) -> Path:
    """Where packs live: ``$NNZOO_HOME/packs`` (or ``<home>/packs``)."""
    return (Path(home).expanduser() if home else cache_home()) / "packs"


def parse_classes(value: str | int | list[str] | None) -> list[str] | None:
    """``--classes``: a count (``3``: classes ``0``, ``1``, ``2``) or comma-separated names (``cat,dog``)."""
    if value is None:
        return None
    if isinstance(value, list):
        names = [str(v).strip() for v in value]
    elif isinstance(value, int) or str(value).strip().isdigit():
        text = str(value).strip()
        if len(text) > len(str(MAX_CLASSES)) or int(text) > MAX_CLASSES:  # the length first: int('9' * 5000) fails
            raise NnzooError(f"--classes {text[:20]}{'...' if len(text) > 20 else ''}: at most {MAX_CLASSES:,} "
                             "classes (each is a name in memory and an output of the model); declare fewer")
        count = int(text)
        if count < 2:
            raise NnzooError(f"--classes {count}: a classification needs at least 2 classes")
        return [str(i) for i in range(count)]
    else:
        names = [n.strip() for n in str(value).split(",")]
    if len(names) > MAX_CLASSES:
        raise NnzooError(f"--classes names {len(names):,} classes; at most {MAX_CLASSES:,}, declare fewer")
    if len(names) < 2 or any(not n for n in names) or len(set(names)) != len(names):
        raise NnzooError(f"--classes must be a count >= 2 or at least two distinct comma-separated names, "
                         f"got {str(value)[:60]!r}")
    clash = next(((i, n) for i, n in enumerate(names) if _as_index(n) is not None and n != str(i)), None)
    if clash is not None:  # labels are names or indices: a number naming another position means two classes
        i, n = clash
        raise NnzooError(f"--classes {str(value)[:60]}: the name {n!r} is a number but class {i}; a label {n} "
                         f"would mean both the class named {n!r} and class {_as_index(n)}. A name that is a number "
                         f"must be its own index (0,1,2,...): list them in that order, or name them otherwise "
                         f"(e.g. c{n})")
    return names


def _as_index(text: str) -> int | None:
    """What a label reads as when it is taken as an index (``int(text)``), or None."""
    try:
        return int(text) if len(text) <= 20 else None
    except ValueError:
        return None


def read_spec_file(path: str | os.PathLike) -> NetworkSpec:
    """A :class:`NetworkSpec` from a JSON file of ``spec.to_dict()`` (e.g. of ``spec_from_module(net)``)."""
    from nnzoo.nets.graph_spec import spec_from_dict
    data = read_json(path, "spec file")  # RecursionError too: one line
    try:
        return spec_from_dict(data)
    except NnzooError as exc:
        raise NnzooError(f"spec file {path}: {exc}") from None
    except (TypeError, KeyError, ValueError, AttributeError) as exc:
        raise NnzooError(f"spec file {path} is not a NetworkSpec JSON ({type(exc).__name__}: {exc}); write it "
                         "with json.dump(nnzoo.nets.spec_from_module(net).to_dict(), file)") from None


def _read_labels(labels: Path, task: str | None) -> tuple[str, list[dict[str, str]], bool]:
    """Task, rows (with their CSV line numbers) and whether a split column exists."""
    if not labels.is_file():
        raise NnzooError(f"labels file not found: {labels}")
    try:
        with open(labels, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            rows = [{(k or "").strip(): (v or "").strip() if isinstance(v, str) else "" for k, v in row.items()}
                    | {"_line": str(reader.line_num)} for row in reader]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise NnzooError(f"cannot read {labels} as CSV ({exc}); write it as UTF-8 text with a header line "
                         "file,label (or file,target)") from None
    if "file" not in columns:
        raise NnzooError(f"{labels} has no 'file' column (columns: {', '.join(columns) or 'none'}); its header must "
                         "be file,label for classification or file,target for regression (optionally ,split)")
    present = [t for t, c in TARGET_COLUMNS.items() if c in columns]
    if task is None:
        if len(present) != 1:
            raise NnzooError(f"{labels} needs exactly one of the columns 'label' (classification) and 'target' "
                             f"(regression), has {', '.join(columns)}; or pass --task")
        task = present[0]
    elif task not in TASKS:
        raise NnzooError(f"--task must be one of {', '.join(TASKS)}, got {task!r}")
    elif TARGET_COLUMNS[task] not in columns:
        raise NnzooError(f"--task {task} needs a '{TARGET_COLUMNS[task]}' column in {labels} "
                         f"(columns: {', '.join(columns)})")
    rows = [r for r in rows if any(v for k, v in r.items() if k != "_line")]  # blank lines
    if not rows:
        raise NnzooError(f"{labels} lists no networks")
    return task, rows, "split" in columns


def _target(row: dict[str, str], task: str, classes: list[str] | None, where: str) -> float | int:
    column = TARGET_COLUMNS[task]
    value = row.get(column, "")
    if task == "regression":
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number) or not 0.0 <= number <= 1.0:
            raise NnzooError(f"{where}: target {value!r} is not a number in [0, 1]; regression targets are scores "
                             "such as test accuracies (the model predicts them through a sigmoid)")
        return number
    assert classes is not None
    if value in classes and not value.isdigit():
        return classes.index(value)
    try:
        index = int(value)
    except ValueError:
        raise NnzooError(f"{where}: label {value!r} is neither a class name ({', '.join(classes[:5])}"
                         f"{', ...' if len(classes) > 5 else ''}) nor a class index") from None
    if not 0 <= index < len(classes):
        raise NnzooError(f"{where}: label {index} is outside the {len(classes)} declared classes (0..{len(classes) - 1}); "
                         "fix the label or declare more classes with --classes")
    return index


def _random_split(n: int, seed: int, val_fraction: float, test_fraction: float) -> list[str]:
    n_val = max(1, round(n * val_fraction))
    n_test = max(1, round(n * test_fraction))
    if n - n_val - n_test < 1:
        raise NnzooError(f"only {n} networks: a run needs at least one training, one validation and one test "
                         "network; list more, or assign them with a 'split' column")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    split = ["train"] * n
    for i in order[:n_test]:
        split[i] = "test"
    for i in order[n_test:n_test + n_val]:
        split[i] = "val"
    return split


def pack_networks(folder: str | os.PathLike, labels: str | os.PathLike, name: str, *, task: str | None = None,
                  classes: str | int | list[str] | None = None, spec: NetworkSpec | None = None,
                  activation: str = "relu", seed: int = 0, val_fraction: float = VAL_FRACTION,
                  test_fraction: float = TEST_FRACTION, force: bool = False,
                  home: str | os.PathLike | None = None) -> Path:
    """Pack the networks of ``folder`` listed in ``labels`` as dataset ``name``; returns the pack folder.

    ``spec``: the architecture every network must have (default: read off the first listed file with
    :func:`nnzoo.nets.spec_from_state_dict` and ``activation``).  ``classes``: the declared classes
    (required for classification).  An existing pack is replaced only with ``force``.
    """
    from nnzoo.nets.from_module import spec_from_state_dict
    from nnzoo.nets.functional import state_dict_to_params
    from nnzoo.progress import progress_bar
    from nnzoo.schema import check_name
    check_name("--name", name)
    source = Path(folder).expanduser()
    labels = Path(labels).expanduser()
    if not source.is_dir():
        raise NnzooError(f"network folder {source} does not exist or is not a folder")
    target = packs_folder(home) / name
    if target.exists() and not force:
        raise NnzooError(f"pack '{name}' already exists ({target}); pass --force to replace it, or choose another "
                         "--name")
    for option, value in (("--val-fraction", val_fraction), ("--test-fraction", test_fraction)):
        if not 0.0 < value < 1.0:
            raise NnzooError(f"{option} must be a fraction in (0, 1), got {value}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:  # torch takes 64-bit seeds
        raise NnzooError(f"--seed must be a whole number from 0 to 2**63 - 1, got {str(seed)[:40]}")
    task, rows, has_split = _read_labels(labels, task)
    declared = parse_classes(classes)
    if task == "classification" and declared is None:
        raise NnzooError("declare the classes of a classification: --classes N (classes 0..N-1) or --classes "
                         "name0,name1,... (labels may then be names or indices); they are never inferred from "
                         "the labels")
    if task == "regression" and declared is not None:
        raise NnzooError("--classes is for classification; a regression pack has one target per network")
    root = source.resolve()
    files: list[Path] = []
    seen: dict[Path, str] = {}
    targets: list[float | int] = []
    splits: list[str] = []
    for row in rows:
        where = f"{labels} line {row['_line']}"
        entry = row.get("file", "")
        path = (source / entry)
        resolved = path.resolve()
        if not entry or Path(entry).is_absolute() or not resolved.is_relative_to(root):
            raise NnzooError(f"{where}: file {entry!r} must be a path inside {source} (relative, no '..')")
        if resolved in seen:
            raise NnzooError(f"{where}: {entry} is listed twice (first on line {seen[resolved]})")
        seen[resolved] = row["_line"]
        if not resolved.is_file():
            raise NnzooError(f"{where}: network file {path} not found")
        targets.append(_target(row, task, declared, f"{where} ({entry})"))
        if has_split:
            value = row.get("split", "").lower()
            if value not in SPLITS:
                raise NnzooError(f"{where}: split {row.get('split')!r} must be one of {', '.join(SPLITS)}")
            splits.append(value)
        files.append(path)
    if has_split:
        missing = [s for s in SPLITS if s not in splits]
        if missing:
            raise NnzooError(f"{labels}: the split column assigns no network to {missing[0]}; a run needs train, "
                             "val and test networks")
    else:
        splits = _random_split(len(files), seed, val_fraction, test_fraction)
    params = []
    with progress_bar(len(files), "packing networks") as advance:
        for path in files:
            state = load_tensors(path, "network file")
            if not isinstance(state, dict) or not state:
                raise NnzooError(f"{path} holds a {type(state).__name__ if state != {} else 'empty dict'}, not a "
                                 "state dict; save networks with torch.save(net.state_dict(), path)")
            if spec is None:  # the first network fixes the architecture
                spec = spec_from_state_dict(state, activation, source=path)
            params.append(state_dict_to_params(state, spec, source=path))
            advance(1)
    assert spec is not None
    class_names = declared if task == "classification" else None
    meta: dict[str, Any] = {
        "format": PACK_FORMAT, "name": name, "task": task, "class_names": class_names,
        "num_outputs": len(class_names) if class_names else 1, "spec": spec.to_dict(),
        "architecture": spec.describe(), "source": str(root), "labels": str(labels.resolve()),
        "split": {"from": "column" if has_split else "random", **({} if has_split else {
            "seed": seed, "val_fraction": val_fraction, "test_fraction": test_fraction})},
        "counts": {s: splits.count(s) for s in SPLITS}, "nnzoo_version": __version__,
        "networks": [{"file": str(p.relative_to(source)), "split": s, TARGET_COLUMNS[task]: t}
                     for p, s, t in zip(files, splits, targets)],
    }
    tensors = {"params": torch.stack(params),
               "targets": torch.tensor(targets, dtype=torch.long if task == "classification" else torch.float32),
               "split": torch.tensor([SPLITS.index(s) for s in splits], dtype=torch.long)}
    _write_pack(target, tensors, meta)
    return target


def _write_pack(target: Path, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
    """Write the pack into a temporary sibling folder, then move it into place (replacing an old pack)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.parent / f".{target.name}.partial-{os.getpid()}"
    old = target.parent / f".{target.name}.old-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        partial.mkdir()
        save_tensors(partial / TENSORS_FILE, tensors)
        write_json(partial / PACK_FILE, meta)
        if target.exists():
            os.replace(target, old)
        os.replace(partial, target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def read_pack(folder: Path) -> tuple[dict[str, Any], NetworkSpec, Tensor, Tensor, Tensor]:
    """``(meta, spec, params (N, P), targets (N,), split codes (N,))`` of a pack, checked."""
    meta = read_json(folder / PACK_FILE, "pack metadata")
    where = f"pack {folder}"
    if not isinstance(meta, dict) or meta.get("format") != PACK_FORMAT or meta.get("task") not in TASKS:
        raise NnzooError(f"{where}: {PACK_FILE} is not a format-{PACK_FORMAT} pack; make it again with nnzoo pack "
                         "--force")
    names = meta.get("class_names")
    if meta["task"] == "classification" and (not isinstance(names, list) or len(names) < 2
                                             or not all(isinstance(n, str) for n in names)):
        raise NnzooError(f"{where}: {PACK_FILE} declares no classes (class_names); make it again with nnzoo pack "
                         "--classes ... --force")
    from nnzoo.nets.graph_spec import spec_from_dict
    try:
        spec = spec_from_dict(meta["spec"])
    except (NnzooError, TypeError, KeyError, ValueError, AttributeError) as exc:
        raise NnzooError(f"{where}: its spec cannot be read ({exc}); make it again with nnzoo pack --force") from None
    blob = load_tensors(folder / TENSORS_FILE, "pack tensors")
    ok = isinstance(blob, dict) and all(isinstance(blob.get(k), Tensor) for k in ("params", "targets", "split"))
    if ok:
        params, targets, split = blob["params"], blob["targets"], blob["split"]
        n = len(params)
        ok = (params.dim() == 2 and params.shape[1] == spec.num_params and len(targets) == n == len(split)
              and bool(torch.isfinite(params).all()) and not split.is_floating_point()
              and bool(((split >= 0) & (split < len(SPLITS))).all()))
    if not ok:
        raise NnzooError(f"{where}: {TENSORS_FILE} does not match {PACK_FILE} (architecture "
                         f"{spec.describe()}, {spec.num_params} parameters per network); make it again with "
                         "nnzoo pack --force")
    return meta, spec, params.float(), targets, split


@DATASETS.register("packed", "your own networks, packed by `nnzoo pack DIR --labels CSV --name NAME` "
                   "(data.pack=NAME); classification or regression, as declared there")
class PackedDataModule(WeightDataModule):
    """A pack made by :func:`pack_networks` (``nnzoo pack``), named by ``pack``.

    ``normalize``: ``layer`` (per (role, layer) statistics of the training networks; equivariant),
    ``entry`` (per entry) or ``none`` (raw weights).
    """

    def __init__(self, pack: str | None = None, normalize: str = "layer", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if pack is None:
            raise NnzooError("data.pack is empty: name a pack made by `nnzoo pack DIR --labels CSV --name NAME`, "
                             f"e.g. data.pack=NAME ({_available(self.cache_dir / 'packs')})")
        from nnzoo.schema import check_name
        self.pack = check_name("data.pack", pack)
        self.normalize = check_normalize(normalize)

    def load(self) -> tuple[dict[str, WeightDataset], DataInfo]:
        packs = self.cache_dir / "packs"
        folder = packs / self.pack
        if not (folder / PACK_FILE).is_file():
            raise NnzooError(f"no pack '{self.pack}' in {packs} ({_available(packs)}); make it with `nnzoo pack DIR "
                             f"--labels CSV --name {self.pack}`")
        meta, spec, params, targets, split = read_pack(folder)
        datasets = {s: WeightDataset.homogeneous(spec, params[split == i], targets[split == i])
                    for i, s in enumerate(SPLITS)}
        train = params[split == 0]
        if self.normalize == "none" or len(train) == 0:
            stats: dict[str, Any] = {}
        elif self.normalize == "entry":
            std = train.double().std(0) if len(train) > 1 else torch.ones(train.shape[1], dtype=torch.float64)
            stats = {"entry": {"mean": train.double().mean(0).tolist(),
                               "std": torch.where(std > 1e-8, std, 1.0).tolist()}}
        else:
            stats = layer_statistics([spec], [train])
        info = DataInfo(name=str(meta.get("name", self.pack)), task=meta["task"],
                        num_outputs=len(meta["class_names"]) if meta["task"] == "classification" else 1,
                        specs=(spec,), stats=stats, class_names=meta.get("class_names"),
                        extra={"folder": str(folder), "pack": self.pack})
        return datasets, info


def _available(packs: Path) -> str:
    names = sorted(p.parent.name for p in packs.glob(f"*/{PACK_FILE}")) if packs.is_dir() else []
    return f"packs there: {', '.join(names)}" if names else f"no packs in {packs} yet"
