"""Tests for the pure protocol core (ruma.protocol)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

VECTORS_DIR = Path(__file__).resolve().parent.parent / "vectors"


@cache
def _vectors_text() -> str:
    return (VECTORS_DIR / "test-vectors.json").read_text(encoding="utf-8")


def load_vectors() -> dict[str, Any]:
    """A fresh copy of the spec's test vectors, read only from tests/vectors."""
    data: dict[str, Any] = json.loads(_vectors_text())
    return data
