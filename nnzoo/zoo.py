"""Pretrained metanetworks: a registry of small checkpoints with their metrics, data and recipe.

Like torchvision's weights metadata, every entry of ``checkpoints/manifest.json``
says what the checkpoint is (model, dataset, task), how well it did (test
metrics of the run that produced it), how it was made (the full run config,
including the dataset recipe) and how to verify it (sha256, nnzoo version).

Checkpoint files hold only tensors and plain containers (the model's
``state_dict`` and the hyperparameters needed to rebuild it), are loaded with
``torch.load(weights_only=True)`` after the sha256 check, and never unpickle
code.  ``nnzoo export`` produces them from a finished run folder, so every
number in the manifest comes from a command, not from a hand edit.
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from nnzoo import __version__
from nnzoo.checks import check_finite_rows, check_plain_tensors, check_weight_dtypes
from nnzoo.errors import NnzooError, unknown_name
from nnzoo.io import atomic_path, cache_home, load_tensors, read_json, sha256_file, shipped_folder, write_json

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
        from nnzoo.progress import console
        for line in broken:
            console.print(f"warning: skipped ({line})", markup=False, highlight=False, soft_wrap=True)
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


def check_checkpoint(blob: Any, path: Path) -> dict[str, Any]:
    """The hyperparameters of an nnzoo checkpoint (exported ``.pt`` or Lightning ``.ckpt``), after checking
    what rebuilding the model and reading its weights rely on: one line naming the file, not a traceback
    from inside the model, and never a model that answers NaN."""
    if not isinstance(blob, dict) or not isinstance(blob.get("state_dict"), dict) \
            or not isinstance(blob.get("hyper_parameters"), dict):
        raise NnzooError(f"checkpoint {path} is not an nnzoo checkpoint (expected a dict with 'state_dict' and "
                         f"'hyper_parameters', got {type(blob).__name__}); pass a file from nnzoo export or a run")
    for key, value in blob["state_dict"].items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise NnzooError(f"checkpoint {path}: state_dict entry {key!r} is not a named tensor; "
                             "the file is damaged, restore it")
        check_plain_tensors({key: value}, f"checkpoint {path}", "weight")  # sparse, meta, ...: before any use
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise NnzooError(f"checkpoint {path}: weight '{key}' holds NaN or Inf, so every prediction would "
                             "be NaN; restore the file or export the run again")
    hp = blob["hyper_parameters"]
    info = hp.get("data_info")
    if not isinstance(info, dict) or not isinstance(hp.get("model"), dict):
        raise NnzooError(f"checkpoint {path} has no model/data_info hyperparameters; is it an nnzoo checkpoint?")
    outputs, names = info.get("num_outputs"), info.get("class_names")
    if not isinstance(outputs, int) or isinstance(outputs, bool) or outputs < 1:
        raise NnzooError(f"checkpoint {path}: data_info.num_outputs must be a positive integer, got {outputs!r}")
    if info.get("task") in ("regression", "editing") and outputs != 1:  # one score (or image) per network
        raise NnzooError(f"checkpoint {path}: data_info.task is {info.get('task')} but num_outputs is {outputs} "
                         "(a regression or editing model has 1); the file was edited or damaged, restore it")
    if info.get("task") == "classification" and names is not None and (
            not isinstance(names, list) or len(names) != outputs):
        raise NnzooError(f"checkpoint {path}: data_info.class_names must list {outputs} names, "
                         f"got {names!r:.80}")
    return hp


def load_checkpoint_file(path: Path):
    """Rebuild the task module from a slim checkpoint written by :func:`export_run` (or a run's ``.ckpt``)."""
    from nnzoo.tasks import task_class
    blob = load_tensors(path, "checkpoint")
    hp = check_checkpoint(blob, path)
    try:
        with _SizeBudget(blob["state_dict"], hp):  # a model larger than its stored weights stops here
            module = task_class(hp["data_info"]["task"])(**hp)
        check_weight_dtypes(module, blob["state_dict"])  # float weights cast to int64 would load silently
        module.load_state_dict(blob["state_dict"])
    except NnzooError as exc:
        raise NnzooError(f"checkpoint {path}: {exc}") from None
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise NnzooError(f"checkpoint {path} is not an nnzoo checkpoint or does not match its model "
                         f"({str(exc).splitlines()[0][:160]})") from None
    # the run it came from, when stored (nnzoo test reads it); its locations are data, not where to write
    module.run_config = neutral_locations(blob.get("nnzoo_config"))
    return module.eval()


STORED_LOCATIONS = ("data.cache_dir", "run_dir")
"""Config keys that say where nnzoo writes.  In a run config read back from a checkpoint or a manifest they
are replaced by their defaults (:func:`neutral_locations`): a crafted file must never decide where ``nnzoo
test`` writes a dataset cache; the command line (``data.cache_dir=...``) and ``$NNZOO_HOME`` still do.
(``data.root`` and the other data keys are only read: built datasets go to the cache folder.)"""


def neutral_locations(config: Any) -> Any:
    """``config`` (a stored run config, or ``None``) with every key of :data:`STORED_LOCATIONS` it has set to
    the shipped default (``data.cache_dir``: ``None``, i.e. ``$NNZOO_HOME``; ``run_dir``: ``runs``)."""
    if not isinstance(config, dict):
        return config
    config = {**config}
    if isinstance(config.get("data"), dict) and "cache_dir" in config["data"]:
        config["data"] = {**config["data"], "cache_dir": None}
    if "run_dir" in config:
        config["run_dir"] = _default_run_dir()
    return config


def _default_run_dir() -> str:
    """``run_dir`` of the shipped ``trainer/default.yaml``."""
    from nnzoo.config import config_path, load_yaml
    return str(OmegaConf.select(load_yaml(config_path("trainer", "default")), "run_dir", default="runs"))


class _SizeBudget(torch.overrides.TorchFunctionMode):
    """While a checkpoint's model is built from its hyperparameters, refuse any tensor allocation beyond what
    the stored state dict could justify, *before* it is made: a 1 KB edit of ``hyper_parameters``
    (``layers=250000``, ``hidden=60000``) would otherwise allocate gigabytes (or build for minutes) before
    ``load_state_dict`` notices the mismatch.  The budget is twice the stored elements and tensors, plus room
    for the index tensors models derive from the data's architectures (measured on the shipped checkpoints:
    about 6 elements per network parameter and 130 tensors per architecture)."""

    SLACK_ELEMENTS = 1 << 24
    SLACK_TENSORS = 4096
    ELEMENTS_PER_NETWORK_PARAMETER = 64
    TENSORS_PER_ARCHITECTURE = 512

    def __init__(self, state_dict: dict[str, torch.Tensor], hyper_parameters: dict[str, Any]) -> None:
        from nnzoo.data.weights import DataInfo
        super().__init__()
        model = hyper_parameters["model"]
        sizes = ", ".join(f"{k}={v}" for k, v in model.items() if _is_size(v))
        self.model = f"{model.get('name')}: {sizes}"[:160]
        try:
            specs = DataInfo.from_dict(hyper_parameters["data_info"]).specs
        except Exception:  # a broken data_info fails in the model constructor below, with its own message
            specs = ()
        self.elements_left = (2 * sum(v.numel() for v in state_dict.values()) + self.SLACK_ELEMENTS
                              + self.ELEMENTS_PER_NETWORK_PARAMETER * sum(s.num_params for s in specs))
        self.tensors_left = 2 * len(state_dict) + self.SLACK_TENSORS + self.TENSORS_PER_ARCHITECTURE * len(specs)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        size = _factory_numel(func, args, kwargs)
        if size is not None:
            self.elements_left -= size
            self.tensors_left -= 1
            if self.elements_left < 0 or self.tensors_left < 0:
                raise NnzooError("its hyper_parameters describe a model far larger than the weights it stores "
                                 f"(model {self.model}; edited or damaged); restore the file or export the run again")
        return func(*args, **kwargs)


def _is_size(value: Any) -> bool:
    """An integer model option, or a list of them (``hidden=[512, 512]``): what sizes a model."""
    if isinstance(value, list):
        return bool(value) and all(_is_size(v) for v in value)
    return isinstance(value, int) and not isinstance(value, bool)


_SIZED = {torch.empty, torch.zeros, torch.ones, torch.rand, torch.randn}
_SIZED_METHODS = {torch.Tensor.new_empty, torch.Tensor.new_zeros, torch.Tensor.new_ones}


def _factory_numel(func, args: tuple, kwargs: dict[str, Any]) -> int | None:
    """Elements a tensor-creating call asks for (``None`` for any other call)."""
    import math

    def count(dims: Any) -> int:
        if len(dims) == 1 and isinstance(dims[0], (tuple, list, torch.Size)):
            dims = dims[0]
        return math.prod(int(d) for d in dims)

    try:
        if func in _SIZED:
            return count(args or (kwargs.get("size", ()),))
        if func in _SIZED_METHODS:
            return count(args[1:] or (kwargs.get("size", ()),))
        if func is torch.full or func is torch.Tensor.new_full:
            return count((args[int(func is torch.Tensor.new_full)],) if args else (kwargs["size"],))
        if func is torch.randint:
            return count((args[-1],) if args and isinstance(args[-1], (tuple, list, torch.Size))
                         else (kwargs["size"],))
        if func is torch.eye:
            return int(args[0]) * int(args[1] if len(args) > 1 and isinstance(args[1], int) else args[0])
        if func is torch.arange:
            start, end, step = (0, args[0], 1) if len(args) == 1 else (tuple(args) + (1,))[:3]
            return max(math.ceil((float(end) - float(start)) / float(step)), 0)
        if func is torch.linspace:
            return int(args[2] if len(args) > 2 else kwargs["steps"])
    except (TypeError, ValueError, KeyError, IndexError, OverflowError, ZeroDivisionError):
        return None  # an unusual signature: torch itself checks it
    return None


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
    from nnzoo.train import METRICS_FILE, load_task
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


def read_network(module, path: Path, activation: str | None = None):
    """``(spec, flat parameters, state dict)`` of the network in ``path``, matched against the checkpoint's
    architectures.  A state dict does not say which activation its network uses; when the checkpoint's
    dataset mixes activations on one layout (the Small CNN Zoo's ReLU and tanh CNNs), ``activation`` picks one."""
    from nnzoo.nets.functional import state_dict_to_params
    info = module.info
    state = load_tensors(path, "network file")
    if not isinstance(state, dict):
        raise NnzooError(f"{path} holds a {type(state).__name__}, not a state dict")
    odd = next((k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)), None)
    if odd is not None or not state:
        raise NnzooError(f"{path}: a state dict maps names to tensors, but entry {odd!r} does not"
                         if state else f"{path} is an empty state dict")
    errors, matches = [], []
    for spec in info.specs:  # find the dataset architectures this network fits
        try:
            matches.append((spec, state_dict_to_params(state, spec, source=path)))
        except NnzooError as exc:
            errors.append(str(exc))
    if not matches:
        raise NnzooError((errors[0] if len(info.specs) == 1 or info.homogeneous else
                          f"{path} matches none of the {len(info.specs)} architectures of '{info.name}'")
                         + " (the input this checkpoint expects: nnzoo list checkpoints --details)")
    acts = {spec.layers[0].activation for spec, _ in matches}
    if activation is not None:
        matches = [(s, f) for s, f in matches if s.layers[0].activation == activation]
        if not matches:
            raise NnzooError(f"--activation {activation}: {path} fits '{info.name}' networks with activation "
                             f"{', '.join(sorted(acts))} only")
    elif len(acts) > 1:
        raise NnzooError(f"{path} fits '{info.name}' networks with activations {', '.join(sorted(acts))}; "
                         "say which with --activation")
    spec, flat = matches[0]
    return spec, flat, state


