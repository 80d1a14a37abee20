"""A picture of INR edits: test INRs of the built ``mnist_inr_dilate``, edited by the shipped checkpoints.

    python benchmarks/edit_examples.py                       # gnn- and transformer-mnist_inr_dilate
    python benchmarks/edit_examples.py --checkpoints gnn-mnist_inr_dilate --count 8

One row per test INR: its rendering, each checkpoint's edit (rendered, with its MSE to the target), and the
target (the source digit dilated 3x3, one iteration).  The dataset is rebuilt (or read from the cache) from
the recipe recorded in the first checkpoint, so the INRs are ones its training never saw.  Writes
``benchmarks/results/edits-mnist_inr_dilate.png`` (atomically).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from nnzoo.data import create_datamodule
from nnzoo.io import atomic_path
from nnzoo.pretrained import entry, load_pretrained

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoints", nargs="+", default=["gnn-mnist_inr_dilate", "transformer-mnist_inr_dilate"])
    parser.add_argument("--count", type=int, default=6, help="test INRs to show")
    parser.add_argument("--out", default=str(RESULTS / "edits-mnist_inr_dilate.png"))
    args = parser.parse_args()
    modules = [load_pretrained(name) for name in args.checkpoints]
    data = entry(args.checkpoints[0]).config["data"]
    dm = create_datamodule("mnist_inr_dilate", build=data["build"], source=data["source"])
    test = dm.split("test")
    picked = torch.linspace(0, len(test) - 1, args.count).round().long()  # spread over the (class-sorted) split
    batch = test.__getitems__(picked.tolist())
    h, w = dm.info.extra["image_size"]
    columns = [("input", modules[0].render(batch.specs, batch.params))]
    with torch.no_grad():
        for name, module in zip(args.checkpoints, modules):
            columns.append((name.split("-")[0], module.predict_scores(batch)))
    columns.append(("target (dilated digit)", batch.y))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(args.count, len(columns), figsize=(1.5 * len(columns), 1.5 * args.count + 0.3),
                             squeeze=False)
    for col, (title, images) in enumerate(columns):
        for row in range(args.count):
            ax = axes[row, col]
            ax.imshow(images[row].view(h, w).clamp(0, 1).numpy(), cmap="gray", vmin=0, vmax=1)
            mse = (images[row].clamp(0, 1) - batch.y[row]).pow(2).mean().item()
            ax.set_title(title if row == 0 else "", fontsize=7)
            ax.set_xlabel("" if col == len(columns) - 1 else f"MSE {mse:.3f}", fontsize=6)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    with atomic_path(Path(args.out)) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
