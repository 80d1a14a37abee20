"""Metanetworks that claim hidden-neuron permutation symmetry have it, and the checks can fail.

Every invariant model is checked on MLPs and on CNNs (residuals, BatchNorm, a
mixed-architecture batch) for: invariance of its prediction to random
symmetries (relative error, float32 and float64, eval and train mode with
dropout off), equivariance of its node states (graph models), and
sensitivity: changing any one layer's weight or bias must move the output far
beyond the invariance error, so a model that ignores a tensor fails, and so
does one that ignores the order of input or output neurons.  The symmetry
helpers (:mod:`nnzoo.nets.symmetry`) are checked against the networks' own
forward passes and graphs.
"""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import Tensor, nn

from nnzoo.data.formats.small_cnn_zoo import small_cnn_spec
from nnzoo.data.weights import DataInfo, WeightBatch, layer_statistics
from nnzoo.errors import NnzooError
from nnzoo.graphs import batch_to_graph
from nnzoo.models import MODELS, create_model
from nnzoo.nets import mlp_forward, mlp_spec, siren_init, siren_spec
from nnzoo.nets.cnn import cnn_forward, cnn_init
from nnzoo.nets.functional import permute_neurons
from nnzoo.nets.spec import NORM_ROLES, LayerSpec, NetworkSpec
from nnzoo.nets.symmetry import (identity_permutation, is_symmetry, permutable_blocks, permute_network,
                                 random_batch_symmetry, random_neuron_permutation)

F32_TOL, F64_TOL = 1e-5, 1e-10  # relative permutation error: max|delta| / max|out|
# a real change (float64): > MARGIN x the permutation error and > SENSITIVITY[kind] x the spread of the
# predictions over the batch's networks (one neuron's entries move a model at initialisation far less than a
# whole tensor; the gnn's predictions differ between networks by only ~1e-3 of their size)
SENSITIVITY, MARGIN = {"noise": 1e-4, "row x2": 1e-6, "order": 1e-4}, 1e3

# a residual BatchNorm CNN: groups 1 and 3 are joined by a residual, so they are permuted together
RESNET = NetworkSpec((LayerSpec("conv", 1, 4, (3, 3), padding="same", norm="batchnorm", activation="relu"),
                      LayerSpec("conv", 4, 6, (5, 5), padding="same", norm="batchnorm", activation="tanh"),
                      LayerSpec("conv", 6, 4, (3, 3), padding="same", activation="relu"),
                      LayerSpec("linear", 4, 10)), residuals=((1, 3),), input_kind="image")
# residuals of unequal widths: channel 0 of group 2 (and so of group 4) is tied to the input channel,
# channels 1-4 of groups 2 and 4 move together, channel 5 of group 2 stays (outside the 2->4 prefix)
RESNET2 = NetworkSpec((LayerSpec("conv", 1, 8, (3, 3), padding="same", norm="batchnorm", activation="relu"),
                       LayerSpec("conv", 8, 6, (3, 3), padding="same", activation="tanh"),
                       LayerSpec("conv", 6, 8, (3, 3), padding="same", norm="batchnorm", activation="relu"),
                       LayerSpec("conv", 8, 5, (1, 1), padding="same", activation="tanh"),
                       LayerSpec("linear", 5, 10)), residuals=((0, 2), (1, 3), (2, 4)), input_kind="image")
SMALL_CNN = small_cnn_spec("relu", units=8)  # the Small CNN Zoo layout: stride 2, no padding, no residual

# what a model reads in one batch: two MLP datasets and one CNN dataset mixing three architectures
# (and one CNN architecture alone, for the models that read a single parameter layout per dataset)
DATA = {"siren": (siren_spec((2, 32, 32, 1)),), "relu": (mlp_spec((3, 16, 24, 16, 2)),),
        "cnns": (RESNET, RESNET2, SMALL_CNN), "cnn": (SMALL_CNN,)}

