"""The release-history stories the fault-injection suite replays (tests/fault_injection.py).

Each scenario's `provision` builds moto's account and the history before the story (once per process,
snapshotted); its steps are what EventBridge, the pipeline and operators deliver; `check` asserts the
invariants of lambda_src/releases/RELEASES.md after every step, and each step's expected statuses once the step
(with Lambda's retry) is done:

  I1  at most one release is `live`;
  I2  the endpoint serves the `live` release, a `deploying`/`baking` one (a deployment not promoted yet), or the
      target of the open intent;
  I3  no transition is lost: after each step (and its retry) the statuses are those of the fault-free story, and
      at the end there is no open intent and exactly the fault-free UpdateEndpoint calls (one per episode);
  I4  bounded, honest failure: the retry of a failed step succeeds (one fault), and every notice the story
      sends was published, unless the injected fault was on that very Publish (then it was logged and counted).

Times: the history before the story is in the past (world.at(0..50)); events that follow a rollback the
controller records at the wall clock are placed after it (world.at(240..)), as they would be in production.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from moto.core import DEFAULT_ACCOUNT_ID
from moto.dynamodb.models import dynamodb_backends
from moto.sagemaker.responses import SageMakerResponse
from release_history import controller, recorder
from release_history.cli import main as cli
from release_history.repository import Release, ReleaseRepository, Status
from release_history.runtime import Runtime, get_runtime
from release_history.timeutil import utcnow
from release_world import (
    ALARMS,
    ENDPOINT,
    ENV,
    REGION,
    TABLE,
    UNSET,
    LambdaContext,
    World,
    fake_update_endpoint,
    provision,
)

from tests.fault_injection import FAST_FAULTS, Scenario, Step, Trace, patched_attr, patched_env

CTX = LambdaContext()
V1, V2, V3 = "ml-api-v1", "ml-api-v2", "ml-api-v3"
D, B, L, S, R = Status.DEPLOYING, Status.BAKING, Status.LIVE, Status.SUPERSEDED, Status.ROLLED_BACK


@dataclass
class Story:
    """Per-process state of one scenario: the fixed clock origin of its provisioned history."""

    base: datetime = field(default_factory=lambda: utcnow() - timedelta(hours=2))
    world: World | None = None
    runtime: Runtime | None = None  # built once: clients outlive one mock_aws context (moto patches botocore)


go_live = World.go_live


def _cli(*argv: str) -> int:
    return cli(list(argv))


def _failed_exit(code: Any) -> bool:
    return code != 0


@dataclass(frozen=True)
class Expect:
    """What must hold once a step (and its retry) is done."""

    statuses: Mapping[str, Status]
    serving: str
    outcome: str | None = None  # the step's final result["outcome"], when the story fixes it


def release_scenario(
    name: str,
    *,
    history: Callable[[World], None],
    steps: list[tuple[str, Callable[[World], Any], Expect]],
    updates: list[str],
    notices: list[str],
    cli_steps: tuple[str, ...] = (),
    env: Mapping[str, str] | None = None,
) -> Scenario[World]:
    """A Scenario over the release world: `history` runs once (provisioned), `steps` are replayed with faults."""
    story = Story()
    expectations = {step: expect for step, _, expect in steps}

    @contextmanager
    def environment() -> Iterator[None]:
        fake = fake_update_endpoint(lambda: story.world.update_calls if story.world else [])
        with (
            patched_env({**ENV, **(env or {})}, UNSET),
            patched_attr(SageMakerResponse, "update_endpoint", fake),
            patched_attr(controller, "get_runtime", runtime),
            patched_attr(recorder, "get_runtime", runtime),
        ):
            yield

    def runtime() -> Runtime:
        if story.runtime is None:
            get_runtime.cache_clear()
            story.runtime = get_runtime()
            get_runtime.cache_clear()
        return story.runtime

    def provision_history() -> None:
        world = World(repo=provision(), base=story.base)
        story.world = world
        history(world)

    def setup() -> World:
        story.world = World(repo=ReleaseRepository(runtime().repo._table, ENDPOINT), base=story.base)
        return story.world

    def check(world: World, trace: Trace) -> None:
        snapshot = History.read()
        check_invariants(world, snapshot)
        step = trace.steps[-1]
        expect = expectations[step.name]
        assert not step.final.failed, f"{step.name} still failed after Lambda's retry: {trace.unhandled}"
        statuses = {r.release_id: r.status for r in snapshot.releases}
        assert statuses == dict(expect.statuses), f"after {step.name}: {statuses}"
        assert world.endpoint.endpoint_config_name == expect.serving, f"after {step.name}"
        if expect.outcome is not None and step.name not in cli_steps:
            assert step.final.result["outcome"] == expect.outcome, f"{step.name}: {step.final.result}"
        if len(trace.steps) == len(steps):
            check_end(world, snapshot, trace, updates, notices)

    return Scenario(
        name=name,
        steps=tuple(Step(n, fn, _failed_exit if n in cli_steps else _no) for n, fn, _ in steps),
        setup=setup,
        check=check,
        provision=provision_history,
        environment=environment,
        faults=FAST_FAULTS,
        world_state=_world_state,
    )


def _world_state(world: World, state: Any) -> Any:
    """What the world holds outside moto: the fake UpdateEndpoint's calls."""
    if state is None:
        return list(world.update_calls)
    world.update_calls[:] = state
    return None