NETWORK_SUFFIXES = (".pth", ".pt")
"""The network files a folder given to ``nnzoo predict`` contributes."""

DEFAULT_BATCH_SIZE = 64
"""Networks per forward pass of ``nnzoo predict`` (``--batch-size``)."""


def network_files(items: Iterable[str | os.PathLike]) -> list[str]:
    """The network files named by ``nnzoo predict``'s arguments, in order: a file as given; a folder as its
    ``*.pth``/``*.pt`` files (sorted by name, not recursive, hidden files left out); a glob pattern, quoted
    so that the shell leaves it to nnzoo (``'inrs/*.pth'``, ``**`` recursive), as the files it matches,
    sorted.  A folder or pattern that yields no file is one line; a missing file is named when read."""
    files: list[str] = []
    for item in map(os.fspath, items):
        path = Path(item)
        if path.is_dir():
            found = sorted(p.name for p in path.iterdir()
                           if p.suffix in NETWORK_SUFFIXES and not p.name.startswith(".") and p.is_file())
            if not found:
                kinds = ", ".join("*" + suffix for suffix in NETWORK_SUFFIXES)
                raise NnzooError(f"folder {item} holds no network files ({kinds}); pass the files themselves or "
                                 "a quoted pattern such as 'inrs/*.pth'")
            files += [os.path.join(item, name) for name in found]
        elif not path.exists() and glob.has_magic(item):
            found = sorted(f for f in _glob(item) if os.path.isfile(f))
            if not found:
                raise NnzooError(f"no file matches the pattern {item}; check the folder and the pattern")
            files += found
        else:
            files.append(item)  # a file, or a missing one, which read_network names
    return files


