"""Rollback controller decisions, including the faults moto cannot produce on its own."""

from dataclasses import replace

import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from release_history import controller, recorder
from release_history.aws import retry_config
from release_history.errors import EndpointBusyError, TransientAwsError
from release_history.repository import Intent, IntentState, Status
from release_history.runtime import get_runtime
from release_history.timeutil import iso
from release_world import ALARMS, ENDPOINT, LambdaContext, World

CTX = LambdaContext()


go_live = World.go_live


@pytest.fixture
def two_live(world: World) -> World:
    """v1 superseded by v2, which is live and serving."""
    go_live(world, "ml-api-v1", 0)
    go_live(world, "ml-api-v2", 10)
    return world


def test_rolls_back_live_release_to_previous(two_live: World) -> None:
    result = controller.handler(two_live.alarm_event(ALARMS[0], 30), CTX)
    assert result["outcome"] == "rolled_back"
    assert two_live.endpoint.endpoint_config_name == "ml-api-v1"
    assert (two_live.status("ml-api-v2"), two_live.status("ml-api-v1")) == (Status.ROLLED_BACK, Status.LIVE)


def test_no_last_known_good_notifies_only(world: World) -> None:
    go_live(world, "ml-api-v1", 0)
    result = controller.handler(world.alarm_event(ALARMS[0], 30), CTX)
    assert result["outcome"] == "no_last_known_good"
    assert world.update_calls == [] and world.status("ml-api-v1") == Status.LIVE
    assert "no last known good" in world.notifications()[-1]["subject"]


