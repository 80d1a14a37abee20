"""User-facing errors.

Everything a user can cause (a missing file, a corrupt checkpoint, an unknown
model name) is raised as :class:`NnzooError` with a one-line message that names
the culprit and the fix.  The CLI prints that line and exits non-zero instead of
showing a traceback from deep inside torch.
"""

from __future__ import annotations


class NnzooError(Exception):
    """An error caused by input or configuration, with a one-line explanation."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


class IncompatibleError(NnzooError):
    """A model that cannot read a dataset (e.g. DWSNet on CNNs); benchmark grids record these as n/a."""


def unknown_name(kind: str, name: str, known: list[str] | tuple[str, ...]) -> NnzooError:
    """Error for an unknown registry key, listing the valid choices."""
    choices = ", ".join(sorted(known)) or "(none registered)"
    return NnzooError(f"unknown {kind} '{name}'; choose one of: {choices} (see `nnzoo list`)")


def check_choice(option: str, value: object, allowed) -> None:
    """Refuse an option value outside ``allowed`` in one line that lists the choices."""
    if value not in allowed:
        raise NnzooError(f"{option} must be one of {', '.join(allowed)}, got {value!r}")
