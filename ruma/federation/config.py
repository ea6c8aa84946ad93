"""The federation keys of ``homeserver.yaml`` (Synapse's names where the concept is the same).

```yaml
federation_verify_certificates: true
federation_custom_ca_list: [/etc/ruma/private-ca.pem]   # replaces the system CAs
ip_range_blacklist: [...]        # outbound requests never go there (private ranges default)
ip_range_whitelist: [...]        # ... unless listed here
federation_domain_whitelist: [a.example, b.example]     # absent: federate with anyone
trusted_key_servers:
  - server_name: matrix.org
    verify_keys: {"ed25519:auto": "Noi6WqcDj0QmPxCNQqgezwTlBKrfqehY1u2FyWP9uYw"}
serve_server_wellknown: false    # answer /.well-known/matrix/server on the client listener
```
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field

from ruma.config import ConfigError, ConfigReader, HomeserverConfig
from ruma.outbound_http import DEFAULT_IP_RANGE_DENYLIST
from ruma.protocol.ids import is_valid_server_name


@dataclass(frozen=True, slots=True)
class TrustedKeyServerConfig:
    server_name: str
    verify_keys: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FederationConfig:
    verify_certificates: bool = True
    custom_ca_pems: tuple[bytes, ...] = ()
    ip_range_blacklist: tuple[str, ...] = DEFAULT_IP_RANGE_DENYLIST
    ip_range_whitelist: tuple[str, ...] = ()
    domain_whitelist: frozenset[str] | None = None
    trusted_key_servers: tuple[TrustedKeyServerConfig, ...] = ()
    serve_server_wellknown: bool = False


def parse_federation_config(config: HomeserverConfig) -> FederationConfig:
    filename = os.path.basename(config.config_path) if config.config_path else "config"
    base = os.path.dirname(os.path.abspath(config.config_path)) if config.config_path else "."
    r = ConfigReader(filename, "", config.raw, base)

    pems: list[bytes] = []
    for i, path in enumerate(r.get_str_list("federation_custom_ca_list")):
        full = os.path.normpath(os.path.join(base, os.path.expanduser(path)))
        try:
            with open(full, "rb") as f:
                data = f.read()
        except OSError as e:
            raise ConfigError(f"{filename}: federation_custom_ca_list[{i}]: cannot read "
                              f"{full}: {e.strerror}") from None
        if b"-----BEGIN CERTIFICATE-----" not in data:
            raise ConfigError(f"{filename}: federation_custom_ca_list[{i}]: {full} holds no "
                              "PEM certificate")
        pems.extend(_pem_blocks(data))

    def ranges(key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        if not r.has(key):
            return default
        values = r.get_str_list(key)
        for i, v in enumerate(values):
            try:
                ipaddress.ip_network(v, strict=False)
            except ValueError:
                raise ConfigError(f"{filename}: {key}[{i}]: {v!r} is not an IP range") from None
        return tuple(values)

    whitelist = None
    if r.has("federation_domain_whitelist"):
        names = r.get_str_list("federation_domain_whitelist")
        for i, n in enumerate(names):
            if not is_valid_server_name(n):
                raise ConfigError(f"{filename}: federation_domain_whitelist[{i}]: {n!r} is not "
                                  "a server name")
        whitelist = frozenset(names) | {config.server_name}

    trusted = []
    for i, entry in enumerate(r.get_list("trusted_key_servers")):
        sub = r.sub(f"trusted_key_servers[{i}]", entry) if isinstance(entry, dict) else None
        if sub is None:
            raise ConfigError(f"{filename}: trusted_key_servers[{i}]: must be a mapping")
        name = sub.required_str("server_name")
        if not is_valid_server_name(name):
            raise sub.error("server_name", f"{name!r} is not a server name")
        keys = sub.sub("verify_keys")
        verify_keys: dict[str, str] = {}
        for key_id, value in keys.data.items():
            if not isinstance(key_id, str) or not key_id.startswith("ed25519:") \
                    or not isinstance(value, str):
                raise keys.error(str(key_id), "must map ed25519:<version> to a base64 key")
            verify_keys[key_id] = value
        trusted.append(TrustedKeyServerConfig(name, verify_keys))

    return FederationConfig(
        verify_certificates=r.get_bool("federation_verify_certificates", True),
        custom_ca_pems=tuple(pems),
        ip_range_blacklist=ranges("ip_range_blacklist", DEFAULT_IP_RANGE_DENYLIST),
        ip_range_whitelist=ranges("ip_range_whitelist", ()),
        domain_whitelist=whitelist,
        trusted_key_servers=tuple(trusted),
        serve_server_wellknown=r.get_bool("serve_server_wellknown", False),
    )


def _pem_blocks(data: bytes) -> list[bytes]:
    end = b"-----END CERTIFICATE-----"
    blocks = []
    for chunk in data.split(end)[:-1]:
        start = chunk.find(b"-----BEGIN CERTIFICATE-----")
        if start != -1:
            blocks.append(chunk[start:] + end + b"\n")
    return blocks
