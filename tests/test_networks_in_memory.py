"""Scoring and embedding networks held in memory, ``nn.Module`` s or state dicts, with no file and no label
(issue 28, item 4): ``predict_networks`` equals ``predict_files`` on the same networks saved, and
``embed_networks`` is the vector each model's head maps to its prediction, invariant where the model is."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import nnzoo
from nnzoo.data.weights import DataInfo, WeightBatch, layer_statistics
from nnzoo.errors import NnzooError
from nnzoo.inference import embed_networks, predict_files, predict_networks
from nnzoo.nets import siren_init, siren_spec
from nnzoo.pretrained import load_pretrained
from nnzoo.tasks import create_task


class Sine(nn.Module):
    def __init__(self, w0: float = 30.0) -> None:
        super().__init__()
        self.w0 = w0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.w0 * x)


def siren_module(seed: int, w0: float = 30.0) -> nn.Sequential:
    """A DWSNets-shaped SIREN (2-32-32-1) written as a plain module, with the SIREN initialisation."""
    spec = siren_spec()
    flat = siren_init(1, spec, torch.Generator().manual_seed(seed))[0]
    net = nn.Sequential(nn.Linear(2, 32), Sine(w0), nn.Linear(32, 32), Sine(w0), nn.Linear(32, 1))
    with torch.no_grad():
        for s in spec.slots:  # layer l is module 2 * l
            getattr(net[2 * s.layer], s.role).copy_(flat[s.start:s.end].view(s.shape))
    return net


def small_cnn(seed: int, activation: type[nn.Module]) -> nn.Sequential:
    """A Small CNN Zoo network (3 strided 3x3 convolutions, pooling, a dense layer)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 16, 3, stride=2), activation(), nn.Conv2d(16, 16, 3, stride=2), activation(),
                         nn.Conv2d(16, 16, 3, stride=2), activation(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(16, 10))


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message, message
    return message


@pytest.fixture(scope="module")
def classifier():
    return load_pretrained("gnn-mnist_inr")


@pytest.fixture(scope="module")
def sirens() -> list[nn.Sequential]:
    return [siren_module(seed) for seed in range(5)]


def test_predictions_equal_those_of_the_same_networks_saved_to_files(classifier, sirens, tmp_path):
    files = []
    for i, net in enumerate(sirens):
        files.append(tmp_path / f"net{i}.pth")
        torch.save(net.state_dict(), files[-1])
    from_files = [{k: v for k, v in r.items() if k != "file"} for r in predict_files(classifier, files, batch_size=2)]
    from_modules = predict_networks(classifier, sirens, batch_size=2)
    from_states = nnzoo.predict_networks(classifier, [net.state_dict() for net in sirens], batch_size=2)
    assert from_modules == from_files and from_states == from_files
    assert [set(r) for r in from_modules] == [{"prediction", "probabilities"}] * len(sirens)
    assert len({tuple(r["probabilities"].values()) for r in from_modules}) == len(sirens)  # five answers
    # a pretrained name works too, and a regular nn.Module input needs no spec, no label, no file
    (alone,) = predict_networks("gnn-mnist_inr", sirens[:1])
    assert alone["prediction"] == from_files[0]["prediction"]
    assert list(alone["probabilities"].values()) == pytest.approx(list(from_files[0]["probabilities"].values()),
                                                                  abs=1e-6)


def test_a_modules_activation_picks_among_architectures_a_state_dict_cannot_tell_apart(tmp_path):
    """The Small CNN Zoo holds ReLU and tanh CNNs of one layout: a file needs --activation, a module says it."""
    module = load_pretrained("gnn-cnn_zoo")
    nets = [small_cnn(0, nn.Tanh), small_cnn(1, nn.Tanh)]
    for i, net in enumerate(nets):
        torch.save(net.state_dict(), tmp_path / f"cnn{i}.pth")
    from_files = predict_files(module, sorted(tmp_path.glob("*.pth")), activation="tanh")
    assert predict_networks(module, nets) == [{"prediction": r["prediction"]} for r in from_files]
    relu = predict_files(module, [tmp_path / "cnn0.pth"], activation="relu")  # the same weights as a ReLU CNN
    assert predict_networks(module, [small_cnn(0, nn.ReLU)]) == [{"prediction": relu[0]["prediction"]}]
    with pytest.raises(NnzooError) as err:
        predict_networks(module, [net.state_dict() for net in nets])
    assert "network #0" in one_line(err) and "activation=" in str(err.value)


def test_embedding_is_what_the_head_reads_invariant_to_hidden_neurons_and_tells_networks_apart(sirens):
    module = load_pretrained("gnn-mnist_inr").double()  # its own copy: float64
    net = sirens[0]
    perm = torch.randperm(32, generator=torch.Generator().manual_seed(3))
    moved = siren_module(0)
    with torch.no_grad():  # hidden layer 1 reordered: rows of layer 0, then columns of layer 1
        moved[0].weight.copy_(net[0].weight[perm])
        moved[0].bias.copy_(net[0].bias[perm])
        moved[2].weight.copy_(net[2].weight[:, perm])
    x = torch.rand(64, 2) * 2 - 1
    assert torch.allclose(moved(x), net(x), atol=1e-5) and not torch.equal(moved[0].weight, net[0].weight)
    emb = embed_networks(module, [net, moved, sirens[1], net.state_dict()], batch_size=3)
    head = module.model.readout.head
    assert emb.shape == (4, head[0].in_features) and emb.dtype == torch.float64
    scale = emb[0].abs().max()
    assert (emb[1] - emb[0]).abs().max() <= 1e-5 * scale  # permuting hidden neurons leaves it unchanged
    assert (emb[2] - emb[0]).abs().max() > 1e-2 * scale  # another network lands elsewhere
    torch.testing.assert_close(emb[3], emb[0], rtol=1e-12, atol=0)  # a module and its state dict: one network
    # the head maps the embedding to the model's prediction
    probabilities = torch.tensor([list(r["probabilities"].values()) for r in predict_networks(module, [net, moved])],
                                 dtype=torch.float64)
    torch.testing.assert_close(head(emb[:2]).softmax(-1), probabilities, rtol=1e-9, atol=1e-12)
    assert not head._forward_pre_hooks and not module.training  # nothing left behind


