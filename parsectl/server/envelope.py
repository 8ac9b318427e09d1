"""The request envelope: keys in headers or in the JS SDK's body, method override, and the caller's auth.

This follows parse-server's ``handleParseHeaders``: header keys win; when the header application id
is missing or unknown, the keys are read from (and removed from) a JSON body, as the JS SDK sends
them. Any configured client key must match; the master key works only from ``masterKeyIps``.
"""

from __future__ import annotations

import base64
import ipaddress
from dataclasses import dataclass
from typing import Any

from parsectl.model.errors import HTTPError
from parsectl.server.auth import Auth
from parsectl.server.config import ServerOptions

_HEADER_KEYS = {
    b"x-parse-application-id": "app_id",
    b"x-parse-master-key": "master_key",
    b"x-parse-client-key": "clientKey",
    b"x-parse-javascript-key": "javascriptKey",
    b"x-parse-windows-key": "dotNetKey",
    b"x-parse-rest-api-key": "restAPIKey",
    b"x-parse-session-token": "session_token",
    b"x-parse-installation-id": "installation_id",
    b"x-parse-client-version": "client_version",
    b"authorization": "authorization",
}
_INFO_ATTRS = frozenset(("app_id", "master_key", "session_token", "installation_id", "client_version"))
_BODY_KEYS = {
    "_JavaScriptKey": "javascriptKey",
    "_ClientVersion": "client_version",
    "_InstallationId": "installation_id",
    "_SessionToken": "session_token",
    "_MasterKey": "master_key",
    "_context": "context",
    "_ContentType": "content_type",
}


def unauthorized() -> HTTPError:
    return HTTPError(403, "unauthorized", json_content_type=False)


@dataclass
class KeyInfo:
    app_id: str | None = None
    master_key: str | None = None
    session_token: str | None = None
    installation_id: str | None = None
    client_version: str | None = None
    context: Any = None
    content_type: str | None = None

    def __post_init__(self) -> None:
        self.client_keys: dict[str, str] = {}


def read_headers(raw_headers: list[tuple[bytes, bytes]]) -> KeyInfo:
    info = KeyInfo()
    for name, value in raw_headers:
        attr = _HEADER_KEYS.get(name.lower())
        if attr is None:
            continue
        text = value.decode("latin-1")
        if attr == "authorization":
            _basic_auth(info, text)
        elif attr in _INFO_ATTRS:
            setattr(info, attr, text)
        else:
            info.client_keys[attr] = text
    return info


def _basic_auth(info: KeyInfo, header: str) -> None:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return
    try:
        decoded = base64.b64decode(encoded.strip()).decode()
    except (ValueError, UnicodeDecodeError):
        return
    app_id, sep, secret = decoded.partition(":")
    if not sep:
        return
    info.app_id = info.app_id or app_id
    if secret.startswith("javascript-key="):
        info.client_keys.setdefault("javascriptKey", secret.removeprefix("javascript-key="))
    else:
        info.master_key = info.master_key or secret


def apply_body_keys(info: KeyInfo, body: Any, options: ServerOptions) -> None:
    """Use the JS SDK's body keys when the header app id is missing or unknown (removing them)."""
    if info.app_id == options.app_id:
        return
    if not isinstance(body, dict) or body.get("_ApplicationId") != options.app_id:
        raise unauthorized()
    if info.master_key is not None and info.master_key != options.master_key:
        raise unauthorized()
    info.app_id = body.pop("_ApplicationId")
    info.client_keys["javascriptKey"] = body.pop("_JavaScriptKey", "") or ""
    for key, attr in _BODY_KEYS.items():
        if key in body and key != "_JavaScriptKey":
            setattr(info, attr, body.pop(key))
    body.pop("_RevocableSession", None)
    body.pop("_noBody", None)


class KeyPolicy:
    """Checks keys against the options: client keys, master key and its IP allow-list."""

    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        self.networks = [ipaddress.ip_network(entry, strict=False) for entry in options.master_key_ips]

    def ip_allowed(self, ip: str | None) -> bool:
        if not ip:
            return False
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
            addr = addr.ipv4_mapped
        return any(addr.version == net.version and addr in net for net in self.networks)

    def authorize(self, info: KeyInfo, client_ip: str | None) -> Auth:
        """The caller's auth before any session is resolved (403 unauthorized on bad keys)."""
        options = self.options
        if info.master_key is not None and info.master_key in (options.master_key, options.read_only_master_key):
            if not self.ip_allowed(client_ip):
                raise unauthorized()
            return Auth(master=True, installation_id=info.installation_id, session_token=info.session_token,
                        read_only=info.master_key != options.master_key)
        configured = options.client_keys
        if configured and not any(
            info.client_keys.get(name) == value for name, value in configured.items()
        ):
            raise unauthorized()
        return Auth(installation_id=info.installation_id, session_token=info.session_token)
