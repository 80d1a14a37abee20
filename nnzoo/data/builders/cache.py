"""Build a dataset folder once: atomically, and only once across processes (e.g. DDP ranks)."""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable
from pathlib import Path

BUILD_INFO = "build_info.json"
"""Written last by every builder: its presence marks a complete build."""


def build_once(final: Path, build: Callable[[Path], None]) -> Path:
    """Return ``final``, first running ``build(partial_folder)`` if no complete build exists.

    The build goes into a temporary sibling folder that is renamed into place,
    so a killed build never leaves a folder that looks complete; a file lock
    makes concurrent processes wait for the one that builds.
    """
    if (final / BUILD_INFO).is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / f".{final.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
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
    return final
