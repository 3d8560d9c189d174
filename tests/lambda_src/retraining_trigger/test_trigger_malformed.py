"""Issue 14, defect 9: the retraining trigger takes malformed events and a vanished execution as data.

- An execution listed as running but gone when read (PipelineExecutionNotFoundException) is not running: the
  decision goes on instead of aborting.
- `describe()` reads a string `detail`, a null `driftedFeatures` or a string `window` as unknown, never crashes.
- The request token is valid for StartPipelineExecution (CodePipeline API Reference, StartPipelineExecution:
  clientRequestToken, "Length Constraints: Minimum length of 1. Maximum length of 128. Pattern: ^[a-zA-Z0-9-]+$")
  and deterministic: an event without `id` gets a digest of the event, never the reason text (which has spaces).
- An error a retry cannot fix is reported once as "gave up"; any other propagates for Lambda's retry.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from retraining_trigger import handler
from trigger_world import PIPELINE, TOKEN, Execution, FakeCodePipeline

DRIFT = {
    "id": "7bf73129-1428-4cd3-a780-95db273d1602",
    "source": "ml-platform.drift-monitor",
    "detail-type": "Model Drift Detected",
    "detail": {
        "endpointName": "mlapi-prod-endpoint",
        "modelVersion": "1.0.0",
        "window": {"start": "2026-11-25T12:00:00Z", "end": "2026-11-25T13:00:00Z"},
        "driftedFeatures": [{"feature": "feature_3", "psi": 0.83}],
    },
}


def test_an_execution_gone_between_list_and_get_does_not_abort_the_trigger() -> None:
    fake = FakeCodePipeline([Execution("gone"), Execution("retrain", variables={"RETRAINING": "true"})])
    fake.vanishing.add("gone")
    result = handler.trigger(DRIFT, fake.client(), PIPELINE)
    assert result["started"] is False and result["runningExecutionId"] == "retrain"

    fake = FakeCodePipeline([Execution("gone")])
    fake.vanishing.add("gone")
    assert handler.trigger(DRIFT, fake.client(), PIPELINE)["started"] is True  # nothing else running: start


@pytest.mark.parametrize(
    ("detail", "expected"),
    [
        ("a string detail", "drift on ? model ? in [?, ?): no feature named"),
        (
            {**DRIFT["detail"], "driftedFeatures": None},
            "drift on mlapi-prod-endpoint model 1.0.0 in "
            "[2026-11-25T12:00:00Z, 2026-11-25T13:00:00Z): no feature named",
        ),
        (
            {**DRIFT["detail"], "window": "last hour"},
            "drift on mlapi-prod-endpoint model 1.0.0 in [last hour]: feature_3 (psi 0.83)",
        ),
        (
            {"driftedFeatures": "feature_3", "window": None, "endpointName": None},
            "drift on ? model ? in [?, ?): no feature named",
        ),
    ],
)
def test_malformed_drift_details_are_described_not_crashed_on(detail: Any, expected: str) -> None:
    assert handler.describe({**DRIFT, "detail": detail}) == expected


def test_a_model_monitor_event_with_a_string_detail_is_described() -> None:
    assert handler.describe({"source": "aws.sagemaker", "detail": "x"}) == "Model Monitor ?: ?"


FAKE = FakeCodePipeline()
CLIENT = FAKE.client()


def token_of(event: Any) -> str:
    """The request token the trigger starts a run with for `event` (from an empty pipeline)."""
    FAKE.executions.clear()
    FAKE.started.clear()
    result = handler.trigger(event, CLIENT, PIPELINE)  # the fake refuses what CodePipeline refuses
    assert result["started"] is True
    [started] = FAKE.started
    assert started.token is not None
    return started.token


def test_an_event_without_id_gets_a_valid_deterministic_token_not_the_reason() -> None:
    event = {k: v for k, v in DRIFT.items() if k != "id"}
    token = token_of(event)
    assert TOKEN.match(token) and token != handler.describe(event)[:128]
    assert token == token_of(copy.deepcopy(event))  # the same event, the same token: one run


@pytest.mark.parametrize("identifier", ["", "has spaces", "x" * 129, 42, None, "ünïcode"])
def test_an_unusable_event_id_is_replaced_by_a_digest(identifier: Any) -> None:
    token = token_of({**DRIFT, "id": identifier})
    assert TOKEN.match(token) and token.startswith("event-")


def test_a_usable_event_id_is_the_token() -> None:
    assert token_of(DRIFT) == DRIFT["id"]


def test_a_permanent_error_gives_up_explicitly(caplog: pytest.LogCaptureFixture) -> None:
    class NoLock:
        def acquire(self, *, holder: str, subject: str) -> Any:
            from retraining_trigger.decision_lock import Lease

            return Lease(holder, subject, 0)

        def release(self, lease: Any) -> bool:
            return True

    fake = FakeCodePipeline()
    fake.fail("ListPipelineExecutions", "PipelineNotFoundException")
    with caplog.at_level(logging.INFO):
        result = handler.decide(DRIFT, NoLock(), "request-1", fake.client(), PIPELINE)  # type: ignore[arg-type]
    assert result["outcome"] == "gave-up" and result["error"] == "PipelineNotFoundException"
    fake.fail("ListPipelineExecutions", "ThrottlingException")
    with pytest.raises(Exception, match="ThrottlingException"):  # transient: Lambda's retry
        handler.decide(DRIFT, NoLock(), "request-1", fake.client(), PIPELINE)  # type: ignore[arg-type]


# ---- properties ------------------------------------------------------------------------------------
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)
DETAIL_KEYS = st.sampled_from(
    [
        "endpointName",
        "modelVersion",
        "window",
        "driftedFeatures",
        "MonitoringScheduleArn",
        "ExitMessage",
        "ProcessingJobStatus",
    ]
)
EVENTS = st.fixed_dictionaries(
    {},
    optional={
        "id": JSON,
        "source": st.sampled_from(["aws.sagemaker", "ml-platform.drift-monitor"]) | JSON,
        "detail": JSON
        | st.dictionaries(
            DETAIL_KEYS,
            JSON | st.lists(st.dictionaries(st.sampled_from(["feature", "psi"]), JSON), max_size=3),
            max_size=7,
        ),
    },
)


@settings(max_examples=300, deadline=None)
@given(EVENTS | JSON)
def test_any_event_is_described(event: Any) -> None:
    reason = handler.describe(event)
    assert isinstance(reason, str) and 0 < len(reason) <= handler.MAX_REASON


@settings(max_examples=60, deadline=None)
@given(EVENTS)
def test_any_drift_event_starts_a_run_with_a_valid_deterministic_token(event: dict[str, Any]) -> None:
    token = token_of(event)
    assert TOKEN.match(token) and token == token_of(copy.deepcopy(event))