def test_auto_rollback_disabled_notifies_only(two_live: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTO_ROLLBACK", "false")
    get_runtime.cache_clear()
    assert controller.handler(two_live.alarm_event(ALARMS[0], 30), CTX)["outcome"] == "notify_only"
    assert two_live.update_calls == [] and two_live.status("ml-api-v2") == Status.LIVE
    assert two_live.notifications()[-1]["target"] == "ml-api-v1"
    # The same occurrence delivered again does not notify twice.
    count = len(two_live.notifications())
    assert controller.handler(two_live.alarm_event(ALARMS[0], 30), CTX)["outcome"] == "duplicate"
    assert len(two_live.notifications()) == count


def test_frozen_notifies_only(two_live: World) -> None:
    two_live.repo.set_freeze(True, reason="investigating", by="bob", at=iso(two_live.at(20)))
    assert controller.handler(two_live.alarm_event(ALARMS[0], 30), CTX)["outcome"] == "frozen"
    assert two_live.update_calls == []
    assert two_live.notifications()[-1]["frozen_by"] == "bob"


def test_alarm_older_than_current_deployment_is_ignored(two_live: World) -> None:
    # v2 went InService at minute 15: an alarm from minute 12 was about v1, already replaced.
    assert controller.handler(two_live.alarm_event(ALARMS[0], 12), CTX)["outcome"] == "stale"
    assert two_live.update_calls == []


def test_already_on_last_known_good_is_noop(two_live: World) -> None:
    # v3 was rolled back by SageMaker itself; the endpoint is on v2 (the good one) again.
    two_live.register("ml-api-v3", 20)
    recorder.handler(two_live.state_event("UPDATING", "ml-api-v3", 21), CTX)
    two_live.set_endpoint("ml-api-v2", failure_reason=f"Alarm {ALARMS[1]} in ALARM state")
    recorder.handler(two_live.state_event("IN_SERVICE", "ml-api-v2", 30), CTX)
    assert two_live.status("ml-api-v3") == Status.ROLLED_BACK
    assert controller.handler(two_live.alarm_event(ALARMS[1], 25), CTX)["outcome"] == "stale"
    assert two_live.update_calls == []


def test_non_alarm_states_and_foreign_alarms_are_ignored(two_live: World) -> None:
    assert controller.handler(two_live.alarm_event(ALARMS[0], 30, state="OK"), CTX)["outcome"] == "ignored"
    assert controller.handler(two_live.alarm_event("billing", 30), CTX)["outcome"] == "ignored"
    assert two_live.update_calls == []


def test_updating_endpoint_is_retried_then_given_up(two_live: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_ROLLBACK_ATTEMPTS", "3")
    get_runtime.cache_clear()
    two_live.set_endpoint(status="Updating")
    event = two_live.alarm_event(ALARMS[0], 30)
    for _ in range(2):
        with pytest.raises(EndpointBusyError):
            controller.handler(event, CTX)
    assert controller.handler(event, CTX)["outcome"] == "gave_up"
    assert "gave up" in two_live.notifications()[-1]["subject"]
    assert controller.handler(event, CTX)["outcome"] == "duplicate"
    assert two_live.update_calls == []


def test_an_open_intent_of_another_episode_is_completed_not_decided_again(two_live: World) -> None:
    # An operator's rollback v2 -> v1 was decided (intent written) but never carried out.
    assert two_live.repo.open_intent(
        Intent(
            episode="operator:x",
            from_release="ml-api-v2",
            to_release="ml-api-v1",
            by="carol",
            reason="test",
            opened_at=iso(two_live.at(29)),
            automatic=False,
        )
    )
    result = controller.handler(two_live.alarm_event(ALARMS[0], 30), CTX)
    assert [c["EndpointConfigName"] for c in two_live.update_calls] == ["ml-api-v1"]
    assert (two_live.status("ml-api-v2"), two_live.status("ml-api-v1")) == (Status.ROLLED_BACK, Status.LIVE)
    assert result["outcome"] == "stale"  # raised before the restore was recorded: about v2


def test_throttled_update_raises_clearly_and_keeps_the_intent_open(two_live: World) -> None:
    client = get_runtime().endpoint._client
    described = {
        "EndpointName": ENDPOINT,
        "EndpointArn": two_live.endpoint.arn,
        "EndpointConfigName": "ml-api-v2",
        "EndpointStatus": "InService",
        "CreationTime": two_live.at(0),
        "LastModifiedTime": two_live.at(15),
    }
    with Stubber(client) as stub:
        stub.add_response("describe_endpoint", described, {"EndpointName": ENDPOINT})
        stub.add_response("describe_endpoint", described, {"EndpointName": ENDPOINT})
        stub.add_client_error(
            "update_endpoint",
            service_error_code="ThrottlingException",
            service_message="Rate exceeded",
            http_status_code=400,
        )
        with pytest.raises(TransientAwsError, match="UpdateEndpoint still failing"):
            controller.handler(two_live.alarm_event(ALARMS[0], 30), CTX)
    assert two_live.status("ml-api-v2") == Status.LIVE
    intent = two_live.repo.intent()
    assert intent is not None and intent.state == IntentState.OPEN and intent.to_release == "ml-api-v1"
    # Lambda's retry completes the decision instead of making a new one.
    assert controller.handler(two_live.alarm_event(ALARMS[0], 30), CTX)["outcome"] == "rolled_back"
    assert [c["EndpointConfigName"] for c in two_live.update_calls] == ["ml-api-v1"]


def test_clients_use_adaptive_retries() -> None:
    assert retry_config().retries == {"mode": "adaptive", "max_attempts": 2}
    assert get_runtime().endpoint._client.meta.config.retries["mode"] == "adaptive"


def test_unexpected_client_errors_give_up_with_a_notice(two_live: World, monkeypatch: pytest.MonkeyPatch) -> None:
    def denied(**_: object) -> None:
        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "UpdateEndpoint")

    monkeypatch.setattr(get_runtime().endpoint._client, "update_endpoint", denied)
    result = controller.handler(two_live.alarm_event(ALARMS[0], 30), CTX)
    assert result["outcome"] == "gave_up" and "AccessDenied" in result["detail"]
    assert two_live.status("ml-api-v2") == Status.LIVE
    assert "gave up" in two_live.notifications()[-1]["subject"]
    intent = two_live.repo.intent()
    assert intent is not None and intent.state == IntentState.CLOSED and intent.outcome == "refused"


def test_an_alarm_during_a_blue_green_update_is_left_to_sagemakers_rollback(
    two_live: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SageMaker Developer Guide, "Auto-Rollback Configuration and Monitoring": an alarm in the monitoring period makes
    # SageMaker roll the update back itself; DescribeEndpoint shows Updating with PendingDeploymentSummary (moto
    # has no such field, so the describe is wrapped).
    gateway = get_runtime().endpoint
    describe = gateway.describe
    monkeypatch.setattr(gateway, "describe", lambda: replace(describe(), status="Updating", pending_config="ml-api-v3"))
    result = controller.handler(two_live.alarm_event(ALARMS[0], 30), CTX)
    assert result["outcome"] == "deployment_guardrail"
    assert two_live.update_calls == [] and not any("gave up" in n["subject"] for n in two_live.notifications())
    assert two_live.status("ml-api-v2") == Status.LIVE


def test_a_long_notice_subject_fits_sns(two_live: World) -> None:
    # SNS API Reference, Publish: Subject "must be ... less than 100 characters long".
    from release_history.notifier import _subject

    assert len(_subject("Rolled back " + "x" * 200)) == 99
