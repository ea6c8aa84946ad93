"""URL previews: OpenGraph data from an HTML page (pure parsing, no I/O).

:func:`parse_opengraph` reads ``og:*`` meta properties and falls back to Twitter cards,
``<title>``, ``<meta name="description">`` and the first ``<img>``, as preview clients expect.
Fetching is the caller's job, through a fetcher that refuses private addresses.
"""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin

MAX_VALUE_CHARS = 1000
MAX_DESCRIPTION_CHARS = 500


class _OGParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.og: dict[str, str] = {}
        self.other: dict[str, str] = {}
        self.title: list[str] = []
        self._in_title = False
        self.first_img: str | None = None
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k.lower(): v for k, v in attrs if v is not None}
        if tag in ("script", "style", "noscript"):
            self._skip += 1
        if tag == "meta":
            key = a.get("property") or a.get("name")
            content = a.get("content")
            if key and content is not None:
                key = key.strip()
                if key.lower().startswith("og:"):
                    self.og.setdefault(key, content.strip()[:MAX_VALUE_CHARS])
                else:
                    self.other.setdefault(key.lower(), content.strip()[:MAX_VALUE_CHARS])
        elif tag == "title":
            self._in_title = True
        elif tag == "img" and self.first_img is None and a.get("src"):
            self.first_img = a["src"]

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "noscript") and self._skip:
            self._skip -= 1
        if tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title and not self._skip:
            self.title.append(data)


def decode_html(body: bytes, content_type: str | None) -> str:
    charset = None
    if content_type and "charset=" in content_type.lower():
        charset = content_type.lower().split("charset=", 1)[1].split(";")[0].strip().strip('"')
    for enc in filter(None, (charset, "utf-8", "cp1252")):
        try:
            return body.decode(enc)
        except (LookupError, UnicodeDecodeError):
            continue
    return body.decode("utf-8", "replace")


def parse_opengraph(html: str, url: str) -> dict[str, Any]:
    """The OpenGraph object of a page (image URLs made absolute against ``url``)."""
    p = _OGParser()
    try:
        p.feed(html)
        p.close()
    except Exception:
        pass
    og: dict[str, Any] = dict(p.og)
    if "og:title" not in og:
        title = p.other.get("twitter:title") or " ".join("".join(p.title).split())
        if title:
            og["og:title"] = title[:MAX_VALUE_CHARS]
    if "og:description" not in og:
        desc = p.other.get("twitter:description") or p.other.get("description")
        if desc:
            og["og:description"] = desc[:MAX_DESCRIPTION_CHARS]
    if "og:image" not in og:
        img = p.other.get("twitter:image") or p.first_img
        if img:
            og["og:image"] = img
    if isinstance(og.get("og:image"), str):
        og["og:image"] = urljoin(url, og["og:image"])
    return og
