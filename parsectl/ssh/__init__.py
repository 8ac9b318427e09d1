"""The SSH layer parsectl's remote commands share (provision-node, replset, mongod-conf --from-host, backup).

Stable API (keep it so; other commands build on it)::

    from parsectl.ssh import Target, connect, SSHError

    target = Target("db1.internal", port=22, user="ops", key_file="~/.ssh/id_ed25519", sudo=True,
                    jump=Target("bastion.example", user="ops"), known_hosts="~/.ssh/known_hosts",
                    accept_new_host_keys=False, timeout=10, retries=2)
    with connect(target, log_path="logs/db1.log") as session:
        result = session.run("uname -r")                  # Result(exit_code, stdout, stderr)
        session.run("systemctl restart mongod", sudo=True)  # sudo -n; "no sudo" is an SSHError
        session.put("/etc/mongod.conf", b"...", mode=0o644, owner="root:root", sudo=True)  # atomic
        data = session.get("/etc/mongod.conf")              # bytes, or None when the file is missing
        with session.tunnel("127.0.0.1", 27017) as local_port:  # a local port forwarded to the host
            ...

``Target``
    ``host``, ``port`` (22), ``user`` (default: the local user), ``key_file`` (a private key; without it
    ssh-agent and ~/.ssh/id_* are tried), ``password``, ``sudo`` (run privileged commands through
    ``sudo -n``; unnecessary for root), ``jump`` (another ``Target``: connect through it, as ssh -J),
    ``known_hosts`` (default ~/.ssh/known_hosts), ``accept_new_host_keys`` (learn keys of hosts not yet in
    known_hosts and save them there; a *changed* key is always refused), ``timeout`` (seconds, for the
    connection and per command unless ``run(timeout=...)``), ``retries`` (extra attempts, with back-off,
    after network errors only; never after an authentication or host-key failure).

``connect(target, log_path=None) -> Session``
    Opens the connection (strict host-key checking) and returns a context manager. With ``log_path``
    every command, its exit code and output are appended to that file (one log file per host).

``Session.run(cmd, *, sudo=False, check=True, input=None, timeout=None) -> Result``
    Runs ``cmd`` in the login user's shell on the host (``sudo -n -- sh -c`` with sudo). ``sudo=True`` runs it as root (``sudo -n``) unless the login
    user is root. ``check=True`` raises ``CommandError`` (an ``SSHError``) on a non-zero exit.
    ``input`` (str or bytes) is written to the command's stdin.

``Session.put(path, data, *, mode=0o644, owner=None, sudo=False)``
    Writes a temporary file in the same directory, sets mode and owner, then renames it over ``path``:
    readers see the old file or the whole new one.

``Session.get(path, *, sudo=False) -> bytes | None``

``Session.tunnel(remote_host, remote_port)``
    A context manager yielding a port on 127.0.0.1 whose connections are forwarded through SSH to
    ``remote_host:remote_port`` as seen from the host (direct-tcpip, as ssh -L).

Errors are ``SSHError`` (``.kind`` is one of ``unreachable``, ``auth``, ``host-key-unknown``,
``host-key-changed``, ``no-sudo``, ``timeout``, ``command``, ``ssh``) with a message that says what to do.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import select
import shlex
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paramiko

__all__ = ["CommandError", "Result", "SSHError", "Session", "Target", "connect", "parse_target"]


class SSHError(RuntimeError):
    """An SSH failure; ``kind`` classifies it, the message says what to do."""

    def __init__(self, message: str, kind: str = "ssh") -> None:
        super().__init__(message)
        self.kind = kind


class CommandError(SSHError):
    def __init__(self, message: str, result: Result) -> None:
        super().__init__(message, "command")
        self.result = result


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass
class Target:
    host: str
    port: int = 22
    user: str | None = None
    key_file: str | None = None
    password: str | None = field(default=None, repr=False)
    sudo: bool = False
    jump: Target | None = None
    known_hosts: str | None = None
    accept_new_host_keys: bool = False
    timeout: float = 10
    retries: int = 2

    @property
    def login(self) -> str:
        return self.user or getpass.getuser()

    @property
    def label(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.login}@{host}:{self.port}"

    def known_hosts_path(self) -> Path:
        return Path(os.path.expanduser(self.known_hosts or "~/.ssh/known_hosts"))


def parse_target(text: str, **options: Any) -> Target:
    """``user@host[:port]`` (``user@[v6]:port`` for IPv6) as a Target; ``options`` fill the other fields."""
    import re

    m = re.fullmatch(r"(?:(?P<user>[^@\s]+)@)?(?:\[(?P<v6>[0-9A-Fa-f:.%]+)\]|(?P<host>[^:@\s\[\]]+))"
                     r"(?::(?P<port>\d{1,5}))?", text.strip())
    if not m:
        raise SSHError(f"cannot read SSH target {text!r}: use host, user@host or user@host:port", "usage")
    port = int(m.group("port") or options.pop("port", 22) or 22)
    if not 1 <= port <= 65535:
        raise SSHError(f"SSH port {port} is outside 1-65535", "usage")
    user = m.group("user") or options.pop("user", None)
    options.pop("port", None)
    options.pop("user", None)
    return Target(host=m.group("v6") or m.group("host"), port=port, user=user, **options)


def _known_host_name(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


class _StrictPolicy(paramiko.MissingHostKeyPolicy):
    """Unknown host: refuse, or (accept_new_host_keys) learn and save the key. Changed keys never get here:
    paramiko raises BadHostKeyException before consulting the policy."""

    def __init__(self, target: Target, port: int, host: str) -> None:
        self.target, self.port, self.host = target, port, host

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        name = _known_host_name(self.host, self.port)
        path = self.target.known_hosts_path()
        if not self.target.accept_new_host_keys:
            raise SSHError(
                f"{name} is not in known_hosts ({path}): refusing to connect to a host whose key nobody has verified "
                f"({key.get_name()} {key.fingerprint if hasattr(key, 'fingerprint') else ''}). Verify the key "
                f"and add it (ssh-keyscan -p {self.port} {self.host} >> {path}), or pass --accept-new-host-keys "
                "to learn it on first contact", "host-key-unknown")
        client.get_host_keys().add(name, key.get_name(), key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with _KNOWN_HOSTS_LOCK, path.open("a", encoding="utf-8") as handle:
            handle.write(f"{name} {key.get_name()} {key.get_base64()}\n")


_KNOWN_HOSTS_LOCK = threading.Lock()
_SUDO_DENIED = ("a password is required", "is not in the sudoers file", "not allowed to execute",
                "sudo: command not found", "sudo: not found", "may not run sudo")


class Session:
    def __init__(self, target: Target, client: paramiko.SSHClient, jump_client: paramiko.SSHClient | None,
                 log_path: str | os.PathLike[str] | None) -> None:
        self.target = target
        self.client = client
        self._jump_client = jump_client
        self._log = None
        if log_path:
            Path(log_path).parent.mkdir(parents=True, exist_ok=True)
            self._log = open(log_path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
            self.log(f"connected to {target.label}")
        self.is_root = target.login == "root"

    # -- logging
    def log(self, line: str) -> None:
        if self._log:
            self._log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")
            self._log.flush()

    # -- commands
    def _wrap(self, cmd: str, sudo: bool) -> str:
        if sudo and not self.is_root:
            return f"sudo -n -- sh -c {shlex.quote(cmd)}"
        return cmd  # the login shell runs it, as with ssh host 'cmd'

    def run(self, cmd: str, *, sudo: bool = False, check: bool = True, input: str | bytes | None = None,
            timeout: float | None = None) -> Result:
        limit = timeout if timeout is not None else max(self.target.timeout, 1) * 30
        wrapped = self._wrap(cmd, sudo)
        self.log(f"$ {'(sudo) ' if sudo else ''}{cmd}")
        try:
            transport = self.client.get_transport()
            if transport is None or not transport.is_active():
                raise SSHError(f"the SSH connection to {self.target.label} was closed", "unreachable")
            channel = transport.open_session(timeout=self.target.timeout)
            channel.settimeout(limit)
            channel.exec_command(wrapped)
            if input is not None:
                channel.sendall(input.encode() if isinstance(input, str) else input)
            channel.shutdown_write()
            out, err = bytearray(), bytearray()
            deadline = time.monotonic() + limit
            while True:
                if channel.recv_ready():
                    out += channel.recv(65536)
                    continue
                if channel.recv_stderr_ready():
                    err += channel.recv_stderr(65536)
                    continue
                if channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready():
                    break
                if time.monotonic() > deadline:
                    channel.close()
                    raise SSHError(f"{self.target.label}: command timed out after {limit:g} s: {cmd[:120]}",
                                   "timeout")
                select.select([channel], [], [], 0.2)
            code = channel.recv_exit_status()
            channel.close()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SSHError(f"{self.target.label}: SSH failed while running {cmd[:80]!r}: {exc}", "unreachable") \
                from exc
        result = Result(code, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))
        self.log(f"  exit {code}" + (f"; stderr: {result.stderr.strip()[:2000]}" if result.stderr.strip() else ""))
        if sudo and not self.is_root and code != 0:
            low = result.stderr.lower()
            if any(marker in low for marker in _SUDO_DENIED):
                raise SSHError(f"{self.target.label}: user {self.target.login} cannot use sudo without a password "
                               f"({result.stderr.strip().splitlines()[-1][:200]}). Give it passwordless sudo "
                               "(a NOPASSWD rule in /etc/sudoers.d) or log in as root", "no-sudo")
        if check and code != 0:
            detail = (result.stderr.strip() or result.stdout.strip())[-600:]
            raise CommandError(f"{self.target.label}: command failed with exit {code}: {cmd[:200]}\n{detail}",
                               result)
        return result

    def put(self, path: str, data: bytes | str, *, mode: int = 0o644, owner: str | None = None,
            sudo: bool = False) -> None:
        payload = data.encode() if isinstance(data, str) else data
        directory = os.path.dirname(path) or "."
        q = shlex.quote
        script = (f"set -e; tmp=$(mktemp {q(directory)}/.{q(os.path.basename(path))}.parsectl.XXXXXX); "
                  f"trap 'rm -f \"$tmp\"' EXIT; cat > \"$tmp\"; chmod {mode:o} \"$tmp\"; "
                  + (f"chown {q(owner)} \"$tmp\"; " if owner else "")
                  + f"sync \"$tmp\" 2>/dev/null || true; mv -f \"$tmp\" {q(path)}; trap - EXIT")
        self.log(f"put {path} ({len(payload)} bytes, mode {mode:o}{', owner ' + owner if owner else ''})")
        self.run(script, sudo=sudo, input=payload)

    def get(self, path: str, *, sudo: bool = False) -> bytes | None:
        q = shlex.quote(path)
        result = self.run(f"if [ -e {q} ]; then base64 < {q}; else exit 3; fi", sudo=sudo, check=False)
        if result.exit_code == 3:
            return None
        if result.exit_code != 0:
            raise CommandError(f"{self.target.label}: cannot read {path}: {result.stderr.strip()[:300]}", result)
        import base64

        return base64.b64decode(result.stdout)

    @contextlib.contextmanager
    def tunnel(self, remote_host: str, remote_port: int) -> Iterator[int]:
        transport = self.client.get_transport()
        if transport is None:
            raise SSHError(f"the SSH connection to {self.target.label} was closed", "unreachable")
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        listener.settimeout(0.2)
        port = listener.getsockname()[1]
        stop = threading.Event()
        threads: list[threading.Thread] = []
        self.log(f"tunnel 127.0.0.1:{port} -> {remote_host}:{remote_port}")

        def pump(sock: socket.socket, chan: paramiko.Channel) -> None:
            try:
                while not stop.is_set():
                    ready, _, _ = select.select([sock, chan], [], [], 0.2)
                    if sock in ready:
                        data = sock.recv(65536)
                        if not data:
                            break
                        chan.sendall(data)
                    if chan in ready:
                        data = chan.recv(65536)
                        if not data:
                            break
                        sock.sendall(data)
            except OSError:
                pass
            finally:
                chan.close()
                sock.close()

        def accept() -> None:
            while not stop.is_set():
                try:
                    sock, peer = listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    break
                try:
                    chan = transport.open_channel("direct-tcpip", (remote_host, remote_port), peer,
                                                  timeout=self.target.timeout)
                except Exception as exc:  # noqa: BLE001 - refused forwarding: drop this connection
                    self.log(f"tunnel: cannot open {remote_host}:{remote_port}: {exc}")
                    sock.close()
                    continue
                worker = threading.Thread(target=pump, args=(sock, chan), daemon=True)
                worker.start()
                threads.append(worker)

        acceptor = threading.Thread(target=accept, daemon=True)
        acceptor.start()
        try:
            yield port
        finally:
            stop.set()
            acceptor.join(2)
            listener.close()
            for worker in threads:
                worker.join(2)

    def close(self) -> None:
        self.client.close()
        if self._jump_client:
            self._jump_client.close()
        if self._log:
            self.log("closed")
            self._log.close()
            self._log = None

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _load_pkey(path: str) -> paramiko.PKey:
    expanded = os.path.expanduser(path)
    errors = []
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key_file(expanded)
        except FileNotFoundError as exc:
            raise SSHError(f"SSH key file {path} does not exist", "auth") from exc
        except paramiko.PasswordRequiredException as exc:
            raise SSHError(f"SSH key file {path} is encrypted: load it into ssh-agent and omit the key file",
                           "auth") from exc
        except (paramiko.SSHException, ValueError) as exc:
            errors.append(str(exc))
    raise SSHError(f"cannot read SSH key file {path}: {errors[-1] if errors else 'unknown format'}", "auth")


def _open(target: Target, sock: Any = None) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    path = target.known_hosts_path()
    if path.exists():
        try:
            client.load_host_keys(str(path))
        except (OSError, paramiko.SSHException) as exc:
            raise SSHError(f"cannot read known_hosts file {path}: {exc}", "ssh") from exc
    client.set_missing_host_key_policy(_StrictPolicy(target, target.port, target.host))
    pkey = _load_pkey(target.key_file) if target.key_file else None
    try:
        client.connect(target.host, port=target.port, username=target.login, password=target.password,
                       pkey=pkey, timeout=target.timeout, banner_timeout=target.timeout,
                       auth_timeout=target.timeout, channel_timeout=target.timeout,
                       look_for_keys=pkey is None and target.password is None, allow_agent=pkey is None,
                       sock=sock)
    except SSHError:
        client.close()
        raise
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise SSHError(
            f"HOST KEY CHANGED for {_known_host_name(target.host, target.port)}: it offered "
            f"{exc.key.get_name()} {exc.key.get_base64()[:24]}... but {path} lists a different key. Refusing "
            "to connect (this can be a man-in-the-middle). If the host was reinstalled, verify its new key "
            f"and remove the old entry (ssh-keygen -R '{_known_host_name(target.host, target.port)}' "
            f"-f {path})", "host-key-changed") from exc
    except paramiko.AuthenticationException as exc:
        client.close()
        how = f"key {target.key_file}" if target.key_file else ("password" if target.password else
                                                              "ssh-agent and ~/.ssh keys")
        raise SSHError(f"{target.label}: authentication failed ({how}): {exc}. Check the user, the key and "
                       "the host's authorized_keys", "auth") from exc
    except TimeoutError as exc:
        client.close()
        raise SSHError(f"{target.label}: timed out after {target.timeout:g} s connecting; check the address, "
                       "port and firewall", "unreachable") from exc
    except paramiko.SSHException as exc:
        client.close()
        if "Error reading SSH protocol banner" in str(exc) or "No existing session" in str(exc):
            raise SSHError(f"{target.label}: no SSH server answered ({exc})", "unreachable") from exc
        raise SSHError(f"{target.label}: SSH failed: {exc}", "ssh") from exc
    except OSError as exc:
        client.close()
        raise SSHError(f"{target.label}: cannot reach the host ({exc.strerror or exc}); check the address, "
                       "port and that sshd runs", "unreachable") from exc
    return client


def connect(target: Target, log_path: str | os.PathLike[str] | None = None) -> Session:
    """Connect with strict host-key checking, retrying network failures ``target.retries`` times."""
    attempts = max(0, target.retries) + 1
    last: SSHError | None = None
    for attempt in range(attempts):
        jump_client = None
        try:
            sock = None
            if target.jump is not None:
                jump_client = _open(target.jump)
                jt = jump_client.get_transport()
                assert jt is not None
                try:
                    sock = jt.open_channel("direct-tcpip", (target.host, target.port), ("127.0.0.1", 0),
                                           timeout=target.timeout)
                except (paramiko.SSHException, OSError) as exc:
                    raise SSHError(f"{target.label}: the jump host {target.jump.label} cannot reach it: {exc}",
                                   "unreachable") from exc
            client = _open(target, sock)
            return Session(target, client, jump_client, log_path)
        except SSHError as exc:
            if jump_client:
                jump_client.close()
            last = exc
            if exc.kind != "unreachable" or attempt == attempts - 1:
                break
            time.sleep(min(0.5 * 2 ** attempt, 4))
    assert last is not None
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a", encoding="utf-8") as handle:
            handle.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} connect failed: {last}\n")
    raise last
