"""DWSNet: the reference's structure, sizes and outputs; hidden-neuron permutation invariance; sensitivity;
learning; its config; clear refusals.

Reference figures below come from the authors' code (github AvivNavon/DWSNets @2001d52,
``DWSModelForClassification``), built on CPU: parameter counts per model, block and sub-block, and
outputs for fixed parameters (copied into it from the nnzoo model by name, see ``_fill``).
"""

import inspect
import zlib

import pytest
import torch

from nnzoo.config import compose, model_options
from nnzoo.data.weights import DataInfo, WeightBatch, layer_statistics
from nnzoo.errors import NnzooError
from nnzoo.models import count_parameters, create_model
from nnzoo.models.dwsnet import DWSNet, weight_space_inputs
from nnzoo.models.layers.dws import (BLOCKS, DWSLayer, KroneckerMap, PooledMap, SelfAttentionSet, SharedAxisMap,
                                     weight_space)
from nnzoo.nets import LayerSpec, NetworkSpec, mlp_spec, siren_init, siren_spec
from nnzoo.nets.functional import permute_neurons
from tests.conftest import training_losses

MNIST = siren_spec()  # the MNIST-INR SIREN 2-32-32-1
DEEP = mlp_spec((3, 16, 24, 16, 2))  # deeper, other widths, two outputs (exercises the fixed output axis)
ARCHITECTURES = {"siren-2-32-32-1": MNIST, "relu-3-16-24-16-2": DEEP}

REFERENCE_PARAMETERS = {"siren-2-32-32-1": 552_650, "relu-3-16-24-16-2": 1_286_314}
"""The reference's parameter count in its MNIST configuration (hidden 32, 5 DWS layers, SAB, 8 heads), 10 classes."""

# reference parameters per sub-block "<source layer>_<target layer>" of each block, MNIST INRs, default config
FIRST_LAYER = {
    "weight_to_weight": {"0_0": 4736, "0_1": 1344, "0_2": 96, "1_0": 4544, "1_1": 256, "1_2": 1248, "2_0": 128,
                         "2_1": 1248, "2_2": 1248},
    "bias_to_weight": {"0_0": 4544, "0_1": 1248, "0_2": 64, "1_0": 128, "1_1": 1248, "1_2": 1248, "2_0": 128,
                       "2_1": 64, "2_2": 64},
    "bias_to_bias": {"0_0": 1248, "0_1": 64, "0_2": 64, "1_0": 64, "1_1": 1248, "1_2": 64, "2_0": 64, "2_1": 64,
                     "2_2": 64},
    "weight_to_bias": {"0_0": 1344, "0_1": 96, "0_2": 96, "1_0": 1248, "1_1": 1248, "1_2": 64, "2_0": 64,
                       "2_1": 1248, "2_2": 64},
}
HIDDEN_LAYER = {
    "weight_to_weight": {"0_0": 16640, "0_1": 7296, "0_2": 2080, "1_0": 10496, "1_1": 4224, "1_2": 4224,
                         "2_0": 2112, "2_1": 4224, "2_2": 4224},
    "bias_to_weight": {"0_0": 10496, "0_1": 4224, "0_2": 1056, "1_0": 2112, "1_1": 4224, "1_2": 4224, "2_0": 2112,
                       "2_1": 1056, "2_2": 1056},
    "bias_to_bias": {"0_0": 4224, "0_1": 1056, "0_2": 1056, "1_0": 1056, "1_1": 4224, "1_2": 1056, "2_0": 1056,
                     "2_1": 1056, "2_2": 1056},
    "weight_to_bias": {"0_0": 7296, "0_1": 2080, "0_2": 2080, "1_0": 4224, "1_1": 4224, "1_2": 1056, "2_0": 1056,
                       "2_1": 4224, "2_2": 1056},
}
REFERENCE_NORM, REFERENCE_HEAD = 384, 2250  # each BatchNorm between DWS layers (6 tensors x 32 x 2); the head


def _params(spec, n, seed=0):
    params = siren_init(n, spec, torch.Generator().manual_seed(seed))
    return params + 0.01 * torch.randn(params.shape, generator=torch.Generator().manual_seed(seed + 1))


