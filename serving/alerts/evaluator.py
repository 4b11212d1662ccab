"""The alert evaluator: a background task of the serving process that judges every enabled rule each tick.

Each tick (``alert_interval_seconds``) it (1) takes the evaluator lease, so that of several API replicas
only one evaluates; (2) asks its query engine (hot tier, not the cache) for each rule's window(s) ending at the
last settled minute; (3) records state changes together with their notification in one insert; (4)
delivers every queued notification, recording each attempt; an undelivered one stays queued and is
tried again next tick.

Lease: a Redis key (``SET NX PX``) held by one replica and renewed by it each tick; if the holder dies,
another replica takes over when the lease runs out (``3 × interval``, at least 30 s). When Redis is down
every replica evaluates anyway: alerts keep working, at the risk of one duplicate notification per
replica for a transition seen in that time (receivers can drop duplicates by the notification ``id``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from redis.exceptions import RedisError

from common.hot_store import is_remote
from common.redis_clients import async_redis
from serving.alerts.rules import (
    FIRED,
    FIRING,
    OK,
    Rule,
    Verdict,
    Window,
    judge,
    judge_anomaly,
    new_incident_id,
    notification,
    rule_end,
    seasonal_windows,
    transition,
    windows,
)
from serving.alerts.store import AlertState, AlertStore, HistoryEntry
from serving.alerts.webhook import WebhookSender
from serving.analytics.kpis import KpiStore
from serving.background import cancelled
from serving.context import Serving
from serving.query.engine import QueryEngine
from serving.query.kpi import Kpi
from serving.query.spec import METRICS, build_spec
from serving.webhook_guard import EgressPolicy

log = logging.getLogger(__name__)

LEASE_KEY = "lakehouse:alerts:evaluator"
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class EvaluatorLease:
    """Which replica evaluates: the one holding a renewable Redis lease."""

    def __init__(self, redis_url: str, lease_seconds: float, key: str = LEASE_KEY) -> None:
        self._redis = async_redis(redis_url, timeout_s=0.5)
        self._ms = int(lease_seconds * 1000)
        self._key = key
        self.owner = uuid.uuid4().hex
        self.redis_down = False

    async def acquire(self) -> bool:
        """True when this replica should evaluate now (it holds the lease, or Redis cannot say)."""
        try:
            held = await self._redis.set(self._key, self.owner, nx=True, px=self._ms)
            if not held:
                held = bool(await self._redis.eval(_RENEW, 1, self._key, self.owner, self._ms))
            if self.redis_down:
                log.info("alert evaluator: Redis is back, the lease decides again")
            self.redis_down = False
            return bool(held)
        except RedisError as exc:
            if not self.redis_down:
                log.warning("alert evaluator: Redis unreachable (%s); evaluating without the lease "
                            "(several replicas may each notify once)", exc)
            self.redis_down = True
            return True

    async def release(self) -> None:
        with contextlib.suppress(RedisError):
            await self._redis.eval(_RELEASE, 1, self._key, self.owner)

    async def close(self) -> None:
        await self.release()
        await self._redis.aclose()


@dataclass
class TickReport:
    evaluated: int = 0
    transitions: list[tuple[str, str]] = field(default_factory=list)  # (rule id, FIRED | RESOLVED)
    delivered: int = 0
    failed_attempts: int = 0
    skipped: bool = False  # another replica holds the lease


class AlertEvaluator:
    def __init__(self, alerts: AlertStore, engine: QueryEngine, sender: WebhookSender, lease: EvaluatorLease,
                 *, interval_seconds: float, settle_seconds: float,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 counters: dict[str, int] | None = None, delivery_concurrency: int = 16,
                 kpis: KpiStore | None = None) -> None:
        self._alerts = alerts
        self._kpis = kpis
        self._engine = engine
        self._sender = sender
        self._lease = lease
        self.interval_seconds = interval_seconds
        self.settle_seconds = settle_seconds
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        # shared with /stats: alert_evaluations, alert_transitions, alert_deliveries, alert_delivery_failures
        self.counters = counters if counters is not None else {}
        self._delivery_slots = asyncio.Semaphore(delivery_concurrency)
        self.ticks = 0
        self.last_error = ""

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="alert-evaluator")

    async def stop(self) -> None:
        await cancelled(self._task)
        self._task = None
        await self._lease.close()
        await self._sender.close()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await self.tick()
                self.last_error = ""
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # one bad tick (hot store down…) must not end the loop
                self.last_error = str(exc)
                log.exception("alert evaluator tick failed; trying again next tick")
            self.ticks += 1
            await asyncio.sleep(max(0.0, self.interval_seconds - (loop.time() - started)))

    async def tick(self) -> TickReport:
        report = TickReport()
        if not await self._lease.acquire():
            report.skipped = True
            return report
        now = self._clock()
        rules = await asyncio.to_thread(self._alerts.all_rules)
        states = await asyncio.to_thread(self._alerts.states)
        by_key = {(r.tenant, r.id): r for r in rules}
        watched: dict[str, set[str]] = {}  # each tenant's KPIs that its rules watch, read once a tick
        for rule in rules:
            if rule.enabled and rule.metric not in METRICS:
                watched.setdefault(rule.tenant, set()).add(rule.metric)
        kpis: dict[str, dict[str, Kpi]] = {}
        if self._kpis is not None:
            kpis = {tenant: await asyncio.to_thread(self._kpis.named, tenant, names)
                    for tenant, names in watched.items()}
        changed: list[AlertState] = []
        history: list[HistoryEntry] = []
        for rule in rules:
            if not rule.enabled:
                continue
            state = states.get((rule.tenant, rule.id)) or AlertState(rule.tenant, rule.id)
            try:
                verdict, window = await asyncio.to_thread(self._judge, rule, now, kpis.get(rule.tenant, {}))
            except Exception as exc:  # a rule whose query fails must not stop the others
                log.warning("alert rule %s/%s not evaluated: %s", rule.tenant, rule.id, exc)
                continue
            report.evaluated += 1
            kind = transition(state.state, verdict)
            new = replace(state, evaluated_at=now, value=verdict.value, baseline=verdict.baseline)
            if kind is not None:
                incident = new_incident_id() if kind == FIRED else state.incident_id
                message = notification(rule, kind, incident, verdict, window, now)
                new = replace(new, state=FIRING if kind == FIRED else OK, incident_id=incident, since=now,
                              outbox=[*state.outbox, {"payload": message, "attempts": 0}])
                report.transitions.append((rule.id, kind))
                history.append(HistoryEntry(
                    rule.tenant, rule.id, "transition", new.state, incident, message["id"], verdict.value,
                    verdict.baseline, window.start, window.end, detail=message["text"], at=now))
            changed.append(new)
            states[(rule.tenant, rule.id)] = new
        # the state change and its queued notification are one row: written before anything is sent
        await asyncio.to_thread(self._alerts.put_states, changed)
        await asyncio.to_thread(self._alerts.add_history, history)
        await self._deliver([s for s in states.values() if s.outbox], by_key, report)
        for name, n in (("alert_evaluations", report.evaluated), ("alert_transitions", len(report.transitions)),
                        ("alert_deliveries", report.delivered), ("alert_delivery_failures", report.failed_attempts)):
            self.counters[name] = self.counters.get(name, 0) + n
        return report

    def _judge(self, rule: Rule, now: datetime, kpis: dict[str, Kpi]) -> tuple[Verdict, Window]:
        current, previous = windows(rule, rule_end(rule, now, self.settle_seconds))
        value = self._total(rule, current, now, kpis)
        if rule.condition.type == "anomaly":
            baselines = [self._total(rule, week, now, kpis) for week in seasonal_windows(rule, current)]
            return judge_anomaly(rule.condition, value, baselines), current
        baseline = self._total(rule, previous, now, kpis) if previous else None
        return judge(rule.condition, value, baseline), current

    def _total(self, rule: Rule, window: Window, now: datetime, kpis: dict[str, Kpi]) -> float | None:
        """The window's value; a window without events counts as 0 for a metric, and a KPI is its formula
        over zeros there (null for a ratio). A KPI deleted since the rule was made raises (not evaluated)."""
        spec = build_spec(rule.spec_input(window.start, window.end), now=now, kpis=kpis)
        rows = self._engine.run(rule.tenant, spec, now).rows
        if rows:
            value = rows[0][0]
            return None if value is None and spec.kpis else float(value or 0)
        if spec.kpis:
            return spec.kpis[0].value(dict.fromkeys(spec.kpis[0].metrics, 0))
        return 0.0

    async def _deliver(self, pending: list[AlertState], rules: dict[tuple[str, str], Rule],
                       report: TickReport) -> None:
        """Send every queued notification; rules are served side by side (a slow webhook delays only its own
        rule's messages), each rule's messages in order."""
        history: list[HistoryEntry] = []
        outcomes = await asyncio.gather(*(self._deliver_rule(s, rules.get((s.tenant, s.rule_id)), history, report)
                                          for s in pending))
        # the attempts are recorded before the outbox shrinks: whoever sees a message gone from it (a test, the rule's
        # state in the API) finds its deliveries in the history; a crash in between resends it, and records that too
        await asyncio.to_thread(self._alerts.add_history, history)
        await asyncio.to_thread(self._alerts.put_states, list(outcomes))

    async def _deliver_rule(self, state: AlertState, rule: Rule | None, history: list[HistoryEntry],
                            report: TickReport) -> AlertState:
        try:
            return await self._send_outbox(state, rule, history, report)
        except Exception:  # one rule's trouble must not keep the others' messages back
            log.exception("alert rule %s/%s: delivery failed; its outbox is kept for the next tick",
                          state.tenant, state.rule_id)
            return state

    async def _send_outbox(self, state: AlertState, rule: Rule | None, history: list[HistoryEntry],
                           report: TickReport) -> AlertState:
        left: list[dict] = []
        async with self._delivery_slots:
            for item in state.outbox:
                message = item["payload"]
                meta = message["alert"]
                base = {"tenant": state.tenant, "rule_id": state.rule_id, "state": meta["status"],
                        "incident_id": meta["incident_id"], "notification_id": message["id"]}
                if rule is None:  # the rule was deleted: nobody to tell
                    history.append(HistoryEntry(**base, kind="dropped", detail="rule deleted before delivery"))
                    continue
                attempts = await self._sender.send(rule.webhook_url, message, first_attempt=item["attempts"] + 1)
                for attempt in attempts:
                    kind = ("delivered" if attempt.delivered
                            else "rejected" if attempt.permanent_failure else "delivery_failed")
                    history.append(HistoryEntry(**base, kind=kind, attempt=attempt.number,
                                                http_status=attempt.status, detail=attempt.error))
                last = attempts[-1]
                if last.delivered:
                    report.delivered += 1
                    continue
                report.failed_attempts += len(attempts)
                if not last.permanent_failure:
                    left.append({"payload": message, "attempts": last.number})
        return replace(state, outbox=left)

def build_evaluator(serving: Serving, alerts: AlertStore) -> AlertEvaluator | None:
    """The evaluator of this serving process as configured (None when ``alert_interval_seconds`` is 0)."""
    settings = serving.settings
    if settings.alert_interval_seconds <= 0:
        return None
    # its own engine over the same hot store: alert queries are counted apart from dashboard queries in /stats
    # (alert_evaluations), and a rule only ever reads the hot tier's minute rollups
    engine = QueryEngine(serving.store, horizons=serving.engine.horizons,
                         timeout_seconds=settings.query_timeout_seconds, server_timeout=not is_remote(serving.store))
    return AlertEvaluator(
        alerts, engine,
        WebhookSender(settings.alert_webhook_timeout_seconds, settings.alert_webhook_attempts,
                      egress=EgressPolicy.from_settings(settings)),
        EvaluatorLease(settings.redis_url, lease_seconds=max(3 * settings.alert_interval_seconds, 30.0)),
        interval_seconds=settings.alert_interval_seconds, settle_seconds=settings.alert_settle_seconds,
        counters=serving.counters, kpis=serving.kpis,
    )
