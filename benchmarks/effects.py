"""Measured effect of the options that the README's main job and the shipped checkpoints use.

    python benchmarks/effects.py                 # fit what is missing, then write and print the table
    python benchmarks/effects.py --collect-only  # only gather the runs already in runs/effects/

Each variant is an ordinary ``nnzoo fit --model <NG-GNN or DWSNet> --data mnist_inr`` with the overrides listed below, one
run per seed (held-out test split of the built dataset, the best-validation checkpoint), scored also on INRs
fitted elsewhere (the three sets of ``benchmarks/foreign_inrs.py``, averaged).  Runs land in
``runs/effects/<variant>_s<seed>/``; a finished run is never redone.  The table goes to
``benchmarks/results/effects-mnist_inr.{json,md}`` (atomically); docs/results.md quotes the markdown and
``tests/test_parity.py`` checks that the quote matches it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from nnzoo.io import read_json, write_json, write_text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from foreign_inrs import load, score  # noqa: E402  (a sibling script, not a package)

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
RUNS = REPO / "runs" / "effects"
SEEDS = (0, 1, 2)
BUDGET = ["trainer.max_epochs=20"]  # the README main job's budget (also the default)

NO_AUGMENTATION = [f"data.augment.{k}=0" for k in ("translate", "rotate", "scale", "shift", "dropout")]

# key: (model, description, overrides on top of that model's defaults)
VARIANTS = {
    "recipe": ("gnn", "NG-GNN: reference model and recipe (1,000 warm-up steps, not scaled)",
               ["optim.warmup_scaling=fixed"]),
    "auto": ("gnn", "NG-GNN: the defaults, warm-up scaled to the run (1,000 -> 26 steps; the README main job)", []),
    "w100": ("gnn", "NG-GNN: warm-up cut to 100 steps (the README main job before `optim.warmup_scaling`)",
             ["optim.warmup_steps=100"]),
    "w100res": ("gnn", "NG-GNN: warm-up 100 + `model.residual=true`",
                ["optim.warmup_steps=100", "model.residual=true"]),
    "w100res_noaug": ("gnn", "NG-GNN: warm-up 100 + `model.residual=true` + no weight-space augmentation (the "
                      "`gnn-mnist_inr` checkpoint's recipe)",
                      ["optim.warmup_steps=100", "model.residual=true", *NO_AUGMENTATION]),
    "dws": ("dwsnet", "DWSNet: reference model and recipe (per-entry standardisation)", []),
    "dws_layer": ("dwsnet", "DWSNet: `data.normalize=layer` (per role and layer)", ["data.normalize=layer"]),
}


def run_folder(key: str, seed: int) -> Path:
    """The run's finished version (one that crashed and was started again is ``version_1``, ...)."""
    finished = sorted(RUNS.glob(f"{key}_s{seed}/version_*/metrics.json"), key=lambda p: p.stat().st_mtime)
    return finished[-1].parent if finished else RUNS / f"{key}_s{seed}" / "version_0"


def fit(key: str, seed: int) -> None:
    model, _, overrides = VARIANTS[key]
    cmd = [str(Path(sys.executable).with_name("nnzoo")), "fit", "--model", model, "--data", "mnist_inr",
           f"seed={seed}", f"run_dir={RUNS}", f"name={key}_s{seed}", *BUDGET, *overrides]
    print(" ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True, env=os.environ | {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")})


def collect() -> dict:
    """Every variant's results: from its run folders, else those stored under the same key by an earlier
    collection (run folders are not kept across machines; change a variant's key when its overrides change
    what runs)."""
    stored_file = RESULTS / "effects-mnist_inr.json"
    stored = read_json(stored_file, "effects table") if stored_file.is_file() else {}
    table = {}
    for key, (_, description, overrides) in VARIANTS.items():
        earlier = stored.get(key, {})
        accs = {int(s): a for s, a in earlier.get("test_acc", {}).items()}
        foreign = {int(s): a for s, a in earlier.get("foreign_acc", {}).items()}
        for seed in SEEDS:
            metrics = run_folder(key, seed) / "metrics.json"
            if metrics.is_file():
                accs[seed] = json.loads(metrics.read_text())["test/acc"]
                foreign[seed] = foreign_accuracy(run_folder(key, seed))
        table[key] = {"description": description, "overrides": BUDGET + overrides, "test_acc": accs,
                      "foreign_acc": foreign}
    return table


def foreign_accuracy(run: Path) -> float:
    """Mean accuracy of a run's best checkpoint over the INR sets of ``benchmarks/foreign_inrs.py`` (INRs
    fitted elsewhere, from unseen images); kept in the run folder as ``foreign_inrs.json``."""
    cached = run / "foreign_inrs.json"
    if not cached.is_file():
        ckpt = str(run / "checkpoints" / "best.ckpt")
        results = score({ckpt: load(ckpt)})
        write_json(cached, {proc: row["accuracy"][ckpt] for proc, row in results["procedures"].items()})
    per_procedure = json.loads(cached.read_text())
    return statistics.mean(per_procedure.values())


def markdown(table: dict) -> str:
    lines = ["| variant | overrides | test accuracy per seed (0, 1, 2) | mean ± std "
             "| INRs fitted elsewhere: mean ± std |", "|---|---|---|---|---|"]
    for row in table.values():
        accs = [row["test_acc"].get(s) for s in SEEDS]
        per_seed = ", ".join("not run" if a is None else f"{a:.3f}" for a in accs)
        foreign = [row["foreign_acc"].get(s) for s in SEEDS]
        lines.append(f"| {row['description']} | `{' '.join(row['overrides'])}` | {per_seed} | {_summary(accs)} "
                     f"| {_summary(foreign)} |")
    return "\n".join(lines) + "\n"


def _summary(values: list) -> str:
    done = [v for v in values if v is not None]
    if len(done) < 2:
        return "n/a (fewer than 2 seeds)"
    return f"{statistics.mean(done):.3f} ± {statistics.stdev(done):.3f}" + (
        f" ({len(done)} seeds)" if len(done) < len(SEEDS) else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--collect-only", action="store_true", help="do not fit, only gather finished runs")
    parser.add_argument("--only", nargs="*", choices=list(VARIANTS), help="variants to fit (default all)")
    parser.add_argument("--seeds", nargs="*", type=int, choices=SEEDS, help="seeds to fit (default all)")
    args = parser.parse_args()
    if not args.collect_only:
        stored = collect()  # a seed measured before (kept in the results file) is not fitted again
        for key in args.only or VARIANTS:
            for seed in args.seeds or SEEDS:
                if seed not in stored[key]["test_acc"]:
                    fit(key, seed)
    table = collect()
    write_json(RESULTS / "effects-mnist_inr.json", table)
    write_text(RESULTS / "effects-mnist_inr.md", markdown(table))
    print(markdown(table))


if __name__ == "__main__":
    main()
