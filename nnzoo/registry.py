"""Name -> constructor registries (models, datasets), in the style of timm's ``register_model``.

A registry entry carries metadata (which tasks a model supports, a one-line
summary) so that ``nnzoo list`` can show it without building anything.

A registry may also read an entry-point group (``[project.entry-points."nnzoo.models"]`` of another
package), so that models can live outside nnzoo without a fork.  Plugins are loaded lazily: a name missing
from the registry loads the entry point of that name, listing the names loads them all, and a plugin that
fails to load is one line naming it (kept in :attr:`Registry.broken`) that never breaks the other entries.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Generic, TypeVar

from nnzoo.errors import NnzooError, unknown_name

T = TypeVar("T")


@dataclass
class Entry(Generic[T]):
    name: str
    factory: T
    summary: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """A named collection of factories, optionally extended by the entry points of ``group``.

    ``adopt(name, obj)`` turns what an entry point loads (a class) into an entry of that name; an entry point
    may instead name a module that registers its entries when imported."""

    def __init__(self, kind: str, group: str | None = None,
                 adopt: Callable[[str, Any], Entry[T]] | None = None) -> None:
        self.kind = kind
        self.group = group
        self._adopt = adopt
        self._entries: dict[str, Entry[T]] = {}
        self._loaded: set[str] = set()  # entry points already tried (loaded or broken)
        self.broken: dict[str, str] = {}  # entry point name -> the one line saying why it did not load

    def register(self, name: str, summary: str = "", **meta: Any) -> Callable[[T], T]:
        def decorator(factory: T) -> T:
            self.add(Entry(name, factory, summary, meta))
            return factory
        return decorator

    def add(self, entry: Entry[T]) -> Entry[T]:
        """Register a made entry (a plugin's class, a ``class_path``); a name is registered once."""
        if entry.name in self._entries:
            raise ValueError(f"{self.kind} '{entry.name}' is registered twice")
        self._entries[entry.name] = entry
        return entry

    def entry(self, name: str) -> Entry[T]:
        if name not in self._entries and self.group:
            self._load_plugin(name, strict=True)
            if name not in self._entries:  # a plugin module may register names other than its entry point's
                self.load_plugins()
        if name not in self._entries:
            broken = "".join(f"; {why}" for why in self.broken.values())
            raise NnzooError(f"{unknown_name(self.kind, name, list(self._entries))}{broken}")
        return self._entries[name]

    def get(self, name: str) -> T:
        return self.entry(name).factory

    def names(self) -> list[str]:
        self.load_plugins()
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        """Whether ``name`` is registered now (built in or loaded); never loads a plugin."""
        return name in self._entries

    # ------------------------------------------------------------------ plugins
    def plugin_points(self) -> list[Any]:
        """The entry points of :attr:`group` of every installed distribution (none without a group)."""
        if not self.group:
            return []
        from importlib.metadata import entry_points
        return sorted(entry_points(group=self.group), key=lambda ep: ep.name)

    def load_plugins(self) -> None:
        """Load every entry point not tried yet; a broken one is recorded in :attr:`broken` and skipped."""
        for point in self.plugin_points():
            self._load(point, strict=False)

    def _load_plugin(self, name: str, strict: bool) -> None:
        for point in self.plugin_points():
            if point.name == name:
                self._load(point, strict)
                return

    def _load(self, point: Any, strict: bool) -> None:
        """Load one entry point once.  Its failure (an import error, a name taken, not a valid class) becomes
        one line naming it; ``strict`` raises that line, else it is only recorded."""
        key = f"{point.name}={point.value}"
        if key in self._loaded:
            if strict and point.name in self.broken:
                raise NnzooError(self.broken[point.name])
            return
        self._loaded.add(key)
        try:
            if point.name in self._entries:
                raise NnzooError(f"the name '{point.name}' is already a registered {self.kind}; rename the entry "
                                 "point")
            obj = point.load()
            if point.name not in self._entries:  # a module may have registered it on import
                if isinstance(obj, ModuleType):
                    raise NnzooError(f"module {point.value} registered no {self.kind} '{point.name}' on import")
                if self._adopt is None:
                    raise NnzooError(f"{self.kind} plugins must register themselves when imported")
                self.add(self._adopt(point.name, obj))
        except (Exception, SystemExit) as exc:  # any failure of someone else's code: one line, never a traceback
            why = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            what = why if isinstance(exc, NnzooError) else f"{type(exc).__name__}: {why}" if why else type(exc).__name__
            self.broken[point.name] = (f"{self.kind} plugin '{point.name}' (entry point {point.value} in group "
                                       f"{self.group}{_distribution(point)}) failed to load: {what}; fix or "
                                       "uninstall that package")
            if strict:
                raise NnzooError(self.broken[point.name]) from None


def _distribution(point: Any) -> str:
    dist = getattr(point, "dist", None)
    return f" of {dist.name} {dist.version}" if dist is not None else ""


def is_class_path(value: object) -> bool:
    """``pkg.module:Class`` or ``pkg.module.Class`` (a dotted path with at least one dot or a colon), as
    LightningCLI's ``class_path``; a plain name (``gnn``) is not one."""
    if not isinstance(value, str) or not value or value.endswith((".yaml", ".yml")):
        return False
    module, colon, attr = value.partition(":")
    parts = (module.split(".") + attr.split(".")) if colon else value.split(".")
    return (bool(colon) or len(parts) > 1) and all(p.isidentifier() for p in parts)


def import_object(path: str, option: str) -> Any:
    """The object ``pkg.module:Name`` (or dotted ``pkg.module.Name``) names, imported; a path that does not
    import is one line naming ``option`` and the fix."""
    if not is_class_path(path):
        raise NnzooError(f"{option}={path!r} is not a class path; write package.module:ClassName "
                         "(or package.module.ClassName)")
    if ":" in path:
        module_name, _, attr = path.partition(":")
        candidates = [(module_name, attr)]
    else:  # dotted: the longest importable module prefix, the rest are attributes
        parts = path.split(".")
        candidates = [(".".join(parts[:i]), ".".join(parts[i:])) for i in range(len(parts) - 1, 0, -1)]
    error: BaseException | None = None
    for module_name, attr in candidates:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and module_name != exc.name and not module_name.startswith(f"{exc.name}."):
                error = exc  # the module exists but itself imports a missing one
                break
            error = error or exc
            continue
        except (Exception, SystemExit) as exc:
            error = exc
            break
        obj: Any = module
        try:
            for part in attr.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            raise NnzooError(f"{option}={path}: module {module_name} has no {attr}; check the name "
                             "(package.module:ClassName)") from None
        return obj
    first = (str(error).strip().splitlines() or [""])[0][:200]
    raise NnzooError(f"{option}={path}: cannot import it ({type(error).__name__}: {first}); install the package "
                     "that provides it or fix the path (package.module:ClassName)") from None


def instantiate(spec: Any, key: str, base: type) -> Any:
    """Build a ``{class_path, init_args}`` config entry (LightningCLI's form) as an instance of ``base``; the
    class is checked before it is called, and a wrong class or wrong arguments are one line naming ``key``."""
    if not (isinstance(spec, dict) and isinstance(spec.get("class_path"), str)):
        raise NnzooError(f"{key} must be {{class_path: package.module.Class, init_args: {{...}}}}, got {spec!r:.80}")
    cls = import_object(spec["class_path"], f"{key}.class_path")
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise NnzooError(f"{key}.class_path={spec['class_path']} is not a subclass of "
                         f"{base.__module__}.{base.__qualname__}; name one")
    init_args = spec.get("init_args") or {}
    if not isinstance(init_args, dict):
        raise NnzooError(f"{key}.init_args must be a mapping of {cls.__qualname__}'s arguments, got {init_args!r:.80}")
    try:
        return cls(**init_args)
    except Exception as exc:  # someone else's constructor: TypeError for a wrong name, ValueError for a value...
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise NnzooError(f"{key}.init_args are refused by {spec['class_path']} ({type(exc).__name__}: {first}); "
                         f"give the arguments of its constructor") from None
