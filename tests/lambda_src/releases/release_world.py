"""Constants, event builders and handles on the moto account for the release-history tests.

Also the moto account itself (`provision`, `fake_update_endpoint`), so that both the pytest fixtures
(conftest.py) and the fault-injection scenarios (tests/fault_injection.py, built at collection time, without
fixtures) build the same world.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from moto.core import DEFAULT_ACCOUNT_ID
from moto.core.utils import utcnow as moto_utcnow
from moto.sagemaker.exceptions import ValidationError
from moto.sagemaker.models import sagemaker_backends
from moto.sagemaker.responses import SageMakerResponse
from moto.sns.models import sns_backends
from release_history import aws
from release_history.repository import Release, ReleaseRepository, Status
from release_history.timeutil import iso, utcnow

from tests.release_table import create_release_table

REGION = "eu-west-1"
ENDPOINT = "ml-api"
TABLE = "ml-api-releases"
TOPIC = "ml-api-releases"
ALARMS = ("ml-api-5xx", "ml-api-latency-p99", "ml-api-container-errors")
CONFIGS = ("ml-api-v1", "ml-api-v2", "ml-api-v3", "ml-api-v4")
TOPIC_ARN = f"arn:aws:sns:{REGION}:{DEFAULT_ACCOUNT_ID}:{TOPIC}"
ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_API_MAX_ATTEMPTS": "2",
    "TABLE_NAME": TABLE,
    "ENDPOINT_NAME": ENDPOINT,
    "ALARM_NAMES": ",".join(ALARMS),
    "TOPIC_ARN": TOPIC_ARN,
    "BAKE_MINUTES": "0",
    "POWERTOOLS_SERVICE_NAME": "releases",
    "POWERTOOLS_METRICS_NAMESPACE": "Test/Releases",
    "POWERTOOLS_TRACE_DISABLED": "1",
    "RELEASES_TABLE": TABLE,
}
UNSET = ("AWS_PROFILE", "AUTO_ROLLBACK", "AWS_CONFIG_FILE", "ROLLBACK_COOLDOWN_MINUTES", "MAX_ROLLBACK_ATTEMPTS")


def provision() -> ReleaseRepository:
    """The table, topic, alarms (OK) and SageMaker models/configs; the endpoint on CONFIGS[0]."""
    table = create_release_table(aws.session().resource("dynamodb"), TABLE)
    aws.session().client("sns").create_topic(Name=TOPIC)
    cloudwatch = aws.session().client("cloudwatch")
    for alarm in ALARMS:
        cloudwatch.put_metric_alarm(
            AlarmName=alarm,
            MetricName="Invocation5XXErrors",
            Namespace="AWS/SageMaker",
            Statistic="Sum",
            Period=60,
            EvaluationPeriods=1,
            Threshold=1,
            ComparisonOperator="GreaterThanOrEqualToThreshold",
        )
        cloudwatch.set_alarm_state(AlarmName=alarm, StateValue="OK", StateReason="healthy")
    sagemaker = aws.session().client("sagemaker")
    role = f"arn:aws:iam::{DEFAULT_ACCOUNT_ID}:role/sagemaker"
    for config in CONFIGS:
        version = config.rsplit("-", 1)[-1]
        sagemaker.create_model(
            ModelName=f"model-{version}",
            ExecutionRoleArn=role,
            PrimaryContainer={"Image": f"123.dkr.ecr/{ENDPOINT}:{version}"},
        )
        sagemaker.create_endpoint_config(
            EndpointConfigName=config,
            ProductionVariants=[
                {
                    "VariantName": "main",
                    "ModelName": f"model-{version}",
                    "InitialInstanceCount": 1,
                    "InstanceType": "ml.m5.large",
                }
            ],
            Tags=[
                {"Key": "model-version", "Value": version},
                {"Key": "model-hash", "Value": f"h-{version}"},
                {"Key": "commit", "Value": f"c-{version}"},
            ],
        )
    sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName=CONFIGS[0])
    return ReleaseRepository(table, ENDPOINT)


def fake_update_endpoint(calls: Callable[[], list[dict[str, Any]]]) -> Callable[[SageMakerResponse], str]:
    """moto has no UpdateEndpoint: record the call (in `calls()`) and move the endpoint at once (InService)."""

    def update_endpoint(response: SageMakerResponse) -> str:
        params = json.loads(response.body)
        if params["EndpointConfigName"] not in response.sagemaker_backend.endpoint_configs:
            # What SageMaker answers for a deleted config (UpdateEndpoint API reference: ValidationException).
            raise ValidationError(message=f"Could not find endpoint configuration {params['EndpointConfigName']}")
        calls().append(params)
        endpoint = response.sagemaker_backend.endpoints[params["EndpointName"]]
        endpoint.endpoint_config_name = params["EndpointConfigName"]
        endpoint.last_modified_time = moto_utcnow()
        return json.dumps({"EndpointArn": endpoint.arn})

    return update_endpoint


@dataclass
class LambdaContext:
    function_name: str = "releases-test"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:{DEFAULT_ACCOUNT_ID}:function:releases-test"
    aws_request_id: str = "req-1"


@dataclass
class World:
    """Handles on the mocked account plus event builders."""

    repo: ReleaseRepository
    update_calls: list[dict[str, Any]] = field(default_factory=list)
    base: datetime = field(default_factory=lambda: utcnow() - timedelta(hours=2))

    def at(self, minutes: float) -> datetime:
        return self.base + timedelta(minutes=minutes)

    @property
    def endpoint(self) -> Any:
        return sagemaker_backends[DEFAULT_ACCOUNT_ID][REGION].endpoints[ENDPOINT]

    def set_endpoint(
        self, config: str | None = None, status: str = "InService", failure_reason: str | None = None
    ) -> None:
        if config:
            self.endpoint.endpoint_config_name = config
        self.endpoint.endpoint_status = status
        self.endpoint.failure_reason = failure_reason

    def go_live(self, config: str, minutes: float) -> None:
        """Register, deploy, InService, promote: what the pipeline plus a passed bake leave behind."""
        from release_history import recorder  # the Lambda's module, imported once the test's environment is set

        self.register(config, minutes)
        self.set_endpoint(config)
        recorder.handler(self.state_event("IN_SERVICE", config, minutes + 5), LambdaContext())
        assert recorder.handler(self.schedule_event(), LambdaContext())["outcome"] == "promoted"

    def register(self, config: str, minutes: float) -> None:
        version = config.rsplit("-", 1)[-1]
        assert self.repo.register(
            Release(
                release_id=config,
                endpoint_name=ENDPOINT,
                status=Status.DEPLOYING,
                registered_at=iso(self.at(minutes)),
                model_version=version,
                model_hash=f"sha256:{version}",
                image=f"123.dkr.ecr/{ENDPOINT}@sha256:{version}",
                commit=f"commit-{version}",
                approved_by=["alice"],
            )
        )

    def state_event(self, status: str, config: str, minutes: float) -> dict[str, Any]:
        millis = int(self.at(minutes).timestamp() * 1000)
        return {
            "version": "0",
            "id": f"evt-{status}-{config}-{minutes}",
            "source": "aws.sagemaker",
            "detail-type": "SageMaker Endpoint State Change",
            "account": DEFAULT_ACCOUNT_ID,
            "time": iso(self.at(minutes)),
            "region": REGION,
            "resources": [self.endpoint.arn],
            "detail": {
                "EndpointName": ENDPOINT,
                "EndpointArn": self.endpoint.arn,
                "EndpointConfigName": config,
                "EndpointStatus": status,
                "CreationTime": millis,
                "LastModifiedTime": millis,
                "Tags": {},
            },
        }

    def alarm_event(self, alarm: str, minutes: float, state: str = "ALARM") -> dict[str, Any]:
        stamp = self.at(minutes).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"
        return {
            "version": "0",
            "id": f"alarm-{alarm}-{minutes}",
            "source": "aws.cloudwatch",
            "detail-type": "CloudWatch Alarm State Change",
            "account": DEFAULT_ACCOUNT_ID,
            "time": iso(self.at(minutes)),
            "region": REGION,
            "resources": [f"arn:aws:cloudwatch:{REGION}:{DEFAULT_ACCOUNT_ID}:alarm:{alarm}"],
            "detail": {
                "alarmName": alarm,
                "state": {"value": state, "reason": "Threshold Crossed: 3 datapoints", "timestamp": stamp},
                "previousState": {"value": "OK", "reason": "", "timestamp": stamp},
            },
        }

    @staticmethod
    def schedule_event() -> dict[str, Any]:
        return {"version": "0", "id": "sched", "source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}

    @staticmethod
    def set_alarm(name: str, state: str) -> None:
        aws.session().client("cloudwatch").set_alarm_state(AlarmName=name, StateValue=state, StateReason="test")

    @staticmethod
    def notifications() -> list[dict[str, Any]]:
        topic = sns_backends[DEFAULT_ACCOUNT_ID][REGION].topics[f"arn:aws:sns:{REGION}:{DEFAULT_ACCOUNT_ID}:{TOPIC}"]
        return [json.loads(message) for _, message, *_ in topic.sent_notifications]

    def status(self, config: str) -> Status:
        release = self.repo.get(config)
        assert release is not None
        return release.status
