"""Architectures, flat layouts and the batched functional forward."""

import math

import pytest
import torch
from torch import nn

from nnzoo.errors import NnzooError
from nnzoo.nets import (LayerSpec, NetworkSpec, flatten, infer_mlp_widths, mlp_forward, mlp_spec,
                        params_to_state_dict, siren_spec, state_dict_to_params, unflatten)
from nnzoo.nets.cnn import cnn_forward
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


# ------------------------------------------------- reading state dicts by name (any key order or style)

def _by_role(sd: dict) -> dict:
    """The same tensors with all weights first, then all biases, then any other roles (file order kept)."""
    order = ("weight", "bias", "running_mean", "running_var")
    return {k: sd[k] for role in order for k in sd if k.endswith(role)} | {k: v for k, v in sd.items()
                                                                          if not k.endswith(order)}


def test_weights_then_biases_reads_like_interleaved():
    spec = siren_spec()
    p = random_params(spec, 1, seed=1)[0]
    interleaved = params_to_state_dict(p, spec)
    grouped = _by_role(interleaved)
    assert list(grouped)[:3] == ["seq.0.weight", "seq.1.weight", "seq.2.weight"]
    assert torch.equal(state_dict_to_params(interleaved, spec), p)
    assert torch.equal(state_dict_to_params(grouped, spec), p)
    assert infer_mlp_widths(grouped) == [2, 32, 32, 1]


def test_nfn_keys_and_biases_out_of_order_read_by_module():
    spec = siren_spec()
    p = random_params(spec, 1, seed=2)[0]
    sd = params_to_state_dict(p, spec)
    nfn = {"net.0.linear.weight": sd["seq.0.weight"], "net.0.linear.bias": sd["seq.0.bias"],
           "net.1.linear.weight": sd["seq.1.weight"], "net.1.linear.bias": sd["seq.1.bias"],
           "net.2.weight": sd["seq.2.weight"], "net.2.bias": sd["seq.2.bias"]}
    assert torch.equal(state_dict_to_params(nfn, spec), p)
    assert infer_mlp_widths(nfn) == [2, 32, 32, 1]
    # a bias belongs to the layer whose weight shares its module prefix, wherever it sits in the file
    shuffled = {k: nfn[k] for k in ("net.2.bias", "net.0.linear.weight", "net.1.linear.bias", "net.1.linear.weight",
                                    "net.0.linear.bias", "net.2.weight")}
    assert torch.equal(state_dict_to_params(shuffled, spec), p)


def test_keys_without_role_names_fall_back_to_position():
    spec = siren_spec((2, 8, 1))
    p = random_params(spec, 1, seed=3)[0]
    named = params_to_state_dict(p, spec)
    unnamed = {f"p{i}": t for i, t in enumerate(named.values())} | {"label": torch.tensor(7)}
    assert torch.equal(state_dict_to_params(unnamed, spec), p)
    assert infer_mlp_widths(unnamed) == [2, 8, 1]
    with pytest.raises(NnzooError, match="by position"):
        state_dict_to_params({k: unnamed[k] for k in ("p1", "p0", "p2", "p3")}, spec)


def _bn_cnn():
    spec = NetworkSpec((LayerSpec("conv", 1, 4, (3, 3), padding=1, norm="batchnorm", activation="relu"),
                        LayerSpec("conv", 4, 6, (3, 3), stride=2, norm="batchnorm", activation="relu"),
                        LayerSpec("linear", 6, 3)), input_kind="image")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.Conv2d(4, 6, 3, stride=2), nn.BatchNorm2d(6), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3)).eval()
    with torch.no_grad():
        for bn in (net[1], net[4]):  # make every norm tensor distinct from its default
            for t in (bn.weight, bn.bias, bn.running_mean):
                t.normal_()
            bn.running_var.uniform_(0.5, 2.0)
    return spec, net


def test_batchnorm_cnn_reads_in_module_order_and_by_role():
    spec, net = _bn_cnn()
    sd = net.state_dict()
    assert list(sd)[:7] == ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var",
                            "1.num_batches_tracked"]
    grouped = _by_role(sd)
    assert list(grouped)[:5] == ["0.weight", "1.weight", "3.weight", "4.weight", "8.weight"]
    flat = state_dict_to_params(sd, spec)
    assert torch.equal(state_dict_to_params(grouped, spec), flat)
    layers = unflatten(flat[None], spec)
    assert torch.equal(layers[0]["norm_weight"][0], sd["1.weight"])
    assert torch.equal(layers[1]["bias"][0], sd["3.bias"]) and torch.equal(layers[1]["running_var"][0],
                                                                            sd["4.running_var"])
    images = torch.rand(5, 1, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(cnn_forward(flat[None], spec, images)[0], net(images), atol=1e-5, rtol=1e-5)


def test_mismatches_name_the_file_the_key_and_both_shapes():
    spec = siren_spec()
    sd = params_to_state_dict(random_params(spec, 1)[0], spec)
    small = params_to_state_dict(random_params(siren_spec((2, 16, 16, 1)), 1)[0], siren_spec((2, 16, 16, 1)))
    with pytest.raises(NnzooError) as err:
        state_dict_to_params(small, spec, source="my_inr.pth")
    msg = str(err.value)
    assert "\n" not in msg and "my_inr.pth" in msg and "'seq.0.weight'" in msg
    assert "(16, 2)" in msg and "(32, 2)" in msg and "wrong architecture" in msg
    missing = {k: v for k, v in sd.items() if k != "seq.1.bias"}
    with pytest.raises(NnzooError, match=r"my_inr.pth has no tensor for layer 1 bias .*\(32,\) needed"):
        state_dict_to_params(missing, spec, source="my_inr.pth")
    extra = sd | {"seq.3.weight": torch.zeros(1, 1)}
    with pytest.raises(NnzooError, match=r"'seq.3.weight' \(shape \(1, 1\)\) has no place.*4 layer weights"):
        state_dict_to_params(extra, spec, source="my_inr.pth")
    spec_bn, net = _bn_cnn()
    no_bn = {k: v for k, v in net.state_dict().items() if not k.startswith(("1.", "4."))}
    with pytest.raises(NnzooError, match="no tensor for layer 0 norm_weight .*\\(4,\\) needed"):
        state_dict_to_params(no_bn, spec_bn, source="cnn.pth")
    broken = dict(sd, **{"seq.1.weight": torch.zeros(32, 16)})
    with pytest.raises(NnzooError, match=r"'seq.1.weight' has shape \(32, 16\) .* needs \(32, 32\); the layers"):
        infer_mlp_widths(broken, source="my_inr.pth")
