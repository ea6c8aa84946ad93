"""Operator APIs under ``/_synapse/admin`` (kept compatible with Synapse's admin tools)."""
