"""The IRC bridge's mapping, end to end in memory: a real homeserver (tests.harness) and
IRC connections on StringTransports driven by the test as the IRC server."""

from __future__ import annotations

import os
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.bridges.irc.support import IrcHarness

BOB = "@irc_test_bob:test"
OP = "@irc_test_op:test"
CAROL = "@irc_test_carol:test"


class IrcToMatrixTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = IrcHarness(self)
        self.h.bot_in_channel("@op", "bob")

    def test_static_portal_and_names(self) -> None:
        """The static channel got a room with its alias; NAMES puts each nick in it as a
        virtual user named after the nick, channel operators at power level 50."""
        h = self.h
        status, body = h.hs.request("GET", "/directory/room/%23irc_test_ruma:test")
        self.assertEqual((status, body["room_id"]), (200, h.room_id))
        members = h.members()
        self.assertEqual(members.get(BOB), "join")
        self.assertEqual(members.get(OP), "join")
        self.assertEqual(h.member_events(BOB)[-1].content.get("displayname"), "bob")
        users = h.state("m.room.power_levels").content["users"]
        self.assertEqual(users.get(OP), 50)
        self.assertNotIn(BOB, users)

    def test_join_nick_part(self) -> None:
        """JOIN joins; NICK changes the display name and keeps the user ID; PART leaves."""
        h = self.h
        h.feed(h.net.bot, ":carol!c@h JOIN :#ruma")
        self.assertEqual(h.members()[CAROL], "join")
        h.feed(h.net.bot, ":carol!c@h NICK :caroline")
        self.assertEqual(h.member_events(CAROL)[-1].content["displayname"], "caroline")
        self.assertEqual(h.members()[CAROL], "join")
        h.feed(h.net.bot, ":caroline!c@h PART #ruma :bye now")
        last = h.member_events(CAROL)[-1]
        self.assertEqual((last.content["membership"], last.content.get("reason")),
                         ("leave", "bye now"))

    def test_quit_and_kick(self) -> None:
        """An ordinary QUIT leaves; a KICK by an op is a kick by that op's virtual user."""
        h = self.h
        h.feed(h.net.bot, ":carol!c@h JOIN :#ruma", ":carol!c@h QUIT :Quit: gone")
        self.assertEqual(h.members()[CAROL], "leave")
        h.feed(h.net.bot, ":op!o@h KICK #ruma bob :behave")
        last = h.member_events(BOB)[-1]
        self.assertEqual((last.content["membership"], last.sender), ("leave", OP))
        self.assertIn("behave", last.content["reason"])

    def test_netsplit_leaves_no_churn(self) -> None:
        """A netsplit QUIT and the return within the window write no membership event; a
        user who does not come back leaves when the window ends."""
        h = self.h
        h.feed(h.net.bot, ":carol!c@h JOIN :#ruma")
        before_bob, before_carol = len(h.member_events(BOB)), len(h.member_events(CAROL))
        h.feed(h.net.bot, ":bob!b@h QUIT :*.net *.split", ":carol!c@h QUIT :*.net *.split")
        h.advance(10)
        h.feed(h.net.bot, ":bob!b@h JOIN :#ruma")
        h.advance(25)
        self.assertEqual(len(h.member_events(BOB)), before_bob)
        self.assertEqual(h.members()[BOB], "join")
        self.assertEqual(h.members()[CAROL], "leave")
        self.assertEqual(len(h.member_events(CAROL)), before_carol + 1)

    def test_topic_and_modes(self) -> None:
        """TOPIC sets the room topic (codes stripped); -o takes the power level away."""
        h = self.h
        h.feed(h.net.bot, ":op!o@h TOPIC #ruma :\x02Welcome\x02 all")
        self.assertEqual(h.state("m.room.topic").content["topic"], "Welcome all")
        h.feed(h.net.bot, ":op!o@h MODE #ruma -o+o op bob")
        users = h.state("m.room.power_levels").content["users"]
        self.assertEqual((users.get(OP), users.get(BOB)), (None, 50))

    def test_messages(self) -> None:
        """PRIVMSG/NOTICE/ACTION become m.text/m.notice/m.emote with formatted_body and the
        server-time as origin_server_ts; a Latin-1 line arrives decoded."""
        h = self.h
        h.feed(h.net.bot,
               "@time=2024-01-02T03:04:05.678Z :bob!b@h PRIVMSG #ruma :hi \x0304red\x03!",
               ":bob!b@h NOTICE #ruma :a notice",
               ":bob!b@h PRIVMSG #ruma :\x01ACTION dances\x01")
        h.net.bot.protocol.dataReceived(b":bob!b@h PRIVMSG #ruma :caf\xe9\r\n")  # type: ignore[union-attr]
        h.pump()
        msgs = [e for e in h.messages() if e.sender == BOB]
        self.assertEqual([m.content["msgtype"] for m in msgs],
                         ["m.text", "m.notice", "m.emote", "m.text"])
        self.assertEqual(msgs[0].content["body"], "hi red!")
        self.assertEqual(msgs[0].content["formatted_body"],
                         'hi <font data-mx-color="#ff0000">red</font>!')
        self.assertEqual(msgs[0].origin_server_ts, 1704164645678)
        self.assertEqual(msgs[3].content["body"], "café")

    def test_bot_reconnects_and_rejoins(self) -> None:
        """The IRC connection drops: the bot reconnects with backoff and joins again."""
        h = self.h
        h.endpoint.down = True
        h.drop(h.net.bot)
        h.pump()
        self.assertIsNone(h.net.bot.connected_protocol())
        count = len(h.endpoint.transports)
        h.advance(5)
        h.endpoint.down = False
        h.advance(120)
        self.assertGreater(len(h.endpoint.transports), count)
        sent = h.welcome(h.net.bot)
        self.assertIn("JOIN #ruma", sent)


class MatrixToIrcTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = IrcHarness(self)
        self.h.bot_in_channel("@op", "bob")
        self.alice, self.token = self.h.hs.register("alice")
        self.h.hs.request("PUT", "/profile/@alice:test/displayname",
                          {"displayname": "Alice Liddell"}, token=self.token)
        status, body = self.h.hs.request("POST", "/join/%23irc_test_ruma:test", {},
                                         token=self.token)
        assert status == 200, body
        self.h.pump()
        self.puppet = self.h.net.puppets[self.alice]
        sent = self.h.welcome(self.puppet.conn, "Alice_Liddell[m]")
        self.assertIn("JOIN #ruma", sent)
        self.h.feed(self.puppet.conn, ":Alice_Liddell[m]!a@h JOIN :#ruma")
        self.h.feed(self.h.net.bot, ":Alice_Liddell[m]!a@h JOIN :#ruma")
        self.txn = 0

    def send(self, content: dict[str, Any], etype: str = "m.room.message") -> str:
        self.txn += 1
        status, body = self.h.hs.request(
            "PUT", f"/rooms/{self.h.room_id}/send/{etype}/t{self.txn}", content,
            token=self.token)
        assert status == 200, body
        self.h.pump()
        return str(body["event_id"])

    def test_puppet_nick_and_no_echo(self) -> None:
        """The Matrix user's puppet has a nick from the display name; what it says is
        never relayed back into the room."""
        h = self.h
        self.assertEqual(self.puppet.nick, "Alice_Liddell[m]")
        self.assertNotIn("@irc_test_alice_liddell=5bm=5d:test", h.members())
        self.send({"msgtype": "m.text", "body": "hello"})
        self.assertEqual(h.sent(self.puppet.conn), ["PRIVMSG #ruma :hello"])
        before = len(h.messages())
        h.feed(h.net.bot, "@msgid=x :Alice_Liddell[m]!a@h PRIVMSG #ruma :hello")
        h.feed(self.puppet.conn, "@msgid=x :Alice_Liddell[m]!a@h PRIVMSG #ruma :hello")
        self.assertEqual(len(h.messages()), before)

    def test_formatting_emote_notice(self) -> None:
        """formatted_body becomes mIRC codes; emotes are ACTIONs; notices NOTICEs."""
        h = self.h
        self.send({"msgtype": "m.text", "body": "a bold move", "format":
                   "org.matrix.custom.html", "formatted_body": "a <b>bold</b> move"})
        self.send({"msgtype": "m.emote", "body": "waves"})
        self.send({"msgtype": "m.notice", "body": "fyi"})
        self.assertEqual(h.sent(self.puppet.conn), [
            "PRIVMSG #ruma :a \x02bold\x02 move", "PRIVMSG #ruma :\x01ACTION waves\x01",
            "NOTICE #ruma :fyi"])

    def test_reply_edit_file_and_long(self) -> None:
        """A reply quotes the original briefly; an edit is '* new text'; a file is a link;
        a long message is split into lines that fit."""
        h = self.h
        h.feed(h.net.bot, ":bob!b@h PRIVMSG #ruma :what is the answer to everything?")
        original = [e for e in h.messages() if e.sender == BOB][-1].event_id
        self.send({"msgtype": "m.text", "body": "> <@irc_test_bob:test> what is…\n\n42",
                   "m.relates_to": {"m.in_reply_to": {"event_id": original}}})
        mine = self.send({"msgtype": "m.text", "body": "helo"})
        self.send({"msgtype": "m.text", "body": "* hello", "m.new_content":
                   {"msgtype": "m.text", "body": "hello"},
                   "m.relates_to": {"rel_type": "m.replace", "event_id": mine}})
        self.send({"msgtype": "m.image", "body": "cat.png", "url": "mxc://test/abc"})
        sent = h.sent(self.puppet.conn)
        self.assertEqual(sent[0], 'PRIVMSG #ruma :<bob> "what is the answer to everything?" '
                                  "<- 42")
        self.assertEqual(sent[2], "PRIVMSG #ruma :* hello")
        self.assertEqual(sent[3], "PRIVMSG #ruma :cat.png "
                                  "<https://test/_matrix/media/v3/download/test/abc>")
        self.send({"msgtype": "m.text", "body": "line one\nline two\n" + "x" * 1000})
        lines = h.sent(self.puppet.conn)
        self.assertEqual(lines[:2], ["PRIVMSG #ruma :line one", "PRIVMSG #ruma :line two"])
        self.assertEqual("".join(ln.split(" :", 1)[1] for ln in lines[2:]), "x" * 1000)
        for ln in lines:
            self.assertLess(len(ln.encode()) + len(":Alice_Liddell[m]!~alice@" + "h" * 63),
                            512)

    def test_topic_rename_leave(self) -> None:
        """A Matrix topic is set by the puppet; a new display name is a NICK; leaving the
        room PARTs the channel."""
        h = self.h
        status, _ = h.hs.request("PUT", f"/rooms/{h.room_id}/state/m.room.topic/",
                                 {"topic": "from matrix"}, token=self.token)
        self.assertEqual(status, 200)
        h.pump()
        h.hs.request("PUT", "/profile/@alice:test/displayname", {"displayname": "Al"},
                     token=self.token)
        h.pump()
        h.hs.request("POST", f"/rooms/{h.room_id}/leave", {}, token=self.token)
        h.pump()
        self.assertEqual(h.sent(self.puppet.conn),
                         ["TOPIC #ruma :from matrix", "NICK Al[m]", "PART #ruma"])

    def test_kick_needs_ops(self) -> None:
        """Kicking a virtual user on Matrix kicks the nick on IRC only if the puppet is a
        channel operator."""
        h = self.h
        # Give alice power to kick in the room (the bot is the room's creator).
        pl = dict(h.state("m.room.power_levels").content)
        pl["users"] = {**pl.get("users", {}), self.alice: 50}
        h.hs.run(h.bridge.handle.bot.send_state(h.room_id, "m.room.power_levels", "", pl))
        h.pump()
        status, body = h.hs.request("POST", f"/rooms/{h.room_id}/kick",
                                    {"user_id": BOB, "reason": "spam"}, token=self.token)
        self.assertEqual(status, 200, body)
        h.pump()
        self.assertEqual(h.sent(self.puppet.conn), [])
        h.feed(h.net.bot, ":op!o@h MODE #ruma +o Alice_Liddell[m]", ":bob!b@h JOIN :#ruma")
        status, body = h.hs.request("POST", f"/rooms/{h.room_id}/ban",
                                    {"user_id": BOB, "reason": "again"}, token=self.token)
        self.assertEqual(status, 200, body)
        h.pump()
        self.assertEqual(h.sent(self.puppet.conn),
                         ["MODE #ruma +b bob!*@*", "KICK #ruma bob :again"])

    def test_private_messages_become_dm_rooms(self) -> None:
        """A PRIVMSG to the puppet opens a DM room from the sender's virtual user, which the
        Matrix user is invited to; their answers go back as PRIVMSGs."""
        h = self.h
        h.feed(self.puppet.conn, ":bob!b@h PRIVMSG Alice_Liddell[m] :psst")
        status, body = h.hs.request("GET", "/sync", token=self.token)
        invites = body["rooms"].get("invite", {})
        self.assertEqual(len(invites), 1)
        dm = next(iter(invites))
        h.hs.request("POST", f"/join/{dm}", {}, token=self.token)
        h.pump()
        self.assertEqual([e.content["body"] for e in h.messages(dm)], ["psst"])
        self.txn += 1
        h.hs.request("PUT", f"/rooms/{dm}/send/m.room.message/x{self.txn}",
                     {"msgtype": "m.text", "body": "hi bob"}, token=self.token)
        h.pump()
        self.assertEqual(h.sent(self.puppet.conn), ["PRIVMSG bob :hi bob"])

    def test_admin_room(self) -> None:
        """Inviting the bot makes an admin room; !help and !nick work there."""
        h = self.h
        status, body = h.hs.request("POST", "/createRoom", {"invite": ["@ircbot:test"],
                                                            "is_direct": True},
                                    token=self.token)
        admin = body["room_id"]
        h.pump()
        self.assertIn("admin room", h.messages(admin)[-1].content["body"])
        for i, cmd in enumerate(["!help", "!nick Alicia", "!nick 9bad", "!names #ruma"]):
            h.hs.request("PUT", f"/rooms/{admin}/send/m.room.message/a{i}",
                         {"msgtype": "m.text", "body": cmd}, token=self.token)
            h.pump()
        replies = [e.content["body"] for e in h.messages(admin) if e.sender == "@ircbot:test"]
        self.assertIn("!whois", replies[1])
        self.assertIn("Alicia", replies[2])
        self.assertIn("not a valid IRC nick", replies[3])
        self.assertIn("@op", replies[4])
        self.assertEqual(h.sent(self.puppet.conn), ["NICK Alicia"])


