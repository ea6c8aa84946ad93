"""``PUT /_matrix/federation/v1/send/{txnId}``."""

from __future__ import annotations

from typing import Any

from twisted.web.iweb import IRequest

from ruma.client.http import parse_json_object
from ruma.client.router import ClientRouter
from ruma.federation.inbound.transaction import TransactionHandler
from ruma.federation.inbound_auth import FederationAuthenticator

__all__ = ["MAX_TRANSACTION_BODY", "install_send_route"]

# 50 PDUs of at most 64 KiB and 100 EDUs (to-device messages can be large).
MAX_TRANSACTION_BODY = 32 * 1024 * 1024


def install_send_route(
    router: ClientRouter, auth: FederationAuthenticator, transactions: TransactionHandler
) -> None:
    @router.route_raw("/_matrix/federation/v1/send/<txn_id>", ["PUT"])
    async def send(request: IRequest, txn_id: str) -> dict[str, Any]:
        body = parse_json_object(request, MAX_TRANSACTION_BODY)
        origin = await auth.authenticate(request, body)
        return await transactions.on_transaction(origin, txn_id, body)