def _glob(pattern: str) -> list[str]:
    """``glob.glob(pattern, recursive=True)``, except that ``**`` enters each real folder once: ``glob`` follows
    a symlink to a parent folder round and round (``g/sub/up -> ..``), so ``'g/**/*.pth'`` never ended.  Other
    patterns are ``glob``'s own; a ``**`` match is listed under the first path that reaches its folder."""
    parts = pattern.split(os.sep)
    if "**" not in parts:
        return glob.glob(pattern)
    split = next(i for i, part in enumerate(parts) if glob.has_magic(part))
    top = os.sep.join(parts[:split]) or (os.sep if pattern.startswith(os.sep) else "")
    found: list[str] = []
    seen: set[tuple[str, int]] = set()

    def match(folder: str, i: int) -> None:
        """Add the paths under ``folder`` that match ``parts[i:]``."""
        key = (os.path.realpath(folder or os.curdir), i)
        if key in seen:
            return
        seen.add(key)
        part, last = parts[i], i == len(parts) - 1
        try:
            entries = sorted(os.scandir(folder or os.curdir), key=lambda e: e.name)
        except OSError:
            return
        if part == "**":
            if last:
                found.extend(os.path.join(folder, e.name) for e in entries if not e.name.startswith("."))
            else:
                match(folder, i + 1)  # ** matches no folder at all, too
            for e in entries:
                if not e.name.startswith(".") and e.is_dir():
                    match(os.path.join(folder, e.name), i)
            return
        names = [e.name for e in entries if e.is_dir() or last] if glob.has_magic(part) else [part]
        for name in fnmatch.filter(names, part) if glob.has_magic(part) else names:
            if glob.has_magic(part) and name.startswith(".") and not part.startswith("."):
                continue  # like glob: a wildcard does not match hidden names
            path = os.path.join(folder, name)
            if last:
                if os.path.lexists(path):
                    found.append(path)
            elif os.path.isdir(path):
                match(path, i + 1)

    match(top, split)
    return found


