"""Build a dataset folder once: atomically, and only once across processes (e.g. DDP ranks)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock, Timeout

from nnzoo.errors import NnzooError

BUILD_INFO = "build_info.json"
"""Written last by every builder: its presence marks a complete build."""

LOCK_TIMEOUT_ENV = "NNZOO_LOCK_TIMEOUT"
"""Seconds to wait for another process's build of the same folder; unset or negative: wait as long as it takes
(the OS releases the lock of a process that dies, so only a live build is ever waited for)."""


def build_once(final: Path, build: Callable[[Path], None], timeout: float | None = None,
               resumable: bool = False) -> Path:
    """Return ``final``, first running ``build(partial_folder)`` if no complete build exists.

    The build goes into a temporary sibling folder that is renamed into place,
    so a killed build never leaves a folder that looks complete; a file lock
    (``filelock``: POSIX and Windows) makes concurrent processes wait for the one that builds,
    for at most ``timeout`` seconds (default: ``$NNZOO_LOCK_TIMEOUT``, else no limit).

    ``resumable``: the temporary folder is ``.<name>.partial`` (not per process) and is kept when the build
    is killed or fails, so that a re-run's ``build`` finds the work already done there (a builder that
    writes each finished piece atomically skips it) and continues; long builds (hours) use it.
    """
    if (final / BUILD_INFO).is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    if timeout is None:
        timeout = float(os.environ.get(LOCK_TIMEOUT_ENV) or -1)
    lock_file = final.parent / f".{final.name}.lock"
    try:
        with FileLock(lock_file, timeout=timeout):
            if (final / BUILD_INFO).is_file():
                return final
            if resumable:  # one partial folder, kept across runs: the lock makes its builder the only one
                partial = final.parent / f".{final.name}.partial"
                partial.mkdir(exist_ok=True)
                build(partial)
                _replace(partial, final)
                return final
            partial = final.parent / f".{final.name}.partial-{os.getpid()}"
            shutil.rmtree(partial, ignore_errors=True)
            try:
                build(partial)
                _replace(partial, final)
            finally:
                shutil.rmtree(partial, ignore_errors=True)
    except Timeout:
        raise NnzooError(f"{lock_file}: another process has been building {final.name} for more than {timeout:g} s; "
                         f"wait for it to finish (or stop it) and retry, or raise {LOCK_TIMEOUT_ENV}") from None
    return final


def _replace(partial: Path, final: Path) -> None:
    """Move a finished build into place (over a stale, incomplete folder of a killed build)."""
    if final.exists():
        shutil.rmtree(final)
    os.replace(partial, final)
