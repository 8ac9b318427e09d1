"""The node steps. Each compares the host's state with what the playbook wants and records a ``Change`` per
difference; in apply mode it makes the change right after recording it. A step with nothing to change
records nothing, so a second apply reports no changes.
"""

from __future__ import annotations

import base64
import difflib
import secrets
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any

from parsectl.mongo_ops import conf
from parsectl.mongo_ops.render import TEMPLATES_DIR, render
from parsectl.provision.inventory import Host
from parsectl.ssh import Session

q = shlex.quote


class StepError(RuntimeError):
    """This host cannot go on; the message says why and how to repair it."""


@dataclass
class Change:
    step: str
    description: str
    diff: str | None = None
    applied: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"step": self.step, "description": self.description, "diff": self.diff, "applied": self.applied}


@dataclass
class HostRun:
    host: Host
    session: Session
    vars: dict[str, Any]
    apply: bool
    playbook_dir: Path | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    changes: list[Change] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    changed_steps: set[str] = field(default_factory=set)
    keyfile: bytes | None = None
    move_existing_data: bool = False
    progress: Callable[[str], None] = lambda line: None

    def sh(self, cmd: str, *, check: bool = True, input: bytes | str | None = None, timeout: float | None = None):
        return self.session.run(cmd, sudo=True, check=check, input=input, timeout=timeout)

    def change(self, step: str, description: str, action: Callable[[], None] | None, diff: str | None = None) -> None:
        record = Change(step, description, diff)
        self.changes.append(record)
        self.changed_steps.add(step)
        if self.apply and action is not None:
            self.progress(f"{step}: {description}")
            action()
            record.applied = True


# ---------------------------------------------------------------------------------------------------------
# Helpers


def file_state(run: HostRun, path: str) -> tuple[bytes | None, str | None, str | None]:
    """(content, mode as 4-digit octal, owner:group) of a remote file; (None, None, None) when missing."""
    result = run.sh(f"if [ -e {q(path)} ]; then stat -c '%a %U:%G' {q(path)}; base64 < {q(path)}; "
                    "else echo missing; fi")
    lines = result.stdout.split("\n", 1)
    if lines[0].strip() == "missing":
        return None, None, None
    mode, owner = lines[0].split()
    return base64.b64decode(lines[1] if len(lines) > 1 else ""), mode.zfill(4), owner


def unified(path: str, old: bytes | None, new: bytes) -> str:
    a = (old or b"").decode("utf-8", "replace").splitlines(keepends=True)
    b = new.decode("utf-8", "replace").splitlines(keepends=True)
    return "".join(difflib.unified_diff(a, b, fromfile=f"{path} (on host)" if old is not None else "/dev/null",
                                        tofile=f"{path} (planned)"))


def ensure_file(run: HostRun, step: str, path: str, content: bytes, *, mode: int = 0o644,
                owner: str = "root:root", secret: bool = False) -> bool:
    old, old_mode, old_owner = file_state(run, path)
    want_mode = f"{mode:04o}"

    def write() -> None:
        run.sh(f"mkdir -p {q(str(Path(path).parent))}")
        run.session.put(path, content, mode=mode, owner=owner, sudo=True)

    if old != content:
        diff = (f"(secret: {len(content)} bytes, content not shown)" if secret else unified(path, old, content))
        run.change(step, f"{'update' if old is not None else 'create'} {path} ({want_mode} {owner})", write, diff)
        return True
    if old_mode != want_mode or old_owner != owner:
        run.change(step, f"set {path} to {want_mode} {owner} (now {old_mode} {old_owner})",
                   lambda: run.sh(f"chmod {mode:o} {q(path)} && chown {q(owner)} {q(path)}"))
        return True
    return False


def _mode(value: Any, default: int) -> int:
    if value is None:
        return default
    return value if isinstance(value, int) else int(str(value), 8)


# ---------------------------------------------------------------------------------------------------------
# gather_facts