def _check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise NnzooError(f"--batch-size must be a positive integer, got {batch_size!r}")
    return batch_size


def _batches(module, networks: list[tuple], batch_size: int):
    """``(indices, specs, params)`` per forward pass: at most ``batch_size`` consecutive networks, grouped by
    architecture in the order of the checkpoint's specs (as its training batches were); ``indices`` gives
    each row of the batch (in group order, the order of the model's outputs) its place in ``networks``."""
    specs = list(module.info.specs)
    for start in range(0, len(networks), batch_size):
        groups: dict[Any, list[int]] = {}
        for i in range(start, min(start + batch_size, len(networks))):
            groups.setdefault(networks[i][0], []).append(i)
        ordered = sorted(groups, key=lambda spec: specs.index(spec) if spec in specs else len(specs))
        yield ([i for spec in ordered for i in groups[spec]], ordered,
               [torch.stack([networks[i][1] for i in groups[spec]]) for spec in ordered])


def _read_networks(module, files: list[str], activation: str | None = None) -> list[tuple]:
    """Every file read and matched up front, so that a bad one stops the command before any output."""
    return [read_network(module, Path(file), activation) for file in files]


def _predictions(module, networks: list[tuple], batch_size: int,
                 sources: list[str | Path] | None = None) -> list[dict[str, Any]]:
    """One result per network; ``sources`` name them when the model's answer is not finite (nothing returned)."""
    from nnzoo.data.weights import WeightBatch
    from nnzoo.progress import progress_bar
    info = module.info
    names = info.class_names or [str(i) for i in range(info.num_outputs)]
    results: list[dict[str, Any]] = [{} for _ in networks]
    bar = progress_bar(len(networks), "predicting") if len(networks) > batch_size else nullcontext(lambda n: None)
    with bar as advance, torch.no_grad():
        for indices, specs, params in _batches(module, networks, batch_size):
            out = module(WeightBatch(specs, params, torch.zeros(len(indices), dtype=torch.long)))
            check_finite_rows(out, [sources[i] if sources else f"network #{i}" for i in indices], "output")
            for row, i in zip(out, indices):
                if info.task == "classification":
                    probs = row.softmax(-1)
                    results[i] = {"prediction": names[int(probs.argmax())],
                                  "probabilities": dict(zip(names, probs.tolist()))}
                else:
                    results[i] = {"prediction": float(row.squeeze().sigmoid())}
            advance(len(indices))
    return results


