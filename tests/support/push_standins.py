"""Stand-in APNs and FCM servers on 127.0.0.1 for the push tests.

Both run in hypercorn (in a thread) over TLS with a throwaway CA made here; APNs speaks HTTP/2 only
(ALPN h2, as Apple's servers) and checks each request's ES256 provider token against the public half of
the test .p8 key; FCM checks the RS256 service-account assertion at its token endpoint and the issued
access token on ``messages:send``. Each records what it received and answers as told per device token.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from parsectl.push.tokens import b64url_decode

from . import free_port, wait_until

TEAM_ID = "TEAM123456"
KEY_ID = "KEY7890ABC"
TOPIC = "com.example.pushapp"
PROJECT_ID = "parsectl-push-test"


# --- keys and certificates ---------------------------------------------------------------------------------
def _pem(key: Any) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@dataclass
class Credentials:
    directory: Path
    ca_file: Path
    cert_file: Path
    key_file: Path
    p8_file: Path
    apns_public: ec.EllipticCurvePublicKey
    fcm_key: rsa.RSAPrivateKey
    # an "Apple Push Services" client certificate signed by the test CA: PEM cert and (unencrypted) key, and
    # the same in a .p12 with passphrase P12_PASSPHRASE
    client_cert_file: Path
    client_key_file: Path
    client_p12_file: Path


P12_PASSPHRASE = "push-test-pw"


def make_credentials(directory: Path) -> Credentials:
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "parsectl push test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False),
                         critical=True)
          .sign(ca_key, hashes.SHA256()))
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_file, cert_file, key_file = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(_pem(leaf_key))
    apns_key = ec.generate_private_key(ec.SECP256R1())
    p8_file = directory / f"AuthKey_{KEY_ID}.p8"
    p8_file.write_bytes(_pem(apns_key))
    fcm_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    client_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    client = (x509.CertificateBuilder()
              .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Apple Push Services: {TOPIC}")]))
              .issuer_name(ca_name).public_key(client_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
              .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
              .sign(ca_key, hashes.SHA256()))
    client_cert_file, client_key_file = directory / "apns-client.pem", directory / "apns-client.key"
    client_cert_file.write_bytes(client.public_bytes(serialization.Encoding.PEM))
    client_key_file.write_bytes(_pem(client_key))
    client_p12_file = directory / "apns-client.p12"
    client_p12_file.write_bytes(pkcs12.serialize_key_and_certificates(
        b"apns", client_key, client, None, serialization.BestAvailableEncryption(P12_PASSPHRASE.encode())))
    return Credentials(directory, ca_file, cert_file, key_file, p8_file, apns_key.public_key(), fcm_key,
                       client_cert_file, client_key_file, client_p12_file)


def service_account(creds: Credentials, token_uri: str) -> dict[str, Any]:
    return {"type": "service_account", "project_id": PROJECT_ID, "private_key_id": "fcmkey1",
            "private_key": _pem(creds.fcm_key).decode(), "client_email": f"push@{PROJECT_ID}.iam.example",
            "client_id": "1", "token_uri": token_uri}


def decode_jwt(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    header, claims, signature = token.split(".")
    return (json.loads(b64url_decode(header)), json.loads(b64url_decode(claims)), f"{header}.{claims}".encode(),
            b64url_decode(signature))


# --- a small ASGI toolkit ------------------------------------------------------------------------------------
async def _read(receive: Any) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def _answer(send: Any, status: int, body: Any = None, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    data = b"" if body is None else json.dumps(body).encode()
    all_headers = [(b"content-type", b"application/json"), *(headers or [])]
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": data})


class _Hypercorn:
    """Serve an ASGI app with hypercorn over TLS on 127.0.0.1 in a background thread."""

    def __init__(self, app: Any, creds: Credentials, *, h2_only: bool, client_certs: bool = False) -> None:
        from hypercorn.config import Config

        self.port = free_port()
        self.config = Config()
        self.config.bind = [f"127.0.0.1:{self.port}"]
        self.config.certfile, self.config.keyfile = str(creds.cert_file), str(creds.key_file)
        if client_certs:  # the TLS handshake fails without a client certificate the test CA signed
            self.config.ca_certs, self.config.verify_mode = str(creds.ca_file), ssl.CERT_REQUIRED
        self.config.alpn_protocols = ["h2"] if h2_only else ["h2", "http/1.1"]
        self.config.accesslog = None
        self.config.errorlog = None
        self.app = app
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def _run(self) -> None:
        from hypercorn.asyncio import serve

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            await serve(self.app, self.config, shutdown_trigger=self._stop.wait)

        asyncio.run(main())

    def start(self) -> None:
        self._thread.start()
        import socket

        def listening() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.port)) == 0

        wait_until(listening, 10, what=f"stand-in server on port {self.port}")

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


# --- APNs ----------------------------------------------------------------------------------------------------
@dataclass
class APNsRequest:
    device_token: str
    http_version: str
    headers: dict[str, str]
    payload: dict[str, Any]
    jwt_header: dict[str, Any]
    jwt_claims: dict[str, Any]


@dataclass
class APNsStandIn:
    """Answers 200 unless ``answers[token] = (status, reason)``; 403 for a token that fails verification.
    With ``client_certs``, connections must present a client certificate the test CA signed (certificate
    authentication), and a request without a provider token is accepted."""

    creds: Credentials
    answers: dict[str, tuple[int, str]] = field(default_factory=dict)
    requests: list[APNsRequest] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    client_certs: bool = False

    def __post_init__(self) -> None:
        self.server = _Hypercorn(self.app, self.creds, h2_only=True, client_certs=self.client_certs)

    @property
    def url(self) -> str:
        return self.server.url

    def _verify(self, authorization: str) -> tuple[dict[str, Any], dict[str, Any]] | str:
        if not authorization.startswith("bearer "):
            return "MissingProviderToken"
        try:
            header, claims, signing_input, signature = decode_jwt(authorization[len("bearer "):])
        except (ValueError, json.JSONDecodeError):
            return "InvalidProviderToken"
        if header.get("alg") != "ES256" or header.get("kid") != KEY_ID or claims.get("iss") != TEAM_ID:
            return "InvalidProviderToken"
        if len(signature) != 64:
            return "InvalidProviderToken"
        der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
        try:
            self.creds.apns_public.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return "InvalidProviderToken"
        if not isinstance(claims.get("iat"), int) or abs(time.time() - claims["iat"]) > 3600:
            return "ExpiredProviderToken"
        return header, claims

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await _read(receive)
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        path = scope["path"]
        if scope["method"] != "POST" or not path.startswith("/3/device/"):
            await _answer(send, 405 if scope["method"] != "POST" else 404, {"reason": "BadPath"})
            return
        token = path[len("/3/device/"):]
        if self.client_certs and "authorization" not in headers:
            verified: tuple[dict[str, Any], dict[str, Any]] | str = ({}, {})  # the TLS handshake checked it
        else:
            verified = self._verify(headers.get("authorization", ""))
        if isinstance(verified, str):
            self.rejected.append(verified)
            await _answer(send, 403, {"reason": verified})
            return
        if headers.get("apns-topic") is None:
            await _answer(send, 400, {"reason": "MissingTopic"})
            return
        try:
            payload = json.loads(body)
        except json.JSONDecodeError:
            await _answer(send, 400, {"reason": "PayloadEmpty"})
            return
        self.requests.append(APNsRequest(token, scope.get("http_version", ""), headers, payload, *verified))
        status, reason = self.answers.get(token, (200, ""))
        apns_id = headers.get("apns-id") or str(uuid.uuid4()).upper()
        if status == 200:
            await _answer(send, 200, None, [(b"apns-id", apns_id.encode())])
        elif status == 410:
            await _answer(send, 410, {"reason": reason, "timestamp": int(time.time() * 1000)})
        else:
            await _answer(send, status, {"reason": reason})

    def __enter__(self) -> APNsStandIn:
        self.server.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.stop()


# --- FCM -----------------------------------------------------------------------------------------------------
@dataclass
class FCMStandIn:
    """Token endpoint at /token, messages at /v1/projects/{project}/messages:send. ``errors[token]`` is an FCM
    error code (UNREGISTERED, INVALID_ARGUMENT) to answer for that registration token."""

    creds: Credentials
    errors: dict[str, str] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)
    assertions: list[dict[str, Any]] = field(default_factory=list)
    issued: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.server = _Hypercorn(self.app, self.creds, h2_only=False)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    async def _token(self, body: bytes, send: Any) -> None:
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" or "assertion" not in form:
            await _answer(send, 400, {"error": "unsupported_grant_type"})
            return
        try:
            header, claims, signing_input, signature = decode_jwt(form["assertion"])
            self.creds.fcm_key.public_key().verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
        except (ValueError, json.JSONDecodeError, InvalidSignature):
            await _answer(send, 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
            return
        ok = (header.get("alg") == "RS256" and claims.get("aud") == self.token_uri
              and claims.get("scope") == "https://www.googleapis.com/auth/firebase.messaging"
              and claims.get("iss") == f"push@{PROJECT_ID}.iam.example" and claims.get("exp", 0) > time.time())
        if not ok:
            await _answer(send, 400, {"error": "invalid_grant", "error_description": "Invalid claims."})
            return
        self.assertions.append(claims)
        access = f"ya29.test-{uuid.uuid4().hex}"
        self.issued.add(access)
        await _answer(send, 200, {"access_token": access, "expires_in": 3599, "token_type": "Bearer"})

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await _read(receive)
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        if scope["path"] == "/token" and scope["method"] == "POST":
            await self._token(body, send)
            return
        if scope["path"] != f"/v1/projects/{PROJECT_ID}/messages:send" or scope["method"] != "POST":
            await _answer(send, 404, {"error": {"code": 404, "message": "Not found", "status": "NOT_FOUND"}})
            return
        bearer = headers.get("authorization", "")
        if not bearer.startswith("Bearer ") or bearer[len("Bearer "):] not in self.issued:
            await _answer(send, 401, {"error": {"code": 401, "message": "Request had invalid authentication "
                                                "credentials.", "status": "UNAUTHENTICATED"}})
            return
        message = json.loads(body)["message"]
        self.messages.append(message)
        token = message.get("token")
        code = self.errors.get(token)
        if code == "UNREGISTERED":
            await _answer(send, 404, {"error": {"code": 404, "message": "Requested entity was not found.",
                                                "status": "NOT_FOUND", "details": [
                                                    {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                                                     "errorCode": "UNREGISTERED"}]}})
        elif code == "INVALID_ARGUMENT":
            await _answer(send, 400, {"error": {"code": 400, "message": "The registration token is not a valid "
                                                "FCM registration token", "status": "INVALID_ARGUMENT", "details": [
                                                    {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                                                     "errorCode": "INVALID_ARGUMENT"}]}})
        else:
            await _answer(send, 200, {"name": f"projects/{PROJECT_ID}/messages/{uuid.uuid4().hex}"})

    def __enter__(self) -> FCMStandIn:
        self.server.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.stop()


def push_option(creds: Credentials, apns: APNsStandIn, fcm: FCMStandIn) -> dict[str, Any]:
    """The ``push`` option pointing parsectl at the stand-ins (endpoint + caFile are parsectl's test hooks)."""
    return {
        "ios": {"token": {"key": str(creds.p8_file), "keyId": KEY_ID, "teamId": TEAM_ID}, "topic": TOPIC,
                "production": False, "endpoint": apns.url, "caFile": str(creds.ca_file)},
        "android": {"firebaseServiceAccount": service_account(creds, fcm.token_uri), "endpoint": fcm.url,
                    "caFile": str(creds.ca_file)},
    }
