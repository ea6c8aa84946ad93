"""``/_synapse/admin/v1/register``: register users with the shared secret.

The protocol Synapse's ``register_new_matrix_user`` and other operator tools speak:

1. ``GET`` returns a fresh ``nonce`` (single use, valid for a minute);
2. ``POST {nonce, username, password, admin, mac[, displayname, user_type]}`` where
   ``mac`` is the hex HMAC-SHA1, keyed with ``registration_shared_secret``, of
   ``nonce NUL username NUL password NUL ("admin" | "notadmin") [NUL user_type]``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from twisted.internet.interfaces import IReactorTime
from twisted.web.iweb import IRequest

from ruma.accounts import AccountService
from ruma.client.http import body_bool, body_str, client_ip, parse_json_object
from ruma.client.router import ClientRouter, JsonDict
from ruma.errors import Codes, MatrixError, forbidden
from ruma.ratelimit import Ratelimiter

NONCE_LIFETIME_S = 60.0
PATH = "/_synapse/admin/v1/register"


def registration_mac(
    shared_secret: str,
    nonce: str,
    username: str,
    password: str,
    admin: bool,
    user_type: str | None = None,
) -> str:
    """The MAC a client must send (also used by tests and tools)."""
    mac = hmac.new(shared_secret.encode("utf-8"), digestmod=hashlib.sha1)
    mac.update(nonce.encode("utf-8"))
    mac.update(b"\x00")
    mac.update(username.encode("utf-8"))
    mac.update(b"\x00")
    mac.update(password.encode("utf-8"))
    mac.update(b"\x00")
    mac.update(b"admin" if admin else b"notadmin")
    if user_type:
        mac.update(b"\x00")
        mac.update(user_type.encode("utf-8"))
    return mac.hexdigest()


class SharedSecretRegistration:
    def __init__(
        self,
        *,
        shared_secret: str | None,
        clock: IReactorTime,
        accounts: AccountService,
        ratelimiter: Ratelimiter,
    ) -> None:
        self._secret = shared_secret
        self._clock = clock
        self._accounts = accounts
        self._ratelimiter = ratelimiter
        self._nonces: dict[str, float] = {}

    def register_routes(self, router: ClientRouter) -> None:
        router.route_raw(PATH, ["GET"])(self.on_get)
        router.route_raw(PATH, ["POST"])(self.on_post)

    def _require_enabled(self) -> str:
        if not self._secret:
            raise MatrixError(400, Codes.UNKNOWN, "Shared secret registration is not enabled")
        return self._secret

    def _expire(self) -> None:
        now = self._clock.seconds()
        for n in [n for n, t in self._nonces.items() if now - t > NONCE_LIFETIME_S]:
            del self._nonces[n]

    async def on_get(self, request: IRequest) -> JsonDict:
        self._require_enabled()
        self._expire()
        nonce = secrets.token_hex(32)
        self._nonces[nonce] = self._clock.seconds()
        return {"nonce": nonce}

    async def on_post(self, request: IRequest) -> JsonDict:
        secret = self._require_enabled()
        self._ratelimiter.check(client_ip(request))
        body = parse_json_object(request)
        self._expire()
        nonce = body_str(body, "nonce")
        username = body_str(body, "username")
        password = body_str(body, "password")
        mac = body_str(body, "mac")
        admin = body_bool(body, "admin", required=False, default=False)
        user_type = body_str(body, "user_type", required=False)
        displayname = body_str(body, "displayname", required=False)
        assert nonce is not None and username is not None and password is not None
        assert mac is not None
        if self._nonces.pop(nonce, None) is None:
            raise MatrixError(400, Codes.UNKNOWN, "unrecognised nonce")
        if "\x00" in username or "\x00" in password:
            raise MatrixError(400, Codes.INVALID_PARAM, "Invalid username or password")
        want = registration_mac(secret, nonce, username, password, bool(admin), user_type)
        if not hmac.compare_digest(want.encode("ascii"), mac.encode("utf-8", "replace")):
            raise forbidden("HMAC incorrect")

        user_id = await self._accounts.register(username.lower(), password, admin=bool(admin))
        if displayname is not None:
            await self._accounts.store.set_displayname(user_id, displayname)
        login = await self._accounts.login(user_id)
        return {
            "access_token": login.access_token,
            "user_id": user_id,
            "home_server": self._accounts.server_name,
            "device_id": login.device_id,
        }


class ServerVersion:
    """``/_synapse/admin/v1/server_version``, which operators' tools probe first."""

    def __init__(self, version: str) -> None:
        self._version = version

    def register_routes(self, router: ClientRouter) -> None:
        router.route_raw("/_synapse/admin/v1/server_version", ["GET"])(self.on_get)

    async def on_get(self, request: IRequest) -> JsonDict:
        return {"server_version": self._version}