def _not_editing(module, instead: str) -> None:
    if module.info.task == "editing":
        raise NnzooError(f"checkpoint for '{module.info.name}' edits networks; use {instead} (nnzoo predict does)")


def predict_files(module, paths: Iterable[str | os.PathLike], activation: str | None = None,
                  batch_size: int = DEFAULT_BATCH_SIZE) -> list[dict[str, Any]]:
    """Apply a pretrained classifier or regressor to many networks stored as PyTorch state dicts (``.pth``):
    ``{"file", "prediction"[, "probabilities"]}`` per file of :func:`network_files` (``paths`` may name
    folders and glob patterns), in order.  Every file is read and checked before any forward pass (one line
    naming the first bad file); then ``batch_size`` networks go through the model at a time, with the
    results of one network at a time up to float rounding (the models do not mix the networks of a batch)."""
    _check_batch_size(batch_size)
    _not_editing(module, "edit_files")
    files = network_files(paths)
    predictions = _predictions(module, _read_networks(module, files, activation), batch_size, files)
    return [{"file": file, **result} for file, result in zip(files, predictions)]


def predict_file(module, path: Path, activation: str | None = None) -> dict[str, Any]:
    """Apply a pretrained classifier or regressor to one network stored as a PyTorch state dict (``.pth``)."""
    _not_editing(module, "edit_file")
    return _predictions(module, [read_network(module, Path(path), activation)], 1, [path])[0]


@dataclass
class Edit:
    """One network edited by an editing checkpoint: its new state dict (the input's keys, order and dtypes)
    and ``(H, W)`` renderings of the input, the edit, and the target the checkpoint was trained towards,
    computed from the input's own rendering (e.g. its dilation)."""

    state_dict: dict[str, Any]
    input: torch.Tensor
    edited: torch.Tensor
    target: torch.Tensor
    target_name: str

    @property
    def mse(self) -> float:
        """MSE of the edited rendering against the target."""
        return float((self.edited.clamp(0, 1) - self.target).pow(2).mean())

    @property
    def identity_mse(self) -> float:
        """MSE of the unedited input against the target: the floor an edit must beat."""
        return float((self.input.clamp(0, 1) - self.target).pow(2).mean())


def edit_network(module, spec, flat: torch.Tensor, state: dict[str, Any], source: Path | str = "network") -> Edit:
    """Edit one network (flat parameters of ``spec``) with an editing checkpoint's module."""
    return edit_networks(module, [(spec, flat, state)], [source])[0]


def edit_networks(module, networks: list[tuple], sources: list[Path | str],
                  batch_size: int = DEFAULT_BATCH_SIZE) -> list[Edit]:
    """Edit many networks (``(spec, flat, state)`` as :func:`read_network` gives them), ``batch_size`` per
    forward pass; ``sources`` name them in errors."""
    from nnzoo.data.editing import dilate
    from nnzoo.data.weights import WeightBatch
    from nnzoo.nets.functional import params_into_state_dict
    h, w = module.image_size
    edits: list[Edit | None] = [None] * len(networks)
    for indices, specs, params in _batches(module, networks, _check_batch_size(batch_size)):
        with torch.no_grad():
            edited = module.edit(WeightBatch(specs, params, torch.zeros(len(indices), h * w)))
            inputs = module.render(specs, params).view(-1, h, w)
            outputs = module.render(specs, edited).view(-1, h, w)
        names = [sources[i] for i in indices]  # an edit that is not a number is never written
        check_finite_rows([p for group in edited for p in group], names, "edited network")
        check_finite_rows(outputs, names, "rendering of the edited network")
        targets = dilate(inputs.clamp(0, 1))
        for row, (i, new) in enumerate(zip(indices, (p for group in edited for p in group))):
            spec, _, state = networks[i]
            edits[i] = Edit(params_into_state_dict(new, spec, state, sources[i]), inputs[row], outputs[row],
                            targets[row], "dilated input")
    return edits


