"""ASGI plumbing: request bodies, responses, CORS headers and error bodies as parse-server sends them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from parsectl.model.errors import HTTPError, ParseError

ALLOW_HEADERS = (
    b"X-Parse-Master-Key, X-Parse-REST-API-Key, X-Parse-Javascript-Key, X-Parse-Application-Id, "
    b"X-Parse-Client-Version, X-Parse-Session-Token, X-Requested-With, X-Parse-Revocable-Session, "
    b"X-Parse-Request-Id, Content-Type, Pragma, Cache-Control"
)
JSON_TYPE = b"application/json; charset=utf-8"


class BodyTooLarge(Exception):
    pass


@dataclass
class Response:
    """A response; JSON ones keep their ``data`` (batch reuses it) and are serialised when sent."""

    status: int = 200
    body: bytes | None = b""
    content_type: bytes | None = JSON_TYPE
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    data: Any = None
    # a streamed body (file downloads): chunks of exactly ``stream_length`` bytes in all
    stream: AsyncIterator[bytes] | None = None
    stream_length: int = 0

    @classmethod
    def json(cls, data: Any, status: int = 200, headers: list[tuple[bytes, bytes]] | None = None) -> Response:
        return cls(status, None, JSON_TYPE, headers or [], data)

    def encoded(self) -> bytes:
        if self.body is None:
            self.body = orjson.dumps(self.data)
        return self.body


def error_response(exc: Exception) -> Response:
    if isinstance(exc, ParseError):
        return Response.json(exc.to_json(), exc.http_status)
    if isinstance(exc, HTTPError):
        body = orjson.dumps({"error": exc.message})
        return Response(exc.status, body, JSON_TYPE if exc.json_content_type else None)
    return Response.json({"code": 1, "message": "Internal server error."}, 500)


def not_found_page(method: str, path: str) -> Response:
    """Express's default page for an unrouted request (parse-server sends no JSON here)."""
    import html

    text = f"Cannot {method} {html.escape(path)}"
    page = ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Error</title>\n"
            f"</head>\n<body>\n<pre>{text}</pre>\n</body>\n</html>\n")
    return Response(404, page.encode(), b"text/html; charset=utf-8")


def cors_headers(allow_origin: str) -> list[tuple[bytes, bytes]]:
    return [
        (b"access-control-allow-origin", allow_origin.encode()),
        (b"access-control-allow-methods", b"GET,PUT,POST,DELETE,OPTIONS"),
        (b"access-control-allow-headers", ALLOW_HEADERS),
        (b"access-control-expose-headers", b"X-Parse-Job-Status-Id, X-Parse-Push-Status-Id"),
    ]


async def read_body(receive: Any, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge()
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


async def send_response(send: Any, response: Response, cors: list[tuple[bytes, bytes]]) -> None:
    headers = list(cors)
    if response.content_type:
        headers.append((b"content-type", response.content_type))
    if response.stream is not None:
        headers.append((b"content-length", str(response.stream_length).encode()))
        headers.extend(response.headers)
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        try:
            async for chunk in response.stream:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        finally:
            await send({"type": "http.response.body", "body": b""})
        return
    body = response.encoded()
    headers.append((b"content-length", str(len(body)).encode()))
    headers.extend(response.headers)
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
