"""The drift job's Lambda image: hadolint-clean, and its pinned requirements match the tested ones."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IMAGE_DIR = ROOT / "lambda_src/drift_monitor"


def test_dockerfile_lints_clean() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run([str(hadolint), str(IMAGE_DIR / "Dockerfile")], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_pins_the_versions_the_tests_run_with() -> None:
    tested = {
        line.split("==")[0]: line
        for line in (ROOT / "requirements-dev.txt").read_text().splitlines()
        if "==" in line and not line.startswith(" ")
    }
    for line in (IMAGE_DIR / "requirements.txt").read_text().splitlines():
        assert tested[line.split("==")[0]] == line
