"""ServerOptions validation and where serve options come from (flags > env > config file)."""

from __future__ import annotations

import json
import stat

import pytest

from parsectl.server import sources
from parsectl.server.config import LOOPBACK_IPS, ConfigError, ServerOptions, parse_bool, parse_size

BASE = {"appId": "app", "masterKey": "mk"}


def _config_error(options) -> str:
    with pytest.raises(ConfigError) as info:
        ServerOptions.from_mapping(options)
    return str(info.value)


# --- ServerOptions ---------------------------------------------------------------------------------


def test_defaults():
    opts = ServerOptions.from_mapping(BASE)
    assert opts.app_id == "app" and opts.master_key == "mk"
    assert opts.database_uri == "sqlite:///parsectl-data/parse.db"
    assert opts.mount_path == "/parse"
    assert opts.default_limit == 100
    assert opts.max_limit is None
    assert opts.allow_client_class_creation is False
    assert opts.master_key_ips == list(LOOPBACK_IPS)
    assert opts.max_upload_bytes == 20 * 1024 * 1024
    assert opts.client_keys == {}


def test_camel_case_names():
    opts = ServerOptions.from_mapping({
        **BASE, "databaseURI": "sqlite:///tmp/x.db", "clientKey": "ck", "restAPIKey": "rk", "javascriptKey": "jk",
        "dotNetKey": "dk", "fileKey": "fk", "serverURL": "http://h/parse", "publicServerURL": "https://p/parse",
        "mountPath": "/api/", "defaultLimit": 20, "maxLimit": 500, "allowClientClassCreation": True,
        "masterKeyIps": ["10.0.0.0/8"], "maxUploadSize": "1kb", "allowOrigin": "https://x",
    })
    assert opts.database_uri == "sqlite:///tmp/x.db"
    assert opts.client_keys == {"clientKey": "ck", "javascriptKey": "jk", "restAPIKey": "rk", "dotNetKey": "dk"}
    assert opts.file_key == "fk"
    assert (opts.server_url, opts.public_server_url) == ("http://h/parse", "https://p/parse")
    assert opts.mount_path == "/api"
    assert (opts.default_limit, opts.max_limit) == (20, 500)
    assert opts.allow_client_class_creation is True
    assert opts.master_key_ips == ["10.0.0.0/8"]
    assert opts.max_upload_bytes == 1024
    assert opts.allow_origin == "https://x"


def test_snake_case_names_work_too():
    opts = ServerOptions.from_mapping({"app_id": "a", "master_key": "m", "max_limit": 3})
    assert (opts.app_id, opts.master_key, opts.max_limit) == ("a", "m", 3)


def test_camel_map_covers_every_field():
    assert set(ServerOptions.CAMEL.values()) == ServerOptions.names()


def test_unknown_option_is_named():
    assert _config_error({**BASE, "fooBar": 1}) == "unknown option 'fooBar'"


