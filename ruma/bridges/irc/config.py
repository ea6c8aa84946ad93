"""The IRC bridge's configuration: ``bridges: irc:`` in ``homeserver.yaml``.

::

    bridges:
      irc:
        enabled: true
        bot_localpart: ircbot              # the bridge bot, @ircbot:server
        user_prefix: irc_                  # namespace of the virtual users and aliases
        netsplit_window: 60                # seconds a "*.net *.split" QUIT may be undone
        idle_timeout: 86400                # disconnect a puppet idle this long (0: never)
        networks:
          libera:
            host: irc.libera.chat
            port: 6697
            tls: true                      # the server's certificate is checked
            tls_verify: true
            password: null                 # server PASS
            sasl: {username: bridge, password: secret}   # for the bot connection
            bot_nick: RumaBridge
            nick_template: "{displayname}[m]"
            user_template: "@irc_{network}_{nick}:{server}"
            alias_template: "#irc_{network}_{channel}:{server}"
            channels: {"#ruma": "!roomid:server"}  # or {"#ruma": {}} to create the room
            allowed_users: ["@*:example.org"]  # globs; empty: every local user
            rate: 2                        # lines per second per connection, after…
            burst: 10                      # …a burst of this many
            max_nick_length: 30

Errors name the file and field (``homeserver.yaml: bridges.irc.networks.libera.port: must be
an integer 1-65535``). Pure: parsing only.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ruma.config import ConfigError, ConfigReader

__all__ = ["IrcBridgeConfig", "NetworkConfig", "parse_irc_config"]

_NETWORK_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


@dataclass(frozen=True, slots=True)
class NetworkConfig:
    name: str
    host: str
    port: int
    server_name: str
    tls: bool = False
    tls_verify: bool = True
    password: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    bot_nick: str = "RumaBridge"
    nick_template: str = "{displayname}[m]"
    user_template: str = "@irc_{network}_{nick}:{server}"
    alias_template: str = "#irc_{network}_{channel}:{server}"
    channels: Mapping[str, str | None] = field(default_factory=lambda: MappingProxyType({}))
    allowed_users: tuple[str, ...] = ()
    rate: float = 2.0
    burst: int = 10
    max_nick_length: int = 30
    ping_interval: float = 60.0
    ping_timeout: float = 180.0

    def user_id(self, localpart_nick: str) -> str:
        return self.user_template.format(
            network=self.name, nick=localpart_nick, server=self.server_name
        )

    def alias(self, channel: str) -> str:
        return self.alias_template.format(
            network=self.name, channel=channel.lstrip("#&").lower(), server=self.server_name
        )

    def alias_pattern(self) -> re.Pattern[str]:
        """Matches this network's aliases; group ``channel`` is the channel without ``#``."""
        parts = re.split(r"(\{network\}|\{channel\}|\{server\})", self.alias_template)
        regex = ""
        for part in parts:
            if part == "{network}":
                regex += re.escape(self.name)
            elif part == "{channel}":
                regex += r"(?P<channel>[^:\s]+)"
            elif part == "{server}":
                regex += re.escape(self.server_name)
            else:
                regex += re.escape(part)
        return re.compile(regex)

    def user_pattern(self) -> re.Pattern[str]:
        """Matches this network's virtual users; group ``nick`` is the escaped nick."""
        parts = re.split(r"(\{network\}|\{nick\}|\{server\})", self.user_template)
        regex = ""
        for part in parts:
            if part == "{network}":
                regex += re.escape(self.name)
            elif part == "{nick}":
                regex += r"(?P<nick>[^:]+)"
            elif part == "{server}":
                regex += re.escape(self.server_name)
            else:
                regex += re.escape(part)
        return re.compile(regex)

    def allows(self, user_id: str) -> bool:
        if not self.allowed_users:
            return user_id.endswith(":" + self.server_name)
        return any(fnmatch.fnmatchcase(user_id, glob) for glob in self.allowed_users)


@dataclass(frozen=True, slots=True)
class IrcBridgeConfig:
    server_name: str
    networks: Mapping[str, NetworkConfig]
    bot_localpart: str = "ircbot"
    user_prefix: str = "irc_"
    netsplit_window: float = 60.0
    idle_timeout: float = 0.0
    media_base_url: str = ""

    @property
    def bot_user_id(self) -> str:
        return f"@{self.bot_localpart}:{self.server_name}"


def _server_name_regex(server_name: str) -> str:
    return re.escape(server_name)