FACTS_SCRIPT = r"""
. /etc/os-release 2>/dev/null; echo "os=${ID:-unknown}|${VERSION_ID:-}|${VERSION_CODENAME:-}"
echo "mem=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo 2>/dev/null)"
echo "cores=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN)"
echo "arch=$(uname -m)"
echo "kernel=$(uname -r)"
if [ -d /run/systemd/system ]; then echo init=systemd; else echo init=sysv; fi
d="$1"; while [ ! -e "$d" ] && [ "$d" != / ]; do d=$(dirname "$d"); done
echo "fs=$(df -PT "$d" 2>/dev/null | awk 'NR==2 {print $2}')"
echo "dev=$(df -P "$d" 2>/dev/null | awk 'NR==2 {print $1}')"
echo "thp=$(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null)"
for t in chronyd ntpd systemd-timesyncd; do
  if command -v $t >/dev/null 2>&1 || [ -x /lib/systemd/$t ] || [ -x /usr/lib/systemd/$t ]; then echo "ntp=$t"; fi
done
echo "disks=$(lsblk -dno NAME,ROTA,SIZE 2>/dev/null | tr '\n' ';')"
"""


def gather_facts(run: HostRun, f: dict[str, Any]) -> None:
    data_path = f.get("data_path") or "/var/lib/mongodb"
    out = run.sh(f"sh -s -- {q(data_path)}", input=FACTS_SCRIPT).stdout
    values: dict[str, str] = {}
    for line in out.splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            values.setdefault(key, value.strip())
    dist, version, codename = (values.get("os", "unknown||").split("|") + ["", ""])[:3]
    mem_kb = int(values.get("mem") or 0)
    facts = {"distribution": dist, "distribution_version": version, "codename": codename,
             "ram_gb": round(mem_kb / (1024 * 1024), 2), "cores": int(values.get("cores") or 1),
             "arch": values.get("arch", ""), "kernel": values.get("kernel", ""), "init": values.get("init", "sysv"),
             "filesystem": values.get("fs", ""), "device": values.get("dev", ""), "thp": values.get("thp", ""),
             "ntp": values.get("ntp", ""), "disks": [d for d in values.get("disks", "").split(";") if d]}
    run.facts.update(facts)
    run.vars.update({k: v for k, v in facts.items() if k in ("distribution", "distribution_version", "codename",
                                                             "ram_gb", "cores", "arch", "init")})
    supported = f.get("supported_distributions")
    if supported:
        allowed = supported.get(dist)
        if allowed is None or (allowed and codename not in allowed and version not in [str(a) for a in allowed]):
            listing = "; ".join(f"{d}: {', '.join(map(str, v)) if v else 'any'}" for d, v in supported.items())
            raise StepError(f"unsupported distribution {dist} {version} ({codename or 'no codename'}); this "
                            f"playbook supports {listing}. Use another playbook or host")
    if facts["ram_gb"] <= 0:
        raise StepError("could not read MemTotal from /proc/meminfo on the host")
    run.notes.append(f"facts: {dist} {version} {codename}, {facts['ram_gb']} GB RAM, {facts['cores']} cores, "
                     f"{facts['arch']}, init {facts['init']}, dbPath filesystem {facts['filesystem'] or '?'}")


# ---------------------------------------------------------------------------------------------------------
# os_tuning


def _thp_mode(f: dict[str, Any], run: HostRun) -> str:
    mode = f.get("thp", "auto")
    if mode != "auto":
        return mode
    version = str(run.vars.get("psmdb_version") or run.vars.get("version") or "8.0")
    arch = run.facts.get("arch", "")
    # MongoDB production notes: 8.0+ wants THP enabled (per-CPU TCMalloc) on x86_64/aarch64; earlier: disabled.
    if conf.Version.parse(version) >= conf.Version(8, 0) and arch in ("x86_64", "aarch64", ""):
        return "always"
    return "never"


