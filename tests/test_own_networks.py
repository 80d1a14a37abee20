"""Your own networks: spec_from_module, `nnzoo pack`, the `packed` datamodule, then fit and predict on them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from nnzoo.cli import main
from nnzoo.data.formats.small_cnn_zoo import small_cnn_spec
from nnzoo.errors import NnzooError
from nnzoo.nets import mlp_forward, mlp_spec, siren_spec, spec_from_module, spec_from_state_dict, state_dict_to_params
from nnzoo.nets.cnn import cnn_forward
from nnzoo.nets.functional import params_into_state_dict

NUM_NETS = 24


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def tiny_mlp(seed: int, hidden: int = 8) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 2))


def trained_mlp(seed: int, label: int) -> nn.Sequential:
    """A 2-8-8-2 MLP trained for a few steps to split points by x0 > 0 (label 0) or by x1 > 0 (label 1)."""
    net = tiny_mlp(seed)
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(128, 2, generator=g) * 2 - 1
    y = (x[:, label] > 0).long()
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(30):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return net


@pytest.fixture(scope="module")
def nets_dir(tmp_path_factory) -> Path:
    """24 real MLPs (state dicts with nn.Sequential keys) and labels.csv: only labels 0 and 1 occur."""
    folder = tmp_path_factory.mktemp("my_networks")
    lines = ["file,label"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny steps: thread hand-offs cost 10x the work on a busy 2-core machine
    try:
        for i in range(NUM_NETS):
            label = i % 2
            torch.save(trained_mlp(i, label).state_dict(), folder / f"net_{i:02d}.pth")
            lines.append(f"net_{i:02d}.pth,{label}")
    finally:
        torch.set_num_threads(threads)
    (folder / "labels.csv").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture(scope="module")
def packed(nnzoo_home, nets_dir) -> Path:
    assert main(["pack", str(nets_dir), "--labels", str(nets_dir / "labels.csv"), "--name", "own_mlps",
                 "--classes", "3", "--force"]) == 0
    return nnzoo_home / "packs" / "own_mlps"


# ------------------------------------------------------------------ spec_from_module
def test_spec_of_an_mlp_is_nnzoos_own_and_its_parameters_round_trip():
    net = tiny_mlp(0)
    spec = spec_from_module(net, input_shape=(2,))
    assert spec == mlp_spec([2, 8, 8, 2], "relu")
    flat = state_dict_to_params(net.state_dict(), spec)
    x = torch.rand(16, 2) * 2 - 1
    assert torch.allclose(mlp_forward(flat[None], spec, x)[0], net(x), atol=1e-6)  # same function
    other = tiny_mlp(1)
    other.load_state_dict(params_into_state_dict(flat, spec, other.state_dict()))
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), other.state_dict().values()))
    assert spec_from_state_dict(net.state_dict(), "relu") == spec


def test_spec_of_a_cnn_is_the_small_cnn_zoos_and_runs_the_same():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 16, 3, stride=2), nn.ReLU(), nn.Conv2d(16, 16, 3, stride=2), nn.ReLU(),
                        nn.Conv2d(16, 16, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(16, 10)).eval()
    spec = spec_from_module(net, input_shape=(1, 16, 16))
    assert spec == small_cnn_spec()
    flat = state_dict_to_params(net.state_dict(), spec)
    images = torch.randn(4, 1, 16, 16)
    assert torch.allclose(cnn_forward(flat[None], spec, images)[0], net(images), atol=1e-5)


class Sine(nn.Module):
    def __init__(self, w0: float = 30.0) -> None:
        super().__init__()
        self.w0 = w0

    def forward(self, x):
        return torch.sin(self.w0 * x)


class Siren(nn.Module):
    """A SIREN written as a custom module: its order comes from torch.fx."""

    def __init__(self) -> None:
        super().__init__()
        self.first, self.hidden, self.out = nn.Linear(2, 32), nn.Linear(32, 32), nn.Linear(32, 1)
        self.act = Sine(30.0)

    def forward(self, x):
        return self.out(self.act(self.hidden(self.act(self.first(x)))))


class BnCnn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn, self.fc = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Linear(4, 2)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        return self.fc(x.mean((2, 3)))


def test_custom_modules_are_traced_in_forward_order():
    assert spec_from_module(Siren()) == siren_spec((2, 32, 32, 1), output_offset=0.0)
    assert spec_from_module(nn.Sequential(nn.Linear(2, 4), Sine(), nn.Linear(4, 1))) == \
        siren_spec((2, 4, 1), output_offset=0.0)
    net = BnCnn()
    with torch.no_grad():  # non-trivial running statistics
        net.bn.running_mean.uniform_(-1, 1)
        net.bn.running_var.uniform_(0.5, 2)
    net.eval()
    spec = spec_from_module(net)
    assert spec.describe() == "cnn 3-4-2 relu k3 bn" and spec.layers[0].padding == 1
    images = torch.randn(3, 3, 8, 8)
    flat = state_dict_to_params(net.state_dict(), spec)
    assert torch.allclose(cnn_forward(flat[None], spec, images)[0], net(images), atol=1e-5)


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)

    def forward(self, x):
        return x + self.a(x)


@pytest.mark.parametrize("net, words", [
    (nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2)), ["'2'", "MaxPool2d"]),
    (nn.Sequential(nn.Linear(2, 4), nn.LayerNorm(4), nn.Linear(4, 1)), ["'1'", "LayerNorm"]),
    (nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4, 2)), ["'1'", "Flatten", "AdaptiveAvgPool2d"]),
    (nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(5, 1)), ["'2'", "Linear", "expects 5"]),
    (nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.BatchNorm1d(4), nn.Linear(4, 1)), ["'2'", "BatchNorm1d"]),
    (Residual(), ["Residual", "chain"]),
])
def test_what_a_spec_cannot_describe_is_refused_in_one_line(net, words):
    with pytest.raises(NnzooError) as err:
        spec_from_module(net)
    message = str(err.value)
    assert "\n" not in message and all(w in message for w in words), message


# ------------------------------------------------------------------ nnzoo pack, fit, predict
def test_pack_declares_classes_and_architecture(packed):
    meta = json.loads((packed / "pack.json").read_text())
    assert meta["task"] == "classification" and meta["class_names"] == ["0", "1", "2"]
    assert {row["label"] for row in meta["networks"]} == {0, 1}  # class 2 is declared, never seen
    assert sum(meta["counts"].values()) == NUM_NETS and min(meta["counts"].values()) >= 1
    assert meta["split"] == {"from": "random", "seed": 0, "val_fraction": 0.1, "test_fraction": 0.1}
    from nnzoo.nets import NetworkSpec
    assert NetworkSpec.from_dict(meta["spec"]) == mlp_spec([2, 8, 8, 2], "relu")


def test_fit_on_a_pack_uses_the_declared_classes_and_predicts_a_file(packed, nets_dir, tmp_path, capsys):
    from nnzoo.checkpoint_files import load_checkpoint_file
    run_dir = tmp_path / "runs"
    assert main(["fit", "--model", "gnn", "--data", "packed", "data.pack=own_mlps", f"run_dir={run_dir}",
                 "data.batch_size=8", "model.hidden=8", "model.layers=2", "model.probes=4",
                 "model.fourier_features=16", "optim.warmup_steps=2", "trainer.max_epochs=2",
                 "trainer.enable_progress_bar=false"]) == 0
    (metrics_file,) = run_dir.glob("*/version_*/metrics.json")
    assert metrics_file.parent.parent.name == "own_mlps-gnn", "the run folder is named after the pack"
    metrics = json.loads(metrics_file.read_text())
    assert metrics["dataset"]["name"] == "own_mlps" and "test/acc" in metrics
    best = Path(metrics["best_checkpoint"])
    module = load_checkpoint_file(best)
    assert module.info.num_outputs == 3 and module.info.class_names == ["0", "1", "2"]
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(best), str(nets_dir / "net_05.pth")]) == 0
    (line,) = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("{")]
    result = json.loads(line)
    assert set(result["probabilities"]) == {"0", "1", "2"}
    assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


def test_cnn_regression_pack_with_a_spec_file_and_split_column(nnzoo_home, tmp_path):
    from nnzoo.data import create_datamodule
    folder = tmp_path / "cnns"
    folder.mkdir()
    net = BnCnn()
    spec = spec_from_module(net)
    (tmp_path / "spec.json").write_text(json.dumps(spec.to_dict()))
    lines = ["file,target,split"]
    for i, split in enumerate(["train"] * 4 + ["val", "test"]):
        torch.manual_seed(i)
        torch.save(BnCnn().state_dict(), folder / f"cnn{i}.pt")
        lines.append(f"cnn{i}.pt,{i / 10},{split}")
    (tmp_path / "acc.csv").write_text("\n".join(lines) + "\n")
    assert main(["pack", str(folder), "--labels", str(tmp_path / "acc.csv"), "--name", "own_cnns",
                 "--spec", str(tmp_path / "spec.json"), "--force"]) == 0
    dm = create_datamodule("packed", pack="own_cnns")
    dm.setup()
    assert dm.info.task == "regression" and dm.info.num_outputs == 1 and dm.info.specs == (spec,)
    assert [len(dm.split(s)) for s in ("train", "val", "test")] == [4, 1, 1]
    assert torch.allclose(dm.split("val").targets, torch.tensor([0.4]))


def _pack(nets_dir: Path, labels: Path, *extra: str) -> list[str]:
    return ["pack", str(nets_dir), "--labels", str(labels), *extra]


def test_pack_refusals_are_one_line_with_exit_2(packed, nets_dir, tmp_path, capsys):
    labels = nets_dir / "labels.csv"
    # an existing pack is kept without --force
    assert main(_pack(nets_dir, labels, "--name", "own_mlps", "--classes", "3")) == 2
    assert "already exists" in _error_line(capsys) and (packed / "pack.json").is_file()
    # names are plain
    assert main(_pack(nets_dir, labels, "--name", "../escape", "--classes", "3")) == 2
    assert "plain name" in _error_line(capsys)
    # classes are declared, never inferred
    assert main(_pack(nets_dir, labels, "--name", "no_classes")) == 2
    assert "--classes" in _error_line(capsys)
    # a label beyond the declared classes is an error, not a wider dataset
    bad = tmp_path / "bad_label.csv"
    bad.write_text("file,label\nnet_00.pth,0\nnet_01.pth,1\nnet_02.pth,5\n")
    assert main(_pack(nets_dir, bad, "--name", "bad_label", "--classes", "3")) == 2
    line = _error_line(capsys)
    assert "line 4" in line and "net_02.pth" in line and "3 declared classes" in line
    # every network must have the first one's architecture
    torch.save(tiny_mlp(99, hidden=4).state_dict(), nets_dir / "odd.pth")
    mixed = tmp_path / "mixed.csv"
    mixed.write_text("file,label\nnet_00.pth,0\nnet_01.pth,1\nodd.pth,1\nnet_03.pth,1\n")
    assert main(_pack(nets_dir, mixed, "--name", "mixed", "--classes", "2")) == 2
    line = _error_line(capsys)
    assert "odd.pth" in line and "wrong architecture" in line
    # files stay inside the folder
    outside = tmp_path / "outside.csv"
    outside.write_text("file,label\n../x.pth,0\n")
    assert main(_pack(nets_dir, outside, "--name", "outside", "--classes", "2")) == 2
    assert "inside" in _error_line(capsys)
    assert not any((packed.parent / n).exists() for n in ("bad_label", "mixed", "outside", "no_classes"))


def test_packed_data_needs_an_existing_pack(nnzoo_home, tmp_path, capsys):
    assert main(["fit", "--model", "gnn", "--data", "packed", "data.pack=nope", f"run_dir={tmp_path}"]) == 2
    line = _error_line(capsys)
    assert "no pack 'nope'" in line and "nnzoo pack" in line
    assert main(["fit", "--model", "gnn", "--data", "packed", f"run_dir={tmp_path}"]) == 2
    assert "data.pack is empty" in _error_line(capsys)


def test_a_damaged_pack_is_one_line(nnzoo_home, packed, tmp_path):
    import shutil

    from nnzoo.data import create_datamodule
    from nnzoo.data.packed import read_pack
    copy = tmp_path / "packs" / "damaged"
    shutil.copytree(packed, copy)
    (copy / "networks.pt").write_bytes(b"\x00not a torch file")
    with pytest.raises(NnzooError, match="networks.pt") as err:
        read_pack(copy)
    assert "\n" not in str(err.value)
    torch.save({"params": torch.zeros(3, 5), "targets": torch.zeros(3), "split": torch.zeros(3)}, copy / "networks.pt")
    with pytest.raises(NnzooError, match="does not match"):
        read_pack(copy)
    (copy / "pack.json").write_text("{")
    with pytest.raises(NnzooError, match="not valid JSON"):
        create_datamodule("packed", pack="damaged", cache_dir=str(tmp_path)).setup()
