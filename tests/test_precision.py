"""Mixed precision (``trainer.precision=bf16-mixed``): every registered model trains and predicts under bfloat16
autocast on CPU, classifiers and editors alike, and the parts kept in float32 stay exactly float32."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf

from nnzoo.cli import main
from nnzoo.config import compose
from nnzoo.data import create_datamodule
from nnzoo.models import MODELS
from nnzoo.models.layers.encoders import FourierFeatures
from nnzoo.models.layers.pna import aggregate
from nnzoo.models.layers.probes import ProbeFeatures
from nnzoo.nets import siren_spec
from nnzoo.nets.functional import siren_init
from nnzoo.tasks import EditingTask, create_task
from tests.conftest import tiny_fit_args
from tests.test_editing import editing_info
from tests.test_models import SMALL

EDITORS = [n for n in MODELS.names() if "editing" in MODELS.entry(n).meta["tasks"]]
TINY = {"gnn": {"fourier_features": 16},
        "transformer": {"d_attn": 16, "d_node_hidden": 16, "d_edge_hidden": 16, "fourier_features": 16}}
"""Beyond tests/test_models.py's SMALL: bfloat16 is emulated on most CPUs, several times slower than float32."""
OUTPUT_RTOL = 5e-2
"""Relative (Frobenius) distance allowed between a model's bf16-autocast and float32 outputs: bfloat16 keeps
8 significant bits (0.4%), a few layers compound it; measured here: 0.04-1.7%."""


@pytest.fixture(autouse=True)
def one_thread():
    """Batches of a few networks: a second thread only adds synchronisation (10x slower on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def bf16() -> torch.autocast:
    return torch.autocast("cpu", dtype=torch.bfloat16)


def _options(name: str, data: str) -> dict:
    """The model's reference options on ``data`` (recipes included), shrunk as in tests/test_models.py."""
    options = OmegaConf.to_container(compose(name, data).model)
    small = {k: v for k, v in {**SMALL.get(name, {}), **TINY.get(name, {})}.items() if k in options}
    return {**options, **small, **({"dropout": 0.0} if "dropout" in options else {})}


class _Record(L.Callback):
    """Training losses, and the dtype the first linear layer computed in (bfloat16 proves autocast was on)."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.dtypes: set[torch.dtype] = set()

    def on_fit_start(self, trainer, pl_module) -> None:
        first = next(m for m in pl_module.model.modules() if isinstance(m, torch.nn.Linear))
        first.register_forward_hook(lambda module, inputs, out: self.dtypes.add(out.dtype))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


def _trainer(precision: str, **kwargs) -> L.Trainer:
    return L.Trainer(accelerator="cpu", devices=1, precision=precision, logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, **kwargs)


def _fit_and_predict(name: str, data: str, root) -> None:
    """A real 3-step Lightning fit in bf16-mixed: finite losses, every parameter moved, autocast on; then the
    trained weights predict the validation split under bf16-mixed close to what they predict in float32."""
    torch.manual_seed(0)
    dm = create_datamodule(data, root=str(root), batch_size=4, eval_batch_size=8)
    dm.setup()
    task = create_task({"name": name, **_options(name, data)}, dm.info, optim={"warmup_steps": 1, "lr": 1e-3})
    before = {k: p.detach().clone() for k, p in task.named_parameters()}
    record = _Record()
    _trainer("bf16-mixed", max_steps=3, limit_val_batches=0, callbacks=[record]).fit(task, datamodule=dm)
    assert len(record.losses) == 3 and all(torch.isfinite(torch.tensor(record.losses))), record.losses
    assert record.dtypes == {torch.bfloat16}, record.dtypes
    unchanged = [k for k, p in task.named_parameters() if torch.equal(p.detach(), before[k])]
    assert not unchanged, f"{name}: parameters not updated by bf16-mixed training: {unchanged}"
    assert all(torch.isfinite(p).all() for p in task.parameters())

    task.eval()
    batch = next(iter(dm.val_dataloader()))
    with torch.no_grad():
        reference = task(batch)
        with bf16():
            mixed = task(batch)
    for ref, out in zip(*(x if isinstance(x, list) else [x] for x in (reference, mixed))):
        assert _distance(out, ref) < OUTPUT_RTOL, f"{name} on {data}: bf16 output {_distance(out, ref):.3f} away"
    # what `predict` returns: class probabilities, or the renderings of the edited INRs
    loader = dm.val_dataloader()
    scores32 = torch.cat(_trainer("32-true", limit_predict_batches=1).predict(task, loader))
    scores16 = torch.cat(_trainer("bf16-mixed", limit_predict_batches=1).predict(task, loader))
    assert scores16.dtype == torch.float32 and torch.isfinite(scores16).all()
    assert _distance(scores16, scores32) < OUTPUT_RTOL, f"{name} on {data}: {_distance(scores16, scores32):.3f}"


def _distance(output: torch.Tensor, reference: torch.Tensor) -> float:
    """Relative Frobenius distance."""
    return ((output.float() - reference).norm() / reference.norm()).item()


@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_trains_and_predicts_in_bf16_mixed(name, tiny_inr_root, nnzoo_home):
    _fit_and_predict(name, "mnist_inr", tiny_inr_root)


@pytest.mark.parametrize("name", EDITORS)
def test_every_editor_trains_and_predicts_in_bf16_mixed(name, tiny_inr_root, nnzoo_home):
    _fit_and_predict(name, "mnist_inr_dilate", tiny_inr_root)


def test_nnzoo_fit_with_bf16_mixed_and_probes(tiny_inr_root, tmp_path):
    """The command line of the issue (the default GNN has probes, whose index_put failed in bf16)."""
    assert main(tiny_fit_args(tiny_inr_root, tmp_path, "model.probes=8", "trainer.precision=bf16-mixed",
                              "trainer.max_epochs=1")) == 0
    (metrics,) = tmp_path.glob("*/version_*/metrics.json")
    values = json.loads(metrics.read_text())
    assert values["steps"] == 3 and 0.0 <= values["test/acc"] <= 1.0, values


def test_what_stays_float32_under_autocast_is_exactly_float32():
    """Evaluating networks on their own weights (probe activations, rendering edits) and the Fourier lift of raw
    weights ignore autocast: bitwise the float32 results."""
    spec = siren_spec()
    params = siren_init(4, spec, torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    probes, fourier = ProbeFeatures(8, 2, 16, spec.num_layers + 1), FourierFeatures(1, 32)
    editing = EditingTask({"name": "mlp", "hidden": 8, "layers": 1}, editing_info(spec, params).to_dict())
    raw = torch.randn(50, 1)
    expected = (probes.activations(spec, params), fourier(raw), editing.render((spec,), [params]))
    with bf16():
        got = (probes.activations(spec, params), fourier(raw), editing.render((spec,), [params]))
    for e, g in zip(expected, got):
        assert g.dtype == torch.float32 and torch.equal(g, e)


def test_pna_statistics_of_bf16_messages_are_computed_in_float32():
    """std = sqrt(E[m^2] - E[m]^2) cancels catastrophically in bfloat16 when messages share a large mean."""
    g = torch.Generator().manual_seed(0)
    messages = (3.0 + 0.3 * torch.randn(40, 8, generator=g)).bfloat16()
    degree = torch.tensor([10, 10, 20])
    expected = aggregate(messages.float(), degree, ("mean", "std"))
    got = aggregate(messages, degree, ("mean", "std"))
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected)
