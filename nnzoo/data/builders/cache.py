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


def build_once(final: Path, build: Callable[[Path], None], timeout: float | None = None) -> Path:
    """Return ``final``, first running ``build(partial_folder)`` if no complete build exists.

    The build goes into a temporary sibling folder that is renamed into place,
    so a killed build never leaves a folder that looks complete; a file lock
    (``filelock``: POSIX and Windows) makes concurrent processes wait for the one that builds,
    for at most ``timeout`` seconds (default: ``$NNZOO_LOCK_TIMEOUT``, else no limit).
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
            partial = final.parent / f".{final.name}.partial-{os.getpid()}"
            shutil.rmtree(partial, ignore_errors=True)
            try:
                build(partial)
                if final.exists():  # a stale, incomplete folder from a killed build
                    shutil.rmtree(final)
                os.replace(partial, final)
            finally:
                shutil.rmtree(partial, ignore_errors=True)
    except Timeout:
        raise NnzooError(f"{lock_file}: another process has been building {final.name} for more than {timeout:g} s; "
                         f"wait for it to finish (or stop it) and retry, or raise {LOCK_TIMEOUT_ENV}") from None
    return final
