"""A throw-away S3 for the tests: moto's server on 127.0.0.1 and a free port (never real AWS).

``s3_server()`` starts ``moto.server.ThreadedMotoServer`` in this process with fake credentials in the
environment (so boto3 can never pick up real ones) and yields its endpoint URL.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import httpx

from . import free_port, wait_until

FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}


@contextlib.contextmanager
def fake_aws_env() -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in (*FAKE_ENV, "AWS_PROFILE")}
    os.environ.update(FAKE_ENV)
    os.environ.pop("AWS_PROFILE", None)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def s3_server() -> Iterator[str]:
    """Yield the endpoint (``http://127.0.0.1:PORT``) of a moto S3 server that lives for the block."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    with fake_aws_env():
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        endpoint = f"http://127.0.0.1:{port}"
        try:
            wait_until(lambda: httpx.get(endpoint + "/moto-api/", timeout=1.0).status_code < 500, 15.0,
                       what=f"moto server on {endpoint}")
            yield endpoint
        finally:
            server.stop()
