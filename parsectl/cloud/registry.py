"""The decorator API: a :class:`Cloud` registry of functions, jobs and triggers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Handler = Callable[..., Any]

DEFAULT_TIMEOUT = 30.0

# trigger kinds, named as parse-server names them (triggers.Types)
BEFORE_SAVE, AFTER_SAVE = "beforeSave", "afterSave"
BEFORE_DELETE, AFTER_DELETE = "beforeDelete", "afterDelete"
BEFORE_FIND, AFTER_FIND = "beforeFind", "afterFind"
BEFORE_LOGIN, AFTER_LOGIN, AFTER_LOGOUT = "beforeLogin", "afterLogin", "afterLogout"
FILE_CLASS = "@File"  # file triggers are beforeSave/afterSave/beforeDelete/afterDelete on "@File", as in parse-server
TRIGGERS = (BEFORE_SAVE, AFTER_SAVE, BEFORE_DELETE, AFTER_DELETE, BEFORE_FIND, AFTER_FIND, BEFORE_LOGIN,
            AFTER_LOGIN, AFTER_LOGOUT)
_SESSION_TRIGGERS = {BEFORE_LOGIN: "_User", AFTER_LOGIN: "_User", AFTER_LOGOUT: "_Session"}


@dataclass
class Validator:
    """What is checked before a handler runs (parse-server's built-in validator options)."""

    require_user: bool = False
    require_master: bool = False
    validate_master_key: bool = False  # by default the master key skips validation, as in parse-server
    fields: dict[str, dict[str, Any]] = field(default_factory=dict)
    rate_limit: dict[str, Any] | None = None

    @classmethod
    def build(cls, require_user: bool = False, require_master: bool = False, fields: Any = None,
              rate_limit: dict[str, Any] | None = None, validate_master_key: bool = False) -> Validator | None:
        if not (require_user or require_master or fields or rate_limit):
            return None
        return cls(require_user, require_master, validate_master_key, _normalise_fields(fields), rate_limit)


def _normalise_fields(fields: Any) -> dict[str, dict[str, Any]]:
    """``fields`` as ``{name: {type, required, default, options, constant, error}}``.

    Accepted: a list of names (all required); a mapping of a name to a type (required, of that type)
    or to an option mapping."""
    if not fields:
        return {}
    if isinstance(fields, list | tuple):
        return {name: {"required": True} for name in fields}
    if not isinstance(fields, dict):
        raise TypeError("fields must be a list of names or a mapping of names to types or options")
    out: dict[str, dict[str, Any]] = {}
    for name, spec in fields.items():
        if isinstance(spec, type):
            out[name] = {"type": spec, "required": True}
        elif isinstance(spec, dict):
            unknown = set(spec) - {"type", "required", "default", "options", "constant", "error"}
            if unknown:
                raise TypeError(f"unknown field option(s) for {name!r}: {', '.join(sorted(unknown))}")
            out[name] = dict(spec)
        else:
            raise TypeError(f"field {name!r}: give a type or a mapping of options")
    return out


@dataclass
class Definition:
    name: str
    handler: Handler
    validator: Validator | None = None
    timeout: float | None = DEFAULT_TIMEOUT


class Cloud:
    """A registry of Cloud Code. A cloud file defines one at module level::

        from parsectl.cloud import Cloud, ParseError
        cloud = Cloud()

        @cloud.define("hello", fields={"name": str})
        async def hello(request):
            return f"Hello {request.params['name']}"

    Handlers may be plain functions (run in a worker thread) or coroutines. ``timeout`` (seconds, None
    for none) bounds every function and trigger; a definition may set its own.
    """

    def __init__(self, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        self.timeout = timeout
        self.functions: dict[str, Definition] = {}
        self.jobs: dict[str, Definition] = {}
        self.triggers: dict[tuple[str, str], Definition] = {}

    def _timeout(self, timeout: Any) -> float | None:
        return self.timeout if timeout is _UNSET else timeout

    # --- functions and jobs -------------------------------------------------------------------------
    def define(self, name: str, handler: Handler | None = None, *, require_user: bool = False,
               require_master: bool = False, fields: Any = None, rate_limit: dict[str, Any] | None = None,
               validate_master_key: bool = False, timeout: Any = None) -> Any:
        """Register a Cloud function, called with ``POST /functions/<name>``; its return value is the result."""
        timeout = _UNSET if timeout is None else timeout
        validator = Validator.build(require_user, require_master, fields, rate_limit, validate_master_key)

        def register(fn: Handler) -> Handler:
            self.functions[name] = Definition(name, fn, validator, self._timeout(timeout))
            return fn

        return register(handler) if handler is not None else register

    def job(self, name: str, handler: Handler | None = None, *, timeout: float | None = None) -> Any:
        """Register a background job, started with ``POST /jobs/<name>`` and the master key (no timeout
        unless given)."""

        def register(fn: Handler) -> Handler:
            self.jobs[name] = Definition(name, fn, None, timeout)
            return fn

        return register(handler) if handler is not None else register

    # --- triggers -----------------------------------------------------------------------------------
    def _trigger(self, kind: str, class_name: Any, handler: Handler | None, options: dict[str, Any]) -> Any:
        if kind in _SESSION_TRIGGERS:
            class_name = _SESSION_TRIGGERS[kind]
        elif isinstance(class_name, type):  # a class whose name is the Parse class name
            class_name = class_name.__name__
        if not isinstance(class_name, str) or not class_name:
            raise TypeError(f"{kind} needs a class name")
        if class_name == "_PushStatus" and kind != AFTER_SAVE:
            raise ValueError("Only afterSave is allowed on _PushStatus")
        timeout = options.pop("timeout", None)
        timeout = _UNSET if timeout is None else timeout
        validator = Validator.build(**options)

        def register(fn: Handler) -> Handler:
            self.triggers[(kind, class_name)] = Definition(f"{kind} {class_name}", fn, validator,
                                                           self._timeout(timeout))
            return fn

        return register(handler) if handler is not None else register

    def before_save(self, class_name: Any, handler: Handler | None = None, **options: Any) -> Any:
        """Runs before an object of ``class_name`` is created or updated; may change ``request.object``
        (a dict of fields) or refuse by raising ``ParseError``."""
        return self._trigger(BEFORE_SAVE, class_name, handler, options)

    def after_save(self, class_name: Any, handler: Handler | None = None, **options: Any) -> Any:
        """Runs after a save; its errors are logged, not returned to the client."""
        return self._trigger(AFTER_SAVE, class_name, handler, options)

    def before_delete(self, class_name: Any, handler: Handler | None = None, **options: Any) -> Any:
        return self._trigger(BEFORE_DELETE, class_name, handler, options)

    def after_delete(self, class_name: Any, handler: Handler | None = None, **options: Any) -> Any:
        return self._trigger(AFTER_DELETE, class_name, handler, options)

    def before_find(self, class_name: Any, handler: Handler | None = None, **options: Any) -> Any:
        """Runs before a find, get or count; may change ``request.query``."""
        return self._trigger(BEFORE_FIND, class_name, handler, options)

    def after_find(self, class_name: Any, handler: Handler | None = None, **options: Any) -> Any:
        """Runs after a find or get with ``request.objects``; a returned list replaces the results."""
        return self._trigger(AFTER_FIND, class_name, handler, options)

    def before_login(self, handler: Handler | None = None, **options: Any) -> Any:
        return self._trigger(BEFORE_LOGIN, "_User", handler, options)

    def after_login(self, handler: Handler | None = None, **options: Any) -> Any:
        return self._trigger(AFTER_LOGIN, "_User", handler, options)

    def after_logout(self, handler: Handler | None = None, **options: Any) -> Any:
        return self._trigger(AFTER_LOGOUT, "_Session", handler, options)

    # --- files --------------------------------------------------------------------------------------
    def _file_trigger(self, kind: str, handler: Handler | None, options: dict[str, Any]) -> Any:
        timeout = options.pop("timeout", None)
        timeout = _UNSET if timeout is None else timeout
        validator = Validator.build(**options)

        def register(fn: Handler) -> Handler:
            self.triggers[(kind, FILE_CLASS)] = Definition(f"{kind}File", fn, validator, self._timeout(timeout))
            return fn

        return register(handler) if handler is not None else register

    def before_save_file(self, handler: Handler | None = None, **options: Any) -> Any:
        """Runs before an upload is stored, with ``request.file`` (a :class:`CloudFile`): change its ``name``,
        ``data``, ``metadata``, ``tags`` or ``directory``, refuse by raising, or return a ``CloudFile`` with a
        ``url`` to answer with that file and store nothing."""
        return self._file_trigger(BEFORE_SAVE, handler, options)

    def after_save_file(self, handler: Handler | None = None, **options: Any) -> Any:
        """Runs after an upload is stored; ``request.file`` has its stored ``name`` and ``url``."""
        return self._file_trigger(AFTER_SAVE, handler, options)

    def before_delete_file(self, handler: Handler | None = None, **options: Any) -> Any:
        """Runs before ``DELETE /files/<name>``; raising refuses the deletion."""
        return self._file_trigger(BEFORE_DELETE, handler, options)

    def after_delete_file(self, handler: Handler | None = None, **options: Any) -> Any:
        return self._file_trigger(AFTER_DELETE, handler, options)

    def trigger(self, kind: str, class_name: str) -> Definition | None:
        return self.triggers.get((kind, class_name))


@dataclass
class CloudFile:
    """A file as file triggers see it (parse-server's Parse.File): ``url`` is set once it is stored."""

    name: str
    data: bytes | None = None
    content_type: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, Any] = field(default_factory=dict)
    directory: str | None = None
    url: str | None = None


_UNSET: Any = object()
