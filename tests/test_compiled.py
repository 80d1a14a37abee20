"""The compiled path (``compile=true``, nnzoo/models/compiling.py): outputs and gradients equal to the eager
path, no graph breaks, one graph for every batch size, and the run option's plumbing.

Compiling costs tens of seconds a graph on this CPU, so the models here are the reference architectures at
small widths; Inductor's cache makes a second identical compile cheap.
"""

from __future__ import annotations

import pytest
import torch

from nnzoo.data.weights import DataInfo, WeightBatch, layer_statistics
from nnzoo.models import create_model
from nnzoo.models.compiling import compile_counters, compile_model, eager_core, plan_compile
from nnzoo.models.layers.fused import fused_kernels
from nnzoo.nets import siren_spec
from nnzoo.nets.spec import mlp_spec
from tests.conftest import random_params

SMALL = {"gnn": dict(hidden=8, layers=3, probes=4, fourier_features=8),
         "transformer": dict(d_node=8, d_edge=8, d_attn=8, d_node_hidden=8, d_edge_hidden=8, heads=2, layers=2,
                             probes=4, fourier_features=8),
         "dwsnet": dict(hidden=4, layers=2, heads=2)}


def _batch(specs, sizes, dtype):
    params = [random_params(s, n, seed=i, scale=0.3).to(dtype) for i, (s, n) in enumerate(zip(specs, sizes))]
    info = DataInfo("mnist_inr", "classification", 10, tuple(specs), stats=layer_statistics(list(specs), params))
    return info, WeightBatch(list(specs), params, torch.arange(sum(sizes)) % 10)


