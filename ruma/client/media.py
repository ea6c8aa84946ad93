"""The media endpoints: ``/_matrix/client/v1/media/*`` (authenticated), the legacy
``/_matrix/media/{v3,r0,v1}/*`` for older clients, and the binary responses they need.

:class:`MediaRouter` is a :class:`~ruma.client.router.ClientRouter` whose handlers may also
return a :class:`FileResponse` (streamed from disk) or :class:`BytesResponse`; errors stay
Matrix JSON. Every media response carries the safety headers clients and browsers need:
``Content-Disposition`` (``inline`` only for types that cannot run script, else
``attachment``), a sandboxing ``Content-Security-Policy``, ``X-Content-Type-Options:
nosniff`` and ``Cross-Origin-Resource-Policy: cross-origin``.

Legacy downloads and thumbnails are unauthenticated, as older clients expect; media stored
while ``enable_authenticated_media`` is on is not served by them (see
:mod:`ruma.media.repository`).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO
from urllib.parse import quote, unquote

from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from ruma.client.auth import Authenticator
from ruma.client.http import query_bool, query_int, query_str, read_body
from ruma.client.router import ClientRouter, Handler, JsonDict, write_json
from ruma.errors import Codes, MatrixError, invalid_param
from ruma.media.repository import MediaRepository, ServedMedia

MEDIA_PREFIX = "/_matrix/media"
CLIENT_MEDIA_PREFIX = "/_matrix/client/v1/media"
LEGACY_VERSIONS = ("v3", "r0", "v1")

# Types a browser may render inline without risk (the spec's list for Content-Disposition).
INLINE_CONTENT_TYPES = frozenset(
    {
        "text/css", "text/plain", "text/csv", "application/json", "application/ld+json",
        "image/jpeg", "image/gif", "image/png", "image/apng", "image/webp", "image/avif",
        "video/mp4", "video/webm", "video/ogg", "video/quicktime",
        "audio/mp4", "audio/webm", "audio/aac", "audio/mpeg", "audio/ogg", "audio/wave",
        "audio/wav", "audio/x-wav", "audio/x-pn-wav", "audio/flac", "audio/x-flac",
    }
)
CSP = (
    "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; "
    "style-src 'unsafe-inline'; media-src 'self'; object-src 'self';"
)


@dataclass(frozen=True, slots=True)
class FileResponse:
    """Stream a stored file."""

    media: ServedMedia
    filename: str | None = None


@dataclass(frozen=True, slots=True)
class BytesResponse:
    body: bytes
    content_type: str
    headers: Mapping[str, str] = field(default_factory=dict)


def content_disposition(content_type: str, filename: str | None) -> str:
    base = content_type.split(";")[0].strip().lower()
    kind = "inline" if base in INLINE_CONTENT_TYPES else "attachment"
    if not filename:
        return kind
    if all(32 <= ord(c) < 127 for c in filename) and '"' not in filename and "\\" not in filename:
        return f'{kind}; filename="{filename}"'
    return f"{kind}; filename*=utf-8''{quote(filename, safe='')}"


def served_content_type(content_type: str) -> str:
    """Text types without a charset are served as UTF-8."""
    if content_type.lower().startswith("text/") and "charset" not in content_type.lower():
        return f"{content_type}; charset=utf-8"
    return content_type


def set_media_headers(request: IRequest, content_type: str, filename: str | None) -> None:
    request.setHeader(b"Content-Type", served_content_type(content_type).encode("utf-8"))
    request.setHeader(
        b"Content-Disposition", content_disposition(content_type, filename).encode("utf-8")
    )
    request.setHeader(b"Content-Security-Policy", CSP.encode("ascii"))
    request.setHeader(b"X-Content-Type-Options", b"nosniff")
    request.setHeader(b"Cross-Origin-Resource-Policy", b"cross-origin")
    request.setHeader(b"Cache-Control", b"public, max-age=86400, s-maxage=86400")


class _FileLeaf(Resource):
    """Streams one file from disk (headers already set by the router)."""

    isLeaf = True

    def __init__(self, path: str) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._path = path

    def render(self, request: IRequest) -> Any:
        try:
            f = open(self._path, "rb")  # noqa: SIM115 - closed by the producer
        except FileNotFoundError:
            err = MatrixError(404, Codes.NOT_FOUND, "Media file is missing")
            return write_json(request, err.http_status, err.to_json())
        size = os.fstat(f.fileno()).st_size
        request.setResponseCode(200)
        request.setHeader(b"Content-Length", str(size).encode("ascii"))
        if request.method == b"HEAD":
            f.close()
            return b""
        _FileProducer(request, f).start()
        return NOT_DONE_YET


@implementer(IPushProducer)
class _FileProducer:
    """A push producer (no cooperator, so it also runs on in-memory test reactors) writing a
    file in chunks, pausing when the transport asks it to."""

    CHUNK = 64 * 1024

    def __init__(self, request: IRequest, f: BinaryIO) -> None:
        # A twisted.web Request (IRequest does not declare the producer methods).
        self._request: Any = request
        self._file = f
        self._paused = False
        self._done = False

    def start(self) -> None:
        self._request.registerProducer(self, True)
        notify = getattr(self._request, "notifyFinish", None)
        if notify is not None:
            notify().addErrback(lambda _: self.stopProducing())
        self._pump()

    def _pump(self) -> None:
        while not self._paused and not self._done:
            data = self._file.read(self.CHUNK)
            if not data:
                self._finish()
                return
            self._request.write(data)

    def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        self._file.close()
        self._request.unregisterProducer()
        self._request.finish()

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._pump()

    def stopProducing(self) -> None:
        if not self._done:
            self._done = True
            self._file.close()


class MediaRouter(ClientRouter):
    """A router whose handlers may answer with a file or raw bytes (see the module doc)."""

    log = Logger()

    def _wrap(self, f: Handler) -> Callable[..., Awaitable[Any]]:
        log = self.log

        async def call(request: IRequest, **kwargs: str) -> Any:
            args = {k: unquote(v) for k, v in kwargs.items()}
            try:
                result: Any = await f(request, **args)
                if isinstance(result, FileResponse):
                    m = result.media
                    set_media_headers(request, m.content_type, result.filename or m.filename)
                    return _FileLeaf(m.path)
                if isinstance(result, BytesResponse):
                    request.setResponseCode(200)
                    request.setHeader(b"Content-Type", result.content_type.encode("utf-8"))
                    for k, v in result.headers.items():
                        request.setHeader(k.encode("ascii"), v.encode("utf-8"))
                    return result.body
                if isinstance(result, tuple):
                    status, body = result
                    return write_json(request, status, body)
                return write_json(request, 200, result)
            except MatrixError as e:
                return write_json(request, e.http_status, e.to_json())
            except Exception:
                log.failure("Unhandled error in media request")
                return write_json(
                    request, 500, {"errcode": Codes.UNKNOWN.value, "error": "Internal server error"}
                )

        call.__name__ = getattr(f, "__name__", "handler")
        return call


def _timeout_ms(request: IRequest) -> int | None:
    return query_int(request, "timeout_ms")


def _dimension(request: IRequest, name: str) -> int:
    value = query_int(request, name, required=True)
    assert value is not None
    if value <= 0:
        raise invalid_param(f"{name} must be a positive integer")
    return value


class MediaEndpoints:
    """Client-facing media endpoints on a :class:`MediaRouter`."""

    def __init__(self, *, auth: Authenticator, media: MediaRepository) -> None:
        self._auth = auth
        self._media = media

    def register_routes(self, router: ClientRouter) -> None:
        raw = router.route_raw
        c = CLIENT_MEDIA_PREFIX
        raw(f"{c}/config", ["GET"])(self.on_config)
        raw(f"{c}/download/<server_name>/<media_id>", ["GET"])(self.on_download_auth)
        raw(f"{c}/download/<server_name>/<media_id>/<file_name>", ["GET"])(self.on_download_auth)
        raw(f"{c}/thumbnail/<server_name>/<media_id>", ["GET"])(self.on_thumbnail_auth)
        raw(f"{c}/preview_url", ["GET"])(self.on_preview_url)
        for v in LEGACY_VERSIONS:
            m = f"{MEDIA_PREFIX}/{v}"
            raw(f"{m}/upload", ["POST"])(self.on_upload)
            raw(f"{m}/upload/<server_name>/<media_id>", ["PUT"])(self.on_upload_to)
            raw(f"{m}/create", ["POST"])(self.on_create)
            raw(f"{m}/config", ["GET"])(self.on_config)
            raw(f"{m}/download/<server_name>/<media_id>", ["GET"])(self.on_download_legacy)
            raw(f"{m}/download/<server_name>/<media_id>/<file_name>", ["GET"])(
                self.on_download_legacy
            )
            raw(f"{m}/thumbnail/<server_name>/<media_id>", ["GET"])(self.on_thumbnail_legacy)
            raw(f"{m}/preview_url", ["GET"])(self.on_preview_url)

    async def on_config(self, request: IRequest) -> JsonDict:
        await self._auth.get_requester(request, allow_guest=True)
        return {"m.upload.size": self._media.config.max_upload_size}

    # -- uploads -------------------------------------------------------------------------

    def _read_upload(self, request: IRequest) -> tuple[bytes, str | None, str | None]:
        limit = self._media.config.max_upload_size
        length = request.getHeader(b"Content-Length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise MatrixError(413, Codes.TOO_LARGE, "Upload is larger than max_upload_size")
        data = read_body(request, limit)
        ctype_raw = request.getHeader(b"Content-Type")
        ctype = ctype_raw.decode("latin-1") if ctype_raw else None
        filename = query_str(request, "filename")
        if filename is not None and ("/" in filename or len(filename) > 255):
            raise invalid_param("Invalid filename")
        return data, ctype, filename

    async def on_upload(self, request: IRequest) -> JsonDict:
        requester = await self._auth.get_requester(request)
        data, ctype, filename = self._read_upload(request)
        mxc = await self._media.upload(requester.user_id, data, ctype, filename or None)
        return {"content_uri": mxc}

    async def on_create(self, request: IRequest) -> JsonDict:
        requester = await self._auth.get_requester(request)
        mxc, expires = await self._media.create(requester.user_id)
        return {"content_uri": mxc, "unused_expires_at": expires}

    async def on_upload_to(self, request: IRequest, server_name: str, media_id: str) -> JsonDict:
        requester = await self._auth.get_requester(request)
        data, ctype, filename = self._read_upload(request)
        await self._media.upload_to(
            requester.user_id, server_name, media_id, data, ctype, filename or None
        )
        return {}

    # -- downloads -----------------------------------------------------------------------

    async def on_download_auth(
        self, request: IRequest, server_name: str, media_id: str, file_name: str | None = None
    ) -> Any:
        await self._auth.get_requester(request, allow_guest=True)
        served, _, _ = await self._media.get_media(
            server_name, media_id, authenticated=True, timeout_ms=_timeout_ms(request)
        )
        return FileResponse(served, file_name)

    async def on_download_legacy(
        self, request: IRequest, server_name: str, media_id: str, file_name: str | None = None
    ) -> Any:
        served, _, _ = await self._media.get_media(
            server_name,
            media_id,
            authenticated=False,
            allow_remote=bool(query_bool(request, "allow_remote", True)),
            timeout_ms=_timeout_ms(request),
        )
        return FileResponse(served, file_name)

    async def _thumbnail(
        self, request: IRequest, server_name: str, media_id: str, authenticated: bool
    ) -> Any:
        width = _dimension(request, "width")
        height = _dimension(request, "height")
        method = query_str(request, "method", "scale") or "scale"
        served = await self._media.get_thumbnail(
            server_name,
            media_id,
            width,
            height,
            method,
            authenticated=authenticated,
            animated=bool(query_bool(request, "animated", False)),
            allow_remote=bool(query_bool(request, "allow_remote", True)),
            timeout_ms=_timeout_ms(request),
        )
        return FileResponse(served, _thumbnail_name(served))

    async def on_thumbnail_auth(self, request: IRequest, server_name: str, media_id: str) -> Any:
        await self._auth.get_requester(request, allow_guest=True)
        return await self._thumbnail(request, server_name, media_id, True)

    async def on_thumbnail_legacy(self, request: IRequest, server_name: str, media_id: str) -> Any:
        return await self._thumbnail(request, server_name, media_id, False)

    async def on_preview_url(self, request: IRequest) -> JsonDict:
        requester = await self._auth.get_requester(request)
        url = query_str(request, "url", required=True)
        assert url is not None
        query_int(request, "ts")
        return await self._media.preview_url(requester.user_id, url)


def _thumbnail_name(served: ServedMedia) -> str:
    ext = {"image/jpeg": "jpg", "image/png": "png"}.get(served.content_type)
    return f"thumbnail.{ext}" if ext else os.path.basename(served.path)
