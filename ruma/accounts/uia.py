"""User-interactive authentication (client-server spec, "User-Interactive Authentication API").

An endpoint protected by UIA calls :meth:`UserInteractiveAuth.authenticate` with the
request's ``auth`` dict, the flows it accepts and a checker per stage type. Until one flow is
complete, ``authenticate`` raises :class:`AuthRequired`: a 401 whose body lists the flows,
the ``params``, the ``session`` and the stages ``completed`` so far (plus ``errcode`` and
``error`` when the stage just attempted failed). Sessions live in memory for
``SESSION_LIFETIME`` seconds on the injected clock; a restart simply makes clients start over.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.interfaces import IReactorTime

from ruma.errors import Codes, MatrixError

SESSION_LIFETIME = 30 * 60.0
# Starting a session costs a client nothing, so their number is capped: past the cap the
# oldest session is forgotten (its client just starts over).
MAX_SESSIONS = 10_000

# A stage checker gets the ``auth`` dict and the session; it raises MatrixError when the
# stage fails and returns what the endpoint may want to know (e.g. the registration token).
StageChecker = Callable[[Mapping[str, Any], "UIASession"], Awaitable[Any]]


@dataclass(slots=True)
class UIASession:
    session_id: str
    operation: str
    user_id: str | None
    created: float
    completed: dict[str, Any] = field(default_factory=dict)
    # What the client sent with its first request, for endpoints that let later requests
    # omit it (registration: username, password, device_id...).
    client_dict: dict[str, Any] = field(default_factory=dict)


class AuthRequired(MatrixError):
    """The 401 that drives the client through the flows."""

    def __init__(self, body: dict[str, Any], error: MatrixError | None = None) -> None:
        super().__init__(401, error.errcode if error else Codes.UNAUTHORIZED, "Auth required")
        self.body = body
        self.error = error

    def to_json(self) -> dict[str, Any]:
        out = dict(self.body)
        if self.error is not None:
            out["errcode"] = self.error.errcode.value
            out["error"] = self.error.msg
        return out


class UserInteractiveAuth:
    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._sessions: dict[str, UIASession] = {}

    def _expire(self) -> None:
        now = self._clock.seconds()
        for sid in [s for s, v in self._sessions.items() if now - v.created > SESSION_LIFETIME]:
            del self._sessions[sid]

    def _new_session(
        self, operation: str, user_id: str | None, client_dict: dict[str, Any]
    ) -> UIASession:
        session = UIASession(
            session_id=secrets.token_urlsafe(18),
            operation=operation,
            user_id=user_id,
            created=self._clock.seconds(),
            client_dict=client_dict,
        )
        while len(self._sessions) >= MAX_SESSIONS:
            del self._sessions[next(iter(self._sessions))]
        self._sessions[session.session_id] = session
        return session

    def get_session(self, session_id: str) -> UIASession | None:
        self._expire()
        return self._sessions.get(session_id)

    async def authenticate(
        self,
        auth: Any,
        *,
        operation: str,
        user_id: str | None,
        flows: Sequence[Sequence[str]],
        checkers: Mapping[str, StageChecker],
        params: Mapping[str, Any] | None = None,
        client_dict: dict[str, Any] | None = None,
    ) -> UIASession:
        """Return the session once a flow is complete; raise :class:`AuthRequired` until then.

        ``operation`` and ``user_id`` bind a session to what it authorises: a session started
        to change a password cannot be replayed to deactivate the account.
        """
        self._expire()
        if auth is not None and not isinstance(auth, dict):
            raise MatrixError(400, Codes.BAD_JSON, "'auth' must be an object")

        session: UIASession | None = None
        sid = auth.get("session") if auth else None
        if sid is not None:
            if not isinstance(sid, str) or sid not in self._sessions:
                raise MatrixError(400, Codes.UNKNOWN, "Unknown or expired UIA session")
            session = self._sessions[sid]
            if session.operation != operation or session.user_id != user_id:
                raise MatrixError(
                    403,
                    Codes.FORBIDDEN,
                    "Requested operation has changed during the UI authentication session.",
                )
        if session is None:
            session = self._new_session(operation, user_id, dict(client_dict or {}))

        error: MatrixError | None = None
        stage = auth.get("type") if auth else None
        if stage is not None:
            allowed = {s for flow in flows for s in flow}
            if not isinstance(stage, str) or stage not in allowed or stage not in checkers:
                error = MatrixError(400, Codes.UNRECOGNIZED, f"Unrecognized auth type {stage!r}")
            else:
                try:
                    assert auth is not None
                    session.completed[stage] = await checkers[stage](auth, session)
                except MatrixError as e:
                    error = e

        for flow in flows:
            if all(s in session.completed for s in flow):
                del self._sessions[session.session_id]
                return session

        body: dict[str, Any] = {
            "flows": [{"stages": list(flow)} for flow in flows],
            "params": dict(params or {}),
            "session": session.session_id,
        }
        if session.completed:
            body["completed"] = list(session.completed)
        raise AuthRequired(body, error)
