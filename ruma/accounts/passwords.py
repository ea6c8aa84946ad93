"""Password hashing with bcrypt, off the reactor thread.

bcrypt is deliberately slow (~250 ms at 12 rounds), so it runs through an injected
``run_in_thread``: ``deferToThreadPool`` in the server, a plain call in synchronous tests.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import bcrypt
from twisted.internet.defer import Deferred, succeed

T = TypeVar("T")

# bcrypt only takes 72 bytes. Longer passwords are first reduced to the base64 of their
# SHA-256 (44 bytes), so every byte of a long password still counts.
BCRYPT_MAX_BYTES = 72
# Refuse absurd inputs before doing any work.
MAX_PASSWORD_LENGTH = 512


def _prepare(password: str) -> bytes:
    raw = password.encode("utf-8")
    if len(raw) > BCRYPT_MAX_BYTES:
        raw = base64.b64encode(hashlib.sha256(raw).digest())
    return raw


class ThreadRunner(Protocol):
    def __call__(self, func: Callable[..., T], *args: Any) -> Awaitable[T]: ...


def run_inline(func: Callable[..., T], *args: Any) -> Deferred[T]:
    """A :class:`ThreadRunner` that just calls ``func`` (for tests and the CLI)."""
    return succeed(func(*args))


class PasswordHasher:
    def __init__(self, rounds: int, run_in_thread: ThreadRunner) -> None:
        self._rounds = rounds
        self._run = run_in_thread

    async def hash(self, password: str) -> str:
        raw = _prepare(password)
        rounds = self._rounds

        def work() -> str:
            return bcrypt.hashpw(raw, bcrypt.gensalt(rounds)).decode("ascii")

        return await self._run(work)

    async def verify(self, password: str, stored_hash: str) -> bool:
        if len(password) > MAX_PASSWORD_LENGTH:
            return False
        raw = _prepare(password)
        stored = stored_hash.encode("ascii")

        def work() -> bool:
            try:
                return bcrypt.checkpw(raw, stored)
            except ValueError:  # not a bcrypt hash
                return False

        return await self._run(work)