# small models keep the module fast; options a model does not take are dropped (models are being rewritten)
SMALL = {"gnn": {"hidden": 16, "layers": 4, "fourier_features": 16},  # 4 hops: inputs reach the outputs
         "transformer": {"d_node": 16, "d_edge": 8, "d_attn": 16, "d_node_hidden": 32, "d_edge_hidden": 16,
                         "heads": 2, "layers": 2, "head_hidden": 16, "fourier_features": 16},
         "dwsnet": {"hidden": 8, "layers": 2, "heads": 2},
         "statnn": {"hidden": 32, "layers": 2},
         "nfn_hnp": {"hidden": [8, 8], "fourier_features": 8, "head_hidden": 32},
         "nfn_np": {"hidden": [8, 8], "fourier_features": 8, "head_hidden": 32}}
NFN_MODELS = ("nfn_hnp", "nfn_np")  # one layout per dataset: the single-architecture "cnn" key
GRAPH_MODELS = ("gnn", "transformer")  # the models with node_states()


def _case(name: str, key: str, **options) -> object:
    return pytest.param(name, options, key, id="-".join([name, *(f"{k}{v}" for k, v in options.items()), key]))


CASES = [*(_case(n, key, probes=k) for n in GRAPH_MODELS for k in (0, 16) for key in ("siren", "relu")),
         *(_case("dwsnet", key, reduction=r) for r in ("max", "mean") for key in ("siren", "relu")),
         _case("statnn", "siren"), _case("statnn", "relu"),
         *(_case(n, "cnns") for n in (*GRAPH_MODELS, "statnn")),  # probes need coordinate networks
         *(_case(n, key) for n in NFN_MODELS for key in ("siren", "relu", "cnn")),
         _case("nfn_np", "siren", io_encoding="learned"), _case("nfn_np", "cnn", io_encoding="learned")]
GRAPH_CASES = [c for c in CASES if c.values[0] in GRAPH_MODELS]


# ------------------------------------------------------------------ data and models
@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These tensors are tiny: a second intra-op thread only adds synchronisation, which on a loaded machine
    made a forward pass ~50x slower (1.3 s instead of 0.02 s for a dwsnet)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def mlp_params(spec: NetworkSpec, n: int, seed: int = 0) -> Tensor:
    params = siren_init(n, spec, torch.Generator().manual_seed(seed))
    return params + 0.01 * torch.randn(params.shape, generator=torch.Generator().manual_seed(seed + 1))


def cnn_params(spec: NetworkSpec, n: int, seed: int = 0) -> Tensor:
    """He-initialised CNNs with non-trivial biases and BatchNorm tensors, as after training."""
    g = torch.Generator().manual_seed(seed)
    params = cnn_init(n, spec, "he_normal", generator=g)
    for s in spec.slots:
        if s.role in ("bias", "norm_bias", "running_mean"):
            params[:, s.start:s.end] = 0.3 * torch.randn(n, s.numel, generator=g)
        if s.role in ("norm_weight", "running_var"):
            params[:, s.start:s.end] = 0.5 + torch.rand(n, s.numel, generator=g)
    return params


def dataset(key: str) -> tuple[tuple[NetworkSpec, ...], list[Tensor]]:
    specs = DATA[key]
    if specs[0].is_conv:
        return specs, [cnn_params(s, 2 + i % 2, seed=10 * i) for i, s in enumerate(specs)]
    return specs, [mlp_params(specs[0], 3)]


def build(name: str, specs, params, train: bool = False, **options) -> nn.Module:
    """A small model; ``train=True``: training mode with every dropout off (BatchNorm uses batch statistics)."""
    info = DataInfo("t", "classification", 10, tuple(specs), layer_statistics(specs, params))
    accepted = inspect.signature(MODELS.get(name)).parameters
    options = {**{k: v for k, v in SMALL.get(name, {}).items() if k in accepted}, **options}
    if train:
        options.update({k: 0.0 for k in accepted if "dropout" in k})
    torch.manual_seed(0)
    model = create_model(name, info, **options)
    for m in model.modules():  # a dropout that is no option would make train-mode checks random
        if isinstance(m, nn.modules.dropout._DropoutNd):
            m.p = 0.0
    return model.train(train)


