"""Session features: login tokens (``m.login.token`` and ``POST /v1/login/get_token``),
refresh tokens (``refresh_token: true`` at login and registration, ``POST /refresh``),
OpenID tokens (``POST /user/{userId}/openid/request_token`` and the federation
``GET /openid/userinfo`` that checks them), and ``GET /v1/auth_metadata``.

Refresh tokens rotate: each ``/refresh`` consumes the refresh token and its access token and
issues a new pair; the access token expires after ``access_token_lifetime`` (an expired one is
refused with ``soft_logout: true``). Only clients that ask for a refresh token get an
expiring access token.

``auth_metadata``: this server has no OAuth 2.0 authorisation server, so it answers what the
spec prescribes for that case, 404 ``M_UNRECOGNIZED``, and clients use the legacy login API.

```yaml
access_token_lifetime: 5m          # tokens issued with a refresh token (Synapse's name
                                   # refreshable_access_token_lifetime is read too)
login_via_existing_session:
  enabled: true                    # POST /login/get_token (always behind UIA)
  token_timeout: 2m
```
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass

from twisted.web.iweb import IRequest

from ruma.accounts import AccountService
from ruma.client.account import AccountEndpoints
from ruma.client.auth import Authenticator
from ruma.client.http import body_str, parse_json_object, parse_json_object_or_empty, query_str
from ruma.client.router import ClientRouter, JsonDict
from ruma.config import ConfigReader, HomeserverConfig
from ruma.errors import Codes, MatrixError, forbidden
from ruma.storage.sessions import SessionStore

OPENID_LIFETIME_S = 3600

_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d)?\s*$")
_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


@dataclass(frozen=True, slots=True)
class SessionConfig:
    access_token_lifetime_ms: int = 5 * 60 * 1000
    login_token_enabled: bool = True
    login_token_timeout_ms: int = 2 * 60 * 1000


def _duration(r: ConfigReader, key: str, default: int) -> int:
    value = r.data.get(key)
    if value is None:
        return default
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m and int(m.group(1)) > 0:
            return int(m.group(1)) * _MS[m.group(2) or "ms"]
    raise r.error(key, 'must be a duration, like 300000 or "5m"')


def parse_session_config(config: HomeserverConfig) -> SessionConfig:
    filename = os.path.basename(config.config_path) if config.config_path else "config"
    base = os.path.dirname(os.path.abspath(config.config_path)) if config.config_path else "."
    r = ConfigReader(filename, "", config.raw, base)
    key = "access_token_lifetime" if r.has("access_token_lifetime") else "refreshable_access_token_lifetime"
    lvs = r.sub("login_via_existing_session")
    return SessionConfig(
        access_token_lifetime_ms=_duration(r, key, 5 * 60 * 1000),
        login_token_enabled=lvs.get_bool("enabled", True),
        login_token_timeout_ms=_duration(lvs, "token_timeout", 2 * 60 * 1000),
    )


class SessionEndpoints:
    """The endpoints, and the :class:`~ruma.client.account.SessionHooks` login uses."""

    def __init__(
        self,
        *,
        config: SessionConfig,
        server_name: str,
        accounts: AccountService,
        auth: Authenticator,
        account_endpoints: AccountEndpoints,
        store: SessionStore,
    ) -> None:
        self._config = config
        self._server_name = server_name
        self._accounts = accounts
        self._auth = auth
        self._account_endpoints = account_endpoints
        self.store = store

    def register_routes(self, router: ClientRouter) -> None:
        router.route("/refresh", ["POST"], versions=("v3", "v1"))(self.on_refresh)
        if self._config.login_token_enabled:
            router.route("/login/get_token", ["POST"], versions=("v1",))(self.on_get_token)
        router.route("/user/<user_id>/openid/request_token", ["POST"])(self.on_openid)
        router.route("/auth_metadata", ["GET"], versions=("v1",))(self.on_auth_metadata)
        router.route_raw(
            "/_matrix/client/unstable/org.matrix.msc2965/auth_metadata", ["GET"]
        )(self.on_auth_metadata)

    def register_federation_routes(self, router: ClientRouter) -> None:
        router.route_raw("/_matrix/federation/v1/openid/userinfo", ["GET"])(self.on_userinfo)

    # -- SessionHooks ----------------------------------------------------------------------

    async def user_for_login_token(self, token: str) -> str | None:
        return await self.store.use_login_token(token, self._accounts.now_ms())

    async def login(
        self, user_id: str, device_id: str | None, display_name: str | None, refresh: bool
    ) -> JsonDict:
        lifetime = self._config.access_token_lifetime_ms if refresh else None
        login = await self._accounts.login(user_id, device_id, display_name, lifetime_ms=lifetime)
        result: JsonDict = {
            "user_id": login.user_id,
            "access_token": login.access_token,
            "device_id": login.device_id,
        }
        if refresh:
            token = secrets.token_urlsafe(32)
            await self.store.add_refresh_token(
                token,
                login.user_id,
                login.device_id,
                login.token_id,
                now_ms=self._accounts.now_ms(),
                expires_ts=None,
            )
            result["refresh_token"] = token
            result["expires_in_ms"] = self._config.access_token_lifetime_ms
        return result

    # -- endpoints -----------------------------------------------------------------------

    async def on_refresh(self, request: IRequest) -> JsonDict:
        body = parse_json_object(request)
        token = body_str(body, "refresh_token")
        assert token is not None
        # The old access token is revoked in the same step: drop any cached copy around it.
        self._accounts.forget_cached_tokens(None)
        used = await self.store.use_refresh_token(token, self._accounts.now_ms())
        self._accounts.forget_cached_tokens(None)
        if used is None:
            raise MatrixError(
                401, Codes.UNKNOWN_TOKEN, "Unknown or already used refresh token", soft_logout=False
            )
        user_id, device_id = used
        result = await self.login(user_id, device_id, None, True)
        return {
            "access_token": result["access_token"],
            "refresh_token": result["refresh_token"],
            "expires_in_ms": result["expires_in_ms"],
        }

    async def on_get_token(self, request: IRequest) -> JsonDict:
        requester = await self._auth.get_requester(request)
        body = parse_json_object_or_empty(request)
        await self._account_endpoints.user_interactive_auth(requester, body, "get_login_token")
        token = secrets.token_urlsafe(32)
        timeout = self._config.login_token_timeout_ms
        await self.store.add_login_token(token, requester.user_id, self._accounts.now_ms() + timeout)
        return {"login_token": token, "expires_in_ms": timeout}

    async def on_openid(self, request: IRequest, user_id: str) -> JsonDict:
        requester = await self._auth.get_requester(request)
        parse_json_object_or_empty(request)
        if requester.user_id != user_id:
            raise forbidden("Cannot request OpenID tokens for other users")
        token = secrets.token_urlsafe(32)
        await self.store.add_openid_token(
            token, user_id, self._accounts.now_ms() + OPENID_LIFETIME_S * 1000
        )
        return {
            "access_token": token,
            "token_type": "Bearer",
            "matrix_server_name": self._server_name,
            "expires_in": OPENID_LIFETIME_S,
        }

    async def on_userinfo(self, request: IRequest) -> JsonDict:
        token = query_str(request, "access_token", required=True)
        assert token is not None
        user_id = await self.store.get_openid_user(token, self._accounts.now_ms())
        if user_id is None:
            raise MatrixError(401, Codes.UNKNOWN_TOKEN, "Access Token unknown or expired")
        return {"sub": user_id}

    async def on_auth_metadata(self, request: IRequest) -> JsonDict:
        raise MatrixError(
            404,
            Codes.UNRECOGNIZED,
            "This homeserver has no OAuth 2.0 authorisation server: use the legacy login API",
        )