class LifecycleTests(SynchronousTestCase):
    def test_idle_puppets_disconnect_and_come_back(self) -> None:
        """A puppet idle longer than idle_timeout QUITs; speaking again reconnects it."""
        h = IrcHarness(self, idle_timeout=600)
        h.bot_in_channel("bob")
        alice, token = h.hs.register("alice")
        h.hs.request("POST", "/join/%23irc_test_ruma:test", {}, token=token)
        h.pump()
        puppet = h.net.puppets[alice]
        h.welcome(puppet.conn, "alice[m]")
        proto = puppet.conn.protocol
        h.advance(700)
        self.assertIn("QUIT :Idle", proto.transport.value().decode())  # type: ignore[union-attr]
        count = len(h.endpoint.transports)
        h.hs.request("PUT", f"/rooms/{h.room_id}/send/m.room.message/1",
                     {"msgtype": "m.text", "body": "back"}, token=token)
        h.pump()
        self.assertEqual(len(h.endpoint.transports), count + 1)
        self.assertEqual(h.welcome(puppet.conn, "alice[m]"),
                         ["JOIN #ruma", "PRIVMSG #ruma :back"])

    def test_restart_restores_portals_and_puppets(self) -> None:
        """Portals, puppets (with their nicks) and virtual users come back after a restart."""
        data_dir = os.path.abspath(self.mktemp())
        os.makedirs(data_dir)
        h = IrcHarness(self, data_dir=data_dir)
        h.bot_in_channel("bob")
        alice, token = h.hs.register("alice")
        h.hs.request("POST", "/join/%23irc_test_ruma:test", {}, token=token)
        h.pump()
        h.welcome(h.net.puppets[alice].conn, "alice[m]_")  # got a collided nick
        room_id = h.room_id
        h.shutdown()
        h.hs.db.close()

        h2 = IrcHarness(self, data_dir=data_dir)
        self.assertEqual(h2.room_id, room_id)
        self.assertIn(alice, h2.net.puppets)
        self.assertEqual(h2.net.puppets[alice].conn.settings_for_attempt().nickname,
                         "alice[m]_")
        self.assertEqual(h2.welcome(h2.net.bot), ["JOIN #ruma"])
        self.assertEqual(h2.welcome(h2.net.puppets[alice].conn), ["JOIN #ruma"])
        self.assertEqual(h2.net.virtual_user_for("bob"), BOB)
