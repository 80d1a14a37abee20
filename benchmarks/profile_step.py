"""Where a training step's time goes: torch.profiler's operator table for one model's training step.

    python benchmarks/profile_step.py --models gnn transformer --batch-size 64           # CPU
    python benchmarks/profile_step.py --device cuda --batch-size 512 --out profile.txt   # GPU kernels

The step is the one ``benchmarks/speed.py`` times (default-config model, a batch of real-format SIRENs,
forward + backward + AdamW). Speed work starts from this table, not from guesses: it names the operators
(CPU) or kernels (CUDA) that hold the time, and how many times each runs per step (launch-bound or not).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import training_setup  # noqa: E402  (the very step the speed table times)


def profile_step(name: str, batch_size: int, device: str, bf16: bool, steps: int, rows: int) -> str:
    _, step = training_setup(name, batch_size, device, bf16)
    for _ in range(3):  # warm-up: allocator, cuDNN/cuBLAS heuristics
        step()
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        if cuda:
            torch.cuda.synchronize()
    key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    title = f"## {name}, batch {batch_size}, {device}{', bf16-mixed' if bf16 else ''}, {steps} steps"
    return f"{title}\n{prof.key_averages().table(sort_by=key, row_limit=rows)}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--models", nargs="*", default=["gnn", "transformer"])
    parser.add_argument("--bf16", action="store_true", help="also profile under bf16 autocast")
    parser.add_argument("--steps", type=int, default=5, help="profiled steps (after 3 warm-up steps)")
    parser.add_argument("--rows", type=int, default=25, help="operators shown, by self time")
    parser.add_argument("--out", help="also write the tables to this text file")
    args = parser.parse_args()
    tables = []
    for name in args.models:
        for bf16 in ([False, True] if args.bf16 else [False]):
            tables.append(profile_step(name, args.batch_size, args.device, bf16, args.steps, args.rows))
            print(tables[-1], flush=True)
    if args.out:
        Path(args.out).write_text("\n".join(tables))


if __name__ == "__main__":
    main()