def _no(result: Any) -> bool:
    return False


@dataclass(frozen=True)
class History:
    """The table as moto holds it, read without the API (so the checks cost no serialization, no calls)."""

    releases: list[Release]
    intent: dict[str, Any] | None  # the CONTROL#intent item as stored (read raw: also runs on code without it)

    @property
    def open_target(self) -> str | None:
        return self.intent["to_release"] if self.intent and self.intent.get("intent_state") == "open" else None

    @classmethod
    def read(cls) -> History:
        table = dynamodb_backends[DEFAULT_ACCOUNT_ID][REGION].get_table(TABLE)
        items = [item.to_regular_json() for item in table.all_items()]
        releases = [Release.from_item(i) for i in items if str(i["sk"]).startswith("RELEASE#")]
        intent = next((i for i in items if i["sk"] == "CONTROL#intent"), None)
        return cls(releases, intent)


def check_invariants(world: World, history: History) -> None:
    """I1 and I2 (RELEASES.md)."""
    releases = history.releases
    live = [r.release_id for r in releases if r.status == Status.LIVE]
    assert len(live) <= 1, f"I1: more than one live release: {live}"
    serving = world.endpoint.endpoint_config_name
    by_id = {r.release_id: r for r in releases}
    open_target = history.open_target
    allowed = (
        serving in live
        or serving == open_target
        or (serving in by_id and by_id[serving].status in (Status.DEPLOYING, Status.BAKING))
    )
    assert allowed, f"I2: endpoint on {serving} ({by_id.get(serving)}), live {live}, open intent to {open_target}"


def check_end(world: World, history: History, trace: Trace, updates: list[str], notices: list[str]) -> None:
    """I3 and I4 at the end of the story."""
    assert history.open_target is None, f"I3: intent left open: {history.intent}"
    assert [c["EndpointConfigName"] for c in world.update_calls] == updates, "I3: UpdateEndpoint calls"
    assert trace.unhandled == [], f"I4: {trace.unhandled}"
    sent = [n["subject"] for n in world.notifications()]
    publish_failed = trace.fired is not None and str(trace.fired) == "sns.Publish"
    for wanted in notices:
        found = any(wanted in subject for subject in sent)
        assert found or publish_failed, f"I4: no notice {wanted!r} in {sent}"


# ---- the stories --------------------------------------------------------------------------------------
def _three_live(world: World) -> None:
    for minutes, config in ((0, V1), (10, V2), (20, V3)):
        go_live(world, config, minutes)


def _one_live(world: World) -> None:
    go_live(world, V1, 0)


def _two_live(world: World) -> None:
    go_live(world, V1, 0)
    go_live(world, V2, 10)


def _register(config: str, minutes: float) -> Callable[[World], Any]:
    """The pipeline's registration (scripts/register_release.py -> ReleaseRepository.register), at a story time."""
    return lambda w: w.register(config, minutes)


def _in_service(config: str, minutes: float, failure: str | None = None) -> Callable[[World], Any]:
    def deliver(world: World) -> Any:
        world.set_endpoint(config, failure_reason=failure)
        return recorder.handler(world.state_event("IN_SERVICE", config, minutes), CTX)

    return deliver


