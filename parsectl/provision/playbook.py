"""Playbooks: YAML data (``name``, ``description``, ``vars``, ``steps``) validated strictly before anything runs.

A step is a one-key mapping ``{step_name: {field: value, ...}}``. Unknown step names, unknown fields, missing
required fields, wrong types and ``${variables}`` that neither ``vars`` nor the host facts define are all
reported together, with the step's position, before any host is contacted.
"""

from __future__ import annotations

import contextlib
import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any

import yaml

PLAYBOOKS_DIR = Path(__file__).resolve().parents[2] / "playbooks"


class PlaybookError(ValueError):
    """The playbook is invalid; the message lists every problem."""


# Facts gather_facts defines; playbooks may use them as ${name}.
FACT_VARS = ("distribution", "distribution_version", "codename", "ram_gb", "cores", "arch", "init",
             "host", "member_host", "mongod_port", "replset", "role")

# field -> (type, required). Types: str, int, float, bool, list, dict, "mode" (octal string or int).
_F = tuple[Any, bool]
STEP_FIELDS: dict[str, dict[str, _F]] = {
    "gather_facts": {"supported_distributions": (dict, False), "data_path": (str, False)},
    "os_tuning": {"thp": (str, False), "swappiness": (int, False), "nofile": (int, False), "nproc": (int, False),
                  "user": (str, False), "check_ntp": (bool, False), "check_xfs": (bool, False),
                  "readahead_max_kb": (int, False), "service": (str, False)},
    "package_repository": {"name": (str, True), "url": (str, True), "suite": (str, True),
                           "components": (list, False), "key_file": (str, False), "trusted": (bool, False)},
    "packages": {"names": (list, True), "no_autostart": (bool, False)},
    "data_dir": {"path": (str, True), "engine": (str, True), "move_existing_data": (bool, False)},
    "directories": {"paths": (list, True), "owner": (str, False), "group": (str, False), "mode": ("mode", False)},
    "keyfile": {"path": (str, True), "owner": (str, False), "group": (str, False), "source": (str, False)},
    "mongod_conf": {"path": (str, False), "server": (str, False), "version": (str, True), "engine": (str, True),
                    "profile": (str, False), "db_path": (str, False), "log_path": (str, False),
                    "port": (int, False), "bind_ip": (list, False), "key_file": (str, False),
                    "oplog_window_hours": (float, False), "write_rate_mb_per_hour": (float, False)},
    "template": {"src": (str, True), "dest": (str, True), "mode": ("mode", False), "owner": (str, False)},
    "service": {"name": (str, True), "enabled": (bool, False), "restart_on_change": (list, False)},
    "wait_for_port": {"port": (int, True), "timeout": (int, False), "mongo_ping": (bool, False)},
    "replset_member": {"wait_sync": (bool, False), "sync_timeout": (int, False),
                       "assumed_sync_rate_mb_s": (float, False), "wait_poll_seconds": (float, False)},
}
REPLSET_STEPS = ("replset_member",)
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass
class Step:
    name: str
    fields: dict[str, Any]
    index: int

    @property
    def label(self) -> str:
        return f"{self.index + 1}. {self.name}"


@dataclass
class Playbook:
    name: str
    description: str
    vars: dict[str, Any]
    steps: list[Step]
    path: Path | None = None
    var_names: set[str] = field(default_factory=set)

    @property
    def node_steps(self) -> list[Step]:
        return [s for s in self.steps if s.name not in REPLSET_STEPS]

    @property
    def replset_steps(self) -> list[Step]:
        return [s for s in self.steps if s.name in REPLSET_STEPS]


def _type_ok(kind: Any, value: Any) -> bool:
    if isinstance(value, str) and _VAR.fullmatch(value.strip()):
        return True  # resolved later; checked again after substitution
    if kind == "mode":
        return isinstance(value, int) or (isinstance(value, str) and re.fullmatch(r"0?[0-7]{3,4}", value) is not None)
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _type_name(kind: Any) -> str:
    return {"mode": "an octal mode such as \"0750\"", str: "a string", int: "an integer", float: "a number",
            bool: "true or false", list: "a list", dict: "a mapping"}[kind]


def _vars_in(value: Any) -> set[str]:
    if isinstance(value, str):
        return set(_VAR.findall(value))
    if isinstance(value, list):
        return set().union(*(_vars_in(v) for v in value)) if value else set()
    if isinstance(value, dict):
        return set().union(*(_vars_in(v) for v in value.values())) if value else set()
    return set()


