"""Measured effect of the options that the README's main job and the shipped checkpoints use.

    python benchmarks/effects.py                 # fit what is missing, then write and print the table
    python benchmarks/effects.py --collect-only  # only gather the runs already in runs/effects/

Each variant is an ordinary ``nnzoo fit --model gnn --data mnist_inr`` with the overrides listed below, one
run per seed (held-out test split of the built dataset, the best-validation checkpoint).  Runs land in
``runs/effects/<variant>_s<seed>/``; a finished run is never redone.  The table goes to
``benchmarks/results/effects-mnist_inr.{json,md}`` (atomically); the README quotes the markdown and
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

from nnzoo.io import write_json, write_text

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
RUNS = REPO / "runs" / "effects"
SEEDS = (0, 1, 2)
BUDGET = ["trainer.max_epochs=20"]  # the README main job's budget (also the default)

# key: (description, overrides on top of the defaults)
VARIANTS = {
    "recipe": ("reference model and recipe (1,000 warm-up steps)", []),
    "w100": ("warm-up cut to 100 steps (the README main job)", ["optim.warmup_steps=100"]),
    "w100res": ("warm-up 100 + `model.residual=true` (the `gnn-mnist_inr` checkpoint)",
                ["optim.warmup_steps=100", "model.residual=true"]),
}


def run_folder(key: str, seed: int) -> Path:
    return RUNS / f"{key}_s{seed}" / "version_0"


def fit(key: str, seed: int) -> None:
    cmd = [str(Path(sys.executable).with_name("nnzoo")), "fit", "--model", "gnn", "--data", "mnist_inr",
           f"seed={seed}", f"run_dir={RUNS}", f"name={key}_s{seed}",
           *BUDGET, *VARIANTS[key][1]]
    print(" ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True, env=os.environ | {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")})


def collect() -> dict:
    table = {}
    for key, (description, overrides) in VARIANTS.items():
        accs = {}
        for seed in SEEDS:
            metrics = run_folder(key, seed) / "metrics.json"
            if metrics.is_file():
                accs[seed] = json.loads(metrics.read_text())["test/acc"]
        table[key] = {"description": description, "overrides": BUDGET + overrides, "test_acc": accs}
    return table


def markdown(table: dict) -> str:
    lines = ["| variant | overrides | test accuracy per seed (0, 1, 2) | mean ± std |", "|---|---|---|---|"]
    for row in table.values():
        accs = [row["test_acc"].get(s) for s in SEEDS]
        done = [a for a in accs if a is not None]
        per_seed = ", ".join("not run" if a is None else f"{a:.3f}" for a in accs)
        summary = (f"{statistics.mean(done):.3f} ± {statistics.stdev(done):.3f}" if len(done) > 1
                   else "n/a (fewer than 2 seeds)")
        if 1 < len(done) < len(SEEDS):
            summary += f" ({len(done)} seeds)"
        lines.append(f"| {row['description']} | `{' '.join(row['overrides'])}` | {per_seed} | {summary} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--collect-only", action="store_true", help="do not fit, only gather finished runs")
    parser.add_argument("--only", nargs="*", choices=list(VARIANTS), help="variants to fit (default all)")
    args = parser.parse_args()
    if not args.collect_only:
        for key in args.only or VARIANTS:
            for seed in SEEDS:
                if not (run_folder(key, seed) / "metrics.json").is_file():
                    fit(key, seed)
    table = collect()
    write_json(RESULTS / "effects-mnist_inr.json", table)
    write_text(RESULTS / "effects-mnist_inr.md", markdown(table))
    print(markdown(table))


if __name__ == "__main__":
    main()
