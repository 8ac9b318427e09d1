"""Email verification and password reset, as parse-server 9.10 runs them.

:class:`AccountService` keeps the tokens on the stored ``_User`` object (internal fields, never
returned to clients): ``_email_verify_token`` / ``_email_verify_token_expires_at`` for email
verification and ``_perishable_token`` / ``_perishable_token_expires_at`` for password reset, each
token 25 random alphanumeric characters. Mails go through an :mod:`parsectl.server.email` adapter and
link to the public pages (:mod:`parsectl.server.pages`)::

    <publicServerURL>/apps/<appId>/verify_email?token=...
    <publicServerURL>/apps/<appId>/request_password_reset?token=...

Since parse-server 8 the links carry only the token (no username, so no personal data in logs).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import secrets
import string
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from parsectl.model import codec, errors, query
from parsectl.model.errors import ParseError
from parsectl.model.ops import Delete, Increment
from parsectl.model.schema import USER_INTERNAL_FIELDS
from parsectl.server import users
from parsectl.server.email import EmailAdapter

if TYPE_CHECKING:
    from parsectl.model.schema import ClassSchema
    from parsectl.server.rest import RestService

log = logging.getLogger("parsectl.server.account")

TOKEN_LENGTH = 25
INVALID_VALUE = 162
EMAIL_CONFIG_MESSAGE = ("An appName, publicServerURL, and emailAdapter are required for password reset and "
                        "email verification functionality.")
INVALID_RESET_LINK = "Failed to reset password: username / email / token is invalid"
EXPIRED_RESET_LINK = "The password reset link has expired"
_ALPHANUMERIC = string.ascii_letters + string.digits


def random_token(length: int = TOKEN_LENGTH) -> str:
    return "".join(secrets.choice(_ALPHANUMERIC) for _ in range(length))


class AccountError(Exception):
    """A failed reset or verification; ``message`` is the text parse-server shows on its pages."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"option {name!r} must be true or false")
    return value


def _seconds(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"option {name!r} must be a positive number of seconds")
    return float(value)


