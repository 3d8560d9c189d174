"""ruff and mypy are clean over the project's own code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)


def test_ruff_is_clean() -> None:
    result = run(str(BIN / "ruff"), "check", ".")
    assert result.returncode == 0, result.stdout


@pytest.mark.slow
def test_mypy_is_clean() -> None:
    result = run(str(BIN / "mypy"), "platform_config", "ml_constructs", "stacks", "scripts", "app.py")
    assert result.returncode == 0, result.stdout
