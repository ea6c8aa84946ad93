"""The IRC bridge's mapping logic: IRC channels as Matrix rooms, people on both sides.

One :class:`IrcBridge` serves every configured network through a :class:`NetworkBridge` each.

IRC -> Matrix (from the network's bot connection, which sits in every portal channel):
each IRC nick is a virtual user (``user_template``, e.g. ``@irc_libera_alice:server``) whose
display name is the nick; JOIN/PART/QUIT/KICK become its membership, NICK its display name
(the user ID stays), TOPIC the room topic, ``+o``/``-o`` its power level (50/0); PRIVMSG,
NOTICE and CTCP ACTION become ``m.text``/``m.notice``/``m.emote`` with ``formatted_body`` and
the server-time as ``origin_server_ts``; a private message to a Matrix user's puppet opens a
direct-message room. Netsplit quits are debounced (:mod:`.netsplit`).

Matrix -> IRC: each allowed Matrix user joined to a portal gets a puppet connection with a
nick from their display name (:mod:`.nicks`), which joins the channel; messages, emotes and
notices go out with mIRC formatting, split to fit (:mod:`.splitting`), replies with a short
quote, edits as ``* new text``, files as links; leave/kick/ban are mirrored where the puppet
is a channel operator. What our own puppets say is never relayed back (the bot ignores their
nicks, and echo-message echoes are dropped).

Portals are static (``channels`` in the config) or dynamic (joining an alias of
``alias_template`` creates the room and joins the channel). Portals, puppets, virtual users,
DM rooms and relayed messages are stored (:mod:`.store`) and restored on restart.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from ruma.appservice.intent import Bridge as BridgeHandle
from ruma.appservice.intent import Intent
from ruma.bridges.irc.config import IrcBridgeConfig, NetworkConfig
from ruma.bridges.irc.connection import ConnectionCore, make_connection
from ruma.bridges.irc.formatting import html_to_irc, irc_to_html, strip_irc_formatting
from ruma.bridges.irc.netsplit import NetsplitDebouncer
from ruma.bridges.irc.nicks import (
    localpart_for_nick,
    nick_candidates,
    nick_from_displayname,
)
from ruma.bridges.irc.protocol import (
    ConnectionSettings,
    IrcEvent,
    Joined,
    Kicked,
    Message,
    ModeChanged,
    Names,
    NickChanged,
    NickRejected,
    Numeric,
    Parted,
    Quit,
    Registered,
    Topic,
    irc_key,
)
from ruma.bridges.irc.splitting import max_text_bytes, split_message
from ruma.bridges.irc.store import BridgeStore
from ruma.errors import MatrixError
from ruma.rooms.creation import CreateRoomRequest
from ruma.rooms.service import RoomServices
from ruma.storage.irc import Portal, PuppetRow, RelayedMessage

__all__ = ["IrcBridge", "NetworkBridge", "render_for_irc"]

EndpointFactory = Callable[[NetworkConfig], IStreamClientEndpoint]
OP_LEVEL = 50
VOICE_LEVEL = 0
QUOTE_CHARS = 40


@dataclass
class Puppet:
    """A Matrix user's own IRC connection on one network."""

    user_id: str
    conn: ConnectionCore
    last_active: float
    wanted_nick: str | None = None

    @property
    def nick(self) -> str:
        return self.conn.nick


@dataclass
class ChannelState:
    """What the bot knows of one channel: members (key -> nick) and their prefix modes."""

    channel: str
    members: dict[str, str] = field(default_factory=dict)
    modes: dict[str, str] = field(default_factory=dict)  # nick key -> "o", "v", "ov"…


def _media_url(base: str, mxc: str) -> str:
    if not mxc.startswith("mxc://"):
        return mxc
    server, _, media_id = mxc[len("mxc://"):].partition("/")
    return f"{base}/_matrix/media/v3/download/{server}/{media_id}"


def _strip_reply_fallback(body: str) -> str:
    lines = body.split("\n")
    if lines and lines[0].startswith("> "):
        while lines and lines[0].startswith(">"):
            lines.pop(0)
        while lines and not lines[0].strip():
            lines.pop(0)
    return "\n".join(lines)


def render_for_irc(
    content: Mapping[str, Any], media_base: str, quote: tuple[str, str] | None = None
) -> tuple[str, str] | None:
    """``(kind, text)`` for a Matrix message content, or None if there is nothing to say.

    ``kind`` is ``privmsg``, ``notice`` or ``action``; ``text`` may hold line breaks (the
    caller splits). ``quote`` is ``(nick, text)`` of the message replied to."""
    relates = content.get("m.relates_to")
    edit = isinstance(relates, Mapping) and relates.get("rel_type") == "m.replace"
    if edit and isinstance(content.get("m.new_content"), Mapping):
        content = content["m.new_content"]
    msgtype = content.get("msgtype")
    body = content.get("body")
    if not isinstance(body, str):
        return None
    kind = {"m.emote": "action", "m.notice": "notice"}.get(str(msgtype), "privmsg")
    if msgtype in ("m.image", "m.file", "m.video", "m.audio"):
        url = content.get("url")
        if not isinstance(url, str):
            file_info = content.get("file")
            url = file_info.get("url") if isinstance(file_info, Mapping) else None
        link = _media_url(media_base, url) if isinstance(url, str) else ""
        name = content.get("filename") if isinstance(content.get("filename"), str) else body
        text = f"{name} <{link}>" if link else str(name)
    elif content.get("format") == "org.matrix.custom.html" and isinstance(
        content.get("formatted_body"), str
    ):
        text = html_to_irc(content["formatted_body"])
    else:
        text = _strip_reply_fallback(body) if quote is not None else body
        text = text.replace("\r", "")
    if not text.strip():
        return None
    if quote is not None and not edit:
        qnick, qtext = quote
        short = " ".join(strip_irc_formatting(qtext).split())
        if len(short) > QUOTE_CHARS:
            short = short[:QUOTE_CHARS].rstrip() + "…"
        text = f'<{qnick}> "{short}" <- {text}'
    if edit:
        text = "* " + text
    return kind, text