def _info(spec, params=None, outputs=10):
    stats = layer_statistics([spec], [params]) if params is not None else {}
    return DataInfo("t", "classification", outputs, (spec,), stats)


def _batch(spec, params, y=None):
    return WeightBatch([spec], [params], torch.zeros(len(params), dtype=torch.long) if y is None else y)


def _permute_hidden(params, spec, seed=1):
    g = torch.Generator().manual_seed(seed)
    for group in range(1, spec.num_layers):
        params = permute_neurons(params, spec, group, torch.randperm(spec.widths[group], generator=g))
    return params


def _relative(a, b):
    return ((a - b).abs().max() / a.abs().max()).item()


# ------------------------------------------------------------------ size and structure
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_default_parameter_count_is_the_references(arch):
    spec = ARCHITECTURES[arch]
    assert count_parameters(create_model("dwsnet", _info(spec), **model_options("dwsnet"))) == \
        REFERENCE_PARAMETERS[arch]


def test_every_block_and_sub_block_has_the_references_size():
    model = create_model("dwsnet", _info(MNIST), **model_options("dwsnet"))
    assert len(model.dws) == 5 and len(model.norms) == 4
    for k, layer in enumerate(model.dws):
        expected = FIRST_LAYER if k == 0 else HIDDEN_LAYER
        for block, subs in layer.blocks().items():
            sizes = {key.replace("_to_", "_"): count_parameters(sub) for key, sub in subs.items()}
            assert sizes == expected[block], (k, block)
        assert count_parameters(layer) == sum(sum(b.values()) for b in expected.values())
    assert all(count_parameters(norm) == REFERENCE_NORM for norm in model.norms)
    assert count_parameters(model.head) == REFERENCE_HEAD


def test_sub_block_kinds_follow_the_shared_neuron_groups():
    """Kronecker for an internal weight to itself, a set layer along a shared hidden group, else pooled + MLP."""
    space = weight_space(DEEP.widths)
    layer = DWSLayer(space, 1, 8, heads=8)
    kinds = {"same": 0, "successive": 0, "non_neighbour": 0}
    for block, subs in layer.blocks().items():
        assert len(subs) == 16, block  # 4 x 4 layer pairs
        for sub in subs.values():
            source, target = space[sub.source], space[sub.target]
            shared = set(source.sets) & set(target.sets)
            expected = {2: KroneckerMap, 1: SharedAxisMap, 0: PooledMap}[len(shared)]
            assert type(sub) is expected, (block, sub.source, sub.target)
            if isinstance(sub, SharedAxisMap):
                assert isinstance(sub.set, SelfAttentionSet)
            kinds[sub.relation] += 1
    assert kinds == {"same": 16, "successive": 12, "non_neighbour": 36}
    adjacent = DWSLayer(space, 1, 8, heads=8, adjacent_only=True)
    assert len(adjacent.sub_blocks()) == 28 and all(s.relation != "non_neighbour" for s in adjacent.sub_blocks())


@pytest.mark.parametrize("widths", [MNIST.widths, DEEP.widths])
def test_each_sub_block_writes_its_target_and_only_it(widths):
    """Perturbing one sub-block's parameters changes its target tensor's output and no other."""
    torch.manual_seed(0)
    space = weight_space(widths)
    layer = DWSLayer(space, 3, 4, heads=2).double()
    xs = [torch.randn(2, *t.set_sizes, t.fold * 3, dtype=torch.float64) for t in space]
    with torch.no_grad():
        base = layer(xs)
        for block in BLOCKS:
            for key, sub in getattr(layer, block).items():
                saved = [p.clone() for p in sub.parameters()]
                for p in sub.parameters():
                    p.add_(0.5)
                moved = [not torch.allclose(a, b, rtol=0, atol=1e-12) for a, b in zip(base, layer(xs))]
                for p, s in zip(sub.parameters(), saved):
                    p.copy_(s)
                assert moved == [i == sub.target for i in range(len(space))], (block, key)


