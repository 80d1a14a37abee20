"""The ``nnzoo`` command line.

    nnzoo fit --model gnn --data mnist_inr [--trainer default] [--config FILE ...] [--print_config] [key=value ...]
    nnzoo fit --config runs/mnist_inr-gnn/version_0/config.yaml      # re-run a run from its own config
    nnzoo test --checkpoint gnn-mnist_inr|FILE.pt|FILE.ckpt [--split test|val|train] [key=value ...]
    nnzoo validate --checkpoint ...                                  # the same on the validation split
    nnzoo build --data mnist_inr [data.build.size=5000]
    nnzoo pack DIR --labels labels.csv --name mynets [--classes N|a,b,c] [--spec spec.json] [--force]
    nnzoo benchmark quick [--out DIR] [key=value ...]
    nnzoo predict --checkpoint gnn-mnist_inr path/to/inr.pth [more.pth FOLDER 'inrs/*.pth'] [--batch-size 64]
    nnzoo predict --checkpoint gnn-mnist_inr_dilate path/to/inr.pth [--output DIR] [--force]
    nnzoo inr fit digit.png -o digit.pth [--invert] [--steps N] [--psnr-target DB] [--seed S] [--force]
    nnzoo export runs/mnist_inr-gnn/version_0 --name gnn-mnist_inr
    nnzoo list [models|data|checkpoints|configs] [--details]
    nnzoo config --model gnn --data mnist_inr [key=value ...]

``model=NAME``, ``data=NAME`` and ``trainer=NAME`` are accepted as positional
forms of the flags; ``key=value`` overrides may stand anywhere on the line.  Errors
caused by input print one line and exit with 2.
"""

from __future__ import annotations

import argparse
import errno
import re
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from rich.table import Table

from nnzoo.errors import NnzooError
from nnzoo.progress import stdout_console

console = stdout_console
SELECTORS = ("model", "data", "trainer")


def _split_selectors(args: argparse.Namespace) -> list[str]:
    """Move ``model=X``/``data=X``/``trainer=X`` overrides onto the flags; return the rest."""
    rest = []
    for item in args.overrides:
        key, _, value = item.partition("=")
        if key in SELECTORS and value:
            setattr(args, key, value)
        else:
            rest.append(item)
    return rest


def _compose(args: argparse.Namespace):
    from nnzoo.config import compose
    overrides = _split_selectors(args)
    files = _config_files(args)
    for kind in ("model", "data"):  # a --config file (e.g. a run's config.yaml) may choose them
        chosen = next((c for c in reversed(files) if isinstance(OmegaConf.select(c[1], f"{kind}.name"), str)
                       or isinstance(OmegaConf.select(c[1], f"{kind}.class_path"), str)), None)
        if chosen is None:
            continue
        name = OmegaConf.select(chosen[1], f"{kind}.name")
        class_path = OmegaConf.select(chosen[1], f"{kind}.class_path") if kind == "model" else None
        if getattr(args, kind) is None:  # a run's config.yaml of a plugin model rebuilds it from its class path
            setattr(args, kind, class_path if isinstance(class_path, str) else name)
        elif getattr(args, kind) not in (name, class_path) and not str(getattr(args, kind)).endswith((".yaml", ".yml")):
            has = f"{kind}.name={name}" if name is not None else f"{kind}.class_path={class_path}"
            raise NnzooError(f"--{kind} {getattr(args, kind)} but {chosen[0]} has {has}; drop one")
    if not args.model or not args.data:
        raise NnzooError("choose a model and a dataset, e.g. `nnzoo fit --model gnn --data mnist_inr` "
                         "(see `nnzoo list`), or pass --config FILE")
    return compose(args.model, args.data, args.trainer, overrides, files=[f for f, _ in files])


def _config_files(args: argparse.Namespace) -> list[tuple[Path, Any]]:
    """``--config`` files, read once up front (one line for a missing or unparsable file)."""
    from nnzoo.config import load_yaml
    files = []
    for file in getattr(args, "config", None) or []:
        path = Path(file).expanduser()
        if not path.is_file():
            raise NnzooError(f"--config {file}: no such file")
        files.append((path, load_yaml(path)))
    return files


