"""NFN-HNP and NFN-NP (nnzoo/models/nfn.py): the reference sizes, the symmetries each one has and the ones it
must not have, learning, a CLI smoke run on a CNN zoo, and the guard against nfn's installed ``tests`` package."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from nnzoo.cli import main
from nnzoo.config import compose, to_container
from nnzoo.data.formats.small_cnn_zoo import small_cnn_spec, write_small_cnn_zoo
from nnzoo.data.weights import DataInfo, WeightBatch, layer_statistics
from nnzoo.errors import NnzooError
from nnzoo.models import count_parameters, create_model
from nnzoo.nets import siren_spec
from nnzoo.nets.symmetry import permute_network, random_neuron_permutation
from tests.conftest import training_losses
from tests.test_invariance import RESNET, cnn_params, mlp_params, rel

SIREN = siren_spec((2, 32, 32, 1))
ZOO = small_cnn_spec("relu")  # the public Small CNN Zoo architecture (and nnzoo's built cnn_zoo)
MODELS = ("nfn_hnp", "nfn_np")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def recipe(name: str, data: str) -> dict:
    """The model options ``nnzoo fit --model name --data data`` uses (model config + the data's recipe)."""
    return {k: v for k, v in to_container(compose(name, data).model).items() if k != "name"}


def build(name: str, spec, params, data: str, outputs: int = 10, **options) -> torch.nn.Module:
    task = "classification" if outputs > 1 else "regression"
    info = DataInfo(data, task, outputs, (spec,), layer_statistics([spec], [params]))
    torch.manual_seed(0)
    return create_model(name, info, **{**recipe(name, data), **options}).eval()


def predict(model, spec, params) -> torch.Tensor:
    with torch.no_grad():
        return model(WeightBatch([spec], [params], torch.zeros(len(params), dtype=torch.long)))


def reorder(params, spec, layer: int, axis: int) -> torch.Tensor:
    """Reverse the input (``axis=2``: columns of layer 0) or output neurons (``axis=1``: rows of the last layer)."""
    out = params.clone()
    for s in spec.slots:
        if s.layer == layer and (s.role == "weight" or axis == 1):
            out[:, s.start:s.end] = params[:, s.start:s.end].view(-1, *s.shape).flip(axis if s.role == "weight"
                                                                                     else 1).flatten(1)
    return out


# ------------------------------------------------------------------ sizes
PUBLISHED = {("nfn_hnp", "mnist_inr"): (68.8e6, SIREN, 10), ("nfn_np", "mnist_inr"): (45.7e6, SIREN, 10),
             ("nfn_hnp", "cnn_zoo"): (2.81e6, ZOO, 1)}  # the brief's reference figures (3 significant digits)


@pytest.mark.parametrize("name, data", PUBLISHED)
def test_parameter_counts_are_the_reference_counts(name, data):
    """The composed configs (model defaults: the SIREN classifier; cnn_zoo recipe: predict_gen) build the
    reference sizes; the exact counts, measured on the reference code, are pinned in tests/test_parity.py."""
    figure, spec, outputs = PUBLISHED[name, data]
    info = DataInfo(data, "classification" if outputs > 1 else "regression", outputs, (spec,), {})
    count = count_parameters(create_model(name, info, **recipe(name, data)))
    assert f"{count:.3g}" == f"{figure:.3g}", f"{name} on {data}: {count:,} parameters, reference {figure:,.0f}"


# ------------------------------------------------------------------ symmetries
def _inr_params(n=3):
    return mlp_params(SIREN, n).double()


def _zoo_params(n=3):
    return cnn_params(ZOO, n).double()


CASES = [pytest.param(name, data, id=f"{name}-{data}") for name in MODELS for data in ("mnist_inr", "cnn_zoo")]


def _case(name, data):
    """The reference-size model on its data (float64) and a batch: 2-32-32-1 SIRENs or Small-CNN-Zoo CNNs."""
    spec, params, outputs = (SIREN, _inr_params(), 10) if data == "mnist_inr" else (ZOO, _zoo_params(), 1)
    return spec, params, build(name, spec, params, data, outputs).double()


@pytest.mark.parametrize("name, data", CASES)
def test_prediction_is_invariant_to_a_random_hidden_neuron_permutation(name, data):
    spec, params, model = _case(name, data)
    out = predict(model, spec, params)
    perms = random_neuron_permutation(spec, torch.Generator().manual_seed(4))
    permuted = permute_network(params, spec, perms)
    assert not torch.equal(params, permuted)
    error = rel(out, predict(model, spec, permuted))
    assert error < 1e-5, f"relative error {error:.1e} under a hidden-neuron permutation"


@pytest.mark.parametrize("name, data", CASES)
def test_one_weight_and_the_input_output_order_move_the_prediction(name, data):
    """One entry of a hidden weight, and reversed input (SIRENs: x <-> y) or output neurons (CNNs: 10 classes)
    change the prediction: the HNP layers and the HNP-pooled head keep input/output neurons apart, and NFN-NP's
    input/output encodings do the same for its NP layers."""
    spec, params, model = _case(name, data)
    out = predict(model, spec, params)
    s = spec.slot(1, "weight")
    nudged = params.clone()
    nudged[:, s.start + 5] += 0.5 * params[:, s.start:s.end].std()
    assert rel(out, predict(model, spec, nudged)) > 1e-6  # measured 9e-5 to 3e-4; a permutation: < 2e-15
    io = reorder(params, spec, 0, 2) if data == "mnist_inr" else reorder(params, spec, spec.num_layers - 1, 1)
    assert rel(out, predict(model, spec, io)) > 1e-4  # measured 2e-3 (NP, SIRENs) to 0.1


@pytest.mark.parametrize("data", ["mnist_inr", "cnn_zoo"])
def test_np_without_io_encoding_or_hnp_pool_is_invariant_to_input_output_order(data):
    """The control for the test above: NP layers with NP pooling and no encoding read input and output neurons
    as sets, so reversing them changes nothing (this is why the reference adds the encodings)."""
    spec, params, outputs = (SIREN, _inr_params(), 10) if data == "mnist_inr" else (ZOO, _zoo_params(), 1)
    model = build("nfn_np", spec, params, data, outputs, io_encoding="none", pool="np").double()
    out = predict(model, spec, params)
    for layer, axis in ((0, 2), (spec.num_layers - 1, 1)):
        assert rel(out, predict(model, spec, reorder(params, spec, layer, axis))) < 1e-10


def test_batchnorm_networks_are_refused_in_one_line():
    params = cnn_params(RESNET, 2)
    info = DataInfo("bn", "regression", 1, (RESNET,), layer_statistics([RESNET], [params]))
    for name in MODELS:
        with pytest.raises(NnzooError, match="BatchNorm") as exc:
            create_model(name, info, hidden=[4], fourier_features=0, head_hidden=8)
        assert "\n" not in str(exc.value)


def test_encodings_stay_float32_under_bf16_autocast():
    """Fourier features of weights ~0.01 at scale 10 (and the sinusoidal codes) are computed in float32 under
    trainer.precision=bf16-mixed, bitwise as without autocast; the NF-layers after them run in bfloat16."""
    params = mlp_params(SIREN, 2)
    model = build("nfn_np", SIREN, params, "mnist_inr", hidden=[8], head_hidden=16)
    encoded = []
    model.encode.register_forward_hook(lambda module, inputs, out: encoded.append(out))
    predict(model, SIREN, params)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = predict(model, SIREN, params)
    assert out.dtype == torch.bfloat16
    for a, b in zip((*encoded[1].weights, *encoded[1].biases), (*encoded[0].weights, *encoded[0].biases)):
        assert a.dtype == torch.float32 and torch.equal(a, b)


# ------------------------------------------------------------------ recipes
def test_recipes_are_the_reference_ones():
    """SIRENs (model configs): Adam 1e-4, 10,000 warm-up steps, batch 32, raw weights, no augmentation; the CNN
    zoo (cnn_zoo.yaml recipes): Adam 1e-3 without warm-up, batch 8, 50 epochs, BCE; no clipping anywhere."""
    for name in MODELS:
        inr, zoo = compose(name, "mnist_inr"), compose(name, "cnn_zoo")
        assert (inr.optim.lr, inr.optim.warmup_steps, inr.data.batch_size, inr.data.normalize) == (1e-4, 10_000, 32,
                                                                                                 "none")
        assert not any(v for k, v in inr.data.augment.items() if k != "exact_translation")
        assert (zoo.optim.lr, zoo.optim.warmup_steps, zoo.data.batch_size, zoo.trainer.max_epochs,
                zoo.task.regression_loss) == (1e-3, 0, 8, 50, "bce")
        assert zoo.data.normalize == {"nfn_hnp": "none", "nfn_np": "layer"}[name]
        assert zoo.model.io_encoding == "learned" if name == "nfn_np" else "io_encoding" not in zoo.model
        for cfg in (inr, zoo):
            assert (cfg.optim.weight_decay, cfg.optim.amsgrad, cfg.trainer.gradient_clip_val) == (0.0, False, None)


def test_adamw_without_decay_or_amsgrad_is_the_reference_adam():
    """The recipes reach torch.optim.Adam through nnzoo's AdamW (weight_decay 0, amsgrad false): same steps."""
    from nnzoo.tasks import create_task
    params = mlp_params(SIREN, 4)
    info = DataInfo("mnist_inr", "classification", 10, (SIREN,), {})
    small = {"name": "nfn_hnp", "hidden": [4], "fourier_features": 4, "head_hidden": 8, "dropout": 0.0}
    optim = {k: v for k, v in to_container(compose("nfn_hnp", "mnist_inr").optim).items()}
    torch.manual_seed(0)
    task = create_task(small, info, {**optim, "warmup_steps": 0, "lr": 1e-2})
    ours = task.configure_optimizers()["optimizer"]
    reference = task.model.__class__(info, **{k: v for k, v in small.items() if k != "name"})
    reference.load_state_dict(task.model.state_dict())
    adam = torch.optim.Adam(reference.parameters(), lr=1e-2)
    batch = WeightBatch([SIREN], [params], torch.arange(4))
    for _ in range(3):
        for model, opt in ((task.model, ours), (reference, adam)):
            opt.zero_grad()
            F.cross_entropy(model(batch), batch.y).backward()
            opt.step()
    for a, b in zip(task.model.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------ learning
@pytest.mark.parametrize("name", MODELS)
def test_short_fit_on_a_tiny_inr_batch_lowers_the_loss(name):
    """32 SIRENs, 10 labels, the reference head and encodings at a tenth of the width, Adam: 25 steps halve
    the loss (measured: 2.3 -> 0.02 (HNP), 0.29 (NP))."""
    torch.manual_seed(0)
    params = mlp_params(SIREN, 32)
    labels = torch.arange(32) % 10
    model = build(name, SIREN, params, "mnist_inr", hidden=[32, 32, 32], fourier_features=16, head_hidden=100,
                  dropout=0.0).train()
    batch = WeightBatch([SIREN], [params], labels)
    losses = training_losses(model, batch, labels, torch.optim.Adam(model.parameters(), lr=1e-3), 25)
    assert losses[-1] < 0.5 * losses[0], f"{name}: loss {losses[0]:.3f} -> {losses[-1]:.3f}"


def _tiny_public_zoo(folder: Path, nets: int = 24) -> None:
    g = torch.Generator().manual_seed(0)
    rows, metrics = [], []
    for i in range(nets):
        for step in (0, 86):
            rows.append(cnn_params(ZOO, 1, seed=100 * i + step)[0] + 0.01 * torch.randn(ZOO.num_params, generator=g))
            metrics.append({"config.activation": "relu", "config.dataset": "cifar10", "modeldir": f"m{i}",
                            "step": step, "test_accuracy": 0.1 + 0.8 * i / nets})
    write_small_cnn_zoo(folder, ZOO, torch.stack(rows), metrics)


@pytest.mark.parametrize("name", MODELS)
def test_fit_smoke_on_a_cnn_zoo(name, tmp_path, nnzoo_home):
    """``nnzoo fit --model <nfn> --data cnn_zoo trainer.max_steps=1``: the reference zoo recipe (batch 8,
    channels 16-16-5, BCE) runs one training step, validation and test through nnzoo.train."""
    _tiny_public_zoo(tmp_path / "zoo")
    args = ["fit", "--model", name, "--data", "cnn_zoo", f"data.root={tmp_path / 'zoo'}", "data.split_file=none",
            f"run_dir={tmp_path / 'runs'}", "trainer.max_steps=1", "trainer.limit_val_batches=1",
            "trainer.limit_test_batches=1", "trainer.logger=false",
            "trainer.enable_progress_bar=false"]
    assert main(args) == 0
    (metrics_file,) = (tmp_path / "runs").glob("*/version_*/metrics.json")
    metrics = json.loads(metrics_file.read_text())
    assert metrics["steps"] == 1 and "test/loss" in metrics
    assert metrics["num_parameters"] == {"nfn_hnp": 2_811_743, "nfn_np": 2_031_390}[name]


# ------------------------------------------------------------------ the installed `tests` package of nfn
def test_tests_package_is_this_folder():
    """nfn 0.1.2 installs a top-level ``tests`` package; ours must win (tests/__init__.py, checked on every run
    by the conftest guard), or every ``from tests.conftest import ...`` breaks."""
    import tests
    import tests.conftest
    here = Path(__file__).resolve().parent
    assert Path(tests.__file__).resolve() == here / "__init__.py"
    assert Path(tests.conftest.__file__).resolve() == here / "conftest.py"
