"""What the media repository knows about its files: local uploads (and pending ones),
cached remote media, thumbnails and URL previews. File contents are on disk
(:mod:`ruma.media.files`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ruma.storage.database import Database, Txn


@dataclass(frozen=True, slots=True)
class LocalMedia:
    media_id: str
    user_id: str
    content_type: str | None
    upload_name: str | None
    media_length: int | None
    created_ts: int
    uploaded_ts: int | None
    expires_ts: int | None
    authenticated: bool

    @property
    def pending(self) -> bool:
        return self.uploaded_ts is None


@dataclass(frozen=True, slots=True)
class RemoteMedia:
    origin: str
    media_id: str
    content_type: str | None
    upload_name: str | None
    media_length: int
    file_id: str
    fetched_ts: int
    authenticated: bool


@dataclass(frozen=True, slots=True)
class Thumbnail:
    origin: str
    media_id: str
    width: int
    height: int
    method: str
    content_type: str
    media_length: int
    file_id: str


_LOCAL_COLS = (
    "media_id, user_id, content_type, upload_name, media_length, created_ts, uploaded_ts,"
    " expires_ts, authenticated"
)


def _local(r: tuple[Any, ...]) -> LocalMedia:
    return LocalMedia(
        media_id=r[0],
        user_id=r[1],
        content_type=r[2],
        upload_name=r[3],
        media_length=None if r[4] is None else int(r[4]),
        created_ts=int(r[5]),
        uploaded_ts=None if r[6] is None else int(r[6]),
        expires_ts=None if r[7] is None else int(r[7]),
        authenticated=bool(r[8]),
    )


class MediaStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    # -- local media -----------------------------------------------------------------

    async def add_local_media(
        self,
        media_id: str,
        user_id: str,
        *,
        created_ts: int,
        authenticated: bool,
        content_type: str | None = None,
        upload_name: str | None = None,
        media_length: int | None = None,
        sha256: str | None = None,
        expires_ts: int | None = None,
    ) -> None:
        """A new upload (``media_length`` given) or a pending reservation (None)."""

        def txn_fn(txn: Txn) -> None:
            txn.execute(
                "INSERT INTO local_media (media_id, user_id, content_type, upload_name,"
                " media_length, sha256, created_ts, uploaded_ts, expires_ts, authenticated)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    media_id,
                    user_id,
                    content_type,
                    upload_name,
                    media_length,
                    sha256,
                    created_ts,
                    created_ts if media_length is not None else None,
                    expires_ts,
                    authenticated,
                ),
            )

        await self._db.run("add_local_media", txn_fn)

    async def complete_pending(
        self,
        media_id: str,
        *,
        content_type: str | None,
        upload_name: str | None,
        media_length: int,
        sha256: str,
        uploaded_ts: int,
    ) -> bool:
        """Fill in a pending reservation; False if it was no longer pending."""

        def txn_fn(txn: Txn) -> bool:
            txn.execute(
                "UPDATE local_media SET content_type = ?, upload_name = ?, media_length = ?,"
                " sha256 = ?, uploaded_ts = ?, expires_ts = NULL"
                " WHERE media_id = ? AND uploaded_ts IS NULL",
                (content_type, upload_name, media_length, sha256, uploaded_ts, media_id),
            )
            return txn.rowcount > 0

        return await self._db.run("complete_pending_media", txn_fn)

    async def get_local_media(self, media_id: str) -> LocalMedia | None:
        def txn_fn(txn: Txn) -> LocalMedia | None:
            row = txn.select_one(
                f"SELECT {_LOCAL_COLS} FROM local_media WHERE media_id = ?", (media_id,)
            )
            return None if row is None else _local(row)

        return await self._db.run("get_local_media", txn_fn)

    async def count_pending(self, user_id: str, now_ms: int) -> int:
        """The user's reservations not yet uploaded nor expired."""

        def txn_fn(txn: Txn) -> int:
            row = txn.select_one(
                "SELECT COUNT(*) FROM local_media WHERE user_id = ? AND uploaded_ts IS NULL"
                " AND expires_ts > ?",
                (user_id, now_ms),
            )
            return int(row[0]) if row else 0

        return await self._db.run("get_pending_media_count", txn_fn)

    async def delete_expired_pending(self, now_ms: int) -> int:
        def txn_fn(txn: Txn) -> int:
            txn.execute(
                "DELETE FROM local_media WHERE uploaded_ts IS NULL AND expires_ts <= ?", (now_ms,)
            )
            return txn.rowcount

        return await self._db.run("delete_expired_pending_media", txn_fn)

    # -- remote media ----------------------------------------------------------------

    async def get_remote_media(self, origin: str, media_id: str) -> RemoteMedia | None:
        def txn_fn(txn: Txn) -> RemoteMedia | None:
            r = txn.select_one(
                "SELECT origin, media_id, content_type, upload_name, media_length, file_id,"
                " fetched_ts, authenticated FROM remote_media WHERE origin = ? AND media_id = ?",
                (origin, media_id),
            )
            if r is None:
                return None
            return RemoteMedia(r[0], r[1], r[2], r[3], int(r[4]), r[5], int(r[6]), bool(r[7]))

        return await self._db.run("get_remote_media", txn_fn)

    async def add_remote_media(self, media: RemoteMedia) -> RemoteMedia:
        """Record a cached remote file; if another fetch won the race, return its row."""

        def txn_fn(txn: Txn) -> RemoteMedia | None:
            row = txn.select_one(
                "SELECT 1 FROM remote_media WHERE origin = ? AND media_id = ?",
                (media.origin, media.media_id),
            )
            if row is not None:
                return None
            txn.execute(
                "INSERT INTO remote_media (origin, media_id, content_type, upload_name,"
                " media_length, file_id, fetched_ts, authenticated) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    media.origin,
                    media.media_id,
                    media.content_type,
                    media.upload_name,
                    media.media_length,
                    media.file_id,
                    media.fetched_ts,
                    media.authenticated,
                ),
            )
            return media

        stored = await self._db.run("add_remote_media", txn_fn)
        if stored is not None:
            return stored
        existing = await self.get_remote_media(media.origin, media.media_id)
        assert existing is not None
        return existing

    # -- thumbnails --------------------------------------------------------------------

    async def get_thumbnail(
        self, origin: str, media_id: str, width: int, height: int, method: str
    ) -> Thumbnail | None:
        def txn_fn(txn: Txn) -> Thumbnail | None:
            r = txn.select_one(
                "SELECT origin, media_id, width, height, method, content_type, media_length,"
                " file_id FROM media_thumbnails WHERE origin = ? AND media_id = ? AND width = ?"
                " AND height = ? AND method = ?",
                (origin, media_id, width, height, method),
            )
            if r is None:
                return None
            return Thumbnail(r[0], r[1], int(r[2]), int(r[3]), r[4], r[5], int(r[6]), r[7])

        return await self._db.run("get_thumbnail", txn_fn)

    async def add_thumbnail(self, thumb: Thumbnail) -> None:
        def txn_fn(txn: Txn) -> None:
            txn.execute(
                "DELETE FROM media_thumbnails WHERE origin = ? AND media_id = ? AND width = ?"
                " AND height = ? AND method = ?",
                (thumb.origin, thumb.media_id, thumb.width, thumb.height, thumb.method),
            )
            txn.execute(
                "INSERT INTO media_thumbnails (origin, media_id, width, height, method,"
                " content_type, media_length, file_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    thumb.origin,
                    thumb.media_id,
                    thumb.width,
                    thumb.height,
                    thumb.method,
                    thumb.content_type,
                    thumb.media_length,
                    thumb.file_id,
                ),
            )

        await self._db.run("add_thumbnail", txn_fn)

    # -- URL previews ------------------------------------------------------------------

    async def get_url_preview(self, url: str, now_ms: int) -> dict[str, Any] | None:
        def txn_fn(txn: Txn) -> dict[str, Any] | None:
            row = txn.select_one(
                "SELECT og FROM url_previews WHERE url = ? AND expires_ts > ?", (url, now_ms)
            )
            return None if row is None else dict(json.loads(row[0]))

        return await self._db.run("get_url_preview", txn_fn)

    async def put_url_preview(
        self, url: str, og: dict[str, Any], now_ms: int, expires_ts: int
    ) -> None:
        def txn_fn(txn: Txn) -> None:
            txn.execute("DELETE FROM url_previews WHERE url = ?", (url,))
            txn.execute(
                "INSERT INTO url_previews (url, og, fetched_ts, expires_ts) VALUES (?, ?, ?, ?)",
                (url, json.dumps(og), now_ms, expires_ts),
            )

        await self._db.run("put_url_preview", txn_fn)


__all__ = ["LocalMedia", "MediaStore", "RemoteMedia", "Thumbnail"]
