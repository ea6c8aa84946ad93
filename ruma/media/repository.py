"""The media repository service: every media operation the endpoints call.

Files are written (and thumbnails made) in a thread through the injected ``run_in_thread``;
a file is written to a temporary name and renamed into place before its row is committed,
so a row never points at a half-written file. Layout under the media store path::

    local_content/ab/cd/<rest of media ID>       uploads
    remote_content/ab/cd/<rest of file ID>       cached media of other servers
    thumbnails/ab/cd/<rest of file ID>           thumbnails of either

``authenticated`` on a media row freezes it out of the legacy unauthenticated endpoints
(``enable_authenticated_media``, as Synapse does): media stored while the option is on is
served only through ``/_matrix/client/v1/media`` and federation.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import secrets
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from ruma.accounts.passwords import ThreadRunner
from ruma.errors import Codes, MatrixError, forbidden, invalid_param, not_found
from ruma.media.config import MediaConfig
from ruma.media.preview import decode_html, parse_opengraph
from ruma.media.thumbnails import (
    ANIMATABLE,
    THUMBNAILABLE,
    ThumbnailError,
    choose_size,
    is_animated,
    make_thumbnail,
)
from ruma.storage.media import LocalMedia, MediaStore, RemoteMedia, Thumbnail

_MEDIA_ID = re.compile(r"^[A-Za-z0-9_\-]{1,255}$")
DEFAULT_TIMEOUT_MS = 20_000
MAX_TIMEOUT_MS = 120_000
PREVIEW_CACHE_MS = 3600 * 1000


@dataclass(frozen=True, slots=True)
class FetchedMedia:
    """Media downloaded from another server."""

    data: bytes
    content_type: str | None
    filename: str | None


@dataclass(frozen=True, slots=True)
class FetchedUrl:
    """A page or image fetched for a URL preview."""

    url: str
    content_type: str | None
    data: bytes


class MediaFetchError(Exception):
    """A remote fetch failed. ``not_found`` when the remote said it has no such media."""

    def __init__(self, msg: str, *, not_found: bool = False, too_large: bool = False) -> None:
        super().__init__(msg)
        self.not_found = not_found
        self.too_large = too_large


class RemoteMediaSource(Protocol):
    """Downloads other servers' media (over federation; :mod:`ruma.client.media_remote`)."""

    async def download(
        self, server: str, media_id: str, *, max_size: int, timeout_ms: int
    ) -> FetchedMedia: ...


class UrlFetcher(Protocol):
    """Fetches a URL for a preview, refusing private addresses (``MediaFetchError``)."""

    async def fetch(self, url: str, *, max_size: int) -> FetchedUrl: ...


@dataclass(frozen=True, slots=True)
class ServedMedia:
    """A file to send: where it is and how to describe it."""

    path: str
    content_type: str
    filename: str | None
    length: int


def is_valid_media_id(media_id: str) -> bool:
    return _MEDIA_ID.match(media_id) is not None


def _split_path(root: str, kind: str, file_id: str) -> str:
    return os.path.join(root, kind, file_id[0:2], file_id[2:4], file_id[4:])


