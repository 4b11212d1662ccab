import subprocess
import sys
import time

from bench.memory import BENCH, MemorySampler, slope_per_minute
from common.procfs import parse_status_rss_kib


def test_rss_is_read_from_the_status_file() -> None:
    assert parse_status_rss_kib("Name:\tpython\nVmPeak:\t  900 kB\nVmRSS:\t  123456 kB\nThreads:\t1\n") == 123456
    assert parse_status_rss_kib("Name:\tkthreadd\nState:\tS (sleeping)\n") is None  # kernel threads have none


def test_slope_is_growth_per_minute_and_zero_when_flat() -> None:
    assert slope_per_minute([(0, 100.0), (30, 101.0), (60, 102.0), (90, 103.0)]) == 2.0
    assert slope_per_minute([(0, 5.0), (60, 5.0), (120, 5.0)]) == 0.0
    assert slope_per_minute([(0, 5.0)]) == 0.0


def test_the_sampler_sees_a_child_process_s_memory_and_its_exit() -> None:
    # The child holds 80 MiB it touched for a moment: its peak must show at least that, and it is gone at the end.
    script = "import time; b = bytearray(80 * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(1.5)"
    child = subprocess.Popen([sys.executable, "-c", script])
    with MemorySampler(interval_s=0.1) as memory:
        child.wait()
        time.sleep(0.3)
    report = memory.report()
    mine = [p for p in report["processes"] if f"pid {child.pid} " in p["process"]]
    assert len(mine) == 1 and mine[0]["service"] == BENCH
    assert mine[0]["peak_mib"] >= 80 and not mine[0]["running_at_end"]
    ours = [p for p in report["processes"] if p["running_at_end"] and p["service"] == BENCH]
    # rounding only: the total and each process are rounded to 0.1 MiB apart, so up to 0.05 each may differ
    assert abs(report["services"][BENCH]["end_mib"] - sum(p["end_mib"] for p in ours)) <= 0.05 * (len(ours) + 1) + 1e-6
    assert report["services"][BENCH]["peak_mib"] >= mine[0]["peak_mib"]


def test_flatness_fits_after_the_warm_up_and_judges_growth_per_hour() -> None:
    from bench.soak import flatness

    warm_then_flat = [(0, 100 * 1024), (60, 400 * 1024)] + [(120 + 60 * k, 500 * 1024) for k in range(10)]
    flat = flatness(warm_then_flat, warmup_s=120, flat_percent=5)
    assert flat["flat"] is True and flat["slope_mib_per_min"] == 0.0
    leaking = [(60 * k, (500 + 2 * k) * 1024) for k in range(10)]  # 2 MiB/min of ~510 MiB: 24 %/hour
    leak = flatness(leaking, warmup_s=0, flat_percent=5)
    assert leak["flat"] is False and leak["slope_mib_per_min"] == 2.0
    assert flatness(leaking[:2], warmup_s=0, flat_percent=5)["flat"] is None


SMAPS = """\
55c4e441d000-55c4e7800000 rw-p 00000000 00:00 0                          [heap]
Size:              53248 kB
Rss:               51800 kB
Pss:               51800 kB
VmFlags: rd wr mr mw me ac
7ff646a00000-7ff64f200000 rw-p 00000000 00:00 0
Size:             139264 kB
Rss:               38800 kB
VmFlags: rd wr mr mw me ac
7ff650000000-7ff650800000 rw-p 00000000 00:00 0
Size:               8192 kB
Rss:                  48 kB
7ff6aa680000-7ff6b2680000 r-xp 00400000 08:01 1234                       /venv/chdb/_chdb.abi3.so
Size:             131072 kB
Rss:              120000 kB
7ff6b2680000-7ff6b2700000 r--p 00000000 08:01 99                         /tmp/gone file (deleted)
Size:                512 kB
Rss:                 100 kB
"""


def test_smaps_mappings_are_read_and_grouped_by_what_they_hold() -> None:
    from bench.memory import mapping_group, mapping_totals
    from common.procfs import parse_smaps

    found = parse_smaps(SMAPS)
    assert [(m.start, m.size_kib, m.rss_kib, m.perms, m.path) for m in found] == [
        (0x55C4E441D000, 53248, 51800, "rw-p", "[heap]"), (0x7FF646A00000, 139264, 38800, "rw-p", ""),
        (0x7FF650000000, 8192, 48, "rw-p", ""), (0x7FF6AA680000, 131072, 120000, "r-xp", "/venv/chdb/_chdb.abi3.so"),
        (0x7FF6B2680000, 512, 100, "r--p", "/tmp/gone file (deleted)")]
    assert [mapping_group(m) for m in found] == [
        "[heap]", "anonymous rw-p 139,264 KiB", "anonymous rw-p 8,192 KiB", "file _chdb.abi3.so", "file gone file"]
    assert mapping_totals(found) == {"chdb library": 120000, "other files": 100, "[heap]": 51800,
                                     "thread stacks": 48, "other anonymous": 38800}


def test_growth_is_told_by_group_and_by_region() -> None:
    from bench.memory import mapping_growth, region_growth
    from common.procfs import Mapping

    before = [Mapping(0x1000, 8192, 40, "rw-p", ""), Mapping(0x9000, 100, 50, "rw-p", "")]
    after = [Mapping(0x1000, 8192, 60, "rw-p", ""), Mapping(0x5000, 8192, 30, "rw-p", ""),
             Mapping(0x9000, 200, 2098, "rw-p", "")]  # the second region grew in size and pages
    groups = {g["group"]: g for g in mapping_growth(before, after)}
    assert groups["anonymous rw-p 8,192 KiB"] == {"group": "anonymous rw-p 8,192 KiB", "rss_delta_mib": 0.05,
                                                       "rss_mib": 0.1, "mappings_before": 1, "mappings_after": 2}
    first = region_growth(before, after)[0]
    assert first == {"region": "0x9000 rw-p anonymous", "rss_delta_mib": 2.0, "rss_mib": 2.0,
                     "size_mib_before": 0.1, "size_mib_after": 0.2}
