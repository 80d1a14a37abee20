"""Pretrained metanetworks: a registry of small checkpoints with their metrics, data and recipe.

Like torchvision's weights metadata, every entry of ``checkpoints/manifest.json``
says what the checkpoint is (model, dataset, task), how well it did (test
metrics of the run that produced it), how it was made (the full run config,
including the dataset recipe) and how to verify it (sha256, nnzoo version).

Checkpoint files hold only tensors and plain containers (the model's
``state_dict`` and the hyperparameters needed to rebuild it), are loaded with
``torch.load(weights_only=True)`` after the sha256 check
(:mod:`nnzoo.checkpoint_files`), and never unpickle code.  ``nnzoo export``
produces them from a finished run folder, so every number in the manifest
comes from a command, not from a hand edit.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from nnzoo.checkpoint_files import METRICS_FILE, load_checkpoint_file, load_task, neutral_locations
from nnzoo.conventions import input_convention
from nnzoo.errors import NnzooError, unknown_name
from nnzoo.io import atomic_path, cache_home, read_json, sha256_file, shipped_folder, write_json
from nnzoo.version import __version__

MANIFEST = "manifest.json"
CHECKPOINTS_ENV = "NNZOO_CHECKPOINTS"


def checkpoints_folder() -> Path:
    """The shipped checkpoints: the repository's ``checkpoints/``, or the copy installed with the package
    (never replaced by ``$NNZOO_CHECKPOINTS``, which adds folders: :func:`checkpoint_folders`)."""
    return shipped_folder("checkpoints", None)


def user_checkpoints_folder() -> Path:
    """Where ``nnzoo export`` writes by default: ``$NNZOO_HOME/checkpoints`` (``~/.cache/nnzoo/checkpoints``),
    a folder of the user's, not the installed package."""
    return cache_home() / "checkpoints"


def checkpoint_folders() -> list[tuple[Path, str]]:
    """``(folder, origin)`` of every folder a checkpoint name is looked up in, the first that lists a name
    winning: each folder of ``$NNZOO_CHECKPOINTS`` (separated by ``os.pathsep``, in order), the default export
    folder (:func:`user_checkpoints_folder`), then the shipped checkpoints.  Each folder has its own
    ``manifest.json``; a folder that does not exist yet lists nothing, except one named in the variable
    (a typo would otherwise hide every checkpoint in it without a word)."""
    folders = []
    for item in os.environ.get(CHECKPOINTS_ENV, "").split(os.pathsep):
        if not item:
            continue
        path = Path(item).expanduser()
        if not path.is_dir():
            raise NnzooError(f"{CHECKPOINTS_ENV} names {path}, which is not a folder; create it (nnzoo export "
                             f"--folder {path} writes one) or fix the variable")
        folders.append((path, CHECKPOINTS_ENV))
    folders += [(user_checkpoints_folder(), "user"), (checkpoints_folder(), "shipped")]
    seen, unique = set(), []
    for path, origin in folders:  # one folder named twice (e.g. the shipped one in the variable) counts once
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append((path, origin))
    return unique


@dataclass
class PretrainedEntry:
    name: str
    file: str
    model: str
    data: str
    task: str
    metrics: dict[str, float]
    num_parameters: int
    sha256: str
    nnzoo_version: str
    config: dict[str, Any]
    input_convention: dict[str, Any] | None = None  # see input_convention(); absent in entries made before it
    # where the entry was read from (not stored in the manifest): its folder, that folder's origin
    # (checkpoint_folders()) and the origins of the entries of the same name it hides
    folder: Path | None = field(default=None, compare=False, repr=False)
    origin: str = field(default="", compare=False, repr=False)
    hides: list[str] = field(default_factory=list, compare=False, repr=False)

    @property
    def headline(self) -> str:
        def metric(key: str) -> float:  # absent, or null (a NaN the run wrote as JSON null): nan
            value = self.metrics.get(key)
            return float("nan") if value is None else float(value)
        if self.task == "editing":
            return f"test/mse {metric('test/mse'):.4f} (identity edit {metric('test/identity_mse'):.4f})"
        key = "test/acc" if self.task == "classification" else "test/kendall_tau"
        return f"{key} {metric(key):.3f}"

    @property
    def convention_summary(self) -> str:
        if not self.input_convention:
            return ("no input-convention card (exported before cards existed; "
                    "bash checkpoints/make_checkpoints.sh re-makes it)")
        return self.input_convention["summary"]


