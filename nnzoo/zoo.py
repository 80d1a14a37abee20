"""Pretrained metanetworks: a registry of small checkpoints with their metrics, data and recipe.

Like torchvision's weights metadata, every entry of ``checkpoints/manifest.json``
says what the checkpoint is (model, dataset, task), how well it did (test
metrics of the run that produced it), how it was made (the full run config,
including the dataset recipe) and how to verify it (sha256, nnzoo version).

Checkpoint files hold only tensors and plain containers (the model's
``state_dict`` and the hyperparameters needed to rebuild it), are loaded with
``torch.load(weights_only=True)`` after the sha256 check, and never unpickle
code.  ``nnzoo export`` produces them from a finished run folder, so every
number in the manifest comes from a command, not from a hand edit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from nnzoo import __version__
from nnzoo.errors import NnzooError, unknown_name
from nnzoo.io import load_tensors, read_json, save_tensors, sha256_file, shipped_folder, write_json

MANIFEST = "manifest.json"


def checkpoints_folder() -> Path:
    """``$NNZOO_CHECKPOINTS``, the repository's ``checkpoints/``, or the copy installed with the package."""
    return shipped_folder("checkpoints", "NNZOO_CHECKPOINTS")


@dataclass
class PretrainedEntry:
    name: str
    file: str
    model: str
    data: str
    task: str
    metrics: dict[str, float]
    num_parameters: int
    sha256: str
    nnzoo_version: str
    config: dict[str, Any]

    @property
    def headline(self) -> str:
        key = "test/acc" if self.task == "classification" else "test/kendall_tau"
        return f"{key} {self.metrics.get(key, float('nan')):.3f}"


def manifest(folder: Path | None = None) -> dict[str, PretrainedEntry]:
    folder = folder or checkpoints_folder()
    path = folder / MANIFEST
    if not path.is_file():
        return {}
    raw = read_json(path, "checkpoint manifest")
    return {e["name"]: PretrainedEntry(**e) for e in raw.get("checkpoints", [])}


def list_pretrained(folder: Path | None = None) -> list[PretrainedEntry]:
    return list(manifest(folder).values())


def entry(name: str, folder: Path | None = None) -> PretrainedEntry:
    entries = manifest(folder)
    if name not in entries:
        raise unknown_name("pretrained checkpoint", name, list(entries))
    return entries[name]


def load_pretrained(name: str, folder: Path | None = None):
    """The ready LightningModule of pretrained checkpoint ``name`` (sha256 verified, no pickled code)."""
    folder = folder or checkpoints_folder()
    e = entry(name, folder)
    path = folder / e.file
    if not path.is_file():
        raise NnzooError(f"checkpoint file {path} listed in the manifest is missing; restore it from git")
    digest = sha256_file(path)
    if digest != e.sha256:
        raise NnzooError(f"checkpoint {path} fails its sha256 check (got {digest[:12]}..., manifest says "
                         f"{e.sha256[:12]}...); it was modified or corrupted, restore it from git")
    return load_checkpoint_file(path)


def load_checkpoint_file(path: Path):
    """Rebuild the task module from a slim checkpoint written by :func:`export_run`."""
    from nnzoo.tasks import task_class
    blob = load_tensors(path, "checkpoint")
    try:
        hp = blob["hyper_parameters"]
        module = task_class(hp["data_info"]["task"])(**hp)
        module.load_state_dict(blob["state_dict"])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise NnzooError(f"checkpoint {path} is not an nnzoo checkpoint or does not match its model "
                         f"({str(exc).splitlines()[0][:160]})") from None
    return module.eval()


def export_run(run_dir: Path, name: str, folder: Path | None = None) -> PretrainedEntry:
    """Slim the best checkpoint of a finished run into ``checkpoints/<name>.pt`` and record it.

    The metrics are the run's own test metrics (``metrics.json``), i.e. those of
    the exported weights on the test split of the run's dataset.
    """
    from nnzoo.train import METRICS_FILE, load_task
    folder = folder or checkpoints_folder()
    metrics = read_json(run_dir / METRICS_FILE, "run metrics")
    best = Path(metrics.get("best_checkpoint") or run_dir / "checkpoints" / "best.ckpt")
    task = load_task(best)
    config = OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml"))
    file = f"{name}.pt"
    save_tensors(folder / file, {"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams),
                                 "nnzoo_version": __version__})
    new = PretrainedEntry(
        name=name, file=file, model=metrics["model"], data=metrics["data"], task=task.info.task,
        metrics={k: v for k, v in metrics.items() if k.startswith("test/") or k.startswith("best_val")},
        num_parameters=metrics["num_parameters"], sha256=sha256_file(folder / file), nnzoo_version=__version__,
        config=config)
    entries = manifest(folder)
    entries[name] = new
    write_json(folder / MANIFEST, {"checkpoints": [vars(e) for e in entries.values()]})
    return new


def predict_file(module, path: Path, activation: str | None = None) -> dict[str, Any]:
    """Apply a pretrained module to one network stored as a PyTorch state dict (``.pth``).

    A state dict does not say which activation its network uses; when the
    checkpoint's dataset mixes activations on one layout (the Small CNN Zoo's
    ReLU and tanh CNNs), ``activation`` picks one.
    """
    from nnzoo.data.weights import WeightBatch
    from nnzoo.nets.functional import state_dict_to_params
    info = module.info
    state = load_tensors(path, "network file")
    if not isinstance(state, dict):
        raise NnzooError(f"{path} holds a {type(state).__name__}, not a state dict")
    errors, matches = [], []
    for spec in info.specs:  # find the dataset architectures this network fits
        try:
            matches.append((spec, state_dict_to_params(state, spec, source=path)))
        except NnzooError as exc:
            errors.append(str(exc))
    if not matches:
        raise NnzooError(errors[0] if len(info.specs) == 1 else
                         f"{path} matches none of the {len(info.specs)} architectures of '{info.name}'")
    acts = {spec.layers[0].activation for spec, _ in matches}
    if activation is not None:
        matches = [(s, f) for s, f in matches if s.layers[0].activation == activation]
        if not matches:
            raise NnzooError(f"--activation {activation}: {path} fits '{info.name}' networks with activation "
                             f"{', '.join(sorted(acts))} only")
    elif len(acts) > 1:
        raise NnzooError(f"{path} fits '{info.name}' networks with activations {', '.join(sorted(acts))}; "
                         "say which with --activation")
    spec, flat = matches[0]
    batch = WeightBatch([spec], [flat[None]], torch.zeros(1, dtype=torch.long))
    with torch.no_grad():
        out = module(batch)[0]
    if info.task == "classification":
        probs = out.softmax(-1)
        names = info.class_names or [str(i) for i in range(len(probs))]
        return {"prediction": names[int(probs.argmax())], "probabilities": dict(zip(names, probs.tolist()))}
    return {"prediction": float(out.squeeze().sigmoid())}

