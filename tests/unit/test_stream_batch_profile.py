"""bench.stream_batch_profile's split of Spark's event log: only the hot pool's jobs count, each stage's task
figures are summed, and the driver's time is what the batch took beyond its jobs."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

from bench.stream_batch_profile import batches_of, read_event_log, summarize


def job(job_id: int, pool: str, batch: int, stages: list[int], start: int, end: int) -> list[dict]:
    return [{"Event": "SparkListenerJobStart", "Job ID": job_id, "Submission Time": start, "Stage IDs": stages,
             "Properties": {"spark.scheduler.pool": pool, "streaming.sql.batchId": str(batch)}},
            {"Event": "SparkListenerJobEnd", "Job ID": job_id, "Completion Time": end}]


def stage(stage_id: int, name: str, tasks: list[tuple[int, int, int, int]], submitted: int) -> list[dict]:
    """``tasks``: (launch, finish, run ms, Python exec ms) each."""
    ends = [{"Event": "SparkListenerTaskEnd", "Stage ID": stage_id,
             "Task Info": {"Launch Time": launch, "Finish Time": finish,
                           "Accumulables": [{"Name": "time to execute Python code", "Update": str(python)}]},
             "Task Metrics": {"Executor Run Time": run, "Executor CPU Time": run * 1_000_000 // 2}}
            for launch, finish, run, python in tasks]
    done = {"Event": "SparkListenerStageCompleted",
            "Stage Info": {"Stage ID": stage_id, "Stage Name": f"{name} at NativeMethodAccessorImpl.java:0",
                           "Number of Tasks": len(tasks), "Submission Time": submitted,
                           "Completion Time": max(f for _, f, _, _ in tasks)}}
    return [*ends, done]


EVENTS = [
    *job(1, "hot", 7, [10, 11], start=1_000, end=1_300),
    *stage(10, "run", [(1_001, 1_200, 190, 150), (1_002, 1_150, 140, 100)], submitted=1_000),
    *stage(11, "call", [(1_210, 1_290, 75, 0)], submitted=1_205),
    *job(2, "landing", 3, [12], start=1_100, end=1_900),  # another query's job on the same cores: not counted
    *stage(12, "run", [(1_100, 1_900, 800, 700)], submitted=1_100),
    *job(3, "hot", 8, [13], start=2_000, end=2_100),
    *stage(13, "run", [(2_001, 2_099, 90, 60)], submitted=2_000),
]


def test_only_the_hot_pools_batches_are_split_by_stage() -> None:
    batches = batches_of(EVENTS)
    assert sorted(batches) == [7, 8]
    first = {s["name"]: s for s in batches[7]["stages"]}
    assert set(first) == {"run", "call"}
    assert (first["run"]["run_ms"], first["run"]["python_exec_ms"], first["run"]["tasks"]) == (330, 250, 2)
    assert first["run"]["cpu_ms"] == 165.0
    assert batches[7]["jobs"] == [(1_000, 1_300)]


def test_the_summary_gives_medians_and_the_drivers_time_outside_the_jobs() -> None:
    summary = summarize(batches_of(EVENTS), {7: 400.0, 8: 180.0})
    assert summary["batches"] == 2
    assert summary["jobs_wall_median_ms"] == 200.0  # jobs of 300 and 100 ms
    assert summary["driver_outside_jobs_median_ms"] == 90.0  # 400 - 300 and 180 - 100
    run = summary["stages"]["run (2 tasks)"]
    assert (run["wall_ms"], run["run_ms"], run["seen"]) == (200, 330, 1)
    assert summary["stages"]["run (1 tasks)"]["python_exec_ms"] == 60


def test_spark_4s_rolling_compressed_log_is_read(tmp_path: Path) -> None:
    folder = tmp_path / "eventlog_v2_local-1"
    folder.mkdir()
    lines = [json.dumps(e) for e in EVENTS]
    for n, part in enumerate((lines[:5], lines[5:]), start=1):
        with pa.output_stream(str(folder / f"events_{n}_local-1.zstd"), compression="zstd") as out:
            out.write(("\n".join(part) + "\n").encode())
    (folder / "appstatus_local-1").write_text("")
    assert read_event_log(tmp_path) == EVENTS
