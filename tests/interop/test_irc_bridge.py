"""The IRC bridge module against a real InspIRCd and a real ``twistd ruma`` on loopback.

A Matrix user (client API over HTTP) in a portal room and an IRC user on a raw socket see
each other's messages, joins, parts, nick changes and topic changes; the IRC server is
restarted and the bridge reconnects and rejoins; Ruma is restarted and the portal and the
Matrix user's puppet come back.

Peers: InspIRCd (``apt-get install inspircd``; /usr/sbin/inspircd). Missing: skipped with a
message, or failed under ``CI=true``. Both servers are started by the test and stopped by
PID; every wait has a deadline.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
from pathlib import Path
from typing import Any

from twisted.trial.unittest import TestCase

from tests.interop.processes import (
    RumaProcess,
    free_port,
    http_json,
    require_peer,
    ruma_available,
    wait_for,
)
from tests.interop.test_heisenbridge import IrcClient, MatrixUser, register

WAIT = 60.0


def inspircd_path() -> str | None:
    return shutil.which("inspircd") or (
        "/usr/sbin/inspircd" if os.path.exists("/usr/sbin/inspircd") else None
    )


INSPIRCD_CONF = """<server name="irc.test" description="Ruma test IRC" network="RumaTest">
<admin name="Admin" nick="admin" email="admin@irc.test">
<bind address="127.0.0.1" port="{port}" type="clients">
<connect name="main" allow="*" maxchans="50" timeout="20" pingfreq="120" hardsendq="4194304"
 softsendq="65536" recvq="65536" threshold="100000" commandrate="100000" fakelag="no"
 localmax="1000" globalmax="1000" useident="no" limit="5000">
<pid file="{dir}/inspircd.pid">
<log method="file" type="* -USERINPUT -USEROUTPUT" level="default" target="{dir}/ircd.log">
<options prefixquit="Quit: " syntaxhints="no" announcets="yes" hostintopic="yes"
 defaultmodes="n">
<security genericoper="no" hidebans="no" hideulines="no" hidesplits="no" maxtargets="20"
 restrictbannedusers="yes">
<limits maxnick="30" maxchan="64" maxmodes="20" maxident="11" maxhost="64" maxquit="255"
 maxtopic="307" maxkick="255" maxreal="128" maxgecos="128" maxaway="200">
<dns server="127.0.0.1" timeout="1">
<module name="ircv3">
<module name="ircv3_servertime">
<module name="ircv3_echomessage">
<module name="ircv3_msgid">
<module name="ircv3_ctctags">
<module name="cap">
"""


class InspIRCd:
    """An InspIRCd on a loopback port in its own directory; stop/start keep the port."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        binary = inspircd_path()
        require_peer(binary is not None,
                     "InspIRCd is not installed (apt-get install -y inspircd)")
        assert binary is not None
        self.binary = binary
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.conf = self.dir / "inspircd.conf"
        self.conf.write_text(INSPIRCD_CONF.format(port=self.port, dir=self.dir))
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.dir / "inspircd.out", "ab")  # noqa: SIM115 (kept for the child)
        self.popen = subprocess.Popen(
            [self.binary, "--nofork", "--runasroot", f"--config={self.conf}"],
            cwd=self.dir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

        def listening() -> bool:
            assert self.popen is not None
            if self.popen.poll() is not None:
                raise RuntimeError("inspircd exited:\n" + self.tail())
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False

        wait_for(listening, 30, "InspIRCd to listen")

    def stop(self) -> None:
        p = self.popen
        if p is None or p.poll() is not None:
            return
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)

    def tail(self, n: int = 30) -> str:
        out = []
        for name in ("inspircd.out", "ircd.log"):
            try:
                out += (self.dir / name).read_text(errors="replace").splitlines()[-n:]
            except OSError:
                pass
        return "\n".join(out)


def bridge_config(irc_port: int, **network: Any) -> dict[str, Any]:
    net = {
        "host": "127.0.0.1",
        "port": irc_port,
        "bot_nick": "RumaBridge",
        "rate": 1000,
        "burst": 1000,
        "channels": {"#ruma": {}},
    }
    net.update(network)
    return {"bridges": {"irc": {"netsplit_window": 5, "networks": {"test": net}}}}


def start_ruma_with_bridge(test: TestCase, irc_port: int, **network: Any) -> RumaProcess:
    ok, why = ruma_available()
    require_peer(ok, f"Ruma cannot run: {why}")
    ruma = RumaProcess(Path(test.mktemp()), config_overrides=bridge_config(irc_port, **network))
    test.addCleanup(ruma.kill9)
    test.addCleanup(ruma.stop)
    ruma.start()
    return ruma


