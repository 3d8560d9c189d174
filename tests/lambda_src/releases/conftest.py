"""Offline AWS (moto) world for the release-history Lambdas and CLI.

moto implements DescribeEndpoint/EndpointConfig/ListTags but not UpdateEndpoint, so the `world`
fixture adds a fake UpdateEndpoint to moto's SageMaker responses: it records the call and moves
the endpoint onto the new config (InService at once). Status changes moto cannot make on its own
(Updating, FailureReason) are set directly on moto's endpoint object.
"""

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# The Lambda code root is lambda_src/releases (handlers are release_history.<module>.handler), so
# the tests import the package the same way; release_world sits next to this file.
for path in (Path(__file__).parents[3] / "lambda_src" / "releases", Path(__file__).parent):
    if str(path) not in sys.path:
        sys.path.append(str(path))

from moto import mock_aws  # noqa: E402
from moto.core import DEFAULT_ACCOUNT_ID  # noqa: E402
from moto.core.utils import utcnow as moto_utcnow  # noqa: E402
from moto.sagemaker.responses import SageMakerResponse  # noqa: E402
from release_history import aws  # noqa: E402
from release_history.repository import ReleaseRepository  # noqa: E402
from release_history.runtime import get_runtime  # noqa: E402
from release_world import ALARMS, CONFIGS, ENDPOINT, REGION, TABLE, TOPIC, World  # noqa: E402

from tests.release_table import create_release_table  # noqa: E402


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    env = {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION, "AWS_API_MAX_ATTEMPTS": "2",
        "TABLE_NAME": TABLE, "ENDPOINT_NAME": ENDPOINT, "ALARM_NAMES": ",".join(ALARMS),
        "TOPIC_ARN": f"arn:aws:sns:{REGION}:{DEFAULT_ACCOUNT_ID}:{TOPIC}", "BAKE_MINUTES": "0",
        "POWERTOOLS_SERVICE_NAME": "releases", "POWERTOOLS_METRICS_NAMESPACE": "Test/Releases",
        "POWERTOOLS_TRACE_DISABLED": "1", "RELEASES_TABLE": TABLE,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AUTO_ROLLBACK", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    get_runtime.cache_clear()
    yield
    get_runtime.cache_clear()


def _create_table() -> Any:
    return create_release_table(aws.session().resource("dynamodb"), TABLE)


def _create_sagemaker() -> None:
    sagemaker = aws.session().client("sagemaker")
    role = f"arn:aws:iam::{DEFAULT_ACCOUNT_ID}:role/sagemaker"
    for config in CONFIGS:
        version = config.rsplit("-", 1)[-1]
        sagemaker.create_model(ModelName=f"model-{version}", ExecutionRoleArn=role,
                               PrimaryContainer={"Image": f"123.dkr.ecr/{ENDPOINT}:{version}"})
        sagemaker.create_endpoint_config(
            EndpointConfigName=config,
            ProductionVariants=[{"VariantName": "main", "ModelName": f"model-{version}",
                                 "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}],
            Tags=[{"Key": "model-version", "Value": version}, {"Key": "model-hash", "Value": f"h-{version}"},
                  {"Key": "commit", "Value": f"c-{version}"}])
    sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName=CONFIGS[0])


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with mock_aws():
        table = _create_table()
        aws.session().client("sns").create_topic(Name=TOPIC)
        cloudwatch = aws.session().client("cloudwatch")
        for alarm in ALARMS:
            cloudwatch.put_metric_alarm(
                AlarmName=alarm, MetricName="Invocation5XXErrors", Namespace="AWS/SageMaker",
                Statistic="Sum", Period=60, EvaluationPeriods=1, Threshold=1,
                ComparisonOperator="GreaterThanOrEqualToThreshold")
            cloudwatch.set_alarm_state(AlarmName=alarm, StateValue="OK", StateReason="healthy")
        _create_sagemaker()
        state = World(repo=ReleaseRepository(table, ENDPOINT))

        def update_endpoint(response: SageMakerResponse) -> str:
            params = json.loads(response.body)
            state.update_calls.append(params)
            endpoint = response.sagemaker_backend.endpoints[params["EndpointName"]]
            endpoint.endpoint_config_name = params["EndpointConfigName"]
            endpoint.last_modified_time = moto_utcnow()
            return json.dumps({"EndpointArn": endpoint.arn})

        monkeypatch.setattr(SageMakerResponse, "update_endpoint", update_endpoint, raising=False)
        yield state
