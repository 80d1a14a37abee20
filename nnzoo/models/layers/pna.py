"""PNA message passing with edge-feature modulation, and the edge update of NG-GNN."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from nnzoo.models.layers.fused import (DenseRunAggregate, EdgeMLP, FiLMMessageAggregate, RunLayout, finish_stats,
                                       fused_enabled, needed_stats, node_chunks)
from nnzoo.models.layers.precision import upcast

AGGREGATORS = ("mean", "min", "max", "std", "sum")
SCALERS = ("identity", "amplification", "attenuation")


def aggregate(messages: Tensor, in_degree: Tensor, aggregators: Sequence[str]) -> Tensor:
    """Several permutation-invariant reductions of ``messages``, which are sorted by target node.

    ``in_degree`` gives each node's number of incoming edges (the segment
    lengths).  Segment reductions on sorted messages run forward and backward
    faster than scatter reductions on CPU: mean/min/max/std of the 143,360 width-32 messages of 64 MNIST
    SIRENs take 230 ms against 380 ms (PyG ``scatter``) and 580 ms (``Tensor.scatter_reduce``), 1 thread
    (``python benchmarks/speed.py --kernels``).  Nodes without incoming edges get zeros.
    """
    messages = upcast(messages)  # float32 under autocast: std = E[m^2] - E[m]^2 cancels catastrophically in bf16
    lengths = in_degree
    has_edges = (lengths > 0).unsqueeze(-1)
    count = lengths.clamp_min(1).unsqueeze(-1).to(messages.dtype)
    out: dict[str, Tensor] = {}
    if {"sum", "mean", "std"} & set(aggregators):
        out["sum"] = torch.segment_reduce(messages, "sum", lengths=lengths, unsafe=True)
        out["mean"] = out["sum"] / count
        if "std" in aggregators:
            mean_sq = torch.segment_reduce(messages * messages, "sum", lengths=lengths, unsafe=True) / count
            out["std"] = (mean_sq - out["mean"].pow(2)).clamp_min(1e-5).sqrt()  # PyG 2.3 (the reference's)
    for name in ("min", "max"):
        if name in aggregators:
            reduced = torch.segment_reduce(messages, name, lengths=lengths, unsafe=True)
            out[name] = torch.where(has_edges, reduced, 0.0)
    return torch.cat([out[name] for name in aggregators], dim=1)


def dense_aggregate(messages: Tensor, layout: RunLayout, aggregators: Sequence[str]) -> Tensor:
    """:func:`aggregate` over a :func:`~nnzoo.models.layers.fused.regular_layout` (a batch of one architecture),
    written in plain tensor ops: each run of same-degree nodes is a dense ``(B, nodes, degree, C)`` view reduced
    over its degree axis.

    What the compiled path runs: autograd differentiates it and ``torch.compile`` fuses the message product
    into the reductions, where the eager CPU path needs the hand-written
    :class:`~nnzoo.models.layers.fused.DenseRunAggregate`.  The batch size is read off ``messages``
    (``view(-1, ...)``), so one compiled graph serves every batch size.
    """
    messages = upcast(messages)
    _, _, edges_per_graph, runs = layout
    c = messages.shape[1]
    grid = messages.view(-1, edges_per_graph, c)
    need = needed_stats(aggregators)
    parts = []
    for _, nodes, degree, first_edge in runs:
        if degree == 0:  # no incoming edges: the formulas on zero sums and extremes (as aggregate)
            zeros = messages.new_zeros(grid.shape[0], nodes, c)
            parts.append(finish_stats(dict.fromkeys(need, zeros), 1, None, aggregators)[0])
            continue
        seg = grid[:, first_edge:first_edge + nodes * degree].reshape(-1, nodes, degree, c)
        reduce = {"sum": lambda: seg.sum(2), "sq": lambda: (seg * seg).sum(2),
                  "min": lambda: seg.amin(2), "max": lambda: seg.amax(2)}
        parts.append(finish_stats({name: reduce[name]() for name in need}, degree, None, aggregators)[0])
    return torch.cat(parts, dim=1).reshape(-1, len(aggregators) * c)


def log_degree(in_degree: Tensor) -> Tensor:
    """``log(in_degree + 1)`` per node, ``(N, 1)``: the input of PNA's degree scalers (as PyG 2.3)."""
    return in_degree.float().add(1.0).log().unsqueeze(-1)


def mean_log_degree(in_degrees: list[Tensor]) -> float:
    """PNA's ``delta``: mean ``log(d + 1)`` over the nodes of the given degree vectors (zeros included).

    Neural Graphs builds it from the forward-edge in-degrees of the layout even
    when reversed edges are added, and PyG's histogram counts ``log(0 + 1) = 0``
    for nodes without incoming edges; both are kept.
    """
    degrees = torch.cat(in_degrees).double()
    return float(degrees.add(1.0).log().mean())