@pytest.mark.parametrize("missing", ["appId", "masterKey"])
def test_required_options(missing):
    options = {k: v for k, v in BASE.items() if k != missing}
    assert _config_error(options) == f"option {missing!r} is required"
    assert _config_error({**options, missing: ""}) == f"option {missing!r} is required"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("maxLimit", 0, "option 'maxLimit' must be a positive integer"),
        ("maxLimit", -5, "option 'maxLimit' must be a positive integer"),
        ("maxLimit", "0", "option 'maxLimit' must be a positive integer"),
        ("maxLimit", "lots", "option 'maxLimit' must be a positive integer"),
        ("maxLimit", True, "option 'maxLimit' must be a positive integer"),
        ("maxLimit", 2.5, "option 'maxLimit' must be a positive integer"),
        ("defaultLimit", 0, "option 'defaultLimit' must be a positive integer"),
        ("masterKeyIps", ["300.1.1.1"], "option 'masterKeyIps' has an invalid IP address or range: '300.1.1.1'"),
        ("masterKeyIps", "127.0.0.1, nope", "option 'masterKeyIps' has an invalid IP address or range: 'nope'"),
        ("masterKeyIps", {"ip": "::1"}, "option 'masterKeyIps' must be a list of IP addresses or CIDR ranges"),
        ("maxUploadSize", "20xb", "option 'maxUploadSize' must be a size such as '20mb', not '20xb'"),
        ("maxUploadSize", 0, "option 'maxUploadSize' must be a size such as '20mb', not 0"),
        ("maxUploadSize", "-1mb", "option 'maxUploadSize' must be a size such as '20mb', not '-1mb'"),
        ("mountPath", "parse", "option 'mountPath' must start with '/'"),
        ("mountPath", 5, "option 'mountPath' must start with '/'"),
        ("databaseURI", "nocolon", "option 'databaseURI' must be a URI such as sqlite:///path/parse.db"),
        ("allowClientClassCreation", "maybe", "option 'allowClientClassCreation' must be true or false, not 'maybe'"),
        ("allowClientClassCreation", 1, "option 'allowClientClassCreation' must be true or false"),
        ("clientKey", 123, "option 'clientKey' must be a string"),
        ("masterKey", 123, "option 'masterKey' must be a non-empty string"),
    ],
)
def test_bad_values_name_the_option(name, value, message):
    assert _config_error({**BASE, name: value}) == message


def test_string_values_are_coerced():
    opts = ServerOptions.from_mapping({**BASE, "maxLimit": "250", "masterKeyIps": " 10.1.2.3 , ::1/128,",
                                       "allowClientClassCreation": "yes"})
    assert opts.max_limit == 250
    assert opts.master_key_ips == ["10.1.2.3", "::1/128"]
    assert opts.allow_client_class_creation is True


@pytest.mark.parametrize(("mount", "expected"), [("/", ""), ("/parse/", "/parse"), ("//a/b//", "/a/b")])
def test_mount_path_normalised(mount, expected):
    assert ServerOptions.from_mapping({**BASE, "mountPath": mount}).mount_path == expected


@pytest.mark.parametrize(
    ("value", "size"),
    [("20mb", 20 * 1024**2), ("1.5KB", 1536), ("1gb", 1024**3), ("512", 512), (" 2 mb ", 2 * 1024**2), (4096, 4096)],
)
def test_parse_size(value, size):
    assert parse_size(value) == size


@pytest.mark.parametrize("value", ["", "mb", "1tb", "0", "0.0001kb", -1, True])
def test_parse_size_rejects(value):
    with pytest.raises(ValueError):
        parse_size(value)


@pytest.mark.parametrize(("text", "value"), [("1", True), ("TRUE", True), (" on ", True), ("yes", True),
                                             ("0", False), ("false", False), ("off", False), ("", False)])
def test_parse_bool(text, value):
    assert parse_bool("x", text) is value


# --- sources ---------------------------------------------------------------------------------------


def _write_json(path, data):
    path.write_text(json.dumps(data))
    return path


def test_env_vars_are_read():
    env = {"PARSE_SERVER_APPLICATION_ID": "envapp", "PARSE_SERVER_MAX_LIMIT": "7", "PORT": "8080",
           "PARSE_SERVER_CLIENT_KEY": "", "UNRELATED": "x"}
    assert sources.read_env(env) == {"appId": "envapp", "maxLimit": "7", "port": "8080"}


def test_precedence_flags_over_env_over_file(tmp_path):
    config = _write_json(tmp_path / "config.json", {"appId": "fileapp", "masterKey": "filekey",
                                                    "mountPath": "/file", "maxLimit": 10})
    env = {"PARSE_SERVER_MASTER_KEY": "envkey", "PARSE_SERVER_MOUNT_PATH": "/env"}
    flags = {"mountPath": "/flag", "appId": None, "maxLimit": None}
    merged = sources.resolve(flags, config, env)
    assert merged == {"appId": "fileapp", "masterKey": "envkey", "mountPath": "/flag", "maxLimit": 10}
    assert sources.resolve({}, config, env)["mountPath"] == "/env"
    assert sources.resolve({}, config, {})["mountPath"] == "/file"


