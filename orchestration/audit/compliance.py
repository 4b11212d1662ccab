"""Compliance in Dagster: the audit report as an asset, and a check that fails on any retention violation.

``compliance_audit_report`` runs the whole audit (``storage_tiers.compliance.audit_report.run_audit``: inventory
of every dataset per tier, the rules of ``storage_tiers/compliance/violations.py``, the audit log and its
verification) and publishes it as JSON and HTML under ``<lake>/audit/reports/`` (``latest.html`` is
the page to hand to an auditor). ``retention_compliance`` recomputes the violations itself, so it can
also be run alone from the UI, and fails with severity ERROR on any, the counts per kind as metadata.
Both run daily at 03:30 UTC, after the movers (01:30) and the purge (02:30).

A hot tier that cannot be reached does not stop the audit: the report says so and the check fails
with an ``inventory_incomplete`` violation, since nobody can vouch for data that was not inspected.
"""

# No `from __future__ import annotations`: Dagster reads the annotations at load time.

import dagster as dg

from common.hot_store import HotStore
from orchestration.resources import HotStoreResource, LakehouseResource
from orchestration.tiers.resources import TiersResource
from storage_tiers.compliance.audit_report import AuditReport, publish_report, run_audit
from storage_tiers.compliance.violations import KINDS

OWNERS = ["team:data-engineering"]


def _audit(lakehouse: LakehouseResource, tiers: TiersResource, hot_store: HotStoreResource) -> AuditReport:
    store: HotStore | None
    try:
        store, error = hot_store.store(), None
    except dg.Failure as exc:
        store, error = None, exc.description
    return run_audit(lakehouse.settings(), store, policy=tiers.policy(), log=tiers.audit(), as_of=tiers.instant(),
                     hot_error=error)


def _metadata(report: AuditReport) -> dict:
    counts = report.findings.counts()
    metadata: dict = {f"violations_{kind}": dg.MetadataValue.int(counts[kind]) for kind in KINDS}
    metadata |= {
        "compliant": dg.MetadataValue.bool(report.findings.ok),
        "violations_total": dg.MetadataValue.int(sum(counts.values())),
        "held_partitions": dg.MetadataValue.int(sum(h.partitions for h in report.findings.held)),
        "audit_log_verified": dg.MetadataValue.bool(report.log.ok),
        "audit_log_records": dg.MetadataValue.int(report.log.records),
        "as_of": dg.MetadataValue.timestamp(report.as_of),
    }
    if report.log.head:
        metadata["audit_log_anchor"] = dg.MetadataValue.json(report.log.head)
    if report.findings.violations:
        lines = [f"| {v.kind} | {v.code} | {v.dataset} | {v.tier or '*'} | {v.start or ''} | {v.end or ''} | "
                 f"{v.partitions} | {v.detail} |" for v in report.findings.violations[:50]]
        metadata["violations"] = dg.MetadataValue.md(
            "| kind | rule | dataset | tier | from | to | partitions | detail |\n|---|---|---|---|---|---|---|---|\n"
            + "\n".join(lines))
    inventory = [f"| {t.dataset} | {t.tier} | {len(t.partitions)} | {t.rows} | {t.bytes} | {t.error or ''} |"
                 for t in report.inventory.tiers]
    metadata["inventory"] = dg.MetadataValue.md(
        "| dataset | tier | partitions | rows | bytes | error |\n|---|---|---|---|---|---|\n" + "\n".join(inventory))
    return metadata


@dg.asset(
    group_name="audit",
    owners=OWNERS,
    description="The compliance report: every dataset per tier (partitions, rows, bytes, event-time range), the "
                "retention violations, legal holds and the verified audit log, as JSON and HTML in "
                "<lake>/audit/reports.",
)
def compliance_audit_report(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource, tiers: TiersResource, hot_store: HotStoreResource
) -> dg.MaterializeResult:
    report = _audit(lakehouse, tiers, hot_store)
    written = publish_report(lakehouse.settings(), report)
    context.log.info(f"compliance report: {'compliant' if report.findings.ok else 'NOT compliant'}; "
                     f"{report.findings.counts()}; written to {written['latest.html']}")
    metadata = _metadata(report)
    metadata["report_html"] = dg.MetadataValue.path(written["latest.html"])
    metadata["report_json"] = dg.MetadataValue.path(written["latest.json"])
    metadata["report_archive"] = dg.MetadataValue.path(next(v for k, v in written.items() if k.endswith(".html")))
    return dg.MaterializeResult(metadata=metadata)


@dg.asset_check(
    asset=compliance_audit_report,
    description="No data past retention (unless held), no gap inside retention, nothing in the wrong tier, every hot "
                "partition copied to warm, nothing purged still present, every tier readable, the audit log intact.",
)
def retention_compliance(
    lakehouse: LakehouseResource, tiers: TiersResource, hot_store: HotStoreResource
) -> dg.AssetCheckResult:
    report = _audit(lakehouse, tiers, hot_store)
    return dg.AssetCheckResult(
        passed=report.findings.ok, severity=dg.AssetCheckSeverity.ERROR, metadata=_metadata(report))


compliance_audit = dg.define_asset_job(
    "compliance_audit",
    selection=dg.AssetSelection.assets(compliance_audit_report),
    description="Publish the compliance report and run the retention compliance check.",
)


@dg.schedule(job=compliance_audit, cron_schedule="30 3 * * *", execution_timezone="UTC",
             default_status=dg.DefaultScheduleStatus.RUNNING)
def compliance_audit_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """At 03:30 UTC, after the movers and the purge: the compliance report and its check."""
    return dg.RunRequest(run_key=f"audit-{context.scheduled_execution_time.date()}")
