"""Ruma federating with a real Synapse (from PyPI) over TLS on loopback, both ways.

One CA, one Synapse and one ``twistd ruma`` (both SQLite), shared by every test of the
class: starting them costs ~6 s and each scenario creates its own rooms and users, so
sharing is honest (the two restart scenarios leave both servers running again). Waits are
polls of ``/sync``, ``/messages`` or room state with deadlines; servers are stopped by PID
after the last test (and at interpreter exit whatever happens). Without Synapse installed the
tests are skipped, and under ``CI=true`` they fail.

When a scenario fails, the assertion message carries both servers' log tails; Synapse's log
names exactly what it refused (signature, auth, format).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, ClassVar

from twisted.trial.unittest import TestCase

from tests.interop.federation_env import (
    FederationEnv,
    SyncWatcher,
    create_room,
    federation_peers_available,
    get_state,
    join,
    membership,
    message_bodies,
    messages,
    new_user,
    poll,
    q,
    send_state,
    send_text,
    try_call,
)
from tests.interop.processes import Session, unhandled_errors

#: How long federation may take to deliver one thing across (generous: a noisy machine).
DELIVERY = 45.0


def _state_map(state: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    return {(e["type"], e["state_key"]): e["event_id"] for e in state}


class _Shared:
    """The one environment of the module, started on first use."""

    env: FederationEnv | None = None
    failed: BaseException | None = None

    @classmethod
    def get(cls) -> FederationEnv:
        if cls.failed is not None:
            raise AssertionError(f"the federation environment failed to start: {cls.failed}")
        if cls.env is None:
            base = Path("federation-synapse-env").resolve()
            env = FederationEnv(base)
            try:
                env.start()
            except BaseException as e:
                cls.failed = e
                raise
            cls.env = env
        return cls.env

    @classmethod
    def stop(cls) -> None:
        if cls.env is not None:
            cls.env.stop()
            cls.env = None


class SynapseFederationTests(TestCase):
    """The scenarios of issue 4's "How it is shown", against a real Synapse."""

    timeout = 240
    #: Test names of this class (trial runs them in name order); the last one stops the env.
    _names: ClassVar[list[str]] = []

    def setUp(self) -> None:
        federation_peers_available()
        self.env = _Shared.get()
        self.synapse = self.env.synapse
        self.ruma = self.env.ruma
        # Both servers must be up at the start of every scenario.
        for server in self.env.servers:
            if not server.running():
                server.start()
        self._ruma_log_mark = len(unhandled_errors(self.ruma, limit=10_000))
        names = sorted(n for n in dir(type(self)) if n.startswith("test_"))
        if self._testMethodName == names[-1]:
            self.addCleanup(_Shared.stop)

    def tearDown(self) -> None:
        # A scenario must leave no unhandled error in Ruma's log.
        found = unhandled_errors(self.ruma, limit=10_000)[self._ruma_log_mark :]
        if found:
            self.fail("Ruma logged unhandled errors:\n" + "\n".join(found[:10]))

    # -- helpers --------------------------------------------------------------------------

    def logs(self) -> str:
        return "\n".join(
            [self.ruma.log_tail(40), self.synapse.log_tail(40)]
        )

    def users(self) -> tuple[Session, Session]:
        """A fresh Synapse user and a fresh Ruma user."""
        return new_user(self.synapse, "sam"), new_user(self.ruma, "rita")

    def wait_membership(
        self, session: Session, room_id: str, user_id: str, want: str, timeout: float = DELIVERY
    ) -> None:
        poll(
            lambda: membership(session, room_id, user_id) == want,
            timeout,
            f"{session.base_url} to see {user_id} {want} in {room_id}",
            describe=lambda: f"last seen: {membership(session, room_id, user_id)}\n{self.logs()}",
        )

    def shared_room(self, host: Session, guest: Session, **create: Any) -> str:
        """A public room created by ``host`` that ``guest`` (the other server) has joined."""
        create.setdefault("preset", "public_chat")
        room_id = create_room(host, **create)
        host_server = host.user_id.split(":", 1)[1]
        join(guest, room_id, [host_server])
        self.wait_membership(host, room_id, guest.user_id, "join")
        return room_id

    def wait_bodies(self, session: Session, room_id: str, wanted: list[str], timeout: float) -> None:
        """``/messages`` on ``session``'s server holds ``wanted``, in that order."""

        def present() -> bool:
            bodies = message_bodies(session, room_id, limit=max(100, 2 * len(wanted)))
            return [b for b in bodies if b in set(wanted)] == wanted

        poll(
            present,
            timeout,
            f"{len(wanted)} messages in order on {session.base_url}",
            interval=0.5,
            describe=lambda: f"seen: {message_bodies(session, room_id, 200)}\n{self.logs()}",
        )

    # -- 1. joins -------------------------------------------------------------------------

    def test_01_ruma_user_joins_synapse_room_by_id_and_alias(self) -> None:
        """A Ruma user joins a Synapse room by room ID and another by alias; both servers
        see the join, and the joiner sees the room's creator and name in its state."""
        sam, rita = self.users()
        by_id = create_room(sam, preset="public_chat", name="synapse by id")
        joined = join(rita, by_id, [self.synapse.server_name])
        self.assertEqual(joined, by_id)
        self.wait_membership(sam, by_id, rita.user_id, "join")
        state = _state_map(get_state(rita, by_id))
        self.assertIn(("m.room.name", ""), state)
        self.assertIn(("m.room.member", sam.user_id), state)

        alias_local = f"fed{int(time.time() * 1000) % 10**8}"
        by_alias = create_room(
            sam, preset="public_chat", name="synapse by alias", room_alias_name=alias_local
        )
        alias = f"#{alias_local}:{self.synapse.server_name}"
        self.assertEqual(join(rita, alias), by_alias)
        self.wait_membership(sam, by_alias, rita.user_id, "join")

    def test_01_synapse_user_joins_ruma_room_by_id_and_alias(self) -> None:
        """The reverse: a Synapse user joins a Ruma room by ID and by a Ruma alias."""
        sam, rita = self.users()
        by_id = create_room(rita, preset="public_chat", name="ruma by id")
        self.assertEqual(join(sam, by_id, [self.ruma.server_name]), by_id)
        self.wait_membership(rita, by_id, sam.user_id, "join")
        state = _state_map(get_state(sam, by_id))
        self.assertIn(("m.room.name", ""), state)
        self.assertIn(("m.room.member", rita.user_id), state)

        alias_local = f"fed{int(time.time() * 1000) % 10**8}"
        by_alias = create_room(
            rita, preset="public_chat", name="ruma by alias", room_alias_name=alias_local
        )
        alias = f"#{alias_local}:{self.ruma.server_name}"
        self.assertEqual(join(sam, alias), by_alias)
        self.wait_membership(rita, by_alias, sam.user_id, "join")

    # -- 2. invites -----------------------------------------------------------------------

    def test_02_invites_both_ways(self) -> None:
        """A Synapse user invites a Ruma user to a private room: the invite shows in Ruma's
        /sync and accepting it joins; and the reverse, seen in Synapse's /sync."""
        sam, rita = self.users()
        rita_sync, sam_sync = SyncWatcher(rita), SyncWatcher(sam)

        s_room = create_room(sam, preset="private_chat", name="synapse private")
        sam.call("POST", f"/_matrix/client/v3/rooms/{q(s_room)}/invite", {"user_id": rita.user_id})
        rita_sync.wait(lambda: s_room in rita_sync.invites, DELIVERY, "the invite from Synapse")
        invite_state = rita_sync.invites[s_room].get("invite_state", {}).get("events", [])
        self.assertIn("m.room.name", {e["type"] for e in invite_state}, invite_state)
        join(rita, s_room)
        self.wait_membership(sam, s_room, rita.user_id, "join")

        r_room = create_room(rita, preset="private_chat", name="ruma private")
        rita.call("POST", f"/_matrix/client/v3/rooms/{q(r_room)}/invite", {"user_id": sam.user_id})
        sam_sync.wait(lambda: r_room in sam_sync.invites, DELIVERY, "the invite from Ruma")
        invite_state = sam_sync.invites[r_room].get("invite_state", {}).get("events", [])
        self.assertIn("m.room.name", {e["type"] for e in invite_state}, invite_state)
        join(sam, r_room)
        self.wait_membership(rita, r_room, sam.user_id, "join")

    # -- 3. messages ----------------------------------------------------------------------

    def test_03_messages_both_ways_through_sync(self) -> None:
        """Messages sent on each side arrive in the other side's /sync, in the order each
        sender sent them, in a room on Synapse and in a room on Ruma; /messages on both
        servers then holds all of them."""
        sam, rita = self.users()
        for host, guest in ((sam, rita), (rita, sam)):
            self._messages_both_ways(host, guest)

    # -- 4. profile, typing, receipts -----------------------------------------------------

    def test_04_profile_changes_across(self) -> None:
        """A display name change on either side updates the member event the other server
        holds, and each server answers a profile query for the other's user."""
        sam, rita = self.users()
        room_id = self.shared_room(sam, rita)
        for who, other in ((rita, sam), (sam, rita)):
            name = f"Name {who.user_id[1:4]} {int(time.time())}"
            who.call(
                "PUT", f"/_matrix/client/v3/profile/{q(who.user_id)}/displayname",
                {"displayname": name},
            )

            def seen(other: Session = other, who: Session = who, name: str = name) -> bool:
                status, body = try_call(
                    other, "GET",
                    f"/_matrix/client/v3/rooms/{q(room_id)}/state/m.room.member/{q(who.user_id)}",
                )
                return status == 200 and body.get("displayname") == name

            poll(seen, DELIVERY, f"{other.base_url} to see {who.user_id} renamed {name!r}",
                 describe=self.logs)
            # The profile query goes over federation (a cache may lag: poll).
            poll(
                lambda other=other, who=who, name=name: try_call(  # type: ignore[misc]
                    other, "GET", f"/_matrix/client/v3/profile/{q(who.user_id)}"
                )[1].get("displayname")
                == name,
                DELIVERY,
                f"{other.base_url} to answer {who.user_id}'s profile",
                describe=self.logs,
            )

    def test_04_typing_across(self) -> None:
        """A typing notification on either side appears in the other side's /sync."""
        sam, rita = self.users()
        room_id = self.shared_room(sam, rita)
        sam_sync, rita_sync = SyncWatcher(sam), SyncWatcher(rita)
        for who, watcher in ((rita, sam_sync), (sam, rita_sync)):
            who.call(
                "PUT", f"/_matrix/client/v3/rooms/{q(room_id)}/typing/{q(who.user_id)}",
                {"typing": True, "timeout": 30000},
            )
            watcher.wait(
                lambda w=watcher, u=who.user_id: any(  # type: ignore[misc]
                    u in e["content"].get("user_ids", []) for e in w.ephemeral_of(room_id, "m.typing")
                ),
                DELIVERY,
                f"{who.user_id} typing",
            )

    def test_04_receipts_across(self) -> None:
        """A read receipt on either side appears in the other side's /sync."""
        sam, rita = self.users()
        room_id = self.shared_room(sam, rita)
        sam_sync, rita_sync = SyncWatcher(sam), SyncWatcher(rita)
        for who, other, watcher in ((rita, sam, sam_sync), (sam, rita, rita_sync)):
            event_id = send_text(other, room_id, f"read me {who.user_id}")
            poll(
                lambda who=who, event_id=event_id: try_call(  # type: ignore[misc]
                    who, "GET", f"/_matrix/client/v3/rooms/{q(room_id)}/event/{q(event_id)}"
                )[0] == 200,
                DELIVERY,
                f"{event_id} to reach {who.base_url}",
                describe=self.logs,
            )
            who.call(
                "POST", f"/_matrix/client/v3/rooms/{q(room_id)}/receipt/m.read/{q(event_id)}", {}
            )

            def receipt_seen(w: SyncWatcher = watcher, u: str = who.user_id,
                             e: str = event_id) -> bool:
                for edu in w.ephemeral_of(room_id, "m.receipt"):
                    if u in edu["content"].get(e, {}).get("m.read", {}):
                        return True
                return False

            watcher.wait(receipt_seen, DELIVERY, f"{who.user_id}'s receipt on {event_id}")

    # -- 5. leave, kick, ban --------------------------------------------------------------

    def test_05_leave_kick_ban_across(self) -> None:
        """In a room on each server: the remote member leaves (seen by the host); a rejoin
        once the room has become invite-only is refused; it rejoins when public again,
        is kicked (seen by the kicked user's server and /sync), rejoins, is banned, and can
        then not join again."""
        sam, rita = self.users()
        for host, guest in ((sam, rita), (rita, sam)):
            self._leave_kick_ban(host, guest)

    # -- 6. conflicting state -------------------------------------------------------------

    def test_06_state_agrees_after_concurrent_conflicting_changes(self) -> None:
        """Both servers' users have power 100; each side changes the topic and the power
        levels at the same moment, several rounds. Afterwards GET /state on each server
        returns the same state event for every (type, state_key)."""
        sam, rita = self.users()
        for host, guest in ((sam, rita), (rita, sam)):
            self._conflicting_state(host, guest)

    # -- 7. Synapse down while Ruma sends -------------------------------------------------

    def test_07_synapse_down_while_ruma_sends_50(self) -> None:
        """Synapse is stopped while a Ruma user sends 50 messages, then started again: all
        50 arrive at Synapse, in order."""
        sam, rita = self.users()
        room_id = self.shared_room(sam, rita)
        send_text(rita, room_id, "before the outage")
        self.wait_bodies(sam, room_id, ["before the outage"], DELIVERY)

        self.synapse.stop()
        sent = [f"while down {i}" for i in range(50)]
        for body in sent:
            send_text(rita, room_id, body)
        time.sleep(2)  # let Ruma's sender fail at least once and back off
        self.synapse.start()
        self.wait_bodies(sam, room_id, sent, 120)

    # -- 8. Ruma restarted mid-conversation ----------------------------------------------

    def test_08_ruma_restarted_mid_conversation_catches_up(self) -> None:
        """Ruma is stopped mid-conversation while the Synapse user goes on talking, then
        started again: it gets every message it missed (in order, through /sync from a
        token issued before the restart), and the conversation goes on both ways."""
        sam, rita = self.users()
        room_id = self.shared_room(sam, rita)
        rita_sync = SyncWatcher(rita)
        send_text(sam, room_id, "hello 0")
        send_text(rita, room_id, "hello 1")
        rita_sync.wait(lambda: "hello 0" in rita_sync.bodies(room_id), DELIVERY, "hello 0")
        self.wait_bodies(sam, room_id, ["hello 0", "hello 1"], DELIVERY)

        self.ruma.stop()
        missed = [f"missed {i}" for i in range(10)]
        for body in missed:
            send_text(sam, room_id, body)
        self.ruma.start()

        rita_sync.wait(
            lambda: [b for b in rita_sync.bodies(room_id) if b in missed] == missed,
            120,
            "the messages sent while Ruma was down, in order",
        )
        send_text(rita, room_id, "back again")
        send_text(sam, room_id, "welcome back")
        self.wait_bodies(sam, room_id, ["back again"], DELIVERY)
        rita_sync.wait(lambda: "welcome back" in rita_sync.bodies(room_id), DELIVERY, "welcome")

    # -- 9. backfill ----------------------------------------------------------------------

    def test_09_messages_backfills_history_of_a_room_joined_late(self) -> None:
        """A Synapse room has 80 messages before the Ruma user joins; paginating /messages
        backwards on Ruma returns all of them, oldest last, by backfilling from Synapse."""
        sam, rita = self.users()
        room_id = create_room(sam, preset="public_chat", name="history")
        history = [f"old {i}" for i in range(80)]
        for body in history:
            send_text(sam, room_id, body)
        join(rita, room_id, [self.synapse.server_name])

        seen: list[str] = []
        token = ""
        for _ in range(40):
            page = messages(rita, room_id, limit=30, since=token)
            seen.extend(
                e["content"].get("body", "")
                for e in page["chunk"]
                if e.get("type") == "m.room.message"
            )
            if not page["chunk"] or "end" not in page or any(
                e.get("type") == "m.room.create" for e in page["chunk"]
            ):
                break
            token = page["end"]
        self.assertEqual([b for b in reversed(seen) if b in set(history)], history,
                         f"backfilled: {seen}\n{self.logs()}")

    # -- 10. room versions ----------------------------------------------------------------

    def test_10_every_room_version_synapse_supports(self) -> None:
        """For each room version Synapse offers (1–12), a Ruma user joins a Synapse room of
        that version and a Synapse user joins a Ruma room of that version; a message from
        the joiner reaches the host."""
        sam, rita = self.users()
        caps = sam.call("GET", "/_matrix/client/v3/capabilities")["capabilities"]
        available = caps["m.room_versions"]["available"]
        versions = sorted((v for v in available if v.isdigit()), key=int)
        self.assertEqual(versions, [str(v) for v in range(1, 13)])
        failures: list[str] = []
        for version in versions:
            for host, guest in ((sam, rita), (rita, sam)):
                try:
                    room_id = create_room(host, preset="public_chat", room_version=version)
                    join(guest, room_id, [host.user_id.split(":", 1)[1]], timeout=30)
                    text = f"v{version} from {guest.user_id}"
                    send_text(guest, room_id, text)
                    self.wait_bodies(host, room_id, [text], 30)
                except AssertionError as e:
                    failures.append(f"v{version} host {host.base_url}: {str(e)[:500]}")
        self.assertEqual(failures, [], "\n".join(failures) + "\n" + self.logs())

    def _messages_both_ways(self, host: Session, guest: Session) -> None:
        room_id = self.shared_room(host, guest)
        host_sync, guest_sync = SyncWatcher(host), SyncWatcher(guest)
        from_host = [f"host {i} {room_id[:6]}" for i in range(5)]
        from_guest = [f"guest {i} {room_id[:6]}" for i in range(5)]
        for a, b in zip(from_host, from_guest, strict=True):
            send_text(host, room_id, a)
            send_text(guest, room_id, b)
        for watcher, expected in ((guest_sync, from_host), (host_sync, from_guest)):
            watcher.wait(
                lambda w=watcher, e=expected: [  # type: ignore[misc]
                    b for b in w.bodies(room_id) if b in e
                ]
                == e,
                DELIVERY,
                f"{expected} in /sync of {watcher.session.user_id}",
            )
        # Each server's /messages holds all ten, each sender's five in the order sent
        # (concurrent events from the two servers may interleave differently).
        for session in (host, guest):
            for expected in (from_host, from_guest):
                self.wait_bodies(session, room_id, expected, DELIVERY)

    def _leave_kick_ban(self, host: Session, guest: Session) -> None:
        host_server = host.user_id.split(":", 1)[1]
        room_id = self.shared_room(host, guest)
        guest_sync = SyncWatcher(guest)

        guest.call("POST", f"/_matrix/client/v3/rooms/{q(room_id)}/leave", {})
        self.wait_membership(host, room_id, guest.user_id, "leave")

        # While the guest's server is out of the room, the room becomes invite-only:
        # a rejoin must be refused (its server's copy of the state is stale).
        send_state(host, room_id, "m.room.join_rules", {"join_rule": "invite"})
        status, body = try_call(
            guest, "POST",
            f"/_matrix/client/v3/join/{q(room_id)}?server_name={q(host_server)}", {},
        )
        self.assertEqual(status, 403, f"joined an invite-only room: {body}\n{self.logs()}")
        self.assertEqual(membership(host, room_id, guest.user_id), "leave")
        send_state(host, room_id, "m.room.join_rules", {"join_rule": "public"})

        join(guest, room_id, [host_server])
        self.wait_membership(host, room_id, guest.user_id, "join")
        host.call(
            "POST", f"/_matrix/client/v3/rooms/{q(room_id)}/kick",
            {"user_id": guest.user_id, "reason": "kick test"},
        )
        guest_sync.wait(lambda: room_id in guest_sync.left, DELIVERY, "the kick in /sync")
        poll(
            lambda: membership(guest, room_id, guest.user_id) in (None, "leave"),
            DELIVERY, f"{guest.base_url} to know of the kick", describe=self.logs,
        )

        join(guest, room_id, [host_server])
        self.wait_membership(host, room_id, guest.user_id, "join")
        guest_sync.sync(0)
        guest_sync.left.discard(room_id)
        host.call(
            "POST", f"/_matrix/client/v3/rooms/{q(room_id)}/ban",
            {"user_id": guest.user_id, "reason": "ban test"},
        )
        self.wait_membership(host, room_id, guest.user_id, "ban")
        # ... and the guest's server has it too (its /sync shows the room left).
        guest_sync.wait(lambda: room_id in guest_sync.left, DELIVERY, "the ban in /sync")
        status, body = try_call(
            guest, "POST",
            f"/_matrix/client/v3/join/{q(room_id)}?server_name={q(host_server)}", {},
        )
        self.assertEqual(status, 403, f"a banned user joined again: {body}")

    def _conflicting_state(self, host: Session, guest: Session) -> None:
        room_id = self.shared_room(host, guest)
        pl_path = f"/_matrix/client/v3/rooms/{q(room_id)}/state/m.room.power_levels/"
        levels = host.call("GET", pl_path)
        levels["users"][guest.user_id] = 100
        host.call("PUT", pl_path, levels)
        poll(
            lambda: try_call(guest, "GET", pl_path)[1].get("users", {}).get(guest.user_id)
            == 100,
            DELIVERY, "the guest's power level to arrive", describe=self.logs,
        )
        errors: list[str] = []

        def change(session: Session, tag: str, rnd: int) -> None:
            try:
                send_state(session, room_id, "m.room.topic", {"topic": f"{tag} {rnd}"})
                pl = dict(levels)
                pl["events_default"] = rnd + (1 if tag == "s" else 2)
                pl["users"] = dict(levels["users"])
                pl["users"][f"@extra{tag}{rnd}:example.org"] = 10
                send_state(session, room_id, "m.room.power_levels", pl)
            except AssertionError as e:
                errors.append(f"{session.user_id}: {e}")

        for rnd in range(3):
            threads = [
                threading.Thread(target=change, args=(host, "h", rnd)),
                threading.Thread(target=change, args=(guest, "g", rnd)),
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
        self.assertEqual(errors, [])
        # One more message from each side merges the forks on both servers.
        send_text(host, room_id, "merge h")
        send_text(guest, room_id, "merge g")
        self.wait_bodies(host, room_id, ["merge g"], DELIVERY)
        self.wait_bodies(guest, room_id, ["merge h"], DELIVERY)

        def agree() -> bool:
            return _state_map(get_state(host, room_id)) == _state_map(get_state(guest, room_id))

        def diff() -> str:
            a, b = _state_map(get_state(host, room_id)), _state_map(get_state(guest, room_id))
            keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            lines = [f"{k}: {host.base_url}={a.get(k)} {guest.base_url}={b.get(k)}" for k in keys]
            return "state differs:\n" + "\n".join(lines) + "\n" + self.logs()

        poll(agree, DELIVERY, "both servers to agree on the room state", describe=diff)
