"""The public DWSNets INR dataset format (MNIST / FashionMNIST INRs).

On disk (as published by Navon et al. 2023 and used by Neural Graphs):

* one ``.pth`` state dict per INR with keys ``seq.{i}.weight`` ``(out, in)`` and
  ``seq.{i}.bias``; MNIST INRs live in
  ``mnist-inrs/mnist_png_{training|testing}_{label}_{imgidx}/checkpoints/model_final.pth``,
  FashionMNIST INRs in ``fmnist_inrs/{train,test}/model_{i}.pth`` (with an
  extra ``label`` entry that is ignored here);
* a splits JSON ``{"train": {"path": [...], "label": [...]}, "val": ..., "test": ...}``
  (MNIST labels are strings);
* optionally a statistics ``.pth``
  ``{"weights": {"mean": [...], "std": [...]}, "biases": {...}}`` with one
  per-entry tensor per layer, weights transposed to ``(in, out, 1)``, biases
  ``(out, 1)``.

:func:`load_dwsnets` reads all of it (once; a consolidated tensor cache makes
later loads cost one ``stat`` per file) and :func:`write_dwsnets` writes it, which
the offline builder and the tests use, so both paths go through the same reader.
Splits files are treated as untrusted data: labels, empty or overlapping splits
and paths leading out of the dataset root are refused before any INR is read.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from nnzoo.errors import NnzooError
from nnzoo.io import load_tensors, read_json, save_tensors, write_json
from nnzoo.nets.functional import params_to_state_dict, state_dict_to_params
from nnzoo.nets.spec import NetworkSpec
from nnzoo.progress import progress_bar

SPLITS = ("train", "val", "test")
_CACHE_VERSION = 2  # 2: labels no longer cached; file stamps stored and checked


@dataclass
class InrSplits:
    """A loaded INR dataset: flat parameters and integer labels per split."""

    spec: NetworkSpec
    params: dict[str, Tensor]  # split -> (N, P)
    labels: dict[str, Tensor]  # split -> (N,)
    statistics: dict[str, list[list[float]]] | None = None  # per-layer stats from the statistics file
    ids: dict[str, Tensor] | None = None  # split -> (N,) image index of each INR, where the format has one


# --------------------------------------------------------------------- writing
def write_dwsnets(root: str | os.PathLike, spec: NetworkSpec, params: dict[str, Tensor],
                  labels: dict[str, Tensor], image_ids: dict[str, Tensor], prefix: str = "mnist",
                  write_statistics: bool = True, views: dict[str, Tensor] | None = None) -> Path:
    """Write INRs in the DWSNets MNIST layout under ``root``; returns the splits JSON path.

    ``train``/``val`` INRs are named ``..._training_...`` and ``test`` ones
    ``..._testing_...``, like the published files.  Paths in the JSON are
    relative to ``root``.  ``views`` (split -> view index per INR) puts the k-th extra SIREN of an
    image in a sibling tree ``<prefix>-inrs-view<k>/`` under the same file name, so every file keeps
    the public name (and the image index the editing loader reads from it).
    """
    root = Path(root)
    splits: dict[str, dict[str, list]] = {}
    for split in SPLITS:
        paths, names = [], []
        folder = "testing" if split == "test" else "training"
        view_ids = views[split].tolist() if views is not None else [0] * len(params[split])
        for flat, label, image, view in zip(params[split], labels[split].tolist(), image_ids[split].tolist(),
                                            view_ids):
            tree = f"{prefix}-inrs" + (f"-view{view}" if view else "")
            rel = Path(tree) / f"{prefix}_png_{folder}_{label}_{image}" / "checkpoints" / "model_final.pth"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            save_tensors(root / rel, params_to_state_dict(flat, spec, prefix="seq"))
            paths.append(str(rel))
            names.append(str(label))
        splits[split] = {"path": paths, "label": names}
    splits_path = root / f"{prefix}_splits.json"
    write_json(splits_path, splits)
    if write_statistics:
        save_tensors(root / f"{prefix}_statistics.pth", entrywise_statistics(params["train"], spec))
    return splits_path


def entrywise_statistics(params: Tensor, spec: NetworkSpec) -> dict[str, dict[str, list[Tensor]]]:
    """DWSNets statistics: per-entry mean/std over networks, weights as ``(in, out, 1)``."""
    out: dict[str, dict[str, list[Tensor]]] = {"weights": {"mean": [], "std": []},
                                               "biases": {"mean": [], "std": []}}
    for s in spec.slots:
        block = params[:, s.start:s.end].reshape(-1, *s.shape)
        if s.role == "weight":
            block = block.transpose(1, 2)
            key = "weights"
        elif s.role == "bias":
            key = "biases"
        else:
            continue
        out[key]["mean"].append(block.mean(0).unsqueeze(-1))
        out[key]["std"].append(block.std(0).unsqueeze(-1))
    return out


# --------------------------------------------------------------------- reading
_DIGITS = re.compile(r"[0-9]{1,18}")  # ASCII only: str.isdigit() also accepts '²' and other scripts' digits
_UNDECLARED_CLASSES = 2**31  # label bound when a caller declares no class count (labels must fit int64 anyway)
_FIX_SPLITS = "fix or replace the splits file"


def _short(value: Any) -> str:
    """``repr`` of a user value, cut to fit a one-line error."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _class_index(value: Any, num_classes: int) -> int | None:
    """``value`` as a class index in ``[0, num_classes)``, or None when it is not one.

    JSON integers are accepted (the neural-graphs ``fmnist_splits.json`` stores ints), and so are
    strings of decimal digits, because the public MNIST splits store labels as strings (``"7"``).
    Floats (3.7, but also 3.0 and NaN), booleans (Python ints too) and anything else are refused
    rather than truncated into a plausible class.
    """
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < num_classes:
        return None
    return value