def os_tuning(run: HostRun, f: dict[str, Any]) -> None:
    step = "os_tuning"
    user = f.get("user", "mongodb")
    nofile, nproc = int(f.get("nofile", 64000)), int(f.get("nproc", 64000))
    thp = _thp_mode(f, run)
    swappiness = int(f.get("swappiness", 1))
    sysctl = ["# written by parsectl provision-node (MongoDB production notes)", f"vm.swappiness = {swappiness}"]
    if thp == "always":
        sysctl.append("vm.overcommit_memory = 1")
    sysctl_path = "/etc/sysctl.d/60-parsectl-mongodb.conf"
    if ensure_file(run, step, sysctl_path, ("\n".join(sysctl) + "\n").encode()) and run.apply:
        live = run.sh(f"sysctl -p {sysctl_path}", check=False)
        if live.exit_code != 0:
            run.warnings.append(f"sysctl settings written to {sysctl_path} but not applied now "
                                f"({(live.stderr.strip().splitlines() or ['?'])[-1][:160]}); they apply at boot")
    limits = (f"# written by parsectl provision-node: MongoDB needs 64000+ open files (4.4+ refuses fewer)\n"
              f"{user} soft nofile {nofile}\n{user} hard nofile {nofile}\n"
              f"{user} soft nproc {nproc}\n{user} hard nproc {nproc}\n")
    ensure_file(run, step, "/etc/security/limits.d/60-parsectl-mongodb.conf", limits.encode())
    service = f.get("service", "mongod")
    override = f"[Service]\nLimitNOFILE={nofile}\nLimitNPROC={nproc}\n"
    ensure_file(run, step, f"/etc/systemd/system/{service}.service.d/60-parsectl-limits.conf", override.encode())
    if thp in ("never", "always"):
        defrag = "defer+madvise" if thp == "always" else "never"
        unit = ("[Unit]\nDescription=Transparent huge pages as MongoDB's production notes ask (parsectl)\n"
                f"DefaultDependencies=no\nAfter=sysinit.target local-fs.target\nBefore={service}.service\n\n"
                "[Service]\nType=oneshot\n"
                f"ExecStart=/bin/sh -c 'echo {thp} > /sys/kernel/mm/transparent_hugepage/enabled && "
                f"echo {defrag} > /sys/kernel/mm/transparent_hugepage/defrag'\n\n"
                "[Install]\nWantedBy=basic.target\n")
        path = "/etc/systemd/system/parsectl-thp.service"
        if ensure_file(run, step, path, unit.encode()) and run.facts.get("init") == "systemd":
            run.change(step, "enable parsectl-thp.service",
                       lambda: run.sh("systemctl daemon-reload && systemctl enable parsectl-thp.service"))
        current = run.facts.get("thp", "")
        if not current:
            run.notes.append("no /sys/kernel/mm/transparent_hugepage on this host (container?): the THP unit is "
                             "written for boot, nothing changed now")
        elif f"[{thp}]" not in current:
            def apply_thp() -> None:
                res = run.sh(f"echo {thp} > /sys/kernel/mm/transparent_hugepage/enabled && "
                             f"echo {defrag} > /sys/kernel/mm/transparent_hugepage/defrag", check=False)
                if res.exit_code != 0:
                    run.warnings.append(f"could not set THP to {thp} now: {res.stderr.strip()[:160]}")
            run.change(step, f"set transparent huge pages to {thp} (now: {current})", apply_thp)
    if f.get("check_ntp", True) and not run.facts.get("ntp"):
        run.warnings.append("no NTP daemon found (chrony, ntpd or systemd-timesyncd): replica-set members need "
                            "synchronised clocks; install chrony")
    engine = str(run.vars.get("engine", ""))
    fs = run.facts.get("filesystem", "")
    if f.get("check_xfs", True) and engine == "wiredTiger" and fs and fs != "xfs":
        run.warnings.append(f"the dbPath filesystem is {fs}: MongoDB strongly recommends XFS for WiredTiger")
    max_kb = f.get("readahead_max_kb")
    device = run.facts.get("device", "")
    if max_kb and device.startswith("/dev/"):
        ra = run.sh(f"blockdev --getra {q(device)}", check=False)
        if ra.exit_code == 0 and ra.stdout.strip().isdigit() and int(ra.stdout) / 2 > max_kb:
            run.warnings.append(f"readahead on {device} is {int(ra.stdout) // 2} KB; MongoDB advises 8-32 sectors "
                                f"(4-16 KB) for WiredTiger: blockdev --setra 32 {device} (and a udev rule)")


# ---------------------------------------------------------------------------------------------------------
# package_repository / packages


def package_repository(run: HostRun, f: dict[str, Any]) -> None:
    step = "package_repository"
    name = f["name"]
    options = []
    if f.get("key_file") and not f.get("trusted"):
        key = Path(f["key_file"]).expanduser()
        try:
            key_bytes = key.read_bytes()
        except OSError as exc:
            raise StepError(f"cannot read the repository key {key}: {exc.strerror}") from exc
        keyring = f"/etc/apt/keyrings/{name}.{'asc' if key_bytes.startswith(b'-----') else 'gpg'}"
        if ensure_file(run, step, keyring, key_bytes):
            run.vars["_apt_update"] = True
        options.append(f"signed-by={keyring}")
    elif f.get("trusted"):
        options.append("trusted=yes")
    else:
        raise StepError(f"package_repository {name}: give key_file (the repository's signing key) or trusted: true")
    components = " ".join(f.get("components") or ["main"])
    line = f"deb [{' '.join(options)}] {f['url']} {f['suite']} {components}".rstrip() + "\n"
    text = f"# written by parsectl provision-node\n{line}"
    if ensure_file(run, step, f"/etc/apt/sources.list.d/{name}.list", text.encode()):
        run.vars["_apt_update"] = True


