# The one module that touches twisted.words' untyped IRCClient (STYLE.md: "touched by one
# adapter module, with a narrow mypy override there"):
# mypy: disable-error-code="misc,no-untyped-call,no-any-return,attr-defined,assignment,override"
"""A thin typed adapter over :class:`twisted.words.protocols.irc.IRCClient`.

Twisted's client parses lines and dispatches ``irc_<COMMAND>`` methods; this adapter adds what
real networks need and IRCClient lacks, and turns what the bridge cares about into typed
:data:`IrcEvent` values handed to one ``on_event`` callable:

- decoding that never drops the connection: UTF-8, else CP1252, else Latin-1;
- IRCv3 message tags (``@time=…;msgid=… :prefix CMD``), parsed and unescaped;
- CAP negotiation (``CAP LS 302`` / ``REQ`` / ``END``) for ``server-time``, ``message-tags``,
  ``echo-message`` (and whatever else is asked for) and SASL PLAIN;
- flood control: a token bucket on the *injected* clock (IRCClient's ``lineRate`` uses the
  global reactor, so it is never set here);
- keepalive: a PING when the server has been silent for ``ping_interval`` seconds, and the
  connection aborted when it stays silent for ``ping_timeout``.

Everything else (PING replies, ISUPPORT, CTCP framing, registration) is IRCClient's.
"""

from __future__ import annotations

import base64
import calendar
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import connectionDone
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.words.protocols import irc

__all__ = [
    "CapsNegotiated",
    "ConnectionSettings",
    "Disconnected",
    "IrcEvent",
    "IrcProtocol",
    "Joined",
    "Kicked",
    "Message",
    "ModeChanged",
    "Names",
    "NickChanged",
    "NickRejected",
    "Numeric",
    "Parted",
    "Quit",
    "Registered",
    "Source",
    "TokenBucket",
    "Topic",
    "decode_line",
    "parse_tags",
]

DEFAULT_CAPS = ("server-time", "message-tags", "echo-message", "multi-prefix")


# -- values ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Source:
    """Who a message came from: ``nick!user@host`` (user and host may be empty)."""

    nick: str
    user: str = ""
    host: str = ""

    @classmethod
    def parse(cls, prefix: str | None) -> Source:
        prefix = prefix or ""
        nick, _, rest = prefix.partition("!")
        user, _, host = rest.partition("@")
        if not rest and "@" in nick:
            nick, _, host = nick.partition("@")
        return cls(nick, user, host)


@dataclass(frozen=True, slots=True)
class Registered:
    nick: str


@dataclass(frozen=True, slots=True)
class CapsNegotiated:
    caps: frozenset[str]
    sasl_ok: bool | None  # None: SASL not attempted


@dataclass(frozen=True, slots=True)
class Message:
    """PRIVMSG, NOTICE or CTCP ACTION; ``echo`` when it is our own (echo-message)."""

    kind: str  # "privmsg" | "notice" | "action"
    source: Source
    target: str
    text: str
    tags: Mapping[str, str] = field(default_factory=dict)
    echo: bool = False

    @property
    def msgid(self) -> str | None:
        return self.tags.get("msgid")

    @property
    def time_ms(self) -> int | None:
        return server_time_ms(self.tags.get("time"))


@dataclass(frozen=True, slots=True)
class Joined:
    channel: str
    source: Source
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Parted:
    channel: str
    source: Source
    reason: str


@dataclass(frozen=True, slots=True)
class Quit:
    source: Source
    reason: str


@dataclass(frozen=True, slots=True)
class Kicked:
    channel: str
    nick: str
    by: Source
    reason: str


@dataclass(frozen=True, slots=True)
class NickChanged:
    old: str
    new: str


@dataclass(frozen=True, slots=True)
class NickRejected:
    """A NICK change after registration was refused (in use, erroneous…)."""

    nick: str
    reason: str


@dataclass(frozen=True, slots=True)
class Topic:
    channel: str
    topic: str
    by: str | None  # None: the topic as found on joining (RPL_TOPIC)


@dataclass(frozen=True, slots=True)
class ModeChanged:
    channel: str
    by: Source
    changes: tuple[tuple[bool, str, str | None], ...]  # (added, mode letter, argument)


@dataclass(frozen=True, slots=True)
class Names:
    """The complete NAMES list of a channel: nick -> its prefix modes (``"o"``, ``"v"``…)."""

    channel: str
    members: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Numeric:
    """Any other numeric reply (WHOIS, errors…): for the admin room's commands."""

    command: str
    params: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Disconnected:
    reason: str


