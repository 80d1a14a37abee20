"""Reading a checkpoint file back as a ready LightningModule, safely: an exported ``.pt`` or a run's ``.ckpt``.

Why a module of its own: training (:mod:`nnzoo.train`), the pretrained registry
(:mod:`nnzoo.pretrained`) and inference all load checkpoints, and none of them
needs the others for it.  Every file is read with ``weights_only=True``
(:func:`nnzoo.io.load_tensors`) and checked before the model is built: named
finite tensors, sane hyperparameters, and a model no larger than the weights it
stores (:class:`_SizeBudget`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from nnzoo.checks import check_plain_tensors, check_weight_dtypes
from nnzoo.errors import NnzooError
from nnzoo.io import load_tensors

METRICS_FILE = "metrics.json"
"""A run folder's results, written last by ``nnzoo fit`` (its presence means "finished") and read by
``nnzoo export``."""


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
    """Rebuild the task module from a slim checkpoint written by :func:`nnzoo.pretrained.export_run` (or a
    run's ``.ckpt``)."""
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


def load_task(checkpoint: str | Path):
    """A trained LightningModule from a run's ``.ckpt``, loaded with ``weights_only=True`` (no pickled code),
    through the same checks as an exported checkpoint (:func:`load_checkpoint_file`: finite weights, and a
    model no larger than its stored weights, checked before it is built)."""
    path = Path(checkpoint)
    if not path.is_file():
        raise NnzooError(f"checkpoint not found: {path}")
    return load_checkpoint_file(path)