def _outputs_and_grads(model, batch):
    model.zero_grad()
    out = model(batch)
    (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
    return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _assert_close(got, want, rtol, atol):
    (out_a, grads_a), (out_b, grads_b) = want, got
    torch.testing.assert_close(out_b, out_a, rtol=rtol, atol=atol)
    assert grads_a.keys() == grads_b.keys() and grads_a
    for name, g in grads_a.items():
        scale = g.abs().max().clamp_min(1e-30)  # relative to the parameter's largest entry
        assert (grads_b[name] - g).abs().max() / scale <= rtol, name


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("name", ["gnn", "transformer", "dwsnet"])
def test_compiled_equals_eager_in_float64(name):
    """Outputs and every gradient of the compiled layers equal, in float64, both eager paths': the default
    one (hand-written CPU kernels, dense statistics) and the plain formulas (segment reductions); no graph
    break; eval mode, so dropout draws no random numbers."""
    info, batch = _batch([siren_spec()], [5], torch.float64)
    torch.manual_seed(0)
    model = create_model(name, info, **SMALL[name]).double().eval()
    eager = _outputs_and_grads(model, batch)
    with fused_kernels(False):
        plain = _outputs_and_grads(model, batch)
    compile_model(model)
    compiled = _outputs_and_grads(model, batch)
    _assert_close(compiled, eager, rtol=1e-9, atol=1e-12)
    _assert_close(compiled, plain, rtol=1e-9, atol=1e-12)
    counts = compile_counters()
    assert counts["graph_breaks"] == 0, counts
    assert counts["frames_compiled"] == 1, counts
    eager_core(model)
    _assert_close(_outputs_and_grads(model, batch), eager, rtol=0, atol=0)  # the eager method again


def test_compiled_gnn_float32_tolerance_and_one_graph_for_every_batch_size():
    """float32 at the stated tolerance (1e-4 of each tensor's largest entry); batch sizes 3, 5 and 7 need
    one recompilation (dynamo marks the batch axis dynamic on the second size) and no more."""
    torch.manual_seed(0)
    info, _ = _batch([siren_spec()], [8], torch.float32)
    model = create_model("gnn", info, **SMALL["gnn"]).eval()
    batches = [_batch([siren_spec()], [n], torch.float32)[1] for n in (3, 5, 7)]
    eager = [_outputs_and_grads(model, b) for b in batches]
    compile_model(model)
    for b, want in zip(batches, eager):
        _assert_close(_outputs_and_grads(model, b), want, rtol=1e-4, atol=1e-6)
    counts = compile_counters()
    assert counts["graph_breaks"] == 0 and counts["recompilations"] <= 1, counts


def test_compiled_gnn_on_a_batch_of_two_architectures():
    """Mixed architectures have no dense layout: the compiled layers take the segment reductions."""
    info, batch = _batch([siren_spec(), mlp_spec([2, 16, 1], "sine")], [3, 2], torch.float64)
    torch.manual_seed(0)
    model = create_model("gnn", info, **SMALL["gnn"]).double().eval()
    eager = _outputs_and_grads(model, batch)
    compile_model(model)
    _assert_close(_outputs_and_grads(model, batch), eager, rtol=1e-9, atol=1e-12)
    assert compile_counters()["graph_breaks"] == 0


def test_dense_layer_norm_and_aggregation_equal_the_segment_ones():
    """The formulas the compiled path runs (dense statistics over a one-architecture batch), eager."""
    from nnzoo.graphs import batch_to_graph
    from nnzoo.models.layers.fused import regular_layout
    from nnzoo.models.layers.norm import GraphLayerNorm
    from nnzoo.models.layers.pna import aggregate, dense_aggregate
    spec = siren_spec()
    graph = batch_to_graph([spec], [random_params(spec, 3)], reverse_edges=True)
    layout = regular_layout(graph.in_degree, graph.num_graphs)
    torch.manual_seed(0)
    messages = torch.randn(graph.edge_index.shape[1], 4, dtype=torch.float64, requires_grad=True)
    aggregators = ("mean", "min", "max", "std", "sum")
    results = []
    for dense in (False, True):
        messages.grad = None
        out = (dense_aggregate(messages, layout, aggregators) if dense
               else aggregate(messages, graph.in_degree, aggregators))
        (out * torch.linspace(0.1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        results.append((out.detach(), messages.grad.clone()))
    torch.testing.assert_close(results[1][0], results[0][0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(results[1][1], results[0][1], rtol=1e-10, atol=1e-12)
    norm = GraphLayerNorm(4).double()
    x = torch.randn(graph.num_nodes, 4, dtype=torch.float64)
    counts = torch.bincount(graph.batch)
    torch.testing.assert_close(norm(x, counts, layout[1]), norm(x, counts), rtol=1e-12, atol=1e-12)


def test_plan_compile_pays_back_rule(monkeypatch):
    from nnzoo.errors import NnzooError
    from nnzoo.models import compiling
    info, _ = _batch([siren_spec()], [2], torch.float32)
    gnn, mlp = create_model("gnn", info, **SMALL["gnn"]), create_model("mlp", info)
    monkeypatch.setattr(compiling, "PAYS_BACK_AFTER", {("NeuralGraphGNN", "cpu", 1): 1000})
    assert plan_compile("auto", gnn, "cpu", 5000, threads=1)[0] is True
    use, why = plan_compile("auto", gnn, "cpu", 260, threads=1)
    assert use is False and "pays back after ~1,000 steps (cpu, 1 thread)" in why and "plans 260" in why
    assert plan_compile("auto", gnn, "cpu", 1e6, threads=2) == (False, "")  # not measured at 2 threads: eager
    assert plan_compile("auto", gnn, "cuda", 1e6) == (False, "")
    assert plan_compile("auto", mlp, "cpu", 1e6) == (False, "")
    assert plan_compile(False, gnn, "cpu", 1e6) == (False, "")
    assert plan_compile(True, gnn, "cpu", 1)[0] is True
    with pytest.raises(NnzooError, match="no compiled path"):
        plan_compile(True, mlp, "cpu", 1)


def test_compile_option_is_checked_before_any_work(tiny_inr_root, tmp_path, capsys):
    from nnzoo.cli import main
    from tests.conftest import tiny_fit_args
    args = tiny_fit_args(tiny_inr_root, tmp_path / "runs")
    mlp_args = [a if a != "gnn" else "mlp" for a in args if not a.startswith("model.")]
    assert main(mlp_args + ["compile=true"]) == 2
    assert "compile=true: model 'mlp' has no compiled path" in capsys.readouterr().err
    assert main(args + ["compile=maybe"]) == 2
    err = capsys.readouterr().err
    assert "compile" in err and "true, false or auto" in err
    assert not (tmp_path / "runs").exists()


def test_fit_with_compile_true_trains_and_saves_an_eager_checkpoint(tiny_inr_root, tmp_path, capsys):
    """A compiled run's checkpoint holds the eager model's keys, so ``nnzoo test`` loads it without compiling."""
    from nnzoo.cli import main
    from tests.conftest import tiny_fit_args
    assert main(tiny_fit_args(tiny_inr_root, tmp_path / "runs", "compile=true", "trainer.max_epochs=1")) == 0
    printed = capsys.readouterr()
    assert "compile=true: NeuralGraphGNN's layers compiled" in printed.out + printed.err
    ckpt = next((tmp_path / "runs").rglob("last.ckpt"))
    state = torch.load(ckpt, weights_only=True, map_location="cpu")["state_dict"]
    assert state and not any("_orig_mod" in k for k in state)
    assert main(["test", "--checkpoint", str(ckpt), "--cpu"]) == 0