def _alarm(name: str, minutes: float) -> Callable[[World], Any]:
    return lambda w: controller.handler(w.alarm_event(name, minutes), CTX)


ALARM_ROLLBACK = release_scenario(
    "alarm_rollback",
    history=_three_live,
    steps=[
        ("alarm", _alarm(ALARMS[1], 60), Expect({V1: S, V2: L, V3: R}, V2, "rolled_back")),
        ("alarm_redelivered", _alarm(ALARMS[1], 60), Expect({V1: S, V2: L, V3: R}, V2)),
        ("in_service_v2", _in_service(V2, 240), Expect({V1: S, V2: L, V3: R}, V2)),
        # The alarm flaps: an automatic rollback never takes a second step back (v2 -> v1).
        ("flap_alarm", _alarm(ALARMS[0], 250), Expect({V1: S, V2: L, V3: R}, V2, "walk_back_refused")),
    ],
    updates=[V2],
    notices=["Rolled back ml-api from ml-api-v3 to ml-api-v2", "no automatic rollback"],
)

DEPLOY_BAKE_LIVE = release_scenario(
    "deploy_bake_live",
    history=_one_live,
    steps=[
        ("register_v2", _register(V2, 40), Expect({V1: L, V2: D}, V1)),
        ("updating_v2", lambda w: recorder.handler(w.state_event("UPDATING", V2, 41), CTX), Expect({V1: L, V2: D}, V1)),
        ("in_service_v2", _in_service(V2, 45), Expect({V1: L, V2: B}, V2, "baking")),
        ("promote", lambda w: recorder.handler(w.schedule_event(), CTX), Expect({V1: S, V2: L}, V2, "promoted")),
        # A later alarm goes back exactly one release: the transitions above were not lost.
        ("alarm", _alarm(ALARMS[0], 60), Expect({V1: L, V2: R}, V1, "rolled_back")),
    ],
    updates=[V1],
    notices=["Rolled back ml-api from ml-api-v2 to ml-api-v1"],
)

SAGEMAKER_ROLLBACK = release_scenario(
    "sagemaker_rollback",
    history=_one_live,
    steps=[
        ("register_v2", _register(V2, 40), Expect({V1: L, V2: D}, V1)),
        ("register_v3", _register(V3, 42), Expect({V1: L, V2: D, V3: D}, V1)),  # registered, not deployed yet
        (
            "updating_v2",
            lambda w: recorder.handler(w.state_event("UPDATING", V2, 41), CTX),
            Expect({V1: L, V2: D, V3: D}, V1),
        ),
        (
            "sagemaker_rolled_back",
            _in_service(V1, 50, failure=f"Rolled back: alarm {ALARMS[0]} in ALARM"),
            Expect({V1: L, V2: R, V3: D}, V1),
        ),
        (
            "promote",
            lambda w: recorder.handler(w.schedule_event(), CTX),
            Expect({V1: L, V2: R, V3: D}, V1, "nothing_to_promote"),
        ),
        ("late_alarm", _alarm(ALARMS[0], 45), Expect({V1: L, V2: R, V3: D}, V1, "stale")),
    ],
    updates=[],
    notices=["Release ml-api-v2 rolled back by SageMaker"],
)

OPERATOR_ROLLBACK = release_scenario(
    "operator_rollback",
    history=_two_live,
    cli_steps=("operator_rollback", "operator_again"),
    steps=[
        (
            "operator_rollback",
            lambda w: _cli("rollback", "--to", V1, "--yes", "--by", "carol", "--reason", "bad"),
            Expect({V1: L, V2: R}, V1),
        ),
        ("in_service_v1", _in_service(V1, 240), Expect({V1: L, V2: R}, V1)),
        (
            "operator_again",
            lambda w: _cli("rollback", "--to", V1, "--yes", "--by", "carol"),
            Expect({V1: L, V2: R}, V1),
        ),
        # Nothing is left to roll back to: v2 is rolled back, never a target.
        ("alarm_after", _alarm(ALARMS[0], 250), Expect({V1: L, V2: R}, V1, "no_last_known_good")),
    ],
    updates=[V1],
    notices=["no last known good"],
)

SCENARIOS = (ALARM_ROLLBACK, DEPLOY_BAKE_LIVE, SAGEMAKER_ROLLBACK, OPERATOR_ROLLBACK)
