"""JSON Web Tokens for the push providers, signed with ``cryptography``.

APNs takes an ES256 token made from the team's ``.p8`` key (header ``kid``, claims ``iss`` = team id and
``iat``); Apple refuses tokens older than an hour and throttles ones renewed more often than every 20
minutes, so :class:`ProviderToken` keeps one for 50 minutes. FCM's OAuth2 flow signs an RS256 assertion
with the service account's private key and trades it for an access token.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

import orjson
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

APNS_TOKEN_MAX_AGE = 50 * 60  # seconds: under Apple's 60-minute limit, over its 20-minute refresh floor


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_private_key(pem: str | bytes) -> Any:
    """A PEM private key (PKCS#8, as Apple's .p8 files and Google's service accounts hold them)."""
    data = pem.encode() if isinstance(pem, str) else pem
    return serialization.load_pem_private_key(data, password=None)


def _signing_input(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{b64url(orjson.dumps(header))}.{b64url(orjson.dumps(claims))}"


def sign_es256(key: ec.EllipticCurvePrivateKey, header: dict[str, Any], claims: dict[str, Any]) -> str:
    signing_input = _signing_input({"alg": "ES256", **header}, claims)
    der = key.sign(signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)  # JWS wants the raw 64-byte r || s, not DER
    return f"{signing_input}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def sign_rs256(key: rsa.RSAPrivateKey, header: dict[str, Any], claims: dict[str, Any]) -> str:
    signing_input = _signing_input({"alg": "RS256", "typ": "JWT", **header}, claims)
    signature = key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(signature)}"


class ProviderToken:
    """The APNs provider token for one key: made on first use, reused for 50 minutes, renewable at once
    (after APNs answers 403 ExpiredProviderToken)."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, key_id: str, team_id: str,
                 clock: Callable[[], float] = time.time) -> None:
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("the APNs token key must be an EC (P-256) private key, as Apple's .p8 files are")
        self.key, self.key_id, self.team_id, self.clock = key, key_id, team_id, clock
        self._token: str | None = None
        self._issued_at = 0.0

    @property
    def current(self) -> str:
        if self._token is None or self.clock() - self._issued_at >= APNS_TOKEN_MAX_AGE:
            return self.refresh()
        return self._token

    def refresh(self) -> str:
        now = self.clock()
        self._token = sign_es256(self.key, {"kid": self.key_id}, {"iss": self.team_id, "iat": int(now)})
        self._issued_at = now
        return self._token