# ------------------------------------------------------------------ the reference's outputs
def _fill(model):
    """Deterministic parameters, a function of each parameter's name (how the reference outputs were made)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            phase = zlib.crc32(name.encode()) % 1000 / 1000.0
            p.copy_(0.5 * torch.sin(torch.arange(p.numel(), dtype=torch.float64) * 0.37 + 6.283 * phase).view_as(p))


# outputs of the reference code (training mode, float64) for _fill's parameters copied into it, on inputs
# cos(0.11 k) * 1.5; rows 0 and 3 of a batch of 4, no input standardisation
REFERENCE_OUTPUTS = {
    ("siren-2-32-32-1", "max", "sab"): (
        [0.3367500175, -3.4272491265, 2.5977116942, 2.4456558213, -3.9233631482, -0.4610690588, 3.4589876813,
         -2.6228247086, -3.1166173201, 3.2557093187],
        [0.819776406, -3.1514848978, 1.9518831101, 2.5511676993, -3.3398253314, -0.9110826086, 3.1411231693,
         -1.9851543306, -3.1752125763, 2.6526316666]),
    ("siren-2-32-32-1", "mean", "ds"): (
        [-0.67608793, 0.3015550806, 1.4091854008, -0.5814812732, -0.9477139645, 0.8093419266, -0.2666706633,
         -1.6937286675, 0.0605330612, 0.4509274414],
        [-1.2503051677, 0.475365366, 1.8807907217, -1.0337119399, -1.1523370673, 1.3823753913, -0.4003478058,
         -2.1878435125, 0.485919473, 0.6939080397]),
    ("relu-3-16-24-16-2", "max", "sab"): (
        [-0.4516889633, 0.38980266, 1.1223678651, -0.9963738234, 0.1612455125, 0.4057869485, -1.5274210867,
         0.0636871733, -0.0229050459, -1.5162717828],
        [-0.5730258033, 0.2488912109, 1.4047625358, -1.1782315556, 0.0867091248, 0.6728376795, -1.7581161881,
         0.0603144672, 0.2116449639, -1.7809831537]),
    ("relu-3-16-24-16-2", "mean", "ds"): (
        [0.8654679548, 0.4463195228, -0.2593862406, 0.5264154689, -0.1975057958, -0.7069596691, 0.103168369,
         -0.687284184, -0.7951553211, 0.1173599609],
        [1.975816324, -0.8886189471, 0.1560625876, 1.3865075904, -1.5960157748, 0.0314058572, 0.6577472785,
         -2.059517836, 0.218690313, 0.3307965132]),
}


@pytest.mark.parametrize("arch, reduction, set_layer", REFERENCE_OUTPUTS)
def test_outputs_equal_the_reference_code(arch, reduction, set_layer):
    spec = ARCHITECTURES[arch]
    model = create_model("dwsnet", _info(spec), hidden=8, layers=2, reduction=reduction,
                         set_layer=set_layer).double().train()
    _fill(model)
    params = torch.cos(torch.arange(4 * spec.num_params, dtype=torch.float64) * 0.11).view(4, -1) * 1.5
    with torch.no_grad():
        out = model(_batch(spec, params))
    expected = torch.tensor(REFERENCE_OUTPUTS[arch, reduction, set_layer], dtype=torch.float64)
    torch.testing.assert_close(out[[0, 3]], expected, rtol=0, atol=1e-8)


def test_initialisation_is_the_references():
    """DWS-layer maps: Xavier-normal times sqrt(2 fan_in / fan_out), biases in +-1e-4; head: PyTorch's default."""
    torch.manual_seed(0)
    model = create_model("dwsnet", _info(MNIST), **model_options("dwsnet"))
    weights, checked = [], 0
    for module in model.dws.modules():
        if isinstance(module, SelfAttentionSet):
            q, k, v = module.qkv.weight.chunk(3)
            weights += [q, k, v, module.feedforward.weight]
            assert module.qkv.bias.abs().max() <= 1e-4
        elif isinstance(module, torch.nn.Linear) and not any(module is m.qkv or module is m.feedforward
                                                             for m in model.dws.modules()
                                                             if isinstance(m, SelfAttentionSet)):
            weights.append(module.weight)
            assert module.bias is None or module.bias.abs().max() <= 1e-4
    for w in weights:
        fan_out, fan_in = w.shape
        if w.numel() >= 1024:
            expected = 2 * (fan_in / (fan_out * (fan_in + fan_out))) ** 0.5
            assert abs(w.std().item() / expected - 1) < 0.1, w.shape
            checked += 1
    assert checked > 100
    head = model.head.mlp[0]
    assert head.weight.abs().max() <= head.weight.shape[1] ** -0.5


