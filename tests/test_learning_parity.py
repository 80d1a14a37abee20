"""benchmarks/learning_parity.py without the reference checkout: the weight maps (complete, one-to-one, the
reference's shapes and split semantics), the reference's input layout, the per-network LayerNorm patch, the batch
order, the schedule and the statistics of the report."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
from torch_geometric.nn import LayerNorm as PygLayerNorm

from nnzoo.data.weights import DataInfo, layer_statistics
from nnzoo.models import count_parameters
from nnzoo.models.layers.norm import GraphLayerNorm
from nnzoo.nets import siren_spec
from nnzoo.nets.functional import mlp_forward, siren_init

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import learning_parity as lp  # noqa: E402  (a script, not a package)

SPEC = siren_spec()
REFERENCE_PARAMETERS = {"gnn": 100_714, "transformer": 393_866}  # measured on the reference models (docs/models.md)
# a few reference tensors and their shapes (from the reference models built with the scripts' settings)
REFERENCE_SHAPES = {
    "gnn": {"construct_graph.pos_embed": (5, 32), "construct_graph.proj_weight.0.b": (128, 3),
            "construct_graph.proj_bias.0.b": (128, 1), "construct_graph.gpf.inputs": (1, 64, 2),
            "gnn.convs.0.edge_encoder.weight": (64, 32), "gnn.convs.0.edge_encoder.bias": (64,),
            "gnn.convs.3.pre_nns.0.0.weight": (32, 64), "gnn.convs.3.pre_nns.0.0.bias": (32,),
            "gnn.convs.1.post_nns.0.0.weight": (32, 288), "gnn.norms.2.weight": (32,),
            "gnn.edge_update.2.lin1.weight": (32, 32), "proj_out.4.weight": (10, 32)},
    "transformer": {"construct_graph.pos_embed": (5, 64), "construct_graph.proj_weight.0.b": (128, 1),
                    "construct_graph.gpf.proj.3.0.weight": (64, 64), "layers.0.self_attn.qkv_node.weight": (384, 64),
                    "layers.3.self_attn.qkv_edge.weight": (512, 32), "layers.2.edge_updates.edge_mlp0.lin0_e.weight":
                    (64, 64), "layers.2.edge_updates.edge_mlp1.0.weight": (64, 32), "proj_out.2.weight": (10, 128)},
}


def _info(n: int = 16) -> tuple[DataInfo, torch.Tensor]:
    params = siren_init(n, SPEC, torch.Generator().manual_seed(0))
    params = params + 0.01 * torch.randn(params.shape, generator=torch.Generator().manual_seed(1))
    return DataInfo("mnist_inr", "classification", 10, (SPEC,), layer_statistics([SPEC], [params])), params


@pytest.mark.parametrize("model", ["gnn", "transformer"])
def test_weight_map_uses_every_nnzoo_tensor_once_and_fills_the_reference_parameters(model):
    info, _ = _info()
    ours = lp.nnzoo_model(model, info, seed=0)
    state = ours.state_dict()
    mapping = lp.WEIGHT_MAPS[model]()
    used = [o for _, o, _ in mapping]
    assert len(used) == len(set(used))
    assert set(used) | set(lp.NNZOO_UNMAPPED) == set(state)
    mapped = lp.to_reference(state, mapping)
    buffers = {n for n in mapped if n.endswith(".b")}  # the Fourier frequencies (rff GaussianEncoding buffers)
    assert buffers == {"construct_graph.proj_weight.0.b", "construct_graph.proj_bias.0.b"}
    assert sum(t.numel() for n, t in mapped.items() if n not in buffers) == count_parameters(ours) \
        == REFERENCE_PARAMETERS[model]
    for name, shape in REFERENCE_SHAPES[model].items():
        assert tuple(mapped[name].shape) == shape, name
    back = lp.from_reference(mapped, mapping)
    for name in used:
        torch.testing.assert_close(back[name], state[name], rtol=0, atol=0)


def test_pna_message_from_the_mapped_weights_is_the_reference_formula():
    """Reference PNAConv.message with modulate_edges: ``scale * pre(cat[x_i, x_j]) + shift``, ``scale, shift =
    edge_encoder(e).chunk(2)`` (x_i the target); nnzoo: ``film_scale(e) * (lin_target(x_i) + lin_source(x_j)) +
    film_shift(e)``."""
    info, _ = _info()
    ours = lp.nnzoo_model("gnn", info, seed=3)
    mapped = lp.to_reference(ours.state_dict(), lp.gnn_map())
    conv = ours.convs[1]
    torch.manual_seed(0)
    x_i, x_j, e = torch.randn(7, 32), torch.randn(7, 32), torch.randn(7, 32)
    enc = e @ mapped["gnn.convs.1.edge_encoder.weight"].t() + mapped["gnn.convs.1.edge_encoder.bias"]
    scale, shift = enc.chunk(2, dim=-1)
    pre = torch.cat([x_i, x_j], -1) @ mapped["gnn.convs.1.pre_nns.0.0.weight"].t() + mapped["gnn.convs.1.pre_nns.0.0.bias"]
    reference = scale * pre + shift
    nnzoo = conv.film_scale(e) * (conv.lin_target(x_i) + conv.lin_source(x_j)) + conv.film_shift(e)
    torch.testing.assert_close(nnzoo, reference, atol=1e-5, rtol=1e-5)


def test_to_reference_refuses_a_tensor_mapped_twice_and_incomplete_splits():
    state = {"a": torch.ones(2, 3), "b": torch.zeros(2, 3)}
    with pytest.raises(ValueError, match="twice"):
        lp.to_reference(state, [("x", "a", "copy"), ("y", "a", "copy")])
    with pytest.raises(ValueError, match="inconsistent"):
        lp.to_reference(state, [("x", "a", "rows:1/2:1")])
    out = lp.to_reference(state, [("x", "b", "cols:1/2:1"), ("x", "a", "cols:0:1/2")])
    assert out["x"].shape == (2, 6) and out["x"][:, :3].eq(1).all() and out["x"][:, 3:].eq(0).all()


def test_reference_inputs_are_the_transposed_linear_weights_with_a_feature_axis():
    """The reference's INRDataset: ``weights[l]`` is ``W_l^T`` as ``(B, in, out, 1)``, ``biases[l]`` ``(B, out, 1)``;
    a SIREN evaluated from them is nnzoo's."""
    _, params = _info(5)
    weights, biases = lp.reference_inputs(SPEC, params)
    assert [tuple(w.shape) for w in weights] == [(5, 2, 32, 1), (5, 32, 32, 1), (5, 32, 1, 1)]
    assert [tuple(b.shape) for b in biases] == [(5, 32, 1), (5, 32, 1), (5, 1, 1)]
    x = torch.rand(11, 2) * 2 - 1
    h = x.expand(5, -1, -1)
    for i, (w, b) in enumerate(zip(weights, biases)):
        h = h @ w.squeeze(-1) + b.squeeze(-1).unsqueeze(1)
        h = torch.sin(30.0 * h) if i < len(weights) - 1 else h + 0.5
    torch.testing.assert_close(h, mlp_forward(params, SPEC, x), atol=1e-5, rtol=1e-5)