ENTRY_TYPES: dict[str, type | tuple[type, ...]] = {
    "name": str, "file": str, "model": str, "data": str, "task": str, "metrics": dict, "num_parameters": int,
    "sha256": str, "nnzoo_version": str, "config": dict, "input_convention": (dict, type(None))}
"""The type of every manifest field (:class:`PretrainedEntry`), checked when the manifest is read."""


def manifest(folder: Path | None = None, broken: list[str] | None = None) -> dict[str, PretrainedEntry]:
    """The entries of ``folder/manifest.json``, or, without ``folder``, of every folder of
    :func:`checkpoint_folders` (a user's entry wins over a shipped one of the same name and records it in
    ``hides``).  Each entry is checked field by field (one line naming the entry and the field when a hand
    edit broke it: an unknown or missing field, a wrong type, a file path).  With a ``broken`` list, a folder
    whose manifest is refused is skipped and its one-line error appended there instead of raised."""
    if folder is not None:
        return _folder_manifest(Path(folder), "folder")
    merged: dict[str, PretrainedEntry] = {}
    for path, origin in checkpoint_folders():
        try:
            listed = _folder_manifest(path, origin)
        except NnzooError as exc:
            if broken is None:
                raise
            broken.append(str(exc))
            continue
        for name, e in listed.items():
            if name in merged:
                merged[name].hides.append(origin)
            else:
                merged[name] = e
    return merged


def _manifest_record(e: PretrainedEntry) -> dict[str, Any]:
    """The fields of ``e`` that ``manifest.json`` stores (not where it was read from)."""
    return {key: getattr(e, key) for key in ENTRY_TYPES}


def _folder_manifest(folder: Path, origin: str) -> dict[str, PretrainedEntry]:
    from dataclasses import MISSING, fields

    from nnzoo.schema import check_name
    path = folder / MANIFEST
    if not path.is_file():
        return {}
    raw = read_json(path, "checkpoint manifest")  # RecursionError too: one line
    listed = raw.get("checkpoints") if isinstance(raw, dict) else None
    if not isinstance(listed, list):
        raise NnzooError(f"checkpoint manifest {path} must be an object with a list 'checkpoints'; restore it "
                         "from git or re-export the checkpoints")
    required = {f.name for f in fields(PretrainedEntry) if f.default is MISSING and f.default_factory is MISSING}
    entries = {}
    for i, e in enumerate(listed):
        where = f"checkpoint manifest {path}, entry {i}"
        if not isinstance(e, dict):
            raise NnzooError(f"{where} is not an object; restore the manifest from git")
        where += f" ('{e.get('name')}')" if isinstance(e.get("name"), str) else ""
        unknown = sorted(set(e) - set(ENTRY_TYPES))
        missing = sorted(required - set(e))
        if unknown or missing:
            what = f"unknown field '{unknown[0]}'" if unknown else f"no field '{missing[0]}'"
            raise NnzooError(f"{where} has {what}; restore the manifest from git or re-export with nnzoo export")
        for key, value in e.items():
            wanted = ENTRY_TYPES[key]
            if not isinstance(value, wanted) or (wanted is int and isinstance(value, bool)):
                raise NnzooError(f"{where}: field '{key}' has type {type(value).__name__}; restore the manifest "
                                 "from git or re-export with nnzoo export")
        odd = next((k for k, v in e["metrics"].items() if v is not None and (
            isinstance(v, bool) or not isinstance(v, (int, float)))), None)
        if odd is not None:  # the headline formats them as numbers
            raise NnzooError(f"{where}: metric '{odd}' is {type(e['metrics'][odd]).__name__}, not a number; restore "
                             "the manifest from git or re-export with nnzoo export")
        try:
            check_name("name", e["name"])
            check_name("file", e["file"])  # a manifest never points outside its own folder
        except NnzooError as exc:
            raise NnzooError(f"{where}: {exc}") from None
        entries[e["name"]] = PretrainedEntry(**e, folder=folder, origin=origin)
    return entries


