"""Lightning checkpoint writes that never destroy the previous checkpoint.

Lightning's ``TorchCheckpointIO`` opens the target for writing (truncating the old file) or stages the new
one in the system's temp folder; a kill -9, a full disk or a file-size limit mid-write then leaves a
truncated ``last.ckpt`` and the run cannot resume.  :class:`AtomicCheckpointIO` writes through
:func:`nnzoo.io.save_tensors` instead: a temporary file in the checkpoint's own folder, fsynced, renamed over
the old one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from nnzoo.io import save_tensors


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose saves are atomic and durable (see the module docstring)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike,
                        storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        target = Path(path)
        save_tensors(target, checkpoint)
        remove_orphans(target)


def remove_orphans(target: Path) -> None:
    """Delete temporary files a killed earlier write of ``target`` left beside it.  Only the run that owns a
    checkpoint folder writes into it, so a temp file of the same name there is never another live write."""
    for orphan in target.parent.glob(f".{target.name}.*.tmp"):
        try:
            orphan.unlink()
        except OSError:
            pass
