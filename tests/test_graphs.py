"""Network -> graph: structure, features, batching (PyG Batch vs. index arithmetic)."""

import pytest
import torch
from torch_geometric.data import Batch

from nnzoo.graphs import NODE_KIND_HIDDEN, NODE_KIND_INPUT, NODE_KIND_OUTPUT, batch_to_graph, graph_template, network_to_data
from nnzoo.nets import mlp_spec, siren_spec, unflatten
from tests.conftest import random_params


@pytest.mark.parametrize("widths", [(2, 32, 32, 1), (3, 5, 7, 4, 2), (2, 1)])
def test_mlp_graph_has_a_node_per_neuron_and_an_edge_per_weight(widths):
    spec = mlp_spec(widths)
    p = random_params(spec, 1)[0]
    data = network_to_data(spec, p)
    assert data.num_nodes == sum(widths)
    assert data.edge_index.shape[1] == sum(a * b for a, b in zip(widths[:-1], widths[1:]))
    layers = unflatten(p[None], spec)
    offsets = torch.tensor((0,) + widths).cumsum(0)
    # every edge carries exactly the weight W[target, source] of its layer
    for (src, dst), value, layer in zip(data.edge_index.t().tolist(), data.edge_attr[:, 0].tolist(),
                                        data.edge_layer.tolist()):
        w = layers[layer]["weight"][0]
        assert value == w[dst - offsets[layer + 1], src - offsets[layer]].item()
    # biases are node features, inputs have none
    assert torch.all(data.x[: widths[0]] == 0)
    expected_bias = torch.cat([layers[i]["bias"][0] for i in range(len(widths) - 1)])
    assert torch.equal(data.x[widths[0]:, 0], expected_bias)
    assert data.node_kind[: widths[0]].eq(NODE_KIND_INPUT).all()
    assert data.node_kind[-widths[-1]:].eq(NODE_KIND_OUTPUT).all()
    assert data.node_kind[widths[0]:-widths[-1]].eq(NODE_KIND_HIDDEN).all()


def test_siren_graph_size_matches_the_reference():
    t = graph_template(siren_spec())
    assert (t.num_nodes, t.num_edges) == (67, 1120)


def test_positional_slots_are_unique_for_io_and_shared_per_hidden_layer():
    t = graph_template(mlp_spec([2, 4, 4, 3]))
    assert t.node_pos.tolist() == [0, 1] + [2] * 4 + [3] * 4 + [-3, -2, -1]


def test_index_arithmetic_batching_equals_pyg_batch():
    spec_a, spec_b = siren_spec(), mlp_spec([2, 5, 3, 1])
    pa, pb = random_params(spec_a, 5), random_params(spec_b, 3, seed=1)
    fast = batch_to_graph([spec_a, spec_b], [pa, pb], reverse_edges=True)
    slow = Batch.from_data_list([network_to_data(spec_a, r, reverse_edges=True) for r in pa]
                                + [network_to_data(spec_b, r, reverse_edges=True) for r in pb])
    for key in ("x", "edge_index", "edge_attr", "batch", "node_pos", "edge_layer", "edge_dir", "in_degree"):
        assert torch.equal(getattr(fast, key), getattr(slow, key)), key
    assert fast.num_graphs == 8
    # output_index points at each graph's output neurons
    assert torch.equal(fast.batch[fast.output_index[:, 0]], torch.arange(8))


def test_reverse_edges_double_the_edges_and_stay_sorted_by_target():
    spec = siren_spec()
    g = batch_to_graph([spec], [random_params(spec, 4)], reverse_edges=True)
    assert g.edge_index.shape[1] == 2 * 4 * 1120
    assert torch.all(g.edge_index[1][1:] >= g.edge_index[1][:-1])
    assert torch.equal(torch.bincount(g.edge_index[1], minlength=g.x.shape[0]), g.in_degree)
    assert int(g.edge_dir.sum()) == 4 * 1120
    # the reversed copy of an edge carries the same feature
    forward, backward = g.edge_dir == 0, g.edge_dir == 1
    assert torch.equal(g.edge_attr[forward].sort(0).values, g.edge_attr[backward].sort(0).values)


def test_linear_edges_are_flagged_in_cnn_graphs():
    from nnzoo.nets.spec import LayerSpec, NetworkSpec
    spec = NetworkSpec((LayerSpec("conv", 1, 4, (3, 3), activation="relu"), LayerSpec("linear", 4, 3)))
    g = batch_to_graph([spec], [random_params(spec, 2)], edge_kernel=(3, 3))
    assert int(g.edge_linear.sum()) == 2 * 4 * 3 and int((~g.edge_linear).sum()) == 2 * 1 * 4
    assert torch.all(g.edge_layer[g.edge_linear] == 1)




def test_docs_python_graph_example_runs(tmp_path, monkeypatch):
    """The graph example of docs/usage.md, run as written on a SIREN file in the public layout."""
    import re
    from pathlib import Path

    from nnzoo.nets import params_to_state_dict, siren_init

    page = (Path(__file__).resolve().parents[1] / "docs" / "usage.md").read_text()
    (code,) = [c for c in re.findall(r"```python\n(.*?)```", page, re.S) if "batch_to_graph" in c]
    spec = siren_spec()
    torch.save(params_to_state_dict(siren_init(1, spec)[0], spec), tmp_path / "model_final.pth")
    monkeypatch.chdir(tmp_path)
    names = {}
    exec(compile(code, "docs/usage.md", "exec"), names)
    assert names["flat"].shape == (1185,)
    assert names["graph"].num_nodes == 67 and names["graph"].edge_index.shape[1] == 1120  # as its comments say
    assert names["batch"].num_graphs == 2 and names["batch"].num_nodes == 134