def read_splits(splits_path: str | os.PathLike,
                num_classes: int | None = None) -> dict[str, tuple[list[str], list[int]]]:
    """Parse and check a splits JSON into ``{split: (paths, labels)}``; one-line errors name the file.

    Every split must list at least one INR (an empty val split trains without model selection, an
    empty test split reports nothing), paths must be strings, and labels class indices below
    ``num_classes``: the dataset declares its classes, they are never inferred from the largest
    label (a stray ``"99"`` must not turn MNIST into a 100-class problem).  Without
    ``num_classes`` (direct calls) only non-negative labels below 2**31 are required.
    """
    data = read_json(splits_path, "splits file")  # one line for bad JSON, > 4,300-digit integers, deep nesting
    bound = _UNDECLARED_CLASSES if num_classes is None else num_classes
    allowed = f"0..{bound - 1}" if num_classes is not None else "0 or more"
    result = {}
    for split in SPLITS:
        entry = data.get(split) if isinstance(data, dict) else None
        if (not isinstance(entry, dict) or not isinstance(entry.get("path"), list)
                or not isinstance(entry.get("label"), list)):
            raise NnzooError(f"splits file {splits_path} has no '{split}' entry with 'path' and 'label' lists; "
                             'expected {"train": {"path": [...], "label": [...]}, "val": ..., "test": ...}')
        paths, labels = entry["path"], entry["label"]
        if len(paths) != len(labels):
            raise NnzooError(f"splits file {splits_path}: '{split}' has {len(paths)} paths but {len(labels)} labels")
        if not paths:
            raise NnzooError(f"splits file {splits_path}: the '{split}' split is empty; train, val and test must "
                             f"each list at least one INR; {_FIX_SPLITS}")
        for i, path in enumerate(paths):
            if not isinstance(path, str) or not path.strip() or "\x00" in path:
                raise NnzooError(f"splits file {splits_path}: '{split}' path #{i} is {_short(path)}, not a file "
                                 f"path; {_FIX_SPLITS}")
        ints = []
        for i, value in enumerate(labels):
            index = _class_index(value, bound)
            if index is None:
                raise NnzooError(f"splits file {splits_path}: '{split}' label #{i} is {_short(value)}, not a class "
                                 f"index {allowed} (an integer, or a string of digits as in the public MNIST "
                                 f"splits); {_FIX_SPLITS}")
            ints.append(index)
        result[split] = (paths, ints)
    return result


