"""Inbound routes of the federation listener: ``/_matrix/key`` and ``/_matrix/federation``.

Handlers only parse, authenticate, call a service and render, as on the client side.
"""

from __future__ import annotations

from typing import Any

from twisted.web.iweb import IRequest

import ruma
from ruma.client.http import parse_json_object
from ruma.client.router import ClientRouter
from ruma.errors import bad_json
from ruma.federation.keyring import Keyring
from ruma.protocol.ids import is_valid_server_name

FEDERATION_PREFIX = "/_matrix/federation"
KEY_PREFIX = "/_matrix/key/v2"


def install_key_routes(router: ClientRouter, keyring: Keyring) -> None:
    """Our own keys, and the notary API for other servers' keys."""

    @router.route_raw(f"{KEY_PREFIX}/server", ["GET"])
    async def server_keys(request: IRequest) -> dict[str, Any]:
        return keyring.own_key_response()

    @router.route_raw(f"{KEY_PREFIX}/server/<key_id>", ["GET"])
    async def server_keys_legacy(request: IRequest, key_id: str) -> dict[str, Any]:
        # Deprecated form with a key ID; the answer is the same.
        return keyring.own_key_response()

    @router.route_raw(f"{KEY_PREFIX}/query", ["POST"])
    async def query(request: IRequest) -> dict[str, Any]:
        body = parse_json_object(request)
        wanted = body.get("server_keys")
        if not isinstance(wanted, dict) or not all(
            isinstance(k, str) and isinstance(v, dict) for k, v in wanted.items()
        ):
            raise bad_json("server_keys must be an object of objects")
        wanted = {k: v for k, v in wanted.items() if is_valid_server_name(k)}
        return {"server_keys": await keyring.notary_query(wanted)}

    @router.route_raw(f"{KEY_PREFIX}/query/<server_name>", ["GET"])
    async def query_one(request: IRequest, server_name: str) -> dict[str, Any]:
        if not is_valid_server_name(server_name):
            return {"server_keys": []}
        return {"server_keys": await keyring.notary_query({server_name: {}})}


def install_version_route(router: ClientRouter) -> None:
    @router.route_raw(f"{FEDERATION_PREFIX}/v1/version", ["GET"])
    async def version(request: IRequest) -> dict[str, Any]:
        return {"server": {"name": "Ruma", "version": ruma.__version__}}
