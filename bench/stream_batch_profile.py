"""Where a hot micro-batch's time goes, from Spark's own event log.

A hot micro-batch took about a second at a steady rate whatever it held (17 Kafka records or 5,000 events), and
freshness is that plus the wait for the next trigger. The streaming progress only says "addBatch"; Spark's event log
has every job, stage and task of the batch. This bench runs the bench stack (as ``bench.soak``) with the event log
on, posts ``--rate`` events/s for ``--seconds``, and splits each hot batch (jobs of the ``hot`` scheduler pool) after
``--skip-seconds`` into:

* per stage: its wall time, tasks, and the tasks' run, CPU, deserialization, result-serialization and GC times, and
  Spark's Python-runner figures (the event contract's ``mapInArrow``);
* the time the batch's jobs did not cover: the driver's own work (planning, the Python ``foreachBatch``'s inserts
  into the hot node, the state's commit) between and after the jobs.

It found the Kafka fetch wait behind ``LAKEHOUSE_STREAM_KAFKA_FETCH_WAIT_MS`` (docs/benchmarks.md). Usage: ``python -m
bench.stream_batch_profile [--rate 5000] [--seconds 90] [--fresh] [--label x]``; figures printed and appended to
``bench/results/stream_batch_profile.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

RESULTS = Path(__file__).resolve().parent / "results" / "stream_batch_profile.json"


def read_event_log(folder: Path) -> list[dict[str, Any]]:
    """Every event of the newest application's log in ``folder``: a file, or Spark 4's rolling log (a folder of
    ``events_N_*`` files), compressed (zstd, Spark's default codec) or not, finished or still being written."""
    logs = sorted(folder.glob("*"), key=lambda p: p.stat().st_mtime)
    if not logs:
        raise SystemExit(f"no Spark event log in {folder}: did the stream start with spark.eventLog.enabled?")
    newest = logs[-1]
    parts = sorted(newest.glob("events_*"), key=lambda p: int(p.name.split("_")[1])) if newest.is_dir() else [newest]
    events = []
    for part in parts:
        codec = "zstd" if part.suffix == ".zstd" else None
        with pa.input_stream(str(part), compression=codec) as stream:
            text = stream.read().decode()
        for line in text.splitlines():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:  # the last line of a log still being written
                continue
    return events


def batches_of(events: list[dict[str, Any]], pool: str = "hot") -> dict[int, dict[str, Any]]:
    """Per streaming batch id of ``pool``'s jobs: their jobs' spans and their stages' task figures."""
    pool_of_stage: dict[int, str] = {}
    batch_of_stage: dict[int, int] = {}
    jobs: dict[int, dict[str, Any]] = {}
    stages: dict[int, dict[str, Any]] = {}
    for event in events:
        kind = event.get("Event")
        if kind == "SparkListenerJobStart":
            props = event.get("Properties") or {}
            job = event["Job ID"]
            stage_pool = props.get("spark.scheduler.pool", "default")
            batch = props.get("streaming.sql.batchId")
            jobs[job] = {"start": event["Submission Time"], "pool": stage_pool,
                         "batch": int(batch) if batch is not None else None}
            for stage in event.get("Stage IDs", []):
                pool_of_stage[stage] = stage_pool
                if batch is not None:
                    batch_of_stage[stage] = int(batch)
        elif kind == "SparkListenerJobEnd" and event["Job ID"] in jobs:
            jobs[event["Job ID"]]["end"] = event["Completion Time"]
        elif kind == "SparkListenerStageCompleted":
            info = event["Stage Info"]
            figures = stages.setdefault(info["Stage ID"], _empty_stage())
            figures.update(name=info["Stage Name"].split(" at ")[0], tasks=info["Number of Tasks"],
                           submitted=info.get("Submission Time"), completed=info.get("Completion Time"))
        elif kind == "SparkListenerTaskEnd":
            figures = stages.setdefault(event["Stage ID"], _empty_stage())
            metrics = event.get("Task Metrics") or {}
            info = event.get("Task Info") or {}
            figures["run_ms"] += metrics.get("Executor Run Time", 0)
            figures["cpu_ms"] += metrics.get("Executor CPU Time", 0) / 1e6
            figures["deserialize_ms"] += metrics.get("Executor Deserialize Time", 0)
            figures["result_serialize_ms"] += metrics.get("Result Serialization Time", 0)
            figures["gc_ms"] += metrics.get("JVM GC Time", 0)
            figures["fetch_wait_ms"] += (metrics.get("Shuffle Read Metrics") or {}).get("Fetch Wait Time", 0)
            figures["task_wall_ms"] += info.get("Finish Time", 0) - info.get("Launch Time", 0)
            figures["launches"].append(info.get("Launch Time", 0))
            accumulated = {a.get("Name"): a.get("Update") for a in info.get("Accumulables", [])}
            for name, key in PYTHON_FIGURES.items():
                figures[key] += int(accumulated.get(name) or 0)
    out: dict[int, dict[str, Any]] = {}
    for figures in jobs.values():
        if figures["pool"] != pool or figures["batch"] is None or "end" not in figures:
            continue
        batch = out.setdefault(figures["batch"], {"jobs": [], "stages": []})
        batch["jobs"].append((figures["start"], figures["end"]))
    for stage, batch in batch_of_stage.items():
        if pool_of_stage.get(stage) == pool and batch in out and stage in stages and stages[stage].get("completed"):
            out[batch]["stages"].append(stages[stage])
    return out


# Spark's Python runner's task metrics (the ``mapInArrow`` of the event contract) → our names
PYTHON_FIGURES = {"time to initialize Python workers": "python_init_ms",
                  "time to execute Python code": "python_exec_ms", "data sent to Python workers": "python_bytes_in"}


def _empty_stage() -> dict[str, Any]:
    return {"run_ms": 0, "cpu_ms": 0.0, "deserialize_ms": 0, "result_serialize_ms": 0, "gc_ms": 0,
            "fetch_wait_ms": 0, "task_wall_ms": 0, "launches": [], **dict.fromkeys(PYTHON_FIGURES.values(), 0)}


def stage_key(stage: dict[str, Any]) -> str:
    return f"{stage['name']} ({stage['tasks']} tasks)"


def summarize(batches: dict[int, dict[str, Any]], durations_ms: dict[int, float]) -> dict[str, Any]:
    """Medians over the batches of each part: stage walls and task figures, jobs' span, the driver's rest."""
    per_stage: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    spans, outside = [], []
    for batch_id, batch in batches.items():
        if not batch["jobs"]:
            continue
        covered = sum(e - s for s, e in batch["jobs"])
        spans.append(covered)
        if batch_id in durations_ms:
            outside.append(durations_ms[batch_id] - covered)
        for stage in batch["stages"]:
            figures = per_stage[stage_key(stage)]
            figures["wall_ms"].append(stage["completed"] - stage["submitted"])
            figures["first_launch_delay_ms"].append(min(stage["launches"] or [stage["submitted"]])
                                                    - stage["submitted"])
            for name in ("run_ms", "cpu_ms", "deserialize_ms", "result_serialize_ms", "gc_ms", "fetch_wait_ms",
                         "task_wall_ms", *PYTHON_FIGURES.values()):
                figures[name].append(stage[name])

    def median(values: list[float]) -> float:
        return round(statistics.median(values), 1) if values else 0.0

    return {
        "batches": len(spans),
        "batch_duration_median_ms": median([durations_ms[b] for b in batches if b in durations_ms]),
        "jobs_wall_median_ms": median(spans),
        "driver_outside_jobs_median_ms": median(outside),
        "stages": {key: {name: median(values) for name, values in figures.items()} | {"seen": len(figures["wall_ms"])}
                   for key, figures in sorted(per_stage.items())},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=int, default=5000, help="events/s posted")
    parser.add_argument("--seconds", type=float, default=90.0)
    parser.add_argument("--skip-seconds", type=float, default=30.0, help="batches before this are not counted")
    parser.add_argument("--fresh", action="store_true", help="wipe the bench stack's data first")
    parser.add_argument("--label", default="", help="a name for this run in the results file")
    args = parser.parse_args()

    from bench.freshness_throughput import bench_stack
    from bench.soak import Load

    repo = Path(__file__).resolve().parents[1]
    event_dir = repo / ".lakehouse" / "bench-spark-events"
    shutil.rmtree(event_dir, ignore_errors=True)
    event_dir.mkdir(parents=True)
    extra = os.environ.get("LAKEHOUSE_SPARK_CONF", "")
    os.environ["LAKEHOUSE_SPARK_CONF"] = ";".join(
        p for p in (extra, "spark.eventLog.enabled=true", f"spark.eventLog.dir=file://{event_dir}") if p)
    settings, stack = bench_stack(args.fresh)
    print("== starting the bench stack (Spark's event log on)")
    try:
        stack.up()
        print(f"== {args.rate:,} events/s for {args.seconds:g} s")
        started = datetime.now(UTC)
        with Load(settings, args.rate, qps=0) as load:
            time.sleep(args.seconds)
        from common.hot_store import FlightHotStore

        rows = FlightHotStore.for_settings(settings).query_arrow(
            "SELECT batch_id, duration_ms, finished_at FROM stream_progress WHERE query_name = 'hot' "
            f"AND input_rows > 0 AND finished_at >= toDateTime64('{started:%Y-%m-%d %H:%M:%S}', 3, 'UTC') "
            f"+ INTERVAL {int(args.skip_seconds)} SECOND").to_pylist()
        durations = {int(r["batch_id"]): float(r["duration_ms"]) for r in rows}
    finally:
        print("== stopping the bench stack")
        stack.down()
    batches = {b: v for b, v in batches_of(read_event_log(event_dir)).items() if b in durations}
    summary = summarize(batches, durations)
    result = {"benchmark": "stream_batch_profile", "label": args.label,
              "when": datetime.now(UTC).isoformat(timespec="seconds"),
              "command": f"python -m bench.stream_batch_profile --rate {args.rate} --seconds {args.seconds:g}",
              "events_sent": load.sent, "machine": {"cpus": os.cpu_count(),
                                                    "load_average_1_5_15": [round(x, 1) for x in os.getloadavg()]},
              **summary}
    print(f"== {summary['batches']} hot batches: median {summary['batch_duration_median_ms']} ms, "
          f"jobs {summary['jobs_wall_median_ms']} ms, driver outside the jobs "
          f"{summary['driver_outside_jobs_median_ms']} ms")
    for key, figures in summary["stages"].items():
        print(f"   {key}: {figures}")
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps([*previous, result], indent=2) + "\n")
    print(f"== written to {RESULTS}")


if __name__ == "__main__":
    main()
