"""The documentation: the MkDocs site builds in strict mode, and the README's commands and example are real.

The tables the pages quote are checked where they live, next to the code that makes them
(tests/test_benchmark.py, test_parity.py, test_zoo.py, test_editing.py); the graph example of docs/usage.md
runs in tests/test_graphs.py.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
                          capture_output=True, text=True, cwd=config.parent, timeout=300)


def test_site_builds_in_strict_mode_with_the_api_reference(tmp_path):
    build = mkdocs_build(REPO / "mkdocs.yml", tmp_path / "site")
    assert build.returncode == 0, build.stderr
    api = (tmp_path / "site" / "api" / "graphs" / "index.html").read_text()
    assert "One graph holding every network of the batch." in api  # batch_to_graph's docstring, rendered
    assert (tmp_path / "site" / "benchmarks" / "results" / "repro" / "repro-mnist_inr-curves.png").is_file()
    assert not (tmp_path / "site" / "hooks.py").exists()


def test_strict_build_fails_on_a_broken_link(tmp_path):
    """The same config on a copy of the pages with one link broken: the build stops and names it."""
    shutil.copytree(REPO / "docs", tmp_path / "docs")
    page = tmp_path / "docs" / "tasks.md"
    page.write_text(page.read_text().replace("(own-networks.md)", "(own-network.md)", 1))
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    config["hooks"] = [str(REPO / "docs" / "hooks.py")]  # serves the repository's plots, as in the real build
    config["plugins"][1]["mkdocstrings"]["handlers"]["python"]["paths"] = [str(REPO)]
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(config))
    build = mkdocs_build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert build.returncode != 0
    assert "contains a link 'own-network.md', but the target is not found" in build.stderr


def _code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def test_readme_quick_start_is_the_two_commands_of_the_docs():
    readme, index = (REPO / "README.md").read_text(), (REPO / "docs" / "index.md").read_text()
    commands = ['python3 -m venv .venv && .venv/bin/pip install torch==2.13.0 -e ".[test]" && '
                ".venv/bin/nnzoo fit --model gnn --data mnist_inr",
                ".venv/bin/python -m pytest -q"]
    assert _code_blocks(readme, "bash")[0].splitlines() == commands
    assert _code_blocks(index, "bash")[0].splitlines() == commands
    assert _code_blocks(readme, "python") == _code_blocks(index, "python")[:1]  # one example, shown in both


def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    """The README's five lines, run as written on a real MNIST digit (a 3) saved as digit.png."""
    from nnzoo.data.images import mnist_images

    (code,) = _code_blocks((REPO / "README.md").read_text(), "python")
    assert len(code.strip().splitlines()) == 5
    digit = mnist_images()[0][1500]
    Image.fromarray((digit.numpy() * 255).round().astype(np.uint8)).save(tmp_path / "digit.png")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "'file': 'digit.pth'" in printed and "'prediction': '3'" in printed
