"""Bookkeeping callbacks of every nnzoo run, each carrying its state through ``last.ckpt``.

A run killed at any point resumes (``resume=true``) from its last checkpoint and ends where the
uninterrupted run would: the validation history, the networks seen, the elapsed training time and the
random number generators continue from the checkpoint instead of starting over.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

from nnzoo.errors import NnzooError


class TrainThroughput(L.Callback):
    """Networks per second over training steps only (forward, backward, optimiser; no validation)."""

    def __init__(self) -> None:
        self.samples, self.seconds, self._start = 0, 0.0, 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.seconds += time.perf_counter() - self._start
        self.samples += len(batch)

    @property
    def per_second(self) -> float | None:
        return self.samples / self.seconds if self.seconds > 0 else None

    def state_dict(self) -> dict[str, Any]:
        return {"samples": self.samples, "seconds": self.seconds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.samples, self.seconds = int(state["samples"]), float(state["seconds"])


class ValidationHistory(L.Callback):
    """The monitored validation metric after every validation run, against the training networks seen so
    far (counted by ``throughput``): the learning curve a benchmark plots (``metrics.json`` key ``history``),
    kept without a logger.  Lightning runs checkpoint callbacks last, so ``last.ckpt`` holds every row."""

    def __init__(self, monitor: str, throughput: TrainThroughput) -> None:
        self.monitor, self.throughput, self.rows = monitor, throughput, []

    def on_validation_end(self, trainer, pl_module) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if value is not None and not trainer.sanity_checking:
            self.rows.append({"step": trainer.global_step, "epoch": trainer.current_epoch,
                              "networks": self.throughput.samples, self.monitor: as_float(value)})

    def state_dict(self) -> dict[str, Any]:
        return {"rows": list(self.rows)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rows = list(state["rows"])


class FitClock(L.Callback):
    """Wall time spent in ``trainer.fit`` (training and validation), summed over the interruptions of a run."""

    def __init__(self) -> None:
        self.before, self._start = 0.0, None

    def on_fit_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return self.before + (time.perf_counter() - self._start if self._start is not None else 0.0)

    def state_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.before = float(state["seconds"])


class RngState(L.Callback):
    """The random generators (torch, CUDA, Python) saved with every checkpoint and restored when training
    resumes, so the resumed run draws the same shuffles, dropout masks and augmentations as an
    uninterrupted one.  Lightning restores callbacks after the model is rebuilt (which draws from the seeded
    generators) and before it first iterates the training loader (whose shuffle draws the epoch's order), so
    the state is set right there, in :meth:`load_state_dict`."""

    def state_dict(self) -> dict[str, Any]:
        version, internal, gauss = random.getstate()
        state: dict[str, Any] = {"torch": torch.get_rng_state(),
                                 "python": {"version": version, "state": list(internal), "gauss": gauss}}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["torch"])
        python = state["python"]
        random.setstate((python["version"], tuple(python["state"]), python["gauss"]))
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


class ParameterLine(L.Callback):
    """One line with the model's size at the start of training, instead of Lightning's summary table (whose
    FLOPs column reads 0 for every graph model: they are counted only for plain modules)."""

    def on_fit_start(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            from nnzoo.progress import console
            total = sum(p.numel() for p in pl_module.parameters())
            trainable = sum(p.numel() for p in pl_module.parameters() if p.requires_grad)
            console.print(f"{type(pl_module.model).__name__}: {total:,} parameters ({trainable:,} trainable)",
                          markup=False, highlight=False)


class PlainProgress(L.Callback):
    """Progress as one plain line per validation, for output that is not a terminal (logs, pipes): Rich's
    live bar there becomes a wrapped block per epoch with a meaningless rate."""

    def __init__(self, monitor: str) -> None:
        self.monitor, self._start = monitor, time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        from nnzoo.progress import console
        metrics = trainer.callback_metrics
        shown = [f"{k} {as_float(metrics[k]):.4g}" for k in ("val/loss", self.monitor) if k in metrics]
        cap = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
        console.print(f"epoch {trainer.current_epoch + 1}{cap}  step {trainer.global_step}  " + "  ".join(dict.fromkeys(shown))
                      + f"  ({time.perf_counter() - self._start:.0f} s)", markup=False, highlight=False, soft_wrap=True)


class StopOnNonFiniteLoss(L.Callback):
    """End the run with one line when the training loss becomes NaN or infinite, instead of training on
    and reporting NaN metrics with exit 0; the run folder keeps its last good checkpoint."""

    def __init__(self, run_dir: Path, lr: float) -> None:
        self.run_dir, self.lr = run_dir, lr

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor) and not bool(torch.isfinite(loss).all()):
            raise NnzooError(f"training loss became {float(loss):g} at epoch {trainer.current_epoch}, step "
                             f"{trainer.global_step} of {self.run_dir}; lower optim.lr (now {self.lr:g}) or check "
                             "the data and statistics files for NaN/Inf")


def as_float(value: Any) -> float | None:
    """A metric (tensor or number) as a Python float, ``None`` kept: what metrics files and histories hold."""
    if value is None:
        return None
    return float(value.item() if isinstance(value, torch.Tensor) else value)
