"""INR editing (mnist_inr_dilate): targets, equivariant outputs, rendering, a short fit, predict."""

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from nnzoo.cli import main
from nnzoo.config import compose
from nnzoo.data.editing import dilate
from nnzoo.data.siren_fit import grid_coordinates, render_inrs
from nnzoo.data.weights import DataInfo, WeightBatch, layer_statistics
from nnzoo.models import count_parameters, create_model
from nnzoo.nets import siren_spec
from nnzoo.nets.functional import mlp_forward, params_to_state_dict, siren_init, state_dict_to_params
from nnzoo.nets.symmetry import permute_network, random_neuron_permutation
from nnzoo.tasks import EditingTask
from tests.conftest import SMALL_INR_BUILD, fit_small
EQUIVARIANT_EDITORS = ("gnn", "transformer", "dwsnet")
ARCHITECTURES = ((2, 32, 32, 1), (2, 16, 16, 16, 1))

REFERENCE_EDIT_COUNTS = {  # the reference editing models built on MNIST INRs (docs/models.md, editing models)
    "gnn": 1_186_696,  # neural-graphs GNNParams, configs/model/pna.yaml + scripts/mnist_dilation_gnn.sh
    "transformer": 391_112,  # RelationalTransformerParams, rtransformer.yaml + scripts/mnist_dilation_rt.sh
    "dwsnet": 424_447,  # DWSModel, style_editing/configs/model/dwsnet.yaml (output_features 1)
    "mlp": 4_374_191,  # NFN MLPTransferNet (hidden 1000, out_scale 0.01)
}


def editing_info(spec, params) -> DataInfo:
    return DataInfo("mnist_inr_dilate", "editing", 1, (spec,), layer_statistics([spec], [params]),
                    extra={"image_size": [28, 28]})


def editor(name: str, info: DataInfo, **overrides):
    options = {k: v for k, v in OmegaConf.to_container(compose(name, "mnist_inr_dilate").model).items()
               if k != "name"}
    return create_model(name, info, **{**options, **overrides})


def naive_dilate(image: torch.Tensor) -> torch.Tensor:
    """cv2.dilate(img, np.ones((3, 3)), iterations=1) written out: max over the 3x3 neighbours inside."""
    h, w = image.shape
    out = torch.empty_like(image)
    for i in range(h):
        for j in range(w):
            out[i, j] = image[max(i - 1, 0):i + 2, max(j - 1, 0):j + 2].max()
    return out


def test_dilation_is_the_3x3_maximum_with_the_border_ignored():
    torch.manual_seed(0)
    images = torch.rand(3, 9, 7) - 1.0  # all negative: a zero-padded maximum would differ along the border
    out = dilate(images)
    for image, dilated in zip(images, out):
        torch.testing.assert_close(dilated, naive_dilate(image), rtol=0, atol=0)


@pytest.mark.parametrize("name", list(REFERENCE_EDIT_COUNTS))
def test_editing_models_have_the_reference_parameter_count(name):
    spec = siren_spec()
    info = editing_info(spec, siren_init(4, spec))
    assert count_parameters(editor(name, info)) == REFERENCE_EDIT_COUNTS[name]


