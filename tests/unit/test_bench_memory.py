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
