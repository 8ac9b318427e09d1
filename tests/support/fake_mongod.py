"""A stand-in ``mongod`` for the provisioning tests: the stand-in percona-server-mongodb packages install it.

It speaks the MongoDB wire protocol (OP_MSG, and OP_QUERY for the legacy handshake) and answers the commands
the provisioner sends with replies shaped as in MongoDB's documentation (recorded replies): hello/isMaster,
ping, buildInfo, replSetInitiate, replSetGetConfig, replSetReconfig, replSetGetStatus, replSetStepDown,
find/collStats on local.oplog.rs, listDatabases. SecantusDB does not implement replSetInitiate,
replSetGetConfig or replSetReconfig (it reports a fixed one-member set), hence this stand-in.

Replica-set behaviour is simulated: the node that is initiated becomes PRIMARY; a member added by reconfig
is STARTUP2 (initial sync) for FAKE_SYNC_SECONDS, then SECONDARY; raising a synced secondary's priority above
the primary's makes it primary (priority takeover). Members share the config by pushing it to each other
(an internal command), as heartbeats would. It validates what real servers validate (version + 1, set name,
unique member _ids and hosts, primary only) and records every command it receives in
/var/log/mongodb/fake-commands.jsonl so the tests can check the documents. A file ``fail-next-reconfig`` in
dbPath makes the next replSetReconfig fail with PrimarySteppedDown (189), as a primary stepping down would.

Access control, as a real mongod with ``security.keyFile`` (which implies it) or ``security.authorization:
enabled``:

- the keyFile must be readable and not group/world-accessible, else the fake exits at start-up, as mongod does;
- users live in the replicated state (``createUser`` on the primary, shared with the members like the config),
  with SCRAM-SHA-256 credentials only (salt, iterations 15000, StoredKey, ServerKey; never the password);
- ``saslStart``/``saslContinue`` run a real SCRAM-SHA-256 exchange (RFC 5802/7677): the client proof is checked
  against StoredKey and the ServerSignature returned, so a wrong password fails with AuthenticationFailed (18).
  SCRAM-SHA-1 and speculative authentication are not offered (``hello`` lists only SCRAM-SHA-256 in
  ``saslSupportedMechs``, for existing users), so drivers hold a plain SCRAM-SHA-256 conversation; any other
  mechanism, or an unknown user, fails with AuthenticationFailed (18);
- without authentication a connection may run ``hello``/``isMaster``, ``ping``, ``buildInfo``, ``saslStart``,
  ``saslContinue``, ``connectionStatus``, ``endSessions`` and ``logout``; while there are no users and the peer
  is on loopback (the localhost exception) also ``createUser``/``grantRolesToUser`` on ``admin``,
  ``replSetInitiate``, ``replSetReconfig`` and ``replSetGetStatus`` (MongoDB's default privileges under the
  exception: createUser, grantRole, replSetConfigure, replSetGetStatus). ``replSetGetConfig`` and everything
  else fails with Unauthorized (13), "command X requires authentication". The exception closes as soon as a
  user exists, on every connection;
- simplification: an authenticated user may run every command (roles are stored and shown by ``usersInfo``,
  not enforced); ``createUser`` of an existing user fails with 51003;
- the members' internal state push (below) carries a hash of the keyFile and is refused without the same one,
  standing in for keyFile internal authentication;
- the command log never holds passwords: ``pwd`` and SASL payloads are redacted, as mongod redacts its logs.

Reads /etc/mongod.conf (YAML): net.port, net.bindIp, storage.dbPath/engine, replication.replSetName,
systemLog.path, security.keyFile/authorization. Writes the engine's marker files into dbPath (WiredTiger /
db/CURRENT) like a real mongod.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import os
import secrets
import socket
import socketserver
import struct
import sys
import threading
import time

import bson
import yaml
from bson import json_util
from bson.codec_options import CodecOptions
from bson.timestamp import Timestamp

OPTS = CodecOptions(document_class=dict, tz_aware=True)
SYNC_SECONDS = float(os.environ.get("FAKE_SYNC_SECONDS", "2"))
STATE_NAMES = {1: "PRIMARY", 2: "SECONDARY", 5: "STARTUP2", 7: "ARBITER", 8: "DOWN"}

conf_path = sys.argv[sys.argv.index("--config") + 1] if "--config" in sys.argv else "/etc/mongod.conf"
with open(conf_path) as fh:
    CONF = yaml.safe_load(fh) or {}
PORT = int(CONF.get("net", {}).get("port", 27017))
DBPATH = CONF.get("storage", {}).get("dbPath", "/var/lib/mongodb")
ENGINE = CONF.get("storage", {}).get("engine", "wiredTiger")
SET_NAME = (CONF.get("replication") or {}).get("replSetName")
LOG = (CONF.get("systemLog") or {}).get("path", "/var/log/mongodb/mongod.log")
CMDLOG = os.path.join(os.path.dirname(LOG), "fake-commands.jsonl")
STATE_FILE = os.path.join(DBPATH, "parsectl-fake-state.json")
SECURITY = CONF.get("security") or {}
KEYFILE = SECURITY.get("keyFile")
AUTH = bool(KEYFILE) or SECURITY.get("authorization") == "enabled"
START = time.time()
LOCK = threading.RLock()
SCRAM_ITERATIONS = 15000


def log(line: str) -> None:
    with open(LOG, "a") as fh:
        fh.write(f"{dt.datetime.now(dt.UTC).isoformat()} I  CONTROL  {line}\n")


def load_state() -> dict:
    try:
        with open(STATE_FILE) as fh:
            return json_util.loads(fh.read())
    except FileNotFoundError:
        return {"config": None, "primary": None, "added": {}, "users": {}}


def save_state() -> None:
    tmp = STATE_FILE + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(json_util.dumps(STATE))
    os.replace(tmp, STATE_FILE)


STATE: dict = {}
SELF: str | None = None  # this node's member host, learnt from the config


def err(code: int, name: str, msg: str) -> dict:
    return {"ok": 0.0, "errmsg": msg, "code": code, "codeName": name}


def me() -> str | None:
    cfg = STATE.get("config")
    if not cfg:
        return None
    for m in cfg["members"]:
        if int(str(m["host"]).rsplit(":", 1)[1]) == PORT:
            return m["host"]
    return None


def reachable(host: str) -> bool:
    name, port = host.rsplit(":", 1)
    try:
        with socket.create_connection((name.strip("[]"), int(port)), timeout=0.3):
            return True
    except OSError:
        return False


def member_state(m: dict, now: float) -> int:
    if m["host"] == STATE.get("primary"):
        return 1
    if m.get("arbiterOnly"):
        return 7
    if now - STATE["added"].get(m["host"], 0) < SYNC_SECONDS:
        return 5
    if m["host"] != me() and not reachable(m["host"]):
        return 8
    return 2


def push_config() -> None:
    """Share config and primary with the other members (what heartbeats do)."""
    body = {"_parsectlFakeSync": 1, "state": json.loads(json_util.dumps(STATE)), "key": KEY_HASH}
    for m in (STATE.get("config") or {}).get("members", []):
        if m["host"] == me():
            continue
        try:
            name, port = m["host"].rsplit(":", 1)
            with socket.create_connection((name.strip("[]"), int(port)), timeout=1) as s:
                payload = struct.pack("<I", 0) + b"\x00" + bson.encode({**body, "$db": "admin"})
                s.sendall(struct.pack("<iiii", 16 + len(payload), 1, 0, 2013) + payload)
                s.recv(16 * 1024)
        except OSError:
            pass


def takeover() -> None:
    cfg = STATE["config"]
    now = time.time()
    prim = next((m for m in cfg["members"] if m["host"] == STATE["primary"]), None)
    best = max(cfg["members"], key=lambda m: float(m.get("priority", 1)))
    if prim is not None and best is not prim and float(best.get("priority", 1)) > float(prim.get("priority", 1)) \
            and member_state(best, now) == 2:
        STATE["primary"] = best["host"]
        log(f"priority takeover: {best['host']} is primary")


def validate_config(cfg: dict) -> dict | None:
    if cfg.get("_id") != SET_NAME:
        return err(93, "InvalidReplicaSetConfig", f"Attempting to initiate a replica set with name {cfg.get('_id')}, "
                   f"but command line reports {SET_NAME}; rejecting")
    members = cfg.get("members")
    if not isinstance(members, list) or not members:
        return err(93, "InvalidReplicaSetConfig", "members must be a non-empty array")
    ids, hosts = set(), set()
    for m in members:
        if not isinstance(m, dict) or "_id" not in m or "host" not in m or not isinstance(m["_id"], int):
            return err(93, "InvalidReplicaSetConfig", f"every member needs an integer _id and a host: {m}")
        if set(m) - {"_id", "host", "arbiterOnly", "buildIndexes", "hidden", "priority", "tags",
                     "secondaryDelaySecs", "votes", "newlyAdded"}:
            return err(93, "InvalidReplicaSetConfig", f"unknown member field in {m}")
        if m["_id"] in ids or m["host"] in hosts:
            return err(103, "NewReplicaSetConfigurationIncompatible", f"duplicate member _id or host: {m}")
        ids.add(m["_id"])
        hosts.add(m["host"])
        if m.get("votes", 1) not in (0, 1):
            return err(93, "InvalidReplicaSetConfig", "votes must be 0 or 1")
        if m.get("votes", 1) == 0 and float(m.get("priority", 1)) != 0:
            return err(93, "InvalidReplicaSetConfig", "priority must be 0 when non-voting (votes:0)")
        if m.get("hidden") and float(m.get("priority", 1)) != 0:
            return err(93, "InvalidReplicaSetConfig", "priority must be 0 when hidden=true")
    return None


# --- access control ---------------------------------------------------------------------------------------

KEY_HASH = ""
OPEN_COMMANDS = {"hello", "ismaster", "ping", "buildinfo", "saslstart", "saslcontinue", "connectionstatus",
                 "endsessions", "logout", "_parsectlfakesync"}
# MongoDB's default privileges under the localhost exception (AuthorizationSession::getDefaultPrivileges):
# createUser/grantRole on admin, replSetConfigure (initiate, reconfig) and replSetGetStatus on the cluster.
LOCALHOST_EXCEPTION = {"createuser", "grantrolestouser", "replsetinitiate", "replsetreconfig", "replsetgetstatus"}


def read_keyfile() -> str:
    try:
        mode = os.stat(KEYFILE).st_mode
        with open(KEYFILE, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        sys.exit(f"error opening file: {KEYFILE}: {exc.strerror}")
    if mode & 0o077:
        sys.exit(f"permissions on {KEYFILE} are too open")
    key = b"".join(data.split())
    if not 6 <= len(key) <= 1024:
        sys.exit(f"{KEYFILE}: the key length must be between 6 and 1024 characters")
    return hashlib.sha256(key).hexdigest()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def scram_credentials(password: str) -> dict:
    salt = secrets.token_bytes(28)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, SCRAM_ITERATIONS)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    return {"iterationCount": SCRAM_ITERATIONS, "salt": b64(salt),
            "storedKey": b64(hashlib.sha256(client_key).digest()),
            "serverKey": b64(hmac.digest(salted, b"Server Key", "sha256"))}


def parse_scram(payload: bytes) -> dict[str, str]:
    out = {}
    for part in payload.decode().split(","):
        if len(part) > 1 and part[1] == "=":
            out[part[0]] = part[2:]
    return out


def auth_failed() -> dict:
    return err(18, "AuthenticationFailed", "Authentication failed.")


def sasl_start(db: str, doc: dict, conn: dict) -> dict:
    if doc.get("mechanism") != "SCRAM-SHA-256":  # users here have SCRAM-SHA-256 credentials only
        log(f"Authentication failed: mechanism {doc.get('mechanism')} (users have SCRAM-SHA-256 credentials only)")
        return auth_failed()
    payload = bytes(doc.get("payload") or b"")
    if not payload.startswith(b"n,,"):
        return err(17, "ProtocolError", "SCRAM: bad client-first message")
    bare = payload[3:]
    fields = parse_scram(bare)
    user = fields.get("n", "").replace("=2C", ",").replace("=3D", "=")
    record = STATE.get("users", {}).get(f"{db}.{user}")
    if record is None or "r" not in fields:
        log(f"Authentication failed: UserNotFound {user}@{db}")
        return auth_failed()
    creds = record["credentials"]["SCRAM-SHA-256"]
    nonce = fields["r"] + b64(secrets.token_bytes(24))
    server_first = f"r={nonce},s={creds['salt']},i={creds['iterationCount']}".encode()
    conn["sasl"] = {"user": user, "db": db, "bare": bare, "server_first": server_first, "nonce": nonce,
                    "creds": creds, "step": 1}
    return {"conversationId": 1, "done": False, "payload": server_first, "ok": 1.0}


def sasl_continue(doc: dict, conn: dict) -> dict:
    state = conn.get("sasl")
    if not state:
        return err(17, "ProtocolError", "No SASL session state found")
    if state["step"] == 2:  # the empty closing round (drivers without skipEmptyExchange)
        conn["sasl"] = None
        return {"conversationId": 1, "done": True, "payload": b"", "ok": 1.0}
    final = bytes(doc.get("payload") or b"")
    fields = parse_scram(final)
    without_proof = final.rsplit(b",p=", 1)[0]
    if fields.get("r") != state["nonce"] or fields.get("c") != "biws" or "p" not in fields:
        conn["sasl"] = None
        return auth_failed()
    message = b",".join((state["bare"], state["server_first"], without_proof))
    creds = state["creds"]
    stored_key = base64.b64decode(creds["storedKey"])
    signature = hmac.digest(stored_key, message, "sha256")
    client_key = bytes(a ^ b for a, b in zip(base64.b64decode(fields["p"]), signature, strict=False))
    if not hmac.compare_digest(hashlib.sha256(client_key).digest(), stored_key):
        conn["sasl"] = None
        log(f"Authentication failed: {state['user']}@{state['db']}: AuthenticationFailed (wrong password)")
        return auth_failed()
    conn["user"] = {"user": state["user"], "db": state["db"]}
    server_sig = hmac.digest(base64.b64decode(creds["serverKey"]), message, "sha256")
    log(f"Successfully authenticated as principal {state['user']} on {state['db']}")
    skip = bool((doc.get("options") or {}).get("skipEmptyExchange"))
    state["step"] = 2
    if skip:
        conn["sasl"] = None
    return {"conversationId": 1, "done": skip, "payload": b"v=" + b64(server_sig).encode(), "ok": 1.0}


def authorized(lname: str, db: str, conn: dict) -> bool:
    if not AUTH or lname in OPEN_COMMANDS or conn.get("user"):
        return True
    exception = not STATE.get("users") and conn.get("local", False)
    return exception and lname in LOCALHOST_EXCEPTION and (db == "admin" or not lname.endswith("user"))


def create_user(db: str, doc: dict) -> dict:
    name = doc["createUser"]
    if not isinstance(name, str) or not name:
        return err(2, "BadValue", "createUser: the user name must be a non-empty string")
    if not isinstance(doc.get("pwd"), str) or not doc["pwd"]:
        return err(2, "BadValue", "createUser: pwd must be a non-empty string")
    if SET_NAME is not None and STATE.get("primary") != me():
        return err(10107, "NotWritablePrimary", "not primary")
    key = f"{db}.{name}"
    users = STATE.setdefault("users", {})
    if key in users:
        return err(51003, "Location51003", f"User \"{name}@{db}\" already exists")
    roles = [r if isinstance(r, dict) else {"role": r, "db": db} for r in doc.get("roles", [])]
    users[key] = {"_id": key, "user": name, "db": db, "roles": roles,
                  "credentials": {"SCRAM-SHA-256": scram_credentials(doc["pwd"])}}
    save_state()
    log(f"Created user {name}@{db} with roles {roles}")
    if STATE.get("config"):
        threading.Thread(target=push_config, daemon=True).start()
    return {"ok": 1.0}


def redact(doc: dict) -> dict:
    out = {k: v for k, v in doc.items() if k not in ("$db", "lsid", "speculativeAuthenticate")}
    for key in ("pwd", "payload"):
        if key in out:
            out[key] = "<redacted>"
    return out


def hello() -> dict:
    cfg = STATE.get("config")
    now = dt.datetime.now(dt.UTC)
    base = {"maxBsonObjectSize": 16 * 1024 * 1024, "maxMessageSizeBytes": 48000000, "maxWriteBatchSize": 100000,
            "localTime": now, "minWireVersion": 0, "maxWireVersion": 21, "readOnly": False, "ok": 1.0}
    if SET_NAME is None:
        return {"ismaster": True, "isWritablePrimary": True, **base}
    if not cfg:
        return {"ismaster": False, "isWritablePrimary": False, "secondary": False, "isreplicaset": True,
                "info": "Does not have a valid replica set config", **base}
    mine = me()
    state = member_state(next(m for m in cfg["members"] if m["host"] == mine), time.time()) if mine else 0
    return {"ismaster": state == 1, "isWritablePrimary": state == 1, "secondary": state == 2, "setName": cfg["_id"],
            "setVersion": cfg["version"], "hosts": [m["host"] for m in cfg["members"]
                                                    if not m.get("arbiterOnly") and not m.get("hidden")],
            "primary": STATE.get("primary"), "me": mine, **base}


def command(db: str, doc: dict, conn: dict | None = None) -> dict:
    conn = conn if conn is not None else {"local": True}
    name = next(iter(doc))
    if name != "_parsectlFakeSync":
        with open(CMDLOG, "a") as fh:
            fh.write(json_util.dumps({"db": db, "cmd": redact(doc)}) + "\n")
    lname = name.lower()
    with LOCK:
        if not authorized(lname, db, conn):
            return err(13, "Unauthorized", f"command {name} requires authentication")
        if lname in ("hello", "ismaster"):
            reply = hello()
            mechs_for = doc.get("saslSupportedMechs")
            if AUTH and isinstance(mechs_for, str) and mechs_for in STATE.get("users", {}):
                reply["saslSupportedMechs"] = ["SCRAM-SHA-256"]
            return reply
        if lname == "saslstart":
            return sasl_start(db, doc, conn)
        if lname == "saslcontinue":
            return sasl_continue(doc, conn)
        if lname == "connectionstatus":
            user = conn.get("user")
            roles = STATE.get("users", {}).get(f"{user['db']}.{user['user']}", {}).get("roles", []) if user else []
            return {"authInfo": {"authenticatedUsers": [user] if user else [],
                                 "authenticatedUserRoles": roles}, "ok": 1.0}
        if lname == "logout":
            conn["user"] = None
            return {"ok": 1.0}
        if lname == "createuser":
            return create_user(db, doc)
        if lname == "usersinfo":
            users = [{k: v for k, v in u.items() if k != "credentials"} | {"mechanisms": ["SCRAM-SHA-256"]}
                     for u in STATE.get("users", {}).values() if u["db"] == db]
            return {"users": users, "ok": 1.0}
        if lname == "ping":
            return {"ok": 1.0}
        if lname == "buildinfo":
            return {"version": "8.0.4-2" if ENGINE != "rocksdb" else "3.4.24-3.0", "gitVersion": "fake",
                    "storageEngines": [ENGINE], "ok": 1.0}
        if lname in ("endsessions", "getfreemonitoringstatus"):
            return {"ok": 1.0}
        if name == "_parsectlFakeSync":
            if AUTH and doc.get("key") != KEY_HASH:
                log("internal authentication failed: the member pushing its state has another keyFile")
                return err(18, "AuthenticationFailed", "Authentication failed.")
            STATE.update(doc["state"])
            save_state()
            return {"ok": 1.0}
        if name == "replSetInitiate":
            if SET_NAME is None:
                return err(76, "NoReplicationEnabled", "This node was not started with replication enabled.")
            if STATE.get("config"):
                return err(23, "AlreadyInitialized", "already initialized")
            cfg = dict(doc[name] or {})
            bad = validate_config(cfg)
            if bad:
                return bad
            if not any(int(str(m["host"]).rsplit(":", 1)[1]) == PORT for m in cfg["members"]):
                return err(93, "InvalidReplicaSetConfig", "No host described in new configuration with "
                           f"{{version: 1, term: 0}} for replica set {SET_NAME} maps to this node")
            cfg.setdefault("version", 1)
            cfg["term"] = 1
            cfg.setdefault("protocolVersion", 1)
            cfg.setdefault("settings", {"chainingAllowed": True, "heartbeatIntervalMillis": 2000,
                                        "electionTimeoutMillis": 10000})
            STATE["config"] = cfg
            STATE["primary"] = me()
            STATE["added"] = {m["host"]: 0 for m in cfg["members"]}
            save_state()
            log(f"replSetInitiate {cfg['_id']}")
            return {"ok": 1.0}
        if name == "replSetGetConfig":
            if SET_NAME is None:
                return err(76, "NoReplicationEnabled", "not running with --replSet")
            if not STATE.get("config"):
                return err(94, "NotYetInitialized", "no replset config has been received")
            return {"config": STATE["config"], "ok": 1.0}
        if name == "replSetGetStatus":
            if SET_NAME is None:
                return err(76, "NoReplicationEnabled", "not running with --replSet")
            cfg = STATE.get("config")
            if not cfg:
                return err(94, "NotYetInitialized", "no replset config has been received")
            now_t = time.time()
            now = dt.datetime.now(dt.UTC)
            members = []
            for m in cfg["members"]:
                st = member_state(m, now_t)
                entry = {"_id": m["_id"], "name": m["host"], "health": 0.0 if st == 8 else 1.0, "state": st,
                         "stateStr": STATE_NAMES[st], "uptime": int(now_t - START)}
                if st != 7:
                    entry["optime"] = {"ts": Timestamp(int(now_t), 1), "t": 1}
                    entry["optimeDate"] = now if st in (1, 2) else dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
                entry["syncSourceHost"] = STATE["primary"] if st in (2, 5) else ""
                if m["host"] == me():
                    entry["self"] = True
                members.append(entry)
            return {"set": cfg["_id"], "date": now, "myState": 1 if STATE.get("primary") == me() else 2,
                    "term": 1, "heartbeatIntervalMillis": 2000, "members": members, "ok": 1.0}
        if name == "replSetReconfig":
            if STATE.get("primary") != me() or not STATE.get("config"):
                return err(10107, "NotWritablePrimary", "replSetReconfig should only be run on a writable PRIMARY")
            flag = os.path.join(DBPATH, "fail-next-reconfig")
            if os.path.exists(flag):
                os.unlink(flag)
                return err(189, "PrimarySteppedDown", "Primary stepped down while waiting for replication")
            cfg = dict(doc[name] or {})
            if doc.get("force") not in (None, False):
                return err(2, "BadValue", "parsectl never forces a reconfig")
            if cfg.get("version") != STATE["config"]["version"] + 1:
                return err(103, "NewReplicaSetConfigurationIncompatible",
                           f"New replica set configuration version must be greater than old, but "
                           f"{cfg.get('version')} is not greater than {STATE['config']['version']}")
            bad = validate_config(cfg)
            if bad:
                return bad
            old_voters = {m["host"] for m in STATE["config"]["members"] if m.get("votes", 1)}
            added_voters = [m for m in cfg["members"] if m.get("votes", 1) and m["host"] not in old_voters]
            if len(added_voters) > 1:
                return err(103, "NewReplicaSetConfigurationIncompatible",
                           "Only one voting member may be added or removed per reconfig")
            for m in cfg["members"]:
                if m["host"] not in STATE["added"]:
                    STATE["added"][m["host"]] = time.time()
            cfg["term"] = 1
            STATE["config"] = cfg
            takeover()
            save_state()
            log(f"replSetReconfig version {cfg['version']}")
            threading.Thread(target=push_config, daemon=True).start()
            return {"ok": 1.0}
        if name == "replSetStepDown":
            if STATE.get("primary") != me():
                return err(10107, "NotWritablePrimary", "not primary so can't step down")
            others = [m for m in STATE["config"]["members"] if m["host"] != me() and not m.get("arbiterOnly")
                      and float(m.get("priority", 1)) > 0 and member_state(m, time.time()) == 2]
            if not others:
                return err(262, "ExceededTimeLimit", "No electable secondaries caught up")
            STATE["primary"] = max(others, key=lambda m: float(m.get("priority", 1)))["host"]
            save_state()
            threading.Thread(target=push_config, daemon=True).start()
            return {"ok": 1.0}
        if name == "find" and db == "local" and doc[name] == "oplog.rs":
            if not STATE.get("config"):
                return {"cursor": {"id": 0, "ns": "local.oplog.rs", "firstBatch": []}, "ok": 1.0}
            natural = (doc.get("sort") or {}).get("$natural", 1)
            t = int(time.time()) - 48 * 3600 if natural == 1 else int(time.time())
            return {"cursor": {"id": 0, "ns": "local.oplog.rs", "firstBatch": [{"ts": Timestamp(t, 1)}]}, "ok": 1.0}
        if name == "collStats" and db == "local":
            size_mb = int((CONF.get("replication") or {}).get("oplogSizeMB", 990))
            return {"ns": "local.oplog.rs", "size": 512 * 1024 * 1024, "maxSize": size_mb * 1024 * 1024,
                    "capped": True, "ok": 1.0}
        if name == "listDatabases":
            return {"databases": [{"name": "admin", "sizeOnDisk": 40960, "empty": False},
                                  {"name": "local", "sizeOnDisk": 512 * 1024 * 1024, "empty": False}],
                    "totalSize": 512 * 1024 * 1024 + 40960, "totalSizeMb": 512, "ok": 1.0}
        return err(59, "CommandNotFound", f"no such command: '{name}'")


class Handler(socketserver.BaseRequestHandler):
    def recv_exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.request.recv(n - len(data))
            if not chunk:
                raise ConnectionError
            data += chunk
        return data

    def handle(self) -> None:
        peer = self.client_address[0]
        conn = {"user": None, "sasl": None, "local": peer.startswith("127.") or peer in ("::1", "::ffff:127.0.0.1")}
        try:
            while True:
                length, request_id, _to, op = struct.unpack("<iiii", self.recv_exact(16))
                body = self.recv_exact(length - 16)
                if op == 2013:  # OP_MSG
                    pos, doc = 5, None
                    while pos < len(body):
                        kind = body[pos - 1] if pos == 5 else None  # noqa: F841
                        size = struct.unpack("<i", body[pos:pos + 4])[0]
                        if doc is None:
                            doc = bson.decode(body[pos:pos + size], OPTS)
                            pos += size + 1
                        else:  # a kind-1 document sequence: not used by these commands
                            break
                    reply = command(doc.get("$db", "admin"), doc, conn)
                    payload = struct.pack("<I", 0) + b"\x00" + bson.encode(reply)
                    self.request.sendall(struct.pack("<iiii", 16 + len(payload), request_id + 1000, request_id,
                                                     2013) + payload)
                elif op == 2004:  # OP_QUERY (legacy handshake)
                    pos = 4
                    end = body.index(b"\x00", pos)
                    collection = body[pos:end].decode()
                    pos = end + 1 + 8
                    size = struct.unpack("<i", body[pos:pos + 4])[0]
                    doc = bson.decode(body[pos:pos + size], OPTS)
                    if "$query" in doc:
                        doc = doc["$query"]
                    reply = command(collection.split(".")[0], doc, conn)
                    payload = struct.pack("<iqii", 0, 0, 0, 1) + bson.encode(reply)
                    self.request.sendall(struct.pack("<iiii", 16 + len(payload), request_id + 1000, request_id, 1)
                                         + payload)
                else:
                    return
        except (ConnectionError, OSError, struct.error):
            return


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def main() -> None:
    global STATE, KEY_HASH
    if KEYFILE:
        KEY_HASH = read_keyfile()
    os.makedirs(DBPATH, exist_ok=True)
    if ENGINE == "rocksdb":
        os.makedirs(os.path.join(DBPATH, "db"), exist_ok=True)
        open(os.path.join(DBPATH, "db", "CURRENT"), "a").close()
    else:
        open(os.path.join(DBPATH, "WiredTiger"), "a").close()
    with open(os.path.join(DBPATH, "storage.bson"), "wb") as fh:
        fh.write(bson.encode({"storage": {"engine": ENGINE}}))
    STATE = load_state()
    STATE.setdefault("users", {})
    bind = str((CONF.get("net") or {}).get("bindIp", "127.0.0.1")).split(",")[0].strip()
    server = Server((bind, PORT), Handler)
    log(f"waiting for connections on port {PORT} (engine {ENGINE}, replSet {SET_NAME})")
    server.serve_forever()


if __name__ == "__main__":
    main()