def as_batch(specs, params) -> WeightBatch:
    return WeightBatch(specs, params, torch.zeros(sum(len(p) for p in params), dtype=torch.long))


def predict(model: nn.Module, specs, params) -> Tensor:
    with torch.no_grad():
        return model(as_batch(specs, params))


def node_states(model: nn.Module, specs, params) -> Tensor:
    with torch.no_grad():
        return model.node_states(as_batch(specs, params))


def rel(a: Tensor, b: Tensor) -> float:
    """max|a - b| / max|a|: the error relative to the output's own scale."""
    return ((a - b).abs().max() / a.abs().max().clamp_min(1e-30)).item()


def symmetric_copy(specs, params, seed: int = 1) -> tuple[list[Tensor], Tensor]:
    """Each network reordered by its own random symmetry, plus the batch graph's node permutation."""
    permuted, node_perm = random_batch_symmetry(specs, params, torch.Generator().manual_seed(seed))
    assert all(not torch.equal(a, b) for a, b in zip(params, permuted))
    return permuted, node_perm


def run_network(spec: NetworkSpec, params: Tensor, train: bool = False) -> Tensor:
    """The function networks compute, on fixed inputs (``train``: CNN BatchNorm on batch statistics)."""
    g = torch.Generator().manual_seed(3)
    if spec.is_conv:
        images = torch.rand(5, spec.num_inputs, 16, 16, generator=g, dtype=params.dtype)
        return cnn_forward(params, spec, images, train=train)
    return mlp_forward(params, spec, torch.rand(20, spec.num_inputs, generator=g, dtype=params.dtype))


def test_cases_cover_every_invariant_model():
    invariant = {n for n in MODELS.names() if MODELS.entry(n).meta["invariant"]}
    for key in DATA:  # CNN models on the mixed CNN batch if they read mixed architectures, else on one CNN
        mixed = len(DATA[key]) > 1
        wanted = {n for n in invariant if not DATA[key][0].is_conv
                  or (MODELS.entry(n).meta["conv"] and MODELS.entry(n).meta["heterogeneous"] == mixed)}
        assert {c.values[0] for c in CASES if c.values[2] == key} == wanted


# ------------------------------------------------------------------ the symmetry helpers
@pytest.mark.parametrize("spec", [*DATA["siren"], *DATA["relu"], *DATA["cnns"]],
                         ids=["siren", "relu-mlp", "resnet-bn", "resnet2-bn", "small-cnn"])
def test_symmetry_helpers_keep_the_function(spec):
    """Random symmetries keep what every network computes (BatchNorm in eval and train mode, residuals)."""
    params = (cnn_params(spec, 3) if spec.is_conv else mlp_params(spec, 3)).double()
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        perms = random_neuron_permutation(spec, g)
        assert is_symmetry(spec, perms)
        assert torch.equal(perms[0], torch.arange(spec.num_inputs))
        assert torch.equal(perms[-1], torch.arange(spec.num_outputs))
        permuted = permute_network(params, spec, perms)
        assert not torch.equal(params, permuted)
        for train in ([False, True] if spec.is_conv else [False]):
            assert rel(run_network(spec, params, train), run_network(spec, permuted, train)) < F64_TOL
    # every hidden neuron can move except RESNET2's channel 0 of groups 2 and 4 and channel 5 of group 2
    movable = sum(len(block) * len(block[0]) for block in permutable_blocks(spec))
    assert movable == sum(spec.widths[1:-1]) - (3 if spec is RESNET2 else 0)


def test_permutable_blocks_of_a_multi_residual_cnn():
    blocks = permutable_blocks(RESNET2)
    assert len(blocks) == 2
    assert blocks[0] == [((1, c), (3, c)) for c in range(8)]  # 1->3: equal widths, all partners
    assert blocks[1] == [((2, c), (4, c)) for c in range(1, 5)]  # 2->4 minus the input-tied channel 0


