"""Accounts: users, devices, access tokens, passwords and user-interactive auth."""

from ruma.accounts.passwords import PasswordHasher, run_inline
from ruma.accounts.service import AccountService, LoginResult
from ruma.accounts.uia import AuthRequired, UIASession, UserInteractiveAuth

__all__ = [
    "AccountService",
    "AuthRequired",
    "LoginResult",
    "PasswordHasher",
    "UIASession",
    "UserInteractiveAuth",
    "run_inline",
]
