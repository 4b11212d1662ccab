"""``lakehouse tenants``: create and list tenants, issue, list and revoke their API keys.

It is a client of the admin API (``/v1/admin``, ``LAKEHOUSE_API_HOST``/``_PORT``) with the admin key
(``LAKEHOUSE_ADMIN_KEY``) rather than a writer of the tables: the API is the one place that validates,
hashes keys and drops its cached copy of the key table, and it works the same against a remote
deployment as against the local stack.

    lakehouse tenants create acme --name "Acme Inc."
    lakehouse tenants list
    lakehouse tenants disable acme
    lakehouse tenants key create acme [--rate 50 --burst 100 --role tenant]   # prints the key once
    lakehouse tenants key list acme
    lakehouse tenants key revoke lhk_0123456789ab
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import httpx

from common.settings import Settings
from common.terminal import print_table


def add_tenants_parser(sub: Any) -> None:  # argparse's _SubParsersAction
    p = sub.add_parser("tenants", help="tenants and API keys (through the admin API with LAKEHOUSE_ADMIN_KEY)")
    p.add_argument("--json", action="store_true", help="print the API's JSON answer")
    actions = p.add_subparsers(dest="tenants_action", required=True)
    c = actions.add_parser("create", help="create a tenant")
    c.add_argument("id", help="tenant id: letters, digits, '_', '.', '-'")
    c.add_argument("--name", default="", help="display name (default: the id)")
    actions.add_parser("list", help="list tenants")
    d = actions.add_parser("disable", help="disable a tenant: its keys stop working, its data is kept")
    d.add_argument("id")
    k = actions.add_parser("key", help="API keys of a tenant")
    key_actions = k.add_subparsers(dest="key_action", required=True)
    kc = key_actions.add_parser("create", help="issue a key (printed once: store it)")
    kc.add_argument("tenant")
    kc.add_argument("--role", choices=["tenant", "admin"], default="tenant")
    kc.add_argument("--rate", type=float, help="requests per second (default LAKEHOUSE_RATE_LIMIT_PER_SECOND)")
    kc.add_argument("--burst", type=int, help="requests at once (default LAKEHOUSE_RATE_LIMIT_BURST)")
    kl = key_actions.add_parser("list", help="list a tenant's keys (prefixes only)")
    kl.add_argument("tenant")
    kr = key_actions.add_parser("revoke", help="revoke a key by its prefix")
    kr.add_argument("prefix")
    p.set_defaults(func=cmd_tenants)


def _request(args: argparse.Namespace) -> tuple[str, str, dict[str, Any] | None]:
    action = args.tenants_action
    if action == "create":
        return "POST", "/v1/admin/tenants", {"id": args.id, "name": args.name}
    if action == "list":
        return "GET", "/v1/admin/tenants", None
    if action == "disable":
        return "DELETE", f"/v1/admin/tenants/{args.id}", None
    if args.key_action == "create":
        body = {"role": args.role, "rate_per_second": args.rate, "burst": args.burst}
        return "POST", f"/v1/admin/tenants/{args.tenant}/keys", {k: v for k, v in body.items() if v is not None}
    if args.key_action == "list":
        return "GET", f"/v1/admin/tenants/{args.tenant}/keys", None
    return "DELETE", f"/v1/admin/keys/{args.prefix}", None


def cmd_tenants(args: argparse.Namespace, settings: Settings) -> int:
    from serving.tenancy.auth import bearer_headers

    method, path, body = _request(args)
    try:
        with httpx.Client(base_url=settings.api_url, timeout=30, headers=bearer_headers(settings.admin_key)) as client:
            response = client.request(method, path, json=body)
    except httpx.TransportError as exc:
        print(f"error: the API is not reachable at {settings.api_url} ({exc}); start it with `lakehouse stack up` "
              "or set LAKEHOUSE_API_HOST/LAKEHOUSE_API_PORT", file=sys.stderr)
        return 1
    try:
        answer = response.json()
    except ValueError:
        answer = {"error": response.text}
    if response.status_code >= 400:
        print(f"error ({response.status_code}): {answer.get('error', answer)}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(answer, indent=1))
    elif "tenants" in answer:
        print_table(["id", "name", "created", "disabled"],
                    [[t["id"], t["name"], t["created"], t["disabled"]] for t in answer["tenants"]])
    elif "keys" in answer:
        print_table(["prefix", "role", "rate/s", "burst", "created", "revoked"],
                    [[k["prefix"], k["role"], k["rate_per_second"], k["burst"], k["created"], k["revoked"]]
                     for k in answer["keys"]])
    elif "key" in answer:
        print(answer["key"])
        print(f"(key {answer['prefix']} of tenant {answer['tenant']}, role {answer['role']}, "
              f"{answer['rate_per_second']:g} requests/s, burst {answer['burst']}: shown once, store it now)",
              file=sys.stderr)
    elif "prefix" in answer:
        print(f"revoked {answer['prefix']} (tenant {answer['tenant']})")
    else:
        print(f"tenant {answer['id']} ({answer['name']}){' disabled' if answer['disabled'] else ''}")
    return 0