def is_within(real: str, real_root: str) -> bool:
    """Whether the resolved path ``real`` lies inside the resolved folder ``real_root``."""
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


class _RealPaths:
    """``os.path.realpath`` of many normalised absolute paths without ``..``: each folder is resolved once
    (one ``lstat``), then each file costs one ``lstat``; several times faster than ``realpath`` on the
    70,000 public INRs, which are checked on every load."""

    def __init__(self) -> None:
        self.folders: dict[str, str] = {}

    def folder(self, path: str) -> str:
        real = self.folders.get(path)
        if real is None:
            parent, name = os.path.split(path)
            if parent == path:  # the filesystem root
                real = os.path.realpath(path)
            else:
                real = self.step(self.folder(parent), name)
            self.folders[path] = real
        return real

    @staticmethod
    def step(real_parent: str, name: str) -> str:
        """The real path of ``name`` inside the already resolved folder ``real_parent``."""
        if name in ("", "."):
            return real_parent
        if name == "..":
            return os.path.dirname(real_parent)
        joined = real_parent + name if real_parent.endswith(os.sep) else real_parent + os.sep + name
        return os.path.realpath(joined) if os.path.islink(joined) else joined

    def __call__(self, path: str) -> str:
        parent, name = os.path.split(path)
        return self.step(self.folder(parent), name)


def _parts(entry: str) -> list[str]:
    """``Path(entry).parts`` without pathlib's cost (70,000 entries): ``.`` and empty components dropped."""
    parts = [part for part in entry.split("/") if part not in ("", ".")]
    return ["/", *parts] if entry.startswith("/") else parts


def resolve_inr_files(splits_path: str | os.PathLike, entries: dict[str, tuple[list[str], list[int]]],
                      root: str | os.PathLike | None = None) -> tuple[dict[str, list[str]], list[str]]:
    """Map every listed INR to a file inside the dataset root, refusing entries that escape it.

    Returns the files as listed (for reading and messages) per split, and their resolved paths
    in split order (for the cache key).

    The dataset root is ``root`` (``data.root``) when given, else the splits file's folder.
    Published splits hold paths relative to wherever they were generated (e.g.
    ``dataset/mnist-inrs/...``), so leading path components may be dropped: how many is decided
    once, from the first train entry.  Absolute entries are allowed deliberately (a splits file
    generated on this machine with an absolute data path lists them) but obey the same rule, and
    one from another machine that does not exist here is remapped like a relative one.

    The rule: every entry must resolve, after following symlinks and ``..``, inside the dataset
    root.  A splits file is data that is often downloaded, so an entry like
    ``../../../etc/passwd`` or a symlink to ``/etc/shadow`` must not make the loader open (and
    then blame) files that are not part of the dataset.  A dataset folder that is itself a symlink
    is fine; files symlinked in from elsewhere need ``data.root`` pointed at where they really are.
    A test file also listed in train or val is refused too (it would inflate the test scores);
    train/val overlap is tolerated, it only biases checkpoint selection.
    """
    splits_path = Path(splits_path)
    base = Path(os.path.abspath(root if root is not None else splits_path.parent))
    real_base = os.path.realpath(base)
    fix = f"keep dataset files inside {base}, or pass data.root=<the folder that holds them>"
    first = entries["train"][0][0]
    first_parts = _parts(first)
    drop, outside = None, None
    for n in range(len(first_parts)):
        candidate = base.joinpath(*first_parts[n:])
        if candidate.exists():
            if is_within(os.path.realpath(candidate), real_base):
                drop = n
                break
            outside = outside or candidate
    if drop is None:
        if outside is not None:
            raise NnzooError(f"INR file '{first}' listed in {splits_path} resolves outside the dataset root {base} "
                             f"(to {os.path.realpath(outside)}); {fix}")
        raise NnzooError(f"INR file '{first}' listed in {splits_path} was not found under {base}; pass "
                         "data.root=<folder holding the INR directories>")
    files: dict[str, list[str]] = {}
    reals: list[str] = []
    seen: dict[str, str] = {}
    realpath = _RealPaths()
    for split in SPLITS:
        files[split] = []
        for entry in entries[split][0]:
            parts = _parts(entry)[drop:]
            file = os.path.join(base, *parts)
            real = os.path.realpath(file) if ".." in parts else realpath(file)
            reals.append(real)
            if not is_within(real, real_base):
                raise NnzooError(f"INR file '{entry}' listed in {splits_path} ('{split}') resolves outside the "
                                 f"dataset root {base} (to {real}); {fix}")
            first_split = seen.setdefault(real, split)
            if first_split != split and "test" in (first_split, split):
                raise NnzooError(f"splits file {splits_path} lists '{entry}' in both '{first_split}' and '{split}'; "
                                 f"a test INR must not also be trained or selected on; {_FIX_SPLITS}")
            files[split].append(file)
    return files, reals