@pytest.mark.parametrize("widths", ARCHITECTURES, ids=lambda w: "-".join(map(str, w)))
@pytest.mark.parametrize("name", EQUIVARIANT_EDITORS)
def test_predicted_changes_permute_with_the_input_network(name, widths):
    """Permuting hidden neurons of the input permutes the predicted change of every weight and bias the
    same way (each network of the batch by its own permutation), and the change is not trivial."""
    spec = siren_spec(widths)
    g = torch.Generator().manual_seed(1)
    params = (siren_init(5, spec, g) + 0.05 * torch.randn(5, spec.num_params, generator=g)).double()
    # DWSNet's editing init (1e-4) leaves little but its biases at first: test it at the classifier's init
    model = editor(name, editing_info(spec, params.float()),
                   **({"init_scale": 1.0} if name == "dwsnet" else {})).double().eval()
    scale = getattr(getattr(model, "delta_head", None), "scale", None)
    with torch.no_grad():
        if scale is not None:  # graph heads start at 0.01: make the changes large enough to compare
            scale.weight.fill_(1.0)
            scale.bias.fill_(1.0)
        y = torch.zeros(5, 784)
        delta = model(WeightBatch([spec], [params], y))[0]
        perms = [random_neuron_permutation(spec, torch.Generator().manual_seed(10 + i)) for i in range(5)]
        permuted = torch.cat([permute_network(params[i:i + 1], spec, perms[i]) for i in range(5)])
        delta_of_permuted = model(WeightBatch([spec], [permuted], y))[0]
    expected = torch.cat([permute_network(delta[i:i + 1], spec, perms[i]) for i in range(5)])
    scale = delta.abs().max()
    assert scale > 1e-3, "the model predicts no change at all"
    assert (delta_of_permuted - expected).abs().max() <= 1e-9 * scale
    # the check has teeth: the change did move (it is not invariant), and networks get different changes
    assert (delta_of_permuted - delta).abs().max() > 1e-3 * scale
    assert (delta[0] - delta[1]).abs().max() > 1e-3 * scale


def test_mlp_editor_is_not_equivariant():
    """The flat baseline is registered as not equivariant, and indeed is not (a control for the test above)."""
    spec = siren_spec()
    params = siren_init(3, spec, torch.Generator().manual_seed(2)).double()
    model = editor("mlp", editing_info(spec, params.float())).double().eval()
    perms = [random_neuron_permutation(spec, torch.Generator().manual_seed(3 + i)) for i in range(3)]
    permuted = torch.cat([permute_network(params[i:i + 1], spec, perms[i]) for i in range(3)])
    with torch.no_grad():
        delta = model(WeightBatch([spec], [params], torch.zeros(3, 784)))[0]
        moved = model(WeightBatch([spec], [permuted], torch.zeros(3, 784)))[0]
    expected = torch.cat([permute_network(delta[i:i + 1], spec, perms[i]) for i in range(3)])
    assert (moved - expected).abs().max() > 1e-3 * delta.abs().max()


def plain_siren(state: dict, coords: torch.Tensor, w0: float = 30.0) -> torch.Tensor:
    """An INR evaluated with nothing but its state dict: sine layers, a linear last layer, + 0.5."""
    weights = [state[f"seq.{i}.weight"] for i in range(3)]
    biases = [state[f"seq.{i}.bias"] for i in range(3)]
    h = coords
    for w, b in zip(weights[:-1], biases[:-1]):
        h = torch.sin(w0 * (h @ w.t() + b))
    return (h @ weights[-1].t() + biases[-1]).squeeze(-1) + 0.5


