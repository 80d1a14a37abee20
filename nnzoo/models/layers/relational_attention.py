"""The relational transformer layer of NG-T: attention over neurons that reads and updates the weights.

As in Neural Graphs (Kofinas et al. 2024, after Diao & Loynd's Relational
Transformer), every ordered pair of neurons ``(i, j)`` of a network carries an
edge vector ``e_ij`` (the encoded weight from ``i`` to ``j``, or the encoding of
"no weight"), and per head::

    q_ij = q_i + Q e_ij,   k_ij = k_j + K e_ij,   v_ij = v_j * (M e_ij) + V e_ij
    x_i' = sum_j softmax_j(q_ij . k_ij / sqrt(d_attn)) v_ij

followed by post-norm residual blocks on nodes (``lin0``, then a GELU MLP) and on
edges (an MLP of ``[e_ij, e_ji]`` and both endpoints, then a GELU MLP).  Tensors
are dense per network: ``(B, n, n, d)`` with ``n`` the largest network of the
batch; padding neurons are masked out of every softmax.  Node identities are
never used, so the layer is equivariant to any permutation of the neurons.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nnzoo.models.layers.dropout import Dropout
from nnzoo.models.layers.fused import fused_enabled


def xavier_linear(in_features: int, out_features: int, bias: bool = True) -> nn.Linear:
    """``nn.Linear`` with Xavier-uniform weights and zero bias: the init of every NG-T layer."""
    layer = nn.Linear(in_features, out_features, bias)
    nn.init.xavier_uniform_(layer.weight)
    if bias:
        nn.init.zeros_(layer.bias)
    return layer


class RelationalAttention(nn.Module):
    """Multi-head attention whose queries, keys and values are shifted (and values scaled) by edges."""

    def __init__(self, node_dim: int, edge_dim: int, attn_dim: int, heads: int, modulate_v: bool = True) -> None:
        super().__init__()
        if attn_dim % heads:
            raise ValueError(f"attention size {attn_dim} is not divisible by {heads} heads")
        self.heads, self.head_dim, self.modulate_v = heads, attn_dim // heads, modulate_v
        self.scale = attn_dim ** -0.5  # the reference scales by the total attention width, not per head
        self.node_qkv = xavier_linear(node_dim, 3 * attn_dim, bias=False)
        self.edge_qkv = xavier_linear(edge_dim, (4 if modulate_v else 3) * attn_dim, bias=False)
        self.out = xavier_linear(attn_dim, node_dim)

    def forward(self, x: Tensor, edges: Tensor, key_mask: Tensor | None) -> Tensor:
        """``x`` (B, n, node_dim), ``edges`` (B, n, n, edge_dim) indexed [i, j], ``key_mask`` (B, n) or None."""
        b, n, _ = x.shape
        h, d = self.heads, self.head_dim
        q, k, v = self.node_qkv(x).view(b, n, h, 3, d).unbind(3)  # (B, n, h, d); head-major like the reference
        # the edge projection's blocks as separate products: contiguous outputs, and V e_ij is never needed
        # per pair, since sum_j a_ij V e_ij = V sum_j a_ij e_ij
        w = self.edge_qkv.weight.view(h, -1, d, edges.shape[-1])
        w_q, w_k = w[:, 0], w[:, 1]  # (h, d, edge_dim)
        q_edge = F.linear(edges, w_q.reshape(h * d, -1)).view(b, n, n, h, d)
        k_edge = F.linear(edges, w_k.reshape(h * d, -1)).view(b, n, n, h, d)
        if fused_enabled(edges):
            # (q_i + Q e_ij) . (k_j + K e_ij) expanded: only Q e . K e needs per-pair vectors; the cross terms are
            # e_ij . (K^T q_i) and e_ij . (Q^T k_j), products with the 32-channel edges, and q_i . k_j.  On CPU
            # this saves two (B, n, n, d_attn) sums forward and two reductions of that size backward.
            logits = (q_edge * k_edge).sum(-1)  # (B, i, j, h)
            logits = logits + torch.einsum("bijc,bihc->bijh", edges, torch.einsum("bihd,hdc->bihc", q, w_k))
            logits = logits + torch.einsum("bijc,bjhc->bijh", edges, torch.einsum("bjhd,hdc->bjhc", k, w_q))
            logits = logits + torch.einsum("bihd,bjhd->bijh", q, k)
        else:  # the formula as written (GPUs, autocast, fused_kernels(False))
            logits = ((q_edge + q.unsqueeze(2)) * (k_edge + k.unsqueeze(1))).sum(-1)
        logits = logits.permute(0, 3, 1, 2) * self.scale  # (B, h, i, j)
        if key_mask is not None:
            logits = logits.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        attn = logits.softmax(dim=-1).permute(0, 2, 3, 1)  # (B, i, j, h), softmax over j
        if self.modulate_v:
            v_mul = F.linear(edges, w[:, 3].reshape(h * d, -1)).view(b, n, n, h, d)
            out = (attn.unsqueeze(-1) * (v_mul * v.unsqueeze(1))).sum(2)  # sum_j a_ij v_j * M e_ij
        else:
            out = torch.einsum("bijh,bjhd->bihd", attn, v)
        pooled = torch.matmul(attn.transpose(2, 3), edges)  # (B, i, h, edge_dim): sum_j a_ij e_ij
        out = out + torch.einsum("bihc,hdc->bihd", pooled, w[:, 2])
        return self.out(out.reshape(b, n, h * d))


class EdgeUpdateBlock(nn.Module):
    """Post-norm edge update: ``e <- LN(e + MLP([e_ij, e_ji], x_i, x_j))``, then ``e <- LN(e + MLP(e))``."""

    def __init__(self, node_dim: int, edge_dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.pair = xavier_linear(2 * edge_dim, hidden)
        self.source = xavier_linear(node_dim, hidden)
        self.target = xavier_linear(node_dim, hidden)
        self.pair_out = nn.Sequential(nn.GELU(), xavier_linear(hidden, edge_dim), Dropout(dropout))
        self.norm0 = nn.LayerNorm(edge_dim)
        self.mlp = nn.Sequential(xavier_linear(edge_dim, hidden, bias=False), nn.GELU(),
                                 xavier_linear(hidden, edge_dim), Dropout(dropout))
        self.norm1 = nn.LayerNorm(edge_dim)

    def forward(self, x: Tensor, edges: Tensor) -> Tensor:
        own, reverse = self.pair.weight.split(edges.shape[-1], dim=1)  # Linear([e_ij, e_ji]) in two products
        hidden = (F.linear(edges, own, self.pair.bias) + F.linear(edges, reverse).transpose(1, 2)
                  + self.source(x).unsqueeze(2) + self.target(x).unsqueeze(1))
        edges = self.norm0(edges + self.pair_out(hidden))
        return self.norm1(edges + self.mlp(edges))


class RelationalTransformerLayer(nn.Module):
    """One NG-T layer: relational attention + node MLP (post-norm), then an optional edge update."""

    def __init__(self, node_dim: int, edge_dim: int, attn_dim: int, node_hidden: int, edge_hidden: int,
                 heads: int, dropout: float, update_edges: bool, modulate_v: bool = True) -> None:
        super().__init__()
        self.attention = RelationalAttention(node_dim, edge_dim, attn_dim, heads, modulate_v)
        self.lin0 = xavier_linear(node_dim, node_dim)
        self.dropout0 = Dropout(dropout)
        self.norm0 = nn.LayerNorm(node_dim)
        self.mlp = nn.Sequential(xavier_linear(node_dim, node_hidden, bias=False), nn.GELU(),
                                 xavier_linear(node_hidden, node_dim), Dropout(dropout))
        self.norm1 = nn.LayerNorm(node_dim)
        self.edge_update = EdgeUpdateBlock(node_dim, edge_dim, edge_hidden, dropout) if update_edges else None

    def forward(self, x: Tensor, edges: Tensor, key_mask: Tensor | None) -> tuple[Tensor, Tensor]:
        x = self.norm0(x + self.dropout0(self.lin0(self.attention(x, edges, key_mask))))
        x = self.norm1(x + self.mlp(x))
        if self.edge_update is not None:
            edges = self.edge_update(x, edges)
        return x, edges