def cmd_fit(args: argparse.Namespace) -> int:
    from nnzoo.train import fit
    cfg = _compose(args)
    if args.print_config:
        console.print(OmegaConf.to_yaml(cfg), markup=False, highlight=False)
        return 0
    result = fit(cfg)
    _print_metrics(result.metrics, f"{result.metrics['model']} on {result.metrics['data']}")
    if result.run_dir is None:
        console.print("dry run (trainer.fast_dev_run): nothing was written")
    else:
        console.print(f"run folder: {result.run_dir}  (tensorboard --logdir {result.run_dir.parent})")
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    from nnzoo.io import existing_output, write_json
    from nnzoo.train import evaluate
    if args.output and Path(args.output).is_dir():
        raise NnzooError(f"--output {args.output} is a folder; name a JSON file, e.g. {Path(args.output) / 'test.json'}")
    if args.output and existing_output(args.output, "--output") and not args.force:  # a FIFO or link: refused
        raise NnzooError(f"--output {args.output} exists; pass --force to replace it or name another file")
    split = args.split or ("val" if args.command == "validate" else "test")
    results = evaluate(args.checkpoint, split, args.overrides, files=args.config or (),
                       accelerator="cpu" if args.cpu else None)
    metrics = {"checkpoint": str(args.checkpoint), "split": split, **results}
    if args.output:
        write_json(args.output, metrics)
    _print_metrics(metrics, f"{split} split of {args.checkpoint}")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from nnzoo.config import compose
    from nnzoo.train import build_datamodule
    overrides = _split_selectors(args)
    if not args.data:
        raise NnzooError("choose a dataset: nnzoo build --data mnist_inr")
    cfg = compose("gnn", args.data, "default", overrides)
    datamodule = build_datamodule(cfg)
    datamodule.prepare_data()
    _print_metrics(datamodule.describe(), f"dataset {args.data}")
    return 0


