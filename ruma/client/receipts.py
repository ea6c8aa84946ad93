"""``POST /rooms/{roomId}/receipt/{receiptType}/{eventId}`` and ``.../read_markers``."""

from __future__ import annotations

from twisted.web.iweb import IRequest

from ruma.client.auth import Authenticator
from ruma.client.http import body_str, parse_json_object_or_empty
from ruma.client.router import ClientRouter, JsonDict
from ruma.errors import invalid_param
from ruma.handlers.receipts import ReceiptHandler


class ReceiptEndpoints:
    def __init__(self, *, auth: Authenticator, receipts: ReceiptHandler) -> None:
        self._auth = auth
        self._receipts = receipts

    def register_routes(self, router: ClientRouter) -> None:
        router.route("/rooms/<room_id>/receipt/<receipt_type>/<event_id>", ["POST"])(
            self.on_receipt
        )
        router.route("/rooms/<room_id>/read_markers", ["POST"])(self.on_read_markers)

    async def on_receipt(
        self, request: IRequest, room_id: str, receipt_type: str, event_id: str
    ) -> JsonDict:
        requester = await self._auth.get_requester(request)
        body = parse_json_object_or_empty(request)
        thread_id = None
        if "thread_id" in body:
            thread_id = body["thread_id"]
            if not isinstance(thread_id, str) or not thread_id:
                raise invalid_param("thread_id field must be a non-empty string")
        await self._receipts.post_receipt(
            requester.user_id, room_id, receipt_type, event_id, thread_id
        )
        return {}

    async def on_read_markers(self, request: IRequest, room_id: str) -> JsonDict:
        requester = await self._auth.get_requester(request)
        body = parse_json_object_or_empty(request)
        await self._receipts.set_read_markers(
            requester.user_id,
            room_id,
            fully_read=body_str(body, "m.fully_read", required=False),
            read=body_str(body, "m.read", required=False),
            read_private=body_str(body, "m.read.private", required=False),
        )
        return {}