def file_stamps(files: list[str] | list[Path]) -> Tensor:
    """``(N, 2)`` int64 ``(size, mtime_ns)`` of each file (stat only: cheap), ``-1`` where it is missing
    or not a regular file."""
    rows = []
    for file in files:
        try:
            st = os.stat(file)
        except (OSError, ValueError):
            rows.append((-1, -1))
            continue
        rows.append((st.st_size, st.st_mtime_ns) if stat.S_ISREG(st.st_mode) else (-1, -1))
    return torch.tensor(rows, dtype=torch.long).reshape(len(files), 2)


def read_statistics(path: str | os.PathLike, spec: NetworkSpec) -> dict[str, list[list[float]]]:
    """Per-layer pooled ``[[mean, std], ...]`` from a DWSNets entrywise statistics file.

    Pooling uses ``var = mean(std_e^2 + mean_e^2) - mean^2``, which is exact for
    equal per-entry sample counts.
    """
    raw = load_tensors(path, "statistics file")
    try:
        stats: dict[str, list[list[float]]] = {}
        for key, role in (("weights", "weight"), ("biases", "bias")):
            rows = []
            for layer, (mean_e, std_e) in enumerate(zip(raw[key]["mean"], raw[key]["std"])):
                mean_e, std_e = mean_e.double(), std_e.double()
                if not (bool(torch.isfinite(mean_e).all()) and bool(torch.isfinite(std_e).all())):
                    raise NnzooError(f"statistics file {path}: {key} of layer {layer} hold NaN or Inf, which would "
                                     "make every input NaN; fix or replace it (or omit data.statistics)")
                mean = mean_e.mean().item()
                var = (std_e.pow(2) + mean_e.pow(2)).mean().item() - mean * mean
                rows.append([mean, max(var, 0.0) ** 0.5 or 1.0])
            if len(rows) != spec.num_layers:
                raise ValueError(f"{len(rows)} layers of {role} statistics, the networks have {spec.num_layers}")
            stats[role] = rows
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise NnzooError(f"statistics file {path} is not in the DWSNets format ({exc}); "
                         "expected {'weights': {'mean': [...], 'std': [...]}, 'biases': {...}}") from None
    return stats


def _stamps_match(stored: Any, current: Tensor) -> bool:
    """Whether the cached files are unchanged: same size and mtime wherever the file still exists."""
    if not isinstance(stored, Tensor) or stored.shape != current.shape:
        return False
    present = current[:, 0] >= 0
    return bool(torch.equal(stored[present], current[present]))


def cached_tensors(cache_dir: str | os.PathLike | None, tag: str, key: list[Any],
                   build: Callable[[], dict[str, Any]], stamps: Tensor | None = None) -> dict[str, Any]:
    """``build()``'s tensors, cached as ``cache_dir/{tag}-{hash(key)}.pt`` (no cache if ``cache_dir`` is None).

    ``key`` (JSON-able) must fingerprint what the tensors depend on: the files' paths, the
    architecture, the loader's options.  ``stamps`` (:func:`file_stamps` of the data files, in a
    fixed order) are stored with the tensors and compared on every load, so a data file replaced
    after the first load (another size or mtime, e.g. swapped for a NaN one) rebuilds the cache
    instead of being served stale; a file that has since been removed is still served from the
    cache, which may outlive the raw files.  Shared by the INR format loaders so that tens of
    thousands of small ``.pth`` files are read only once.
    """
    if cache_dir is None:
        return build()
    digest = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]
    cache = Path(cache_dir) / f"{tag}-{digest}.pt"
    if cache.is_file():
        blob = load_tensors(cache, "dataset cache")
        if isinstance(blob, dict) and (stamps is None or _stamps_match(blob.get("stamps"), stamps)):
            return blob
    blob = build()
    if stamps is not None:
        blob = {**blob, "stamps": stamps}
    save_tensors(cache, blob)
    return blob


