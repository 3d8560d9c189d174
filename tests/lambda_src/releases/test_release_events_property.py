"""Duplicate, reordered and malformed events (hypothesis): the handlers never crash, and the history keeps the
invariants of RELEASES.md (at most one live release; one UpdateEndpoint per alarm episode)."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws
from moto.sagemaker.responses import SageMakerResponse
from release_history import controller, recorder
from release_history.repository import Status
from release_history.runtime import get_runtime
from release_world import ALARMS, ENDPOINT, LambdaContext, World, fake_update_endpoint, provision

from tests.fault_injection import patched_attr

CTX = LambdaContext()
V1, V2, V3 = "ml-api-v1", "ml-api-v2", "ml-api-v3"
FEW = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# A fresh moto account and history per example costs about a second: fewer examples.
WORLDS = settings(max_examples=5, deadline=None)


@contextmanager
def fresh_world() -> Iterator[World]:
    """A new moto account per example (the pytest `world` fixture lives for the whole test)."""
    with mock_aws():
        world = World(repo=provision())
        with patched_attr(SageMakerResponse, "update_endpoint", fake_update_endpoint(lambda: world.update_calls)):
            get_runtime.cache_clear()
            yield world
            get_runtime.cache_clear()


def go_live(world: World, config: str, minutes: float) -> None:
    world.register(config, minutes)
    world.set_endpoint(config)
    recorder.handler(world.state_event("IN_SERVICE", config, minutes + 5), CTX)
    recorder.handler(world.schedule_event(), CTX)


def live(world: World) -> list[str]:
    return [r.release_id for r in world.repo.list_releases() if r.status == Status.LIVE]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)


def mangled(event: dict[str, Any], data: st.DataObject) -> dict[str, Any]:
    """The event with one field of `detail` (or `detail` itself, or `time`) replaced by arbitrary JSON."""
    detail = dict(event["detail"])
    target = data.draw(st.sampled_from([*detail, "detail", "time", "state.value", "state.timestamp"]))
    value = data.draw(json_values)
    if target == "detail":
        return {**event, "detail": value}
    if target == "time":
        return {**event, "time": value}
    if target.startswith("state.") and isinstance(detail.get("state"), dict):
        detail["state"] = {**detail["state"], target.split(".")[1]: value}
    else:
        detail[target] = value
    return {**event, "detail": detail}


@FEW
@given(data=st.data())
def test_malformed_events_are_data_not_crashes(world: World, data: st.DataObject) -> None:
    if not world.repo.list_releases():  # the fixture's world lives across examples
        go_live(world, V1, 0)
    alarm = mangled(world.alarm_event(ALARMS[0], 60), data)
    state = mangled(world.state_event("IN_SERVICE", V2, 61), data)
    for handler, event in ((controller.handler, alarm), (recorder.handler, state)):
        result = handler(event, CTX)  # never raises
        assert isinstance(result, dict) and result["outcome"]
    assert len(live(world)) <= 1
    assert world.update_calls == []  # v1 is the only release: nothing to roll back to


@WORLDS
@given(order=st.permutations([0, 1, 2, 3, 4]), repeats=st.lists(st.integers(0, 4), max_size=3))
def test_reordered_and_duplicated_endpoint_events_settle_the_same(order: list[int], repeats: list[int]) -> None:
    with fresh_world() as world:
        go_live(world, V1, 0)
        world.register(V2, 10)
        world.set_endpoint(V2)
        events = [
            world.state_event("CREATING", V2, 10.5),
            world.state_event("UPDATING", V2, 11),
            world.state_event("IN_SERVICE", V2, 15),
            world.state_event("IN_SERVICE", V2, 15),
            world.schedule_event(),
        ]
        for index in [*order, *repeats]:
            recorder.handler(events[index], CTX)
            assert len(live(world)) <= 1
        recorder.handler(world.schedule_event(), CTX)  # the next 5-minute sweep
        assert live(world) == [V2] and world.status(V1) == Status.SUPERSEDED
        assert [h["to"] for h in world.repo.get(V2).history if "to" in h] == [  # type: ignore[union-attr]
            "deploying",
            "baking",
            "live",
        ]


@WORLDS
@given(order=st.permutations(["a", "a", "b", "c"]))
def test_duplicated_and_reordered_alarms_roll_back_once(order: list[str]) -> None:
    with fresh_world() as world:
        for minutes, config in ((0, V1), (10, V2), (20, V3)):
            go_live(world, config, minutes)
        alarms = {
            "a": world.alarm_event(ALARMS[0], 60),
            "b": world.alarm_event(ALARMS[1], 61),
            "c": world.alarm_event(ALARMS[2], 62),
        }
        for key in order:
            controller.handler(alarms[key], CTX)
            assert len(live(world)) <= 1
        assert [c["EndpointConfigName"] for c in world.update_calls] == [V2]
        assert world.endpoint.endpoint_config_name == V2 and world.status(V3) == Status.ROLLED_BACK
        assert any(f"Rolled back {ENDPOINT}" in n["subject"] for n in world.notifications())
