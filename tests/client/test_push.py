"""Push over HTTP: rule CRUD, unread counts in /sync, /notifications, pushers and the
push gateway."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.push.helpers import make_push_homeserver


class PushRuleCrudTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.hs = make_push_homeserver(self)
        self.alice, self.token = self.hs.register("alice")

    def req(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return self.hs.request(method, path, body, token=self.token)

    def ids(self, kind: str) -> list[str]:
        _, rules = self.req("GET", "/pushrules/global/")
        return [r["rule_id"] for r in rules[kind]]

    def test_create_get_delete(self) -> None:
        """A new rule is enabled, listed before the defaults of its kind, and can be deleted."""
        status, _ = self.req("PUT", "/pushrules/global/content/cake", {"pattern": "cake*lie", "actions": ["notify"]})
        self.assertEqual(status, 200)
        status, rule = self.req("GET", "/pushrules/global/content/cake")
        self.assertEqual(
            (status, rule),
            (200, {"rule_id": "cake", "default": False, "enabled": True, "pattern": "cake*lie", "actions": ["notify"]}),
        )
        self.assertEqual(self.ids("content"), ["cake", ".m.rule.contains_user_name"])
        self.assertEqual(self.req("DELETE", "/pushrules/global/content/cake"), (200, {}))
        status, body = self.req("GET", "/pushrules/global/content/cake")
        self.assertEqual((status, body["errcode"]), (404, "M_NOT_FOUND"))
        status, body = self.req("DELETE", "/pushrules/global/content/cake")
        self.assertEqual((status, body["errcode"]), (404, "M_NOT_FOUND"))

    def test_override_goes_after_master(self) -> None:
        """User override rules come after .m.rule.master and before the other defaults."""
        self.req("PUT", "/pushrules/global/override/mine", {"conditions": [], "actions": []})
        self.assertEqual(self.ids("override")[:3], [".m.rule.master", "mine", ".m.rule.suppress_notices"])

    def test_before_and_after(self) -> None:
        """New rules go first; before/after place them; an update keeps its place."""
        for name in ("a", "b", "c"):
            self.req("PUT", f"/pushrules/global/underride/{name}", {"conditions": [], "actions": []})
        self.assertEqual(self.ids("underride")[:3], ["c", "b", "a"])
        self.req("PUT", "/pushrules/global/underride/d?before=a", {"conditions": [], "actions": []})
        self.assertEqual(self.ids("underride")[:4], ["c", "b", "d", "a"])
        self.req("PUT", "/pushrules/global/underride/c?after=a", {"conditions": [], "actions": ["notify"]})
        self.assertEqual(self.ids("underride")[:4], ["b", "d", "a", "c"])
        self.req("PUT", "/pushrules/global/underride/b", {"conditions": [], "actions": ["notify"]})
        self.assertEqual(self.ids("underride")[:4], ["b", "d", "a", "c"])
        status, body = self.req("PUT", "/pushrules/global/underride/e?before=nope", {"conditions": [], "actions": []})
        self.assertEqual((status, body["errcode"]), (400, "M_UNKNOWN"))
        status, body = self.req(
            "PUT", "/pushrules/global/underride/e?before=.m.rule.message", {"conditions": [], "actions": []}
        )
        self.assertEqual(status, 400)

    def test_defaults_cannot_be_created_or_deleted(self) -> None:
        """Rule IDs starting with '.' are refused; deleting a default is 404."""
        status, body = self.req("PUT", "/pushrules/global/override/.m.rule.master", {"conditions": [], "actions": []})
        self.assertEqual((status, body["errcode"]), (400, "M_INVALID_PARAM"))
        status, body = self.req("DELETE", "/pushrules/global/override/.m.rule.master")
        self.assertEqual((status, body["errcode"]), (404, "M_NOT_FOUND"))

    def test_enabled_and_actions_of_defaults(self) -> None:
        """Defaults can be switched on/off and given other actions."""
        self.assertEqual(self.req("GET", "/pushrules/global/override/.m.rule.master/enabled"), (200, {"enabled": False}))
        self.assertEqual(self.req("PUT", "/pushrules/global/override/.m.rule.master/enabled", {"enabled": True}), (200, {}))
        self.assertEqual(self.req("GET", "/pushrules/global/override/.m.rule.master/enabled"), (200, {"enabled": True}))
        self.assertEqual(
            self.req("PUT", "/pushrules/global/underride/.m.rule.message/actions", {"actions": []}), (200, {})
        )
        self.assertEqual(self.req("GET", "/pushrules/global/underride/.m.rule.message/actions"), (200, {"actions": []}))
        status, body = self.req("PUT", "/pushrules/global/underride/.m.rule.message/enabled", {"enabled": "yes"})
        self.assertEqual((status, body["errcode"]), (400, "M_BAD_JSON"))
        status, body = self.req("GET", "/pushrules/global/underride/nope/enabled")
        self.assertEqual((status, body["errcode"]), (404, "M_NOT_FOUND"))

    def test_bad_requests(self) -> None:
        """Unknown scope or kind, missing actions, bad actions, room rules on non-room IDs."""
        self.assertEqual(self.req("PUT", "/pushrules/device/override/x", {"actions": []})[0], 400)
        self.assertEqual(self.req("PUT", "/pushrules/global/bogus/x", {"actions": []})[0], 400)
        status, body = self.req("PUT", "/pushrules/global/override/x", {"conditions": []})
        self.assertEqual((status, body["errcode"]), (400, "M_MISSING_PARAM"))
        status, body = self.req("PUT", "/pushrules/global/override/x", {"conditions": [], "actions": ["fly"]})
        self.assertEqual((status, body["errcode"]), (400, "M_BAD_JSON"))
        self.assertEqual(self.req("PUT", "/pushrules/global/room/x", {"actions": []})[0], 400)
        status, body = self.req("PUT", "/pushrules/global/content/x", {"actions": []})
        self.assertEqual((status, body["errcode"]), (400, "M_MISSING_PARAM"))

    def test_room_and_sender_rules(self) -> None:
        """Room and sender rules take the room/user ID as rule ID and have no conditions."""
        self.assertEqual(self.req("PUT", "/pushrules/global/room/!abc:test", {"actions": []}), (200, {}))
        status, rule = self.req("GET", "/pushrules/global/room/!abc:test")
        self.assertEqual(status, 200)
        self.assertNotIn("conditions", rule)
        self.assertEqual(self.req("PUT", "/pushrules/global/sender/@bob:test", {"actions": ["notify"]}), (200, {}))
        self.assertEqual(self.ids("sender"), ["@bob:test"])

    def test_changes_reach_sync(self) -> None:
        """A rule change appears as m.push_rules account data in the next incremental sync."""
        first = self.hs.sync(self.token)
        rules = [e for e in first["account_data"]["events"] if e["type"] == "m.push_rules"]
        self.assertEqual(len(rules), 1)
        self.req("PUT", "/pushrules/global/override/x", {"conditions": [], "actions": []})
        nxt = self.hs.sync(self.token, since=first["next_batch"])
        rules = [e for e in nxt["account_data"]["events"] if e["type"] == "m.push_rules"]
        self.assertEqual(rules[0]["content"]["global"]["override"][1]["rule_id"], "x")


class UnreadCountTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.hs = make_push_homeserver(self)
        self.alice, self.a_token = self.hs.register("alice")
        self.bob, self.b_token = self.hs.register("bob")
        self.carol, _ = self.hs.register("carol")
        self.room = self.hs.create_room(self.bob, preset="public_chat")
        self.hs.join(self.alice, self.room)
        self.hs.join(self.carol, self.room)
        self.hs.pump()

    def counts(self, body: dict[str, Any]) -> dict[str, Any]:
        room = body["rooms"]["join"][self.room]
        return room["unread_notifications"]

    def test_messages_count_until_read(self) -> None:
        """Two messages from bob: 2 unread for alice; a mention highlights; a receipt clears."""
        self.hs.send(self.bob, self.room, "one")
        last = self.hs.send(self.bob, self.room, "hey alice")
        self.hs.pump()
        body = self.hs.sync(self.a_token)
        self.assertEqual(self.counts(body), {"notification_count": 2, "highlight_count": 1})
        # The sender's own messages never count for the sender.
        self.assertEqual(self.counts(self.hs.sync(self.b_token))["notification_count"], 0)
        status, _ = self.hs.request("POST", f"/rooms/{self.room}/receipt/m.read/{last}", {}, token=self.a_token)
        self.assertEqual(status, 200)
        self.hs.pump()
        nxt = self.hs.sync(self.a_token, since=body["next_batch"])
        self.assertEqual(self.counts(nxt), {"notification_count": 0, "highlight_count": 0})

    def test_counts_arrive_in_incremental_sync(self) -> None:
        """A sync taken between the event and its evaluation sees the count in the next one."""
        body = self.hs.sync(self.a_token)
        self.hs.send(self.bob, self.room, "one")
        self.hs.pump()
        nxt = self.hs.sync(self.a_token, since=body["next_batch"])
        self.assertEqual(self.counts(nxt)["notification_count"], 1)

    def test_thread_counts(self) -> None:
        """With unread_thread_notifications, thread replies are counted per thread root, and a
        threaded receipt clears only its thread."""
        root = self.hs.send(self.bob, self.room, "root")
        rel = {"m.relates_to": {"rel_type": "m.thread", "event_id": root}}
        self.hs.send(self.bob, self.room, "r1", **rel)
        reply = self.hs.send(self.bob, self.room, "r2", **rel)
        self.hs.pump()
        flt = {"room": {"timeline": {"unread_thread_notifications": True}}}
        body = self.hs.sync(self.a_token, filter=flt)
        room = body["rooms"]["join"][self.room]
        self.assertEqual(room["unread_notifications"]["notification_count"], 1)
        self.assertEqual(room["unread_thread_notifications"], {root: {"notification_count": 2, "highlight_count": 0}})
        # Without the filter flag: one total.
        self.assertEqual(self.counts(self.hs.sync(self.a_token))["notification_count"], 3)
        self.hs.request(
            "POST", f"/rooms/{self.room}/receipt/m.read/{reply}", {"thread_id": root}, token=self.a_token
        )
        self.hs.pump()
        room = self.hs.sync(self.a_token, filter=flt)["rooms"]["join"][self.room]
        self.assertEqual(room["unread_notifications"]["notification_count"], 1)
        self.assertEqual(room.get("unread_thread_notifications"), {})

    def test_notifications_endpoint(self) -> None:
        """/notifications lists newest first with read flags, pages with next_token, and
        only=highlight keeps highlights."""
        first = self.hs.send(self.bob, self.room, "one")
        self.hs.send(self.bob, self.room, "alice!")
        self.hs.send(self.bob, self.room, "three")
        self.hs.pump()
        self.hs.request("POST", f"/rooms/{self.room}/receipt/m.read/{first}", {}, token=self.a_token)
        status, body = self.hs.request("GET", "/notifications?limit=2", token=self.a_token)
        self.assertEqual(status, 200)
        notes = body["notifications"]
        self.assertEqual([n["event"]["content"]["body"] for n in notes], ["three", "alice!"])
        self.assertEqual([n["read"] for n in notes], [False, False])
        self.assertEqual(notes[0]["room_id"], self.room)
        self.assertIn("notify", notes[0]["actions"])
        _, more = self.hs.request("GET", f"/notifications?limit=2&from={body['next_token']}", token=self.a_token)
        self.assertEqual([(n["event"]["content"]["body"], n["read"]) for n in more["notifications"]], [("one", True)])
        _, hl = self.hs.request("GET", "/notifications?only=highlight", token=self.a_token)
        self.assertEqual([n["event"]["content"]["body"] for n in hl["notifications"]], ["alice!"])
        status, body = self.hs.request("GET", "/notifications?from=abc", token=self.a_token)
        self.assertEqual(status, 400)

    def test_user_rule_silences_room(self) -> None:
        """A room rule with no actions stops notifications from that room."""
        self.hs.request("PUT", f"/pushrules/global/room/{self.room}", {"actions": []}, token=self.a_token)
        self.hs.send(self.bob, self.room, "quiet")
        self.hs.pump()
        self.assertEqual(self.counts(self.hs.sync(self.a_token))["notification_count"], 0)

    def test_invite_notifies_invitee(self) -> None:
        """An invite for a local user who is not in the room creates a notification for them."""
        dave, d_token = self.hs.register("dave")
        self.run_invite(dave)
        self.hs.pump()
        _, body = self.hs.request("GET", "/notifications", token=d_token)
        self.assertEqual(body["notifications"][0]["event"]["type"], "m.room.member")

    def run_invite(self, user: str) -> None:
        status, _ = self.hs.request("POST", f"/rooms/{self.room}/invite", {"user_id": user}, token=self.b_token)
        self.assertEqual(status, 200)


PUSHER = {
    "pushkey": "pk1",
    "kind": "http",
    "app_id": "org.example.app",
    "app_display_name": "App",
    "device_display_name": "Phone",
    "lang": "en",
    "data": {"url": "http://gateway.example/_matrix/push/v1/notify", "extra": 1},
}


class PusherTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.hs = make_push_homeserver(self)
        self.alice, self.a_token = self.hs.register("alice")
        self.bob, self.b_token = self.hs.register("bob")
        self.room = self.hs.create_room(self.bob, preset="public_chat", name="Tea room")
        self.hs.join(self.alice, self.room)
        self.hs.pump()

    def set_pusher(self, token: str | None = None, **changes: Any) -> tuple[int, Any]:
        return self.hs.request("POST", "/pushers/set", {**PUSHER, **changes}, token=token or self.a_token)

    def test_set_list_delete(self) -> None:
        """A pusher is listed as set; kind null deletes it."""
        self.assertEqual(self.set_pusher(), (200, {}))
        status, body = self.hs.request("GET", "/pushers", token=self.a_token)
        self.assertEqual(status, 200)
        listed = body["pushers"]
        self.assertEqual(len(listed), 1)
        self.assertEqual({k: listed[0][k] for k in ("pushkey", "kind", "app_id", "lang", "data")},
                         {k: PUSHER[k] for k in ("pushkey", "kind", "app_id", "lang", "data")})
        self.assertEqual(self.set_pusher(kind=None), (200, {}))
        self.assertEqual(self.hs.request("GET", "/pushers", token=self.a_token), (200, {"pushers": []}))

    def test_append(self) -> None:
        """Without append, another user's pusher with the same app ID and pushkey is replaced."""
        self.set_pusher(token=self.b_token)
        self.set_pusher(append=True)
        self.assertEqual(len(self.hs.request("GET", "/pushers", token=self.b_token)[1]["pushers"]), 1)
        self.set_pusher()
        self.assertEqual(self.hs.request("GET", "/pushers", token=self.b_token)[1]["pushers"], [])

    def test_validation(self) -> None:
        """Missing fields, unsupported kinds and wrong gateway paths are refused."""
        status, body = self.hs.request("POST", "/pushers/set", {"kind": "http"}, token=self.a_token)
        self.assertEqual((status, body["errcode"]), (400, "M_MISSING_PARAM"))
        self.assertEqual(self.set_pusher(kind="email")[1]["errcode"], "M_INVALID_PARAM")
        self.assertEqual(self.set_pusher(data={"url": "http://g/push"})[1]["errcode"], "M_INVALID_PARAM")
        self.assertEqual(self.set_pusher(data={})[1]["errcode"], "M_MISSING_PARAM")

    def test_logout_removes_pusher(self) -> None:
        """A pusher lives as long as the access token that set it."""
        self.set_pusher()
        self.hs.request("POST", "/logout", {}, token=self.a_token)
        token = self.relogin()
        self.assertEqual(self.hs.request("GET", "/pushers", token=token)[1]["pushers"], [])

    def relogin(self) -> str:
        login = self.hs.run(self.hs.hs.accounts.login(self.alice))
        return str(login.access_token)

    def test_gateway_receives_notification(self) -> None:
        """A message is POSTed to the gateway as the push gateway API says."""
        self.set_pusher()
        event_id = self.hs.send(self.bob, self.room, "hello alice")
        self.hs.pump()
        self.assertEqual(self.hs.gateway.paths, [b"/_matrix/push/v1/notify"])
        n = self.hs.gateway.received[0]["notification"]
        self.assertEqual(n["event_id"], event_id)
        self.assertEqual(n["room_id"], self.room)
        self.assertEqual(n["type"], "m.room.message")
        self.assertEqual(n["sender"], self.bob)
        self.assertEqual(n["sender_display_name"], "bob")
        self.assertEqual(n["room_name"], "Tea room")
        self.assertEqual(n["prio"], "high")
        self.assertEqual(n["content"]["body"], "hello alice")
        self.assertEqual(n["counts"], {"unread": 1})
        device = n["devices"][0]
        self.assertEqual(device["app_id"], PUSHER["app_id"])
        self.assertEqual(device["pushkey"], "pk1")
        self.assertEqual(device["data"], {"extra": 1})
        self.assertEqual(device["tweaks"], {"sound": "default", "highlight": True})
        self.assertIsInstance(device["pushkey_ts"], int)

    def test_event_id_only(self) -> None:
        """format event_id_only sends no content, sender or type."""
        self.set_pusher(data={**PUSHER["data"], "format": "event_id_only"})
        self.hs.send(self.bob, self.room, "secret")
        self.hs.pump()
        n = self.hs.gateway.received[0]["notification"]
        self.assertEqual(set(n), {"event_id", "room_id", "prio", "counts", "devices"})

    def test_rejected_pushkey_removes_pusher(self) -> None:
        """A pushkey the gateway rejects is deleted."""
        self.set_pusher()
        self.hs.gateway.rejected = ["pk1"]
        self.hs.send(self.bob, self.room, "one")
        self.hs.pump()
        self.assertEqual(self.hs.request("GET", "/pushers", token=self.a_token)[1]["pushers"], [])

    def test_backoff_and_retry(self) -> None:
        """A failing gateway gets the notification again after the backoff, in order."""
        self.set_pusher()
        self.hs.gateway.status = 503
        self.hs.send(self.bob, self.room, "one")
        self.hs.pump()
        self.hs.send(self.bob, self.room, "two")
        self.hs.pump()
        self.assertEqual(self.hs.gateway.received, [])
        self.hs.gateway.status = 200
        self.hs.clock.advance(1.0)
        self.hs.pump()
        self.assertEqual(
            [r["notification"]["content"]["body"] for r in self.hs.gateway.received], ["one", "two"]
        )

    def test_only_new_notifications(self) -> None:
        """A new pusher does not get notifications from before it was set."""
        self.hs.send(self.bob, self.room, "old")
        self.hs.pump()
        self.set_pusher()
        self.hs.send(self.bob, self.room, "new")
        self.hs.pump()
        self.assertEqual([r["notification"]["content"]["body"] for r in self.hs.gateway.received], ["new"])
