"""Architectures, flat layouts and the batched functional forward."""

import math

import pytest
import torch
from torch import nn

from nnzoo.errors import NnzooError
from nnzoo.nets import (NetworkSpec, flatten, infer_mlp_widths, mlp_forward, mlp_spec, params_to_state_dict,
                        siren_spec, state_dict_to_params, unflatten)
from nnzoo.nets.functional import permute_neurons
from tests.conftest import random_params


def test_siren_layout_matches_the_dwsnets_inr():
    spec = siren_spec()
    assert spec.widths == (2, 32, 32, 1)
    assert spec.num_params == 1185  # 2*32+32 + 32*32+32 + 32+1
    assert spec.num_nodes == 67
    assert [(s.layer, s.role, s.shape) for s in spec.slots][:2] == [(0, "weight", (32, 2)), (0, "bias", (32,))]


def test_spec_round_trips_through_plain_dicts():
    spec = siren_spec((2, 16, 8, 3), w0=20.0)
    assert NetworkSpec.from_dict(spec.to_dict()) == spec


def test_unflatten_flatten_round_trip():
    spec = mlp_spec([3, 5, 4, 2])
    p = random_params(spec, 7)
    assert torch.equal(flatten(unflatten(p, spec), spec), p)


def test_mlp_forward_matches_torch_modules():
    spec = siren_spec((2, 16, 16, 1), w0=30.0, output_offset=0.5)
    p = random_params(spec, 3, scale=0.1)
    x = torch.rand(50, 2) * 2 - 1
    out = mlp_forward(p, spec, x)
    for b in range(3):
        sd = params_to_state_dict(p[b], spec)
        lin = [nn.Linear(2, 16), nn.Linear(16, 16), nn.Linear(16, 1)]
        for i, layer in enumerate(lin):
            layer.weight.data, layer.bias.data = sd[f"seq.{i}.weight"], sd[f"seq.{i}.bias"]
        h = torch.sin(30 * lin[0](x))
        h = torch.sin(30 * lin[1](h))
        expected = lin[2](h) + 0.5
        torch.testing.assert_close(out[b], expected, atol=1e-5, rtol=1e-5)


def test_state_dict_round_trip_and_architecture_check():
    spec = siren_spec()
    p = random_params(spec, 1)[0]
    sd = params_to_state_dict(p, spec)
    assert infer_mlp_widths(sd) == [2, 32, 32, 1]
    assert torch.equal(state_dict_to_params(sd, spec), p)
    with pytest.raises(NnzooError, match="wrong architecture"):
        state_dict_to_params(sd, siren_spec((2, 16, 16, 1)))
    sd["seq.1.weight"][0, 0] = math.nan
    with pytest.raises(NnzooError, match="NaN or Inf"):
        state_dict_to_params(sd, spec)


def test_permuting_hidden_neurons_keeps_the_function():
    spec = siren_spec((2, 8, 8, 1))
    p = random_params(spec, 4, scale=0.2)
    x = torch.rand(30, 2)
    q = permute_neurons(p, spec, 1, torch.randperm(8))
    q = permute_neurons(q, spec, 2, torch.randperm(8))
    assert not torch.equal(p, q)
    torch.testing.assert_close(mlp_forward(p, spec, x), mlp_forward(q, spec, x), atol=1e-5, rtol=1e-5)
