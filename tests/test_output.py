"""What a person sees when nnzoo's output is not a terminal (logs, pipes, CI): plain lines, whole names, no
foreign noise, summaries instead of raw lists."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.conftest import tiny_fit_args



def _run(args: list[str], env_home: Path) -> subprocess.CompletedProcess:
    import shutil
    import sys
    exe = shutil.which("nnzoo", path=str(Path(sys.executable).parent))
    env = {**os.environ, "NNZOO_HOME": str(env_home)}
    env.pop("COLUMNS", None)
    env.pop("NNZOO_RUN_VERSION", None)
    return subprocess.run([exe, *args], capture_output=True, text=True, env=env, timeout=600)


def test_a_piped_fit_prints_plain_epoch_lines_and_no_foreign_noise(tiny_inr_root, nnzoo_home, tmp_path):
    out = _run(tiny_fit_args(tiny_inr_root, tmp_path, "trainer.max_epochs=3", "trainer.enable_progress_bar=true"),
               nnzoo_home)
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout + out.stderr
    for noise in ("litlogger", "LeafSpec", "Total FLOPs", "it/s", "Epoch 0"):
        assert noise not in text, noise
    epochs = [line for line in out.stderr.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in epochs] == ["1/3", "2/3", "3/3"]
    assert all("val/acc" in line for line in epochs)
    assert "parameters (" in out.stderr
    metrics = json.loads(next(tmp_path.glob("*/version_0/metrics.json")).read_text())
    assert f"{len(metrics['history'])} validation points (in metrics.json)" in out.stdout
    assert "'val/acc'" not in out.stdout, "the history list itself stays in the file"
    assert str(metrics["run_dir"]) in out.stdout.replace("\n", ""), "paths printed whole"


def test_piped_listings_never_cut_a_name(nnzoo_home):
    from nnzoo.pretrained import list_pretrained
    out = _run(["list", "checkpoints"], nnzoo_home)
    assert out.returncode == 0, out.stderr
    names = [e.name for e in list_pretrained()]
    assert names
    rows = [line.split("│")[1].strip() for line in out.stdout.splitlines() if line.startswith("│")]
    assert set(names) <= set(rows), (names, rows)
    assert "…" not in out.stdout


def test_every_subcommand_help_explains_its_arguments_and_ends_with_an_example(capsys):
    import pytest
    from nnzoo.cli import main
    commands = [["fit"], ["config"], ["build"], ["pack"], ["test"], ["validate"], ["benchmark"], ["predict"],
                ["inr"], ["inr", "fit"], ["export"], ["list"]]
    for command in commands:
        with pytest.raises(SystemExit):
            main([*command, "--help"])
        text = capsys.readouterr().out
        tail = [line for line in text.splitlines() if line.strip()][-3:]
        assert any(line.strip().startswith("nnzoo ") for line in tail), (command, tail)
        assert "examples:" in text, command
    for command, words in ((["build"], ["data.build.size", "cache"]), (["list"], ["checkpoints", "suites"])):
        with pytest.raises(SystemExit):
            main([*command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert all(w in text for w in words), (command, words)
