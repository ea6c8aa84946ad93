"""Server discovery and feature advertisement: /versions, /capabilities, .well-known."""

from __future__ import annotations

import re

from twisted.web.iweb import IRequest

from ruma.client.auth import Authenticator
from ruma.client.router import ClientRouter, JsonDict
from ruma.config import HomeserverConfig
from ruma.errors import not_found
from ruma.protocol.room_versions import KNOWN_ROOM_VERSIONS

# Which spec versions /versions claims: exactly those Ruma implements in full, worked out
# from what is actually served rather than hoped for.
#
# - r0.0.1 .. r0.6.1: the pre-1.0 API, all of which v1.1 contains; older clients
#   (matrix-commander's /r0/login) and bridges still look for them.
# - v1.1 .. v1.12: each version is claimed only when every client-server endpoint the spec
#   added in it (and in every earlier version) is registered on the client router -- the
#   table below, taken from the spec's ``x-addedInMatrixVersion`` markers. Media endpoints
#   (v1.7 create/async upload, v1.11 authenticated media) are served by ruma.media on its own
#   router and are covered by its tests, so they are not listed. Changes without new
#   endpoints in these versions (m.mentions push rules in v1.7, the via parameter in v1.12,
#   ...) are implemented and tested where they live. Optional modules Ruma does not offer
#   (SSO login in v1.1, third-party identifiers) are answered as the spec allows when a server
#   does not offer them, so they do not hold a version back.
# - Nothing above v1.12: v1.13+ add room/user reports, room summaries, extensible profiles,
#   the OAuth 2.0 API and admin suspension/locking, whose behaviour has not been reviewed
#   against Ruma. Add versions here only together with a review of what they change.
#
# Clients decide from this list whether to use authenticated media (v1.11+): with
# enable_authenticated_media on, new media is only served there, so a missing v1.11 shows.
LEGACY_SPEC_VERSIONS = (
    "r0.0.1",
    "r0.1.0",
    "r0.2.0",
    "r0.3.0",
    "r0.4.0",
    "r0.5.0",
    "r0.6.0",
    "r0.6.1",
)
REQUIRED_ENDPOINTS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("v1.1", (
        ("POST", "/keys/device_signing/upload"),
        ("POST", "/keys/signatures/upload"),
        ("POST", "/knock/<x>"),
        ("POST", "/room_keys/version"),
        ("GET", "/room_keys/version/<x>"),
        ("PUT", "/room_keys/keys/<x>/<x>"),
    )),
    ("v1.2", (
        ("GET", "/rooms/<x>/hierarchy"),
        ("GET", "/register/m.login.registration_token/validity"),
    )),
    ("v1.3", (("POST", "/refresh"),)),
    ("v1.4", (("GET", "/rooms/<x>/threads"),)),
    ("v1.5", ()),
    ("v1.6", (("GET", "/rooms/<x>/timestamp_to_event"),)),
    ("v1.7", (("POST", "/login/get_token"), ("POST", "/appservice/<x>/ping"))),
    ("v1.8", ()),
    ("v1.9", ()),
    ("v1.10", (("GET", "/.well-known/matrix/support"),)),
    ("v1.11", ()),
    ("v1.12", ()),
)


def _normalise(rule: str) -> str:
    """``/_matrix/client/v3/rooms/<room_id>/threads`` -> ``/rooms/<x>/threads``."""
    rule = re.sub(r"<[^>]+>", "<x>", rule)
    return re.sub(r"^/_matrix/client/(?:v\d+|r0|unstable)", "", rule)


def served_spec_versions(router: ClientRouter | None) -> list[str]:
    """The v1.x versions whose endpoints (and all earlier ones') ``router`` serves."""
    served: set[tuple[str, str]] = set()
    if router is not None:
        for rule in router.app.url_map.iter_rules():
            for method in rule.methods or ():
                served.add((method, _normalise(rule.rule)))
    out: list[str] = []
    for version, needed in REQUIRED_ENDPOINTS:
        if any((m, p) not in served for m, p in needed):
            break
        out.append(version)
    return out


class DiscoveryEndpoints:
    def __init__(self, *, config: HomeserverConfig, auth: Authenticator) -> None:
        self._config = config
        self._auth = auth
        # Other parts of Ruma add `unstable_features` flags here as they implement them.
        self.unstable_features: dict[str, bool] = {}
        self._router: ClientRouter | None = None
        # POST /login/get_token is served (ruma.client.sessions sets this).
        self.login_token_enabled = False
        self._versions: list[str] | None = None

    def register_routes(self, router: ClientRouter) -> None:
        self._router = router
        router.route_raw("/_matrix/client/versions", ["GET"])(self.on_versions)
        router.route_raw("/.well-known/matrix/support", ["GET"])(self.on_support)
        router.route("/capabilities", ["GET"])(self.on_capabilities)
        router.route_raw("/.well-known/matrix/client", ["GET"])(self.on_well_known)

    async def on_versions(self, request: IRequest) -> JsonDict:
        if self._versions is None:
            # Every route is registered by the time requests arrive.
            self._versions = [*LEGACY_SPEC_VERSIONS, *served_spec_versions(self._router)]
        return {
            "versions": list(self._versions),
            "unstable_features": dict(self.unstable_features),
        }

    async def on_capabilities(self, request: IRequest) -> JsonDict:
        await self._auth.get_requester(request, allow_guest=True)
        return {
            "capabilities": {
                "m.change_password": {"enabled": True},
                "m.room_versions": {
                    "default": self._config.default_room_version,
                    "available": {
                        v.identifier: "stable" if v.stable else "unstable"
                        for v in KNOWN_ROOM_VERSIONS.values()
                    },
                },
                "m.set_displayname": {"enabled": True},
                "m.set_avatar_url": {"enabled": True},
                "m.3pid_changes": {"enabled": False},
                "m.get_login_token": {"enabled": self.login_token_enabled},
            }
        }

    async def on_well_known(self, request: IRequest) -> JsonDict:
        if not self._config.public_baseurl:
            raise not_found("No .well-known configured")
        return {"m.homeserver": {"base_url": self._config.public_baseurl}}

    async def on_support(self, request: IRequest) -> JsonDict:
        # No support contacts are configured: the spec's answer is 404.
        raise not_found("No support information is configured for this server")