@pytest.mark.parametrize("spec", [RESNET, RESNET2], ids=["resnet-bn", "resnet2-bn"])
def test_permuting_one_side_of_a_residual_is_not_a_symmetry(spec):
    """Residual partner channels must move together: reordering one side changes the network's function."""
    params = cnn_params(spec, 3).double()
    swap = torch.tensor([1, 0, *range(2, spec.widths[1])])
    perms = identity_permutation(spec)
    perms[1] = swap  # group 1 only; its partner group 3 stays
    assert not is_symmetry(spec, perms)
    with pytest.raises(NnzooError, match="not a symmetry"):
        permute_network(params, spec, perms)
    assert rel(run_network(spec, params), run_network(spec, permute_neurons(params, spec, 1, swap))) > 1e-2
    perms[3] = torch.cat([swap, torch.arange(len(swap), spec.widths[3])])  # both sides together: a symmetry
    assert is_symmetry(spec, perms)
    assert rel(run_network(spec, params), run_network(spec, permute_network(params, spec, perms))) < F64_TOL
    if spec is RESNET2:  # nor is moving a channel into a residual's shared prefix, or an input-tied channel
        for pair in [(4, 5), (0, 1)]:  # group 2: 5 is outside the 2->4 prefix, 0 is tied to the input
            perms = identity_permutation(spec)
            perms[2][list(pair)] = perms[2][list(pair[::-1])]
            assert not is_symmetry(spec, perms)
            moved = permute_neurons(params, spec, 2, perms[2])
            assert rel(run_network(spec, params), run_network(spec, moved)) > 1e-2


@pytest.mark.parametrize("key", ["relu", "cnns"])
def test_node_permutation_relabels_the_batch_graph(key):
    """The graph of the reordered networks is the original batch graph with its nodes relabelled by node_perm."""
    specs, params = dataset(key)
    permuted, node_perm = symmetric_copy(specs, params)
    kernel = (max(s.max_kernel[0] for s in specs), max(s.max_kernel[1] for s in specs))
    roles = ("bias", *NORM_ROLES) if key == "cnns" else ("bias",)
    a, b = batch_to_graph(specs, params, kernel, roles), batch_to_graph(specs, permuted, kernel, roles)
    n = a.x.shape[0]
    assert torch.equal(torch.sort(node_perm).values, torch.arange(n)) and not torch.equal(node_perm, torch.arange(n))
    assert torch.equal(b.x, a.x[node_perm])
    for name in ("node_pos", "node_group", "node_kind", "batch"):  # only same-kind nodes of one graph swap
        assert torch.equal(getattr(a, name)[node_perm], getattr(a, name))
    new_id = torch.empty_like(node_perm)
    new_id[node_perm] = torch.arange(n)

    def edge_set(src: Tensor, dst: Tensor, attr: Tensor) -> list[tuple]:
        return sorted(map(tuple, torch.cat([src[:, None], dst[:, None], attr], dim=1).tolist()))

    assert edge_set(new_id[a.edge_index[0]], new_id[a.edge_index[1]], a.edge_attr) == \
        edge_set(b.edge_index[0], b.edge_index[1], b.edge_attr)


# ------------------------------------------------------------------ models: invariance and equivariance
MODES = [pytest.param(dtype, train, id=f"f{torch.finfo(dtype).bits}-{'train' if train else 'eval'}")
         for train in (False, True) for dtype in (torch.float32, torch.float64)]  # train: dropout off


def _before_and_after(read, name: str, options: dict, key: str, dtype: torch.dtype, train: bool):
    """``read(model, specs, params)`` of the networks and of their random symmetric copies, in ``dtype``;
    also the batch graph's node permutation and the tolerance of ``dtype``."""
    specs, params = dataset(key)
    permuted, node_perm = symmetric_copy(specs, params)
    model = build(name, specs, params, train=train, **options).to(dtype)
    before = read(model, specs, [p.to(dtype) for p in params])
    assert before.dtype == dtype and torch.isfinite(before).all()
    after = read(model, specs, [p.to(dtype) for p in permuted])
    return before, after, node_perm, F32_TOL if dtype == torch.float32 else F64_TOL