def existing_output(path: str | os.PathLike, option: str) -> bool:
    """Whether an output about to be written exists; only a regular file may (``--force`` replaces it).

    Outputs are written to a temporary file that is renamed over ``path``, which would swap a symlink, a
    FIFO or a device node for a regular file (run as root, ``--output /dev/null --force`` would replace the
    system's node): those are refused in one line, with or without ``--force``, and so is a dangling
    symlink, which ``Path.exists`` does not see."""
    import stat
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return False
    except OSError:
        return False  # e.g. a parent that is a file: the write names it
    if stat.S_ISREG(mode):
        return True
    kinds = ((stat.S_ISLNK, "symbolic link"), (stat.S_ISDIR, "folder"), (stat.S_ISFIFO, "FIFO"),
             (stat.S_ISCHR, "device node"), (stat.S_ISBLK, "device node"), (stat.S_ISSOCK, "socket"))
    kind = next((name for test, name in kinds if test(mode)), "special file")
    raise NnzooError(f"{option}: {path} is a {kind}, not a regular file; nnzoo replaces only regular files, "
                     "even with --force: name another file or remove it")


def edit_files(module, paths: Iterable[str | os.PathLike], output: Path | None = None, force: bool = False,
               batch_size: int = DEFAULT_BATCH_SIZE) -> list[dict[str, Any]]:
    """Edit the network of every file of :func:`network_files` (``paths`` may name folders and glob
    patterns) and write ``<stem>.<dataset>.pth`` (same state-dict format) and a PNG (input | edited | target)
    for each into ``output`` (default: the input's folder).  Everything is checked before anything is
    written: the output names (none may exist without ``force``, no two inputs may share one) and every
    input file.  Returns what was written, one dict per file, in order."""
    return _edit_files(module, paths, output, force, batch_size, expand=True)


def _edit_files(module, paths, output: Path | None, force: bool, batch_size: int, expand: bool):
    from nnzoo.io import save_tensors
    info = module.info
    if info.task != "editing":
        raise NnzooError(f"checkpoint for '{info.name}' does not edit networks ({info.task}); use predict_files")
    _check_batch_size(batch_size)
    files = network_files(paths) if expand else [os.fspath(p) for p in paths]
    targets = []
    for file in files:
        path = Path(file)
        folder = output if output is not None else path.parent
        if folder.exists() and not folder.is_dir():
            raise NnzooError(f"--output {folder} is a file; pass a folder for the edited networks")
        stem = f"{path.stem}.{info.name}"
        targets.append({"edited": folder / f"{stem}.pth", "picture": folder / f"{stem}.png"})
    first: dict[Path, int] = {}
    for i, target in enumerate(targets):
        j = first.setdefault(target["edited"], i)
        if j != i:
            raise NnzooError(f"{files[j]} and {files[i]} would both be edited into {target['edited']}; give each "
                             "input once, and edit inputs of the same name in separate --output folders")
    taken = next((f for t in targets for f in t.values() if existing_output(f, "--output")), None)
    if taken is not None and not force:
        raise NnzooError(f"{taken} exists; pass --force to replace it, or choose another --output folder")
    edits = edit_networks(module, _read_networks(module, files), [Path(f) for f in files], batch_size)
    results = []
    for file, edit, target in zip(files, edits, targets):
        target["edited"].parent.mkdir(parents=True, exist_ok=True)
        save_tensors(target["edited"], edit.state_dict)
        save_edit_picture(target["picture"], [edit], [Path(file).name])
        results.append({"file": file, "edited": str(target["edited"]), "picture": str(target["picture"]),
                        "mse": edit.mse, "identity_mse": edit.identity_mse})
    return results


def edit_file(module, path: Path, output: Path | None = None, force: bool = False) -> dict[str, Any]:
    """Edit the network in ``path`` and write ``<stem>.<dataset>.pth`` (same state-dict format) and a PNG
    (input | edited | target) into ``output`` (default: the input's folder).  Returns what was written."""
    result = _edit_files(module, [path], output, force, DEFAULT_BATCH_SIZE, expand=False)[0]
    del result["file"]
    return result


def save_edit_picture(path: Path, edits: list[Edit], names: list[str]) -> None:
    """A PNG with one row per edit: input rendering | edited rendering | target (written atomically)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nnzoo.io import atomic_path
    fig, axes = plt.subplots(len(edits), 3, figsize=(4.5, 1.6 * len(edits) + 0.3), squeeze=False)
    for row, (edit, name) in enumerate(zip(edits, names)):
        panels = [(edit.input, f"input: {name}"[:24]), (edit.edited, f"edited (MSE {edit.mse:.4f})"),
                  (edit.target, edit.target_name)]
        for ax, (image, title) in zip(axes[row], panels):
            ax.imshow(image.clamp(0, 1).numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_title(title, fontsize=7)
            ax.axis("off")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


# ------------------------------------------------------------ input conventions

NFN_INR_DATASETS = ("nfn_mnist_inr", "nfn_fmnist_inr", "cifar10_inr")
"""INR datasets read from the NFN files: their coordinate grid is the NFN authors', not recorded by nnzoo."""


