"""Constants, event builders and handles on the moto account for the release-history tests."""

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from moto.core import DEFAULT_ACCOUNT_ID
from moto.sagemaker.models import sagemaker_backends
from moto.sns.models import sns_backends
from release_history import aws
from release_history.repository import Release, ReleaseRepository, Status
from release_history.timeutil import iso, utcnow

REGION = "eu-west-1"
ENDPOINT = "ml-api"
TABLE = "ml-api-releases"
TOPIC = "ml-api-releases"
ALARMS = ("ml-api-5xx", "ml-api-latency-p99", "ml-api-container-errors")
CONFIGS = ("ml-api-v1", "ml-api-v2", "ml-api-v3")


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

    def set_endpoint(self, config: str | None = None, status: str = "InService",
                     failure_reason: str | None = None) -> None:
        if config:
            self.endpoint.endpoint_config_name = config
        self.endpoint.endpoint_status = status
        self.endpoint.failure_reason = failure_reason

    def register(self, config: str, minutes: float) -> None:
        version = config.rsplit("-", 1)[-1]
        assert self.repo.register(Release(
            release_id=config, endpoint_name=ENDPOINT, status=Status.DEPLOYING,
            registered_at=iso(self.at(minutes)), model_version=version, model_hash=f"sha256:{version}",
            image=f"123.dkr.ecr/{ENDPOINT}@sha256:{version}", commit=f"commit-{version}",
            approved_by=["alice"]))

    def state_event(self, status: str, config: str, minutes: float) -> dict[str, Any]:
        millis = int(self.at(minutes).timestamp() * 1000)
        return {"version": "0", "id": f"evt-{status}-{config}-{minutes}", "source": "aws.sagemaker",
                "detail-type": "SageMaker Endpoint State Change", "account": DEFAULT_ACCOUNT_ID,
                "time": iso(self.at(minutes)), "region": REGION, "resources": [self.endpoint.arn],
                "detail": {"EndpointName": ENDPOINT, "EndpointArn": self.endpoint.arn,
                           "EndpointConfigName": config, "EndpointStatus": status,
                           "CreationTime": millis, "LastModifiedTime": millis, "Tags": {}}}

    def alarm_event(self, alarm: str, minutes: float, state: str = "ALARM") -> dict[str, Any]:
        stamp = self.at(minutes).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"
        return {"version": "0", "id": f"alarm-{alarm}-{minutes}", "source": "aws.cloudwatch",
                "detail-type": "CloudWatch Alarm State Change", "account": DEFAULT_ACCOUNT_ID,
                "time": iso(self.at(minutes)), "region": REGION,
                "resources": [f"arn:aws:cloudwatch:{REGION}:{DEFAULT_ACCOUNT_ID}:alarm:{alarm}"],
                "detail": {"alarmName": alarm,
                           "state": {"value": state, "reason": "Threshold Crossed: 3 datapoints",
                                     "timestamp": stamp},
                           "previousState": {"value": "OK", "reason": "", "timestamp": stamp}}}

    @staticmethod
    def schedule_event() -> dict[str, Any]:
        return {"version": "0", "id": "sched", "source": "aws.events", "detail-type": "Scheduled Event",
                "detail": {}}

    @staticmethod
    def set_alarm(name: str, state: str) -> None:
        aws.session().client("cloudwatch").set_alarm_state(AlarmName=name, StateValue=state, StateReason="test")

    @staticmethod
    def notifications() -> list[dict[str, Any]]:
        topic = sns_backends[DEFAULT_ACCOUNT_ID][REGION].topics[
            f"arn:aws:sns:{REGION}:{DEFAULT_ACCOUNT_ID}:{TOPIC}"]
        return [json.loads(message) for _, message, *_ in topic.sent_notifications]

    def status(self, config: str) -> Status:
        release = self.repo.get(config)
        assert release is not None
        return release.status