@pytest.mark.parametrize("dtype, train", MODES)
@pytest.mark.parametrize("name, options, key", CASES)
def test_prediction_is_invariant_to_hidden_symmetries(name, options, key, dtype, train):
    """Each network of the batch reordered by its own random symmetry: the prediction does not move."""
    out, moved, _, tol = _before_and_after(predict, name, options, key, dtype, train)
    error = rel(out, moved)
    assert error < tol, f"relative permutation error {error:.1e}"


@pytest.mark.parametrize("dtype, train", MODES)
@pytest.mark.parametrize("name, options, key", GRAPH_CASES)
def test_node_states_are_equivariant(name, options, key, dtype, train):
    """Reordering hidden neurons reorders the rows of node_states the same way (inputs/outputs stay)."""
    states, moved, node_perm, tol = _before_and_after(node_states, name, options, key, dtype, train)
    assert states.shape[0] == len(node_perm)
    error = rel(states[node_perm], moved)
    assert error < tol, f"relative equivariance error {error:.1e}"
    assert rel(states, moved) > 1e-3  # not vacuous: rows in the old order differ


# ------------------------------------------------------------------ models: sensitivity
def _tensor_changes(params: Tensor, spec: NetworkSpec, layer: int, role: str, seed: int) -> dict[str, Tensor]:
    """Two changes of one tensor that are no symmetries: noise of its own scale, and one neuron's entries x2."""
    s = spec.slot(layer, role)
    block = params[:, s.start:s.end]
    noisy = params.clone()
    noise = torch.randn(block.shape, generator=torch.Generator().manual_seed(seed), dtype=params.dtype)
    noisy[:, s.start:s.end] = block + noise * block.pow(2).mean().sqrt()
    scaled = params.clone()
    row = s.numel // s.shape[0]  # neuron 0's entries: the first row of a weight, the first entry of a bias
    scaled[:, s.start:s.start + row] *= 2.0
    return {"noise": noisy, "row x2": scaled}


def _order_changes(params: Tensor, spec: NetworkSpec) -> dict[str, Tensor]:
    """Reversed input neurons (columns of layer 0's weight) and reversed output neurons (rows of the last layer)."""
    changes = {}
    if spec.num_inputs > 1:
        s = spec.slot(0, "weight")
        q = params.clone()
        q[:, s.start:s.end] = params[:, s.start:s.end].view(-1, *s.shape).flip(2).reshape(len(params), -1)
        changes["inputs reversed"] = q
    if spec.num_outputs > 1:
        q = params.clone()
        for s in spec.slots:
            if s.layer == spec.num_layers - 1:
                q[:, s.start:s.end] = params[:, s.start:s.end].view(-1, *s.shape).flip(1).reshape(len(params), -1)
        changes["outputs reversed"] = q
    return changes