class NetworkBridge:
    """One IRC network: its bot connection, its puppets, its virtual users and portals."""

    log = Logger()

    def __init__(
        self,
        bridge: IrcBridge,
        network: NetworkConfig,
        endpoint: IStreamClientEndpoint,
    ) -> None:
        self.bridge = bridge
        self.net = network
        self.clock = bridge.clock
        self.endpoint = endpoint
        self.portals: dict[str, Portal] = {}  # channel key -> portal
        self.portal_rooms: dict[str, Portal] = {}  # room id -> portal
        self.channels: dict[str, ChannelState] = {}  # channel key -> what the bot sees
        self.puppets: dict[str, Puppet] = {}  # matrix user id -> puppet
        self.puppet_nicks: dict[str, str] = {}  # nick key -> matrix user id
        self.virtual_by_nick: dict[str, str] = {}  # nick key -> virtual user id
        self.virtual_nick: dict[str, str] = {}  # virtual user id -> nick
        self._saved_virtual: dict[str, str] = {}  # what the store already holds
        self.netsplits = NetsplitDebouncer(self.clock, bridge.config.netsplit_window,
                                           self._netsplit_expired)
        self._events: deque[tuple[ConnectionCore, IrcEvent]] = deque()
        self._draining: Deferred[None] | None = None
        self.numeric_listeners: list[Callable[[ConnectionCore, Numeric], None]] = []
        self.bot = make_connection(
            f"{network.name} bot",
            self.clock,
            endpoint,
            self._settings(network.bot_nick, "ruma", "Ruma IRC bridge", bot=True),
            self._on_irc_event,
        )
        self.relayed_to_irc = 0
        self.relayed_to_matrix = 0

    # -- setup ---------------------------------------------------------------------------

    def _settings(self, nick: str, username: str, realname: str, *, bot: bool = False
                  ) -> ConnectionSettings:
        n = self.net
        return ConnectionSettings(
            nickname=nick,
            username=username,
            realname=realname,
            password=n.password,
            sasl_username=n.sasl_username if bot else None,
            sasl_password=n.sasl_password if bot else None,
            rate=n.rate,
            burst=n.burst,
            ping_interval=n.ping_interval,
            ping_timeout=n.ping_timeout,
            nick_candidates=lambda base: list(_first(nick_candidates(base, n.max_nick_length),
                                                     120)),
        )

    async def start(self) -> None:
        store = self.bridge.store
        for portal in await store.get_portals(self.net.name):
            self._add_portal(portal)
        for user_id, nick in (await store.get_virtual_users(self.net.name)).items():
            self.virtual_nick[user_id] = nick
            self.virtual_by_nick[irc_key(nick)] = user_id
        # Static channels from the config.
        for channel, room_id in self.net.channels.items():
            if irc_key(channel) not in self.portals:
                await self._create_portal(channel, "static", room_id)
        self.bot.m.start()
        # Puppets of the Matrix users in the portals come back with their stored nicks.
        stored = {row.user_id: row for row in await store.get_puppets(self.net.name)}
        for portal in list(self.portals.values()):
            for user_id in await self._matrix_members(portal.room_id):
                row = stored.get(user_id)
                await self.ensure_puppet(user_id, portal, stored_nick=row.nick if row else None)

    async def stop(self) -> None:
        self.netsplits.flush()
        ds = [p.conn.m.stop() for p in self.puppets.values()]
        ds.append(self.bot.m.stop())
        await DeferredList(ds)

    def _add_portal(self, portal: Portal) -> None:
        self.portals[irc_key(portal.channel)] = portal
        self.portal_rooms[portal.room_id] = portal
        self.channels.setdefault(irc_key(portal.channel), ChannelState(portal.channel))
        self.bot.m.join(portal.channel)

    async def _create_portal(self, channel: str, kind: str, room_id: str | None = None
                             ) -> Portal:
        bot = self.bridge.handle.bot
        if room_id is None:
            alias = self.net.alias(channel)
            localpart = alias[1:].partition(":")[0]
            existing = await self.bridge.rooms.rooms.get_alias(alias)
            if existing is not None:
                room_id = existing.room_id
            else:
                room_id = await bot.create_room(CreateRoomRequest(
                    creator=bot.user_id,
                    preset="public_chat",
                    room_alias_name=localpart,
                    name=channel,
                    creation_content={"m.federate": True},
                    # The IRC server decides who may set the topic (+t): let everyone try.
                    power_level_content_override={"users_default": 0,
                                                  "events": {"m.room.topic": 0}},
                ))
        else:
            try:
                await bot.join(room_id)
            except MatrixError as e:
                self.log.warn("cannot join {room_id} for {channel}: {error}",
                              room_id=room_id, channel=channel, error=e.msg)
        portal = await self.bridge.store.add_portal(
            Portal(self.net.name, channel, room_id, kind), self.bridge.now_ms())
        self._add_portal(portal)
        self.log.info("portal {network}/{channel} is {room_id}", network=self.net.name,
                      channel=channel, room_id=room_id)
        return portal

    async def portal_for_alias(self, channel: str) -> Portal:
        portal = self.portals.get(irc_key(channel))
        if portal is None:
            portal = await self._create_portal(channel, "dynamic")
        return portal

    async def _matrix_members(self, room_id: str) -> list[str]:
        members = await self.bridge.rooms.store.get_current_members(room_id, "join")
        return [u for u in members if self.bridge.is_real_matrix_user(u)]

    # -- virtual users -------------------------------------------------------------------

    def virtual_user_for(self, nick: str) -> str:
        key = irc_key(nick)
        user_id = self.virtual_by_nick.get(key)
        if user_id is not None:
            return user_id
        base = self.net.user_id(localpart_for_nick(nick))
        user_id = base
        n = 2
        while user_id in self.virtual_nick and irc_key(self.virtual_nick[user_id]) != key and (
            self._nick_present(self.virtual_nick[user_id])
        ):
            local, _, server = base.partition(":")
            user_id = f"{local}_{n}:{server}"
            n += 1
        self.virtual_by_nick[key] = user_id
        self.virtual_nick[user_id] = nick
        return user_id

    def _nick_present(self, nick: str) -> bool:
        key = irc_key(nick)
        return any(key in ch.members for ch in self.channels.values())

    async def _virtual(self, nick: str) -> Intent:
        user_id = self.virtual_user_for(nick)
        intent = self.bridge.handle.intent(user_id)
        if self._saved_virtual.get(user_id) != nick:
            await intent.ensure_registered(displayname=nick)
            await self.bridge.store.set_virtual_user(user_id, self.net.name, nick)
            self._saved_virtual[user_id] = nick
        return intent

    async def _ensure_in_room(self, nick: str, room_id: str) -> Intent:
        intent = await self._virtual(nick)
        key = (intent.user_id, room_id)
        if key not in self.bridge.joined_cache:
            members = await self.bridge.rooms.store.get_current_members(room_id)
            if members.get(intent.user_id) != "join":
                await intent.join(room_id)
            self.bridge.joined_cache.add(key)
        return intent

    # -- IRC -> Matrix ---------------------------------------------------------------------

    def _on_irc_event(self, conn: ConnectionCore, event: IrcEvent) -> None:
        self._events.append((conn, event))
        self._kick_drain()

    def _kick_drain(self) -> None:
        if self._draining is None and self._events:
            d = Deferred.fromCoroutine(self._drain())
            if not d.called:  # a drain that finished at once has already cleared itself
                self._draining = d

    async def _drain(self) -> None:
        try:
            while self._events:
                conn, event = self._events.popleft()
                try:
                    await self.handle_irc_event(conn, event)
                except Exception:
                    self.log.failure("handling {event!r} from {network}", event=event,
                                     network=self.net.name)
        finally:
            self._draining = None

    def _is_ours(self, nick: str) -> bool:
        key = irc_key(nick)
        return key in self.puppet_nicks or key == irc_key(self.bot.nick)

    async def handle_irc_event(self, conn: ConnectionCore, event: IrcEvent) -> None:
        is_bot = conn is self.bot
        if isinstance(event, Registered):
            if not is_bot:
                await self._puppet_registered(conn, event.nick)
            return
        if isinstance(event, NickChanged) and not is_bot and irc_key(event.new) == irc_key(
            conn.nick
        ):
            await self._puppet_registered(conn, event.new, old=event.old)
            return
        if isinstance(event, NickRejected):
            await self._puppet_nick_rejected(conn, event)
            return
        if isinstance(event, Numeric):
            for listener in list(self.numeric_listeners):
                listener(conn, event)
            return
        if isinstance(event, Message) and not is_bot:
            if not event.echo and event.target[:1] not in "#&+!":
                await self._private_message(conn, event)
            return
        if not is_bot:
            return
        if isinstance(event, Message):
            if event.target[:1] in "#&+!":
                await self._channel_message(event)
            elif not event.echo and not self._is_ours(event.source.nick):
                conn.m.send(f"NOTICE {event.source.nick} :I am a Matrix bridge bot; talk to "
                            "the people in the channels instead.")
        elif isinstance(event, Joined):
            await self._joined(event)
        elif isinstance(event, Parted):
            await self._left(event.channel, event.source.nick, event.reason or "", "parted")
        elif isinstance(event, Quit):
            await self._quit(event)
        elif isinstance(event, Kicked):
            await self._kicked(event)
        elif isinstance(event, NickChanged):
            await self._nick_changed(event)
        elif isinstance(event, Topic):
            await self._topic(event)
        elif isinstance(event, Names):
            await self._names(event)
        elif isinstance(event, ModeChanged):
            await self._modes(event)

    async def _channel_message(self, event: Message) -> None:
        nick = event.source.nick
        if event.echo or self._is_ours(nick):
            return  # our own puppets' words came from Matrix: never relay them back
        portal = self.portals.get(irc_key(event.target))
        if portal is None:
            return
        intent = await self._ensure_in_room(nick, portal.room_id)
        content = self._content(event)
        event_id = await intent.send_message(portal.room_id, content, ts=event.time_ms)
        self.relayed_to_matrix += 1
        await self.bridge.store.add_message(RelayedMessage(
            event_id, portal.room_id, self.net.name, event.target, nick, event.msgid,
            content["body"], "to_matrix", event.time_ms or self.bridge.now_ms()))

    def _content(self, event: Message) -> dict[str, Any]:
        plain, html = irc_to_html(event.text)
        msgtype = {"action": "m.emote", "notice": "m.notice"}.get(event.kind, "m.text")
        content: dict[str, Any] = {"msgtype": msgtype, "body": plain}
        if html is not None:
            content["format"] = "org.matrix.custom.html"
            content["formatted_body"] = html
        return content

    async def _private_message(self, conn: ConnectionCore, event: Message) -> None:
        owner = next((p.user_id for p in self.puppets.values() if p.conn is conn), None)
        nick = event.source.nick
        if owner is None or not nick or "." in nick and "!" not in nick and not event.source.user:
            return
        room_id = await self.bridge.store.get_dm_room(self.net.name, owner, nick)
        intent = await self._virtual(nick)
        if room_id is None:
            room_id = await intent.create_room(CreateRoomRequest(
                creator=intent.user_id,
                preset="trusted_private_chat",
                invite=(owner,),
                is_direct=True,
                name=None,
            ))
            await self.bridge.store.set_dm_room(self.net.name, owner, nick, room_id)
        content = self._content(event)
        await intent.send_message(room_id, content, ts=event.time_ms)
        self.relayed_to_matrix += 1

    async def _joined(self, event: Joined) -> None:
        nick = event.source.nick
        key = irc_key(event.channel)
        state = self.channels.setdefault(key, ChannelState(event.channel))
        state.members[irc_key(nick)] = nick
        if self._is_ours(nick):
            return
        portal = self.portals.get(key)
        if portal is None:
            return
        if self.netsplits.rejoined(nick, event.channel):
            self.log.debug("{nick} is back from the netsplit in {channel}", nick=nick,
                           channel=event.channel)
            return
        await self._ensure_in_room(nick, portal.room_id)

    async def _left(self, channel: str, nick: str, reason: str, how: str) -> None:
        key = irc_key(channel)
        state = self.channels.get(key)
        if state is not None:
            state.members.pop(irc_key(nick), None)
            state.modes.pop(irc_key(nick), None)
        if irc_key(nick) == irc_key(self.bot.nick):
            return
        if self._is_ours(nick):
            return
        portal = self.portals.get(key)
        if portal is None:
            return
        user_id = self.virtual_user_for(nick)
        self.bridge.joined_cache.discard((user_id, portal.room_id))
        members = await self.bridge.rooms.store.get_current_members(portal.room_id)
        if members.get(user_id) == "join":
            intent = self.bridge.handle.intent(user_id)
            await intent.leave(portal.room_id, reason=reason or None)

    async def _quit(self, event: Quit) -> None:
        nick = event.source.nick
        key = irc_key(nick)
        channels = [s.channel for s in self.channels.values() if key in s.members]
        for ch in channels:
            self.channels[irc_key(ch)].members.pop(key, None)
        if self._is_ours(nick):
            return
        if self.netsplits.quit(nick, event.reason, channels):
            self.log.info("{nick} quit in a netsplit ({reason}): holding for {window}s",
                          nick=nick, reason=event.reason, window=self.netsplits.window)
            return
        for ch in channels:
            await self._left(ch, nick, event.reason, "quit")

    def _netsplit_expired(self, nick: str, channels: list[str]) -> None:
        for ch in channels:
            self._events.append((self.bot, Parted(ch, _source(nick), "Netsplit")))
        self._kick_drain()

    async def _kicked(self, event: Kicked) -> None:
        key = irc_key(event.channel)
        portal = self.portals.get(key)
        state = self.channels.get(key)
        if state is not None:
            state.members.pop(irc_key(event.nick), None)
        if portal is None:
            return
        reason = f"Kicked on IRC by {event.by.nick}" + (f": {event.reason}" if event.reason
                                                        else "")
        target_key = irc_key(event.nick)
        if target_key == irc_key(self.bot.nick):
            self.bot.m.join(event.channel)  # the bot comes back
            return
        if target_key in self.puppet_nicks:
            user_id = self.puppet_nicks[target_key]
            puppet = self.puppets.get(user_id)
            if puppet is not None:
                puppet.conn.m.part(event.channel, "")
            try:
                await self.bridge.handle.bot.kick(portal.room_id, user_id, reason)
            except MatrixError as e:
                self.log.warn("could not kick {user_id}: {error}", user_id=user_id, error=e.msg)
            return
        user_id = self.virtual_user_for(event.nick)
        self.bridge.joined_cache.discard((user_id, portal.room_id))
        members = await self.bridge.rooms.store.get_current_members(portal.room_id)
        if members.get(user_id) == "join":
            by = self.virtual_user_for(event.by.nick) if not self._is_ours(event.by.nick) else None
            kicker = self.bridge.handle.bot
            if by is not None and state is not None and "o" in state.modes.get(
                irc_key(event.by.nick), ""
            ):
                kicker = self.bridge.handle.intent(by)
            try:
                await kicker.kick(portal.room_id, user_id, reason)
            except MatrixError:
                await self.bridge.handle.bot.kick(portal.room_id, user_id, reason)

    async def _nick_changed(self, event: NickChanged) -> None:
        old_key, new_key = irc_key(event.old), irc_key(event.new)
        for state in self.channels.values():
            if old_key in state.members:
                state.members.pop(old_key)
                state.members[new_key] = event.new
                if old_key in state.modes:
                    state.modes[new_key] = state.modes.pop(old_key)
        if self._is_ours(event.old) or self._is_ours(event.new):
            return
        user_id = self.virtual_by_nick.pop(old_key, None) or self.virtual_user_for(event.old)
        self.virtual_by_nick.pop(old_key, None)
        self.virtual_by_nick[new_key] = user_id
        self.virtual_nick[user_id] = event.new
        intent = self.bridge.handle.intent(user_id)
        await intent.ensure_registered(displayname=event.new)
        await self.bridge.store.set_virtual_user(user_id, self.net.name, event.new)
        self._saved_virtual[user_id] = event.new
        await intent.set_displayname(event.new)

    async def _topic(self, event: Topic) -> None:
        portal = self.portals.get(irc_key(event.channel))
        if portal is None:
            return
        current = await self.bridge.rooms.store.get_current_state_event(
            portal.room_id, "m.room.topic", "")
        if current is not None and current.content.get("topic") == event.topic:
            return
        if event.by is not None and self._is_ours(event.by):
            return  # came from Matrix
        plain = strip_irc_formatting(event.topic)
        await self.bridge.handle.bot.send_state(
            portal.room_id, "m.room.topic", "",
            {"topic": plain, "m.topic": [{"body": plain, "mimetype": "text/plain"}]})

    async def _names(self, event: Names) -> None:
        key = irc_key(event.channel)
        state = self.channels.setdefault(key, ChannelState(event.channel))
        state.members = {irc_key(n): n for n in event.members}
        state.modes = {irc_key(n): m for n, m in event.members.items() if m}
        portal = self.portals.get(key)
        if portal is None:
            return
        for nick in event.members:
            if not self._is_ours(nick):
                await self._ensure_in_room(nick, portal.room_id)
        # Virtual users still in the room but no longer in the channel (missed while down).
        members = await self.bridge.rooms.store.get_current_members(portal.room_id, "join")
        for user_id in members:
            vnick = self.virtual_nick.get(user_id)
            if vnick is not None and irc_key(vnick) not in state.members and (
                self.bridge.owns_virtual(user_id)
            ) and not self.netsplits.is_held(vnick):
                self.bridge.joined_cache.discard((user_id, portal.room_id))
                await self.bridge.handle.intent(user_id).leave(portal.room_id)
        await self._sync_power(portal, state)

    async def _modes(self, event: ModeChanged) -> None:
        key = irc_key(event.channel)
        state = self.channels.get(key)
        if state is None:
            return
        changed = False
        for added, mode, arg in event.changes:
            if mode not in "ohv" or arg is None:
                continue
            nkey = irc_key(arg)
            modes = state.modes.get(nkey, "")
            modes = (modes + mode) if added and mode not in modes else (
                modes if added else modes.replace(mode, ""))
            state.modes[nkey] = modes
            changed = True
        portal = self.portals.get(key)
        if changed and portal is not None:
            await self._sync_power(portal, state)

    async def _sync_power(self, portal: Portal, state: ChannelState) -> None:
        event = await self.bridge.rooms.store.get_current_state_event(
            portal.room_id, "m.room.power_levels", "")
        content = dict(event.content) if event is not None else {}
        users = dict(content.get("users") or {})
        before = dict(users)
        for nkey, nick in state.members.items():
            if self._is_ours(nick):
                continue
            user_id = self.virtual_by_nick.get(nkey)
            if user_id is None:
                continue
            modes = state.modes.get(nkey, "")
            level = OP_LEVEL if ("o" in modes or "h" in modes) else VOICE_LEVEL
            if level:
                users[user_id] = level
            else:
                users.pop(user_id, None)
        if users != before:
            content["users"] = users
            await self.bridge.handle.bot.send_state(portal.room_id, "m.room.power_levels",
                                                    "", content)

    # -- puppets (Matrix -> IRC) -----------------------------------------------------------

    async def ensure_puppet(
        self, user_id: str, portal: Portal | None = None, *, stored_nick: str | None = None,
        displayname: str | None = None,
    ) -> Puppet | None:
        if not self.net.allows(user_id):
            return None
        puppet = self.puppets.get(user_id)
        if puppet is None:
            nick = stored_nick
            if nick is None:
                if displayname is None:
                    profile = await self.bridge.rooms.profiles.get_profile(user_id)
                    displayname = profile.get("displayname")
                localpart = user_id[1:].partition(":")[0]
                nick = nick_from_displayname(displayname, localpart, self.net.nick_template,
                                             self.net.max_nick_length)
            ident = "".join(c for c in user_id[1:].partition(":")[0].lower()
                            if c.isalnum())[:10] or "matrix"
            conn = make_connection(
                f"{self.net.name} {user_id}", self.clock, self.endpoint,
                self._settings(nick, ident, user_id), self._on_irc_event)
            puppet = Puppet(user_id, conn, self.clock.seconds())
            self.puppets[user_id] = puppet
            self.puppet_nicks[irc_key(nick)] = user_id
            await self.bridge.store.save_puppet(PuppetRow(
                self.net.name, user_id, nick, None, self.bridge.now_ms()))
        if portal is not None:
            puppet.conn.m.join(portal.channel)
        puppet.conn.m.start()
        return puppet

    async def _puppet_registered(self, conn: ConnectionCore, nick: str, old: str | None = None
                                 ) -> None:
        puppet = next((p for p in self.puppets.values() if p.conn is conn), None)
        if puppet is None:
            return
        for key, uid in list(self.puppet_nicks.items()):
            if uid == puppet.user_id:
                del self.puppet_nicks[key]
        self.puppet_nicks[irc_key(nick)] = puppet.user_id
        await self.bridge.store.save_puppet(PuppetRow(
            self.net.name, puppet.user_id, nick, puppet.wanted_nick, self.bridge.now_ms()))
        if old is not None:
            await self.bridge.admin_notice(puppet.user_id, f"Your nick on {self.net.name} is "
                                                           f"now {nick}.")

    async def _puppet_nick_rejected(self, conn: ConnectionCore, event: NickRejected) -> None:
        puppet = next((p for p in self.puppets.values() if p.conn is conn), None)
        if puppet is not None:
            await self.bridge.admin_notice(
                puppet.user_id,
                f"{self.net.name} refused the nick {event.nick}: {event.reason}")

    def _touch(self, puppet: Puppet) -> None:
        puppet.last_active = self.clock.seconds()

    def check_idle(self, timeout: float) -> None:
        now = self.clock.seconds()
        for puppet in self.puppets.values():
            if now - puppet.last_active >= timeout and puppet.conn.connected_protocol():
                puppet.conn.m.go_idle("Idle")

    async def relay_to_irc(
        self, user_id: str, target: str, content: Mapping[str, Any], event_id: str,
        room_id: str, portal: Portal | None,
    ) -> None:
        puppet = await self.ensure_puppet(user_id, portal)
        if puppet is None:
            return
        self._touch(puppet)
        quote = await self._quote_for(content)
        rendered = render_for_irc(content, self.bridge.config.media_base_url, quote)
        if rendered is None:
            return
        kind, text = rendered
        limit = max_text_bytes(puppet.nick or "x" * self.net.max_nick_length, target,
                               command="NOTICE" if kind == "notice" else "PRIVMSG",
                               ctcp_action=kind == "action")
        for line in split_message(text, limit):
            if kind == "action":
                puppet.conn.m.send(f"PRIVMSG {target} :\x01ACTION {line}\x01")
            elif kind == "notice":
                puppet.conn.m.send(f"NOTICE {target} :{line}")
            else:
                puppet.conn.m.send(f"PRIVMSG {target} :{line}")
        self.relayed_to_irc += 1
        await self.bridge.store.add_message(RelayedMessage(
            event_id, room_id, self.net.name, target, puppet.nick, None,
            strip_irc_formatting(text), "to_irc", self.bridge.now_ms()))

    async def _quote_for(self, content: Mapping[str, Any]) -> tuple[str, str] | None:
        relates = content.get("m.relates_to")
        if not isinstance(relates, Mapping):
            return None
        reply = relates.get("m.in_reply_to")
        if not isinstance(reply, Mapping) or not isinstance(reply.get("event_id"), str):
            return None
        event_id = reply["event_id"]
        known = await self.bridge.store.get_message(event_id)
        if known is not None:
            return known.nick, known.body
        event = await self.bridge.rooms.store.get_event(event_id)
        if event is None:
            return None
        body = event.content.get("body")
        sender = event.sender
        nick = self.virtual_nick.get(sender)
        if nick is None:
            puppet = self.puppets.get(sender)
            nick = puppet.nick if puppet is not None else sender
        return nick, body if isinstance(body, str) else ""

    async def matrix_left(self, user_id: str, portal: Portal, reason: str) -> None:
        puppet = self.puppets.get(user_id)
        if puppet is not None:
            puppet.conn.m.part(portal.channel, reason)

    async def matrix_kicked(
        self, sender: str, target: str, portal: Portal, reason: str, ban: bool
    ) -> None:
        """A Matrix user kicked or banned ``target``: mirrored if their puppet may."""
        if target in self.puppets and not self.bridge.owns_virtual(target):
            await self.matrix_left(target, portal, reason or f"Kicked by {sender}")
            return
        nick = self.virtual_nick.get(target)
        puppet = self.puppets.get(sender)
        if nick is None or puppet is None:
            return
        state = self.channels.get(irc_key(portal.channel))
        my_modes = state.modes.get(irc_key(puppet.nick), "") if state else ""
        if "o" not in my_modes and "h" not in my_modes:
            await self.bridge.admin_notice(
                sender, f"You are not a channel operator in {portal.channel} on "
                        f"{self.net.name}, so {nick} was not kicked on IRC.")
            return
        self._touch(puppet)
        if ban:
            puppet.conn.m.send(f"MODE {portal.channel} +b {nick}!*@*")
        puppet.conn.m.send(f"KICK {portal.channel} {nick} :{reason or 'Kicked from Matrix'}")

    async def matrix_renamed(self, user_id: str, displayname: str) -> None:
        """A new display name: a new nick, unless the user chose one with ``!nick``."""
        puppet = self.puppets.get(user_id)
        if puppet is None or puppet.wanted_nick is not None:
            return
        localpart = user_id[1:].partition(":")[0]
        nick = nick_from_displayname(displayname, localpart, self.net.nick_template,
                                     self.net.max_nick_length)
        if irc_key(nick) != irc_key(puppet.nick):
            self._touch(puppet)
            puppet.conn.m.send(f"NICK {nick}")

    async def set_topic_from_matrix(self, user_id: str, portal: Portal, topic: str) -> None:
        puppet = self.puppets.get(user_id)
        if puppet is None:
            return
        self._touch(puppet)
        topic = " ".join(topic.split())
        puppet.conn.m.send(f"TOPIC {portal.channel} :{topic}")

    async def send_dm(self, user_id: str, nick: str, content: Mapping[str, Any],
                      event_id: str, room_id: str) -> None:
        await self.relay_to_irc(user_id, nick, content, event_id, room_id, None)