@dataclass
class AccountOptions:
    """The email, password-policy and pages options (parse-server's names, camelCase or snake_case)."""

    app_id: str = ""
    app_name: str | None = None
    public_server_url: str | None = None
    verify_user_emails: bool = False
    prevent_login_with_unverified_email: bool = False
    prevent_signup_with_unverified_email: bool = False
    send_user_email_verification: bool = True
    email_verify_token_validity_duration: float | None = None
    email_verify_token_reuse_if_valid: bool = False
    email_verify_success_on_invalid_email: bool = True
    password_policy: dict[str, Any] = field(default_factory=dict)
    account_lockout: dict[str, Any] = field(default_factory=dict)
    revoke_session_on_password_reset: bool = True
    pages: dict[str, Any] = field(default_factory=dict)

    CAMEL = {
        "appId": "app_id", "appName": "app_name", "publicServerURL": "public_server_url",
        "verifyUserEmails": "verify_user_emails",
        "preventLoginWithUnverifiedEmail": "prevent_login_with_unverified_email",
        "preventSignupWithUnverifiedEmail": "prevent_signup_with_unverified_email",
        "sendUserEmailVerification": "send_user_email_verification",
        "emailVerifyTokenValidityDuration": "email_verify_token_validity_duration",
        "emailVerifyTokenReuseIfValid": "email_verify_token_reuse_if_valid",
        "emailVerifySuccessOnInvalidEmail": "email_verify_success_on_invalid_email",
        "passwordPolicy": "password_policy", "accountLockout": "account_lockout",
        "revokeSessionOnPasswordReset": "revoke_session_on_password_reset", "pages": "pages",
    }
    _POLICY_KEYS = frozenset(("validatorPattern", "validatorCallback", "validationError", "doNotAllowUsername",
                              "maxPasswordAge", "maxPasswordHistory", "resetTokenValidityDuration",
                              "resetTokenReuseIfValid", "resetPasswordSuccessOnInvalidEmail"))
    _LOCKOUT_KEYS = frozenset(("duration", "threshold", "unlockOnPasswordReset"))
    _PAGES_KEYS = frozenset(("forceRedirect", "customUrls", "pagesPath", "pagesEndpoint", "placeholders",
                             "enableLocalization", "localizationJsonPath", "localizationFallbackLocale",
                             "customRoutes", "encodePageParamHeaders"))

    @classmethod
    def from_mapping(cls, options: dict[str, Any] | None = None, **defaults: Any) -> AccountOptions:
        """Build from a server configuration mapping; keys this class does not know are ignored (so the
        whole server config can be passed). ``defaults`` (snake_case) fill what the mapping lacks."""
        kwargs: dict[str, Any] = {k: v for k, v in defaults.items() if v is not None}
        names = {f for f in cls.__dataclass_fields__}
        for key, value in (options or {}).items():
            name = cls.CAMEL.get(key, key)
            if name in names and value is not None:
                kwargs[name] = value
        opts = cls(**kwargs)
        opts.validate()
        return opts

    def validate(self) -> None:
        """Check every option (``ValueError`` naming the option), as parse-server's Config does."""
        if self.app_name is not None and not isinstance(self.app_name, str):
            raise ValueError("option 'appName' must be a string")
        if self.public_server_url is not None and (
                not isinstance(self.public_server_url, str) or not re.match(r"^https?://", self.public_server_url)):
            raise ValueError("option 'publicServerURL' must be an http:// or https:// URL")
        for attr in ("verify_user_emails", "prevent_login_with_unverified_email",
                     "prevent_signup_with_unverified_email", "send_user_email_verification",
                     "email_verify_token_reuse_if_valid", "email_verify_success_on_invalid_email",
                     "revoke_session_on_password_reset"):
            setattr(self, attr, _bool(self._camel(attr), getattr(self, attr)))
        self.email_verify_token_validity_duration = _seconds(
            "emailVerifyTokenValidityDuration", self.email_verify_token_validity_duration)
        if self.email_verify_token_reuse_if_valid and not self.email_verify_token_validity_duration:
            raise ValueError("option 'emailVerifyTokenReuseIfValid' needs emailVerifyTokenValidityDuration")
        for attr, keys in (("password_policy", self._POLICY_KEYS), ("account_lockout", self._LOCKOUT_KEYS),
                           ("pages", self._PAGES_KEYS)):
            value = getattr(self, attr)
            if not isinstance(value, dict):
                raise ValueError(f"option {self._camel(attr)!r} must be an object")
            for key in value:
                if key not in keys:
                    raise ValueError(f"option '{self._camel(attr)}.{key}' is not an option")
        policy = self.password_policy
        for key in ("maxPasswordAge", "resetTokenValidityDuration"):
            if key in policy:
                _seconds(f"passwordPolicy.{key}", policy[key])
        history = policy.get("maxPasswordHistory")
        if history is not None and (isinstance(history, bool) or not isinstance(history, int)
                                    or not 0 <= history <= 20):
            raise ValueError("option 'passwordPolicy.maxPasswordHistory' must be an integer from 0 to 20")
        pattern = policy.get("validatorPattern")
        if pattern is not None:
            if isinstance(pattern, str):
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise ValueError(f"option 'passwordPolicy.validatorPattern' is not a valid regex: {exc}") from None
            elif not isinstance(pattern, re.Pattern):
                raise ValueError("option 'passwordPolicy.validatorPattern' must be a regex string")
        if policy.get("validatorCallback") is not None and not callable(policy["validatorCallback"]):
            raise ValueError("option 'passwordPolicy.validatorCallback' must be a function")
        for key in ("doNotAllowUsername", "resetTokenReuseIfValid", "resetPasswordSuccessOnInvalidEmail"):
            if key in policy:
                _bool(f"passwordPolicy.{key}", policy[key])
        if "validationError" in policy and not isinstance(policy["validationError"], str):
            raise ValueError("option 'passwordPolicy.validationError' must be a string")
        if policy.get("resetTokenReuseIfValid") and not policy.get("resetTokenValidityDuration"):
            raise ValueError("option 'passwordPolicy.resetTokenReuseIfValid' needs resetTokenValidityDuration")
        lockout = self.account_lockout
        for key in ("duration", "threshold") if lockout else ():
            if key not in lockout or isinstance(lockout[key], bool) or not isinstance(lockout[key], int | float) \
                    or lockout[key] <= 0:
                raise ValueError(f"option 'accountLockout.{key}' must be a positive number")
        if lockout and not isinstance(lockout["threshold"], int):
            raise ValueError("option 'accountLockout.threshold' must be a whole number of failed log-ins")
        if "unlockOnPasswordReset" in lockout:
            _bool("accountLockout.unlockOnPasswordReset", lockout["unlockOnPasswordReset"])
        pages = self.pages
        if "forceRedirect" in pages:
            _bool("pages.forceRedirect", pages["forceRedirect"])
        if not isinstance(pages.get("customUrls", {}), dict):
            raise ValueError("option 'pages.customUrls' must be an object")
        for key in ("pagesPath", "pagesEndpoint"):
            if key in pages and not isinstance(pages[key], str):
                raise ValueError(f"option 'pages.{key}' must be a string")

    def _camel(self, attr: str) -> str:
        return {v: k for k, v in self.CAMEL.items()}.get(attr, attr)

    @property
    def server_url(self) -> str:
        return (self.public_server_url or "").rstrip("/")

    @property
    def pages_endpoint(self) -> str:
        return str(self.pages.get("pagesEndpoint") or "apps").strip("/")

    def verify_email_url(self) -> str:
        return f"{self.server_url}/{self.pages_endpoint}/{self.app_id}/verify_email"

    def request_reset_password_url(self) -> str:
        return f"{self.server_url}/{self.pages_endpoint}/{self.app_id}/request_password_reset"