@pytest.mark.parametrize("name, options, key", CASES)
def test_every_layer_tensor_and_the_io_order_move_the_prediction(name, options, key):
    """Changing any one layer's weight or bias (or BatchNorm tensor), or reordering the input or output neurons
    (which are not permutable), moves the prediction far beyond the invariance error (float64): a model that
    ignores, e.g., layer 1's biases, or reads the inputs as a set, fails here.

    For speed every changed network (a copy of network 0 of its group) rides in one batch with the originals;
    in eval mode the networks of a batch do not interact (test_mixed_architecture_batch_equals_networks_alone).
    """
    specs, params = dataset(key)
    params = [p.double() for p in params]
    model = build(name, specs, params, **options).double()
    out = predict(model, specs, params)
    perm_error = (out - predict(model, specs, symmetric_copy(specs, params)[0])).abs().max().item()
    spread = (out - out.mean(dim=0)).abs().max().item()
    assert spread > MARGIN * perm_error, f"predictions barely differ between networks ({spread:.1e})"
    threshold = {kind: max(v * spread, MARGIN * perm_error) for kind, v in SENSITIVITY.items()}
    declared = MODELS.entry(name).meta  # what the model says it reads (register_model), not its name
    roles = ("weight", "bias", *NORM_ROLES) if declared["reads_norm"] else ("weight", "bias")
    labels, batch = [], []
    for g, spec in enumerate(specs):
        changed = []
        for s in spec.slots:
            if s.role in roles:
                for kind, p in _tensor_changes(params[g][:1], spec, s.layer, s.role, seed=s.start).items():
                    changed.append(p)
                    labels.append((g, kind, f"{spec.describe()} layer {s.layer} {s.role} ({kind})"))
        if declared["io_ordered"]:
            for what, p in _order_changes(params[g][:1], spec).items():
                changed.append(p)
                labels.append((g, "order", f"{spec.describe()} {what}"))
        batch.append(torch.cat([params[g], *changed]))
    assert any(kind == "order" for _, kind, _ in labels) or not declared["io_ordered"]
    together = predict(model, specs, batch)
    starts = torch.tensor([0, *(len(b) for b in batch)]).cumsum(0).tolist()
    original = torch.cat([together[starts[g]:starts[g] + len(p)] for g, p in enumerate(params)])
    assert (original - out).abs().max().item() <= spread * 1e-9  # the changed copies did not interact
    changed_rows = torch.cat([together[starts[g] + len(p):starts[g + 1]] for g, p in enumerate(params)])
    reference = torch.stack([together[starts[g]] for g, _, _ in labels])  # network 0 of the group
    change = (changed_rows - reference).abs().amax(dim=1).tolist()
    weak = [f"{what}: {c:.1e} <= {threshold[kind]:.1e}" for (_, kind, what), c in zip(labels, change)
            if not c > threshold[kind]]
    assert not weak, "the prediction barely moves when changing: " + "; ".join(weak)


@pytest.mark.parametrize("name", [n for n in MODELS.names() if not MODELS.entry(n).meta["reads_norm"]])
def test_a_model_that_declares_it_ignores_norm_tensors_does(name):
    """``reads_norm=False`` is a declaration the sensitivity test above trusts, so it is checked: such a model's
    output does not move when a BatchNorm tensor changes.  A model that starts reading them must say so."""
    specs, params = dataset("cnns")
    model = build(name, specs, params)
    out = predict(model, specs, params)
    s = RESNET.slot(0, "norm_weight")
    changed = params[0].clone()
    changed[:, s.start:s.end] *= 2
    assert rel(out, predict(model, specs, [changed, *params[1:]])) <= F32_TOL


# ------------------------------------------------------------------ baselines and batching
def test_flat_mlp_is_not_invariant():
    specs, params = dataset("siren")
    model = build("mlp", specs, params)
    assert rel(predict(model, specs, params), predict(model, specs, symmetric_copy(specs, params)[0])) > 1e-3


@pytest.mark.parametrize("name", ["gnn", "transformer", "statnn"])
@pytest.mark.parametrize("key", ["sirens", "cnns"])
def test_mixed_architecture_batch_equals_networks_alone(name, key):
    """Batching networks of different sizes (padding, offsets) must not leak between graphs."""
    if key == "sirens":
        specs = (siren_spec((2, 32, 32, 1)), siren_spec((2, 16, 24, 16, 1)))
        params = [mlp_params(specs[0], 3), mlp_params(specs[1], 2, seed=5)]
    else:
        specs, params = dataset(key)
    model = build(name, specs, params, **({"probes": 8} if name in GRAPH_MODELS else {}))
    together = predict(model, specs, params)
    alone = torch.cat([predict(model, [s], [p]) for s, p in zip(specs, params)])
    assert rel(together, alone) < F32_TOL
