"""YAML configs under ``zoo_configs/{model,data,trainer}/``, merged with omegaconf.

(Benchmark suites, which combine many runs, live in ``benchmarks/``.)

Merge order (later wins): ``trainer/default.yaml`` -> ``trainer/<trainer>.yaml``
(only its differences, e.g. ``ddp.yaml``) -> ``data/<data>.yaml`` ->
``model/<model>.yaml`` -> the data config's ``recipes.<model>`` (the reference
recipe of that model on that dataset: its size, batch, loss) -> command-line
``key=value`` overrides.  The merged config is in struct mode, so a misspelt
override key is an error rather than silently ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from nnzoo.errors import NnzooError, unknown_name
from nnzoo.io import shipped_folder

KINDS = ("model", "data", "trainer")


def config_root() -> Path:
    """``$NNZOO_CONFIGS``, the repository's ``zoo_configs/``, or the copy installed with the package."""
    return shipped_folder("zoo_configs", "NNZOO_CONFIGS")


def available(kind: str) -> list[str]:
    """Names of the YAML files of one kind (``model``, ``data``, ...)."""
    folder = config_root() / kind
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


YAML_SUFFIXES = (".yaml", ".yml")


def config_path(kind: str, name: str) -> Path:
    """The shipped (or ``$NNZOO_CONFIGS``) YAML of a name, or a YAML file given deliberately by its path.

    A plain name never leaves ``zoo_configs/``; only a value ending in ``.yaml``/``.yml`` is read as a file
    (``--model ./my_gnn.yaml``), so ``--model ../x`` or ``--model /etc/passwd`` stay refused."""
    from nnzoo.schema import check_name
    if isinstance(name, str) and name.endswith(YAML_SUFFIXES):
        path = Path(name).expanduser()
        if not path.is_file():
            raise NnzooError(f"--{kind} {name}: no such YAML file; pass an existing file or a name from "
                             f"`nnzoo list configs`")
        return path
    check_name(f"--{kind}", name)
    path = config_root() / kind / f"{name}.yaml"
    if not path.is_file():
        raise unknown_name(f"{kind} config", name, available(kind))
    return path


