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
    selects, so ``my_gnn.yaml`` holds only what differs (``model: {name: gnn, hidden: 64}``)."""
    cfg = load_yaml(path)
    name = _named(kind, cfg, path)
    shipped = config_root() / kind / f"{name}.yaml"
    if path.resolve() == shipped.resolve() or not shipped.is_file():
        return cfg
    base = load_yaml(shipped)
    OmegaConf.set_struct(base, True)
    try:
        return OmegaConf.merge(base, cfg)
    except OmegaConfBaseException as exc:
        raise NnzooError(f"config {path} sets a key the shipped {kind} '{name}' does not have "
                         f"({str(exc).splitlines()[0]}); fix {path}") from None


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
    model_file = config_path("model", model)
    model_cfg = _over_shipped("model", model_file)
    model_name = _named("model", model_cfg, model_file)
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
        layer = load_yaml(Path(file))
        merged = _merge(merged, layer, f"config file {file}", [k for k in _leaf_keys(layer)])
    for override in overrides:  # one at a time, so that the error names the culprit
        try:
            layer = OmegaConf.from_dotlist([override])
        except (OmegaConfBaseException, yaml.YAMLError, ValueError) as exc:
            raise NnzooError(f"bad override '{override}' ({str(exc).splitlines()[0]})") from None
        merged = _merge(merged, layer, f"override '{override}'", [override.partition("=")[0]])
    validate(merged, defaults=cfg)
    return merged


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
    """A model's default hyperparameters from ``zoo_configs/model/<name>.yaml`` (without ``name``)."""
    options = to_container(load_yaml(config_path("model", name)).model)
    options.pop("name", None)
    return options
