"""CPU allocator tuning for training processes.

glibc serves allocations above its mmap threshold (at most 32 MiB) with fresh ``mmap`` pages and unmaps them
on free, so a training step that allocates such blocks pays page faults for all of them again every step,
which is expensive in VMs.  NG-GNN and NG-T do not depend on this switch: on CPU they run a batch as
sub-batches whose largest tensor stays under 24 MiB (``over_network_chunks`` in
``nnzoo/models/layers/fused.py``), so their per-network cost stays flat from batch 64 to 256 without it.
Other models still allocate large blocks (without it DWSNet's step takes 36-62% longer, NFN-NP's twice as
long), so ``nnzoo fit`` keeps it, for more peak memory (freed blocks stay with the process).  It is process-wide, so
no layer depends on it; ``benchmarks/speed.py --scaling`` measures both.  Set ``NNZOO_MALLOC_TUNING=0`` to
leave malloc alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_done = False


def keep_large_allocations_on_heap() -> bool:
    """Ask glibc to reuse freed memory instead of returning it to the OS; True if applied."""
    global _done
    if _done or os.environ.get("NNZOO_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux"):
        return _done
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, 2**30) == 1
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return False
    _done = bool(ok)
    return _done