def load_yaml(path: Path) -> DictConfig:
    try:
        cfg = OmegaConf.load(path)
    except (OmegaConfBaseException, OSError, ValueError, yaml.YAMLError) as exc:
        raise NnzooError(f"cannot parse config {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(cfg, DictConfig):
        raise NnzooError(f"config {path} must be a mapping")
    return cfg


def _named(kind: str, cfg: DictConfig, path: Path) -> str:
    """The registered name a model/data YAML selects (its ``<kind>.name``), checked to be a plain name."""
    from nnzoo.schema import check_name
    name = OmegaConf.select(cfg, f"{kind}.name")
    if not isinstance(name, str):
        raise NnzooError(f"config {path} has no {kind}.name; a {kind} YAML names the registered {kind} it "
                         f"configures (`nnzoo list`)")
    return check_name(f"{kind}.name in {path}", name)


def _over_shipped(kind: str, path: Path) -> DictConfig:
    """A model/data YAML; one outside ``zoo_configs/`` is merged over the shipped config of the name it
    selects, so ``my_gnn.yaml`` holds only what differs (``model: {name: gnn, hidden: 64}``).  A model YAML
    naming a plugin's model (no shipped YAML) is merged over that model's own defaults instead."""
    cfg = load_yaml(path)
    name = _named(kind, cfg, path)
    shipped = config_root() / kind / f"{name}.yaml"
    if path.resolve() == shipped.resolve():
        return cfg
    if shipped.is_file():
        base = load_yaml(shipped)
    elif kind == "model" and _registered_model(name):
        base = OmegaConf.create({"model": _registered_section(name)})
    else:
        return cfg
    OmegaConf.set_struct(base, True)
    try:
        return OmegaConf.merge(base, cfg)
    except OmegaConfBaseException as exc:
        raise NnzooError(f"config {path} sets a key the shipped {kind} '{name}' does not have "
                         f"({str(exc).splitlines()[0]}); fix {path}") from None


def _registered_model(name: str) -> bool:
    """A model without a shipped YAML that nnzoo can still build: a plugin's entry point of that name, or a
    class the calling script registered.  Answered without importing torch when neither is the case."""
    import sys
    from importlib.metadata import entry_points
    registry = sys.modules.get("nnzoo.models.registry")
    if registry is not None and name in registry.MODELS:
        return True
    return any(ep.name == name for ep in entry_points(group="nnzoo.models"))


def _registered_section(name: str) -> dict[str, Any]:
    """The ``model:`` section of a registered model without a shipped YAML: its name, class path and
    constructor defaults (:func:`nnzoo.models.registry.model_section`)."""
    from nnzoo.models import MODELS
    from nnzoo.models.registry import model_section
    return model_section(name, MODELS.get(name), f"model '{name}'")


def _model_layer(model: str) -> tuple[DictConfig, str]:
    """The model layer ``--model`` selects, and the model's name: a shipped name; a YAML file (over the shipped
    config of its ``model.name``, or holding ``model.class_path``); a class path ``package.module:Class``; or
    the name of a plugin's model (entry point group ``nnzoo.models``), configured by its constructor's
    defaults.  The last two record ``model.class_path``, which rebuilds the model in any later process."""
    from nnzoo.registry import is_class_path
    from nnzoo.schema import check_name
    from nnzoo.schema import NAME_PATTERN
    if isinstance(model, str) and not model.endswith(YAML_SUFFIXES) \
            and not (config_root() / "model" / f"{model}.yaml").is_file():
        if NAME_PATTERN.fullmatch(model) and ".." not in model and _registered_model(model):
            return OmegaConf.create({"model": _registered_section(model)}), model
        if is_class_path(model):
            return _class_path_layer(OmegaConf.create({"model": {"class_path": model}}), f"--model {model}")
        check_name("--model", model)
        from importlib.metadata import entry_points
        plugins = [ep.name for ep in entry_points(group="nnzoo.models")]
        raise unknown_name("model config", model, available("model") + plugins)
    path = config_path("model", model)
    cfg = load_yaml(path)
    if OmegaConf.select(cfg, "model.class_path") is not None:
        return _class_path_layer(cfg, str(path))
    return _over_shipped("model", path), _named("model", cfg, path)


def _class_path_layer(cfg: DictConfig, where: str) -> tuple[DictConfig, str]:
    """A model YAML in LightningCLI's form (``model: {class_path: pkg.module:Class, init_args: {...}}``, an
    optional ``model.name``) as nnzoo's: ``model: {name, class_path, <options>}``, the options being the
    constructor's defaults with ``init_args`` (or plain keys) merged over them, strictly."""
    from nnzoo.models.registry import check_model_class, default_name, model_section
    from nnzoo.registry import import_object
    from nnzoo.schema import check_name
    section = OmegaConf.to_container(cfg.model, resolve=False)
    class_path = section.pop("class_path")
    init_args = section.pop("init_args", None) or {}
    name = section.pop("name", None)
    if not isinstance(class_path, str):
        raise NnzooError(f"{where}: model.class_path must be text such as package.module:ClassName")
    if not isinstance(init_args, dict):
        raise NnzooError(f"{where}: model.init_args must be a mapping of the model's options, e.g. {{hidden: 16}}")
    cls = check_model_class(import_object(class_path, "model.class_path"), f"model.class_path={class_path}")
    name = check_name(f"model.name in {where}", default_name(cls) if name is None else name)
    model = OmegaConf.create(model_section(name, cls, where))
    OmegaConf.set_struct(model, True)
    try:
        model = OmegaConf.merge(model, {**section, **init_args})
    except OmegaConfBaseException as exc:
        raise NnzooError(f"{where}: {class_path} takes no such option ({str(exc).splitlines()[0]}); use the "
                         f"arguments of its constructor under model.init_args") from None
    layer = OmegaConf.create({k: v for k, v in OmegaConf.to_container(cfg, resolve=False).items() if k != "model"})
    layer.model = model
    return layer, name


def compose(model: str, data: str, trainer: str = "default", overrides: list[str] | tuple[str, ...] = (),
            files: list[str | Path] | tuple[str | Path, ...] = ()) -> DictConfig:
    """The full run config for ``model`` on ``data``: shipped layers, then ``files`` (``--config``, merged in
    order), then ``key=value`` overrides. ``model``/``data`` are names or paths to YAML files."""
    layers = [load_yaml(config_path("trainer", "default"))]
    if trainer != "default":
        layers.append(load_yaml(config_path("trainer", trainer)))
    data_file = config_path("data", data)
    data_cfg = _over_shipped("data", data_file)
    recipes = data_cfg.pop("recipes", None) or {}
    model_cfg, model_name = _model_layer(model)
    layers += [data_cfg, model_cfg]
    cfg = OmegaConf.merge(*layers)
    OmegaConf.set_struct(cfg, True)
    if model_name in recipes:
        try:
            cfg = OmegaConf.merge(cfg, recipes[model_name])
        except OmegaConfBaseException as exc:
            raise NnzooError(f"data config '{data}': recipes.{model_name} sets a key the {model_name} config "
                             f"does not have ({str(exc).splitlines()[0]}); fix {data_file}") from None
    return apply_overrides(cfg, overrides, files=files)


def apply_overrides(cfg: DictConfig, overrides: list[str] | tuple[str, ...],
                    files: list[str | Path] | tuple[str | Path, ...] = ()) -> DictConfig:
    """``cfg`` with config files, then ``key=value`` overrides, validated once (:func:`nnzoo.schema.validate`):
    an unknown key, a wrong type or an out-of-range value is refused here, before any work.

    Any argument of ``lightning.Trainer`` may be set under ``trainer.`` even if the shipped YAML does not
    list it; its value is checked against the Trainer's signature."""
    from nnzoo.schema import validate
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise NnzooError(f"override '{bad[0]}' is not key=value")
    cfg = cfg.copy()
    OmegaConf.set_struct(cfg, True)  # a misspelt key is an error for every command, `test` included
    merged = cfg
    for file in files:
        layer = _flat_init_args(load_yaml(Path(file)), file)
        merged = _merge(merged, layer, f"config file {file}", [k for k in _leaf_keys(layer)])
    for override in overrides:  # one at a time, so that the error names the culprit
        try:
            layer = OmegaConf.from_dotlist([override])
        except (OmegaConfBaseException, yaml.YAMLError, ValueError) as exc:
            raise NnzooError(f"bad override '{override}' ({str(exc).splitlines()[0]})") from None
        merged = _merge(merged, layer, f"override '{override}'", [override.partition("=")[0]])
    validate(merged, defaults=cfg)
    return merged


def _flat_init_args(layer: DictConfig, file: str | Path) -> DictConfig:
    """A config file's ``model.init_args`` (LightningCLI's spelling) as plain model options, which is how the
    run config holds them."""
    init_args = OmegaConf.select(layer, "model.init_args")
    if init_args is None:
        return layer
    if not isinstance(init_args, DictConfig):
        raise NnzooError(f"config file {file}: model.init_args must be a mapping of the model's options, "
                         "e.g. {hidden: 16}")
    model = OmegaConf.merge({k: v for k, v in layer.model.items() if k != "init_args"}, init_args)
    layer = layer.copy()
    layer.model = model
    return layer


def _leaf_keys(layer: DictConfig) -> list[str]:
    from nnzoo.schema import leaves
    return list(leaves(OmegaConf.to_container(layer, resolve=False)))


def _merge(cfg: DictConfig, layer: DictConfig, what: str, keys: list[str]) -> DictConfig:
    """``cfg`` with ``layer`` merged in struct mode; ``trainer.<arg>`` keys of ``lightning.Trainer`` are opened
    first, and an unknown key is named with the closest known one."""
    from nnzoo.schema import check_trainer_key
    for key in keys:
        head, _, arg = key.partition(".")
        if head == "trainer" and arg and "." not in arg and arg not in cfg.trainer:
            check_trainer_key(arg)  # refuses a misspelt or unsupported Trainer argument, with a suggestion
            with open_dict(cfg.trainer):
                cfg.trainer[arg] = None
    try:
        return OmegaConf.merge(cfg, layer)
    except (OmegaConfBaseException, yaml.YAMLError, ValueError) as exc:
        msg = str(exc).splitlines()[0]
        key = next((k for k in keys if OmegaConf.select(cfg, k, default=_MISSING) is _MISSING), None)
        hint = _suggest(cfg, key) if key else ""
        raise NnzooError(f"bad {what} ({msg}){hint}; see the keys in `nnzoo config --model ... --data ...`") from None


_MISSING = object()


def _suggest(cfg: DictConfig, key: str) -> str:
    """`` (did you mean X?)`` for an unknown dotted key: a Trainer argument set at the top level, or a near miss."""
    import difflib

    from nnzoo.schema import leaves, trainer_arguments
    if "." not in key and key in trainer_arguments():
        return f" (did you mean trainer.{key}?)"
    known = list(leaves(OmegaConf.to_container(cfg, resolve=False)))
    if key.startswith("trainer."):
        known += [f"trainer.{a}" for a in trainer_arguments()]
    close = difflib.get_close_matches(key, known, n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def to_container(cfg: DictConfig | Any) -> Any:
    """Plain, resolved Python containers (for constructors and JSON)."""
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


def model_options(name: str) -> dict[str, Any]:
    """A model's default hyperparameters from ``zoo_configs/model/<name>.yaml`` (without ``name``); for a
    plugin's model, its constructor's defaults and the ``class_path`` that builds it."""
    if not (config_root() / "model" / f"{name}.yaml").is_file() and _registered_model(name):
        options = _registered_section(name)
    else:
        options = to_container(load_yaml(config_path("model", name)).model)
    options.pop("name", None)
    return options
