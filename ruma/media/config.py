"""The media keys of ``homeserver.yaml`` (Synapse's names).

```yaml
media_store_path: /var/lib/ruma/media      # default: <data_dir>/media
max_upload_size: 50M
max_image_pixels: 32M                      # larger images get no thumbnails
enable_authenticated_media: true           # new media only through authenticated endpoints
max_pending_media_uploads: 5               # POST /media/v1/create reservations per user
unused_expiration_time: 24h                # how long a reservation waits for its content
url_preview_enabled: false
url_preview_ip_range_blacklist: [...]      # default: the private/reserved ranges
url_preview_ip_range_whitelist: []
max_spider_size: 10M                       # largest page or image a preview fetches
```
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from ruma.config import ConfigError, ConfigReader, HomeserverConfig

_SIZE = re.compile(r"^\s*(\d+)\s*([kKmMgG]?)[bB]?\s*$")
_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d|w|y)?\s*$")
_DURATION_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000,
                "w": 604_800_000, "y": 31_536_000_000}

# Thumbnail sizes served (Synapse's defaults): a request gets the smallest at least as large.
DEFAULT_THUMBNAIL_SIZES: tuple[tuple[int, int, str], ...] = (
    (32, 32, "crop"),
    (96, 96, "crop"),
    (320, 240, "scale"),
    (640, 480, "scale"),
    (800, 600, "scale"),
)


@dataclass(frozen=True, slots=True)
class MediaConfig:
    media_store_path: str
    max_upload_size: int = 50 * 1024 * 1024
    max_image_pixels: int = 32 * 1024 * 1024
    enable_authenticated_media: bool = True
    max_pending_media_uploads: int = 5
    unused_expiration_time_ms: int = 24 * 3600 * 1000
    url_preview_enabled: bool = False
    # None: the default private/reserved ranges (ruma.outbound_http's deny list).
    url_preview_ip_range_blacklist: tuple[str, ...] | None = None
    url_preview_ip_range_whitelist: tuple[str, ...] = ()
    max_spider_size: int = 10 * 1024 * 1024
    thumbnail_sizes: tuple[tuple[int, int, str], ...] = DEFAULT_THUMBNAIL_SIZES


def _size(r: ConfigReader, key: str, default: int) -> int:
    value = r.data.get(key)
    if value is None:
        return default
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        m = _SIZE.match(value)
        if m:
            return int(m.group(1)) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[m.group(2).lower()]
    raise r.error(key, 'must be a size in bytes, like 10485760 or "10M"')


def _duration_ms(r: ConfigReader, key: str, default: int) -> int:
    value = r.data.get(key)
    if value is None:
        return default
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return int(m.group(1)) * _DURATION_MS[m.group(2) or "ms"]
    raise r.error(key, 'must be a duration, like 86400000 or "24h"')


def parse_media_config(config: HomeserverConfig) -> MediaConfig:
    filename = os.path.basename(config.config_path) if config.config_path else "config"
    base = os.path.dirname(os.path.abspath(config.config_path)) if config.config_path else "."
    r = ConfigReader(filename, "", config.raw, base)
    path = r.path_value("media_store_path") or os.path.join(config.data_dir, "media")
    deny: tuple[str, ...] | None = None
    if r.has("url_preview_ip_range_blacklist"):
        deny = tuple(r.get_str_list("url_preview_ip_range_blacklist"))
    allow = tuple(r.get_str_list("url_preview_ip_range_whitelist"))
    import ipaddress

    for key, nets in (("url_preview_ip_range_blacklist", deny or ()),
                      ("url_preview_ip_range_whitelist", allow)):
        for net in nets:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise r.error(key, f"{net!r} is not an IP range") from None
    cfg = MediaConfig(
        media_store_path=path,
        max_upload_size=config.max_upload_size,
        max_image_pixels=_size(r, "max_image_pixels", 32 * 1024 * 1024),
        enable_authenticated_media=r.get_bool("enable_authenticated_media", True),
        max_pending_media_uploads=r.get_int("max_pending_media_uploads", 5, minimum=1),
        unused_expiration_time_ms=_duration_ms(r, "unused_expiration_time", 24 * 3600 * 1000),
        url_preview_enabled=r.get_bool("url_preview_enabled", False),
        url_preview_ip_range_blacklist=deny,
        url_preview_ip_range_whitelist=allow,
        max_spider_size=_size(r, "max_spider_size", 10 * 1024 * 1024),
    )
    if cfg.max_upload_size <= 0:
        raise ConfigError(f"{filename}: max_upload_size: must be greater than 0")
    return cfg
