"""CPU kernels for the per-edge work of graph metanetworks (NG-GNN's hot path): less memory, fewer passes.

Three ideas, all exact up to float rounding (``tests/test_fused.py`` compares values and gradients with plain
autograd):

* **Edge chunks with recomputation** (:class:`FiLMMessageAggregate`, :class:`EdgeMLP`,
  :class:`FourierLinear`).  Plain autograd keeps about a dozen ``edges x channels`` tensors per layer for
  backward (FiLM scale and shift, gathered endpoints, messages, the edge MLP's hidden state, the 256-channel
  Fourier lift of every weight), 18-147 MB each for 64 MNIST SIRENs.  These functions walk the edges in
  node-aligned chunks that fit in cache, keep only their inputs and recompute a chunk in backward: a
  training step's memory falls several-fold, at about the same speed (the recomputation costs what the
  smaller working set saves on this CPU; ``benchmarks/speed.py --scaling``).
* **Dense runs** (:class:`DenseRunAggregate`).  In a batch of one architecture the target-sorted edges of
  every network repeat one template, and consecutive neurons of a layer have the same in-degree, so PNA's
  reductions over a run of such neurons are dense reductions of a ``(B, nodes, degree, C)`` view:
  vectorised, multi-threaded, and far cheaper than ``torch.segment_reduce``, which dominated the step.
* **Network chunks** (:func:`over_network_chunks`).  NG-GNN and NG-T are per network, so a batch can run as
  sub-batches whose largest tensor stays under :data:`HEAP_TENSOR_BYTES`: glibc then reuses heap blocks
  instead of mapping fresh pages for every large temporary, and the cost per network no longer grows with
  the batch, with or without ``nnzoo fit``'s malloc switch (``nnzoo/allocator.py``).

They run on CPU float32/float64 outside autocast; GPUs and mixed precision keep the plain path
(:func:`fused_enabled`), as does anything that needs double backward.
"""

from __future__ import annotations

import bisect
import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

if TYPE_CHECKING:
    from nnzoo.data.weights import WeightBatch

HEAP_TENSOR_BYTES = 24 << 20  # below glibc's largest mmap threshold (32 MiB): such blocks are reused from the heap
CHUNK_EDGES = 4096  # 4096 edges x 32 channels x 4 bytes = 512 KB a tensor: a chunk's working set stays in L2/L3
_enabled = True


@contextlib.contextmanager
def fused_kernels(enabled: bool) -> Iterator[None]:
    """Turn the chunked kernels on or off inside the block (benchmarks and tests time/compare both paths)."""
    global _enabled
    previous, _enabled = _enabled, enabled
    try:
        yield
    finally:
        _enabled = previous


def fused_enabled(*tensors: Tensor) -> bool:
    """True where the chunked kernels apply: CPU float tensors, autocast off, kernels not switched off."""
    return (_enabled and all(t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64) for t in tensors)
            and not torch.is_autocast_enabled("cpu"))


