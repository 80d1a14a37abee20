"""The edge-chunked CPU kernels (nnzoo/models/layers/fused.py) against plain autograd: same values, same
gradients, on every chunking, including the corner cases of PNA's aggregators (ties, clamped std, nodes
without incoming edges)."""

from __future__ import annotations

import pytest
import torch

from nnzoo.config import model_options
from nnzoo.data.weights import DataInfo, WeightBatch, layer_statistics
from nnzoo.models import create_model
from nnzoo.models.layers import fused
from nnzoo.models.layers.fused import EdgeMLP, FiLMMessageAggregate, fused_enabled, fused_kernels, node_chunks
from nnzoo.models.layers.pna import EdgeUpdate, FiLMPNAConv, log_degree
from nnzoo.nets import siren_spec
from tests.conftest import random_params


def _graph(in_degree: list[int], num_sources: int | None = None, seed: int = 0):
    """Target-sorted edges with the given in-degrees; sources drawn at random among the nodes."""
    g = torch.Generator().manual_seed(seed)
    deg = torch.tensor(in_degree)
    n = len(in_degree)
    dst = torch.repeat_interleave(torch.arange(n), deg)
    src = torch.randint(0, num_sources or n, (len(dst),), generator=g)
    return torch.stack([src, dst]), deg


@pytest.mark.parametrize("chunk_edges", [1, 3, 7, 1000])
def test_node_chunks_cover_every_edge_once_on_node_boundaries(chunk_edges):
    deg = torch.tensor([0, 2, 5, 0, 1, 9, 3, 0])
    chunks = node_chunks(deg, chunk_edges)
    ends = [0] + deg.cumsum(0).tolist()
    assert chunks[0][0] == 0 and chunks[-1][1] == len(deg)
    for (n0, n1, e0, e1), nxt in zip(chunks, chunks[1:] + [None]):
        assert (e0, e1) == (ends[n0], ends[n1])  # whole nodes
        assert e1 - e0 <= chunk_edges or n1 - n0 == 1  # within budget unless one node exceeds it
        if nxt is not None:
            assert nxt[0] == n1
    assert sum(e1 - e0 for *_, e0, e1 in chunks) == int(deg.sum())


def _conv_inputs(in_degree, dim=6, dtype=torch.float64, seed=0):
    edge_index, deg = _graph(in_degree, seed=seed)
    torch.manual_seed(seed)
    conv = FiLMPNAConv(dim, dim, 1.3, ("mean", "min", "max", "std", "sum"),
                       ("identity", "amplification", "attenuation")).to(dtype)
    x = torch.randn(len(in_degree), dim, dtype=dtype, requires_grad=True)
    edge_attr = torch.randn(edge_index.shape[1], dim, dtype=dtype, requires_grad=True)
    return conv, x, edge_index, edge_attr, deg


def _run(module_call, fused_on, tensors, params, low=-1.0):
    for t in tensors + params:
        t.grad = None
    with fused_kernels(fused_on):
        out = module_call()
    weights = torch.linspace(low, 1, out.numel(), dtype=out.dtype).view_as(out)
    (out * weights).sum().backward()
    return out.detach(), [t.grad.clone() for t in tensors + params]


