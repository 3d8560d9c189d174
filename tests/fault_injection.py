"""Fault injection for handler scenarios: record the AWS calls a scenario makes, then fail each one once.

The question this answers: "if any single AWS call fails the way botocore reports it once its own
retries are spent, and Lambda then retries the invocation, do the handler's invariants still hold?"

How to use it (one test per (scenario, injected fault) pair):

    from tests.fault_injection import Scenario, Step, fault_cases, run_scenario

    def provision() -> None:            # optional: moto resources, built once per process and snapshotted
        create_my_table(...)

    def setup() -> World:               # per run: cheap handles, fake clocks; its AWS calls are not recorded
        return World(...)

    def check(world: World, trace: Trace) -> None:   # the invariants; called after every step
        assert ...

    ALARM_ROLLBACK = Scenario(
        name="alarm_rollback",
        provision=provision, setup=setup, check=check,
        steps=(Step("alarm", lambda w: controller.handler(w.alarm_event(...), CTX)),
               Step("in_service", lambda w: recorder.handler(w.state_event(...), CTX))),
        environment=lambda: patched_env({"TABLE_NAME": "t", ...}),   # env vars for collection time too
    )

    @pytest.mark.parametrize("case", fault_cases([ALARM_ROLLBACK]))
    def test_single_fault(case: FaultCase) -> None:
        trace = run_scenario(case.scenario, case.fault)   # runs check() after each step
        assert trace.unhandled == []                       # the retry succeeded: bounded failure

What happens in `run_scenario(scenario, InjectedFault(call=k, kind=...))`:
  1. `environment()` is entered (env vars, monkeypatches), then moto's `mock_aws`; the snapshot of what
     `provision()` built is restored (moto's in-process backends are deep-copied: ~1 ms instead of
     re-creating tables and endpoints), then `setup()` builds the world.
  2. The steps run in order. Every botocore API call (`BaseClient._make_api_call`, so boto3 clients,
     resources and paginators alike, whichever session made them) is numbered across the whole run.
     Call number k raises the ClientError that botocore raises after its retries: the modelled
     exception class of the client (`client.exceptions.from_code`), `Error.Code`/`Message`,
     `ResponseMetadata.HTTPStatusCode`, and for retryable errors `MaxAttemptsReached` and
     `RetryAttempts` from the client's retry config (botocore "Retries" guide; "Error handling" guide).
  3. A step that raised (or whose result `Step.failed(result)` calls a failure, e.g. a CLI exit code) is
     invoked again with the same event and no fault: Lambda's asynchronous retry. `Trace.unhandled`
     lists steps whose retry still failed.
  4. `check(world, trace)` runs after every step (outside recording: its AWS calls are neither counted
     nor faulted) and the test can assert more on the returned `Trace`.
A scenario must be deterministic: the calls before k must be the recorded ones; the harness raises
`ScenarioNotDeterministic` otherwise (e.g. a wall-clock decision that flips between runs).

Fault kinds (`FAULTS`), each applied only to the calls where it can happen:
  throttle     every call; the service's throttling code (DynamoDB ProvisionedThroughputExceededException,
               S3 SlowDown 503, SNS Throttled, CloudWatch Throttling, else ThrottlingException 400)
  internal     every call; 500 (DynamoDB InternalServerError, SageMaker InternalFailure, else InternalError)
  unavailable  every call; 503 ServiceUnavailable
  server_error every call; 500 (as `internal`) or 503 (as `unavailable`), chosen by the operation's name:
               for suites that cannot afford both (`FAST_FAULTS`)
  conditional  DynamoDB PutItem/UpdateItem/DeleteItem with a condition (ConditionalCheckFailedException);
               TransactWriteItems (TransactionCanceledException with CancellationReasons), i.e. a
               concurrent writer won the race
  no_such_key  S3 GetObject (NoSuchKey 404): the object expired or was deleted between list and read
`count_pairs(scenarios)` gives the number of (scenario, fault) pairs for README.

Only the one AWS call is made to fail; the service state is whatever moto holds (a throttled write did
not happen). Speed: moto in-process, no sleeps (the fault is raised above botocore's retry loop).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import botocore.client
import pytest
from botocore.exceptions import ClientError

W = TypeVar("W")


# ---- faults ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Call:
    """One botocore API call: service name as botocore spells it ("dynamodb", "sagemaker", "s3", ...)."""

    service: str
    operation: str
    params: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __str__(self) -> str:
        return f"{self.service}.{self.operation}"


_THROTTLE = {
    "dynamodb": ("ProvisionedThroughputExceededException", 400),
    "s3": ("SlowDown", 503),
    "sns": ("Throttled", 400),
    "cloudwatch": ("Throttling", 400),
    "lambda": ("TooManyRequestsException", 429),
}
_INTERNAL = {"dynamodb": "InternalServerError", "sagemaker": "InternalFailure"}
_CONDITIONAL_WRITES = {"PutItem", "UpdateItem", "DeleteItem"}


@dataclass(frozen=True)
class FaultKind:
    """A way an AWS call can fail after botocore's retries; `applies` says which calls it can hit."""

    name: str
    applies: Callable[[Call], bool]
    code: Callable[[Call], tuple[str, int]]
    retryable: bool  # botocore retried it (throttle, 5xx) before giving up

    def error(self, client: Any, call: Call) -> ClientError:
        code, status = self.code(call)
        response: dict[str, Any] = {
            "Error": {"Code": code, "Message": f"injected {self.name} fault on {call}"},
            "ResponseMetadata": {"HTTPStatusCode": status, "RequestId": "fault-injection", "HTTPHeaders": {}},
        }
        if self.retryable:
            retries = getattr(client.meta.config, "retries", None) or {}
            attempts = int(retries.get("total_max_attempts") or retries.get("max_attempts") or 5)
            response["ResponseMetadata"].update(MaxAttemptsReached=True, RetryAttempts=max(attempts - 1, 0))
        if code == "TransactionCanceledException":
            items = call.params.get("TransactItems", [])
            response["CancellationReasons"] = [
                {"Code": "ConditionalCheckFailed" if _conditioned(i) else "None"} for i in items
            ]
            reasons = ", ".join(r["Code"] for r in response["CancellationReasons"])
            response["Error"]["Message"] = (
                f"Transaction cancelled, please refer cancellation reasons for specific reasons [{reasons}]"
            )
        error_class = client.exceptions.from_code(code)
        return error_class(response, call.operation)  # type: ignore[no-any-return]


