"""Wiring for the Lambdas: settings, clients and collaborators, built once per container."""

from dataclasses import dataclass
from functools import cache
from typing import Any

from . import aws
from .endpoint import EndpointGateway
from .notifier import Notifier
from .repository import ReleaseRepository
from .settings import Settings


@dataclass(frozen=True)
class Runtime:
    """Everything a handler needs, created at cold start and reused across invocations."""

    settings: Settings
    repo: ReleaseRepository
    endpoint: EndpointGateway
    notifier: Notifier
    cloudwatch: Any


@cache
def get_runtime() -> Runtime:
    settings = Settings.from_env()
    session = aws.session()
    table = session.resource("dynamodb", config=aws.retry_config()).Table(settings.table_name)
    return Runtime(
        settings=settings,
        repo=ReleaseRepository(table, settings.endpoint_name),
        endpoint=EndpointGateway(aws.client(session, "sagemaker"), settings.endpoint_name),
        notifier=Notifier(aws.client(session, "sns"), settings.topic_arn),
        cloudwatch=aws.client(session, "cloudwatch"),
    )
