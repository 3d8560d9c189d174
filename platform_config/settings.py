"""Typed settings of one environment, as read from the `ml-platform` context in cdk.json."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from platform_config.loader import ConfigError, check

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class NetworkSettings:
    """VPC layout: CIDR, explicit AZs (no lookups at synth), optional NAT, flow log retention."""

    availability_zones: tuple[str, ...]
    cidr: str = "10.40.0.0/16"
    nat_gateways: int = 0
    flow_log_retention_days: int = 365

    def __post_init__(self) -> None:
        try:
            network = ipaddress.ip_network(self.cidr)
        except ValueError as error:
            raise ConfigError("cidr", str(error)) from error
        check(16 <= network.prefixlen <= 24, "cidr", "prefix must be between /16 and /24")
        check(len(self.availability_zones) >= 2, "availability_zones", "needs at least two AZs")
        check(
            len(set(self.availability_zones)) == len(self.availability_zones),
            "availability_zones",
            "contains duplicates",
        )
        check(
            0 <= self.nat_gateways <= len(self.availability_zones),
            "nat_gateways",
            "must be between 0 and the number of AZs",
        )
        check(self.flow_log_retention_days in LOG_RETENTION_DAYS, "flow_log_retention_days",
              f"must be one of CloudWatch's retention periods {LOG_RETENTION_DAYS}")


@dataclass(frozen=True)
class DataSettings:
    """Stateful stores: lifecycle of artifacts and capture data, removal, audit trail."""

    removal_policy: Literal["retain", "destroy"] = "retain"
    noncurrent_artifacts_to_glacier_days: int = 30
    noncurrent_artifacts_expire_days: int = 365
    capture_expire_days: int = 90
    access_logs_expire_days: int = 365
    log_retention_days: int = 365
    organization_trail_exists: bool = False

    def __post_init__(self) -> None:
        check(self.noncurrent_artifacts_to_glacier_days >= 1, "noncurrent_artifacts_to_glacier_days",
              "must be at least 1")
        check(
            self.noncurrent_artifacts_expire_days > self.noncurrent_artifacts_to_glacier_days + 90,
            "noncurrent_artifacts_expire_days",
            "must exceed noncurrent_artifacts_to_glacier_days by more than 90 (Glacier's minimum storage)",
        )
        check(self.capture_expire_days >= 1, "capture_expire_days", "must be at least 1")
        check(self.access_logs_expire_days >= 1, "access_logs_expire_days", "must be at least 1")
        check(self.log_retention_days in LOG_RETENTION_DAYS, "log_retention_days",
              f"must be one of CloudWatch's retention periods {LOG_RETENTION_DAYS}")


@dataclass(frozen=True)
class EnvironmentSettings:
    """Everything one deployment environment (dev, staging, prod) is built from."""

    name: str
    project: str
    region: str
    network: NetworkSettings
    account: str | None = None
    data: DataSettings = field(default_factory=DataSettings)
    alarm_emails: tuple[str, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check(bool(re.fullmatch(r"[a-z][a-z0-9-]{1,20}", self.project)), "project",
              "must be 2-21 lowercase letters, digits or dashes, starting with a letter")
        check(bool(re.fullmatch(r"[a-z]{2}(-gov)?-[a-z]+-\d", self.region)), "region",
              f"{self.region!r} is not an AWS region name")
        if self.account is not None:
            check(bool(re.fullmatch(r"\d{12}", self.account)), "account", "must be 12 digits")
        for index, zone in enumerate(self.network.availability_zones):
            check(bool(re.fullmatch(re.escape(self.region) + r"[a-z]", zone)),
                  f"network.availability_zones[{index}]", f"{zone!r} is not an AZ of {self.region}")
        for index, email in enumerate(self.alarm_emails):
            check(bool(_EMAIL.match(email)), f"alarm_emails[{index}]", f"{email!r} is not an email address")

    def resource_prefix(self) -> str:
        return f"{self.project}-{self.name}"


LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192,
                      2557, 2922, 3288, 3653)
