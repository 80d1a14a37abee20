"""One up-front check of a composed run config: types, ranges and choices.

Every command composes its config through :func:`nnzoo.config.apply_overrides` (``fit``, ``config``,
``build``, ``test`` and each benchmark cell), which calls :func:`validate`, so ``trainer.max_epochs=abc``
is refused in one line naming the key before any data is built or any file is written, instead of as
a traceback from deep inside Lightning.

Types come from the defaults themselves: an option whose default is an integer takes integers, a
boolean takes ``true``/``false`` only, so a new option in a YAML file is checked without touching this
module.  Ranges and choices that a type cannot express are listed in :data:`RULES`, once each.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig, ListConfig, OmegaConf

from nnzoo.errors import NnzooError

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def check_name(option: str, value: object) -> str:
    """Refuse a name that is a path (``../x``, ``/etc/passwd``, ``a/b``): names never leave their folder."""
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value) or ".." in value:
        raise NnzooError(f"{option} must be a plain name (letters, digits, '.', '_', '-'; no path separators "
                         f"or '..'), got {value!r}")
    return value


# ------------------------------------------------------------------ predicates
Rule = tuple[Callable[[Any], bool], str]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def integer(low: int | None = None, high: int | None = None, also: tuple = ()) -> Rule:
    words = "an integer" + (f" >= {low}" if low is not None else "") + (f" and <= {high}" if high is not None else "")
    words += "".join(f" or {a!r}" for a in also)
    return (lambda v: v in also if not _is_int(v) else
            (v in also or ((low is None or v >= low) and (high is None or v <= high)))), words


def number(low: float | None = None, high: float | None = None, low_open: bool = False,
           high_open: bool = False) -> Rule:
    lo = "" if low is None else f" {'>' if low_open else '>='} {low:g}"
    hi = "" if high is None else f"{' and' if lo else ''} {'<' if high_open else '<='} {high:g}"

    def ok(v: Any) -> bool:
        if not _is_number(v):
            return False
        if low is not None and (v <= low if low_open else v < low):
            return False
        return high is None or (v < high if high_open else v <= high)
    return ok, f"a finite number{lo}{hi}"


def choice(*values: Any) -> Rule:
    shown = ", ".join(dict.fromkeys(map(str, values)))
    return (lambda v: not isinstance(v, bool) and v in values), f"one of {shown}"


def optional(rule: Rule) -> Rule:
    check, words = rule
    return (lambda v: v is None or check(v)), f"null or {words}"


def either(*rules: Rule) -> Rule:
    return (lambda v: any(check(v) for check, _ in rules)), " or ".join(words for _, words in rules)


def _devices_list(v: Any) -> bool:
    return isinstance(v, (list, ListConfig)) and len(v) > 0 and all(_is_int(d) and d >= 0 for d in v)


def _fraction_or_count(v: Any) -> bool:
    return _is_int(v) and v >= 0 or (isinstance(v, float) and 0.0 < v <= 1.0)


def _path_text(v: Any) -> bool:
    return isinstance(v, str) and v != ""


MAX_BATCH_SIZE = 2**31 - 1
"""Largest batch size: more networks than any dataset holds; ``2**70`` overflowed inside the data loader."""

MAX_NETWORK_PARAMS = 10_000_000
"""Most parameters per network (:data:`nnzoo.nets.spec.MAX_NETWORK_PARAMS`, repeated here so that checking a
config does not import torch)."""

INT64 = 2**63
"""Every integer option must lie in ``[-2**63, 2**63)``: Python takes any size, torch and numpy do not."""


def _widths_params(v: Any) -> int | None:
    """Parameters of an MLP of layer widths ``v`` (weights and biases), or None if ``v`` is not such a list."""
    if not isinstance(v, (list, ListConfig)) or len(v) < 2 or not all(_is_int(w) and w >= 1 for w in v):
        return None
    return sum(a * b + b for a, b in zip(v[:-1], v[1:]))


def _huge_int(value: Any) -> bool:
    """An integer (or one in a list/mapping) outside 64 bits."""
    if isinstance(value, (list, tuple)):
        return any(_huge_int(v) for v in value)
    if isinstance(value, dict):
        return any(_huge_int(v) for v in value.values())
    return _is_int(value) and not -INT64 <= value < INT64


PRECISIONS = ("64-true", "64", 64, "32-true", "32", 32, "16-mixed", "16", 16, "bf16-mixed", "bf16", "16-true",
              "bf16-true", "transformer-engine", "transformer-engine-float16")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
LOGGERS = ("tensorboard", "csv", "wandb", "mlflow")


def class_path_entry(v: Any) -> bool:
    """LightningCLI's form of an object in a config: ``{class_path: package.module.Class, init_args: {...}}``
    (``init_args`` optional).  Only the shape is checked here; :func:`nnzoo.registry.instantiate` imports and
    builds it when a run starts."""
    return (isinstance(v, dict) and isinstance(v.get("class_path"), str) and set(v) <= {"class_path", "init_args"}
            and (v.get("init_args") is None or isinstance(v["init_args"], dict)))


def _logger_list(v: Any) -> bool:
    names = [x for x in v if isinstance(x, str)] if isinstance(v, list) else []
    return (isinstance(v, list) and len(v) > 0 and all(x in LOGGERS or class_path_entry(x) for x in v)
            and len(set(names)) == len(names))


CLASS_PATH_WORDS = "{class_path: package.module.Class, init_args: {...}}"

RULES: dict[str, Rule] = {
    "seed": integer(0, 2**32 - 1),
    "threads": optional(integer(1)),
    "compile": ((lambda v: v in (True, False, "auto")), "true, false or auto"),
    "name": optional((lambda v: isinstance(v, str) and bool(NAME_PATTERN.fullmatch(v)) and ".." not in v,
                      "a plain name (letters, digits, '.', '_', '-'; no path separators or '..')")),
    "run_dir": (_path_text, "a folder path"),
    "resume": (lambda v: isinstance(v, bool), "true or false"),
    "test": (lambda v: isinstance(v, bool), "true or false"),
    "task.regression_loss": choice("bce", "mse"),
    "optim.lr": number(0, 10, low_open=True),
    "optim.weight_decay": number(0),
    "optim.warmup_steps": integer(0),
    "optim.warmup_scaling": choice("auto", "fixed"),
    "optim.schedule": choice("constant", "cosine"),
    "trainer.max_epochs": integer(1, also=(-1,)),
    "trainer.devices": either(integer(1, also=(-1,)), choice("auto"), (_devices_list, "a list of device indices")),
    "trainer.accelerator": choice(*ACCELERATORS),
    "trainer.num_nodes": integer(1),
    "trainer.precision": choice(*PRECISIONS),
    "trainer.gradient_clip_val": optional(number(0)),
    "trainer.accumulate_grad_batches": integer(1),
    "trainer.log_every_n_steps": integer(1),
    "trainer.check_val_every_n_epoch": optional(integer(1)),
    "trainer.num_sanity_val_steps": integer(-1),
    "trainer.deterministic": either((lambda v: isinstance(v, bool), "true or false"), choice("warn")),
    "trainer.enable_progress_bar": (lambda v: isinstance(v, bool), "true or false"),
    "trainer.limit_train_batches": optional((_fraction_or_count, "a count >= 0 or a fraction in (0, 1]")),
    "trainer.limit_val_batches": optional((_fraction_or_count, "a count >= 0 or a fraction in (0, 1]")),
    "trainer.logger": either((lambda v: isinstance(v, bool), "true or false"), choice(*LOGGERS),
                             (class_path_entry, CLASS_PATH_WORDS),
                             (_logger_list,
                              f"a list of distinct loggers among {', '.join(LOGGERS)} (each writes the run's "
                              f"metrics once, into the one run folder) or {CLASS_PATH_WORDS} entries")),
    "trainer.callbacks": optional((lambda v: class_path_entry(v) or isinstance(v, list) and all(
        class_path_entry(x) for x in v), f"a list of {CLASS_PATH_WORDS} entries, as LightningCLI's (nnzoo's own "
        "callbacks are set by the callbacks.* options)")),
    "init_from": optional((_path_text, "a pretrained name, an exported .pt or a run's .ckpt")),
    "callbacks.lr_monitor": (lambda v: isinstance(v, bool), "true or false"),
    "callbacks.early_stopping_patience": optional(integer(1)),
    "callbacks.early_stopping_min_delta": number(0),
    "data.batch_size": integer(1, MAX_BATCH_SIZE),
    "data.eval_batch_size": integer(1, MAX_BATCH_SIZE),
    "data.widths": (lambda v: _widths_params(v) is not None and _widths_params(v) <= MAX_NETWORK_PARAMS,
                    f"a list of at least two positive layer widths, at most {MAX_NETWORK_PARAMS:,} parameters "
                    "per network (e.g. [2,32,32,1])"),
    "data.num_workers": integer(0),
    "data.augment.translate": number(0),
    "data.augment.rotate": number(0, 360),
    "data.augment.scale": number(0, 1, high_open=True),
    "data.augment.shift": number(0),
    "data.augment.noise": number(0),
    "data.augment.dropout": number(0, 1, high_open=True),
    "model.dropout": number(0, 1, high_open=True),
    "model.init_scale": number(0, 10, low_open=True),
}
"""Ranges and choices per dotted key; every other key is checked against its default's type."""

