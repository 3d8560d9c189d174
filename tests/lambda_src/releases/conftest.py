"""Offline AWS (moto) world for the release-history Lambdas and CLI.

moto implements DescribeEndpoint/EndpointConfig/ListTags but not UpdateEndpoint, so the `world`
fixture adds a fake UpdateEndpoint to moto's SageMaker responses: it records the call and moves
the endpoint onto the new config (InService at once). Status changes moto cannot make on its own
(Updating, FailureReason) are set directly on moto's endpoint object.
"""

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The Lambda code root is lambda_src/releases (handlers are release_history.<module>.handler), so
# the tests import the package the same way; release_world sits next to this file.
for path in (Path(__file__).parents[3] / "lambda_src" / "releases", Path(__file__).parent):
    if str(path) not in sys.path:
        sys.path.append(str(path))

from moto import mock_aws  # noqa: E402
from moto.sagemaker.responses import SageMakerResponse  # noqa: E402
from release_history.runtime import get_runtime  # noqa: E402
from release_world import ENV, UNSET, World, fake_update_endpoint, provision  # noqa: E402


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    for name in UNSET:
        monkeypatch.delenv(name, raising=False)
    get_runtime.cache_clear()
    yield
    get_runtime.cache_clear()


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with mock_aws():
        state = World(repo=provision())
        monkeypatch.setattr(
            SageMakerResponse, "update_endpoint", fake_update_endpoint(lambda: state.update_calls), raising=False
        )
        yield state
