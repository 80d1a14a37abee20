"""Graph-level readout for invariant prediction."""

from __future__ import annotations

from torch import Tensor, nn

from nnzoo.models.layers.encoders import mlp


class OutputNodeReadout(nn.Module):
    """Concatenate the final features of the output neurons, then an MLP head.

    Output neurons are ordered (class 3 is not class 7), so concatenating them
    loses nothing and stays invariant to hidden-neuron permutations; this is the
    Neural Graphs default (``pooling_method=cat``).  ``layers`` hidden layers of
    ``hidden`` units with ReLU (NG-GNN: 2; NG-T: 1 on INRs, 2 on CNNs).
    """

    def __init__(self, dim: int, num_output_nodes: int, out_dim: int, hidden: int, layers: int = 2) -> None:
        super().__init__()
        self.head = mlp([dim * num_output_nodes] + [hidden] * layers + [out_dim])

    def forward(self, x: Tensor, output_index: Tensor) -> Tensor:
        return self.head(x[output_index].flatten(1))
