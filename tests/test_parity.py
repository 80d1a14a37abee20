"""The default graph models are the reference models: sizes, and building blocks checked against
independent definitions (PyG's own layers, the reference's formulas written out naively)."""

import math
import re
from pathlib import Path

import pytest
import torch
from torch_geometric.nn import LayerNorm as PygLayerNorm
from torch_geometric.nn.aggr import DegreeScalerAggregation

from nnzoo.config import compose, to_container
from nnzoo.data.weights import DataInfo
from nnzoo.graphs import graph_template
from nnzoo.models import count_parameters, create_model
from nnzoo.models.gnn import forward_log_degree
from nnzoo.models.layers.fused import fused_kernels
from nnzoo.models.layers.graph_input import with_direction
from nnzoo.models.layers.norm import GraphLayerNorm
from nnzoo.models.layers.pna import aggregate, log_degree
from nnzoo.models.layers.relational_attention import RelationalAttention
from nnzoo.nets import siren_spec
from nnzoo.nets.spec import LayerSpec, NetworkSpec

MNIST_INR = DataInfo("mnist_inr", "classification", 10, (siren_spec(),), {})

SMALL_CNN_ZOO = DataInfo("cnn_zoo", "regression", 1, (NetworkSpec(
    (LayerSpec("conv", 1, 16, (3, 3), stride=2, activation="relu"),
     LayerSpec("conv", 16, 16, (3, 3), stride=2, activation="relu"),
     LayerSpec("conv", 16, 16, (3, 3), stride=2, activation="relu"), LayerSpec("linear", 16, 10)),
    input_kind="image"),), {})

REFERENCE_COUNTS = {  # measured by building the reference models (see the parity table, docs/models.md)
    ("gnn", "mnist_inr", 0): 92_010, ("gnn", "mnist_inr", 64): 100_714,  # mkofinas/neural-graphs
    ("transformer", "mnist_inr", 0): 376_586, ("transformer", "mnist_inr", 64): 393_866,
    ("dwsnet", "mnist_inr", None): 552_650,  # AvivNavon/DWSNets, MNIST config
    ("mlp", "mnist_inr", None): 42_762,  # DWSNets' MLP baseline
    ("statnn", "cnn_zoo", None): 1_059_001,  # NFN's StatNet on the Small CNN Zoo
    # github AllanYangZhou/nfn models built with nfn==0.1.2
    ("nfn_hnp", "mnist_inr", None): 68_844_330,  # classify_siren nfnet/inv_ff.yaml (paper: 68.8M)
    ("nfn_np", "mnist_inr", None): 45_668_650,  # classify_siren nfnet/inv_ff_io.yaml (45.7M)
    ("nfn_hnp", "cnn_zoo", None): 2_811_743,  # predict_gen nfnet/hnp_inv.yaml (2.81M)
    ("nfn_np", "cnn_zoo", None): 2_031_390,  # predict_gen nfnet/np_inv.yaml
}
DATA = {"mnist_inr": MNIST_INR, "cnn_zoo": SMALL_CNN_ZOO}
COUNTS = REFERENCE_COUNTS


@pytest.mark.parametrize("name, data, probes", COUNTS)
def test_default_models_have_the_reference_parameter_count(name, data, probes):
    """The model as ``nnzoo fit --model name --data data`` builds it: its config with the data's recipe."""
    options = {k: v for k, v in to_container(compose(name, data).model).items() if k != "name"}
    if probes is not None:
        options["probes"] = probes
    assert count_parameters(create_model(name, DATA[data], **options)) == COUNTS[name, data, probes]


def test_graph_layernorm_is_the_reference_norm_applied_to_each_network():
    """The reference calls PyG ``LayerNorm(mode="graph")`` without a batch vector; on a batch of one network
    that is exactly per-network normalisation, which nnzoo applies to every network of a batch."""
    torch.manual_seed(0)
    sizes = torch.tensor([5, 9, 3])
    x = torch.randn(int(sizes.sum()), 8) * 3 + 1
    ours = GraphLayerNorm(8)
    ours.weight.data.uniform_(0.5, 2)
    ours.bias.data.normal_()
    pyg = PygLayerNorm(8, mode="graph")
    pyg.weight.data.copy_(ours.weight.data)
    pyg.bias.data.copy_(ours.bias.data)
    expected = torch.cat([pyg(part) for part in x.split(sizes.tolist())])
    torch.testing.assert_close(ours(x, sizes), expected, atol=1e-6, rtol=1e-6)
    # and unlike the reference on a whole batch, one network's output does not depend on the others
    assert not torch.allclose(pyg(x)[:5], expected[:5], atol=1e-3)


