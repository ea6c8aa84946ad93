"""Kept for imports: the server-default push ruleset now lives in :mod:`ruma.push.defaults`."""

from __future__ import annotations

from ruma.push.defaults import default_ruleset, push_rules_account_data

__all__ = ["default_ruleset", "push_rules_account_data"]