def test_reference_stats_are_nnzoo_stats_in_the_reference_form():
    info, _ = _info()
    stats = lp.reference_stats(info.stats)
    assert set(stats) == {"weights_mean", "weights_std", "biases_mean", "biases_std"}
    assert stats["weights_std"] == [s for _, s in info.stats["weight"]]
    assert stats["biases_mean"] == [m for m, _ in info.stats["bias"]]


def test_per_network_patch_makes_the_reference_norm_nnzoos():
    """PyG ``LayerNorm(mode="graph")`` called without a batch vector (the reference) normalises the whole batch;
    patched, it is nnzoo's GraphLayerNorm; the state dict is unchanged."""
    torch.manual_seed(0)
    n, b = 5, 4
    x = torch.randn(n * b, 8) * torch.arange(1, b + 1).repeat_interleave(n).unsqueeze(-1)
    ours = GraphLayerNorm(8)
    ours.weight.data.uniform_(0.5, 2)
    ours.bias.data.normal_()
    ref = PygLayerNorm(8, mode="graph")
    ref.load_state_dict(ours.state_dict())
    expected = ours(x, torch.full((b,), n))
    assert not torch.allclose(ref(x), expected, atol=1e-3)
    keys = set(ref.state_dict())
    lp.per_network_norm(ref, n)
    torch.testing.assert_close(ref(x), expected, atol=1e-6, rtol=1e-6)
    assert set(ref.state_dict()) == keys
    with pytest.raises(RuntimeError, match="whole number"):
        ref(x[:-1])


