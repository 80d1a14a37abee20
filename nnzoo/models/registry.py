"""Model registry: ``create_model(name, info, **hparams)`` like timm's, plus listing metadata.

Models from other packages need no fork: an entry point of group ``nnzoo.models`` (a class, or a module that
calls :func:`register_model` on import) is loaded the first time its name is asked for, and a model option
``class_path: package.module:ClassName`` names a class directly (LightningCLI's spelling).  Run configs and
checkpoints record ``model.class_path`` beside ``model.name``, so ``nnzoo test``/``export``/``predict``
rebuild such a model in a fresh process without the script or plugin lookup that first registered it.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any

from torch import nn

from nnzoo.data.weights import DataInfo
from nnzoo.errors import IncompatibleError, NnzooError
from nnzoo.registry import Entry, Registry, import_object

ENTRY_POINT_GROUP = "nnzoo.models"
"""``[project.entry-points."nnzoo.models"]`` of a plugin package: ``name = "package.module:ClassName"``."""

META_DEFAULTS: dict[str, Any] = {"tasks": ("classification", "regression"), "conv": True, "heterogeneous": True,
                                 "invariant": False, "reads_norm": True, "io_ordered": True, "graphs": False}
"""Declarations of a plugin or ``class_path`` model that sets no ``nnzoo_meta`` (a built-in model declares them
with :func:`register_model`); ``invariant`` is not claimed for code nnzoo has not seen."""


def _adopt(name: str, obj: Any) -> Entry[type[nn.Module]]:
    """The registry entry of a class an entry point loads."""
    check_model_class(obj, f"entry point '{name}'")
    return model_entry(name, obj, f"entry point '{name}'")


MODELS: Registry[type[nn.Module]] = Registry("model", group=ENTRY_POINT_GROUP, adopt=_adopt)


def register_model(name: str, summary: str, tasks: tuple[str, ...] = ("classification", "regression"),
                   conv: bool = True, heterogeneous: bool = True, invariant: bool = True,
                   reads_norm: bool = True, io_ordered: bool = True, graphs: bool = False):
    """Register a model class.

    ``conv``: handles convolutional networks; ``heterogeneous``: handles a
    dataset mixing architectures; ``invariant``: its output is invariant to
    hidden-neuron permutations by construction.  Two declarations the
    sensitivity tests read instead of model names: ``reads_norm``, it reads
    normalisation tensors (BatchNorm scale, shift, running statistics);
    ``io_ordered``, its output depends on the order of the input and output
    neurons (which are not symmetries: a set-based model such as StatNN,
    which pools every tensor, is blind to it by design).  ``graphs``: reads networks given as computation
    graphs (:class:`~nnzoo.nets.graph_spec.GraphSpec`: transformers, ResNets), not only layer chains.
    """
    return MODELS.register(name, summary, tasks=tasks, conv=conv, heterogeneous=heterogeneous,
                           invariant=invariant, reads_norm=reads_norm, io_ordered=io_ordered, graphs=graphs)


# ------------------------------------------------------------------ models from other packages
def check_model_class(obj: Any, where: str) -> type[nn.Module]:
    """``obj`` must be an ``nn.Module`` class whose constructor takes the dataset's :class:`DataInfo` first
    (the model contract); refused before anything calls it, so a path can never run an arbitrary function."""
    if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
        raise NnzooError(f"{where}: {_dotted(obj)} is not a torch.nn.Module class; name a model class whose "
                         "constructor is (info: DataInfo, **options)")
    try:
        params = list(inspect.signature(obj).parameters.values())
    except (TypeError, ValueError):
        params = []
    if not params or params[0].kind not in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD):
        raise NnzooError(f"{where}: {_dotted(obj)}'s constructor must take the dataset's DataInfo as its first "
                         "argument: __init__(self, info: DataInfo, **options)")
    return obj


def model_entry(name: str, cls: type[nn.Module], where: str) -> Entry[type[nn.Module]]:
    """A registry entry for a class that was not decorated: its declarations from the class attribute
    ``nnzoo_meta`` (``{"summary": ..., "tasks": [...], "conv": ..., ...}``, as :func:`register_model` takes
    them), else :data:`META_DEFAULTS`."""
    from nnzoo.schema import check_name
    check_name(f"{where}: the model name", name)
    declared = getattr(cls, "nnzoo_meta", None) or {}
    if not isinstance(declared, dict):
        raise NnzooError(f"{where}: {_dotted(cls)}.nnzoo_meta must be a dict such as {{'tasks': ['classification'], "
                         "'conv': False}}")
    unknown = sorted(set(declared) - set(META_DEFAULTS) - {"summary", "name"})
    if unknown:
        raise NnzooError(f"{where}: {_dotted(cls)}.nnzoo_meta has unknown key '{unknown[0]}'; use "
                         f"{', '.join(['name', 'summary', *META_DEFAULTS])}")
    meta = {**META_DEFAULTS, **{k: v for k, v in declared.items() if k in META_DEFAULTS}}
    from nnzoo.data.weights import TASK_NAMES
    tasks = meta["tasks"]
    if isinstance(tasks, str) or not isinstance(tasks, (list, tuple)) or not tasks \
            or not set(tasks) <= set(TASK_NAMES):
        raise NnzooError(f"{where}: {_dotted(cls)}.nnzoo_meta['tasks'] must list some of {', '.join(TASK_NAMES)}, "
                         f"got {tasks!r}")
    meta["tasks"] = tuple(tasks)
    flag = next((k for k in META_DEFAULTS if k != "tasks" and not isinstance(meta[k], bool)), None)
    if flag is not None:
        raise NnzooError(f"{where}: {_dotted(cls)}.nnzoo_meta['{flag}'] must be true or false, got {meta[flag]!r}")
    summary = str(declared.get("summary") or (inspect.getdoc(cls) or "").split("\n")[0] or _dotted(cls))
    return Entry(name, cls, summary[:200], meta)


def class_path_of(cls: type) -> str:
    """``module:QualName``: what ``model.class_path`` records, importable again in a fresh process."""
    return f"{cls.__module__}:{cls.__qualname__}"


def default_name(cls: type) -> str:
    """The name a ``class_path`` model runs under when its config gives none: ``nnzoo_meta['name']``, else
    the class name in lower case (it names the run folder ``<data>-<name>``)."""
    declared = getattr(cls, "nnzoo_meta", None)
    name = declared.get("name") if isinstance(declared, dict) else None
    return str(name or cls.__name__.lower())


def resolve_model(name: str, class_path: str | None = None) -> Entry[type[nn.Module]]:
    """The registry entry of ``name``; with ``class_path`` the class is imported and registered under
    ``name`` first (once per process), so every later lookup by name (task checks, listing) finds it."""
    if class_path is None:
        return MODELS.entry(name)
    if not isinstance(class_path, str):
        raise NnzooError(f"model.class_path must be text such as package.module:ClassName, got {class_path!r}")
    module = class_path.partition(":")[0].split(".")[0]
    if module in sys.stdlib_module_names:  # a model class is never there; refuses a crafted checkpoint's path
        raise NnzooError(f"model.class_path={class_path} names the standard library, not a model class; name "
                         "your model class (package.module:ClassName)")
    where = f"model.class_path={class_path}"
    try:
        cls = check_model_class(import_object(class_path, "model.class_path"), where)
    except NnzooError as exc:
        if module == "__main__":
            raise NnzooError(f"{where}: the class was defined in the script that trained it; move it into an "
                             "importable module (or a plugin, entry point group nnzoo.models) and set "
                             "model.class_path to it") from None
        raise
    if name in MODELS:
        existing = MODELS.entry(name)
        if existing.factory is not cls:
            raise NnzooError(f"model.name '{name}' is already the model {_dotted(existing.factory)}, but "
                             f"{where} names {_dotted(cls)}; set model.name to another name")
        return existing
    return MODELS.add(model_entry(name, cls, where))


def default_options(cls: type[nn.Module], where: str) -> dict[str, Any]:
    """A model class's options with their defaults, from its constructor's signature: what a config without a
    shipped YAML may set (the config is strict) and what their types are checked against.  An option whose
    default is not a YAML value keeps its Python default and cannot be set from a config; one without a
    default must be given (``model.init_args``), refused here otherwise."""
    options: dict[str, Any] = {}
    params = list(inspect.signature(cls).parameters.values())[1:]  # after info
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.default is p.empty:
            options[p.name] = _REQUIRED
        elif _plain(p.default):
            options[p.name] = list(p.default) if isinstance(p.default, tuple) else p.default
    return options


_REQUIRED = "???"  # omegaconf's mandatory value: an option without a default that the config must give


def _plain(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def model_section(name: str, cls: type[nn.Module], where: str) -> dict[str, Any]:
    """The ``model:`` config section of a model without a shipped YAML: its name, the class path that rebuilds
    it anywhere, and its constructor's options with their defaults."""
    return {"name": name, "class_path": class_path_of(cls), **default_options(cls, where)}


