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

    ``stats["entry"] = {"mean": [...], "std": [...]}`` (one value per parameter,
    ``data.normalize=entry``) standardises every entry on its own instead, as the
    DWSNets trainer does; those statistics differ from neuron to neuron, so the
    map is then only approximately equivariant.
    """

    def __init__(self, stats: dict[str, list[list[float]]]) -> None:
        super().__init__()
        per_layer = {role: v for role, v in stats.items() if role in ROLES}
        layers = max((len(v) for v in per_layer.values()), default=1)
        table = torch.tensor([[0.0, 1.0]]).repeat(len(ROLES) * layers + 1, 1)  # last row: identity
        for r, role in enumerate(ROLES):
            for layer, (mean, std) in enumerate(stats.get(role, [])):
                table[r * layers + layer] = torch.tensor([mean, std])
        self.layers = layers
        self.register_buffer("table", table)
        entry = stats.get("entry")
        self.register_buffer("entry_mean", torch.tensor(entry["mean"]) if entry else None)
        self.register_buffer("entry_std", torch.tensor(entry["std"]) if entry else None)
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
        if self.entry_mean is not None and len(self.entry_mean) == spec.num_params:
            return (params - self.entry_mean) / self.entry_std
        stats = self.table[self._row_index(spec, params.device)]
        return (params - stats[:, 0]) / stats[:, 1]
