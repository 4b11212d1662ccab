"""Where the stream JVM's time goes: a Java Flight Recorder recording of the stream job, split by stage and part.

``python -m bench.freshness_throughput --only kafka --jvm-profile`` records the stream's JVM while it drains the
backlog (JFR's ``profile`` settings: a stack sample of each running Java thread every 10-20 ms) and adds this split
to the results; ``python -m bench.jvm_profile FILE.jfr [--jvm-us N]`` prints it for any recording.

Each sample goes to the stage its task runs (the landing's write task, the hot query's two stages, or outside any
task: planning, py4j, listeners, class loading) and to the part nearest its leaf that ``PARTS`` names. JFR samples
Java code only: RocksDB's and zstd's native code and the garbage collector are not in the shares. With ``jvm_us``
(the JVM's measured CPU per event, ``cpu_per_event``) the shares are also shown as µs an event.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path


def recording_conf(path: Path) -> str:
    """The stream JVM's option that records it to ``path``, written at its exit (a ``LAKEHOUSE_SPARK_CONF`` entry)."""
    return (f"spark.driver.extraJavaOptions=-XX:StartFlightRecording=filename={path},settings=profile,"
            "dumponexit=true")


STAGES = (  # (stage, a frame of its task's stack), first match wins
    ("landing: Kafka, contract, Parquet files", re.compile(r"FileFormatWriter")),
    ("hot: shuffle read, de-duplication, collect to the driver", re.compile(r"collectAsArrowToPython|TransformWith")),
    ("hot: Kafka, contract, shuffle write", re.compile(r"ShuffleMapTask")),
    ("landing: rows sorted by folder (OPEN_FILES off, or exceeded)", re.compile(r"SortExec")),
    ("another task", re.compile(r"ResultTask")),
)
OUTSIDE = "outside tasks: planning, py4j, listeners, class loading"
PARTS = (  # (part, a frame's pattern), tried from the sample's leaf up
    ("Parquet encoding", r"org\.apache\.parquet|ParquetWriteSupport|ParquetOutputWriter"),
    ("date formatting", r"DateTimeFormatter|TimestampFormatter|DateFormatter"),
    ("sort", r"UnsafeExternalRowSorter|UnsafeExternalSorter|UnsafeInMemorySorter|UnsafeSorterSpill"),
    ("de-duplication state (RocksDB)", r"rocksdb|RocksDB|StateStore|MapStateImpl|TimerStateImpl|StateEncoder"),
    ("de-duplication operator (rows to and from objects, keys)",
     r"FirstSeenByBucket|serializefromobject|deserializetoobject|ExpressionEncoder|GenericRow|createexternalrow"),
    ("Arrow to the driver (collect)", r"ArrowWriter|ArrowFieldWriter|ArrowConverters|arrow\.vector\.Base"),
    ("shuffle", r"ShuffleWriter|ShuffleBlockFetcher|ShuffleReader|UnsafeRowSerializer|DiskBlockObjectWriter|Murmur3"),
    ("the contract's Arrow in and out of Python",
     r"api\.python|PythonArrow|ArrowPythonRunner|MapInBatch|ArrowColumnVector|ColumnarBatchRow|ArrowBuf"),
    ("Kafka read", r"org\.apache\.kafka|KafkaDataConsumer|KafkaRecordToRow|KafkaBatchPartitionReader"),
    ("Spark's rows (projections, copies)", r"UnsafeProjection|UnsafeRowWriter|UnsafeWriter|copyMemory|GeneratedClass"),
    ("class loading", r"ClassLoader|ZipFile|JarFile|URLClassPath"),
)
_PARTS = [(name, re.compile(pattern)) for name, pattern in PARTS]
_FRAME = re.compile(r"^([\w$.<>/]+)\(")


def jfr_tool() -> str:
    """The JDK's ``jfr`` beside the ``java`` Spark runs (JAVA_HOME's, else the PATH's)."""
    java_home = os.environ.get("JAVA_HOME")
    java = Path(java_home) / "bin" / "java" if java_home else Path(shutil.which("java") or "java").resolve()
    tool = java.parent / "jfr"
    if not tool.exists():
        raise FileNotFoundError(f"no jfr tool beside {java}: a JDK (not a JRE) is needed to read the recording")
    return str(tool)


def wait_written(recording: Path, timeout_s: float = 60.0) -> None:
    """Until the exiting JVM has written ``recording`` (its size stops changing)."""
    deadline, size = time.monotonic() + timeout_s, -1
    while time.monotonic() < deadline:
        now = recording.stat().st_size if recording.exists() else -1
        if now > 0 and now == size:
            return
        size = now
        time.sleep(1.0)
    raise TimeoutError(f"the stream's JVM wrote no recording to {recording} within {timeout_s:.0f} s")


def samples(recording: Path) -> list[list[str]]:
    """Each execution sample's frames, leaf first."""
    text = subprocess.run([jfr_tool(), "print", "--events", "jdk.ExecutionSample", "--stack-depth", "256",
                           str(recording)], capture_output=True, text=True, check=True).stdout
    out: list[list[str]] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("jdk.ExecutionSample"):
            out.append([])
        elif out and (frame := _FRAME.match(stripped)):
            out[-1].append(frame.group(1))
    return out


def split(recording: Path, jvm_us: float | None = None) -> dict:
    """Shares of the recording's samples per stage, and per part within each stage (parts under 1 % of all left
    out)."""
    return {"recording": str(recording), **split_stacks(samples(recording), jvm_us)}


def split_stacks(stacks: list[list[str]], jvm_us: float | None = None) -> dict:
    """``split`` of the samples' stacks (frames leaf first)."""
    stages: Counter[str] = Counter()
    parts: Counter[tuple[str, str]] = Counter()
    for frames in stacks:
        joined = " ".join(frames)
        stage = next((name for name, pattern in STAGES if pattern.search(joined)), OUTSIDE)
        part = next((name for frame in frames for name, pattern in _PARTS if pattern.search(frame)), "other")
        stages[stage] += 1
        parts[(stage, part)] += 1
    total = max(1, len(stacks))

    def share(count: int) -> dict:
        return {"share": round(count / total, 3),
                **({"us_per_event": round(jvm_us * count / total, 2)} if jvm_us is not None else {})}

    return {"samples": len(stacks),
            "stages": {stage: {**share(count), "parts": {part: share(c) for (s, part), c in parts.most_common()
                                                         if s == stage and c / total >= 0.01}}
                       for stage, count in stages.most_common()}}


def printed(result: dict) -> str:
    lines = [f"{result['samples']:,} samples" + (f" of {result['recording']}" if "recording" in result else "")]
    for stage, figures in result["stages"].items():
        us = f" {figures['us_per_event']:5.2f} µs" if "us_per_event" in figures else ""
        lines.append(f"  {figures['share']:6.1%}{us}  {stage}")
        for part, f in figures["parts"].items():
            us = f" {f['us_per_event']:5.2f} µs" if "us_per_event" in f else ""
            lines.append(f"        {f['share']:6.1%}{us}  {part}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recording", type=Path)
    parser.add_argument("--jvm-us", type=float, help="the JVM's CPU per event, to show the shares as µs an event")
    parser.add_argument("--out", type=Path, help="also write the split there (JSON)")
    args = parser.parse_args()
    result = split(args.recording, args.jvm_us)
    print(printed(result))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"written to {args.out}")


if __name__ == "__main__":
    main()
