"""nnzoo: learning on neural-network weights (metanetworks), built on Lightning.

Networks are graphs: :mod:`nnzoo.graphs` turns weights into computation graphs,
:mod:`nnzoo.data` loads or builds weight datasets, :mod:`nnzoo.models` holds the
metanetworks (registered by name) and :mod:`nnzoo.tasks` the LightningModules.

The high-level API is importable from here: pretrained checkpoints
(:mod:`nnzoo.pretrained`: ``load_pretrained``, ``list_pretrained``, ``load_checkpoint``)
and applying them to networks (:mod:`nnzoo.inference`: ``predict_files``,
``predict_networks``, ``embed_networks``, ``edit_files``, ...), and training
(:func:`nnzoo.config.compose` a run config, :func:`nnzoo.train.fit` it, with extra Lightning
``callbacks``, ``loggers`` and ``plugins``).  Those names are loaded
on first use, so ``import nnzoo`` (and every ``nnzoo`` command) does not import torch.
"""

from __future__ import annotations

from typing import Any

from nnzoo.version import __version__

_PRETRAINED = ("list_pretrained", "load_checkpoint", "load_pretrained")
_INFERENCE = ("edit_file", "edit_files", "edit_network", "embed_networks", "predict_file", "predict_files",
              "predict_networks", "read_network")

_TRAINING = {"compose": "nnzoo.config", "fit": "nnzoo.train"}  # fit(cfg, callbacks=, loggers=, plugins=)

__all__ = ["__version__", *_PRETRAINED, *_INFERENCE, *_TRAINING]


def __getattr__(name: str) -> Any:
    """The names of :data:`__all__` from the modules that define them, imported on first use (PEP 562)."""
    if name in _PRETRAINED:
        from nnzoo import pretrained
        return getattr(pretrained, name)
    if name in _INFERENCE:
        from nnzoo import inference
        return getattr(inference, name)
    if name in _TRAINING:
        import importlib
        return getattr(importlib.import_module(_TRAINING[name]), name)
    raise AttributeError(f"module 'nnzoo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