def load_dwsnets(splits_path: str | os.PathLike, spec: NetworkSpec, *, root: str | os.PathLike | None = None,
                 statistics_path: str | os.PathLike | None = None,
                 cache_dir: str | os.PathLike | None = None, num_classes: int | None = None) -> InrSplits:
    """Load a DWSNets-format INR dataset, checking every file against ``spec``.

    Everything that can be checked without reading INRs is checked first, so a bad dataset fails
    in seconds, not after minutes of reading: the splits (:func:`read_splits`, labels below
    ``num_classes``), where each file resolves (:func:`resolve_inr_files`: inside the dataset
    root, in one split only) and the statistics file.  With ``cache_dir`` the parsed parameters
    are cached, keyed by the resolved files and the architecture and checked against every file's
    size and mtime (:func:`cached_tensors`); labels always come from the splits file.
    """
    splits_path = Path(splits_path)
    if not splits_path.is_file():
        raise NnzooError(f"splits file not found: {splits_path}; pass data.splits=<path to *_splits.json> "
                         "or leave data.root empty to build the dataset offline")
    entries = read_splits(splits_path, num_classes)
    files, reals = resolve_inr_files(splits_path, entries, root)
    statistics = read_statistics(statistics_path, spec) if statistics_path else None
    ordered = [file for split in SPLITS for file in files[split]]
    stamps = file_stamps(ordered)

    def read_all() -> dict[str, dict[str, Tensor]]:
        missing = torch.nonzero(stamps[:, 0] < 0).flatten()
        if len(missing):
            raise NnzooError(f"INR file {ordered[int(missing[0])]} listed in {splits_path} is missing or not a "
                             f"regular file ({len(missing)} such); restore the files, or {_FIX_SPLITS}")
        params = {}
        with progress_bar(len(ordered), f"reading INRs from {splits_path.name}") as advance:
            for split in SPLITS:
                rows = torch.empty(len(files[split]), spec.num_params)
                for i, file in enumerate(files[split]):
                    rows[i] = state_dict_to_params(read_state_dict(file), spec, source=file)
                    if i % 256 == 255:
                        advance(256)
                advance(len(files[split]) % 256)
                params[split] = rows
        return {"params": params}

    listing = hashlib.sha256("\n".join(reals).encode()).hexdigest()
    key = [_CACHE_VERSION, listing, spec.to_dict()]
    blob = cached_tensors(cache_dir, "dwsnets", key, read_all, stamps=stamps)
    labels = {split: torch.tensor(entries[split][1], dtype=torch.long) for split in SPLITS}
    return InrSplits(spec, blob["params"], labels, statistics, image_ids(entries))


def image_ids(entries: dict[str, tuple[list[str], list[int]]]) -> dict[str, Tensor] | None:
    """The image index of every INR, read from its path as the Neural Graphs style-editing loader does:
    ``<prefix>_png_<training|testing>_<label>_<index>/checkpoints/model_final.pth``.  ``None`` when a
    path does not end that way (a splits file of another layout)."""
    ids = {}
    for split in SPLITS:
        values = []
        for path in entries[split][0]:
            parts = Path(path).parts
            token = parts[-3].rsplit("_", 1)[-1] if len(parts) >= 3 else ""
            if not token.isdigit():
                return None
            values.append(int(token))
        ids[split] = torch.tensor(values, dtype=torch.long)
    return ids


def read_state_dict(file: Path) -> dict:
    """One INR's state dict, read safely; one-line errors name the file."""
    sd = load_tensors(file, "INR file")
    if not isinstance(sd, dict):
        raise NnzooError(f"INR file {file} holds a {type(sd).__name__}, not a state dict")
    return sd
