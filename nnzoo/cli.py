"""The ``nnzoo`` command line.

    nnzoo fit --model gnn --data mnist_inr [--trainer default] [key=value ...]
    nnzoo test --checkpoint runs/.../checkpoints/best.ckpt [key=value ...]
    nnzoo build --data mnist_inr [data.build.size=5000]
    nnzoo benchmark quick [--out DIR] [key=value ...]
    nnzoo predict --checkpoint gnn-mnist_inr path/to/inr.pth
    nnzoo predict --checkpoint gnn-mnist_inr_dilate path/to/inr.pth [--output DIR] [--force]
    nnzoo inr fit digit.png -o digit.pth [--invert] [--steps N] [--psnr-target DB] [--seed S] [--force]
    nnzoo export runs/mnist_inr-gnn/version_0 --name gnn-mnist_inr
    nnzoo list [models|data|checkpoints|configs] [--details]
    nnzoo config --model gnn --data mnist_inr [key=value ...]

``model=NAME``, ``data=NAME`` and ``trainer=NAME`` are accepted as positional
forms of the flags.  Errors caused by input print one line and exit with 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from rich.console import Console
from rich.table import Table

from nnzoo.errors import NnzooError

console = Console()
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
    if not args.model or not args.data:
        raise NnzooError("choose a model and a dataset, e.g. `nnzoo fit --model gnn --data mnist_inr` "
                         "(see `nnzoo list`)")
    return compose(args.model, args.data, args.trainer, overrides)


def cmd_fit(args: argparse.Namespace) -> int:
    from nnzoo.train import fit
    result = fit(_compose(args))
    _print_metrics(result.metrics, f"{result.metrics['model']} on {result.metrics['data']}")
    console.print(f"run folder: {result.run_dir}  (tensorboard --logdir {result.run_dir.parent})")
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    import lightning as L

    from nnzoo.config import apply_overrides, load_yaml
    from nnzoo.io import write_json
    from nnzoo.train import build_datamodule, load_task

    checkpoint = Path(args.checkpoint)
    if args.output and Path(args.output).is_dir():
        raise NnzooError(f"--output {args.output} is a folder; name a JSON file, e.g. {Path(args.output) / 'test.json'}")
    task = load_task(checkpoint)  # first: a damaged or code-carrying file is named as such
    run_config = checkpoint.parent.parent / "config.yaml"
    if not run_config.is_file():
        raise NnzooError(f"no config.yaml beside {checkpoint} (expected {run_config}); "
                         "test checkpoints from an nnzoo run folder")
    cfg = apply_overrides(load_yaml(run_config), args.overrides)
    datamodule = build_datamodule(cfg)
    trainer = L.Trainer(accelerator="cpu" if args.cpu else "auto", devices=1, logger=False,
                        enable_progress_bar=True)
    results = trainer.test(task, datamodule=datamodule, verbose=False)[0]
    metrics = {"checkpoint": str(checkpoint), **{k: float(v) for k, v in results.items()}}
    if args.output:
        write_json(args.output, metrics)
    _print_metrics(metrics, f"test of {checkpoint}")
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


def cmd_benchmark(args: argparse.Namespace) -> int:
    from nnzoo.benchmark import default_results_dir, load_suite, run_suite
    suite = load_suite(args.suite)
    out = Path(args.out) if args.out else default_results_dir(suite)
    for data, path in run_suite(suite, out, args.overrides).items():
        console.print(f"{data}: {path}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from nnzoo.zoo import export_run
    e = export_run(Path(args.run), args.name, Path(args.folder) if args.folder else None, force=args.force)
    console.print(f"exported {e.name}: {e.model} on {e.data}, {e.headline}, sha256 {e.sha256[:12]}...")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import json

    from nnzoo.zoo import edit_file, load_checkpoint_file, load_pretrained, predict_file
    source = Path(args.checkpoint)
    # a path: an exported .pt or a run's .ckpt; otherwise a name from checkpoints/manifest.json
    module = load_checkpoint_file(source) if source.is_file() else load_pretrained(args.checkpoint)
    editing = module.info.task == "editing"
    if not editing and (args.output or args.force):
        raise NnzooError(f"--output/--force are for editing checkpoints; '{args.checkpoint}' does "
                         f"{module.info.task} and writes nothing")
    for file in args.files:
        if editing:
            result = edit_file(module, Path(file), Path(args.output) if args.output else None, args.force)
        else:
            result = predict_file(module, Path(file), args.activation)
        print(json.dumps({"file": file, **result}), flush=True)  # JSON lines: easy to parse, never wrapped
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
    from nnzoo.progress import console as stderr
    from nnzoo.progress import progress_bar
    images = [Path(f) for f in args.images]
    targets = _inr_outputs(images, Path(args.output))
    existing = next((t for t in targets if t.exists()), None)
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
    from nnzoo.data import DATASETS
    from nnzoo.models import MODELS
    what = args.what
    if what in ("all", "models"):
        table = Table(title="models")
        for col in ("name", "params (mnist_inr)", "tasks", "CNNs", "mixed archs", "summary"):
            table.add_column(col)
        for name in MODELS.names():
            entry = MODELS.entry(name)
            m = entry.meta
            table.add_row(name, f"{_param_count(name):,}", ", ".join(m["tasks"]), _yes(m["conv"]),
                          _yes(m["heterogeneous"]), entry.summary)
        console.print(table)
    if what in ("all", "data"):
        table = Table(title="datasets")
        for col in ("name", "task", "summary"):
            table.add_column(col)
        for name in DATASETS.names():
            entry = DATASETS.entry(name)
            table.add_row(name, entry.meta.get("task", ""), entry.summary)
        console.print(table)
    if what in ("all", "checkpoints"):
        from nnzoo.zoo import list_pretrained
        table = Table(title="pretrained checkpoints (checkpoints/manifest.json)")
        for col in ("name", "model", "data", "params", "result", "nnzoo"):
            table.add_column(col)
        entries = list_pretrained()
        for e in entries:
            table.add_row(e.name, e.model, e.data, f"{e.num_parameters:,}", e.headline, e.nnzoo_version)
        console.print(table)
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


def _print_conventions(entries: list, details: bool) -> None:
    """The input each checkpoint expects: one line per entry, or the full cards with ``--details``."""
    from nnzoo.zoo import format_convention
    say = dict(markup=False, highlight=False, soft_wrap=True)  # cards hold brackets and long lines
    console.print("input conventions" + ("" if details else " (full cards: nnzoo list checkpoints --details)") + ":",
                  **say)
    for e in entries:
        console.print(f"  {e.name}: {e.convention_summary}", **say)
        if details and e.input_convention:
            console.print("\n".join(format_convention(e.input_convention, indent="      ")), **say)


def _predict_epilog() -> str:
    """The INR input convention, for ``nnzoo predict --help`` (from the same card the manifest stores)."""
    from nnzoo.data.weights import DataInfo
    from nnzoo.nets.spec import siren_spec
    from nnzoo.zoo import format_convention, input_convention
    card = input_convention(DataInfo("mnist_inr", "classification", 10, (siren_spec(),)))
    return "\n".join(["input convention of the mnist_inr checkpoints (gnn-mnist_inr, ...):",
                      *format_convention({k: v for k, v in card.items() if k != "target"}),
                      "every checkpoint's card (CNNs included): nnzoo list checkpoints --details"])


def _inr_fit_epilog() -> str:
    from nnzoo.data.builders.inr import InrBuildConfig
    r = InrBuildConfig()
    return (f"Defaults are the recipe of the built mnist_inr data: at most {r.steps} Adam steps (lr {r.lr:g}), "
            f"stopping at {r.psnr_target:g} dB, '{r.init}' initialisation. Python: "
            "nnzoo.data.siren_fit.fit_image(path_or_array).save('digit.pth').")


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
    table.add_column("value")
    for key, value in metrics.items():
        if isinstance(value, float):
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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nnzoo", description="Learning on neural-network weights.")
    parser.add_argument("--debug", action="store_true",
                        help=f"show Python tracebacks instead of one-line errors (also {DEBUG_ENV}=1)")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_selection(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", help="model name (nnzoo list models)")
        p.add_argument("--data", help="dataset name (nnzoo list data)")
        p.add_argument("--trainer", default="default", help="trainer config (zoo_configs/trainer)")
        p.add_argument("overrides", nargs="*", help="config overrides key=value, e.g. trainer.max_epochs=5")

    p = sub.add_parser("fit", help="train a model on a dataset, then test the best checkpoint")
    with_selection(p)
    p.set_defaults(func=cmd_fit)
    p = sub.add_parser("config", help="print the merged config of a run")
    with_selection(p)
    p.set_defaults(func=cmd_config)
    p = sub.add_parser("build", help="build (or locate) a dataset without training")
    p.add_argument("--data")
    p.add_argument("overrides", nargs="*")
    p.set_defaults(func=cmd_build, model=None, trainer="default")
    p = sub.add_parser("test", help="evaluate a checkpoint on the test split of its run's dataset")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--output", help="also write the metrics to this JSON file")
    p.add_argument("--cpu", action="store_true", help="force CPU")
    p.add_argument("overrides", nargs="*", help="overrides of the run's config, e.g. data.root=...")
    p.set_defaults(func=cmd_test)
    p = sub.add_parser("benchmark", help="run a benchmark suite (benchmarks/<suite>.yaml), resuming finished cells")
    p.add_argument("suite", help="suite name or path to a suite YAML")
    p.add_argument("--out", help="output folder (default benchmarks/results/<suite>)")
    p.add_argument("overrides", nargs="*", help="overrides applied to every cell, e.g. trainer.max_epochs=2")
    p.set_defaults(func=cmd_benchmark)
    p = sub.add_parser("predict", help="apply a pretrained checkpoint to your own networks (.pth state dicts)",
                       epilog=_predict_epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True,
                   help="pretrained name (nnzoo list checkpoints), an exported .pt or a run's .ckpt; only "
                        "named checkpoints are verified against the manifest's sha256, a file given by path "
                        "is only checked to hold tensors (no pickled code) and finite weights")
    p.add_argument("--activation", help="activation of the networks, when the checkpoint's data mixes them")
    p.add_argument("--output", help="editing checkpoints: folder for <name>.<dataset>.pth (the edited network, "
                                    "same state-dict format) and <name>.<dataset>.png (input | edited | target); "
                                    "default: next to each input")
    p.add_argument("--force", action="store_true", help="editing checkpoints: replace existing outputs")
    p.add_argument("files", nargs="+", help="state dicts of networks with the checkpoint's architecture")
    p.set_defaults(func=cmd_predict)
    p = sub.add_parser("inr", help="make INRs of your own images (nnzoo inr fit)")
    inr = p.add_subparsers(dest="inr_command", required=True)
    p = inr.add_parser("fit", help="fit a SIREN to each image, in the convention of the mnist_inr checkpoints",
                       description="Fit one SIREN (2-32-32-1, sine, w0 = 30, output + 0.5) per image on the public "
                                   "coordinate grid and save its state dict (seq.{i}.{weight,bias}) for "
                                   "`nnzoo predict --checkpoint gnn-mnist_inr OUT.pth`. Images are converted to "
                                   "grayscale, padded to a square and resized to 28x28. MNIST digits are white "
                                   "strokes on black: pass --invert for a dark drawing on light paper.",
                       epilog=_inr_fit_epilog)
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
    p.add_argument("--folder", help="checkpoint folder (default: the repository's checkpoints/)")
    p.add_argument("--force", action="store_true", help="replace an existing checkpoint of that name")
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("list", help="list models, datasets, checkpoints and configs")
    p.add_argument("what", nargs="?", default="all", choices=("all", "models", "data", "checkpoints", "configs"))
    p.add_argument("--details", action="store_true", help="with checkpoints: print each input-convention card")
    p.set_defaults(func=cmd_list)
    return parser


DEBUG_ENV = "NNZOO_DEBUG"


def main(argv: list[str] | None = None) -> int:
    """Run one command.  Every failure ends as one line on stderr: exit 2 for input errors (the line names the
    file or key and the fix), 1 for anything unexpected; ``--debug`` or ``NNZOO_DEBUG=1`` shows tracebacks."""
    import os
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    parser = build_parser()
    args, extra = parser.parse_known_args([a for a in argv if a != "--debug"])  # --debug anywhere on the line
    # argparse stops filling `overrides` at the first flag: `benchmark quick --out D threads=1` leaves
    # threads=1 over; key=value words after a flag are overrides all the same
    if extra and hasattr(args, "overrides") and all("=" in a and not a.startswith("-") for a in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.func(args)
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
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        print(f"nnzoo: error: unexpected {type(exc).__name__}: {first} (run again with --debug or "
              f"{DEBUG_ENV}=1 for the traceback, and please report it)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
