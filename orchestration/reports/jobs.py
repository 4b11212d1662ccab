"""Scheduled reports in Dagster: a sensor finds the periods that are due, a job delivers one period.

* ``report_schedules_sensor`` reads every tenant's report schedules from the hot store at each tick and asks
  for one ``scheduled_report`` run per (schedule, period) that is due and not yet delivered on all of its
  channels. The run key is ``<schedule>:<period>``, so a Dagster instance launches each period once
  however often the sensor ticks or restarts.
* ``scheduled_report`` renders the dashboard over the period and sends it (``serving.services.reports``).
  Exactly-once does not rest on the run key (a re-execution from the UI, or a second daemon on another
  instance, has its own): every channel is claimed in the hot store first, and a channel already delivered
  or claimed by a live run is skipped. A transient failure (SMTP down, webhook 5xx) fails the step after its
  attempts and Dagster retries it (``RetryPolicy``, 3 times, backoff doubling); a permanent one (4xx, refused
  destination, rejected recipients) fails the run without retries. Every attempt is in the schedule's
  history (``GET /v1/reports/schedules/{id}/deliveries``) and the run's log.

A schedule's period is only the latest one due: a daemon that was down for days sends the latest report, not
every missed one.
"""

# No `from __future__ import annotations`: Dagster reads the annotations when the definitions load.

from datetime import date, timedelta

import dagster as dg

from orchestration.hours import LOAD_SETTINGS
from orchestration.reports.resources import ReportsResource
from orchestration.resources import HotStoreResource
from serving.reports.schedule_store import DeliveryLog, ScheduleStore
from serving.reports.schedules import ReportSchedule, ScheduleNotFound
from serving.services.reports import period_starting

OP = "deliver_scheduled_report"


class ReportPeriod(dg.Config):
    tenant: str
    schedule_id: str
    first_day: str  # YYYY-MM-DD in the schedule's zone: the period's first day


@dg.op(
    name=OP,
    retry_policy=dg.RetryPolicy(max_retries=3, delay=30, backoff=dg.Backoff.EXPONENTIAL),
    description="Render one period of a report schedule (PDF, CSV) and deliver it by email and/or webhook, once.",
)
def deliver_scheduled_report(context: dg.OpExecutionContext, config: ReportPeriod, reports: ReportsResource,
                             hot_store: HotStoreResource) -> dict:
    store = hot_store.store()
    service = reports.reports(store)
    try:
        schedule = service.schedules.get(config.tenant, config.schedule_id)
    except ScheduleNotFound:
        context.log.info(f"schedule {config.schedule_id} of {config.tenant} was deleted: nothing to send")
        return {"status": "schedule deleted"}
    period = period_starting(schedule, date.fromisoformat(config.first_day))
    done = service.deliver(schedule, period, context.run_id, note=context.log.info)
    summary = {o.channel: f"{o.status}: {o.detail}" for o in done.outcomes}
    context.add_output_metadata({"period": period.key, **summary})
    if done.transient_failures:
        failed = ", ".join(f"{o.channel} ({o.detail})" for o in done.transient_failures)
        raise Exception(f"report {schedule.id} for {period.key} not delivered by {failed}; the step is retried")
    if done.permanent_failures:
        failed = ", ".join(f"{o.channel} ({o.detail})" for o in done.permanent_failures)
        raise dg.Failure(description=f"report {schedule.id} for {period.key} cannot be delivered by {failed}: "
                         "fix the receiver and re-execute this run, or delete the schedule and create one with a "
                         "working destination",
                         allow_retries=False)
    return summary


@dg.job(description="Deliver one period of one report schedule (launched by report_schedules_sensor).")
def scheduled_report() -> None:
    deliver_scheduled_report()


def due_requests(schedules: list[ReportSchedule], sent: dict[tuple[str, str], set[str]], now) -> list[dg.RunRequest]:
    """A run request per schedule whose latest due period is not delivered on every channel yet."""
    requests = []
    for schedule in schedules:
        period = schedule.due_period(now)
        if period is None or set(schedule.channels) <= sent.get((schedule.id, period.key), set()):
            continue
        requests.append(dg.RunRequest(
            run_key=f"{schedule.id}:{period.key}",
            run_config={"ops": {OP: {"config": {"tenant": schedule.tenant, "schedule_id": schedule.id,
                                                "first_day": period.first_day.isoformat()}}}},
            tags={"lakehouse/report_schedule": schedule.id, "lakehouse/tenant": schedule.tenant,
                  "lakehouse/period": period.key, "lakehouse/trigger": "report-schedule"},
        ))
    return requests


@dg.sensor(
    job=scheduled_report,
    minimum_interval_seconds=LOAD_SETTINGS.report_sensor_interval_seconds,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Finds report schedules whose period is due and not yet delivered, and runs scheduled_report.",
)
def report_schedules_sensor(context: dg.SensorEvaluationContext, reports: ReportsResource,
                            hot_store: HotStoreResource) -> dg.SensorResult:
    now = reports.instant()
    store = hot_store.store()
    schedules = ScheduleStore(store).all()
    sent = DeliveryLog(store).sent_since(now - timedelta(days=15))
    requests = due_requests(schedules, sent, now)
    return dg.SensorResult(run_requests=requests, skip_reason=None if requests else
                           f"none of {len(schedules)} report schedule(s) has an undelivered period due")