def test_batch_order_is_seeded_epoch_permutations():
    a = lp.batch_order(10, 4, 7, seed=0)
    assert [len(i) for i in a] == [4, 4, 2, 4, 4, 2, 4]
    assert sorted(torch.cat(a[:3]).tolist()) == list(range(10))
    assert sorted(torch.cat(a[3:6]).tolist()) == list(range(10))
    assert all(torch.equal(x, y) for x, y in zip(a, lp.batch_order(10, 4, 7, seed=0)))
    assert not all(torch.equal(x, y) for x, y in zip(a, lp.batch_order(10, 4, 7, seed=1)))


def test_warmup_is_the_references_warmup_scheduler():
    """experiments/lr_scheduler.py WarmupLRScheduler: ``_step_count / warmup`` while below ``warmup``, the count
    being 1 at the first optimiser step; nnzoo's task: ``(step + 1) / warmup`` then 1."""
    warmup = 50
    for step in range(120):
        count = step + 1
        reference = count / warmup if count < warmup else 1.0
        assert lp.warmup_factor(step, warmup) == pytest.approx(reference)


def test_paired_t_matches_scipy_and_handles_degenerate_samples():
    a, b = [0.61, 0.55, 0.58, 0.66], [0.57, 0.56, 0.50, 0.60]
    d = lp.paired_t(a, b)
    scipy_stats = pytest.importorskip("scipy.stats")
    ref = scipy_stats.ttest_rel(a, b)
    assert d["t"] == pytest.approx(ref.statistic) and d["p"] == pytest.approx(ref.pvalue)
    assert d["mean"] == pytest.approx(0.0425) and d["n"] == 4
    assert lp.paired_t([0.5], [0.4])["t"] is None
    same = lp.paired_t([0.5, 0.6], [0.5, 0.6])
    assert same["t"] is None and same["std"] == 0.0
    shifted = lp.paired_t([0.6, 0.7], [0.5, 0.6])
    assert shifted["t"] == math.inf and shifted["p"] == 0.0
    with pytest.raises(ValueError):
        lp.paired_t([0.1], [0.1, 0.2])
    assert lp.mean_std([1.0, 3.0]) == (2.0, pytest.approx(math.sqrt(2)))


def _run(final_ref: float, final_ours: float) -> dict:
    def curve(v):
        return [{"step": 0, "val_acc": 0.1, "val_loss": 2.3}, {"step": 50, "val_acc": v, "val_loss": 2.0 - v}]
    return {"reference": {"curve": curve(final_ref)}, "nnzoo": {"curve": curve(final_ours)}}


def test_summary_and_report():
    runs = {"0": _run(0.40, 0.45), "1": _run(0.30, 0.36), "2": _run(0.50, 0.52)}
    summary = lp.summarise(runs)
    assert summary["seeds"] == [0, 1, 2]
    assert summary["val_acc"]["difference"]["mean"] == pytest.approx((0.05 + 0.06 + 0.02) / 3)
    assert summary["val_loss"]["difference"]["mean"] == pytest.approx(-(0.05 + 0.06 + 0.02) / 3)
    result = {
        "config": {"model": "gnn", "steps": 50, "batch_size": 64, "eval_batch_size": 64, "eval_every": 50,
                   "warmup": 50, "lr": 1e-3, "weight_decay": 5e-4, "clip": 10.0, "threads": 1, "data": "mnist_inr",
                   "ref_norm": "batch", "ref_stats": "reference", "pyg_std": "2.3"},
        "commands": ["OMP_NUM_THREADS=1 python benchmarks/learning_parity.py --reference /x --model gnn"],
        "reference_class": "nn.gnn.GNNForClassification", "machine": "x86_64 CPU",
        "data": {"sizes": {"train": 8, "val": 4}},
        "check": {"logits, 1 network": {"max_abs": 3e-8, "scale": 0.2}},
        "not_matched": ["dropout masks"], "runs": runs, "summary": summary,
        "timing": {"0": {"reference": 5.0, "nnzoo": 1.5}},
    }
    text = lp.markdown(result)
    assert text.splitlines()[5] == result["commands"][0]  # the command opens the report (in its code block)
    assert "| 1 | 0.300 | 0.360 | +0.060 |" in text
    assert "Paired difference nnzoo − reference (n = 3 seeds): val acc +0.0433" in text
    assert "| 50 | 0.400 / 0.450 | 0.300 / 0.360 | 0.500 / 0.520 |" in text
    assert "logits, 1 network: max |difference| 3.00e-08" in text
    assert "Not matched between the two: dropout masks." in text
