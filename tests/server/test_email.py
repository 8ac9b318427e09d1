"""Email adapters, password reset, email verification and the /apps pages, as parse-server 9.10 runs them."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from parsectl.model import query
from parsectl.model.codec import date
from parsectl.model.errors import ParseError
from parsectl.model.schema import USER_INTERNAL_FIELDS
from parsectl.server.account import AccountOptions, AccountService
from parsectl.server.email import FolderEmailAdapter, SMTPEmailAdapter, adapter_for
from parsectl.server.pages import Pages, render
from tests.server.conftest import Client, make_client

PUBLIC = "http://localhost:1337/parse"
FORM = {"content-type": "application/x-www-form-urlencoded"}


# --- fixtures ------------------------------------------------------------------------------------------------
class Env:
    def __init__(self, client: Client, mail_dir: Path) -> None:
        self.client = client
        self.mail = FolderEmailAdapter(mail_dir)

    def run(self, coro: Any) -> Any:
        return self.client.loop.run_until_complete(coro)

    def account(self, **options: Any) -> AccountService:
        return AccountService(self.client.api.rest, {"appName": "Demo", **options}, self.mail)

    def signup(self, username: str, email: str | None = None, password: str = "pw-1") -> dict[str, Any]:
        body: dict[str, Any] = {"username": username, "password": password}
        if email:
            body["email"] = email
        r = self.client.request("POST", "/users", json=body)
        assert r.status_code == 201, r.text
        return r.json()

    def stored(self, username: str) -> dict[str, Any]:
        rest = self.client.api.rest
        schema = self.run(rest.schemas.get("_User"))
        schema = dataclasses.replace(schema, fields={**schema.fields, **USER_INTERNAL_FIELDS})
        return self.run(rest.storage.find(schema, query.Compare("username", "eq", username)))[0]

    def set_internal(self, username: str, changes: dict[str, Any]) -> None:
        rest = self.client.api.rest
        schema = self.run(rest.schemas.get("_User"))
        schema = dataclasses.replace(schema, fields={**schema.fields, **USER_INTERNAL_FIELDS})
        self.run(rest.storage.update(schema, query.Compare("username", "eq", username), changes))

    def last_link(self) -> str:
        text = self.mail.messages()[-1].get_content()
        return re.search(r"https?://\S+", text).group(0)  # type: ignore[union-attr]

    def last_token(self) -> str:
        return self.last_link().split("token=", 1)[1]


@pytest.fixture
def env(database_uri: str, tmp_path: Path) -> Iterator[Env]:
    client = make_client(database_uri, public_server_url=PUBLIC)
    client.loop.run_until_complete(client.api.start())
    yield Env(client, tmp_path / "mail")
    client.close()


def body_text(response: Any) -> str:
    return response.encoded().decode()


# --- the folder adapter and adapter_for ------------------------------------------------------------------
def test_folder_adapter_writes_one_eml_per_mail(tmp_path: Path) -> None:
    adapter = FolderEmailAdapter(tmp_path / "out", from_address="app@example.com")
    asyncio.run(adapter.send("ann@example.com", "Hi", "plain body"))
    asyncio.run(adapter.send("bob@example.com", "Hello", "text", html="<p>html</p>"))
    files = adapter.files()
    assert len(files) == 2 and all(f.suffix == ".eml" for f in files)
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".tmp")]
    first, second = adapter.messages()
    assert (first["To"], first["From"], first["Subject"]) == ("ann@example.com", "app@example.com", "Hi")
    assert first.get_content().strip() == "plain body"
    assert second.get_body(("html",)).get_content().strip() == "<p>html</p>"
    with pytest.raises(ValueError, match="single line"):
        asyncio.run(adapter.send("a@example.com\r\nBcc: x@example.com", "s", "t"))


def test_adapter_for_options() -> None:
    assert isinstance(adapter_for(None), FolderEmailAdapter)
    assert adapter_for(False) is None
    folder = adapter_for({"module": "folder", "options": {"directory": "/tmp/x", "fromAddress": "a@b.c"}})
    assert isinstance(folder, FolderEmailAdapter) and str(folder.directory) == "/tmp/x"
    smtp = adapter_for({"module": "smtp", "options": {"host": "127.0.0.1", "port": 2525, "fromAddress": "a@b.c",
                                                      "username": "u", "password": "p", "starttls": True}})
    assert isinstance(smtp, SMTPEmailAdapter) and (smtp.port, smtp.starttls) == (2525, True)
    assert adapter_for({"module": "smtp", "options": {"host": "h", "ssl": True}}).port == 465  # type: ignore[union-attr]
    assert adapter_for(folder) is folder
    bad = [({"module": "sendgrid"}, "emailAdapter.module"),
           ({"module": "smtp", "options": {"host": "h", "prot": 1}}, "emailAdapter.options.prot"),
           ({"module": "smtp", "options": {}}, "emailAdapter.options.host"),
           ({"module": "smtp", "options": {"host": "h", "port": 70000}}, "emailAdapter.options.port"),
           ({"module": "smtp", "options": {"host": "h", "ssl": True, "starttls": True}}, "emailAdapter.options.ssl"),
           ({"module": "smtp", "options": {"host": "h", "username": "u"}}, "emailAdapter.options.password"),
           ({"module": "smtp", "options": {"host": "h", "fromAddress": "nobody"}}, "emailAdapter.options.fromAddress"),
           ({"module": "smtp", "options": {"host": "h", "timeout": 0}}, "emailAdapter.options.timeout"),
           ({"module": "folder", "options": {"dir": "x"}}, "emailAdapter.options.dir"),
           ({"module": "folder", "extra": 1}, "emailAdapter.extra"),
           (42, "emailAdapter must be")]
    for spec, message in bad:
        with pytest.raises(ValueError, match=re.escape(message)):
            adapter_for(spec)


# --- the SMTP adapter against a small SMTP sink on loopback ------------------------------------------------
class SmtpSink:
    """Just enough SMTP (EHLO, AUTH PLAIN, MAIL, RCPT, DATA, QUIT) to receive mails in a test."""

    def __init__(self) -> None:
        self.mails: list[dict[str, Any]] = []
        self.auth: list[str] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 sink ESMTP\r\n")
        mail: dict[str, Any] = {"rcpt": []}
        while line := await reader.readline():
            command = line.decode().rstrip("\r\n")
            verb = command.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                writer.write(b"250-sink\r\n250 AUTH PLAIN\r\n")
            elif verb == "AUTH":
                self.auth.append(base64.b64decode(command.split()[2]).decode())
                writer.write(b"235 ok\r\n")
            elif verb == "MAIL":
                mail = {"from": command[10:], "rcpt": []}
                writer.write(b"250 ok\r\n")
            elif verb == "RCPT":
                mail["rcpt"].append(command[8:])
                writer.write(b"250 ok\r\n")
            elif verb == "DATA":
                writer.write(b"354 go on\r\n")
                await writer.drain()
                data = await reader.readuntil(b"\r\n.\r\n")
                mail["data"] = data[:-5].decode()
                self.mails.append(mail)
                writer.write(b"250 queued\r\n")
            elif verb == "QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                break
            else:
                writer.write(b"250 ok\r\n")
            await writer.drain()
        writer.close()


def test_smtp_adapter_delivers_to_a_loopback_server() -> None:
    async def scenario() -> SmtpSink:
        sink = SmtpSink()
        server = await asyncio.start_server(sink.serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        adapter = adapter_for({"module": "smtp", "options": {"host": "127.0.0.1", "port": port, "username": "bob",
                                                             "password": "s3cret", "fromAddress": "app@example.com",
                                                             "timeout": 5}})
        assert adapter is not None
        await adapter.send("ann@example.com", "Password Reset for Demo", "Click:\nhttp://x/?token=abc")
        server.close()
        await server.wait_closed()
        return sink

    sink = asyncio.run(scenario())
    assert sink.auth == ["\0bob\0s3cret"]
    [mail] = sink.mails
    assert mail["from"].strip("<>") == "app@example.com" and mail["rcpt"] == ["<ann@example.com>"]
    assert "Subject: Password Reset for Demo" in mail["data"] and "token=abc" in mail["data"]


def test_smtp_adapter_failure_raises() -> None:
    adapter = SMTPEmailAdapter("127.0.0.1", 1, timeout=2)  # nothing listens on port 1
    with pytest.raises(OSError):
        asyncio.run(adapter.send("a@example.com", "s", "t"))


# --- options -----------------------------------------------------------------------------------------------
def test_account_options_validation() -> None:
    opts = AccountOptions.from_mapping({"appName": "A", "verifyUserEmails": True, "databaseURI": "ignored",
                                        "passwordPolicy": {"resetTokenValidityDuration": 60}}, app_id="x")
    assert (opts.app_id, opts.app_name, opts.verify_user_emails) == ("x", "A", True)
    bad = [({"verifyUserEmails": "yes"}, "verifyUserEmails"),
           ({"emailVerifyTokenValidityDuration": -1}, "emailVerifyTokenValidityDuration"),
           ({"emailVerifyTokenReuseIfValid": True}, "emailVerifyTokenReuseIfValid"),
           ({"passwordPolicy": {"maxPasswordHistory": 21}}, "passwordPolicy.maxPasswordHistory"),
           ({"passwordPolicy": {"validatorPattern": "("}}, "passwordPolicy.validatorPattern"),
           ({"passwordPolicy": {"resetTokenReuseIfValid": True}}, "passwordPolicy.resetTokenReuseIfValid"),
           ({"passwordPolicy": {"nope": 1}}, "passwordPolicy.nope"),
           ({"accountLockout": {"threshold": 0, "duration": 5}}, "accountLockout.threshold"),
           ({"accountLockout": {"threshold": 3}}, "accountLockout.duration"),
           ({"accountLockout": {"duration": 5}}, "accountLockout.threshold"),
           ({"accountLockout": {"threshold": 1.5, "duration": 5}}, "accountLockout.threshold"),
           ({"publicServerURL": "localhost"}, "publicServerURL"),
           ({"pages": {"forceRedirect": 1}}, "pages.forceRedirect")]
    for mapping, name in bad:
        with pytest.raises(ValueError, match=re.escape(name)):
            AccountOptions.from_mapping(mapping)


# --- password reset ------------------------------------------------------------------------------------------
def test_request_password_reset_codes(env: Env) -> None:
    env.signup("ann", "ann@example.com")
    account = env.account()
    cases = [(None, 204, "you must provide an email"), ("", 204, "you must provide an email"),
             (42, 125, "you must provide a valid email string")]
    for email, code, message in cases:
        with pytest.raises(ParseError) as err:
            env.run(account.request_password_reset(email))
        assert (err.value.code, err.value.message) == (code, message)
    # an unknown email answers {} (no user enumeration), and sends nothing
    assert env.run(account.request_password_reset("nobody@example.com")) == {}
    assert env.mail.files() == []
    strict = env.account(passwordPolicy={"resetPasswordSuccessOnInvalidEmail": False})
    with pytest.raises(ParseError) as err:
        env.run(strict.request_password_reset("nobody@example.com"))
    assert (err.value.code, err.value.message, err.value.http_status) == (
        101, "A user with that email does not exist.", 404)
    # the email options are required: error 1 (HTTP 500)
    for broken in (AccountService(env.client.api.rest, {"appName": "Demo"}, None),
                   AccountService(env.client.api.rest, {}, env.mail)):
        with pytest.raises(ParseError) as err:
            env.run(broken.request_password_reset("ann@example.com"))
        assert (err.value.code, err.value.http_status) == (1, 500)
        with pytest.raises(ParseError):
            env.run(broken.verification_email_request("ann@example.com"))


def test_password_reset_flow_through_the_pages(env: Env) -> None:
    user = env.signup("ann", "ann@example.com", password="old-pw")
    account = env.account()
    pages = Pages(account)
    assert env.run(account.request_password_reset("ann@example.com")) == {}
    [message] = env.mail.messages()
    assert (message["To"], message["Subject"]) == ("ann@example.com", "Password Reset for Demo")
    link = env.last_link()
    token = env.last_token()
    assert link == f"{PUBLIC}/apps/test/request_password_reset?token={token}"
    assert len(token) == 25 and env.stored("ann")["_perishable_token"] == token
    # the link shows the form
    r = env.run(pages.handle("GET", "/apps/test/request_password_reset", {"token": token}))
    assert r.status == 200 and r.content_type.startswith(b"text/html")
    page = body_text(r)
    assert f'value="{token}"' in page and "/parse/apps/test/request_password_reset" in page and "Demo" in page
    assert (b"x-parse-page-param-token", token.encode()) in r.headers
    # a policy failure shows the form again, with the error
    strict = Pages(env.account(passwordPolicy={"validatorPattern": "^(?=.*[0-9]).{8,}$",
                                               "validationError": "8 characters and a digit"}))
    r = env.run(strict.handle("POST", "/apps/test/request_password_reset", {},
                              f"token={token}&new_password=short".encode(), FORM))
    assert r.status == 200 and "8 characters and a digit" in body_text(r)
    # the form posts the new password: success page, token used up, sessions revoked
    r = env.run(pages.handle("POST", "/apps/test/request_password_reset", {},
                             f"token={token}&new_password=new-pw-1&confirm=new-pw-1".encode(), FORM))
    assert r.status == 200 and "password has been changed" in body_text(r)
    assert "_perishable_token" not in env.stored("ann")
    me = env.client.request("GET", "/users/me", headers={"X-Parse-Session-Token": user["sessionToken"]})
    assert me.json()["code"] == 209
    assert env.client.request("GET", "/login", params={"username": "ann", "password": "new-pw-1"}).status_code == 200
    assert env.client.request("GET", "/login", params={"username": "ann", "password": "old-pw"}).status_code == 404
    # the used link is invalid now
    r = env.run(pages.handle("GET", "/apps/test/request_password_reset", {"token": token}))
    assert r.status == 200 and "password reset link is not valid" in body_text(r)
    r = env.run(pages.handle("POST", "/apps/test/request_password_reset", {},
                             f"token={token}&new_password=x".encode(), FORM))
    assert "Failed to reset password: username / email / token is invalid" in body_text(r)


def test_password_reset_xhr_and_missing_fields(env: Env) -> None:
    env.signup("bob")  # no email: the username stands in for it
    account = env.account()
    pages = Pages(account)
    env.run(account.request_password_reset("bob"))
    assert env.mail.messages()[-1]["To"] == "bob"
    token = env.last_token()
    xhr = {"x-requested-with": "XMLHttpRequest", "content-type": "application/json"}
    with pytest.raises(ParseError) as err:
        env.run(pages.handle("POST", "/apps/test/request_password_reset", {}, b'{"new_password": "x"}', xhr))
    assert (err.value.code, err.value.message) == (-1, "Missing token")
    with pytest.raises(ParseError) as err:
        env.run(pages.handle("POST", "/apps/test/request_password_reset", {}, b'{"token": "t"}', xhr))
    assert (err.value.code, err.value.message) == (201, "Missing password")
    with pytest.raises(ParseError) as err:
        env.run(pages.handle("POST", "/apps/test/request_password_reset", {},
                             b'{"token": "wrong", "new_password": "x"}', xhr))
    assert (err.value.code, err.value.message) == (-1, "Failed to reset password: username / email / token is invalid")
    r = env.run(pages.handle("POST", "/apps/test/request_password_reset", {},
                             f'{{"token": "{token}", "new_password": "n3w"}}'.encode(), xhr))
    assert (r.status, r.encoded()) == (200, b'"Password successfully reset"')
    # without xhr, a missing field redirects (303) to the invalid-link page
    r = env.run(pages.handle("POST", "/apps/test/request_password_reset", {}, b"token=abc", FORM))
    location = dict(r.headers)[b"location"].decode()
    assert r.status == 303 and location.startswith(f"{PUBLIC}/apps/password_reset_link_invalid.html?")
    assert "appId=test" in location and "appName=Demo" in location
    assert body_text(r) == f"Found. Redirecting to {location}"


def test_reset_token_expiry_reuse_and_lockout(env: Env) -> None:
    env.signup("ann", "ann@example.com")
    account = env.account(passwordPolicy={"resetTokenValidityDuration": 600, "resetTokenReuseIfValid": True},
                          accountLockout={"threshold": 3, "duration": 5, "unlockOnPasswordReset": True})
    env.run(account.request_password_reset("ann@example.com"))
    first = env.last_token()
    assert "_perishable_token_expires_at" in env.stored("ann")
    env.run(account.request_password_reset("ann@example.com"))
    assert env.last_token() == first  # reused while valid
    env.set_internal("ann", {"_perishable_token_expires_at": date("2001-01-01T00:00:00.000Z"),
                             "_failed_login_count": 3})
    pages = Pages(account)
    r = env.run(pages.handle("GET", "/apps/test/request_password_reset", {"token": first}))
    assert "password reset link is not valid" in body_text(r)
    r = env.run(pages.handle("POST", "/apps/test/request_password_reset", {},
                             f"token={first}&new_password=n".encode(), FORM))
    assert "The password reset link has expired" in body_text(r)
    # an expired token can ask for a new link (9.10's {token} form of /requestPasswordReset)
    assert env.run(account.request_password_reset(None, first)) == {}
    second = env.last_token()
    assert second != first
    with pytest.raises(ParseError) as err:
        env.run(account.request_password_reset(None, 5))
    assert err.value.code == 162
    env.run(account.reset_password(second, "brand-new"))
    assert "_failed_login_count" not in env.stored("ann")


def test_password_history_policy(env: Env) -> None:
    env.signup("ann", "ann@example.com", password="first-pw")
    account = env.account(passwordPolicy={"maxPasswordHistory": 2})
    env.run(account.request_password_reset("ann@example.com"))
    pages = Pages(account)
    r = env.run(pages.handle("POST", "/apps/test/request_password_reset", {},
                             f"token={env.last_token()}&new_password=first-pw".encode(), FORM))
    assert "New password should not be the same as last 2 passwords." in body_text(r)
    env.run(account.reset_password(env.last_token(), "second-pw"))
    assert len(env.stored("ann")["_password_history"]) == 1


# --- email verification -----------------------------------------------------------------------------------
def test_verification_email_request_and_verify_page(env: Env) -> None:
    env.signup("ann", "ann@example.com")
    account = env.account(verifyUserEmails=True)
    pages = Pages(account)
    with pytest.raises(ParseError) as err:
        env.run(account.verification_email_request(None))
    assert (err.value.code, err.value.message) == (204, "you must provide an email")
    with pytest.raises(ParseError) as err:
        env.run(account.verification_email_request(["x"]))
    assert err.value.code == 125
    assert env.run(account.verification_email_request("nobody@example.com")) == {}
    assert env.run(account.verification_email_request("ann@example.com")) == {}
    message = env.mail.messages()[-1]
    assert (message["To"], message["Subject"]) == ("ann@example.com", "Please verify your e-mail for Demo")
    token = env.last_token()
    assert env.last_link() == f"{PUBLIC}/apps/test/verify_email?token={token}"
    assert env.stored("ann")["emailVerified"] is False
    r = env.run(pages.handle("GET", "/apps/test/verify_email", {"token": token}))
    assert r.status == 200 and "now verified" in body_text(r)
    stored = env.stored("ann")
    assert stored["emailVerified"] is True and "_email_verify_token" not in stored
    r = env.run(pages.handle("GET", "/apps/test/verify_email", {"token": token}))
    assert "verification link is not valid" in body_text(r)
    r = env.run(pages.handle("GET", "/apps/test/verify_email", {}))
    assert "verification link is not valid" in body_text(r)
    # verified already: {} by default, -1 when emailVerifySuccessOnInvalidEmail is false
    assert env.run(account.verification_email_request("ann@example.com")) == {}
    strict = env.account(verifyUserEmails=True, emailVerifySuccessOnInvalidEmail=False)
    with pytest.raises(ParseError) as err:
        env.run(strict.verification_email_request("ann@example.com"))
    assert (err.value.code, err.value.message) == (-1, "Email ann@example.com is already verified.")
    with pytest.raises(ParseError) as err:
        env.run(strict.verification_email_request("nobody@example.com"))
    assert (err.value.code, err.value.message) == (205, "No user found with email nobody@example.com")


def test_verification_off_sends_nothing(env: Env) -> None:
    env.signup("ann", "ann@example.com")
    account = env.account()
    assert account.email_verify_fields() == {}
    assert env.run(account.verification_email_request("ann@example.com")) == {}
    assert env.mail.files() == []
    assert env.run(account.verify_email("anything")) is False


def test_expired_verification_link_and_resend(env: Env) -> None:
    env.signup("ann", "ann@example.com")
    account = env.account(verifyUserEmails=True, emailVerifyTokenValidityDuration=60)
    fields = account.email_verify_fields()
    assert set(fields) == {"_email_verify_token", "emailVerified", "_email_verify_token_expires_at"}
    env.set_internal("ann", fields)
    env.set_internal("ann", {"_email_verify_token_expires_at": date("2001-01-01T00:00:00.000Z")})
    pages = Pages(account)
    token = fields["_email_verify_token"]
    r = env.run(pages.handle("GET", "/apps/test/verify_email", {"token": token}))
    assert "verification link is not valid" in body_text(r)
    # the expired token asks for a new link: 303 to the send-success page
    r = env.run(pages.handle("POST", "/apps/test/resend_verification_email", {}, f"token={token}".encode(), FORM))
    assert r.status == 303
    assert dict(r.headers)[b"location"].decode().startswith(f"{PUBLIC}/apps/email_verification_send_success.html?")
    fresh = env.last_token()
    assert fresh != token
    assert env.run(account.verify_email(fresh)) is True
    # unknown token: still the success page unless emailVerifySuccessOnInvalidEmail is false
    r = env.run(pages.handle("POST", "/apps/test/resend_verification_email", {}, b"token=nope", FORM))
    assert b"email_verification_send_success.html" in dict(r.headers)[b"location"]
    strict = Pages(env.account(verifyUserEmails=True, emailVerifySuccessOnInvalidEmail=False))
    r = env.run(strict.handle("POST", "/apps/test/resend_verification_email", {}, b"token=nope", FORM))
    assert b"email_verification_send_fail.html" in dict(r.headers)[b"location"]
    r = env.run(strict.handle("POST", "/apps/test/resend_verification_email", {}, b"", FORM))
    assert b"email_verification_link_invalid.html" in dict(r.headers)[b"location"]


def test_login_gate_for_unverified_email(env: Env) -> None:
    account = env.account(verifyUserEmails=True, preventLoginWithUnverifiedEmail=True)
    assert account.signup_needs_session() is False
    with pytest.raises(ParseError) as err:
        account.check_login_allowed({"email": "a@example.com", "emailVerified": False})
    assert (err.value.code, err.value.message) == (205, "User email is not verified.")
    account.check_login_allowed({"email": "a@example.com", "emailVerified": True})
    account.check_login_allowed({"email": "a@example.com"}, master=True, ignore_email_verification=True)
    assert env.account().signup_needs_session() is True


# --- pages: configuration, routing, static files -----------------------------------------------------------
def test_pages_need_public_server_url_and_known_app(database_uri: str, tmp_path: Path) -> None:
    client = make_client(database_uri)  # no publicServerURL
    try:
        client.loop.run_until_complete(client.api.start())
        account = AccountService(client.api.rest, {"appName": "Demo"}, FolderEmailAdapter(tmp_path))
        pages = Pages(account)
        run = client.loop.run_until_complete
        for method, path, query_ in (("GET", "/apps/test/verify_email", {"token": "x"}),
                                     ("GET", "/apps/test/request_password_reset", {"token": "x"}),
                                     ("GET", "/apps/choose_password", {"appId": "test"})):
            r = run(pages.handle(method, path, query_))
            assert (r.status, r.encoded()) == (404, b"Not found."), path
        r = run(pages.handle("GET", "/apps/other/verify_email", {"token": "x"}))
        assert (r.status, r.encoded()) == (403, b'{"error":"unauthorized"}')
        r = run(pages.handle("GET", "/apps/choose_password", {}))
        assert r.status == 403
        assert run(pages.handle("GET", "/classes/X", {})) is None
    finally:
        client.close()


def test_choose_password_static_files_and_force_redirect(env: Env) -> None:
    pages = Pages(env.account())
    r = env.run(pages.handle("GET", "/apps/choose_password", {"appId": "test", "token": "t<k>"}))
    assert r.status == 200 and 'value="t&lt;k&gt;"' in body_text(r)
    r = env.run(pages.handle("GET", "/apps/password_reset_success.html", {"locale": "de-AT"}))
    assert r.status == 200 and "<h1>Demo</h1>" in body_text(r)
    assert (b"x-parse-page-param-locale", b"de-AT") in r.headers
    for resource in ("../../pyproject.toml", "missing.html", "%2e%2e/x"):
        r = env.run(pages.handle("GET", f"/apps/{resource}", {}))
        assert r.status == 404, resource
    forced = Pages(env.account(pages={"forceRedirect": True}))
    r = env.run(forced.handle("GET", "/apps/test/verify_email", {"token": "x"}))
    assert r.status == 303
    assert dict(r.headers)[b"location"].startswith(f"{PUBLIC}/apps/email_verification_link_invalid.html?".encode())
    custom = Pages(env.account(pages={"customUrls": {"passwordResetLinkInvalid": "https://example.com/bad"}}))
    r = env.run(custom.handle("GET", "/apps/test/request_password_reset", {}))
    assert r.status == 303 and dict(r.headers)[b"location"].startswith(b"https://example.com/bad?")


def test_render_escapes() -> None:
    assert render("<p>{{ a }}{{b}}{{missing}}</p>", {"a": "<x>", "b": '"q"'}) == "<p>&lt;x&gt;&quot;q&quot;</p>"
