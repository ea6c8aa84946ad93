"""Thumbnails with Pillow: blocking functions, run in a thread by the repository.

``scale``: the image shrunk to fit inside the requested box, keeping its aspect ratio.
``crop``: the image shrunk to cover the box, then cut to exactly the box's aspect ratio
(centred). Images are never enlarged. EXIF orientation is applied. JPEG stays JPEG; anything
else becomes PNG (transparency kept).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageOps

# What Pillow may decode for us (others get no thumbnail).
THUMBNAILABLE = frozenset(
    {"image/jpeg", "image/jpg", "image/png", "image/gif", "image/webp", "image/bmp", "image/apng"}
)
ANIMATABLE = frozenset({"image/gif", "image/webp", "image/png", "image/apng"})


class ThumbnailError(Exception):
    """The source cannot be thumbnailed (not an image, too large, corrupt)."""


@dataclass(frozen=True, slots=True)
class ThumbnailResult:
    data: bytes
    content_type: str
    width: int
    height: int


def choose_size(
    sizes: tuple[tuple[int, int, str], ...], width: int, height: int, method: str
) -> tuple[int, int, str]:
    """The configured size to serve for a request: the smallest of the same method at least
    as large as asked, else the largest of that method (else any size)."""
    same = [s for s in sizes if s[2] == method] or list(sizes)
    big_enough = [s for s in same if s[0] >= width and s[1] >= height]
    if big_enough:
        return min(big_enough, key=lambda s: s[0] * s[1])
    return max(same, key=lambda s: s[0] * s[1])


def is_animated(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as img:
            return bool(getattr(img, "is_animated", False))
    except Exception:
        return False


def make_thumbnail(
    data: bytes, width: int, height: int, method: str, max_pixels: int
) -> ThumbnailResult:
    """Blocking: decode ``data`` and produce the thumbnail."""
    try:
        img = Image.open(io.BytesIO(data))
    except Exception as e:
        raise ThumbnailError(f"not an image Pillow can read: {e}") from None
    with img:
        w0, h0 = img.size
        if w0 <= 0 or h0 <= 0 or w0 * h0 > max_pixels:
            raise ThumbnailError(f"image of {w0}x{h0} pixels is too large to thumbnail")
        fmt = img.format
        try:
            img.seek(0)
            img.load()
            oriented = ImageOps.exif_transpose(img)
        except Exception as e:
            raise ThumbnailError(f"cannot decode the image: {e}") from None
        if oriented is None:
            oriented = img
        out_img = _resize(oriented, width, height, method)
        buf = io.BytesIO()
        if fmt == "JPEG":
            if out_img.mode not in ("RGB", "L"):
                out_img = out_img.convert("RGB")
            out_img.save(buf, "JPEG", quality=80)
            ctype = "image/jpeg"
        else:
            if out_img.mode not in ("RGB", "RGBA", "L", "LA", "P"):
                out_img = out_img.convert("RGBA")
            out_img.save(buf, "PNG")
            ctype = "image/png"
        return ThumbnailResult(buf.getvalue(), ctype, out_img.size[0], out_img.size[1])


def _resize(img: Image.Image, width: int, height: int, method: str) -> Image.Image:
    w0, h0 = img.size
    if method == "crop":
        # Cut the source to the requested aspect ratio, centred, then shrink.
        target_ratio = width / height
        if w0 / h0 > target_ratio:
            new_w = max(1, round(h0 * target_ratio))
            left = (w0 - new_w) // 2
            img = img.crop((left, 0, left + new_w, h0))
        else:
            new_h = max(1, round(w0 / target_ratio))
            top = (h0 - new_h) // 2
            img = img.crop((0, top, w0, top + new_h))
        w1, h1 = img.size
        if w1 > width or h1 > height:
            img = img.resize((width, height), Image.Resampling.LANCZOS)
        return img
    scale = min(width / w0, height / h0, 1.0)
    if scale < 1.0:
        img = img.resize(
            (max(1, round(w0 * scale)), max(1, round(h0 * scale))), Image.Resampling.LANCZOS
        )
    return img
