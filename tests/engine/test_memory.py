"""The memory policy of long runs: large tensors are their own mappings, never heap holes; kernel
caches stay bounded when every batch brings new shapes."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mxdna_cli.engine import memory

pytestmark = pytest.mark.skipif(memory._LIBC is None, reason="glibc only")

# In a fresh process: free a 20 MB block (glibc then raises its mmap threshold past 5 MB), then ask
# for 5 MB and see whether the heap top (sbrk(0)) moved, i.e. whether the heap served it.
PROBE = """
import ctypes, sys
from mxdna_cli.engine import memory
if sys.argv[1] == "bounded":
    memory.bound_heap()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = libc.sbrk.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.sbrk.argtypes = [ctypes.c_long]
libc.free(libc.malloc(20 << 20))
top = libc.sbrk(0)
block = libc.malloc(5 << 20)
print("heap" if libc.sbrk(0) - top >= 5 << 20 else "mapping")
"""


def served_by(mode: str, env: dict | None = None) -> str:
    return subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True,
                          env=env).stdout.strip()


def test_glibc_alone_puts_large_blocks_in_the_heap():
    # the behaviour the policy exists for; if glibc stops doing this the test below proves nothing
    assert served_by("default") == "heap"


def test_bound_heap_gives_large_blocks_their_own_mapping():
    assert served_by("bounded") == "mapping"


def test_a_users_own_threshold_is_left_in_force(monkeypatch):
    calls = []
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    monkeypatch.setattr(memory, "_bounded", False)
    monkeypatch.setattr(memory, "_LIBC", type("Libc", (), {"mallopt": lambda *a: calls.append(a)})())
    memory.bound_heap()
    assert calls == []


# In a fresh process: a convolution over 250 input lengths (as the learnt tokenizer gives batches of
# new token counts), resident memory in MiB after the first 50 and after all.
CONV_PROBE = """
import sys, torch
from mxdna_cli import runtime
from mxdna_cli.engine import memory
if sys.argv[1] == "bounded":
    memory.bound_memory()
if sys.argv[1] == "set_threads":  # what the CLI's --threads does: the caps must come before oneDNN reads them
    runtime.set_threads(1)
else:
    torch.set_num_threads(1)
conv = torch.nn.Conv1d(64, 64, 5, padding=2)
def rss():
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("VmRSS:"))
with torch.inference_mode():
    for n in range(300):
        if n == 50:
            start = rss()
        conv(torch.randn(2, 64, 100 + n))
        memory.release_freed_memory()
print((rss() - start) / 1024)
"""


def conv_growth_mib(mode: str) -> float:
    env = {k: v for k, v in os.environ.items() if k not in memory.KERNEL_CACHE_VARIABLES}
    return float(subprocess.run([sys.executable, "-c", CONV_PROBE, mode], capture_output=True, text=True,
                                check=True, env=env).stdout)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="a torch build without oneDNN")
def test_kernel_caches_stop_growing_with_new_shapes():
    # torch's own caches keep a compiled kernel per shape (about 0.1 MiB each here): the reason for the cap
    assert conv_growth_mib("default") > 10
    assert conv_growth_mib("bounded") < 3
    assert conv_growth_mib("set_threads") < 3


def test_a_users_own_kernel_cache_sizes_are_left_in_force(monkeypatch):
    monkeypatch.setenv("LRU_CACHE_CAPACITY", "7")
    monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", raising=False)
    memory.bound_kernel_caches()
    assert os.environ["LRU_CACHE_CAPACITY"] == "7"
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == str(memory.KERNEL_CACHE_CAPACITY)


HUGE_PAGE_PROBE = """
import torch
from mxdna_cli.runtime import set_threads
set_threads(1)
x = torch.empty(64 * 1024 * 1024 // 4).fill_(1.0)  # a 64 MiB tensor, touched
with open("/proc/self/smaps") as handle:
    print(sum(int(line.split()[1]) for line in handle if line.startswith("AnonHugePages:")))
"""


def anonymous_huge_page_kib(**env: str) -> int:
    base = {k: v for k, v in os.environ.items() if k != memory.HUGE_PAGES_VARIABLE}
    return int(subprocess.run([sys.executable, "-c", HUGE_PAGE_PROBE], capture_output=True, text=True,
                              check=True, env={**base, **env}).stdout)


def transparent_huge_pages() -> str:
    try:
        modes = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return "absent"
    return modes.split("[", 1)[1].split("]", 1)[0]


@pytest.mark.skipif(transparent_huge_pages() not in ("madvise", "always"), reason="no transparent huge pages here")
def test_large_tensors_get_huge_pages_once_a_model_would_load():
    # torch reads its setting at its first large tensor: set_threads (before every model load) sets it
    assert anonymous_huge_page_kib() >= 32 * 1024


@pytest.mark.skipif(transparent_huge_pages() != "madvise", reason="huge pages only on request here")
def test_a_users_own_huge_page_setting_is_left_in_force():
    assert anonymous_huge_page_kib(**{memory.HUGE_PAGES_VARIABLE: "0"}) == 0
