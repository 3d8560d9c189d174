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
def test_one_failed_call_then_lambda_retry_keeps_the_invariants(case: FaultCase) -> None:
    trace = run_scenario(case.scenario, case.fault)
    assert trace.fired is not None


def test_pair_count_is_reported() -> None:
    # README reports this number; recount with `python -m tests.lambda_src.releases.count_pairs` (see RELEASES.md).
    assert count_pairs(SCENARIOS) > 100
