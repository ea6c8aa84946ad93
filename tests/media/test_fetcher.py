"""The SSRF-safe fetcher against real sockets on loopback: denied by default, allowed only
when the operator allows the range, redirects re-checked, size limit enforced."""

from __future__ import annotations

from twisted.internet import reactor
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from ruma.client.media_remote import BlockedURL, SafeUrlFetcher
from ruma.federation.http import DEFAULT_IP_RANGE_DENYLIST, IPRangeFilter
from ruma.media.repository import MediaFetchError


class _Page(Resource):
    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        if request.path == b"/redirect":
            request.redirect(b"http://127.0.0.1:%d/page" % request.getHost().port)
            return b""
        if request.path == b"/big":
            return b"x" * 5000
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        return b"<title>ok</title>"


class SafeFetcherTests(TestCase):
    def setUp(self) -> None:
        self.port = reactor.listenTCP(0, Site(_Page()), interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(self.port.stopListening)
        self.base = f"http://127.0.0.1:{self.port.getHost().port}"

    def fetcher(self, allow: tuple[str, ...] = ()) -> SafeUrlFetcher:
        return SafeUrlFetcher(reactor, reactor, IPRangeFilter(DEFAULT_IP_RANGE_DENYLIST, allow))  # type: ignore[arg-type]

    async def test_loopback_denied_by_default(self) -> None:
        """127.0.0.1 (a literal, or 'localhost' resolved) is refused before connecting."""
        for url in (f"{self.base}/page", f"http://localhost:{self.port.getHost().port}/page"):
            with self.assertRaises(BlockedURL):
                await self.fetcher().fetch(url, max_size=1000)

    async def test_allowed_range(self) -> None:
        """With 127.0.0.0/8 allowed, the page is fetched with its content type."""
        page = await self.fetcher(("127.0.0.0/8",)).fetch(f"{self.base}/page", max_size=1000)
        self.assertEqual(page.data, b"<title>ok</title>")
        self.assertEqual(page.content_type, "text/html; charset=utf-8")

    async def test_redirect_followed_and_checked(self) -> None:
        """Redirects are followed (and each hop is checked against the filter)."""
        page = await self.fetcher(("127.0.0.0/8",)).fetch(f"{self.base}/redirect", max_size=1000)
        self.assertEqual(page.url, f"{self.base}/page")

    async def test_size_limit(self) -> None:
        """A body over max_size fails."""
        with self.assertRaises(MediaFetchError):
            await self.fetcher(("127.0.0.0/8",)).fetch(f"{self.base}/big", max_size=100)

    async def test_other_schemes(self) -> None:
        """Only http and https."""
        with self.assertRaises(MediaFetchError):
            await self.fetcher().fetch("file:///etc/passwd", max_size=100)