def _inr_image_size(info) -> tuple[int, int] | None:
    """Image (and coordinate-grid) size of an INR dataset's images, where nnzoo knows it."""
    from nnzoo.data.siren_fit import IMAGE_SIZE
    source = info.extra.get("build", {}).get("recipe", {}).get("source")
    if source is not None:  # built offline from shipped images
        return {"mnist": IMAGE_SIZE, "digits": (8, 8)}.get(source)
    if isinstance(info.extra.get("image_size"), list):  # editing datasets record the grid they render on
        return tuple(info.extra["image_size"])
    return {"mnist_inr": IMAGE_SIZE, "fmnist_inr": IMAGE_SIZE, "nfn_mnist_inr": IMAGE_SIZE,
            "nfn_fmnist_inr": IMAGE_SIZE, "cifar10_inr": (32, 32)}.get(info.name)


def _activation_text(spec) -> str:
    hidden = sorted({layer.activation for layer in spec.layers[:-1]}) or ["none"]
    words = [f"sine, sin(w0 * x) with w0 = {spec.w0:g}" if a == "sine" else a for a in hidden]
    last = spec.layers[-1].activation
    return f"{' / '.join(words)} after every hidden layer; output layer {'linear' if last == 'none' else last}"


def _layer_text(layer) -> str:
    if layer.kind == "conv":
        kh, kw = layer.kernel_size
        text = (f"conv {layer.in_features}->{layer.out_features} k{kh}x{kw} stride {layer.stride} "
                f"padding {layer.padding}")
    else:
        text = f"dense {layer.in_features}->{layer.out_features}"
    text += "" if layer.bias else " (no bias)"
    text += " + batchnorm" if layer.norm else ""
    return text + ("" if layer.activation == "none" else f" + {layer.activation}")


