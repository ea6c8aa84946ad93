"""The code stays typed and lint-clean: mypy --strict and ruff over the whole tree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import TestCase

ROOT = Path(__file__).resolve().parent.parent


class QualityTests(TestCase):
    timeout = 600

    def _check(self, *args: str) -> None:
        proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=540)
        self.assertEqual(proc.returncode, 0, proc.stdout[-4000:] + proc.stderr[-2000:])

    def test_mypy_strict(self) -> None:
        """mypy --strict (pyproject.toml's settings) finds no error in ruma/."""
        self._check(sys.executable, "-m", "mypy", "ruma")

    def test_ruff(self) -> None:
        """ruff finds nothing in the code, the tests or the benchmarks."""
        self._check(sys.executable, "-m", "ruff", "check", "ruma", "tests", "benchmarks", "twisted")
