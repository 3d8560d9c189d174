"""One test per defect of issue 14 (release part: 1-6, 10-13), through the handlers and the CLI only, so that
each also runs against the code before the fix (where it failed; RELEASES.md lists the failures)."""

from datetime import timedelta
from typing import Any

import pytest
from release_history import controller, recorder
from release_history.cli import main as cli
from release_history.repository import Status
from release_history.runtime import get_runtime
from release_history.timeutil import iso, utcnow
from release_world import ALARMS, LambdaContext, World

from tests.fault_injection import CONDITIONAL, INTERNAL, THROTTLE, UNAVAILABLE, Call, failing

CTX = LambdaContext()
V1, V2, V3, V4 = "ml-api-v1", "ml-api-v2", "ml-api-v3", "ml-api-v4"
WRITES = {"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems"}


go_live = World.go_live


@pytest.fixture
def three_live(world: World) -> World:
    for minutes, config in ((0, V1), (10, V2), (20, V3)):
        go_live(world, config, minutes)
    return world


def nth_write_after_update(n: int):  # type: ignore[no-untyped-def]
    """The n-th DynamoDB write after UpdateEndpoint succeeded (1-based)."""

    def match(call: Call, before: list[Call]) -> bool:
        ops = [str(c) for c in before]
        if "sagemaker.UpdateEndpoint" not in ops or call.service != "dynamodb" or call.operation not in WRITES:
            return False
        after = ops[ops.index("sagemaker.UpdateEndpoint") + 1 :]
        return sum(1 for o in after if o.split(".")[1] in WRITES) == n - 1

    return match


def deliver(handler: Any, event: dict[str, Any]) -> Any:
    """One delivery plus Lambda's retry when it raised."""
    try:
        return handler(event, CTX)
    except Exception:
        return handler(event, CTX)


def statuses(world: World) -> dict[str, Status]:
    return {r.release_id: r.status for r in world.repo.list_releases()}


def live(world: World) -> list[str]:
    return [r for r, s in statuses(world).items() if s == Status.LIVE]


# ---- 1: a retried rollback goes to the wrong release --------------------------------------------------
@pytest.mark.parametrize("write", [1, 2])
def test_defect_1_retried_rollback_updates_the_endpoint_once_to_the_right_release(
    three_live: World, write: int
) -> None:
    alarm = three_live.alarm_event(ALARMS[0], 60)
    with failing(nth_write_after_update(write)):
        deliver(controller.handler, alarm)
    assert [c["EndpointConfigName"] for c in three_live.update_calls] == [V2]
    assert three_live.endpoint.endpoint_config_name == V2
    assert statuses(three_live) == {V1: Status.SUPERSEDED, V2: Status.LIVE, V3: Status.ROLLED_BACK}


# ---- 2: the recorder loses transitions when retried ---------------------------------------------------
def test_defect_2_recorder_retry_after_a_failed_transition_still_bakes_and_promotes(world: World) -> None:
    go_live(world, V1, 0)
    world.register(V2, 10)
    world.set_endpoint(V2)

    def baking_write(call: Call, _: list[Call]) -> bool:
        return call.operation == "UpdateItem" and "baking" in str(call.params.get("ExpressionAttributeValues"))

    with failing(baking_write):
        deliver(recorder.handler, world.state_event("IN_SERVICE", V2, 15))
    assert world.status(V2) == Status.BAKING
    assert recorder.handler(world.schedule_event(), CTX)["outcome"] == "promoted"
    # A later alarm goes back exactly one release, not two.
    controller.handler(world.alarm_event(ALARMS[0], 30), CTX)
    assert [c["EndpointConfigName"] for c in world.update_calls] == [V1]


