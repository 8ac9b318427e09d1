"""The ``push`` option, as parse-server (@parse/push-adapter) takes it, checked at start-up.

::

    {"ios": {"token": {"key": "AuthKey_ABC123.p8", "keyId": "ABC123", "teamId": "TEAM123"},
             "topic": "com.example.app", "production": true},      # or "pfx": "apns.p12", "passphrase": ...
     "android": {"firebaseServiceAccount": "service-account.json"},
     "queueOptions": {"batchSize": 100}}

or ``{"adapter": "log"}`` (development: log, send nothing), or ``{"adapter": obj}`` with any object that has
``async send(body, installations, push_status_id)``. ``ios`` may be a list (one entry per app / environment);
``osx``, ``tvos`` and ``watchos`` take the same form; ``fcm`` is an alias of ``android``; an Apple type
configured with ``firebaseServiceAccount`` is sent through FCM. parsectl-only keys, meant for tests against
stand-in servers: ``endpoint`` (base URL replacing Apple's or Google's host) and ``caFile`` (a CA bundle to
trust for it).
"""

from __future__ import annotations

import logging
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from parsectl.push.apns import APNsProvider, APNsSender
from parsectl.push.base import ANDROID_TYPES, APPLE_TYPES, ProviderAdapter, PushAdapter, Sender
from parsectl.push.certificates import ClientCertificate, ClientCertificateError, client_certificate
from parsectl.push.fcm import FCMSender, ServiceAccount
from parsectl.push.log import LogAdapter
from parsectl.push.tokens import ProviderToken, load_private_key

DEFAULT_BATCH_SIZE = 100
log = logging.getLogger("parsectl.push")
_KNOWN = {*APPLE_TYPES, *ANDROID_TYPES, "adapter", "queueOptions"}


class PushConfigError(ValueError):
    """A bad ``push`` option; the message says which part."""


@dataclass
class PushSetup:
    adapter: PushAdapter
    batch_size: int = DEFAULT_BATCH_SIZE


def _fail(where: str, why: str) -> PushConfigError:
    return PushConfigError(f"option 'push' {where}: {why}")


def load(option: Any) -> PushSetup:
    if not isinstance(option, dict):
        raise PushConfigError("option 'push' must be an object such as {\"ios\": {...}, \"android\": {...}} "
                              "or {\"adapter\": \"log\"}")
    batch_size = _batch_size(option.get("queueOptions"))
    adapter = option.get("adapter")
    if adapter is not None:
        if adapter == "log":
            return PushSetup(LogAdapter(), batch_size)
        if isinstance(adapter, str) or not callable(getattr(adapter, "send", None)):
            raise _fail("adapter", "must be \"log\" or an object with an async send(body, installations, "
                                   "push_status_id) method")
        return PushSetup(adapter, batch_size)
    for key in option:
        if key in ("web", "expo"):
            raise _fail(key, "push to web and Expo is not supported by parsectl")
        if key not in _KNOWN:
            raise _fail(key, f"push to {key} is not supported (use ios, osx, tvos, watchos or android)")
    senders: dict[str, Sender] = {}
    for push_type in (*APPLE_TYPES, *ANDROID_TYPES):
        if push_type not in option:
            continue
        value = option[push_type]
        entries = value if isinstance(value, list) else [value]
        if not entries or not all(isinstance(e, dict) for e in entries):
            raise _fail(push_type, "must be an object (or a list of objects)")
        if push_type in ANDROID_TYPES or any("firebaseServiceAccount" in e for e in entries):
            kind = "android" if push_type in ANDROID_TYPES else "apple"
            senders[push_type] = _fcm(push_type, entries[0], kind)
        else:
            senders[push_type] = APNsSender([_apns(f"{push_type}[{i}]" if len(entries) > 1 else push_type, e)
                                             for i, e in enumerate(entries)])
    if not senders:
        raise _fail("", "configures no push type")
    return PushSetup(ProviderAdapter(senders), batch_size)


def _batch_size(queue_options: Any) -> int:
    if queue_options is None:
        return DEFAULT_BATCH_SIZE
    if not isinstance(queue_options, dict):
        raise _fail("queueOptions", "must be an object such as {\"batchSize\": 100}")
    size = queue_options.get("batchSize", DEFAULT_BATCH_SIZE)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise _fail("queueOptions.batchSize", "must be a positive integer")
    return size


