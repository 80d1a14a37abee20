"""Zoos of networks that are not chains: the offline ViT and mixed-architecture zoos, Transformer-NFN's Small
Transformer Zoo format, which models may read them, and NG-T's measured size limit."""

from __future__ import annotations

import importlib.util
import json
import math
import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nnzoo.cli import main
from nnzoo.config import compose
from nnzoo.data import create_datamodule
from nnzoo.data.builders import arch_zoo as builder
from nnzoo.data.builders.arch_zoo import ArchZooBuildConfig, arch_spec, build_arch_zoo, flat_state
from nnzoo.data.formats.arch_zoo import INDEX, load_arch_zoo
from nnzoo.data.formats.small_transformer_zoo import (SmallZooText, SmallZooViT, load_small_transformer_zoo,
                                                      write_small_transformer_zoo, zoo_spec)
from nnzoo.data.weights import DataInfo, WeightBatch, layer_statistics
from nnzoo.errors import IncompatibleError, NnzooError
from nnzoo.models.registry import check_compatible, create_model
from nnzoo.models.transformer import max_nodes, pair_floats
from nnzoo.nets import state_dict_to_params
from nnzoo.nets.families import ZooMLP, build_network
from nnzoo.nets.graph_spec import GraphSpec
from nnzoo.nets.spec import LayerSpec, NetworkSpec
from nnzoo.train import build_datamodule
from tests.test_precision import one_thread  # noqa: F401 (autouse: tiny batches, one thread)

REPO = Path(__file__).resolve().parents[1]
TINY_GRID = {"vit_zoo": {"vit": {"depth": [1], "width": [8]}},
             "mixed_zoo": {"vit": {"depth": [1], "width": [8]}, "mlp": {"width": [16]},
                           "cnn": {"depth": [2], "width": [8]}, "resnet": {"blocks": [1, 2], "width": [4]}}}
TINY = {"size": 12, "epochs": [1], "checkpoints": [0.25, 1.0], "batch_size": 256, "test_images": 200}
"""12 runs of 19 steps (4,800 training digits at batch 256), saved after 5 and 19 steps: 24 tiny networks."""


def tiny_overrides(kind: str) -> list[str]:
    """The TINY recipe as command-line overrides (the same cache key as ``create_datamodule(build=...)``)."""
    out = [f"data.build.{k}={json.dumps(v)}" for k, v in TINY.items()]
    return out + [f"data.build.grid.{f}.{k}={json.dumps(v)}" for f, g in TINY_GRID[kind].items() for k, v in g.items()]


@pytest.fixture(scope="module")
def vit_zoo(nnzoo_home) -> Path:
    return build_arch_zoo(nnzoo_home / "datasets", "vit_zoo", ArchZooBuildConfig(**TINY, grid=TINY_GRID["vit_zoo"]))


# ------------------------------------------------------------------ the networks
ARCHS = [{"family": "vit", "depth": 2, "width": 8, "heads": 2, "patch": 4},
         {"family": "resnet", "blocks": 2, "width": 4},
         {"family": "cnn", "depth": 3, "width": 8, "activation": "gelu"},
         {"family": "mlp", "depth": 2, "width": 16, "activation": "relu"}]


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: a["family"])
def test_zoo_networks_are_graphs_whose_flat_layout_is_the_state_dict(arch):
    net = build_network(arch, 16)
    spec = arch_spec(arch, 16)
    assert isinstance(spec, GraphSpec) and spec.name.startswith(arch["family"])
    assert (spec.num_inputs, spec.num_outputs) == (1, 10)  # one input channel for every family: they mix
    assert torch.equal(flat_state(net), state_dict_to_params(net.state_dict(), spec))
    assert spec.max_kernel[0] <= 8  # edge features of the mixed zoo pad to 8x8


def test_the_mlp_reads_the_pooled_pixels_with_one_dense_layer():
    torch.manual_seed(0)
    net = ZooMLP(16, width=8, depth=1).eval()
    x = torch.rand(5, 1, 16, 16)
    conv = net.body[0]
    hidden = F.relu(F.avg_pool2d(x, 2).flatten(1) @ conv.weight.reshape(8, -1).T + conv.bias)
    assert torch.allclose(net(x), net.head(hidden), atol=1e-6)


# ------------------------------------------------------------------ building
def _evaluate(arch: dict, params: torch.Tensor, x: torch.Tensor, y: torch.Tensor, image_size: int) -> float:
    net = build_network(arch, image_size).eval()
    builder._load_flat(net, params)
    with torch.no_grad():
        return float((net(x).argmax(-1) == y).float().mean())


def test_built_vit_zoo_accuracies_are_real_and_checkpoints_spread(vit_zoo):
    index = json.loads((vit_zoo / INDEX).read_text())
    info = json.loads((vit_zoo / "build_info.json").read_text())
    assert info["runs"] == TINY["size"] and info["networks"] == 2 * TINY["size"]
    images = torch.load(vit_zoo / "test_images.pt", weights_only=True)
    moved = 0
    for entry in index["architectures"]:
        blob = torch.load(vit_zoo / entry["file"], weights_only=True)
        steps = math.ceil((5000 - TINY["test_images"]) / TINY["batch_size"])  # one epoch of the digits left
        assert set(blob["step"].tolist()) == {round(steps / 4), steps}  # saved after 25% and 100% of the steps
        for p, acc in zip(blob["params"], blob["test_accuracy"]):
            assert abs(_evaluate(entry["arch"], p, images["test_x"], images["test_y"], 16) - float(acc)) < 1e-6
        for run in blob["run"].unique():
            early, late = blob["params"][blob["run"] == run]
            moved += int(not torch.equal(early, late))
        assert GraphSpec.from_dict(entry["spec"]) == arch_spec(entry["arch"], 16)
    assert moved == TINY["size"], "every run trains between its checkpoints"
    assert info["test_accuracy"]["max"] > 0.15 and info["test_accuracy"]["std"] > 0.01
    assert not (vit_zoo / "runs").exists(), "per-run files are removed once the zoo is assembled"