def parse_irc_config(
    r: ConfigReader, server_name: str, public_baseurl: str | None = None
) -> IrcBridgeConfig:
    """Parse the ``bridges.irc`` section read by ``r`` (``ConfigError`` naming the field)."""
    prefix = r.get_str("user_prefix", "irc_") or "irc_"
    if not re.fullmatch(r"[a-z0-9._=/-]+", prefix):
        raise r.error("user_prefix", "must be lower-case letters, digits or ._=-/")
    bot = r.get_str("bot_localpart", "ircbot") or "ircbot"
    if not re.fullmatch(r"[a-z0-9._=/-]+", bot):
        raise r.error("bot_localpart", "must be a valid user ID localpart")
    if bot.startswith(prefix):
        raise r.error("bot_localpart", f"must not start with user_prefix {prefix!r}")
    window = r.get_number("netsplit_window", 60.0)
    if window < 0:
        raise r.error("netsplit_window", "must be 0 or more seconds")
    idle = r.get_number("idle_timeout", 0.0)
    if idle < 0:
        raise r.error("idle_timeout", "must be 0 (never) or more seconds")
    nr = r.sub("networks")
    if not nr.data:
        raise r.error("networks", "needs at least one network")
    networks: dict[str, NetworkConfig] = {}
    for name in nr.data:
        if not isinstance(name, str) or not _NETWORK_NAME.fullmatch(name):
            raise nr.error(str(name), "network names are lower-case letters, digits and ._-")
        networks[name] = _network(nr.sub(name), name, server_name, prefix)
    base = (public_baseurl or f"https://{server_name}").rstrip("/")
    return IrcBridgeConfig(
        server_name=server_name,
        networks=MappingProxyType(networks),
        bot_localpart=bot,
        user_prefix=prefix,
        netsplit_window=window,
        idle_timeout=idle,
        media_base_url=base,
    )


def _network(r: ConfigReader, name: str, server_name: str, prefix: str) -> NetworkConfig:
    host = r.required_str("host")
    tls = r.get_bool("tls", False)
    port = r.get_int("port", 6697 if tls else 6667, minimum=1, maximum=65535)
    sasl = r.sub("sasl")
    sasl_user = sasl.get_str("username")
    sasl_password = sasl.get_str("password")
    if (sasl_user is None) != (sasl_password is None) and sasl.data:
        raise r.error("sasl", "needs both username and password")
    nick_template = r.get_str("nick_template", "{displayname}[m]") or ""
    if "{displayname}" not in nick_template and "{localpart}" not in nick_template:
        raise r.error("nick_template", "must contain {displayname} or {localpart}")
    user_template = r.get_str("user_template", "@" + prefix + "{network}_{nick}:{server}") or ""
    if "{nick}" not in user_template:
        raise r.error("user_template", "must contain {nick}")
    alias_template = r.get_str("alias_template", "#" + prefix + "{network}_{channel}:{server}")
    assert alias_template is not None
    if "{channel}" not in alias_template:
        raise r.error("alias_template", "must contain {channel}")
    for key, template in (("user_template", user_template), ("alias_template", alias_template)):
        try:
            template.format(network=name, nick="x", channel="x", server=server_name)
        except (KeyError, IndexError, ValueError) as e:
            raise r.error(key, f"unknown placeholder or bad braces ({e})") from None
    user_check = user_template.format(network=name, nick="x", server=server_name)
    if not user_check.startswith("@" + prefix) or not user_check.endswith(":" + server_name):
        raise r.error("user_template", f"must give @{prefix}…:{server_name} user IDs")
    alias_check = alias_template.format(network=name, channel="x", server=server_name)
    if not alias_check.startswith("#" + prefix) or not alias_check.endswith(":" + server_name):
        raise r.error("alias_template", f"must give #{prefix}…:{server_name} aliases")
    channels: dict[str, str | None] = {}
    cr = r.sub("channels")
    for channel, target in cr.data.items():
        if not isinstance(channel, str) or not channel or channel[0] not in "#&+!":
            raise cr.error(str(channel), "channel names start with #, &, + or !")
        if target is None or (isinstance(target, Mapping) and not target):
            channels[channel] = None
        elif isinstance(target, str) and target.startswith("!"):
            channels[channel] = target
        elif isinstance(target, Mapping):
            room = cr.sub(channel).get_str("room_id")
            if room is not None and not room.startswith("!"):
                raise cr.sub(channel).error("room_id", "must be a room ID (!…)")
            channels[channel] = room
        else:
            raise cr.error(channel, "must be a room ID, or {} to create the room")
    allowed = tuple(r.get_str_list("allowed_users"))
    rate = r.get_number("rate", 2.0, positive=True)
    burst = r.get_int("burst", 10, minimum=1)
    nicklen = r.get_int("max_nick_length", 30, minimum=9, maximum=200)
    bot_nick = r.get_str("bot_nick", "RumaBridge") or "RumaBridge"
    try:
        return NetworkConfig(
            name=name,
            host=host,
            port=port,
            server_name=server_name,
            tls=tls,
            tls_verify=r.get_bool("tls_verify", True),
            password=r.get_str("password"),
            sasl_username=sasl_user,
            sasl_password=sasl_password,
            bot_nick=bot_nick,
            nick_template=nick_template,
            user_template=user_template,
            alias_template=alias_template,
            channels=MappingProxyType(channels),
            allowed_users=allowed,
            rate=rate,
            burst=burst,
            max_nick_length=nicklen,
            ping_interval=r.get_number("ping_interval", 60.0, positive=True),
            ping_timeout=r.get_number("ping_timeout", 180.0, positive=True),
        )
    except ConfigError:
        raise
