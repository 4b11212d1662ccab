"""Restatements never make dashboards go backwards, under load (issue: "numbers you can trust").

Events are posted through the API at ≥ 2,000 events/s (acknowledged, ``sync=true``): most on time,
in the current hour, and a tenth already later than the watermark, in the last complete hour (they
reach only the landing, so only a restatement counts them). Meanwhile the batch layer runs as it
does in production, in process: the hourly schedule's request for the last complete hour, the
late-landing sensor (whose requests are run), a manual backfill of the last complete hour, and a
manual run of the current, open hour, which must refuse. A thread reads every hour's counts of the
tenant from the hot tier once a second (``rollups_1m``, ``rollups_1h``, ``events_raw``): no count may
ever go down. After the load, once the speed layer has caught up and the last complete hour is
restated once more, every hour equals the ground truth.

Before the load the current hour is archived and restated once (tagged ``lakehouse/allow_open_hour``,
with nothing of the tenant in flight), so that during the load its landing receives files its
archive lacks: exactly the state in which the sensor used to re-restate a filling hour every minute.

A second test shows the restatement's guard on its own: a staged hour that lacks an event the live
hour counted is refused, naming the count, and the live hour is unchanged.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import dagster as dg
import httpx
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from batch.restate import RestatementRefused, restate_hour
from common.events import EVENT_ARROW_SCHEMA
from common.hot_store import FlightHotStore, HotStore
from common.lake import landing_files_by_hour
from common.rollups import minute_rollups
from common.settings import Settings
from demo.clickstream import Clickstream
from orchestration.archive.assets import raw_events_archive
from orchestration.automation import hourly_batch_schedule, late_landing_sensor
from orchestration.closed_hours import ALLOW_OPEN_HOUR_TAG
from orchestration.hours import LOAD_SETTINGS, floor_hour, last_complete_hour, partition_key
from orchestration.resources import lakehouse_resources
from orchestration.rollups.assets import rollups_hourly
from stack.services import Stack
from tests.integration.conftest import wait_for
from tests.integration.direct_hot import events_table, insert_events

pytestmark = pytest.mark.integration

RATE = 2_400  # events/s offered; the test asserts at least 2,000 acknowledged per second
MIN_LOAD_SECONDS = 15  # the load lasts this long at least, and until every batch run below ran under it
MAX_LOAD_SECONDS = 120  # a load nobody stopped ends by itself
MIN_SENSOR_TICKS = 2  # sensor ticks under load (each runs the restatements it requests, some 5 s)
CHUNK = 400  # events per POST
WORKERS = 3
LATE_SHARE = 0.1
TABLES = {
    "rollups_1m": "SELECT toUInt32(toStartOfHour(minute)) AS hour, sum(events) AS n FROM rollups_1m "
                  "WHERE tenant = {t:String} GROUP BY hour",
    "rollups_1h": "SELECT toUInt32(hour) AS hour, sum(events) AS n FROM rollups_1h WHERE tenant = {t:String} "
                  "GROUP BY hour",
    "events_raw": "SELECT toUInt32(toStartOfHour(toDateTime(timestamp))) AS hour, count() AS n FROM events_raw "
                  "WHERE tenant = {t:String} GROUP BY hour",
}


def _utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def hour_counts(hot: HotStore, tenant: str) -> dict[str, dict[datetime, int]]:
    """Per table, the tenant's events per hour as dashboards read them."""
    return {table: {_utc(r["hour"]): int(r["n"]) for r in hot.query_arrow(sql, {"t": tenant}).to_pylist()}
            for table, sql in TABLES.items()}


