"""boto3 session and client construction with adaptive retries."""

import os
from functools import cache
from typing import Any

import boto3
import botocore.loaders
import botocore.session
from botocore.config import Config


def retry_config() -> Config:
    # Adaptive mode backs off and rate-limits client-side on throttling; whatever still fails
    # after AWS_API_MAX_ATTEMPTS is surfaced to the caller as a clear error.
    attempts = int(os.environ.get("AWS_API_MAX_ATTEMPTS", "8"))
    return Config(
        retries={"mode": "adaptive", "max_attempts": attempts},
        connect_timeout=5,
        read_timeout=30,
    )


@cache
def _loader() -> botocore.loaders.Loader:
    # Parsed service models are shared between sessions (the SageMaker one is megabytes of JSON).
    return botocore.loaders.create_loader()


def session(region: str | None = None, profile: str | None = None) -> boto3.Session:
    core = botocore.session.Session()
    core.register_component("data_loader", _loader())
    return boto3.Session(botocore_session=core, region_name=region, profile_name=profile)


def client(aws_session: boto3.Session, service: str) -> Any:
    return aws_session.client(service, config=retry_config())  # type: ignore[call-overload]
