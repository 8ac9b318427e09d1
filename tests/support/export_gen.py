"""Generate a realistic hosted-Parse.com data export for migration tests and benchmarks.

``generate_export(dest, objects=N)`` writes what "Export data" on parse.com delivered: one
``<Class>.json`` per class holding ``{"results": [...]}`` in REST encoding, and one
``_Join:<field>:<Owner>.json`` per relation field. Every write is streamed (objects are produced and
written one at a time, ids are derived from the seed rather than kept), so a million objects need no
more memory than a thousand.

What is in it (counts scale with ``objects``; the exact numbers are in :class:`ExportFacts`):

* ``_User``: five users with real bcrypt ``$2a$10$`` hashes whose passwords are in ``facts.passwords``
  (one of them with Facebook ``authData``), an anonymous user (``authData.anonymous``, no password),
  and bulk users (cost-4 hashes of ``facts.bulk_password``); emails, legacy ``sessionToken``s.
* ``_Role``: Administrators, Moderators, Members with inheritance (``_Join:roles:_Role.json``: admins
  are moderators, moderators are members) and members (``_Join:users:_Role.json``).
* ``_Installation``: mixed-case installationIds, upper-case iOS device tokens, Android GCM tokens.
* ``Post``, ``Comment``, ``Everything``: every type (strings, int and float numbers, booleans,
  nested objects with dates inside, arrays, pointers and arrays of pointers, GeoPoint, Polygon, Bytes,
  Files at the top level, nested and in arrays, dates, nulls), ACLs (public, per-user, role-based,
  ``{}``, none), relations ``_Join:likes:Post.json`` (target not stated anywhere but in the ids) and
  ``_Join:members:Everything.json`` (objects also carry ``{"__type": "Relation", "className": "_User"}``).
* ``problems=True`` adds a username differing only in case, an invalid field name, a type conflict
  and a dangling pointer (their objectIds in ``facts.ids``).
"""

from __future__ import annotations

import base64
import hashlib
import random
import shutil
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import bcrypt
import orjson

_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_EPOCH = datetime(2014, 3, 1, tzinfo=UTC)
_HASHES: dict[tuple[str, int, int], str] = {}  # (password, cost, variant) -> hash, reused across exports

REAL_USERS = ("alice", "bob", "carol", "dave", "erin")
ROLES = ("Administrators", "Moderators", "Members")


@dataclass
class ExportFacts:
    """What a test needs to know about a generated export."""

    path: Path  # the folder, or the .zip
    counts: dict[str, int] = field(default_factory=dict)  # objects per class file
    relations: dict[str, int] = field(default_factory=dict)  # rows per join file name
    passwords: dict[str, str] = field(default_factory=dict)  # username -> password (cost-10 hashes)
    bulk_password: str = "bulk-password"  # every bulk user's password (cost-4 hashes)
    ids: dict[str, str] = field(default_factory=dict)  # interesting objects by role
    file_names: list[str] = field(default_factory=list)  # every File name referenced
    file_urls: dict[str, str] = field(default_factory=dict)  # name -> url as in the export
    file_key: str = ""
    user_ids: dict[str, str] = field(default_factory=dict)  # username -> objectId (named users)
    role_ids: dict[str, str] = field(default_factory=dict)  # role name -> objectId
    problems: list[str] = field(default_factory=list)  # kinds planted with problems=True

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def generate_export(dest: Path, *, objects: int = 200, zip: bool = False, seed: int = 1,
                    problems: bool = False, files_dir: Path | None = None) -> ExportFacts:
    """Write an export of about ``objects`` custom-class objects (plus users, roles, installations).

    ``dest`` is the folder to create, or with ``zip=True`` the ``.zip`` file to write. With
    ``files_dir``, the bytes of every referenced file are written there under their names.
    """
    dest = Path(dest)
    folder = dest.with_name(dest.name + ".parts") if zip else dest
    folder.mkdir(parents=True, exist_ok=True)
    gen = _Generator(folder, objects, seed, problems)
    gen.run()
    if files_dir is not None:
        files_dir = Path(files_dir)
        files_dir.mkdir(parents=True, exist_ok=True)
        for name in gen.facts.file_names:
            (files_dir / name).write_bytes(file_content(name))
    if zip:
        with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
            for path in sorted(folder.iterdir()):
                zf.write(path, path.name)
        shutil.rmtree(folder)
    gen.facts.path = dest
    return gen.facts


