"""``GET /voip/turnServer``: TURN credentials for calls.

With ``turn_shared_secret`` the credentials are time-limited, in the form TURN servers such as
coturn check with ``use-auth-secret``: the username is ``<expiry in seconds>:<user ID>`` and
the password is base64(HMAC-SHA1(secret, username)). ``turn_username``/``turn_password`` give
fixed credentials instead. Without ``turn_uris`` (or without credentials) the answer is ``{}``,
which clients take as "no TURN server".

```yaml
turn_uris: ["turn:turn.example.com:3478?transport=udp", "turn:turn.example.com:3478?transport=tcp"]
turn_shared_secret: "..."
turn_user_lifetime: 1h
turn_allow_guests: true
```
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from dataclasses import dataclass

from twisted.internet.interfaces import IReactorTime
from twisted.web.iweb import IRequest

from ruma.client.auth import Authenticator
from ruma.client.router import ClientRouter, JsonDict
from ruma.config import ConfigReader, HomeserverConfig
from ruma.errors import Codes, MatrixError

_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d)?\s*$")
_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


@dataclass(frozen=True, slots=True)
class TurnConfig:
    uris: tuple[str, ...] = ()
    shared_secret: str | None = None
    username: str | None = None
    password: str | None = None
    user_lifetime_ms: int = 3_600_000
    allow_guests: bool = True


def parse_turn_config(config: HomeserverConfig) -> TurnConfig:
    filename = os.path.basename(config.config_path) if config.config_path else "config"
    r = ConfigReader(filename, "", config.raw, ".")
    lifetime = r.data.get("turn_user_lifetime")
    lifetime_ms = 3_600_000
    if lifetime is not None:
        m = _DURATION.match(str(lifetime)) if not isinstance(lifetime, bool) else None
        if m is None or int(m.group(1)) <= 0:
            raise r.error("turn_user_lifetime", 'must be a duration, like 3600000 or "1h"')
        lifetime_ms = int(m.group(1)) * _MS[m.group(2) or "ms"]
    return TurnConfig(
        uris=tuple(r.get_str_list("turn_uris")),
        shared_secret=r.get_str("turn_shared_secret"),
        username=r.get_str("turn_username"),
        password=r.get_str("turn_password"),
        user_lifetime_ms=lifetime_ms,
        allow_guests=r.get_bool("turn_allow_guests", True),
    )


def turn_credentials(secret: str, user_id: str, expiry_s: int) -> tuple[str, str]:
    username = f"{expiry_s}:{user_id}"
    mac = hmac.new(secret.encode("utf-8"), username.encode("utf-8"), hashlib.sha1).digest()
    return username, base64.b64encode(mac).decode("ascii")


class VoipEndpoints:
    def __init__(self, *, config: TurnConfig, clock: IReactorTime, auth: Authenticator) -> None:
        self._config = config
        self._clock = clock
        self._auth = auth

    def register_routes(self, router: ClientRouter) -> None:
        router.route("/voip/turnServer", ["GET"])(self.on_turn_server)

    async def on_turn_server(self, request: IRequest) -> JsonDict:
        requester = await self._auth.get_requester(request, allow_guest=True)
        c = self._config
        if requester.is_guest and not c.allow_guests:
            raise MatrixError(403, Codes.FORBIDDEN, "Guests may not use the TURN server")
        if not c.uris:
            return {}
        ttl_s = c.user_lifetime_ms // 1000
        if c.shared_secret:
            expiry = int(self._clock.seconds()) + ttl_s
            username, password = turn_credentials(c.shared_secret, requester.user_id, expiry)
        elif c.username and c.password:
            username, password = c.username, c.password
        else:
            return {}
        return {"username": username, "password": password, "uris": list(c.uris), "ttl": ttl_s}