def _verify(where: str, entry: dict[str, Any], client: ClientCertificate | None = None) -> ssl.SSLContext | bool:
    """How the provider's TLS connection is set up: the CA bundle it trusts (``caFile``, else the system's)
    and, for certificate authentication, the client certificate it presents."""
    ca_file = entry.get("caFile")
    if ca_file is None and client is None:
        return True
    if ca_file is not None and (not isinstance(ca_file, str) or not Path(ca_file).is_file()):
        raise _fail(f"{where}.caFile", f"must be the path of a CA bundle, not {ca_file!r}")
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except ssl.SSLError as exc:
        raise _fail(f"{where}.caFile", f"cannot be loaded ({exc})") from None
    if client is not None:
        client.load_into(context)
    return context


def _endpoint(where: str, entry: dict[str, Any]) -> str | None:
    endpoint = entry.get("endpoint")
    if endpoint is not None and (not isinstance(endpoint, str) or not endpoint.startswith(("https://", "http://"))):
        raise _fail(f"{where}.endpoint", "must be a base URL such as https://127.0.0.1:8443")
    return endpoint


def _apns(where: str, entry: dict[str, Any]) -> APNsProvider:
    provider_token: ProviderToken | None = None
    client: ClientCertificate | None = None
    if "token" in entry:
        provider_token = _provider_token(where, entry["token"])
    elif any(k in entry for k in ("cert", "key", "pfx")):
        try:
            client = client_certificate(entry)
        except ClientCertificateError as exc:
            raise _fail(f"{where}.{exc.key}", str(exc)) from None
    else:
        raise _fail(where, "needs token authentication, {\"token\": {\"key\": \"AuthKey.p8\", \"keyId\": ..., "
                           "\"teamId\": ...}}, or a certificate, {\"pfx\": \"apns.p12\", \"passphrase\": ...}")
    topic = entry.get("topic") or entry.get("bundleId")
    if not isinstance(topic, str) or not topic:
        raise _fail(f"{where}.topic", "is required: the app's bundle id, such as com.example.app")
    production = entry.get("production", False)
    if not isinstance(production, bool):
        raise _fail(f"{where}.production", "must be true or false")
    timeout = entry.get("requestTimeout", 5000)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise _fail(f"{where}.requestTimeout", "must be a positive number of milliseconds")
    retries = entry.get("connectionRetryLimit", 3)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise _fail(f"{where}.connectionRetryLimit", "must be a non-negative integer")
    if client is not None and client.expired:
        log.warning("push %s: the APNs certificate %s expired on %s: Apple will refuse it", where,
                    client.subject, client.not_after.date())
    return APNsProvider(token=provider_token, topic=topic, production=production,
                        endpoint=_endpoint(where, entry), verify=_verify(where, entry, client),
                        timeout=timeout / 1000, retry_limit=retries)


def _provider_token(where: str, token: Any) -> ProviderToken:
    if not isinstance(token, dict):
        raise _fail(f"{where}.token", "must be an object with key, keyId and teamId")
    for name in ("key", "keyId", "teamId"):
        if not isinstance(token.get(name), str) or not token[name]:
            raise _fail(f"{where}.token.{name}", "is required (a non-empty string)")
    key_text = token["key"]
    if "-----BEGIN" not in key_text:
        try:
            key_text = Path(key_text).read_text()
        except OSError as exc:
            raise _fail(f"{where}.token.key", f"cannot read {token['key']!r} ({exc.strerror})") from None
    try:
        key = load_private_key(key_text)
        return ProviderToken(key, token["keyId"], token["teamId"])
    except (ValueError, TypeError) as exc:
        raise _fail(f"{where}.token.key", f"is not a usable .p8 key ({exc})") from None


def _fcm(where: str, entry: dict[str, Any], kind: str) -> FCMSender:
    account = entry.get("firebaseServiceAccount")
    if account is None:
        raise _fail(where, "needs firebaseServiceAccount (the path of a service-account JSON file, or its "
                           "contents as an object)")
    if isinstance(account, str):
        path = os.path.expanduser(account)
        try:
            account = orjson.loads(Path(path).read_bytes())
        except OSError as exc:
            raise _fail(f"{where}.firebaseServiceAccount", f"cannot read {path!r} ({exc.strerror})") from None
        except orjson.JSONDecodeError:
            raise _fail(f"{where}.firebaseServiceAccount", f"{path!r} is not JSON") from None
    if not isinstance(account, dict):
        raise _fail(f"{where}.firebaseServiceAccount", "must be a path or a service-account object")
    try:
        service_account = ServiceAccount(account)
    except ValueError as exc:
        raise _fail(f"{where}.firebaseServiceAccount", str(exc)) from None
    return FCMSender(service_account, kind, endpoint=_endpoint(where, entry), verify=_verify(where, entry))
