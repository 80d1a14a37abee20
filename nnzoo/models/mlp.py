"""The flat-weights MLP baseline: no symmetry, no structure.

It sees the standardised parameter vector as an ordinary feature vector, so a
network and its hidden-neuron permutation (the same function) look unrelated.
In the literature it reaches ~17% on MNIST INRs (DWSNets, Table 1); it is here
to show what the equivariant models buy.

The defaults are DWSNets' ``MLPModelForClassification`` with its MNIST trainer
settings (hidden 32, ``n_hidden=4``, BatchNorm): ``Linear -> ReLU``, then four
``Linear -> BatchNorm -> ReLU`` blocks, then the output ``Linear``; 42,762
parameters on MNIST INRs.  The reference flattens all weights (transposed) and
then all biases; nnzoo's flat vector orders them layer by layer, which is only
a fixed permutation of the first layer's inputs.
"""

from __future__ import annotations

from torch import Tensor, nn

from nnzoo.data.weights import DataInfo, WeightBatch
from nnzoo.models.layers.edit_head import LayerScale
from nnzoo.models.layers.standardize import Standardize
from nnzoo.models.registry import register_model


@register_model("mlp", "MLP on the flattened weights (not permutation invariant; weak baseline)",
                heterogeneous=False, invariant=False, tasks=("classification", "regression", "editing"))
class FlatMLP(nn.Module):
    """``Linear -> ReLU``, ``layers`` x ``(Linear -> BatchNorm -> ReLU)``, ``Linear`` (reference: 32, 4).

    On an editing dataset the last ``Linear`` predicts one change per parameter, times a learned
    scale per layer (NFN's ``MLPTransferNet``, whose sizes, hidden 1000, 2 blocks, no BatchNorm,
    the data config sets); ``forward`` then returns the changes.
    """

    def __init__(self, info: DataInfo, hidden: int = 32, layers: int = 4, batch_norm: bool = True,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.standardize = Standardize(info.stats)
        blocks: list[nn.Module] = [nn.Linear(info.specs[0].num_params, hidden), nn.ReLU(), nn.Dropout(dropout)]
        for _ in range(layers):
            blocks += [nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden) if batch_norm else nn.Identity(),
                       nn.ReLU(), nn.Dropout(dropout)]
        self.editing = info.task == "editing"
        blocks.append(nn.Linear(hidden, info.specs[0].num_params if self.editing else info.num_outputs))
        self.net = nn.Sequential(*blocks)
        if self.editing:
            self.scale = LayerScale(info.specs[0].num_layers)

    def forward(self, batch: WeightBatch) -> Tensor | list[Tensor]:
        out = self.net(self.standardize(batch.spec, batch.flat))
        return [out * self.scale.per_parameter(batch.spec)] if self.editing else out