BUILT_IN = {"gnn": {"hidden": 8, "layers": 2, "probes": 4, "fourier_features": 8},
            "transformer": {"d_node": 8, "d_edge": 4, "d_attn": 8, "heads": 2, "layers": 2, "probes": 4,
                            "fourier_features": 8},
            "dwsnet": {"hidden": 8, "layers": 2}, "statnn": {"hidden": 16},
            "nfn_hnp": {"hidden": [8, 8], "fourier_features": 8, "head_hidden": 16},
            "nfn_np": {"hidden": [8, 8], "fourier_features": 8, "head_hidden": 16}}


@pytest.mark.parametrize("name", sorted(BUILT_IN))
def test_every_declared_embedding_head_reads_the_vector_that_gives_the_prediction(name):
    """A model's ``embedding_head`` names a submodule by path: its input must be the embedding, one row per
    network, read whole by the head's first linear layer, and the head must turn it into the model's output."""
    spec = siren_spec()
    params = siren_init(3, spec, torch.Generator().manual_seed(0))
    info = DataInfo("t", "classification", 10, (spec,), layer_statistics([spec], [params]))
    torch.manual_seed(0)
    task = create_task({"name": name, **BUILT_IN[name]}, info).eval()
    states = [{f"seq.{s.layer}.{s.role}": p[s.start:s.end].view(s.shape) for s in spec.slots} for p in params]
    emb = embed_networks(task, states)
    assert emb.shape[0] == 3 and emb.dim() == 2 and torch.isfinite(emb).all()
    with torch.no_grad():
        out = task(WeightBatch([spec], [params], torch.zeros(3, dtype=torch.long)))
        path = type(task.model).embedding_head
        parent, _, index = path.rpartition(".")
        if index.isdigit():  # a layer of a Sequential: the head is that layer and the ones after it
            head = nn.Sequential(*list(task.model.get_submodule(parent))[int(index):])
        else:
            head = task.model.get_submodule(path)
        first = next(m for m in head.modules() if not isinstance(m, nn.Sequential))
        assert isinstance(first, nn.Linear) and first.in_features == emb.shape[1]  # a learned map of it, whole
        torch.testing.assert_close(head(emb), out, rtol=1e-5, atol=1e-6)


def test_models_and_checkpoints_without_a_pooled_representation_are_refused_in_one_line():
    spec = siren_spec()
    params = siren_init(2, spec, torch.Generator().manual_seed(0))
    info = DataInfo("t", "classification", 10, (spec,), layer_statistics([spec], [params]))
    flat_mlp = create_task({"name": "mlp", "hidden": 8}, info)
    with pytest.raises(NnzooError) as err:
        embed_networks(flat_mlp, [siren_module(0)])
    assert "'mlp' has no pooled representation" in one_line(err)
    editor = load_pretrained("gnn-mnist_inr_dilate")
    for call in (embed_networks, predict_networks):
        with pytest.raises(NnzooError) as err:
            call(editor, [siren_module(0)])
        assert "edits networks" in one_line(err)


def test_networks_that_do_not_fit_the_checkpoint_are_one_line_naming_the_network(classifier, sirens):
    relu_mlp = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 1))
    bad_cases = [
        ([sirens[0], relu_mlp], ["network #1 (Sequential)", "none of the 1 architecture(s) of 'mnist_inr'"]),
        ([siren_module(0, w0=10.0)], ["network #0", "none of"]),  # a sine of another frequency
        ([nn.Sequential(nn.Linear(2, 32), nn.LayerNorm(32), nn.Linear(32, 1))], ["network #0", "LayerNorm"]),
        ([{**sirens[0].state_dict(), "0.weight": [[0.5, 0.5]] * 32}], ["network #0 (dict)", "maps names to tensors"]),
        ([{}], ["network #0 (dict) is an empty state dict"]),
        ([sirens[0].state_dict(), "net.pth"], ["network #1 (str) is neither an nn.Module nor a state dict"]),
        (sirens[0], ["got one Sequential", "pass [network]"]),  # one network, not a list of them
        ([], ["networks is empty"]),
    ]
    for networks, words in bad_cases:
        for call in (predict_networks, embed_networks):
            with pytest.raises(NnzooError) as err:
                call(classifier, networks)
            message = one_line(err)
            assert all(w in message for w in words), message
    with pytest.raises(NnzooError) as err:
        predict_networks(classifier, sirens, spec=siren_spec((2, 8, 1)))  # a spec that is not the checkpoint's
    assert "network #0" in one_line(err) and "none of" in str(err.value)
    with pytest.raises(NnzooError) as err:
        predict_networks(classifier, sirens, batch_size=0)
    assert "--batch-size" in one_line(err)