def packages(run: HostRun, f: dict[str, Any]) -> None:
    step = "packages"
    names = [str(n) for n in f["names"]]
    out = run.sh("dpkg-query -W -f='${Package} ${db:Status-Abbrev}\\n' " + " ".join(q(n) for n in names),
                 check=False).stdout
    installed = {line.split()[0] for line in out.splitlines() if len(line.split()) > 1 and line.split()[1] == "ii"}
    missing = [n for n in names if n not in installed]
    if not missing:
        return
    guard = f.get("no_autostart", True)

    def install() -> None:
        pre = ""
        post = ""
        if guard:  # policy-rc.d: keep the package from starting mongod before its config is written
            pre = ("created=; if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\\nexit 101\\n' "
                   "> /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && created=1; fi; "
                   "trap '[ -n \"$created\" ] && rm -f /usr/sbin/policy-rc.d' EXIT; ")
        script = (pre + "export DEBIAN_FRONTEND=noninteractive; apt-get update -q && "
                  "apt-get install -y -q -o Dpkg::Options::=--force-confold -o Dpkg::Options::=--force-confdef "
                  + " ".join(q(n) for n in missing) + post)
        result = run.sh(script, check=False, timeout=900)
        if result.exit_code != 0:
            tail = "\n".join((result.stderr.strip() or result.stdout.strip()).splitlines()[-6:])
            raise StepError(f"installing {', '.join(missing)} failed (exit {result.exit_code}):\n{tail}\n"
                            "Check the package repository step; a re-run retries the install")

    run.change(step, f"install {', '.join(missing)}", install)


# ---------------------------------------------------------------------------------------------------------
# data_dir: the seed's empty-dbPath rule

DETECT_ENGINE = r"""
p="$1"; [ -d "$p" ] || { echo absent; exit 0; }
entries=$(ls -A "$p" | grep -v -x -e lost+found -e mongod.lock -e diagnostic.data | head -50)
[ -z "$entries" ] && { echo empty; exit 0; }
if [ -e "$p/WiredTiger" ] || [ -e "$p/WiredTiger.wt" ]; then echo wiredTiger
elif [ -e "$p/db/CURRENT" ] || [ -e "$p/CURRENT" ]; then echo rocksdb
elif ls "$p"/*.ns >/dev/null 2>&1; then echo mmapv1
elif [ -e "$p/storage.bson" ] && grep -a -q -o -e inMemory "$p/storage.bson"; then echo inMemory
else echo unknown; fi
echo "$entries" | tr '\n' ' '
"""


def data_dir(run: HostRun, f: dict[str, Any]) -> None:
    step = "data_dir"
    path, engine = f["path"], f["engine"]
    out = run.sh(f"sh -s -- {q(path)}", input=DETECT_ENGINE).stdout.splitlines()
    found = out[0].strip() if out else "absent"
    listing = out[1].strip() if len(out) > 1 else ""
    if found in ("absent", "empty", engine):
        return
    what = "files of an unknown kind" if found == "unknown" else f"{found} data files"
    if not (f.get("move_existing_data") or run.move_existing_data):
        raise StepError(f"dbPath {path} holds {what} ({listing[:200]}) but this playbook runs the {engine} engine: "
                        "data files cannot be shared between engines, so mongod needs an empty dbPath. Nothing was "
                        "changed. Re-run with --move-existing-data to move the files aside (never deleted), or "
                        "empty the directory yourself; to migrate data, add this node empty and let initial sync "
                        "copy it")
    aside = f"{path.rstrip('/')}.parsectl-moved-{time.strftime('%Y%m%d%H%M%S')}"

    def move() -> None:
        stop = ("if [ -d /run/systemd/system ]; then systemctl stop mongod 2>/dev/null; "
                "elif [ -x /etc/init.d/mongod ]; then /etc/init.d/mongod stop >/dev/null 2>&1; fi; ")
        run.sh(stop + f"mkdir -p {q(aside)} && chmod 700 {q(aside)} && "
               f"find {q(path)} -mindepth 1 -maxdepth 1 ! -name lost+found -exec mv -t {q(aside)} {{}} +")
        run.warnings.append(f"moved the {what} of {path} to {aside} (kept; delete it yourself when sure)")

    run.change(step, f"move {what} in {path} aside to {aside} (--move-existing-data)", move)


