"""Device management: list, inspect, rename and delete a user's devices."""

from __future__ import annotations

from twisted.web.iweb import IRequest

from ruma.accounts import AccountService
from ruma.client.account import AccountEndpoints
from ruma.client.auth import Authenticator
from ruma.client.http import body_str, body_str_list, parse_json_object, parse_json_object_or_empty
from ruma.client.router import ClientRouter, JsonDict
from ruma.errors import not_found
from ruma.storage.accounts import DeviceInfo


def _device_json(d: DeviceInfo) -> JsonDict:
    out: JsonDict = {"device_id": d.device_id}
    if d.display_name is not None:
        out["display_name"] = d.display_name
    if d.last_seen_ip is not None:
        out["last_seen_ip"] = d.last_seen_ip
    if d.last_seen_ts is not None:
        out["last_seen_ts"] = d.last_seen_ts
    return out


class DeviceEndpoints:
    def __init__(
        self, *, accounts: AccountService, auth: Authenticator, account_endpoints: AccountEndpoints
    ) -> None:
        self._accounts = accounts
        self._auth = auth
        # Deleting devices is protected by the same password UIA as other account changes.
        self._account_endpoints = account_endpoints

    def register_routes(self, router: ClientRouter) -> None:
        router.route("/devices", ["GET"])(self.on_list)
        router.route("/devices/<device_id>", ["GET"])(self.on_get)
        router.route("/devices/<device_id>", ["PUT"])(self.on_put)
        router.route("/devices/<device_id>", ["DELETE"])(self.on_delete)
        router.route("/delete_devices", ["POST"])(self.on_delete_many)

    async def on_list(self, request: IRequest) -> JsonDict:
        requester = await self._auth.get_requester(request, allow_guest=True)
        devices = await self._accounts.store.get_devices(requester.user_id)
        return {"devices": [_device_json(d) for d in devices]}

    async def on_get(self, request: IRequest, device_id: str) -> JsonDict:
        requester = await self._auth.get_requester(request, allow_guest=True)
        device = await self._accounts.store.get_device(requester.user_id, device_id)
        if device is None:
            raise not_found("No such device")
        return _device_json(device)

    async def on_put(self, request: IRequest, device_id: str) -> JsonDict:
        requester = await self._auth.get_requester(request, allow_guest=True)
        body = parse_json_object(request)
        display_name = body_str(body, "display_name", required=False)
        if "display_name" not in body:
            # Nothing to change, but the device must exist.
            if await self._accounts.store.get_device(requester.user_id, device_id) is None:
                raise not_found("No such device")
            return {}
        if not await self._accounts.store.set_device_display_name(
            requester.user_id, device_id, display_name
        ):
            raise not_found("No such device")
        return {}

    async def on_delete(self, request: IRequest, device_id: str) -> JsonDict:
        requester = await self._auth.get_requester(request)
        body = parse_json_object_or_empty(request)
        if await self._accounts.store.get_device(requester.user_id, device_id) is None:
            raise not_found("No such device")
        await self._account_endpoints.user_interactive_auth(requester, body, "delete_devices")
        await self._accounts.delete_devices(requester.user_id, [device_id])
        return {}

    async def on_delete_many(self, request: IRequest) -> JsonDict:
        requester = await self._auth.get_requester(request)
        body = parse_json_object(request)
        devices = body_str_list(body, "devices")
        assert devices is not None
        await self._account_endpoints.user_interactive_auth(requester, body, "delete_devices")
        await self._accounts.delete_devices(requester.user_id, devices)
        return {}
