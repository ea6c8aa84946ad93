"""Registration, login, logout, whoami, password change and deactivation.

Resources only parse, authenticate, call :class:`~ruma.accounts.AccountService` and render.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from twisted.internet.interfaces import IReactorTime
from twisted.web.iweb import IRequest

from ruma.accounts import AccountService, UIASession, UserInteractiveAuth
from ruma.client.auth import Authenticator, Requester
from ruma.client.http import (
    body_bool,
    body_dict,
    body_str,
    client_ip,
    parse_json_object,
    parse_json_object_or_empty,
    query_str,
)
from ruma.client.router import ClientRouter, JsonDict
from ruma.config import HomeserverConfig, RegistrationToken
from ruma.errors import Codes, MatrixError, forbidden, missing_param
from ruma.ratelimit import Ratelimiter

LOGIN_PASSWORD = "m.login.password"
LOGIN_DUMMY = "m.login.dummy"
LOGIN_REGISTRATION_TOKEN = "m.login.registration_token"
LOGIN_APPSERVICE = "m.login.application_service"
LOGIN_TOKEN = "m.login.token"
ID_USER = "m.id.user"


class SessionHooks(Protocol):
    """Login tokens and refresh tokens (``ruma.client.sessions`` provides them)."""

    async def user_for_login_token(self, token: str) -> str | None:
        """Consume a login token: the user it logs in, or None."""
        ...

    async def login(
        self, user_id: str, device_id: str | None, display_name: str | None, refresh: bool
    ) -> JsonDict:
        """Log in: ``user_id``, ``access_token``, ``device_id`` and, with ``refresh``,
        ``refresh_token`` and ``expires_in_ms``."""
        ...


class AccountEndpoints:
    """The handlers; :meth:`register_routes` puts them on a :class:`ClientRouter`."""

    def __init__(
        self,
        *,
        config: HomeserverConfig,
        clock: IReactorTime,
        accounts: AccountService,
        auth: Authenticator,
        uia: UserInteractiveAuth,
    ) -> None:
        self._config = config
        self._clock = clock
        self._accounts = accounts
        self._auth = auth
        self._uia = uia
        # Login tokens and refresh tokens: set by ruma.tap (ruma.client.sessions).
        self.sessions: SessionHooks | None = None
        rc = config.rc_login
        self.rc_registration = Ratelimiter(
            clock, config.rc_registration.per_second, config.rc_registration.burst_count
        )
        self.rc_login_address = Ratelimiter(clock, rc.address.per_second, rc.address.burst_count)
        self.rc_login_account = Ratelimiter(clock, rc.account.per_second, rc.account.burst_count)
        self.rc_login_failed = Ratelimiter(
            clock, rc.failed_attempts.per_second, rc.failed_attempts.burst_count
        )

    def register_routes(self, router: ClientRouter) -> None:
        router.route("/register", ["POST"])(self.on_register)
        router.route("/register/available", ["GET"])(self.on_register_available)
        router.route(
            "/register/m.login.registration_token/validity", ["GET"], versions=("v1",)
        )(self.on_registration_token_validity)
        router.route("/login", ["GET"])(self.on_login_flows)
        router.route("/login", ["POST"])(self.on_login)
        router.route("/logout", ["POST"])(self.on_logout)
        router.route("/logout/all", ["POST"])(self.on_logout_all)
        router.route("/account/whoami", ["GET"])(self.on_whoami)
        router.route("/account/password", ["POST"])(self.on_password)
        router.route("/account/deactivate", ["POST"])(self.on_deactivate)
        router.route("/account/3pid", ["GET"])(self.on_get_3pids)

    # -- registration --------------------------------------------------------------------

    def _registration_flows(self) -> list[list[str]]:
        if self._config.registration_requires_token:
            return [[LOGIN_REGISTRATION_TOKEN]]
        return [[LOGIN_DUMMY]]

    def _find_token(self, token: str) -> RegistrationToken | None:
        for t in self._config.registration_tokens:
            if t.token == token:
                return t
        return None

    async def _token_valid(self, token: str) -> bool:
        t = self._find_token(token)
        if t is None:
            return False
        if t.expiry_time is not None and t.expiry_time < self._accounts.now_ms():
            return False
        if t.uses_allowed is not None:
            used = await self._accounts.store.get_registration_token_uses(token)
            return used < t.uses_allowed
        return True

    async def _check_dummy(self, auth: Mapping[str, Any], session: UIASession) -> bool:
        return True

    async def _check_registration_token(self, auth: Mapping[str, Any], session: UIASession) -> str:
        token = auth.get("token")
        if not isinstance(token, str) or not await self._token_valid(token):
            raise MatrixError(401, Codes.UNAUTHORIZED, "Invalid registration token")
        return token

    async def on_register(self, request: IRequest) -> JsonDict:
        kind = query_str(request, "kind", "user")
        if kind not in ("user", "guest"):
            raise MatrixError(400, Codes.INVALID_PARAM, "kind must be 'user' or 'guest'")
        body = parse_json_object_or_empty(request)
        auth = body_dict(body, "auth", required=False)
        # Appservices register their users without limits; older ones (r0 era) put the type
        # at the top level instead of in 'auth'.
        if (auth is not None and auth.get("type") == LOGIN_APPSERVICE) or body.get(
            "type"
        ) == LOGIN_APPSERVICE:
            return await self._register_appservice(request, body)

        # Only completed registrations count against the address; failed attempts and UIA
        # round trips do not.
        ip = client_ip(request)
        self.rc_registration.check(ip, update=False)

        if kind == "guest":
            result = await self._register_guest(body)
            self.rc_registration.record(ip)
            return result

        if not self._config.enable_registration:
            raise forbidden("Registration has been disabled")

        # A client may send its parameters only with the first request of the session.
        session_id = auth.get("session") if auth else None
        if isinstance(session_id, str):
            session = self._uia.get_session(session_id)
            if session is not None:
                body = {**session.client_dict, **body}

        username = body_str(body, "username", required=False)
        password = body_str(body, "password", required=False)
        device_id = body_str(body, "device_id", required=False)
        display_name = body_str(body, "initial_device_display_name", required=False)
        inhibit_login = body_bool(body, "inhibit_login", required=False, default=False)
        refresh = bool(body_bool(body, "refresh_token", required=False, default=False))
        if username is not None:
            # Say "taken" before making the user go through the auth stages.
            username = username.lower()
            await self._check_not_exclusive(await self._accounts.check_available(username))
        if password is not None:
            self._accounts.check_password_strength(password)

        client_dict = {k: body[k] for k in body if k != "auth"}
        session = await self._uia.authenticate(
            auth,
            operation="register",
            user_id=None,
            flows=self._registration_flows(),
            checkers={
                LOGIN_DUMMY: self._check_dummy,
                LOGIN_REGISTRATION_TOKEN: self._check_registration_token,
            },
            client_dict=client_dict,
        )
        if password is None:
            raise missing_param("Missing parameter 'password'")

        token = session.completed.get(LOGIN_REGISTRATION_TOKEN)
        if isinstance(token, str):
            t = self._find_token(token)
            uses = t.uses_allowed if t else 0
            if not await self._accounts.store.use_registration_token(token, uses):
                raise MatrixError(401, Codes.UNAUTHORIZED, "Registration token used up")

        user_id = await self._accounts.register(username, password)
        self.rc_registration.record(ip)
        return await self._registration_result(
            user_id, device_id, display_name, inhibit_login, refresh
        )

    async def _registration_result(
        self,
        user_id: str,
        device_id: str | None,
        display_name: str | None,
        inhibit_login: bool | None,
        refresh: bool = False,
    ) -> JsonDict:
        result: JsonDict = {"user_id": user_id, "home_server": self._config.server_name}
        if inhibit_login:
            return result
        logged_in = await self._login(user_id, device_id, display_name, refresh)
        logged_in.pop("user_id", None)
        result.update(logged_in)
        return result

    async def _login(
        self, user_id: str, device_id: str | None, display_name: str | None, refresh: bool
    ) -> JsonDict:
        if self.sessions is not None:
            return await self.sessions.login(user_id, device_id, display_name, refresh)
        login = await self._accounts.login(user_id, device_id, display_name)
        return {
            "user_id": login.user_id,
            "access_token": login.access_token,
            "device_id": login.device_id,
        }

    async def _register_guest(self, body: JsonDict) -> JsonDict:
        if not self._config.allow_guest_access:
            raise MatrixError(403, Codes.GUEST_ACCESS_FORBIDDEN, "Guest access is disabled")
        display_name = body_str(body, "initial_device_display_name", required=False)
        user_id = await self._accounts.register(None, None, guest=True)
        return await self._registration_result(user_id, None, display_name, False)

    async def _register_appservice(self, request: IRequest, body: JsonDict) -> JsonDict:
        requester = await self._auth.get_appservice_requester(request)
        hook = self._auth.appservices
        if requester.appservice_id is None or hook is None:
            raise MatrixError(
                401, Codes.UNKNOWN_TOKEN, "Only application services can register this way"
            )
        username = body_str(body, "username", required=True)
        assert username is not None
        user_id = self._accounts.validate_new_localpart(username.lower())
        if not await hook.can_register(requester.appservice_id, user_id):
            raise MatrixError(400, Codes.EXCLUSIVE, "User ID is not in the appservice namespace")
        await self._accounts.register(
            username.lower(), None, appservice_id=requester.appservice_id
        )
        return await self._registration_result(
            user_id,
            body_str(body, "device_id", required=False),
            body_str(body, "initial_device_display_name", required=False),
            body_bool(body, "inhibit_login", required=False, default=False),
        )

    async def on_register_available(self, request: IRequest) -> JsonDict:
        self.rc_registration.check(client_ip(request))
        username = query_str(request, "username", required=True)
        assert username is not None
        await self._check_not_exclusive(await self._accounts.check_available(username.lower()))
        return {"available": True}

    async def _check_not_exclusive(self, user_id: str) -> None:
        """400 M_EXCLUSIVE when an appservice reserved the user ID for itself."""
        hook = self._auth.appservices
        if hook is not None and await hook.is_exclusive_user(user_id):
            raise MatrixError(
                400, Codes.EXCLUSIVE, "This user ID is reserved by an application service"
            )

    async def on_registration_token_validity(self, request: IRequest) -> JsonDict:
        self.rc_registration.check(client_ip(request))
        token = query_str(request, "token", required=True)
        assert token is not None
        if not self._config.registration_requires_token:
            raise forbidden("Registration tokens are not enabled")
        return {"valid": await self._token_valid(token)}

    # -- login ---------------------------------------------------------------------------

    async def on_login_flows(self, request: IRequest) -> JsonDict:
        flows: list[JsonDict] = [{"type": LOGIN_PASSWORD}]
        if self.sessions is not None:
            flows.append({"type": LOGIN_TOKEN, "get_login_token": True})
        if self._auth.appservices is not None:
            flows.append({"type": LOGIN_APPSERVICE})
        return {"flows": flows}

    def _login_user(self, body: JsonDict) -> str:
        """The user named by ``identifier`` (or the deprecated top-level ``user``)."""
        identifier = body_dict(body, "identifier", required=False)
        if identifier is not None:
            id_type = body_str(identifier, "type")
            if id_type != ID_USER:
                raise MatrixError(400, Codes.UNKNOWN, f"Unsupported identifier type {id_type!r}")
            user = body_str(identifier, "user")
        else:
            if "medium" in body or "address" in body:
                raise MatrixError(400, Codes.UNKNOWN, "Third-party identifiers are not supported")
            user = body_str(body, "user", required=False)
        if user is None:
            raise missing_param("Missing parameter 'identifier'")
        return self._accounts.parse_local_user(user)

    async def on_login(self, request: IRequest) -> JsonDict:
        body = parse_json_object(request)
        login_type = body_str(body, "type")
        if login_type != LOGIN_APPSERVICE:
            self.rc_login_address.check(client_ip(request))
        if login_type == LOGIN_APPSERVICE:
            requester = await self._auth.get_appservice_requester(request)
            if requester.appservice_id is None:
                raise MatrixError(401, Codes.UNKNOWN_TOKEN, "Not an application service token")
            user_id = self._login_user(body)
            hook = self._auth.appservices
            if hook is None or not await hook.can_register(requester.appservice_id, user_id):
                raise forbidden("User is not in the application service's namespace")
            if await self._accounts.store.get_user(user_id) is None:
                raise forbidden("Unknown user")
        elif login_type == LOGIN_PASSWORD:
            user_id = self._login_user(body)
            password = body_str(body, "password")
            assert password is not None
            self.rc_login_account.check(user_id)
            self.rc_login_failed.check(user_id, update=False)
            user = await self._accounts.store.get_user(user_id)
            if user is not None and user.deactivated:
                raise MatrixError(403, Codes.USER_DEACTIVATED, "This account has been deactivated")
            if not await self._accounts.check_password(user_id, password):
                self.rc_login_failed.record(user_id)
                raise forbidden("Invalid username or password")
        elif login_type == LOGIN_TOKEN and self.sessions is not None:
            token = body_str(body, "token")
            assert token is not None
            found = await self.sessions.user_for_login_token(token)
            if found is None:
                raise forbidden("Invalid or expired login token")
            user_id = found
            user = await self._accounts.store.get_user(user_id)
            if user is None or user.deactivated:
                raise MatrixError(403, Codes.USER_DEACTIVATED, "This account has been deactivated")
        else:
            raise MatrixError(400, Codes.UNKNOWN, f"Unknown login type {login_type!r}")

        result = await self._login(
            user_id,
            body_str(body, "device_id", required=False),
            body_str(body, "initial_device_display_name", required=False),
            bool(body_bool(body, "refresh_token", required=False, default=False)),
        )
        result["home_server"] = self._config.server_name
        if self._config.public_baseurl:
            result["well_known"] = {"m.homeserver": {"base_url": self._config.public_baseurl}}
        return result

    async def on_logout(self, request: IRequest) -> JsonDict:
        requester = await self._auth.get_requester(request, allow_guest=True)
        if requester.appservice_id is not None and requester.token_id is None:
            raise forbidden("Application service tokens cannot be logged out")
        await self._accounts.logout(requester.user_id, requester.device_id, requester.token_id)
        return {}

    async def on_logout_all(self, request: IRequest) -> JsonDict:
        requester = await self._auth.get_requester(request, allow_guest=True)
        if requester.appservice_id is not None and requester.token_id is None:
            raise forbidden("Application service tokens cannot be logged out")
        await self._accounts.logout_all(requester.user_id)
        return {}

    # -- account -------------------------------------------------------------------------

    async def on_whoami(self, request: IRequest) -> JsonDict:
        requester = await self._auth.get_requester(request, allow_guest=True)
        result: JsonDict = {"user_id": requester.user_id, "is_guest": requester.is_guest}
        if requester.device_id is not None:
            result["device_id"] = requester.device_id
        return result

    def _password_checker(self, requester: Requester) -> Any:
        async def check(auth: Mapping[str, Any], session: UIASession) -> bool:
            body = dict(auth)
            user_id = self._login_user(body)
            if user_id != requester.user_id:
                raise forbidden("Can only authenticate as yourself")
            password = body_str(body, "password")
            assert password is not None
            self.rc_login_failed.check(user_id, update=False)
            if not await self._accounts.check_password(user_id, password):
                self.rc_login_failed.record(user_id)
                raise forbidden("Invalid password")
            return True

        return check

    async def user_interactive_auth(
        self, requester: Requester, body: JsonDict, operation: str
    ) -> None:
        """Password UIA for a sensitive change to the requester's own account."""
        if requester.appservice_id is not None and requester.token_id is None:
            return  # appservices are trusted for their users
        await self._uia.authenticate(
            body.get("auth"),
            operation=operation,
            user_id=requester.user_id,
            flows=[[LOGIN_PASSWORD]],
            checkers={LOGIN_PASSWORD: self._password_checker(requester)},
        )

    async def on_password(self, request: IRequest) -> JsonDict:
        requester = await self._auth.get_requester(request)
        body = parse_json_object(request)
        new_password = body_str(body, "new_password")
        assert new_password is not None
        logout_devices = body_bool(body, "logout_devices", required=False, default=True)
        self._accounts.check_password_strength(new_password)
        await self.user_interactive_auth(requester, body, "password")
        await self._accounts.set_password(
            requester.user_id,
            new_password,
            keep_device_id=requester.device_id,
            logout=bool(logout_devices),
        )
        return {}

    async def on_deactivate(self, request: IRequest) -> JsonDict:
        requester = await self._auth.get_requester(request)
        body = parse_json_object_or_empty(request)
        body_bool(body, "erase", required=False)
        body_str(body, "id_server", required=False)
        await self.user_interactive_auth(requester, body, "deactivate")
        await self._accounts.deactivate(requester.user_id)
        # We never bound third-party identifiers to an identity server.
        return {"id_server_unbind_result": "no-support"}

    async def on_get_3pids(self, request: IRequest) -> JsonDict:
        await self._auth.get_requester(request)
        return {"threepids": []}