def test_layer_gradients_are_exact():
    """The custom max-pool backward and the in-place sums, against finite differences."""
    torch.manual_seed(0)
    space = weight_space((2, 3, 4, 2))
    layer = DWSLayer(space, 2, 2, heads=2).double()
    xs = tuple(torch.randn(2, *t.set_sizes, t.fold * 2, dtype=torch.float64, requires_grad=True) for t in space)
    assert torch.autograd.gradcheck(lambda *x: torch.cat([y.flatten() for y in layer(x)]), xs, fast_mode=True)


# ------------------------------------------------------------------ symmetry
@pytest.mark.parametrize("widths", [MNIST.widths, DEEP.widths])
def test_dws_layer_is_equivariant(widths):
    spec = siren_spec(widths)
    space = weight_space(spec.widths)
    params = torch.randn(3, spec.num_params, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(2)
    perms = {group: torch.randperm(spec.widths[group], generator=g) for group in range(1, spec.num_layers)}
    permuted = params
    for group, perm in perms.items():
        permuted = permute_neurons(permuted, spec, group, perm)
    xs, xs_permuted = weight_space_inputs(params, spec, space), weight_space_inputs(permuted, spec, space)

    def permute(tensors):
        out = []
        for x, t in zip(tensors, space):
            for axis, group in enumerate(t.sets):
                x = x.index_select(1 + axis, perms[group])
            out.append(x)
        return out

    # the weight-space view of permute_neurons is an index permutation of every hidden axis
    for a, b in zip(permute(xs), xs_permuted):
        torch.testing.assert_close(a, b)
    torch.manual_seed(0)
    lift, layer = DWSLayer(space, 1, 8), DWSLayer(space, 8, 8)
    with torch.no_grad():
        outs, outs_of_permuted = layer(lift(xs)), layer(lift(xs_permuted))
    for a, b in zip(permute(outs), outs_of_permuted):
        assert _relative(a, b) < 1e-5
    # equivariant, not invariant: the hidden-neuron outputs do move with the permutation
    assert any(_relative(a, b) > 1e-2 for a, b in zip(outs, outs_of_permuted) if a.dim() > 2)


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_default_model_is_invariant_to_hidden_permutations(arch, dtype, tolerance):
    spec = ARCHITECTURES[arch]
    params = _params(spec, 6)
    permuted = _permute_hidden(params, spec)
    assert not torch.allclose(params, permuted)
    torch.manual_seed(0)
    model = create_model("dwsnet", _info(spec, params), **model_options("dwsnet")).to(dtype)
    params, permuted = params.to(dtype), permuted.to(dtype)
    for mode in ("train", "eval"):  # batch statistics and running statistics
        getattr(model, mode)()
        with torch.no_grad():
            out, out_permuted = model(_batch(spec, params)), model(_batch(spec, permuted))
        assert _relative(out, out_permuted) < tolerance, mode


def test_batchnorm_tensors_and_missing_biases_are_read_invariantly():
    """nnzoo extension: a layer's BatchNorm tensors join its bias as channels; a missing bias reads as zeros."""
    spec = NetworkSpec((LayerSpec("linear", 3, 8, activation="relu", norm="batchnorm"),
                        LayerSpec("linear", 8, 6, activation="relu", bias=False), LayerSpec("linear", 6, 2)))
    params = torch.randn(5, spec.num_params, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.manual_seed(0)
    model = create_model("dwsnet", _info(spec, params, outputs=3), hidden=8, layers=2).double().eval()
    assert model.dws[0].bias_to_bias["0_to_0"].set.qkv.in_features == 5  # bias + 4 BatchNorm tensors
    with torch.no_grad():
        out = model(_batch(spec, params))
        assert _relative(out, model(_batch(spec, _permute_hidden(params, spec)))) < 1e-10


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_changing_a_hidden_layer_or_the_input_order_changes_the_output(arch):
    """Far beyond the permutation noise: the model is invariant to permutations, not blind to weights."""
    spec = ARCHITECTURES[arch]
    params = _params(spec, 6)
    torch.manual_seed(0)
    model = create_model("dwsnet", _info(spec, params), **model_options("dwsnet")).eval()
    slot = spec.slot(1, "weight")  # a hidden layer's weights
    changed = params.clone()
    changed[:, slot.start:slot.end] += 0.5 * params[:, slot.start:slot.end].std() * torch.randn(
        len(params), slot.numel, generator=torch.Generator().manual_seed(3))
    w = params[:, :spec.slot(0, "weight").end].view(len(params), spec.widths[1], spec.widths[0])
    swapped = torch.cat([w.flip(-1).flatten(1), params[:, spec.slot(0, "weight").end:]], dim=1)  # input order
    with torch.no_grad():
        out = model(_batch(spec, params))
        noise = _relative(out, model(_batch(spec, _permute_hidden(params, spec))))
        for other in (changed, swapped):
            assert _relative(out, model(_batch(spec, other))) > max(1e3 * noise, 1e-3)


# ------------------------------------------------------------------ learning
def test_overfits_a_tiny_batch():
    torch.manual_seed(0)
    params = _params(MNIST, 16)
    labels = torch.arange(16) % 10
    model = create_model("dwsnet", _info(MNIST, params), **{**model_options("dwsnet"), "hidden": 8, "layers": 2})
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3, amsgrad=True, weight_decay=5e-4)
    batch = _batch(MNIST, params, labels)
    losses = training_losses(model, batch, labels, opt, 30)
    assert losses[-1] < 0.1 * losses[0]  # ~0.1 after 30 steps at the reference's learning rate
    with torch.no_grad():
        assert (model.eval()(batch).argmax(-1) == labels).all()


# ------------------------------------------------------------------ config and refusals
def test_config_lists_every_option_with_its_default_and_the_reference_recipe():
    defaults = {k: p.default for k, p in inspect.signature(DWSNet.__init__).parameters.items()
                if k not in ("self", "info")}
    assert model_options("dwsnet") == defaults
    cfg = compose("dwsnet", "mnist_inr")
    assert cfg.optim.lr == 5e-3 and cfg.optim.amsgrad and cfg.optim.weight_decay == 5e-4
    assert cfg.optim.warmup_steps == 0 and cfg.data.batch_size == 512 and cfg.trainer.gradient_clip_val is None
    # the DWSNets trainer standardises per entry (--normalize true); the NG models per (role, layer)
    for data in ("mnist_inr", "fmnist_inr"):
        assert compose("dwsnet", data).data.normalize == "entry" and compose("mlp", data).data.normalize == "entry"
        assert compose("gnn", data).data.normalize == "layer"


def test_unsupported_inputs_and_options_are_refused():
    cnn = NetworkSpec((LayerSpec("conv", 1, 8, (3, 3), activation="relu"), LayerSpec("conv", 8, 10, (3, 3))),
                      input_kind="image")
    with pytest.raises(NnzooError, match="convolutional"):
        create_model("dwsnet", DataInfo("cnns", "classification", 10, (cnn,), {}))
    with pytest.raises(NnzooError, match="one parameter layout"):
        create_model("dwsnet", DataInfo("mixed", "classification", 10, (MNIST, siren_spec((2, 8, 1))), {}))
    with pytest.raises(NnzooError, match="at least 3 layers"):
        create_model("dwsnet", _info(siren_spec((2, 8, 1))))
    for bad in ({"hidden": 12}, {"reduction": "median"}, {"set_layer": "gnn"}, {"layers": 0}):
        with pytest.raises(NnzooError):
            create_model("dwsnet", _info(MNIST), **bad)
    model = create_model("dwsnet", _info(MNIST), hidden=8, layers=1)
    with pytest.raises(NnzooError, match="built for MLPs 2-32-32-1"):
        model(_batch(DEEP, torch.zeros(2, DEEP.num_params)))