@dataclass
class Watcher:
    """Reads the tenant's per-hour counts once a second on its own thread and its own Flight client."""

    settings: Settings
    tenant: str
    samples: list[tuple[float, dict[str, dict[datetime, int]]]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        store = FlightHotStore.for_settings(self.settings, timeout_s=10)
        try:
            while not self._stop.is_set():
                try:
                    self.samples.append((time.monotonic(), hour_counts(store, self.tenant)))
                except Exception as exc:
                    self.errors.append(repr(exc))
                self._stop.wait(1.0)
        finally:
            store.close()

    def __enter__(self) -> Watcher:
        self._thread = threading.Thread(target=self.run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def decreases(self) -> list[str]:
        """Every (table, hour) whose count went down between two consecutive readings."""
        last: dict[tuple[str, datetime], int] = {}
        found = []
        for at, counts in self.samples:
            for table, hours in counts.items():
                for hour in set(hours) | {h for (t, h) in last if t == table}:
                    now, before = hours.get(hour, 0), last.get((table, hour), 0)
                    if now < before:
                        found.append(f"{table} {hour:%H}:00 {before} → {now} at +{at - self.samples[0][0]:.0f}s")
                    last[(table, hour)] = now
        return found


@dataclass
class Load:
    """Posts on-time and late events of one tenant at ``RATE`` until ``stop()`` (acknowledged only),
    from ``WORKERS`` clients at once, as many dashboards' sources would."""

    settings: Settings
    tenant: str
    late_hour: datetime
    truth: Counter = field(default_factory=Counter)  # hour → distinct acknowledged events
    sent: int = 0
    started: float = 0.0  # time.monotonic() when the clients started
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _finish: threading.Event = field(default_factory=threading.Event)

    def _worker(self, seed: int, started: float) -> None:
        stream = Clickstream(seed=seed, tenants=(self.tenant,), users_per_tenant=2_000)
        headers = {"Authorization": f"Bearer {self.settings.admin_key}"}
        rate, sent = RATE / WORKERS, 0
        with httpx.Client(base_url=self.settings.api_url, timeout=30, headers=headers) as client:
            while not self._finish.is_set() and (elapsed := time.monotonic() - started) < MAX_LOAD_SECONDS:
                ahead = sent + CHUNK - elapsed * rate
                if ahead > 0:
                    time.sleep(ahead / rate)
                now = datetime.now(UTC)
                n_late = int(CHUNK * LATE_SHARE)
                events = [e.body for e in stream.batch(CHUNK - n_late, now, disorder_s=20, duplicate_rate=0.0,
                                                       malformed_rate=0.0)]
                late_anchor = self.late_hour + timedelta(minutes=59)
                events += [e.body for e in stream.late_batch(n_late, late_anchor, timedelta(minutes=50))]
                try:
                    response = client.post("/events", json=events, params={"sync": "true"})
                    ok = response.status_code == 200 and response.json()["accepted"] == len(events)
                    problem = f"{response.status_code}: {response.text[:200]}"
                except httpx.HTTPError as exc:
                    ok, problem = False, repr(exc)
                with self._lock:
                    if not ok:
                        self.failures.append(problem)
                        continue
                    for event in events:
                        self.truth[floor_hour(datetime.fromisoformat(event["timestamp"]))] += 1
                    self.sent += len(events)
                sent += len(events)

    def run(self) -> None:
        self.started = started = time.monotonic()
        workers = [threading.Thread(target=self._worker, args=(97 + i, started), daemon=True) for i in range(WORKERS)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        self.seconds = time.monotonic() - started

    def __enter__(self) -> Load:
        self._thread = threading.Thread(target=self.run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ends the load and waits for its clients (their last requests are answered and counted)."""
        self._finish.set()
        self._thread.join()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def is_alive(self) -> bool:
        return self._thread.is_alive()


def landed_rows(settings: Settings, tenant: str, hour: datetime) -> int:
    total = 0
    for path in landing_files_by_hour(settings).get(hour, []):
        table = pq.read_table(path, columns=["tenant"])
        total += pc.sum(pc.equal(table.column("tenant"), tenant)).as_py() or 0
    return total


def run_hour(settings: Settings, instance: dg.DagsterInstance, hour: datetime,
             tags: dict[str, str] | None = None) -> dg.ExecuteInProcessResult:
    return dg.materialize([raw_events_archive, rollups_hourly], partition_key=partition_key(hour),
                          resources=lakehouse_resources(settings), instance=instance, tags=tags or {},
                          raise_on_error=False)


def failure_text(result: dg.ExecuteInProcessResult) -> str:
    return " | ".join(str(e.step_failure_data.error) for e in result.all_events if e.is_step_failure)


def sensor_requests(settings: Settings, instance: dg.DagsterInstance, cursor: str | None) -> dg.SensorResult:
    resources = lakehouse_resources(settings)
    with dg.build_sensor_context(  # a context manager: the hot-store resource is torn down after the tick
            instance=instance, cursor=cursor,
            resources={"lakehouse": resources["lakehouse"], "hot_store": resources["hot_store"]}) as context:
        result = late_landing_sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def test_hour_counts_never_decrease_while_the_schedule_the_sensor_and_a_backfill_run_under_load(
    stack: Stack, api: httpx.Client, hot: HotStore, settings: Settings, tenant: str
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    impatient = settings.model_copy(update={"batch_open_hour_wait_seconds": 2.0})
    now = datetime.now(UTC)
    current, last_complete = floor_hour(now), last_complete_hour(LOAD_SETTINGS, now)

    # Warm-up: the current hour gets events, fully landed, and an archive (the sensor's starting point).
    warmup = [e.body for e in Clickstream(seed=5, tenants=(tenant,)).batch(
        1_000, now, disorder_s=20, duplicate_rate=0.0, malformed_rate=0.0)]
    assert api.post("/events", json=warmup, params={"sync": "true"}).json()["accepted"] == len(warmup)
    warm_truth = Counter(floor_hour(datetime.fromisoformat(e["timestamp"])) for e in warmup)
    wait_for(lambda: sum(landed_rows(settings, tenant, h) for h in warm_truth) >= len(warmup), 90,
             "the warm-up events in the landing")
    wait_for(lambda: hour_counts(hot, tenant)["events_raw"] == dict(warm_truth), 90, "the warm-up in the hot tier")
    for hour in warm_truth:
        primed = run_hour(settings, instance, hour, {ALLOW_OPEN_HOUR_TAG: "true"})
        assert primed.success, failure_text(primed)
    cursor = sensor_requests(settings, instance, None).cursor

    load = Load(settings, tenant, last_complete)
    timings: dict[str, float] = {}
    with Watcher(settings, tenant) as watcher, load:
        time.sleep(3)

        # 1. the hourly schedule's tick: it asks for the last complete hour, which is closed, and restates it (the
        # tick is due at the test's start, from which that hour was derived: a clock passing the schedule's minute
        # during the warm-up would otherwise make the tick ask for the hour after it)
        tick = dg.build_schedule_context(instance=instance, scheduled_execution_time=now)
        request = hourly_batch_schedule(tick)
        assert isinstance(request, dg.RunRequest) and request.partition_key == partition_key(last_complete)
        started = time.monotonic()
        scheduled = run_hour(settings, instance, last_complete, dict(request.tags))
        timings["schedule run"] = time.monotonic() - started
        assert scheduled.success, failure_text(scheduled)

        # 2. the manual run of the open current hour refuses and says why; nothing is swapped
        started = time.monotonic()
        refused = dg.materialize([raw_events_archive, rollups_hourly], partition_key=partition_key(current),
                                 resources=lakehouse_resources(impatient), instance=instance, raise_on_error=False)
        timings["refused open hour"] = time.monotonic() - started
        assert not refused.success and "is still open" in failure_text(refused), failure_text(refused)

        # 3. the sensor: the open current hour has landing files its archive lacks, yet it is not requested.
        # It ticks every 2 s until the load has lasted MIN_LOAD_SECONDS, MIN_SENSOR_TICKS times at least, the
        # backfill (4.) ran, and so did a run the sensor requested (the late events of the last complete hour keep
        # landing, so a tick after the next landing commit asks for it): the load lasts as long as these runs need,
        # not a fixed time, and every kind of batch run has run under it whatever the machine's speed.
        sensed: list[str] = []
        ticks = 0
        while not ("backfill" in timings and ticks >= MIN_SENSOR_TICKS and sensed
                   and time.monotonic() - load.started >= MIN_LOAD_SECONDS):
            assert load.is_alive(), f"the load ended after {MAX_LOAD_SECONDS}s, before the batch runs under it"
            result = sensor_requests(settings, instance, cursor)
            ticks += 1
            cursor = result.cursor
            for req in result.run_requests or []:
                assert req.partition_key != partition_key(current), "the sensor requested the open hour"
                sensed.append(req.partition_key)
                ran = run_hour(settings, instance, datetime.strptime(req.partition_key, "%Y-%m-%d-%H:%M")
                               .replace(tzinfo=UTC), dict(req.tags))
                assert ran.success, failure_text(ran)
            # 4. a manual backfill of the last complete hour, while events of it keep landing
            if "backfill" not in timings:
                started = time.monotonic()
                backfill = run_hour(settings, instance, last_complete)
                timings["backfill"] = time.monotonic() - started
                assert backfill.success, failure_text(backfill)
            time.sleep(2)
        load.stop()
        rate = load.sent / load.seconds
        runs = ", ".join(f"{k} {v:.1f}s" for k, v in timings.items())
        print(f"load: {load.sent:,} events acknowledged in {load.seconds:.1f}s = {rate:,.0f} events/s; "
              f"{ticks} sensor ticks under load requested {sensed or 'nothing'}; batch runs: {runs}")
        assert not load.failures, load.failures[:3]
        assert rate >= 2_000

        # After the load: the speed layer catches up with the on-time hours; the last complete hour is
        # restated once more with every late event landed.
        truth = load.truth + warm_truth
        on_time = {h: n for h, n in truth.items() if h != last_complete}
        wait_for(lambda: {h: n for h, n in hour_counts(hot, tenant)["rollups_1m"].items() if h in on_time} == on_time,
                 300, "the speed layer to count every on-time event", interval=2)  # the session's stream reads
        # at most 64 Kafka records per micro-batch (tests/integration/conftest.py): the load leaves it a backlog
        wait_for(lambda: landed_rows(settings, tenant, last_complete) >= truth[last_complete], 60,
                 "the late events in the landing")
        final = run_hour(settings, instance, last_complete)
        assert final.success, failure_text(final)
        time.sleep(1.5)  # one more reading after the last swap

    assert not watcher.errors, watcher.errors[:3]
    assert len(watcher.samples) >= MIN_LOAD_SECONDS
    assert watcher.decreases() == []
    counts = hour_counts(hot, tenant)
    for table in TABLES:
        assert counts[table] == dict(truth), table
    print(f"{len(watcher.samples)} readings of {len(truth)} hours, none decreased; final counts "
          f"{ {f'{h:%H}:00': n for h, n in sorted(truth.items())} }")


def others_in_hour(hot: HotStore, tenant: str, hour: datetime) -> pa.Table:
    """Rows other tests of the session wrote straight into ``hour`` of the hot tier, in the event schema."""
    columns = ", ".join(EVENT_ARROW_SCHEMA.names)
    rows = hot.query_arrow(f"SELECT {columns} FROM events_raw WHERE tenant != {{t:String}} "
                           "AND toStartOfHour(timestamp) = {h:DateTime64(3)}",
                           {"t": tenant, "h": hour.replace(tzinfo=None)})
    return rows.select(EVENT_ARROW_SCHEMA.names).cast(EVENT_ARROW_SCHEMA)


def test_a_swap_that_would_remove_a_counted_event_is_refused(hot: HotStore, settings: Settings, tenant: str) -> None:
    hour = floor_hour(datetime.now(UTC)) - timedelta(hours=53)  # an hour no other test writes
    counted = events_table(tenant, hour + timedelta(minutes=5), 5)
    insert_events(hot, counted)  # what the speed layer counted
    staged = pa.concat_tables([counted.slice(0, 3), events_table(tenant, hour + timedelta(minutes=7), 4)])
    before = hour_counts(hot, tenant)
    # other tests of the session may have written rows of other tenants straight into this hour of the hot tier:
    # the staged batch lacks those too, so the guard may count more than this tenant's two
    with pytest.raises(RestatementRefused, match=r"\d+ \(tenant, event_id\) pair\(s\)") as refused:
        restate_hour(hot, hour, minute_rollups(staged), staged, session_gap_minutes=settings.session_gap_minutes)
    assert refused.value.missing >= 2
    assert hour_counts(hot, tenant) == before  # live hour unchanged
    staging_left = hot.query_arrow("SELECT count() AS n FROM events_raw_restate WHERE tenant = {t:String}",
                                   {"t": tenant}).to_pylist()[0]["n"]
    assert staging_left == 0

    # with the counted events in it (and other tenants' rows of the hour, as the batch layer would carry them),
    # the same hour restates and only grows
    complete = pa.concat_tables([counted, staged.slice(3), others_in_hour(hot, tenant, hour)])
    restate_hour(hot, hour, minute_rollups(complete), complete, session_gap_minutes=settings.session_gap_minutes)
    assert hour_counts(hot, tenant)["rollups_1h"] == {hour: 9}

