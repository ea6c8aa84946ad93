"""Server administration endpoints of the client-server API (``/admin/whois``)."""

from __future__ import annotations

from twisted.web.iweb import IRequest

from ruma.accounts import AccountService
from ruma.client.auth import Authenticator
from ruma.client.router import ClientRouter, JsonDict
from ruma.errors import forbidden, not_found


class AdminEndpoints:
    def __init__(self, *, accounts: AccountService, auth: Authenticator) -> None:
        self._accounts = accounts
        self._auth = auth

    def register_routes(self, router: ClientRouter) -> None:
        router.route("/admin/whois/<user_id>", ["GET"])(self.on_whois)

    async def on_whois(self, request: IRequest, user_id: str) -> JsonDict:
        """Where a user has been seen from: admins may ask about anyone, users about themselves."""
        requester = await self._auth.get_requester(request)
        if requester.user_id != user_id:
            me = await self._accounts.store.get_user(requester.user_id)
            if me is None or not me.is_admin:
                raise forbidden("You are not a server admin")
        if await self._accounts.store.get_user(user_id) is None:
            raise not_found("Unknown user")
        devices: JsonDict = {}
        for d in await self._accounts.store.get_devices(user_id):
            connections = []
            if d.last_seen_ts is not None:
                connection: JsonDict = {"ip": d.last_seen_ip, "last_seen": d.last_seen_ts}
                if d.last_seen_user_agent is not None:
                    connection["user_agent"] = d.last_seen_user_agent
                connections.append(connection)
            devices[d.device_id] = {"sessions": [{"connections": connections}]}
        return {"user_id": user_id, "devices": devices}