def irc_wait(irc: IrcClient, pred: Any, what: str, timeout: float = WAIT) -> str:
    return irc.wait(pred, timeout, what)


def irc_wait_after(irc: IrcClient, mark: int, pred: Any, what: str,
                   timeout: float = WAIT) -> str:
    """Like ``irc.wait`` but only for lines received after ``irc.lines[mark]``."""
    deadline = time.monotonic() + timeout
    while True:
        for ln in irc.lines[mark:]:
            if pred(ln):
                return ln
        if time.monotonic() > deadline:
            raise TimeoutError(f"IRC: timed out waiting for {what}; last lines:\n"
                               + "\n".join(irc.lines[-15:]))
        irc._read()


def wait_in_channel(irc: IrcClient, nick: str, channel: str, timeout: float = WAIT) -> None:
    """Poll ``NAMES channel`` until ``nick`` is listed (however it got there)."""
    deadline = time.monotonic() + timeout
    while True:
        start = len(irc.lines)
        irc.send(f"NAMES {channel}")
        answer_by = time.monotonic() + 10
        while not any(f" 366 {irc.nick} {channel} " in ln for ln in irc.lines[start:]):
            if time.monotonic() > answer_by:
                raise TimeoutError(f"IRC: no answer to NAMES {channel}")
            irc._read()
        for ln in irc.lines[start:]:
            if f" 353 {irc.nick} " in ln and any(
                n.lstrip("@+%~&") == nick for n in ln.split(" :", 1)[-1].split()
            ):
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"IRC: {nick} never showed up in {channel}")
        time.sleep(0.2)


def member_event(user: MatrixUser, room_id: str, target: str, membership: str,
                 **content: Any) -> dict[str, Any] | None:
    for e in user.timeline:
        if e["room_id"] != room_id or e.get("type") != "m.room.member":
            continue
        if e.get("state_key") != target:
            continue
        c = e.get("content", {})
        if c.get("membership") != membership:
            continue
        if all(c.get(k) == v for k, v in content.items()):
            return e
    return None


