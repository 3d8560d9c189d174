"""No function in the app reserves concurrency; the functions that must decide one at a time hold a decision lock.

Reserving any concurrency fails stack creation in an account whose quota leaves fewer than 100 unreserved units:
"You can reserve up to the Unreserved account concurrency value that is shown, minus 100 for functions that don't
have reserved concurrency" (Lambda Developer Guide, "Configuring reserved concurrency for a function"), and "New AWS
accounts have reduced concurrency and memory quotas" ("Lambda quotas"). So `ReservedConcurrentExecutions: 1` was
not a safe way to say "one decision at a time" (issue 13 item 9): ml_constructs/decision_lock.py is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from tests.infra.conftest import Synthesized

# Issue 14 redesigns release safety (its recorder and controller still reserve 2 and 1): excluded until then.
RELEASE_SAFETY = re.compile(r"-release-(recorder|controller)$")
# The functions that reserved 1 so that two events could not both decide (start a run, answer an approval).
DECIDERS = ("-change-classifier", "-registry-trigger", "-retraining-trigger", "-drift-monitor")


def _functions(synthesized: Synthesized) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for (env, stack), template in sorted(synthesized.templates.items()):
        for logical_id, resource in template["Resources"].items():
            if resource["Type"] == "AWS::Lambda::Function":
                yield f"{env}/{stack}/{logical_id}", resource["Properties"], template


def test_no_function_reserves_concurrency(synthesized: Synthesized) -> None:
    reserving = {
        f"{label} ({p.get('FunctionName', '?')})": p["ReservedConcurrentExecutions"]
        for label, p, _ in _functions(synthesized)
        if "ReservedConcurrentExecutions" in p and not RELEASE_SAFETY.search(str(p.get("FunctionName", "")))
    }
    assert not reserving, f"reserved concurrency fails stack creation in low-quota accounts: {reserving}"


def _lock_statements(template: dict[str, Any], properties: dict[str, Any]) -> list[dict[str, Any]]:
    role = properties["Role"]["Fn::GetAtt"][0]
    return [
        statement
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::IAM::ManagedPolicy" and {"Ref": role} in resource["Properties"].get("Roles", [])
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]
        if "dynamodb:PutItem" in json.dumps(statement.get("Action")) and "dynamodb:LeadingKeys" in json.dumps(statement)
    ]


def test_every_deciding_function_holds_a_decision_lock_instead(synthesized: Synthesized) -> None:
    deciders = [
        (label, p, t) for label, p, t in _functions(synthesized) if str(p.get("FunctionName", "")).endswith(DECIDERS)
    ]
    found = {suffix for _, p, _ in deciders for suffix in DECIDERS if str(p["FunctionName"]).endswith(suffix)}
    assert found == set(DECIDERS), f"the shipped config has all four deciders; found only {sorted(found)}"
    missing = []
    for label, properties, template in deciders:
        variables = properties.get("Environment", {}).get("Variables", {})
        name = variables.get("DECISION_LOCK_NAME")
        statements = _lock_statements(template, properties)
        if not (
            {"DECISION_LOCK_TABLE", "DECISION_LOCK_LEASE_SECONDS"} <= set(variables)
            and name
            and any(
                s["Condition"]["ForAllValues:StringEquals"]["dynamodb:LeadingKeys"] == [f"LOCK#{name}"]
                for s in statements
            )
        ):
            missing.append(f"{label} ({properties['FunctionName']})")
    assert not missing, f"no decision lock (ml_constructs/decision_lock.py DecisionLockTable.attach): {missing}"
