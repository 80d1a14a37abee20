"""Per-layer standardisation of raw weights, shared by every model."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nnzoo.nets.spec import NORM_ROLES, NetworkSpec

ROLES = ("weight", "bias", *NORM_ROLES)


class Standardize(nn.Module):
    """``(w - mean[role, layer]) / std[role, layer]`` with dataset statistics.

    One scalar pair per (tensor role, layer index) keeps the map
    permutation-equivariant; tensors without statistics pass unchanged.  The
    statistics come from :class:`~nnzoo.data.weights.DataInfo` and are saved
    with the model, so a checkpoint standardises a user's own network exactly
    as it did the training data.
    """

    def __init__(self, stats: dict[str, list[list[float]]]) -> None:
        super().__init__()
        layers = max((len(v) for v in stats.values()), default=1)
        table = torch.tensor([[0.0, 1.0]]).repeat(len(ROLES) * layers + 1, 1)  # last row: identity
        for r, role in enumerate(ROLES):
            for layer, (mean, std) in enumerate(stats.get(role, [])):
                table[r * layers + layer] = torch.tensor([mean, std])
        self.layers = layers
        self.register_buffer("table", table)
        self._index: dict[tuple[NetworkSpec, str], Tensor] = {}

    def _row_index(self, spec: NetworkSpec, device: torch.device) -> Tensor:
        key = (spec, str(device))
        if key not in self._index:
            index = torch.full((spec.num_params,), len(self.table) - 1, dtype=torch.long)
            for s in spec.slots:
                if s.layer < self.layers:
                    index[s.start:s.end] = ROLES.index(s.role) * self.layers + s.layer
            self._index[key] = index.to(device)
        return self._index[key]

    def forward(self, spec: NetworkSpec, params: Tensor) -> Tensor:
        stats = self.table[self._row_index(spec, params.device)]
        return (params - stats[:, 0]) / stats[:, 1]
