"""The homeserver configuration: frozen types, parsed and validated once at startup.

:func:`load_config` reads a ``homeserver.yaml`` (Synapse-familiar key names), checks every
field it knows and raises :class:`ConfigError` naming the file and the field, e.g.
``homeserver.yaml: listeners[0].port: must be an integer 1-65535``. Sections that later
parts of Ruma own (federation, bridges, ...) stay available unparsed in
``HomeserverConfig.raw`` for those parts to validate with :class:`ConfigReader`.

Relative paths in the file are resolved against the directory that holds the file, so a
config works the same whatever directory ``twistd`` is started from.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Final, Literal

import yaml

from ruma.protocol.ids import ServerName
from ruma.protocol.room_versions import DEFAULT_ROOM_VERSION_ID, KNOWN_ROOM_VERSIONS


class ConfigError(Exception):
    """A configuration problem, worded for the operator: ``file: field: what is wrong``."""


RESOURCE_NAMES: Final = frozenset({"client", "federation", "keys", "media", "metrics"})
DATABASE_ENGINES: Final = ("sqlite3", "psycopg2", "psycopg")


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    port: int
    bind_addresses: tuple[str, ...] = ("::", "0.0.0.0")
    type: Literal["http"] = "http"
    tls: bool = False
    resources: tuple[str, ...] = ("client",)
    x_forwarded: bool = False


@dataclass(frozen=True, slots=True)
class DatabaseConfig:
    name: Literal["sqlite3", "psycopg2", "psycopg"]
    args: Mapping[str, Any]

    @property
    def is_sqlite(self) -> bool:
        return self.name == "sqlite3"


@dataclass(frozen=True, slots=True)
class RateLimit:
    per_second: float
    burst_count: float


@dataclass(frozen=True, slots=True)
class LoginRateLimits:
    address: RateLimit = RateLimit(0.003, 5)
    account: RateLimit = RateLimit(0.003, 5)
    failed_attempts: RateLimit = RateLimit(0.17, 3)


@dataclass(frozen=True, slots=True)
class RegistrationToken:
    """A token from ``registration_tokens``; ``uses_allowed`` None means unlimited."""

    token: str
    uses_allowed: int | None = None
    expiry_time: int | None = None  # milliseconds since the epoch


@dataclass(frozen=True, slots=True)
class HomeserverConfig:
    server_name: str
    data_dir: str
    signing_key_path: str
    database: DatabaseConfig
    listeners: tuple[ListenerConfig, ...] = ()
    public_baseurl: str | None = None
    config_path: str | None = None
    tls_certificate_path: str | None = None
    tls_private_key_path: str | None = None
    enable_registration: bool = False
    enable_registration_without_verification: bool = False
    registration_requires_token: bool = False
    registration_tokens: tuple[RegistrationToken, ...] = ()
    registration_shared_secret: str | None = None
    allow_guest_access: bool = False
    bcrypt_rounds: int = 12
    default_room_version: str = DEFAULT_ROOM_VERSION_ID
    rc_message: RateLimit = RateLimit(0.2, 10)
    rc_login: LoginRateLimits = LoginRateLimits()
    rc_registration: RateLimit = RateLimit(0.17, 3)
    app_service_config_files: tuple[str, ...] = ()
    max_upload_size: int = 50 * 1024 * 1024
    presence_enabled: bool = True
    pid_file: str | None = None
    raw: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def with_changes(self, **changes: Any) -> HomeserverConfig:
        return replace(self, **changes)


class ConfigReader:
    """Typed access to one mapping of the config, producing ``file: field: ...`` errors.

    Later parts of Ruma use it for their own sections::

        r = ConfigReader.for_section(config, "federation")
        timeout = r.get_number("timeout", default=60)
    """

    def __init__(self, filename: str, path: str, data: Mapping[str, Any], base_dir: str) -> None:
        self.filename = filename
        self.path = path
        self.data = data
        self.base_dir = base_dir

    @classmethod
    def for_section(cls, config: HomeserverConfig, key: str) -> ConfigReader:
        filename = os.path.basename(config.config_path) if config.config_path else "config"
        base = os.path.dirname(os.path.abspath(config.config_path)) if config.config_path else "."
        value = config.raw.get(key)
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            raise ConfigError(f"{filename}: {key}: must be a mapping")
        return cls(filename, key, value, base)

    def where(self, key: str | int) -> str:
        if isinstance(key, int):
            return f"{self.path}[{key}]"
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str | int, msg: str) -> ConfigError:
        return ConfigError(f"{self.filename}: {self.where(key)}: {msg}")

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def _get(self, key: str, required: bool) -> Any:
        value = self.data.get(key)
        if value is None and required:
            raise self.error(key, "is required")
        return value

    def get_str(self, key: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self._get(key, required)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self.error(key, "must be a string")
        return value

    def required_str(self, key: str) -> str:
        value = self.get_str(key, required=True)
        assert value is not None
        return value

    def get_bool(self, key: str, default: bool) -> bool:
        value = self._get(key, False)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(key, "must be true or false")
        return value

    def get_int(
        self, key: str, default: int, *, minimum: int | None = None, maximum: int | None = None
    ) -> int:
        value = self._get(key, False)
        if value is None:
            return default
        return self.check_int(key, value, minimum, maximum)

    def check_int(
        self, key: str | int, value: Any, minimum: int | None, maximum: int | None
    ) -> int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        if ok and minimum is not None and value < minimum:
            ok = False
        if ok and maximum is not None and value > maximum:
            ok = False
        if not ok:
            if minimum is not None and maximum is not None:
                raise self.error(key, f"must be an integer {minimum}-{maximum}")
            if minimum is not None:
                raise self.error(key, f"must be an integer >= {minimum}")
            raise self.error(key, "must be an integer")
        return int(value)

    def get_number(self, key: str, default: float, *, positive: bool = False) -> float:
        value = self._get(key, False)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, "must be a number")
        if positive and not value > 0:
            raise self.error(key, "must be greater than 0")
        return float(value)

    def path_value(self, key: str, default: str | None = None) -> str | None:
        """A filesystem path, made absolute against the config file's directory."""
        value = self.get_str(key)
        if value is None:
            return default
        return os.path.normpath(os.path.join(self.base_dir, os.path.expanduser(value)))

    def get_list(self, key: str, *, required: bool = False) -> list[Any]:
        value = self._get(key, required)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(key, "must be a list")
        return value

    def get_str_list(self, key: str) -> list[str]:
        values = self.get_list(key)
        for i, v in enumerate(values):
            if not isinstance(v, str):
                raise ConfigError(f"{self.filename}: {self.where(key)}[{i}]: must be a string")
        return values

    def sub(self, key: str | int, value: Any = None) -> ConfigReader:
        """A reader over the mapping at ``key`` (``{}`` when absent)."""
        if value is None and isinstance(key, str):
            value = self.data.get(key)
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            raise self.error(key, "must be a mapping")
        return ConfigReader(self.filename, self.where(key), value, self.base_dir)


