"""Media test helpers: raw (binary) requests against a harness homeserver, test images."""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

from tests.harness import TestHomeserver


def raw_request(
    hs: TestHomeserver,
    method: str,
    path: str,
    body: bytes | None = None,
    token: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """Send a request; return status, the response's headers (lower-case, last value) and
    the body bytes."""
    hdrs: dict[bytes, list[bytes]] = {}
    if token is not None:
        hdrs[b"Authorization"] = [b"Bearer " + token.encode("ascii")]
    for k, v in (headers or {}).items():
        hdrs[k.encode("ascii")] = [v.encode("utf-8")]
    d = hs.treq.request(method, hs.url(path), data=body, headers=hdrs)
    for _ in range(50):
        hs.treq.flush()
        if d.called:
            break
    response = hs.test_case.successResultOf(d)
    content_d = response.content()
    for _ in range(50):
        hs.treq.flush()
        if content_d.called:
            break
    content: bytes = hs.test_case.successResultOf(content_d)
    out: dict[str, str] = {}
    for name, values in response.headers.getAllRawHeaders():
        out[name.decode("ascii").lower()] = values[-1].decode("utf-8")
    return int(response.code), out, content


def upload(
    hs: TestHomeserver, token: str, data: bytes, content_type: str = "text/plain", filename: str | None = None
) -> str:
    path = "/_matrix/media/v3/upload" + (f"?filename={filename}" if filename else "")
    status, _, body = raw_request(hs, "POST", path, data, token, {"Content-Type": content_type})
    assert status == 200, (status, body)
    import json

    uri: str = json.loads(body)["content_uri"]
    return uri


def png(width: int, height: int, color: Any = (200, 30, 30)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "PNG")
    return buf.getvalue()


def image_size(data: bytes) -> tuple[int, int]:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return int(img.size[0]), int(img.size[1])
