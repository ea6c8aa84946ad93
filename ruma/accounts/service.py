"""Account lifecycle: registration, login, logout, passwords, deactivation, token checks."""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ruma.accounts.passwords import MAX_PASSWORD_LENGTH, PasswordHasher
from ruma.errors import Codes, MatrixError, forbidden
from ruma.protocol.ids import UserID
from ruma.storage.accounts import AccountStore, TokenInfo, hash_token

# Localparts we mint or accept at registration: the strict grammar minus '+' (kept back for
# compatibility with older servers that reject it), and no purely numeric names: those are
# reserved for guests, as Synapse does.
_LOCALPART = re.compile(r"[a-z0-9._=\-/]+")
_DEVICE_ALPHABET = string.ascii_uppercase

# How often a device's last-seen time and address are written for the same address.
LAST_SEEN_INTERVAL_S = 120.0

# Valid tokens are remembered for this long so that busy clients (long-polling /sync) do
# not cost a database read per request. Every path that revokes tokens goes through this
# service and forgets the user's cached tokens at once; the TTL only bounds how long a token
# revoked by *another process* sharing the database could still work here.
TOKEN_CACHE_TTL_S = 60.0
TOKEN_CACHE_MAX = 50_000


@dataclass(frozen=True, slots=True)
class LoginResult:
    user_id: str
    device_id: str
    access_token: str
    token_id: int


