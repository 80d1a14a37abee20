"""The wheel ships every sub-package, the YAML configs, the benchmark suites and the checkpoints."""

import json
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_FOLDERS = {"nnzoo.zoo_configs", "nnzoo.benchmarks", "nnzoo.checkpoints"}


def test_every_subpackage_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "nnzoo").rglob("__init__.py")}
    assert found | SHIPPED_FOLDERS == listed


def test_non_editable_install_finds_configs_suites_and_checkpoints(tmp_path):
    """A plain wheel (no repository next to it) still composes configs, loads suites and checkpoints."""
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "-w", str(wheels), str(ROOT)], check=True, cwd=tmp_path)
    (wheel,) = wheels.glob("nnzoo-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "nnzoo/zoo_configs/model/gnn.yaml" in names
    assert "nnzoo/benchmarks/quick.yaml" in names
    assert "nnzoo/checkpoints/manifest.json" in names and "nnzoo/checkpoints/gnn-mnist_inr.pt" in names
    for zoo in ("cifar10", "svhn", "mnist", "fashion_mnist"):  # NFN's public split files, with their notice
        assert f"nnzoo/data/formats/nfn_splits/{zoo}_split.csv.gz" in names
    assert "nnzoo/data/formats/nfn_splits/NOTICE" in names
    assert not any("/results/" in n for n in names)  # measured results stay in the repository

    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = (
        "import nnzoo, json\n"
        "from nnzoo.config import compose, config_root\n"
        "from nnzoo.benchmark import load_suite, suites_folder\n"
        "from nnzoo.pretrained import checkpoints_folder, load_pretrained\n"
        "compose('gnn', 'mnist_inr')\n"
        "load_suite('quick')\n"
        "module = load_pretrained('gnn-mnist_inr')\n"
        "print(json.dumps([str(config_root()), str(suites_folder()), str(checkpoints_folder()),\n"
        "                  nnzoo.__file__, sum(p.numel() for p in module.parameters())]))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("NNZOO_")} | {"PYTHONPATH": str(site)}
    result = subprocess.run([sys.executable, "-c", probe], env=env, cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    configs, suites, checkpoints, package, params = json.loads(result.stdout.strip().splitlines()[-1])
    assert package.startswith(str(site))
    for folder in (configs, suites, checkpoints):
        assert folder.startswith(str(site / "nnzoo")), folder
    assert params > 50_000
