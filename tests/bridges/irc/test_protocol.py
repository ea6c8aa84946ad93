"""The IRCClient adapter on an in-memory transport (ruma.bridges.irc.protocol)."""

from __future__ import annotations

import base64

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from ruma.bridges.irc.protocol import (
    CapsNegotiated,
    ConnectionSettings,
    Disconnected,
    IrcEvent,
    IrcProtocol,
    Joined,
    Message,
    ModeChanged,
    Names,
    NickChanged,
    Quit,
    Registered,
    TokenBucket,
    decode_line,
    parse_tags,
    server_time_ms,
)


class Harness:
    def __init__(self, **settings: object) -> None:
        self.clock = Clock()
        self.events: list[IrcEvent] = []
        defaults: dict[str, object] = {"nickname": "alice", "username": "alice",
                                       "realname": "Alice"}
        defaults.update(settings)
        self.proto = IrcProtocol(self.clock, ConnectionSettings(**defaults),  # type: ignore[arg-type]
                                 self.events.append)
        self.transport = StringTransport()
        self.proto.makeConnection(self.transport)

    def sent(self) -> list[str]:
        lines = self.transport.value().decode("utf-8").split("\r\n")
        self.transport.clear()
        return [ln for ln in lines if ln]

    def feed(self, *lines: str | bytes) -> None:
        for line in lines:
            raw = line if isinstance(line, bytes) else line.encode("utf-8")
            self.proto.dataReceived(raw + b"\r\n")

    def register(self, nick: str = "alice") -> None:
        self.feed("CAP * LS :server-time message-tags echo-message",
                  "CAP * ACK :server-time message-tags echo-message",
                  f":irc.test 001 {nick} :Welcome",
                  ":irc.test 005 " + nick + " PREFIX=(ov)@+ CHANMODES=b,k,l,imnpst :ok")
        self.sent()


class PureHelperTests(SynchronousTestCase):
    def test_decoding_fallback(self) -> None:
        """UTF-8 first, then CP1252, then Latin-1: a line is never undecodable."""
        self.assertEqual(decode_line("héllo".encode()), "héllo")
        self.assertEqual(decode_line(b"h\xe9llo \x80"), "héllo €")
        self.assertEqual(decode_line(b"\x81\xe9"), "\x81é")  # undefined in cp1252

    def test_tags(self) -> None:
        """@tags are split off and their escapes undone."""
        tags, rest = parse_tags(r"@time=2024-01-02T03:04:05.678Z;msgid=a\sb\:c;+draft/x :n!u@h "
                                "PRIVMSG #c :hi")
        self.assertEqual(tags, {"time": "2024-01-02T03:04:05.678Z", "msgid": "a b;c",
                                "+draft/x": ""})
        self.assertEqual(rest, ":n!u@h PRIVMSG #c :hi")
        self.assertEqual(server_time_ms("2024-01-02T03:04:05.678Z"), 1704164645678)
        self.assertIsNone(server_time_ms("yesterday"))


