"""The admin room: a direct chat between a Matrix user and the bridge bot.

A Matrix user invites the bot (``@ircbot:server``) to a room; the bot joins, and that room
becomes the user's admin room, where the bot answers commands and tells them about their IRC
connections (nick refused, nick changed…)::

    !help                      this list
    !nick [network] NEWNICK    change your IRC nick
    !join [network] #channel   get invited to the channel's portal room
    !whois [network] NICK      who is NICK on IRC
    !names [network] [#chan]   who is in #chan (without it: your channels)
    !quit [network]            disconnect your IRC connection(s) until you speak again

``network`` may be left out when only one is configured.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from ruma.bridges.irc.connection import ConnectionCore
from ruma.bridges.irc.nicks import is_valid_nick
from ruma.bridges.irc.protocol import Numeric, irc_key
from ruma.errors import MatrixError

if TYPE_CHECKING:
    from ruma.bridges.irc.bridge import IrcBridge, NetworkBridge

__all__ = ["AdminRooms", "HELP"]

HELP = """Commands:
!help — this list
!nick [network] NEWNICK — change your IRC nick
!join [network] #channel — get invited to the channel's room
!whois [network] NICK — who is NICK on IRC
!names [network] [#channel] — who is in #channel (without it: your channels)
!quit [network] — disconnect your IRC connection until you speak again"""

WHOIS_TIMEOUT = 10.0


class AdminRooms:
    log = Logger()

    def __init__(self, bridge: IrcBridge) -> None:
        self.bridge = bridge

    async def invited(self, inviter: str, room_id: str, is_direct: bool) -> None:
        bot = self.bridge.handle.bot
        await bot.join(room_id)
        if not self.bridge.is_real_matrix_user(inviter) or not inviter.endswith(
            ":" + self.bridge.config.server_name
        ):
            return
        await self.bridge.store.set_admin_room(inviter, room_id)
        await self.say(room_id, "This is your IRC bridge admin room.\n" + HELP)

    async def say(self, room_id: str, text: str) -> None:
        await self.bridge.handle.bot.send_message(room_id, {"msgtype": "m.notice",
                                                            "body": text})

    async def notice(self, user_id: str, text: str) -> None:
        room_id = await self.bridge.store.get_admin_room(user_id)
        if room_id is not None:
            try:
                await self.say(room_id, text)
            except MatrixError as e:
                self.log.warn("cannot write to the admin room of {user_id}: {error}",
                              user_id=user_id, error=e.msg)

    def _network(self, args: list[str]) -> tuple[NetworkBridge | None, list[str]]:
        nets = self.bridge.networks
        if args and args[0] in nets:
            return nets[args[0]], args[1:]
        if len(nets) == 1:
            return next(iter(nets.values())), args
        return None, args

    async def command(self, user_id: str, room_id: str, body: str) -> None:
        words = body.strip().split()
        if not words or not words[0].startswith("!"):
            return
        cmd, args = words[0][1:].lower(), words[1:]
        handler = getattr(self, f"cmd_{cmd}", None)
        if handler is None:
            await self.say(room_id, f"Unknown command !{cmd}.\n" + HELP)
            return
        try:
            reply = await handler(user_id, args)
        except MatrixError as e:
            reply = f"That did not work: {e.msg}"
        if reply:
            await self.say(room_id, reply)

    async def cmd_help(self, user_id: str, args: list[str]) -> str:
        return HELP

    async def cmd_nick(self, user_id: str, args: list[str]) -> str:
        net, args = self._network(args)
        if net is None or len(args) != 1:
            return "Usage: !nick [network] NEWNICK (networks: " + ", ".join(
                self.bridge.networks) + ")"
        nick = args[0]
        if not is_valid_nick(nick, net.net.max_nick_length):
            return f"{nick} is not a valid IRC nick."
        puppet = await net.ensure_puppet(user_id)
        if puppet is None:
            return f"You may not use the bridge to {net.net.name}."
        puppet.wanted_nick = nick
        puppet.conn.m.send(f"NICK {nick}")
        return f"Asking {net.net.name} for the nick {nick}…"

    async def cmd_join(self, user_id: str, args: list[str]) -> str:
        net, args = self._network(args)
        if net is None or len(args) != 1 or args[0][:1] not in "#&":
            return "Usage: !join [network] #channel"
        if not net.net.allows(user_id):
            return f"You may not use the bridge to {net.net.name}."
        portal = await net.portal_for_alias(args[0])
        members = await self.bridge.rooms.store.get_current_members(portal.room_id)
        if members.get(user_id) not in ("join", "invite"):
            await self.bridge.handle.bot.invite(portal.room_id, user_id)
        return f"Invited you to {portal.channel} ({net.net.alias(portal.channel)})."

    async def cmd_whois(self, user_id: str, args: list[str]) -> str:
        net, args = self._network(args)
        if net is None or len(args) != 1:
            return "Usage: !whois [network] NICK"
        nick = args[0]
        lines: list[str] = []
        done: Deferred[None] = Deferred()

        def listen(conn: ConnectionCore, event: Numeric) -> None:
            if conn is not net.bot or len(event.params) < 2:
                return
            if irc_key(event.params[1]) != irc_key(nick):
                return
            p = event.params
            if event.command == "RPL_WHOISUSER" and len(p) >= 6:
                lines.append(f"{p[1]} is {p[2]}@{p[3]} ({p[5]})")
            elif event.command == "RPL_WHOISSERVER" and len(p) >= 4:
                lines.append(f"on server {p[2]} ({p[3]})")
            elif event.command == "RPL_WHOISCHANNELS":
                lines.append(f"in {p[-1]}")
            elif event.command == "RPL_WHOISIDLE" and len(p) >= 3:
                lines.append(f"idle {p[2]}s")
            elif event.command == "ERR_NOSUCHNICK":
                lines.append(f"{nick}: no such nick")
                if not done.called:
                    done.callback(None)
            elif event.command == "RPL_ENDOFWHOIS" and not done.called:
                done.callback(None)

        net.numeric_listeners.append(listen)
        timer = self.bridge.clock.callLater(
            WHOIS_TIMEOUT, lambda: done.callback(None) if not done.called else None)
        net.bot.m.send(f"WHOIS {nick}")
        try:
            await done
        finally:
            net.numeric_listeners.remove(listen)
            if timer.active():
                timer.cancel()
        return "\n".join(lines) if lines else f"No answer about {nick}."

    async def cmd_names(self, user_id: str, args: list[str]) -> str:
        net, args = self._network(args)
        if net is None:
            return "Usage: !names [network] [#channel]"
        if args:
            state = net.channels.get(irc_key(args[0]))
            if state is None:
                return f"The bridge is not in {args[0]}."
            names = sorted(("@" if "o" in state.modes.get(k, "") else "") + n
                           for k, n in state.members.items())
            return f"{state.channel} ({len(names)}): " + " ".join(names)
        puppet = net.puppets.get(user_id)
        if puppet is None or not puppet.conn.wanted_channels:
            return f"You are in no channel on {net.net.name}."
        out = []
        for key, channel in sorted(puppet.conn.wanted_channels.items()):
            state = net.channels.get(key)
            out.append(f"{channel}: {len(state.members) if state else 0} people")
        return f"You are {puppet.nick} on {net.net.name}.\n" + "\n".join(out)

    async def cmd_quit(self, user_id: str, args: list[str]) -> str:
        net, _ = self._network(args)
        nets = [net] if net is not None else list(self.bridge.networks.values())
        quitted = []
        for n in nets:
            puppet = n.puppets.get(user_id)
            if puppet is not None:
                await puppet.conn.m.go_idle("Quit from Matrix")
                quitted.append(n.net.name)
        if not quitted:
            return "You have no IRC connection."
        return "Disconnected from " + ", ".join(quitted) + " (you reconnect when you speak)."