IrcEvent = (
    Registered | CapsNegotiated | Message | Joined | Parted | Quit | Kicked | NickChanged
    | NickRejected | Topic | ModeChanged | Names | Numeric | Disconnected
)


@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    nickname: str
    username: str
    realname: str
    password: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    caps: tuple[str, ...] = DEFAULT_CAPS
    # Flood control: ``burst`` lines at once, then ``rate`` lines per second.
    rate: float = 2.0
    burst: int = 10
    ping_interval: float = 60.0
    ping_timeout: float = 180.0
    nick_candidates: Callable[[str], list[str]] | None = None


# -- pure helpers ----------------------------------------------------------------------------


def decode_line(raw: bytes) -> str:
    """UTF-8 if it is, else CP1252 (what most non-UTF-8 IRC clients send), else Latin-1."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return raw.decode("cp1252")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


_TAG_UNESCAPE = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}


def _unescape_tag(value: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(value):
        c = value[i]
        if c == "\\" and i + 1 < len(value):
            out.append(_TAG_UNESCAPE.get(value[i + 1], value[i + 1]))
            i += 2
            continue
        if c != "\\":
            out.append(c)
        i += 1
    return "".join(out)


def parse_tags(line: str) -> tuple[dict[str, str], str]:
    """``(tags, rest of the line)`` for a line that may start with ``@tags``."""
    if not line.startswith("@"):
        return {}, line
    raw, _, rest = line[1:].partition(" ")
    tags: dict[str, str] = {}
    for item in raw.split(";"):
        if not item:
            continue
        key, _, value = item.partition("=")
        tags[key] = _unescape_tag(value)
    return tags, rest.lstrip(" ")


def server_time_ms(value: str | None) -> int | None:
    """Milliseconds since the epoch of a ``server-time`` tag (``2024-01-02T03:04:05.678Z``)."""
    if not value:
        return None
    try:
        main, _, frac = value.rstrip("Z").partition(".")
        secs = calendar.timegm(time.strptime(main, "%Y-%m-%dT%H:%M:%S"))
        millis = int((frac + "000")[:3]) if frac else 0
        return secs * 1000 + millis
    except ValueError:
        return None


class TokenBucket:
    """``burst`` tokens, refilled at ``rate`` per second on ``clock``."""

    def __init__(self, clock: IReactorTime, rate: float, burst: int) -> None:
        self._clock = clock
        self.rate = rate
        self.burst = max(1, burst)
        self._tokens = float(self.burst)
        self._at = clock.seconds()

    def _refill(self) -> None:
        now = self._clock.seconds()
        if self.rate > 0:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now

    def take(self) -> bool:
        self._refill()
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    def wait_time(self) -> float:
        """Seconds until the next token (0 if one is there)."""
        self._refill()
        if self._tokens >= 1 or self.rate <= 0:
            return 0.0
        return (1 - self._tokens) / self.rate


# -- the protocol ----------------------------------------------------------------------------


class IrcProtocol(irc.IRCClient):
    """One IRC connection, speaking for one nick."""

    log = Logger()
    performLogin = 0
    heartbeatInterval = None  # our own keepalive, on the injected clock
    lineRate = None  # our own flood control, on the injected clock

    def __init__(
        self,
        clock: IReactorTime,
        settings: ConnectionSettings,
        on_event: Callable[[IrcEvent], None],
    ) -> None:
        self.clock = clock
        self.settings = settings
        self.on_event = on_event
        self.nickname = settings.nickname
        self.username = settings.username
        self.realname = settings.realname
        self.password = settings.password
        self.bucket = TokenBucket(clock, settings.rate, settings.burst)
        self.outgoing: deque[str] = deque()
        self._drain: IDelayedCall | None = None
        self.current_tags: dict[str, str] = {}
        self.enabled_caps: set[str] = set()
        self._offered: dict[str, str] = {}
        self._cap_done = False
        self._sasl_ok: bool | None = None
        self._names: dict[str, dict[str, str]] = {}
        self._last_seen = clock.seconds()
        self._keepalive: LoopingCall | None = None
        self._candidates: list[str] = []
        self.lines_sent = 0
        self.closed = False

    # -- connection ----------------------------------------------------------------------

    def connectionMade(self) -> None:
        irc.IRCClient.connectionMade(self)
        self._last_seen = self.clock.seconds()
        if self.settings.caps or self.settings.sasl_username:
            self.send_now("CAP LS 302")
        else:
            self._cap_done = True
        if self.password:
            self.send_now(f"PASS {self.password}")
        self._attemptedNick = self.nickname
        if self.settings.nick_candidates is not None:
            self._candidates = list(self.settings.nick_candidates(self.nickname))[1:]
        self.send_now(f"NICK {self.nickname}")
        self.send_now(f"USER {self.username} 0 * :{self.realname}")
        self._keepalive = LoopingCall(self._check_alive)
        self._keepalive.clock = self.clock
        self._keepalive.start(max(1.0, self.settings.ping_interval / 2), now=False)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed = True
        if self._keepalive is not None and self._keepalive.running:
            self._keepalive.stop()
        if self._drain is not None and self._drain.active():
            self._drain.cancel()
        self._drain = None
        irc.IRCClient.connectionLost(self, reason)
        self.on_event(Disconnected(reason.getErrorMessage()))

    def _check_alive(self) -> None:
        silent = self.clock.seconds() - self._last_seen
        if silent >= self.settings.ping_timeout:
            self.log.warn("no answer from the IRC server for {secs}s: reconnecting",
                          secs=int(silent))
            if self.transport is not None:
                self.transport.abortConnection()
        elif silent >= self.settings.ping_interval:
            self.send_now(f"PING :ruma-{int(self.clock.seconds())}")

    # -- sending ---------------------------------------------------------------------------

    def send_now(self, line: str) -> None:
        """Send at once (registration, PONG): not subject to flood control."""
        if self.transport is None or self.closed:
            return
        self.lines_sent += 1
        self._reallySendLine(line)

    def sendLine(self, line: str) -> None:  # IRCClient's commands (join, mode…) come here
        self.outgoing.append(line)
        self._pump()

    def _pump(self) -> None:
        if self._drain is not None:
            return
        while self.outgoing:
            if not self.bucket.take():
                self._drain = self.clock.callLater(self.bucket.wait_time(), self._drained)
                return
            self.send_now(self.outgoing.popleft())

    def _drained(self) -> None:
        self._drain = None
        self._pump()

    def say_text(self, kind: str, target: str, text: str) -> None:
        """One line of text (already split to fit) as PRIVMSG, NOTICE or CTCP ACTION."""
        text = text.replace("\r", "").replace("\n", " ").replace("\x00", "")
        if kind == "action":
            self.sendLine(f"PRIVMSG {target} :\x01ACTION {text}\x01")
        elif kind == "notice":
            self.sendLine(f"NOTICE {target} :{text}")
        else:
            self.sendLine(f"PRIVMSG {target} :{text}")

    # -- receiving -------------------------------------------------------------------------

    def lineReceived(self, line: bytes | str) -> None:
        self._last_seen = self.clock.seconds()
        text = decode_line(line) if isinstance(line, bytes) else line
        tags, text = parse_tags(text)
        self.current_tags = tags
        try:
            text = irc.lowDequote(text)
            prefix, command, params = irc.parsemsg(text)
        except (irc.IRCBadMessage, IndexError, ValueError):
            self.log.warn("unparsable IRC line: {line!r}", line=text[:200])
            return
        if command in irc.numeric_to_symbolic:
            command = irc.numeric_to_symbolic[command]
        try:
            self.handleCommand(command, prefix, params)
        finally:
            self.current_tags = {}

    def irc_unknown(self, prefix: str, command: str, params: list[str]) -> None:
        if command.isdigit():
            self.on_event(Numeric(command, tuple(params)))

    def _emit_numeric(self, command: str, params: list[str]) -> None:
        self.on_event(Numeric(command, tuple(params)))

    # WHOIS and other replies the admin room shows.
    def irc_RPL_WHOISUSER(self, prefix: str, params: list[str]) -> None:
        self._emit_numeric("RPL_WHOISUSER", params)

    def irc_RPL_WHOISSERVER(self, prefix: str, params: list[str]) -> None:
        self._emit_numeric("RPL_WHOISSERVER", params)

    def irc_RPL_WHOISCHANNELS(self, prefix: str, params: list[str]) -> None:
        self._emit_numeric("RPL_WHOISCHANNELS", params)

    def irc_RPL_WHOISIDLE(self, prefix: str, params: list[str]) -> None:
        self._emit_numeric("RPL_WHOISIDLE", params)

    def irc_RPL_ENDOFWHOIS(self, prefix: str, params: list[str]) -> None:
        self._emit_numeric("RPL_ENDOFWHOIS", params)

    def irc_ERR_NOSUCHNICK(self, prefix: str, params: list[str]) -> None:
        self._emit_numeric("ERR_NOSUCHNICK", params)

    def irc_ERR_CHANOPRIVSNEEDED(self, prefix: str, params: list[str]) -> None:
        self._emit_numeric("ERR_CHANOPRIVSNEEDED", params)

    # -- capabilities and SASL -----------------------------------------------------------

    def irc_CAP(self, prefix: str, params: list[str]) -> None:
        if len(params) < 3:
            return
        sub = params[1].upper()
        if sub == "LS":
            more = len(params) > 3 and params[2] == "*"
            for item in params[-1].split():
                name, _, value = item.partition("=")
                self._offered[name] = value
            if more or self._cap_done:
                return
            wanted = [c for c in self.settings.caps if c in self._offered]
            if self.settings.sasl_username and "sasl" in self._offered:
                mechs = self._offered["sasl"]
                if not mechs or "PLAIN" in mechs.upper().split(","):
                    wanted.append("sasl")
            if wanted:
                self.send_now("CAP REQ :" + " ".join(wanted))
            else:
                self._end_caps()
        elif sub == "ACK":
            self.enabled_caps.update(c.lstrip("-=~") for c in params[-1].split()
                                     if not c.startswith("-"))
            if self._cap_done:
                return
            if "sasl" in self.enabled_caps and self.settings.sasl_username:
                self.send_now("AUTHENTICATE PLAIN")
            else:
                self._end_caps()
        elif sub == "NAK":
            if not self._cap_done:
                self._end_caps()
        elif sub == "DEL":
            for c in params[-1].split():
                self.enabled_caps.discard(c)

    def _end_caps(self) -> None:
        if not self._cap_done:
            self._cap_done = True
            self.send_now("CAP END")
            self.on_event(CapsNegotiated(frozenset(self.enabled_caps), self._sasl_ok))

    def irc_AUTHENTICATE(self, prefix: str, params: list[str]) -> None:
        if params and params[0] == "+" and self.settings.sasl_username:
            user = self.settings.sasl_username
            payload = f"{user}\0{user}\0{self.settings.sasl_password or ''}".encode()
            encoded = base64.b64encode(payload).decode("ascii")
            chunks = [encoded[i : i + 400] for i in range(0, len(encoded), 400)]
            for chunk in chunks:
                self.send_now(f"AUTHENTICATE {chunk}")
            if not chunks or len(chunks[-1]) == 400:
                self.send_now("AUTHENTICATE +")

    def irc_903(self, prefix: str, params: list[str]) -> None:  # RPL_SASLSUCCESS
        self._sasl_ok = True
        self._end_caps()

    def _sasl_failed(self, params: list[str]) -> None:
        self._sasl_ok = False
        self.log.warn("SASL authentication failed: {why}", why=params[-1] if params else "")
        self._end_caps()

    def irc_904(self, prefix: str, params: list[str]) -> None:  # ERR_SASLFAIL
        self._sasl_failed(params)

    def irc_905(self, prefix: str, params: list[str]) -> None:  # ERR_SASLTOOLONG
        self._sasl_failed(params)

    def irc_906(self, prefix: str, params: list[str]) -> None:  # ERR_SASLABORTED
        self._sasl_failed(params)

    def irc_908(self, prefix: str, params: list[str]) -> None:  # RPL_SASLMECHS
        self._sasl_failed(params)

    # -- registration and nicks ----------------------------------------------------------

    def irc_RPL_WELCOME(self, prefix: str, params: list[str]) -> None:
        self.hostname = prefix
        self._registered = True
        self.nickname = params[0] if params else self._attemptedNick
        self._cap_done = True
        self.on_event(Registered(self.nickname))

    def irc_ERR_NICKNAMEINUSE(self, prefix: str, params: list[str]) -> None:
        if self._registered:
            self.on_event(NickRejected(params[1] if len(params) > 1 else "", params[-1]))
            return
        self._attemptedNick = self.alterCollidedNick(self._attemptedNick)
        self.send_now(f"NICK {self._attemptedNick}")

    def irc_ERR_ERRONEUSNICKNAME(self, prefix: str, params: list[str]) -> None:
        if self._registered:
            self.on_event(NickRejected(params[1] if len(params) > 1 else "", params[-1]))
            return
        self._attemptedNick = self.alterCollidedNick(self._attemptedNick)
        self.send_now(f"NICK {self._attemptedNick}")

    irc_ERR_NICKCOLLISION = irc_ERR_NICKNAMEINUSE

    def alterCollidedNick(self, nickname: str) -> str:
        if self._candidates:
            return self._candidates.pop(0)
        return nickname + "_"

    def nick_is_me(self, nick: str) -> bool:
        return irc_key(nick) == irc_key(self.nickname or "")

    def irc_NICK(self, prefix: str, params: list[str]) -> None:
        old = Source.parse(prefix).nick
        new = params[0]
        if self.nick_is_me(old):
            self.nickname = new
        self.on_event(NickChanged(old, new))

    # -- channels ------------------------------------------------------------------------

    def irc_JOIN(self, prefix: str, params: list[str]) -> None:
        self.on_event(Joined(params[0], Source.parse(prefix), dict(self.current_tags)))

    def irc_PART(self, prefix: str, params: list[str]) -> None:
        self.on_event(Parted(params[0], Source.parse(prefix), params[1] if len(params) > 1 else ""))

    def irc_QUIT(self, prefix: str, params: list[str]) -> None:
        self.on_event(Quit(Source.parse(prefix), params[0] if params else ""))

    def irc_KICK(self, prefix: str, params: list[str]) -> None:
        reason = params[2] if len(params) > 2 else ""
        self.on_event(Kicked(params[0], params[1], Source.parse(prefix), reason))

    def irc_TOPIC(self, prefix: str, params: list[str]) -> None:
        self.on_event(Topic(params[0], params[-1] if len(params) > 1 else "",
                            Source.parse(prefix).nick))

    def irc_RPL_TOPIC(self, prefix: str, params: list[str]) -> None:
        self.on_event(Topic(params[1], params[-1], None))

    def irc_RPL_NAMREPLY(self, prefix: str, params: list[str]) -> None:
        channel = params[2]
        prefixes = self.supported.getFeature("PREFIX", {}) or {}
        symbol_to_mode = {sym: mode for mode, (sym, _) in prefixes.items()}
        members = self._names.setdefault(irc_key(channel), {})
        for item in params[3].split():
            modes = ""
            while item and item[0] in symbol_to_mode:
                modes += symbol_to_mode[item[0]]
                item = item[1:]
            nick = Source.parse(item).nick  # userhost-in-names gives nick!user@host
            if nick:
                members[nick] = modes

    def irc_RPL_ENDOFNAMES(self, prefix: str, params: list[str]) -> None:
        channel = params[1]
        members = self._names.pop(irc_key(channel), {})
        self.on_event(Names(channel, members))

    def irc_MODE(self, prefix: str, params: list[str]) -> None:
        target = params[0]
        if not target or target[0] not in "#&+!":
            return  # user modes
        with_arg_set, with_arg_unset = self.getChannelModeParams()
        args = list(params[2:])
        changes: list[tuple[bool, str, str | None]] = []
        adding = True
        for ch in params[1] if len(params) > 1 else "":
            if ch in "+-":
                adding = ch == "+"
                continue
            takes = ch in (with_arg_set if adding else with_arg_unset)
            arg = args.pop(0) if takes and args else None
            changes.append((adding, ch, arg))
        self.on_event(ModeChanged(target, Source.parse(prefix), tuple(changes)))

    # -- messages ------------------------------------------------------------------------

    def _message(self, kind: str, prefix: str, params: list[str]) -> None:
        if len(params) < 2:
            return
        source = Source.parse(prefix)
        target, text = params[0], params[-1]
        echo = self.nick_is_me(source.nick)
        tags = dict(self.current_tags)
        if text.startswith("\x01"):
            parts = irc.ctcpExtract(text)
            for tag, data in parts["extended"]:
                if tag == "ACTION":
                    self.on_event(Message("action", source, target, data or "", tags, echo))
                elif kind == "privmsg" and not echo:
                    self._ctcp_query(source.nick, tag, data)
            normal = " ".join(p for p in parts["normal"] if p)
            if not normal:
                return
            text = normal
        self.on_event(Message(kind, source, target, text, tags, echo))

    def _ctcp_query(self, nick: str, tag: str, data: str | None) -> None:
        if tag == "VERSION":
            self.sendLine(f"NOTICE {nick} :\x01VERSION Ruma IRC bridge\x01")
        elif tag == "PING":
            self.sendLine(f"NOTICE {nick} :\x01PING {data or ''}\x01")

    def irc_PRIVMSG(self, prefix: str, params: list[str]) -> None:
        self._message("privmsg", prefix, params)

    def irc_NOTICE(self, prefix: str, params: list[str]) -> None:
        if prefix and "!" not in prefix and "." in prefix:
            return  # server notices
        self._message("notice", prefix, params)

    def irc_ERROR(self, prefix: str, params: list[str]) -> None:
        self.log.info("IRC server says: {error}", error=params[-1] if params else "")

    # IRCClient hooks with nothing to do here.
    def badMessage(self, line: Any, excType: Any, excValue: Any, tb: Any) -> None:
        self.log.warn("bad IRC message: {line!r}", line=line)


def irc_key(name: str) -> str:
    """Case-folded channel or nick (rfc1459), for dictionary keys."""
    return name.lower().translate(str.maketrans("[]\\~", "{}|^"))