def parse(text: str, source: str = "<playbook>", extra_vars: dict[str, Any] | None = None) -> Playbook:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PlaybookError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise PlaybookError(f"{source}: the top level must be a mapping with name, vars and steps")
    problems: list[str] = []
    unknown_top = set(data) - {"name", "description", "vars", "steps"}
    if unknown_top:
        problems.append(f"unknown top-level keys {sorted(unknown_top)} (allowed: name, description, vars, steps)")
    variables = data.get("vars") or {}
    if not isinstance(variables, dict):
        problems.append("vars must be a mapping")
        variables = {}
    variables = {**variables, **(extra_vars or {})}
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        problems.append("steps must be a non-empty list")
        raw_steps = []
    steps: list[Step] = []
    known_vars = set(variables) | set(FACT_VARS)
    seen_replset = False
    for index, raw in enumerate(raw_steps):
        where = f"step {index + 1}"
        if isinstance(raw, str):
            raw = {raw: {}}
        if not isinstance(raw, dict) or len(raw) != 1:
            problems.append(f"{where}: write each step as a one-key mapping, e.g. '- packages: {{names: [...]}}'")
            continue
        (name, fields), = raw.items()
        fields = fields or {}
        if name not in STEP_FIELDS:
            close = difflib.get_close_matches(str(name), STEP_FIELDS, n=1)
            hint = f"; did you mean {close[0]}?" if close else f" (known steps: {', '.join(STEP_FIELDS)})"
            problems.append(f"{where}: unknown step {name!r}{hint}")
            continue
        where = f"step {index + 1} ({name})"
        if not isinstance(fields, dict):
            problems.append(f"{where}: its fields must be a mapping")
            continue
        spec = STEP_FIELDS[name]
        for key, value in fields.items():
            if key not in spec:
                close = difflib.get_close_matches(str(key), spec, n=1)
                hint = f"; did you mean {close[0]}?" if close else f" (allowed: {', '.join(spec) or 'none'})"
                problems.append(f"{where}: unknown field {key!r}{hint}")
            elif not _type_ok(spec[key][0], value):
                problems.append(f"{where}: {key} must be {_type_name(spec[key][0])}, not {value!r}")
        for key, (_kind, required) in spec.items():
            if required and key not in fields:
                problems.append(f"{where}: missing required field {key!r}")
        for var in sorted(_vars_in(fields) - known_vars):
            problems.append(f"{where}: ${{{var}}} is not defined in vars (nor a host fact)")
        if name in REPLSET_STEPS:
            seen_replset = True
        elif seen_replset:
            problems.append(f"{where}: node steps must come before the replica-set steps")
        steps.append(Step(name, fields, index))
    for var in sorted(_vars_in(variables) - known_vars):
        problems.append(f"vars: ${{{var}}} is not defined")
    if steps and steps[0].name != "gather_facts":
        problems.append("step 1 must be gather_facts (other steps use the host's facts)")
    if problems:
        raise PlaybookError(f"{source}: invalid playbook:\n  - " + "\n  - ".join(problems))
    return Playbook(str(data.get("name") or source), str(data.get("description") or ""), variables, steps,
                    var_names=known_vars)


def locate(name_or_file: str) -> Path:
    """A bundled playbook by name (``mongorocks``, ``wiredtiger``) or a file path."""
    candidate = Path(name_or_file).expanduser()
    if candidate.suffix in (".yml", ".yaml") or candidate.exists():
        if not candidate.is_file():
            raise PlaybookError(f"playbook file {candidate} does not exist")
        return candidate
    bundled = PLAYBOOKS_DIR / f"{name_or_file}.yml"
    if bundled.is_file():
        return bundled
    known = sorted(p.stem for p in PLAYBOOKS_DIR.glob("*.yml")) if PLAYBOOKS_DIR.is_dir() else []
    raise PlaybookError(f"no playbook named {name_or_file!r} (bundled: {', '.join(known) or 'none'}); "
                        "give a name or a path to a .yml file")


def load(name_or_file: str, extra_vars: dict[str, Any] | None = None) -> Playbook:
    path = locate(name_or_file)
    playbook = parse(path.read_text(encoding="utf-8"), str(path), extra_vars)
    playbook.path = path
    return playbook


def substitute(value: Any, variables: dict[str, Any]) -> Any:
    """Replace ``${name}`` in strings (recursively). A whole-string ``${name}`` keeps the variable's type."""
    if isinstance(value, str):
        whole = _VAR.fullmatch(value.strip())
        if whole and whole.group(1) in variables:
            return substitute(variables[whole.group(1)], variables)
        try:
            return Template(value).substitute({k: v for k, v in variables.items()})
        except KeyError as exc:
            raise PlaybookError(f"${{{exc.args[0]}}} is not defined") from exc
        except ValueError as exc:
            raise PlaybookError(f"bad ${{...}} in {value!r}: {exc}") from exc
    if isinstance(value, list):
        return [substitute(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, variables) for k, v in value.items()}
    return value


def resolve_fields(step: Step, variables: dict[str, Any]) -> dict[str, Any]:
    """The step's fields with variables substituted, type-checked again."""
    resolved = substitute(step.fields, variables)
    spec = STEP_FIELDS[step.name]
    for key, value in resolved.items():
        kind = spec[key][0]
        if kind is int and isinstance(value, str) and value.strip().isdigit():
            resolved[key] = value = int(value)
        if kind is float and isinstance(value, str):
            with contextlib.suppress(ValueError):
                resolved[key] = value = float(value)
        if kind is bool and isinstance(value, str) and value.lower() in ("true", "false"):
            resolved[key] = value = value.lower() == "true"
        if not _type_ok(kind, value) or (isinstance(value, str) and _VAR.search(value)):
            raise PlaybookError(f"{step.label}: {key} must be {_type_name(kind)}, not {value!r} after substitution")
    return resolved


def parse_var(text: str) -> tuple[str, Any]:
    """``--var name=value``; the value is read as YAML (so ``[a, b]`` is a list, ``3`` a number)."""
    if "=" not in text:
        raise PlaybookError(f"--var {text!r}: use name=value")
    key, raw = text.split("=", 1)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        raise PlaybookError(f"--var {text!r}: bad variable name {key!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value