def list_pretrained(folder: Path | None = None) -> list[PretrainedEntry]:
    return list(manifest(folder).values())


def entry(name: str, folder: Path | None = None) -> PretrainedEntry:
    """Entry ``name`` of ``folder``'s manifest, or of the first folder of :func:`checkpoint_folders` listing it.

    A broken manifest in another folder does not stop the lookup (one warning line names it): one bad file in
    ``$NNZOO_CHECKPOINTS`` must not hide the shipped checkpoints.  If no folder lists ``name``, the broken
    manifest's own error is raised, since it may be the one that lists it."""
    broken: list[str] = []
    entries = manifest(folder, broken=broken if folder is None else None)
    if name not in entries:
        if broken:
            raise NnzooError(broken[0])
        raise unknown_name("pretrained checkpoint", name, list(entries))
    if broken:
        from nnzoo.progress import warn
        for line in broken:
            warn(f"skipped ({line})")
    return entries[name]


def load_pretrained(name: str, folder: Path | None = None):
    """The ready LightningModule of pretrained checkpoint ``name`` (sha256 verified against the manifest of
    the folder it is listed in, no pickled code); without ``folder``, looked up as :func:`entry` does."""
    e = entry(name, folder)
    path = e.folder / e.file
    if not path.is_file():
        raise NnzooError(f"checkpoint file {path} listed in the manifest is missing; restore it from git")
    digest = sha256_file(path)
    if digest != e.sha256:
        raise NnzooError(f"checkpoint {path} fails its sha256 check (got {digest[:12]}..., manifest says "
                         f"{e.sha256[:12]}...); it was modified or corrupted, restore it from git")
    module = load_checkpoint_file(path)
    if module.run_config is None:  # exported before configs were stored in checkpoints: the manifest's
        module.run_config = neutral_locations(e.config)
    return module


def load_checkpoint(source: str | os.PathLike):
    """A checkpoint in any form ``nnzoo predict``/``test``/``init_from`` take: an exported ``.pt`` or a run's
    ``.ckpt`` by path, else a pretrained name (:func:`load_pretrained`)."""
    path = Path(source).expanduser()
    if path.is_file():
        return load_checkpoint_file(path)
    if path.suffix in (".ckpt", ".pt", ".pth") or len(path.parts) > 1:
        raise NnzooError(f"checkpoint not found: {path}; pass an existing file or a name from "
                         "`nnzoo list checkpoints`")
    return load_pretrained(str(source))


def export_run(run_dir: Path, name: str, folder: Path | None = None, force: bool = False) -> PretrainedEntry:
    """Slim the best checkpoint of a finished run into ``<folder>/<name>.pt`` and record it in
    ``<folder>/manifest.json``; ``folder`` defaults to :func:`user_checkpoints_folder` (the repository's
    shipped checkpoints are made with ``--folder checkpoints``, see ``checkpoints/make_checkpoints.sh``).

    The metrics are the run's own test metrics (``metrics.json``), i.e. those of
    the exported weights on the test split of the run's dataset.  An existing name is
    replaced only with ``force``: a checkpoint and its manifest entry are someone's result.
    The same run exported twice gives the same bytes (and sha256): :func:`nnzoo.io.save_tensors`.
    The manifest is updated under a lock, and a replaced checkpoint goes through an interim file name
    (:func:`_checkpoint_files`), so a crash at any point leaves the old or the new pair valid.
    """
    from nnzoo.schema import check_name
    check_name("--name", name)
    folder = Path(folder) if folder is not None else user_checkpoints_folder()
    _refuse_existing(manifest(folder), folder, name, force)  # before any work; checked again under the lock
    metrics = read_json(run_dir / METRICS_FILE, "run metrics")
    best = Path(metrics.get("best_checkpoint") or run_dir / "checkpoints" / "best.ckpt")
    task = load_task(best)
    config = OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml"))
    data = _tensor_bytes({"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams),
                          "nnzoo_version": __version__, "nnzoo_config": config})  # `nnzoo test` reads it
    digest = hashlib.sha256(data).hexdigest()
    card = input_convention(task.info)
    with _manifest_lock(folder):  # read-modify-write: concurrent exports into one folder each keep their entry
        entries = manifest(folder)
        _refuse_existing(entries, folder, name, force)
        old = entries.get(name)
        files = _checkpoint_files(name, digest, old, entries)
        new = PretrainedEntry(
            name=name, file=files[-1], model=metrics["model"], data=metrics["data"], task=task.info.task,
            metrics={k: v for k, v in metrics.items() if k.startswith("test/") or k.startswith("best_val")},
            num_parameters=metrics["num_parameters"], sha256=digest, nnzoo_version=__version__,
            config=config, input_convention=card, folder=folder, origin="folder")
        for file in files:
            with atomic_path(folder / file) as tmp:
                tmp.write_bytes(data)
            entries[name] = new = replace(new, file=file)
            # the manifest's rename is the commit: until then it lists a file that still holds its bytes
            write_json(folder / MANIFEST, {"checkpoints": [_manifest_record(e) for e in entries.values()]})
        listed = {e.file for e in entries.values()}
        for file in {*files, *([old.file] if old else [])} - listed:
            try:
                (folder / file).unlink()
            except OSError:
                pass  # an unlisted leftover file, harmless
    return new


