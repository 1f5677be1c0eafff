"""The heap policy of long runs: large tensors are their own mappings, never heap holes."""

import subprocess
import sys

import pytest

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
