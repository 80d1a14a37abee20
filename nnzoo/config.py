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
from omegaconf import DictConfig, OmegaConf
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


def config_path(kind: str, name: str) -> Path:
    """The shipped (or ``$NNZOO_CONFIGS``) YAML of a name; a path is refused, since names never leave
    ``zoo_configs/`` (a custom config goes in ``$NNZOO_CONFIGS/<kind>/<name>.yaml``)."""
    from nnzoo.schema import check_name
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


def compose(model: str, data: str, trainer: str = "default", overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """The full run config for ``model`` on ``data`` with ``key=value`` overrides applied."""
    layers = [load_yaml(config_path("trainer", "default"))]
    if trainer != "default":
        layers.append(load_yaml(config_path("trainer", trainer)))
    data_cfg = load_yaml(config_path("data", data))
    recipes = data_cfg.pop("recipes", None) or {}
    layers += [data_cfg, load_yaml(config_path("model", model))]
    cfg = OmegaConf.merge(*layers)
    OmegaConf.set_struct(cfg, True)
    if model in recipes:
        try:
            cfg = OmegaConf.merge(cfg, recipes[model])
        except OmegaConfBaseException as exc:
            raise NnzooError(f"data config '{data}': recipes.{model} sets a key the {model} config does not "
                             f"have ({str(exc).splitlines()[0]}); fix {config_path('data', data)}") from None
    return apply_overrides(cfg, overrides)


def apply_overrides(cfg: DictConfig, overrides: list[str] | tuple[str, ...]) -> DictConfig:
    """``cfg`` with ``key=value`` overrides, validated once (:func:`nnzoo.schema.validate`): an unknown key,
    a wrong type or an out-of-range value is refused here, before any work."""
    from nnzoo.schema import validate
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise NnzooError(f"override '{bad[0]}' is not key=value")
    cfg = cfg.copy()
    OmegaConf.set_struct(cfg, True)  # a misspelt key is an error for every command, `test` included
    merged = cfg
    for override in overrides:  # one at a time, so that the error names the culprit
        try:
            merged = OmegaConf.merge(merged, OmegaConf.from_dotlist([override]))
        except (OmegaConfBaseException, yaml.YAMLError, ValueError) as exc:
            msg = str(exc).splitlines()[0]
            raise NnzooError(f"bad override '{override}' ({msg}); see the keys in "
                             "`nnzoo config --model ... --data ...`") from None
    validate(merged, defaults=cfg)
    return merged


def to_container(cfg: DictConfig | Any) -> Any:
    """Plain, resolved Python containers (for constructors and JSON)."""
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


def model_options(name: str) -> dict[str, Any]:
    """A model's default hyperparameters from ``zoo_configs/model/<name>.yaml`` (without ``name``)."""
    options = to_container(load_yaml(config_path("model", name)).model)
    options.pop("name", None)
    return options
