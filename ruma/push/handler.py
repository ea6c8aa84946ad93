"""Push rules, pushers and the notification list: what the client endpoints call.

Every change to a user's rules also rewrites their ``m.push_rules`` account data (the full
ruleset), which takes a stream position: that is how /sync tells the user's other clients.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ruma.errors import Codes, MatrixError, invalid_param, missing_param, not_found
from ruma.push.rules import (
    build_ruleset,
    check_actions,
    check_conditions,
    check_new_rule_id,
    check_scope_and_kind,
    find_rule,
)
from ruma.storage.account_data import AccountDataStore
from ruma.storage.push import PlacementError, PushAction, Pusher, PushStore

JsonDict = dict[str, Any]

PUSH_GATEWAY_PATH = "/_matrix/push/v1/notify"
MAX_PUSHKEY_BYTES = 512
MAX_APP_ID_LENGTH = 64


class PushRulesHandler:
    log = Logger()

    def __init__(self, store: PushStore, account_data: AccountDataStore) -> None:
        self.store = store
        self._account_data = account_data

    async def get_ruleset(self, user_id: str) -> JsonDict:
        rules, settings = await self.store.get_rules(user_id)
        return build_ruleset(user_id, rules, settings)

    async def get_rulesets(self, user_ids: Iterable[str]) -> dict[str, JsonDict]:
        """:meth:`get_ruleset` of several users with one database read at most."""
        found = await self.store.get_rules_for_users(user_ids)
        return {u: build_ruleset(u, rules, settings) for u, (rules, settings) in found.items()}

    async def account_data_content(self, user_id: str) -> JsonDict:
        """The ``m.push_rules`` account data content (``{"global": ...}``)."""
        return {"global": await self.get_ruleset(user_id)}

    async def _changed(self, user_id: str) -> None:
        await self._account_data.set_account_data(
            user_id, None, "m.push_rules", await self.account_data_content(user_id)
        )

    async def _get(self, user_id: str, scope: str, kind: str, rule_id: str) -> JsonDict:
        check_scope_and_kind(scope, kind)
        rule = find_rule(await self.get_ruleset(user_id), kind, rule_id)
        if rule is None:
            raise not_found("Unknown push rule")
        return rule

    async def get_rule(self, user_id: str, scope: str, kind: str, rule_id: str) -> JsonDict:
        return await self._get(user_id, scope, kind, rule_id)

    async def put_rule(
        self,
        user_id: str,
        scope: str,
        kind: str,
        rule_id: str,
        body: Mapping[str, Any],
        before: str | None,
        after: str | None,
    ) -> None:
        check_scope_and_kind(scope, kind)
        check_new_rule_id(kind, rule_id)
        if "actions" not in body:
            raise missing_param("Missing parameter 'actions'")
        actions = check_actions(body["actions"])
        conditions: list[Any] | None = None
        pattern: str | None = None
        if kind in ("override", "underride"):
            conditions = check_conditions(body.get("conditions", []))
        elif kind == "content":
            p = body.get("pattern")
            if not isinstance(p, str):
                raise missing_param("A content rule needs a 'pattern' string")
            pattern = p
        for name, anchor in (("before", before), ("after", after)):
            if anchor is not None and anchor.startswith("."):
                raise MatrixError(
                    400, Codes.UNKNOWN, f"Cannot place a rule relative to a server-default rule ({name})"
                )
        try:
            await self.store.put_rule(
                user_id,
                kind,
                rule_id,
                conditions=conditions,
                pattern=pattern,
                actions=actions,
                before=before,
                after=None if before is not None else after,
            )
        except PlacementError as e:
            raise MatrixError(400, Codes.UNKNOWN, f"before/after rule not found: {e}") from None
        await self._changed(user_id)

    async def delete_rule(self, user_id: str, scope: str, kind: str, rule_id: str) -> None:
        check_scope_and_kind(scope, kind)
        if rule_id.startswith("."):
            # Server-default rules cannot be deleted (only disabled).
            raise not_found("Server-default rules cannot be deleted")
        if not await self.store.delete_rule(user_id, kind, rule_id):
            raise not_found("Unknown push rule")
        await self._changed(user_id)

    async def get_enabled(self, user_id: str, scope: str, kind: str, rule_id: str) -> bool:
        return bool((await self._get(user_id, scope, kind, rule_id))["enabled"])

    async def set_enabled(
        self, user_id: str, scope: str, kind: str, rule_id: str, enabled: Any
    ) -> None:
        if not isinstance(enabled, bool):
            raise MatrixError(400, Codes.BAD_JSON, "'enabled' must be a boolean")
        await self._get(user_id, scope, kind, rule_id)
        await self.store.set_rule_enabled(user_id, kind, rule_id, enabled)
        await self._changed(user_id)

    async def get_actions(self, user_id: str, scope: str, kind: str, rule_id: str) -> list[Any]:
        return list((await self._get(user_id, scope, kind, rule_id))["actions"])

    async def set_actions(
        self, user_id: str, scope: str, kind: str, rule_id: str, actions: Any
    ) -> None:
        checked = check_actions(actions)
        rule = await self._get(user_id, scope, kind, rule_id)
        if rule.get("default"):
            await self.store.set_default_rule_actions(user_id, kind, rule_id, checked)
        else:
            await self.store.set_user_rule_actions(user_id, kind, rule_id, checked)
        await self._changed(user_id)


class PusherHandler:
    """``GET /pushers`` and ``POST /pushers/set``."""

    log = Logger()

    def __init__(
        self,
        store: PushStore,
        clock: IReactorTime,
        current_position: Callable[[], int],
        on_change: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.store = store
        self._clock = clock
        self._current = current_position
        # Called with the user ID after their pushers changed (the pusher pool reloads).
        self.on_change = on_change

    async def get_pushers(self, user_id: str) -> list[JsonDict]:
        return [render_pusher(p) for p in await self.store.get_pushers(user_id)]

    async def set_pusher(
        self,
        user_id: str,
        access_token_id: int | None,
        device_id: str | None,
        body: Mapping[str, Any],
    ) -> None:
        pushkey = _required_str(body, "pushkey")
        app_id = _required_str(body, "app_id")
        if "kind" not in body:
            raise missing_param("Missing parameter 'kind'")
        kind = body["kind"]
        if kind is None:
            await self.store.delete_pusher(user_id, app_id, pushkey)
            await self._notify(user_id)
            return
        if not isinstance(kind, str):
            raise MatrixError(400, Codes.BAD_JSON, "'kind' must be a string or null")
        if kind != "http":
            raise invalid_param(f"Unsupported pusher kind {kind!r}: only 'http' pushers are supported")
        if len(pushkey.encode("utf-8")) > MAX_PUSHKEY_BYTES:
            raise invalid_param("pushkey is too long")
        if len(app_id) > MAX_APP_ID_LENGTH:
            raise invalid_param("app_id is too long")
        app_display_name = _required_str(body, "app_display_name")
        device_display_name = _required_str(body, "device_display_name")
        lang = _required_str(body, "lang")
        data = body.get("data")
        if not isinstance(data, Mapping):
            raise missing_param("Missing parameter 'data'")
        url = data.get("url")
        if not isinstance(url, str):
            raise missing_param("An http pusher needs data.url")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise invalid_param("data.url must be an http(s) URL")
        if parts.path != PUSH_GATEWAY_PATH:
            raise invalid_param(f"data.url must have the path {PUSH_GATEWAY_PATH}")
        fmt = data.get("format")
        if fmt is not None and fmt != "event_id_only":
            raise invalid_param("data.format may only be 'event_id_only'")
        profile_tag = body.get("profile_tag")
        if profile_tag is not None and not isinstance(profile_tag, str):
            raise MatrixError(400, Codes.BAD_JSON, "'profile_tag' must be a string")
        append = body.get("append", False)
        if not isinstance(append, bool):
            raise MatrixError(400, Codes.BAD_JSON, "'append' must be a boolean")
        pusher = Pusher(
            user_id=user_id,
            app_id=app_id,
            pushkey=pushkey,
            kind=kind,
            access_token_id=access_token_id,
            device_id=device_id,
            pushkey_ts=int(self._clock.seconds() * 1000),
            app_display_name=app_display_name,
            device_display_name=device_display_name,
            profile_tag=profile_tag,
            lang=lang,
            data=dict(data),
            # Only notifications from now on are pushed.
            last_stream_pos=self._current(),
            failing_since=None,
        )
        await self.store.add_pusher(pusher, append=append)
        await self._notify(user_id)

    async def _notify(self, user_id: str) -> None:
        if self.on_change is not None:
            await self.on_change(user_id)


def render_pusher(p: Pusher) -> JsonDict:
    out: JsonDict = {
        "pushkey": p.pushkey,
        "kind": p.kind,
        "app_id": p.app_id,
        "app_display_name": p.app_display_name,
        "device_display_name": p.device_display_name,
        "lang": p.lang,
        "data": dict(p.data),
    }
    if p.profile_tag is not None:
        out["profile_tag"] = p.profile_tag
    return out


def _required_str(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    if value is None:
        raise missing_param(f"Missing parameter {name!r}")
    if not isinstance(value, str):
        raise MatrixError(400, Codes.BAD_JSON, f"{name!r} must be a string")
    return value


EventLoader = Callable[[list[str]], Awaitable[Mapping[str, JsonDict]]]


class NotificationsHandler:
    """``GET /notifications``: the user's notifications, newest first."""

    def __init__(self, store: PushStore, load_events: EventLoader) -> None:
        self.store = store
        self._load = load_events

    async def get_notifications(
        self, user_id: str, from_token: str | None, limit: int, only: str | None
    ) -> JsonDict:
        before: int | None = None
        if from_token is not None:
            if not from_token.isdigit():
                raise invalid_param("Invalid 'from' token")
            before = int(from_token)
        limit = max(1, min(limit, 100))
        only_highlight = only is not None and "highlight" in only.split(",")
        rows = await self.store.get_notifications(user_id, before, limit, only_highlight)
        events = await self._load([a.event_id for a, _ in rows])
        out = []
        for action, read in rows:
            event = events.get(action.event_id)
            if event is None:
                continue
            out.append(_render(action, read, event))
        result: JsonDict = {"notifications": out}
        if len(rows) == limit:
            result["next_token"] = str(rows[-1][0].stream_pos)
        return result


def _render(action: PushAction, read: bool, event: JsonDict) -> JsonDict:
    return {
        "actions": action.actions,
        "event": event,
        "read": read,
        "room_id": action.room_id,
        "ts": action.ts,
    }
