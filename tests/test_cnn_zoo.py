"""CNN zoos: batched CNN forward, the Small CNN Zoo format, builders, a fit (invariance: test_invariance.py)."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nnzoo.cli import main
from nnzoo.data import create_datamodule
from nnzoo.data.builders.cnn import CnnBuildConfig, build_cnn_zoo, evaluate
from nnzoo.data.formats.small_cnn_zoo import load_small_cnn_zoo, small_cnn_spec, write_small_cnn_zoo
from nnzoo.errors import NnzooError
from nnzoo.models import create_model
from nnzoo.nets.cnn import cnn_forward, cnn_init
from nnzoo.nets.functional import unflatten
from nnzoo.nets.spec import LayerSpec, NetworkSpec

# a residual BatchNorm CNN: groups 1 and 3 are joined by a residual, so they are permuted together
RESNET = NetworkSpec((LayerSpec("conv", 1, 4, (3, 3), padding="same", norm="batchnorm", activation="relu"),
                      LayerSpec("conv", 4, 6, (5, 5), padding="same", norm="batchnorm", activation="tanh"),
                      LayerSpec("conv", 6, 4, (3, 3), padding="same", activation="relu"),
                      LayerSpec("linear", 4, 10)), residuals=((1, 3),), input_kind="image")
SMALL_ZOO = {"size": 160, "steps": 80, "test_images": 500, "chunk_size": 80}


def _random_bn_params(spec, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    params = cnn_init(n, spec, "he_normal", generator=g)
    for s in spec.slots:  # non-trivial BatchNorm tensors, as after training
        if s.role in ("norm_bias", "running_mean"):
            params[:, s.start:s.end] = 0.3 * torch.randn(n, s.numel, generator=g)
        if s.role in ("norm_weight", "running_var"):
            params[:, s.start:s.end] = 0.5 + torch.rand(n, s.numel, generator=g)
        if s.role == "bias":
            params[:, s.start:s.end] = 0.1 * torch.randn(n, s.numel, generator=g)
    return params


def _torch_reference(params, spec, images):
    """One network at a time with torch.nn modules."""
    outs = []
    for p in params:
        t = unflatten(p[None], spec)
        x, groups = images, [images]
        for index, (layer, tensors) in enumerate(zip(spec.layers, t)):
            if layer.kind == "conv":
                conv = nn.Conv2d(layer.in_features, layer.out_features, layer.kernel_size, stride=layer.stride,
                                 padding=layer.padding)
                conv.weight.data, conv.bias.data = tensors["weight"][0], tensors["bias"][0]
                x = conv(x)
            else:
                x = x.mean((2, 3)) if x.dim() == 4 else x
                x = F.linear(x, tensors["weight"][0], tensors["bias"][0])
            if layer.norm:
                bn = nn.BatchNorm2d(layer.out_features).eval()
                bn.weight.data, bn.bias.data = tensors["norm_weight"][0], tensors["norm_bias"][0]
                bn.running_mean, bn.running_var = tensors["running_mean"][0], tensors["running_var"][0]
                x = bn(x)
            x = {"relu": torch.relu, "tanh": torch.tanh, "none": lambda v: v}[layer.activation](x)
            for src, dst in spec.residuals:
                if dst == index + 1:
                    m = min(spec.widths[src], layer.out_features)
                    x = torch.cat([x[:, :m] + groups[src][:, :m], x[:, m:]], dim=1)
            groups.append(x)
        outs.append(x)
    return torch.stack(outs)


@pytest.mark.parametrize("spec", [RESNET, small_cnn_spec("tanh")], ids=["resnet-bn", "small-cnn-zoo"])
def test_batched_forward_matches_torch_modules(spec):
    params = _random_bn_params(spec, 3)
    images = torch.rand(5, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(cnn_forward(params, spec, images), _torch_reference(params, spec, images),
                                   atol=1e-5, rtol=1e-5)


# channel-permutation invariance of the models on these CNNs (residual partners, BatchNorm, train mode) and
# its sensitivity checks live in tests/test_invariance.py, with the symmetry helpers of nnzoo.nets.symmetry


# ------------------------------------------------------------------ the public Small CNN Zoo format
def _write_zoo(folder, n=10, steps=(0, 20, 86), seed=0):
    spec = small_cnn_spec("relu")
    rows, metrics, finals = [], [], []
    for i in range(n):
        act = "relu" if i % 2 else "tanh"
        for step in steps:
            p = _random_bn_params(spec, 1, seed=seed + 100 * i + step)[0]
            rows.append(p)
            metrics.append({"config.activation": act, "config.optimizer": "adam", "modeldir": f"m{i}",
                            "step": step, "test_accuracy": (i + step / 100) / 20})
        finals.append(rows[-1])
    write_small_cnn_zoo(folder, spec, torch.stack(rows), metrics)
    return torch.stack(finals)


def test_files_are_in_the_public_layout(tmp_path):
    _write_zoo(tmp_path)
    weights = np.load(tmp_path / "weights.npy")
    assert weights.shape == (30, 4970) and weights.dtype == np.float32
    layout = (tmp_path / "layout.csv").read_text().splitlines()
    assert layout[0] == "varname,shape,start_idx,end_idx"
    assert layout[1].startswith("sequential/conv2d/bias:0,") and layout[1].endswith(",0,16")
    assert layout[2] == 'sequential/conv2d/kernel:0,"(3, 3, 1, 16)",16,160'
    assert layout[-1].endswith(",4810,4970")
    with gzip.open(tmp_path / "metrics.csv.gz", "rt") as fh:
        header = fh.readline().strip().split(",")
    assert {"config.activation", "config.l2reg", "step", "test_accuracy", "train_loss"} <= set(header)


def test_round_trip_keeps_final_checkpoints_in_pytorch_layout(tmp_path):
    finals = _write_zoo(tmp_path)
    zoo = load_small_cnn_zoo(tmp_path)
    assert len(zoo.params) == 10
    torch.testing.assert_close(zoo.params, finals)
    assert [s.layers[0].activation for s in zoo.specs] == ["relu", "tanh"]
    assert zoo.spec_index.tolist() == [1, 0] * 5
    torch.testing.assert_close(zoo.accuracy, (torch.arange(10) + 0.86) / 20)
    # independent check of the TF -> PyTorch kernel conversion: first conv from the raw TF rows
    raw = torch.from_numpy(np.load(tmp_path / "weights.npy"))[2]  # network 0, step 86
    kernel = raw[16:160].view(3, 3, 1, 16).permute(3, 2, 0, 1)
    images = torch.rand(2, 1, 16, 16)
    expected = F.conv2d(images, kernel, raw[0:16], stride=2)
    got = F.conv2d(images, zoo.params[0, :144].view(16, 1, 3, 3), zoo.params[0, 144:160], stride=2)
    torch.testing.assert_close(got, expected)


def test_split_protocol_and_index_file(tmp_path):
    _write_zoo(tmp_path, n=20, steps=(0, 86))
    zoo = load_small_cnn_zoo(tmp_path)
    sizes = {k: len(v) for k, v in zoo.splits.items()}
    assert sizes == {"train": 8, "val": 2, "test": 10}
    assert sorted(torch.cat(list(zoo.splits.values())).tolist()) == list(range(20))
    assert zoo.splits["test"].tolist() == list(range(10, 20))
    order = np.random.default_rng(0).permutation(40)
    (tmp_path / "split.csv").write_text("\n".join(map(str, order)) + "\n")
    permuted = load_small_cnn_zoo(tmp_path, split_file=tmp_path / "split.csv")
    final_rows = [r for r in order if r % 2 == 1]  # rows 1, 3, ... are the final checkpoints
    torch.testing.assert_close(permuted.accuracy, torch.tensor([(r // 2 + 0.86) / 20 for r in final_rows], dtype=torch.float32))
    assert len(load_small_cnn_zoo(tmp_path, activation="tanh").params) == 10


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "layout.csv").unlink(), "layout.csv"),
    (lambda d: (d / "weights.npy").write_bytes(b"not numpy"), "weights.npy"),
    (lambda d: (d / "metrics.csv.gz").write_bytes(b"\x1f\x8b broken"), "metrics.csv.gz"),
    (lambda d: np.save(d / "weights.npy", np.zeros((3, 4970), np.float32)), "rows"),
    (lambda d: np.save(d / "weights.npy", np.full((30, 4970), np.nan, np.float32)), "NaN"),
])
def test_bad_zoo_files_are_one_line_errors(tmp_path, damage, message):
    _write_zoo(tmp_path)
    damage(tmp_path)
    with pytest.raises(NnzooError, match=message) as info:
        load_small_cnn_zoo(tmp_path)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------ offline builders and a short fit
@pytest.fixture(scope="module")
def built_zoo(nnzoo_home):
    return build_cnn_zoo(nnzoo_home / "datasets", CnnBuildConfig(**SMALL_ZOO))


def test_built_zoo_accuracies_vary_and_match_re_evaluation(built_zoo):
    info = json.loads((built_zoo / "build_info.json").read_text())
    assert info["test_accuracy"]["std"] > 0.05
    zoo = load_small_cnn_zoo(built_zoo)
    assert len(zoo.params) == SMALL_ZOO["size"]
    images = torch.load(built_zoo / "test_images.pt", weights_only=True)
    for g, spec in enumerate(zoo.specs):
        mask = zoo.spec_index == g
        accuracy, _ = evaluate(zoo.params[mask], spec, images["test_x"], images["test_y"])
        assert (accuracy - zoo.accuracy[mask]).abs().max() <= 2e-3
    assert zoo.accuracy.max() > 0.6, "some CNNs must actually learn"


def test_wild_park_mixes_architectures(nnzoo_home):
    dm = create_datamodule("cnn_wild_park", build={"size": 24, "steps": 30, "architectures": 3, "image_size": 10,
                                                   "test_images": 300})
    info = dm.info
    assert len(info.specs) == 3 and not info.homogeneous
    assert info.edge_kernel[0] >= 3 and info.task == "regression"
    batch = next(iter(dm.train_dataloader()))
    assert len(batch.specs) >= 2
    with torch.no_grad():
        out = create_model("gnn", info, hidden=8, layers=2)(batch)
    assert out.shape == (len(batch), 1) and torch.isfinite(out).all()


def test_short_fit_predicts_generalization(built_zoo, tmp_path):
    args = ["fit", "--model", "gnn", "--data", "cnn_zoo", f"run_dir={tmp_path}",
            *[f"data.build.{k}={v}" for k, v in SMALL_ZOO.items()], "data.batch_size=16", "model.hidden=16",
            "trainer.max_epochs=15", "optim.warmup_steps=10", "trainer.enable_progress_bar=false"]
    assert main(args) == 0
    (metrics_file,) = tmp_path.glob("*/version_*/metrics.json")
    metrics = json.loads(metrics_file.read_text())
    # 64 training CNNs, 80 held-out test CNNs: tau ~0.6 measured; random predictions give ~0
    assert metrics["test/kendall_tau"] > 0.3, metrics
