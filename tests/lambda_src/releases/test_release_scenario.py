"""The whole story: v1 live, v2 promoted, v3 alarms after its bake and is rolled back to v2."""

from release_history import controller, recorder
from release_history.repository import Status
from release_world import ALARMS, LambdaContext, World

CTX = LambdaContext()


def deploy(world: World, config: str, minutes: float) -> None:
    """What the pipeline plus SageMaker do: register, update, Updating then InService events."""
    world.register(config, minutes)
    recorder.handler(world.state_event("UPDATING", config, minutes + 1), CTX)
    world.set_endpoint(config)
    recorder.handler(world.state_event("IN_SERVICE", config, minutes + 5), CTX)


def test_release_story(world: World) -> None:
    deploy(world, "ml-api-v1", 0)
    assert recorder.handler(world.schedule_event(), CTX)["outcome"] == "promoted"

    deploy(world, "ml-api-v2", 10)
    assert world.status("ml-api-v2") == Status.BAKING
    assert recorder.handler(world.schedule_event(), CTX)["outcome"] == "promoted"
    assert (world.status("ml-api-v1"), world.status("ml-api-v2")) == (Status.SUPERSEDED, Status.LIVE)

    deploy(world, "ml-api-v3", 20)
    assert recorder.handler(world.schedule_event(), CTX)["outcome"] == "promoted"
    assert world.repo.last_known_good(exclude="ml-api-v3").release_id == "ml-api-v2"  # type: ignore[union-attr]

    alarm = world.alarm_event(ALARMS[1], 60)
    result = controller.handler(alarm, CTX)

    assert result["outcome"] == "rolled_back"
    assert world.endpoint.endpoint_config_name == "ml-api-v2"
    assert world.update_calls == [
        {
            "EndpointName": "ml-api",
            "EndpointConfigName": "ml-api-v2",
            "RetainAllVariantProperties": True,
            "RetainDeploymentConfig": False,
        }
    ]
    v3 = world.repo.get("ml-api-v3")
    assert v3 is not None and v3.status == Status.ROLLED_BACK
    assert v3.rollback_alarm == ALARMS[1] and ALARMS[1] in (v3.rollback_reason or "")
    assert [h["to"] for h in v3.history if "to" in h] == ["deploying", "baking", "live", "rolled_back"]
    assert world.status("ml-api-v2") == Status.LIVE
    assert world.notifications()[-1]["bad_release"] == "ml-api-v3"

    # EventBridge delivers the same alarm again, and a second alarm from before the rollback arrives.
    assert controller.handler(alarm, CTX)["outcome"] == "duplicate"
    assert controller.handler(world.alarm_event(ALARMS[0], 61), CTX)["outcome"] == "stale"
    # SageMaker reports the endpoint InService on v2; later alarms still predate that deployment.
    recorder_result = recorder.handler(world.state_event("IN_SERVICE", "ml-api-v2", 70), CTX)
    assert recorder_result["outcome"] == "switched"
    assert controller.handler(world.alarm_event(ALARMS[2], 65), CTX)["outcome"] == "stale"
    assert len(world.update_calls) == 1
    assert [r.release_id for r in world.repo.list_releases()] == ["ml-api-v3", "ml-api-v2", "ml-api-v1"]