class FiLMPNAConv(nn.Module):
    """PNA convolution (Corso et al. 2020) whose messages are FiLM-modulated by edge features.

    ``m_ij = gamma(e_ij) * (W_t x_i + W_s x_j) + beta(e_ij)``; the messages are
    reduced with several aggregators, each rescaled by degree scalers, and mixed
    with the node's own features.  The weight of the edge *gates* the message
    instead of being concatenated to it, as in the NG-GNN.
    """

    def __init__(self, dim: int, edge_dim: int, avg_log_degree: float,
                 aggregators: Sequence[str] = ("mean", "min", "max", "std"),
                 scalers: Sequence[str] = ("identity", "amplification")) -> None:
        super().__init__()
        bad = (set(aggregators) - set(AGGREGATORS)) | (set(scalers) - set(SCALERS))
        if bad:
            raise ValueError(f"unknown PNA aggregators/scalers {sorted(bad)}; known: {AGGREGATORS}, {SCALERS}")
        self.aggregators, self.scalers = tuple(aggregators), tuple(scalers)
        self.avg_log_degree = avg_log_degree
        self.lin_target = nn.Linear(dim, dim)
        self.lin_source = nn.Linear(dim, dim, bias=False)
        # two layers rather than one chunked in two: contiguous outputs keep the per-edge products fast
        self.film_scale = nn.Linear(edge_dim, dim)
        self.film_shift = nn.Linear(edge_dim, dim)
        self.post = nn.Linear(dim * (1 + len(self.aggregators) * len(self.scalers)), dim)
        self.lin = nn.Linear(dim, dim)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor, in_degree: Tensor,
                log_deg: Tensor, chunks: list[tuple[int, int, int, int]] | None = None,
                layout: RunLayout | None = None) -> Tensor:
        """``edge_index`` must be sorted by target with ``in_degree`` edges per node (as built by nnzoo.graphs).

        ``layout`` (:func:`~nnzoo.models.layers.fused.regular_layout`: a batch of one architecture) turns the
        aggregations into dense reductions (the hand-written kernel on CPU, :func:`dense_aggregate` elsewhere,
        e.g. the compiled path); on CPU without one, ``chunks`` (:func:`~nnzoo.models.layers.fused.node_chunks`,
        computed here if not given) process the edges a cache-sized chunk at a time.
        """
        src, dst = edge_index
        # project at the nodes, then gather: N << E, so this is far cheaper than an MLP per edge
        # (index_select is several times faster than x[idx] on CPU, forward and backward)
        target, source = self.lin_target(x), self.lin_source(x)
        cpu = fused_enabled(x, edge_attr)
        if cpu and layout is None:  # mixed architectures: messages a chunk at a time, recomputed in backward
            film_weight = torch.cat([self.film_scale.weight, self.film_shift.weight])
            film_bias = torch.cat([self.film_scale.bias, self.film_shift.bias])
            agg = FiLMMessageAggregate.apply(edge_attr, film_weight, film_bias, target, source, src, dst, in_degree,
                                             chunks if chunks is not None else node_chunks(in_degree),
                                             self.aggregators)
        else:
            gamma, beta = self.film_scale(edge_attr), self.film_shift(edge_attr)
            messages = torch.addcmul(beta, gamma, target.index_select(0, dst) + source.index_select(0, src))
            if layout is None:
                agg = aggregate(messages, in_degree, self.aggregators)
            elif cpu:
                agg = DenseRunAggregate.apply(messages, layout, self.aggregators)
            else:
                agg = dense_aggregate(messages, layout, self.aggregators)
        scaled = []
        for name in self.scalers:
            if name == "identity":
                scaled.append(agg)
            elif name == "amplification":
                scaled.append(agg * (log_deg / self.avg_log_degree))
            else:
                scaled.append(agg * (self.avg_log_degree / log_deg.clamp_min(math.log(2.0))))  # degree >= 1
        return self.lin(self.post(torch.cat([x, *scaled], dim=-1)))


class EdgeUpdate(nn.Module):
    """``e_ij <- W act(A e_ij + B x_i + C x_j)``: edges (weights) are recomputed from their endpoints.

    As in NG-GNN the new edge feature *replaces* the old one (no residual);
    ``residual=True`` adds it instead.
    """

    def __init__(self, dim: int, edge_dim: int, residual: bool = False) -> None:
        super().__init__()
        self.residual = residual
        self.lin_edge = nn.Linear(edge_dim, edge_dim)
        self.lin_source = nn.Linear(dim, edge_dim)
        self.lin_target = nn.Linear(dim, edge_dim)
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(edge_dim, edge_dim))

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor, in_degree: Tensor | None = None,
                chunks: list[tuple[int, int, int, int]] | None = None) -> Tensor:
        """With ``in_degree`` (edges sorted by target) the CPU path runs edge chunks (see FiLMPNAConv)."""
        src, dst = edge_index
        source, target = self.lin_source(x), self.lin_target(x)
        if in_degree is not None and fused_enabled(x, edge_attr):
            update = EdgeMLP.apply(edge_attr, self.lin_edge.weight, self.lin_edge.bias, source, target,
                                   self.out[1].weight, self.out[1].bias, src, dst, in_degree,
                                   chunks if chunks is not None else node_chunks(in_degree))
        else:
            update = self.out(self.lin_edge(edge_attr) + source.index_select(0, src) + target.index_select(0, dst))
        return edge_attr + update if self.residual else update