def over_network_chunks(forward: Callable[["WeightBatch"], Tensor], batch: "WeightBatch",
                        bytes_per_network: int) -> Tensor:
    """``forward(batch)``, run on consecutive sub-batches whose largest tensor stays under
    :data:`HEAP_TENSOR_BYTES` when ``forward`` allocates ``bytes_per_network`` per network for it.

    glibc serves blocks above its mmap threshold (at most 32 MiB) with fresh pages and unmaps them on free,
    so every step faults them in again: per-network cost then grows with the batch (NG-GNN: 66% from batch
    64 to 256 without ``nnzoo fit``'s malloc switch).  The models are per network (no statistic crosses
    networks), so the concatenated outputs are the full batch's, up to float rounding.  CPU float only, as
    :func:`fused_enabled`; elsewhere one call.
    """
    most = max(1, HEAP_TENSOR_BYTES // max(1, bytes_per_network))
    if len(batch) <= most or not fused_enabled(*batch.params):
        return forward(batch)
    parts = -(-len(batch) // most)
    return torch.cat([forward(sub) for sub in batch.split(-(-len(batch) // parts))])


def node_chunks(in_degree: Tensor, chunk_edges: int | None = None) -> list[tuple[int, int, int, int]]:
    """``(first_node, end_node, first_edge, end_edge)`` ranges of about ``chunk_edges`` target-sorted edges.

    Chunks end on node boundaries, so each node's incoming edges lie in one chunk and a chunk's segment
    reductions are complete.  A node with more than ``chunk_edges`` (default :data:`CHUNK_EDGES`) incoming
    edges gets a chunk of its own.
    """
    chunk_edges = chunk_edges or CHUNK_EDGES
    ends = torch.cumsum(in_degree, 0).tolist()
    chunks, n0, e0 = [], 0, 0
    while n0 < len(ends):
        n1 = max(bisect.bisect_right(ends, e0 + chunk_edges, lo=n0), n0 + 1)  # greedy: whole nodes that fit
        chunks.append((n0, n1, e0, ends[n1 - 1]))
        n0, e0 = n1, ends[n1 - 1]
    return chunks


def _segment_grad_minmax(values: Tensor, reduced: Tensor, grad: Tensor, lengths: Tensor,
                         local_dst: Tensor) -> Tensor:
    """Gradient of a segment min/max at ``values``: shared equally by the elements equal to the result
    (``torch.segment_reduce``'s own rule)."""
    hit = (values == reduced.index_select(0, local_dst)).to(values.dtype)
    ties = torch.segment_reduce(hit, "sum", lengths=lengths, unsafe=True).clamp_min(1.0)
    return hit * (grad / ties).index_select(0, local_dst)


class FiLMMessageAggregate(torch.autograd.Function):
    """PNA's aggregators of FiLM-modulated messages, ``m_ij = gamma(e_ij) * (t_i + s_j) + beta(e_ij)``.

    ``gamma, beta = e @ film_weight.T + film_bias`` (the two FiLM layers stacked), ``t``/``s`` are the
    node projections of targets/sources.  Returns ``(N, len(aggregators) * C)`` in the given order; the
    ``(E, C)`` messages exist one chunk at a time.
    """

    @staticmethod
    def forward(ctx, edge_attr: Tensor, film_weight: Tensor, film_bias: Tensor, t: Tensor, s: Tensor,
                src: Tensor, dst: Tensor, in_degree: Tensor, chunks: list, aggregators: tuple) -> Tensor:
        n, c = t.shape
        stats = {name: t.new_zeros(n, c) for name in needed_stats(aggregators)}
        for n0, n1, e0, e1 in chunks:
            lengths = in_degree[n0:n1]
            m, _, _ = _messages(edge_attr[e0:e1], film_weight, film_bias, t, s, src[e0:e1], dst[e0:e1], c)
            if "sum" in stats:
                stats["sum"][n0:n1] = torch.segment_reduce(m, "sum", lengths=lengths, unsafe=True)
            if "sq" in stats:
                stats["sq"][n0:n1] = torch.segment_reduce(m * m, "sum", lengths=lengths, unsafe=True)
            for name in ("min", "max"):
                if name in stats:
                    stats[name][n0:n1] = torch.segment_reduce(m, name, lengths=lengths, unsafe=True)
        count = in_degree.clamp_min(1).unsqueeze(-1).to(t.dtype)
        has_edges = (in_degree > 0).unsqueeze(-1)
        out, mean, unclamped = finish_stats(stats, count, has_edges, aggregators)
        ctx.save_for_backward(edge_attr, film_weight, film_bias, t, s, src, dst, in_degree, mean, unclamped,
                              *(stats[k] for k in ("min", "max") if k in stats), out)
        ctx.chunks, ctx.aggregators = chunks, aggregators
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        edge_attr, film_weight, film_bias, t, s, src, dst, in_degree, mean, unclamped, *rest = ctx.saved_tensors
        aggregators = ctx.aggregators
        out = rest[-1]
        extremes = dict(zip([k for k in ("min", "max") if k in aggregators], rest[:-1]))
        c = t.shape[1]
        parts = dict(zip(aggregators, grad_out.split(c, dim=1)))
        values = dict(zip(aggregators, out.split(c, dim=1)))
        count = in_degree.clamp_min(1).unsqueeze(-1).to(t.dtype)
        g_sum, g_sq = _moment_grads(parts, values.get("std"), mean, unclamped, count)
        grad_edge = torch.empty_like(edge_attr)
        grad_film_w, grad_film_b = torch.zeros_like(film_weight), torch.zeros_like(film_bias)
        grad_t, grad_s = torch.zeros_like(t), torch.zeros_like(s)
        for n0, n1, e0, e1 in ctx.chunks:
            lengths = in_degree[n0:n1]
            local = torch.repeat_interleave(torch.arange(n1 - n0), lengths, output_size=e1 - e0)
            ea = edge_attr[e0:e1]
            m, film, gathered = _messages(ea, film_weight, film_bias, t, s, src[e0:e1], dst[e0:e1], c)
            dm = g_sum[n0:n1].index_select(0, local)
            if g_sq is not None:
                dm = dm.addcmul_(m, g_sq[n0:n1].index_select(0, local), value=2.0)
            for name, reduced in extremes.items():
                dm += _segment_grad_minmax(m, reduced[n0:n1], parts[name][n0:n1], lengths, local)
            d_gamma = dm * gathered  # and d beta = dm
            grad_film_w[:c].addmm_(d_gamma.t(), ea)
            grad_film_w[c:].addmm_(dm.t(), ea)
            grad_film_b[:c] += d_gamma.sum(0)
            grad_film_b[c:] += dm.sum(0)
            torch.mm(d_gamma, film_weight[:c], out=grad_edge[e0:e1]).addmm_(dm, film_weight[c:])
            d_gathered = dm.mul_(film[:, :c])
            grad_t[n0:n1] = torch.segment_reduce(d_gathered, "sum", lengths=lengths, unsafe=True)
            grad_s.index_add_(0, src[e0:e1], d_gathered)
        return grad_edge, grad_film_w, grad_film_b, grad_t, grad_s, None, None, None, None, None


def _moment_grads(grads: dict[str, Tensor], std: Tensor | None, mean: Tensor | None, unclamped: Tensor | None,
                  count: Tensor | int) -> tuple[Tensor, Tensor | None]:
    """``d loss / d sum(m)`` and ``d loss / d sum(m^2)`` per node from the gradients of the sum, mean and std
    outputs (``std = sqrt(clamp_min(E[m^2] - E[m]^2, 1e-5))``; no gradient where the variance was clamped)."""
    g_sum = torch.zeros_like(mean if mean is not None else next(iter(grads.values())))
    if "sum" in grads:
        g_sum += grads["sum"]
    if "mean" in grads:
        g_sum += grads["mean"] / count
    if "std" not in grads:
        return g_sum, None
    g_sq = torch.where(unclamped, grads["std"] * 0.5 / std, 0.0) / count
    g_sum -= 2 * mean * g_sq
    return g_sum, g_sq


def needed_stats(aggregators: Sequence[str]) -> list[str]:
    """The per-node statistics (``sum``, ``sq``, ``min``, ``max``) the given aggregators are computed from."""
    need = set()
    for name in aggregators:
        need |= {"sum": {"sum"}, "mean": {"sum"}, "std": {"sum", "sq"}, "min": {"min"}, "max": {"max"}}[name]
    return sorted(need)


def finish_stats(stats: dict, count: Tensor | int, has_edges: Tensor | None,
                 aggregators: Sequence[str]) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """The aggregators from the per-node sums, square sums and extremes (formulas of ``pna.aggregate``),
    concatenated along the last axis, with the mean and the mask of unclamped variances that std's gradient
    needs.  ``has_edges`` None: every node has incoming edges."""
    out: dict[str, Tensor] = {}
    mean = unclamped = None
    if "sum" in stats:
        out["sum"] = stats["sum"]
        out["mean"] = mean = stats["sum"] / count
        if "sq" in stats:
            var = stats["sq"] / count - mean.pow(2)
            unclamped = var >= 1e-5  # clamp_min passes the gradient where var >= min
            out["std"] = var.clamp_min(1e-5).sqrt()
    for name in ("min", "max"):
        if name in stats:
            out[name] = stats[name] if has_edges is None else torch.where(has_edges, stats[name], 0.0)
    return torch.cat([out[name] for name in aggregators], dim=-1), mean, unclamped


def _messages(edge_attr: Tensor, film_weight: Tensor, film_bias: Tensor, t: Tensor, s: Tensor, src: Tensor,
              dst: Tensor, c: int) -> tuple[Tensor, Tensor, Tensor]:
    film = torch.addmm(film_bias, edge_attr, film_weight.t())  # [gamma | beta]
    gathered = t.index_select(0, dst) + s.index_select(0, src)
    return torch.addcmul(film[:, c:], film[:, :c], gathered), film, gathered


class EdgeMLP(torch.autograd.Function):
    """NG-GNN's edge update without its residual: ``W2 silu(e @ A.T + a + p_j + q_i) + b2``.

    ``p``/``q`` are the node projections of sources/targets.  The ``(E, C)`` hidden state exists one
    chunk at a time; backward recomputes it.
    """

    @staticmethod
    def forward(ctx, edge_attr: Tensor, weight_in: Tensor, bias_in: Tensor, p: Tensor, q: Tensor,
                weight_out: Tensor, bias_out: Tensor, src: Tensor, dst: Tensor, in_degree: Tensor,
                chunks: list) -> Tensor:
        out = edge_attr.new_empty(edge_attr.shape[0], weight_out.shape[0])
        for _, _, e0, e1 in chunks:
            hidden = _edge_hidden(edge_attr[e0:e1], weight_in, bias_in, p, q, src[e0:e1], dst[e0:e1])
            torch.addmm(bias_out, torch.nn.functional.silu(hidden), weight_out.t(), out=out[e0:e1])
        ctx.save_for_backward(edge_attr, weight_in, bias_in, p, q, weight_out, src, dst, in_degree)
        ctx.chunks = chunks
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        edge_attr, weight_in, bias_in, p, q, weight_out, src, dst, in_degree = ctx.saved_tensors
        grad_edge = torch.empty_like(edge_attr)
        grads = [torch.zeros_like(x) for x in (weight_in, bias_in, p, q, weight_out)]
        g_w_in, g_b_in, g_p, g_q, g_w_out = grads
        g_b_out = grad_out.sum(0)
        for n0, n1, e0, e1 in ctx.chunks:
            ea, go = edge_attr[e0:e1], grad_out[e0:e1]
            hidden = _edge_hidden(ea, weight_in, bias_in, p, q, src[e0:e1], dst[e0:e1])
            sig = torch.sigmoid(hidden)
            g_w_out.addmm_(go.t(), hidden * sig)
            # silu'(h) = sig * (1 + h * (1 - sig)), as aten's silu_backward
            d_hidden = torch.mm(go, weight_out).mul_(sig * (1 + hidden * (1 - sig)))
            g_w_in.addmm_(d_hidden.t(), ea)
            g_b_in += d_hidden.sum(0)
            torch.mm(d_hidden, weight_in, out=grad_edge[e0:e1])
            g_p.index_add_(0, src[e0:e1], d_hidden)
            g_q[n0:n1] = torch.segment_reduce(d_hidden, "sum", lengths=in_degree[n0:n1], unsafe=True)
        return grad_edge, g_w_in, g_b_in, g_p, g_q, g_w_out, g_b_out, None, None, None, None


def _edge_hidden(edge_attr: Tensor, weight_in: Tensor, bias_in: Tensor, p: Tensor, q: Tensor, src: Tensor,
                 dst: Tensor) -> Tensor:
    hidden = torch.addmm(bias_in, edge_attr, weight_in.t())
    return hidden.add_(p.index_select(0, src)).add_(q.index_select(0, dst))


class FourierLinear(torch.autograd.Function):
    """``Linear([cos(2 pi x B^T), sin(2 pi x B^T)])`` for inputs without gradient (raw weights).

    The ``(E, 2F)`` lift (256 channels: the largest tensor of a NG-GNN step, 147 MB at batch 64) exists one
    chunk of rows at a time, as two ``(rows, F)`` halves multiplied by the two halves of the weight (no
    concatenated copy), and backward recomputes it for the weight gradient instead of keeping it.
    """

    @staticmethod
    def forward(ctx, x: Tensor, frequencies: Tensor, weight: Tensor, bias: Tensor, rows: int) -> Tensor:
        out = x.new_empty(x.shape[0], weight.shape[0])
        w_cos, w_sin = weight.t().split(frequencies.shape[0])
        for r0 in range(0, x.shape[0], rows):
            cos, sin = _fourier_halves(x[r0:r0 + rows], frequencies)
            torch.addmm(bias, cos, w_cos, out=out[r0:r0 + rows]).addmm_(sin, w_sin)
        ctx.save_for_backward(x, frequencies)
        ctx.rows = rows
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        x, frequencies = ctx.saved_tensors
        f = frequencies.shape[0]
        grad_weight = grad_out.new_zeros(grad_out.shape[1], 2 * f)
        for r0 in range(0, x.shape[0], ctx.rows):
            g = grad_out[r0:r0 + ctx.rows].t()
            cos, sin = _fourier_halves(x[r0:r0 + ctx.rows], frequencies)
            grad_weight[:, :f].addmm_(g, cos)
            grad_weight[:, f:].addmm_(g, sin)
        return None, None, grad_weight, grad_out.sum(0), None


def fourier_linear(x: Tensor, frequencies: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """:class:`FourierLinear` in chunks of :data:`CHUNK_EDGES` rows."""
    return FourierLinear.apply(x, frequencies, weight, bias, CHUNK_EDGES)


def _fourier_halves(x: Tensor, frequencies: Tensor) -> tuple[Tensor, Tensor]:
    proj = 2 * math.pi * x @ frequencies.t().to(x.dtype)  # the formula of encoders.FourierFeatures
    return proj.cos(), proj.sin()


RunLayout = tuple[int, int, int, list[tuple[int, int, int, int]]]


def regular_layout(in_degree: Tensor, num_graphs: int) -> RunLayout | None:
    """``(B, nodes per graph, edges per graph, runs)`` when the batch is ``B`` copies of one graph layout
    (one architecture: every INR batch, the Small CNN Zoo), else None.

    A run is ``(first_node, nodes, degree, first_edge)``: consecutive nodes of one template with the same
    in-degree (for a 2-32-32-1 SIREN with reversed edges: the 2 inputs, 32 + 32 hidden neurons, the output).
    Over a run the target-sorted messages of all ``B`` networks form a dense ``(B, nodes, degree, C)`` view,
    so PNA's reductions become dense reductions over one axis instead of ``torch.segment_reduce``.
    """
    n = in_degree.numel()
    if num_graphs < 1 or n % num_graphs:
        return None
    per_graph = in_degree.view(num_graphs, n // num_graphs)
    template = per_graph[0]
    if not torch.equal(per_graph, template.expand_as(per_graph)):
        return None
    degrees = template.tolist()
    runs, start, edge = [], 0, 0
    for i in range(1, len(degrees) + 1):
        if i == len(degrees) or degrees[i] != degrees[start]:
            runs.append((start, i - start, degrees[start], edge))
            edge += (i - start) * degrees[start]
            start = i
    return num_graphs, len(degrees), edge, runs


class DenseRunAggregate(torch.autograd.Function):
    """PNA's aggregators (formulas of ``pna.aggregate``) over a :func:`regular_layout`: dense per run."""

    @staticmethod
    def forward(ctx, messages: Tensor, layout: RunLayout, aggregators: tuple) -> Tensor:
        b, n_t, e_t, runs = layout
        c = messages.shape[1]
        grid = messages.view(b, e_t, c)
        out = messages.new_empty(b, n_t, len(aggregators) * c)
        masks = []
        for n0, k, d, e0 in runs:
            if d == 0:  # no incoming edges: the formulas on zero sums and extremes (as pna.aggregate)
                zeros = messages.new_zeros(b, k, c)
                out[:, n0:n0 + k], _, unclamped = finish_stats(dict.fromkeys(needed_stats(aggregators), zeros), 1,
                                                               None, aggregators)
            else:
                seg = grid[:, e0:e0 + k * d].view(b, k, d, c)
                reduce = {"sum": lambda: seg.sum(2), "sq": lambda: (seg * seg).sum(2),
                          "min": lambda: seg.amin(2), "max": lambda: seg.amax(2)}
                stats = {name: reduce[name]() for name in needed_stats(aggregators)}
                out[:, n0:n0 + k], _, unclamped = finish_stats(stats, d, None, aggregators)
            masks.append(unclamped)
        ctx.save_for_backward(messages, out)
        ctx.layout, ctx.aggregators, ctx.masks = layout, aggregators, masks
        return out.view(b * n_t, -1)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        messages, out = ctx.saved_tensors
        b, n_t, e_t, runs = ctx.layout
        aggregators = ctx.aggregators
        c = messages.shape[1]
        grid = messages.view(b, e_t, c)
        grad = torch.empty_like(messages)
        grad_grid = grad.view(b, e_t, c)
        grad_out = grad_out.view(b, n_t, len(aggregators), c)
        out = out.view(b, n_t, len(aggregators), c)
        for (n0, k, d, e0), unclamped in zip(runs, ctx.masks):
            if d == 0:
                continue
            seg = grid[:, e0:e0 + k * d].view(b, k, d, c)
            g = {name: grad_out[:, n0:n0 + k, a] for a, name in enumerate(aggregators)}
            v = {name: out[:, n0:n0 + k, a] for a, name in enumerate(aggregators)}
            mean = v["mean"] if "mean" in v else (seg.sum(2) / d if "std" in v else None)
            g_sum, g_sq = _moment_grads(g, v.get("std"), mean, unclamped, d)
            dm = (g_sum.unsqueeze(2).expand_as(seg) if g_sq is None
                  else (seg * (2 * g_sq).unsqueeze(2)).add_(g_sum.unsqueeze(2)))
            for name in ("min", "max"):
                if name in g:
                    hit = (seg == v[name].unsqueeze(2)).to(seg.dtype)  # ties share, as segment_reduce
                    share = g[name] / hit.sum(2)
                    dm = dm + hit * share.unsqueeze(2)
            grad_grid[:, e0:e0 + k * d].view(b, k, d, c).copy_(dm)
        return grad, None, None