class IrcBridgeInteropTests(TestCase):
    timeout = 600

    def setUp(self) -> None:
        self.ircd = InspIRCd(Path(self.mktemp()).resolve())
        self.addCleanup(self.ircd.stop)
        self.ircd.start()
        self.clients: list[IrcClient] = []
        self.addCleanup(self._close_clients)

    def _close_clients(self) -> None:
        for c in self.clients:
            try:
                c.close()
            except OSError:
                pass

    def irc_user(self, nick: str) -> IrcClient:
        client = IrcClient(self.ircd.port, nick)
        self.clients.append(client)
        return client

    def test_both_ways_and_restarts(self) -> None:
        """Messages, joins, parts, nick and topic changes cross both ways; the bridge
        survives an IRC server restart (reconnects, rejoins) and a Ruma restart (portal and
        puppet restored)."""
        bob = self.irc_user("bob")
        bob.send("JOIN #ruma")
        irc_wait(bob, lambda line: " 366 bob #ruma " in line, "bob in #ruma")

        ruma = start_ruma_with_bridge(self, self.ircd.port)
        server = ruma.server_name
        alias = f"#irc_test_ruma:{server}"
        # The bridge bot joins the channel.
        wait_in_channel(bob, "RumaBridge", "#ruma")

        alice = register(ruma, "alice")
        alice.call("PUT", f"/profile/{urllib.parse.quote(alice.user_id)}/displayname",
                   {"displayname": "Alice Liddell"})
        answer = alice.call("POST", f"/join/{urllib.parse.quote(alias)}", {})
        room_id = answer["room_id"]
        bob_mx = f"@irc_test_bob:{server}"

        # Joins both ways.
        irc_wait(bob, lambda line: line.startswith(":Alice_Liddell[m]!") and " JOIN " in line,
                 "Alice's puppet to join #ruma")
        alice.wait(lambda: member_event(alice, room_id, bob_mx, "join"), "bob's virtual user")

        # IRC -> Matrix, with formatting.
        bob.send("PRIVMSG #ruma :hello \x02bold\x02 from IRC")
        event = alice.wait(lambda: alice.find(room_id, bob_mx, "from IRC"), "bob's message")
        self.assertEqual(event["content"]["body"], "hello bold from IRC")
        self.assertIn("<b>bold</b>", event["content"]["formatted_body"])
        self.assertEqual(event["content"]["msgtype"], "m.text")
        bob.send("PRIVMSG #ruma :\x01ACTION waves\x01")
        emote = alice.wait(lambda: alice.find(room_id, bob_mx, "waves"), "bob's emote")
        self.assertEqual(emote["content"]["msgtype"], "m.emote")

        # Matrix -> IRC, and never echoed back to Matrix.
        alice.send(room_id, "hello from Matrix")
        irc_wait(bob, lambda line: line.startswith(":Alice_Liddell[m]!")
                 and line.endswith("PRIVMSG #ruma :hello from Matrix"), "alice's message")
        long_text = "é" * 600
        alice.send(room_id, long_text)

        def long_lines() -> list[str]:
            return [ln for ln in bob.lines if ln.startswith(":Alice_Liddell[m]!")
                    and ln.endswith("é") and " PRIVMSG #ruma :" in ln]

        irc_wait(bob, lambda line: sum(ln.count("é") for ln in long_lines()) == 600,
                 "the long message, split")
        self.assertGreater(len(long_lines()), 1)
        for ln in long_lines():
            self.assertLessEqual(len(ln.encode("utf-8")) + 2, 512)

        # Nick changes both ways.
        bob.send("NICK bobby")
        alice.wait(lambda: member_event(alice, room_id, bob_mx, "join", displayname="bobby"),
                   "bob's new display name")
        alice.call("PUT", f"/profile/{urllib.parse.quote(alice.user_id)}/displayname",
                   {"displayname": "Alice L"})
        irc_wait(bob, lambda line: line.startswith(":Alice_Liddell[m]!") and " NICK " in line
                 and "Alice_L[m]" in line, "alice's nick change")
        bob.nick = "bobby"

        # Topic changes both ways.
        bob.send("TOPIC #ruma :the topic from IRC")
        alice.wait(lambda: any(e.get("type") == "m.room.topic" and e["content"].get("topic")
                               == "the topic from IRC" for e in alice.timeline),
                   "the IRC topic in the room")
        alice.call("PUT", f"/rooms/{urllib.parse.quote(room_id)}/state/m.room.topic/",
                   {"topic": "the topic from Matrix"})
        irc_wait(bob, lambda line: " TOPIC #ruma :the topic from Matrix" in line,
                 "the Matrix topic on IRC")

        # The IRC server restarts: the bridge reconnects and rejoins.
        self._close_clients()
        self.clients.clear()
        self.ircd.stop()
        self.ircd.start()
        carol = self.irc_user("carol")
        carol.send("JOIN #ruma")
        irc_wait(carol, lambda line: " 366 carol #ruma " in line, "carol in #ruma")
        wait_in_channel(carol, "RumaBridge", "#ruma", timeout=90)
        wait_in_channel(carol, "Alice_L[m]", "#ruma", timeout=90)
        carol_mx = f"@irc_test_carol:{server}"
        carol.send("PRIVMSG #ruma :after the IRC restart")
        alice.wait(lambda: alice.find(room_id, carol_mx, "after the IRC restart"),
                   "carol's message")
        alice.send(room_id, "still here")
        irc_wait(carol, lambda line: line.endswith("PRIVMSG #ruma :still here"),
                 "alice's message after the IRC restart")

        # Ruma restarts: the portal and alice's puppet come back.
        mark = len(carol.lines)
        ruma.restart()
        irc_wait_after(carol, mark, lambda line: line.startswith(":Alice_L[m]!")
                       and " JOIN " in line and "#ruma" in line,
                       "alice's puppet back after the Ruma restart", timeout=90)
        wait_in_channel(carol, "RumaBridge", "#ruma")
        status, body = http_json("GET", ruma.base_url + "/_matrix/client/v3/directory/room/"
                                 + urllib.parse.quote(alias))
        self.assertEqual((status, body.get("room_id")), (200, room_id))
        carol.send("PRIVMSG #ruma :after the Ruma restart")
        alice.wait(lambda: alice.find(room_id, carol_mx, "after the Ruma restart"),
                   "carol's message after the Ruma restart")
        alice.send(room_id, "back again")
        irc_wait(carol, lambda line: line.endswith("PRIVMSG #ruma :back again"),
                 "alice's message after the Ruma restart")

        # Parts both ways.
        carol.send("PART #ruma :bye")
        alice.wait(lambda: member_event(alice, room_id, carol_mx, "leave"), "carol's part")
        dave = self.irc_user("dave")
        dave.send("JOIN #ruma")
        irc_wait(dave, lambda line: " 366 dave #ruma " in line, "dave in #ruma")
        alice.call("POST", f"/rooms/{urllib.parse.quote(room_id)}/leave", {})
        irc_wait(dave, lambda line: line.startswith(":Alice_L[m]!") and " PART " in line
                 and "#ruma" in line,
                 "alice's part")

    def test_dynamic_portal_dm_and_admin_room(self) -> None:
        """Joining an unknown alias of the template creates the portal and joins the
        channel; a Latin-1 line arrives decoded; a private message opens a DM room and the
        answer goes back in private; the admin room answers !names and !whois."""
        ruma = start_ruma_with_bridge(self, self.ircd.port)
        server = ruma.server_name
        erin = self.irc_user("erin")
        erin.send("JOIN #fresh")
        irc_wait(erin, lambda line: " 366 erin #fresh " in line, "erin in #fresh")
        alice = register(ruma, "alice")
        answer = alice.call("POST", "/join/" + urllib.parse.quote(f"#irc_test_fresh:{server}"),
                            {})
        room_id = answer["room_id"]
        wait_in_channel(erin, "RumaBridge", "#fresh")
        erin_mx = f"@irc_test_erin:{server}"
        alice.wait(lambda: member_event(alice, room_id, erin_mx, "join"),
                   "erin in the new portal")
        # A Latin-1 line from an old client arrives decoded (the bridge stays connected).
        erin.sock.sendall(b"PRIVMSG #fresh :caf\xe9 cr\xe8me\r\n")
        alice.wait(lambda: alice.find(room_id, erin_mx, "café crème"), "the Latin-1 line")
        # A private message to alice's puppet opens a DM room she is invited to.
        wait_in_channel(erin, "alice[m]", "#fresh")
        erin.send("PRIVMSG alice[m] :psst, alice")
        dm = alice.wait_invite(set(alice.invites), "the DM invite")
        alice.join(dm)

        def dm_history() -> list[Any]:
            answer = alice.call("GET", f"/rooms/{urllib.parse.quote(dm)}/messages?dir=b"
                                "&limit=50")
            return [e for e in answer["chunk"] if e.get("type") == "m.room.message"
                    and e.get("sender") == erin_mx]

        alice.wait(lambda: any("psst, alice" in e["content"]["body"] for e in dm_history()),
                   "the private message")
        alice.send(dm, "hi erin")
        irc_wait(erin, lambda line: line.startswith(":alice[m]!")
                 and line.endswith("PRIVMSG erin :hi erin"), "the answer in private")
        # The admin room.
        created = alice.call("POST", "/createRoom", {"invite": [f"@ircbot:{server}"],
                                                     "is_direct": True})
        admin = created["room_id"]
        alice.wait(lambda: alice.find(admin, f"@ircbot:{server}", "admin room"), "welcome")
        alice.send(admin, "!names #fresh")
        alice.wait(lambda: alice.find(admin, f"@ircbot:{server}", "erin"), "!names")
        alice.send(admin, "!whois erin")
        alice.wait(lambda: alice.find(admin, f"@ircbot:{server}", "erin is"), "!whois")

    def test_ruma_restart_keeps_relaying(self) -> None:
        """After a Ruma restart the bot and the puppet rejoin and IRC messages still reach
        the same portal room."""
        ruma = start_ruma_with_bridge(self, self.ircd.port)
        server = ruma.server_name
        carol = self.irc_user("carol")
        carol.send("JOIN #ruma")
        wait_in_channel(carol, "RumaBridge", "#ruma")
        alice = register(ruma, "alice")
        room_id = alice.call("POST", "/join/" + urllib.parse.quote(f"#irc_test_ruma:{server}"),
                             {})["room_id"]
        carol_mx = f"@irc_test_carol:{server}"
        carol.send("PRIVMSG #ruma :before")
        alice.wait(lambda: alice.find(room_id, carol_mx, "before"), "before")
        mark = len(carol.lines)
        ruma.restart()
        irc_wait_after(carol, mark, lambda line: line.startswith(":alice[m]!")
                       and " JOIN " in line, "alice's puppet back", timeout=90)
        wait_in_channel(carol, "RumaBridge", "#ruma")
        carol.send("PRIVMSG #ruma :after")
        alice.wait(lambda: alice.find(room_id, carol_mx, "after"), "after")
