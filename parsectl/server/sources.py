"""Where ``parsectl serve`` options come from: flags > ``PARSE_SERVER_*`` environment > config file."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from parsectl.server.config import ConfigError, ServerOptions

# parse-server's environment variables for the options parsectl serves
ENV_VARS = {
    "appId": "PARSE_SERVER_APPLICATION_ID",
    "masterKey": "PARSE_SERVER_MASTER_KEY",
    "databaseURI": "PARSE_SERVER_DATABASE_URI",
    "clientKey": "PARSE_SERVER_CLIENT_KEY",
    "restAPIKey": "PARSE_SERVER_REST_API_KEY",
    "javascriptKey": "PARSE_SERVER_JAVASCRIPT_KEY",
    "dotNetKey": "PARSE_SERVER_DOT_NET_KEY",
    "fileKey": "PARSE_SERVER_FILE_KEY",
    "serverURL": "PARSE_SERVER_URL",
    "publicServerURL": "PARSE_PUBLIC_SERVER_URL",
    "mountPath": "PARSE_SERVER_MOUNT_PATH",
    "defaultLimit": "PARSE_SERVER_DEFAULT_LIMIT",
    "maxLimit": "PARSE_SERVER_MAX_LIMIT",
    "allowClientClassCreation": "PARSE_SERVER_ALLOW_CLIENT_CLASS_CREATION",
    "masterKeyIps": "PARSE_SERVER_MASTER_KEY_IPS",
    "maxUploadSize": "PARSE_SERVER_MAX_UPLOAD_SIZE",
    "allowOrigin": "PARSE_SERVER_ALLOW_ORIGIN",
    "cloud": "PARSE_SERVER_CLOUD",
    "push": "PARSE_SERVER_PUSH",
    "scheduledPush": "PARSE_SERVER_SCHEDULED_PUSH",
    "webhookKey": "PARSE_SERVER_WEBHOOK_KEY",
    "webhookTimeout": "PARSE_SERVER_WEBHOOK_TIMEOUT",  # parsectl's (parse-server has no webhook timeout)
    "webhookAllowedHosts": "PARSE_SERVER_WEBHOOK_ALLOWED_HOSTS",  # parsectl's: comma-separated
    "port": "PORT",
    "host": "PARSE_SERVER_HOST",
}
# Options of the process rather than of the API app.
PROCESS_OPTIONS = ("port", "host", "dataDir", "workers")
DEFAULT_APP_ID = "parsectl"


def read_config_file(path: Path) -> dict[str, Any]:
    """parse-server's config.json (or the same keys in YAML); a one-app ``{"apps": [...]}`` file works too."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    import yaml

    try:
        data = yaml.safe_load(text) if path.suffix.lower() in (".yaml", ".yml") else json.loads(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"config file {path} is not valid {path.suffix.lstrip('.').upper() or 'JSON'}: {exc}") \
            from None
    if isinstance(data, dict) and isinstance(data.get("apps"), list):
        if len(data["apps"]) != 1:
            raise ConfigError(f"config file {path} must define exactly one app")
        data = {**{k: v for k, v in data.items() if k != "apps"}, **data["apps"][0]}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold an object of options")
    return data


def read_env(environ: dict[str, str] | None = None) -> dict[str, Any]:
    env = os.environ if environ is None else environ
    return {option: env[var] for option, var in ENV_VARS.items() if env.get(var) not in (None, "")}


def resolve(flags: dict[str, Any], config_file: Path | None = None,
            environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Merge the three sources (flags win, then environment, then the file); None flags are unset."""
    merged: dict[str, Any] = {}
    if config_file is not None:
        merged.update(read_config_file(config_file))
    merged.update(read_env(environ))
    merged.update({k: v for k, v in flags.items() if v is not None})
    return merged


def master_key_for(data_dir: Path) -> tuple[str, bool]:
    """The master key kept in the data directory, generated on first use; (key, generated_now)."""
    path = data_dir / "master.key"
    if path.exists():
        return path.read_text().strip(), False
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key, True


def split_options(merged: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(API options, process options)."""
    api = {k: v for k, v in merged.items() if k not in PROCESS_OPTIONS}
    process = {k: v for k, v in merged.items() if k in PROCESS_OPTIONS}
    return api, process


def build_options(api: dict[str, Any]) -> ServerOptions:
    return ServerOptions.from_mapping(api)
