"""How a ViT-zoo checkpoint predicts the accuracy of ViTs whose architectures it never trained on.

    python benchmarks/unseen_architectures.py                      # every finished vit_zoo cell of arch_zoos
    python benchmarks/unseen_architectures.py --checkpoint gnn-vit_zoo --runs 40

The ``vit_zoo`` checkpoints train on 36 architectures: widths 8 and 16, 1, 2 or 4 heads, depth 1-3, 4x4 or
8x8 patches.  A graph metanetwork reads any graph, so ``nnzoo predict --allow-unseen`` lets it predict for
others (:func:`nnzoo.inference.unseen_architecture_problem` says which it can read).  This script measures
what such predictions are worth.  It builds, once and cached (resumably), a second zoo by the very recipe
of the checkpoints' training zoo with another seed and an unseen grid (:data:`UNSEEN_GRID`: widths 12, between
the trained ones, and 24, beyond them; 2 heads, seen, and 3, unseen), and scores every checkpoint on all of
it: Kendall tau and R² against the networks' measured test accuracies, overall and per subset.  Tau depends on
the spread of the accuracies it ranks, so the control is a zoo built the same way (same seed and number of
runs) of the checkpoint's own architectures; the checkpoint's own test split is shown too.  NG-T sizes its
memory by its largest training network, so it reads only the unseen networks no larger than that; the table
says how many.

With ``--suite`` (the default, ``arch_zoos``) it writes ``benchmarks/results/<suite>/unseen_architectures-
vit_zoo.{json,md}`` (mean ± std over each model's finished seeds), which docs/graphs.md quotes.
"""

from __future__ import annotations

import argparse
import functools
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from torchmetrics.functional import kendall_rank_corrcoef, r2_score

from nnzoo.benchmark import mean_std_text
from nnzoo.checkpoint_files import load_task
from nnzoo.data.builders.arch_zoo import ArchZooBuildConfig, build_arch_zoo
from nnzoo.data.formats.arch_zoo import load_arch_zoo
from nnzoo.data.weights import WeightBatch
from nnzoo.errors import NnzooError
from nnzoo.inference import unseen_architecture_problem
from nnzoo.io import cache_home, write_json, write_text
from nnzoo.pretrained import load_checkpoint
from nnzoo.progress import console

DATA = "vit_zoo"
UNSEEN_GRID = {"depth": [1, 2, 3], "width": [12, 24], "heads": [2, 3], "patch": [4, 8]}
"""No architecture of this grid is in the default ``vit_zoo`` grid (widths 8/16): width 12 interpolates
between the trained widths, 24 extrapolates; 3 heads were never seen, 2 were."""
SUBSETS = {"all": lambda a: True, "width 12": lambda a: a["width"] == 12, "width 24": lambda a: a["width"] == 24,
           "3 heads": lambda a: a["heads"] == 3}
"""Columns of the table: which unseen networks each tau is over."""
BUILD_SEED = 1
"""The unseen zoo's seed: other runs, hyperparameter draws and held-out digits than the training zoo's seed 0."""


def new_zoo(build: dict[str, Any], runs: int, unseen: bool = True):
    """``(zoo, architectures)``: a zoo built (once, cached) by the recipe ``build`` of a checkpoint's training
    zoo (its ``data.build``) with :data:`BUILD_SEED` and ``runs`` runs, of :data:`UNSEEN_GRID` or, with
    ``unseen=False``, of the checkpoint's own grid (the control: new runs of the trained architectures)."""
    known = {f.name for f in fields(ArchZooBuildConfig)}
    recipe = {k: v for k, v in build.items() if k in known}
    config = ArchZooBuildConfig(**{**recipe, "size": runs, "seed": BUILD_SEED})
    if unseen:
        config.grid = {"vit": UNSEEN_GRID}
    folder = build_arch_zoo(cache_home() / "datasets", DATA, config)
    return _read_zoo(folder)


@functools.cache
def _read_zoo(folder: Path):
    """A built zoo and its architectures, read once per process: every cell of a suite shares one recipe."""
    return load_arch_zoo(folder), _architectures(folder)


def _architectures(folder: Path) -> list[dict[str, Any]]:
    from nnzoo.io import read_json
    return [entry["arch"] for entry in read_json(folder / "index.json", "zoo index")["architectures"]]