class ProtocolTests(SynchronousTestCase):
    def test_cap_negotiation(self) -> None:
        """CAP LS 302 first, REQ of what is offered and wanted, END after the ACK."""
        h = Harness()
        sent = h.sent()
        self.assertEqual(sent, ["CAP LS 302", "NICK alice", "USER alice 0 * :Alice"])
        h.feed(":irc.test CAP * LS * :server-time away-notify",
               ":irc.test CAP * LS :message-tags echo-message sts")
        self.assertEqual(h.sent(), ["CAP REQ :server-time message-tags echo-message"])
        h.feed(":irc.test CAP alice ACK :server-time message-tags echo-message")
        self.assertEqual(h.sent(), ["CAP END"])
        caps = [e for e in h.events if isinstance(e, CapsNegotiated)]
        self.assertEqual(caps[0].caps, frozenset({"server-time", "message-tags",
                                                  "echo-message"}))
        h.feed(":irc.test 001 alice :Welcome")
        self.assertIn(Registered("alice"), h.events)

    def test_server_without_caps(self) -> None:
        """A server that does not know CAP (421) registers us anyway."""
        h = Harness()
        h.sent()
        h.feed(":irc.test 421 * CAP :Unknown command", ":irc.test 001 alice :Welcome")
        self.assertIn(Registered("alice"), h.events)

    def test_sasl_plain(self) -> None:
        """SASL PLAIN: REQ sasl, AUTHENTICATE PLAIN, the base64 credentials, then CAP END on
        903."""
        h = Harness(sasl_username="bridge", sasl_password="s3cret", password="srvpw")
        self.assertEqual(h.sent(), ["CAP LS 302", "PASS srvpw", "NICK alice",
                                    "USER alice 0 * :Alice"])
        h.feed(":irc.test CAP * LS :sasl=PLAIN,EXTERNAL server-time")
        self.assertEqual(h.sent(), ["CAP REQ :server-time sasl"])
        h.feed(":irc.test CAP * ACK :server-time sasl")
        self.assertEqual(h.sent(), ["AUTHENTICATE PLAIN"])
        h.feed("AUTHENTICATE +")
        payload = base64.b64encode(b"bridge\0bridge\0s3cret").decode()
        self.assertEqual(h.sent(), [f"AUTHENTICATE {payload}"])
        h.feed(":irc.test 903 alice :SASL authentication successful")
        self.assertEqual(h.sent(), ["CAP END"])
        caps = [e for e in h.events if isinstance(e, CapsNegotiated)]
        self.assertTrue(caps[0].sasl_ok)

    def test_sasl_failure_still_registers(self) -> None:
        """904 ends CAP negotiation (registration goes on without an account)."""
        h = Harness(sasl_username="bridge", sasl_password="wrong")
        h.sent()
        h.feed("CAP * LS :sasl", "CAP * ACK :sasl", "AUTHENTICATE +")
        h.sent()
        h.feed(":irc.test 904 alice :SASL authentication failed")
        self.assertEqual(h.sent(), ["CAP END"])
        self.assertFalse([e for e in h.events if isinstance(e, CapsNegotiated)][0].sasl_ok)

    def test_message_with_tags_latin1_and_echo(self) -> None:
        """server-time and msgid reach the Message; a Latin-1 line is decoded, not fatal;
        our own echoed message is marked as an echo."""
        h = Harness()
        h.register()
        h.feed("@time=2024-01-02T03:04:05.678Z;msgid=m1 :bob!b@h PRIVMSG #c :hello",
               b":carol!c@h PRIVMSG #c :caf\xe9 cr\xe8me",
               "@msgid=m2 :alice!a@h PRIVMSG #c :mine")
        msgs = [e for e in h.events if isinstance(e, Message)]
        self.assertEqual(msgs[0].time_ms, 1704164645678)
        self.assertEqual(msgs[0].msgid, "m1")
        self.assertEqual((msgs[0].source.nick, msgs[0].target, msgs[0].text),
                         ("bob", "#c", "hello"))
        self.assertEqual(msgs[1].text, "café crème")
        self.assertTrue(msgs[2].echo)
        self.assertFalse(msgs[0].echo)
        self.assertFalse(self.transport_closed(h))

    def transport_closed(self, h: Harness) -> bool:
        return bool(h.transport.disconnecting)

    def test_ctcp_action_notice_and_version(self) -> None:
        """CTCP ACTION is an action; NOTICE a notice; a VERSION query is answered."""
        h = Harness()
        h.register()
        h.feed(":bob!b@h PRIVMSG #c :\x01ACTION waves\x01", ":bob!b@h NOTICE #c :note",
               ":bob!b@h PRIVMSG alice :\x01VERSION\x01")
        msgs = [(e.kind, e.text) for e in h.events if isinstance(e, Message)]
        self.assertEqual(msgs, [("action", "waves"), ("notice", "note")])
        self.assertEqual(h.sent(), ["NOTICE bob :\x01VERSION Ruma IRC bridge\x01"])

    def test_names_modes_membership(self) -> None:
        """NAMES is collected until 366 with prefix modes; MODE arguments are paired."""
        h = Harness()
        h.register()
        h.feed(":irc.test 353 alice = #c :@bob +carol alice",
               ":irc.test 353 alice = #c :dave",
               ":irc.test 366 alice #c :End",
               ":bob!b@h MODE #c +ov-v carol carol dave",
               ":erin!e@h JOIN :#c", ":erin!e@h QUIT :Quit: bye", ":bob!b@h NICK :bobby")
        names = [e for e in h.events if isinstance(e, Names)][0]
        self.assertEqual(dict(names.members), {"bob": "o", "carol": "v", "alice": "",
                                               "dave": ""})
        mode = [e for e in h.events if isinstance(e, ModeChanged)][0]
        self.assertEqual(mode.changes, ((True, "o", "carol"), (True, "v", "carol"),
                                        (False, "v", "dave")))
        self.assertIn(Joined("#c", mode.by.__class__("erin", "e", "h"), {}), h.events)
        self.assertTrue(any(isinstance(e, Quit) and e.reason == "Quit: bye" for e in h.events))
        self.assertIn(NickChanged("bob", "bobby"), h.events)

    def test_nick_in_use_during_registration(self) -> None:
        """433 before 001 tries the next candidate nick."""
        h = Harness(nick_candidates=lambda base: [base, base + "_", base + "2"])
        h.sent()
        h.feed(":irc.test 433 * alice :Nickname is already in use")
        self.assertEqual(h.sent(), ["NICK alice_"])
        h.feed(":irc.test 433 * alice_ :Nickname is already in use")
        self.assertEqual(h.sent(), ["NICK alice2"])
        h.feed(":irc.test 001 alice2 :Welcome")
        self.assertIn(Registered("alice2"), h.events)

    def test_flood_control_on_the_clock(self) -> None:
        """After the burst, lines leave at ``rate`` per second of the injected clock."""
        h = Harness(rate=2.0, burst=3)
        h.register()
        for i in range(7):
            h.proto.say_text("privmsg", "#c", f"line {i}")
        self.assertEqual(len(h.sent()), 3)
        h.clock.advance(0.5)
        self.assertEqual(h.sent(), ["PRIVMSG #c :line 3"])
        h.clock.advance(1.0)
        self.assertEqual(h.sent(), ["PRIVMSG #c :line 4", "PRIVMSG #c :line 5"])
        h.clock.advance(10)
        self.assertEqual(h.sent(), ["PRIVMSG #c :line 6"])

    def test_keepalive_ping_and_timeout(self) -> None:
        """A silent server gets a PING after ping_interval and is dropped after ping_timeout;
        the server's own PINGs are answered at once."""
        h = Harness(ping_interval=30.0, ping_timeout=90.0)
        h.register()
        h.feed("PING :abc")
        self.assertEqual(h.sent(), ["PONG abc"])
        h.clock.advance(30)
        self.assertTrue(any(s.startswith("PING :ruma-") for s in h.sent()))
        h.clock.advance(15)
        h.feed(":irc.test PONG irc.test :ruma")
        h.clock.advance(45)
        self.assertFalse(h.transport.disconnecting)
        h.clock.advance(90)
        self.assertTrue(h.transport.disconnecting)

    def test_disconnect_is_an_event(self) -> None:
        """connectionLost says so, and stops the timers."""
        h = Harness()
        h.register()
        h.proto.say_text("privmsg", "#c", "x")
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure

        h.proto.connectionLost(Failure(ConnectionDone()))
        self.assertIsInstance(h.events[-1], Disconnected)
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_no_line_injection(self) -> None:
        """Text with CR/LF is sent as one line."""
        h = Harness()
        h.register()
        h.proto.say_text("privmsg", "#c", "a\r\nQUIT :gotcha")
        self.assertEqual(h.sent(), ["PRIVMSG #c :a QUIT :gotcha"])


class TokenBucketTests(SynchronousTestCase):
    def test_bucket(self) -> None:
        """Tokens refill at the rate up to the burst."""
        clock = Clock()
        b = TokenBucket(clock, rate=1.0, burst=2)
        self.assertTrue(b.take())
        self.assertTrue(b.take())
        self.assertFalse(b.take())
        self.assertAlmostEqual(b.wait_time(), 1.0)
        clock.advance(5)
        self.assertTrue(b.take())
        self.assertTrue(b.take())
        self.assertFalse(b.take())
