"""Server discovery and feature advertisement: /versions, /capabilities, .well-known."""

from __future__ import annotations

from twisted.web.iweb import IRequest

from ruma.client.auth import Authenticator
from ruma.client.router import ClientRouter, JsonDict
from ruma.config import HomeserverConfig
from ruma.errors import not_found
from ruma.protocol.room_versions import KNOWN_ROOM_VERSIONS

# The spec versions we claim, chosen honestly: each is a version whose client-server API
# Ruma means to implement in full (registration, login, sync, rooms, profiles, devices...).
# r0.x stay listed because older clients (matrix-commander's /r0/login) still check them, and
# mautrix bridges exit unless v1.1+ is listed. v1.11 makes clients fetch media from the
# authenticated /_matrix/client/v1/media endpoints, which the media work serves. We stop at
# v1.12: v1.13+ mostly add OAuth 2.0 / MSC-era features we do not serve yet. Raise this only
# together with the features a version requires.
SUPPORTED_SPEC_VERSIONS = (
    "r0.0.1",
    "r0.1.0",
    "r0.2.0",
    "r0.3.0",
    "r0.4.0",
    "r0.5.0",
    "r0.6.0",
    "r0.6.1",
    "v1.1",
    "v1.2",
    "v1.3",
    "v1.4",
    "v1.5",
    "v1.6",
    "v1.7",
    "v1.8",
    "v1.9",
    "v1.10",
    "v1.11",
    "v1.12",
)


class DiscoveryEndpoints:
    def __init__(self, *, config: HomeserverConfig, auth: Authenticator) -> None:
        self._config = config
        self._auth = auth
        # Other parts of Ruma add `unstable_features` flags here as they implement them.
        self.unstable_features: dict[str, bool] = {}

    def register_routes(self, router: ClientRouter) -> None:
        router.route_raw("/_matrix/client/versions", ["GET"])(self.on_versions)
        router.route("/capabilities", ["GET"])(self.on_capabilities)
        router.route_raw("/.well-known/matrix/client", ["GET"])(self.on_well_known)

    async def on_versions(self, request: IRequest) -> JsonDict:
        return {
            "versions": list(SUPPORTED_SPEC_VERSIONS),
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
                "m.get_login_token": {"enabled": False},
            }
        }

    async def on_well_known(self, request: IRequest) -> JsonDict:
        if not self._config.public_baseurl:
            raise not_found("No .well-known configured")
        return {"m.homeserver": {"base_url": self._config.public_baseurl}}
