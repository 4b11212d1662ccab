"""The hot node's cap on glibc malloc arenas: threads that allocate share at most the capped number of arenas.

Each case runs in a fresh interpreter (arenas, once made, stay for the process's life) with sixteen threads that
each allocate, and counts the arenas from glibc's own report (``malloc_info``): without the cap every such thread
gets an arena of its own, up to eight per core.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's arenas")

PROGRAM = """
import ctypes, sys, tempfile, threading
from common.malloc_arenas import limit_malloc_arenas
cap = int(sys.argv[1])
if cap:
    assert limit_malloc_arenas(cap)
ready, go = threading.Barrier(17), threading.Event()
kept = []
def work():
    ready.wait()
    go.wait()
    kept.append([bytearray(64 * 1024) for _ in range(4)])  # above pymalloc's sizes, below the mmap threshold
threads = [threading.Thread(target=work) for _ in range(16)]
for t in threads:
    t.start()
ready.wait()
go.set()
for t in threads:
    t.join()
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
with tempfile.NamedTemporaryFile("r") as out:
    fp = libc.fopen(out.name.encode(), b"w")
    libc.malloc_info(0, fp)
    libc.fclose(fp)
    print(out.read().count("<heap nr="))
"""


def _arenas(cap: int) -> int:
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", PROGRAM, str(cap)], cwd=repo, capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(repo)})
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip())


def test_capped_threads_share_the_capped_arenas() -> None:
    assert _arenas(2) <= 2


def test_without_the_cap_the_same_threads_spread_over_more_arenas() -> None:
    # the case above is only a measure of the cap if, uncapped, the same program makes more arenas
    assert _arenas(0) > 2


def test_no_cap_asked_changes_nothing() -> None:
    from common.malloc_arenas import limit_malloc_arenas

    assert limit_malloc_arenas(0) is False