def cmd_pack(args: argparse.Namespace) -> int:
    """Pack a folder of your own networks (state dicts) and a CSV of labels into a dataset (``--data packed``)."""
    from nnzoo.data.packed import pack_networks, read_pack, read_spec_file
    spec = read_spec_file(args.spec) if args.spec else None
    folder = pack_networks(args.folder, args.labels, args.name, task=args.task, classes=args.classes, spec=spec,
                           activation=args.activation, seed=args.seed, val_fraction=args.val_fraction,
                           test_fraction=args.test_fraction, force=args.force)
    meta, spec, *_ = read_pack(folder)
    classes = f", classes {', '.join(meta['class_names'])}" if meta["class_names"] else ""
    counts = "/".join(str(meta["counts"][s]) for s in ("train", "val", "test"))
    console.print(f"packed {sum(meta['counts'].values())} networks ({spec.describe()}; {meta['task']}{classes}; "
                  f"train/val/test {counts}) into {folder}", markup=False, highlight=False, soft_wrap=True)
    console.print(f"train on it: nnzoo fit --model gnn --data packed data.pack={args.name}", markup=False,
                  highlight=False, soft_wrap=True)
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    from nnzoo.benchmark import (default_results_dir, load_suite, print_status, run_suite, suite_configs,
                                 write_tables)
    suite = load_suite(args.suite)
    out = Path(args.out) if args.out else default_results_dir(suite)
    if args.status:
        print_status(suite, out, suite_configs(suite, out, args.overrides))
        return 0
    if args.tables:
        for data, path in write_tables(suite, out).items():
            console.print(f"{data}: {path}")
        return 0
    for data, path in run_suite(suite, out, args.overrides, only_models=args.models).items():
        console.print(f"{data}: {path}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from nnzoo.pretrained import checkpoints_folder, export_run, manifest
    e = export_run(Path(args.run), args.name, Path(args.folder) if args.folder else None, force=args.force)
    say = dict(markup=False, highlight=False, soft_wrap=True)
    console.print(f"exported {e.name} to {e.folder / e.file}: {e.model} on {e.data}, {e.headline}, "
                  f"sha256 {e.sha256[:12]}...", **say)
    shipped = checkpoints_folder()
    if e.folder.resolve() != shipped.resolve() and e.name in manifest(shipped):
        console.print(f"note: '{e.name}' is also a shipped checkpoint; where both are looked up (nnzoo list "
                      "checkpoints) yours is used", **say)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import json

    from nnzoo.data.packed import read_spec_file
    from nnzoo.inference import edit_files, predict_files
    from nnzoo.pretrained import load_checkpoint
    if args.allow_unseen and not args.spec:
        raise NnzooError("--allow-unseen needs --spec: a state dict does not say which graph it is, so only the "
                         "checkpoint's own architectures can be read off a file alone")
    spec = read_spec_file(args.spec) if args.spec else None  # checked before the checkpoint is loaded
    module = load_checkpoint(args.checkpoint)
    editing = module.info.task == "editing"
    if editing and spec is not None:
        raise NnzooError(f"--spec is for classifier and regressor checkpoints; '{args.checkpoint}' edits INRs, "
                         "whose architecture it knows")
    if not editing and (args.output or args.force):
        raise NnzooError(f"--output/--force are for editing checkpoints; '{args.checkpoint}' does "
                         f"{module.info.task} and writes nothing")
    # every file is read and checked before the first forward pass: a bad one is one line, and nothing else
    if editing:
        results = edit_files(module, args.files, Path(args.output) if args.output else None, args.force,
                             batch_size=args.batch_size)
    else:
        results = predict_files(module, args.files, args.activation, batch_size=args.batch_size, spec=spec,
                                allow_unseen=args.allow_unseen)
    for result in results:
        print(json.dumps(result, allow_nan=False), flush=True)  # JSON lines: never NaN (not JSON), never wrapped
    return 0


INR_SUFFIXES = (".pth", ".pt")


def _inr_outputs(images: list[Path], output: Path) -> list[Path]:
    """Where ``nnzoo inr fit`` writes each INR: ``-o OUT.pth`` for one image, else ``FOLDER/<stem>.pth``."""
    if output.suffix in INR_SUFFIXES and not output.is_dir():
        if len(images) > 1:
            raise NnzooError(f"-o {output} names one file but {len(images)} images were given; "
                             "pass a folder (-o FOLDER) to write FOLDER/<image name>.pth for each")
        return [output]
    if output.exists() and not output.is_dir():
        raise NnzooError(f"-o {output} is an existing file, not a folder; end it in .pth for one image "
                         "or name a folder")
    targets = [output / f"{image.stem}.pth" for image in images]
    clash = next((t for i, t in enumerate(targets) if t in targets[:i]), None)
    if clash is not None:
        raise NnzooError(f"two images would both be written to {clash}; rename one or fit them separately")
    return targets


def cmd_inr_fit(args: argparse.Namespace) -> int:
    from nnzoo.data.siren_fit import border_mean, fit_images
    from nnzoo.io import existing_output
    from nnzoo.progress import console as stderr
    from nnzoo.progress import progress_bar
    images = [Path(f) for f in args.images]
    targets = _inr_outputs(images, Path(args.output))
    existing = next((t for t in targets if existing_output(t, "-o")), None)  # a FIFO or link: refused
    if existing is not None and not args.force:
        raise NnzooError(f"{existing} already exists; pass --force to overwrite it or choose another -o")
    with progress_bar(len(images), "fitting SIRENs") as advance:
        fits = fit_images(images, invert=args.invert, steps=args.steps, psnr_target=args.psnr_target,
                          seed=args.seed, progress=advance)
    for image, target, fit in zip(images, targets, fits):
        fit.save(target)
        console.print(f"{image} -> {target}: {fit.psnr:.1f} dB after {fit.steps} steps", markup=False,
                      highlight=False, soft_wrap=True)
        if fit.psnr_target is not None and fit.psnr < fit.psnr_target:
            stderr.print(f"warning: {image} reached only {fit.psnr:.1f} dB (target {fit.psnr_target:g}); "
                         "try more --steps", markup=False, highlight=False, soft_wrap=True)
        if border_mean(fit.image) > 0.5:
            stderr.print(f"warning: {image} has a bright border; MNIST INRs are white strokes on black, "
                         f"{'drop' if args.invert else 'pass'} --invert if this is a dark drawing on light paper",
                         markup=False, highlight=False, soft_wrap=True)
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    console.print(OmegaConf.to_yaml(_compose(args)), markup=False, highlight=False)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from nnzoo.config import KINDS, available
    what = args.what
    if what in ("all", "models"):
        rows = _model_rows()
        table = _whole_names_table("models", ("name", "params (mnist_inr)", "tasks", "CNNs", "mixed archs", "summary"),
                                   [r[0] for r in rows])
        for row in rows:
            table.add_row(*row)
        console.print(table)
        for line in _broken_plugins():
            console.print(f"note: {line}", markup=False, highlight=False, soft_wrap=True)
    if what in ("all", "data"):
        from nnzoo.data import DATASETS
        table = _whole_names_table("datasets", ("name", "task", "summary"), DATASETS.names())
        for name in DATASETS.names():
            entry = DATASETS.entry(name)
            table.add_row(name, entry.meta.get("task", ""), entry.summary)
        console.print(table)
    if what in ("all", "checkpoints"):
        from nnzoo.pretrained import checkpoint_folders, list_pretrained
        entries = list_pretrained()
        table = _whole_names_table("pretrained checkpoints (manifest.json of each folder below)",
                                   ("name", "model", "data", "params", "result", "nnzoo", "from"), [e.name for e in entries])
        for e in entries:
            table.add_row(e.name, e.model, e.data, f"{e.num_parameters:,}", e.headline, e.nnzoo_version, e.origin)
        console.print(table)
        say = dict(markup=False, highlight=False, soft_wrap=True)
        console.print("checkpoint folders, first match wins: " + "; ".join(
            f"{origin} {path}" for path, origin in checkpoint_folders()), **say)
        for e in entries:
            if e.hides:
                console.print(f"note: {e.name} ({e.origin}, {e.folder}) hides the {' and '.join(e.hides)} "
                              "checkpoint of that name", **say)
        _print_conventions(entries, args.details)
    if what in ("all", "configs"):
        from nnzoo.benchmark import suites_folder
        table = Table(title="configs")
        table.add_column("kind")
        table.add_column("names")
        for kind in KINDS:
            table.add_row(f"zoo_configs/{kind}", ", ".join(available(kind)))
        table.add_row("benchmarks (suites)", ", ".join(sorted(p.stem for p in suites_folder().glob("*.yaml"))))
        console.print(table)
    return 0


def _whole_names_table(title: str, columns: tuple[str, ...], names: list[str]) -> Table:
    """A table whose first column (names people copy into commands) is never cut, whatever the width: the
    other columns fold instead (output that is not a terminal is 80 columns wide)."""
    table = Table(title=title)
    table.add_column(columns[0], no_wrap=True, min_width=max((len(n) for n in names), default=4))
    for col in columns[1:]:
        table.add_column(col, overflow="fold")
    return table


def _print_conventions(entries: list, details: bool) -> None:
    """The input each checkpoint expects: one line per entry, or the full cards with ``--details``."""
    from nnzoo.conventions import format_convention
    say = dict(markup=False, highlight=False, soft_wrap=True)  # cards hold brackets and long lines
    console.print("input conventions" + ("" if details else " (full cards: nnzoo list checkpoints --details)") + ":",
                  **say)
    for e in entries:
        console.print(f"  {e.name}: {e.convention_summary}", **say)
        if details and e.input_convention:
            console.print("\n".join(format_convention(e.input_convention, indent="      ")), **say)


def _predict_epilog() -> str:
    """The INR input convention, for ``nnzoo predict --help`` (from the same card the manifest stores)."""
    from nnzoo.conventions import format_convention, input_convention
    from nnzoo.data.weights import DataInfo
    from nnzoo.nets.spec import siren_spec
    card = input_convention(DataInfo("mnist_inr", "classification", 10, (siren_spec(),)))
    return "\n".join(["input convention of the mnist_inr checkpoints (gnn-mnist_inr, ...):",
                      *format_convention({k: v for k, v in card.items() if k != "target"}),
                      "every checkpoint's card (CNNs included): nnzoo list checkpoints --details", "",
                      "examples:", *(f"  {line}" for line in EXAMPLES["predict"])])


def _inr_fit_epilog() -> str:
    from nnzoo.data.builders.inr import InrBuildConfig
    r = InrBuildConfig()
    return (textwrap.fill(f"Defaults are the recipe of the built mnist_inr data: at most {r.steps} Adam steps "
                          f"(lr {r.lr:g}), stopping at {r.psnr_target:g} dB, '{r.init}' initialisation. Python: "
                          "nnzoo.data.siren_fit.fit_image(path_or_array).save('digit.pth').", 79)
            + "\n\nexamples:\n"
            + "\n".join(f"  {line}" for line in EXAMPLES["inr fit"]))


def _model_rows() -> list[list[str]]:
    """The rows of ``nnzoo list models``.  Importing the models (torch, PyG, Lightning) takes 6-10 s on 2 cores,
    building them for the counts 0.16 s more (measured), so the rows are cached in ``$NNZOO_HOME/list``, keyed
    by nnzoo's sources, the model configs, the torch/PyG versions and the model plugins (entry points of group
    ``nnzoo.models`` and their distributions' versions); a hit imports neither (0.6 s in all).  A plugin that
    fails to load is left out with a note (:func:`_broken_plugins`), and the rows are then not cached."""
    import hashlib
    import json
    from importlib import metadata

    from nnzoo.config import config_root
    from nnzoo.io import cache_home, write_json
    key = hashlib.sha256(" ".join(metadata.version(d) for d in ("torch", "torch_geometric")).encode())
    for path in sorted(Path(__file__).resolve().parent.rglob("*.py")) + sorted((config_root() / "model").glob("*.yaml")):
        key.update(str(path).encode() + b"\0" + path.read_bytes())
    for point in sorted(metadata.entry_points(group="nnzoo.models"), key=lambda ep: (ep.name, ep.value)):
        dist = getattr(point, "dist", None)
        key.update(f"{point.name}={point.value} {dist.name if dist else ''} {dist.version if dist else ''}\0".encode())
    try:
        cache = cache_home() / "list" / f"models-{key.hexdigest()[:24]}.json"
    except NnzooError:  # NNZOO_HOME is a file: no cache
        cache = None
    try:
        return json.loads(cache.read_text())
    except (AttributeError, OSError, ValueError):
        pass
    from nnzoo.models import MODELS
    rows = []
    for name in MODELS.names():
        entry = MODELS.entry(name)
        m = entry.meta
        rows.append([name, _param_text(name), ", ".join(m["tasks"]), _yes(m["conv"]),
                     _yes(m["heterogeneous"]), entry.summary])
    if cache is not None and not MODELS.broken:
        try:
            for old in cache.parent.glob("models-*.json"):  # written for sources that have changed since
                old.unlink()
            write_json(cache, rows)
        except OSError:
            pass  # an unwritable cache only costs the speed
    return rows


def _broken_plugins() -> list[str]:
    """One line per model plugin that failed to load in this process (none when the rows came from the cache)."""
    registry = sys.modules.get("nnzoo.models.registry")
    return list(registry.MODELS.broken.values()) if registry is not None else []


def _param_text(name: str) -> str:
    """The parameter count for the table; a plugin's model that cannot be built on MNIST INRs shows n/a."""
    from nnzoo.config import config_root
    if (config_root() / "model" / f"{name}.yaml").is_file():
        return f"{_param_count(name):,}"  # a built-in model that fails here is a bug: not hidden
    try:
        return f"{_param_count(name):,}"
    except Exception:
        return "n/a"


def _param_count(name: str) -> int:
    """Parameters of a model built with its default config for MNIST INRs (no data needed)."""
    from nnzoo.config import model_options
    from nnzoo.data.weights import DataInfo
    from nnzoo.models import count_parameters, create_model
    from nnzoo.nets.spec import siren_spec
    info = DataInfo("mnist_inr", "classification", 10, (siren_spec(),))
    return count_parameters(create_model(name, info, **model_options(name)))


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _print_metrics(metrics: dict[str, Any], title: str) -> None:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", overflow="fold")  # paths whole, folded, never cut
    for key, value in metrics.items():
        if key == "history" and isinstance(value, list):  # the curve stays in metrics.json; here its size
            value = f"{len(value)} validation points (in metrics.json)"
        elif key == "dataset" and isinstance(value, dict):
            value = ", ".join(f"{k.removeprefix('num_')} {v}" for k, v in value.items() if k.startswith("num_"))
        elif isinstance(value, float):
            value = f"{value:.4f}"
        table.add_row(key, str(value))
    console.print(table)


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose epilog may be a function, called only when the help is shown: the
    cards in ``nnzoo predict --help`` need torch and lightning, which building the parser must not import."""

    def format_help(self) -> str:
        if callable(self.epilog):
            self.epilog = self.epilog()
        return super().format_help()

    def error(self, message: str):  # type: ignore[override]
        """One line, like every other nnzoo error (exit 2): argparse would print the whole usage first."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from nnzoo import __version__
    parser = _Parser(prog="nnzoo", description="Learning on neural-network weights.")
    parser.add_argument("--version", action="version", version=f"nnzoo {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help=f"show Python tracebacks instead of one-line errors (also {DEBUG_ENV}=1)")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_selection(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", help="model name (nnzoo list models) or a model YAML file (./my_gnn.yaml)")
        p.add_argument("--data", help="dataset name (nnzoo list data) or a data YAML file")
        p.add_argument("--trainer", default="default", help="trainer config (zoo_configs/trainer)")
        p.add_argument("--config", action="append", metavar="FILE",
                       help="YAML merged over the shipped configs, in order, before key=value overrides; "
                            "repeatable. A run's own config.yaml re-runs that run")
        p.add_argument("--print_config", "--print-config", action="store_true",
                       help="print the merged config and exit")
        p.add_argument("overrides", nargs="*", help="config overrides key=value, e.g. trainer.max_epochs=5 (any "
                                                    "lightning.Trainer argument), anywhere on the line")

    p = sub.add_parser("fit", help="train a model on a dataset, then test the best checkpoint")
    with_selection(p)
    p.set_defaults(func=cmd_fit)
    p = sub.add_parser("config", help="print the merged config of a run")
    with_selection(p)
    p.set_defaults(func=cmd_config)
    p = sub.add_parser("build", help="build (or locate) a dataset without training",
                       description="Build a dataset offline (fit its SIRENs, train its CNNs) or find it in the cache "
                                   "($NNZOO_HOME, by a hash of its recipe), then print where it is; with data.root "
                                   "set, check the public files there instead.")
    p.add_argument("--data", required=True, help="dataset name (nnzoo list data) or a data YAML file")
    p.add_argument("overrides", nargs="*", help="data options key=value, e.g. data.build.size=5000 "
                                                "data.build.views=2 (nnzoo config --data NAME lists them)")
    p.set_defaults(func=cmd_build, model=None, trainer="default")
    p = sub.add_parser("pack", help="pack a folder of your own networks + a CSV of labels into a dataset "
                                    "(nnzoo fit --data packed data.pack=NAME)",
                       description="Read every state dict listed in the CSV (columns file,label for classification "
                                   "or file,target in [0, 1] for regression, optional split=train|val|test; files "
                                   "relative to DIR), check each against one architecture and the labels against "
                                   "the declared classes, and write $NNZOO_HOME/packs/NAME/. Without a split "
                                   "column the networks are split at random (--seed): 10% validation, 10% test.")
    p.add_argument("folder", metavar="DIR", help="folder holding the networks (.pth/.pt state dicts)")
    p.add_argument("--labels", required=True, help="CSV with a header: file,label (or file,target) [,split]")
    p.add_argument("--name", required=True, help="dataset name (data.pack=NAME)")
    p.add_argument("--task", choices=("classification", "regression"),
                   help="default: from the CSV's column (label: classification, target: regression)")
    p.add_argument("--classes", help="classification: the number of classes N (labels 0..N-1) or their names "
                                     "a,b,c (labels may be names or indices); required, never inferred. A name "
                                     "that is a number must be its own index (0,1,2 or cat,dog,2): 1,0,2 is "
                                     "refused, since label 1 would be both the name '1' and the index of '0'")
    p.add_argument("--spec", help="JSON of the architecture (json.dump(nnzoo.nets.spec_from_module(net).to_dict(), "
                                  "f)); default: read off the first network's tensors with --activation")
    p.add_argument("--activation", default="relu",
                   help="without --spec: activation after every hidden layer (default relu; the file does not say)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random split (default 0)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="random split: validation fraction (0.1)")
    p.add_argument("--test-fraction", type=float, default=0.1, help="random split: test fraction (0.1)")
    p.add_argument("--force", action="store_true", help="replace an existing pack of that name")
    p.set_defaults(func=cmd_pack)
    for command, split in (("test", "test"), ("validate", "val")):
        p = sub.add_parser(command, help=f"evaluate a checkpoint on the {split} split of the dataset it was "
                                         "trained on")
        p.add_argument("--checkpoint", required=True,
                       help="pretrained name (nnzoo list checkpoints), an exported .pt or a run's .ckpt (its run "
                            "folder is not needed: checkpoints carry their run config)")
        p.add_argument("--split", choices=SPLIT_CHOICES, help=f"which split (default {split})")
        p.add_argument("--config", action="append", metavar="FILE",
                       help="the run config, for a checkpoint made before configs were stored in it")
        p.add_argument("--output", help="also write the metrics to this JSON file")
        p.add_argument("--force", action="store_true", help="replace an existing --output file")
        p.add_argument("--cpu", action="store_true", help="force CPU")
        p.add_argument("overrides", nargs="*",
                       help="overrides of the run's config: where its files are (data.root=...), trainer.* "
                            "options; options that would read other networks are refused")
        p.set_defaults(func=cmd_test)
    p = sub.add_parser("benchmark", help="run a benchmark suite (benchmarks/<suite>.yaml), skipping finished cells "
                                         "and resuming interrupted ones from their last checkpoint")
    p.add_argument("suite", help="suite name or path to a suite YAML")
    p.add_argument("--out", help="output folder (default benchmarks/results/<suite>)")
    p.add_argument("--models", nargs="+", metavar="MODEL",
                   help="run only these models' cells (the tables still show every finished cell)")
    p.add_argument("--status", action="store_true",
                   help="print cells done / running / interrupted / to do and the estimated time left; run nothing")
    p.add_argument("--tables", action="store_true",
                   help="write the tables and plots of the finished cells (marked partial if cells are missing); "
                        "run nothing")
    p.add_argument("overrides", nargs="*", help="overrides applied to every cell, e.g. trainer.max_epochs=2")
    p.set_defaults(func=cmd_benchmark)
    p = sub.add_parser("predict", help="apply a pretrained checkpoint to your own networks (.pth state dicts)",
                       epilog=_predict_epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True,
                   help="pretrained name (nnzoo list checkpoints), an exported .pt or a run's .ckpt; only "
                        "named checkpoints are verified against the manifest's sha256, a file given by path "
                        "is only checked to hold tensors (no pickled code) and finite weights")
    p.add_argument("--activation", help="activation of the networks, when the checkpoint's data mixes them")
    p.add_argument("--spec", help="JSON of the networks' architecture (json.dump(nnzoo.nets.spec_from_module(net, "
                                  "input_shape=..., graph=True).to_dict(), f)), when their state dicts fit several "
                                  "of the checkpoint's (ViTs that differ only in their heads, mixed-zoo MLPs only in their "
                                  "activation)")
    p.add_argument("--allow-unseen", action="store_true",
                   help="with --spec: read an architecture the checkpoint never trained on, where its model can "
                        "(gnn, transformer, statnn; every neuron and weight type, layer and positional slot seen "
                        "in training); such predictions extrapolate and a warning says so")
    p.add_argument("--output", help="editing checkpoints: folder for <name>.<dataset>.pth (the edited network, "
                                    "same state-dict format) and <name>.<dataset>.png (input | edited | target); "
                                    "default: next to each input")
    p.add_argument("--force", action="store_true", help="editing checkpoints: replace existing outputs")
    p.add_argument("--batch-size", type=int, default=64,
                   help="networks per forward pass (default 64); the results do not depend on it")
    p.add_argument("files", nargs="+",
                   help="state dicts of networks with the checkpoint's architecture: files, folders (their "
                        "*.pth/*.pt files) or quoted glob patterns ('inrs/*.pth'); all are read and checked "
                        "before the first prediction")
    p.set_defaults(func=cmd_predict)
    p = sub.add_parser("inr", help="make INRs of your own images (nnzoo inr fit)")
    inr = p.add_subparsers(dest="inr_command", required=True)
    p = inr.add_parser("fit", help="fit a SIREN to each image, in the convention of the mnist_inr checkpoints",
                       description=textwrap.fill(
                           "Fit one SIREN (2-32-32-1, sine, w0 = 30, output + 0.5) per image on the public "
                           "coordinate grid and save its state dict (seq.{i}.{weight,bias}) for "
                           "`nnzoo predict --checkpoint gnn-mnist_inr OUT.pth`. Images are converted to "
                           "grayscale, padded to a square and resized to 28x28. MNIST digits are white "
                           "strokes on black: pass --invert for a dark drawing on light paper.", 79),
                       epilog=_inr_fit_epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="PNG/JPEG files (white digit on black)")
    p.add_argument("-o", "--output", required=True,
                   help="OUT.pth for one image, or a folder: FOLDER/<image name>.pth for each")
    p.add_argument("--invert", action="store_true", help="invert intensities (for dark strokes on a light background)")
    p.add_argument("--steps", type=int, help="most Adam steps per SIREN (default: the build recipe, below)")
    p.add_argument("--psnr-target", type=float,
                   help="stop a SIREN when it reaches this PSNR in dB (default: the build recipe, below)")
    p.add_argument("--seed", type=int, default=0, help="seed of the SIREN initialisation (default 0)")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    p.set_defaults(func=cmd_inr_fit)
    p = sub.add_parser("export", help="turn a finished run into a pretrained checkpoint + manifest entry")
    p.add_argument("run", help="run folder holding config.yaml, metrics.json, checkpoints/best.ckpt")
    p.add_argument("--name", required=True, help="checkpoint name, e.g. gnn-mnist_inr")
    p.add_argument("--folder", help="checkpoint folder (default: $NNZOO_HOME/checkpoints, i.e. "
                                    "~/.cache/nnzoo/checkpoints, which named lookups search too)")
    p.add_argument("--force", action="store_true", help="replace an existing checkpoint of that name")
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("list", help="list models, datasets, checkpoints and configs")
    p.add_argument("what", nargs="?", default="all", choices=("all", "models", "data", "checkpoints", "configs"),
                   help="what to list (default all): models with their parameter count and the tasks and networks "
                        "they read; datasets; pretrained checkpoints with their metrics and input convention; the "
                        "shipped configs and benchmark suites")
    p.add_argument("--details", action="store_true", help="with checkpoints: print each input-convention card")
    p.set_defaults(func=cmd_list)
    for name, each in sub.choices.items():
        if each.epilog is None and name in EXAMPLES:
            each.epilog = "examples:\n" + "\n".join(f"  {line}" for line in EXAMPLES[name])
            each.formatter_class = argparse.RawDescriptionHelpFormatter
    return parser


EXAMPLES = {
    "fit": ["nnzoo fit --model gnn --data mnist_inr",
            "nnzoo fit --model transformer --data mnist_inr trainer.max_epochs=50 seed=1",
            "nnzoo fit --config runs/mnist_inr-gnn/version_0/config.yaml          # re-run a run",
            "nnzoo fit --model gnn --data mnist_inr resume=true                    # continue a killed run"],
    "config": ["nnzoo config --model gnn --data cnn_zoo", "nnzoo config --model dwsnet --data mnist_inr optim.lr=1e-3"],
    "build": ["nnzoo build --data mnist_inr", "nnzoo build --data mnist_inr data.build.size=5000 data.build.views=2",
              "nnzoo build --data cnn_zoo data.root=/data/small-cnn-zoo/mnist      # check public files"],
    "pack": ["nnzoo pack nets/ --labels labels.csv --name mynets --classes 3",
             "nnzoo pack nets/ --labels labels.csv --name mynets --classes cat,dog,bird --spec spec.json",
             "nnzoo fit --model gnn --data packed data.pack=mynets"],
    "test": ["nnzoo test --checkpoint gnn-mnist_inr",
             "nnzoo test --checkpoint runs/mnist_inr-gnn/version_0/checkpoints/best.ckpt --output test.json"],
    "validate": ["nnzoo validate --checkpoint runs/mnist_inr-gnn/version_0/checkpoints/best.ckpt"],
    "benchmark": ["nnzoo benchmark quick", "nnzoo benchmark converged threads=1 &  nnzoo benchmark converged threads=1",
                  "nnzoo benchmark converged --status", "nnzoo benchmark repro --models gnn trainer.max_epochs=2"],
    "export": ["nnzoo export runs/mnist_inr-gnn/version_0 --name my-gnn",
               "nnzoo predict --checkpoint my-gnn digit.pth"],
    "list": ["nnzoo list", "nnzoo list checkpoints --details"],
    "inr": ["nnzoo inr fit digit.png -o digit.pth --invert"],
    "inr fit": ["nnzoo inr fit digit.png -o digit.pth --invert", "nnzoo inr fit drawings/*.png -o inrs/ --invert",
                "nnzoo predict --checkpoint gnn-mnist_inr digit.pth"],
    "predict": ["nnzoo predict --checkpoint gnn-mnist_inr digit.pth",
                "nnzoo predict --checkpoint gnn-mnist_inr inrs/ 'more/*.pth'",
                "nnzoo predict --checkpoint gnn-mnist_inr_dilate digit.pth --output edited/"],
}
"""Examples that end each subcommand's help (predict and inr fit have their own, longer ones)."""


DEBUG_ENV = "NNZOO_DEBUG"
SPLIT_CHOICES = ("train", "val", "test")
OVERRIDE = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*=")


def _intermixed(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[list[str], list[str]]:
    """Split ``argv`` into the words for argparse and the ``key=value`` overrides, wherever they stand
    (``nnzoo fit --trainer default trainer.max_epochs=1 --model mlp``): argparse alone stops filling a
    positional list at the first flag. A word right after a flag that takes a value is that flag's value."""
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    command = next((commands[w] for w in argv if w in commands), None)
    if command is None or not any(a.dest == "overrides" for a in command._actions):
        return argv, []  # e.g. `nnzoo predict lr=0.1.pth`: a file name, not an override
    takes_value: set[str] = set()
    stack = [parser]
    while stack:
        p = stack.pop()
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                stack.extend(action.choices.values())
            elif action.option_strings and action.nargs != 0:
                takes_value.update(action.option_strings)
    words, overrides = [], []
    for i, word in enumerate(argv):
        after_flag = i > 0 and argv[i - 1] in takes_value
        if OVERRIDE.match(word) and not after_flag:
            overrides.append(word)
        else:
            words.append(word)
    return words, overrides


@contextmanager
def _sigint_seen() -> Iterator[list[bool]]:
    """``[True]`` once SIGINT (Ctrl-C) arrived while the block ran; the signal still raises KeyboardInterrupt.
    Lightning catches that KeyboardInterrupt inside ``fit``, saves nothing more and calls ``sys.exit(1)``: this
    flag tells that exit apart, so an interrupted fit ends with 130 like any interrupted command."""
    import signal
    import threading
    seen = [False]
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not callable(previous):
        yield seen  # SIGINT ignored (a background job) or not ours to handle
        return

    def handler(signum, frame) -> None:
        seen[0] = True
        previous(signum, frame)
    signal.signal(signal.SIGINT, handler)
    try:
        yield seen
    finally:
        signal.signal(signal.SIGINT, previous)


WRITE_ERRNOS = {errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
                errno.EPERM: "operation not permitted", errno.ENOSPC: "no space left on the device",
                errno.EDQUOT: "disk quota exceeded", errno.ENAMETOOLONG: "file name too long"}
"""Failures of a write that the machine, not nnzoo, causes: one line naming the path (exit 2), not a bug report."""


def _write_error(exc: BaseException) -> str | None:
    """The one line for an OSError of :data:`WRITE_ERRNOS` on a named path (a read-only ``NNZOO_HOME`` or run
    folder, a full disk), or None."""
    if not isinstance(exc, OSError) or exc.errno not in WRITE_ERRNOS or not exc.filename:
        return None
    return (f"cannot write {exc.filename}: {WRITE_ERRNOS[exc.errno]}; choose another folder (run_dir=..., "
            "--output, -o, NNZOO_HOME=...) or make it writable")


def main(argv: list[str] | None = None) -> int:
    """Run one command.  Every failure ends as one line on stderr: exit 2 for input errors (the line names the
    file or key and the fix), 1 for anything unexpected; ``--debug`` or ``NNZOO_DEBUG=1`` shows tracebacks."""
    import os
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    parser = build_parser()
    words, overrides = _intermixed(parser, [a for a in argv if a != "--debug"])  # --debug anywhere on the line
    args = parser.parse_args(words)
    if overrides and not hasattr(args, "overrides"):
        parser.error(f"unrecognized arguments: {' '.join(overrides)} (`nnzoo {args.command}` takes no key=value)")
    if overrides:
        args.overrides = [*args.overrides, *overrides]
    try:
        with _sigint_seen() as seen:
            try:
                return args.func(args)
            except SystemExit:
                if seen[0]:  # Lightning turns Ctrl-C during fit into sys.exit(1); the run stays resumable
                    raise KeyboardInterrupt from None
                raise
    except NnzooError as exc:
        if debug:
            raise
        print(f"nnzoo: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nnzoo: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug or an input nnzoo does not check yet: still one line, results kept
        if debug:
            raise
        if _write_error(exc):
            print(f"nnzoo: error: {_write_error(exc)}", file=sys.stderr)
            return 2
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        print(f"nnzoo: error: unexpected {type(exc).__name__}: {first} (run again with --debug or "
              f"{DEBUG_ENV}=1 for the traceback, and please report it)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
