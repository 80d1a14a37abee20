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
         "dwsnet": {"hidden": 8, "layers": 2}, "mlp": {}, "statnn": {"hidden": 64},
         "nfn_hnp": {"hidden": [16, 16], "fourier_features": 16, "head_hidden": 64},
         "nfn_np": {"hidden": [16, 16], "fourier_features": 16, "head_hidden": 64}}


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


@pytest.mark.parametrize("warmup, schedule", [(0, "constant"), (0, "cosine"), (10, "constant"), (100, "cosine")])
def test_learning_rate_schedule(warmup, schedule):
    """Per-step rates equal the formula (linear warm-up from lr/warmup, then constant or a cosine to 0 at the
    last step) to 1e-12, and a resume (Lightning: configure_optimizers, then both state dicts) continues it."""
    import math
    from types import SimpleNamespace

    from nnzoo.tasks import create_task

    lr, total = 1e-3, 300
    w = max(warmup, 1)

    def reference(step):
        if step < w:
            return lr * (step + 1) / w
        return lr * (0.5 * (1 + math.cos(math.pi * min((step - w) / (total - w), 1.0))) if schedule == "cosine" else 1)

    def configured():
        task = create_task({"name": "mlp", "hidden": 8}, _info(_params(2)),
                           optim={"lr": lr, "warmup_steps": warmup, "schedule": schedule})
        task._trainer = SimpleNamespace(estimated_stepping_batches=total)
        cfg = task.configure_optimizers()
        assert cfg["lr_scheduler"]["interval"] == "step"
        return cfg["optimizer"], cfg["lr_scheduler"]["scheduler"]

    def rates(optimizer, scheduler, steps):
        out = []
        for _ in range(steps):
            out.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        return out

    optimizer, scheduler = configured()
    first = rates(optimizer, scheduler, 137)
    saved = scheduler.state_dict(), optimizer.state_dict()
    rest = rates(optimizer, scheduler, total + 20 - 137)
    for step, rate in enumerate(first + rest):
        assert rate == pytest.approx(reference(step), rel=1e-12, abs=0), f"step {step}"
    optimizer, scheduler = configured()
    scheduler.load_state_dict(saved[0])
    optimizer.load_state_dict(saved[1])
    assert rates(optimizer, scheduler, len(rest)) == rest


@pytest.mark.parametrize("name", MODELS.names())
def test_config_options_are_the_constructor_options(name):
    """One set of defaults: zoo_configs/model/<name>.yaml (which documents their sources) holds exactly the
    constructor's keyword options with the same defaults, so neither can drift from the other."""
    import inspect

    signature = inspect.signature(MODELS.get(name))
    assert list(signature.parameters)[0] == "info", f"{name}: the constructor must be (info: DataInfo, **options)"

    def plain(value):  # YAML has lists where Python defaults are tuples
        return list(value) if isinstance(value, tuple) else value

    constructor = {k: plain(p.default) for k, p in list(signature.parameters.items())[1:]}
    missing = [k for k, d in constructor.items() if d is inspect.Parameter.empty]
    assert not missing, f"{name}: give the constructor options {missing} defaults (those of the YAML)"
    config = _defaults(name)
    where = f"zoo_configs/model/{name}.yaml"
    assert not set(constructor) - set(config), f"{where} lacks options {sorted(set(constructor) - set(config))}"
    assert not set(config) - set(constructor), \
        f"{where} has options {sorted(set(config) - set(constructor))} that the constructor does not take"
    differ = {k: (constructor[k], config[k]) for k in config if constructor[k] != config[k]}
    assert not differ, f"{name}: constructor default != {where} for (constructor, yaml): {differ}"


def test_plan_warmup_cuts_only_a_warmup_that_fills_the_run():
    """``auto`` cuts a warm-up of at least half the planned steps to 10% of them; shorter ones (every converged
    recipe: NG 1,000 of 25,000 steps, NFN 10,000 of 50,000) and unbounded runs keep the recipe's."""
    from nnzoo.tasks.base import plan_warmup
    assert plan_warmup(1000, 260, "auto")[0] == 26 and "scaled to 10% of the 260" in plan_warmup(1000, 260, "auto")[1]
    assert plan_warmup(1000, 25_000, "auto") == (1000, None)
    assert plan_warmup(10_000, 50_000, "auto") == (10_000, None)
    assert plan_warmup(130, 260, "auto")[0] == 26 and plan_warmup(129, 260, "auto") == (129, None)
    assert plan_warmup(1000, float("inf"), "auto") == (1000, None) and plan_warmup(0, 6, "auto") == (0, None)
    steps, text = plan_warmup(1000, 260, "fixed")
    assert steps == 1000 and text.startswith("warning: the warm-up (1000 steps) fills 100% of the 260")


def test_few_validation_networks_warn(capsys):
    """A split with fewer than 10 validation or test networks is named in a warning (its metrics move in steps
    of 10% or more), and a larger one is not."""
    from nnzoo.data.datamodule import check_splits
    from nnzoo.data.weights import WeightDataset
    params = _params(2)
    info = _info(params)
    def dataset(n):
        return WeightDataset.homogeneous(SPEC, params[:1].repeat(n, 1), torch.zeros(n, dtype=torch.long))
    check_splits({"train": dataset(20), "val": dataset(3), "test": dataset(12)}, info)
    err = capsys.readouterr().err
    assert "has only 3 val networks" in err and "steps of 33%" in err and "test networks" not in err
    check_splits({"train": dataset(20), "val": dataset(10), "test": dataset(10)}, info)
    assert "warning" not in capsys.readouterr().err