def test_resolve_without_file_uses_env_and_flags():
    merged = sources.resolve({"port": 9000}, None, {"PARSE_SERVER_APPLICATION_ID": "a", "PORT": "1"})
    assert merged == {"appId": "a", "port": 9000}


def test_resolved_env_values_build_options():
    env = {"PARSE_SERVER_APPLICATION_ID": "app", "PARSE_SERVER_MASTER_KEY": "mk", "PARSE_SERVER_MAX_LIMIT": "50",
           "PARSE_SERVER_MASTER_KEY_IPS": "10.0.0.0/8,::1", "PARSE_SERVER_ALLOW_CLIENT_CLASS_CREATION": "true",
           "PARSE_SERVER_MAX_UPLOAD_SIZE": "5mb", "PARSE_SERVER_MOUNT_PATH": "/api"}
    api, process = sources.split_options(sources.resolve({}, None, env))
    opts = sources.build_options(api)
    assert process == {}
    assert (opts.max_limit, opts.master_key_ips, opts.allow_client_class_creation) == (50, ["10.0.0.0/8", "::1"], True)
    assert (opts.max_upload_bytes, opts.mount_path) == (5 * 1024**2, "/api")


def test_default_limit_from_env():
    env = {"PARSE_SERVER_APPLICATION_ID": "app", "PARSE_SERVER_MASTER_KEY": "mk", "PARSE_SERVER_DEFAULT_LIMIT": "50"}
    api, _ = sources.split_options(sources.resolve({}, None, env))
    assert sources.build_options(api).default_limit == 50


def test_split_options():
    api, process = sources.split_options({"appId": "a", "port": 1, "host": "h", "dataDir": "d", "workers": 2})
    assert api == {"appId": "a"}
    assert process == {"port": 1, "host": "h", "dataDir": "d", "workers": 2}


def test_yaml_config(tmp_path):
    path = tmp_path / "parse.yml"
    path.write_text("appId: yamlapp\nmasterKey: k\nmaxLimit: 5\nmasterKeyIps:\n  - 10.0.0.1\n")
    assert sources.read_config_file(path) == {"appId": "yamlapp", "masterKey": "k", "maxLimit": 5,
                                              "masterKeyIps": ["10.0.0.1"]}
    path2 = tmp_path / "parse.yaml"
    path2.write_text("appId: a2\n")
    assert sources.read_config_file(path2) == {"appId": "a2"}


def test_apps_config(tmp_path):
    path = _write_json(tmp_path / "c.json", {"port": 1338, "apps": [{"appId": "inner", "masterKey": "m"}]})
    assert sources.read_config_file(path) == {"port": 1338, "appId": "inner", "masterKey": "m"}
    two = _write_json(tmp_path / "two.json", {"apps": [{"appId": "a"}, {"appId": "b"}]})
    with pytest.raises(ConfigError, match="must define exactly one app"):
        sources.read_config_file(two)


def test_bad_config_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        sources.read_config_file(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="is not valid JSON"):
        sources.read_config_file(bad)
    listing = _write_json(tmp_path / "list.json", [1, 2])
    with pytest.raises(ConfigError, match="must hold an object of options"):
        sources.read_config_file(listing)


def test_bad_yaml_config_is_a_config_error(tmp_path):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        sources.read_config_file(bad_yaml)


def test_master_key_generated_once(tmp_path):
    data_dir = tmp_path / "data" / "nested"
    key, generated = sources.master_key_for(data_dir)
    assert generated is True
    assert len(key) >= 40
    path = data_dir / "master.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == key + "\n"
    again, generated_again = sources.master_key_for(data_dir)
    assert (again, generated_again) == (key, False)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    other, _ = sources.master_key_for(tmp_path / "other")
    assert other != key


def test_master_key_file_written_by_hand_is_used(tmp_path):
    (tmp_path / "master.key").write_text("  handmade\n")
    assert sources.master_key_for(tmp_path) == ("handmade", False)
