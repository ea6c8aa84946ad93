"""``PUT /sendToDevice/{eventType}/{txnId}``."""

from __future__ import annotations

from twisted.web.iweb import IRequest

from ruma.client.auth import Authenticator
from ruma.client.http import parse_json_object
from ruma.client.router import ClientRouter, JsonDict
from ruma.e2ee.to_device import ToDevice
from ruma.errors import Codes, MatrixError

__all__ = ["ToDeviceEndpoints"]


class ToDeviceEndpoints:
    def __init__(self, *, auth: Authenticator, to_device: ToDevice) -> None:
        self._auth = auth
        self._to_device = to_device

    def register_routes(self, router: ClientRouter) -> None:
        router.route("/sendToDevice/<event_type>/<txn_id>", ["PUT"])(self.on_send)

    async def on_send(self, request: IRequest, event_type: str, txn_id: str) -> JsonDict:
        requester = await self._auth.get_requester(request, allow_guest=True)
        body = parse_json_object(request)
        if "messages" not in body:
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing 'messages'")
        # Transaction IDs are scoped to the access token's device (or the token itself).
        if requester.device_id is not None:
            sender_key = f"device:{requester.device_id}"
        else:
            sender_key = f"token:{requester.token_id}:{requester.appservice_id}"
        await self._to_device.send(
            sender=requester.user_id,
            sender_key=sender_key,
            event_type=event_type,
            txn_id=txn_id,
            messages=body["messages"],
        )
        return {}
