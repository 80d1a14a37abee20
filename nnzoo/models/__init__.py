"""Metanetworks, registered by name: ``create_model("gnn", info)``.

Importing this package registers every built-in model.
"""

from nnzoo.models import gnn  # noqa: F401  (registers "gnn")
from nnzoo.models import dwsnet  # noqa: F401
from nnzoo.models import transformer  # noqa: F401
from nnzoo.models import mlp, statnn  # noqa: F401
from nnzoo.models import nfn  # noqa: F401  (registers "nfn_hnp" and "nfn_np")
from nnzoo.models.registry import MODELS, count_parameters, create_model, register_model

__all__ = ["MODELS", "count_parameters", "create_model", "register_model"]