def _dotted(obj: Any) -> str:
    module, name = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    return f"{module}.{name}" if module and name else repr(obj)[:80]


# ------------------------------------------------------------------ checks
def check_task(name: str, task: str, data: str) -> None:
    """Refuse a model that cannot do a dataset's task, in one line and before any data is built or read."""
    tasks = MODELS.entry(name).meta["tasks"]
    if task not in tasks:
        able = [n for n in MODELS.names() if task in MODELS.entry(n).meta["tasks"]]
        what = "edit networks (predict one change per weight)" if task == "editing" else f"do {task}"
        raise IncompatibleError(f"model '{name}' cannot {what}, which dataset '{data}' asks for; "
                                f"use {', '.join(able)}")


def check_compatible(name: str, info: DataInfo) -> None:
    """One-line error when a model cannot run on a dataset (instead of a shape error later)."""
    check_task(name, info.task, info.name)
    from nnzoo.nets.graph_spec import GraphSpec
    check_kinds(name, info.name, conv=any(s.is_conv for s in info.specs), heterogeneous=not info.homogeneous,
                graphs=any(isinstance(s, GraphSpec) for s in info.specs))


def check_kinds(name: str, data: str, conv: bool, heterogeneous: bool, graphs: bool = False) -> None:
    """Refuse a model that cannot read a dataset's kind of networks; called with a dataset's registry metadata
    before anything is built, and with its :class:`DataInfo` once loaded."""
    meta = MODELS.entry(name).meta
    if graphs and not meta.get("graphs", False):
        able = [n for n in MODELS.names() if MODELS.entry(n).meta.get("graphs", False)]
        raise IncompatibleError(f"model '{name}' cannot read networks given as computation graphs (transformers, "
                                f"ResNets: dataset '{data}'); use {', '.join(able)}")
    if conv and not meta["conv"]:
        able = [n for n in MODELS.names() if MODELS.entry(n).meta["conv"]]
        raise IncompatibleError(f"model '{name}' cannot read convolutional networks (dataset '{data}'); "
                                f"use {', '.join(able)}")
    if heterogeneous and not meta["heterogeneous"]:
        able = [n for n in MODELS.names() if MODELS.entry(n).meta["heterogeneous"]]
        raise IncompatibleError(f"model '{name}' needs one parameter layout per dataset but '{data}' mixes "
                                f"architectures; use {', '.join(able)}")


def create_model(name: str, info: DataInfo, class_path: str | None = None, **hparams: Any) -> nn.Module:
    """Build model ``name`` (registered, a plugin's, or the class ``class_path`` names) for the dataset
    described by ``info``."""
    cls = resolve_model(name, class_path).factory
    check_compatible(name, info)
    try:
        return cls(info, **hparams)
    except TypeError as exc:
        raise NnzooError(f"bad option for model '{name}': {exc}") from None


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