def _write_file(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{secrets.token_hex(4)}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _image_size(data: bytes) -> tuple[int, int] | None:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            return int(img.size[0]), int(img.size[1])
    except Exception:
        return None


class MediaRepository:
    log = Logger()

    def __init__(
        self,
        *,
        config: MediaConfig,
        store: MediaStore,
        clock: IReactorTime,
        server_name: str,
        run_in_thread: ThreadRunner,
        remote: RemoteMediaSource | None = None,
        url_fetcher: UrlFetcher | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self._clock = clock
        self.server_name = server_name
        self._thread = run_in_thread
        self.remote = remote
        self.url_fetcher = url_fetcher
        self._waiters: dict[str, list[Deferred[None]]] = {}
        self._fetching: dict[tuple[str, str], list[Deferred[RemoteMedia]]] = {}

    def now_ms(self) -> int:
        return int(self._clock.seconds() * 1000)

    def _mxc(self, media_id: str) -> str:
        return f"mxc://{self.server_name}/{media_id}"

    def _local_path(self, media_id: str) -> str:
        return _split_path(self.config.media_store_path, "local_content", media_id)

    # -- uploading -----------------------------------------------------------------------

    def _check_size(self, data: bytes) -> None:
        if len(data) > self.config.max_upload_size:
            raise MatrixError(413, Codes.TOO_LARGE, "Upload is larger than max_upload_size")

    async def upload(
        self, user_id: str, data: bytes, content_type: str | None, filename: str | None
    ) -> str:
        """Store new media; return its ``mxc://`` URI."""
        self._check_size(data)
        media_id = secrets.token_urlsafe(18)
        await self._thread(_write_file, self._local_path(media_id), data)
        await self.store.add_local_media(
            media_id,
            user_id,
            created_ts=self.now_ms(),
            authenticated=self.config.enable_authenticated_media,
            content_type=content_type or "application/octet-stream",
            upload_name=filename,
            media_length=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
        )
        self.log.info("{user_id} uploaded {media_id} ({n} bytes)", user_id=user_id, media_id=media_id, n=len(data))
        return self._mxc(media_id)

    async def create(self, user_id: str) -> tuple[str, int]:
        """Reserve a media ID for a later upload: ``(mxc URI, unused_expires_at)``."""
        now = self.now_ms()
        if await self.store.count_pending(user_id, now) >= self.config.max_pending_media_uploads:
            raise MatrixError(
                429,
                Codes.LIMIT_EXCEEDED,
                "Too many pending media uploads",
                retry_after_ms=60_000,
            )
        media_id = secrets.token_urlsafe(18)
        expires = now + self.config.unused_expiration_time_ms
        await self.store.add_local_media(
            media_id,
            user_id,
            created_ts=now,
            authenticated=self.config.enable_authenticated_media,
            expires_ts=expires,
        )
        return self._mxc(media_id), expires

    async def upload_to(
        self,
        user_id: str,
        server_name: str,
        media_id: str,
        data: bytes,
        content_type: str | None,
        filename: str | None,
    ) -> None:
        """The content of a media ID reserved with :meth:`create`."""
        if server_name != self.server_name or not is_valid_media_id(media_id):
            raise not_found("Unknown media")
        row = await self.store.get_local_media(media_id)
        if row is None or (row.pending and (row.expires_ts or 0) <= self.now_ms()):
            raise not_found("Unknown media")
        if row.user_id != user_id:
            raise forbidden("This media ID was reserved by another user")
        if not row.pending:
            raise MatrixError(409, Codes.CANNOT_OVERWRITE_MEDIA, "Media already uploaded")
        self._check_size(data)
        await self._thread(_write_file, self._local_path(media_id), data)
        done = await self.store.complete_pending(
            media_id,
            content_type=content_type or "application/octet-stream",
            upload_name=filename,
            media_length=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            uploaded_ts=self.now_ms(),
        )
        if not done:
            raise MatrixError(409, Codes.CANNOT_OVERWRITE_MEDIA, "Media already uploaded")
        for d in self._waiters.pop(media_id, []):
            if not d.called:
                d.callback(None)

    # -- downloading ---------------------------------------------------------------------

    async def get_media(
        self,
        server_name: str,
        media_id: str,
        *,
        authenticated: bool,
        allow_remote: bool = True,
        timeout_ms: int | None = None,
    ) -> tuple[ServedMedia, str, str]:
        """The file of ``mxc://server_name/media_id``, with the (origin, media ID) it is
        stored under (origin '' for local media). ``authenticated``: asked through an
        authenticated endpoint (else frozen media is not found)."""
        if not is_valid_media_id(media_id):
            raise not_found("Unknown media")
        timeout = _timeout(timeout_ms)
        if server_name == self.server_name:
            row = await self._local_row(media_id, timeout)
            if row.authenticated and not authenticated:
                raise not_found("Unknown media (available through authenticated media only)")
            served = ServedMedia(
                self._local_path(media_id),
                row.content_type or "application/octet-stream",
                row.upload_name,
                row.media_length or 0,
            )
            return served, "", media_id
        remote = await self.store.get_remote_media(server_name, media_id)
        if remote is None:
            if not allow_remote:
                raise not_found("Unknown media (allow_remote is false)")
            if not authenticated and self.config.enable_authenticated_media:
                raise not_found("Unknown media (available through authenticated media only)")
            remote = await self._fetch_remote(server_name, media_id, timeout)
        elif remote.authenticated and not authenticated:
            raise not_found("Unknown media (available through authenticated media only)")
        served = ServedMedia(
            _split_path(self.config.media_store_path, "remote_content", remote.file_id),
            remote.content_type or "application/octet-stream",
            remote.upload_name,
            remote.media_length,
        )
        return served, server_name, media_id

    async def _local_row(self, media_id: str, timeout_ms: int) -> LocalMedia:
        row = await self.store.get_local_media(media_id)
        if row is None:
            raise not_found("Unknown media")
        if not row.pending:
            return row
        if (row.expires_ts or 0) <= self.now_ms():
            raise not_found("Unknown media")
        await self._wait_for_upload(media_id, timeout_ms)
        row = await self.store.get_local_media(media_id)
        if row is None:
            raise not_found("Unknown media")
        if row.pending:
            raise MatrixError(504, Codes.NOT_YET_UPLOADED, "Media has not been uploaded yet")
        return row

    async def _wait_for_upload(self, media_id: str, timeout_ms: int) -> None:
        d: Deferred[None] = Deferred()
        self._waiters.setdefault(media_id, []).append(d)
        def expire() -> None:
            if not d.called:
                d.callback(None)

        timer = self._clock.callLater(timeout_ms / 1000.0, expire)
        try:
            await d
        finally:
            if timer.active():
                timer.cancel()
            waiting = self._waiters.get(media_id)
            if waiting is not None and d in waiting:
                waiting.remove(d)
                if not waiting:
                    del self._waiters[media_id]

    async def _fetch_remote(self, server: str, media_id: str, timeout_ms: int) -> RemoteMedia:
        """Fetch (once, however many ask at the same time) and cache remote media."""
        key = (server, media_id)
        mine: Deferred[RemoteMedia] = Deferred()
        waiters = self._fetching.get(key)
        if waiters is not None:
            waiters.append(mine)
            return await mine
        self._fetching[key] = [mine]
        fetch = Deferred.fromCoroutine(self._do_fetch_remote(server, media_id, timeout_ms))
        fetch.addBoth(self._fetched, key)
        return await mine

    def _fetched(self, result: Any, key: tuple[str, str]) -> None:
        for d in self._fetching.pop(key, []):
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(result)

    async def _do_fetch_remote(self, server: str, media_id: str, timeout_ms: int) -> RemoteMedia:
        if self.remote is None:
            raise MatrixError(502, Codes.UNKNOWN, "Remote media is not available here")
        try:
            fetched = await self.remote.download(
                server, media_id, max_size=self.config.max_upload_size, timeout_ms=timeout_ms
            )
        except MediaFetchError as e:
            self.log.info("fetching mxc://{server}/{media_id} failed: {e}", server=server, media_id=media_id, e=str(e))
            if e.not_found:
                raise not_found("Remote media not found") from None
            if e.too_large:
                raise MatrixError(502, Codes.TOO_LARGE, "Remote media is too large") from None
            raise MatrixError(502, Codes.UNKNOWN, f"Could not fetch media from {server}") from None
        file_id = secrets.token_urlsafe(18)
        await self._thread(
            _write_file,
            _split_path(self.config.media_store_path, "remote_content", file_id),
            fetched.data,
        )
        return await self.store.add_remote_media(
            RemoteMedia(
                origin=server,
                media_id=media_id,
                content_type=fetched.content_type,
                upload_name=fetched.filename,
                media_length=len(fetched.data),
                file_id=file_id,
                fetched_ts=self.now_ms(),
                authenticated=self.config.enable_authenticated_media,
            )
        )

    async def read(self, served: ServedMedia) -> bytes:
        try:
            data: bytes = await self._thread(_read_file, served.path)
            return data
        except FileNotFoundError:
            raise not_found("Media file is missing") from None

    # -- thumbnails ----------------------------------------------------------------------

    async def get_thumbnail(
        self,
        server_name: str,
        media_id: str,
        width: int,
        height: int,
        method: str,
        *,
        authenticated: bool,
        animated: bool = False,
        allow_remote: bool = True,
        timeout_ms: int | None = None,
    ) -> ServedMedia:
        if width <= 0 or height <= 0:
            raise invalid_param("width and height must be positive integers")
        if method not in ("crop", "scale"):
            raise invalid_param("method must be 'crop' or 'scale'")
        original, origin, key = await self.get_media(
            server_name,
            media_id,
            authenticated=authenticated,
            allow_remote=allow_remote,
            timeout_ms=timeout_ms,
        )
        ctype = original.content_type.split(";")[0].strip().lower()
        if ctype not in THUMBNAILABLE:
            raise MatrixError(400, Codes.UNKNOWN, "Cannot thumbnail this kind of media")
        if animated and ctype in ANIMATABLE:
            data = await self.read(original)
            if await self._thread(is_animated, data):
                return original
        w, h, m = choose_size(self.config.thumbnail_sizes, width, height, method)
        cached = await self.store.get_thumbnail(origin, key, w, h, m)
        if cached is not None:
            path = _split_path(self.config.media_store_path, "thumbnails", cached.file_id)
            if os.path.exists(path):
                return ServedMedia(path, cached.content_type, None, cached.media_length)
        data = await self.read(original)
        try:
            thumb = await self._thread(
                make_thumbnail, data, w, h, m, self.config.max_image_pixels
            )
        except ThumbnailError as e:
            raise MatrixError(400, Codes.UNKNOWN, f"Cannot thumbnail this media: {e}") from None
        file_id = secrets.token_urlsafe(18)
        path = _split_path(self.config.media_store_path, "thumbnails", file_id)
        await self._thread(_write_file, path, thumb.data)
        await self.store.add_thumbnail(
            Thumbnail(origin, key, w, h, m, thumb.content_type, len(thumb.data), file_id)
        )
        return ServedMedia(path, thumb.content_type, None, len(thumb.data))

    # -- URL previews --------------------------------------------------------------------

    async def preview_url(self, user_id: str, url: str) -> dict[str, Any]:
        if not self.config.url_preview_enabled or self.url_fetcher is None:
            raise forbidden("URL previews are disabled on this server")
        if not re.match(r"^https?://[^/\s]+", url, re.IGNORECASE):
            raise invalid_param("Only http and https URLs can be previewed")
        now = self.now_ms()
        cached = await self.store.get_url_preview(url, now)
        if cached is not None:
            return cached
        try:
            page = await self.url_fetcher.fetch(url, max_size=self.config.max_spider_size)
        except MediaFetchError as e:
            raise MatrixError(502, Codes.UNKNOWN, f"Could not preview the URL: {e}") from None
        ctype = (page.content_type or "").split(";")[0].strip().lower()
        og: dict[str, Any] = {}
        if ctype.startswith("image/"):
            og.update(await self._store_preview_image(user_id, page))
            og.setdefault("og:title", url.rsplit("/", 1)[-1] or url)
        elif ctype in ("text/html", "application/xhtml+xml"):
            og = parse_opengraph(decode_html(page.data, page.content_type), page.url)
            image = og.get("og:image")
            if isinstance(image, str) and re.match(r"^https?://", image, re.IGNORECASE):
                try:
                    img = await self.url_fetcher.fetch(image, max_size=self.config.max_spider_size)
                    og.update(await self._store_preview_image(user_id, img))
                except MediaFetchError:
                    og.pop("og:image", None)
            elif image is not None:
                og.pop("og:image", None)
        await self.store.put_url_preview(url, og, now, now + PREVIEW_CACHE_MS)
        return og

    async def _store_preview_image(self, user_id: str, fetched: FetchedUrl) -> dict[str, Any]:
        ctype = (fetched.content_type or "").split(";")[0].strip().lower()
        if not ctype.startswith("image/"):
            return {}
        mxc = await self.upload(user_id, fetched.data, ctype, None)
        out: dict[str, Any] = {
            "og:image": mxc,
            "og:image:type": ctype,
            "matrix:image:size": len(fetched.data),
        }
        size = await self._thread(_image_size, fetched.data)
        if size is not None:
            out["og:image:width"], out["og:image:height"] = size
        return out


def _timeout(timeout_ms: int | None) -> int:
    if timeout_ms is None:
        return DEFAULT_TIMEOUT_MS
    return max(0, min(timeout_ms, MAX_TIMEOUT_MS))