def input_convention(info) -> dict[str, Any]:
    """The input-convention card of a checkpoint trained on ``info`` (a :class:`DataInfo`): what a
    network file must be for ``nnzoo predict`` to mean anything.  Stored in every manifest entry.

    Built from the data's :class:`NetworkSpec` s and, for INRs, from the coordinate convention of
    :mod:`nnzoo.data.siren_fit` (the grid the offline builder and ``nnzoo inr fit`` use), so the
    numbers live in one place each.
    """
    from nnzoo.data.siren_fit import STATE_DICT_PREFIX, coordinate_convention
    specs = list(info.specs)
    spec = specs[0]
    classes = ", ".join(info.class_names or map(str, range(info.num_outputs)))
    target = {"classification": f"class of the image the network represents ({classes})",
              "editing": (f"a new network of the same architecture whose image is the input's, edited "
                          f"({info.extra.get('edit', 'see the dataset')}); output: the edited state dict "
                          "(the input's keys) and a PNG"),
              }.get(info.task, "the network's test accuracy in [0, 1] (prediction = sigmoid of the model output)")
    if info.coordinate_networks and "pack" not in info.extra:  # packed MLPs (nnzoo pack) are not INRs
        size = _inr_image_size(info)
        nfn = info.name in NFN_INR_DATASETS
        last = spec.num_layers - 1
        card: dict[str, Any] = {
            "kind": "INR", "architecture": spec.describe(), "widths": list(spec.widths),
            "activation": _activation_text(spec), "w0": spec.w0}
        if nfn:
            unknown = "as in the public NFN SIREN files (not recorded by nnzoo)"
            card.update(coordinate_order=unknown, coordinate_range=unknown, grid=unknown, intensity_range=unknown)
        else:
            card.update(coordinate_convention(*size) if size else coordinate_convention())
        card.update(
            output_offset=spec.output_offset,
            output=(f"output + {spec.output_offset:g} = pixel intensity" +
                    ("" if nfn else f" in [{card['intensity_range'][0]:g}, {card['intensity_range'][1]:g}]")),
            image_size=list(size) if size else "not recorded",
            image=("the dataset's images; MNIST digits are white strokes on black "
                   "(nnzoo inr fit --invert for dark-on-light drawings)"),
            state_dict=(f"net.{{i}}.linear.{{weight,bias}} (i < {last}), net.{last}.{{weight,bias}} (NFN keys)" if nfn
                        else f"{STATE_DICT_PREFIX}.{{i}}.weight (out, in) and {STATE_DICT_PREFIX}.{{i}}.bias (out,), "
                             f"i = 0..{last} (DWSNets INR keys)") +
                       "; tensors are read by name: '*weight' keys in file order are layers 0, 1, ...",
            target=target,
            make_your_own=("not available: nnzoo inr fit makes DWSNets-convention INRs, not NFN ones" if nfn else
                           "nnzoo inr fit IMAGE -o OUT.pth (Python: nnzoo.data.siren_fit.fit_image)"))
        grid = f"{size[0]}x{size[1]} " if size else ""
        if nfn:
            where = f"coordinates as in the NFN files; output + {spec.output_offset:g}"
        else:
            (lo, hi), (dark, bright) = card["coordinate_range"], card["intensity_range"]
            where = (f"{card['coordinate_order']} on a {grid}linspace({lo:g}, {hi:g}) grid, row-major; "
                     f"output + {spec.output_offset:g} = intensity in [{dark:g}, {bright:g}]; keys "
                     f"{STATE_DICT_PREFIX}.{{i}}.{{weight,bias}}; make one: nnzoo inr fit")
        card["summary"] = f"{spec.describe()} w0={spec.w0:g}; {where}"
        return card
    layouts = list(dict.fromkeys(s.describe() for s in specs))
    activations = sorted({layer.activation for s in specs for layer in s.layers[:-1]})
    channels = sorted({s.num_inputs for s in specs})
    image_size = info.extra.get("build", {}).get("recipe", {}).get("image_size")
    same_layout_acts = len(activations) > 1 and info.homogeneous
    card = {
        "kind": "CNN" if any(s.is_conv for s in specs) else "MLP",
        "architectures": layouts,
        "layers": {s.describe(): [_layer_text(layer) for layer in s.layers] + [
            f"residual: group {src} added to group {dst} (group 0 = input, l + 1 = output of layer l; first "
            "min(C_src, C_dst) channels, after the activation)" for src, dst in s.residuals] for s in specs},
        "activations": activations,
        "input_channels": channels[0] if len(channels) == 1 else channels,
        "image_size": [image_size, image_size] if image_size else "not recorded (the zoo's own training images)",
        "forward": "each layer: conv or dense, then BatchNorm (running statistics), then the activation; "
                   "global average pooling before the first dense layer",
        "kernel_layout": "PyTorch: conv weight (out, in, kh, kw), dense weight (out, in), bias (out,), "
                         "BatchNorm weight/bias/running_mean/running_var (C,)",
        "state_dict": "a PyTorch state dict of the network (e.g. nn.Sequential keys 0.weight, 0.bias, ...); "
                      "tensors are read by name, layer weights in file order",
        "target": target,
    }
    if same_layout_acts:
        card["activation_choice"] = (f"a state dict does not record its activation: pass --activation "
                                     f"{'|'.join(activations)} to nnzoo predict")
    arch = layouts[0] if len(layouts) == 1 else f"{len(layouts)} architectures ({layouts[0]}, ...)"
    size_text = f", {image_size}x{image_size} images" if image_size else ""
    card["summary"] = (f"{arch}; activations {'/'.join(activations)}; {'/'.join(map(str, channels))} input "
                       f"channel(s){size_text}; weights (out, in, kh, kw); target: "
                       f"{'test accuracy in [0, 1]' if info.task == 'regression' else 'class'}"
                       + (f"; pass --activation {'|'.join(activations)}" if same_layout_acts else ""))
    return card


def format_convention(card: dict[str, Any] | None, indent: str = "  ") -> list[str]:
    """The lines of a card as shown by ``nnzoo list checkpoints --details`` and ``nnzoo predict --help``."""
    if not card:
        return [f"{indent}(no card)"]
    lines = []
    for key, value in card.items():
        if key == "summary":
            continue
        if isinstance(value, dict):
            lines.append(f"{indent}{key}:")
            lines += [f"{indent}  {k}: {'; '.join(v) if isinstance(v, list) else v}" for k, v in value.items()]
        else:
            lines.append(f"{indent}{key}: {', '.join(map(str, value)) if isinstance(value, list) else value}")
    return lines
