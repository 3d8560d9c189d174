"""Recorder: endpoint events -> history, promotion sweep, SageMaker's own rollbacks, idempotency."""

from release_history import recorder
from release_history.repository import Status
from release_world import ALARMS, LambdaContext, World

CTX = LambdaContext()


def test_in_service_starts_bake_and_duplicates_change_nothing(world: World) -> None:
    world.register("ml-api-v1", 0)
    assert recorder.handler(world.state_event("CREATING", "ml-api-v1", 1), CTX)["outcome"] == "noted"
    assert recorder.handler(world.state_event("IN_SERVICE", "ml-api-v1", 5), CTX)["outcome"] == "baking"
    v1 = world.repo.get("ml-api-v1")
    assert v1 is not None and v1.status == Status.BAKING and v1.bake_until == v1.deployed_at
    history = len(v1.history)
    assert recorder.handler(world.state_event("IN_SERVICE", "ml-api-v1", 5), CTX)["outcome"] == "duplicate"
    assert recorder.handler(world.state_event("UPDATING", "ml-api-v1", 2), CTX)["outcome"] == "duplicate"
    assert len(world.repo.get("ml-api-v1").history) == history  # type: ignore[union-attr]


def test_unknown_config_gets_a_minimal_record_from_tags(world: World) -> None:
    recorder.handler(world.state_event("UPDATING", "ml-api-v2", 1), CTX)
    v2 = world.repo.get("ml-api-v2")
    assert v2 is not None and v2.source == "endpoint-config-tags"
    assert (v2.model_version, v2.model_hash, v2.commit) == ("v2", "h-v2", "c-v2")
    assert v2.image == "123.dkr.ecr/ml-api:v2" and v2.status == Status.DEPLOYING


def test_promotion_waits_for_bake_and_for_alarms(world: World, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from release_history.runtime import get_runtime

    monkeypatch.setenv("BAKE_MINUTES", "100000")
    get_runtime.cache_clear()
    world.register("ml-api-v1", 0)
    recorder.handler(world.state_event("IN_SERVICE", "ml-api-v1", 5), CTX)
    assert recorder.handler(world.schedule_event(), CTX)["outcome"] == "baking"

    monkeypatch.setenv("BAKE_MINUTES", "0")
    get_runtime.cache_clear()
    world.register("ml-api-v2", 10)
    world.set_endpoint("ml-api-v2")
    recorder.handler(world.state_event("IN_SERVICE", "ml-api-v2", 15), CTX)
    assert world.status("ml-api-v1") == Status.SUPERSEDED  # replaced while baking: never live
    world.set_alarm(ALARMS[2], "ALARM")
    result = recorder.handler(world.schedule_event(), CTX)
    assert result == {"outcome": "blocked", "release": "ml-api-v2", "alarms": {ALARMS[2]: "ALARM"}}
    world.set_alarm(ALARMS[2], "OK")
    assert recorder.handler(world.schedule_event(), CTX)["outcome"] == "promoted"
    assert recorder.handler(world.schedule_event(), CTX)["outcome"] == "nothing_to_promote"
    assert world.repo.last_known_good().release_id == "ml-api-v2"  # type: ignore[union-attr]


def test_promotion_waits_while_endpoint_updates(world: World) -> None:
    world.set_endpoint(status="Updating")
    assert recorder.handler(world.schedule_event(), CTX)["outcome"] == "waiting"


def test_sagemaker_auto_rollback_marks_attempt_rolled_back(world: World) -> None:
    world.register("ml-api-v1", 0)
    recorder.handler(world.state_event("IN_SERVICE", "ml-api-v1", 5), CTX)
    recorder.handler(world.schedule_event(), CTX)
    world.register("ml-api-v2", 10)
    recorder.handler(world.state_event("UPDATING", "ml-api-v2", 11), CTX)
    world.set_endpoint("ml-api-v1", failure_reason=f"Rolled back: alarm {ALARMS[0]} in ALARM")
    result = recorder.handler(world.state_event("IN_SERVICE", "ml-api-v1", 20), CTX)
    assert result == {"outcome": "kept", "release": "ml-api-v1", "rolled_back": ["ml-api-v2"]}
    v2 = world.repo.get("ml-api-v2")
    assert v2 is not None and v2.status == Status.ROLLED_BACK and v2.rollback_alarm == ALARMS[0]
    assert world.status("ml-api-v1") == Status.LIVE
    assert world.notifications()[-1]["alarms"] == [ALARMS[0]]


def test_other_endpoints_and_event_types_are_ignored(world: World) -> None:
    event = world.state_event("IN_SERVICE", "ml-api-v1", 5)
    event["detail"]["EndpointName"] = "someone-else"
    assert recorder.handler(event, CTX)["outcome"] == "ignored"
    assert recorder.handler({"detail-type": "Something"}, CTX)["outcome"] == "ignored"
    assert world.repo.list_releases() == []


def test_out_of_band_return_to_an_older_release_rolls_back_the_newer_live_one(world: World) -> None:
    for minutes, config in ((0, "ml-api-v1"), (10, "ml-api-v2")):
        world.register(config, minutes)
        world.set_endpoint(config)
        recorder.handler(world.state_event("IN_SERVICE", config, minutes + 5), CTX)
        recorder.handler(world.schedule_event(), CTX)
    world.set_endpoint("ml-api-v1")  # someone ran `aws sagemaker update-endpoint` by hand
    result = recorder.handler(world.state_event("IN_SERVICE", "ml-api-v1", 30), CTX)
    assert result == {"outcome": "restored", "release": "ml-api-v1", "rolled_back": ["ml-api-v2"]}
    assert world.repo.by_status(Status.LIVE)[0].release_id == "ml-api-v1"


def test_failed_update_during_a_bake_keeps_the_previous_live_release(world: World) -> None:
    world.register("ml-api-v1", 0)
    recorder.handler(world.state_event("IN_SERVICE", "ml-api-v1", 5), CTX)
    recorder.handler(world.schedule_event(), CTX)
    world.register("ml-api-v2", 10)
    world.set_endpoint("ml-api-v2")
    recorder.handler(world.state_event("IN_SERVICE", "ml-api-v2", 15), CTX)  # v2 baking, v1 live
    world.register("ml-api-v3", 20)
    recorder.handler(world.state_event("UPDATING", "ml-api-v3", 21), CTX)  # the endpoint tried v3
    result = recorder.handler(world.state_event("IN_SERVICE", "ml-api-v2", 30), CTX)  # v3 failed
    assert result["rolled_back"] == ["ml-api-v3"]
    assert [world.status(c) for c in ("ml-api-v1", "ml-api-v2")] == [Status.LIVE, Status.BAKING]