def _conditioned(item: Mapping[str, Any]) -> bool:
    body: Mapping[str, Any] = next(iter(item.values()), {}) if item else {}
    return "ConditionExpression" in body or "ConditionCheck" in item


def _is_conditional(call: Call) -> bool:
    if call.service != "dynamodb":
        return False
    if call.operation in _CONDITIONAL_WRITES:
        return "ConditionExpression" in call.params or "Expected" in call.params
    return call.operation == "TransactWriteItems"


def _conditional_code(call: Call) -> tuple[str, int]:
    if call.operation == "TransactWriteItems":
        return "TransactionCanceledException", 400
    return "ConditionalCheckFailedException", 400


THROTTLE = FaultKind(
    "throttle", lambda c: True, lambda c: _THROTTLE.get(c.service, ("ThrottlingException", 400)), retryable=True
)
INTERNAL = FaultKind(
    "internal", lambda c: True, lambda c: (_INTERNAL.get(c.service, "InternalError"), 500), retryable=True
)
UNAVAILABLE = FaultKind("unavailable", lambda c: True, lambda c: ("ServiceUnavailable", 503), retryable=True)


def _server_error(call: Call) -> tuple[str, int]:
    # One 5xx kind for suites that cannot afford both: 500 and 503 take the same path in a handler that checks
    # the status (>= 500), so alternating them by operation name covers both codes at half the runs.
    return INTERNAL.code(call) if len(call.operation) % 2 else UNAVAILABLE.code(call)


SERVER_ERROR = FaultKind("server_error", lambda c: True, _server_error, retryable=True)
CONDITIONAL = FaultKind("conditional", _is_conditional, _conditional_code, retryable=False)
NO_SUCH_KEY = FaultKind(
    "no_such_key",
    lambda c: c.service == "s3" and c.operation == "GetObject",
    lambda c: ("NoSuchKey", 404),
    retryable=False,
)
FAULTS: tuple[FaultKind, ...] = (THROTTLE, INTERNAL, UNAVAILABLE, CONDITIONAL, NO_SUCH_KEY)
# The same with one 5xx kind (SERVER_ERROR: 500 or 503 by operation): about a quarter fewer runs.
FAST_FAULTS: tuple[FaultKind, ...] = (THROTTLE, SERVER_ERROR, CONDITIONAL, NO_SUCH_KEY)


@dataclass(frozen=True)
class InjectedFault:
    """Fail call number `call` (0-based, counted over the whole run) with `kind`."""

    call: int
    kind: FaultKind
    expected: Call | None = None  # the recorded call at that position, checked for determinism

    def __str__(self) -> str:
        return f"call {self.call} ({self.expected}) -> {self.kind.name}"


