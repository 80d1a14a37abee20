"""DWSNet: equivariant layers, an invariant model that can still learn, and clear refusals."""

import pytest
import torch

from nnzoo.data.weights import DataInfo, layer_statistics
from nnzoo.errors import NnzooError
from nnzoo.models import count_parameters, create_model
from nnzoo.models.dwsnet import weight_space_inputs
from nnzoo.models.layers.dws import DWSLayer, weight_space
from nnzoo.nets import LayerSpec, NetworkSpec, siren_init, siren_spec
from nnzoo.nets.functional import permute_neurons

ARCHITECTURES = [(2, 32, 32, 1), (2, 16, 24, 16, 1)]


def _siren_params(spec, n, seed=0):
    params = siren_init(n, spec, torch.Generator().manual_seed(seed))
    return params + 0.01 * torch.randn(params.shape, generator=torch.Generator().manual_seed(seed + 1))


def _info(spec, params, outputs=10):
    return DataInfo("t", "classification", outputs, (spec,), layer_statistics([spec], [params]))


def _hidden_permutations(spec, seed):
    g = torch.Generator().manual_seed(seed)
    return {group: torch.randperm(spec.widths[group], generator=g) for group in range(1, spec.num_layers)}


def _permute_params(params, spec, perms):
    for group, perm in perms.items():
        params = permute_neurons(params, spec, group, perm)
    return params


def _swap_inputs(params, spec):
    w = params[:, : spec.slots[0].end].view(-1, spec.widths[1], spec.widths[0]).flip(-1)
    return torch.cat([w.reshape(params.shape[0], -1), params[:, spec.slots[0].end:]], dim=1)


@pytest.mark.parametrize("widths", ARCHITECTURES)
def test_dws_layer_is_equivariant(widths):
    spec = siren_spec(widths)
    space = weight_space(spec.widths)
    params = torch.randn(3, spec.num_params, generator=torch.Generator().manual_seed(0))
    perms = _hidden_permutations(spec, 2)
    xs = weight_space_inputs(params, spec, space)
    # the weight-space view of permute_neurons is an index permutation of every permutable axis
    permuted_view = weight_space_inputs(_permute_params(params, spec, perms), spec, space)

    def permute(tensors):
        out = []
        for x, t in zip(tensors, space):
            for axis, group in enumerate(t.sets):
                x = x.index_select(1 + axis, perms[group])
            out.append(x)
        return out

    for a, b in zip(permute(xs), permuted_view):
        torch.testing.assert_close(a, b)
    torch.manual_seed(0)
    lift = DWSLayer(space, 1, 5)
    layer = DWSLayer(space, 5, 4)
    with torch.no_grad():
        outs = layer(lift(xs))
        outs_of_permuted = layer(lift(permuted_view))
    for a, b in zip(permute(outs), outs_of_permuted):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    # equivariant, not invariant: the hidden-neuron outputs do move with the permutation
    assert any(not torch.allclose(a, b) for a, b in zip(outs, outs_of_permuted))


def test_dws_layer_spans_every_pairwise_basis_map():
    """One map per (input tensor, output tensor, subset of shared groups), plus one bias per output."""
    space = weight_space((2, 16, 24, 16, 1))
    layer = DWSLayer(space, 3, 4)
    expected = sum(2 ** len(set(x.sets) & set(y.sets)) * (3 * x.fold) * (4 * y.fold) for x in space for y in space)
    expected += sum(4 * y.fold for y in space)
    assert count_parameters(layer) == expected


def test_convolutional_and_mixed_datasets_are_refused():
    spec = siren_spec()
    cnn = NetworkSpec((LayerSpec("conv", 1, 8, (3, 3), activation="relu"), LayerSpec("conv", 8, 10, (3, 3))),
                      input_kind="image")
    with pytest.raises(NnzooError, match="convolutional"):
        create_model("dwsnet", DataInfo("cnns", "classification", 10, (cnn,), {}))
    mixed = DataInfo("mixed", "classification", 10, (spec, siren_spec((2, 8, 1))), {})
    with pytest.raises(NnzooError, match="one parameter layout"):
        create_model("dwsnet", mixed)