def test_the_split_keeps_every_run_on_one_side(vit_zoo):
    zoo = load_arch_zoo(vit_zoo)
    runs = torch.cat([torch.load(vit_zoo / f"arch_{g:03d}.pt", weights_only=True)["run"]
                      for g in range(len(zoo.specs))])
    sides = {name: set(runs[idx].tolist()) for name, idx in zoo.splits.items()}
    assert all(sides[a].isdisjoint(sides[b]) for a, b in (("train", "val"), ("train", "test"), ("val", "test")))
    assert sum(len(s) for s in sides.values()) == TINY["size"] and all(sides.values())


def test_a_killed_build_continues_where_it_stopped_and_equals_an_uninterrupted_one(tmp_path, monkeypatch):
    config = ArchZooBuildConfig(**{**TINY, "size": 4}, grid=TINY_GRID["vit_zoo"])
    real, calls = builder.train_run, []

    def dies_after_two(*args, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt  # what a kill looks like to the build, between two runs
        calls.append(1)
        return real(*args, **kwargs)
    monkeypatch.setattr(builder, "train_run", dies_after_two)
    with pytest.raises(KeyboardInterrupt):
        build_arch_zoo(tmp_path / "a", "vit_zoo", config)
    (partial,) = (tmp_path / "a").glob(".vit_zoo-*.partial")
    assert len(list((partial / "runs").glob("run_*.pt"))) == 2 and not list((tmp_path / "a").glob("vit_zoo-*"))
    calls.clear()
    monkeypatch.setattr(builder, "train_run", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    resumed = build_arch_zoo(tmp_path / "a", "vit_zoo", config)
    assert len(calls) == 2, "only the two missing runs are trained again"
    whole = build_arch_zoo(tmp_path / "b", "vit_zoo", config)
    for file in sorted(p.name for p in whole.glob("arch_*.pt")):
        a, b = (torch.load(d / file, weights_only=True) for d in (resumed, whole))
        assert all(torch.equal(a[k], b[k]) for k in a), file


@pytest.mark.parametrize("build, key", [
    ({"grid": {"vit": {"width": [6], "heads": [4]}}}, "data.build.grid.vit"),
    ({"grid": {"vit": {"depths": [1]}}}, "data.build.grid.vit.depths"),
    ({"grid": {"cnn": {"depth": [2]}}}, "data.build.grid"),
    ({"grid": {"vit": {"patch": [32]}}}, "data.build.grid.vit.patch"),
    ({"epochs": []}, "data.build.epochs"),
    ({"checkpoints": [0, 1]}, "data.build.checkpoints"),
    ({"learning_rate": "0.1"}, "data.build.learning_rate"),
    ({"size": 2}, "data.build.size"),
    ({"sizes": 2}, "unknown data.build option"),
])
def test_bad_recipes_are_one_line_naming_the_key_before_any_work(build, key, tmp_path):
    with pytest.raises(NnzooError) as err:
        create_datamodule("vit_zoo", build=build, cache_dir=str(tmp_path))
    assert key in str(err.value) and "\n" not in str(err.value)
    assert not any(tmp_path.iterdir()), "nothing is built"


def test_the_mixed_zoo_mixes_four_families_in_one_batch(nnzoo_home):
    dm = create_datamodule("mixed_zoo", build={**TINY, "grid": TINY_GRID["mixed_zoo"]}, batch_size=64)
    info = dm.info
    families = {s.name.split("_")[0] for s in info.specs}
    assert families == {"mlp", "cnn", "resnet", "vit"} and not info.homogeneous
    batch = next(iter(dm.train_dataloader()))
    assert len({s.name.split("_")[0] for s in batch.specs}) >= 3
    with torch.no_grad():
        out = create_model("gnn", info, hidden=8, layers=2, fourier_features=8)(batch)
    assert out.shape == (len(batch), 1) and torch.isfinite(out).all()


# ------------------------------------------------------------------ which models may read them
@pytest.mark.parametrize("model", ["nfn_hnp", "nfn_np", "dwsnet", "mlp"])
@pytest.mark.parametrize("data", ["vit_zoo", "mixed_zoo", "small_transformer_zoo"])
def test_models_that_cannot_read_graphs_are_refused_in_one_line_before_anything_is_built(model, data, tmp_path):
    cfg = compose(model, data, "default")
    cfg.data.cache_dir = str(tmp_path)
    with pytest.raises(IncompatibleError) as err:
        build_datamodule(cfg)
    message = str(err.value)
    assert "\n" not in message and f"'{model}'" in message and "computation graphs" in message
    assert message.endswith("use gnn, transformer, statnn"), message
    assert not any(tmp_path.iterdir())


def test_graph_specs_from_anywhere_refuse_chain_models_once_loaded():
    spec = arch_spec(ARCHS[1], 16)
    info = DataInfo("packed", "regression", 1, (spec,))
    with pytest.raises(IncompatibleError, match="computation graphs"):
        check_compatible("nfn_hnp", info)
    check_compatible("gnn", info)


@pytest.mark.parametrize("model, data", [("gnn", "vit_zoo"), ("transformer", "vit_zoo"), ("statnn", "vit_zoo"),
                                         ("gnn", "mixed_zoo")])
def test_fit_on_a_tiny_zoo_scores_kendall_tau_and_r2(model, data, vit_zoo, nnzoo_home, tmp_path):
    small = {"gnn": ["model.hidden=8", "model.fourier_features=8"], "statnn": ["model.hidden=16"],
             "transformer": ["model.d_node=8", "model.d_edge=8", "model.d_attn=8", "model.d_node_hidden=8",
                             "model.d_edge_hidden=8", "model.heads=2", "model.fourier_features=8"]}[model]
    args = ["fit", "--model", model, "--data", data, f"run_dir={tmp_path}", *tiny_overrides(data), *small,
            "trainer.max_epochs=1", "trainer.enable_progress_bar=false"]
    assert main(args) == 0
    (metrics_file,) = tmp_path.glob("*/version_*/metrics.json")
    metrics = json.loads(metrics_file.read_text())
    assert {"test/kendall_tau", "test/r2", "test/mae"} <= set(metrics), metrics
    assert 0 <= metrics["test/mae"] <= 1
    if data == "vit_zoo":  # the CLI's overrides name the zoo the fixture built (same cache key): nothing rebuilt
        assert list((nnzoo_home / "datasets").glob("vit_zoo-*")) == [vit_zoo]


# ------------------------------------------------------------------ the Small Transformer Zoo's exact layout
DIM, HEADS, FF, PATCH, SIDE = 8, 2, 2, 4, 8
TOKENS = (SIDE // PATCH) ** 2


def reference_state(seed: int, text: bool = False, classes: int = 10) -> dict[str, torch.Tensor]:
    """A checkpoint with the reference's keys and shapes (vision_task/model.py VisionTransformer, 1 layer;
    text_classification/solver.py drops 'embedding.*'), written out by hand, not from nnzoo's module."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g) * 0.3
    state = {} if text else {"embedding.pos_embedding": r(TOKENS, DIM), "embedding.conv1.weight": r(DIM, 1, PATCH, PATCH),
                             "embedding.conv1.bias": r(DIM)}
    state.update({"encoder.0.attention.queries.weight": r(DIM, DIM), "encoder.0.attention.keys.weight": r(DIM, DIM),
                  "encoder.0.attention.values.weight": r(DIM, DIM),
                  "encoder.0.attention.out_projection.weight": r(DIM, DIM),
                  "encoder.0.fc1.weight": r(FF * DIM, DIM), "encoder.0.fc1.bias": r(FF * DIM),
                  "encoder.0.fc2.weight": r(DIM, FF * DIM), "encoder.0.fc2.bias": r(DIM),
                  "classifier.fc1.weight": r(DIM, DIM), "classifier.fc1.bias": r(DIM),
                  "classifier.fc2.weight": r(classes, DIM), "classifier.fc2.bias": r(classes)})
    return state


def reference_forward(s: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The reference's forward written out: patches + table, attention(LN(x)), fc2(relu(fc1(LN(x)))) without
    residuals, final LN, mean over tokens, fc1-relu-fc2."""
    def ln(t):
        return F.layer_norm(t, (DIM,))
    if "embedding.conv1.weight" in s:
        x = F.conv2d(x, s["embedding.conv1.weight"], s["embedding.conv1.bias"], stride=PATCH)
        x = x.flatten(2).transpose(1, 2) + s["embedding.pos_embedding"]
    h = ln(x)
    b, n, _ = h.shape
    q, k, v = (h @ s[f"encoder.0.attention.{w}.weight"].T for w in ("queries", "keys", "values"))
    q, k, v = (t.view(b, n, HEADS, DIM // HEADS).transpose(1, 2) for t in (q, k, v))
    a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(DIM // HEADS), -1) @ v
    x = a.transpose(1, 2).reshape(b, n, DIM) @ s["encoder.0.attention.out_projection.weight"].T
    x = F.linear(torch.relu(F.linear(ln(x), s["encoder.0.fc1.weight"], s["encoder.0.fc1.bias"])),
                 s["encoder.0.fc2.weight"], s["encoder.0.fc2.bias"])
    x = ln(x).mean(1)
    return F.linear(torch.relu(F.linear(x, s["classifier.fc1.weight"], s["classifier.fc1.bias"])),
                    s["classifier.fc2.weight"], s["classifier.fc2.bias"])


RUNS = 20


def write_zoo(root: Path, name: str = "mnist", epochs=("1", "75", "best1"), heads_column: bool = True) -> dict:
    """RUNS runs x ``epochs`` checkpoints in the public layout; returns {(run, epoch): (state, accuracy)}."""
    states, records, truth = [], [], {}
    column = "test_top1_accuracy" if name == "mnist" else "test_accuracy"
    for i in range(RUNS):
        for j, epoch in enumerate(epochs):
            state = reference_state(100 * i + j, text=name == "ag_news", classes=10 if name == "mnist" else 4)
            acc = round(0.1 + 0.04 * i + 0.01 * j, 4)
            record = {"run": f"r{i:02d}x", "embed_dim": DIM, "n_layers": 1, "forward_mul": FF, "ckpt_epoch": epoch,
                      column: acc}
            if heads_column:
                record["n_attention_heads"] = HEADS
            states.append(state)
            records.append(record)
            truth[(f"r{i:02d}x", epoch)] = (state, acc)
    write_small_transformer_zoo(root, name, states, records)
    return truth


def test_the_public_layout_is_read_as_the_reference_reads_it(tmp_path):
    truth = write_zoo(tmp_path)
    csv_text = (tmp_path / "metadata" / "mnist.csv").read_text().splitlines()
    assert csv_text[1].split(",")[-1].startswith("mnist/r00x_1_") and (tmp_path / "mnist" / "r00x_75_1100.pt").is_file()
    zoo = load_small_transformer_zoo(tmp_path)  # epoch 75 only, as the reference
    (spec,) = zoo.specs
    assert len(zoo.accuracy) == RUNS
    order = [f"r{i:02d}x" for i in range(RUNS)]
    random.Random(3).shuffle(order)  # nfn_transformer: random.seed(3); shuffle(file_names_all); 70/15/15
    expected = {"train": order[:14], "val": order[14:17], "test": order[17:]}
    for split, runs in expected.items():
        got = zoo.splits[split].tolist()  # networks in file order; here network i is run i
        assert sorted(got) == sorted(int(r[1:3]) for r in runs)
        for i in got:
            state, acc = truth[(f"r{i:02d}x", "75")]
            assert abs(float(zoo.accuracy[i]) - acc) < 1e-6
            assert torch.equal(zoo.params[0][zoo.row[i]], torch.cat([v.reshape(-1) for v in state.values()]))
    # nnzoo's module holds exactly the reference's tensors, and computes the reference's function
    state = truth[("r03x", "75")][0]
    net = SmallZooViT(1, DIM, 1, HEADS, FF, SIDE, PATCH, 10)
    net.load_state_dict(state, strict=True)
    x = torch.randn(4, 1, SIDE, SIDE)
    assert torch.allclose(net(x), reference_forward(state, x), atol=1e-5)
    assert spec.num_inputs == 1 and spec.num_outputs == 10 and spec.num_params == sum(v.numel() for v in state.values())


def test_every_epoch_and_cut_off_keep_runs_together(tmp_path):
    write_zoo(tmp_path)
    zoo = load_small_transformer_zoo(tmp_path, epoch="all", cut_off=0.3)
    kept = [(i, j) for i in range(RUNS) for j in range(3) if round(0.1 + 0.04 * i + 0.01 * j, 4) >= 0.3]
    assert len(zoo.accuracy) == len(kept) and float(zoo.accuracy.min()) >= 0.3  # every epoch, none below cut_off
    run_of = {}  # network -> run, from its accuracy (distinct per run and epoch here)
    for split, idx in zoo.splits.items():
        for i in idx.tolist():
            run = round((float(zoo.accuracy[i]) - 0.1) / 0.04 - 0.25)
            assert run_of.setdefault(run, split) == split, "a run split across train/val/test"


def test_ag_news_checkpoints_start_at_the_encoder(tmp_path):
    write_zoo(tmp_path, "ag_news", epochs=("75",), heads_column=False)
    (tmp_path / "ag_news" / "embedding.pt").write_bytes(b"not read")  # the shared embedding is never read
    zoo = load_small_transformer_zoo(tmp_path, heads=HEADS)
    (spec,) = zoo.specs
    assert spec.num_inputs == DIM and spec.num_outputs == 4
    net = SmallZooText(DIM, 1, HEADS, FF, 4)
    state = reference_state(100 * 5, text=True, classes=4)
    net.load_state_dict(state, strict=True)
    x = torch.randn(3, 6, DIM)
    assert torch.allclose(net(x), reference_forward(state, x), atol=1e-5)


def _damage_csv(root: Path, old: str, new: str) -> None:
    path = root / "metadata" / "mnist.csv"
    path.write_text(path.read_text().replace(old, new, 1))


@pytest.mark.parametrize("damage, words", [
    (lambda r: (r / "metadata" / "mnist.csv").unlink(), ["metadata", "no metadata CSV", "data.zoo"]),
    (lambda r: _damage_csv(r, "mnist/r00x_75_1100.pt", "mnist/../../etc/passwd.pt"), ["mnist.csv line", "ckpt_file"]),
    (lambda r: _damage_csv(r, ",0.11,", ",1.5,"), ["mnist.csv line", "1.5"]),
    (lambda r: _damage_csv(r, "ckpt_epoch", "epoch"), ["lacks column", "ckpt_epoch"]),
    (lambda r: torch.save({"encoder.0.fc1.weight": torch.ones(2)}, r / "mnist" / "r00x_75_1100.pt"),
     ["r00x_75_1100.pt", "Small Transformer Zoo checkpoint"]),
    (lambda r: torch.save({**reference_state(0), "extra.weight": torch.ones(2)}, r / "mnist" / "r00x_75_1100.pt"),
     ["r00x_75_1100.pt", "extra.weight"]),
    (lambda r: (r / "mnist" / "r01x_75_1500.pt").write_bytes(b"PK\x03\x04 broken"), ["r01x_75_1500.pt"]),
    (lambda r: (r / "mnist" / "r19x_75_8700.pt").unlink(), ["mnist.csv line", "r19x_75_8700.pt", "not found"]),
    (lambda r: torch.save({**reference_state(0), "encoder.0.attention.queries.weight": torch.ones(0, DIM)},
                          r / "mnist" / "r00x_75_1100.pt"), ["r00x_75_1100.pt", "width 0"]),
])
def test_damaged_zoo_files_are_one_line_naming_the_file(tmp_path, damage, words):
    write_zoo(tmp_path)
    damage(tmp_path)
    with pytest.raises(NnzooError) as err:
        load_small_transformer_zoo(tmp_path)
    assert "\n" not in str(err.value) and all(w in str(err.value) for w in words), str(err.value)


def test_fit_on_the_small_transformer_zoo_format(tmp_path):
    write_zoo(tmp_path / "zoo")
    args = ["fit", "--model", "gnn", "--data", "small_transformer_zoo", f"data.root={tmp_path / 'zoo'}",
            f"run_dir={tmp_path / 'runs'}", "model.hidden=8", "model.fourier_features=8", "trainer.max_epochs=1",
            "trainer.enable_progress_bar=false"]
    assert main(args) == 0
    (metrics_file,) = (tmp_path / "runs").glob("*/version_*/metrics.json")
    assert "test/kendall_tau" in json.loads(metrics_file.read_text())


# ------------------------------------------------------------------ NG-T's size limit
PARK_NGT = dict(d_node=32, d_edge=16, d_attn=32, d_node_hidden=64, d_edge_hidden=64, heads=4, layers=3)


def _chain(width: int) -> NetworkSpec:
    return NetworkSpec((LayerSpec("linear", 2, width, activation="relu"), LayerSpec("linear", width, 1)))


def _saved_bytes(model: nn.Module, spec: NetworkSpec) -> int:
    """Bytes autograd keeps for backward in one training step on one network (each storage once)."""
    seen, total = set(), [0]

    def pack(t):
        key = t.untyped_storage().data_ptr()
        if key not in seen:
            seen.add(key)
            total[0] += t.untyped_storage().nbytes()
        return t
    params = torch.randn(1, spec.num_params)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(WeightBatch([spec], [params], torch.zeros(1, dtype=torch.long))).sum()
    return total[0]


@pytest.mark.parametrize("dims", [{}, PARK_NGT], ids=["defaults", "wild_park"])
def test_ngt_pair_memory_estimate_matches_the_tensors_a_step_keeps(dims):
    full = {"d_node": 64, "d_edge": 32, "d_attn": 128, "d_node_hidden": 128, "d_edge_hidden": 64, "heads": 8,
            "layers": 4, **dims}
    saved = []
    for width in (40, 80):
        spec = _chain(width)
        info = DataInfo("chain", "regression", 1, (spec,))
        torch.manual_seed(0)
        model = create_model("transformer", info, **dims, probes=0, fourier_features=8).train()
        saved.append(_saved_bytes(model, spec))
    per_pair = (saved[1] - saved[0]) / (83 ** 2 - 43 ** 2)
    estimate = 4 * pair_floats(full["d_edge"], full["d_attn"], full["d_edge_hidden"], full["heads"],
                               full["layers"], True)
    assert abs(per_pair / estimate - 1) < 0.1, (per_pair, estimate)


def test_ngt_refuses_a_network_beyond_its_limit_in_one_line_naming_it():
    limit = max_nodes(d_edge=32, d_attn=128, d_edge_hidden=64, heads=8, layers=4, edge_updates=True)
    assert limit == 388  # at NG-T's default widths: 3,564 floats per pair of neurons, 2 GiB per network
    fits = DataInfo("wide", "regression", 1, (_chain(limit - 3),))
    create_model("transformer", fits, probes=0)  # limit - 3 hidden + 3 = limit neurons
    too_big = DataInfo("wide", "regression", 1, (_chain(limit - 2),))
    with pytest.raises(IncompatibleError) as err:
        create_model("transformer", too_big, probes=0)
    message = str(err.value)
    assert "\n" not in message and "dataset 'wide'" in message and f"{limit + 1} neurons" in message
    assert "use gnn" in message and f"{limit} neurons" in message
    create_model("gnn", too_big, probes=0)  # linear in edges: no such limit


def test_the_small_transformer_zoo_is_beyond_ngt_at_every_reference_width():
    spec = zoo_spec(dict(dim=32, layers=2, heads=2, forward_mul=2, classes=10, channels=1, patch=4, image_size=28))
    info = DataInfo("small_transformer_zoo", "regression", 1, (spec,),
                    layer_statistics([spec], [torch.zeros(1, spec.num_params)]))
    assert spec.num_nodes == 736 > max_nodes(d_edge=16, d_attn=32, d_edge_hidden=64, heads=4, layers=3,
                                             edge_updates=True)
    with pytest.raises(IncompatibleError, match="small_transformer_zoo.*736 neurons.*use gnn"):
        create_model("transformer", info, **PARK_NGT, probes=0)


def test_the_graph_sizes_benchmark_reports_the_largest_vit(tmp_path):
    spec_file = importlib.util.spec_from_file_location("graph_sizes", REPO / "benchmarks" / "graph_sizes.py")
    graph_sizes = importlib.util.module_from_spec(spec_file)
    spec_file.loader.exec_module(graph_sizes)
    small = ArchZooBuildConfig(grid={"vit": {"depth": [1, 2], "width": [8], "heads": [1, 2], "patch": [8]}})
    spec, count = graph_sizes.largest_spec("vit_zoo", small)
    assert count == 4 and spec.name == "vit_depth=2_heads=2_patch=8_width=8"
    assert graph_sizes.step_ms("gnn", {"hidden": 8, "fourier_features": 8}, spec, 2, 1) > 0
    assert graph_sizes.main(["--zoos", "vit_zoo", "--no-time", "--out", str(tmp_path / "sizes.json")]) == 0
    (row,) = json.loads((tmp_path / "sizes.json").read_text())["rows"]
    assert (row["nodes"], row["architectures"], row["ngt_max_nodes"]) == (505, 36, 679)
    assert "| vit_zoo | 36 |" in (tmp_path / "sizes.md").read_text()


# ------------------------------------------------------------------ packing without --spec
@pytest.mark.parametrize("arch, words", [
    ({"family": "vit", "depth": 1, "width": 8, "heads": 2, "patch": 8}, ["'cls'", "class token"]),
    ({"family": "resnet", "blocks": 2, "width": 4}, ["downsample", "residual shortcut"]),
], ids=["vit", "resnet"])
def test_pack_without_spec_refuses_a_network_that_is_not_a_chain(arch, words, tmp_path, nnzoo_home, capsys):
    folder = tmp_path / "nets"
    folder.mkdir()
    lines = ["file,label"]
    for i in range(4):
        torch.manual_seed(i)
        torch.save(build_network(arch, 16).state_dict(), folder / f"n{i}.pth")
        lines.append(f"n{i}.pth,{i % 2}")
    (folder / "labels.csv").write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    assert main(["pack", str(folder), "--labels", str(folder / "labels.csv"), "--name", f"no_spec_{arch['family']}",
                 "--classes", "2"]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "use --spec" in err[0] and all(w in err[0] for w in words), err
    assert not (nnzoo_home / "packs" / f"no_spec_{arch['family']}").exists()


def test_a_chain_still_packs_without_spec():
    from nnzoo.nets import spec_from_state_dict
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(4, 2))
    spec = spec_from_state_dict(net.state_dict())
    assert [layer.kind for layer in spec.layers] == ["conv", "linear"] and spec.layers[0].norm == "batchnorm"


def test_the_arch_zoos_suite_runs_every_cell_at_tiny_size(vit_zoo, tmp_path):
    import yaml
    suite = yaml.safe_load((REPO / "benchmarks" / "arch_zoos.yaml").read_text())
    assert suite["models"] == ["gnn", "transformer", "statnn"] and suite["datasets"] == ["vit_zoo", "mixed_zoo"]
    suite.update(seeds=[0], model_overrides={
        "gnn": ["model.hidden=8", "model.fourier_features=8"], "statnn": ["model.hidden=16"],
        "transformer": ["model.d_node=8", "model.d_edge=8", "model.d_attn=8", "model.d_node_hidden=8",
                        "model.d_edge_hidden=8", "model.heads=2", "model.fourier_features=8"]})
    (tmp_path / "arch_zoos.yaml").write_text(yaml.safe_dump(suite))
    overrides = [o for o in tiny_overrides("vit_zoo")] + ["trainer.max_epochs=1"]
    assert main(["benchmark", str(tmp_path / "arch_zoos.yaml"), "--out", str(tmp_path / "out"), *overrides]) == 0
    cells = [json.loads(p.read_text()) for p in (tmp_path / "out" / "cells").glob("*.json")]
    assert len(cells) == 6
    assert all("test/kendall_tau" in json.dumps(c) and "test/r2" in json.dumps(c) for c in cells)


def test_a_model_without_any_defined_validation_value_draws_no_curve(tmp_path):
    from nnzoo.benchmark import _plot_curves
    _plot_curves({"statnn": [], "gnn": [(10.0, 0.5, 0.1), (20.0, 0.6, 0.1)]}, tmp_path / "c.png", "t")
    assert (tmp_path / "c.png").stat().st_size > 0


def test_a_suite_with_no_defined_validation_value_plots_a_note_not_an_empty_legend(tmp_path):
    """A tiny suite's Kendall tau can be undefined at every point; the plot says so instead of warning."""
    import warnings

    import matplotlib.pyplot as plt

    from nnzoo.benchmark import _plot_curves
    texts = []
    real_close = plt.close
    with warnings.catch_warnings(), pytest.MonkeyPatch.context() as patch:
        warnings.simplefilter("error")  # matplotlib's "No artists with labels found" becomes a failure
        patch.setattr(plt, "close", lambda fig: (texts.extend(t.get_text() for a in fig.axes for t in a.texts),
                                                  real_close(fig)))
        _plot_curves({"statnn": [], "gnn": []}, tmp_path / "c.png", "t")
    assert (tmp_path / "c.png").stat().st_size > 0
    assert texts == ["no defined validation value yet"]


def test_docs_quote_the_measured_graph_sizes():
    """docs/graphs.md quotes benchmarks/results/graph_sizes.md unedited, and that table is the JSON's."""
    import json
    spec_file = importlib.util.spec_from_file_location("graph_sizes_docs", REPO / "benchmarks" / "graph_sizes.py")
    graph_sizes = importlib.util.module_from_spec(spec_file)
    spec_file.loader.exec_module(graph_sizes)
    report = json.loads((REPO / "benchmarks" / "results" / "graph_sizes.json").read_text())
    table = (REPO / "benchmarks" / "results" / "graph_sizes.md").read_text()
    assert table == graph_sizes.markdown(report["rows"], list(graph_sizes.MODELS))
    assert table.strip() in (REPO / "docs" / "graphs.md").read_text()


# ------------------------------------------------------------------ zoo checkpoints: card and predict
def test_graph_card_names_the_modules_inputs_and_state_dicts():
    """A zoo checkpoint's card says what its networks are (modules read as graphs), not a CNN's layer list."""
    from nnzoo.conventions import input_convention
    recipe = {"grid": TINY_GRID["mixed_zoo"], "image_size": 16, "source": "mnist"}
    specs = tuple(arch_spec(arch, 16) for arch in ARCHS)
    card = input_convention(DataInfo("mixed_zoo", "regression", 1, specs, extra={"build": {"recipe": recipe}}))
    assert card["kind"] == "module graph" and card["architectures"] == [s.name for s in specs]
    assert card["families"]["resnet"] == "blocks 1/2, width 4" and card["input_shape"] == [1, 16, 16]
    assert "build_network(arch, 16)" in card["modules"] and "16x16" in card["input"]
    assert "state_dict" in card["state_dict"] and "--spec" in card["matching"]
    assert "4 architectures" in card["summary"] and "test accuracy" in card["summary"]


@pytest.fixture(scope="module")
def tiny_vit_checkpoint(vit_zoo, nnzoo_home, tmp_path_factory) -> Path:
    """A gnn fitted for one epoch on the tiny ViT zoo (depth 1, width 8), exported: ``ck/gnn-tiny-vit.pt``."""
    folder = tmp_path_factory.mktemp("tiny_vit_checkpoint")
    args = ["fit", "--model", "gnn", "--data", "vit_zoo", f"run_dir={folder / 'runs'}", "name=z",
            *tiny_overrides("vit_zoo"), "model.hidden=8", "model.fourier_features=8", "trainer.max_epochs=1",
            "trainer.enable_progress_bar=false"]
    assert main(args) == 0
    (run,) = (folder / "runs" / "z").glob("version_*")
    assert main(["export", str(run), "--name", "gnn-tiny-vit", "--folder", str(folder / "ck")]) == 0
    return folder / "ck" / "gnn-tiny-vit.pt"


def test_a_zoo_checkpoint_predicts_a_users_vit_file_given_its_heads(tiny_vit_checkpoint, tmp_path, capsys):
    """ViTs that differ only in their heads have state dicts of the same shapes: a file alone is refused in one
    line naming it and --spec; with --spec (or the module in memory) the prediction is that graph's."""
    import numpy as np

    from nnzoo.inference import predict_networks
    from nnzoo.nets import spec_from_module
    from nnzoo.pretrained import load_checkpoint
    ckpt = tiny_vit_checkpoint
    card = json.loads((ckpt.parent / "manifest.json").read_text())["checkpoints"][0]["input_convention"]
    assert card["kind"] == "module graph" and card["families"] == {"vit": "depth 1, width 8"}
    capsys.readouterr()
    torch.manual_seed(3)
    nets = {h: build_network({"family": "vit", "depth": 1, "width": 8, "heads": h, "patch": 4}, 16) for h in (1, 2)}
    nets[2].load_state_dict(nets[1].state_dict())  # the same tensors, read with 1 head or with 2
    torch.save(nets[2].state_dict(), tmp_path / "vit.pth")
    assert main(["predict", "--checkpoint", str(ckpt), str(tmp_path / "vit.pth")]) == 2
    err = capsys.readouterr().err
    assert "vit.pth fits 3 architectures" in err and "heads=1" in err and "--spec" in err and err.count("\n") == 1
    module = load_checkpoint(ckpt)
    in_memory = {h: predict_networks(module, [net])[0]["prediction"] for h, net in nets.items()}
    assert in_memory[1] != pytest.approx(in_memory[2], abs=1e-6)  # the head count is read, not guessed
    for h, net in nets.items():
        spec_file = tmp_path / f"spec{h}.json"
        spec_file.write_text(json.dumps(spec_from_module(net, input_shape=(1, 16, 16), graph=True).to_dict()))
        assert main(["predict", "--checkpoint", str(ckpt), str(tmp_path / "vit.pth"), "--spec", str(spec_file)]) == 0
        line = json.loads(capsys.readouterr().out)
        assert np.isclose(line["prediction"], in_memory[h], rtol=0, atol=1e-6)


def _permute_heads_and_mlp(net: nn.Module) -> nn.Module:
    """A copy of ZooViT ``net`` computing the same function: its first two attention heads swapped (q, k, v
    rows and the out_proj columns reading them, together) and its feed-forward neurons permuted, every block."""
    import copy
    out = copy.deepcopy(net)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for block in out.blocks:
            attn, width = block.self_attn, block.self_attn.embed_dim
            dh = width // attn.num_heads
            heads = torch.cat([torch.arange(dh, 2 * dh), torch.arange(dh), torch.arange(2 * dh, width)])
            rows = torch.cat([heads + i * width for i in range(3)])
            attn.in_proj_weight.copy_(attn.in_proj_weight[rows])
            attn.in_proj_bias.copy_(attn.in_proj_bias[rows])
            attn.out_proj.weight.copy_(attn.out_proj.weight[:, heads])
            p = torch.randperm(block.linear1.out_features, generator=g)
            block.linear1.weight.copy_(block.linear1.weight[p])
            block.linear1.bias.copy_(block.linear1.bias[p])
            block.linear2.weight.copy_(block.linear2.weight[:, p])
    return out


def test_allow_unseen_predicts_for_a_vit_width_the_checkpoint_never_trained_on(tiny_vit_checkpoint, tmp_path,
                                                                             capsys):
    """A zoo checkpoint (widths 8) reads a width-12 ViT only when asked (--allow-unseen, with --spec), warns that
    the prediction extrapolates, predicts what the in-memory module gives and the same for a copy whose heads
    and MLP neurons are permuted; what training gave it nothing for (a second block's positions) is refused in
    one line naming the reason, and so is --allow-unseen without --spec."""
    import numpy as np

    from nnzoo.inference import embed_networks, predict_networks
    from nnzoo.nets import spec_from_module
    from nnzoo.pretrained import load_checkpoint
    ckpt = tiny_vit_checkpoint
    torch.manual_seed(4)
    net = build_network({"family": "vit", "depth": 1, "width": 12, "heads": 2, "patch": 4}, 16)
    permuted = _permute_heads_and_mlp(net)
    x = torch.rand(3, 1, 16, 16)
    assert torch.allclose(net.eval()(x), permuted.eval()(x), atol=1e-5)  # a symmetry of the network
    files = []
    for name, module in (("vit12", net), ("vit12_permuted", permuted)):
        torch.save(module.state_dict(), tmp_path / f"{name}.pth")
        files.append(str(tmp_path / f"{name}.pth"))
    spec_file = tmp_path / "spec12.json"
    spec_file.write_text(json.dumps(spec_from_module(net, input_shape=(1, 16, 16), graph=True).to_dict()))
    capsys.readouterr()
    predict = ["predict", "--checkpoint", str(ckpt), *files, "--spec", str(spec_file)]
    assert main(predict) == 2
    err = capsys.readouterr().err
    assert "vit12.pth is a ZooViT graph" in err and "--allow-unseen" in err and err.count("\n") == 1
    assert main(predict[:-2]  + ["--allow-unseen"]) == 2
    err = capsys.readouterr().err
    assert "--allow-unseen needs --spec" in err and err.count("\n") == 1
    assert main(predict + ["--allow-unseen"]) == 0
    captured = capsys.readouterr()
    assert "warning: 2 of 2 network(s)" in captured.err and "never trained on" in captured.err
    lines = [json.loads(line) for line in captured.out.splitlines()]
    in_memory = predict_networks(load_checkpoint(ckpt), [net], allow_unseen=True)[0]["prediction"]
    assert np.isclose(lines[0]["prediction"], in_memory, rtol=0, atol=1e-6)
    assert np.isclose(lines[1]["prediction"], lines[0]["prediction"], rtol=0, atol=1e-5)
    # in float64, the embedding (what the head reads) is invariant to the symmetry and moves under a non-symmetry
    embedded = embed_networks(load_checkpoint(ckpt).double(), [net, permuted, copy_with_scaled_values(net)],
                              allow_unseen=True)
    assert (embedded[1] - embedded[0]).abs().max() <= 1e-10  # float64 rounding
    assert (embedded[2] - embedded[0]).abs().max() > 1e-6  # a one-epoch tiny model reads weights faintly
    deeper = build_network({"family": "vit", "depth": 2, "width": 12, "heads": 2, "patch": 4}, 16)
    with pytest.raises(NnzooError, match=r"cannot read it: it has \d+ hidden positional slots, the checkpoint's "
                                         r"networks at most \d+"):
        predict_networks(ckpt, [deeper], allow_unseen=True)


def copy_with_scaled_values(net: nn.Module) -> nn.Module:
    """A copy of ZooViT ``net`` with its first head's value weights doubled: a different function."""
    import copy
    out = copy.deepcopy(net)
    attn = out.blocks[0].self_attn
    width, dh = attn.embed_dim, attn.embed_dim // attn.num_heads
    with torch.no_grad():
        attn.in_proj_weight[2 * width:2 * width + dh] *= 2
    return out


def test_unseen_architectures_are_refused_where_training_gave_the_model_nothing():
    """DataInfo.unseen_problem names the first element of an unseen architecture with no trained counterpart;
    NG-T also refuses one larger than its largest training network (its memory chunks are sized by it)."""
    from nnzoo.inference import unseen_architecture_problem
    from nnzoo.nets import spec_from_module
    from nnzoo.nets.spec import mlp_spec
    from nnzoo.tasks.regression import RegressionTask

    def graph(arch):
        return spec_from_module(build_network(arch, 16), input_shape=(1, 16, 16), graph=True)

    vit = {"family": "vit", "depth": 1, "width": 8, "heads": 2, "patch": 4}
    info = DataInfo("vits", "regression", 1, (graph(vit), graph({**vit, "heads": 1})))
    assert info.unseen_problem(graph({**vit, "width": 12, "heads": 3})) is None
    assert "hidden positional slots" in info.unseen_problem(graph({**vit, "depth": 2}))
    assert "kernel rows" in info.unseen_problem(graph({**vit, "patch": 8}))
    assert "relu never occurs" in info.unseen_problem(graph({"family": "resnet", "blocks": 1, "width": 4}))
    other_classes = spec_from_module(build_network(vit, 16, classes=7), input_shape=(1, 16, 16), graph=True)
    assert "7 output neurons" in info.unseen_problem(other_classes)
    assert "it is a layer chain" in info.unseen_problem(mlp_spec([256, 16, 10]))
    for model, options, readable in (("gnn", {"hidden": 8, "fourier_features": 8}, True),
                                     ("transformer", {"d_node": 8, "d_edge": 8, "d_attn": 8, "d_node_hidden": 8,
                                                      "d_edge_hidden": 8, "heads": 2, "layers": 1,
                                                      "fourier_features": 8, "head_hidden": 8}, False)):
        task = RegressionTask({"name": model, **options}, info.to_dict())
        problem = unseen_architecture_problem(task, graph({**vit, "width": 16}))
        assert (problem is None) == readable, (model, problem)
        if not readable:
            assert "neurons, more than 'transformer' reads" in problem


def _unseen_script():
    spec = importlib.util.spec_from_file_location("unseen_architectures",
                                                  REPO / "benchmarks" / "unseen_architectures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_unseen_architecture_benchmark_scores_each_network_against_its_own_accuracy(vit_zoo,
                                                                                       tiny_vit_checkpoint):
    """benchmarks/unseen_architectures.py: tau and R² over every readable network, each prediction paired with
    that network's measured accuracy (checked against a network-by-network computation), subsets too small
    to rank are n/a, and the table is mean ± std over seeds."""
    from torchmetrics.functional import kendall_rank_corrcoef, r2_score

    from nnzoo.pretrained import load_checkpoint
    script = _unseen_script()
    zoo = load_arch_zoo(vit_zoo)
    archs = [e["arch"] for e in json.loads((vit_zoo / INDEX).read_text())["architectures"]]
    module = load_checkpoint(tiny_vit_checkpoint)
    scored = script.score(module, zoo, archs, batch_size=5)
    preds, targets = [], []
    for i in range(len(zoo.accuracy)):  # one network at a time, by its id
        g, r = int(zoo.group[i]), int(zoo.row[i])
        batch = WeightBatch([zoo.specs[g]], [zoo.params[g][r:r + 1]], torch.zeros(1))
        with torch.no_grad():
            preds.append(float(module.predict_scores(batch)))
        targets.append(float(zoo.accuracy[i]))
    preds, targets = torch.tensor(preds), torch.tensor(targets)
    assert scored["networks_read"] == scored["networks"] == len(targets) and not scored["skipped"]
    assert scored["all"]["kendall_tau"] == pytest.approx(float(kendall_rank_corrcoef(preds, targets)), abs=1e-6)
    assert scored["all"]["r2"] == pytest.approx(float(r2_score(preds, targets)), abs=1e-5)
    assert scored["width 12"] is None and scored["3 heads"] is None  # the tiny zoo has width 8 only
    entry = {"model": "gnn", "networks_read": 3, "networks": 4, "own_test": {"kendall_tau": 0.5, "r2": 0.1},
             "control": {"kendall_tau": 0.6, "r2": 0.2}, **{s: {"kendall_tau": 0.7, "r2": 0.3} for s in script.SUBSETS}}
    table = script.markdown({"checkpoints": {"gnn s0": entry, "gnn s1": {**entry, "all": {"kendall_tau": 0.9,
                                                                                          "r2": 0.5}}}})
    row = table.splitlines()[2]
    assert row.startswith("| gnn | 2 | 0.500 ± 0.000 (0.100 ± 0.000) | 0.600 ± 0.000 (0.200 ± 0.000) | "
                          "0.800 ± 0.141 (0.400 ± 0.141) |") and row.endswith("| 3 of 4 |")
