"""Relational attention: self-attention over neurons in which every pair carries an edge vector.

As in the Relational Transformer (Diao & Loynd, ICLR 2023) used by NG-T, the
attention between neurons ``i`` and ``j`` depends on the edge vector ``e_ij``
(the weight between them, or a learned "no edge" vector set by the caller),
both in its logits and in its values::

    logit_ij = q_i . k_j + e_ij . (A x_i + B x_j + c)        (per head)
    x_i'     = sum_j softmax_j(logit_ij) (v_j + V e_ij)

This is the relational query/key/value ``q_ij = Q[x_i, e_ij]`` etc. without
the edge-edge product ``e_ij Q_e^T K_e e_ij``.  Dropping that term lets every
edge contribution be computed by contracting the ``(B, n, n, d_edge)`` edge
tensor with per-node vectors, so no ``(B, n, n, heads, d)`` tensor is ever
built: about 3x faster and far lighter on a CPU.  Tensors are dense *per
network* (``n`` = the largest network of the batch, padding masked), never
over the whole batch.  Node identities are never used, so the layer is
equivariant to any permutation of the neurons.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class RelationalAttention(nn.Module):
    """Multi-head attention whose logits and values depend on pair (edge) features."""

    def __init__(self, node_dim: int, edge_dim: int, heads: int, attn_dim: int | None = None,
                 dropout: float = 0.0) -> None:
        super().__init__()
        attn_dim = attn_dim or node_dim
        if attn_dim % heads:
            raise ValueError(f"attention size {attn_dim} is not divisible by {heads} heads")
        self.heads, self.head_dim, self.edge_dim = heads, attn_dim // heads, edge_dim
        self.node_qkv = nn.Linear(node_dim, 3 * attn_dim)
        self.edge_query = nn.Linear(node_dim, 2 * heads * edge_dim)  # A x_i + c and B x_j, per head
        self.edge_value = nn.Parameter(torch.empty(heads, edge_dim, self.head_dim))  # V, per head
        nn.init.xavier_uniform_(self.edge_value.view(heads * edge_dim, self.head_dim))
        self.out = nn.Linear(attn_dim, node_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, edges: Tensor, mask: Tensor) -> Tensor:
        """``x`` (B, n, node_dim), ``edges`` (B, n, n, edge_dim) indexed [target, source], ``mask`` (B, n)."""
        b, n, _ = x.shape
        h, d, c = self.heads, self.head_dim, self.edge_dim
        q, k, v = self.node_qkv(x).view(b, n, 3, h, d).unbind(2)  # (B, n, h, d) each
        from_target, from_source = self.edge_query(x).view(b, n, 2, h, c).unbind(2)  # (B, n, h, c)
        logits = torch.einsum("bihd,bjhd->bijh", q, k) / math.sqrt(d)
        logits = logits + torch.einsum("bihc,bijc->bijh", from_target, edges)
        logits = logits + torch.einsum("bjhc,bijc->bijh", from_source, edges)
        logits = logits.masked_fill(~mask[:, None, :, None], float("-inf"))
        weights = self.dropout(logits.softmax(dim=2))  # over sources j
        out = torch.einsum("bijh,bjhd->bihd", weights, v)
        pooled_edges = torch.einsum("bijh,bijc->bihc", weights, edges)  # sum_j w_ij e_ij
        out = out + torch.einsum("bihc,hcd->bihd", pooled_edges, self.edge_value)
        return self.out(out.reshape(b, n, h * d))


class RelationalEdgeUpdate(nn.Module):
    """``e_ij <- e_ij + MLP(e_ij, x_i, x_j, e_ji)``: each pair sees its endpoints and its reverse pair."""

    def __init__(self, node_dim: int, edge_dim: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or edge_dim
        self.edge = nn.Linear(edge_dim, hidden)
        self.reverse = nn.Linear(edge_dim, hidden, bias=False)
        self.target = nn.Linear(node_dim, hidden, bias=False)
        self.source = nn.Linear(node_dim, hidden, bias=False)
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(hidden, edge_dim))

    def forward(self, x: Tensor, edges: Tensor) -> Tensor:
        hidden = (self.edge(edges) + self.reverse(edges.transpose(1, 2))
                  + self.target(x).unsqueeze(2) + self.source(x).unsqueeze(1))
        return self.out(hidden)


def dense_edges(edge_attr: Tensor, edge_index: Tensor, batch: Tensor, num_graphs: int, max_nodes: int,
                no_edge: Tensor) -> Tensor:
    """Scatter sparse edge features into ``(B, n, n, d)`` [target, source], ``no_edge`` elsewhere."""
    counts = torch.bincount(batch, minlength=num_graphs)
    first = torch.cumsum(counts, 0) - counts  # first node id of each graph
    src, dst = edge_index
    graph = batch.index_select(0, dst)
    local_src, local_dst = src - first.index_select(0, graph), dst - first.index_select(0, graph)
    dense = no_edge.to(edge_attr.dtype).expand(num_graphs, max_nodes, max_nodes, -1).clone()
    return dense.index_put((graph, local_dst, local_src), edge_attr)
