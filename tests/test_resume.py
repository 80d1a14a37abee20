"""Faults during a run: a kill -9 inside a checkpoint write, a file-size limit, a full disk.

The previous checkpoint must survive every one of them, and a benchmark cell killed mid-run must resume
from it and end exactly where the uninterrupted cell ends (same seed, same data order, same history).
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from nnzoo.benchmark import load_suite, print_status, run_suite, suite_configs
from nnzoo.errors import NnzooError
from nnzoo.io import write_text

SMALL_GNN = ["model.hidden=8", "model.layers=2", "model.probes=0", "model.fourier_features=16"]

# A Python prelude for a child process: the FAULT_AT-th write of a temporary file of FAULT_FILE by nnzoo.io
# misbehaves (FAULT=kill: half written, then SIGKILL; FAULT=limit: a 4 KiB file-size limit, so the kernel fails
# the write with EFBIG).
_PRELUDE = textwrap.dedent("""
    import builtins, os, resource, signal, sys
    import nnzoo.io
    count = [0]
    class FaultyFile:
        def __init__(self, fh):
            self.fh = fh
        def __enter__(self):
            return self
        def __exit__(self, *exc):
            return self.fh.__exit__(*exc)
        def write(self, data):
            count[0] += 1
            if count[0] == int(os.environ["FAULT_AT"]):
                if os.environ["FAULT"] == "kill":
                    self.fh.write(bytes(data)[: len(data) // 2])
                    self.fh.flush()
                    os.kill(os.getpid(), signal.SIGKILL)
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit a write fails with EFBIG
                resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
            return self.fh.write(data)
    def faulty_open(file, mode="r", *args, **kwargs):
        fh = builtins.open(file, mode, *args, **kwargs)
        wanted = "." + os.environ["FAULT_FILE"] + "."
        return FaultyFile(fh) if "w" in mode and os.path.basename(str(file)).startswith(wanted) else fh
    nnzoo.io.open = faulty_open  # nnzoo.io's own writes only
""")


def _suite_file(tmp_path: Path, root: Path, epochs: int = 4) -> Path:
    path = tmp_path / "tinyconv.yaml"
    path.write_text("\n".join([
        "description: a tiny converged-style suite (early stopping, per-epoch validation)",
        "models: [gnn]",
        "datasets: {tiny: mnist_inr}",
        "seeds: [0]",
        f"overrides: [trainer.max_epochs={epochs}, trainer.enable_progress_bar=false, data.batch_size=16,",
        "            optim.warmup_steps=3, threads=1, callbacks.early_stopping_patience=10]",
        f"data_overrides: {{tiny: [data.root={root}]}}",
        f"model_overrides: {{gnn: [{', '.join(SMALL_GNN)}]}}",
    ]) + "\n")
    return path


def _child(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _PRELUDE + code], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=600)


def _cell(out: Path) -> dict:
    return json.loads((out / "cells" / "tiny-gnn-s0.json").read_text())


def test_a_cell_killed_inside_a_checkpoint_write_resumes_to_the_uninterrupted_result(
        tiny_inr_root, nnzoo_home, tmp_path):
    suite_path = _suite_file(tmp_path, tiny_inr_root)
    suite = load_suite(str(suite_path))
    run_suite(suite, tmp_path / "whole")
    whole = _cell(tmp_path / "whole")

    # the same suite in a child process, killed -9 halfway through writing last.ckpt after epoch 2 (of 4)
    broken = tmp_path / "broken"
    code = f"from nnzoo.benchmark import load_suite, run_suite; run_suite(load_suite({str(suite_path)!r}), " \
           f"__import__('pathlib').Path({str(broken)!r}))"
    killed = _child(code, {"NNZOO_HOME": str(nnzoo_home), "FAULT": "kill", "FAULT_FILE": "last.ckpt",
                           "FAULT_AT": "3"})
    assert killed.returncode == -9, killed.stderr[-2000:]
    checkpoints = broken / "runs" / "tiny-gnn-s0" / "version_0" / "checkpoints"
    assert list(checkpoints.glob(".last.ckpt.*.tmp")), "the kill came inside the write"
    last = torch.load(checkpoints / "last.ckpt", weights_only=True)  # the previous one, whole
    assert last["epoch"] == 1 and len(last["callbacks"]["ValidationHistory"]["rows"]) == 2
    assert not (broken / "cells" / "tiny-gnn-s0.json").exists()

    # the status line sees the interrupted cell; the next run resumes it and cleans the orphan
    configs = suite_configs(suite, broken)
    from nnzoo.benchmark import cell_states
    assert [s.state for s in cell_states(suite, broken, configs)] == ["partial"]
    print_status(suite, broken, configs)
    run_suite(suite, broken)
    resumed = _cell(broken)
    assert not list(checkpoints.glob(".last.ckpt.*.tmp"))
    assert not (broken / "runs" / "tiny-gnn-s0" / "version_1").exists(), "resumed in place, no new version"
    assert len(resumed["history"]) == 4
    for key in ("history", "test/acc", "test/loss", "best_val/acc", "epochs", "steps"):
        assert resumed[key] == whole[key], key
    assert resumed["train_seconds"] > 0
    weights = [torch.load(out / "runs" / "tiny-gnn-s0" / "version_0" / "checkpoints" / "last.ckpt",
                          weights_only=True)["state_dict"] for out in (tmp_path / "whole", broken)]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0]), "the same final weights, bit for bit"


def test_a_file_size_limit_during_a_checkpoint_write_keeps_the_previous_one(tiny_inr_root, nnzoo_home, tmp_path,
                                                                              capsys):
    from tests.conftest import tiny_fit_args
    runs = tmp_path / "runs"
    args = tiny_fit_args(tiny_inr_root, runs, "trainer.max_epochs=3")
    code = f"from nnzoo.cli import main; sys.exit(main({args!r}))"
    out = _child(code, {"NNZOO_HOME": str(nnzoo_home), "FAULT": "limit", "FAULT_FILE": "last.ckpt",
                        "FAULT_AT": "2"})
    assert out.returncode == 2, out.stderr[-2000:]
    error = [line for line in out.stderr.splitlines() if line.startswith("nnzoo: error:")]
    assert len(error) == 1 and "last.ckpt" in error[0] and "size limit" in error[0], out.stderr[-2000:]
    checkpoints = runs / "mnist_inr-gnn" / "version_0" / "checkpoints"
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["epoch"] == 0
    assert not list(checkpoints.glob(".*.tmp")), "no temporary file left behind"
    # the run resumes from it
    from nnzoo.cli import main
    capsys.readouterr()
    assert main([*args, "resume=true"]) == 0
    assert "from last.ckpt: step 3, 1 validation points kept" in capsys.readouterr().err
    metrics = json.loads((runs / "mnist_inr-gnn" / "version_0" / "metrics.json").read_text())
    assert metrics["epochs"] == 3 and len(metrics["history"]) == 3


def test_a_full_disk_keeps_the_previous_file_and_names_it(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    write_text(target, "old, complete\n")

    def full(self, data, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(NnzooError, match=r"cannot write .*metrics\.json: no space left on the device"):
        write_text(target, "new\n")
    monkeypatch.undo()
    assert target.read_text() == "old, complete\n"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_the_run_version_variable_cannot_reopen_a_finished_run(tiny_inr_root, nnzoo_home, tmp_path, monkeypatch):
    from nnzoo.cli import main
    from tests.conftest import tiny_fit_args
    runs = tmp_path / "runs"
    args = tiny_fit_args(tiny_inr_root, runs, "trainer.max_epochs=1", "name=rv")
    assert main(args) == 0
    finished = runs / "rv" / "version_0"
    before = {p: p.read_bytes() for p in finished.rglob("*") if p.is_file()}
    monkeypatch.setenv("NNZOO_RUN_VERSION", "0")
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert main(args) == 2
    assert {p: p.read_bytes() for p in finished.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in (runs / "rv").iterdir()) == ["version_0"]


def test_the_time_left_comes_from_measured_cells():
    from nnzoo.benchmark import CellState, time_left
    cells = [CellState(("d", "gnn", 0), "done", 100.0, 10, 50), CellState(("d", "gnn", 1), "done", 300.0, 30, 50),
             CellState(("d", "gnn", 2), "partial", 50.0, 5, 50),  # mean 200 s, 50 s of it run
             CellState(("d", "mlp", 0), "running", 20.0, 2, 50),  # no finished mlp: 10 s/epoch x 48 left
             CellState(("d", "nfn", 0), "todo", 0.0, 0, 50)]  # nothing measured
    assert time_left(cells) == (150.0 + 480.0, True, 1)


def test_a_running_marker_counts_only_while_its_process_lives(tmp_path):
    from nnzoo.benchmark import _marker_alive
    cell = tmp_path / "d-gnn-s0.json"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / ".d-gnn-s0.running").write_text(f"{sleeper.pid}\n")
        assert _marker_alive(cell)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert not _marker_alive(cell)
    (tmp_path / ".d-gnn-s0.running").write_text("garbage")
    assert not _marker_alive(cell)


def test_the_csv_log_is_never_deleted_and_a_resume_keeps_its_earlier_rows(tmp_path):
    import csv
    from nnzoo.train import ResumableCSVLogger
    folder = tmp_path / "run" / "version_0"
    folder.mkdir(parents=True)
    (folder / "metrics.csv").write_text("step,val/acc\n" + "".join(f"{s},0.{s}\n" for s in range(6)))
    logger = ResumableCSVLogger(save_dir=str(tmp_path), name="run", version=0, resume_step=3)
    writer = logger.experiment
    assert len((folder / "metrics.csv").read_text().splitlines()) == 7, "not deleted before the next save"
    writer.log_metrics({"val/acc": 0.9}, step=3)
    writer.save()
    with (folder / "metrics.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["step"], r["val/acc"]) for r in rows] == [("0", "0.0"), ("1", "0.1"), ("2", "0.2"), ("3", "0.9")]
    assert [p.name for p in folder.iterdir()] == ["metrics.csv"]


def test_suite_runs_live_in_the_cache_and_a_fresh_checkout_finds_them(tmp_path, monkeypatch):
    from nnzoo.benchmark import link_runs
    monkeypatch.setenv("NNZOO_HOME", str(tmp_path / "home"))
    out = tmp_path / "checkout" / "benchmarks" / "results" / "suite"
    out.mkdir(parents=True)
    runs = link_runs(out)
    (runs / "cell" / "version_0").mkdir(parents=True)
    assert runs.is_symlink() and (tmp_path / "home" / "benchmark-runs").is_dir()
    runs.unlink()  # a fresh checkout: the link is gone, the cache is not
    assert (link_runs(out) / "cell" / "version_0").is_dir()
    other = tmp_path / "elsewhere"
    (other / "runs").mkdir(parents=True)
    assert not link_runs(other).is_symlink(), "an existing folder is kept"
