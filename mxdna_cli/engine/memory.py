"""Native memory under a genome-scale run: what keeps the peak resident size from growing with the
number of batches (the heap: glibc only, elsewhere no-ops; the kernel caches: any CPU build of torch).

A run is thousands of batches whose large tensors (activations of 4-40 MB) change size from batch
to batch: the learnt tokenizer decides how many tokens and units each batch has. glibc serves
allocations below its mmap threshold from the heap, and that threshold rises on its own up to
32 MiB once a large block is freed, so these tensors land in the heap, which fragments, and the
peak crept up with the genome (measured: 817, 901 and 1,157 MiB for a 1, 5 and 30 Mb track). Two
things keep the heap down (docs/benchmarks.md has the figures: about a fifth less peak memory, for
about a fifth more time, most of which huge pages take back), two more the kernel caches and
torch's huge pages:

- `bound_heap`: a fixed 4 MiB mmap threshold, so every large tensor is its own mapping, given
  back whole when freed, never a hole in the heap. The price is fresh pages for each such tensor.
  A user's own `MALLOC_MMAP_THRESHOLD_` is left in force.
- `release_freed_memory`: after every batch, the freed small pieces go back to the system.
- `bound_kernel_caches`: oneDNN (the convolution and bf16 matmul kernels of torch's CPU build) and
  ideep (its wrapper) each keep up to 1,024 compiled kernels, one per input shape, and the learnt
  tokenizer gives nearly every batch new shapes (its unit and token counts): memory grew about
  0.4 MiB a batch for hundreds of batches (`benchmarks/track_memory.py --trace`). Capped at
  `KERNEL_CACHE_CAPACITY`, enough for the shapes of one batch, it stays flat at no measured cost
  in time. The caps are environment variables that oneDNN reads once, when the thread count is
  set or the first kernel is built, so they are set before either (`runtime.set_threads`, which
  every model load calls, and the pipeline); a user's own values are left in force.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

MMAP_THRESHOLD = 4 * 1024 * 1024
KERNEL_CACHE_CAPACITY = 64
KERNEL_CACHE_VARIABLES = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")  # oneDNN, ideep
HUGE_PAGES_VARIABLE = "THP_MEM_ALLOC_ENABLE"  # torch's CPU allocator (c10/core/alloc_cpu.cpp), Linux only
_M_MMAP_THRESHOLD = -3  # mallopt parameter number (glibc malloc.h)


def _libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None
    except OSError:  # not glibc (macOS, musl): nothing to do
        return None


_LIBC = _libc()
_bounded = False


def bound_heap() -> None:
    """Serve every allocation of 4 MiB or more by its own mapping (once per process)."""
    global _bounded
    if _bounded or _LIBC is None or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return
    _LIBC.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    _bounded = True


def bound_kernel_caches() -> None:
    """Cap the kernel caches of oneDNN and ideep (see the module docstring); before the first batch."""
    for name in KERNEL_CACHE_VARIABLES:
        os.environ.setdefault(name, str(KERNEL_CACHE_CAPACITY))


def use_huge_pages() -> None:
    """Ask torch for transparent huge pages under its large tensors (see the module docstring)."""
    if sys.platform.startswith("linux"):
        os.environ.setdefault(HUGE_PAGES_VARIABLE, "1")


def before_first_allocation() -> None:
    """What the native libraries read once, at their first kernel or large tensor: the kernel
    caches' caps and torch's huge pages. Before the model is loaded."""
    bound_kernel_caches()
    use_huge_pages()


def bound_memory() -> None:
    """Everything above that is set once per process: the heap's mmap threshold, the kernel caches,
    huge pages."""
    bound_heap()
    before_first_allocation()


def release_freed_memory() -> None:
    """Give freed heap memory back to the system (after a batch: a few microseconds, measured)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
