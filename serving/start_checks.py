"""What must hold before the API starts: checked by the supervisor of the workers too, which does not load the app."""

from __future__ import annotations

import ipaddress

from common.settings import Settings

LOCAL_ADMIN_KEY = Settings.model_fields["admin_key"].default


def is_loopback_host(host: str) -> bool:
    """Does binding ``host`` keep the API on this machine? (a name other than ``localhost`` counts as not)"""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def unsafe_start_reason(settings: Settings) -> str | None:
    """Why the API must not start with these settings, or None: the documented local admin key opens every
    tenant to anyone who read the README, so it is refused on any address other machines can reach."""
    if settings.admin_key == LOCAL_ADMIN_KEY and not is_loopback_host(settings.api_host):
        return (f"refusing to serve on {settings.api_host} with the documented local admin key: set "
                "LAKEHOUSE_ADMIN_KEY to a secret of your own (e.g. `openssl rand -hex 32`), or bind "
                "LAKEHOUSE_API_HOST to 127.0.0.1")
    return None