def test_rendering_of_the_edited_network_is_what_nnzoo_nets_computes():
    spec = siren_spec()
    params = siren_init(4, spec, torch.Generator().manual_seed(4))
    info = editing_info(spec, params)
    task = EditingTask(model={"name": "gnn", **{k: v for k, v in OmegaConf.to_container(
        compose("gnn", "mnist_inr_dilate").model).items() if k != "name"}, "hidden": 16},
        data_info=info.to_dict()).eval()
    batch = WeightBatch([spec], [params], torch.zeros(4, 784))
    with torch.no_grad():
        edited = task.edit(batch)[0]
        rendered = task.predict_scores(batch)
    assert not torch.equal(edited, params)
    coords = grid_coordinates(28, 28)
    torch.testing.assert_close(rendered, mlp_forward(edited, spec, coords).squeeze(-1))
    for i in range(4):
        state = params_to_state_dict(edited[i], spec)
        torch.testing.assert_close(rendered[i], plain_siren(state, coords), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(render_inrs(edited, spec, 28, 28).flatten(1), rendered)


def test_statnn_cannot_edit_and_says_so_before_building_anything(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("NNZOO_HOME", str(tmp_path / "home"))
    assert main(["fit", "--model", "statnn", "--data", "mnist_inr_dilate", f"run_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "statnn" in err[0] and "gnn" in err[0], err
    assert not (tmp_path / "home").exists() and not any(tmp_path.glob("mnist_inr_dilate*"))


def test_augmentation_is_refused_for_editing(capsys, tmp_path):
    assert main(["fit", "--model", "gnn", "--data", "mnist_inr_dilate", "data.augment.rotate=45",
                 f"run_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "data.augment.rotate" in err and "target" in err


@pytest.fixture(scope="module")
def edit_run(nnzoo_home, tmp_path_factory):
    return fit_small(tmp_path_factory.mktemp("edit_runs"), "gnn", "mnist_inr_dilate", "model.hidden=32",
                     "optim.warmup_steps=10", "trainer.max_epochs=4")


def test_short_fit_beats_the_identity_edit_on_held_out_inrs(edit_run):
    """4 epochs on 480 built INRs (NG-GNN at width 32): the 60 test INRs' edits are clearly closer to their
    dilated digits than the unedited INRs are (measured: 0.069 against 0.094)."""
    _, metrics = edit_run
    assert metrics["test/identity_mse"] > 0.05  # dilation changes the images a lot
    assert metrics["test/mse"] < 0.85 * metrics["test/identity_mse"], metrics


def test_built_targets_are_the_dilated_source_images(small_inr_datamodule, nnzoo_home):
    from nnzoo.data import create_datamodule
    from nnzoo.data.images import mnist_images
    dm = create_datamodule("mnist_inr_dilate", build=SMALL_INR_BUILD, batch_size=32)
    test = dm.split("test")
    images = mnist_images()[0]
    paths = json.loads(open(dm.info.extra["splits_file"]).read())["test"]["path"]
    ids = [int(Path(p).parts[-3].rsplit("_", 1)[1]) for p in paths]  # ..._png_testing_<label>_<index>/...
    torch.testing.assert_close(test.targets[:5], dilate(images[ids[:5]]).flatten(1))
    # and the INRs render those images closely (>= 35 dB built): targets from renderings would agree
    rendered = dilate(render_inrs(test.params[0][test.row[:5]], dm.info.specs[0], 28, 28).clamp(0, 1))
    assert (rendered.flatten(1) - test.targets[:5]).pow(2).mean() < 0.01
    by_rendering = create_datamodule("mnist_inr_dilate", build=SMALL_INR_BUILD, targets="rendering")
    assert by_rendering.info.extra["targets"] == "rendering"
    torch.testing.assert_close(by_rendering.split("test").targets[:5], rendered.flatten(1))


def test_predict_writes_the_edited_network_in_the_input_format_and_a_picture(edit_run, tmp_path, capsys):
    folder, _ = edit_run
    spec = siren_spec()
    flat = siren_init(1, spec, torch.Generator().manual_seed(5))[0]
    state = params_to_state_dict(flat, spec)
    grouped = {k: v for k, v in state.items() if k.endswith("weight")} | {
        k: v for k, v in state.items() if k.endswith("bias")}  # all weights, then all biases
    torch.save(grouped, tmp_path / "net.pth")
    ckpt = str(folder / "checkpoints" / "best.ckpt")
    assert main(["predict", "--checkpoint", ckpt, str(tmp_path / "net.pth")]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    edited = torch.load(line["edited"], weights_only=True)
    assert list(edited) == list(grouped)  # same keys, same order
    assert all(edited[k].shape == grouped[k].shape for k in grouped)
    new = state_dict_to_params(edited, spec)
    from nnzoo.checkpoint_files import load_checkpoint_file
    module = load_checkpoint_file(folder / "checkpoints" / "best.ckpt")
    with torch.no_grad():
        expected = module.edit(WeightBatch([spec], [flat[None]], torch.zeros(1, 784)))[0][0]
    torch.testing.assert_close(new, expected)
    assert (tmp_path / "net.mnist_inr_dilate.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert line["mse"] >= 0 and line["identity_mse"] > 0
    # an existing output is never replaced without --force
    assert main(["predict", "--checkpoint", ckpt, str(tmp_path / "net.pth")]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["predict", "--checkpoint", ckpt, "--force", str(tmp_path / "net.pth")]) == 0


def test_docs_editing_table_quotes_the_counts():
    import re
    page = (Path(__file__).resolve().parents[1] / "docs" / "models.md").read_text()
    rows = {}
    for line in page.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        match = re.fullmatch(r"[\w-]+ \(`(\w+)`\)", cells[0]) if len(cells) == 5 else None
        if match:
            rows[match.group(1)] = cells
    assert set(rows) == set(REFERENCE_EDIT_COUNTS)
    for name, cells in rows.items():
        for cell in (cells[2], cells[3]):
            assert int(re.match(r"[\d,]+", cell).group().replace(",", "")) == REFERENCE_EDIT_COUNTS[name], name


def test_public_files_get_rendered_targets_and_images_are_refused(tiny_inr_root, nnzoo_home):
    """The public DWSNets files ship no images: targets are the dilated renderings, and asking for images
    is one line that says why."""
    from nnzoo.data import create_datamodule
    from nnzoo.errors import NnzooError
    dm = create_datamodule("mnist_inr_dilate", root=str(tiny_inr_root))
    assert dm.info.extra["targets"] == "rendering" and dm.info.extra["image_size"] == [28, 28]
    val = dm.split("val")
    expected = dilate(render_inrs(val.params[0][val.row], dm.info.specs[0], 28, 28).clamp(0, 1)).flatten(1)
    torch.testing.assert_close(val.targets, expected)
    with pytest.raises(NnzooError, match="ship no images"):
        create_datamodule("mnist_inr_dilate", root=str(tiny_inr_root), targets="images").setup()
    with pytest.raises(NnzooError, match="data.targets"):
        create_datamodule("mnist_inr_dilate", root=str(tiny_inr_root), targets="pictures")


def test_output_options_are_refused_for_a_classifier(tmp_path, capsys):
    spec = siren_spec()
    torch.save(params_to_state_dict(siren_init(1, spec)[0], spec), tmp_path / "net.pth")
    assert main(["predict", "--checkpoint", "gnn-mnist_inr", "--output", str(tmp_path / "out"),
                 str(tmp_path / "net.pth")]) == 2
    assert "--output" in capsys.readouterr().err and not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", list(REFERENCE_EDIT_COUNTS))
def test_every_editor_starts_near_the_identity_edit(name):
    """With its reference init (graph heads and the MLP at scale 0.01, DWSNet's DWS layers at 1e-4) an
    untrained editor barely changes what the INR draws: training starts from the identity edit, not from
    noise (DWSNet at the classifier's init moved the renderings by an MSE of ~45)."""
    spec = siren_spec()
    params = siren_init(16, spec, torch.Generator().manual_seed(6))
    torch.manual_seed(0)
    model = editor(name, editing_info(spec, params)).eval()
    with torch.no_grad():
        edited = params + model(WeightBatch([spec], [params], torch.zeros(16, 784)))[0]
    change = (render_inrs(edited, spec, 28, 28) - render_inrs(params, spec, 28, 28)).pow(2).mean()
    assert change < 0.02, float(change)


@pytest.mark.parametrize("model, override, key", [("dwsnet", "model.init_scale=-1", "model.init_scale"),
                                                   ("dwsnet", "model.init_scale=abc", "model.init_scale"),
                                                   ("gnn", "data.targets=pictures", "data.targets")])
def test_bad_editing_options_are_one_line_before_any_work(model, override, key, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NNZOO_HOME", str(tmp_path / "home"))
    assert main(["fit", "--model", model, "--data", "mnist_inr_dilate", f"run_dir={tmp_path / 'runs'}",
                 override]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and key in err[0], err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "home").exists()