def test_defect_2_sagemaker_rollback_with_one_sns_failure_is_recorded_in_full(world: World) -> None:
    go_live(world, V1, 0)
    world.register(V2, 10)
    recorder.handler(world.state_event("UPDATING", V2, 11), CTX)
    world.set_endpoint(V1, failure_reason=f"Rolled back: alarm {ALARMS[0]} in ALARM")
    with failing(lambda call, _: str(call) == "sns.Publish"):
        result = recorder.handler(world.state_event("IN_SERVICE", V1, 20), CTX)  # must not raise
    assert result["outcome"] == "kept" and result["rolled_back"] == [V2]
    assert world.status(V2) == Status.ROLLED_BACK
    # v1's deployed_at moved to the event (milliseconds): alarms raised while v2 was tried are stale.
    assert world.repo.get(V1).deployed_at[:23] == iso(world.at(20))[:23]  # type: ignore[union-attr,index]


# ---- 3: a registered, not yet deployed release is rolled back by an unrelated rollback ------------------
def test_defect_3_a_registered_release_is_not_rolled_back_by_someone_elses_rollback(world: World) -> None:
    go_live(world, V1, 0)
    world.register(V2, 10)
    recorder.handler(world.state_event("UPDATING", V2, 11), CTX)
    world.register(V3, 12)  # registered by the next pipeline run; UpdateEndpoint not called yet
    world.set_endpoint(V1, failure_reason=f"Rolled back: alarm {ALARMS[0]} in ALARM")
    recorder.handler(world.state_event("IN_SERVICE", V1, 20), CTX)
    assert (world.status(V2), world.status(V3)) == (Status.ROLLED_BACK, Status.DEPLOYING)
    assert not any(V3 in n["subject"] for n in world.notifications())
    # Once deployed, v3 bakes and goes live like any release.
    world.set_endpoint(V3, failure_reason=None)
    recorder.handler(world.state_event("IN_SERVICE", V3, 30), CTX)
    assert recorder.handler(world.schedule_event(), CTX)["outcome"] == "promoted"
    assert live(world) == [V3]


# ---- 4: a conditional failure on the bad release's write is reported as a clean rollback -----------------
def test_defect_4_conditional_failure_after_update_never_leaves_two_live_releases(three_live: World) -> None:
    with failing(nth_write_after_update(1), kind=CONDITIONAL):
        deliver(controller.handler, three_live.alarm_event(ALARMS[0], 60))
    assert len(live(three_live)) <= 1
    assert three_live.status(V3) == Status.ROLLED_BACK and live(three_live) == [V2]


# ---- 5: AWS errors without a count or a "gave up" notice ------------------------------------------------
def _describe(call: Call, _: list[Call]) -> bool:
    return str(call) == "sagemaker.DescribeEndpoint"


def _freeze_read(call: Call, _: list[Call]) -> bool:
    return call.operation == "GetItem" and "CONTROL#freeze" in str(call.params.get("Key"))


def _lkg_query(call: Call, _: list[Call]) -> bool:
    return call.operation == "Query" and call.params.get("IndexName") == "status-index"


@pytest.mark.parametrize(
    ("match", "kind"),
    [(_describe, THROTTLE), (_freeze_read, UNAVAILABLE), (_lkg_query, THROTTLE), (_lkg_query, INTERNAL)],
    ids=["describe", "freeze", "lkg", "lkg-500"],
)
def test_defect_5_persistent_aws_errors_end_in_a_counted_gave_up_notice(
    three_live: World, match: Any, kind: Any
) -> None:
    alarm = three_live.alarm_event(ALARMS[0], 60)
    outcomes = []
    with failing(match, kind=kind, times=100):
        for _ in range(3):  # the first delivery and Lambda's two retries (MAX_ROLLBACK_ATTEMPTS = 3)
            try:
                outcomes.append(controller.handler(alarm, CTX)["outcome"])
            except Exception as error:
                outcomes.append(type(error).__name__)
    assert outcomes[-1] == "gave_up", outcomes
    assert "gave up" in three_live.notifications()[-1]["subject"]
    assert three_live.update_calls == []