def _source(nick: str) -> Any:
    from ruma.bridges.irc.protocol import Source

    return Source(nick)


def _first(it: Any, n: int) -> list[str]:
    out: list[str] = []
    for x in it:
        out.append(x)
        if len(out) >= n:
            break
    return out


class IrcBridge:
    """The IRC bridge: Matrix transactions in, IRC out, and the other way round."""

    log = Logger()

    def __init__(
        self,
        config: IrcBridgeConfig,
        *,
        clock: IReactorTime,
        store: BridgeStore,
        rooms: RoomServices,
        endpoint_factory: EndpointFactory,
    ) -> None:
        self.config = config
        self.clock = clock
        self.store = store
        self.rooms = rooms
        self.handle: BridgeHandle = None  # type: ignore[assignment]  # set by attach()
        self.joined_cache: set[tuple[str, str]] = set()
        self.networks = {
            name: NetworkBridge(self, net, endpoint_factory(net))
            for name, net in config.networks.items()
        }
        self._idle: LoopingCall | None = None
        self._patterns = [(n, n.net.alias_pattern()) for n in self.networks.values()]
        self._user_patterns = [(n, n.net.user_pattern()) for n in self.networks.values()]
        from ruma.bridges.irc.admin import AdminRooms

        self.admin = AdminRooms(self)

    def attach(self, handle: BridgeHandle) -> None:
        self.handle = handle

    def now_ms(self) -> int:
        return int(self.clock.seconds() * 1000)

    # -- identity helpers ----------------------------------------------------------------

    def owns_virtual(self, user_id: str) -> bool:
        return self.handle.registration.is_user_in_namespace(user_id)

    def is_real_matrix_user(self, user_id: str) -> bool:
        return user_id != self.config.bot_user_id and not self.owns_virtual(user_id)

    def network_of_virtual(self, user_id: str) -> tuple[NetworkBridge, str] | None:
        for net, _pattern in self._user_patterns:
            nick = net.virtual_nick.get(user_id)
            if nick is not None:
                return net, nick
        for net, pattern in self._user_patterns:
            m = pattern.fullmatch(user_id)
            if m is not None:
                from ruma.bridges.irc.nicks import nick_for_localpart

                return net, nick_for_localpart(m.group("nick"))
        return None

    def portal(self, room_id: str) -> tuple[NetworkBridge, Portal] | None:
        for net in self.networks.values():
            portal = net.portal_rooms.get(room_id)
            if portal is not None:
                return net, portal
        return None

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        await self.handle.bot.ensure_registered(displayname="IRC bridge")
        for net in self.networks.values():
            try:
                await net.start()
            except Exception:
                self.log.failure("starting IRC network {network}", network=net.net.name)
        if self.config.idle_timeout > 0:
            self._idle = LoopingCall(self._check_idle)
            self._idle.clock = self.clock
            self._idle.start(max(1.0, min(60.0, self.config.idle_timeout / 4)), now=False)

    def _check_idle(self) -> None:
        for net in self.networks.values():
            net.check_idle(self.config.idle_timeout)

    async def stop(self) -> None:
        if self._idle is not None and self._idle.running:
            self._idle.stop()
        for net in self.networks.values():
            await net.stop()

    # -- queries (alias of a channel that has no room yet) --------------------------------

    async def query_alias(self, alias: str) -> bool:
        for net, pattern in self._patterns:
            m = pattern.fullmatch(alias)
            if m is not None:
                channel = "#" + m.group("channel")
                if len(channel) > 50 or any(c in channel for c in " ,\x07"):
                    return False
                await net.portal_for_alias(channel)
                return True
        return False

    async def query_user(self, user_id: str) -> bool:
        found = self.network_of_virtual(user_id)
        if found is None:
            return False
        net, nick = found
        await self.handle.intent(user_id).ensure_registered(displayname=nick)
        return True

    # -- Matrix -> IRC ---------------------------------------------------------------------

    async def on_transaction(self, txn_id: str, body: Mapping[str, Any]) -> None:
        for event in body.get("events") or []:
            if not isinstance(event, Mapping):
                continue
            try:
                await self.handle_matrix_event(event)
            except Exception:
                self.log.failure("handling Matrix event {event_id}",
                                 event_id=event.get("event_id"))

    async def handle_matrix_event(self, event: Mapping[str, Any]) -> None:
        etype = event.get("type")
        sender = str(event.get("sender", ""))
        room_id = str(event.get("room_id", ""))
        content = event.get("content") or {}
        if not isinstance(content, Mapping):
            return
        if etype == "m.room.member":
            await self._membership(event, sender, room_id, content)
            return
        if not self.is_real_matrix_user(sender) or not sender.endswith(
            ":" + self.config.server_name
        ):
            return
        if etype == "m.room.message":
            found = self.portal(room_id)
            if found is not None:
                net, portal = found
                await net.relay_to_irc(sender, portal.channel, content,
                                       str(event.get("event_id")), room_id, portal)
                return
            dm = await self.store.get_dm_by_room(room_id)
            if dm is not None:
                network, owner, nick_key = dm
                net_bridge = self.networks.get(network)
                if net_bridge is not None and owner == sender:
                    nick = next((n for k, n in (
                        (irc_key(v), v) for v in net_bridge.virtual_nick.values())
                        if k == nick_key), nick_key)
                    await net_bridge.send_dm(sender, nick, content, str(event.get("event_id")),
                                             room_id)
                return
            admin_owner = await self.store.get_admin_room_owner(room_id)
            if admin_owner is not None and admin_owner == sender:
                body = content.get("body")
                if isinstance(body, str):
                    await self.admin.command(sender, room_id, body)
        elif etype == "m.room.topic" and event.get("state_key") == "":
            found = self.portal(room_id)
            if found is not None:
                topic = content.get("topic")
                if isinstance(topic, str):
                    await found[0].set_topic_from_matrix(sender, found[1], topic)

    async def _membership(
        self, event: Mapping[str, Any], sender: str, room_id: str, content: Mapping[str, Any]
    ) -> None:
        target = str(event.get("state_key", ""))
        membership = content.get("membership")
        if membership != "join":
            self.joined_cache.discard((target, room_id))
        unsigned = event.get("unsigned") or {}
        prev = (unsigned.get("prev_content") or {}) if isinstance(unsigned, Mapping) else {}
        prev_membership = prev.get("membership") if isinstance(prev, Mapping) else None
        if target == self.config.bot_user_id:
            if membership == "invite" and self.portal(room_id) is None:
                await self.admin.invited(sender, room_id, bool(content.get("is_direct")))
            return
        if self.owns_virtual(target) and membership == "invite":
            if self.is_real_matrix_user(sender) and self.portal(room_id) is None:
                await self._dm_invite(sender, target, room_id)
            return
        found = self.portal(room_id)
        if found is None:
            return
        net, portal = found
        if self.owns_virtual(target) and sender == target:
            return  # our own virtual users' comings and goings come from IRC
        if membership == "join" and sender == target:
            if prev_membership != "join":
                await net.ensure_puppet(target, portal,
                                        displayname=content.get("displayname"))
            elif isinstance(content.get("displayname"), str) and content.get(
                "displayname"
            ) != prev.get("displayname"):
                await net.matrix_renamed(target, content["displayname"])
        elif membership in ("leave", "ban") and prev_membership == "join" or (
            membership == "ban"
        ):
            reason = content.get("reason") if isinstance(content.get("reason"), str) else ""
            if sender == target:
                await net.matrix_left(target, portal, str(reason or ""))
            elif self.is_real_matrix_user(sender):
                await net.matrix_kicked(sender, target, portal, str(reason or ""),
                                        membership == "ban")
            elif self.is_real_matrix_user(target):
                await net.matrix_left(target, portal, str(reason or ""))

    async def _dm_invite(self, inviter: str, virtual: str, room_id: str) -> None:
        found = self.network_of_virtual(virtual)
        if found is None:
            return
        net, nick = found
        intent = self.handle.intent(virtual)
        await intent.ensure_registered(displayname=nick)
        await intent.join(room_id)
        await self.store.set_dm_room(net.net.name, inviter, nick, room_id)
        net.virtual_by_nick.setdefault(irc_key(nick), virtual)
        net.virtual_nick.setdefault(virtual, nick)

    async def admin_notice(self, user_id: str, text: str) -> None:
        await self.admin.notice(user_id, text)

