"""Where a tenant's webhook may point: public addresses only, checked when the request is sent.

A webhook URL is tenant input that makes the serving process open a connection, so without a check a
tenant could reach loopback services, the private network, or a cloud metadata endpoint
(169.254.169.254) from inside. The guard resolves the host itself, refuses the URL if *any* resolved
address is not public (loopback, private, link-local, multicast, reserved, unspecified, shared, also
when hidden in an IPv4-mapped, 6to4 or Teredo IPv6 address), and hands back the address it checked so
that the sender connects to exactly that address: a name that resolves differently a moment later
(DNS rebinding) cannot slip between the check and the connection.

Local tests deliver to a receiver on 127.0.0.1: ``webhook_allow_private_cidrs`` and
``webhook_allow_hosts`` exempt such destinations, and production leaves both empty.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]


class EgressRefused(Exception):
    """The webhook's destination is not allowed; the message says why and what to change."""


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (IPv4-mapped, 6to4, Teredo client), if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def non_public_reason(address: IPAddress) -> str | None:
    """Why ``address`` is not a public unicast address (None when it is)."""
    for candidate in (_embedded_ipv4(address), address):  # the wrapped IPv4 address is where it connects
        if candidate is None:
            continue
        for attribute in ("loopback", "unspecified", "link_local", "multicast", "reserved", "private"):
            if getattr(candidate, f"is_{attribute}"):
                return attribute.replace("_", "-")
        if not candidate.is_global:  # e.g. 100.64.0.0/10 (carrier-grade NAT), documentation ranges
            return "not globally routable"
    return None


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """Comma-separated CIDRs (a bare address is one host); a bad entry names itself."""
    networks = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"LAKEHOUSE_WEBHOOK_ALLOW_PRIVATE_CIDRS entry {part!r} is not an address or CIDR "
                             f"(e.g. 127.0.0.1/32, 10.0.0.0/8)") from None
    return tuple(networks)


async def _system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [info[4][0] for info in infos]


def literal_address(host: str) -> IPAddress | None:
    """The address when ``host`` is an IP literal (brackets and IPv6 zone ids tolerated), else None."""
    text = host.strip("[]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


@dataclass(frozen=True)
class EgressPolicy:
    allow_networks: tuple[IPNetwork, ...] = ()
    allow_hosts: frozenset[str] = frozenset()
    resolver: Resolver = field(default=_system_resolver, compare=False)

    @classmethod
    def from_settings(cls, settings: object) -> EgressPolicy:
        hosts = getattr(settings, "webhook_allow_hosts", "")
        return cls(parse_networks(getattr(settings, "webhook_allow_private_cidrs", "")),
                   frozenset(h.strip().lower() for h in hosts.split(",") if h.strip()))

    def refusal(self, address: IPAddress, host: str) -> str | None:
        """Why a connection to ``address`` (found for ``host``) is refused, or None when it is allowed."""
        if host.lower() in self.allow_hosts:
            return None
        plain = _embedded_ipv4(address) or address
        if any(address in net or plain in net for net in self.allow_networks):
            return None
        reason = non_public_reason(address)
        if reason is None:
            return None
        shown = f"{host} ({address})" if literal_address(host) is None else str(address)
        return (f"webhook host {shown} is a {reason} address; webhooks may only reach public addresses "
                f"(an operator can allow a private range with LAKEHOUSE_WEBHOOK_ALLOW_PRIVATE_CIDRS)")

    def _first_allowed(self, host: str, found: Iterable[str]) -> IPAddress:
        addresses = list(dict.fromkeys(ipaddress.ip_address(a.split("%", 1)[0]) for a in found))
        if not addresses:
            raise OSError(f"webhook host {host!r} resolves to no address")
        for address in addresses:
            reason = self.refusal(address, host)
            if reason:
                raise EgressRefused(reason)
        return addresses[0]

    async def checked_address(self, host: str, port: int) -> IPAddress:
        """The address to connect to: every address ``host`` resolves to must be allowed, or it is refused."""
        literal = literal_address(host)
        if literal is not None:
            return self._first_allowed(host, [str(literal)])
        try:
            found = await self.resolver(host, port)
        except (OSError, UnicodeError) as exc:
            raise OSError(f"could not resolve webhook host {host!r}: {exc}") from exc
        return self._first_allowed(host, found)

    def check_at_creation(self, host: str, port: int) -> None:
        """Refuse a rule whose host is, or now resolves to, a non-public address. A name that does not
        resolve (yet) is accepted: every delivery checks again and refuses it then if it must."""
        literal = literal_address(host)
        if literal is not None:
            self._first_allowed(host, [str(literal)])
            return
        try:
            found = [info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]
        except (OSError, UnicodeError):
            return
        if found:
            self._first_allowed(host, found)


async def post_to_checked_address(client: httpx.AsyncClient, egress: EgressPolicy, url: str, user_agent: str,
                                  **content: Any) -> httpx.Response:
    """POST ``content`` (httpx's ``json=``, ``data=``, ``files=``) to ``url`` at the address the guard checked.

    The original name travels in the Host header and as the TLS server name, so certificates are verified
    against it. The answer's body is never read (nothing of it reaches the tenant). ``client`` must not
    follow redirects (a public URL could bounce to an internal one) nor take a proxy from the environment.
    Raises ``httpx.UnsupportedProtocol`` for a URL without http(s) and a host, ``EgressRefused`` for a
    destination the policy refuses.
    """
    target = httpx.URL(url)
    if target.scheme not in ("http", "https") or not target.host:
        raise httpx.UnsupportedProtocol(f"webhook URL must be http(s) with a host, got {url!r}")
    port = target.port or (443 if target.scheme == "https" else 80)
    address = await egress.checked_address(target.host, port)
    headers = {"User-Agent": user_agent, "Host": target.netloc.decode("ascii")}
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    request = client.build_request("POST", target.copy_with(host=str(address)), headers=headers,
                                   extensions=extensions, **content)
    response = await client.send(request, stream=True)
    await response.aclose()
    return response
