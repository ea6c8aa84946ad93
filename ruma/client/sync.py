"""``GET /sync``: parse the query, authenticate, hand over to the sync handler."""

from __future__ import annotations

from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest

from ruma.client.account_data import AccountDataEndpoints
from ruma.client.auth import Authenticator
from ruma.client.filter import FilterEndpoints
from ruma.client.http import query_bool, query_int, query_str
from ruma.client.presence import PresenceEndpoints
from ruma.client.receipts import ReceiptEndpoints
from ruma.client.router import ClientRouter, JsonDict
from ruma.client.typing import TypingEndpoints
from ruma.errors import invalid_param
from ruma.handlers.filters import FilterHandler
from ruma.handlers.presence import STATES
from ruma.sync.handler import SyncHandler, SyncRequest
from ruma.sync.service import SyncServices
from ruma.sync.tokens import StreamToken

USE_STATE_AFTER_PARAMS = ("use_state_after", "org.matrix.msc4222.use_state_after")


class SyncEndpoints:
    def __init__(self, *, auth: Authenticator, sync: SyncHandler, filters: FilterHandler) -> None:
        self._auth = auth
        self._sync = sync
        self._filters = filters

    def register_routes(self, router: ClientRouter) -> None:
        router.route("/sync", ["GET"])(self.on_sync)

    async def on_sync(self, request: IRequest) -> JsonDict:
        requester = await self._auth.get_requester(request, allow_guest=True)
        since_s = query_str(request, "since")
        since = StreamToken.parse(since_s, "since") if since_s else None
        timeout = query_int(request, "timeout", 0) or 0
        set_presence = query_str(request, "set_presence")
        if set_presence is not None and set_presence not in STATES:
            raise invalid_param(f"Invalid set_presence {set_presence!r}")
        full_state = bool(query_bool(request, "full_state", False))
        use_state_after = any(
            query_bool(request, name, False) for name in USE_STATE_AFTER_PARAMS
        )
        flt = await self._filters.resolve(requester.user_id, query_str(request, "filter"))
        req = SyncRequest(
            user_id=requester.user_id,
            device_id=requester.device_id,
            token_id=requester.token_id,
            filter=flt,
            since=since,
            full_state=full_state,
            set_presence=set_presence,
            timeout_ms=timeout,
            use_state_after=use_state_after,
        )
        d = Deferred.fromCoroutine(self._sync.sync(req))

        def gone(_: Failure) -> None:
            # The client went away: stop long-polling for it.
            if not d.called:
                d.cancel()

        notify_finish = getattr(request, "notifyFinish", None)
        if notify_finish is not None:
            notify_finish().addErrback(gone)
        try:
            return await d
        except CancelledError:
            # Only our own cancel() above raises this: nobody is left to read a response.
            return {}


def register_sync_routes(router: ClientRouter, auth: Authenticator, services: SyncServices) -> None:
    """Put every endpoint backed by ``SyncServices`` on ``router``."""
    SyncEndpoints(auth=auth, sync=services.sync, filters=services.filters).register_routes(router)
    FilterEndpoints(auth=auth, filters=services.filters).register_routes(router)
    TypingEndpoints(auth=auth, typing=services.typing).register_routes(router)
    ReceiptEndpoints(auth=auth, receipts=services.receipts).register_routes(router)
    AccountDataEndpoints(auth=auth, account_data=services.account_data).register_routes(router)
    PresenceEndpoints(auth=auth, presence=services.presence).register_routes(router)
