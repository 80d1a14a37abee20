"""Every registered model: builds from its default config, learns, and respects its symmetry claims."""

import pytest
import torch
import torch.nn.functional as F

from nnzoo.config import config_path, load_yaml, to_container
from nnzoo.data.weights import DataInfo, WeightBatch, layer_statistics
from nnzoo.errors import NnzooError
from nnzoo.models import MODELS, count_parameters, create_model
from nnzoo.nets import siren_init, siren_spec

SPEC = siren_spec()
# small versions of each model so that the tests stay fast; the defaults are checked for size below
SMALL = {"gnn": {"hidden": 16, "layers": 2, "probes": 16}, "transformer": {"d_node": 16, "d_edge": 8, "heads": 2, "layers": 2, "probes": 16},
         "dwsnet": {"hidden": 8, "layers": 2}, "mlp": {}, "statnn": {"hidden": 64}}


def _info(params, outputs=10):
    return DataInfo("t", "classification", outputs, (SPEC,), layer_statistics([SPEC], [params]))


def _params(n, seed=0):
    p = siren_init(n, SPEC, torch.Generator().manual_seed(seed))
    return p + 0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(seed + 1))


def _defaults(name):
    options = to_container(load_yaml(config_path("model", name)).model)
    options.pop("name")
    return options


def test_registry_has_the_five_models():
    assert {"gnn", "transformer", "dwsnet", "mlp", "statnn"} <= set(MODELS.names())


@pytest.mark.parametrize("name", MODELS.names())
def test_default_config_builds_and_predicts(name):
    params = _params(4)
    model = create_model(name, _info(params), **_defaults(name))
    out = model(WeightBatch([SPEC], [params], torch.zeros(4, dtype=torch.long)))
    assert out.shape == (4, 10) and torch.isfinite(out).all()
    assert count_parameters(model) > 10_000


@pytest.mark.parametrize("name", MODELS.names())
def test_overfits_a_tiny_batch(name):
    torch.manual_seed(0)
    params = _params(32)
    labels = torch.randint(0, 10, (32,))
    options = {**_defaults(name), **SMALL.get(name, {})}
    options = {k: v for k, v in options.items() if k in _defaults(name)}
    if "dropout" in options:
        options["dropout"] = 0.0
    model = create_model(name, _info(params), **options)
    batch = WeightBatch([SPEC], [params], labels)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(150):
        loss = F.cross_entropy(model(batch), labels)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if loss.item() < 0.1 * first:
            break
    assert loss.item() < 0.1 * first, f"{name}: loss {first:.3f} -> {loss.item():.3f}"


def test_unknown_option_and_incompatible_data_are_clear_errors():
    params = _params(2)
    with pytest.raises(NnzooError, match="bad option for model 'gnn'"):
        create_model("gnn", _info(params), hiden=3)
    mixed = DataInfo("mixed", "classification", 10, (SPEC, siren_spec((2, 8, 1))), {})
    with pytest.raises(NnzooError, match="one parameter layout"):
        create_model("mlp", mixed)
