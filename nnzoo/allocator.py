"""CPU allocator tuning for training processes.

Message passing allocates and frees many tensors of ``edges x hidden`` floats
(tens of MB) every step.  glibc serves allocations that large with fresh
``mmap`` pages and unmaps them on free, so every step pays page faults for all
of them again, which is expensive in VMs.  Keeping them on the heap (no mmap,
no trimming) is process-wide, so ``nnzoo fit`` applies it but no layer depends on it: the chunked CPU
kernels (``nnzoo/models/layers/fused.py``) keep NG-GNN's per-network cost within 17% from batch 64 to 256
without it (the plain path: 36%).  With it the cost is flat, 17-19% lower at batch 128 and up, for 27-29%
more peak memory (freed blocks stay with the process); ``benchmarks/speed.py --scaling`` measures both.
Set ``NNZOO_MALLOC_TUNING=0`` to leave malloc alone.
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
