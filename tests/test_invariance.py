"""Graph metanetworks are invariant to hidden-neuron permutations, not to input permutations."""

import pytest
import torch

from nnzoo.data.weights import DataInfo, WeightBatch, layer_statistics
from nnzoo.models import create_model
from nnzoo.nets import mlp_forward, siren_init, siren_spec
from nnzoo.nets.functional import permute_neurons

ARCHITECTURES = [(2, 32, 32, 1), (2, 16, 24, 16, 1)]


def _permute_all_hidden(params, spec, generator):
    for group in range(1, spec.num_layers):
        params = permute_neurons(params, spec, group, torch.randperm(spec.widths[group], generator=generator))
    return params


def _swap_inputs(params, spec):
    w = params[:, : spec.slots[0].end].view(-1, spec.widths[1], spec.widths[0]).flip(-1)
    return torch.cat([w.reshape(params.shape[0], -1), params[:, spec.slots[0].end:]], dim=1)


def _model(name, spec, params, **kwargs):
    info = DataInfo("t", "classification", 10, (spec,), layer_statistics([spec], [params]))
    torch.manual_seed(0)
    return create_model(name, info, **kwargs).eval()


@pytest.mark.parametrize("widths", ARCHITECTURES)
@pytest.mark.parametrize("probes", [0, 16])
def test_gnn_is_invariant_to_hidden_permutations(widths, probes):
    spec = siren_spec(widths)
    params = siren_init(6, spec, torch.Generator().manual_seed(0))
    params += 0.01 * torch.randn_like(params)  # non-zero biases, like fitted INRs
    model = _model("gnn", spec, params, probes=probes)
    g = torch.Generator().manual_seed(1)
    permuted = _permute_all_hidden(params, spec, g)
    assert not torch.allclose(params, permuted)
    # sanity: the permuted networks compute the same functions
    x = torch.rand(20, 2)
    torch.testing.assert_close(mlp_forward(params, spec, x), mlp_forward(permuted, spec, x), atol=1e-4, rtol=1e-4)
    y = torch.zeros(6, dtype=torch.long)
    with torch.no_grad():
        out = model(WeightBatch([spec], [params], y))
        out_perm = model(WeightBatch([spec], [permuted], y))
        out_inputs = model(WeightBatch([spec], [_swap_inputs(params, spec)], y))
    perm_error = (out - out_perm).abs().max().item()
    assert perm_error < 1e-5
    # input neurons are not interchangeable: swapping x and y must change the prediction, far beyond
    # the float noise of the permutation check
    assert (out - out_inputs).abs().max().item() > 100 * max(perm_error, 1e-7)
