"""The Klein router behind every JSON HTTP surface Ruma serves to clients.

One :class:`ClientRouter` owns one ``Klein()`` (an instance attribute: no module-level
app). Handlers are registered with :meth:`ClientRouter.route` under every API version prefix
they belong to, and they only ever return JSON: a ``dict`` (rendered with 200) or
``(status, dict)``. The router renders every outcome as a Matrix JSON response:

- :class:`~ruma.errors.MatrixError` becomes its status and ``to_json()``;
- any other exception is logged with ``log.failure`` and becomes 500 ``M_UNKNOWN``;
- an unknown path is 404 ``M_UNRECOGNIZED``; a known path with the wrong method is 405
  ``M_UNRECOGNIZED``;
- every response carries CORS headers and ``OPTIONS`` is answered 200 (browsers send a
  preflight before most Matrix requests).

Path arguments are matched on the *still percent-encoded* path and decoded afterwards, so an
encoded ``/`` inside a state key or a room-v3 event ID stays inside its segment.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeAlias
from urllib.parse import unquote

import orjson
from klein import Klein
from twisted.internet.defer import CancelledError
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from ruma.errors import Codes, MatrixError

JsonDict: TypeAlias = dict[str, Any]
HandlerResult: TypeAlias = JsonDict | tuple[int, JsonDict]
Handler: TypeAlias = Callable[..., Awaitable[HandlerResult]]

CLIENT_PREFIX = "/_matrix/client"

_CORS_HEADERS = {
    b"Access-Control-Allow-Origin": b"*",
    b"Access-Control-Allow-Methods": b"GET, HEAD, POST, PUT, DELETE, OPTIONS",
    b"Access-Control-Allow-Headers": b"X-Requested-With, Content-Type, Authorization, Date",
    b"Access-Control-Expose-Headers": b"Synapse-Trace-Id, Server, ETag",
}


def encode_json_body(body: JsonDict) -> bytes:
    """Compact UTF-8 JSON; Matrix clients want real characters, not ``\\u`` escapes.

    orjson writes the same bytes as the stdlib for JSON data, several times faster (a big
    initial /sync spent ~100 ms here); what it refuses (integers beyond 64 bits, keys
    that are not strings) goes the stdlib way, which decides as before.
    """
    try:
        out: bytes = orjson.dumps(body)
        return out
    except TypeError:
        pass
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def write_json(request: IRequest, status: int, body: JsonDict) -> bytes:
    """Set status and content type for ``body``; return the bytes to write."""
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json")
    request.setHeader(b"Cache-Control", b"no-cache, no-store, must-revalidate")
    return encode_json_body(body)


class ClientRouter:
    """Routes for one HTTP surface; see the module docstring for the rendering rules."""

    log = Logger()

    def __init__(self) -> None:
        self.app = Klein()
        self._count = 0

        @self.app.handle_errors(NotFound)
        def _not_found(request: IRequest, failure: Failure) -> bytes:
            err = MatrixError(404, Codes.UNRECOGNIZED, "Unrecognized request")
            return write_json(request, err.http_status, err.to_json())

        @self.app.handle_errors(MethodNotAllowed)
        def _bad_method(request: IRequest, failure: Failure) -> bytes:
            err = MatrixError(405, Codes.UNRECOGNIZED, "Unrecognized request")
            return write_json(request, err.http_status, err.to_json())

        @self.app.handle_errors(HTTPException)
        def _http_exception(request: IRequest, failure: Failure) -> bytes:
            # Anything else werkzeug raises while matching (e.g. a redirect rule): we never
            # want HTML or redirects on a JSON API.
            err = MatrixError(404, Codes.UNRECOGNIZED, "Unrecognized request")
            return write_json(request, err.http_status, err.to_json())

    def route(
        self,
        path: str,
        methods: list[str],
        *,
        versions: Sequence[str] = ("v3", "r0"),
    ) -> Callable[[Handler], Handler]:
        """Register ``f(request, **path_args)`` at ``/_matrix/client/{version}{path}``.

        ``path`` uses werkzeug rule syntax, e.g. ``/rooms/<room_id>/send/<event_type>/<txn_id>``.
        Use ``versions=("v1",)`` for endpoints that only exist under ``v1``.
        """

        def deco(f: Handler) -> Handler:
            for version in versions:
                self._add(f"{CLIENT_PREFIX}/{version}{path}", methods, f)
            return f

        return deco

    def route_raw(self, full_path: str, methods: list[str]) -> Callable[[Handler], Handler]:
        """Register a handler at an exact path outside the client prefix.

        For ``/_matrix/client/versions``, ``/_synapse/admin/...``, ``/.well-known/...``.
        """

        def deco(f: Handler) -> Handler:
            self._add(full_path, methods, f)
            return f

        return deco

    def _add(self, full_path: str, methods: list[str], f: Handler) -> None:
        self._count += 1
        endpoint = f"{getattr(f, '__name__', 'handler')}#{self._count}"
        wrapped = self._wrap(f)
        upper = [m.upper() for m in methods]
        self.app.route(full_path, methods=upper, endpoint=endpoint, strict_slashes=False)(
            wrapped
        )

    def _wrap(self, f: Handler) -> Callable[..., Awaitable[bytes]]:
        log = self.log

        async def call(request: IRequest, **kwargs: str) -> bytes:
            args = {k: unquote(v) for k, v in kwargs.items()}
            # Klein cancels the handler when the connection is lost (the peer hung up, or
            # we are shutting down): that CancelledError is nobody's bug.
            gone: list[bool] = []
            notify_finish = getattr(request, "notifyFinish", None)
            if notify_finish is not None:
                notify_finish().addErrback(lambda _: gone.append(True))
            try:
                result = await f(request, **args)
                if isinstance(result, tuple):
                    status, body = result
                    return write_json(request, status, body)
                return write_json(request, 200, result)
            except MatrixError as e:
                return write_json(request, e.http_status, e.to_json())
            except Exception as e:
                if gone and isinstance(e, CancelledError):
                    log.info(
                        "{method} {path}: the connection closed before the answer",
                        method=_method(request),
                        path=_path_for_log(request),
                    )
                    return b""
                log.failure(
                    "Unhandled error in {method} {path}",
                    method=_method(request),
                    path=_path_for_log(request),
                )
                return write_json(
                    request, 500, {"errcode": Codes.UNKNOWN.value, "error": "Internal server error"}
                )

        call.__name__ = getattr(f, "__name__", "handler")
        return call

    def resource(self) -> IResource:
        """The ``IResource`` to serve (at the root of a site, or dispatched to by full path)."""
        return _RouterResource(self.app)


class _RouterResource(Resource):
    """Adds CORS, answers OPTIONS, and hands Klein the raw (undecoded) path segments."""

    isLeaf = True

    def __init__(self, app: Klein) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._klein = app.resource()

    def render(self, request: IRequest) -> bytes | int:
        for name, value in _CORS_HEADERS.items():
            request.setHeader(name, value)
        if request.method == b"OPTIONS":
            return write_json(request, 200, {})
        # Twisted has already percent-decoded each segment of postpath, which would let an
        # encoded '/' split a segment in two. Give Klein the raw segments instead; ClientRouter
        # decodes the matched arguments itself.
        raw_path = request.uri.split(b"?", 1)[0]
        segments = raw_path[1:].split(b"/") if raw_path.startswith(b"/") else [raw_path]
        request.postpath = segments[len(request.prepath) :]
        result: bytes | int = self._klein.render(request)  # type: ignore[assignment]
        return result


def _method(request: IRequest) -> str:
    method: bytes = request.method
    return method.decode("ascii", "replace")


def _path_for_log(request: IRequest) -> str:
    # Never log query strings: they may carry access tokens.
    uri: bytes = request.uri
    return uri.split(b"?", 1)[0].decode("utf-8", "replace")


__all__ = [
    "CLIENT_PREFIX",
    "ClientRouter",
    "Handler",
    "HandlerResult",
    "JsonDict",
    "encode_json_body",
    "write_json",
]