_SIZE = re.compile(r"^\s*(\d+)\s*([kKmMgG]?)[bB]?\s*$")


def _parse_size(r: ConfigReader, key: str, default: int) -> int:
    value = r.data.get(key)
    if value is None:
        return default
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        m = _SIZE.match(value)
        if m:
            mult = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[m.group(2).lower()]
            return int(m.group(1)) * mult
    raise r.error(key, "must be a size in bytes, like 52428800 or \"50M\"")


def _rate(r: ConfigReader, key: str, default: RateLimit) -> RateLimit:
    sub = r.sub(key)
    return RateLimit(
        per_second=sub.get_number("per_second", default.per_second, positive=True),
        burst_count=sub.get_number("burst_count", default.burst_count, positive=True),
    )


def _listener(r: ConfigReader, index: int, value: Any, has_tls_files: bool) -> ListenerConfig:
    lr = ConfigReader(
        r.filename, f"listeners[{index}]", _mapping(r, f"listeners[{index}]", value), r.base_dir
    )
    port = lr.data.get("port")
    if port is None:
        raise lr.error("port", "is required")
    # Port 0 (any free port) is accepted for tests, but not advertised in the message.
    if not (port == 0 and isinstance(port, int) and not isinstance(port, bool)):
        port = lr.check_int("port", port, 1, 65535)
    bind = lr.get_str_list("bind_addresses")
    if lr.has("bind_address"):  # Synapse's older singular spelling
        bind.append(lr.required_str("bind_address"))
    ltype = lr.get_str("type", "http")
    if ltype != "http":
        raise lr.error("type", f"unsupported listener type {ltype!r} (only 'http')")
    tls = lr.get_bool("tls", False)
    if tls and not has_tls_files:
        raise lr.error(
            "tls", "needs tls_certificate_path and tls_private_key_path at the top level"
        )
    names: list[str] = []
    for i, res in enumerate(lr.get_list("resources")):
        rr = ConfigReader(
            lr.filename,
            f"{lr.where('resources')}[{i}]",
            _mapping(lr, f"resources[{i}]", res),
            lr.base_dir,
        )
        for n in rr.get_str_list("names"):
            if n not in RESOURCE_NAMES:
                raise rr.error(
                    "names", f"unknown resource {n!r} (known: {', '.join(sorted(RESOURCE_NAMES))})"
                )
            if n not in names:
                names.append(n)
    if not names:
        raise lr.error("resources", "must name at least one resource, e.g. [{names: [client]}]")
    return ListenerConfig(
        port=port,
        bind_addresses=tuple(bind) or ("::", "0.0.0.0"),
        type="http",
        tls=tls,
        resources=tuple(names),
        x_forwarded=lr.get_bool("x_forwarded", False),
    )


