"""The public pages under ``<mount>/apps``: email verification and password reset, as parse-server 9.10's
pages router answers them (no Parse keys needed; the app id is in the path).

===========================================  ===============================================================
``GET  /apps/:appId/verify_email?token``     verifies, then shows the success or the invalid-link page
``POST /apps/:appId/resend_verification_email``  ``{token}`` or ``{username}``: new link, 303 to a result page
``GET  /apps/:appId/request_password_reset?token``  the choose-a-password form, or the invalid-link page
``POST /apps/:appId/request_password_reset``  ``{token, new_password}``: success page, or the form with the
                                              error; with ``X-Requested-With: XMLHttpRequest`` 200
                                              ``"Password successfully reset"`` or error -1
``GET  /apps/choose_password``               the choose-a-password form
``GET  /apps/<file>``                        a file of the pages folder (HTML filled with the app's values)
===========================================  ===============================================================

A GET shows the page itself (200); a POST redirects (303) to the page's URL, with the parameters in the
query (``pages.forceRedirect`` redirects always). Without ``publicServerURL`` or ``appName`` the pages
answer 404 "Not found."; an unknown app id answers 403 ``{"error": "unauthorized"}``. Each page response
carries its parameters as ``x-parse-page-param-<name>`` headers, as parse-server's do.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson

from parsectl.model import errors
from parsectl.model.errors import ParseError
from parsectl.server.account import AccountError, AccountService
from parsectl.server.http import Response

HTML_TYPE = b"text/html; charset=utf-8"
TEMPLATES = Path(__file__).resolve().parents[2] / "templates" / "pages"
PARAM_HEADER_PREFIX = "x-parse-page-param-"
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_LOCALE = re.compile(r"^[a-zA-Z]{2,3}(-[a-zA-Z0-9]{2,8})*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# page id (the key of pages.customUrls) -> file
PASSWORD_RESET = ("passwordReset", "password_reset.html")
PASSWORD_RESET_SUCCESS = ("passwordResetSuccess", "password_reset_success.html")
PASSWORD_RESET_LINK_INVALID = ("passwordResetLinkInvalid", "password_reset_link_invalid.html")
EMAIL_VERIFICATION_SUCCESS = ("emailVerificationSuccess", "email_verification_success.html")
EMAIL_VERIFICATION_SEND_FAIL = ("emailVerificationSendFail", "email_verification_send_fail.html")
EMAIL_VERIFICATION_SEND_SUCCESS = ("emailVerificationSendSuccess", "email_verification_send_success.html")
EMAIL_VERIFICATION_LINK_INVALID = ("emailVerificationLinkInvalid", "email_verification_link_invalid.html")


def render(template: str, values: dict[str, Any]) -> str:
    """Fill ``{{name}}`` placeholders, HTML-escaped; unknown names become empty."""
    def fill(match: re.Match[str]) -> str:
        value = values.get(match.group(1))
        return "" if value is None else html.escape(str(value), quote=True)

    return _PLACEHOLDER.sub(fill, template)


def parse_form(body: bytes, content_type: str | None) -> dict[str, Any]:
    """A POST body as the pages read it: JSON or ``application/x-www-form-urlencoded``."""
    if not body.strip():
        return {}
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        try:
            data = orjson.loads(body)
            return data if isinstance(data, dict) else {}
        except orjson.JSONDecodeError:
            if kind == "application/json":
                raise ParseError(errors.INVALID_JSON, "invalid JSON") from None
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def not_found() -> Response:
    return Response(404, b"Not found.", HTML_TYPE)


def unauthorized() -> Response:
    return Response(403, orjson.dumps({"error": "unauthorized"}), b"application/json; charset=utf-8")


class Pages:
    """The page handlers; :meth:`handle` routes a request whose path (below the mount) starts with ``/apps``."""

    def __init__(self, account: AccountService, templates: str | Path | None = None) -> None:
        self.account = account
        self.options = account.options
        configured = self.options.pages.get("pagesPath")
        self.templates = Path(templates or configured or TEMPLATES).resolve()
        self.endpoint = self.options.pages_endpoint

    # --- routing ---------------------------------------------------------------------------------------
    async def handle(self, method: str, path: str, query: dict[str, Any], body: bytes = b"",
                     headers: dict[str, str] | None = None) -> Response | None:
        """The response for ``method path`` (path relative to the mount, e.g. ``/apps/myApp/verify_email``),
        or None when the path is not a page route. ``headers``: lower-case names."""
        prefix = f"/{self.endpoint}/"
        if not path.startswith(prefix):
            return None
        headers = headers or {}
        rest = path[len(prefix):]
        parts = rest.split("/")
        xhr = headers.get("x-requested-with", "").lower() == "xmlhttprequest"
        if method == "GET" and rest == "choose_password":
            return await self.choose_password(query)
        if len(parts) == 2:
            app_id, action = parts
            if method == "GET" and action == "verify_email":
                return await self.verify_email(app_id, query)
            if method == "GET" and action == "request_password_reset":
                return await self.request_password_reset(app_id, query)
            if method == "POST" and action in ("resend_verification_email", "request_password_reset"):
                form = parse_form(body, headers.get("content-type"))
                if action == "resend_verification_email":
                    return await self.resend_verification_email(app_id, form)
                return await self.reset_password(app_id, form, xhr=xhr)
        if method == "GET" and rest:
            return await self.static(rest, query)
        return None

    def _known(self, app_id: Any) -> bool:
        return app_id == self.options.app_id

    # --- handlers ---------------------------------------------------------------------------------------
    async def verify_email(self, app_id: str, query: dict[str, Any]) -> Response:
        if not self._known(app_id):
            return unauthorized()
        token = query.get("token")
        if not isinstance(token, str) or not token:
            return self.go_to_page("GET", EMAIL_VERIFICATION_LINK_INVALID, query)
        ok = await self.account.verify_email(token)
        return self.go_to_page("GET", EMAIL_VERIFICATION_SUCCESS if ok else EMAIL_VERIFICATION_LINK_INVALID, query)

    async def resend_verification_email(self, app_id: str, form: dict[str, Any]) -> Response:
        if not self._known(app_id):
            return unauthorized()
        username = form.get("username")
        token = form.get("token") if isinstance(form.get("token"), str) else None
        if not username and not token:
            return self.go_to_page("POST", EMAIL_VERIFICATION_LINK_INVALID, form)
        ok = await self.account.resend_verification_email(username if isinstance(username, str) else None, token)
        if not ok and not self.options.email_verify_success_on_invalid_email:
            return self.go_to_page("POST", EMAIL_VERIFICATION_SEND_FAIL, form)
        return self.go_to_page("POST", EMAIL_VERIFICATION_SEND_SUCCESS, form)

    async def choose_password(self, query: dict[str, Any]) -> Response:
        if not self._known(query.get("appId")):  # the app id comes in the query here
            return unauthorized()
        params = {"token": query.get("token"), "username": query.get("username")}
        return self.go_to_page("GET", PASSWORD_RESET, query, params)

    async def request_password_reset(self, app_id: str, query: dict[str, Any]) -> Response:
        if not self._known(app_id):
            return unauthorized()
        token = query.get("token")
        if not isinstance(token, str) or not token:
            return self.go_to_page("GET", PASSWORD_RESET_LINK_INVALID, query)
        try:
            await self.account.check_reset_token(token)
        except AccountError:
            return self.go_to_page("GET", PASSWORD_RESET_LINK_INVALID, query)
        return self.go_to_page("GET", PASSWORD_RESET, query, {"token": token})

    async def reset_password(self, app_id: str, form: dict[str, Any], *, xhr: bool = False) -> Response:
        if not self._known(app_id):
            return unauthorized()
        token = form.get("token") if isinstance(form.get("token"), str) else None
        new_password = form.get("new_password")
        if (not token or not new_password) and not xhr:
            return self.go_to_page("POST", PASSWORD_RESET_LINK_INVALID, form)
        if not token:
            raise ParseError(errors.OTHER_CAUSE, "Missing token")
        if not new_password:
            raise ParseError(errors.PASSWORD_MISSING, "Missing password")
        error: str | None = None
        try:
            await self.account.reset_password(token, new_password)
        except AccountError as exc:
            error = exc.message
        if xhr:
            if error is None:
                return Response.json("Password successfully reset")
            raise ParseError(errors.OTHER_CAUSE, error)
        if error is None:
            return self.go_to_page("POST", PASSWORD_RESET_SUCCESS, form, redirect=False)
        return self.go_to_page("POST", PASSWORD_RESET, form, {"token": token, "error": error}, redirect=False)

    async def static(self, resource: str, query: dict[str, Any]) -> Response:
        """A file of the pages folder; HTML files get the app's values filled in."""
        target = (self.templates / resource).resolve()
        if not target.is_relative_to(self.templates) or not target.is_file():
            return not_found()
        data = target.read_bytes()
        if target.suffix != ".html":
            return Response(200, data, _content_type(target.suffix))
        params = self._default_params()
        locale = _locale(query)
        if locale:
            params["locale"] = locale
        text = render(data.decode("utf-8", "replace"), {**params, **self._placeholders(params)})
        return Response(200, text.encode(), HTML_TYPE, self._param_headers(params))

    # --- responses --------------------------------------------------------------------------------------
    def _default_params(self) -> dict[str, Any]:
        return {"appId": self.options.app_id, "appName": self.options.app_name,
                "publicServerUrl": self.options.public_server_url}

    def _placeholders(self, params: dict[str, Any]) -> dict[str, Any]:
        placeholders = self.options.pages.get("placeholders")
        if callable(placeholders):
            placeholders = placeholders(params)
        return placeholders if isinstance(placeholders, dict) else {}

    def page_url(self, file: str) -> str:
        return f"{self.options.server_url}/{self.endpoint}/{file}"

    def go_to_page(self, method: str, page: tuple[str, str], request_params: dict[str, Any],
                   params: dict[str, Any] | None = None, *, redirect: bool | None = None) -> Response:
        """The page itself (GET) or a 303 redirect to it (POST), as parse-server's goToPage chooses."""
        if self.options.pages.get("forceRedirect"):
            redirect = True
        elif redirect is None:
            redirect = method == "POST"
        defaults = self._default_params()
        if any(v is None for v in defaults.values()):
            return not_found()
        values = {k: v for k, v in (params or {}).items() if v is not None}
        values.update(defaults)
        locale = _locale(request_params)
        if locale:
            values["locale"] = locale
        page_id, file = page
        custom = (self.options.pages.get("customUrls") or {}).get(page_id)
        if isinstance(custom, str) and re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", custom):
            return self._redirect(custom, values)
        if redirect:
            return self._redirect(self.page_url(file), values)
        path = (self.templates / file).resolve()
        if not path.is_relative_to(self.templates) or not path.is_file():
            return not_found()
        text = render(path.read_text("utf-8"), {**values, **self._placeholders(values)})
        return Response(200, text.encode(), HTML_TYPE, self._param_headers(values))

    def _redirect(self, url: str, params: dict[str, Any]) -> Response:
        separator = "&" if "?" in url else "?"
        location = url + (separator + urlencode({k: str(v) for k, v in params.items()}) if params else "")
        body = f"Found. Redirecting to {location}".encode()
        headers = [(b"location", location.encode("utf-8"))] + self._param_headers(params)
        return Response(303, body, HTML_TYPE, headers)

    def _param_headers(self, params: dict[str, Any]) -> list[tuple[bytes, bytes]]:
        out: list[tuple[bytes, bytes]] = []
        for name, value in params.items():
            if value is None:
                continue
            clean = _CONTROL.sub("", str(value))
            out.append(((PARAM_HEADER_PREFIX + name.lower()).encode(), clean.encode("utf-8")))
        return out


def _locale(params: dict[str, Any]) -> str | None:
    locale = params.get("locale")
    if isinstance(locale, str) and _LOCALE.match(locale):
        return locale
    return None


def _content_type(suffix: str) -> bytes:
    return {".css": b"text/css; charset=utf-8", ".js": b"application/javascript; charset=utf-8",
            ".png": b"image/png", ".svg": b"image/svg+xml", ".ico": b"image/x-icon",
            ".json": b"application/json; charset=utf-8", ".txt": b"text/plain; charset=utf-8",
            }.get(suffix.lower(), b"application/octet-stream")
