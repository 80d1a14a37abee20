"""The benchmark runner: a grid of real fits, resumable, with Markdown/CSV/JSON tables and a plot."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from nnzoo import benchmark
from nnzoo.benchmark import load_suite, run_suite
from nnzoo.cli import main
from nnzoo.errors import NnzooError

REPO = Path(__file__).resolve().parent.parent
SMALL_GNN = ["model.hidden=8", "model.layers=2", "model.probes=0", "model.fourier_features=16"]


def _suite(tmp_path, root, **extra) -> str:
    path = tmp_path / "tiny.yaml"
    lines = [
        "description: tiny suite for tests",
        "models: [gnn, mlp]",
        "datasets: {tiny: mnist_inr}",
        "seeds: [0, 1]",
        "overrides: [trainer.max_epochs=1, trainer.enable_progress_bar=false, data.batch_size=16,",
        "            optim.warmup_steps=2]",
        f"data_overrides: {{tiny: [data.root={root}]}}",
        f"model_overrides: {{gnn: [{', '.join(SMALL_GNN)}]}}",
        'published: {tiny: {mlp: "17.55 (DWS)"}}',
        *extra.get("lines", []),
    ]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_suite_runs_resumes_and_writes_tables(tiny_inr_root, nnzoo_home, tmp_path, monkeypatch):
    out = tmp_path / "out"
    suite = load_suite(_suite(tmp_path, tiny_inr_root))
    written = run_suite(suite, out)
    md = written["tiny"].read_text()
    assert "| gnn |" in md and "| mlp |" in md and "17.55 (DWS)" in md
    rows = json.loads((out / "tiny-tiny.json").read_text())
    assert [r["model"] for r in rows] == ["gnn", "mlp"]
    assert all(r["seeds"] == 2 and r["metric"] == "test/acc" and 0 <= r["mean"] <= 1 for r in rows)
    assert rows[0]["params"] != rows[1]["params"]
    with open(out / "tiny-tiny.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 2
    assert (out / "tiny-tiny.png").read_bytes()[:4] == b"\x89PNG"
    history = json.loads((out / "cells" / "tiny-gnn-s0.json").read_text())["history"]
    assert [h["step"] for h in history] == [history[0]["step"]] and history[0]["networks"] > 0  # one epoch, one check
    assert 0 <= history[0]["val/acc"] <= 1
    assert (out / "tiny-tiny-curves.png").read_bytes()[:4] == b"\x89PNG"

    # a second run finds every cell finished and trains nothing
    def no_training(cfg):
        raise AssertionError("finished cells must not be rerun")
    monkeypatch.setattr("nnzoo.train.fit", no_training)
    run_suite(suite, out)
    # a cell file lost after its run finished (killed in between) is recorded again from the run, untrained
    kept = json.loads((out / "cells" / "tiny-mlp-s1.json").read_text())
    (out / "cells" / "tiny-mlp-s1.json").unlink()
    run_suite(suite, out)
    again = json.loads((out / "cells" / "tiny-mlp-s1.json").read_text())
    assert again["test/acc"] == kept["test/acc"] and again["history"] == kept["history"]
    # removing one cell's result and its run reruns exactly that cell
    (out / "cells" / "tiny-mlp-s1.json").unlink()
    import shutil
    shutil.rmtree(out / "runs" / "tiny-mlp-s1")
    monkeypatch.undo()
    calls = []
    real_fit = __import__("nnzoo.train", fromlist=["fit"]).fit
    monkeypatch.setattr("nnzoo.train.fit", lambda cfg: calls.append(cfg.name) or real_fit(cfg))
    run_suite(suite, out)
    assert calls == ["tiny-mlp-s1"]
    assert "Mixed configs" not in written["tiny"].read_text()
    # a rerun of one model under another budget: the table names the cells that now differ from the rest
    md = run_suite(suite, out, ["trainer.max_epochs=2"], only_models=["mlp"])["tiny"].read_text()
    assert "Mixed configs: 2 cells ran with another config" in md
    assert "gnn seed 0 (config changed (trainer.max_epochs 1 -> 2))" in md and "mlp seed" not in md


def test_missing_environment_variable_fails_before_training(tmp_path, monkeypatch):
    monkeypatch.delenv("NNZOO_NOT_SET", raising=False)
    path = tmp_path / "env.yaml"
    path.write_text("models: [mlp]\ndatasets: [mnist_inr]\n"
                    "data_overrides: {mnist_inr: ['data.root=${oc.env:NNZOO_NOT_SET}']}\n")
    with pytest.raises(NnzooError, match="NNZOO_NOT_SET"):
        run_suite(load_suite(str(path)), tmp_path / "out")


SHIPPED_SUITES = ("quick", "paper", "repro", "repro_full", "datasize")


def test_shipped_suites_parse_and_compose(monkeypatch):
    every_model = {"gnn", "transformer", "dwsnet", "mlp", "statnn", "nfn_np", "nfn_hnp"}
    for name in SHIPPED_SUITES:
        assert load_suite(name).cells()
    assert set(load_suite("quick").models) == every_model - {"nfn_np", "nfn_hnp"}
    assert set(load_suite("paper").models) == set(load_suite("repro").models) == every_model
    assert load_suite("paper").data_config("svhn_gs") == "cnn_zoo"
    full = load_suite("repro_full")  # extends repro: its models and published numbers, its own budget
    assert full.models == load_suite("repro").models and full.published == load_suite("repro").published
    assert "data.build.views=10" in full.overrides and "trainer.max_epochs=1" not in full.overrides
    from nnzoo.config import compose
    for name in SHIPPED_SUITES:  # every cell names existing model/data configs and valid overrides
        suite = load_suite(name)
        for data, model, seed in suite.cells():
            compose(model, suite.data_config(data), suite.trainer, benchmark.cell_overrides(
                suite, data, model, seed, REPO / "unused"))


def test_suite_extends_must_name_a_suite_without_cycles(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b\nmodels: [mlp]\n")
    (tmp_path / "b.yaml").write_text("extends: a\ndatasets: [mnist_inr]\n")
    with pytest.raises(NnzooError, match="without a cycle"):
        load_suite(str(tmp_path / "a.yaml"))
    (tmp_path / "c.yaml").write_text("extends: ../etc/passwd\nmodels: [mlp]\n")
    with pytest.raises(NnzooError, match="must name another suite"):
        load_suite(str(tmp_path / "c.yaml"))


def test_unknown_suite_is_one_line(capsys):
    assert main(["benchmark", "no_such_suite"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "quick" in err[0]


def test_table_marks_published_values():
    rows = [{"model": "gnn", "metric": "test/acc", "mean": 0.5, "std": 0.01, "seeds": 2, "params": 10,
             "train_seconds": 1.0, "networks_per_s": 2.0, "epochs": 1, "num_train": 3, "published": "91.4 (ST1)", "note": ""}]
    assert "published" in benchmark.markdown_table(rows).splitlines()[0]


def test_incompatible_cells_are_reported_not_fatal(tmp_path, monkeypatch):
    from nnzoo.errors import IncompatibleError

    def refuse(cfg):
        raise IncompatibleError(f"model '{cfg.model.name}' cannot read convolutional networks")
    monkeypatch.setattr("nnzoo.train.fit", refuse)
    path = tmp_path / "s.yaml"
    path.write_text("models: [dwsnet]\ndatasets: [mnist_inr]\n")
    md = run_suite(load_suite(str(path)), tmp_path / "out")["mnist_inr"].read_text()
    assert "| dwsnet | n/a: model 'dwsnet' cannot read convolutional networks |" in md


def test_learning_curves_and_the_size_plot_come_from_the_cells(tmp_path, monkeypatch):
    """A suite of one dataset at several sizes: validation curves averaged over seeds at the same points,
    and a test-metric-vs-training-size plot from the tables."""
    from nnzoo.train import RunResult
    sizes = {"small": 100, "large": 400}

    def fake_fit(cfg):
        label = cfg.name.split("-")[0]
        acc = 0.2 + 0.1 * cfg.seed + (0.3 if label == "large" else 0.0)
        return RunResult(tmp_path, {
            "model": "mlp", "data": label, "seed": cfg.seed, "num_parameters": 5, "train_seconds": 1.0,
            "train_networks_per_s": 9.0, "epochs": 2, "dataset": {"num_train": sizes[label]}, "test/acc": acc,
            "history": [{"step": 1, "networks": 50, "val/acc": acc / 2}, {"step": 2, "networks": 100, "val/acc": acc}]})
    monkeypatch.setattr("nnzoo.train.fit", fake_fit)
    path = tmp_path / "sizes.yaml"
    path.write_text("models: [mlp]\ndatasets: {small: mnist_inr, large: mnist_inr}\nseeds: [0, 1]\n"
                    "data_overrides: {small: [data.build.size=100], large: [data.build.size=400]}\n")
    suite = load_suite(str(path))
    out = tmp_path / "out"
    run_suite(suite, out)
    curves = benchmark.learning_curves(suite, out, "large")
    assert [x for x, _, _ in curves["mlp"]] == [50.0, 100.0]
    assert curves["mlp"][1][1] == pytest.approx(0.55) and curves["mlp"][1][2] == pytest.approx(0.0707, abs=1e-4)
    for name in ("sizes-small-curves.png", "sizes-large-curves.png", "sizes-sizes.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG", name
    rows = json.loads((out / "sizes-large.json").read_text())
    assert rows[0]["num_train"] == 400 and rows[0]["mean"] == pytest.approx(0.55)


def test_workers_on_one_folder_share_the_cells(tmp_path, monkeypatch):
    """A cell whose lock another worker holds is left to it; a cell another worker finished after this one
    listed the cells is not run again; the others run here."""
    from filelock import FileLock

    from nnzoo.train import RunResult
    ran = []

    def metrics(seed, acc):
        return {"model": "mlp", "data": "mnist_inr", "seed": seed, "num_parameters": 5, "train_seconds": 1.0,
                "epochs": 1, "dataset": {"num_train": 3}, "test/acc": acc}

    def fake_fit(cfg):
        ran.append(cfg.name)
        if cfg.name == "mnist_inr-mlp-s1":  # meanwhile, the other worker finishes seed 2
            (cells / "mnist_inr-mlp-s2.json").write_text(json.dumps(metrics(2, 0.7)))
        return RunResult(tmp_path, metrics(cfg.seed, 0.5))
    monkeypatch.setattr("nnzoo.train.fit", fake_fit)
    path = tmp_path / "s.yaml"
    path.write_text("models: [mlp]\ndatasets: [mnist_inr]\nseeds: [0, 1, 2]\n")
    out = tmp_path / "out"
    cells = out / "cells"
    cells.mkdir(parents=True)
    with FileLock(cells / ".mnist_inr-mlp-s0.json.lock"):  # held by "another worker"
        run_suite(load_suite(str(path)), out)
    assert ran == ["mnist_inr-mlp-s1"]
    assert not (cells / "mnist_inr-mlp-s0.json").exists()
    assert json.loads((cells / "mnist_inr-mlp-s2.json").read_text())["test/acc"] == 0.7


def test_models_option_runs_only_those_cells(tmp_path, monkeypatch, capsys):
    from nnzoo.train import RunResult
    ran = []

    def fake_fit(cfg):
        ran.append(cfg.model.name)
        return RunResult(tmp_path, {"model": cfg.model.name, "data": "mnist_inr", "seed": 0, "num_parameters": 5,
                                    "train_seconds": 1.0, "epochs": 1, "dataset": {"num_train": 3}, "test/acc": 0.5})
    monkeypatch.setattr("nnzoo.train.fit", fake_fit)
    path = tmp_path / "s.yaml"
    path.write_text("models: [gnn, mlp, statnn]\ndatasets: [mnist_inr]\n")
    assert main(["benchmark", str(path), "--out", str(tmp_path / "out"), "--models", "mlp", "statnn"]) == 0
    assert ran == ["mlp", "statnn"]
    assert main(["benchmark", str(path), "--out", str(tmp_path / "out"), "--models", "nfn"]) == 2
    assert "--models nfn: not a model of suite 's'" in capsys.readouterr().err


def test_data_model_overrides_reach_only_their_cell(tmp_path):
    """A (data, model) override, e.g. a warm-up shortened for one recipe at a short budget, applies to that
    cell alone and after the model and data overrides."""
    path = tmp_path / "s.yaml"
    path.write_text("models: [gnn, mlp]\ndatasets: [mnist_inr, cnn_zoo]\n"
                    "model_overrides: {gnn: [optim.warmup_steps=7]}\n"
                    "data_model_overrides: {mnist_inr: {gnn: [optim.warmup_steps=25]}}\n")
    suite = load_suite(str(path))
    warmup = {(d, m): benchmark._cell_config(suite, (d, m, 0), tmp_path, ()).optim.warmup_steps
              for d, m, _ in suite.cells()}
    assert warmup[("mnist_inr", "gnn")] == 25 and warmup[("cnn_zoo", "gnn")] == 7
    assert warmup[("mnist_inr", "mlp")] == 0 and warmup[("cnn_zoo", "mlp")] == 0  # the recipes, untouched


@pytest.mark.parametrize("name, page", [("quick", "results.md"), ("repro", "results.md"),
                                        ("datasize", "results.md"), ("converged", "results.md"),
                                        ("arch_zoos", "graphs.md")])
def test_docs_quote_the_suite_tables(name, page):
    """The comparison tables of the docs are the files `nnzoo benchmark <name>` wrote, unedited, and the
    plots they show are the ones the suite wrote."""
    page = (REPO / "docs" / page).read_text()
    for data in load_suite(name).datasets:
        lines = (REPO / "benchmarks" / "results" / name / f"{name}-{data}.md").read_text().splitlines()
        # from the table's own caveats (a partial table, mixed configs) on: a quote never drops them
        first = next(i for i, line in enumerate(lines) if line.startswith(("Partial table", "Mixed configs", "| model")))
        table = "\n".join(lines[first:])
        assert table.strip() in page, data
        for script in ("foreign_inrs", "unseen_architectures"):  # benchmarks/<script>.py --suite
            scored = REPO / "benchmarks" / "results" / name / f"{script}-{data}.md"
            if scored.is_file():
                assert scored.read_text().strip() in page, scored.name
    for image in re.findall(rf"\(\.\./benchmarks/results/{name}/([^)]+\.png)\)", page):
        assert (REPO / "benchmarks" / "results" / name / image).is_file(), image


def test_changed_config_reruns_the_stale_cell(tiny_inr_root, nnzoo_home, tmp_path, monkeypatch, capsys):
    """Cells are keyed by their composed config: a changed override re-runs the cell (its old result kept
    until the new one is written), an unchanged one or a change of an excluded key runs nothing."""
    import nnzoo.train
    out = tmp_path / "out"
    path = tmp_path / "one.yaml"
    path.write_text(f"models: [mlp]\ndatasets: {{tiny: mnist_inr}}\nseeds: [0]\n"
                    "overrides: [trainer.max_epochs=1, trainer.enable_progress_bar=false, data.batch_size=16]\n"
                    f"data_overrides: {{tiny: [data.root={tiny_inr_root}]}}\n")
    suite = load_suite(str(path))
    cell_file = out / "cells" / "tiny-mlp-s0.json"
    calls = []
    real_fit = nnzoo.train.fit
    monkeypatch.setattr("nnzoo.train.fit", lambda cfg: calls.append(cfg.name) or real_fit(cfg))
    run_suite(suite, out)
    first = json.loads(cell_file.read_text())
    assert calls == ["tiny-mlp-s0"] and first["epochs"] == 1
    assert first["config_hash"] == benchmark.config_hash(first["config"])

    # a changed config: reported with the key that changed, and an interrupted rerun keeps the old result
    def interrupted(cfg):
        raise KeyboardInterrupt
    monkeypatch.setattr("nnzoo.train.fit", interrupted)
    capsys.readouterr()
    with pytest.raises(KeyboardInterrupt):
        run_suite(suite, out, ["trainer.max_epochs=2"])
    printed = " ".join(capsys.readouterr().err.split())
    assert "1 cells, 1 to run (1 stale)" in printed
    assert "tiny-mlp-s0: config changed (trainer.max_epochs 1 -> 2)" in printed
    assert json.loads(cell_file.read_text()) == first

    calls.clear()
    monkeypatch.setattr("nnzoo.train.fit", lambda cfg: calls.append(cfg.name) or real_fit(cfg))
    run_suite(suite, out, ["trainer.max_epochs=2"])
    second = json.loads(cell_file.read_text())
    assert calls == ["tiny-mlp-s0"]
    assert second["epochs"] == 2 and second["config"]["trainer"]["max_epochs"] == 2
    assert second["config_hash"] != first["config_hash"]
    assert json.loads((out / "one-tiny.json").read_text())[0]["epochs"] == 2  # the table shows the new run

    # the same config again, or one that differs only in keys that do not change the result: nothing to run
    calls.clear()
    capsys.readouterr()
    run_suite(suite, out, ["trainer.max_epochs=2", "threads=1", "data.num_workers=0", f"run_dir={tmp_path}/x"])
    assert calls == [] and "1 cells, 0 to run" in " ".join(capsys.readouterr().err.split())


def test_stale_reason_and_options_added_later():
    """Only configs that differ in a hashed key are stale; an option absent from an old cell's config counts
    only where it is set away from its default; a cell with no config cannot be checked."""
    config = {"seed": 0, "run_dir": "/a", "threads": None, "optim": {"lr": 0.001},
              "trainer": {"max_epochs": 3, "enable_progress_bar": False}, "model": {"name": "gnn", "scale": 1.0}}
    cell = {"config": {**config, "run_dir": "/b", "threads": 2, "trainer": {"max_epochs": 3}}}
    assert benchmark.stale_reason(cell, config) == ""
    assert benchmark.config_hash(config) == benchmark.config_hash(json.loads(json.dumps(config)))
    assert benchmark.stale_reason({"config": {**config, "optim": {"lr": 0.01}}}, config) == \
        "config changed (optim.lr 0.01 -> 0.001)"
    old = {**config, "model": {"name": "gnn"}}  # run before model.scale existed
    assert benchmark.stale_reason({"config": old}, config).endswith("(model.scale (absent) -> 1.0)")
    assert benchmark.stale_reason({"config": old}, config, defaults=config) == ""
    assert "model.scale (absent) -> 2.0" in benchmark.stale_reason(
        {"config": old}, {**config, "model": {"name": "gnn", "scale": 2.0}}, defaults=config)
    assert benchmark.stale_reason({}, config) == "no config recorded"
    assert benchmark.stale_reason({"config_hash": benchmark.config_hash(config)}, config) == ""


def test_docs_gpu_table_is_the_measured_one():
    """The H100 rows of docs/results.md are copies of benchmarks/results/speed-cuda.json (bash benchmarks/gpu_checks.sh)."""
    import re
    root = Path(__file__).resolve().parents[1]
    measured = json.loads((root / "benchmarks" / "results" / "speed-cuda.json").read_text())["by_batch_size"]
    rows = re.findall(r"^\| (\w+) \| (\d+) \| ([\d.]+) \| ([\d,]+) \| ([\d.]+) \| ([\d,]+) \|$",
                      (root / "docs" / "results.md").read_text(), flags=re.M)
    assert len(rows) == 3 * 5
    for name, batch, fp32_ms, fp32_rate, bf16_ms, bf16_rate in rows:
        models = measured[batch]["models"]
        assert float(fp32_ms) == round(models[name]["ms_per_step"], 1)
        assert int(fp32_rate.replace(",", "")) == round(models[name]["networks_per_s"])
        assert float(bf16_ms) == round(models[f"{name} (bf16)"]["ms_per_step"], 1)
        assert int(bf16_rate.replace(",", "")) == round(models[f"{name} (bf16)"]["networks_per_s"])


def test_docs_quote_the_measured_cpu_speed_tables():
    """`python benchmarks/speed.py` writes benchmarks/results/speed-cpu.md; docs/results.md quotes it unedited."""
    root = Path(__file__).resolve().parents[1]
    tables = (root / "benchmarks" / "results" / "speed-cpu.md").read_text().strip()
    assert tables in (root / "docs" / "results.md").read_text()
    measured = json.loads((root / "benchmarks" / "results" / "speed-cpu.json").read_text())
    assert f"| gnn | {measured['models']['gnn']['params']:,} |" in tables  # the tables come from the JSON


@pytest.mark.parametrize("stem", ["speed-cpu", "speed-cpu-1thread"])
def test_compiled_tables_and_auto_rule_come_from_the_measured_json(stem):
    """`speed.py --compiled` writes speed-compiled-cpu*.md from the JSON's 'compiled' rows; docs/results.md quotes
    each unedited, and compile=auto's pay-back figures (nnzoo.models.compiling.PAYS_BACK_AFTER) at that thread
    count are its own."""
    import importlib.util
    import math

    from nnzoo.models import MODELS
    from nnzoo.models.compiling import PAYS_BACK_AFTER
    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("speed_for_tables", root / "benchmarks" / "speed.py")
    speed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(speed)
    report = json.loads((root / "benchmarks" / "results" / f"{stem}.json").read_text())
    table = (root / "benchmarks" / "results" / f"{stem.replace('speed-', 'speed-compiled-')}.md").read_text()
    assert table == speed.compiled_markdown(report)
    assert table.strip() in (root / "docs" / "results.md").read_text()
    threads = report["compiled"]["threads"]
    expected = {}
    for name, row in report["compiled"]["rows"].items():
        after = row["pays_back_after_steps"]
        if after is not None:  # rounded up to a whole step; never pays: absent (auto stays eager)
            expected[(MODELS.entry(name).factory.__name__, "cpu", threads)] = math.ceil(after)
    assert {k: v for k, v in PAYS_BACK_AFTER.items() if k[1:] == ("cpu", threads)} == expected


def test_product_ceiling_replays_every_product_the_flop_counter_counts():
    """speed.py's ceiling replays the step's own products: exactly the FLOPs FlopCounterMode counts (a kind
    left out of the replay, e.g. NG-T's batched products or NFN's convolutions, would make it a fiction)."""
    import importlib.util
    import sys
    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location("speed", root / "benchmarks" / "speed.py")
        speed = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(speed)
    finally:
        sys.path.remove(str(root / "benchmarks"))
    for name in ("gnn", "transformer", "nfn_np"):  # linear products, batched products, convolutions
        gflop, calls = speed.recorded_step(name, 2)
        ceiling = speed.product_ceiling(calls, repeats=1)
        assert ceiling["products_gflop"] == pytest.approx(gflop, rel=1e-9)
        assert ceiling["products_ms"] > 0


def test_model_seeds_give_slow_models_fewer_seeds(tmp_path):
    path = tmp_path / "seeds.yaml"
    path.write_text("models: [gnn, transformer]\ndatasets: [mnist_inr]\nseeds: [0, 1, 2]\n"
                    "model_seeds: {transformer: [0]}\n")
    suite = load_suite(str(path))
    assert suite.cells() == [("mnist_inr", "gnn", 0), ("mnist_inr", "gnn", 1), ("mnist_inr", "gnn", 2),
                             ("mnist_inr", "transformer", 0)]
    path.write_text("models: [gnn]\ndatasets: [mnist_inr]\nmodel_seeds: {mlp: [0]}\n")
    with pytest.raises(NnzooError, match="model_seeds"):
        load_suite(str(path))


def test_the_best_point_is_the_first_best_validation_and_the_table_shows_it():
    history = [{"step": 10, "epoch": 0, "networks": 100, "val/acc": 0.2},
               {"step": 20, "epoch": 1, "networks": 200, "val/acc": 0.5},
               {"step": 30, "epoch": 2, "networks": 300, "val/acc": 0.5},
               {"step": 40, "epoch": 3, "networks": 400, "val/acc": 0.4}]
    assert benchmark.best_point(history)["epoch"] == 1
    losses = [{"step": r["step"], "epoch": r["epoch"], "networks": r["networks"], "val/mse": r["val/acc"]}
              for r in history]
    assert benchmark.best_point(losses)["epoch"] == 0  # lowest is best
    assert benchmark.best_point([{"step": 1, "networks": 5, "val/acc": 0.3}]) is None  # no epochs recorded
    cell = {"test/acc": 0.6, "num_parameters": 10, "train_seconds": 5.0, "epochs": 4,
            "dataset": {"num_train": 100}, "history": history}
    row = benchmark._cell_row("gnn", cell)
    assert (row["best_epoch"], row["best_networks"]) == (2, 200)
    table = benchmark.markdown_table([{"model": "gnn", "metric": "test/acc", "mean": 0.6, "std": 0.0, "seeds": 1,
                                       "params": 10, "train_seconds": 5.0, "networks_per_s": 20.0, "epochs": 4,
                                       "best_epoch": 2.0, "best_networks": 200.0, "published": "", "note": ""}])
    header, _, line = table.splitlines()
    assert "| best epoch | networks seen at best |" in header
    assert "| 0.600 ± — (1 seed) | 1 |" in line and "| 4 | 2 | 0.00 M |" in line


def test_learning_curves_keep_every_point_of_seeds_that_stopped_at_different_epochs(tmp_path):
    path = tmp_path / "two.yaml"
    path.write_text("models: [gnn]\ndatasets: [mnist_inr]\nseeds: [0, 1]\n")
    suite = load_suite(str(path))
    for seed, accs in ((0, [0.2, 0.4]), (1, [0.1, 0.3, 0.5])):  # seed 0 stopped early
        history = [{"step": 10 * (i + 1), "epoch": i, "networks": 100 * (i + 1), "val/acc": a} for i, a in enumerate(accs)]
        benchmark.write_json(tmp_path / "cells" / f"mnist_inr-gnn-s{seed}.json",
                             {"model": "gnn", "data": "mnist_inr", "seed": seed, "num_parameters": 1, "train_seconds": 1.0,
                              "epochs": len(accs), "dataset": {"num_train": 100}, "test/acc": 0.5, "history": history})
    curve = benchmark.learning_curves(suite, tmp_path, "mnist_inr")["gnn"]
    assert [c[0] for c in curve] == [100.0, 200.0, 300.0]
    assert [round(c[1], 6) for c in curve] == [0.15, 0.35, 0.5]
    assert curve[2][2] == 0.0 and curve[0][2] > 0  # the last point has one seed: no band


def test_regression_tables_show_r2_beside_kendall_tau(tmp_path):
    """R² mean ± std over seeds, from the cells, in its own column; classification tables have none."""
    path = tmp_path / "reg.yaml"
    path.write_text("models: [gnn, statnn]\ndatasets: [cnn_zoo]\nseeds: [0, 1]\n")
    suite = load_suite(str(path))
    for model, r2s in (("gnn", (0.5, 0.7)), ("statnn", (0.1, None))):  # statnn's second seed recorded no R²
        for seed, r2 in enumerate(r2s):
            cell = {"model": model, "data": "cnn_zoo", "seed": seed, "num_parameters": 1, "train_seconds": 1.0,
                    "epochs": 1, "dataset": {"num_train": 10}, "test/kendall_tau": 0.4 + 0.1 * seed}
            benchmark.write_json(tmp_path / "cells" / f"cnn_zoo-{model}-s{seed}.json",
                                 {**cell, **({"test/r2": r2} if r2 is not None else {})})
    rows = {r["model"]: r for r in benchmark.summarize(suite, tmp_path)["cnn_zoo"]}
    assert rows["gnn"]["r2"] == pytest.approx(0.6) and rows["gnn"]["r2_std"] == pytest.approx(0.1414214)
    header, _, gnn, statnn = benchmark.markdown_table(list(rows.values())).splitlines()
    assert "| test/kendall_tau (mean ± std) | test/r2 (mean ± std) | seeds |" in header
    assert "| 0.450 ± 0.071 | 0.600 ± 0.141 | 2 |" in gnn and "| 0.100 | 2 |" in statnn
    acc = [{"model": "gnn", "metric": "test/acc", "mean": 0.5, "std": 0.0, "seeds": 1, "params": 1,
            "train_seconds": 1.0, "networks_per_s": 1.0, "epochs": 1, "published": "", "note": ""}]
    assert "r2" not in benchmark.markdown_table(acc)