def score(module, zoo, archs: list[dict[str, Any]], batch_size: int = 64) -> dict[str, Any]:
    """Kendall tau and R² of ``module``'s predictions on every network of ``zoo`` it can read, per subset."""
    predicted, target, arch_of = [], [], []
    skipped: dict[str, int] = {}
    module.eval()
    with torch.no_grad():
        for g, (spec, params) in enumerate(zip(zoo.specs, zoo.params)):
            problem = unseen_architecture_problem(module, spec)
            if problem:
                skipped[problem] = skipped.get(problem, 0) + len(params)
                continue
            ids = (zoo.group == g).nonzero().flatten()
            for start in range(0, len(params), batch_size):
                chunk = params[start:start + batch_size]
                batch = WeightBatch([spec], [chunk], torch.zeros(len(chunk)))
                predicted.append(module.predict_scores(batch))
            target.append(zoo.accuracy[ids[zoo.row[ids].argsort()]])
            arch_of += [archs[g]] * len(params)
    if not predicted:
        raise NnzooError(f"the checkpoint reads none of the unseen networks: {next(iter(skipped))}")
    pred, true = torch.cat(predicted).float(), torch.cat(target).float()
    out: dict[str, Any] = {"networks_read": len(pred), "networks": len(pred) + sum(skipped.values()),
                           "skipped": skipped}
    for name, keep in SUBSETS.items():
        mask = torch.tensor([keep(a) for a in arch_of])
        if int(mask.sum()) < 3:
            out[name] = None
            continue
        out[name] = {"kendall_tau": float(kendall_rank_corrcoef(pred[mask], true[mask])),
                     "r2": float(r2_score(pred[mask], true[mask])), "networks": int(mask.sum()),
                     "mean_predicted": float(pred[mask].mean()), "mean_accuracy": float(true[mask].mean())}
    return out


def score_suite(name: str, runs: int) -> Path:
    """Score every finished ``vit_zoo`` cell of suite ``name``; write ``unseen_architectures-vit_zoo.{json,md}``."""
    from nnzoo.benchmark import default_results_dir, finished_cells, load_suite, unfinished_line
    suite = load_suite(name)
    out = default_results_dir(suite)
    cells = finished_cells(suite, out, DATA)
    if not cells:
        raise NnzooError(f"suite {name} has no finished {DATA} cell yet; run `nnzoo benchmark {name}` first")
    results: dict[str, Any] = {"runs": runs, "grid": UNSEEN_GRID, "build_seed": BUILD_SEED, "checkpoints": {}}
    for model, seed, cell in cells:
        path = Path(str(cell.get("best_checkpoint", "")))
        if not path.is_file():
            raise NnzooError(f"cell {DATA} / {model} / seed {seed}: its best checkpoint {path} is gone; run "
                             f"`nnzoo benchmark {name}` on the machine that ran it")
        build = cell["config"]["data"]["build"]
        label, module = f"{model} s{seed}", load_task(path)
        console.print(f"scoring {label} on new runs of its own and of unseen architectures")
        results["checkpoints"][label] = {
            "model": model, **score(module, *new_zoo(build, runs)),
            "control": score(module, *new_zoo(build, runs, unseen=False))["all"],
            "own_test": {"kendall_tau": cell["test/kendall_tau"], "r2": cell["test/r2"]}}
    target = out / f"unseen_architectures-{DATA}.json"
    write_json(target, results)
    write_text(target.with_suffix(".md"), unfinished_line(suite, out, DATA) + markdown(results))
    return target


def markdown(results: dict[str, Any]) -> str:
    """Per model, mean ± std over its seeds: tau (R²) on its own test split, on new runs of its training
    architectures (the control, built as the unseen zoo is) and on each unseen subset."""
    models: dict[str, list[dict[str, Any]]] = {}
    for entry in results["checkpoints"].values():
        models.setdefault(entry["model"], []).append(entry)
    subsets = list(SUBSETS)
    lines = ["| model | seeds | own test split: tau (R²) | new runs, trained architectures | "
             + " | ".join(f"unseen, {s}" for s in subsets) + " | unseen networks read |",
             "|---|---|---|---|" + "---|" * (len(subsets) + 1)]
    for model, entries in models.items():
        cols = [_pair([e["own_test"] for e in entries]), _pair([e["control"] for e in entries])]
        cols += [_pair([e[s] for e in entries]) for s in subsets]
        read = f"{entries[0]['networks_read']} of {entries[0]['networks']}"
        lines.append(f"| {model} | {len(entries)} | " + " | ".join(cols) + f" | {read} |")
    return "\n".join(lines) + "\n"


def _pair(metrics: list[dict[str, float] | None]) -> str:
    """``tau (R²)``, each ``mean ± sample std`` over seeds (the mean alone for one seed); ``n/a`` when unread."""
    if any(m is None for m in metrics):
        return "n/a"
    return f"{mean_std_text([m['kendall_tau'] for m in metrics])} ({mean_std_text([m['r2'] for m in metrics])})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", default="arch_zoos", help="score every finished vit_zoo cell of this suite "
                                                             "(default arch_zoos)")
    parser.add_argument("--checkpoint", action="append",
                        help="score these instead (pretrained name, exported .pt or a run's .ckpt; repeatable); "
                             "prints the scores, writes nothing")
    parser.add_argument("--runs", type=int, default=200, help="training runs of the unseen zoo (4 networks each; "
                                                              "default 200)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.checkpoint:
        for name in args.checkpoint:
            module = load_checkpoint(name)
            build = module.info.extra.get("build") or {}
            recipe = build.get("recipe", build)
            console.print(name, {"unseen": score(module, *new_zoo(recipe, args.runs)),
                                 "control": score(module, *new_zoo(recipe, args.runs, unseen=False))["all"]})
        return
    target = score_suite(args.suite, args.runs)
    console.print(f"{target.with_suffix('.md')}:\n{target.with_suffix('.md').read_text()}")


if __name__ == "__main__":
    try:
        main()
    except NnzooError as exc:
        raise SystemExit(f"error: {exc}") from None
