"""Throwaway backup nodes for the backup tests: real OpenSSH servers on 127.0.0.1, and a tiny mongod
stand-in that answers ``hello``/``isMaster`` (so `parsectl backup schedule` can ask who is primary).

``LoopbackHost``: ``/usr/sbin/sshd -D`` with its own config, host key and authorized key (root login by
key only), on a free loopback port. It runs in a private mount + UTS namespace (``unshare``): the node has
its own host name (so ``hostname -s`` -- and the default replica ID -- differs per node) and a private
tmpfs on /run (sshd's /run/sshd lives there; the machine's /run is not touched). Remote commands run as
root on this machine's filesystem, so tests install schedules under ``--root <tmp dir>``, never into
/etc. The machine's own sshd, crontab and services are never used.

``FakeMongod``: a thread serving the MongoDB wire protocol (OP_QUERY handshake, OP_MSG commands) with one
fixed ``hello`` answer: primary or secondary of a replica set.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import socket
import socketserver
import struct
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import paramiko

from . import free_port
from .sshd import start_sshd, stop_sshd

SSHD = "/usr/sbin/sshd"
PRIVSEP_LINE = "sshd:x:65534:65534:sshd privsep:/run/sshd:/usr/sbin/nologin\n"


def cache_dir() -> Path:
    env = os.environ.get("PARSECTL_TEST_CACHE")
    return Path(env) if env else Path("/var/cache/parsectl-tests")


def sshd_binary() -> tuple[str, dict[str, str]]:
    """(path, extra environment). The machine's /usr/sbin/sshd when installed; otherwise the Debian
    openssh-server (+ libwrap0) packages downloaded with apt-get and unpacked into the test cache -- nothing
    is installed and no service is started. PARSECTL_TEST_SSHD_UNPACKED=1 forces the unpacked copy."""
    if Path(SSHD).exists() and not os.environ.get("PARSECTL_TEST_SSHD_UNPACKED"):
        return SSHD, {}
    root = cache_dir() / "openssh-server-unpacked"
    if not (root / ".ready").exists():
        debs = cache_dir() / "openssh-server-debs"
        debs.mkdir(parents=True, exist_ok=True)
        fetch = ["apt-get", "download", "-q", "openssh-server", "libwrap0"]
        if subprocess.run(fetch, cwd=debs, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, check=False)
            subprocess.run(fetch, cwd=debs, capture_output=True, check=True)
        for deb in debs.glob("*.deb"):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True, capture_output=True)
        (root / ".ready").touch()
    libs = [str(p) for p in (root / "lib/x86_64-linux-gnu", root / "usr/lib/x86_64-linux-gnu",
                             root / "lib/aarch64-linux-gnu", root / "usr/lib/aarch64-linux-gnu") if p.is_dir()]
    return str(root / "usr/sbin/sshd"), {"LD_LIBRARY_PATH": ":".join(libs)} if libs else {}


def missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (sshd, unshare)"
    if not shutil.which("unshare"):
        return "unshare is missing (util-linux)"
    try:
        sshd_binary()
    except (OSError, subprocess.CalledProcessError) as exc:
        return f"no sshd: /usr/sbin/sshd is not installed and apt-get download openssh-server failed ({exc})"
    return None


class LoopbackHost:
    __test__ = False

    def __init__(self, name: str, workdir: Path, user_pub: str) -> None:
        self.name = name
        self.dir = workdir / f"sshd-{name}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.host_key = paramiko.RSAKey.generate(2048)
        key = self.dir / "host_rsa_key"
        self.host_key.write_private_key_file(str(key))
        key.chmod(0o600)
        (self.dir / "authorized_keys").write_text(user_pub + "\n")
        (self.dir / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {key}\n"
            f"AuthorizedKeysFile {self.dir / 'authorized_keys'}\nStrictModes no\nUsePAM no\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
            f"PidFile {self.dir / 'sshd.pid'}\nUseDNS no\nAllowTcpForwarding yes\nLogLevel VERBOSE\n"
            "AcceptEnv none\nSubsystem sftp internal-sftp\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def known_hosts_line(self) -> str:
        return f"[127.0.0.1]:{self.port} ssh-rsa {self.host_key.get_base64()}\n"

    @property
    def login(self) -> str:
        return f"root@127.0.0.1:{self.port}"

    def start(self) -> None:
        sshd, env = sshd_binary()
        passwd = ""
        if "\nsshd:" not in "\n" + Path("/etc/passwd").read_text():
            # sshd needs its privilege-separation user: add it to a private copy of /etc/passwd, bind-mounted
            # in this node's own mount namespace (the machine's /etc/passwd is not changed)
            (self.dir / "passwd").write_text(Path("/etc/passwd").read_text() + PRIVSEP_LINE)
            passwd = f"mount --bind {self.dir / 'passwd'} /etc/passwd && "
        script = (f"hostname {self.name} && mount -t tmpfs -o mode=755 tmpfs /run && mkdir -p /run/sshd && "
                  f"{passwd}exec {sshd} -D -e -f {self.dir / 'sshd_config'}")
        self.proc = start_sshd(self.name, self.port, script, self.dir / "sshd.log", ("--mount", "--uts"), env=env)

    def stop(self) -> None:
        stop_sshd(self.proc)


@contextlib.contextmanager
def loopback_hosts(workdir: Path, names: list[str]) -> Iterator[tuple[list[LoopbackHost], Path, Path]]:
    """Start one sshd per name; yield (hosts, private key file, known_hosts file)."""
    user_key = paramiko.Ed25519Key.generate() if hasattr(paramiko.Ed25519Key, "generate") else None
    if user_key is None:
        user_key = paramiko.RSAKey.generate(2048)
    key_file = workdir / "id_test"
    user_key.write_private_key_file(str(key_file))
    key_file.chmod(0o600)
    pub = f"{user_key.get_name()} {user_key.get_base64()} parsectl-test"
    hosts = [LoopbackHost(name, workdir, pub) for name in names]
    known = workdir / "known_hosts"
    known.write_text("".join(h.known_hosts_line() for h in hosts))
    try:
        for host in hosts:
            host.start()
        yield hosts, key_file, known
    finally:
        for host in hosts:
            host.stop()


# ---------------------------------------------------------------------------------------------------------
# mongod stand-in: hello / isMaster only
# ---------------------------------------------------------------------------------------------------------

class FakeMongod:
    __test__ = False

    def __init__(self, *, primary: bool, set_name: str | None = "rs0") -> None:
        self.primary, self.set_name = primary, set_name
        self.port = free_port()
        self.commands: list[str] = []
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                with contextlib.suppress(OSError, struct.error):
                    while True:
                        header = _recv(self.request, 16)
                        if not header:
                            return
                        length, request_id, _, opcode = struct.unpack("<iiii", header)
                        body = _recv(self.request, length - 16)
                        self.request.sendall(outer._reply(request_id, opcode, body))

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", self.port), Handler, bind_and_activate=False)
        self.server.allow_reuse_address = True
        self.server.daemon_threads = True
        self.server.server_bind()
        self.server.server_activate()
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def hello(self) -> dict[str, object]:
        doc: dict[str, object] = {
            "ismaster": self.primary, "isWritablePrimary": self.primary, "secondary": not self.primary,
            "maxBsonObjectSize": 16777216, "maxMessageSizeBytes": 48000000, "maxWriteBatchSize": 100000,
            "localTime": dt.datetime.now(dt.UTC), "logicalSessionTimeoutMinutes": 30, "connectionId": 1,
            "minWireVersion": 0, "maxWireVersion": 17, "ok": 1.0}
        if self.set_name:
            doc.update(setName=self.set_name, hosts=[f"127.0.0.1:{self.port}"], me=f"127.0.0.1:{self.port}")
        return doc

    def _reply(self, request_id: int, opcode: int, body: bytes) -> bytes:
        import bson

        if opcode == 2004:  # OP_QUERY: flags, cstring collection, skip, limit, query
            end = body.index(b"\0", 4)
            query = bson.decode(body[end + 9:end + 9 + struct.unpack("<i", body[end + 9:end + 13])[0]])
            self.commands.append(next(iter(query)))
            doc = bson.encode(self.hello())
            payload = struct.pack("<iqii", 0, 0, 0, 1) + doc
            return struct.pack("<iiii", 16 + len(payload), 0, request_id, 1) + payload
        # OP_MSG: flagBits, section kind 0 + document
        command = bson.decode(body[5:5 + struct.unpack("<i", body[5:9])[0]])
        name = next(iter(command))
        self.commands.append(name)
        answer = self.hello() if name.lower() in ("hello", "ismaster") else {"ok": 1.0}
        payload = struct.pack("<I", 0) + b"\0" + bson.encode(answer)
        return struct.pack("<iiii", 16 + len(payload), 0, request_id, 2013) + payload

    def __enter__(self) -> FakeMongod:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _recv(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return b""
        data += chunk
    return data