class AccountService:
    log = Logger()

    def __init__(
        self,
        store: AccountStore,
        clock: IReactorTime,
        hasher: PasswordHasher,
        server_name: str,
    ) -> None:
        self.store = store
        self._clock = clock
        self._hasher = hasher
        self.server_name = server_name
        self._last_seen: dict[tuple[str, str], tuple[str, float]] = {}
        self._token_cache: dict[str, tuple[TokenInfo, float]] = {}
        self._revocations = 0
        # Called after an account is deactivated (e.g. rooms: leave every room). Append in
        # ruma.tap.build_homeserver.
        self.deactivation_hooks: list[Callable[[str], Awaitable[None]]] = []

    def now_ms(self) -> int:
        return int(self._clock.seconds() * 1000)

    # -- user IDs ----------------------------------------------------------------------

    def user_id_for(self, localpart: str) -> str:
        return f"@{localpart}:{self.server_name}"

    def validate_new_localpart(self, localpart: str) -> str:
        """The user ID for a requested localpart, or 400 M_INVALID_USERNAME."""
        if not localpart:
            raise MatrixError(400, Codes.INVALID_USERNAME, "User ID cannot be empty")
        if localpart.startswith("_"):
            raise MatrixError(400, Codes.INVALID_USERNAME, "User ID may not begin with '_'")
        if not _LOCALPART.fullmatch(localpart):
            raise MatrixError(
                400,
                Codes.INVALID_USERNAME,
                "User ID can only contain characters a-z, 0-9, or '=_-./'",
            )
        if localpart.isdigit():
            raise MatrixError(
                400, Codes.INVALID_USERNAME, "Numeric user IDs are reserved for guest users"
            )
        user_id = self.user_id_for(localpart)
        if len(user_id.encode("utf-8")) > 255:
            raise MatrixError(400, Codes.INVALID_USERNAME, "User ID is too long")
        if not UserID.is_valid(user_id, strict=True):
            raise MatrixError(400, Codes.INVALID_USERNAME, "Invalid user ID")
        return user_id

    def parse_local_user(self, user: str) -> str:
        """A login identifier (``alice`` or ``@alice:server``) as a full local user ID.

        Raises 403 M_FORBIDDEN rather than saying whether the user exists.
        """
        if user.startswith("@"):
            try:
                parsed = UserID.parse(user)
            except ValueError:
                raise MatrixError(400, Codes.INVALID_USERNAME, "Invalid user ID") from None
            if str(parsed.server) != self.server_name:
                raise forbidden("Invalid username or password")
            return f"@{parsed.localpart.lower()}:{self.server_name}"
        return self.user_id_for(user.lower())

    async def check_available(self, localpart: str) -> str:
        user_id = self.validate_new_localpart(localpart)
        if await self.store.user_exists(user_id):
            raise MatrixError(400, Codes.USER_IN_USE, "User ID already taken.")
        return user_id

    # -- registration --------------------------------------------------------------------

    def check_password_strength(self, password: str) -> None:
        if not password:
            raise MatrixError(400, Codes.WEAK_PASSWORD, "Password must not be empty")
        if len(password) > MAX_PASSWORD_LENGTH:
            raise MatrixError(400, Codes.INVALID_PARAM, "Password too long")

    async def register(
        self,
        localpart: str | None,
        password: str | None,
        *,
        admin: bool = False,
        guest: bool = False,
        appservice_id: str | None = None,
    ) -> str:
        """Create an account and return its user ID (no device or token)."""
        password_hash = None
        if password is not None:
            self.check_password_strength(password)
            password_hash = await self._hasher.hash(password)
        if localpart is None:
            return await self._register_generated(password_hash, admin=admin, guest=guest)
        user_id = self.validate_new_localpart(localpart)
        created = await self.store.create_user(
            user_id,
            password_hash,
            created_ts=self.now_ms(),
            is_admin=admin,
            is_guest=guest,
            appservice_id=appservice_id,
            # Like Synapse, a new user's display name starts as their localpart.
            displayname=localpart,
        )
        if not created:
            raise MatrixError(400, Codes.USER_IN_USE, "User ID already taken.")
        self.log.info("registered {user_id}", user_id=user_id)
        return user_id

    async def _register_generated(
        self, password_hash: str | None, *, admin: bool, guest: bool
    ) -> str:
        # Generated IDs are numeric (guests) - retry on the rare collision.
        for _ in range(10):
            localpart = str(secrets.randbelow(10**10))
            user_id = self.user_id_for(localpart)
            if await self.store.create_user(
                user_id, password_hash, created_ts=self.now_ms(), is_admin=admin, is_guest=guest
            ):
                return user_id
        raise MatrixError(500, Codes.UNKNOWN, "Could not allocate a user ID")

    # -- login / logout ------------------------------------------------------------------

    async def check_password(self, user_id: str, password: str) -> bool:
        user = await self.store.get_user(user_id)
        if user is None or user.password_hash is None or user.deactivated:
            return False
        return await self._hasher.verify(password, user.password_hash)

    async def is_deactivated(self, user_id: str) -> bool:
        user = await self.store.get_user(user_id)
        return user is not None and user.deactivated

    def new_device_id(self) -> str:
        return "".join(secrets.choice(_DEVICE_ALPHABET) for _ in range(10))

    async def login(
        self,
        user_id: str,
        device_id: str | None = None,
        display_name: str | None = None,
        *,
        lifetime_ms: int | None = None,
    ) -> LoginResult:
        """Create (or reuse) a device and issue a fresh access token for it (expiring after
        ``lifetime_ms`` if given: tokens issued with a refresh token)."""
        if device_id is None:
            device_id = self.new_device_id()
        await self.store.create_device(user_id, device_id, display_name, created_ts=self.now_ms())
        token = secrets.token_urlsafe(32)
        token_id = await self.store.add_access_token(
            hash_token(token),
            user_id,
            device_id,
            created_ts=self.now_ms(),
            expires_ts=None if lifetime_ms is None else self.now_ms() + lifetime_ms,
        )
        return LoginResult(user_id, device_id, token, token_id)

    async def logout(self, user_id: str, device_id: str | None, token_id: int | None) -> None:
        """Invalidate the token and, as the spec says, its device."""
        self._forget_tokens(user_id)
        if device_id is not None:
            await self.store.delete_devices(user_id, [device_id])
        elif token_id is not None:
            await self.store.delete_access_token(token_id)
        self._forget_tokens(user_id)

    async def logout_all(self, user_id: str) -> None:
        self._forget_tokens(user_id)
        await self.store.delete_all_devices(user_id)
        self._forget_tokens(user_id)

    async def delete_devices(self, user_id: str, device_ids: list[str]) -> None:
        """Delete devices and revoke their tokens."""
        self._forget_tokens(user_id)
        await self.store.delete_devices(user_id, device_ids)
        self._forget_tokens(user_id)

    async def get_token_info(self, token: str) -> TokenInfo | None:
        token_hash = hash_token(token)
        now = self._clock.seconds()
        cached = self._token_cache.get(token_hash)
        if cached is not None and cached[1] > now:
            return cached[0]
        epoch = self._revocations
        info = await self.store.get_token_info(token_hash)
        if info is None:
            self._token_cache.pop(token_hash, None)
            return None
        if epoch != self._revocations:
            # Tokens were revoked while we read: the row may predate that, don't keep it.
            return info
        if len(self._token_cache) >= TOKEN_CACHE_MAX:
            self._token_cache.clear()
        self._token_cache[token_hash] = (info, now + TOKEN_CACHE_TTL_S)
        return info

    def forget_cached_tokens(self, user_id: str | None) -> None:
        """Forget cached tokens (of one user, or of everyone) after revoking some elsewhere."""
        if user_id is None:
            self._revocations += 1
            self._token_cache.clear()
            return
        self._forget_tokens(user_id)

    def _forget_tokens(self, user_id: str) -> None:
        # Called before and after each revoking write; a lookup that overlaps either call
        # sees the epoch move and does not cache what it read.
        self._revocations += 1
        for key in [k for k, (info, _) in self._token_cache.items() if info.user_id == user_id]:
            del self._token_cache[key]

    async def record_last_seen(
        self, user_id: str, device_id: str, ip: str, user_agent: str | None
    ) -> None:
        """Write a device's last-seen time, at most every LAST_SEEN_INTERVAL_S per address."""
        now = self._clock.seconds()
        key = (user_id, device_id)
        previous = self._last_seen.get(key)
        if previous is not None and previous[0] == ip and now - previous[1] < LAST_SEEN_INTERVAL_S:
            return
        self._last_seen[key] = (ip, now)
        if len(self._last_seen) > 100_000:
            self._last_seen.clear()
        await self.store.update_device_last_seen(
            user_id, device_id, ip=ip, user_agent=user_agent, ts=int(now * 1000)
        )

    # -- password / deactivation ---------------------------------------------------------

    async def set_password(
        self, user_id: str, new_password: str, *, keep_device_id: str | None, logout: bool
    ) -> None:
        """Change the password; with ``logout`` every other device is logged out."""
        self.check_password_strength(new_password)
        await self.store.set_password_hash(user_id, await self._hasher.hash(new_password))
        if logout:
            self._forget_tokens(user_id)
            await self.store.delete_all_devices(user_id, except_device_id=keep_device_id)
            self._forget_tokens(user_id)

    async def deactivate(self, user_id: str) -> None:
        self._forget_tokens(user_id)
        await self.store.deactivate_user(user_id)
        self._forget_tokens(user_id)
        self.log.info("deactivated {user_id}", user_id=user_id)
        for hook in self.deactivation_hooks:
            try:
                await hook(user_id)
            except Exception:
                self.log.failure("deactivation hook failed for {user_id}", user_id=user_id)
