"""The ``tiers`` resource: the tier policy, the audit log and the "as of" instant the movers and the purge use.

``as_of`` is empty in production (the run's start); a backfill or a test sets it to run the tiering
"as of" another instant without touching any clock.
"""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
from pydantic import Field

from orchestration.resources import LakehouseResource
from storage_tiers.compliance.audit_log import AuditLog
from storage_tiers.policy import PolicyError, TierPolicy, load_policy


class TiersResource(dg.ConfigurableResource):
    """Policy (``LAKEHOUSE_TIER_POLICY``), audit log and the instant the tiering runs as of."""

    lakehouse: LakehouseResource
    as_of: str = Field(default="", description="ISO instant (UTC) to tier and purge as of; empty means now. "
                       "The purge refuses an instant in the future.")
    confirm_large_purge: bool = Field(
        default=False, description="Let one purge touch more than LAKEHOUSE_PURGE_MAX_SHARE of the lake's days.")

    def instant(self) -> datetime:
        if not self.as_of:
            return datetime.now(UTC)
        moment = datetime.fromisoformat(self.as_of.replace("Z", "+00:00"))
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)

    def policy(self) -> TierPolicy:
        try:
            return load_policy(self.lakehouse.settings())
        except PolicyError as exc:
            raise dg.Failure(description=str(exc)) from exc

    def audit(self) -> AuditLog:
        return AuditLog(self.lakehouse.settings())


def tiers_resources(settings: object | None = None, as_of: str = "",
                    confirm_large_purge: bool = False) -> dict[str, dg.ConfigurableResource]:
    """The ``tiers`` resource; with ``settings`` (a ``Settings``), pinned to them (tests, notebooks)."""
    lakehouse = LakehouseResource.from_settings(settings) if settings is not None else LakehouseResource()  # type: ignore[arg-type]
    return {"tiers": TiersResource(lakehouse=lakehouse, as_of=as_of, confirm_large_purge=confirm_large_purge)}
