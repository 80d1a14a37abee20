"""Name -> constructor registries (models, datasets), in the style of timm's ``register_model``.

A registry entry carries metadata (which tasks a model supports, a one-line
summary) so that ``nnzoo list`` can show it without building anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from nnzoo.errors import unknown_name

T = TypeVar("T")


@dataclass
class Entry(Generic[T]):
    name: str
    factory: T
    summary: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """A named collection of factories."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, summary: str = "", **meta: Any) -> Callable[[T], T]:
        def decorator(factory: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = Entry(name, factory, summary, meta)
            return factory
        return decorator

    def entry(self, name: str) -> Entry[T]:
        if name not in self._entries:
            raise unknown_name(self.kind, name, list(self._entries))
        return self._entries[name]

    def get(self, name: str) -> T:
        return self.entry(name).factory

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries
