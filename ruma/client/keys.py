"""End-to-end key endpoints: ``/keys/upload``, ``/keys/query``, ``/keys/claim``,
``/keys/changes``, ``/keys/device_signing/upload`` and ``/keys/signatures/upload``."""

from __future__ import annotations

from twisted.web.iweb import IRequest

from ruma.client.account import AccountEndpoints
from ruma.client.auth import Authenticator, Requester
from ruma.client.http import parse_json_object, query_str
from ruma.client.room_keys import RoomKeyEndpoints
from ruma.client.router import ClientRouter, JsonDict
from ruma.client.to_device import ToDeviceEndpoints
from ruma.e2ee.device_lists import DeviceLists
from ruma.e2ee.keys import E2EKeys
from ruma.e2ee.service import E2EEServices
from ruma.errors import Codes, MatrixError
from ruma.sync.tokens import StreamToken

__all__ = ["KeyEndpoints", "register_e2ee_routes"]

# Cross-signing was first served under unstable by Synapse; some clients still call it there.
_CROSS_SIGNING_VERSIONS = ("v3", "r0", "unstable")


def _device(requester: Requester) -> str:
    if requester.device_id is None:
        raise MatrixError(
            400, Codes.MISSING_PARAM, "Uploading keys needs an access token bound to a device"
        )
    return requester.device_id


class KeyEndpoints:
    def __init__(
        self,
        *,
        auth: Authenticator,
        keys: E2EKeys,
        device_lists: DeviceLists,
        account_endpoints: AccountEndpoints,
    ) -> None:
        self._auth = auth
        self._keys = keys
        self._device_lists = device_lists
        # Replacing cross-signing keys needs the same password UIA as other account changes.
        self._account_endpoints = account_endpoints

    def register_routes(self, router: ClientRouter) -> None:
        router.route("/keys/upload", ["POST"])(self.on_upload)
        router.route("/keys/upload/<device_id>", ["POST"])(self.on_upload_device)
        router.route("/keys/query", ["POST"])(self.on_query)
        router.route("/keys/claim", ["POST"])(self.on_claim)
        router.route("/keys/changes", ["GET"])(self.on_changes)
        router.route("/keys/device_signing/upload", ["POST"], versions=_CROSS_SIGNING_VERSIONS)(
            self.on_device_signing_upload
        )
        router.route("/keys/signatures/upload", ["POST"], versions=_CROSS_SIGNING_VERSIONS)(
            self.on_signatures_upload
        )

    async def on_upload(self, request: IRequest) -> JsonDict:
        requester = await self._auth.get_requester(request, allow_guest=True)
        body = parse_json_object(request)
        return await self._keys.upload(requester.user_id, _device(requester), body)

    async def on_upload_device(self, request: IRequest, device_id: str) -> JsonDict:
        """The r0 form naming the device in the path: it must be the requester's."""
        requester = await self._auth.get_requester(request, allow_guest=True)
        if device_id != _device(requester):
            raise MatrixError(400, Codes.INVALID_PARAM, "Not the device you are logged in with")
        body = parse_json_object(request)
        return await self._keys.upload(requester.user_id, device_id, body)

    async def on_query(self, request: IRequest) -> JsonDict:
        requester = await self._auth.get_requester(request, allow_guest=True)
        body = parse_json_object(request)
        return await self._keys.query(requester.user_id, body)

    async def on_claim(self, request: IRequest) -> JsonDict:
        await self._auth.get_requester(request, allow_guest=True)
        body = parse_json_object(request)
        return await self._keys.claim(body)

    async def on_changes(self, request: IRequest) -> JsonDict:
        requester = await self._auth.get_requester(request, allow_guest=True)
        from_token = query_str(request, "from", required=True)
        to_token = query_str(request, "to", required=True)
        assert from_token is not None and to_token is not None
        since = StreamToken.parse(from_token, "from").position
        upto = StreamToken.parse(to_token, "to").position
        changes = await self._device_lists.changes(requester.user_id, since, upto)
        return {"changed": sorted(changes.changed), "left": sorted(changes.left)}

    async def on_device_signing_upload(self, request: IRequest) -> JsonDict:
        requester = await self._auth.get_requester(request)
        body = parse_json_object(request)
        if await self._keys.signing_upload_needs_auth(requester.user_id, body):
            await self._account_endpoints.user_interactive_auth(
                requester, body, "device_signing_upload"
            )
        await self._keys.upload_signing_keys(requester.user_id, body)
        return {}

    async def on_signatures_upload(self, request: IRequest) -> JsonDict:
        requester = await self._auth.get_requester(request)
        body = parse_json_object(request)
        return await self._keys.upload_signatures(requester.user_id, body)


def register_e2ee_routes(
    router: ClientRouter,
    auth: Authenticator,
    e2ee: E2EEServices,
    account_endpoints: AccountEndpoints,
) -> None:
    """Every end-to-end encryption endpoint: keys, to-device messages, key backups."""
    KeyEndpoints(
        auth=auth,
        keys=e2ee.keys,
        device_lists=e2ee.device_lists,
        account_endpoints=account_endpoints,
    ).register_routes(router)
    ToDeviceEndpoints(auth=auth, to_device=e2ee.to_device).register_routes(router)
    RoomKeyEndpoints(auth=auth, backups=e2ee.backups).register_routes(router)