MANIFEST_LOCK_TIMEOUT_S = 600.0
"""How long ``nnzoo export`` waits for another export into the same folder (the OS frees a dead one's lock)."""


@contextmanager
def _manifest_lock(folder: Path) -> Iterator[None]:
    """Hold ``folder``'s manifest lock: without it, two exports that read the same manifest each write back
    only their own new entry, and the other's checkpoint file is left unlisted."""
    from filelock import FileLock, Timeout
    lock_file = folder / f".{MANIFEST}.lock"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NnzooError(f"cannot create the checkpoint folder {folder} ({exc.strerror}); choose another "
                         "--folder") from None
    lock = FileLock(lock_file, timeout=MANIFEST_LOCK_TIMEOUT_S)
    try:
        lock.acquire()
    except Timeout:
        raise NnzooError(f"{lock_file}: another nnzoo export has held the manifest of {folder} for more than "
                         f"{MANIFEST_LOCK_TIMEOUT_S:g} s; wait for it to finish (or stop it) and retry") from None
    try:
        yield
    finally:
        lock.release()


def _refuse_existing(entries: dict[str, PretrainedEntry], folder: Path, name: str, force: bool) -> None:
    if not force and (name in entries or (folder / f"{name}.pt").exists()):
        raise NnzooError(f"checkpoint '{name}' already exists in {folder}; pass --force to replace it and its "
                         "manifest entry, or choose another --name")


def _tensor_bytes(obj: Any) -> bytes:
    """``torch.save`` of ``obj`` as bytes: the same bytes as :func:`nnzoo.io.save_tensors` (a buffer, like an
    open file, names the zip's records ``archive``), known before a file name is chosen from their digest."""
    import io
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _checkpoint_files(name: str, digest: str, old: PretrainedEntry | None,
                      entries: dict[str, PretrainedEntry]) -> list[str]:
    """The files a new checkpoint ``name`` is written to, in order, the manifest rewritten after each: its file
    ``<name>.pt``, preceded by ``<name>.<sha256[:12]>.pt`` when the manifest lists ``<name>.pt`` now with other
    bytes.  Overwriting the listed file in place would leave it out of step with the manifest's sha256 until
    the manifest is rewritten (an interrupted ``--force`` would lose both checkpoints); through the interim
    file, the manifest lists a file holding its bytes at every instant.  A file another entry lists is never
    taken."""
    others = {e.file for n, e in entries.items() if n != name}
    free = [f for f in (f"{name}.pt", f"{name}.{digest[:12]}.pt", f"{name}.{digest}.pt") if f not in others]
    if len(free) < 2:
        raise NnzooError(f"checkpoint '{name}': the manifest lists its file names for other entries; "
                         "choose another --name")
    if old is not None and old.file == free[0] and old.sha256 != digest:
        return free[1:2] + free[:1]
    return free[:1]
