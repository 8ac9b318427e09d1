"""``parsectl serve``: run the Parse REST API."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from parsectl.server.config import ConfigError, parse_bool
from parsectl.uri import redact

EPILOG = """\
Examples:

  parsectl serve                                   # embedded SQLite in ./parsectl-data, port 1337

  parsectl serve --app-id myAppId --master-key s3cret --port 8080

  PARSE_SERVER_APPLICATION_ID=myAppId parsectl serve --config config.json

  parsectl serve --workers 4 --output json

Options come from flags first, then PARSE_SERVER_* environment variables (parse-server's names),
then --config (parse-server's config.json format, JSON or YAML).
"""

EXIT_CONFIG = 2
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE: the database cannot be reached


def serve(
    app_id: str = typer.Option(None, "--app-id", "--appId", help="Application id [env PARSE_SERVER_APPLICATION_ID]"),
    master_key: str = typer.Option(None, "--master-key", "--masterKey",
                                   help="Master key; generated and kept in the data directory if not given "
                                        "[env PARSE_SERVER_MASTER_KEY]"),
    database_uri: str = typer.Option(None, "--database-uri", "--databaseURI",
                                     help="Database URI; default: SQLite in the data directory "
                                          "[env PARSE_SERVER_DATABASE_URI]"),
    data_dir: Path = typer.Option(Path("parsectl-data"), "--data-dir", help="Where the embedded store lives."),
    host: str = typer.Option(None, "--host", help="Interface to listen on (default 127.0.0.1) [env PARSE_SERVER_HOST]"),
    port: int = typer.Option(None, "--port", help="Port (default 1337) [env PORT]"),
    mount_path: str = typer.Option(None, "--mount-path", "--mountPath",
                                   help="Path of the API (default /parse) [env PARSE_SERVER_MOUNT_PATH]"),
    server_url: str = typer.Option(None, "--server-url", "--serverURL", help="URL of the API [env PARSE_SERVER_URL]"),
    public_server_url: str = typer.Option(None, "--public-server-url", "--publicServerURL",
                                          help="Public URL for file links [env PARSE_PUBLIC_SERVER_URL]"),
    client_key: str = typer.Option(None, "--client-key", "--clientKey", help="[env PARSE_SERVER_CLIENT_KEY]"),
    javascript_key: str = typer.Option(None, "--javascript-key", "--javascriptKey",
                                       help="[env PARSE_SERVER_JAVASCRIPT_KEY]"),
    rest_api_key: str = typer.Option(None, "--rest-api-key", "--restAPIKey", help="[env PARSE_SERVER_REST_API_KEY]"),
    dot_net_key: str = typer.Option(None, "--dot-net-key", "--dotNetKey", help="[env PARSE_SERVER_DOT_NET_KEY]"),
    file_key: str = typer.Option(None, "--file-key", "--fileKey", help="[env PARSE_SERVER_FILE_KEY]"),
    max_limit: int = typer.Option(None, "--max-limit", "--maxLimit", help="Cap on query limits [env PARSE_SERVER_MAX_LIMIT]"),
    allow_client_class_creation: bool = typer.Option(
        None, "--allow-client-class-creation/--no-allow-client-class-creation",
        help="Let clients without the master key create classes (default: no) "
             "[env PARSE_SERVER_ALLOW_CLIENT_CLASS_CREATION]"),
    master_key_ips: str = typer.Option(None, "--master-key-ips", "--masterKeyIps",
                                       help="Comma-separated IPs/CIDRs allowed to use the master key "
                                            "(default loopback) [env PARSE_SERVER_MASTER_KEY_IPS]"),
    max_upload_size: str = typer.Option(None, "--max-upload-size", "--maxUploadSize",
                                        help="Largest request body, e.g. 20mb [env PARSE_SERVER_MAX_UPLOAD_SIZE]"),
    cloud: str = typer.Option(None, "--cloud", help="Cloud Code: a Python file (cloud/main.py) or module "
                                                   "[env PARSE_SERVER_CLOUD]"),
    config: Path = typer.Option(None, "--config", help="parse-server config.json (JSON or YAML)."),
    workers: int = typer.Option(1, "--workers", min=1, max=64, help="Worker processes."),
    reload: bool = typer.Option(False, "--reload", help="Reload Cloud Code when its files change (a file that "
                                                         "fails to load leaves the previous code in service)."),
    verbose: bool = typer.Option(False, "--verbose", help="Log every request."),
    output: str = typer.Option("text", "--output", help="Start-up report format: text or json."),
) -> None:
    """Serve the Parse REST API (the official Parse SDKs work against it unchanged)."""
    from parsectl.server import sources

    if output not in ("text", "json"):
        _fail("--output must be 'text' or 'json'")
    flags = {
        "appId": app_id, "masterKey": master_key, "databaseURI": database_uri, "host": host, "port": port,
        "mountPath": mount_path, "serverURL": server_url, "publicServerURL": public_server_url,
        "clientKey": client_key, "javascriptKey": javascript_key, "restAPIKey": rest_api_key,
        "dotNetKey": dot_net_key, "fileKey": file_key, "maxLimit": max_limit,
        "allowClientClassCreation": allow_client_class_creation, "masterKeyIps": master_key_ips,
        "maxUploadSize": max_upload_size, "cloud": cloud,
    }
    try:
        merged = sources.resolve(flags, config)
        api, process = sources.split_options(merged)
        data_dir_path = data_dir.resolve()
        api.setdefault("appId", sources.DEFAULT_APP_ID)
        api.setdefault("databaseURI", f"sqlite:///{data_dir_path / 'parse.db'}")
        if api.get("filesAdapter") is None and isinstance(api["databaseURI"], str):
            from parsectl.files.factory import default_files_adapter

            if (files := default_files_adapter(api["databaseURI"], data_dir_path)) is not None:
                api["filesAdapter"] = files
        generated = False
        if not api.get("masterKey"):
            api["masterKey"], generated = sources.master_key_for(data_dir_path)
        if isinstance(api.get("allowClientClassCreation"), str):
            api["allowClientClassCreation"] = parse_bool("allowClientClassCreation", api["allowClientClassCreation"])
        options = sources.build_options(api)
        bind_host = str(process.get("host") or "127.0.0.1")
        bind_port = _port(process.get("port", 1337))
    except ConfigError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot use data directory {data_dir}: {exc.strerror}")

    url = f"http://{bind_host if ':' not in bind_host else f'[{bind_host}]'}:{bind_port}{options.mount_path}"
    if not options.server_url:
        options.server_url = url
        api["serverURL"] = url
    report: dict[str, Any] = {"url": url, "appId": options.app_id, "databaseURI": redact(options.database_uri),
                              "workers": workers}
    if generated:
        report["masterKey"] = options.master_key
        report["masterKeyFile"] = str(data_dir_path / "master.key")
    if output == "json":
        typer.echo(json.dumps(report))
    else:
        typer.echo(f"parsectl serve: Parse API at {url}")
        typer.echo(f"  appId     {options.app_id}")
        typer.echo(f"  database  {report['databaseURI']}")
        if generated:
            typer.echo(f"  masterKey {options.master_key}   (generated; shown once, kept in {report['masterKeyFile']})")
        typer.echo(f"  workers   {workers}")
    sys.stdout.flush()
    _preflight(api)
    if reload and not api.get("cloud"):
        _fail("--reload needs Cloud Code (--cloud or the cloud option)")
    _run(api, bind_host, bind_port, workers, verbose, reload)


def _preflight(api: dict[str, Any]) -> None:
    """Open the database once before serving, so a bad URI or an unreachable server is a clear error."""
    import asyncio

    from parsectl.server import ParseServer

    async def check() -> None:
        server = ParseServer(api)
        try:
            await server.start()
        finally:
            await server.stop()

    try:
        asyncio.run(check())
    except ValueError as exc:
        _fail(str(exc))
    except (ConnectionError, OSError) as exc:
        typer.echo(f"parsectl serve: {exc}", err=True)
        raise typer.Exit(EXIT_UNAVAILABLE) from None


def _port(value: Any) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"port must be a number, not {value!r}") from None
    if not 0 < port < 65536:
        raise ConfigError(f"port must be between 1 and 65535, not {port}")
    return port



def _fail(message: str) -> None:
    typer.echo(f"parsectl serve: {message}", err=True)
    raise typer.Exit(EXIT_CONFIG)


def _run(api: dict[str, Any], host: str, port: int, workers: int, verbose: bool, reload: bool = False) -> None:
    import uvicorn

    common: dict[str, Any] = {
        "host": host, "port": port, "access_log": verbose, "log_level": "info" if verbose else "warning",
        "lifespan": "on", "server_header": False, "proxy_headers": False, "date_header": True, "timeout_graceful_shutdown": 10,
    }
    trusted = api.get("trustProxy")
    if trusted:  # parse-server's trustProxy: only then is X-Forwarded-For believed (e.g. for masterKeyIps)
        common["proxy_headers"] = True
        common["forwarded_allow_ips"] = "*" if trusted is True else ",".join(trusted)
    if workers > 1:
        _run_workers(api, host, port, workers, common, reload)
    else:
        _serve(uvicorn.Config(_build_app(api, reload), **common))


def _serve(config: Any, sockets: list[Any] | None = None) -> None:
    """Run uvicorn; SIGTERM/SIGINT shut down gracefully and the process then exits with 0."""
    import contextlib
    import gc
    import signal

    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[Any] | None = None) -> None:
            await super().startup(sockets=sockets)
            # Everything built at start-up (modules, the app, pools, schemas) lives until exit: move it out
            # of the collector's sight, and collect young objects less often, so full collections are rare
            # and short (they show up as tail latency under load).
            gc.freeze()
            gc.set_threshold(10_000, 20, 20)

        @contextlib.contextmanager
        def capture_signals(self) -> Any:  # uvicorn would re-raise the signal after shutting down
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, self.handle_exit)
            yield

    Server(config).run(sockets=sockets)


def _build_app(api: dict[str, Any], reload: bool = False) -> Any:
    from parsectl.server import ParseServer, mounted

    server = ParseServer(api)
    server.reload_cloud = reload
    return mounted(server)


def _listen(host: str, port: int) -> Any:
    """A listening socket with SO_REUSEPORT: each worker has its own, and the kernel spreads new
    connections across them (a shared socket leaves long-lived keep-alive connections on one worker)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def _worker(api: dict[str, Any], host: str, port: int, common: dict[str, Any], reload: bool = False) -> None:
    import signal

    import uvicorn

    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # uvicorn installs its own; drop the parent's
    signal.signal(signal.SIGINT, signal.SIG_DFL)

    sock = _listen(host, port)
    config = uvicorn.Config(_build_app(api, reload), **{k: v for k, v in common.items() if k not in ("host", "port")})
    _serve(config, [sock])


def _run_workers(api: dict[str, Any], host: str, port: int, workers: int, common: dict[str, Any],
                 reload: bool = False) -> None:
    """Run ``workers`` server processes on one port; stop them all on SIGTERM/SIGINT or if one fails."""
    import multiprocessing
    import signal

    _listen(host, port).close()  # fail here, with a clear error, if the port is taken
    context = multiprocessing.get_context("fork")
    procs = [context.Process(target=_worker, args=(api, host, port, common, reload), daemon=False) for _ in range(workers)]
    stopping = False

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for proc in procs:
            if proc.is_alive():
                proc.terminate()

    for proc in procs:
        proc.start()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    failed = False
    while any(proc.is_alive() for proc in procs):
        for proc in procs:
            proc.join(timeout=0.2)
            if not proc.is_alive() and proc.exitcode not in (0, None) and not stopping:
                failed = True
                stop(signal.SIGTERM, None)
    if failed:
        typer.echo("parsectl serve: a worker process failed; all workers were stopped", err=True)
        raise typer.Exit(1)
