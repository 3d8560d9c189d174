"""A real model build shared by the gate scripts' tests."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from model_container.build_model import build


@pytest.fixture(scope="session")
def dist() -> Iterator[Path]:
    # mkdtemp + chmod, not tmp_path: the latency gate's server drops to `nobody`, who must read the build.
    root = Path(tempfile.mkdtemp(prefix="gate-build-"))
    root.chmod(0o755)
    # contract_dir in tmp: the build must not rewrite the committed feature_schema.json.
    build(root / "dist", contract_dir=root / "contract", commit="test-commit")
    yield root / "dist"
    shutil.rmtree(root, ignore_errors=True)
