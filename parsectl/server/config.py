"""Server options, with parse-server's names, defaults and environment variables."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, fields
from typing import Any

LOOPBACK_IPS = ("127.0.0.1", "::1")


class ConfigError(ValueError):
    """A bad option; the message names the option."""


def _camel_to_snake(name: str) -> str:
    name = name.replace("URI", "Uri").replace("URL", "Url").replace("API", "Api").replace("IPs", "Ips")
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


@dataclass
class ServerOptions:
    """The options of :class:`parsectl.server.ParseServer` (parse-server's option names in camelCase)."""

    app_id: str
    master_key: str
    database_uri: str = "sqlite:///parsectl-data/parse.db"
    client_key: str | None = None
    rest_api_key: str | None = None
    javascript_key: str | None = None
    dot_net_key: str | None = None
    file_key: str | None = None
    server_url: str | None = None
    public_server_url: str | None = None
    mount_path: str = "/parse"
    default_limit: int = 100
    max_limit: int | None = None
    allow_client_class_creation: bool = False
    master_key_ips: list[str] = field(default_factory=lambda: list(LOOPBACK_IPS))
    max_upload_size: str = "20mb"
    allow_origin: str = "*"
    collection_prefix: str = ""
    database_options: dict[str, Any] = field(default_factory=dict)
    files_adapter: dict[str, Any] | None = None
    file_upload: dict[str, Any] = field(default_factory=dict)
    preserve_file_name: bool = False
    read_only_master_key: str | None = None
    session_length: int = 31536000
    enforce_private_users: bool = True
    protected_fields: dict[str, Any] | None = None
    enable_anonymous_users: bool = True
    auth: dict[str, Any] | None = None
    trust_proxy: list[str] | bool = False
    # email verification, password reset and their pages (validated by parsectl.server.account)
    email_adapter: Any = None
    app_name: str | None = None
    verify_user_emails: bool = False
    prevent_login_with_unverified_email: bool = False
    prevent_signup_with_unverified_email: bool = False
    send_user_email_verification: bool = True
    email_verify_token_validity_duration: float | None = None
    email_verify_token_reuse_if_valid: bool = False
    email_verify_success_on_invalid_email: bool = True
    password_policy: dict[str, Any] | None = None
    account_lockout: dict[str, Any] | None = None
    revoke_session_on_password_reset: bool = True
    pages: dict[str, Any] | None = None
    cloud: str | None = None  # Cloud Code: a Python file or module (parsectl.cloud)
    push: Any = None  # push adapters (parsectl.push; checked there)
    scheduled_push: bool = False
    # webhooks (/hooks): the X-Parse-Webhook-Key sent, seconds per call, and where calls may go
    webhook_key: str | None = None
    webhook_timeout: float | None = 30.0
    webhook_allowed_hosts: list[str] | None = None

    # camelCase name (as parse-server and its config.json spell it) -> attribute
    CAMEL = {
        "appId": "app_id", "masterKey": "master_key", "databaseURI": "database_uri",
        "clientKey": "client_key", "restAPIKey": "rest_api_key", "javascriptKey": "javascript_key",
        "dotNetKey": "dot_net_key", "fileKey": "file_key", "serverURL": "server_url",
        "publicServerURL": "public_server_url", "mountPath": "mount_path", "defaultLimit": "default_limit",
        "maxLimit": "max_limit", "allowClientClassCreation": "allow_client_class_creation",
        "masterKeyIps": "master_key_ips", "maxUploadSize": "max_upload_size", "allowOrigin": "allow_origin",
        "collectionPrefix": "collection_prefix", "databaseOptions": "database_options",
        "filesAdapter": "files_adapter", "fileUpload": "file_upload", "preserveFileName": "preserve_file_name",
        "readOnlyMasterKey": "read_only_master_key", "sessionLength": "session_length",
        "enforcePrivateUsers": "enforce_private_users", "protectedFields": "protected_fields",
        "enableAnonymousUsers": "enable_anonymous_users", "auth": "auth", "trustProxy": "trust_proxy",
        "emailAdapter": "email_adapter", "appName": "app_name", "verifyUserEmails": "verify_user_emails",
        "preventLoginWithUnverifiedEmail": "prevent_login_with_unverified_email",
        "preventSignupWithUnverifiedEmail": "prevent_signup_with_unverified_email",
        "sendUserEmailVerification": "send_user_email_verification",
        "emailVerifyTokenValidityDuration": "email_verify_token_validity_duration",
        "emailVerifyTokenReuseIfValid": "email_verify_token_reuse_if_valid",
        "emailVerifySuccessOnInvalidEmail": "email_verify_success_on_invalid_email",
        "passwordPolicy": "password_policy", "accountLockout": "account_lockout",
        "revokeSessionOnPasswordReset": "revoke_session_on_password_reset", "pages": "pages",
        "cloud": "cloud", "push": "push", "scheduledPush": "scheduled_push", "webhookKey": "webhook_key",
        "webhookTimeout": "webhook_timeout", "webhookAllowedHosts": "webhook_allowed_hosts",
    }

    @classmethod
    def names(cls) -> set[str]:
        return {f.name for f in fields(cls)}

    @classmethod
    def from_mapping(cls, options: dict[str, Any]) -> ServerOptions:
        """Build from snake_case or camelCase keys; unknown keys and bad values raise :class:`ConfigError`."""
        known = cls.names()
        kwargs: dict[str, Any] = {}
        for key, value in options.items():
            name = cls.CAMEL.get(key, key)
            if name not in known:
                raise ConfigError(f"unknown option {key!r}")
            kwargs[name] = value
        for required in ("app_id", "master_key"):
            if not kwargs.get(required):
                camel = {v: k for k, v in cls.CAMEL.items()}[required]
                raise ConfigError(f"option {camel!r} is required")
        opts = cls(**kwargs)
        opts.validate()
        return opts

    def validate(self) -> None:
        def fail(camel: str, why: str) -> None:
            raise ConfigError(f"option {camel!r} {why}")

        for attr in ("app_id", "master_key"):
            if not isinstance(getattr(self, attr), str) or not getattr(self, attr):
                fail({v: k for k, v in self.CAMEL.items()}[attr], "must be a non-empty string")
        for attr in ("client_key", "rest_api_key", "javascript_key", "dot_net_key", "file_key", "server_url",
                     "public_server_url"):
            value = getattr(self, attr)
            if value is not None and not isinstance(value, str):
                fail({v: k for k, v in self.CAMEL.items()}[attr], "must be a string")
        if not isinstance(self.database_uri, str) or ":" not in self.database_uri:
            fail("databaseURI", "must be a URI such as sqlite:///path/parse.db")
        if not isinstance(self.mount_path, str) or not self.mount_path.startswith("/"):
            fail("mountPath", "must start with '/'")
        self.mount_path = "/" + self.mount_path.strip("/") if self.mount_path.strip("/") else ""
        if isinstance(self.max_limit, str) and self.max_limit.isdigit():
            self.max_limit = int(self.max_limit)
        if isinstance(self.default_limit, str) and self.default_limit.isdigit():
            self.default_limit = int(self.default_limit)
        if self.max_limit is not None and (not isinstance(self.max_limit, int) or isinstance(
                self.max_limit, bool) or self.max_limit < 1):
            fail("maxLimit", "must be a positive integer")
        if isinstance(self.default_limit, bool) or not isinstance(self.default_limit, int) or self.default_limit < 1:
            fail("defaultLimit", "must be a positive integer")
        if isinstance(self.allow_client_class_creation, str):
            self.allow_client_class_creation = parse_bool("allowClientClassCreation",
                                                          self.allow_client_class_creation)
        if not isinstance(self.allow_client_class_creation, bool):
            fail("allowClientClassCreation", "must be true or false")
        if isinstance(self.master_key_ips, str):
            self.master_key_ips = [p.strip() for p in self.master_key_ips.split(",") if p.strip()]
        if not isinstance(self.master_key_ips, list):
            fail("masterKeyIps", "must be a list of IP addresses or CIDR ranges")
        for entry in self.master_key_ips:
            try:
                ipaddress.ip_network(entry, strict=False)
            except (ValueError, TypeError):
                fail("masterKeyIps", f"has an invalid IP address or range: {entry!r}")
        if isinstance(self.session_length, str) and self.session_length.isdigit():
            self.session_length = int(self.session_length)
        if isinstance(self.session_length, bool) or not isinstance(self.session_length, int) or self.session_length < 1:
            fail("sessionLength", "must be a positive number of seconds")
        if self.auth is not None and not isinstance(self.auth, dict):
            fail("auth", "must be an object of providers such as {\"myprovider\": {\"module\": \"pkg.mod:validate\"}}")
        if not isinstance(self.enforce_private_users, bool):
            fail("enforcePrivateUsers", "must be true or false")
        if self.protected_fields is not None and not isinstance(self.protected_fields, dict):
            fail("protectedFields", "must be an object such as {\"_User\": {\"*\": [\"email\"]}}")
        if self.read_only_master_key is not None and not isinstance(self.read_only_master_key, str):
            fail("readOnlyMasterKey", "must be a string")
        if not isinstance(self.collection_prefix, str):
            fail("collectionPrefix", "must be a string")
        if not isinstance(self.database_options, dict):
            fail("databaseOptions", "must be an object of options")
        if self.files_adapter is not None and not isinstance(self.files_adapter, dict):
            fail("filesAdapter", "must be an object such as {\"module\": \"s3\", \"options\": {...}}")
        if not isinstance(self.file_upload, dict):
            fail("fileUpload", "must be an object of upload rules")
        if self.cloud is not None and (not isinstance(self.cloud, str) or not self.cloud):
            fail("cloud", "must name a Python file or module, such as cloud/main.py")
        if isinstance(self.push, str):  # PARSE_SERVER_PUSH holds JSON
            import json

            try:
                self.push = json.loads(self.push)
            except ValueError:
                fail("push", "must be an object (JSON in PARSE_SERVER_PUSH)")
        if self.push is not None and not isinstance(self.push, dict):
            fail("push", "must be an object such as {\"ios\": {...}, \"android\": {...}} or {\"adapter\": \"log\"}")
        if isinstance(self.scheduled_push, str):
            self.scheduled_push = parse_bool("scheduledPush", self.scheduled_push)
        if not isinstance(self.scheduled_push, bool):
            fail("scheduledPush", "must be true or false")
        self._validate_webhooks(fail)
        if not isinstance(self.preserve_file_name, bool):
            fail("preserveFileName", "must be true or false")
        try:
            parse_size(self.max_upload_size)
        except ValueError:
            fail("maxUploadSize", f"must be a size such as '20mb', not {self.max_upload_size!r}")

    def _validate_webhooks(self, fail: Any) -> None:
        from parsectl.cloud.egress import EgressPolicy

        if self.webhook_key is not None and (not isinstance(self.webhook_key, str) or not self.webhook_key):
            fail("webhookKey", "must be a non-empty string")
        if isinstance(self.webhook_timeout, str):
            try:
                self.webhook_timeout = float(self.webhook_timeout)
            except ValueError:
                fail("webhookTimeout", "must be a number of seconds")
        if self.webhook_timeout is not None and (isinstance(self.webhook_timeout, bool) or not isinstance(
                self.webhook_timeout, int | float) or self.webhook_timeout <= 0):
            fail("webhookTimeout", "must be a positive number of seconds")
        try:
            self.webhook_allowed_hosts = EgressPolicy.parse_option(self.webhook_allowed_hosts)
        except ValueError as exc:
            fail("webhookAllowedHosts", str(exc))

    @property
    def client_keys(self) -> dict[str, str]:
        keys = {"clientKey": self.client_key, "javascriptKey": self.javascript_key,
                "restAPIKey": self.rest_api_key, "dotNetKey": self.dot_net_key}
        return {name: value for name, value in keys.items() if value}

    @property
    def max_upload_bytes(self) -> int:
        cached = self.__dict__.get("_max_upload")
        if cached is None or cached[0] != self.max_upload_size:  # read on every request: parse once
            cached = (self.max_upload_size, parse_size(self.max_upload_size))
            self.__dict__["_max_upload"] = cached
        return cached[1]


def parse_bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"option {name!r} must be true or false, not {value!r}")


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb)?\s*$", re.IGNORECASE)


def parse_size(value: Any) -> int:
    """Bytes in a size like ``20mb`` (parse-server's maxUploadSize format) or a number of bytes."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    match = _SIZE.match(str(value))
    if not match:
        raise ValueError(value)
    unit = (match.group(2) or "b").lower()
    size = int(float(match.group(1)) * {"b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3}[unit])
    if size <= 0:
        raise ValueError(value)
    return size
