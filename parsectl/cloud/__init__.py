"""Cloud Code in Python: functions, jobs and triggers for ``parsectl serve``.

A cloud file (the ``cloud`` server option, ``--cloud`` flag or ``PARSE_SERVER_CLOUD``) is a Python file
(``cloud/main.py``) or an importable module (``myapp.cloud``) that defines a module-level registry named
``cloud``::

    from parsectl.cloud import Cloud, ParseError

    cloud = Cloud()                      # Cloud(timeout=30.0): seconds per function/trigger, None for none

    @cloud.define("hello", require_user=False, fields={"name": str})
    async def hello(request):
        return f"Hello {request.params['name']}"

    @cloud.before_save("GameScore")
    def check(request):                  # plain functions run in a worker thread
        if request.object.get("score", 0) < 0:
            raise ParseError(142, "negative scores are not allowed")
        request.object["checked"] = True

    @cloud.job("cleanup")
    async def cleanup(request):
        request.message("halfway")
        return "done"                    # recorded as the _JobStatus message

There is no global registry: the module's ``cloud`` (or, failing that, its only :class:`Cloud`) is used,
so several servers in one process can load different code. A file's directory is put on ``sys.path`` so
it can import its neighbours.

Triggers: ``before_save``/``after_save``, ``before_delete``/``after_delete``, ``before_find``/``after_find``
(per class: a name or a class whose ``__name__`` is the name), ``before_login``/``after_login``/
``after_logout``; for files ``before_save_file``/``after_save_file``/``before_delete_file``/
``after_delete_file`` (``request.file`` is a :class:`CloudFile`; errors default to 130 / 153 as in
parse-server). Validators: ``require_user``, ``require_master``, ``fields`` (a list of required names,
or ``{name: type}`` for required-and-typed, or ``{name: {"type", "required", "default", "options",
"constant", "error"}}``), ``validate_master_key`` and ``rate_limit`` (parse-server's ``requestCount``,
``requestTimeWindow`` in ms, ``errorResponseMessage``, ``includeMasterKey``, ``includeInternalRequests``,
``zone``). Errors: a raised :class:`ParseError` reaches the client with its code; any other exception,
a timeout or a result that is not JSON answers 141; failed validation answers 142.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

from parsectl.cloud.registry import Cloud, CloudFile, Definition, Validator
from parsectl.cloud.runtime import CloudQuery, CloudRequest, CloudRuntime
from parsectl.model.errors import ParseError


class CloudLoadError(ValueError):
    """The cloud option names nothing loadable, or the code failed to load."""


def load(spec: str) -> Cloud:
    """The :class:`Cloud` defined by a Python file or a module."""
    path = Path(spec)
    is_file = spec.endswith(".py") or "/" in spec or path.is_file()
    try:
        if is_file:
            path = path.expanduser().resolve()
            if not path.is_file():
                raise CloudLoadError(f"cloud code file {spec} does not exist")
            if str(path.parent) not in sys.path:
                sys.path.insert(0, str(path.parent))
            name = f"parsectl_cloud_{abs(hash(str(path))):x}_{len(sys.modules)}"
            module_spec = importlib.util.spec_from_file_location(name, path)
            if module_spec is None or module_spec.loader is None:
                raise CloudLoadError(f"cannot load cloud code file {spec}")
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(spec)
    except CloudLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of the user's code is a load error
        raise CloudLoadError(f"cloud code {spec} failed to load: {type(exc).__name__}: {exc}") from exc
    found = getattr(module, "cloud", None)
    if not isinstance(found, Cloud):
        registries = [v for v in vars(module).values() if isinstance(v, Cloud)]
        if len(registries) != 1:
            raise CloudLoadError(f"cloud code {spec} must define a module-level `cloud = Cloud()`")
        found = registries[0]
    return found


__all__ = ["Cloud", "CloudFile", "CloudLoadError", "CloudQuery", "CloudRequest", "CloudRuntime", "Definition", "ParseError",
           "Validator", "load"]
