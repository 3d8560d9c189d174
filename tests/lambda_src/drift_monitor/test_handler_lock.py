"""The drift Lambda runs one window at a time under its decision lock (moto DynamoDB) instead of reserved
concurrency 1 (issue 13 item 9): a run that meets another holding the lock skips, visibly, and never raises.

Why skip rather than raise: Lambda retries a failed asynchronous invocation only twice, one and two minutes later
(Lambda Developer Guide, "How Lambda handles errors and retries with asynchronous invocation"), while the holder
may run for the function's 15 minutes; a retry keeps the request id (re:Post Knowledge Center,
"lambda-function-duplicate-invocations"), so the holder's own retry takes the lock back.
"""

from __future__ import annotations

from typing import Any

import pytest
from drift_engine import handler as drift_handler
from drift_engine.decision_lock import DecisionLock
from drift_test_data import FEATURES

from tests.lambda_src.drift_monitor.test_handler_integration import (
    HOUR,
    LOCK_NAME,
    LOCKS,
    SCHEDULED,
    FakeContext,
    Platform,
    _traffic,
    load_handler,
    platform,
)

__all__ = ["platform"]  # the imported fixture, requested by name below


def lock_of(platform: Platform) -> DecisionLock:
    return DecisionLock(platform.dynamodb, LOCKS, LOCK_NAME, lease_seconds=930)


def reports(platform: Platform) -> list[str]:
    listed = platform.s3.list_objects_v2(Bucket="monitoring-reports")
    return [o["Key"] for o in listed.get("Contents", [])]


def test_a_run_overlapping_the_previous_one_skips_its_window_and_says_so(platform: Platform) -> None:
    platform.add_baseline("1.0.0", FEATURES)
    platform.add_capture(HOUR, "a", _traffic(platform, 200, "1.0.0", shift={0: 3.0}))
    previous = lock_of(platform).acquire(holder="req-previous", subject="2026-11-25T11:00:00Z/2026-11-25T12:00:00Z")

    result = load_handler()(SCHEDULED, FakeContext(aws_request_id="req-next"))

    assert result["status"] == "skipped" and result["events_sent"] == 0 and result["report_uri"] is None
    assert "req-previous" in result["reason"] and result["window"]["start"] == "2026-11-25T12:00:00Z"
    assert reports(platform) == [] and platform.drift_events() == []  # nothing analysed, nothing announced
    assert platform.metric("RunsSkipped", EndpointName="churn-ep") == [1.0]
    assert lock_of(platform).current() == previous  # the holder's lease is left alone


def test_a_run_holds_the_lock_for_its_window_and_gives_it_back(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    platform.add_baseline("1.0.0", FEATURES)
    platform.add_capture(HOUR, "a", _traffic(platform, 200, "1.0.0"))
    held, run = [], drift_handler.run_drift_job

    def watched(*args: Any) -> Any:
        held.append(lock_of(platform).current())
        return run(*args)

    monkeypatch.setattr(drift_handler, "run_drift_job", watched)
    result = load_handler()(SCHEDULED, FakeContext(aws_request_id="req-1"))

    assert result["status"] == "analysed"
    [lease] = held
    assert (lease.holder, lease.subject) == ("req-1", "2026-11-25T12:00:00Z/2026-11-25T13:00:00Z")
    assert lock_of(platform).current() is None


def test_the_lock_is_released_when_the_run_fails_and_the_retry_runs(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = drift_handler.run_drift_job

    def failing(*args: Any) -> Any:
        raise RuntimeError("S3 unavailable")

    monkeypatch.setattr(drift_handler, "run_drift_job", failing)
    with pytest.raises(RuntimeError, match="S3 unavailable"):  # propagates, for Lambda's retry
        load_handler()(SCHEDULED, FakeContext(aws_request_id="req-1"))
    assert lock_of(platform).current() is None
    monkeypatch.setattr(drift_handler, "run_drift_job", run)
    assert load_handler()(SCHEDULED, FakeContext(aws_request_id="req-1"))["status"] == "no_data"


def test_the_holders_own_retry_takes_its_lock_back(platform: Platform) -> None:
    # The first attempt timed out holding the lock; Lambda's retry keeps the request id.
    lock_of(platform).acquire(holder="req-1", subject="2026-11-25T12:00:00Z/2026-11-25T13:00:00Z")
    assert load_handler()(SCHEDULED, FakeContext(aws_request_id="req-1"))["status"] == "no_data"
    assert lock_of(platform).current() is None