def _assert_paths_agree(plain_call, tensors, params=(), chunked_call=None, low=-1.0):
    """Values and gradients of ``plain_call`` with the chunked kernels off and of ``chunked_call`` (default:
    the same call) with them on agree; returns the plain path's output and gradients."""
    params = list(params)
    plain, plain_grads = _run(plain_call, False, tensors, params, low)
    chunked, chunked_grads = _run(chunked_call or plain_call, True, tensors, params, low)
    torch.testing.assert_close(chunked, plain, rtol=1e-12, atol=1e-12)
    assert len(chunked_grads) == len(plain_grads) == len(tensors) + len(params)
    for a, b in zip(chunked_grads, plain_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    return plain, plain_grads


@pytest.mark.parametrize("chunk_edges", [1, 4, 50])
def test_film_pna_conv_chunked_equals_plain_values_and_gradients(chunk_edges):
    # degree 0 (no messages), degree 1 (std clamped), larger degrees spanning chunk boundaries
    conv, x, edge_index, edge_attr, deg = _conv_inputs([0, 1, 3, 7, 0, 2, 5, 1, 9])
    log_deg = log_degree(deg)
    chunks = node_chunks(deg, chunk_edges)
    _assert_paths_agree(lambda: conv(x, edge_index, edge_attr, deg, log_deg, chunks), [x, edge_attr],
                        conv.parameters())


def test_min_max_ties_share_the_gradient_like_segment_reduce():
    """Two identical edges into node 1 (same source, same feature): equal messages, a tie for min and max.

    Tied elements share the output's gradient equally, as ``torch.segment_reduce`` does for positive
    gradients (torch 2.13's CPU backward gives a *negative* gradient whole to every tied element, so the
    comparison uses positive output weights; ties need bit-identical messages, which real weights never give).
    """
    dim = 4
    torch.manual_seed(0)
    edge_index = torch.tensor([[2, 2, 0, 3], [1, 1, 1, 2]])
    deg = torch.tensor([0, 3, 1, 0])
    edge_attr = torch.randn(4, dim, dtype=torch.float64)
    edge_attr[1] = edge_attr[0]
    edge_attr.requires_grad_()
    x = torch.randn(4, dim, dtype=torch.float64, requires_grad=True)
    film_w = torch.randn(2 * dim, dim, dtype=torch.float64, requires_grad=True)
    film_b = torch.randn(2 * dim, dtype=torch.float64, requires_grad=True)
    aggregators = ("min", "max")

    def plain():
        from nnzoo.models.layers.pna import aggregate
        film = torch.nn.functional.linear(edge_attr, film_w, film_b)
        gathered = x.index_select(0, edge_index[1]) + x.index_select(0, edge_index[0])
        return aggregate(torch.addcmul(film[:, dim:], film[:, :dim], gathered), deg, aggregators)

    def chunked():
        return FiLMMessageAggregate.apply(edge_attr, film_w, film_b, x, x, edge_index[0], edge_index[1], deg,
                                          node_chunks(deg, 2), aggregators)

    _, grads = _assert_paths_agree(plain, [edge_attr, x, film_w, film_b], chunked_call=chunked, low=0.1)
    assert grads[0][0].abs().sum() > 0  # the tied edges do get gradient ...
    torch.testing.assert_close(grads[0][0], grads[0][1])  # ... shared equally


@pytest.mark.parametrize("residual", [False, True])
def test_edge_update_chunked_equals_plain(residual):
    _, x, edge_index, edge_attr, deg = _conv_inputs([2, 0, 4, 1, 6, 3])
    update = EdgeUpdate(6, 6, residual).double()
    _assert_paths_agree(lambda: update(x, edge_index, edge_attr, deg, node_chunks(deg, 5)), [x, edge_attr],
                        update.parameters())


def test_edge_mlp_is_used_on_the_chunked_path(monkeypatch):
    calls = []
    real = EdgeMLP.apply
    monkeypatch.setattr(EdgeMLP, "apply", lambda *a: calls.append(1) or real(*a))
    _, x, edge_index, edge_attr, deg = _conv_inputs([2, 1, 3])
    EdgeUpdate(6, 6).double()(x, edge_index, edge_attr, deg)
    assert calls


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_ng_gnn_training_gradients_equal_with_and_without_chunks(monkeypatch, dtype, tol):
    """The whole NG-GNN (default config) on real-format SIRENs: one training step's loss and every gradient."""
    monkeypatch.setattr(fused, "CHUNK_EDGES", 500)  # many chunks even on a small batch
    spec = siren_spec()
    params = random_params(spec, 6).to(dtype)
    info = DataInfo("mnist_inr", "classification", 10, (spec,), stats=layer_statistics([spec], [params]))
    batch = WeightBatch([spec], [params], torch.arange(6) % 10)
    torch.manual_seed(0)
    model = create_model("gnn", info, **model_options("gnn")).to(dtype).eval()  # no dropout: same masks
    results = []
    for on in (False, True):
        model.zero_grad()
        with fused_kernels(on):
            loss = torch.nn.functional.cross_entropy(model(batch), batch.y)
            loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (loss_plain, grads_plain), (loss_fused, grads_fused) = results
    torch.testing.assert_close(loss_fused, loss_plain, rtol=tol, atol=tol)
    for name, g in grads_plain.items():
        torch.testing.assert_close(grads_fused[name], g, rtol=tol, atol=tol * g.abs().max().item(), msg=name)


def test_chunked_kernels_only_on_cpu_float_without_autocast():
    x = torch.zeros(2, 2)
    assert fused_enabled(x)
    assert not fused_enabled(x.bfloat16())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not fused_enabled(x)
    with fused_kernels(False):
        assert not fused_enabled(x)
    assert fused_enabled(x)


def test_fourier_encoder_chunked_equals_plain(monkeypatch):
    from nnzoo.models.layers.encoders import FeatureEncoder
    monkeypatch.setattr(fused, "CHUNK_EDGES", 7)
    torch.manual_seed(0)
    encoder = FeatureEncoder(3, 5, fourier_features=16, layers=2).double()
    raw = torch.randn(30, 3, dtype=torch.float64)  # raw weights: no gradient, the chunked case
    _assert_paths_agree(lambda: encoder(raw), [], encoder.parameters())


def test_clamped_std_passes_no_gradient_like_plain_autograd():
    """PNA's std is sqrt(max(var, 1e-5)): a node whose messages nearly agree (variance below 1e-5) gets no
    gradient through std.  Node 1 receives two edges from one source whose features differ by 1e-4."""
    dim = 4
    torch.manual_seed(0)
    edge_index = torch.tensor([[2, 2, 0, 3, 1], [1, 1, 2, 2, 2]])
    deg = torch.tensor([0, 2, 3, 0])
    edge_attr = torch.randn(5, dim, dtype=torch.float64)
    edge_attr[1] = edge_attr[0] + 1e-4
    edge_attr.requires_grad_()
    x = torch.randn(4, dim, dtype=torch.float64, requires_grad=True)
    film_w = torch.randn(2 * dim, dim, dtype=torch.float64, requires_grad=True)
    film_b = torch.randn(2 * dim, dtype=torch.float64, requires_grad=True)

    def plain():
        from nnzoo.models.layers.pna import aggregate
        film = torch.nn.functional.linear(edge_attr, film_w, film_b)
        gathered = x.index_select(0, edge_index[1]) + x.index_select(0, edge_index[0])
        return aggregate(torch.addcmul(film[:, dim:], film[:, :dim], gathered), deg, ("std",))

    def chunked():
        return FiLMMessageAggregate.apply(edge_attr, film_w, film_b, x, x, edge_index[0], edge_index[1], deg,
                                          node_chunks(deg, 2), ("std",))

    out, grads = _assert_paths_agree(plain, [edge_attr, x, film_w, film_b], chunked_call=chunked)
    assert out[1].eq(1e-5 ** 0.5).all()  # node 1 clamped ...
    assert grads[0][:2].abs().max() == 0  # ... so its edges get no gradient
    assert grads[0][2:].abs().max() > 0


def test_regular_layout_finds_the_runs_of_a_one_architecture_batch():
    from nnzoo.graphs import batch_to_graph
    from nnzoo.models.layers.fused import regular_layout
    from nnzoo.nets.spec import mlp_spec
    spec = siren_spec()
    graph = batch_to_graph([spec], [random_params(spec, 3)], reverse_edges=True)
    b, n_t, e_t, runs = regular_layout(graph.in_degree, graph.num_graphs)
    # 2-32-32-1 with reversed edges: inputs get 32, first hidden 2 + 32, second hidden 32 + 1, output 32
    assert (b, n_t, e_t) == (3, 67, 2 * (2 * 32 + 32 * 32 + 32))
    assert [(k, d) for _, k, d, _ in runs] == [(2, 32), (32, 34), (32, 33), (1, 32)]
    other = mlp_spec([2, 16, 1], "sine")
    mixed = batch_to_graph([spec, other], [random_params(spec, 2), random_params(other, 2)], reverse_edges=True)
    assert regular_layout(mixed.in_degree, mixed.num_graphs) is None  # two architectures: segment path


def test_dense_run_aggregation_equals_segment_reduce():
    """Every aggregator on B = 3 copies of a layout with runs of degree 0, 1, 2 and 3, including a node whose
    two messages nearly agree (clamped std) and a tie for the maximum."""
    from nnzoo.models.layers.fused import DenseRunAggregate, regular_layout
    from nnzoo.models.layers.pna import aggregate
    degrees = torch.tensor([0, 2, 2, 3, 1, 1, 0, 3])
    deg = degrees.repeat(3)
    layout = regular_layout(deg, 3)
    assert [(k, d) for _, k, d, _ in layout[3]] == [(1, 0), (2, 2), (1, 3), (2, 1), (1, 0), (1, 3)]
    torch.manual_seed(0)
    messages = torch.randn(int(deg.sum()), 5, dtype=torch.float64)
    messages[1] = messages[0] + 1e-4  # node 1 of graph 0: variance ~2.5e-9, clamped
    messages[6] = messages[4]  # node 3 of graph 0: its first and third messages tie
    messages[6, 0] = messages[4:7, 0].max() + 1.0
    messages[4, 0] = messages[6, 0]
    messages.requires_grad_()
    aggregators = ("mean", "min", "max", "std", "sum")
    results = []
    for dense in (False, True):
        messages.grad = None
        out = (DenseRunAggregate.apply(messages, layout, aggregators) if dense
               else aggregate(messages, deg, aggregators))
        (out * torch.linspace(0.1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        results.append((out.detach(), messages.grad.clone()))
    (out_a, grad_a), (out_b, grad_b) = results
    torch.testing.assert_close(out_b, out_a, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad_b, grad_a, rtol=1e-10, atol=1e-12)


def test_weight_batch_split_keeps_order_groups_and_sizes():
    from nnzoo.nets.spec import mlp_spec
    spec, other = siren_spec(), mlp_spec([2, 16, 1], "sine")
    batch = WeightBatch([spec, other], [random_params(spec, 7), random_params(other, 5, seed=1)], torch.arange(12))
    for size in (1, 3, 4, 12, 50):
        parts = batch.split(size)
        assert all(0 < len(p) <= size for p in parts)
        assert torch.equal(torch.cat([p.y for p in parts]), batch.y)
        for spec_, rows in ((spec, batch.params[0]), (other, batch.params[1])):
            got = torch.cat([p for part in parts for s, p in zip(part.specs, part.params) if s is spec_])
            assert torch.equal(got, rows)
    assert [len(p) for p in batch.split(4)] == [4, 3, 4, 1]  # a part joins the previous one only if it fits
    assert [len(p.specs) for p in batch.split(12)] == [2]  # both groups in one sub-batch
    with pytest.raises(ValueError, match=">= 1"):
        batch.split(0)


@pytest.mark.parametrize("name", ["gnn", "transformer"])
def test_network_chunks_give_the_full_batch_outputs_and_gradients(name, monkeypatch):
    """Forward over sub-batches (so no per-step tensor leaves the heap) equals one forward on the batch."""
    spec = siren_spec()
    params = random_params(spec, 6, scale=0.3)
    batch = WeightBatch([spec], [params], torch.arange(6) % 10)
    info = DataInfo("mnist_inr", "classification", 10, (spec,), stats=layer_statistics([spec], [params]))
    torch.manual_seed(0)
    model = create_model(name, info, **model_options(name)).double().eval()
    batch = batch.replace(params=[params.double()])
    calls = []
    forward = model._predict
    monkeypatch.setattr(model, "_predict", lambda b: calls.append(len(b)) or forward(b))
    results = []
    for budget in (1 << 40, (model.edge_bytes if name == "gnn" else model.pair_bytes) * 4):
        monkeypatch.setattr(fused, "HEAP_TENSOR_BYTES", budget)
        model.zero_grad()
        out = model(batch)
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        results.append((out.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    assert calls == [6, 3, 3]  # one call, then two balanced sub-batches of at most 4
    (out_a, grads_a), (out_b, grads_b) = results
    torch.testing.assert_close(out_b, out_a, rtol=1e-10, atol=1e-12)
    for a, b in zip(grads_a, grads_b):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-12)