# ---------------------------------------------------------------------------------------------------------
# directories, keyfile, mongod_conf, template


def directories(run: HostRun, f: dict[str, Any]) -> None:
    step = "directories"
    owner = f"{f.get('owner', 'root')}:{f.get('group', f.get('owner', 'root'))}"
    mode = _mode(f.get("mode"), 0o755)
    for path in f["paths"]:
        res = run.sh(f"stat -c '%a %U:%G' {q(path)} 2>/dev/null || echo missing", check=False)
        state = res.stdout.strip()
        want = f"{mode:o} {owner}"
        if state == "missing":
            run.change(step, f"create directory {path} ({mode:04o} {owner})",
                       lambda p=path: run.sh(f"mkdir -p {q(p)} && chown {q(owner)} {q(p)} && chmod {mode:o} {q(p)}"))
        elif state != want:
            run.change(step, f"set directory {path} to {mode:04o} {owner} (now {state})",
                       lambda p=path: run.sh(f"chown {q(owner)} {q(p)} && chmod {mode:o} {q(p)}"))


def keyfile(run: HostRun, f: dict[str, Any]) -> None:
    step = "keyfile"
    path = f["path"]
    owner = f"{f.get('owner', 'mongodb')}:{f.get('group', f.get('owner', 'mongodb'))}"
    if run.keyfile is None:
        raise StepError("no keyFile content: give --keyfile FILE (the same file for every member)")
    ensure_file(run, step, path, run.keyfile, mode=0o400, owner=owner, secret=True)


def new_keyfile() -> bytes:
    """756 random bytes as base64 (1008 characters, within the keyFile's 6-1024 base64 characters)."""
    return base64.b64encode(secrets.token_bytes(756)) + b"\n"


def mongod_conf(run: HostRun, f: dict[str, Any]) -> None:
    step = "mongod_conf"
    host = run.host
    bind = ["127.0.0.1", *[b for b in (host.bind_ip or [host.member_host.rsplit(":", 1)[0].strip("[]")])
                           if b not in ("127.0.0.1", "localhost")]]
    try:
        inputs = conf.Inputs(server=f.get("server", "psmdb"), version=str(f["version"]), engine=f["engine"],
                             ram_gb=float(run.facts["ram_gb"]), cores=int(run.facts["cores"]),
                             profile=f.get("profile", "parse-default"),
                             db_path=f.get("db_path", conf.DEFAULT_DB_PATH), log_path=f.get("log_path",
                                                                                           conf.DEFAULT_LOG_PATH),
                             repl_set=str(run.vars["replset"]), bind_ip=f.get("bind_ip") or bind,
                             port=int(f.get("port", host.mongod_port)), key_file=f.get("key_file"),
                             oplog_window_hours=f.get("oplog_window_hours"),
                             write_rate_mb_per_hour=f.get("write_rate_mb_per_hour"))
        generated = conf.generate(inputs)
    except conf.ConfError as exc:
        raise StepError(f"mongod.conf: {exc}") from exc
    for warning in generated.warnings:
        if "loopback" in warning and host.member_host.startswith(("127.", "localhost", "[::1]")):
            continue  # test and single-machine set-ups: members are on loopback on purpose
        run.warnings.append(f"mongod.conf: {warning}")
    ensure_file(run, step, f.get("path", "/etc/mongod.conf"), render(generated).encode())


def template(run: HostRun, f: dict[str, Any]) -> None:
    step = "template"
    src = Path(f["src"])
    candidates = [src] if src.is_absolute() else [p / src for p in (run.playbook_dir, TEMPLATES_DIR) if p]
    for candidate in candidates:
        if candidate.is_file():
            text = candidate.read_text(encoding="utf-8")
            break
    else:
        raise StepError(f"template {src} not found (looked in {', '.join(str(c.parent) for c in candidates)})")
    variables = {k: v for k, v in run.vars.items() if not k.startswith("_")}
    variables.update(member_host=run.host.member_host, mongod_port=run.host.mongod_port)
    try:
        content = Template(text).substitute({k: str(v) for k, v in variables.items()})
    except (KeyError, ValueError) as exc:
        raise StepError(f"template {src}: ${{{exc.args[0]}}} is not defined") from exc
    ensure_file(run, step, f["dest"], content.encode(), mode=_mode(f.get("mode"), 0o644),
                owner=f.get("owner", "root:root"))