def _expired(value: Any, now: datetime | None = None) -> bool:
    """True if a stored expiry date (``{"__type": "Date"}`` or ISO string) is in the past."""
    iso = codec.date_iso(value) if isinstance(value, dict) else value
    if not isinstance(iso, str):
        return False
    return codec.parse_iso(iso) < (now or datetime.now(UTC))


def _future_date(seconds: float) -> dict[str, str]:
    return codec.date(codec.format_iso(datetime.now(UTC) + timedelta(seconds=seconds)))


class AccountService:
    """Password reset and email verification over the server's storage (``rest.storage``/``rest.schemas``)."""

    def __init__(self, rest: RestService, options: AccountOptions | dict[str, Any] | None,
                 email_adapter: EmailAdapter | None) -> None:
        server = rest.options
        defaults = {"app_id": server.app_id, "public_server_url": server.public_server_url}
        if isinstance(options, AccountOptions):
            if not options.app_id:
                options.app_id = server.app_id
            if options.public_server_url is None:
                options.public_server_url = server.public_server_url
            self.options = options
        else:
            self.options = AccountOptions.from_mapping(options, **defaults)
        self.rest = rest
        self.adapter = email_adapter

    # --- configuration ------------------------------------------------------------------------------------
    def email_configured(self) -> bool:
        """parse-server's validateEmailConfiguration: an adapter, an app name and a publicServerURL."""
        return bool(self.adapter is not None and isinstance(self.options.app_name, str)
                    and self.options.public_server_url)

    def check_email_config(self) -> None:
        """Error 1 (HTTP 500), as parse-server answers /requestPasswordReset and /verificationEmailRequest
        when the email options are missing."""
        if not self.email_configured():
            raise ParseError(errors.INTERNAL_SERVER_ERROR, EMAIL_CONFIG_MESSAGE)

    async def _schema(self) -> ClassSchema | None:
        """``_User``'s schema with the internal token fields typed, so the stores can query them."""
        schema = await self.rest.schemas.get("_User")
        if schema is None:
            return None
        return dataclasses.replace(schema, fields={**schema.fields, **USER_INTERNAL_FIELDS})

    async def _find_users(self, where: query.Node, limit: int | None = None) -> list[dict[str, Any]]:
        schema = await self._schema()
        if schema is None:
            return []
        return await self.rest.storage.find(schema, where, limit=limit)

    async def _update(self, where: query.Node, changes: dict[str, Any]) -> dict[str, Any] | None:
        schema = await self._schema()
        if schema is None:
            return None
        changes = {**changes, "updatedAt": codec.now_iso()}
        rows = await self.rest.storage.update(schema, where, changes)
        return rows[0] if rows else None

    @staticmethod
    def _by_id(user: dict[str, Any]) -> query.Node:
        return query.Compare("objectId", "eq", user["objectId"])

    async def _deliver(self, to: str, subject: str, text: str) -> None:
        if self.adapter is None:
            return
        try:
            await self.adapter.send(to, subject, text)
        except Exception:  # noqa: BLE001 - parse-server does not wait for the adapter either
            log.exception("could not send the mail %r to %s", subject, to)

    # --- email verification -------------------------------------------------------------------------------
    def email_verify_fields(self) -> dict[str, Any]:
        """Fields to store with a new user (or a changed email) when ``verifyUserEmails`` is on: a fresh
        ``_email_verify_token``, ``emailVerified: false`` and the token's expiry when one is configured.
        Empty when verification is off."""
        if not self.options.verify_user_emails:
            return {}
        fields: dict[str, Any] = {"_email_verify_token": random_token(), "emailVerified": False}
        if self.options.email_verify_token_validity_duration:
            fields["_email_verify_token_expires_at"] = _future_date(self.options.email_verify_token_validity_duration)
        return fields

    async def handle_login_attempt(self, user: dict[str, Any], password_ok: bool) -> None:
        """accountLockout, as parse-server applies it to every log-in with a known username: a locked
        account answers 101 whatever the password; a wrong password counts, and reaching the threshold
        locks the account for ``duration`` minutes; a right one resets the count. These writes leave
        ``updatedAt`` alone, as node's do."""
        lockout = self.options.account_lockout
        if not lockout:
            return
        threshold, duration = lockout["threshold"], lockout["duration"]
        count = user.get("_failed_login_count")
        count = count if isinstance(count, int | float) and not isinstance(count, bool) else 0
        expires = user.get("_account_lockout_expires_at")
        if count >= threshold and expires is not None and not _expired(expires):
            raise ParseError(errors.OBJECT_NOT_FOUND, "Your account is locked due to multiple failed login "
                                                      f"attempts. Please try again after {duration} minute(s)")
        schema = await self._schema()
        if schema is None:
            return
        if password_ok:
            await self.rest.storage.update(schema, self._by_id(user), {"_failed_login_count": 0})
            return
        rows = await self.rest.storage.update(schema, self._by_id(user), {"_failed_login_count": Increment(1)})
        if rows and (rows[0].get("_failed_login_count") or 0) >= threshold:
            await self.rest.storage.update(schema, self._by_id(user),
                                           {"_account_lockout_expires_at": _future_date(duration * 60)})

    def check_login_allowed(self, user: dict[str, Any], *, master: bool = False,
                            ignore_email_verification: bool = False) -> None:
        """205 "User email is not verified." on log-in when preventLoginWithUnverifiedEmail applies."""
        if master and ignore_email_verification:
            return
        if (self.options.verify_user_emails and self.options.prevent_login_with_unverified_email
                and user.get("email") and user.get("emailVerified") is not True):
            raise ParseError(errors.EMAIL_NOT_FOUND, "User email is not verified.")

    def signup_needs_session(self) -> bool:
        """False when a sign-up must not return a session token (unverified email and
        preventLoginWithUnverifiedEmail)."""
        return not (self.options.verify_user_emails and self.options.prevent_login_with_unverified_email)

    async def send_verification_email(self, user: dict[str, Any]) -> bool:
        """Mail the verification link for a stored user holding ``_email_verify_token``; False if none sent."""
        opts = self.options
        if not opts.verify_user_emails or not opts.send_user_email_verification or self.adapter is None:
            return False
        if "_email_verify_token" not in user or "email" not in user or "username" not in user:
            fetched = await self._find_users(self._by_id(user), limit=1)
            if not fetched:
                return False
            user = fetched[0]
        token, email = user.get("_email_verify_token"), user.get("email")
        if not isinstance(token, str) or not isinstance(email, str):
            return False
        link = f"{opts.verify_email_url()}?token={quote(token, safe='')}"
        app = opts.app_name or ""
        text = (f"Hello,\n\nPlease confirm that {email} is your email address for {app} by opening this link:\n"
                f"{link}\n\nIf you did not sign up for {app}, you can ignore this mail.\n")
        await self._deliver(email, f"Please verify your e-mail for {app}", text)
        return True

    async def regenerate_email_verify_token(self, user: dict[str, Any]) -> bool:
        """A new verification token for the user (or the current one when emailVerifyTokenReuseIfValid and it
        is still valid); False when verification is off."""
        opts = self.options
        token = user.get("_email_verify_token")
        if (opts.email_verify_token_reuse_if_valid and opts.email_verify_token_validity_duration and token
                and user.get("_email_verify_token_expires_at")
                and not _expired(user.get("_email_verify_token_expires_at"))):
            return True
        fields = self.email_verify_fields()
        if not fields:
            return False
        updated = await self._update(self._by_id(user), fields)
        user.update(fields)
        return updated is not None

    async def verification_email_request(self, email: Any) -> dict[str, Any]:
        """``POST /verificationEmailRequest {email}``; the response body (``{}``) or a ParseError."""
        self.check_email_config()
        if not email:
            raise ParseError(errors.EMAIL_MISSING, "you must provide an email")
        if not isinstance(email, str):
            raise ParseError(errors.INVALID_EMAIL_ADDRESS, "you must provide a valid email string")
        quiet = self.options.email_verify_success_on_invalid_email
        found = await self._find_users(query.Compare("email", "eq", email))
        if not found:
            if quiet:
                return {}
            raise ParseError(errors.EMAIL_NOT_FOUND, f"No user found with email {email}")
        user = found[0]
        if user.get("emailVerified"):
            if quiet:
                return {}
            raise ParseError(errors.OTHER_CAUSE, f"Email {email} is already verified.")
        if await self.regenerate_email_verify_token(user):
            await self.send_verification_email(user)
        return {}

    async def verify_email(self, token: Any) -> bool:
        """Mark the user holding this verification token as verified; False for an unknown, expired or
        already used token (or when verifyUserEmails is off)."""
        if not self.options.verify_user_emails or not isinstance(token, str) or not token:
            return False
        found = await self._find_users(query.Compare("_email_verify_token", "eq", token), limit=1)
        if not found:
            return False
        user = found[0]
        changes: dict[str, Any] = {"emailVerified": True, "_email_verify_token": Delete()}
        if self.options.email_verify_token_validity_duration:
            if user.get("emailVerified") is not False or _expired(user.get("_email_verify_token_expires_at")) \
                    or not user.get("_email_verify_token_expires_at"):
                return False
            changes["_email_verify_token_expires_at"] = Delete()
        where = query.And([self._by_id(user), query.Compare("_email_verify_token", "eq", token)])
        return await self._update(where, changes) is not None

    async def resend_verification_email(self, username: Any = None, token: Any = None) -> bool:
        """The pages' "send the link again": finds the user by username and/or (possibly expired) token;
        False when there is no single such user or it is verified already."""
        parts: list[query.Node] = []
        if isinstance(username, str) and username:
            parts.append(query.Compare("username", "eq", username))
        if isinstance(token, str) and token:
            parts.append(query.Compare("_email_verify_token", "eq", token))
        if not parts:
            return False
        found = await self._find_users(query.And(parts), limit=2)
        if len(found) != 1 or found[0].get("emailVerified"):
            return False
        user = found[0]
        if not await self.regenerate_email_verify_token(user):
            return False
        await self.send_verification_email(user)
        return True

    # --- password reset -------------------------------------------------------------------------------------
    def _reset_where(self, email: str) -> query.Node:
        # a user without an email can reset with the username in the email field
        return query.Or([query.Compare("email", "eq", email),
                         query.And([query.Compare("username", "eq", email), query.Exists("email", False)])])

    async def request_password_reset(self, email: Any = None, token: Any = None) -> dict[str, Any]:
        """``POST /requestPasswordReset {email}`` (or ``{token}``: an expired reset token, to get a new link).
        An unknown email answers ``{}`` unless ``passwordPolicy.resetPasswordSuccessOnInvalidEmail`` is
        false (then 101 "A user with that email does not exist.")."""
        self.check_email_config()
        if not email and not token:
            raise ParseError(errors.EMAIL_MISSING, "you must provide an email")
        if token and not isinstance(token, str):
            raise ParseError(INVALID_VALUE, "token must be a string")
        if token:
            rows = await self._find_users(query.Compare("_perishable_token", "eq", token), limit=1)
            if rows and _expired(rows[0].get("_perishable_token_expires_at")) and rows[0].get("email"):
                email = rows[0]["email"]
        if not isinstance(email, str):
            raise ParseError(errors.INVALID_EMAIL_ADDRESS, "you must provide a valid email string")
        user = await self._password_reset_user(email)
        if user is None:
            if self.options.password_policy.get("resetPasswordSuccessOnInvalidEmail", True):
                return {}
            raise ParseError(errors.OBJECT_NOT_FOUND, "A user with that email does not exist.")
        await self.send_password_reset_email(user)
        return {}

    async def _password_reset_user(self, email: str) -> dict[str, Any] | None:
        """The user to reset, with a reset token: the current one when resetTokenReuseIfValid and still
        valid, else a new one."""
        policy = self.options.password_policy
        where = self._reset_where(email)
        if policy.get("resetTokenReuseIfValid") and policy.get("resetTokenValidityDuration"):
            rows = await self._find_users(query.And([where, query.Exists("_perishable_token", True)]), limit=1)
            if rows and rows[0].get("_perishable_token_expires_at") \
                    and not _expired(rows[0]["_perishable_token_expires_at"]):
                return rows[0]
        fields: dict[str, Any] = {"_perishable_token": random_token()}
        if policy.get("resetTokenValidityDuration"):
            fields["_perishable_token_expires_at"] = _future_date(policy["resetTokenValidityDuration"])
        return await self._update(where, fields)

    async def send_password_reset_email(self, user: dict[str, Any]) -> None:
        token = user.get("_perishable_token")
        if not isinstance(token, str):
            return
        link = f"{self.options.request_reset_password_url()}?token={quote(token, safe='')}"
        app = self.options.app_name or ""
        username = user.get("username")
        named = f" (your username is '{username}')" if username else ""
        text = (f"Hello,\n\nSomeone asked to reset the password of your account at {app}{named}.\n"
                f"Choose a new password here:\n{link}\n\nIf it was not you, ignore this mail: "
                "your password stays as it is.\n")
        to = user.get("email") or username
        if isinstance(to, str):
            await self._deliver(to, f"Password Reset for {app}", text)

    async def check_reset_token(self, token: Any) -> dict[str, Any]:
        """The stored user holding this reset token; :class:`AccountError` if none or expired."""
        if not isinstance(token, str) or not token:
            raise AccountError(INVALID_RESET_LINK)
        rows = await self._find_users(query.Compare("_perishable_token", "eq", token), limit=2)
        if len(rows) != 1:
            raise AccountError(INVALID_RESET_LINK)
        user = rows[0]
        if self.options.password_policy.get("resetTokenValidityDuration") \
                and _expired(user.get("_perishable_token_expires_at")):
            raise AccountError(EXPIRED_RESET_LINK)
        return user

    async def validate_password(self, user: dict[str, Any], password: str) -> None:
        """passwordPolicy checks for a new password (142 with parse-server's messages)."""
        policy = self.options.password_policy
        if not policy:
            return
        message = policy.get("validationError") or "Password does not meet the Password Policy requirements."
        pattern = policy.get("validatorPattern")
        if pattern is not None:
            compiled = pattern if isinstance(pattern, re.Pattern) else re.compile(pattern)
            if not compiled.search(password):
                raise ParseError(errors.VALIDATION_ERROR, message)
        callback = policy.get("validatorCallback")
        if callback is not None and not callback(password):
            raise ParseError(errors.VALIDATION_ERROR, message)
        username = user.get("username")
        if policy.get("doNotAllowUsername") is True and isinstance(username, str) and username in password:
            raise ParseError(errors.VALIDATION_ERROR, "Password cannot contain your username.")
        history = policy.get("maxPasswordHistory")
        if history:
            old = list(user.get("_password_history") or [])[: history - 1] + [user.get("_hashed_password")]
            for hashed in old:
                if await users.check_password(password, hashed):
                    raise ParseError(errors.VALIDATION_ERROR,
                                     f"New password should not be the same as last {history} passwords.")

    async def reset_password(self, token: Any, new_password: Any) -> dict[str, Any]:
        """Set a new password with a reset token: the password policy applies, the token is used up,
        sessions are revoked (revokeSessionOnPasswordReset) and a lockout is lifted
        (accountLockout.unlockOnPasswordReset). Returns the updated user; :class:`AccountError` with
        parse-server's message on failure."""
        user = await self.check_reset_token(token)
        if not isinstance(new_password, str) or not new_password:
            raise AccountError("Missing password")
        try:
            await self.validate_password(user, new_password)
        except ParseError as exc:
            raise AccountError(exc.message) from None
        policy = self.options.password_policy
        changes: dict[str, Any] = {
            "_hashed_password": await users.hash_password(new_password),
            "_perishable_token": Delete(), "_perishable_token_expires_at": Delete(),
        }
        if policy.get("maxPasswordAge"):
            changes["_password_changed_at"] = codec.date(codec.now_iso())
        history = policy.get("maxPasswordHistory")
        if history:
            old = list(user.get("_password_history") or [])
            while len(old) > max(0, history - 2):
                old.pop(0)
            if isinstance(user.get("_hashed_password"), str):
                old.append(user["_hashed_password"])
            changes["_password_history"] = old
        if self.options.account_lockout.get("unlockOnPasswordReset"):
            changes["_failed_login_count"] = Delete()
            changes["_account_lockout_expires_at"] = Delete()
        where = query.And([self._by_id(user), query.Compare("_perishable_token", "eq", token)])
        updated = await self._update(where, changes)
        if updated is None:
            raise AccountError(INVALID_RESET_LINK)
        if self.options.revoke_session_on_password_reset:
            await self.rest.sessions.revoke_all(user["objectId"])
        return updated
