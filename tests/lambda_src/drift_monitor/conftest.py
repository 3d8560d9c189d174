"""Shared fixtures: drift-monitor code on sys.path, fake AWS credentials, fresh baseline cache."""

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[3]
# The Lambda code root is the import root in Lambda; mirror that here. The tests folder holds
# the uniquely named helper module `drift_test_data`.
for path in (_ROOT / "lambda_src" / "drift_monitor", Path(__file__).resolve().parent):
    if str(path) not in sys.path:
        sys.path.append(str(path))  # appended: the repo root keeps its own `app` module first


@pytest.fixture(autouse=True)
def fake_aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never reach a real account: fake credentials and a fixed region for every test."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture(autouse=True)
def fresh_baseline_cache() -> Iterator[None]:
    from drift_engine import baseline_store

    baseline_store.clear_cache()
    yield
    baseline_store.clear_cache()
