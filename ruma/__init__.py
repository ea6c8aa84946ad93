"""Ruma: a federation-first Matrix homeserver on Twisted that hosts bridges."""

__version__ = "0.1.0"
