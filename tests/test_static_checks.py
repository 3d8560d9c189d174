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


def test_code_is_formatted() -> None:
    result = run(str(BIN / "ruff"), "format", "--check", ".")
    assert result.returncode == 0, f"run `ruff format .` (make lint checks it):\n{result.stdout}"


@pytest.mark.slow
def test_mypy_is_clean() -> None:
    result = run(
        str(BIN / "mypy"), "platform_config", "ml_constructs", "stacks", "scripts", "model_container", "app.py"
    )
    assert result.returncode == 0, result.stdout


LAMBDA_ROOTS = sorted(
    p.name for p in (ROOT / "lambda_src").iterdir() if p.is_dir() and not p.name.startswith(("_", "."))
)


@pytest.mark.slow
@pytest.mark.parametrize("function", LAMBDA_ROOTS)
def test_mypy_is_clean_in_each_lambda(function: str) -> None:
    # Each Lambda's folder is its code root (its modules import each other as top-level packages, as in Lambda).
    root = ROOT / "lambda_src" / function
    result = subprocess.run(
        [str(BIN / "mypy"), "--explicit-package-bases", "."],
        capture_output=True,
        text=True,
        cwd=root,
        env={"MYPYPATH": str(root), "PATH": str(BIN)},
        check=False,
    )
    assert result.returncode == 0, result.stdout