def test_pna_aggregation_and_scalers_match_pyg_with_the_forward_degree_histogram():
    """Aggregators {mean, min, max, std} x scalers {identity, amplification} as PyG's PNAConv computes them,
    with the degree histogram the reference builds from the layout's forward edges.  (PyG >= 2.5 also zeroes
    std <= sqrt(1e-5); the reference ran PyG 2.3, which does not: messages here keep every std above it.)"""
    spec = siren_spec()
    template = graph_template(spec, reverse_edges=True)  # messages flow both ways ...
    forward = graph_template(spec).in_degree  # ... but the histogram counts forward edges (reference)
    torch.manual_seed(1)
    messages = torch.randn(template.num_edges, 4)
    ours = aggregate(messages, template.in_degree, ("mean", "min", "max", "std"))
    log_deg = log_degree(template.in_degree)
    ours = torch.cat([ours, ours * log_deg / forward_log_degree(DataInfo("t", "classification", 10, (spec,)))], -1)
    histogram = torch.bincount(forward)
    pyg = DegreeScalerAggregation(["mean", "min", "max", "std"], ["identity", "amplification"], histogram)
    reference = pyg(messages, template.edge_index[1], dim_size=template.num_nodes)
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)
    # PyG 2.3's std is sqrt(max(var, 1e-5)): a node whose messages vary by less keeps exactly sqrt(1e-5)
    tiny = torch.tensor([[1.0], [1.002], [0.998], [1.0]])  # variance 2e-6
    std = aggregate(tiny, torch.tensor([4]), ("std",))
    torch.testing.assert_close(std, torch.tensor([[math.sqrt(1e-5)]]))


def test_reversed_edges_carry_direction_in_the_raw_feature():
    w = torch.tensor([[0.5], [-2.0]])
    out = with_direction(w, torch.tensor([0, 1]))
    assert out.tolist() == [[0.5, 0.0, 0.5], [0.0, -2.0, -2.0]]  # [W, W^T, W + W^T] at (i, j) and (j, i)


@pytest.mark.parametrize("expanded", [True, False], ids=["expanded-cpu", "as-written"])
def test_relational_attention_is_the_reference_formula(expanded):
    """q_ij = q_i + Q e_ij, k_ij = k_j + K e_ij (edge-edge term included), v_ij = v_j * M e_ij + V e_ij,
    softmax over j with scale 1/sqrt(d_attn), per head; written out naively here.  On CPU the layer computes
    the logits expanded (Q e . K e, plus the cross terms as products with the edges); elsewhere as written.
    Both are compared, values *and gradients*, in float64, with a padded network in the batch."""
    torch.manual_seed(2)
    b, n, d_node, d_edge, d_attn, h = 2, 5, 12, 6, 16, 4
    attn = RelationalAttention(d_node, d_edge, d_attn, h, modulate_v=True).double()
    x = torch.randn(b, n, d_node, dtype=torch.float64, requires_grad=True)
    e = torch.randn(b, n, n, d_edge, dtype=torch.float64, requires_grad=True)
    key_mask = torch.tensor([[True] * n, [True] * (n - 2) + [False] * 2])
    dh = d_attn // h
    qkv = (x @ attn.node_qkv.weight.t()).view(b, n, h, 3, dh)
    q, k, v = qkv[..., 0, :], qkv[..., 1, :], qkv[..., 2, :]
    edge = (e @ attn.edge_qkv.weight.t()).view(b, n, n, h, 4, dh)
    rows = []
    for bi in range(b):
        keys = [j for j in range(n) if key_mask[bi, j]]
        for i in range(n):
            for hi in range(h):
                logits = torch.stack([(q[bi, i, hi] + edge[bi, i, j, hi, 0]) @ (k[bi, j, hi] + edge[bi, i, j, hi, 1])
                                      for j in keys]) / math.sqrt(d_attn)
                weights = logits.softmax(0)
                values = torch.stack([v[bi, j, hi] * edge[bi, i, j, hi, 3] + edge[bi, i, j, hi, 2] for j in keys])
                rows.append(weights @ values)
    expected = attn.out(torch.stack(rows).view(b, n, d_attn))
    with fused_kernels(expanded):
        got = attn(x, e, key_mask)
    torch.testing.assert_close(got, expected, atol=1e-10, rtol=1e-10)
    weights = torch.randn_like(got)
    inputs = [x, e, *attn.parameters()]
    for g_got, g_expected in zip(torch.autograd.grad((got * weights).sum(), inputs),
                                 torch.autograd.grad((expected * weights).sum(), inputs)):
        torch.testing.assert_close(g_got, g_expected, atol=1e-10, rtol=1e-10)


# ----------------------------------------------------------- the docs quote these facts; keep the copies true
DOCS = Path(__file__).resolve().parents[1] / "docs"


def _numbers(text: str) -> list[int]:
    return [int(n.replace(",", "")) for n in re.findall(r"\d[\d,]{2,}", text)]


def test_docs_parity_table_quotes_the_measured_counts():
    rows = {}
    for line in (DOCS / "models.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        match = re.search(r"\(`(\w+)`\)", cells[0]) if len(cells) == 6 else None
        if match:
            rows[match.group(1)] = cells
    assert set(rows) == {name for name, _, _ in REFERENCE_COUNTS}
    for name, cells in rows.items():
        counts = sorted(v for (n, _, _), v in REFERENCE_COUNTS.items() if n == name)
        assert sorted(_numbers(cells[2])) == counts and sorted(_numbers(cells[3])) == counts, name


def test_docs_quote_the_measured_effects_table():
    table = (Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "effects-mnist_inr.md").read_text()
    assert table.strip() in (DOCS / "results.md").read_text()