class ScenarioNotDeterministic(AssertionError):
    """The run diverged from the recorded calls before reaching the call to fail."""


# ---- recording ------------------------------------------------------------------------------------
class _Interceptor:
    """Numbers every botocore API call while `recording`; raises the planned fault at its number."""

    def __init__(self, fault: InjectedFault | None) -> None:
        self.fault = fault
        self.calls: list[Call] = []
        self.recording = False
        self.fired: Call | None = None

    def __call__(self, original: Callable[..., Any], client: Any, operation: str, params: dict[str, Any]) -> Any:
        if not self.recording:
            return original(client, operation, params)
        call = Call(client.meta.service_model.service_name, operation, copy.deepcopy(params))
        index = len(self.calls)
        self.calls.append(call)
        fault = self.fault
        if fault is not None and index == fault.call and self.fired is None:
            if fault.expected is not None and (call.service, call.operation) != (
                fault.expected.service,
                fault.expected.operation,
            ):
                raise ScenarioNotDeterministic(f"call {index} is {call}, recorded {fault.expected}")
            self.fired = call
            raise fault.kind.error(client, call)
        return original(client, operation, params)

    @contextmanager
    def paused(self) -> Iterator[None]:
        was, self.recording = self.recording, False
        try:
            yield
        finally:
            self.recording = was


@contextmanager
def _intercept(interceptor: _Interceptor) -> Iterator[None]:
    original = botocore.client.BaseClient._make_api_call

    def patched(client: Any, operation: str, params: dict[str, Any]) -> Any:
        return interceptor(original, client, operation, params)

    botocore.client.BaseClient._make_api_call = patched  # type: ignore[method-assign]
    try:
        yield
    finally:
        botocore.client.BaseClient._make_api_call = original  # type: ignore[method-assign]


# ---- scenarios ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Step(Generic[W]):
    """One invocation (a handler with one event, a CLI run); `failed` marks a returned value as a failure."""

    name: str
    invoke: Callable[[W], Any]
    failed: Callable[[Any], bool] = lambda result: False


@dataclass(frozen=True)
class Scenario(Generic[W]):
    """A deterministic story of invocations against moto, with the invariants to hold after each."""

    name: str
    steps: Sequence[Step[W]]
    setup: Callable[[], W]
    check: Callable[[W, Trace], None] = lambda world, trace: None
    provision: Callable[[], None] | None = None
    environment: Callable[[], AbstractContextManager[Any]] = nullcontext
    faults: tuple[FaultKind, ...] = FAULTS
    # Optional speed-up (see run_scenario): world_state(world, None) returns the world's own state (what is not in
    # moto, e.g. a list of calls a fake recorded); world_state(world, state) puts it back.
    world_state: Callable[[W, Any], Any] | None = None


@dataclass
class Attempt:
    """One invocation of a step: its result or exception, and the calls it made."""

    result: Any = None
    error: BaseException | None = None
    calls: list[Call] = field(default_factory=list)
    failed: bool = False


@dataclass
class StepRun:
    name: str
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def final(self) -> Attempt:
        return self.attempts[-1]


@dataclass
class Trace:
    """What happened in one run: per step, each attempt; which call was failed."""

    scenario: str
    fault: InjectedFault | None
    steps: list[StepRun] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    fired: Call | None = None

    @property
    def unhandled(self) -> list[str]:
        """Steps that still failed after Lambda's retry (a bounded handler has none with one fault)."""
        return [
            f"{s.name}: {s.final.error!r}" if s.final.error else f"{s.name}: {s.final.result!r}"
            for s in self.steps
            if s.final.failed
        ]

    def results(self, name: str) -> list[Any]:
        """Results of every attempt of step `name` (exceptions included)."""
        return [a.error if a.error else a.result for s in self.steps if s.name == name for a in s.attempts]

    def final(self, name: str) -> Any:
        return next(s.final.result for s in self.steps if s.name == name)


def _attempt(step: Step[W], world: W, interceptor: _Interceptor) -> Attempt:
    start = len(interceptor.calls)
    attempt = Attempt()
    interceptor.recording = True
    try:
        attempt.result = step.invoke(world)
        attempt.failed = bool(step.failed(attempt.result))
    except ScenarioNotDeterministic:
        raise
    except Exception as error:  # Lambda sees any exception as a failed invocation
        attempt.error, attempt.failed = error, True
    finally:
        interceptor.recording = False
    attempt.calls = interceptor.calls[start:]
    return attempt


