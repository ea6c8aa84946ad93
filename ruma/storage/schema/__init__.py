"""Numbered schema migrations: ``NNNN_name.sql`` (both engines) or ``NNNN_name.<engine>.sql``."""
