"""Who is making a client request: access-token authentication.

``Authenticator.get_requester(request)`` reads the token from ``Authorization: Bearer`` or
the deprecated ``?access_token=`` and returns a :class:`Requester`, or raises 401
``M_MISSING_TOKEN`` / ``M_UNKNOWN_TOKEN`` (with ``soft_logout: false``, except for an
expired token issued with a refresh token: ``soft_logout: true``, refresh and carry on).

Application services authenticate with their ``as_token`` and may act as any user in their
namespace through ``?user_id=``; that is answered by an :class:`AppserviceAuth` plugged into
the ``Authenticator`` (see ``appservices``). Until one is plugged in, only user tokens work.
"""

from __future__ import annotations

from typing import Protocol

from attrs import frozen
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from ruma.accounts.service import AccountService
from ruma.client.http import client_ip, query_str
from ruma.errors import Codes, MatrixError


@frozen
class Requester:
    """The authenticated user (or appservice acting as a user) behind a request."""

    user_id: str
    device_id: str | None
    token_id: int | None
    is_guest: bool = False
    appservice_id: str | None = None
    # False for an appservice registered with ``rate_limited: false`` using its as_token.
    rate_limited: bool = True


class AppserviceAuth(Protocol):
    """The hook through which application services authenticate.

    Return None if ``token`` is not an appservice's ``as_token``. Otherwise return the
    Requester it acts as: the appservice's sender user, or ``user_id`` (the ``?user_id=``
    query parameter) after checking it lies in the appservice's namespace (raising a
    MatrixError if not).
    """

    async def requester_for_token(
        self, token: str, user_id: str | None, device_id: str | None
    ) -> Requester | None: ...

    async def can_register(self, appservice_id: str, user_id: str) -> bool:
        """Whether ``user_id`` lies in the appservice's user namespace."""
        ...

    async def is_exclusive_user(self, user_id: str) -> bool:
        """Whether ``user_id`` lies in some appservice's exclusive user namespace (so only
        that appservice may register it)."""
        ...


def _unknown_token(msg: str = "Unknown access token") -> MatrixError:
    return MatrixError(401, Codes.UNKNOWN_TOKEN, msg, soft_logout=False)


def get_access_token(request: IRequest) -> str | None:
    """The token from ``Authorization: Bearer`` or ``?access_token=`` (not both)."""
    raw: bytes | None = request.getHeader(b"Authorization")
    from_query = query_str(request, "access_token")
    if raw is not None:
        header = raw.decode("latin-1")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise MatrixError(
                401, Codes.MISSING_TOKEN, "Invalid Authorization header", soft_logout=False
            )
        if from_query is not None:
            raise MatrixError(
                400, Codes.MISSING_TOKEN, "Access token given both in header and query string"
            )
        return value.strip()
    return from_query


class Authenticator:
    log = Logger()

    def __init__(
        self, accounts: AccountService, appservices: AppserviceAuth | None = None
    ) -> None:
        self._accounts = accounts
        # The appservice hook: ruma.appservice sets this when it is wired in ruma/tap.py.
        self.appservices = appservices

    async def get_appservice_requester(self, request: IRequest) -> Requester:
        """The appservice itself (its sender), ignoring ``?user_id=``: for registering and
        logging in its users, which mautrix-based bridges do while masquerading as the
        not-yet-registered user. 401 unless the token is an appservice's."""
        token = get_access_token(request)
        if token is None:
            raise MatrixError(401, Codes.MISSING_TOKEN, "Missing access token", soft_logout=False)
        if self.appservices is not None:
            requester = await self.appservices.requester_for_token(token, None, None)
            if requester is not None:
                return requester
        raise MatrixError(
            401, Codes.UNKNOWN_TOKEN, "Not an application service token", soft_logout=False
        )

    async def get_requester(self, request: IRequest, *, allow_guest: bool = False) -> Requester:
        token = get_access_token(request)
        if token is None:
            raise MatrixError(401, Codes.MISSING_TOKEN, "Missing access token", soft_logout=False)

        if self.appservices is not None:
            as_requester = await self.appservices.requester_for_token(
                token,
                query_str(request, "user_id"),
                query_str(request, "device_id")
                or query_str(request, "org.matrix.msc3202.device_id"),
            )
            if as_requester is not None:
                return as_requester

        info = await self._accounts.get_token_info(token)
        if info is None:
            raise _unknown_token()
        if info.deactivated:
            raise _unknown_token("This account has been deactivated")
        if info.expires_ts is not None and info.expires_ts <= self._accounts.now_ms():
            # Refreshable tokens expire; the client refreshes without logging out.
            raise MatrixError(
                401, Codes.UNKNOWN_TOKEN, "Access token has expired", soft_logout=True
            )
        if info.is_guest and not allow_guest:
            raise MatrixError(403, Codes.GUEST_ACCESS_FORBIDDEN, "Guest access not allowed")

        if info.device_id is not None:
            ua: bytes | None = request.getHeader(b"User-Agent")
            await self._accounts.record_last_seen(
                info.user_id,
                info.device_id,
                client_ip(request),
                None if ua is None else ua.decode("utf-8", "replace")[:512],
            )
        return Requester(
            user_id=info.user_id,
            device_id=info.device_id,
            token_id=info.token_id,
            is_guest=info.is_guest,
            appservice_id=info.appservice_id,
        )