# ---------------------------------------------------------------------------------------------------------
# service, wait_for_port


def service(run: HostRun, f: dict[str, Any]) -> None:
    step = "service"
    name = f["name"]
    systemd = run.facts.get("init") == "systemd"
    triggers = set(f.get("restart_on_change") or ["mongod_conf", "keyfile", "os_tuning", "data_dir"])
    if systemd:
        running = run.sh(f"systemctl is-active --quiet {q(name)}", check=False).exit_code == 0
        enabled = run.sh(f"systemctl is-enabled --quiet {q(name)}", check=False).exit_code == 0
        start, restart = f"systemctl daemon-reload && systemctl start {q(name)}", \
            f"systemctl daemon-reload && systemctl restart {q(name)}"
        enable = f"systemctl enable {q(name)}"
    else:
        script = f"/etc/init.d/{name}"
        if run.sh(f"[ -x {q(script)} ]", check=False).exit_code != 0 and (run.apply or "packages" not in
                                                                           run.changed_steps):
            raise StepError(f"service {name}: no systemd and no {script} on the host; is the package installed?")
        running = run.sh(f"{q(script)} status >/dev/null 2>&1", check=False).exit_code == 0
        enabled = run.sh(f"ls /etc/rc2.d/S*{q(name)} >/dev/null 2>&1 || ! command -v update-rc.d >/dev/null",
                         check=False).exit_code == 0
        start, restart = f"{q(script)} start", f"{q(script)} restart"
        enable = f"update-rc.d {q(name)} defaults"
    if f.get("enabled", True) and not enabled:
        run.change(step, f"enable {name} at boot", lambda: run.sh(enable))
    if not running:
        run.change(step, f"start {name}", lambda: _start(run, start, name))
    elif triggers & run.changed_steps:
        why = ", ".join(sorted(triggers & run.changed_steps))
        run.change(step, f"restart {name} (changed: {why})", lambda: _start(run, restart, name))


def _start(run: HostRun, command: str, name: str) -> None:
    result = run.sh(command, check=False, timeout=120)
    if result.exit_code != 0:
        log = run.sh("tail -n 20 /var/log/mongodb/mongod.log 2>/dev/null", check=False).stdout
        raise StepError(f"starting {name} failed (exit {result.exit_code}): {result.stderr.strip()[-400:]}\n"
                        f"{log.strip()[-1200:]}")


def wait_for_port(run: HostRun, f: dict[str, Any]) -> None:
    port, timeout = int(f["port"]), int(f.get("timeout", 60))
    if not run.apply:
        return
    script = (f"i=0; while [ $i -lt {timeout * 4} ]; do "
              f"if (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null; then exit 0; fi; "
              "sleep 0.25; i=$((i+1)); done; exit 1")
    result = run.sh(f"bash -c {q(script)}", check=False, timeout=timeout + 30)
    if result.exit_code != 0:
        log = run.sh("tail -n 20 /var/log/mongodb/mongod.log 2>/dev/null", check=False).stdout
        raise StepError(f"nothing listens on port {port} after {timeout} s; the end of mongod's log:\n"
                        f"{log.strip()[-1500:] or '(empty)'}")
    if f.get("mongo_ping", True):
        from parsectl.provision.replset import Admin, ReplSetError

        with run.session.tunnel("127.0.0.1", port) as local:
            admin = Admin.connect(local, label=f"{run.host.name} mongod", timeout_ms=timeout * 1000)
            try:
                admin.command({"ping": 1})
            except ReplSetError as exc:
                raise StepError(f"mongod on port {port} does not answer ping: {exc}") from exc
            finally:
                admin.close()


STEPS: dict[str, Callable[[HostRun, dict[str, Any]], None]] = {
    "gather_facts": gather_facts, "os_tuning": os_tuning, "package_repository": package_repository,
    "packages": packages, "data_dir": data_dir, "directories": directories, "keyfile": keyfile,
    "mongod_conf": mongod_conf, "template": template, "service": service, "wait_for_port": wait_for_port,
}