def test_defect_5_a_deleted_last_known_good_config_gives_up_at_once_with_a_notice(three_live: World) -> None:
    three_live.endpoint  # noqa: B018 - the backend exists
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.sagemaker.models import sagemaker_backends

    del sagemaker_backends[DEFAULT_ACCOUNT_ID]["eu-west-1"].endpoint_configs[V2]
    result = controller.handler(three_live.alarm_event(ALARMS[0], 60), CTX)
    assert result["outcome"] == "gave_up"
    assert "gave up" in three_live.notifications()[-1]["subject"]
    assert three_live.endpoint.endpoint_config_name == V3 and live(three_live) == [V3]


# ---- 6: an SNS failure after a successful rollback fails the invocation ---------------------------------
def test_defect_6_sns_failure_after_rollback_does_not_fail_the_invocation(three_live: World) -> None:
    alarm = three_live.alarm_event(ALARMS[0], 60)
    with failing(lambda call, _: str(call) == "sns.Publish"):
        assert controller.handler(alarm, CTX)["outcome"] == "rolled_back"  # must not raise
    assert controller.handler(alarm, CTX)["outcome"] == "duplicate"  # EventBridge's redelivery
    assert [c["EndpointConfigName"] for c in three_live.update_calls] == [V2]


# ---- 10: controller edges --------------------------------------------------------------------------------
def test_defect_10_without_alarm_names_no_alarm_rolls_back(three_live: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ALARM_NAMES")
    get_runtime.cache_clear()
    assert controller.handler(three_live.alarm_event("billing-estimated-charges", 60), CTX)["outcome"] == "ignored"
    assert three_live.update_calls == []


@pytest.mark.parametrize("mangle", ["string_state", "bad_timestamp", "list_detail"])
def test_defect_10_malformed_alarm_events_are_counted_not_crashes(three_live: World, mangle: str) -> None:
    event = three_live.alarm_event(ALARMS[0], 60)
    if mangle == "string_state":
        event["detail"]["state"] = "ALARM"
    elif mangle == "bad_timestamp":
        event["detail"]["state"]["timestamp"] = "not a time"
        event["time"] = "yesterday"
    else:
        event["detail"] = ["ALARM"]
    result = controller.handler(event, CTX)  # must not raise
    assert result["outcome"] in {"malformed", "undated"}
    assert three_live.update_calls == []


def test_defect_10_a_redelivered_alarm_without_timestamps_is_a_duplicate(three_live: World) -> None:
    event = three_live.alarm_event(ALARMS[0], 60)
    del event["detail"]["state"]["timestamp"], event["time"]
    event["detail"]["state"]["timestamp"] = None
    first = controller.handler(event, CTX)["outcome"]
    assert controller.handler(event, CTX)["outcome"] == "duplicate", first
    assert len(three_live.update_calls) <= 1


def test_defect_10_a_serving_config_unknown_to_the_history_is_rolled_back(three_live: World) -> None:
    three_live.set_endpoint(V4)  # put on the endpoint by hand, never registered
    three_live.endpoint.last_modified_time = three_live.at(50)
    assert controller.handler(three_live.alarm_event(ALARMS[0], 60), CTX)["outcome"] == "rolled_back"
    assert [c["EndpointConfigName"] for c in three_live.update_calls] == [V3]


# ---- 11: operator CLI ------------------------------------------------------------------------------------
def test_defect_11_rollback_to_a_rolled_back_release_needs_force(
    three_live: World, capsys: pytest.CaptureFixture[str]
) -> None:
    controller.handler(three_live.alarm_event(ALARMS[0], 60), CTX)  # v3 rolled back, v2 live
    assert cli(["rollback", "--to", V3, "--yes", "--by", "carol"]) == 4
    assert "rolled back" in capsys.readouterr().err and len(three_live.update_calls) == 1


def test_defect_11_history_failure_after_update_is_completed_not_reported_as_failed(
    three_live: World, capsys: pytest.CaptureFixture[str]
) -> None:
    with failing(nth_write_after_update(1)):
        code = cli(["rollback", "--to", V2, "--yes", "--by", "carol"])
    _, err = capsys.readouterr()
    assert code == 0, err
    assert three_live.endpoint.endpoint_config_name == V2
    assert statuses(three_live) == {V1: Status.SUPERSEDED, V2: Status.LIVE, V3: Status.ROLLED_BACK}


# ---- 12: recorder edges ----------------------------------------------------------------------------------
def test_defect_12_unparseable_last_modified_time_uses_the_event_time(world: World) -> None:
    world.register(V1, 0)
    event = world.state_event("IN_SERVICE", V1, 5)
    event["detail"]["LastModifiedTime"] = "yesterday"
    assert recorder.handler(event, CTX)["outcome"] == "baking"  # must not raise
    assert world.repo.get(V1).deployed_at == iso(world.at(5))  # type: ignore[union-attr]


def test_defect_12_an_event_without_status_creates_no_release(world: World) -> None:
    event = world.state_event("IN_SERVICE", V2, 5)
    del event["detail"]["EndpointStatus"]
    assert recorder.handler(event, CTX)["outcome"] in {"malformed", "ignored"}
    assert world.repo.list_releases() == []


def test_defect_12_registration_after_an_early_in_service_keeps_the_approvers(world: World) -> None:
    world.set_endpoint(V1)
    recorder.handler(world.state_event("IN_SERVICE", V1, 5), CTX)  # before the pipeline registered v1
    world.register(V1, 0)  # asserts that the registration was taken
    v1 = world.repo.get(V1)
    assert v1 is not None and v1.approved_by == ["alice"] and v1.status == Status.BAKING


# ---- 13: flap guard and --force ----------------------------------------------------------------------------
def test_defect_13_a_flapping_alarm_rolls_back_one_release_only(three_live: World) -> None:
    assert controller.handler(three_live.alarm_event(ALARMS[0], 60), CTX)["outcome"] == "rolled_back"
    recorder.handler(three_live.state_event("IN_SERVICE", V2, 240), CTX)  # SageMaker: done (after the restore)
    second = controller.handler(three_live.alarm_event(ALARMS[0], 250), CTX)  # OK -> ALARM again
    assert second["outcome"] != "rolled_back"
    assert [c["EndpointConfigName"] for c in three_live.update_calls] == [V2]
    assert three_live.endpoint.endpoint_config_name == V2


def test_defect_13_no_second_automatic_rollback_within_the_cooldown(world: World) -> None:
    go_live(world, V1, 0)
    go_live(world, V2, 10)
    assert controller.handler(world.alarm_event(ALARMS[0], 30), CTX)["outcome"] == "rolled_back"  # v2 -> v1
    now = utcnow()
    world.base = now - timedelta(minutes=60)  # the next release deploys and bakes right now
    world.register(V3, 59)
    world.set_endpoint(V3)
    recorder.handler(world.state_event("IN_SERVICE", V3, 60), CTX)
    assert recorder.handler(world.schedule_event(), CTX)["outcome"] == "promoted"
    result = controller.handler(world.alarm_event(ALARMS[0], 61), CTX)
    assert result["outcome"] != "rolled_back"
    assert [c["EndpointConfigName"] for c in world.update_calls] == [V1]


def test_defect_13_force_never_makes_an_unbaked_release_live(
    three_live: World, capsys: pytest.CaptureFixture[str]
) -> None:
    three_live.register(V4, 30)  # never deployed, never baked
    assert cli(["rollback", "--to", V4, "--yes", "--force", "--by", "carol"]) == 0
    assert three_live.endpoint.endpoint_config_name == V4
    assert three_live.status(V4) != Status.LIVE
    lkg = three_live.repo.last_known_good(exclude=V4)
    assert lkg is not None and lkg.release_id != V4
