"""A real model build shared by the gate scripts' tests."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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


@pytest.fixture
def aws_error(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """`aws_error(service, operation, code, status)` makes that call fail as botocore raises a service error once
    its retries are spent: the service's modeled ClientError subclass for the code (client.exceptions.from_code),
    with the HTTP status, and `RetryAttempts` 4 with `MaxAttemptsReached` in ResponseMetadata (Boto3 Developer
    Guide, "Retries": legacy mode, the default, makes 5 attempts on throttling codes such as ThrottlingException
    and ProvisionedThroughputExceededException and on 429/5xx, then raises). Every client is affected, however it
    was created (boto3.client, a Session's client, a resource's client)."""
    from botocore.client import BaseClient

    failures: dict[tuple[str, str], tuple[str, int]] = {}
    original = BaseClient._make_api_call

    def call(self: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
        failure = failures.get((self.meta.service_model.service_name, operation_name))
        if failure is None:
            return original(self, operation_name, api_params)
        code, status = failure
        parsed = {
            "Error": {"Code": code, "Message": f"{code} (injected)"},
            "ResponseMetadata": {"HTTPStatusCode": status, "RetryAttempts": 4, "MaxAttemptsReached": True},
        }
        raise self.exceptions.from_code(code)(parsed, operation_name)

    monkeypatch.setattr(BaseClient, "_make_api_call", call)

    def inject(service: str, operation: str, code: str, status: int = 400) -> None:
        failures[(service, operation)] = (code, status)

    return inject
