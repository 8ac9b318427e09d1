"""Test hosts for provision-node: real OpenSSH servers, each confined to its own Debian root filesystem.

- ``base_rootfs()``: a minimal Debian bookworm tree (``debootstrap --variant=minbase``, with openssh-server and
  sudo), built once and cached in $PARSECTL_TEST_CACHE (default /var/cache/parsectl-tests as root). Its apt
  sources are removed, and it has two users: ``ops`` (passwordless sudo) and ``nosudo``.
- ``TestHost``: one host. Its root is an overlay (the cached tree below, a per-host directory on top), mounted
  in a private mount and PID namespace (``unshare``) whose first process is the tree's own ``sshd``, chrooted
  into the overlay and listening on 127.0.0.1:<free port> with a throwaway host key. Every remote command runs
  inside that tree. /proc/sys is read-only and /sys is absent, so no step can tune the test machine's kernel.
  The test machine's Python is bind-mounted read-only (the stand-in mongod is a Python script). Stopping the
  host kills the namespace's PID 1, which ends every process in it and drops its mounts.
- ``AptRepo``: a flat apt repository served over HTTP on loopback with stand-in ``percona-server-mongodb``
  (8.0) and ``percona-server-mongodb-34`` packages built with dpkg-deb: /usr/bin/mongod (tests/support/
  fake_mongod.py), an init script, a systemd unit, the default /etc/mongod.conf and a postinst creating the
  ``mongodb`` user, as Percona's packages do.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import http.server
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paramiko

ROOTFS_NAME = "rootfs-bookworm-minbase-v1"
SUPPORT = Path(__file__).resolve().parent


def cache_dir() -> Path:
    env = os.environ.get("PARSECTL_TEST_CACHE")
    if env:
        return Path(env)
    return Path("/var/cache/parsectl-tests") if os.geteuid() == 0 else Path.home() / ".cache" / "parsectl-tests"


def missing_requirements() -> str | None:
    if os.geteuid() != 0:
        return "needs root (debootstrap, namespaces, overlay mounts)"
    for tool in ("unshare", "chroot", "dpkg-deb", "apt-ftparchive"):
        if shutil.which(tool) is None:
            return f"{tool} is missing"
    if not (cache_dir() / ROOTFS_NAME / ".parsectl-ready").exists() and shutil.which("debootstrap") is None:
        return "debootstrap is missing (apt-get install -y debootstrap)"
    return None


def install_tools() -> None:
    """apt-get install what the tests need on the test machine (only tools; its sshd is never used)."""
    need = [p for p, tool in (("debootstrap", "debootstrap"), ("apt-utils", "apt-ftparchive"))
            if shutil.which(tool) is None]
    if need and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "update", "-q"], check=False, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-q", *need], check=False, capture_output=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def _chroot(root: Path, script: str) -> None:
    subprocess.run(["chroot", str(root), "/bin/sh", "-ec", script], check=True, capture_output=True)


def base_rootfs() -> Path:
    """The cached Debian tree, built on first use (about a minute) under a lock."""
    base = cache_dir()
    base.mkdir(parents=True, exist_ok=True)
    tree = base / ROOTFS_NAME
    with open(base / f"{ROOTFS_NAME}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (tree / ".parsectl-ready").exists():
            return tree
        building = base / f"{ROOTFS_NAME}.building"
        shutil.rmtree(building, ignore_errors=True)
        mirror = os.environ.get("PARSECTL_TEST_DEBIAN_MIRROR", "http://deb.debian.org/debian")
        result = subprocess.run(["debootstrap", "--variant=minbase", "--include=openssh-server,sudo", "bookworm",
                                 str(building), mirror], capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"debootstrap failed: {result.stdout[-2000:]}{result.stderr[-2000:]}")
        _chroot(building, """
            rm -f /etc/apt/sources.list; rm -f /etc/apt/sources.list.d/*
            rm -f /etc/ssh/ssh_host_*
            useradd -m -s /bin/bash ops; usermod -p '*' ops
            useradd -m -s /bin/bash nosudo; usermod -p '*' nosudo
            echo 'ops ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/ops; chmod 440 /etc/sudoers.d/ops
            apt-get clean
        """)
        (building / ".parsectl-ready").write_text("ok\n")
        shutil.rmtree(tree, ignore_errors=True)
        building.rename(tree)
        return tree


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _private_key_text(key: paramiko.PKey) -> str:
    import io

    buf = io.StringIO()
    key.write_private_key(buf)
    return buf.getvalue()


def start_sshd(name: str, port: int, script: str, log_path: Path, namespaces: tuple[str, ...], *,
               env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Run ``script`` (a shell script that ends by exec'ing ``sshd -D -e``) as the first process of new
    ``namespaces`` (``unshare`` flags, e.g. ``("--mount", "--uts")``), its output appended to ``log_path``;
    return once sshd answers on 127.0.0.1:``port``. Raises with the log's tail when it exits or is not up
    within 15 s (then it is stopped). ``env``: added to this process's environment."""
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(["unshare", *namespaces, "--fork", "--kill-child", "--propagation", "private",
                             "sh", "-c", script],
                            stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, **(env or {})})
    log.close()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd for {name} exited: {log_path.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.settimeout(2)
            if s.recv(8).startswith(b"SSH-"):
                return proc
        time.sleep(0.05)
    stop_sshd(proc)
    raise RuntimeError(f"sshd for {name} did not start: {log_path.read_text()[-2000:]}")


def stop_sshd(proc: subprocess.Popen[bytes] | None) -> None:
    """End what start_sshd started: SIGTERM to its process group (the namespace's first process takes the rest
    with it), SIGKILL if it is still there 10 s later."""
    if proc and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


class TestHost:
    __test__ = False

    def __init__(self, name: str, workdir: Path, base: Path, user_pub: str, *, mongod_port: int) -> None:
        self.name, self.base = name, base
        self.dir = workdir / name
        self.upper, self.work, self.merged = self.dir / "upper", self.dir / "work", self.dir / "merged"
        for d in (self.upper, self.work, self.merged):
            d.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.mongod_port = mongod_port
        self.host_key = paramiko.RSAKey.generate(2048)
        self.user_pub = user_pub
        self.proc: subprocess.Popen[bytes] | None = None
        self._prepare()

    def _prepare(self) -> None:
        up = self.upper
        (up / "etc/ssh/sshd_config.d").mkdir(parents=True, exist_ok=True)
        key_path = up / "etc/ssh/ssh_host_rsa_key"
        key_path.write_text(_private_key_text(self.host_key))
        key_path.chmod(0o600)
        (up / "etc/ssh/ssh_host_rsa_key.pub").write_text(f"ssh-rsa {self.host_key.get_base64()}\n")
        (up / "etc/ssh/sshd_config.d/parsectl-test.conf").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey /etc/ssh/ssh_host_rsa_key\nUsePAM no\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
            "PidFile none\nUseDNS no\nAllowTcpForwarding yes\nLogLevel VERBOSE\n")
        (up / "etc/hostname").write_text(f"{self.name}\n")
        (up / "etc/hosts").write_text(f"127.0.0.1 localhost {self.name}\n")
        passwd = (self.base / "etc/passwd").read_text().splitlines()
        for user in ("root", "ops", "nosudo"):
            entry = next(line.split(":") for line in passwd if line.startswith(f"{user}:"))
            home = up / entry[5].lstrip("/") / ".ssh"
            home.mkdir(parents=True, exist_ok=True)
            (home / "authorized_keys").write_text(self.user_pub + "\n")
            for path in (home, home / "authorized_keys", home.parent):
                os.chown(path, int(entry[2]), int(entry[3]))
            home.chmod(0o700)

    def known_hosts_line(self) -> str:
        return f"[127.0.0.1]:{self.port} ssh-rsa {self.host_key.get_base64()}\n"

    def start(self) -> None:
        py_base = Path(sys.base_prefix).resolve()
        venv = Path(sys.prefix).resolve()
        binds = []
        for src in sorted({str(py_base), str(venv)}):
            binds.append(f'mkdir -p "$M{src}" && mount --bind {src} "$M{src}" && mount -o remount,bind,ro "$M{src}"')
        script = f"""
set -e
M={self.merged}
hostname {self.name}
mount -t overlay overlay -o lowerdir={self.base},upperdir={self.upper},workdir={self.work} "$M"
mount -t proc proc "$M/proc"
mount --bind "$M/proc/sys" "$M/proc/sys" && mount -o remount,bind,ro "$M/proc/sys"
mount -t tmpfs -o mode=755 tmpfs "$M/dev"
mknod -m 666 "$M/dev/null" c 1 3; mknod -m 666 "$M/dev/zero" c 1 5; mknod -m 666 "$M/dev/full" c 1 7
mknod -m 666 "$M/dev/random" c 1 8; mknod -m 666 "$M/dev/urandom" c 1 9; mknod -m 666 "$M/dev/tty" c 5 0
ln -s /proc/self/fd "$M/dev/fd"; mkdir -p "$M/dev/pts" "$M/dev/shm"
mount -t tmpfs -o mode=755 tmpfs "$M/run"; mkdir -p "$M/run/sshd"; chmod 755 "$M/run/sshd"
{chr(10).join(binds)}
exec chroot "$M" /usr/sbin/sshd -D -e
"""
        self.proc = start_sshd(self.name, self.port, script, self.dir / "sshd.log", ("--mount", "--pid", "--uts"))

    def stop(self) -> None:
        stop_sshd(self.proc)
        self.proc = None

    def write(self, path: str, data: bytes, uid: int = 0) -> None:
        """Put a file straight into the host's tree: before start() only (an overlay's upper layer must not
        change while it is mounted)."""
        assert self.proc is None, "write() before start()"
        target = self.upper / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        os.chown(target, uid, uid)


# ---------------------------------------------------------------------------------------------------------
# the local apt repository

INIT_SCRIPT = """#!/bin/sh
### BEGIN INIT INFO
# Provides:          mongod
# Required-Start:    $network $local_fs $remote_fs
# Required-Stop:     $network $local_fs $remote_fs
# Default-Start:     2 3 4 5
# Default-Stop:      0 1 6
# Short-Description: stand-in mongod (parsectl tests)
### END INIT INFO
PIDFILE=/run/mongod.pid
start() {
  start-stop-daemon --start --quiet --background --make-pidfile --pidfile $PIDFILE --chuid mongodb:mongodb \\
    --startas /usr/bin/mongod -- --config /etc/mongod.conf
}
stop() { start-stop-daemon --stop --quiet --pidfile $PIDFILE --retry 10 --remove-pidfile; true; }
case "$1" in
  start) start-stop-daemon --status --pidfile $PIDFILE && exit 0; start ;;
  stop) stop ;;
  restart|force-reload) stop; start ;;
  status) start-stop-daemon --status --pidfile $PIDFILE ;;
  *) echo "Usage: $0 {start|stop|restart|status}"; exit 2 ;;
esac
"""

UNIT = """[Unit]
Description=High-performance, schema-free document-oriented database (stand-in)
After=network.target
[Service]
User=mongodb
Group=mongodb
ExecStart=/usr/bin/mongod --config /etc/mongod.conf
[Install]
WantedBy=multi-user.target
"""

DEFAULT_CONF = """# mongod.conf (package default)
storage:
  dbPath: /var/lib/mongodb
systemLog:
  destination: file
  logAppend: true
  path: /var/log/mongodb/mongod.log
net:
  port: 27017
  bindIp: 127.0.0.1
"""

POSTINST = """#!/bin/sh
set -e
if [ "$1" = configure ]; then
  getent group mongodb >/dev/null || groupadd --system mongodb
  getent passwd mongodb >/dev/null || useradd --system --gid mongodb --home-dir /var/lib/mongodb \\
    --shell /usr/sbin/nologin mongodb
  mkdir -p /var/lib/mongodb /var/log/mongodb
  chown mongodb:mongodb /var/lib/mongodb /var/log/mongodb
  if command -v invoke-rc.d >/dev/null; then invoke-rc.d mongod start || true; fi
fi
"""


def build_package(out: Path, name: str, version: str, python: str) -> Path:
    root = out / f"{name}-build"
    shutil.rmtree(root, ignore_errors=True)
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN/control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: parsectl tests <tests@localhost>\n"
        "Depends: adduser | passwd\nPriority: optional\nSection: database\n"
        f"Description: stand-in for Percona Server for MongoDB ({name}), parsectl tests only\n")
    (root / "DEBIAN/conffiles").write_text("/etc/mongod.conf\n/etc/init.d/mongod\n")
    (root / "DEBIAN/postinst").write_text(POSTINST)
    (root / "DEBIAN/postinst").chmod(0o755)
    files = {"usr/lib/parsectl-fake/fake_mongod.py": ((SUPPORT / "fake_mongod.py").read_text(), 0o644),
             "usr/bin/mongod": (f"#!/bin/sh\nexec {python} /usr/lib/parsectl-fake/fake_mongod.py \"$@\" "
                                ">>/var/log/mongodb/mongod.stdout 2>&1 </dev/null\n", 0o755),
             "etc/init.d/mongod": (INIT_SCRIPT, 0o755), "lib/systemd/system/mongod.service": (UNIT, 0o644),
             "etc/mongod.conf": (DEFAULT_CONF, 0o644)}
    for rel, (text, mode) in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(mode)
    deb = out / f"{name}_{version}_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(deb)], check=True,
                   capture_output=True)
    shutil.rmtree(root)
    return deb


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


class AptRepo:
    """An apt repository (``deb [trusted=yes] http://127.0.0.1:PORT/ bookworm main``) served on loopback."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        python = str(Path(sys.executable))
        pool = directory / "pool"
        pool.mkdir(exist_ok=True)
        for name, version in (("percona-server-mongodb", "8.0.4-2"), ("percona-server-mongodb-34", "3.4.24-3.0")):
            build_package(pool, name, version, python)
        arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True).stdout.strip()
        dist = directory / "dists" / "bookworm"
        for a in (arch, "all"):
            (dist / "main" / f"binary-{a}").mkdir(parents=True, exist_ok=True)
            packages = subprocess.run(["apt-ftparchive", "packages", "pool"], cwd=directory, check=True,
                                      capture_output=True).stdout
            (dist / "main" / f"binary-{a}" / "Packages").write_bytes(packages)
        release = subprocess.run(["apt-ftparchive", "-o", "APT::FTPArchive::Release::Suite=bookworm",
                                  "-o", "APT::FTPArchive::Release::Codename=bookworm",
                                  "-o", "APT::FTPArchive::Release::Components=main",
                                  "-o", f"APT::FTPArchive::Release::Architectures={arch} all",
                                  "release", "dists/bookworm"], cwd=directory, check=True, capture_output=True).stdout
        (dist / "Release").write_bytes(release)
        handler = functools.partial(_QuietHandler, directory=str(directory))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def make_workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="parsectl-provision-"))
