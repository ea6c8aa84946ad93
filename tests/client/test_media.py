"""Media over HTTP: uploads, async uploads, downloads and their safety headers, legacy
endpoints and the authenticated-media freeze, thumbnails, config, URL previews."""

from __future__ import annotations

import json
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from ruma.media.repository import FetchedUrl, MediaFetchError
from tests.harness import make_homeserver
from tests.media.helpers import image_size, png, raw_request, upload


def media_path(mxc: str) -> str:
    return mxc.removeprefix("mxc://")


class UploadDownloadTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.hs = make_homeserver(self, config_overrides={"max_upload_size": 1000})
        self.alice, self.token = self.hs.register("alice")

    def test_upload_and_download(self) -> None:
        """An upload returns an mxc URI on this server; the authenticated download serves the
        same bytes with its type, an inline disposition with the name and the safety headers."""
        mxc = upload(self.hs, self.token, b"hello world", "text/plain", "hello.txt")
        self.assertTrue(mxc.startswith("mxc://test/"))
        status, headers, body = raw_request(
            self.hs, "GET", f"/_matrix/client/v1/media/download/{media_path(mxc)}", token=self.token
        )
        self.assertEqual((status, body), (200, b"hello world"))
        self.assertEqual(headers["content-type"], "text/plain; charset=utf-8")
        self.assertEqual(headers["content-disposition"], 'inline; filename="hello.txt"')
        self.assertIn("sandbox", headers["content-security-policy"])
        self.assertEqual(headers["x-content-type-options"], "nosniff")
        self.assertEqual(headers["cross-origin-resource-policy"], "cross-origin")

    def test_unsafe_types_are_attachments(self) -> None:
        """HTML (or anything that could run script) is served as an attachment; a file name
        in the path overrides the stored one, non-ASCII names use filename*."""
        mxc = upload(self.hs, self.token, b"<script>x</script>", "text/html", "page.html")
        _, headers, _ = raw_request(
            self.hs, "GET", f"/_matrix/client/v1/media/download/{media_path(mxc)}/caf%C3%A9.html",
            token=self.token,
        )
        self.assertEqual(headers["content-disposition"], "attachment; filename*=utf-8''caf%C3%A9.html")

    def test_download_needs_auth(self) -> None:
        """The client v1 download needs an access token."""
        mxc = upload(self.hs, self.token, b"x")
        status, _, body = raw_request(self.hs, "GET", f"/_matrix/client/v1/media/download/{media_path(mxc)}")
        self.assertEqual((status, json.loads(body)["errcode"]), (401, "M_MISSING_TOKEN"))

    def test_unknown_media(self) -> None:
        """Unknown or malformed media IDs are 404 M_NOT_FOUND."""
        for path in ("test/nope", "test/bad%20id"):
            status, _, body = raw_request(self.hs, "GET", f"/_matrix/client/v1/media/download/{path}", token=self.token)
            self.assertEqual((status, json.loads(body)["errcode"]), (404, "M_NOT_FOUND"))

    def test_too_large(self) -> None:
        """Uploads above max_upload_size are 413 M_TOO_LARGE; config says the limit."""
        status, _, body = raw_request(
            self.hs, "POST", "/_matrix/media/v3/upload", b"x" * 1001, self.token, {"Content-Type": "text/plain"}
        )
        self.assertEqual((status, json.loads(body)["errcode"]), (413, "M_TOO_LARGE"))
        for path in ("/_matrix/client/v1/media/config", "/_matrix/media/v3/config"):
            self.assertEqual(self.hs.request("GET", path, token=self.token), (200, {"m.upload.size": 1000}))

    def test_upload_needs_auth(self) -> None:
        """Uploading needs an access token."""
        status, _, _ = raw_request(self.hs, "POST", "/_matrix/media/v3/upload", b"x")
        self.assertEqual(status, 401)

    def test_legacy_download_frozen(self) -> None:
        """With enable_authenticated_media (the default), new media is not served by the
        unauthenticated legacy endpoint."""
        mxc = upload(self.hs, self.token, b"x")
        status, _, body = raw_request(self.hs, "GET", f"/_matrix/media/v3/download/{media_path(mxc)}")
        self.assertEqual((status, json.loads(body)["errcode"]), (404, "M_NOT_FOUND"))

    def test_legacy_download_when_allowed(self) -> None:
        """With enable_authenticated_media off, legacy r0/v3 downloads serve the media."""
        hs = make_homeserver(self, config_overrides={"enable_authenticated_media": False})
        _, token = hs.register("bob")
        mxc = upload(hs, token, b"old client")
        for v in ("v3", "r0"):
            status, _, body = raw_request(hs, "GET", f"/_matrix/media/{v}/download/{media_path(mxc)}")
            self.assertEqual((status, body), (200, b"old client"))


class AsyncUploadTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.hs = make_homeserver(self, config_overrides={"max_pending_media_uploads": 2})
        self.alice, self.token = self.hs.register("alice")
        self.bob, self.b_token = self.hs.register("bob")

    def create(self, token: str | None = None) -> tuple[int, Any]:
        return self.hs.request("POST", "/_matrix/media/v1/create", {}, token=token or self.token)

    def test_create_then_upload(self) -> None:
        """create reserves an mxc URI (expiring in 24 h); PUT fills it; a second PUT is 409
        M_CANNOT_OVERWRITE_MEDIA; someone else's PUT is 403."""
        status, body = self.create()
        self.assertEqual(status, 200)
        self.assertEqual(body["unused_expires_at"], int(self.hs.clock.seconds() * 1000) + 86_400_000)
        path = media_path(body["content_uri"])
        status, _, resp = raw_request(self.hs, "PUT", f"/_matrix/media/v3/upload/{path}", b"late", self.b_token)
        self.assertEqual((status, json.loads(resp)["errcode"]), (403, "M_FORBIDDEN"))
        status, _, resp = raw_request(
            self.hs, "PUT", f"/_matrix/media/v3/upload/{path}?filename=a.txt", b"late", self.token,
            {"Content-Type": "text/plain"},
        )
        self.assertEqual((status, json.loads(resp)), (200, {}))
        status, _, resp = raw_request(self.hs, "PUT", f"/_matrix/media/v3/upload/{path}", b"again", self.token)
        self.assertEqual((status, json.loads(resp)["errcode"]), (409, "M_CANNOT_OVERWRITE_MEDIA"))
        status, _, data = raw_request(self.hs, "GET", f"/_matrix/client/v1/media/download/{path}", token=self.token)
        self.assertEqual((status, data), (200, b"late"))

    def test_not_yet_uploaded(self) -> None:
        """Downloading a reservation: 504 M_NOT_YET_UPLOADED after timeout_ms; a waiting
        download is answered once the content arrives."""
        _, body = self.create()
        path = media_path(body["content_uri"])
        quick = self.hs.treq.get(
            self.hs.url(f"/_matrix/client/v1/media/download/{path}?timeout_ms=0"),
            headers={b"Authorization": [b"Bearer " + self.token.encode()]},
        )
        self.hs.treq.flush()
        self.hs.clock.advance(0)
        self.hs.treq.flush()
        response = self.successResultOf(quick)
        self.assertEqual(response.code, 504)
        content = self.successResultOf(response.json())
        self.assertEqual(content["errcode"], "M_NOT_YET_UPLOADED")
        d = self.hs.treq.get(
            self.hs.url(f"/_matrix/client/v1/media/download/{path}?timeout_ms=10000"),
            headers={b"Authorization": [b"Bearer " + self.token.encode()]},
        )
        self.hs.treq.flush()
        self.assertNoResult(d)
        raw_request(self.hs, "PUT", f"/_matrix/media/v3/upload/{path}", b"now", self.token)
        self.hs.treq.flush()
        response = self.successResultOf(d)
        self.assertEqual(response.code, 200)

    def test_pending_limit_and_expiry(self) -> None:
        """At most max_pending_media_uploads reservations (429); expired ones are 404."""
        _, first = self.create()
        self.create()
        status, body = self.create()
        self.assertEqual((status, body["errcode"]), (429, "M_LIMIT_EXCEEDED"))
        self.hs.clock.advance(86_401)
        self.assertEqual(self.create()[0], 200)
        path = media_path(first["content_uri"])
        status, _, _ = raw_request(self.hs, "PUT", f"/_matrix/media/v3/upload/{path}", b"x", self.token)
        self.assertEqual(status, 404)


class ThumbnailTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.hs = make_homeserver(self)
        self.alice, self.token = self.hs.register("alice")
        self.mxc = upload(self.hs, self.token, png(400, 300), "image/png")

    def thumb(self, query: str, mxc: str | None = None) -> tuple[int, dict[str, str], bytes]:
        return raw_request(
            self.hs, "GET", f"/_matrix/client/v1/media/thumbnail/{media_path(mxc or self.mxc)}?{query}",
            token=self.token,
        )

    def test_crop_and_scale(self) -> None:
        """crop gives exactly the (configured) box; scale keeps the aspect ratio inside it."""
        status, headers, data = self.thumb("width=96&height=96&method=crop")
        self.assertEqual((status, headers["content-type"]), (200, "image/png"))
        self.assertEqual(image_size(data), (96, 96))
        status, _, data = self.thumb("width=300&height=200&method=scale")
        self.assertEqual(image_size(data), (320, 240))
        _, _, again = self.thumb("width=300&height=200&method=scale")
        self.assertEqual(again, data)

    def test_never_enlarged(self) -> None:
        """A small image is not scaled up."""
        small = upload(self.hs, self.token, png(50, 40), "image/png")
        _, _, data = self.thumb("width=800&height=600&method=scale", small)
        self.assertEqual(image_size(data), (50, 40))

    def test_bad_requests(self) -> None:
        """Bad sizes, methods and non-image media are 400."""
        self.assertEqual(self.thumb("width=0&height=10")[0], 400)
        self.assertEqual(self.thumb("width=10")[0], 400)
        self.assertEqual(self.thumb("width=10&height=10&method=zoom")[0], 400)
        text = upload(self.hs, self.token, b"not an image", "text/plain")
        self.assertEqual(self.thumb("width=10&height=10", text)[0], 400)
        fake = upload(self.hs, self.token, b"not really a png", "image/png")
        self.assertEqual(self.thumb("width=10&height=10", fake)[0], 400)

    def test_legacy_thumbnail_frozen(self) -> None:
        """The unauthenticated thumbnail endpoint does not serve frozen media."""
        status, _, _ = raw_request(
            self.hs, "GET", f"/_matrix/media/v3/thumbnail/{media_path(self.mxc)}?width=32&height=32"
        )
        self.assertEqual(status, 404)


class _FakeFetcher:
    def __init__(self, pages: dict[str, FetchedUrl]) -> None:
        self.pages = pages
        self.fetched: list[str] = []

    async def fetch(self, url: str, *, max_size: int) -> FetchedUrl:
        self.fetched.append(url)
        if url not in self.pages:
            raise MediaFetchError("unreachable")
        return self.pages[url]


class PreviewTests(SynchronousTestCase):
    def test_disabled_by_default(self) -> None:
        """Without url_preview_enabled, previews are refused (403)."""
        hs = make_homeserver(self)
        _, token = hs.register("alice")
        status, body = hs.request("GET", "/_matrix/client/v1/media/preview_url?url=https://example.com/", token=token)
        self.assertEqual((status, body["errcode"]), (403, "M_FORBIDDEN"))

    def test_opengraph_and_image(self) -> None:
        """A page's OpenGraph data is returned; its image is stored as local media; the result
        is cached; unfetchable URLs are 502; only http(s) URLs are accepted."""
        hs = make_homeserver(self, config_overrides={"url_preview_enabled": True})
        _, token = hs.register("alice")
        html = (
            b"<html><head><title>Fallback</title><meta property='og:title' content='Tea &amp; cake'>"
            b"<meta name='description' content='All about tea'>"
            b"<meta property='og:image' content='/img.png'></head><body>hi</body></html>"
        )
        fetcher = _FakeFetcher(
            {
                "https://example.com/tea": FetchedUrl("https://example.com/tea", "text/html; charset=utf-8", html),
                "https://example.com/img.png": FetchedUrl("https://example.com/img.png", "image/png", png(60, 30)),
            }
        )
        assert hs.hs.media is not None
        hs.hs.media.url_fetcher = fetcher
        path = "/_matrix/client/v1/media/preview_url?url=https%3A%2F%2Fexample.com%2Ftea"
        status, og = hs.request("GET", path, token=token)
        self.assertEqual(status, 200)
        self.assertEqual(og["og:title"], "Tea & cake")
        self.assertEqual(og["og:description"], "All about tea")
        self.assertTrue(og["og:image"].startswith("mxc://test/"))
        self.assertEqual((og["og:image:width"], og["og:image:height"], og["og:image:type"]), (60, 30, "image/png"))
        self.assertIsInstance(og["matrix:image:size"], int)
        self.assertEqual(hs.request("GET", path, token=token), (200, og))
        self.assertEqual(len(fetcher.fetched), 2)
        status, body = hs.request("GET", "/_matrix/media/v3/preview_url?url=https://nowhere.example/", token=token)
        self.assertEqual(status, 502)
        status, body = hs.request("GET", "/_matrix/client/v1/media/preview_url?url=file:///etc/passwd", token=token)
        self.assertEqual((status, body["errcode"]), (400, "M_INVALID_PARAM"))