def _mapping(r: ConfigReader, where: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        full = f"{r.path}.{where}" if r.path else where
        raise ConfigError(f"{r.filename}: {full}: must be a mapping")
    return value


def _database(r: ConfigReader, data_dir: str) -> DatabaseConfig:
    dr = r.sub("database")
    name = dr.get_str("name", "sqlite3")
    if name not in DATABASE_ENGINES:
        raise dr.error("name", f"must be one of {', '.join(DATABASE_ENGINES)}")
    args = dict(dr.sub("args").data)
    ar = dr.sub("args")
    if name == "sqlite3":
        db = ar.path_value("database") or os.path.join(data_dir, "homeserver.db")
        args["database"] = db
    else:
        for k in ("cp_min", "cp_max"):
            if k in args:
                ar.check_int(k, args[k], 1, 1000)
        if "port" in args:
            ar.check_int("port", args["port"], 1, 65535)
        for k in ("user", "password", "database", "dbname", "host"):
            if k in args:
                ar.get_str(k)
    return DatabaseConfig(name=name, args=MappingProxyType(args))  # type: ignore[arg-type]


def _registration_tokens(r: ConfigReader) -> tuple[RegistrationToken, ...]:
    out = []
    for i, v in enumerate(r.get_list("registration_tokens")):
        if isinstance(v, str):
            out.append(RegistrationToken(v))
            continue
        where = f"registration_tokens[{i}]"
        tr = ConfigReader(r.filename, where, _mapping(r, where, v), r.base_dir)
        token = tr.required_str("token")
        if not re.fullmatch(r"[A-Za-z0-9._~-]{1,64}", token):
            raise tr.error("token", "must be 1-64 characters of A-Z a-z 0-9 . _ ~ -")
        uses = tr.data.get("uses_allowed")
        expiry = tr.data.get("expiry_time")
        out.append(
            RegistrationToken(
                token,
                None if uses is None else tr.check_int("uses_allowed", uses, 0, None),
                None if expiry is None else tr.check_int("expiry_time", expiry, 0, None),
            )
        )
    return tuple(out)


def parse_config(
    data: Any, *, filename: str = "homeserver.yaml", base_dir: str = "."
) -> HomeserverConfig:
    """Validate an already-loaded YAML document (see :func:`load_config`)."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{filename}: the file must contain a YAML mapping of settings")
    r = ConfigReader(filename, "", data, base_dir)

    server_name = r.required_str("server_name")
    try:
        ServerName.parse(server_name, strict=True)
    except ValueError as e:
        raise r.error("server_name", f"not a valid server name ({e})") from None

    data_dir = r.path_value("data_dir") or os.path.normpath(base_dir)

    public_baseurl = r.get_str("public_baseurl")
    if public_baseurl is not None:
        if not re.match(r"^https?://[^/\s]+", public_baseurl):
            raise r.error("public_baseurl", "must be an http:// or https:// URL")
        if not public_baseurl.endswith("/"):
            public_baseurl += "/"

    tls_cert = r.path_value("tls_certificate_path")
    tls_key = r.path_value("tls_private_key_path")
    if (tls_cert is None) != (tls_key is None):
        raise r.error(
            "tls_private_key_path" if tls_key is None else "tls_certificate_path",
            "tls_certificate_path and tls_private_key_path must be set together",
        )

    listeners = tuple(
        _listener(r, i, v, tls_cert is not None) for i, v in enumerate(r.get_list("listeners"))
    )

    enable_registration = r.get_bool("enable_registration", False)
    without_verification = r.get_bool("enable_registration_without_verification", False)
    requires_token = r.get_bool("registration_requires_token", False)
    tokens = _registration_tokens(r)
    if enable_registration and not (without_verification or requires_token):
        raise r.error(
            "enable_registration",
            "open registration without any verification lets anyone create accounts; also set "
            "registration_requires_token: true, or enable_registration_without_verification: "
            "true if that is really what you want",
        )
    if requires_token and not tokens:
        raise r.error("registration_tokens", "registration_requires_token needs at least one token")

    default_room_version = r.get_str("default_room_version", DEFAULT_ROOM_VERSION_ID)
    assert default_room_version is not None
    if default_room_version not in KNOWN_ROOM_VERSIONS:
        raise r.error(
            "default_room_version",
            f"unknown room version {default_room_version!r} (known: "
            f"{', '.join(KNOWN_ROOM_VERSIONS)})",
        )

    login = r.sub("rc_login")
    defaults = LoginRateLimits()
    rc_login = LoginRateLimits(
        address=_rate(login, "address", defaults.address),
        account=_rate(login, "account", defaults.account),
        failed_attempts=_rate(login, "failed_attempts", defaults.failed_attempts),
    )

    shared_secret = r.get_str("registration_shared_secret")
    if shared_secret is not None and not shared_secret:
        raise r.error("registration_shared_secret", "must not be empty")

    app_services = tuple(
        os.path.normpath(os.path.join(base_dir, os.path.expanduser(p)))
        for p in r.get_str_list("app_service_config_files")
    )

    return HomeserverConfig(
        server_name=server_name,
        data_dir=data_dir,
        signing_key_path=r.path_value("signing_key_path")
        or os.path.join(data_dir, f"{server_name.replace(':', '_')}.signing.key"),
        database=_database(r, data_dir),
        listeners=listeners,
        public_baseurl=public_baseurl,
        tls_certificate_path=tls_cert,
        tls_private_key_path=tls_key,
        enable_registration=enable_registration,
        enable_registration_without_verification=without_verification,
        registration_requires_token=requires_token,
        registration_tokens=tokens,
        registration_shared_secret=shared_secret,
        allow_guest_access=r.get_bool("allow_guest_access", False),
        bcrypt_rounds=r.get_int("bcrypt_rounds", 12, minimum=4, maximum=31),
        default_room_version=default_room_version,
        rc_message=_rate(r, "rc_message", RateLimit(0.2, 10)),
        rc_login=rc_login,
        rc_registration=_rate(r, "rc_registration", RateLimit(0.17, 3)),
        app_service_config_files=app_services,
        max_upload_size=_parse_size(r, "max_upload_size", 50 * 1024 * 1024),
        presence_enabled=r.sub("presence").get_bool("enabled", True),
        pid_file=r.path_value("pid_file"),
        raw=MappingProxyType(dict(data)),
    )


def load_config(path: str) -> HomeserverConfig:
    """Read and validate ``path``; every problem is a :class:`ConfigError` naming file+field."""
    filename = os.path.basename(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config file: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{filename}: not valid YAML: {e}") from None
    config = parse_config(
        data, filename=filename, base_dir=os.path.dirname(os.path.abspath(path))
    )
    return replace(config, config_path=os.path.abspath(path))


def config_for_tests(server_name: str, data_dir: str, **overrides: Any) -> HomeserverConfig:
    """A valid config without a file (for the test harness), with overrides applied raw."""
    data: dict[str, Any] = {
        "server_name": server_name,
        "data_dir": data_dir,
        "enable_registration": True,
        "enable_registration_without_verification": True,
        "bcrypt_rounds": 4,
        "registration_shared_secret": "test-shared-secret",
    }
    data.update(overrides)
    return parse_config(data, filename="test config", base_dir=data_dir)


def random_secret() -> str:
    return secrets.token_urlsafe(32)


def generate_config(server_name: str, data_dir: str) -> str:
    """A commented ``homeserver.yaml`` for ``server_name`` keeping its data in ``data_dir``."""
    try:
        ServerName.parse(server_name, strict=True)
    except ValueError as e:
        raise ConfigError(f"--server-name: not a valid server name ({e})") from None
    return _TEMPLATE.format(
        server_name=_yaml_str(server_name),
        data_dir=_yaml_str(data_dir),
        secret=_yaml_str(random_secret()),
        key_file=_yaml_str(
            os.path.join(data_dir, f"{server_name.replace(':', '_')}.signing.key")
        ),
        db_file=_yaml_str(os.path.join(data_dir, "homeserver.db")),
        data_dir_pid=_yaml_str(os.path.join(data_dir, "homeserver.pid")),
    )


def _yaml_str(s: str) -> str:
    out: str = yaml.safe_dump(s, default_style='"').strip()
    return out.removesuffix("\n...").strip()


_TEMPLATE = """\
# Ruma homeserver configuration. Every key is described in docs/configure.md.
# Relative paths are resolved against the directory holding this file.

# The domain in your users' IDs (@alice:SERVER_NAME) and room aliases. It cannot be
# changed once users and rooms exist.
server_name: {server_name}

# Where Ruma keeps its SQLite database, signing key and media.
data_dir: {data_dir}

# The URL clients use to reach this server (served as /.well-known/matrix/client when set).
# public_baseurl: "https://matrix.example.com/"

# The server's ed25519 signing key (created by `ruma generate-config` or on first start).
# Keep it secret and back it up: other servers remember it.
signing_key_path: {key_file}

# Where Ruma listens. `resources` picks which APIs a port serves:
# client (/_matrix/client), federation (/_matrix/federation), keys (/_matrix/key), media.
# Put a TLS-terminating reverse proxy in front, or set tls: true with the two
# tls_*_path keys below. x_forwarded: true trusts X-Forwarded-For from the proxy.
listeners:
  - port: 8008
    bind_addresses: ["127.0.0.1", "::1"]
    type: http
    tls: false
    x_forwarded: false
    resources:
      - names: [client, federation, keys]

# tls_certificate_path: /etc/ruma/fullchain.pem
# tls_private_key_path: /etc/ruma/privkey.pem

# The database. SQLite needs nothing else; for PostgreSQL use
#   name: psycopg2
#   args: {{user: ruma, password: secret, database: ruma, host: localhost, cp_min: 1, cp_max: 10}}
database:
  name: sqlite3
  args:
    database: {db_file}

# Self-service account creation. Off by default: create accounts with `ruma register-user`.
# Turning it on requires either registration tokens or explicitly accepting unverified
# sign-ups with enable_registration_without_verification.
enable_registration: false
enable_registration_without_verification: false
registration_requires_token: false
# registration_tokens:
#   - token: "invite-only-2024"
#     uses_allowed: 10        # omit for unlimited
#     expiry_time: null       # milliseconds since the epoch

# Lets admin tools register users through /_synapse/admin/v1/register. Keep it secret.
registration_shared_secret: {secret}

# Guest accounts (kind=guest registration). Off by default.
allow_guest_access: false

# The room version for new rooms.
default_room_version: "12"

# Rate limits: `per_second` actions refill the bucket, `burst_count` is its size.
rc_message:
  per_second: 0.2
  burst_count: 10
rc_registration:
  per_second: 0.17
  burst_count: 3
rc_login:
  address: {{per_second: 0.003, burst_count: 5}}
  account: {{per_second: 0.003, burst_count: 5}}
  failed_attempts: {{per_second: 0.17, burst_count: 3}}

# Application service registration files.
app_service_config_files: []

# Largest media upload accepted.
max_upload_size: 50M

presence:
  enabled: true

# Cost of password hashing (bcrypt log rounds).
bcrypt_rounds: 12

# Where to write the process id while running (twistd also writes its own pid file).
# pid_file: {data_dir_pid}
"""