NON_NEGATIVE_INTEGER_SECTIONS = ("model.",)
"""Integer options of these sections are sizes or counts: never negative."""


def leaves(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a.b": value}`` for every leaf of a (resolved) nested mapping; lists are leaves."""
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(leaves(value, f"{dotted}."))
        else:
            out[dotted] = value
    return out


def _type_of_default(default: Any) -> Rule | None:
    if isinstance(default, bool):
        return (lambda v: isinstance(v, bool)), "true or false"
    if isinstance(default, int):
        return _is_int, "an integer"
    if isinstance(default, float):
        return _is_number, "a finite number"
    if isinstance(default, str):
        return (lambda v: isinstance(v, str)), "text"
    if isinstance(default, list):
        return (lambda v: isinstance(v, list)), "a list, e.g. [1,2]"
    return None


def _plain(cfg: DictConfig) -> dict[str, Any]:
    """Plain values, resolved where possible: an ``${oc.env:VAR}`` of a variable set only where the run
    happens (a benchmark suite's data paths) stays unresolved here, is skipped by the checks, and is
    resolved, with its own one-line error, when the run starts."""
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # omegaconf's interpolation errors
        return OmegaConf.to_container(cfg, resolve=False)


def _unresolved(value: Any) -> bool:
    return isinstance(value, str) and "${" in value


def validate(cfg: DictConfig, defaults: DictConfig | None = None) -> None:
    """Refuse, in one line naming the key, any value of the wrong type, out of range or not a choice.

    ``defaults`` is the config before the user's overrides: each key must keep its default's type.
    """
    values = leaves(_plain(cfg))
    types = leaves(_plain(defaults)) if defaults is not None else {}
    for key, value in values.items():
        default = types.get(key)
        if _unresolved(value) or _unresolved(default) or default == "???":  # "???": required, no default type
            continue
        if _huge_int(value):
            raise NnzooError(f"{key}={str(value)[:40]}... is too large: integer options must fit in 64 bits "
                             f"(below 2**63); fix it with {key}=...")
        rule = RULES.get(key)
        if rule is None and key.startswith("trainer.") and default is None:
            rule = trainer_rule(key.split(".", 1)[1])
        if rule is None and default is not None:
            rule = _type_of_default(default)
            if rule is not None and _is_int(default) and key.startswith(NON_NEGATIVE_INTEGER_SECTIONS):
                rule = integer(0)
        if rule is None or rule[0](value):
            continue
        example = f" (default {_show(default)})" if default is not None and default != value else ""
        raise NnzooError(f"{key} must be {rule[1]}, got {_show(value)}{example}; fix it with {key}=...")
    missing = next((k for k, v in values.items() if v == "???"), None)  # omegaconf's mandatory value
    if missing is not None:
        raise NnzooError(f"{missing} has no default and must be given; set it with {missing}=... (or, for a "
                         "class_path model, under model.init_args)")
    _check_accelerator(values.get("trainer.accelerator"))
    _check_loggers(values.get("trainer.logger"))
    for key in ("run_dir", "name"):  # folders nnzoo creates: a component over NAME_MAX fails only at mkdir
        _check_path_length(key, values.get(key))
    _check_folder("run_dir", values.get("run_dir"))
    _check_interpolations(cfg, runtime_env=True)


# ------------------------------------------------------------------ Trainer arguments
NOT_FROM_CONFIG = {
    "plugins": "plugins are Python objects; pass them with nnzoo.train.fit(cfg, plugins=[...]) from Python",
    "default_root_dir": "nnzoo writes every run under run_dir/<name>/version_k; set run_dir=... instead",
}
"""Trainer arguments a config cannot set, and what to use instead."""


def trainer_arguments() -> dict[str, Any]:
    """``{name: annotation}`` of every ``lightning.Trainer`` argument, from its signature."""
    global _TRAINER_ARGS
    if _TRAINER_ARGS is None:
        import inspect
        import typing

        import lightning as L
        hints = typing.get_type_hints(L.Trainer.__init__)
        _TRAINER_ARGS = {name: hints.get(name, Any) for name in inspect.signature(L.Trainer.__init__).parameters
                         if name != "self"}
    return _TRAINER_ARGS


_TRAINER_ARGS: dict[str, Any] | None = None


def check_trainer_key(arg: str) -> None:
    """Refuse a ``trainer.<arg>`` that is not a ``lightning.Trainer`` argument (naming the closest one) or one
    a config cannot express."""
    import difflib
    known = trainer_arguments()
    if arg not in known:
        close = difflib.get_close_matches(arg, list(known), n=1)
        hint = f"did you mean trainer.{close[0]}?" if close else "see `python -c 'help(lightning.Trainer)'`"
        raise NnzooError(f"trainer.{arg} is not an argument of lightning.Trainer; {hint}")
    if arg in NOT_FROM_CONFIG:
        raise NnzooError(f"trainer.{arg} cannot be set from a config: {NOT_FROM_CONFIG[arg]}")


def trainer_rule(arg: str) -> Rule | None:
    """The check of a Trainer argument that the shipped YAML does not list, from its type annotation
    (``Optional[int]``, ``Union[int, float, str, timedelta, dict[str, int]]``, ``Literal[...]``...)."""
    annotation = trainer_arguments().get(arg)
    if annotation is None:
        return None
    return (lambda v: _accepts(v, annotation)), _describe(annotation)


def _accepts(value: Any, annotation: Any) -> bool:
    import typing
    from collections.abc import Iterable
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any:
        return True
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return _is_int(value)
    if annotation is float:
        return _is_number(value)
    if annotation is str:
        return isinstance(value, str)
    if origin is typing.Union:
        return any(_accepts(value, a) for a in args)
    if origin is typing.Literal:
        return not isinstance(value, bool) and any(value == a and type(value) is type(a) for a in args)
    if origin is list:
        return isinstance(value, list) and all(_accepts(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(isinstance(k, str) and _accepts(v, args[1]) for k, v in value.items())
    if origin is Iterable:
        return False
    return False  # a Python object (a Logger, a Strategy instance, a timedelta): not expressible in YAML


def _describe(annotation: Any) -> str:
    import typing
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is type(None):
        return "null"
    if origin is typing.Union:
        parts = [_describe(a) for a in args]
        return " or ".join(dict.fromkeys(p for p in parts if p))
    if origin is typing.Literal:
        return "one of " + ", ".join(map(str, args))
    if origin is list:
        return f"a list of {_describe(args[0])}"
    if origin is dict:
        return "a mapping such as {hours: 1}"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "text"}
    return names.get(annotation, "")


def _show(value: Any) -> str:
    """A value as it would be typed on the command line (``true``, ``null``, ``'abc'``)."""
    if value is None or isinstance(value, bool):
        return "null" if value is None else str(value).lower()
    return repr(value)


def _check_accelerator(accelerator: Any) -> None:
    """A GPU asked for where there is none: say so now, not from inside Lightning's connector."""
    if accelerator not in ("gpu", "cuda", "mps"):
        return
    import torch
    if accelerator == "mps":
        available = torch.backends.mps.is_available()
    else:
        available = torch.cuda.is_available()
    if not available:
        raise NnzooError(f"trainer.accelerator={accelerator} but no such device is visible on this machine; "
                         "use trainer.accelerator=cpu (or auto)")


def _check_loggers(chosen: Any) -> None:
    """wandb and mlflow are optional extras: say how to install them now, not from inside Lightning."""
    import importlib.util
    for name in [chosen] if isinstance(chosen, str) else chosen if isinstance(chosen, list) else []:
        if name in ("wandb", "mlflow") and importlib.util.find_spec(name) is None:
            raise NnzooError(f"trainer.logger={name} needs the {name} package: pip install 'nnzoo[{name}]' "
                             "(or choose tensorboard or csv)")


def _check_folder(key: str, value: Any) -> None:
    if isinstance(value, str) and Path(value).expanduser().exists() and not Path(value).expanduser().is_dir():
        raise NnzooError(f"{key}={value} is an existing file, not a folder; choose a folder path")


def _check_path_length(key: str, value: Any) -> None:
    """Refuse a folder option with a path component longer than the filesystem allows (ENAMETOOLONG), now
    rather than when the run folder is created."""
    import os
    if not isinstance(value, str) or _unresolved(value):
        return
    path = Path(value).expanduser()

    def exists(p: Path) -> bool:
        try:
            return p.exists()
        except OSError:  # ENAMETOOLONG itself: Path.exists raises it
            return False
    existing = next((p for p in (path, *path.parents) if exists(p)), Path("."))
    try:
        longest = os.pathconf(existing, "PC_NAME_MAX")
    except (OSError, ValueError):
        longest = 255
    part = next((p for p in path.parts if len(os.fsencode(p)) > longest), None)
    if part is not None:
        raise NnzooError(f"{key}: the folder name {part[:24]}... is {len(os.fsencode(part))} bytes, more than the "
                         f"{longest} this filesystem allows; choose a shorter {key}")


def _check_interpolations(cfg: DictConfig, runtime_env: bool = False) -> None:
    """Resolve every ``${...}`` of ``cfg`` now, refusing in one line naming the key one that cannot resolve
    (recursive, a missing key, an unset ``${oc.env:VAR}``).  With ``runtime_env`` an unset environment
    variable is let through: a benchmark suite's variables may be set only where its cells run, and the run
    checks again (:func:`check_run_start`)."""
    from omegaconf.errors import OmegaConfBaseException
    try:
        OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as exc:
        message = (str(exc).splitlines() or [type(exc).__name__])[0]
        if runtime_env and "Environment variable" in message:
            return
        key = getattr(exc, "full_key", None) or "a config value"
        fix = ("set the environment variable or give the key a value" if "Environment variable" in message
               else "replace the interpolation with a value")
        raise NnzooError(f"{key} cannot be resolved ({message[:160]}); {fix}, e.g. in the --config file or "
                         f"with {key}=...") from None
    except RecursionError:
        raise NnzooError("the config's ${...} interpolations nest too deeply to resolve; replace them with "
                         "values") from None


def check_run_start(cfg: DictConfig) -> None:
    """What only fails once a run starts, checked before any work and before a run folder is claimed (one
    line naming the key): every interpolation resolves (:func:`_check_interpolations`), and Lightning accepts
    the trainer options (:func:`check_trainer_options`)."""
    _check_interpolations(cfg)
    check_trainer_options(trainer_kwargs(cfg))


def check_trainer_extras(kwargs: dict[str, Any], callbacks: list[Any], plugins: list[Any], where: str) -> None:
    """Lightning must also accept a run's extra callbacks and plugins beside its options (it refuses two
    stateful callbacks of one kind, two precision plugins...): checked, like the options, before the run
    folder is claimed; ``where`` says where they came from."""
    if not callbacks and not plugins:
        return
    error = _trainer_error(kwargs, callbacks, plugins)
    if error is not None:
        raise NnzooError(f"{where} are refused by lightning.Trainer ({error}); drop or change the one it names")


MADE_BY_NNZOO = ("logger", "callbacks")
"""Trainer keys of a config that nnzoo turns into objects itself (``nnzoo.train``), never passed as they are."""


def trainer_kwargs(cfg: DictConfig) -> dict[str, Any]:
    """``lightning.Trainer`` arguments of the config (unset ones left to Lightning; loggers and callbacks made
    by nnzoo)."""
    return {k: v for k, v in OmegaConf.to_container(cfg.trainer, resolve=True).items()
            if v is not None and k not in MADE_BY_NNZOO}


def check_trainer_options(kwargs: dict[str, Any]) -> None:
    """Construct a ``lightning.Trainer`` with ``kwargs`` (no logger, no callbacks: nothing is written) and
    refuse, naming the key, options it rejects (``max_steps=-5``, ``strategy=foo``, ``fast_dev_run=-1``,
    ``max_time=abc``...) and a ``max_time`` that would end the run before its first step.  Passing the
    schema is not enough: Lightning checks values only when the Trainer is made, which used to happen after
    the run's folder was created, leaving it empty."""
    _check_max_time(kwargs.get("max_time"))
    error = _trainer_error(kwargs)
    if error is None:
        return
    culprit = next((k for k in kwargs if _trainer_error({k: kwargs[k]}) is not None), None)
    where = f"trainer.{culprit}={_show(kwargs[culprit])}" if culprit else \
        "the trainer options " + ", ".join(f"trainer.{k}" for k in kwargs)
    raise NnzooError(f"{where} is refused by lightning.Trainer ({error}); fix it with "
                     f"{f'trainer.{culprit}' if culprit else 'those keys'}=... (see help(lightning.Trainer))")


def _check_max_time(value: Any) -> None:
    """``trainer.max_time`` as ``DD:HH:MM:SS`` or ``{days: .., hours: ..}`` must be a positive duration."""
    import datetime
    if isinstance(value, dict):
        try:
            duration = datetime.timedelta(**value)
        except (TypeError, ValueError, OverflowError) as exc:
            raise NnzooError(f"trainer.max_time={_show(value)} is not a duration ({exc}); use keys of "
                             "days, hours, minutes, seconds, e.g. trainer.max_time={hours: 2}") from None
    elif isinstance(value, str):
        parts = value.split(":")
        if len(parts) != 4 or not all(p.isdigit() for p in parts):
            raise NnzooError(f"trainer.max_time={_show(value)} is not DD:HH:MM:SS (e.g. 00:12:00:00 for 12 hours)")
        days, hours, minutes, seconds = map(int, parts)
        duration = datetime.timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    else:
        return
    if duration.total_seconds() <= 0:
        raise NnzooError(f"trainer.max_time={_show(value)} would stop the run before its first step; give a "
                         "positive duration or drop it")


def _trainer_error(kwargs: dict[str, Any], callbacks: list[Any] | tuple[Any, ...] = (),
                   plugins: list[Any] | tuple[Any, ...] = ()) -> str | None:
    """The first line of what ``lightning.Trainer(**kwargs)`` raises, or None; its info lines are silenced."""
    import logging
    import warnings

    import lightning as L
    names = ("lightning.pytorch", "lightning.fabric", "lightning_fabric", "pytorch_lightning")
    levels = {n: logging.getLogger(n).level for n in names}
    try:
        for n in names:
            logging.getLogger(n).setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            L.Trainer(**{**kwargs, "logger": False, "callbacks": list(callbacks)},
                      **({"plugins": list(plugins)} if plugins else {}))
    except Exception as exc:  # MisconfigurationException, ValueError, TypeError, ModuleNotFoundError...
        return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    finally:
        for n, level in levels.items():
            logging.getLogger(n).setLevel(level)
    return None
