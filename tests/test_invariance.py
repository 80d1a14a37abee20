"""Metanetworks that claim hidden-neuron permutation invariance have it; input neurons stay ordered."""

import pytest
import torch

from nnzoo.data.weights import DataInfo, WeightBatch, layer_statistics
from nnzoo.models import create_model
from nnzoo.nets import mlp_forward, mlp_spec, siren_init, siren_spec
from nnzoo.nets.functional import permute_neurons

# two architectures: the reference SIREN and a deeper ReLU MLP of other widths
ARCHITECTURES = {"siren-2-32-32-1": siren_spec((2, 32, 32, 1)), "relu-3-16-24-16-2": mlp_spec((3, 16, 24, 16, 2))}
SMALL = {"gnn": {"hidden": 16, "layers": 4},  # 4 hops: inputs reach the outputs of both nets
         "transformer": {"d_node": 16, "d_edge": 8, "heads": 2, "layers": 2},
         "dwsnet": {"hidden": 8, "layers": 2}}
CASES = [("gnn", {"probes": 0}), ("gnn", {"probes": 16}), ("transformer", {"probes": 0}),
         ("transformer", {"probes": 16}), ("dwsnet", {"reduction": "max"}), ("dwsnet", {"reduction": "mean"})]


def random_networks(spec, n: int, seed: int = 0) -> torch.Tensor:
    params = siren_init(n, spec, torch.Generator().manual_seed(seed))
    return params + 0.01 * torch.randn(params.shape, generator=torch.Generator().manual_seed(seed + 1))


def permute_all_hidden(params, spec, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    for group in range(1, spec.num_layers):
        params = permute_neurons(params, spec, group, torch.randperm(spec.widths[group], generator=g))
    return params


def swap_inputs(params, spec):
    """Reverse the order of the input neurons (a permutation the models must NOT be invariant to)."""
    w = params[:, : spec.slots[0].end].view(-1, spec.widths[1], spec.widths[0]).flip(-1)
    return torch.cat([w.reshape(params.shape[0], -1), params[:, spec.slots[0].end:]], dim=1)


def build(name, specs, params, **options):
    info = DataInfo("t", "classification", 10, tuple(specs), layer_statistics(specs, params))
    torch.manual_seed(0)
    return create_model(name, info, **{**SMALL.get(name, {}), **options}).eval()


def predict(model, spec, params):
    with torch.no_grad():
        return model(WeightBatch([spec], [params], torch.zeros(len(params), dtype=torch.long)))


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("name, options", CASES)
def test_invariant_to_hidden_permutations_not_to_input_permutations(name, options, arch):
    spec = ARCHITECTURES[arch]
    params = random_networks(spec, 6)
    permuted = permute_all_hidden(params, spec)
    assert not torch.allclose(params, permuted)
    x = torch.rand(20, spec.num_inputs)  # sanity: the permuted networks compute the same functions
    torch.testing.assert_close(mlp_forward(params, spec, x), mlp_forward(permuted, spec, x), atol=1e-4, rtol=1e-4)
    model = build(name, [spec], [params], **options)
    out = predict(model, spec, params)
    perm_error = (out - predict(model, spec, permuted)).abs().max().item()
    assert perm_error < 1e-5
    # swapping inputs must change the prediction, far beyond the float noise of the permutation check
    assert (out - predict(model, spec, swap_inputs(params, spec))).abs().max().item() > 100 * max(perm_error, 1e-7)


def test_flat_mlp_is_not_invariant():
    spec = ARCHITECTURES["siren-2-32-32-1"]
    params = random_networks(spec, 6)
    model = build("mlp", [spec], [params])
    assert (predict(model, spec, params) - predict(model, spec, permute_all_hidden(params, spec))).abs().max() > 1e-3


@pytest.mark.parametrize("name", ["gnn", "transformer"])
def test_mixed_architecture_batch_equals_networks_alone(name):
    """Batching networks of different sizes (padding, offsets) must not leak between graphs."""
    specs = [siren_spec((2, 32, 32, 1)), siren_spec((2, 16, 24, 16, 1))]
    params = [random_networks(specs[0], 3), random_networks(specs[1], 2, seed=5)]
    model = build(name, specs, params, probes=8)
    together = model(WeightBatch(specs, params, torch.zeros(5, dtype=torch.long))).detach()
    alone = torch.cat([predict(model, s, p) for s, p in zip(specs, params)])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)
