"""The NFN SIREN INR dataset format (Zhou et al. 2023: MNIST, FashionMNIST and CIFAR-10 SIRENs).

On disk (the ``siren_{mnist,fashion,cifar}_wts.tar`` archives of the NFN
Google-Drive folder)::

    siren_cifar_wts/
        randinit_smaller_0s/net12.pth        # label 0, image index 12
        randinit_smaller_7s/net50311.pth     # label 7, image index 50311
        randinit_smaller_aug0_7s/net12.pth   # augmented copy 0 (training images only)

* one state dict per INR with keys ``net.{i}.linear.{weight,bias}`` for the
  sine layers and ``net.{L-1}.{weight,bias}`` for the linear output layer
  (weights ``(out, in)``); standard SIREN 2-32-32-{1,3}, w0 = 30 in the first
  and hidden layers, no output offset, images in [-1, 1];
* the label is the digit in the folder name (``_(\\d)s``), the image index the
  number in the file name (``net(\\d+)\\.pth``);
* splits are fixed by index: ``idx < 45,000`` train, ``45,000 <= idx < 50,000``
  val, ``idx >= 50,000`` test;
* ``{prefix}_aug{i}_{label}s`` hold augmented copies of the training INRs.
  NFN's own glob ``{prefix}_*`` also matches those; here the base folders are
  matched exactly (``{prefix}_[0-9]s``) and augmented copies are used only when
  asked for (``include_aug``), for the train split only.

:func:`load_nfn_sirens` reads it (once, with the tensor cache shared with the
DWSNets loader) and :func:`write_nfn_sirens` writes it, for tests and builders.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor

from nnzoo.data.formats.dwsnets import SPLITS, InrSplits, cached_tensors, file_stamps, is_within, read_state_dict
from nnzoo.errors import NnzooError
from nnzoo.io import atomic_path
from nnzoo.nets.functional import state_dict_to_params
from nnzoo.nets.spec import NetworkSpec
from nnzoo.progress import progress_bar

VAL_START, TEST_START = 45_000, 50_000
DEFAULT_PREFIX = "randinit_smaller"
FOLDERS = {"mnist": "siren_mnist_wts", "fashion": "siren_fashion_wts", "cifar": "siren_cifar_wts"}
_INDEX = re.compile(r"net(\d+)\.pth")
_CACHE_VERSION = 2  # 2: file stamps stored and checked

Key = tuple[int, int]  # (label, image index)


def split_of(index: int) -> str:
    """The NFN split of an image index: train below 45,000, val below 50,000, test above."""
    return "train" if index < VAL_START else "val" if index < TEST_START else "test"


def nfn_state_dict(params: Tensor, spec: NetworkSpec) -> dict[str, Tensor]:
    """The NFN ``SirenNet`` state dict of one flat vector (``net.{i}.linear.*``, last ``net.{L-1}.*``)."""
    last = spec.num_layers - 1
    out = {}
    for s in spec.slots:
        if s.role not in ("weight", "bias"):
            raise NnzooError(f"{spec.describe()} has a '{s.role}' tensor; NFN SIRENs hold only weights and biases")
        name = f"net.{s.layer}.{s.role}" if s.layer == last else f"net.{s.layer}.linear.{s.role}"
        out[name] = params[s.start:s.end].reshape(s.shape).clone()
    return out


# --------------------------------------------------------------------- writing
def write_nfn_sirens(root: str | os.PathLike, spec: NetworkSpec, params: Mapping[Key, Tensor], *,
                     prefix: str = DEFAULT_PREFIX,
                     aug_copies: int | Sequence[Mapping[Key, Tensor]] = 0,
                     aug_noise: float = 1e-3, seed: int = 0) -> Path:
    """Write INRs in the NFN layout under ``root``; returns ``root``.

    ``params`` maps ``(label, image index)`` to a flat parameter vector.
    ``aug_copies`` is either explicit augmented copies (one mapping per copy
    ``i``, written to ``{prefix}_aug{i}_{label}s``) or a count ``k``: ``k``
    copies of every training INR (index < 45,000) with seeded Gaussian noise
    of std ``aug_noise`` added, so they differ from the originals.
    """
    root = Path(root)
    if isinstance(aug_copies, int):
        train = {k: v for k, v in params.items() if k[1] < VAL_START}
        copies = []
        for i in range(aug_copies):
            g = torch.Generator().manual_seed(seed * 1000 + i)
            copies.append({k: v + aug_noise * torch.randn(v.shape, generator=g) for k, v in sorted(train.items())})
    else:
        copies = list(aug_copies)
    folders = [(prefix, params)] + [(f"{prefix}_aug{i}", copy) for i, copy in enumerate(copies)]
    for folder, entries in folders:
        seen: dict[int, int] = {}
        for (label, index), flat in entries.items():
            if not 0 <= int(label) <= 9:
                raise NnzooError(f"label {label} cannot be written in the NFN layout (one digit, 0-9)")
            if seen.setdefault(int(index), int(label)) != int(label):
                raise NnzooError(f"image index {index} is given labels {seen[int(index)]} and {label}")
            file = root / f"{folder}_{int(label)}s" / f"net{int(index)}.pth"
            file.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(file) as tmp:
                torch.save(nfn_state_dict(flat, spec), tmp)
    return root


# --------------------------------------------------------------------- reading
def _check_link(entry: os.DirEntry, root: Path) -> None:
    """Refuse a symlinked folder or file that leads outside the dataset root.

    Only symlinks need the (slower) real-path check: a plain entry of a folder inside the root is
    inside it.  Same rule as the DWSNets splits entries (see ``resolve_inr_files``), so a planted
    link to ``/etc/shadow`` is never opened.
    """
    if entry.is_symlink():
        real = os.path.realpath(entry.path)
        if not is_within(real, os.path.realpath(root)):
            raise NnzooError(f"{entry.path} resolves outside the dataset root {root} (to {real}); keep dataset "
                             f"files inside {root}, or pass data.root=<the folder that holds them>")


def _class_folders(root: Path, prefix: str) -> list[tuple[int, Path]]:
    """``(label, folder)`` of the folders named exactly ``{prefix}_{digit}s`` (no aug copies)."""
    pattern = re.compile(rf"{re.escape(prefix)}_(\d)s")
    found = []
    for entry in os.scandir(root):
        m = pattern.fullmatch(entry.name)
        if m and entry.is_dir():
            _check_link(entry, root)
            found.append((int(m.group(1)), Path(entry.path)))
    return sorted(found)


def _scan(folders: list[tuple[int, Path]], what: str, root: Path) -> list[tuple[int, int, Path]]:
    """Sorted ``(index, label, file)`` of the ``net{idx}.pth`` files in ``folders``; duplicates are errors."""
    by_index: dict[int, tuple[int, int, Path]] = {}
    for label, folder in folders:
        for entry in os.scandir(folder):
            m = _INDEX.fullmatch(entry.name)
            if not m:
                continue
            _check_link(entry, root)
            index = int(m.group(1))
            if index in by_index:
                raise NnzooError(f"image index {index} appears twice in the {what}: {by_index[index][2]} and "
                                 f"{entry.path}; keep only one of them in the dataset folder")
            by_index[index] = (index, label, Path(entry.path))
    return [by_index[i] for i in sorted(by_index)]


def load_nfn_sirens(root: str | os.PathLike, spec: NetworkSpec, *, include_aug: int = 0,
                    prefix: str = DEFAULT_PREFIX, cache_dir: str | os.PathLike | None = None) -> InrSplits:
    """Load an NFN-layout SIREN dataset, checking every file against ``spec``.

    Splits follow the NFN protocol (by image index).  With ``include_aug = k``
    the training split also gets the training INRs of the first ``k``
    augmented copies (``{prefix}_aug0_*`` ... ``{prefix}_aug{k-1}_*``), after
    the originals; val and test never use them.  ``InrSplits.ids`` holds every
    INR's image index.  With ``cache_dir`` the tensors are cached, keyed by the
    folders' paths and mtimes and checked against every file's size and mtime (one ``stat`` each),
    so an added, removed or rewritten file is read again.
    Symlinked folders or files must lead inside ``root``.
    """
    root = Path(root)
    if not root.is_dir():
        raise NnzooError(f"NFN SIREN folder {root} does not exist; point data.root at the extracted "
                         f"siren_*_wts folder holding {prefix}_{{0..9}}s/")
    if include_aug < 0:
        raise NnzooError(f"include_aug must be >= 0, got {include_aug}")
    groups = [("", _class_folders(root, prefix))]
    if not groups[0][1]:
        raise NnzooError(f"no {prefix}_{{0..9}}s/net*.pth folders in {root}; point data.root at the extracted "
                         "siren_*_wts folder (or set data.prefix)")
    for i in range(include_aug):
        aug = _class_folders(root, f"{prefix}_aug{i}")
        if not aug:
            raise NnzooError(f"include_aug={include_aug} but {root} has no {prefix}_aug{i}_{{0..9}}s folders; "
                             f"lower data.include_aug")
        groups.append((f"aug{i}", aug))

    def read_all() -> dict[str, dict[str, Tensor]]:
        files: dict[str, list[tuple[int, int, Path]]] = {s: [] for s in SPLITS}
        for name, folders in groups:
            what = f"{prefix}_{name + '_' if name else ''}{{label}}s folders of {root}"
            items = _scan(folders, what, root)
            if not name and not items:
                raise NnzooError(f"no net{{idx}}.pth files in the {prefix}_{{0..9}}s folders of {root}; "
                                 "the download may be incomplete")
            for item in items:
                split = split_of(item[0])
                if not name or split == "train":  # augmented copies: training images only
                    files[split].append(item)
        out: dict[str, dict[str, Tensor]] = {"params": {}, "labels": {}, "ids": {}}
        with progress_bar(sum(map(len, files.values())), f"reading NFN SIRENs from {root.name}") as advance:
            for split, items in files.items():
                rows = torch.empty(len(items), spec.num_params)
                for i, (_, _, file) in enumerate(items):
                    rows[i] = state_dict_to_params(read_state_dict(file), spec, source=file)
                    if i % 256 == 255:
                        advance(256)
                advance(len(items) % 256)
                out["params"][split] = rows
                out["labels"][split] = torch.tensor([label for _, label, _ in items], dtype=torch.long)
                out["ids"][split] = torch.tensor([index for index, _, _ in items], dtype=torch.long)
        return out

    folders = [[str(folder.resolve()), folder.stat().st_mtime_ns] for _, fs in groups for _, folder in fs]
    key = [_CACHE_VERSION, prefix, include_aug, spec.to_dict(), folders]
    listed = sorted(str(f) for _, fs in groups for _, folder in fs for f in folder.glob("net*.pth"))
    blob = cached_tensors(cache_dir, "nfn", key, read_all, stamps=file_stamps(listed))
    return InrSplits(spec, blob["params"], blob["labels"], ids=blob["ids"])
