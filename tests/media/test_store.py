"""MediaStore's contract on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from ruma.storage.media import MediaStore, RemoteMedia, Thumbnail
from tests.sync.dbtest import PostgresDB, SQLiteDB


class _Contract:
    def setUp(self) -> None:
        self.store = MediaStore(self.make_db())  # type: ignore[attr-defined]

    def call(self, coro: Any) -> Any:
        return self.successResultOf(Deferred.fromCoroutine(coro))  # type: ignore[attr-defined]

    def test_local_and_pending(self) -> None:
        """Uploads are complete at once; reservations are pending until completed once, and
        expire."""
        self.call(self.store.add_local_media("m1", "@a:t", created_ts=1, authenticated=True,
                                             content_type="text/plain", media_length=3))
        m1 = self.call(self.store.get_local_media("m1"))
        self.assertEqual((m1.pending, m1.media_length, m1.authenticated), (False, 3, True))
        self.call(self.store.add_local_media("m2", "@a:t", created_ts=1, authenticated=False, expires_ts=100))
        self.assertEqual(self.call(self.store.count_pending("@a:t", 50)), 1)
        self.assertTrue(self.call(self.store.complete_pending(
            "m2", content_type=None, upload_name="f", media_length=1, sha256="x", uploaded_ts=60)))
        self.assertFalse(self.call(self.store.complete_pending(
            "m2", content_type=None, upload_name="f", media_length=1, sha256="x", uploaded_ts=61)))
        self.assertEqual(self.call(self.store.count_pending("@a:t", 50)), 0)
        self.call(self.store.add_local_media("m3", "@a:t", created_ts=1, authenticated=False, expires_ts=100))
        self.assertEqual(self.call(self.store.delete_expired_pending(100)), 1)
        self.assertIsNone(self.call(self.store.get_local_media("m3")))

    def test_remote_thumbnails_previews(self) -> None:
        """Remote rows keep the first fetch; thumbnails replace; previews expire."""
        r = RemoteMedia("o.t", "x", "image/png", None, 10, "f1", 5, True)
        self.assertEqual(self.call(self.store.add_remote_media(r)), r)
        again = RemoteMedia("o.t", "x", "image/png", None, 10, "f2", 6, True)
        self.assertEqual(self.call(self.store.add_remote_media(again)).file_id, "f1")
        t = Thumbnail("o.t", "x", 32, 32, "crop", "image/png", 100, "t1")
        self.call(self.store.add_thumbnail(t))
        self.call(self.store.add_thumbnail(Thumbnail("o.t", "x", 32, 32, "crop", "image/png", 90, "t2")))
        self.assertEqual(self.call(self.store.get_thumbnail("o.t", "x", 32, 32, "crop")).file_id, "t2")
        self.assertIsNone(self.call(self.store.get_thumbnail("o.t", "x", 32, 32, "scale")))
        self.call(self.store.put_url_preview("https://e/", {"og:title": "t"}, 10, 20))
        self.assertEqual(self.call(self.store.get_url_preview("https://e/", 15)), {"og:title": "t"})
        self.assertIsNone(self.call(self.store.get_url_preview("https://e/", 20)))


class SQLiteMediaStoreTests(_Contract, SQLiteDB):
    pass


class PostgresMediaStoreTests(_Contract, PostgresDB):
    pass
