"""Fault injection: every AWS call of each release story fails once (as botocore raises it after its retries),
then Lambda retries; the invariants of RELEASES.md hold after every step (see release_scenarios.py)."""

import pytest
from release_scenarios import SCENARIOS

from tests.fault_injection import FaultCase, count_pairs, fault_cases, recorded_calls, run_scenario


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_story_holds_without_faults(scenario) -> None:  # type: ignore[no-untyped-def]
    trace = run_scenario(scenario)
    assert trace.unhandled == [] and trace.fired is None
    assert len(recorded_calls(scenario)) == len(trace.calls)


@pytest.mark.parametrize("case", fault_cases(SCENARIOS))
def test_single_fault_then_lambda_retry_keeps_the_invariants(case: FaultCase) -> None:
    trace = run_scenario(case.scenario, case.fault)
    assert trace.fired is not None


def test_every_call_of_every_story_is_failed_at_least_once() -> None:
    # README reports count_pairs(SCENARIOS) (also: `pytest --collect-only -q <this file> | grep -c single_fault`).
    pairs = count_pairs(SCENARIOS)
    calls = sum(len(recorded_calls(s)) for s in SCENARIOS)
    assert pairs >= 2 * calls  # throttling and a 5xx on each call, plus lost conditions on conditional writes
