"""glibc's malloc arenas in the process that owns embedded chDB (the hot node).

glibc gives a thread that finds the heap busy an arena of its own, up to eight per core, and keeps what is freed
in an arena for that arena's later use. The hot node runs a couple of hundred threads (chDB's pools, Arrow Flight's
calls, the API's), so the freed memory parked across arenas grows as the threads take turns: measured under the
soak's load (2,000 events/s, 5 questions/s), glibc's free memory in its arenas went 8 → 20 MiB in eight minutes
and was still growing, against a flat 5–7 MiB with two arenas (docs/benchmarks.md, "Memory"). That growth is what
made the hot node's resident memory look like a slow leak.
"""

from __future__ import annotations

import ctypes
import functools
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # glibc's malloc.h


def limit_malloc_arenas(arenas: int) -> bool:
    """At most ``arenas`` glibc malloc arenas from now on (0: glibc's default); False where the C library has no
    ``mallopt`` (musl, macOS) or refused. Call it before the threads start: arenas already made stay."""
    if arenas <= 0:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        log.info("malloc arenas not limited: this C library has no mallopt")
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_ARENA_MAX, arenas) == 1


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


@functools.cache
def _mallinfo2() -> Callable[[], _MallInfo2] | None:
    try:
        function = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):
        return None
    function.argtypes, function.restype = [], _MallInfo2
    return function


def glibc_heap() -> dict[str, int]:
    """glibc's heap in bytes: ``in_use`` (allocated, mmapped blocks included) and ``free`` (held in its arenas for
    reuse, the part arenas park); empty where the C library has no ``mallinfo2`` (glibc < 2.33, musl, macOS).
    Python's objects, Arrow's buffers outside its own pool and the API's threads allocate here; chDB has its own
    allocator (jemalloc), whose figures come from the engine (``sql/clickhouse/queries/engine_memory.sql``)."""
    mallinfo2 = _mallinfo2()
    if mallinfo2 is None:
        return {}
    info = mallinfo2()
    return {"in_use": info.uordblks + info.hblkhd, "free": info.fordblks}