def run_scenario(
    scenario: Scenario[W], fault: InjectedFault | None = None, *, retries: int = 1, checks: bool = True
) -> Trace:
    """Run every step (a failed step is invoked again `retries` times without fault); check after each
    (unless `checks` is False: recording at collection time leaves the checks to the tests).

    With `Scenario.world_state` set, a faulted run starts at the step holding the failed call, from the moto
    state and world state the fault-free recording had there (the steps before it made exactly the recorded
    calls), instead of replaying them: about half the work per run."""
    interceptor = _Interceptor(fault)
    trace = Trace(scenario.name, fault)
    resume = _resume_point(scenario, fault)
    with ExitStack() as stack:
        stack.enter_context(scenario.environment())
        stack.enter_context(_moto())
        _restore(scenario)
        world = scenario.setup()
        first = 0
        if resume is not None:
            first, (backends, state, steps, calls) = resume
            _restore_backends(backends)
            scenario.world_state(world, copy.deepcopy(state))  # type: ignore[misc]
            trace.steps, interceptor.calls = copy.copy(steps), list(calls)
        recording = fault is None and not checks and scenario.world_state is not None
        if recording:
            _STEPS[scenario.name] = []
        stack.enter_context(_intercept(interceptor))
        for step in scenario.steps[first:]:
            if recording:
                _STEPS[scenario.name].append(
                    (
                        _backend_snapshot(),
                        copy.deepcopy(scenario.world_state(world, None)),  # type: ignore[misc]
                        list(trace.steps),
                        list(interceptor.calls),
                    )
                )
            run = StepRun(step.name, [_attempt(step, world, interceptor)])
            while run.final.failed and len(run.attempts) <= retries:
                run.attempts.append(_attempt(step, world, interceptor))  # Lambda's retry, same event
            trace.steps.append(run)
            trace.calls, trace.fired = list(interceptor.calls), interceptor.fired
            if checks:
                scenario.check(world, trace)
    if fault is not None and interceptor.fired is None:
        raise ScenarioNotDeterministic(
            f"{scenario.name}: the run made {len(interceptor.calls)} calls, never reached {fault}"
        )
    return trace


# Per scenario, before each step of the fault-free recording: (moto backends, world state, steps so far, calls).
_STEPS: dict[str, list[tuple[Any, Any, list[StepRun], list[Call]]]] = {}


def _resume_point(scenario: Scenario[Any], fault: InjectedFault | None) -> tuple[int, Any] | None:
    if fault is None or scenario.world_state is None:
        return None
    if scenario.name not in _STEPS:
        recorded_calls(scenario)
    points = _STEPS.get(scenario.name, [])
    starts = [(i, p) for i, p in enumerate(points) if len(p[3]) <= fault.call]
    return starts[-1] if starts else None


# ---- moto state: provision once, restore per run ---------------------------------------------------
def _moto() -> AbstractContextManager[Any]:
    from moto import mock_aws

    return mock_aws()


_SNAPSHOTS: dict[str, list[tuple[Any, str, str, Any]]] = {}


def _backend_snapshot() -> list[tuple[Any, str, str, Any]]:
    from moto.core.base_backend import BackendDict
    from moto.core.model_instances import model_data

    # moto tracks every model instance (BaseModel.__new__) and, on reset, disposes the tracked S3 objects (closes
    # their buffers): the snapshot's copies must not be tracked, or the next reset empties them.
    models = [cls for classes in model_data.values() for cls in classes.values()]
    tracked = {cls: len(cls.instances_tracked) for cls in models}  # type: ignore[attr-defined]
    snapshot: list[tuple[Any, str, str, Any]] = [
        (backends, account, region, copy.deepcopy(backend))
        for backends in list(BackendDict._instances)  # type: ignore[misc]
        for account, region, backend in backends.iter_backends()
    ]
    for cls, count in tracked.items():
        del cls.instances_tracked[count:]  # type: ignore[attr-defined]
    # S3 keeps bucket -> account on the BackendDict itself, and a reset clears it.
    snapshot += [
        (backends, "", "", dict(backends.bucket_accounts))  # type: ignore[attr-defined]
        for backends in list(BackendDict._instances)  # type: ignore[misc]
        if isinstance(getattr(backends, "bucket_accounts", None), dict)
    ]
    return snapshot


def _restore_backends(snapshot: list[tuple[Any, str, str, Any]]) -> None:
    for backends, account, region, backend in snapshot:
        if not account:
            backends.bucket_accounts.update(backend)
        else:
            backends[account][region] = copy.deepcopy(backend)


def _restore(scenario: Scenario[Any]) -> None:
    if scenario.provision is None:
        return
    if scenario.name not in _SNAPSHOTS:
        scenario.provision()
        _SNAPSHOTS[scenario.name] = _backend_snapshot()
        return
    _restore_backends(_SNAPSHOTS[scenario.name])


