"""``nnzoo predict`` on many files: one forward per file vs. batches (issue 14, item 9).

    python benchmarks/predict_speed.py                    # 200 random SIRENs, gnn-mnist_inr (~30 s on 2 cores)
    python benchmarks/predict_speed.py --files 500 --checkpoint transformer-mnist_inr --batch-size 128

Writes N random SIREN state dicts (the public INR format) to a temporary folder, then times
``predict_file`` on each file against ``predict_files`` on the folder (reading included in both),
checks that both give the same answers and prints one line.  Nothing is written to the repository.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from nnzoo.inference import DEFAULT_BATCH_SIZE, predict_file, predict_files
from nnzoo.nets import siren_spec
from nnzoo.nets.functional import params_to_state_dict, siren_init
from nnzoo.pretrained import load_pretrained


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--checkpoint", default="gnn-mnist_inr")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    module = load_pretrained(args.checkpoint)
    spec = siren_spec()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for i, flat in enumerate(siren_init(args.files, spec, torch.Generator().manual_seed(0))):
            torch.save(params_to_state_dict(flat, spec), folder / f"inr_{i:05d}.pth")
        predict_files(module, [folder], batch_size=args.batch_size)  # warm-up (allocator, lazy imports)
        start = time.perf_counter()
        one_by_one = [predict_file(module, path) for path in sorted(folder.glob("*.pth"))]
        per_file = time.perf_counter() - start
        start = time.perf_counter()
        batched = predict_files(module, [folder], batch_size=args.batch_size)
        together = time.perf_counter() - start
    worst = max(abs(a["probabilities"][k] - b["probabilities"][k])
                for a, b in zip(one_by_one, batched) for k in a["probabilities"]) if "probabilities" in batched[0] \
        else max(abs(a["prediction"] - b["prediction"]) for a, b in zip(one_by_one, batched))
    same = all(a["prediction"] == b["prediction"] for a, b in zip(one_by_one, batched))
    print(f"{args.checkpoint}, {args.files} INR files, {torch.get_num_threads()} threads: one forward per file "
          f"{per_file:.2f} s, batches of {args.batch_size} {together:.2f} s ({per_file / together:.1f}x); "
          f"same predictions: {same}, largest probability difference {worst:.1e}")


if __name__ == "__main__":
    main()
