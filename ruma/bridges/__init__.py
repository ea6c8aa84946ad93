"""Bridge modules hosted in the homeserver (see :mod:`ruma.bridges.base`)."""