# ---- pytest glue ----------------------------------------------------------------------------------
_RECORDED: dict[str, tuple[Call, ...] | BaseException] = {}


def recorded_calls(scenario: Scenario[Any]) -> tuple[Call, ...]:
    """The calls a fault-free run makes (cached per process by scenario name; deterministic scenarios only).
    Recording does not run `check`; a scenario that crashes while recording raises here."""
    if scenario.name not in _RECORDED:
        try:
            _RECORDED[scenario.name] = tuple(run_scenario(scenario, checks=False).calls)
        except Exception as error:  # reported by the tests (fault_cases), not as a collection error
            _RECORDED[scenario.name] = error
    recorded = _RECORDED[scenario.name]
    if isinstance(recorded, BaseException):
        raise recorded
    return recorded


@dataclass(frozen=True)
class FaultCase:
    """One (scenario, injected fault) pair, as a pytest parameter."""

    scenario: Scenario[Any]
    fault: InjectedFault

    @property
    def id(self) -> str:
        call = self.fault.expected
        return f"{self.scenario.name}-{self.fault.call:02d}-{call}-{self.fault.kind.name}"


def fault_pairs(scenarios: Sequence[Scenario[Any]]) -> list[FaultCase]:
    """Every (scenario, call k, fault kind that applies to call k)."""
    cases = []
    for scenario in scenarios:
        try:
            calls = recorded_calls(scenario)
        except Exception:
            continue  # fault_cases turns it into a failing test
        for index, call in enumerate(calls):
            for kind in scenario.faults:
                if kind.applies(call):
                    cases.append(FaultCase(scenario, InjectedFault(index, kind, call)))
    return cases


def fault_cases(scenarios: Sequence[Scenario[Any]]) -> list[Any]:
    """`pytest.param`s for `@pytest.mark.parametrize("case", fault_cases([...]))`, one id per pair. A scenario
    that could not be recorded becomes one parameter whose test fails with the recording error."""
    params = [pytest.param(case, id=case.id) for case in fault_pairs(scenarios)]
    for scenario in scenarios:
        recorded = _RECORDED.get(scenario.name)
        if isinstance(recorded, BaseException):
            params.append(pytest.param(_Unrecorded(scenario, recorded), id=f"{scenario.name}-recording-failed"))
    return params


@dataclass(frozen=True)
class _Unrecorded:
    """Stands in for the FaultCases of a scenario whose fault-free recording crashed."""

    scenario: Scenario[Any]
    error: BaseException

    @property
    def fault(self) -> InjectedFault:
        raise AssertionError(f"recording {self.scenario.name} failed: {self.error!r}") from self.error


def count_pairs(scenarios: Sequence[Scenario[Any]]) -> int:
    """Number of (scenario, injected fault) pairs, for README."""
    return len(fault_pairs(scenarios))


@contextmanager
def failing(
    match: Callable[[Call, list[Call]], bool], kind: FaultKind = THROTTLE, times: int = 1
) -> Iterator[list[Call]]:
    """For targeted tests: within the block, the first `times` calls for which `match(call, calls_so_far)` is true
    fail with `kind` (as botocore raises it after its retries). Yields the list of calls made in the block."""
    calls: list[Call] = []
    left = [times]
    original = botocore.client.BaseClient._make_api_call

    def patched(client: Any, operation: str, params: dict[str, Any]) -> Any:
        call = Call(client.meta.service_model.service_name, operation, copy.deepcopy(params))
        hit = left[0] > 0 and match(call, calls)
        calls.append(call)
        if hit:
            left[0] -= 1
            raise kind.error(client, call)
        return original(client, operation, params)

    botocore.client.BaseClient._make_api_call = patched  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        botocore.client.BaseClient._make_api_call = original  # type: ignore[method-assign]


@contextmanager
def patched_env(values: Mapping[str, str], unset: Sequence[str] = ()) -> Iterator[None]:
    """Set (and unset) environment variables for the duration; usable at collection time."""
    saved = {name: os.environ.get(name) for name in (*values, *unset)}
    os.environ.update(values)
    for name in unset:
        os.environ.pop(name, None)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def patched_attr(target: Any, name: str, value: Any) -> Iterator[None]:
    """setattr for the duration (monkeypatch is not available at collection time)."""
    missing = object()
    saved = getattr(target, name, missing)
    setattr(target, name, value)
    try:
        yield
    finally:
        if saved is missing:
            delattr(target, name)
        else:
            setattr(target, name, saved)
