"""Files in Amazon S3 or an S3-compatible store, with parse-server's S3 adapter options.

Options (``filesAdapter: {"module": "s3", "options": {...}}``), as ``parse-server-s3-adapter`` names them:
``bucket`` (required), ``region`` (``us-east-1``), ``bucketPrefix`` (``""``), ``directAccess`` (false: files
are served through ``/files``; true: the location is the S3 URL and objects are written ``public-read``),
``baseUrl`` and ``baseUrlDirect`` (the public URL in front of the bucket, with or without the prefix),
``globalCacheControl``, ``ServerSideEncryption``, ``accessKey``/``secretKey`` (else boto3's usual credential
chain), plus ``endpoint`` (an S3-compatible store such as MinIO; path-style addressing) and
``forcePathStyle``. boto3 blocks, so each call runs in a worker thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

from parsectl.files.base import (
    CHUNK_SIZE,
    FileNotFound,
    FilesConfig,
    FileStat,
    default_location,
    encode_uri_component,
    validate_filename,
)

OPTIONS = {"bucket", "region", "bucketPrefix", "directAccess", "baseUrl", "baseUrlDirect", "endpoint",
           "forcePathStyle", "accessKey", "secretKey", "sessionToken", "globalCacheControl",
           "ServerSideEncryption", "signatureVersion"}
DEFAULT_REGION = "us-east-1"


def _require_str(options: dict[str, Any], name: str, default: str | None = None) -> str | None:
    value = options.get(name, default)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"filesAdapter option {name!r} must be a string")
    return value


def _require_bool(options: dict[str, Any], name: str) -> bool:
    value = options.get(name, False)
    if not isinstance(value, bool):
        raise ValueError(f"filesAdapter option {name!r} must be true or false")
    return value


class S3FilesAdapter:
    def __init__(self, options: dict[str, Any]) -> None:
        bucket = _require_str(options, "bucket")
        if not bucket:
            raise ValueError("filesAdapter option 'bucket' is required for the 's3' adapter")
        self.bucket: str = bucket
        self.region = _require_str(options, "region", DEFAULT_REGION) or DEFAULT_REGION
        self.bucket_prefix = _require_str(options, "bucketPrefix", "") or ""
        self.direct_access = _require_bool(options, "directAccess")
        self.base_url = (_require_str(options, "baseUrl") or "").rstrip("/") or None
        self.base_url_direct = _require_bool(options, "baseUrlDirect")
        self.endpoint = (_require_str(options, "endpoint") or "").rstrip("/") or None
        self.force_path_style = _require_bool(options, "forcePathStyle") or self.endpoint is not None
        self.cache_control = _require_str(options, "globalCacheControl")
        self.server_side_encryption = _require_str(options, "ServerSideEncryption")
        self.signature_version = _require_str(options, "signatureVersion")
        self._credentials = {
            key: _require_str(options, name)
            for key, name in (("aws_access_key_id", "accessKey"), ("aws_secret_access_key", "secretKey"),
                              ("aws_session_token", "sessionToken"))
            if options.get(name) is not None
        }
        self._client: Any = None

    # --- boto3 --------------------------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            config = Config(
                signature_version=self.signature_version or "s3v4",
                s3={"addressing_style": "path" if self.force_path_style else "auto"},
                retries={"max_attempts": 3, "mode": "standard"},
            )
            self._client = boto3.session.Session().client(
                "s3", region_name=self.region, endpoint_url=self.endpoint, config=config, **self._credentials)
        return self._client

    def key(self, name: str) -> str:
        return self.bucket_prefix + name

    async def _call(self, method: str, **kwargs: Any) -> Any:
        return await asyncio.to_thread(getattr(self.client, method), **kwargs)

    @staticmethod
    def _missing(exc: Exception) -> bool:
        from botocore.exceptions import ClientError

        if not isinstance(exc, ClientError):
            return False
        code = str(exc.response.get("Error", {}).get("Code", ""))
        return code in ("NoSuchKey", "404", "NotFound")

    # --- adapter --------------------------------------------------------------------------------------
    async def create_file(self, name: str, data: bytes, content_type: str | None,
                          options: dict[str, Any] | None = None) -> None:
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key(name), "Body": bytes(data)}
        if self.direct_access:
            params["ACL"] = "public-read"
        if content_type:
            params["ContentType"] = content_type
        if self.cache_control:
            params["CacheControl"] = self.cache_control
        if self.server_side_encryption:
            params["ServerSideEncryption"] = self.server_side_encryption
        options = options or {}
        metadata = options.get("metadata")
        if isinstance(metadata, dict) and metadata:
            params["Metadata"] = {str(k): str(v) for k, v in metadata.items()}
        tags = options.get("tags")
        if isinstance(tags, dict) and tags:
            params["Tagging"] = urlencode({str(k): str(v) for k, v in tags.items()})
        await self._call("put_object", **params)

    async def get_file_data(self, name: str) -> bytes:
        try:
            response = await self._call("get_object", Bucket=self.bucket, Key=self.key(name))
        except Exception as exc:
            if self._missing(exc):
                raise FileNotFound(name) from None
            raise
        body = response["Body"]
        try:
            return await asyncio.to_thread(body.read)
        finally:
            body.close()

    async def stat(self, name: str) -> FileStat:
        try:
            head = await self._call("head_object", Bucket=self.bucket, Key=self.key(name))
        except Exception as exc:
            if self._missing(exc):
                raise FileNotFound(name) from None
            raise
        return FileStat(int(head["ContentLength"]), head.get("ContentType"))

    async def get_file_range(self, name: str, start: int, end: int) -> AsyncIterator[bytes]:
        if end <= start:
            return
        try:
            response = await self._call("get_object", Bucket=self.bucket, Key=self.key(name),
                                        Range=f"bytes={start}-{end - 1}")
        except Exception as exc:
            if self._missing(exc):
                raise FileNotFound(name) from None
            raise
        body = response["Body"]
        try:
            while True:
                chunk = await asyncio.to_thread(body.read, CHUNK_SIZE)
                if not chunk:
                    break
                yield chunk
        finally:
            body.close()

    async def delete_file(self, name: str) -> None:
        # S3 deletes of a missing key succeed; parse-server's S3 adapter answers success there too.
        await self._call("delete_object", Bucket=self.bucket, Key=self.key(name))

    def get_file_location(self, config: FilesConfig, name: str) -> str:
        path = "/".join(encode_uri_component(part) for part in name.split("/"))
        if not self.direct_access:
            return default_location(config, name)
        if self.base_url:
            if self.base_url_direct:
                return f"{self.base_url}/{path}"
            return f"{self.base_url}/{self.bucket_prefix}{path}"
        if self.endpoint:
            return f"{self.endpoint}/{self.bucket}/{self.bucket_prefix}{path}"
        return f"https://{self.bucket}.s3.amazonaws.com/{self.bucket_prefix}{path}"

    async def get_metadata(self, name: str) -> dict[str, Any]:
        try:
            head = await self._call("head_object", Bucket=self.bucket, Key=self.key(name))
        except Exception:
            return {}
        return {"metadata": head.get("Metadata") or {}}

    def validate_filename(self, name: str) -> str | None:
        return validate_filename(name)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await asyncio.to_thread(client.close)
