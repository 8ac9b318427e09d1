"""Outgoing webhook requests, only to addresses the operator allows.

The policy (server option ``webhookAllowedHosts``):

* unset (the default): any **public** address; loopback, private (RFC 1918, fc00::/7), link-local (incl. the
  169.254.169.254 cloud metadata service), carrier-grade NAT, multicast, unspecified and reserved
  addresses are refused;
* set to a list: only the listed entries, each a host name (``hooks.example.com``), a wildcard
  (``*.example.com``), an IP address (``127.0.0.1``) or a network (``10.0.0.0/8``). A listed name or
  network is allowed whatever kind of address it is.

A host name is resolved and *every* address it resolves to must be allowed (unless the name itself is
listed); the request then goes to the address that was checked (the Host header and TLS server name stay
the URL's), so a name that resolves to something else a moment later (DNS rebinding) cannot reach an
address that was not checked. Redirects are never followed. Only ``http`` and ``https`` URLs are accepted.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
DEFAULT_TIMEOUT = 30.0
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
_CGNAT = ipaddress.ip_network("100.64.0.0/10")


class Refused(ValueError):
    """A URL the policy does not allow (the message says why)."""


def _kind(address: IPAddress) -> str | None:
    """Why an address is not public (None when it is)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return _kind(address.ipv4_mapped)
    for name, flag in (("loopback", address.is_loopback), ("unspecified", address.is_unspecified),
                       ("link-local", address.is_link_local), ("multicast", address.is_multicast),
                       ("private", address.is_private), ("reserved", address.is_reserved)):
        if flag:
            return name
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return "shared (carrier-grade NAT)"
    if not address.is_global:
        return "non-public"
    return None


@dataclass(frozen=True)
class Target:
    """A checked URL: the address to connect to and what to send as Host / TLS server name."""

    url: str
    host: str
    address: str


class EgressPolicy:
    def __init__(self, allowed: list[str] | None) -> None:
        self.listed = allowed is not None
        self.names: set[str] = set()
        self.suffixes: list[str] = []
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in allowed or []:
            entry = entry.strip().lower().rstrip(".")
            if not entry:
                continue
            try:
                self.networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            if entry.startswith("*."):
                self.suffixes.append(entry[1:])
            else:
                self.names.add(entry)

    @staticmethod
    def parse_option(value: Any) -> list[str] | None:
        """The option's value as a list (a comma-separated string is accepted); raises ValueError."""
        if value is None:
            return None
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise ValueError("must be a list of host names, *.domains, IP addresses or CIDR networks")
        for entry in value:
            entry = entry.strip()
            if "/" in entry:
                ipaddress.ip_network(entry, strict=False)  # raises ValueError for a bad network
        return value

    def _name_listed(self, host: str) -> bool:
        return host in self.names or any(host.endswith(s) and host != s[1:] for s in self.suffixes)

    def _address_allowed(self, address: IPAddress) -> str | None:
        """None when allowed, else the reason."""
        if self.listed:
            if any(address in net for net in self.networks):
                return None
            return f"{address} is not in webhookAllowedHosts"
        kind = _kind(address)
        if kind is None:
            return None
        return f"{address} is a {kind} address (list it in webhookAllowedHosts to allow it)"

    def split(self, url: Any) -> tuple[str, str, int]:
        if not isinstance(url, str) or not url:
            raise Refused("the url must be a string")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise Refused(f"{url} is not a valid URL") from None
        if parts.scheme not in ("http", "https"):
            raise Refused(f"{url} is not an http or https URL")
        host = (parts.hostname or "").lower().rstrip(".")
        if not host:
            raise Refused(f"{url} has no host")
        if parts.username or parts.password:
            raise Refused(f"{url} carries credentials, which webhooks do not send")
        return host, parts.scheme, port or (443 if parts.scheme == "https" else 80)

    async def resolve(self, url: Any) -> Target:
        """The checked target of ``url``; raises :class:`Refused`."""
        host, _scheme, port = self.split(url)
        try:
            literal: IPAddress | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            why = self._address_allowed(literal)
            if why is not None and not self._name_listed(host):
                raise Refused(f"webhook url {url} is not allowed: {why}")
            return Target(url, host, str(literal))
        name_listed = self.listed and self._name_listed(host)
        if self.listed and not name_listed and not self.networks:
            raise Refused(f"webhook url {url} is not allowed: {host} is not in webhookAllowedHosts")
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise Refused(f"webhook url {url}: cannot resolve {host} ({exc})") from None
        addresses = [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]
        if not addresses:
            raise Refused(f"webhook url {url}: {host} has no address")
        if not name_listed:
            for address in addresses:
                why = self._address_allowed(address)
                if why is not None:
                    raise Refused(f"webhook url {url} is not allowed: {host} resolves to {why}")
        return Target(url, host, str(addresses[0]))


class WebhookFailed(Exception):
    """The request did not produce an answer (connection, timeout, size, redirect, status)."""


async def post_json(policy: EgressPolicy, url: str, payload: Any, headers: dict[str, str],
                    timeout: float | None) -> Any:
    """POST ``payload`` as JSON to the checked address of ``url``; the decoded JSON answer (None when the
    body is empty). Raises :class:`Refused`, :class:`WebhookFailed`, or ``orjson.JSONDecodeError`` for a
    body that is not JSON."""
    target = await policy.resolve(url)
    parts = urlsplit(url)
    address = f"[{target.address}]" if ":" in target.address else target.address
    netloc = address + (f":{parts.port}" if parts.port else "")
    pinned = parts._replace(netloc=netloc).geturl()
    host_header = parts.netloc.rsplit("@", 1)[-1]
    body = orjson.dumps(payload)
    send_headers = {"Content-Type": "application/json", "Host": host_header, **headers}
    extensions = {"sni_hostname": target.host} if parts.scheme == "https" else {}
    try:
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False) as client:
            request = client.build_request("POST", pinned, content=body, headers=send_headers, extensions=extensions)
            response = await client.send(request, stream=True)
            try:
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > MAX_RESPONSE_BYTES:
                        raise WebhookFailed(f"the webhook's answer is larger than {MAX_RESPONSE_BYTES} bytes")
                    chunks.append(chunk)
            finally:
                await response.aclose()
    except httpx.TimeoutException:
        raise WebhookFailed(f"the webhook did not answer within {timeout:g} s") from None
    except httpx.HTTPError as exc:
        raise WebhookFailed(f"the webhook could not be reached: {exc or type(exc).__name__}") from None
    raw = b"".join(chunks)
    if 300 <= response.status_code < 400:
        raise WebhookFailed(f"the webhook answered with a redirect ({response.status_code}), which is not followed")
    if response.status_code < 200 or response.status_code >= 400:
        raise WebhookFailed(f"the webhook answered with HTTP {response.status_code}")
    if not raw.strip():
        return None
    return orjson.loads(raw)