def file_content(name: str) -> bytes:
    """The bytes of a generated file (deterministic from its name)."""
    rng = random.Random(name)
    return f"file {name}\n".encode() + rng.randbytes(rng.randrange(32, 2048))


def object_id(seed: int, class_name: str, i: int) -> str:
    """The objectId of the i-th object of a class: 10 alphanumerics, derived, never stored."""
    digest = int.from_bytes(hashlib.blake2b(f"{seed}:{class_name}:{i}".encode(), digest_size=8).digest())
    out = []
    for _ in range(10):
        digest, r = divmod(digest, 62)
        out.append(_ALNUM[r])
    return "".join(out)


def _hash(password: str, cost: int, variant: int = 0) -> str:
    key = (password, cost, variant)
    if key not in _HASHES:
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost)).decode()
        _HASHES[key] = "$2a$" + hashed[4:]  # hosted Parse (bcryptjs) wrote $2a$
    return _HASHES[key]


class _ArrayFile:
    """``{"results": [ ... ]}`` written one object at a time."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.count = 0
        raw.write(b'{"results": [\n')

    def write(self, obj: dict[str, Any]) -> None:
        if self.count:
            self.raw.write(b",\n")
        self.raw.write(orjson.dumps(obj))
        self.count += 1

    def close(self) -> None:
        self.raw.write(b"\n]}\n")


class _Generator:
    def __init__(self, folder: Path, objects: int, seed: int, problems: bool) -> None:
        self.folder = folder
        self.seed = seed
        self.rng = random.Random(seed)
        self.problems = problems
        self.n_everything = max(5, objects // 10)
        self.n_posts = max(5, objects // 2)
        self.n_comments = max(5, objects - self.n_everything - self.n_posts)
        self.n_bulk_users = max(3, objects // 20)
        self.n_installations = max(3, objects // 100)
        self.facts = ExportFacts(folder)
        self.facts.file_key = str(uuid.UUID(int=self.rng.getrandbits(128)))
        self.users = [*REAL_USERS, "anonymous"] + [f"user{i}" for i in range(self.n_bulk_users)]
        self.n_users = len(self.users)
        self.files = self._file_pool(max(4, min(40, objects // 20)))

    # --- helpers --------------------------------------------------------------------------------------
    def oid(self, class_name: str, i: int) -> str:
        return object_id(self.seed, class_name, i)

    def user_id(self, i: int) -> str:
        return self.oid("_User", i)

    def pointer(self, class_name: str, i: int) -> dict[str, str]:
        return {"__type": "Pointer", "className": class_name, "objectId": self.oid(class_name, i)}

    def stamp(self, i: int) -> tuple[str, str]:
        created = _EPOCH + timedelta(seconds=i * 37 + self.rng.randrange(30), milliseconds=self.rng.randrange(1000))
        updated = created + timedelta(seconds=self.rng.randrange(0, 10**6), milliseconds=self.rng.randrange(1000))
        return _iso(created), _iso(updated)

    def date(self) -> dict[str, str]:
        when = _EPOCH + timedelta(days=self.rng.randrange(900), milliseconds=self.rng.randrange(86_400_000))
        return {"__type": "Date", "iso": _iso(when)}

    def acl(self, i: int, owner: int) -> dict[str, Any] | None:
        kind = i % 5
        if kind == 0:
            return {"*": {"read": True, "write": True}}
        if kind == 1:
            return {self.user_id(owner): {"read": True, "write": True}}
        if kind == 2:
            return {"*": {"read": True}, "role:Administrators": {"read": True, "write": True},
                    self.user_id(owner): {"read": True, "write": True}}
        if kind == 3:
            return {}
        return None

    def _file_pool(self, n: int) -> list[dict[str, str]]:
        pool = []
        for k in range(n):
            base = ("photo{}.jpg", "notes {}.txt", "avatar{}.png", "report-{}.pdf")[k % 4].format(k)
            if k == n - 1:  # an older-style name served from files.parse.com
                name = f"{uuid.UUID(int=self.rng.getrandbits(128))}-{base.replace(' ', '_')}"
                url = f"http://files.parse.com/{self.facts.file_key}/{name}"
            else:
                name = f"tfss-{uuid.UUID(int=self.rng.getrandbits(128))}-{base.replace(' ', '_')}"
                url = f"http://files.parsetfss.com/{self.facts.file_key}/{name}"
            pool.append({"__type": "File", "name": name, "url": url})
            self.facts.file_names.append(name)
            self.facts.file_urls[name] = url
        return pool

    def file(self, k: int | None = None) -> dict[str, str]:
        return dict(self.files[self.rng.randrange(len(self.files)) if k is None else k % len(self.files)])

    @contextmanager
    def writer(self, name: str) -> Iterator[_ArrayFile]:
        with open(self.folder / name, "wb") as raw:
            out = _ArrayFile(raw)
            yield out
            out.close()
        if name.startswith("_Join"):
            self.facts.relations[name] = out.count
        else:
            self.facts.counts[name[: -len(".json")]] = out.count

    # --- classes ----------------------------------------------------------------------------------------
    def run(self) -> None:
        self.write_users()
        self.write_roles()
        self.write_installations()
        self.write_posts()
        self.write_comments()
        self.write_everything()
        if self.problems:
            self.facts.problems = ["duplicate-username", "invalid-field-name", "type-conflict", "dangling-pointer"]

    def write_users(self) -> None:
        with self.writer("_User.json") as out:
            for i, username in enumerate(self.users):
                oid = self.user_id(i)
                created, updated = self.stamp(i)
                user: dict[str, Any] = {
                    "objectId": oid, "createdAt": created, "updatedAt": updated, "username": username,
                    "ACL": {"*": {"read": True}, oid: {"read": True, "write": True}},
                }
                if username in REAL_USERS:
                    password = f"{username}-{self.seed}-S3cret!"
                    self.facts.passwords[username] = password
                    self.facts.user_ids[username] = oid
                    user.update(bcryptPassword=_hash(password, 10), email=f"{username}@example.com",
                                emailVerified=i % 2 == 0, sessionToken=_token(self.rng, 25),
                                displayName=username.title(), age=20 + i, avatar=self.file(i))
                    if i == 1:
                        user["authData"] = {"facebook": {"id": str(10**15 + self.seed), "access_token":
                                            _token(self.rng, 40), "expiration_date": "2016-06-01T00:00:00.000Z"}}
                        self.facts.ids["facebook_user"] = oid
                elif username == "anonymous":
                    user["username"] = _token(self.rng, 25).lower()
                    user["authData"] = {"anonymous": {"id": str(uuid.UUID(int=self.rng.getrandbits(128)))}}
                    self.facts.ids["anonymous_user"] = oid
                    self.facts.user_ids[user["username"]] = oid
                else:
                    user.update(bcryptPassword=_hash(self.facts.bulk_password, 4, i % 8),
                                email=f"{username}@example.org", emailVerified=bool(i % 3),
                                age=18 + i % 60, score=None)
                    if i % 4 == 0:
                        user["sessionToken"] = _token(self.rng, 25)
                out.write(user)
            if self.problems:
                oid = self.oid("_User", 10**9)
                created, updated = self.stamp(self.n_users)
                out.write({"objectId": oid, "createdAt": created, "updatedAt": updated, "username": "Alice",
                           "email": "other-alice@example.com", "bcryptPassword": _hash("x", 4)})
                self.facts.ids["duplicate_username"] = oid

    def write_roles(self) -> None:
        ids = {name: self.oid("_Role", k) for k, name in enumerate(ROLES)}
        self.facts.role_ids = dict(ids)
        with self.writer("_Role.json") as out:
            for k, name in enumerate(ROLES):
                created, updated = self.stamp(k)
                out.write({"objectId": ids[name], "createdAt": created, "updatedAt": updated, "name": name,
                           "ACL": {"*": {"read": True}, "role:Administrators": {"read": True, "write": True}}})
        with self.writer("_Join:roles:_Role.json") as out:
            # users of the related role get the owning role's permissions
            out.write({"owningId": ids["Moderators"], "relatedId": ids["Administrators"]})
            out.write({"owningId": ids["Members"], "relatedId": ids["Moderators"]})
        with self.writer("_Join:users:_Role.json") as out:
            for i in (0, 1):
                out.write({"owningId": ids["Administrators"], "relatedId": self.user_id(i)})
            out.write({"owningId": ids["Moderators"], "relatedId": self.user_id(2)})
            for i in range(len(REAL_USERS) + 1, self.n_users, 3):
                out.write({"owningId": ids["Members"], "relatedId": self.user_id(i)})

    def write_installations(self) -> None:
        with self.writer("_Installation.json") as out:
            for i in range(self.n_installations):
                created, updated = self.stamp(i)
                inst_id = str(uuid.UUID(int=self.rng.getrandbits(128)))
                inst_id = "".join(c.upper() if self.rng.random() < 0.5 else c for c in inst_id)
                obj: dict[str, Any] = {
                    "objectId": self.oid("_Installation", i), "createdAt": created, "updatedAt": updated,
                    "installationId": inst_id, "appIdentifier": "com.example.app", "appName": "Example",
                    "appVersion": f"1.{i % 7}", "parseVersion": "1.12.0", "timeZone": "Europe/Paris",
                    "localeIdentifier": "fr-FR", "channels": ["", "news"] if i % 2 else ["sports"],
                }
                if i % 2 == 0:
                    obj.update(deviceType="ios", deviceToken=self.rng.randbytes(32).hex().upper(), badge=i % 4)
                    self.facts.ids.setdefault("ios_installation", obj["objectId"])
                else:
                    obj.update(deviceType="android", pushType="gcm",
                               deviceToken="APA91b" + _token(self.rng, 60), GCMSenderId="1076345567071")
                if i % 3 == 0:
                    obj["user"] = self.pointer("_User", i % self.n_users)
                out.write(obj)

    def write_posts(self) -> None:
        with self.writer("Post.json") as out, self.writer("_Join:likes:Post.json") as likes:
            for i in range(self.n_posts):
                oid = self.oid("Post", i)
                created, updated = self.stamp(i)
                author = self.rng.randrange(self.n_users)
                post: dict[str, Any] = {
                    "objectId": oid, "createdAt": created, "updatedAt": updated,
                    "title": f"Post {i}", "body": "Lorem ipsum " * self.rng.randrange(1, 6),
                    "author": self.pointer("_User", author), "published": i % 3 != 0,
                    "views": self.rng.randrange(10_000), "rating": round(self.rng.random() * 5, 3),
                    "tags": self.rng.sample(["a", "b", "c", "d", "e"], self.rng.randrange(0, 4)),
                }
                acl = self.acl(i, author)
                if acl is not None:
                    post["ACL"] = acl
                if i % 7 == 0:
                    post["image"] = self.file()
                if i % 5 == 0:
                    post["location"] = {"__type": "GeoPoint", "latitude": self.rng.uniform(-90, 90),
                                        "longitude": self.rng.uniform(-180, 180)}
                if self.problems and i == 1:
                    post["views"] = "many"
                    self.facts.ids["type_conflict"] = oid
                out.write(post)
                for u in sorted(self.rng.sample(range(self.n_users), self.rng.randrange(0, 4))):
                    likes.write({"owningId": oid, "relatedId": self.user_id(u)})
                if i == 0:
                    self.facts.ids["first_post"] = oid

    def write_comments(self) -> None:
        with self.writer("Comment.json") as out:
            for i in range(self.n_comments):
                oid = self.oid("Comment", i)
                created, updated = self.stamp(i)
                author = self.rng.randrange(self.n_users)
                comment: dict[str, Any] = {
                    "objectId": oid, "createdAt": created, "updatedAt": updated,
                    "text": f"Comment {i} \u2713 \U0001f600", "post": self.pointer("Post", self.rng.randrange(self.n_posts)),
                    "author": self.pointer("_User", author),
                    "mentions": [self.pointer("_User", self.rng.randrange(self.n_users))
                                 for _ in range(self.rng.randrange(0, 3))],
                }
                acl = self.acl(i + 1, author)
                if acl is not None:
                    comment["ACL"] = acl
                if self.problems and i == 2:
                    comment["post"] = {"__type": "Pointer", "className": "Post", "objectId": "Dangling00"}
                    self.facts.ids["dangling_pointer"] = oid
                out.write(comment)

    def write_everything(self) -> None:
        with self.writer("Everything.json") as out, self.writer("_Join:members:Everything.json") as members:
            for i in range(self.n_everything):
                oid = self.oid("Everything", i)
                created, updated = self.stamp(i)
                owner = self.rng.randrange(self.n_users)
                lat, lng = self.rng.uniform(-60, 60), self.rng.uniform(-170, 170)
                obj: dict[str, Any] = {
                    "objectId": oid, "createdAt": created, "updatedAt": updated,
                    "string": f"text {i} ü \u00e9 \"quoted\"", "int": self.rng.randrange(-10**12, 10**12),
                    "float": self.rng.uniform(-1e6, 1e6), "bool": i % 2 == 0,
                    "object": {"when": self.date(), "nested": {"depth": 2, "list": [1, "two", {"three": 3.0}]},
                               "cover": self.file(i), "owner": self.pointer("_User", owner)},
                    "array": [1, "mixed", True, None, {"k": "v"}, self.date()],
                    "owner": self.pointer("_User", owner),
                    "posts": [self.pointer("Post", self.rng.randrange(self.n_posts)) for _ in range(3)],
                    "location": {"__type": "GeoPoint", "latitude": lat, "longitude": lng},
                    "area": {"__type": "Polygon", "coordinates": [[lat, lng], [lat + 1, lng], [lat + 1, lng + 1],
                                                                  [lat, lng + 1]]},
                    "bytes": {"__type": "Bytes", "base64": base64.b64encode(self.rng.randbytes(16)).decode()},
                    "file": self.file(i + 1), "gallery": [self.file(i + 2), self.file(i + 3)],
                    "date": self.date(), "nothing": None, "maybe": None if i % 2 else f"sometimes {i}",
                    "members": {"__type": "Relation", "className": "_User"},
                }
                acl = self.acl(i, owner)
                if acl is not None:
                    obj["ACL"] = acl
                if self.problems and i == 3:
                    obj["bad-field"] = 1
                    self.facts.ids["invalid_field"] = oid
                out.write(obj)
                for u in sorted(self.rng.sample(range(self.n_users), self.rng.randrange(1, 3))):
                    members.write({"owningId": oid, "relatedId": self.user_id(u)})
                if i == 0:
                    self.facts.ids["everything"] = oid


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _token(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(_ALNUM) for _ in range(n))


__all__ = ["ExportFacts", "file_content", "generate_export", "object_id"]
