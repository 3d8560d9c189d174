"""Settings read from environment variables (Lambdas) or CLI flags."""

import os
from dataclasses import dataclass

from .errors import ConfigError


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    try:
        return int(raw) if raw else default
    except ValueError as error:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from error


def _non_negative(name: str, default: int) -> int:
    value = _int(name, default)
    if value < 0:
        raise ConfigError(f"{name} must be 0 or more, got {value}")
    return value


def _flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    return raw not in {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Settings:
    """Names and knobs shared by both Lambdas; see README of the package for each variable."""

    table_name: str
    endpoint_name: str
    topic_arn: str = ""
    alarm_names: tuple[str, ...] = ()
    bake_minutes: int = 30
    auto_rollback: bool = True
    max_rollback_attempts: int = 3
    lock_seconds: int = 900
    # Flap guard: after an automatic rollback, no further automatic rollback for this long unless an
    # operator acts (a CLI rollback, freeze or unfreeze); deployment.rollback_cooldown_minutes.
    cooldown_minutes: int = 60

    @classmethod
    def from_env(cls) -> "Settings":
        table, endpoint = os.environ.get("TABLE_NAME", ""), os.environ.get("ENDPOINT_NAME", "")
        if not table or not endpoint:
            raise ConfigError("TABLE_NAME and ENDPOINT_NAME must be set")
        alarms = tuple(a.strip() for a in os.environ.get("ALARM_NAMES", "").split(",") if a.strip())
        return cls(
            table_name=table,
            endpoint_name=endpoint,
            topic_arn=os.environ.get("TOPIC_ARN", ""),
            alarm_names=alarms,
            bake_minutes=_int("BAKE_MINUTES", 30),
            auto_rollback=_flag("AUTO_ROLLBACK", True),
            max_rollback_attempts=_int("MAX_ROLLBACK_ATTEMPTS", 3),
            lock_seconds=_int("ROLLBACK_LOCK_SECONDS", 900),
            cooldown_minutes=_non_negative("ROLLBACK_COOLDOWN_MINUTES", 60),
        )
